"""The implicit-GEMM engine's weight panels (kernels/conv_gemm.py, kernels/_simd.py) with
every partial last panel: a panel of 1 .. 16 used lanes (1 .. 8 take the 8-lane kernel
``mk_half``, 9 .. 16 the 16-lane one), each with register tiles of every row count, in the
exact conv and in DrowsyNet's channel granularity (whose kept channels are packed into
panels per image, the last one partial), plus pixel and tile; groups, strides, dilations,
1 x 1 and tiny shapes. Kept outputs must equal a plain numpy convolution up to float
summation order, dropped ones be 0, and the counts be the work done."""

from __future__ import annotations

import numpy as np
import pytest

import aipnet
from aipnet import native
from aipnet.kernels._simd import HALF_ROWS, TILE_ROWS
from aipnet.kernels.conv_gemm import conv_gemm, conv_image, pixel_offsets, prepare, windows
from aipnet.kernels.drowsy import CHANNEL, channel_items, prepare_gemm
from cases import conv_case
from test_drowsy import check_masked

RNG = np.random.default_rng(7)


def ref_conv(x, w, b, strides, pads, dil, group):
    """Plain numpy convolution (N x C x H x W, pads = (top, left, bottom, right)), ReLU."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dil
    pt, pl, pb, pr = pads
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    mg = m // group
    y = np.zeros((n, m, oh, ow))
    for g in range(group):
        for i in range(kh):
            for j in range(kw):
                win = xp[:, g * cg:(g + 1) * cg, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
                y[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", win, w[g * mg:(g + 1) * mg, :, i, j])
    return np.maximum(y + b[None, :, None, None], 0.0), (oh, ow)


def _data(cin, hw, cout, k, group=1):
    x = RNG.standard_normal((2, cin, *hw)).astype(np.float32)
    w = RNG.standard_normal((cout, cin // group, k, k)).astype(np.float32)
    b = RNG.standard_normal(cout).astype(np.float32)
    return x, w, b


def channel_conv(x, w, b, strides, pads, dil, group, keep, out_hw, workers):
    """The channel granularity's path (kernels/drowsy.py, conv_gemm_masked) with a given
    channel mask instead of a generated one: returns (output, outputs computed)."""
    kh, kw = w.shape[2:]
    oh, ow = out_hw
    geo = (kh, kw, strides[0], strides[1], dil[0], dil[1], pads[0], pads[1], oh, ow)
    w2, panels, _, _ = prepare_gemm(w, group, CHANNEL)
    xp, koff, wp = windows(x.shape, group, geo)
    p_count = oh * ow
    pixoff = pixel_offsets(oh, ow, strides[0], strides[1], wp)
    out = np.full((x.shape[0], w.shape[0], p_count), np.nan, np.float32)
    computed = 0
    for n in range(x.shape[0]):
        lanes, npk, items = channel_items(keep.astype(np.uint8), group, p_count)
        computed += conv_image(x[n], xp, pads[0], pads[1], w2, panels, lanes, npk, koff, pixoff, items,
                               np.arange(p_count), b, True, 1, 0.0, 0.0, np.float32(1.0), out[n], workers)
    return out.reshape(x.shape[0], -1, oh, ow), computed


def _close(got, want):
    scale = max(float(np.max(np.abs(want))), 1e-30)
    assert np.max(np.abs(got - want)) <= 1e-5 * scale


# shapes: (cin, hw, k, strides, pads, dilations, group)
SHAPES = {
    "3x3_pad": (8, (9, 11), 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    "stride4_k5": (3, (23, 21), 5, (4, 4), (0, 0, 0, 0), (1, 1), 1),
    "1x1": (20, (6, 7), 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    "groups_dil": (6, (10, 9), 3, (2, 1), (2, 1, 0, 2), (2, 1), 2),
    "tiny": (4, (1, 1), 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("name", list(SHAPES))
def test_channel_kept_counts_leave_every_partial_panel(name, workers):
    """Kept channels per group 0 .. 34: last packed panels of 1 .. 16 lanes, 0, 1 or 2 full
    panels before them (and with groups, each group's own partial panel)."""
    cin, hw, k, strides, pads, dil, group = SHAPES[name]
    mg = 34
    x, w, b = _data(cin, hw, mg * group, k, group)
    want, out_hw = ref_conv(x, w, b, strides, pads, dil, group)
    for kept in range(mg + 1):
        keep = np.zeros(mg * group, bool)
        for g in range(group):  # a different subset (and count) per group
            n = (kept + 5 * g) % (mg + 1)
            keep[g * mg + RNG.permutation(mg)[:n]] = True
        got, computed = channel_conv(x, w, b, strides, pads, dil, group, keep, out_hw, workers)
        assert np.all(got[:, ~keep] == 0.0)
        if keep.any():
            _close(got[:, keep], want[:, keep])
        assert computed == keep.sum() * out_hw[0] * out_hw[1] * x.shape[0]


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("cout", [1, 5, 8, 9, 15, 16, 17, 24, 25, 31])
def test_exact_last_panel_widths_and_tile_rows(cout, workers):
    """The exact conv on the same engine: a last panel of every width class, over pixel
    counts giving every register-tile row count of both kernels (1 .. 2 * rows)."""
    x, w, b = _data(5, (1, 1), cout, 1)
    for p_count in range(1, 2 * max(TILE_ROWS, HALF_ROWS) + 2):
        x = RNG.standard_normal((1, 5, 1, p_count)).astype(np.float32)
        want, (oh, ow) = ref_conv(x, w, b, (1, 1), (0, 0, 0, 0), (1, 1), 1)
        out = np.empty((1, cout, oh * ow), np.float32)
        conv_gemm(x, *prepare(w, 1), (1, 1, 1, 1, 1, 1, 0, 0, oh, ow), b, True, 1, 0.0, 0.0, out, workers)
        _close(out.reshape(want.shape), want)


@pytest.mark.parametrize("cout", [7, 8, 9, 23, 40])
@pytest.mark.parametrize("gran", ["pixel", "channel", "tile"])
def test_granularities_with_partial_panels(gran, cout):
    """Through a session: panels of 7, 8, 9 lanes (group = 1) and split where tile rows
    start (cout = 40 in two groups of 20), stride 2, a 3 x 3 with pads."""
    group = 2 if cout == 40 else 1
    case = conv_case("pp", 6, (13, 11), cout, 3, act="relu", strides=[2, 1], pads=[1, 1, 1, 1], group=group)
    for p in (0.3, 0.5):
        check_masked(aipnet.load(case.model()), case.feeds(2)["x"], gran, p, seed=4)


@pytest.mark.skipif(not native.available(), reason="aipnet._native is not built")
@pytest.mark.parametrize("cout", [12, 20, 36])
def test_channel_numba_agrees_with_c(cout):
    """Several images (several kept counts, so several partial-panel widths) in both backends."""
    case = conv_case("pc", 7, (12, 12), cout, 3, act="relu", pads=[1, 1, 1, 1])
    model = aipnet.load(case.model())
    x = case.feeds(6)["x"]
    runs = {}
    for backend in ("numba", "c"):
        s = aipnet.Session(model, backend=backend, threads=2, drowsy=0.5, drowsy_granularity="channel", seed=9)
        y = s.run(x)
        rec = [r for r in s.stats["layers"] if r["op"] == "Conv"][0]
        runs[backend] = (y, rec["macs"], rec["outputs_computed"])
    (yn, mn, cn), (yc, mc, cc) = runs["numba"], runs["c"]
    assert np.array_equal(yn == 0, yc == 0)
    _close(yn, yc)
    assert (mn, cn) == (mc, cc)
