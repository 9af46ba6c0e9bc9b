"""aipnet as an ONNX backend, so that ONNX's own backend test suite runs against it.

    import onnx.backend.test
    onnx.backend.test.BackendTest(aipnet.onnx_backend.AipnetBackend, __name__)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

from .errors import AipnetError
from .model import load
from .registry import supported_ops
from .session import Session


class AipnetRep(BackendRep):
    """A prepared model: positional inputs in, a tuple of outputs out."""

    def __init__(self, session: Session):
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        specs = self.session.model.graph.inputs
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = {spec.name: np.asarray(a) for spec, a in zip(specs, inputs)}
        out = self.session.run(feeds)
        if isinstance(out, dict):
            return tuple(out[name] for name in self.session.model.outputs)
        return (out,)


class AipnetBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> bool:
        ops = set(supported_ops())
        return all(n.op_type in ops for n in model.graph.node)

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> AipnetRep:
        return AipnetRep(Session(load(model), **kwargs))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs: Any):
        raise AipnetError("run_node is not supported; aipnet runs whole models")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return Device(device).type == DeviceType.CPU


prepare = AipnetBackend.prepare
run_model = AipnetBackend.run_model
supports_device = AipnetBackend.supports_device
