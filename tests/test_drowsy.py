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


# -- the neuron kernel's paths (kernels/drowsy_neuron.py) ------------------------------------
# name, conv case, the layout branch it takes (neuron_layout's fields)
NEURON_CASES = [
    # direct, the image in two channel blocks (one block's region would pass L1)
    (conv_case("nb_blocks", 128, (20, 20), 16, 3, pads=[1, 1, 1, 1], act="relu"), dict(direct=True, nblk=2)),
    # direct, K chunks of fewer tap rows than the kernel's
    (conv_case("nb_tap_chunks", 16, (15, 70), 8, 11), dict(direct=True, partial_taps=True)),
    # direct, an output row wider than the runs (three runs a row), two tap-row strides
    (conv_case("nb_wide_rows", 8, (4, 150), 12, 3, pads=[1, 1, 1, 1], strides=[2, 1]), dict(direct=True, nbr=3)),
    # direct, odd channel counts: a partial channel chunk, windows cut short at its end
    (conv_case("nb_odd_channels", 24, (9, 11), 73, 3, pads=[0, 1, 2, 1]), dict(direct=True)),
    # direct with groups; a 1 x 1 output
    (conv_case("nb_groups", 16, (7, 9), 10, 3, group=2, pads=[1, 1, 1, 1]), dict(direct=True)),
    (conv_case("nb_tiny", 8, (3, 3), 9, 3), dict(direct=True)),
    # copied rows: column dilation; few input channels with stride (VGG-f conv1's path)
    (conv_case("nb_rows_dilated", 8, (12, 14), 20, 3, dilations=[1, 2], pads=[1, 2, 1, 2]), dict(direct=False)),
    (conv_case("nb_rows_strided", 3, (31, 29), 40, 5, strides=[3, 2], act="clip6"), dict(direct=False)),
    # copied rows too long for one K chunk
    (conv_case("nb_rows_chunks", 50, (12, 12), 11, 5, pads=[2, 2, 2, 2]), dict(direct=False, chunks=True)),
    # copied rows: one patch, the whole unpadded image (its last run ends at the image's last
    # float: the vector copy reads past it, into the buffer's slack)
    (conv_case("nb_rows_whole_image", 3, (5, 5), 21, 5), dict(direct=False)),
]


