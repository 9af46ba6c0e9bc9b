"""The C backend (aipnet._native) against onnxruntime on the shared case list and the
light models, from ONNX and from .aipn; the standalone build's aipnet-run against the
Python session; the C API's error statuses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import aipnet
from aipnet import aipn_format, native
from aipnet.errors import AipnetError, InputError, KnobError, ModelFileError
from aipnet.registry import supported_ops
from cases import CASES
from light_models import LIGHT_MODELS, randomized_light_model
from util import assert_close, ort_run

CSRC = Path(__file__).resolve().parent.parent / "csrc"
pytestmark = pytest.mark.skipif(not native.available(), reason="aipnet._native is not built")


def _outs(out):
    return list(out.values()) if isinstance(out, dict) else [out]


def test_same_ops_as_numba():
    """Every ONNX op of the shared case list runs in C; engine-private ops that AIP or
    DrowsyNet add to the Numba backend (not ONNX ops) are outside this contract."""
    c_ops = set(native.supported_ops())
    onnx_ops = {n.op_type for case in CASES for n in case.model().graph.node}
    assert onnx_ops <= c_ops, sorted(onnx_ops - c_ops)
    assert c_ops <= set(supported_ops("numba")), sorted(c_ops - set(supported_ops("numba")))
    assert set(supported_ops("c")) == c_ops


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_matches_onnxruntime(case, tmp_path):
    model = case.model()
    path = tmp_path / "m.aipn"
    aipn_format.save(aipnet.load(model).graph, path)
    from_onnx = aipnet.Session(aipnet.load(model), backend="c", threads=2)
    from_aipn = aipnet.Session(aipnet.load(path), backend="c", threads=1)
    for batch in (1, 3):
        feeds = case.feeds(batch)
        ref = ort_run(model, feeds)
        for sess in (from_onnx, from_aipn):
            for got, want in zip(_outs(sess.run(feeds)), ref):
                assert_close(got, want, f"{case.name} batch {batch}")


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime(name):
    model, feeds = randomized_light_model(name)
    ref = ort_run(model, feeds)[0]
    got = aipnet.Session(aipnet.load(model), backend="c").run(feeds)
    assert_close(got, ref, name)


def test_stats_contract_matches_numba():
    model = next(c for c in CASES if c.name == "small_cnn")
    feeds = model.feeds(2)
    m = aipnet.load(model.model())
    py = aipnet.Session(m)
    c = aipnet.Session(m, backend="c")
    py.run(feeds)
    c.run(feeds)
    assert c.stats["traffic_source"] == "analytic"
    assert [la["name"] for la in c.stats["layers"]] == [la["name"] for la in py.stats["layers"]]
    for k in ("macs", "weight_bytes_read", "weight_bytes_total", "act_bytes_read", "act_bytes_written", "outputs"):
        assert c.stats["total"][k] == py.stats["total"][k], k
    assert c.stats["total"]["time_s"] > 0


def test_bad_inputs_and_knobs():
    m = aipnet.load(next(c for c in CASES if c.name == "small_cnn").model())
    sess = aipnet.Session(m, backend="c")
    with pytest.raises(InputError):
        sess.run(np.zeros((1, 3, 15, 16), np.float32))
    with pytest.raises(InputError):
        sess.run(np.zeros((1, 3, 16, 16), np.float64))
    with pytest.raises(KnobError):
        aipnet.Session(m, backend="c", threads=0)
    with pytest.raises(KnobError, match="drowsy"):
        aipnet.Session(m, backend="c", drowsy=1.0)
    # DrowsyNet runs in C (tests/test_c_drowsy.py); per-layer AIP knobs do not yet
    name = next(n.name for n in m.graph.nodes if n.op == "Conv")
    with pytest.raises(KnobError, match="per-layer aip_threshold"):
        aipnet.Session(m, backend="c", layers={name: {"aip_threshold": 0.5}})


def test_hostile_bytes_get_errors():
    data = aipn_format.dumps(aipnet.load(next(c for c in CASES if c.name == "small_cnn").model()).graph)
    step = max(1, len(data) // 400)
    for n in list(range(0, 600)) + list(range(600, len(data), step)):
        with pytest.raises(AipnetError):
            native.NativeModel.from_bytes(data[:n])
    head = int.from_bytes(data[32:40], "little") + 64
    for i in range(head):
        bad = bytearray(data)
        bad[i] ^= 0xFF
        with pytest.raises(AipnetError):
            native.NativeModel.from_bytes(bytes(bad))
    bad = bytearray(data)
    bad[8] = 9
    with pytest.raises(ModelFileError, match="newer"):
        native.NativeModel.from_bytes(bytes(bad))
    native.NativeModel.from_bytes(data)


@pytest.fixture(scope="module")
def aipnet_run():
    if shutil.which("make") is None or shutil.which("cc") is None:
        pytest.skip("no make or C compiler")
    subprocess.run(["make", "-s", "-C", str(CSRC), "-j2", "aipnet-run"], check=True, capture_output=True)
    return CSRC / "aipnet-run"


def test_aipnet_run_matches_python(aipnet_run, tmp_path):
    case = next(c for c in CASES if c.name == "small_cnn")
    m = aipnet.load(case.model())
    path = tmp_path / "m.aipn"
    aipn_format.save(m.graph, path)
    x = case.feeds(3)["x"]
    want = aipnet.Session(m).run(x)
    np.save(tmp_path / "x.npy", x)
    subprocess.run([str(aipnet_run), str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], check=True)
    assert_close(np.load(tmp_path / "y.npy"), want, "aipnet-run npy")
    x.tofile(tmp_path / "x.raw")
    subprocess.run([str(aipnet_run), str(path), str(tmp_path / "x.raw"), str(tmp_path / "y.raw")], check=True)
    assert_close(np.fromfile(tmp_path / "y.raw", np.float32).reshape(want.shape), want, "aipnet-run raw")
    bad = subprocess.run([str(aipnet_run), str(tmp_path / "x.npy"), str(tmp_path / "x.npy"), str(tmp_path / "z")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "not an .aipn file" in bad.stderr


# -- special values (0, -0, +-inf, NaN) as onnxruntime, as the Numba backend is tested --
from onnx import helper  # noqa: E402

from cases import graph  # noqa: E402
from test_special_values import UNARY, same_values, special_input  # noqa: E402


@pytest.mark.parametrize("op,attrs", UNARY, ids=lambda v: v if isinstance(v, str) else "")
def test_unary_special_values(op, attrs):
    model = graph([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (3, 6, 6)}, "y")
    x = special_input((2, 3, 6, 6))
    same_values(aipnet.Session(aipnet.load(model), backend="c").run(x), ort_run(model, {"x": x})[0], op)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Sum"])
def test_binary_special_values(op):
    model = graph([helper.make_node(op, ["a", "b"], ["y"])], {"a": (4, 8), "b": (4, 8)}, "y")
    feeds = {"a": special_input((2, 4, 8), 1), "b": special_input((2, 4, 8), 2)}
    same_values(aipnet.Session(aipnet.load(model), backend="c").run(feeds), ort_run(model, feeds)[0], op)


def test_clip_and_fused_relu_special_values():
    model = graph([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"x": (4, 8)}, "y",
                  {"lo": np.array(-1, np.float32), "hi": np.array(1, np.float32)})
    x = special_input((2, 4, 8), 3)
    same_values(aipnet.Session(aipnet.load(model), backend="c").run(x), ort_run(model, {"x": x})[0], "Clip")
    model = graph([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
                  {"x": (3, 4, 4)}, "y", {"w": np.ones((2, 3, 1, 1), np.float32)})
    x = special_input((1, 3, 4, 4), 4)
    same_values(aipnet.Session(aipnet.load(model), backend="c").run(x), ort_run(model, {"x": x})[0], "Conv+Relu")
