"""Exactness against onnxruntime: every hand-built case at batch 1 and 3, and the real
architectures of the onnx wheel with random, well-scaled weights."""

from __future__ import annotations

import numpy as np
import pytest

import aipnet
from cases import CASES
from light_models import LIGHT_MODELS, randomized_light_model
from util import assert_close, ort_run


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_matches_onnxruntime(case, batch):
    model = case.model()
    feeds = case.feeds(batch)
    ref = ort_run(model, feeds)
    sess = aipnet.Session(aipnet.load(model))
    out = sess.run(feeds)
    outs = list(out.values()) if isinstance(out, dict) else [out]
    for got, want in zip(outs, ref):
        assert_close(got, want, case.name)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime(name):
    model, feeds = randomized_light_model(name)
    ref = ort_run(model, feeds)[0]
    got = aipnet.Session(aipnet.load(model)).run(feeds)
    assert_close(got, ref, name)
    # random weights must make the output informative, or the comparison proves little
    assert np.std(ref) > 1e-3 * np.max(np.abs(ref)), f"{name}: near-constant reference output"


def test_stats_follow_the_contract():
    case = next(c for c in CASES if c.name == "small_cnn")
    sess = aipnet.Session(aipnet.load(case.model()))
    sess.run(case.feeds(2))
    st = sess.stats
    assert st["traffic_source"] == "analytic"
    keys = {"name", "op", "macs", "macs_skipped", "weight_bytes_read", "weight_bytes_total",
            "act_bytes_read", "act_bytes_written", "outputs", "outputs_refined", "time_s"}
    assert all(keys <= set(layer) for layer in st["layers"])
    convs = [layer for layer in st["layers"] if layer["op"] == "Conv"]
    # conv1: 2 images x 8 outputs x 16x16 x (3x5x5) MACs; BN folded into conv2, relu fused
    assert convs[0]["macs"] == 2 * 8 * 16 * 16 * 75
    assert convs[0]["activation"] == "relu"
    assert [layer["op"] for layer in st["layers"]].count("BatchNormalization") == 0
    assert st["total"]["macs"] == sum(layer["macs"] for layer in st["layers"])
    fc = [layer for layer in st["layers"] if layer["op"] == "Gemm"]
    assert fc[0]["weight_bytes_read"] == (32 * 256 + 32) * 4


