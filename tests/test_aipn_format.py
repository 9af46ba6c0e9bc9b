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
