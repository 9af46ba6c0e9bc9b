"""DrowsyNet kernels: the counter-based mask generator and masked 2-D convolution.

Mask generator (the contract the C runtime must reproduce bit for bit)
-----------------------------------------------------------------------
All arithmetic is on unsigned 64-bit integers, modulo 2**64::

    GAMMA     = 0x9E3779B97F4A7C15
    mix64(z)  = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9;
                z ^= z >> 27; z *= 0x94D049BB133111EB;
                z ^ (z >> 31)                      (the splitmix64 finaliser)
    key(seed, image, layer) =
        mix64( mix64( mix64(GAMMA * (seed + 1)) ^ (GAMMA * (image + 1)) ) ^ (GAMMA * (layer + 1)) )
    h(unit)   = mix64(key ^ (GAMMA * (unit + 1)))
    threshold = floor(p * 2**24)                   (exact in IEEE double)
    dropped   = (h(unit) >> 40) < threshold        (u = (h >> 40) / 2**24 is uniform on [0, 1))

``layer`` is the conv's position among the graph's Conv nodes (0-based), ``image`` the
image id (the session's ``image_offset`` + position in the batch, or 0 for a fixed mask),
and ``unit`` the index of a mask unit inside one image's output of that layer:

    ========= =============================================== =======================
    neuron    c * P + p      (c output channel, p = y*OW + x) M * P units
    pixel     p                                               P units
    channel   c                                               M units
    tile      (c // TILE_CHANNELS) * TB + p // TILE_PIXELS    ceil(M/16) * TB units,
              with TB = ceil(P / TILE_PIXELS)
    ========= =============================================== =======================

Pixel, channel and tile run on the exact conv's implicit-GEMM engine
(:mod:`aipnet.kernels.conv_gemm`: weights as K x 16 panels of 16 output channels, packed
once per layer, or per image for channel, of its kept rows; patches read in place from the
zero-padded input), with the work items of their kept units: a run of the kept pixels x
one panel (pixel), runs of all pixels x the panels of the kept channels (channel), or one
kept tile. A tile is one panel (16 channels) x 64 consecutive pixels.

The neuron granularity's kernel is in :mod:`aipnet.kernels.drowsy_neuron`.

Dropped outputs are 0 whatever the fused activation (Clip with lo > 0 and LeakyRelu
included): the mask is applied after bias and activation. Survivors are multiplied by
``scale`` (1/(1-p) with rescaling, else 1) after the activation, as inverted dropout does.
"""

from __future__ import annotations

import numba
import numpy as np

from ._buffers import aligned_empty
from ._jit import kernel, prange
from .activation import _apply
from .conv import direct_pixel
from .conv_gemm import LANES, SEG_PIXELS, conv_image, dense_items, pixel_offsets, prepare, put_item, windows
from .drowsy_neuron import conv_neuron_group

GAMMA = np.uint64(0x9E3779B97F4A7C15)
M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
S30 = np.uint64(30)
S27 = np.uint64(27)
S31 = np.uint64(31)
S40 = np.uint64(40)
ONE = np.uint64(1)
#: the uniform variate has 24 bits: threshold = floor(p * 2**24)
U_BITS = 24
#: a tile row is one weight panel of the implicit-GEMM engine
TILE_CHANNELS = LANES
TILE_PIXELS = 64
#: granularity codes (kernels take integers)
NEURON, PIXEL, CHANNEL, TILE = 0, 1, 2, 3
GRANULARITY_CODES = {"neuron": NEURON, "pixel": PIXEL, "channel": CHANNEL, "tile": TILE}


@kernel()
def mix64(z):
    """The splitmix64 finaliser (uint64 in, uint64 out)."""
    z = (z ^ (z >> S30)) * M1
    z = (z ^ (z >> S27)) * M2
    return z ^ (z >> S31)


@kernel()
def layer_key(seed, image, layer):
    """key(seed, image, layer) of the module docstring."""
    k = mix64(GAMMA * (np.uint64(seed) + ONE))
    k = mix64(k ^ (GAMMA * (np.uint64(image) + ONE)))
    return mix64(k ^ (GAMMA * (np.uint64(layer) + ONE)))


def drop_threshold(p: float) -> int:
    """floor(p * 2**24): unit dropped iff (h >> 40) < threshold."""
    return int(np.floor(float(p) * (1 << U_BITS)))


#: below this many units a mask is made serially (a parallel launch costs more)
KEEP_SERIAL = 1 << 15


