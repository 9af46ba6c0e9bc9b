"""Tests of aipnet.data (IDX reader, Fashion-MNIST loading, shipped subset) and of the
shipped reference model's recorded accuracy."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest

import aipnet.data as data
from aipnet.data import (
    CLASS_NAMES,
    DEFAULT_DATA_DIR,
    load_fashion_mnist,
    load_fashion_mnist_raw,
    load_subset,
    preprocess,
    read_idx,
)
from aipnet.errors import AipnetError, DataError

MODELS = Path(data.__file__).resolve().parent / "models"
FULL_DATA = all(
    (Path(DEFAULT_DATA_DIR) / f).is_file()
    for f in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
)


def idx_bytes(arr: np.ndarray, code: int | None = None) -> bytes:
    """Encode ``arr`` as an IDX file (big-endian)."""
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B,
             np.dtype("i4"): 0x0C, np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}
    if code is None:
        code = codes[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, payload: bytes, gz: bool) -> Path:
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def expect_error(path: Path, *words: str) -> DataError:
    with pytest.raises(DataError) as ei:
        read_idx(path)
    msg = str(ei.value)
    assert path.name in msg, msg
    for w in words:
        assert w in msg, msg
    return ei.value


# ---------------------------------------------------------------- IDX reader

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "arr",
    [
        np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5),
        np.array([7, 0, 255], dtype=np.uint8),
        np.array([[-1, 2], [3, -128]], dtype=np.int8),
        np.array([-300, 2, 30000], dtype=np.int16),
        np.array([[-70000, 1], [2, 2**31 - 1]], dtype=np.int32),
        np.array([1.5, -2.25, np.pi], dtype=np.float32),
        np.array([[1e300, -1e-300]], dtype=np.float64),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
    ids=["u8-3d", "u8-1d", "i8", "i16", "i32", "f32", "f64", "empty"],
)
def test_read_valid(tmp_path, arr, gz):
    path = write(tmp_path / ("a.idx.gz" if gz else "a.idx"), idx_bytes(arr), gz)
    got = read_idx(path)
    assert got.shape == arr.shape
    assert got.dtype == arr.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, arr)
    assert read_idx(str(path)).shape == arr.shape  # str paths too


def test_gzip_detected_by_content_not_name(tmp_path):
    arr = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "plain.gz", idx_bytes(arr), gz=False)), arr)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "packed.idx", idx_bytes(arr), gz=True)), arr)


IMAGES = np.arange(4 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(4, 28, 28)
GOOD = idx_bytes(IMAGES)
HEADER = 4 + 4 * 3


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("cut", [0, 1, 3, 4, 7, HEADER - 1, HEADER, HEADER + 1, len(GOOD) // 2, len(GOOD) - 1])
def test_truncated(tmp_path, cut, gz):
    path = write(tmp_path / f"cut{cut}.idx", GOOD[:cut], gz)
    err = expect_error(path, "truncated")
    if cut >= HEADER:
        assert f"expected {4 * 28 * 28} bytes of data, found {cut - HEADER}" in str(err)


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path, gz):
    expect_error(write(tmp_path / "long.idx", GOOD + b"\x00", gz), "trailing")
    expect_error(write(tmp_path / "longer.idx", GOOD + b"junk" * 100, gz), "trailing")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("magic", [b"\x01\x00", b"\x00\x01", b"\xff\xff", b"PK"])
def test_bad_magic(tmp_path, magic, gz):
    expect_error(write(tmp_path / "magic.idx", magic + GOOD[2:], gz), "magic")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("code", [0x00, 0x07, 0x0A, 0x0F, 0xFF])
def test_bad_dtype_code(tmp_path, code, gz):
    bad = GOOD[:2] + bytes([code]) + GOOD[3:]
    expect_error(write(tmp_path / "code.idx", bad, gz), f"0x{code:02x}")


def test_zero_dimensions(tmp_path):
    expect_error(write(tmp_path / "nodims.idx", b"\x00\x00\x08\x00", gz=False), "0 dimensions")


def test_wrong_dims_mismatch_payload(tmp_path):
    # Header says 5 images but only 4 follow: truncated; says 3: trailing bytes.
    five = GOOD[:4] + struct.pack(">I", 5) + GOOD[8:]
    expect_error(write(tmp_path / "five.idx", five, gz=False), "truncated")
    three = GOOD[:4] + struct.pack(">I", 3) + GOOD[8:]
    expect_error(write(tmp_path / "three.idx", three, gz=False), "trailing")


def test_huge_declared_size_fails_fast(tmp_path):
    head = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 2**32 - 1)
    expect_error(write(tmp_path / "huge.idx", head + b"\x00" * 64, gz=False), "truncated")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda z: z[: len(z) // 2],                               # stream cut short
        lambda z: z[:10] + bytes(b ^ 0xFF for b in z[10:40]) + z[40:],  # deflate data garbled
        lambda z: z[:-8] + bytes(b ^ 0x55 for b in z[-8:-4]) + z[-4:],  # CRC wrong
        lambda z: z[:3] + b"\xff" + z[4:],                        # reserved flag bits set
        lambda z: z[:2] + b"\x00" + z[3:],                        # unknown compression method
    ],
    ids=["cut", "garbled", "crc", "flags", "method"],
)
def test_corrupt_gzip(tmp_path, mangle):
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(mangle(gzip.compress(GOOD)))
    err = expect_error(path)
    assert isinstance(err, AipnetError)


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nope-idx3-ubyte.gz", "no such file")


def test_directory_is_an_error(tmp_path):
    d = tmp_path / "adir"
    d.mkdir()
    expect_error(d)


# ---------------------------------------------------------------- preprocessing

def test_preprocess_formula():
    imgs = np.arange(256, dtype=np.uint8).repeat(4)[: 784].reshape(1, 28, 28)
    x = preprocess(imgs)
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x[0, 0], imgs[0].astype(np.float32) / np.float32(255))
    assert x.min() == 0.0 and x.max() <= 1.0
    assert preprocess(imgs[:, None]).shape == (1, 1, 28, 28)


@pytest.mark.parametrize("bad", [np.zeros((2, 28, 28), np.float32), np.zeros((2, 27, 28), np.uint8),
                                 np.zeros((2, 3, 28, 28), np.uint8), np.zeros((28, 28), np.uint8)])
def test_preprocess_rejects(bad):
    with pytest.raises(DataError):
        preprocess(bad)


# ---------------------------------------------------------------- subset and loading

def test_class_names():
    assert len(CLASS_NAMES) == 10 and CLASS_NAMES[0] == "T-shirt/top" and CLASS_NAMES[9] == "Ankle boot"


def test_subset_is_balanced():
    images, labels, indices = load_subset()
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and indices.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [100] * 10
    assert len(np.unique(indices)) == 1000
    assert indices.min() >= 0 and indices.max() < 10000
    assert data.SUBSET_PATH.stat().st_size < 1 << 20


@pytest.mark.skipif(not FULL_DATA, reason="dataset-fashion-mnist not installed")
def test_subset_matches_full_test_split():
    images, labels, indices = load_subset()
    full_x, full_y = load_fashion_mnist_raw("test")
    assert full_x.shape == (10000, 28, 28) and full_y.shape == (10000,)
    np.testing.assert_array_equal(full_y[indices], labels)
    np.testing.assert_array_equal(full_x[indices], images)


@pytest.mark.skipif(not FULL_DATA, reason="dataset-fashion-mnist not installed")
def test_default_loads_full_test_split():
    x, y, source = load_fashion_mnist("test")
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
    assert DEFAULT_DATA_DIR in source


def test_fallback_to_subset_when_default_dir_lacks_data(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEFAULT_DATA_DIR", str(tmp_path))
    x, y, source = load_fashion_mnist()
    assert x.shape == (1000, 1, 28, 28) and x.dtype == np.float32
    assert np.bincount(y).tolist() == [100] * 10
    assert "subset" in source
    np.testing.assert_array_equal(x, preprocess(load_subset()[0]))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist("train")


def test_explicit_dir_without_files_is_an_error(tmp_path):
    with pytest.raises(DataError) as ei:
        load_fashion_mnist("test", data_dir=tmp_path)
    assert str(tmp_path) in str(ei.value) and "t10k-images-idx3-ubyte" in str(ei.value)


def test_explicit_dir_with_small_files(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    labs = np.array([0, 1, 2, 9, 8, 7], dtype=np.uint8)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(imgs), gz=True)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(labs), gz=False)  # plain works too
    x, y, source = load_fashion_mnist("test", data_dir=tmp_path)
    np.testing.assert_array_equal(x, preprocess(imgs))
    assert y.dtype == np.int64 and y.tolist() == labs.tolist()
    assert str(tmp_path) in source


def test_explicit_dir_inconsistent_files(tmp_path):
    imgs = np.zeros((6, 28, 28), dtype=np.uint8)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(imgs), gz=True)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5, np.uint8)), gz=True)
    with pytest.raises(DataError, match="5 labels for 6 images"):
        load_fashion_mnist("test", data_dir=tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.full(6, 10, np.uint8)), gz=True)
    with pytest.raises(DataError, match="labels outside"):
        load_fashion_mnist("test", data_dir=tmp_path)
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((6, 28, 27), np.uint8)), gz=True)
    with pytest.raises(DataError, match="28 x 28"):
        load_fashion_mnist("test", data_dir=tmp_path)


def test_unknown_split():
    with pytest.raises(DataError, match="split"):
        load_fashion_mnist("validation")


def test_corrupt_subset_file(tmp_path, monkeypatch):
    bad = tmp_path / "subset.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    monkeypatch.setattr(data, "SUBSET_PATH", bad)
    with pytest.raises(DataError, match="subset.npz"):
        load_subset()
    monkeypatch.setattr(data, "SUBSET_PATH", tmp_path / "gone.npz")
    with pytest.raises(DataError, match="gone.npz"):
        load_subset()


# ---------------------------------------------------------------- reference model metadata

def test_reference_model_subset_accuracy_matches_metadata():
    ort = pytest.importorskip("onnxruntime")
    onnx_path, meta_path = MODELS / "reference.onnx", MODELS / "reference.json"
    assert onnx_path.stat().st_size <= 25 * 2**20
    meta = json.loads(meta_path.read_text())
    assert meta["input"]["name"] == "input" and meta["output"]["name"] == "probs"
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    images, labels, _ = load_subset()
    probs = sess.run(["probs"], {"input": preprocess(images)})[0]
    assert probs.shape == (1000, 10)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    top1 = int((probs.argmax(1) == labels).sum())
    top5 = int((np.argsort(-probs, axis=1, kind="stable")[:, :5] == labels[:, None]).any(1).sum())
    rec = meta["accuracy"]["test_subset"]
    assert (top1, top5) == (rec["top1_correct"], rec["top5_correct"])
    assert rec["images"] == 1000 and rec["top1"] == top1 / 1000
    assert meta["accuracy"]["test_full"]["top1"] >= 0.91
