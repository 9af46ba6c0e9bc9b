"""Bad input gets a clear AipnetError naming the problem: from Python, and from the CLI
as one line on stderr with a nonzero exit and no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

import aipnet
from aipnet.errors import (InputError, KnobError, ModelError, ModelFileError, UnsupportedAttributeError,
                           UnsupportedOpError)
from cases import CASES, graph


def small_model():
    return next(c for c in CASES if c.name == "small_cnn").model()


def relu_model(**kw):
    return graph([helper.make_node("Relu", ["x"], ["y"])], {"x": (3, 4)}, "y", **kw)


# -- model files ---------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        aipnet.load(tmp_path / "nope.onnx")


def test_directory(tmp_path):
    with pytest.raises(ModelFileError, match="directory"):
        aipnet.load(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, I am not a model", bytes(range(256)) * 4])
def test_not_onnx(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelFileError, match="bad.onnx"):
        aipnet.load(p)


def test_truncated_at_every_offset(tmp_path):
    data = relu_model().SerializeToString()
    p = tmp_path / "t.onnx"
    for cut in range(len(data)):
        p.write_bytes(data[:cut])
        with pytest.raises(aipnet.AipnetError):
            aipnet.load(p)
    p.write_bytes(data)
    aipnet.load(p)  # the whole file loads


def test_truncated_large_model(tmp_path):
    data = small_model().SerializeToString()
    p = tmp_path / "t.onnx"
    for cut in range(0, len(data), max(1, len(data) // 300)):
        p.write_bytes(data[:cut])
        with pytest.raises(aipnet.AipnetError):
            aipnet.load(p)


def test_unknown_op_names_op_node_and_supported():
    m = graph([helper.make_node("FancyOp", ["x"], ["y"], name="fancy1")], {"x": (3,)}, "y")
    with pytest.raises(UnsupportedOpError) as e:
        aipnet.load(m)
    msg = str(e.value)
    assert "FancyOp" in msg and "fancy1" in msg and "Conv" in msg and "Gemm" in msg


def test_other_domain_op():
    m = graph([helper.make_node("Relu", ["x"], ["y"], domain="com.example")], {"x": (3,)}, "y")
    with pytest.raises(UnsupportedOpError, match="com.example"):
        aipnet.load(m)


@pytest.mark.parametrize("opset", [5, 26])
def test_opset_out_of_range(opset):
    with pytest.raises(UnsupportedAttributeError, match=f"opset {opset}"):
        aipnet.load(relu_model(opset=opset))


def test_unsupported_attribute_value():
    w = np.ones((2, 3, 3, 3), np.float32)
    m = graph([helper.make_node("Conv", ["x", "w"], ["y"], auto_pad="SIDEWAYS", name="c1")], {"x": (3, 8, 8)}, "y", {"w": w})
    with pytest.raises(UnsupportedAttributeError, match="auto_pad.*SIDEWAYS"):
        aipnet.Session(aipnet.load(m)).run(np.zeros((1, 3, 8, 8), np.float32))


def test_3d_conv_is_refused():
    w = np.ones((2, 3, 1, 1, 1), np.float32)
    m = graph([helper.make_node("Conv", ["x", "w"], ["y"])], {"x": (3, 2, 2, 2)}, "y", {"w": w})
    with pytest.raises(InputError, match="1-D and 2-D"):
        aipnet.Session(aipnet.load(m)).run(np.zeros((1, 3, 2, 2, 2), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(bad):
    w = np.ones((2, 3), np.float32)
    w[1, 2] = bad
    m = graph([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": (2,)}, "y", {"w": w})
    with pytest.raises(ModelError, match="'w'.*non-finite"):
        aipnet.load(m)


def test_dangling_name():
    m = graph([helper.make_node("Add", ["x", "ghost"], ["y"], name="add1")], {"x": (3,)}, "y")
    with pytest.raises(ModelError, match="ghost"):
        aipnet.load(m)


def test_huge_constant_is_refused():
    shape = helper.make_node("Constant", [], ["s"], value=onnx.numpy_helper.from_array(np.array([1 << 20, 1 << 20], np.int64)))
    m = graph([shape, helper.make_node("ConstantOfShape", ["s"], ["c"]), helper.make_node("Add", ["x", "c"], ["y"])],
              {"x": (3,)}, "y")
    with pytest.raises(InputError, match="more than"):
        aipnet.load(m)


# -- inputs ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn():
    return aipnet.Session(aipnet.load(small_model()))


def test_wrong_dtype(cnn):
    with pytest.raises(InputError, match="float64.*float32"):
        cnn.run(np.zeros((1, 3, 16, 16)))
    with pytest.raises(InputError, match="int64"):
        cnn.run(np.zeros((1, 3, 16, 16), np.int64))


def test_wrong_rank(cnn):
    with pytest.raises(InputError, match="rank 3"):
        cnn.run(np.zeros((3, 16, 16), np.float32))


def test_wrong_shape(cnn):
    with pytest.raises(InputError, match=r"dim 2 must be 16"):
        cnn.run(np.zeros((1, 3, 15, 16), np.float32))


def test_wrong_input_name(cnn):
    with pytest.raises(InputError, match="'image'.*unknown.*\\['x'\\]"):
        cnn.run({"image": np.zeros((1, 3, 16, 16), np.float32)})


def test_not_an_array(cnn):
    with pytest.raises(InputError, match="numpy array"):
        cnn.run([[1.0]])


def test_any_batch_size(cnn):
    for b in (1, 2, 5):
        assert cnn.run(np.zeros((b, 3, 16, 16), np.float32)).shape == (b, 10)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", True])
def test_bad_threads(threads):
    with pytest.raises(KnobError, match="threads"):
        aipnet.Session(aipnet.load(relu_model()), threads=threads)


def test_bad_backend():
    with pytest.raises(KnobError, match="backend"):
        aipnet.Session(aipnet.load(relu_model()), backend="gpu")


def test_non_finite_inputs_propagate(cnn):
    x = np.zeros((1, 3, 16, 16), np.float32)
    x[0, 0, 0, 0] = np.nan
    assert np.isnan(cnn.run(x)).any()


# -- CLI ---------------------------------------------------------------------------------
def cli(*args):
    return subprocess.run([sys.executable, "-m", "aipnet.cli", *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert lines[0].startswith("aipnet: error:")
    for n in needles:
        assert n in lines[0], lines[0]


def test_cli_errors(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12garbage")
    assert_one_line_error(cli("info", tmp_path / "missing.onnx"), "missing.onnx", "no such file")
    assert_one_line_error(cli("info", bad), "bad.onnx")
    model = tmp_path / "m.onnx"
    onnx.save(small_model(), model)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 16, 16)))
    assert_one_line_error(cli("run", model, "--input", x), "float64")
    np.save(x, np.zeros((1, 3, 16, 15), np.float32))
    assert_one_line_error(cli("run", model, "--input", x), "dim 3 must be 16")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert_one_line_error(cli("run", model, "--input", tmp_path / "junk.npy"), "junk.npy")
    assert_one_line_error(cli("run", model, "--input", x, "--threads", "0"), "threads")
    unknown = tmp_path / "u.onnx"
    onnx.save(graph([helper.make_node("Bogus", ["x"], ["y"])], {"x": (3,)}, "y"), unknown)
    assert_one_line_error(cli("info", unknown), "Bogus")


# -- knobs -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,needle", [
    ({"aip_fraction": 0.0}, "aip_fraction"), ({"aip_fraction": 1.5}, "aip_fraction"),
    ({"aip_refine": 0}, "aip_refine"), ({"aip_threshold": float("nan")}, "aip_threshold"),
    ({"aip_mode": "fast"}, "aip_mode"), ({"aip_policy": "best"}, "aip_policy"),
    ({"drowsy": 1.0}, "drowsy"), ({"drowsy": -0.1}, "drowsy"), ({"drowsy": float("nan")}, "drowsy"),
    ({"drowsy_granularity": "row"}, "drowsy_granularity"), ({"seed": -1}, "seed"),
    ({"aip": "yes"}, "aip"), ({"turbo": True}, "turbo"),
])
def test_bad_knobs(kw, needle):
    with pytest.raises(KnobError, match=needle):
        aipnet.Session(aipnet.load(relu_model()), **kw)