# -- the exact conv's two kernels (kernels/conv.py: engine_for) ------------------------------
# name, conv case arguments (cin, hw, cout, k, attrs), the kernel engine_for picks
ENGINE_SHAPES = [
    # K = 576: three K blocks; 40 outputs: the last panel has 8 lanes (half kernel); padded
    ("kblocks_half_panel", (64, (15, 13), 40, 3, {"pads": [1, 1, 1, 1]}), "gemm"),
    # groups of 24 channels: panels split where global channel numbers cross 16
    ("groups_24", (48, (14, 14), 72, 3, {"group": 3, "pads": [1, 0, 2, 1], "strides": [1, 2]}), "gemm"),
    # no border: the input read in place; dilation; K = 45 (not a multiple of 8)
    ("dilated_inplace", (5, (30, 31), 33, 3, {"dilations": [2, 3]}), "gemm"),
    # stride 4, 11x11 (VGG-f's conv1 shape, small)
    ("s4_11x11", (3, (63, 63), 64, 11, {"strides": [4, 4]}), "gemm"),
    # pointwise with many pixels: BLAS on the input itself
    ("pointwise_blas", (64, (24, 24), 48, 1, {}), "blas"),
    # pointwise, few pixels; strided 1x1
    ("pointwise_small", (256, (7, 7), 32, 1, {}), "gemm"),
    ("pointwise_stride2", (32, (20, 20), 40, 1, {"strides": [2, 2]}), "gemm"),
    # 1-D
    ("conv1d_long", (16, (301,), 24, (5,), {"pads": [2, 2], "strides": [1]}), "gemm"),
]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("name,args,engine", ENGINE_SHAPES, ids=[s[0] for s in ENGINE_SHAPES])
def test_conv_engines_match_onnxruntime(name, args, engine, threads):
    """Shapes large enough to run in parallel, on the kernel engine_for picks for them."""
    from aipnet.kernels.conv import engine_for
    from cases import conv_case

    cin, hw, cout, k, attrs = args
    case = conv_case(name, cin, hw, cout, k, act="relu", **attrs)
    model = aipnet.load(case.model())
    sess = aipnet.Session(model, threads=threads)
    conv = next(st.impl for st in sess.plan_for({"x": (3, cin, *hw)}).steps if st.node.op == "Conv")
    kk = k if isinstance(k, tuple) else (k, k)
    w_shape = (cout, cin // attrs.get("group", 1), *(kk if len(kk) == 2 else (1, *kk)))
    assert engine_for(w_shape, conv.strides, conv.pads, conv.out_hw) == engine
    assert (conv._prepared is not None) == (engine == "gemm")
    feeds = case.feeds(3)
    assert_close(sess.run(feeds), ort_run(case.model(), feeds)[0], name)


def _ref_conv(x, w, b, strides, pads, dilations, group, out_hw):
    """Plain float64 convolution (one window at a time), no activation."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + pads[0] + pads[2] + 8, wd + pads[1] + pads[3] + 8))
    xp[:, :, pads[0]:pads[0] + h, pads[1]:pads[1] + wd] = x
    y = np.zeros((n, m) + tuple(out_hw))
    mg = m // group
    for oy in range(out_hw[0]):
        for ox in range(out_hw[1]):
            iy, ix = oy * strides[0], ox * strides[1]
            win = xp[:, :, iy:iy + (kh - 1) * dilations[0] + 1:dilations[0], ix:ix + (kw - 1) * dilations[1] + 1:dilations[1]]
            for g in range(group):
                y[:, g * mg:(g + 1) * mg, oy, ox] = np.einsum("nchw,mchw->nm", win[:, g * cg:(g + 1) * cg],
                                                              w[g * mg:(g + 1) * mg].astype(np.float64))
    return y + b[None, :, None, None]


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_weights_prepared_per_call(threads):
    """Weights that are no constant are packed per call: same result as packed once, and
    as a plain float64 convolution (LeakyRelu fused)."""
    from aipnet.kernels.conv import conv2d
    from aipnet.kernels.conv_gemm import prepare

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 12, 17, 19)).astype(np.float32)
    w = rng.standard_normal((36, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(36).astype(np.float32)
    geo = ((2, 1), (1, 2, 0, 1), (1, 2), 2, (8, 18))
    y = conv2d(x, w, b, *geo, 3, 0.0, 0.1, threads=threads)
    np.testing.assert_array_equal(y, conv2d(x, w, b, *geo, 3, 0.0, 0.1, threads=threads, prepared=prepare(w, 2)))
    ref = _ref_conv(x, w, b, *geo)
    assert_close(y, np.where(ref < 0, 0.1 * ref, ref), "leaky")


@pytest.mark.parametrize("group,cin", [(1, 2), (2, 4)])
def test_numba_conv_huge_padded_plane(group, cin):
    """Huge dilations with huge pads: the padded plane (65539 x 65540 floats) would be past
    the implicit GEMM's limit and 17 GB, so the direct kernel runs instead (vs onnxruntime)."""
    from cases import conv_case

    model = conv_case("huge_plane", cin, (3, 4), 4, 33, group=group, dilations=[2048, 2048], pads=[32768] * 4,
                      act="relu").model()
    feeds = {"x": np.random.default_rng(4).standard_normal((2, cin, 3, 4)).astype(np.float32)}
    sess = aipnet.Session(aipnet.load(model), backend="numba", threads=2)
    assert_close(sess.run(feeds), ort_run(model, feeds)[0], "huge plane")
