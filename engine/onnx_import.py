"""ONNX -> graph IR, with the checks that turn a bad file into a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from .errors import ModelError, ModelFileError, UnsupportedAttributeError, UnsupportedOpError
from .graph import Graph, Node, ValueInfo

# 22-25 changed only the type lists of the ops aipnet implements, not their float32 semantics
MIN_OPSET, MAX_OPSET = 7, 25
DEFAULT_DOMAINS = ("", "ai.onnx")


def read_onnx(path: str | os.PathLike) -> onnx.ModelProto:
    """Parse an ONNX file, or raise ModelFileError saying why it is not one."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a model file")
    data = p.read_bytes()
    try:
        return parse_onnx_bytes(data, str(p))
    except ModelFileError:
        raise


def parse_onnx_bytes(data: bytes, where: str = "<bytes>") -> onnx.ModelProto:
    if not data:
        raise ModelFileError(f"{where}: empty file")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelFileError(f"{where}: not a valid ONNX model (truncated or corrupt protobuf: {exc})") from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{where}: not an ONNX model (no graph)")
    return model


def _to_array(t: onnx.TensorProto, where: str) -> np.ndarray:
    try:
        arr = numpy_helper.to_array(t)
    except Exception as exc:  # onnx raises several types for bad tensors
        raise ModelFileError(f"{where}: tensor {t.name!r} cannot be read: {exc}") from None
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr


def _attr_value(a: onnx.AttributeProto, where: str):
    if a.type == onnx.AttributeProto.TENSOR:
        return _to_array(a.t, where)
    if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        raise UnsupportedAttributeError(f"{where}: attribute {a.name!r} holds a subgraph; control flow is not supported")
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    elif isinstance(v, list):
        v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
    return v


def import_onnx(model: onnx.ModelProto, name: str = "model") -> Graph:
    """Convert a parsed ONNX model to the graph IR, checking what can go wrong."""
    opset = None
    for imp in model.opset_import:
        if imp.domain in DEFAULT_DOMAINS:
            opset = int(imp.version)
    if opset is None:
        raise ModelFileError(f"{name}: no default-domain opset import (a truncated or invalid ONNX model)")
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedAttributeError(
            f"{name}: opset {opset} is not supported (aipnet supports opsets {MIN_OPSET} to {MAX_OPSET})")
    g = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in g.initializer):
        raise ModelFileError(f"{name}: tensors stored as external data are not supported; save the model as one file")
    inits: dict[str, np.ndarray] = {}
    for t in g.initializer:
        arr = _to_array(t, name)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ModelError(f"{name}: weight {t.name!r} holds {bad} non-finite value(s) (NaN or inf)")
        inits[t.name] = arr
    inputs = []
    for vi in g.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedAttributeError(f"{name}: input {vi.name!r} is not a tensor")
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except Exception:
            raise UnsupportedAttributeError(f"{name}: input {vi.name!r} has an unknown element type {tt.elem_type}") from None
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim) if tt.HasField("shape") else None
        inputs.append(ValueInfo(vi.name, shape, dtype))
    nodes = []
    known = set(inits) | {v.name for v in inputs} | {""}
    for i, n in enumerate(g.node):
        nname = n.name or f"{n.op_type}_{i}"
        if n.domain not in DEFAULT_DOMAINS:
            raise UnsupportedOpError(f"unsupported op {n.domain}.{n.op_type} in node {nname!r} (only the default ONNX domain is supported)")
        for inp in n.input:
            if inp not in known:
                raise ModelError(f"{name}: node {nname!r} ({n.op_type}) reads {inp!r}, which no earlier node, input or initializer defines")
        attrs = {a.name: _attr_value(a, f"{name}: node {nname!r}") for a in n.attribute}
        nodes.append(Node(n.op_type, nname, list(n.input), list(n.output), attrs))
        known.update(n.output)
    for out in g.output:
        if out.name not in known:
            raise ModelError(f"{name}: graph output {out.name!r} is never computed")
    if not g.output:
        raise ModelFileError(f"{name}: the graph has no outputs")
    meta = {p.key: p.value for p in model.metadata_props}
    return Graph(nodes, inits, inputs, [o.name for o in g.output], opset, g.name or name, meta)
