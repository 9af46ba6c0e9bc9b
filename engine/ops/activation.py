"""Unfused activations: Relu, LeakyRelu, Clip, Sigmoid, Tanh."""

from __future__ import annotations

import numpy as np

from aipnet.kernels import activation as K

from ..errors import InputError
from ..registry import register
from .base import OpImpl


class _Unary(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        if shapes[0] is None:
            raise self.bad_input("input shape unknown")
        self.out_shapes = [tuple(shapes[0])]

    def _flat(self, x):
        return np.array(x, dtype=np.float32, copy=True).reshape(-1)


class _Act(_Unary):
    code = K.ACT_NONE

    def params(self, inputs):
        return 0.0, 0.0

    def run(self, inputs):
        y = self._flat(inputs[0])
        K.act_inplace(y, self.code, *self.params(inputs))
        return [y.reshape(self.out_shapes[0])]


@register("Relu")
class Relu(_Act):
    code = K.ACT_RELU


@register("LeakyRelu")
class LeakyRelu(_Act):
    code = K.ACT_LEAKY

    def params(self, inputs):
        return 0.0, float(self.attr("alpha", 0.01))


@register("Clip")
class Clip(_Act):
    code = K.ACT_CLIP

    def params(self, inputs):
        return clip_bounds(self.node.attrs, inputs, self.opset)


def clip_bounds(attrs, inputs, opset) -> tuple[float, float]:
    """(min, max) of a Clip: attributes before opset 11, optional inputs from 11 on."""
    if opset < 11:
        return float(attrs.get("min", -np.inf)), float(attrs.get("max", np.inf))
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    return (_scalar(lo, "min") if lo is not None else -np.inf, _scalar(hi, "max") if hi is not None else np.inf)


def _scalar(v, what: str) -> float:
    v = np.asarray(v)
    if v.size != 1:
        raise InputError(f"Clip {what} must be a scalar, got shape {v.shape}")
    return float(v.reshape(-1)[0])


@register("Sigmoid")
class Sigmoid(_Unary):
    def run(self, inputs):
        x = np.ascontiguousarray(inputs[0], dtype=np.float32).reshape(-1)
        out = np.empty_like(x)
        K.sigmoid(x, out)
        return [out.reshape(self.out_shapes[0])]


@register("Tanh")
class Tanh(_Unary):
    def run(self, inputs):
        x = np.ascontiguousarray(inputs[0], dtype=np.float32).reshape(-1)
        out = np.empty_like(x)
        K.tanh(x, out)
        return [out.reshape(self.out_shapes[0])]