def _neuron_layout_of(case):
    from aipnet.kernels.drowsy_neuron import neuron_layout

    m = case.model()
    attrs = {a.name: list(a.ints) for a in m.graph.node[0].attribute}
    w = next(i for i in m.graph.initializer if i.name == "w")
    cout, cg, kh, kw = w.dims
    h, wd = case.inputs["x"][1:]
    pads = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    dh, dw = attrs.get("dilations", [1, 1])
    oh = (h + pads[0] + pads[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pads[1] + pads[3] - (kw - 1) * dw - 1) // sw + 1
    direct, cb, nblk, ni, kn, hp, wp, nry, nbr, chunk_len = neuron_layout(cg, kh, kw, sh, sw, dh, dw, oh, ow)
    return dict(direct=direct, nblk=nblk, partial_taps=ni < kh, nbr=nbr, chunks=not direct and chunk_len < kn)


@pytest.mark.parametrize("p", [0.02, 0.5, 0.98])
@pytest.mark.parametrize("case,path", NEURON_CASES, ids=lambda c: getattr(c, "name", ""))
def test_neuron_kernel_paths(case, path, p):
    """Shapes that reach each branch of the neuron kernel, at nearly every output kept
    (bicliques everywhere), half, and nearly none (left-over groups of many channels)."""
    lay = _neuron_layout_of(case)
    assert {k: lay[k] for k in path} == path
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    keep, sess = check_masked(model, x, "neuron", p, seed=7)
    assert sess.stats["layers"][0]["outputs_computed"] == int(keep.sum())


def _check_groups(keep, c0, nc, q0, nb, kn=1000):
    """Run _neuron_groups on one work item and check its groups: every kept pair once
    (the last group's padding repeats its last pair), lanes fed the right weight row
    and patch."""
    from aipnet.kernels import drowsy_neuron as dn
    from aipnet.kernels._dot8 import PARTITIONS

    slots = dn.NEURON_SLOTS
    xq = np.arange(slots, dtype=np.int64) * 7 + 3
    ngm = dn.NEURON_CHANNELS * slots // 8 + 2
    offs, dst = np.full(16 * ngm, -1, np.int64), np.full(8 * ngm, -1, np.int64)
    idx = np.full(ngm, -1, np.int64)
    bm = np.array([sum(int(keep[c0 + c, q0 + t]) << t for t in range(nb)) for c in range(nc)], np.uint64)
    ng = dn._neuron_groups(bm, c0, nc, kn, xq, offs, dst, idx)
    want = {(c, t) for c in range(nc) for t in range(nb) if keep[c0 + c, q0 + t]}
    seen = []
    for g in range(ng):
        k = idx[g]
        if k == dn.DOT8_BI:
            rows = [0, 0, 0, 0, 1, 1, 1, 1]
            pats = [0, 1, 2, 3, 0, 1, 2, 3]
            # a channel and one of its next NEURON_WINDOW channels; four distinct pixels
            ca, cb = int(dst[8 * g]) // slots, int(dst[8 * g + 4]) // slots
            assert 0 < cb - ca <= dn.NEURON_WINDOW
            assert len({int(dst[8 * g + b]) % slots for b in range(4)}) == 4
        elif k == dn.DOT8_ANY:
            rows, pats = list(range(8)), list(range(8))
        else:
            rows = [j for j, n in enumerate(PARTITIONS[k]) for _ in range(n)]
            pats = list(range(8))
        lanes = []
        for i in range(8):
            c, t = divmod(int(dst[8 * g + i]), slots)
            assert offs[16 * g + rows[i]] == (c0 + c) * kn
            assert offs[16 * g + 8 + pats[i]] == xq[t]
            lanes.append((c, t))
        if g == ng - 1:  # padding: copies of one pair (the last listed)
            real = list(dict.fromkeys(lanes))
            assert len({pair for pair in lanes if lanes.count(pair) > 1}) <= 1
            lanes = real
        seen += lanes
    assert len(seen) == len(set(seen)) and set(seen) == want
    assert ng == -(-len(want) // 8)


@pytest.mark.parametrize("p", [0.0, 0.02, 0.5, 0.9, 1.0])
def test_neuron_groups_list_every_kept_pair_once(p):
    from aipnet.kernels.drowsy_neuron import NEURON_CHANNELS, NEURON_SLOTS

    rng = np.random.default_rng(int(p * 100))
    keep = (rng.random((2 * NEURON_CHANNELS + 9, 3 * NEURON_SLOTS)) >= p).astype(np.uint8)
    for c0, nc in ((0, NEURON_CHANNELS), (NEURON_CHANNELS, 1), (NEURON_CHANNELS + 1, 2), (2 * NEURON_CHANNELS, 9)):
        for q0, nb in ((0, NEURON_SLOTS), (5, 1), (NEURON_SLOTS + 3, 13), (2 * NEURON_SLOTS, 54)):
            _check_groups(keep, c0, nc, q0, nb)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.97, 1.0])
def test_neuron_keep_bits_are_the_documented_mask(p):
    """The neuron kernel's own mask words (eight units per vector, any run length up to
    64 and any start) hold the documented generator's bits."""
    from numba import njit

    from aipnet.kernels._dot8 import keep_bits
    from aipnet.kernels.drowsy import drop_threshold, layer_key

    @njit
    def bits(key, thr, u, n):
        return keep_bits(key, thr, u, n)

    key, thr = np.uint64(layer_key(9, 4, 2)), np.uint64(drop_threshold(p))
    ref = ref_keep_units(9, 4, 2, 3000, p)
    for u in (0, 1, 7, 64, 999, 2900):
        for n in (1, 2, 7, 8, 9, 31, 54, 63, 64):
            want = sum(int(ref[u + t]) << t for t in range(n))
            assert int(bits(key, thr, u, n)) == want
    # far units: GAMMA * (unit + 1) wraps modulo 2**64
    u = (1 << 40) + 5
    k = _py_mix64(_py_mix64(_py_mix64(GAMMA * 10) ^ (GAMMA * 5) & MASK64) ^ (GAMMA * 3) & MASK64)
    hs = [_py_mix64(k ^ (GAMMA * (u + t + 1)) & MASK64) >> 40 for t in range(64)]
    assert int(bits(key, thr, u, 64)) == sum(int(h >= int(thr)) << t for t, h in enumerate(hs))


