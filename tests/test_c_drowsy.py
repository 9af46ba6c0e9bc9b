"""DrowsyNet in the C backend (csrc/drowsy.c) against the Numba backend, the reference
semantics: the same masks bit for bit (same seed, layer index, image ids), outputs equal
within 1e-5 relative, identical zero patterns and identical counts (macs, macs_skipped,
outputs_computed); plus the C API's knob checks and aipnet-run's drowsy flags."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import aipnet
from aipnet import native
from aipnet.errors import KnobError
from cases import CASES, _rand, conv_case, graph
from test_drowsy import NEURON_CASES, ref_keep

pytestmark = pytest.mark.skipif(not native.available(), reason="aipnet._native is not built")

GRANS = ("neuron", "pixel", "channel", "tile")
COUNTS = ("macs", "macs_skipped", "outputs_computed")
CONV_CASES = [c for c in CASES if "conv" in c.tags and c.name.startswith("conv")]
# shapes that reach every branch of the C kernels: partial 16-channel tiles and 64-pixel
# blocks, tiles straddling groups, K past the kernels' K chunks with a tail, many blocks
EXTRA = [
    conv_case("big_tiles", 12, (19, 21), 40, 3, pads=[1, 1, 1, 1], act="relu"),
    conv_case("groups_straddle", 12, (11, 13), 36, 3, group=2, pads=[1, 1, 1, 1]),
    conv_case("groups_many", 8, (9, 9), 32, 3, group=4, pads=[1, 1, 1, 1]),
    conv_case("long_k", 33, (10, 10), 20, 3, pads=[0, 1, 1, 0]),
    conv_case("depthwise_big", 16, (17, 17), 32, 3, group=16, pads=[1, 1, 1, 1], act="clip6"),
    conv_case("strided_11", 3, (47, 47), 24, 11, strides=[4, 4]),
    # neuron kernel's direct (channels-last, kw * C/group a multiple of 8) layout: several
    # pixel runs per output row, two channel chunks, row dilation, groups, K in two chunks
    conv_case("direct_runs", 8, (13, 40), 72, 3, pads=[1, 2, 0, 1], strides=[1, 1], act="relu"),
    conv_case("direct_dil_groups", 16, (15, 17), 20, 3, dilations=[2, 1], pads=[2, 1, 2, 1], group=2, strides=[1, 2]),
    conv_case("direct_k_chunks", 64, (9, 20), 8, 5, pads=[2, 2, 2, 2]),
    # the panel engine's gathers (unit stride, strides 2 and 4 by shuffles, others by a
    # hardware gather; long and short segments), row groups of 1..6 rows (M not a multiple
    # of 6 or 16, fewer than 6 rows, odd rows per group) and its two schedules at 2 threads
    # (fused per block from 8 blocks on, else gathers then items)
    conv_case("stride3_odd_rows", 5, (23, 26), 13, 3, strides=[3, 3], pads=[1, 0, 1, 2], act="relu"),
    conv_case("stride2_long_rows", 4, (20, 70), 23, 3, strides=[2, 2], pads=[1, 1, 1, 1]),
    conv_case("many_blocks_few_rows", 3, (20, 60), 5, 3, pads=[1, 1, 1, 1], act="clip6"),
    conv_case("groups_odd_rows", 6, (12, 15), 10, 3, group=2, pads=[1, 1, 1, 1]),
    # the padded input split in stride phases: a left pad past the stride with a dilation
    # (taps in both phases, some past the image), stride 3 without pads (the input itself
    # fits but is copied into phases), a 1-D stride 4
    conv_case("phases_pad_past_stride", 5, (17, 30), 12, 3, strides=[1, 2], dilations=[1, 2], pads=[1, 3, 0, 2]),
    conv_case("phases_stride3_fit", 4, (14, 14), 10, 5, strides=[3, 3], act="relu"),
    conv_case("phases_conv1d_s4", 3, (203,), 9, (7,), strides=[4], pads=[5, 2]),
    # pixel's windows (8 consecutive floats compacted to the kept pixels among them): several
    # blocks, the gathers split between threads (a window's lanes past 16 in the last row of
    # a split); a plane under 8 floats (gathered slot by slot)
    conv_case("windows_s2_blocks", 3, (31, 45), 7, 5, strides=[2, 2], pads=[2, 2, 2, 2], act="relu"),
    conv_case("windows_tiny_plane", 3, (2, 3), 5, 1),
]
# the C neuron kernel's layouts and item shapes (csrc/drowsy_neuron.c): runs of the image
# across rows (2 runs of 49 and 50 pixels of 9-pixel rows), two runs of 35 pixels per row, K
# chunks of all 3 tap rows of channel blocks of 80 + 80 + 72, of all 5 of 48 + 48 + 32 and of
# 32 + 32, of 6 + 5 tap rows of 16 channels (runs across rows) and of 5 + 4 (runs of a row),
# dilated tap runs (cg % 8 == 0), a run of 5 pixels, and the copy layout: from the input
# itself (no pads, a spare row under the taps), from a padded copy, K in two chunks, dilated
# single taps
NEURON = [
    conv_case("neuron_rows", 16, (11, 9), 20, 3, pads=[1, 1, 1, 1], act="relu"),
    conv_case("neuron_wide", 8, (4, 70), 12, 3, pads=[1, 1, 1, 1]),
    conv_case("neuron_cblocks", 232, (9, 10), 12, 3, pads=[1, 1, 1, 1]),
    conv_case("neuron_5x5_cblocks", 128, (10, 12), 12, 5, pads=[2, 2, 2, 2]),
    conv_case("neuron_5x5_runs", 64, (27, 27), 12, 5, pads=[2, 2, 2, 2], act="relu"),
    conv_case("neuron_tap_chunks", 16, (11, 32), 12, 11, pads=[5, 5, 5, 5], act="relu"),
    conv_case("neuron_tap_chunks_row", 16, (9, 51), 10, 9, pads=[4, 4, 4, 4]),
    conv_case("neuron_dil_w", 16, (12, 14), 20, 3, dilations=[1, 2], pads=[1, 2, 1, 2]),
    conv_case("neuron_narrow", 8, (3, 7), 10, 3),
    conv_case("neuron_copy_alias", 3, (24, 23), 20, 5, strides=[2, 2], act="relu"),
    conv_case("neuron_copy_pad", 5, (12, 12), 12, 3, pads=[1, 1, 1, 1], act="clip6"),
    conv_case("neuron_copy_k_chunks", 45, (9, 9), 16, 3, pads=[1, 1, 1, 1]),
    conv_case("neuron_copy_dil", 3, (13, 13), 10, 3, dilations=[2, 2], group=1),
    # the cover's channel groups of 4 (triples, pairs, singles): items of exactly 64 pixels
    # (a quad or a single ending on pixel 63), channel counts of 4k + 3, 4k + 1 and 4k + 2
    # (per group), direct and copy layouts, strides, a dilation, groups
    conv_case("neuron_cover_64px", 8, (3, 64), 23, 3, pads=[1, 1, 1, 1], act="relu"),
    conv_case("neuron_cover_copy_64px", 3, (6, 130), 13, 3, strides=[1, 2]),
    conv_case("neuron_cover_groups", 16, (9, 11), 12, 3, group=2, dilations=[1, 2], pads=[1, 2, 1, 2]),
]


def both(model, x, offset=0, **knobs):
    a = aipnet.Session(model, backend="numba", threads=2, **knobs)
    b = aipnet.Session(model, backend="c", threads=2, **knobs)
    return a.run(x, image_offset=offset), a.stats, b.run(x, image_offset=offset), b.stats


def assert_same(ya, sa, yb, sb):
    scale = max(float(np.max(np.abs(ya))), 1e-30)
    np.testing.assert_allclose(yb, ya, rtol=1e-5, atol=1e-5 * scale)
    # zero patterns: identical except where a fused activation meets a value ~ 0
    differ = (ya == 0) != (yb == 0)
    assert not np.any(differ & (np.maximum(np.abs(ya), np.abs(yb)) > 1e-5 * scale))
    assert [la["name"] for la in sa["layers"]] == [lb["name"] for lb in sb["layers"]]
    for la, lb in zip(sa["layers"], sb["layers"]):
        for key in COUNTS:
            assert la.get(key) == lb.get(key), (la["name"], key, la.get(key), lb.get(key))


@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("case", CONV_CASES + EXTRA, ids=lambda c: c.name)
def test_c_equals_numba_per_conv(case, gran):
    """Every conv case (groups, depthwise, 1-D, pads, dilations, fused ReLU/Clip) at batch
    3 with an image offset: C outputs, zero patterns and counts equal Numba's, and the
    dropped outputs are exactly those of the documented mask."""
    model = aipnet.load(case.model())
    x = case.feeds(3)["x"]
    for p, seed, rescale, offset in ((0.4, 3, True, 7), (0.75, 11, False, 0)):
        ya, sa, yb, sb = both(model, x, offset, drowsy=p, drowsy_granularity=gran, seed=seed, drowsy_rescale=rescale)
        assert_same(ya, sa, yb, sb)
        n, m = yb.shape[:2]
        pc = int(np.prod(yb.shape[2:]))
        keep = np.stack([ref_keep(gran, seed, offset + i, 0, m, pc, p) for i in range(n)]).reshape(yb.shape)
        assert np.all(yb[~keep] == 0.0)
        conv = [rec for rec in sb["layers"] if rec["op"] == "Conv"][0]
        assert conv["outputs_computed"] == int(keep.sum())


@pytest.mark.parametrize("case", [c for c in EXTRA if c.name.startswith("phases_")], ids=lambda c: c.name)
def test_c_exact_stride_phases(case):
    """The exact conv on the stride-phase layout equals Numba's (and is 1 and 2 threads alike)."""
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    ya = aipnet.Session(model, backend="numba").run(x)
    for t in (1, 2):
        np.testing.assert_allclose(aipnet.Session(model, backend="c", threads=t).run(x), ya, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", NEURON, ids=lambda c: c.name)
def test_c_neuron_layouts(case):
    """The neuron kernel's layouts at rates near 0 (nearly every group full, triples), 0.3 and
    0.5 (triples, bicliques and singles) and near 1 (nearly empty items), batch 3: outputs,
    zeros and counts as Numba's."""
    model = aipnet.load(case.model())
    x = case.feeds(3)["x"]
    for p, seed in ((0.02, 5), (0.3, 8), (0.5, 6), (0.98, 7)):
        ya, sa, yb, sb = both(model, x, 2, drowsy=p, drowsy_granularity="neuron", seed=seed)
        assert_same(ya, sa, yb, sb)
        keep = np.stack([ref_keep("neuron", seed, 2 + i, 0, yb.shape[1], int(np.prod(yb.shape[2:])), p)
                         for i in range(3)]).reshape(yb.shape)
        assert np.all(yb[~keep] == 0.0)


@pytest.mark.parametrize("name", ["neuron_rows", "neuron_copy_alias"])
def test_c_neuron_special_values(name):
    """inf and NaN inputs: the same NaN and infinity positions as Numba (a sum's NaN or
    infinity does not depend on its order), dropped outputs 0."""
    from test_special_values import special_input

    case = next(c for c in NEURON if c.name == name)
    model = aipnet.load(case.model())
    x = special_input(case.feeds(2)["x"].shape, 3)
    ya = aipnet.Session(model, backend="numba", drowsy=0.5, drowsy_granularity="neuron").run(x)
    yb = aipnet.Session(model, backend="c", drowsy=0.5, drowsy_granularity="neuron").run(x)
    assert np.array_equal(np.isnan(ya), np.isnan(yb)) and np.array_equal(np.isinf(ya), np.isinf(yb))
    assert np.array_equal(ya[np.isinf(ya)], yb[np.isinf(yb)])
    fin = np.isfinite(ya)
    np.testing.assert_allclose(yb[fin], ya[fin], rtol=1e-5, atol=1e-5 * max(float(np.max(np.abs(ya[fin]))), 1e-30))


@pytest.mark.parametrize("case", [c for c, _ in NEURON_CASES], ids=lambda c: c.name)
def test_c_equals_numba_neuron_paths(case):
    """The shapes that reach each branch of the Numba neuron kernel (tests/test_drowsy.py),
    nearly all, half and nearly none of the outputs kept."""
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    for p in (0.02, 0.5, 0.98):
        assert_same(*both(model, x, 3, drowsy=p, drowsy_granularity="neuron", seed=7))


@pytest.mark.parametrize("gran", GRANS)
@pytest.mark.parametrize("batch", [1, 3])
def test_fixed_mask_and_rescale_off(gran, batch):
    case = EXTRA[0]
    model = aipnet.load(case.model())
    x = case.feeds(batch)["x"]
    for knobs in ({"drowsy_fixed_mask": True}, {"drowsy_rescale": False}, {"drowsy_fixed_mask": True, "seed": 5}):
        ya, sa, yb, sb = both(model, x, 4, drowsy=0.5, drowsy_granularity=gran, **knobs)
        assert_same(ya, sa, yb, sb)
    # a fixed mask: every image of the batch has the zeros of image id 0
    yb = aipnet.Session(model, backend="c", drowsy=0.5, drowsy_granularity=gran, drowsy_fixed_mask=True).run(
        np.repeat(x[:1], 3, axis=0), image_offset=9)
    assert np.array_equal(yb[0], yb[1]) and np.array_equal(yb[0], yb[2])


@pytest.mark.parametrize("gran", GRANS)
def test_whole_model_layer_indices(gran):
    """A model with several convs: layer index = position among the Conv nodes."""
    model = aipnet.load(next(c for c in CASES if c.name == "small_cnn").model())
    x = next(c for c in CASES if c.name == "small_cnn").feeds(2)["x"]
    ya, sa, yb, sb = both(model, x, 3, drowsy=0.3, drowsy_granularity=gran, seed=1)
    assert_same(ya, sa, yb, sb)
    assert sum(1 for rec in sb["layers"] if "outputs_computed" in rec) >= 2


def test_p0_is_exact_and_same_seed_same_output():
    case = EXTRA[0]
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    exact = aipnet.Session(model, backend="c").run(x)
    np.testing.assert_array_equal(aipnet.Session(model, backend="c", drowsy=0.0, drowsy_granularity="tile").run(x), exact)
    a = aipnet.Session(model, backend="c", drowsy=0.5, seed=1).run(x)
    b = aipnet.Session(model, backend="c", drowsy=0.5, seed=1, threads=1).run(x)
    c = aipnet.Session(model, backend="c", drowsy=0.5, seed=2).run(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def _two_convs():
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1])]
    inits = {"w1": _rand((20, 5, 3, 3), 1), "b1": _rand((20,), 2, 0.1), "w2": _rand((18, 20, 3, 3), 3)}
    m = graph(nodes, {"x": (5, 12, 12)}, "y", inits)
    for i, n in enumerate(m.graph.node):
        n.name = f"conv{i}"
    return aipnet.load(m)


