"""The .aipn packed format: round trip, zero-copy views, and hostile files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import aipnet
from aipnet import aipn_format
from aipnet.errors import ModelFileError
from cases import CASES
from util import assert_close, ort_run


def small_graph():
    return aipnet.load(next(c for c in CASES if c.name == "small_cnn").model()).graph


def test_round_trip_weights_zero_copy(tmp_path):
    g = small_graph()
    path = tmp_path / "m.aipn"
    aipn_format.save(g, path, {"source.hash": "sha256:x"})
    m = aipnet.load(path)
    assert m.packed_meta["source.hash"] == "sha256:x"
    assert m.packed_meta["producer"] == "aipnet"
    assert set(m.graph.initializers) == set(g.initializers)
    for k, v in g.initializers.items():
        got = m.graph.initializers[k]
        assert got.dtype == v.dtype and got.shape == v.shape
        np.testing.assert_array_equal(got, v)
        assert not got.flags.writeable and not got.flags.owndata   # a view into the mapping
        if got.dtype == np.float32:
            assert got.ctypes.data % 64 == 0
    assert [(n.op, n.inputs, n.outputs) for n in m.graph.nodes] == [(n.op, n.inputs, n.outputs) for n in g.nodes]
    assert m.graph.opset == g.opset and m.graph.outputs == g.outputs


@pytest.mark.parametrize("case", [c for c in CASES if c.tags[0] in ("model", "shape", "conv", "gemm")][:12],
                         ids=lambda c: c.name)
def test_numba_from_aipn_matches_onnxruntime(case, tmp_path):
    model = case.model()
    path = tmp_path / "m.aipn"
    aipn_format.save(aipnet.load(model).graph, path)
    for batch in (1, 3):
        feeds = case.feeds(batch)
        ref = ort_run(model, feeds)[0]
        out = aipnet.Session(aipnet.load(path)).run(feeds)
        out = next(iter(out.values())) if isinstance(out, dict) else out
        assert_close(out, ref, case.name)


@pytest.fixture(scope="module")
def small_bytes():
    return aipn_format.dumps(small_graph())


def test_truncated_at_every_offset(small_bytes):
    data = small_bytes
    step = max(1, len(data) // 3000)
    for n in list(range(0, min(len(data), 2048))) + list(range(2048, len(data), step)):
        with pytest.raises(ModelFileError):
            aipn_format.parse(data[:n])


def test_every_header_and_table_byte_flipped(small_bytes):
    head = struct.unpack_from("<Q", small_bytes, 32)[0] + 64
    for i in range(head):
        bad = bytearray(small_bytes)
        bad[i] ^= 0xFF
        with pytest.raises(ModelFileError):
            aipn_format.parse(bytes(bad))


def test_newer_major_version_refused(small_bytes):
    bad = bytearray(small_bytes)
    bad[8:10] = struct.pack("<H", aipn_format.VERSION_MAJOR + 1)
    with pytest.raises(ModelFileError, match="newer"):
        aipn_format.parse(bytes(bad))


def test_weight_checksum(small_bytes):
    bad = bytearray(small_bytes)
    bad[struct.unpack_from("<Q", small_bytes, 40)[0]] ^= 1   # the first tensor's first byte
    with pytest.raises(ModelFileError, match="checksum"):
        aipn_format.parse(bytes(bad))
    aipn_format.parse(bytes(bad), verify=False)


# -- hand-made hostile files (valid checksums, so only the structural checks catch them) --
def _refresh_crc(data: bytearray) -> bytes:
    import zlib
    t_size = struct.unpack_from("<Q", data, 32)[0]
    crc = zlib.crc32(bytes(data[64:64 + t_size]), zlib.crc32(bytes(data[:56])))
    struct.pack_into("<I", data, 56, crc)
    return bytes(data)


def _tensor_field(data: bytes, name: str, ndim: int) -> int:
    """Byte offset of the dims of tensor ``name`` in the table."""
    key = struct.pack("<I", len(name)) + name.encode()
    return data.index(key) + len(key) + 12


def _both_refuse(data: bytes, match: str) -> None:
    with pytest.raises(ModelFileError, match=match):
        aipn_format.parse(data)
    from aipnet import native
    if native.available():
        with pytest.raises(aipnet.AipnetError, match=match):
            native.NativeModel.from_bytes(data)


def _two_tensor_graph():
    from aipnet.graph import Graph, Node, ValueInfo
    inits = {"a": np.ones((4, 4), np.float32), "b": np.full((4,), 2, np.float32)}
    nodes = [Node("Add", "add", ["x", "a"], ["y"]), Node("Add", "add2", ["y", "b"], ["z"])]
    return Graph(nodes, inits, [ValueInfo("x", (None, 4, 4), np.dtype(np.float32))], ["z"])


def test_overlapping_tensors_refused():
    data = bytearray(aipn_format.dumps(_two_tensor_graph()))
    pos = _tensor_field(data, "b", 1) + 8          # after the one dim: the offset
    struct.pack_into("<Q", data, pos, 0)           # b now starts where a does
    _both_refuse(_refresh_crc(data), "overlap|checksum")


def test_dims_whose_product_overflows_refused():
    data = bytearray(aipn_format.dumps(_two_tensor_graph()))
    pos = _tensor_field(data, "a", 2)
    struct.pack_into("<qq", data, pos, 1 << 62, 1 << 62)
    _both_refuse(_refresh_crc(data), "larger than the file|does not fit")


def test_offset_past_the_end_refused():
    data = bytearray(aipn_format.dumps(_two_tensor_graph()))
    pos = _tensor_field(data, "b", 1) + 8
    struct.pack_into("<Q", data, pos, 1 << 40)
    _both_refuse(_refresh_crc(data), "does not fit")


def test_dangling_names_and_cycles_refused():
    g = _two_tensor_graph()
    g.nodes[0].inputs = ["x", "nope"]
    _both_refuse(aipn_format.dumps(g), "nope")
    g = _two_tensor_graph()
    g.nodes[0].inputs = ["z", "a"]                 # reads the output of a later node: a cycle
    _both_refuse(aipn_format.dumps(g), "dangling name or cycle")
