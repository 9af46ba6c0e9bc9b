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
from cases import CASES, conv_case
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


# shapes that reach every branch of the exact conv's panel engine (csrc/conv_panels.c): a last
# block of 1..16 pixels merged into the one before (a narrow 5-pixel panel, a whole 16-pixel
# one), its fifth panel in a thread's room or, past the room, the gathers-then-items schedule;
# the input read in place (no pads, stride 1) or copied (stride 3: split in stride phases; stride
# 2); packed weights with groups of rows that are not multiples of
# 6, K in two chunks with a shorter tail, several conv groups, batch > 1; strides with
# dilations and asymmetric pads, a 1-D conv of several blocks, a single output pixel
PANEL_CASES = [
    conv_case("merged_tail_narrow", 5, (7, 19), 13, 3, pads=[1, 1, 1, 1], act="relu"),
    conv_case("merged_tail_panel", 4, (12, 12), 8, 1),
    conv_case("alias_stride1", 7, (13, 14), 10, 3),
    conv_case("alias_stride3", 3, (12, 24), 7, 3, strides=[3, 3]),
    conv_case("stride2_no_pads", 6, (13, 13), 9, 1, strides=[2, 2]),
    conv_case("packed_k_chunks", 41, (9, 10), 14, 3, pads=[1, 1, 1, 1], act="clip6"),
    conv_case("packed_groups", 12, (11, 13), 22, 3, group=2, pads=[1, 0, 1, 2]),
    conv_case("dilated_strided", 5, (15, 17), 7, 3, strides=[2, 1], dilations=[2, 3], pads=[2, 1, 0, 3]),
    conv_case("conv1d_blocks", 4, (150,), 9, (5,), strides=[2], dilations=[2], pads=[3, 1]),
    conv_case("one_pixel", 2, (3, 3), 3, 3, group=1),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("case", PANEL_CASES, ids=lambda c: c.name)
def test_exact_conv_panel_paths(case, threads):
    model = case.model()
    sess = aipnet.Session(aipnet.load(model), backend="c", threads=threads)
    for batch in (1, 2):
        feeds = case.feeds(batch, seed=batch)
        for _ in range(2):   # the second run reuses the weights packed by the first
            assert_close(sess.run(feeds), ort_run(model, feeds)[0], f"{case.name} batch {batch}")


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


def test_exact_conv_thread_counts(aipnet_run, tmp_path):
    """The panel engine's schedules for 1 to 5 threads (whole blocks in rooms of 4 or 5 panels,
    or gathers then items when the rooms would not fit) give identical outputs (aipnet-run:
    the Python sessions cap the threads at the cores)."""
    for case in PANEL_CASES[:2]:
        model = case.model()
        path = tmp_path / "m.aipn"
        aipn_format.save(aipnet.load(model).graph, path)
        x = case.feeds(2)["x"]
        np.save(tmp_path / "x.npy", x)
        outs = []
        for threads in (1, 2, 3, 5):
            subprocess.run([str(aipnet_run), str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--threads",
                            str(threads)], check=True)
            outs.append(np.load(tmp_path / "y.npy"))
        assert_close(outs[0], ort_run(model, {"x": x})[0], case.name)
        for y in outs[1:]:
            np.testing.assert_array_equal(y, outs[0])


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


def test_exact_conv_weights_from_input():
    """Weights that are a graph input, not a constant: packed again at every run, also when
    the caller's buffer is the same one with new values (groups, batch > 1)."""
    model = graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], group=2)],
                  {"x": (6, 9, 11), "w": (3, 3, 3)}, "y")
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_value = 8
    sess = aipnet.Session(aipnet.load(model), backend="c", threads=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 6, 9, 11)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    for _ in range(3):
        assert_close(sess.run({"x": x, "w": w}), ort_run(model, {"x": x, "w": w})[0], "weights from input")
        w[...] = rng.standard_normal(w.shape)


def test_exact_conv_fallback_past_int32_planes():
    """A padded plane of 2^31 floats or more (here 65539 x 65540: dilated taps, big pads) is
    past the panel engine's 32-bit offsets: im2col + sgemm, with groups and batch > 1."""
    model = conv_case("huge_plane", 2, (3, 4), 4, 33, group=2, dilations=[2048, 2048], pads=[32768] * 4,
                      act="relu").model()
    sess = aipnet.Session(aipnet.load(model), backend="c", threads=2)
    feeds = {"x": np.random.default_rng(4).standard_normal((2, 2, 3, 4)).astype(np.float32)}
    assert_close(sess.run(feeds), ort_run(model, feeds)[0], "huge plane")


def test_exact_conv_sessions_in_threads():
    """Two sessions of one model run at once in two threads: each plan has its own scratch
    (packed weights, the engine's state), so both stay exact."""
    import threading

    case = next(c for c in PANEL_CASES if c.name == "packed_groups")
    model = case.model()
    m = aipnet.load(model)
    feeds = [case.feeds(2, seed=s) for s in (5, 6)]
    refs = [ort_run(model, f)[0] for f in feeds]
    errors = []

    def work(i):
        sess = aipnet.Session(m, backend="c", threads=1)
        try:
            for _ in range(20):
                assert_close(sess.run(feeds[i]), refs[i], f"thread {i}")
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