@pytest.mark.parametrize("gran", GRANS)
def test_leaky_and_no_activation(gran):
    """The epilogue's activations applied in registers (16 lanes) and per lane (a last panel of
    fewer than 16 pixels): LeakyRelu fused, and no activation."""
    w = _rand((21, 4, 3, 3), 1)
    for nodes in ([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                   helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.1)],
                  [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])]):
        model = aipnet.load(graph(nodes, {"x": (4, 11, 13)}, "y", {"w": w}))
        x = np.random.default_rng(0).standard_normal((2, 4, 11, 13)).astype(np.float32)
        assert_same(*both(model, x, 2, drowsy=0.4, drowsy_granularity=gran, seed=4))


@pytest.mark.parametrize("gran", GRANS)
def test_nothing_kept(gran):
    """p close to 1: masks that keep nothing (no pixel, no channel, no tile) give all zeros and
    no work, in every group; masks that keep a few outputs match Numba."""
    case = EXTRA[1]   # groups_straddle: 2 groups
    model = aipnet.load(case.model())
    x = case.feeds(2)["x"]
    ya, sa, yb, sb = both(model, x, 0, drowsy=0.999, drowsy_granularity=gran, seed=2)
    assert_same(ya, sa, yb, sb)
    conv = [rec for rec in sb["layers"] if rec["op"] == "Conv"][0]
    n, m = yb.shape[:2]
    pc = int(np.prod(yb.shape[2:]))
    keep = np.stack([ref_keep(gran, 2, i, 0, m, pc, 0.999) for i in range(n)])
    assert conv["outputs_computed"] == int(keep.sum())
    if not keep.any():
        assert not yb.any() and conv["macs"] == 0
    ya, sa, yb, sb = both(model, x, 0, drowsy=0.9, drowsy_granularity=gran, seed=2)
    assert_same(ya, sa, yb, sb)


