"""The packed model file, ``.aipn``: writer and memory-mapping reader.

One file holds the optimised graph and its weights; tensor data is 64-byte aligned so
that a memory-mapped file gives zero-copy numpy views (and C pointers) that SIMD loads
can use directly. The byte layout is documented at the top of
``csrc/include/aipnet.h`` (the C reader and this module implement the same layout, and
the same checks: a hostile file raises :class:`ModelFileError`, never crashes).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, ModelFileError
from .graph import Graph, Node, ValueInfo

MAGIC = b"AIPN\x00\r\n\x1a"
VERSION_MAJOR, VERSION_MINOR = 1, 0
ALIGN = 64
HEADER = struct.Struct("<8sHHIIIQQQQII")  # 64 bytes
assert HEADER.size == 64
MAX_DIMS = 8

#: ONNX TensorProto element type codes (the same numbers in the file and in aipnet.h)
DTYPES = {1: np.dtype(np.float32), 2: np.dtype(np.uint8), 3: np.dtype(np.int8), 6: np.dtype(np.int32),
          7: np.dtype(np.int64), 9: np.dtype(np.bool_)}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}
#: tensor layouts: 0 = dense row-major; 1 is reserved for the AIP blocked FC layout
LAYOUT_DENSE = 0

A_INT, A_FLOAT, A_STRING, A_INTS, A_FLOATS, A_STRINGS, A_TENSOR = 1, 2, 3, 4, 5, 6, 7


# -- writing -------------------------------------------------------------------------
class _Buf:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def u32(self, v: int) -> None:
        self.parts.append(struct.pack("<I", v))

    def i32(self, v: int) -> None:
        self.parts.append(struct.pack("<i", v))

    def u64(self, v: int) -> None:
        self.parts.append(struct.pack("<Q", v))

    def i64s(self, vs) -> None:
        self.parts.append(struct.pack(f"<{len(vs)}q", *[int(v) for v in vs]))

    def str(self, s: str) -> None:
        b = s.encode("utf-8")
        self.u32(len(b))
        self.parts.append(b)

    def raw(self, b: bytes) -> None:
        self.parts.append(b)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _dtype_code(arr: np.ndarray, what: str) -> int:
    code = DTYPE_CODES.get(arr.dtype.newbyteorder("=") if arr.dtype.byteorder == ">" else arr.dtype)
    if code is None:
        raise ModelError(f"{what}: dtype {arr.dtype} cannot be stored in an .aipn file")
    return code


def _attr(buf: _Buf, key: str, v: Any, where: str) -> None:
    buf.str(key)
    if isinstance(v, np.ndarray):
        arr = np.ascontiguousarray(v)
        if arr.ndim > MAX_DIMS:
            raise ModelError(f"{where}: attribute {key!r} has rank {arr.ndim} > {MAX_DIMS}")
        buf.u32(A_TENSOR)
        buf.u32(_dtype_code(arr, f"{where}: attribute {key!r}"))
        buf.u32(arr.ndim)
        buf.i64s(arr.shape)
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        buf.u64(len(data))
        buf.raw(data)
    elif isinstance(v, (bool, int, np.integer)):
        buf.u32(A_INT)
        buf.i64s([int(v)])
    elif isinstance(v, (float, np.floating)):
        buf.u32(A_FLOAT)
        buf.raw(struct.pack("<f", float(v)))
    elif isinstance(v, str):
        buf.u32(A_STRING)
        buf.str(v)
    elif isinstance(v, (list, tuple)):
        if all(isinstance(x, str) for x in v) and v:
            buf.u32(A_STRINGS)
            buf.u32(len(v))
            for x in v:
                buf.str(x)
        elif all(isinstance(x, (bool, int, np.integer)) for x in v):
            buf.u32(A_INTS)
            buf.u32(len(v))
            buf.i64s(v)
        elif all(isinstance(x, (int, float, np.integer, np.floating)) for x in v):
            buf.u32(A_FLOATS)
            buf.u32(len(v))
            buf.raw(struct.pack(f"<{len(v)}f", *[float(x) for x in v]))
        else:
            raise ModelError(f"{where}: attribute {key!r} holds a list of mixed types")
    else:
        raise ModelError(f"{where}: attribute {key!r} of type {type(v).__name__} cannot be stored")


def dumps(g: Graph, metadata: dict[str, str] | None = None) -> bytes:
    """The .aipn bytes of an (optimised) graph."""
    meta = {"producer": "aipnet", "graph.name": g.name}
    try:
        from . import __version__

        meta["producer.version"] = __version__
    except ImportError:  # pragma: no cover
        pass
    meta.update({f"onnx.{k}": v for k, v in g.metadata.items()})
    meta.update(metadata or {})
    t = _Buf()
    t.u32(len(meta))
    for k, v in meta.items():
        t.str(str(k))
        t.str(str(v))
    # tensors: 64-byte aligned offsets relative to the data section
    blobs = []
    off = 0
    t.u32(len(g.initializers))
    for name, arr in g.initializers.items():
        arr = np.ascontiguousarray(arr)
        if arr.ndim > MAX_DIMS:
            raise ModelError(f"tensor {name!r} has rank {arr.ndim} > {MAX_DIMS}")
        code = _dtype_code(arr, f"tensor {name!r}")
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        t.str(name)
        t.u32(code)
        t.u32(LAYOUT_DENSE)
        t.u32(arr.ndim)
        t.i64s(arr.shape)
        t.u64(off)
        t.u64(len(data))
        t.u32(zlib.crc32(data))
        blobs.append((off, data))
        off += (len(data) + ALIGN - 1) // ALIGN * ALIGN
    data_size = off
    t.u32(len(g.inputs))
    for vi in g.inputs:
        t.str(vi.name)
        t.u32(DTYPE_CODES.get(np.dtype(vi.dtype), 0))
        if vi.shape is None:
            t.i32(-1)
        else:
            t.i32(len(vi.shape))
            t.i64s([-1 if d is None else d for d in vi.shape])
    t.u32(len(g.outputs))
    for o in g.outputs:
        t.str(o)
    t.u32(len(g.nodes))
    for node in g.nodes:
        t.str(node.op)
        t.str(node.name)
        for names in (node.inputs, node.outputs):
            t.u32(len(names))
            for n in names:
                t.str(n)
        t.u32(len(node.attrs))
        for k, v in node.attrs.items():
            _attr(t, k, v, f"node {node.name!r}")
    table = t.bytes()
    data_offset = (HEADER.size + len(table) + ALIGN - 1) // ALIGN * ALIGN
    head = HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, ALIGN, 0, g.opset, HEADER.size, len(table),
                       data_offset, data_size, 0, 0)
    crc = zlib.crc32(table, zlib.crc32(head[:56]))
    head = head[:56] + struct.pack("<II", crc, 0)
    out = bytearray(data_offset + data_size)
    out[:64] = head
    out[64:64 + len(table)] = table
    for o, data in blobs:
        out[data_offset + o:data_offset + o + len(data)] = data
    return bytes(out)


def source_hash(path: str | os.PathLike | None = None, data: bytes | None = None) -> str:
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
    elif path is not None:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def save(g: Graph, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> int:
    """Write ``g`` to ``path``; returns the file size."""
    data = dumps(g, metadata)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


# -- reading -------------------------------------------------------------------------
class _Reader:
    def __init__(self, buf, start: int, end: int, where: str):
        self.buf, self.pos, self.end, self.where = buf, start, end, where

    def fail(self, why: str) -> ModelFileError:
        return ModelFileError(f"{self.where}: corrupt .aipn file: {why}")

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > self.end:
            raise self.fail(f"table entry at byte {self.pos} runs past the end of the table")
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def i32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def count(self, what: str, min_bytes: int) -> int:
        n = self.u32()
        if n * min_bytes > self.end - self.pos:
            raise self.fail(f"{what} count {n} is larger than the table")
        return n

    def i64s(self, n: int) -> list[int]:
        return list(struct.unpack(f"<{n}q", self.take(8 * n)))

    def str(self) -> str:
        n = self.u32()
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"a name at byte {self.pos - n} is not UTF-8") from None


def _shape_size(r: _Reader, dims: list[int], limit: int, what: str) -> int:
    size = 1
    for d in dims:
        if d < 0:
            raise r.fail(f"{what} has a negative dimension {dims}")
        size *= d
    if size > limit:
        raise r.fail(f"{what} of shape {dims} is larger than the file")
    return size


def _read_attr(r: _Reader, where: str) -> tuple[str, Any]:
    key = r.str()
    kind = r.u32()
    if kind == A_INT:
        return key, r.i64s(1)[0]
    if kind == A_FLOAT:
        return key, float(struct.unpack("<f", r.take(4))[0])
    if kind == A_STRING:
        return key, r.str()
    if kind == A_INTS:
        return key, r.i64s(r.count("ints", 8))
    if kind == A_FLOATS:
        n = r.count("floats", 4)
        return key, [float(x) for x in struct.unpack(f"<{n}f", r.take(4 * n))]
    if kind == A_STRINGS:
        return key, [r.str() for _ in range(r.count("strings", 4))]
    if kind == A_TENSOR:
        code, ndim = r.u32(), r.u32()
        if code not in DTYPES or ndim > MAX_DIMS:
            raise r.fail(f"{where}: attribute {key!r} has dtype {code} / rank {ndim}")
        dims = r.i64s(ndim)
        size = _shape_size(r, dims, r.end, f"{where}: attribute {key!r}")
        nbytes = r.u64()
        if nbytes != size * DTYPES[code].itemsize:
            raise r.fail(f"{where}: attribute {key!r} holds {nbytes} bytes for shape {dims}")
        data = bytes(r.take(nbytes))
        return key, np.frombuffer(data, DTYPES[code].newbyteorder("<")).astype(DTYPES[code]).reshape(dims)
    raise r.fail(f"{where}: attribute {key!r} has unknown type {kind}")


def parse(buf, where: str = "<bytes>", verify: bool = True) -> tuple[Graph, dict[str, str]]:
    """Graph and metadata from .aipn bytes (``buf``: bytes, mmap or memoryview).

    Tensors are zero-copy, read-only numpy views into ``buf``.
    """
    mv = memoryview(buf)
    size = len(mv)
    if size < HEADER.size:
        raise ModelFileError(f"{where}: not an .aipn file (only {size} bytes)")
    magic, major, minor, align, flags, opset, t_off, t_size, d_off, d_size, crc, reserved = HEADER.unpack(mv[:64])
    if magic != MAGIC:
        raise ModelFileError(f"{where}: not an .aipn file (bad magic {bytes(magic)!r})")
    if major > VERSION_MAJOR:
        raise ModelFileError(
            f"{where}: .aipn format version {major}.{minor} is newer than this reader "
            f"({VERSION_MAJOR}.{VERSION_MINOR}); upgrade aipnet to read it")
    if major != VERSION_MAJOR:
        raise ModelFileError(f"{where}: .aipn format version {major}.{minor} is not supported")
    bad = ModelFileError
    if align != ALIGN or flags != 0 or reserved != 0:
        raise bad(f"{where}: corrupt .aipn header (alignment {align}, flags {flags}, reserved {reserved})")
    if t_off != HEADER.size or t_off + t_size > size or d_off % ALIGN or d_off < t_off + t_size \
            or d_off > size or d_size > size - d_off:
        raise bad(f"{where}: corrupt or truncated .aipn file (table {t_off}+{t_size}, data {d_off}+{d_size}, "
                  f"file {size} bytes)")
    if verify:
        got = zlib.crc32(mv[t_off:t_off + t_size], zlib.crc32(mv[:56]))
        if got != crc:
            raise bad(f"{where}: .aipn header checksum mismatch (corrupt file)")
    r = _Reader(mv, t_off, t_off + t_size, where)
    meta = {}
    for _ in range(r.count("metadata", 8)):
        k = r.str()
        meta[k] = r.str()
    tensors: dict[str, np.ndarray] = {}
    spans = []
    for _ in range(r.count("tensor", 36)):
        name = r.str()
        code, layout, ndim = r.u32(), r.u32(), r.u32()
        if code not in DTYPES or layout != LAYOUT_DENSE or ndim > MAX_DIMS:
            raise r.fail(f"tensor {name!r} has dtype {code}, layout {layout}, rank {ndim}")
        dims = r.i64s(ndim)
        off, nbytes, tcrc = r.u64(), r.u64(), r.u32()
        count = _shape_size(r, dims, d_size, f"tensor {name!r}")
        if nbytes != count * DTYPES[code].itemsize or off % ALIGN or off > d_size or nbytes > d_size - off:
            raise r.fail(f"tensor {name!r} (shape {dims}, {nbytes} bytes at {off}) does not fit the data section")
        if name in tensors or not name:
            raise r.fail(f"tensor name {name!r} is empty or repeated")
        start = d_off + off
        if verify and zlib.crc32(mv[start:start + nbytes]) != tcrc:
            raise r.fail(f"checksum mismatch in tensor {name!r}")
        arr = np.frombuffer(buf, dtype=DTYPES[code].newbyteorder("<"), count=count, offset=start)
        tensors[name] = arr.reshape(dims)
        spans.append((off, nbytes, name))
    spans.sort()
    for (o1, n1, a), (o2, _, b) in zip(spans, spans[1:]):
        if o1 + n1 > o2:
            raise r.fail(f"tensors {a!r} and {b!r} overlap")
    inputs = []
    for _ in range(r.count("input", 8)):
        name, code, ndim = r.str(), r.u32(), r.i32()
        if code not in DTYPES or ndim > MAX_DIMS or ndim < -1:
            raise r.fail(f"input {name!r} has dtype {code}, rank {ndim}")
        shape = None if ndim < 0 else tuple(None if d < 0 else d for d in r.i64s(ndim))
        inputs.append(ValueInfo(name, shape, DTYPES[code]))
    outputs = [r.str() for _ in range(r.count("output", 4))]
    nodes = []
    known = set(tensors) | {v.name for v in inputs}
    if len(known) != len(tensors) + len(inputs):
        raise r.fail("a graph input has the name of a tensor or another input")
    for i in range(r.count("node", 20)):
        op, name = r.str(), r.str()
        ins = [r.str() for _ in range(r.count("node input", 4))]
        outs = [r.str() for _ in range(r.count("node output", 4))]
        attrs = dict(_read_attr(r, f"node {name!r}") for _ in range(r.count("attribute", 8)))
        for n in ins:
            if n and n not in known:
                raise ModelFileError(f"{where}: node {name!r} ({op}) reads {n!r}, which no earlier node, "
                                     "input or tensor defines (dangling name or cycle)")
        for n in outs:
            if n in known:
                raise ModelFileError(f"{where}: node {name!r} ({op}) writes {n!r}, which is already defined")
            if n:
                known.add(n)
        nodes.append(Node(op, name, ins, outs, attrs))
    if r.pos != r.end:
        raise r.fail(f"{r.end - r.pos} stray bytes after the graph table")
    for o in outputs:
        if o not in known:
            raise ModelFileError(f"{where}: graph output {o!r} is never computed")
    g = Graph(nodes, tensors, inputs, outputs, int(opset), meta.get("graph.name", "graph"),
              {k[5:]: v for k, v in meta.items() if k.startswith("onnx.")})
    return g, meta


def is_aipn(path: str | os.PathLike) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == MAGIC
    except OSError:
        return False


def load_graph(path: str | os.PathLike, verify: bool = True) -> tuple[Graph, dict[str, str]]:
    """Memory-map ``path`` and parse it (weights are views into the mapping)."""
    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"{p}: no such file")
    if p.is_dir():
        raise ModelFileError(f"{p}: is a directory, not a model file")
    with open(p, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise ModelFileError(f"{p}: empty file")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return parse(mm, str(p), verify)
