"""Loading a model: from an ONNX file, a parsed ONNX model, or a built-in name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import onnx

from . import aipn_format, builtin
from .errors import ModelFileError
from .graph import Graph
from .onnx_import import import_onnx, read_onnx
from .optimize import optimize
from .registry import lookup


@dataclass
class Model:
    """An optimised graph ready for sessions, and where it came from."""

    graph: Graph
    source: str
    onnx_model: onnx.ModelProto | None = None
    #: the .aipn file this model was memory-mapped from (the C backend maps it again)
    packed_path: str | None = None
    #: the .aipn metadata (producer, source hash, conversion knobs)
    packed_meta: dict | None = None

    @property
    def inputs(self):
        return self.graph.inputs

    @property
    def outputs(self) -> list[str]:
        return self.graph.outputs


def load(model: str | os.PathLike | onnx.ModelProto, optimized: bool = True, verify_checksums: bool = True) -> Model:
    """Load a model for inference.

    Args:
        model: a path to an ``.onnx`` file, a built-in name (``aipnet.builtin_names()``,
            e.g. ``"reference"`` or ``"vggf"``), or an ``onnx.ModelProto``.
        optimized: fold constants and BatchNorm, fuse activations, drop no-ops.
        verify_checksums: check the tensor checksums of an ``.aipn`` file (on by default).

    Raises:
        AipnetError: the file is missing, not ONNX, uses an unsupported op or opset,
            or has non-finite weights.
    """
    if isinstance(model, onnx.ModelProto):
        proto, source = model, "<onnx.ModelProto>"
    else:
        source = os.fspath(model)
        if not Path(source).exists() and isinstance(builtin.resolve(source), Path):
            source = os.fspath(builtin.resolve(source))  # a shipped model by name
        if Path(source).is_file() and aipn_format.is_aipn(source):
            graph, meta = aipn_format.load_graph(source, verify_checksums)
            for node in graph.nodes:
                lookup(node.op, "numba", node.name)
            return Model(graph, source, None, source, meta)
        resolved = builtin.resolve(source) if not Path(source).exists() else None
        if isinstance(resolved, onnx.ModelProto):
            proto = resolved
        else:
            path = resolved or Path(source)
            if not Path(path).exists():
                raise ModelFileError(
                    f"{source}: no such file or built-in model (built-ins: {', '.join(builtin.builtin_names())})")
            proto = read_onnx(path)
    graph = import_onnx(proto, name=Path(source).name if source[0] != "<" else "model")
    for node in graph.nodes:
        lookup(node.op, "numba", node.name)
    if optimized:
        optimize(graph)
    return Model(graph, source, proto)
