"""DrowsyNet (issue 7): masked conv kernels against the exact engine and a plain-numpy
recomputation of the documented mask formula (kernels/drowsy.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import aipnet
from aipnet.errors import KnobError
from aipnet.kernels.drowsy import TILE_CHANNELS, TILE_PIXELS
from cases import CASES, _rand, conv_case, graph

GRANS = ("neuron", "pixel", "channel", "tile")
CONV_CASES = [c for c in CASES if "conv" in c.tags and c.name.startswith("conv")]
MASK64 = (1 << 64) - 1


# -- the formula, in plain Python integers ------------------------------------------------
def _mix64(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _py_mix64(z: int) -> int:
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


GAMMA = 0x9E3779B97F4A7C15


def ref_keep_units(seed: int, image: int, layer: int, n_units: int, p: float) -> np.ndarray:
    """The documented generator, recomputed with Python ints and numpy uint64."""
    k = _py_mix64(GAMMA * (seed + 1))
    k = _py_mix64(k ^ ((GAMMA * (image + 1)) & MASK64))
    k = _py_mix64(k ^ ((GAMMA * (layer + 1)) & MASK64))
    units = np.arange(n_units, dtype=np.uint64) + np.uint64(1)
    h = _mix64(np.uint64(k) ^ (np.uint64(GAMMA) * units))
    thr = int(np.floor(p * (1 << 24)))
    return (h >> np.uint64(40)) >= np.uint64(thr)


def ref_keep(gran: str, seed: int, image: int, layer: int, m: int, p_count: int, p: float) -> np.ndarray:
    """M x P keep mask of one image."""
    if gran == "neuron":
        return ref_keep_units(seed, image, layer, m * p_count, p).reshape(m, p_count)
    if gran == "pixel":
        return np.broadcast_to(ref_keep_units(seed, image, layer, p_count, p)[None, :], (m, p_count))
    if gran == "channel":
        return np.broadcast_to(ref_keep_units(seed, image, layer, m, p)[:, None], (m, p_count))
    tr, tb = -(-m // TILE_CHANNELS), -(-p_count // TILE_PIXELS)
    t = ref_keep_units(seed, image, layer, tr * tb, p).reshape(tr, tb)
    rows = np.arange(m) // TILE_CHANNELS
    cols = np.arange(p_count) // TILE_PIXELS
    return t[rows][:, cols]


def run_pair(model, x, **knobs):
    exact = aipnet.Session(model, threads=2).run(x)
    sess = aipnet.Session(model, threads=2, **knobs)
    return exact, sess.run(x), sess


def check_masked(model, x, gran, p, seed=0, rescale=False, layer=0, offset=0):
    exact, got, sess = run_pair(model, x, drowsy=p, drowsy_granularity=gran, seed=seed, drowsy_rescale=rescale)
    n, m = exact.shape[:2]
    pc = int(np.prod(exact.shape[2:]))
    keep = np.stack([ref_keep(gran, seed, offset + i, layer, m, pc, p) for i in range(n)]).reshape(exact.shape)
    s = 1.0 / (1.0 - p) if rescale else 1.0
    want = np.where(keep, exact * s, 0.0)
    assert np.all(got[~keep] == 0.0), "dropped outputs must be exactly 0"
    scale = max(float(np.max(np.abs(want))), 1e-30)
    assert np.max(np.abs(got - want)) <= 1e-4 * scale
    return keep, sess


# -- tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: c.name)
def test_masked_equals_exact_times_documented_mask(case, gran):
    """Every conv case (groups, depthwise, 1-D, pads, dilations, fused ReLU/Clip)."""
    model = aipnet.load(case.model())
    x = case.feeds(3)["x"]
    keep, sess = check_masked(model, x, gran, 0.4, seed=3)
    layer = [rec for rec in sess.stats["layers"] if rec["op"] == "Conv"][0]
    assert layer["outputs_computed"] == int(keep.sum())


@pytest.mark.parametrize("gran", GRANS)
def test_p0_equals_exact_and_seeds(gran):
    case = conv_case("c", 8, (20, 20), 32, 3, pads=[1, 1, 1, 1], act="relu")
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    exact = aipnet.Session(model).run(x)
    np.testing.assert_array_equal(aipnet.Session(model, drowsy=0.0, drowsy_granularity=gran).run(x), exact)
    a = aipnet.Session(model, drowsy=0.5, drowsy_granularity=gran, seed=1).run(x)
    b = aipnet.Session(model, drowsy=0.5, drowsy_granularity=gran, seed=1).run(x)
    c = aipnet.Session(model, drowsy=0.5, drowsy_granularity=gran, seed=2).run(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("gran", GRANS)
def test_fresh_mask_per_image_and_fixed_mask_and_offset(gran):
    case = conv_case("c", 4, (24, 24), 32, 3, pads=[1, 1, 1, 1])
    model = aipnet.load(case.model())
    x1 = case.feeds(1)["x"]
    x = np.repeat(x1, 3, axis=0)
    y = aipnet.Session(model, drowsy=0.5, drowsy_granularity=gran).run(x)
    assert not np.array_equal(y[0] == 0, y[1] == 0)
    yf = aipnet.Session(model, drowsy=0.5, drowsy_granularity=gran, drowsy_fixed_mask=True).run(x)
    assert np.array_equal(yf[0], yf[1]) and np.array_equal(yf[0], yf[2])
    # image ids run on across batches: image 2 of a batch at 0 = image 0 of a batch at 2
    s = aipnet.Session(model, drowsy=0.5, drowsy_granularity=gran)
    np.testing.assert_array_equal(s.run(x1, image_offset=2)[0], y[2])
    with pytest.raises(KnobError, match="image_offset"):
        s.run(x1, image_offset=-1)


@pytest.mark.parametrize("gran", GRANS)
def test_dropped_fraction_within_binomial_tolerance(gran):
    case = conv_case("c", 4, (40, 40), 64, 3, pads=[1, 1, 1, 1])
    model = aipnet.load(case.model())
    x = case.feeds(8)["x"]
    p = 0.3
    sess = aipnet.Session(model, drowsy=p, drowsy_granularity=gran, seed=5)
    y = sess.run(x)
    m, pc = 64, 1600
    units = {"neuron": m * pc, "pixel": pc, "channel": m, "tile": 4 * 25}[gran] * x.shape[0]
    kept = np.mean([ref_keep(gran, 5, i, 0, m, pc, p).mean() for i in range(x.shape[0])])
    per_unit = {"neuron": 1, "pixel": m, "channel": pc, "tile": TILE_CHANNELS * TILE_PIXELS}[gran]
    assert abs((1 - kept) - p) <= 4 * np.sqrt(p * (1 - p) / units)
    rec = sess.stats["layers"][0]
    dense = x.shape[0] * m * pc * 4 * 9
    assert rec["macs"] + rec["macs_skipped"] == dense
    assert rec["macs"] == rec["outputs_computed"] * 4 * 9
    assert rec["outputs_computed"] == round(kept * x.shape[0] * m * pc)
    assert abs(rec["macs"] / dense - (1 - p)) <= 4 * np.sqrt(p * (1 - p) / units)
    assert per_unit >= 1 and np.all(y[(y != 0)] != 0)


@pytest.mark.parametrize("act", ["clip", "leaky"])
@pytest.mark.parametrize("gran", GRANS)
def test_dropped_is_zero_after_activations_that_move_zero(gran, act):
    w = _rand((16, 3, 3, 3), 1)
    if act == "clip":
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
        inits = {"w": w, "lo": np.array(0.5, np.float32), "hi": np.array(2.0, np.float32)}
    else:
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.1)]
        inits = {"w": w}
    model = aipnet.load(graph(nodes, {"x": (3, 10, 10)}, "y", inits))
    x = np.random.default_rng(0).standard_normal((2, 3, 10, 10)).astype(np.float32)
    check_masked(model, x, gran, 0.5, rescale=True)


@pytest.mark.parametrize("gran", GRANS)
def test_rescale(gran):
    assert aipnet.Session(aipnet.load("reference")).knobs.drowsy_rescale  # the measured default
    case = conv_case("c", 3, (16, 16), 16, 3, act="relu", pads=[1, 1, 1, 1])
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    check_masked(model, x, gran, 0.25, rescale=True)
    a = aipnet.Session(model, drowsy=0.25, drowsy_granularity=gran, drowsy_rescale=False).run(x)
    b = aipnet.Session(model, drowsy=0.25, drowsy_granularity=gran, drowsy_rescale=True).run(x)
    np.testing.assert_allclose(b, a / 0.75, rtol=1e-6)


def test_layer_index_counts_conv_nodes():
    """Two convs: the second one's mask uses layer index 1."""
    w1, w2 = _rand((8, 3, 3, 3), 1), _rand((8, 8, 3, 3), 2)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])]
    model = aipnet.load(graph(nodes, {"x": (3, 9, 9)}, "y", {"w1": w1, "w2": w2}))
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    y = aipnet.Session(model, drowsy=0.5, drowsy_granularity="neuron", seed=4).run(x)
    zero = (y[0] == 0).reshape(8, 81)
    keep2 = ref_keep("neuron", 4, 0, 1, 8, 81, 0.5)
    assert np.all(zero[~keep2])