def test_per_layer_rates_from_config():
    model = _two_convs()
    convs = [n.name for n in model.graph.nodes if n.op == "Conv"]
    x = np.random.default_rng(0).standard_normal((2, 5, 12, 12)).astype(np.float32)
    layers = {convs[0]: {"drowsy": 0.6, "drowsy_granularity": "tile"},
              convs[1]: {"drowsy_granularity": "neuron", "drowsy_rescale": False}}
    for p in (0.0, 0.3):
        ya, sa, yb, sb = both(model, x, 1, drowsy=p, drowsy_granularity="channel", layers=layers)
        assert_same(ya, sa, yb, sb)
    with pytest.raises(KnobError, match="per-layer aip_threshold"):
        aipnet.Session(model, backend="c", layers={convs[0]: {"aip_threshold": 0.5}})


def test_c_api_checks_drowsy_knobs():
    from aipnet.native import NativeModel, _check, ffi, lib

    model = _two_convs()
    c0, c1 = [n.name for n in model.graph.nodes if n.op == "Conv"]
    nm = NativeModel(model)
    out = ffi.new("aipn_session **")

    def status(**fields):
        cfg = ffi.new("aipn_config *")
        lib.aipn_config_default(cfg)
        assert cfg.drowsy_granularity == 1 and cfg.drowsy_rescale == 1 and cfg.drowsy == 0.0
        keep = []
        for k, v in fields.items():
            if k == "layers":
                arr = ffi.new("aipn_layer_knobs[]", len(v))
                for rec, (name, rate, g, r) in zip(arr, v):
                    s = ffi.new("char[]", name.encode())
                    keep.append(s)
                    rec.name, rec.drowsy, rec.drowsy_granularity, rec.drowsy_rescale = s, rate, g, r
                cfg.layers, cfg.n_layers = arr, len(v)
                keep.append(arr)
            else:
                setattr(cfg, k, v)
        st = lib.aipn_session_new(nm.ptr, cfg, out)
        if st == 0:
            lib.aipn_session_free(out[0])
        return st, ffi.string(lib.aipn_last_error()).decode()

    assert status(drowsy=0.5, drowsy_granularity=3)[0] == 0
    for bad in ({"drowsy": 1.0}, {"drowsy": -0.1}, {"drowsy": float("nan")}, {"drowsy_granularity": 4},
                {"drowsy_rescale": 2}, {"drowsy_fixed_mask": -1}, {"layers": [("nope", 0.5, -1, -1)]},
                {"layers": [(c0, 1.5, -1, -1)]}, {"layers": [(c1, 0.5, 7, -1)]}):
        st, msg = status(**bad)
        assert st == lib.AIPN_ERR_ARGUMENT, bad
        assert "drowsy" in msg or "Conv" in msg
    assert status(layers=[(c0, 0.5, 0, 0), (c1, -1.0, -1, -1)])[0] == 0
    with pytest.raises(KnobError):
        _check(lib.aipn_session_set_image_offset(ffi.NULL, 3))