def test_neuron_groups_long_left_over_runs():
    """A channel whose pairs all go to left-over groups, after others pending: its groups
    reach past 64 pending pairs (the run-start bits must not wrap)."""
    from aipnet.kernels.drowsy_neuron import NEURON_SLOTS

    keep = np.zeros((3, NEURON_SLOTS), np.uint8)
    keep[0, :3] = 1
    keep[2, :] = 1
    _check_groups(keep, 0, 3, 0, NEURON_SLOTS)
    keep[1, 3:9] = 1
    _check_groups(keep, 0, 3, 0, NEURON_SLOTS)


@pytest.mark.parametrize("cin,strides", [(8, [1, 1]), (3, [2, 3])], ids=["direct", "rows"])
@pytest.mark.parametrize("act", ["clip", "leaky"])
def test_neuron_dropped_stay_zero_under_activations(cin, strides, act):
    """Bias and activation go on the kept sums only: a Clip whose floor is above 0 (or a
    LeakyRelu, with rescaling) must leave the dropped outputs exactly 0."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=strides)]
    inits = {"w": _rand((19, cin, 3, 3), 1), "b": _rand((19,), 2, 0.1)}
    if act == "clip":
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
        inits.update(lo=np.array(0.25, np.float32), hi=np.array(1.0, np.float32))
    else:
        nodes.append(helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.1))
    model = aipnet.load(graph(nodes, {"x": (cin, 17, 23)}, "y", inits))
    x = np.random.default_rng(4).standard_normal((2, cin, 17, 23)).astype(np.float32)
    keep, sess = check_masked(model, x, "neuron", 0.5, seed=5, rescale=act == "leaky")
    assert sess.stats["layers"][0]["outputs_computed"] == int(keep.sum())


@pytest.mark.parametrize("case", [NEURON_CASES[0][0], NEURON_CASES[7][0]], ids=lambda c: c.name)
def test_neuron_special_values_stay_in_their_patches(case):
    """inf and NaN inputs reach exactly the kept outputs whose patches hold them (padding,
    zero weights and vector tails never multiply a real value: 0 * inf would be NaN)."""
    model = aipnet.load(case.model())
    x = case.feeds(1)["x"]
    x[0, 0, 2, 3] = np.inf
    x[0, -1, -3, -2] = np.nan
    x[0, 1, 5, 1] = -np.inf
    exact = aipnet.Session(model).run(x)
    got = aipnet.Session(model, drowsy=0.5, drowsy_granularity="neuron", seed=2, drowsy_rescale=False).run(x)
    m, pc = exact.shape[1], int(np.prod(exact.shape[2:]))
    keep = ref_keep("neuron", 2, 0, 0, m, pc, 0.5).reshape(exact.shape)
    want = np.where(keep, exact, 0.0)
    assert np.isnan(want).any() and (np.isinf(want).any() or np.isinf(exact).sum() == 0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4 * np.abs(want[fin]).max())


@pytest.mark.parametrize("backend", ["numba", "c"])
@pytest.mark.parametrize("granularity", ["neuron", "tile"])
def test_huge_padded_plane_is_refused(backend, granularity):
    """A conv whose zero-padded plane has 2^31 floats or more (huge dilations and pads) is past
    the masked kernels' limit: a clear UnsupportedOpError naming the node, not a 17 GB
    allocation or 32-bit offsets that wrap; depthwise (its own direct kernel) still runs."""
    from aipnet.errors import UnsupportedOpError

    kw = dict(dilations=[2048, 2048], pads=[32768] * 4)
    model = conv_case("huge_plane", 2, (3, 4), 4, 33, **kw).model()
    x = np.random.default_rng(4).standard_normal((1, 2, 3, 4)).astype(np.float32)
    sess = aipnet.Session(aipnet.load(model), backend=backend, drowsy=0.5, drowsy_granularity=granularity)
    with pytest.raises(UnsupportedOpError, match="padded input plane"):
        sess.run({"x": x})
    dw = conv_case("huge_plane_dw", 2, (3, 4), 2, 33, group=2, **kw).model()
    y = aipnet.Session(aipnet.load(dw), backend=backend, drowsy=0.5, drowsy_granularity=granularity).run({"x": x})
    assert y.shape == (1, 2, 3, 4)