@kernel(parallel=True)
def keep_units(seed, image, layer, threshold, keep):
    """keep[u] = 1 if unit u of (seed, image, layer) survives, 0 if dropped (keep: uint8)."""
    key = layer_key(seed, image, layer)
    thr = np.uint64(threshold)
    if keep.shape[0] < KEEP_SERIAL:
        for u in range(keep.shape[0]):
            keep[u] = 0 if (mix64(key ^ (GAMMA * (np.uint64(u) + ONE))) >> S40) < thr else 1
        return
    for u in prange(keep.shape[0]):
        keep[u] = 0 if (mix64(key ^ (GAMMA * (np.uint64(u) + ONE))) >> S40) < thr else 1


@kernel()
def unit_count(granularity, m, p):
    """How many mask units one image's (M channels x P pixels) output has."""
    if granularity == NEURON:
        return m * p
    if granularity == PIXEL:
        return p
    if granularity == CHANNEL:
        return m
    return -(-m // TILE_CHANNELS) * -(-p // TILE_PIXELS)


def expand_mask(granularity: int, units: np.ndarray, m: int, p: int) -> np.ndarray:
    """The M x P keep mask (uint8) of one image from its unit mask."""
    if granularity == NEURON:
        return units.reshape(m, p)
    if granularity == PIXEL:
        return np.broadcast_to(units[None, :], (m, p))
    if granularity == CHANNEL:
        return np.broadcast_to(units[:, None], (m, p))
    tb = -(-p // TILE_PIXELS)
    t = units.reshape(-1, tb)
    return np.repeat(np.repeat(t, TILE_CHANNELS, axis=0)[:m], TILE_PIXELS, axis=1)[:, :p]


# -- depthwise: direct kernel, kept outputs only -------------------------------------------
@kernel(parallel=True)
def depthwise_masked(x, w, mult, sh, sw, dh, dw, pt, pl, keep, bias, has_bias, act, p0, p1, scale, out):
    """Masked direct depthwise convolution of one image (group == C).

    x: C x H x W, w: (C*mult) x 1 x KH x KW, keep: M x (OH*OW) uint8, out: M x OH x OW.
    Dropped outputs are 0 and cost no MACs. Returns the number of outputs computed.
    """
    m_count = w.shape[0]
    oh, ow = out.shape[1], out.shape[2]
    counts = np.empty(m_count, np.int64)  # no array expressions: each is a parallel region
    for m in prange(m_count):
        c = m // mult
        done = 0
        b = bias[m] if has_bias else np.float32(0.0)
        for y in range(oh):
            for xx in range(ow):
                if not keep[m, y * ow + xx]:
                    out[m, y, xx] = 0.0
                    continue
                acc = direct_pixel(x, c, w, m, y, xx, sh, sw, dh, dw, pt, pl)
                out[m, y, xx] = _apply(acc + b, act, p0, p1) * scale
                done += 1
        counts[m] = done
    computed = 0
    for m in range(m_count):
        computed += counts[m]
    return computed


# -- pixel, channel and tile: work items of the implicit-GEMM engine (kernels/conv_gemm.py) --
@kernel()
def pixel_items(pix, p_count, npanel):
    """Work items of the pixel granularity: near-equal runs of the kept pixels pix x all panels.

    The runs' output spans tile 0 .. P-1 (a run's span reaches to the next run's first
    pixel), so every output is written once. npanel: panels per group.
    """
    n = pix.shape[0]
    ns = max(1, (n + SEG_PIXELS - 1) // SEG_PIXELS)
    items = np.empty((ns * npanel.sum(), 6), np.int64)
    t = 0
    for s in range(ns):
        q0 = s * n // ns
        q1 = (s + 1) * n // ns
        r0 = 0 if s == 0 else pix[q0]
        r1 = p_count if s == ns - 1 else pix[q1]
        for g in range(npanel.shape[0]):
            for j in range(npanel[g]):
                put_item(items, t, q0, q1, r0, r1, j, g)
                t += 1
    return items


@kernel()
def channel_items(keep, group, p_count):
    """Lanes and work items of the channel granularity (keep: the M channel flags).

    Per group, its kept channels fill panels 0 .. npk-1 in order (packed per image); the
    dropped ones fill the next panels, whose items only write zeros. Items: kept panels x
    near-equal runs of all P pixels (pix = 0 .. P-1) first, then one zero item per
    dropped panel. Returns (lanes: G x NP x 16, npk: G, items). The last kept panel, partial,
    costs about 2/3 of a full one with 8 kept lanes or fewer (the 8-lane micro-kernel), a
    full one's with 9 to 15: a kernel narrower than 8 lanes would still need one broadcast
    per pixel and k, and zero items spread between the runs measured slower.
    """
    mg = keep.shape[0] // group
    npmax = 2 * ((mg + TILE_CHANNELS - 1) // TILE_CHANNELS) + 1
    lanes = np.full((group, npmax, TILE_CHANNELS), -1, np.int64)
    npk = np.zeros(group, np.int64)
    npd = np.zeros(group, np.int64)
    for g in range(group):
        nk = 0
        for c in range(mg):
            nk += keep[g * mg + c] != 0
        npk[g] = (nk + TILE_CHANNELS - 1) // TILE_CHANNELS
        npd[g] = (mg - nk + TILE_CHANNELS - 1) // TILE_CHANNELS
        a = 0
        d = npk[g] * TILE_CHANNELS
        for c in range(mg):
            if keep[g * mg + c]:
                lanes[g, a // TILE_CHANNELS, a % TILE_CHANNELS] = c
                a += 1
            else:
                lanes[g, d // TILE_CHANNELS, d % TILE_CHANNELS] = c
                d += 1
    items, t = dense_items(npk, p_count, npd.sum())
    for g in range(group):
        for j in range(npk[g], npk[g] + npd[g]):
            put_item(items, t, 0, 0, 0, p_count, j, g)
            t += 1
    return lanes, npk, items


@kernel()
def tile_items(units, mg, npanel, p_count):
    """Work items of the tile granularity: one per (panel, 64-pixel block), pix = 0 .. P-1.

    Panel j of group g is in tile row (g * mg) // 16 + j
    (:func:`aipnet.kernels.conv_gemm.group_lanes`); its item in block b computes the block
    if that tile is kept, else writes zeros. Computing items come first, block by block
    (the partial last block's items last).
    """
    tb = (p_count + TILE_PIXELS - 1) // TILE_PIXELS
    items = np.empty((npanel.sum() * tb, 6), np.int64)
    t = 0
    for kept in (1, 0):
        for b in range(tb):
            r0 = b * TILE_PIXELS
            r1 = min(r0 + TILE_PIXELS, p_count)
            for g in range(npanel.shape[0]):
                first = g * mg // TILE_CHANNELS
                for j in range(npanel[g]):
                    if (units[(first + j) * tb + b] != 0) == (kept == 1):
                        put_item(items, t, r0, r1 if kept else r0, r0, r1, j, g)
                        t += 1
    return items


@kernel()
def conv_gemm_masked(x, w2, panels, lanes, npanel, geo, granularity, mask, bias, has_bias, act, p0, p1, scale, out,
                     workers):
    """The pixel, channel and tile granularities (all images and groups of one conv).

    x: N x C x H x W; w2: G x Mg x K weights; panels, lanes, npanel: :func:`prepare_gemm`;
    geo: (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow); mask: (seed, first image id, fixed,
    layer, threshold), each image's unit mask made here with :func:`keep_units`; out:
    N x M x P, every element written. Returns the number of outputs computed.
    """
    group, mg = w2.shape[:2]
    sh, sw, pt, pl, oh, ow = geo[2], geo[3], geo[6], geo[7], geo[8], geo[9]
    seed, first, fixed, layer, threshold = mask
    p_count = oh * ow
    xp, koff, wp = windows(x.shape, group, geo)
    pix = np.arange(p_count)
    pixoff = alloff = pixel_offsets(oh, ow, sh, sw, wp)
    um = np.empty(unit_count(granularity, group * mg, p_count), np.uint8)
    npk = np.zeros(group, np.int64)
    computed = 0
    for n in range(x.shape[0]):
        keep_units(seed, 0 if fixed else first + n, layer, threshold, um)
        ln = lanes
        if granularity == CHANNEL:
            ln, npk, items = channel_items(um, group, p_count)
        elif granularity == PIXEL:
            pix = np.flatnonzero(um)
            pixoff = alloff[pix]
            items = pixel_items(pix, p_count, npanel)
        else:
            items = tile_items(um, mg, npanel, p_count)
        computed += conv_image(x[n], xp, pt, pl, w2, panels, ln, npk, koff, pixoff, items, pix, bias, has_bias, act,
                               p0, p1, scale, out[n], workers)
    return computed


def prepare_gemm(w: np.ndarray, group: int, granularity: int) -> tuple:
    """What :func:`conv_gemm_masked` needs besides the input, made once per layer.

    (w2, panels, lanes, npanel): for the pixel and tile granularities the exact conv's
    (:func:`aipnet.kernels.conv_gemm.prepare`: all weight panels, so one preparation
    serves both); for channel, which packs its kept rows per image, w2 (G x Mg x K) and
    room for them (reused from call to call, so one prepared conv must not run twice at
    once).
    """
    if granularity != CHANNEL:
        return prepare(w, group)
    mg = w.shape[0] // group
    w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(group, mg, -1)
    # kept channels, then the dropped ones (their panels are never packed)
    np_ = 2 * -(-mg // TILE_CHANNELS) + 1
    return (w2, aligned_empty((group, -(-mg // TILE_CHANNELS), w2.shape[2], TILE_CHANNELS)),
            np.full((group, np_, TILE_CHANNELS), -1, np.int64), np.zeros(group, np.int64))


# -- the masked convolution -----------------------------------------------------------------
def conv2d_drowsy(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    strides: tuple[int, int],
    pads: tuple[int, int, int, int],
    dilations: tuple[int, int],
    group: int,
    out_hw: tuple[int, int],
    act: int,
    act_p0: float,
    act_p1: float,
    granularity: int,
    mask: tuple[int, int, int, int, int],
    scale: float = 1.0,
    prepared: tuple | None = None,
) -> tuple[np.ndarray, int, int]:
    """2-D convolution that computes the kept outputs only.

    Args are those of :func:`aipnet.kernels.conv.conv2d`, plus ``granularity`` (a code),
    ``mask`` = (seed, first image id, fixed, layer, threshold): image n of the batch gets
    the unit mask :func:`keep_units` (seed, 0 if fixed else first + n, layer, threshold),
    ``scale`` (applied to survivors) and ``prepared``: :func:`prepare_gemm` of ``w``,
    made once by the caller for the pixel, channel and tile granularities (made here
    when None). Returns (output, MACs executed, outputs computed), counted here from
    the work actually done. Every kernel writes all its outputs (dropped ones 0).
    """
    n_count, c_count, h, wd = x.shape
    m_count, cg, kh, kw = w.shape
    oh, ow = out_hw
    sh, sw = strides
    pt, pl, _, _ = pads
    dh, dw = dilations
    out = np.empty((n_count, m_count, oh, ow), dtype=np.float32)
    has_bias = bias is not None
    b = bias if has_bias else _NO_BIAS
    sc = np.float32(scale)
    if granularity == NEURON or (group == c_count and cg == 1 and group > 1):
        return _conv_direct(x, w, b, has_bias, (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), group, act, act_p0, act_p1,
                            granularity, mask, sc, out)
    if prepared is None:
        prepared = prepare_gemm(w, group, granularity)
    computed = conv_gemm_masked(x, *prepared, (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), granularity, mask, b,
                                has_bias, act, act_p0, act_p1, sc, out.reshape(n_count, m_count, oh * ow),
                                numba.get_num_threads())
    return out, computed * cg * kh * kw, computed


_NO_BIAS = np.zeros(1, np.float32)


def _conv_direct(x, w, b, has_bias, geo, group, act, p0, p1, granularity, mask, sc, out):
    """The depthwise kernel (any granularity) and the neuron granularity, per image and group."""
    n_count, c_count = x.shape[:2]
    m_count, cg = w.shape[:2]
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geo
    p_count = oh * ow
    seed, first, fixed, layer, threshold = mask
    depthwise = group == c_count and cg == 1 and group > 1
    units = np.empty(unit_count(granularity, m_count, p_count) if depthwise else 0, np.uint8)
    mg = m_count // group
    computed = 0
    for n in range(n_count):
        if depthwise:
            keep_units(seed, 0 if fixed else first + n, layer, threshold, units)
            keep = np.ascontiguousarray(expand_mask(granularity, units, m_count, p_count))
            computed += depthwise_masked(x[n], w, m_count // c_count, sh, sw, dh, dw, pt, pl, keep, b, has_bias,
                                         act, p0, p1, sc, out[n])
            continue
        # the neuron kernel makes the mask itself, item by item
        key = layer_key(seed, 0 if fixed else first + n, layer)
        y = out[n].reshape(m_count, p_count)
        for g in range(group):
            computed += conv_neuron_group(x[n, g * cg:(g + 1) * cg], w, g, mg, key, threshold, b, has_bias, act, p0,
                                          p1, sc, geo, y[g * mg:(g + 1) * mg])
    taps = kh * kw if depthwise else cg * kh * kw
    return out, computed * taps, computed