def test_reference_model_all_granularities():
    from aipnet.data import load_fashion_mnist

    model = aipnet.load("reference")
    images = load_fashion_mnist("test")[0][:16]
    for gran in GRANS:
        sess = aipnet.Session(model, drowsy=0.3, drowsy_granularity=gran)
        y = sess.run(images)
        assert y.shape == (16, 10) and np.all(np.isfinite(y))
        tot = sess.stats["total"]
        convs = [r for r in sess.stats["layers"] if r["op"] == "Conv"]
        assert len(convs) == 4 and all(r["macs_skipped"] > 0 for r in convs)
        assert tot["macs_skipped"] == sum(r["macs_skipped"] for r in sess.stats["layers"])


@pytest.mark.parametrize("bad", [{"drowsy": 0.5, "drowsy_granularity": "block"}, {"drowsy": 1.5}])
def test_bad_knobs_are_knob_errors(bad):
    with pytest.raises(KnobError):
        aipnet.Session(aipnet.load("reference"), **bad)


@settings(max_examples=20, deadline=None)
@given(
    cin=st.integers(1, 5), cout=st.integers(1, 40), hw=st.integers(3, 19), k=st.sampled_from([1, 3]),
    stride=st.integers(1, 2), p=st.floats(0.01, 0.95), gran=st.sampled_from(GRANS),
    seed=st.integers(0, 2**31), group=st.sampled_from([1, 2]),
)
def test_property_masked_conv(cin, cout, hw, k, stride, p, gran, seed, group):
    cin, cout = cin * group, cout * group
    case = conv_case("h", cin, (hw, hw), cout, k, strides=[stride, stride], pads=[k // 2] * 4, group=group)
    model = aipnet.load(case.model())
    x = case.feeds(2, seed % 100)["x"]
    keep, sess = check_masked(model, x, gran, p, seed=seed)
    rec = sess.stats["layers"][0]
    kdim = (cin // group) * k * k
    assert rec["macs"] == int(keep.sum()) * kdim
    assert rec["macs"] + rec["macs_skipped"] == keep.size * kdim


# -- pixel, channel and tile: the implicit-GEMM kernel's branches ---------------------------
@pytest.mark.parametrize("gran", ["pixel", "channel", "tile"])
@pytest.mark.parametrize("p", [0.03, 0.5, 0.97])
@pytest.mark.parametrize("shape", [
    # K = 360: two K blocks; 399 pixels: several pixel runs per image, odd tile rows
    dict(cin=40, hw=(19, 21), cout=24, k=3, pads=[1, 1, 1, 1]),
    # 20 channels a group: weight panels split where tile rows start, across groups
    dict(cin=6, hw=(11, 11), cout=60, k=3, pads=[1, 1, 1, 1], group=3),
    # K = 2: packing without a whole 8-row block; unpadded input read in place
    dict(cin=2, hw=(30, 30), cout=5, k=1),
    # stride 2 whose windows need a bottom/right pad beyond the input's
    dict(cin=3, hw=(14, 13), cout=17, k=4, strides=[2, 3], pads=[0, 2, 3, 1], dilations=[1, 2]),
], ids=["kblocks", "groups_tile_rows", "k2_nopad", "asym"])
def test_gemm_granularities_shapes(shape, p, gran):
    """Nearly all kept (whole spans), half, nearly none (empty panels and pixel lists)."""
    s = dict(shape)
    case = conv_case("g", s.pop("cin"), s.pop("hw"), s.pop("cout"), s.pop("k"), act="relu", **s)
    check_masked(aipnet.load(case.model()), case.feeds(2)["x"], gran, p, seed=11)


@pytest.mark.parametrize("gran", ["pixel", "channel", "tile"])
def test_conv2d_drowsy_prepares_weights_itself(gran):
    """Weights that are no constant are prepared per call: same result as prepared once."""
    from aipnet.kernels.drowsy import GRANULARITY_CODES, conv2d_drowsy, drop_threshold, prepare_gemm

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 9, 9)).astype(np.float32)
    w = rng.standard_normal((20, 3, 3, 3)).astype(np.float32)
    code = GRANULARITY_CODES[gran]
    args = (x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 2, (9, 9), 1, 0.0, 0.0, code, (5, 0, 0, 0, drop_threshold(0.5)))
    y1, m1, c1 = conv2d_drowsy(*args, 2.0, None)
    y2, m2, c2 = conv2d_drowsy(*args, 2.0, prepare_gemm(w, 2, code))
    np.testing.assert_array_equal(y1, y2)
    kept = sum(int(ref_keep(gran, 5, i, 0, 20, 81, 0.5).sum()) for i in range(2))
    assert (m1, c1) == (m2, c2) == (kept * 27, kept)