RUN = Path(__file__).resolve().parent.parent / "csrc" / "aipnet-run"


@pytest.mark.skipif(not RUN.exists(), reason="csrc/aipnet-run is not built (make -C csrc)")
def test_aipnet_run_drowsy_flags(tmp_path):
    from aipnet import aipn_format

    model = _two_convs()
    path = tmp_path / "m.aipn"
    path.write_bytes(aipn_format.dumps(model.graph))
    x = np.random.default_rng(1).standard_normal((2, 5, 12, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for gran in GRANS:
        for extra, knobs in (([], {}), (["--no-drowsy-rescale", "--drowsy-fixed-mask", "--seed", "9"],
                                        {"drowsy_rescale": False, "drowsy_fixed_mask": True, "seed": 9})):
            r = subprocess.run([str(RUN), str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--drowsy",
                                "0.4", "--drowsy-granularity", gran, *extra], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            want = aipnet.Session(model, drowsy=0.4, drowsy_granularity=gran, **knobs).run(x)
            got = np.load(tmp_path / "y.npy")
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(want))))
    r = subprocess.run([str(RUN), str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--drowsy", "1.5"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "drowsy" in r.stderr


@pytest.mark.skipif(not RUN.exists(), reason="csrc/aipnet-run is not built (make -C csrc)")
@pytest.mark.parametrize("gran", ["neuron", "pixel", "channel", "tile"])
def test_thread_counts_give_the_same_outputs(tmp_path, gran):
    """The panel engine's schedules (whole blocks from runs of consecutive blocks shared out
    between 1 to 5 threads, with helpers; gathers then items) and the neuron kernel's items
    (each thread with its work buffers in the scratch, sized for the pool's threads) compute
    every output the same way: identical outputs whatever the thread count (aipnet-run: the
    Python sessions cap the threads at the cores)."""
    from aipnet import aipn_format

    for case in (c for c in EXTRA if c.name in ("many_blocks_few_rows", "big_tiles")):   # 19 and 7 blocks
        model = aipnet.load(case.model())
        path = tmp_path / "m.aipn"
        path.write_bytes(aipn_format.dumps(model.graph))
        np.save(tmp_path / "x.npy", case.feeds(2)["x"])
        outs = []
        for threads in (1, 2, 3, 5):
            r = subprocess.run([str(RUN), str(path), str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "--threads",
                                str(threads), "--drowsy", "0.5", "--drowsy-granularity", gran, "--image-offset", "5"],
                               capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
            outs.append(np.load(tmp_path / "y.npy"))
        for y in outs[1:]:
            np.testing.assert_array_equal(y, outs[0])


def test_cli_eval_backend_c_drowsy(tmp_path):
    """`aipnet eval --backend c --drowsy` runs (the same numbers as the Numba backend)."""
    import json
    import sys

    outs = []
    for backend in ("numba", "c"):
        r = subprocess.run([sys.executable, "-m", "aipnet.cli", "eval", "reference", "--limit", "16", "--batch", "8",
                            "--backend", backend, "--drowsy", "0.5", "--drowsy-granularity", "tile", "--json"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))
    a, b = outs
    assert a["predictions"] == b["predictions"]
    for la, lb in zip(a["stats"]["layers"], b["stats"]["layers"]):
        for key in COUNTS:
            assert la.get(key) == lb.get(key), (la["name"], key)
