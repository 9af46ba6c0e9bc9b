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

Tile shape (16 channels x 64 consecutive output pixels): the masked GEMM computes each
kept tile as rows of a dense product, on the register-blocked micro-kernel of
:mod:`aipnet.kernels._simd` (a 6 x 16 register tile of FMAs, near BLAS speed: BLAS itself
does badly on GEMMs this small, its packing is not amortised); 64 pixels are four
16-pixel strips, each a K x 16 panel of patches that stays in L1 while the kept weight
rows stream past it.

The neuron granularity's kernel is in :mod:`aipnet.kernels.drowsy_neuron`.

Dropped outputs are 0 whatever the fused activation (Clip with lo > 0 and LeakyRelu
included): the mask is applied after bias and activation. Survivors are multiplied by
``scale`` (1/(1-p) with rescaling, else 1) after the activation, as inverted dropout does.
"""

from __future__ import annotations

import numpy as np

from ._buffers import aligned_empty
from ._jit import kernel, prange
from ._simd import mk1, mk2, mk4, mk6
from .activation import _apply
from .drowsy_neuron import conv_neuron_group
from .parallel import matmul_rows

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
TILE_CHANNELS = 16
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


@kernel(parallel=True)
def keep_units(seed, image, layer, threshold, keep):
    """keep[u] = 1 if unit u of (seed, image, layer) survives, 0 if dropped (keep: uint8)."""
    key = layer_key(seed, image, layer)
    thr = np.uint64(threshold)
    for u in prange(keep.shape[0]):
        h = mix64(key ^ (GAMMA * (np.uint64(u) + ONE)))
        keep[u] = 0 if (h >> S40) < thr else 1


def unit_count(granularity: int, m: int, p: int) -> int:
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


# -- patch gathers ------------------------------------------------------------------------
@kernel(parallel=True)
def im2col_pixels(x, kh, kw, sh, sw, dh, dw, pt, pl, ow, pix, cols):
    """Patch matrix of the listed output pixels only: cols[(c,i,j), q] for pixel pix[q].

    x is C x H x W; cols is (C*kh*kw) x len(pix); out-of-image taps are 0. (A pixel
    index >= OH*OW, the padding of a partial tile, gives a column that is never stored.)
    """
    c_count, h, w = x.shape
    kk = kh * kw
    n = pix.shape[0]
    y0 = np.empty(n, np.int64)
    x0 = np.empty(n, np.int64)
    for q in range(n):
        y0[q] = (pix[q] // ow) * sh - pt
        x0[q] = (pix[q] % ow) * sw - pl
    for r in prange(c_count * kk):
        c = r // kk
        i = (r % kk) // kw
        j = r % kw
        oy = i * dh
        ox = j * dw
        for q in range(n):
            iy = y0[q] + oy
            ix = x0[q] + ox
            if iy >= 0 and iy < h and ix >= 0 and ix < w:
                cols[r, q] = x[c, iy, ix]
            else:
                cols[r, q] = 0.0


@kernel(parallel=True)
def scatter_cols(tmp, pix, bias, row0, has_bias, act, p0, p1, scale, y):
    """y[r, pix[q]] = act(tmp[r, q] + bias[row0 + r]) * scale (the pixel path's epilogue)."""
    for r in prange(tmp.shape[0]):
        b = bias[row0 + r] if has_bias else np.float32(0.0)
        for q in range(tmp.shape[1]):
            y[r, pix[q]] = _apply(tmp[r, q] + b, act, p0, p1) * scale


# -- depthwise: direct kernel, kept outputs only -------------------------------------------
@kernel(parallel=True)
def depthwise_masked(x, w, mult, sh, sw, dh, dw, pt, pl, keep, bias, has_bias, act, p0, p1, scale, out):
    """Masked direct depthwise convolution of one image (group == C).

    x: C x H x W, w: (C*mult) x 1 x KH x KW, keep: M x (OH*OW) uint8, out: M x OH x OW.
    Dropped outputs are 0 and cost no MACs. Returns the number of outputs computed.
    """
    c_count, h, wd = x.shape
    m_count, _, kh, kw = w.shape
    oh, ow = out.shape[1], out.shape[2]
    counts = np.zeros(m_count, np.int64)
    for m in prange(m_count):
        c = m // mult
        done = 0
        b = bias[m] if has_bias else np.float32(0.0)
        for y in range(oh):
            for xx in range(ow):
                if not keep[m, y * ow + xx]:
                    out[m, y, xx] = 0.0
                    continue
                acc = np.float32(0.0)
                for i in range(kh):
                    iy = y * sh - pt + i * dh
                    if iy < 0 or iy >= h:
                        continue
                    for j in range(kw):
                        ix = xx * sw - pl + j * dw
                        if ix >= 0 and ix < wd:
                            acc += x[c, iy, ix] * w[m, 0, i, j]
                out[m, y, xx] = _apply(acc + b, act, p0, p1) * scale
                done += 1
        counts[m] = done
    return counts.sum()


# -- tile: 16 x 64 tiles on a register-blocked micro-kernel ---------------------------------
#: strips of 16 pixels per 64-pixel tile (the micro-kernel's width), and the K block of
#: the tile GEMM (a 16-pixel strip of KC rows, 16 KiB, stays in L1 while the kept weight
#: rows pass over it)
STRIPS = TILE_PIXELS // 16
TILE_KC = 256
TILE_ROW_CHUNK = 64


@kernel(parallel=True)
def im2col_strips(x, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, strips, panels):
    """Patch panels of 16-pixel strips: panels[s, (c,i,j), q] = patch of pixel strips[s]*16 + q.

    x is C x H x W (C-contiguous); panels is len(strips) x (C*kh*kw) x 16 (C-contiguous):
    one K x 16 panel per strip, the B operand of the micro-kernel. Out-of-image taps and
    pixels past the last one are 0; strips that start past the last pixel are left alone.
    A strip is zeroed, then filled row segment by row segment (its pixels in one output
    row), the in-image span of each kernel column worked out once per segment, so that
    the inner loop is a plain strided copy (unsigned offsets: no wraparound checks).
    """
    c_count, h, w = x.shape
    p_count = oh * ow
    kdim = c_count * kh * kw
    xf = x.ravel()
    pf = panels.ravel()
    for si in prange(strips.shape[0]):
        p0 = strips[si] * 16
        if p0 >= p_count:
            continue
        pe = min(p0 + 16, p_count)
        base = np.uint64(si * kdim * 16)
        for t in range(kdim * 16):
            pf[base + np.uint64(t)] = 0.0
        qa = np.empty(kw, np.int64)
        qb = np.empty(kw, np.int64)
        xs = np.empty(kw, np.int64)
        p = p0
        while p < pe:
            yy = p // ow
            x0 = p % ow
            seg = min(pe - p, ow - x0)
            q0 = p - p0
            # per kernel column j: the pixels [qa, qb) of this segment whose tap is inside the image
            for j in range(kw):
                ixs = x0 * sw - pl + j * dw
                lo = 0
                while lo < seg and ixs + lo * sw < 0:
                    lo += 1
                hi = seg
                while hi > lo and ixs + (hi - 1) * sw >= w:
                    hi -= 1
                qa[j] = lo
                qb[j] = hi
                xs[j] = ixs
            usw = np.uint64(sw)
            for c in range(c_count):
                for i in range(kh):
                    iy = yy * sh - pt + i * dh
                    if iy < 0 or iy >= h:
                        continue
                    r0 = (c * kh + i) * kw
                    xrow = (c * h + iy) * w
                    for j in range(kw):
                        lo = qa[j]
                        n = qb[j] - lo
                        if n <= 0:
                            continue
                        dst = base + np.uint64((r0 + j) * 16 + q0 + lo)
                        src = np.uint64(xrow + xs[j] + lo * sw)
                        for q in range(np.uint64(n)):
                            pf[dst + q] = xf[src + q * usw]
            p += seg


@kernel(parallel=True)
def conv_tiles(w, panels, blocks, row_keep, out_rows, bias, row0, has_bias, act, p0, p1, scale, p_count, y):
    """Kept tiles of one conv group: y[o, p] = act(w[r] . patch(p) + bias[row0 + o]) * scale, o = out_rows[r].

    w: R x K weight rows (read in place); panels: (len(blocks) * STRIPS) x K x 16 patch
    panels (im2col_strips; strip s of blocks[b] at b * STRIPS + s); row_keep: R x len(blocks) uint8,
    whether row r is computed in pixel block blocks[b]; out_rows: R output rows (the
    group's own channel numbers); y: Mg x P, written at computed outputs only (the
    channel path passes its kept rows, gathered, with all blocks computed). Work items
    are (pixel block, chunk of TILE_ROW_CHUNK rows); inside, a GEMM blocked like BLAS's: per K block, each 16-pixel strip (in L1) meets the chunk's
    runs of kept rows (in L2), up to 6 rows at a time in a 6 x 16 register tile.
    """
    mg, kdim = w.shape
    nb = blocks.shape[0]
    chunk = TILE_ROW_CHUNK
    nrc = (mg + chunk - 1) // chunk
    for it in prange(nb * nrc):
        b = it // nrc
        rc = it % nrc
        pb = blocks[b] * TILE_PIXELS
        width = min(TILE_PIXELS, p_count - pb)
        nst = (width + 15) // 16
        r_lo = rc * chunk
        r_hi = min(r_lo + chunk, mg)
        any_kept = False
        for r in range(r_lo, r_hi):
            if row_keep[r, b]:
                any_kept = True
                break
        if not any_kept:
            continue
        acc = np.zeros((chunk, TILE_PIXELS), np.float32)
        for k0 in range(0, kdim, TILE_KC):
            kn = min(TILE_KC, kdim - k0)
            for s in range(nst):
                boff = ((b * STRIPS + s) * kdim + k0) * 16
                r = r_lo
                while r < r_hi:
                    if not row_keep[r, b]:
                        r += 1
                        continue
                    n = 1
                    while n < 6 and r + n < r_hi and row_keep[r + n, b]:
                        n += 1
                    aoff = r * kdim + k0
                    coff = (r - r_lo) * TILE_PIXELS + s * 16
                    if n == 6:
                        mk6(w, aoff, kdim, panels, boff, 16, acc, coff, TILE_PIXELS, kn)
                    elif n >= 4:
                        n = 4
                        mk4(w, aoff, kdim, panels, boff, 16, acc, coff, TILE_PIXELS, kn)
                    elif n >= 2:
                        n = 2
                        mk2(w, aoff, kdim, panels, boff, 16, acc, coff, TILE_PIXELS, kn)
                    else:
                        mk1(w, aoff, kdim, panels, boff, 16, acc, coff, TILE_PIXELS, kn)
                    r += n
        for r in range(r_lo, r_hi):
            if row_keep[r, b]:
                o = out_rows[r]
                bv = bias[row0 + o] if has_bias else np.float32(0.0)
                for q in range(width):
                    y[o, pb + q] = _apply(acc[r - r_lo, q] + bv, act, p0, p1) * scale


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
    units: list[np.ndarray],
    scale: float = 1.0,
    threads: int = 1,
) -> tuple[np.ndarray, int, int]:
    """2-D convolution that computes the kept outputs only.

    Args are those of :func:`aipnet.kernels.conv.conv2d`, plus ``granularity`` (a code),
    ``units`` (per image, the uint8 unit mask from :func:`keep_units`) and ``scale``
    (applied to survivors). Returns (output, MACs executed, outputs computed), counted
    here from the work actually done.
    """
    n_count, c_count, h, wd = x.shape
    m_count, cg, kh, kw = w.shape
    oh, ow = out_hw
    p_count = oh * ow
    sh, sw = strides
    pt, pl, _, _ = pads
    dh, dw = dilations
    out = np.zeros((n_count, m_count, oh, ow), dtype=np.float32)
    has_bias = bias is not None
    b = bias if has_bias else np.zeros(1, np.float32)
    sc = np.float32(scale)
    macs = 0
    computed = 0
    if group == c_count and cg == 1 and group > 1:
        for n in range(n_count):
            keep = np.ascontiguousarray(expand_mask(granularity, units[n], m_count, p_count))
            k = depthwise_masked(x[n], w, m_count // c_count, sh, sw, dh, dw, pt, pl, keep, b, has_bias,
                                 act, act_p0, act_p1, sc, out[n])
            computed += k
            macs += k * kh * kw
        return out, macs, computed
    mg = m_count // group
    kdim = cg * kh * kw
    w2 = w.reshape(group, mg, kdim)
    for n in range(n_count):
        y = out[n].reshape(m_count, p_count)
        um = units[n]
        for g in range(group):
            xg = x[n, g * cg:(g + 1) * cg]
            wg = w2[g]
            yg = y[g * mg:(g + 1) * mg]
            if granularity == CHANNEL:
                kept = np.flatnonzero(um[g * mg:(g + 1) * mg])
                if kept.size == 0:
                    continue
                # the kept weight rows, gathered: one dense (kept x K) @ (K x P) product
                tb = -(-p_count // TILE_PIXELS)
                blocks = np.arange(tb)
                strips = np.arange(tb * STRIPS)
                panels = aligned_empty((strips.size, kdim, 16))
                im2col_strips(xg, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, strips, panels)
                conv_tiles(np.take(wg, kept, axis=0), panels, blocks, np.ones((kept.size, tb), np.uint8), kept, b,
                           g * mg, has_bias, act, act_p0, act_p1, sc, p_count, yg)
                macs += kept.size * kdim * p_count
                computed += kept.size * p_count
            elif granularity == PIXEL:
                pix = np.flatnonzero(um)
                if pix.size == 0:
                    continue
                cols = np.empty((kdim, pix.size), np.float32)
                im2col_pixels(xg, kh, kw, sh, sw, dh, dw, pt, pl, ow, pix, cols)
                tmp = np.empty((mg, pix.size), np.float32)
                matmul_rows(wg, cols, tmp, threads)
                scatter_cols(tmp, pix, b, g * mg, has_bias, act, act_p0, act_p1, sc, yg)
                macs += mg * kdim * pix.size
                computed += mg * pix.size
            elif granularity == TILE:
                m_, c_ = _conv_tiles(xg, wg, g * mg, um, b, has_bias, act, act_p0, act_p1, sc,
                                     (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), yg, threads)
                macs += m_
                computed += c_
            else:
                k = conv_neuron_group(xg, w, g, mg, um.reshape(m_count, p_count), b, has_bias, act, act_p0, act_p1,
                                      sc, (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow), yg)
                computed += k
                macs += k * kdim
    return out, macs, computed


def _conv_tiles(xg, wg, row0, units, b, has_bias, act, p0, p1, sc, geo, yg, threads):
    """Kept 16 x 64 tiles of one conv group (yg must be zero-filled: dropped tiles are not written).

    Patches of the pixel blocks that have a kept tile are gathered into 16-pixel strip
    panels (:func:`im2col_strips`), then :func:`conv_tiles` computes the kept tiles.
    """
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geo
    mg, kdim = wg.shape
    p_count = oh * ow
    tb = -(-p_count // TILE_PIXELS)
    tmask = units.reshape(-1, tb)
    # per channel of this group: is its tile kept, per pixel block (mg x tb)
    row_keep = tmask[np.arange(row0, row0 + mg) // TILE_CHANNELS]
    blocks = np.flatnonzero(row_keep.any(axis=0))
    if blocks.size == 0:
        return 0, 0
    strips = (blocks[:, None] * STRIPS + np.arange(STRIPS)[None, :]).ravel()
    panels = aligned_empty((strips.size, kdim, 16))
    im2col_strips(xg, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, strips, panels)
    keep_b = np.ascontiguousarray(row_keep[:, blocks])
    conv_tiles(np.ascontiguousarray(wg), panels, blocks, keep_b, np.arange(mg), b, row0, has_bias, act, p0, p1, sc,
               p_count, yg)
    widths = np.minimum(TILE_PIXELS, p_count - blocks * TILE_PIXELS)
    k = int((keep_b.astype(np.int64) * widths[None, :]).sum())
    return k * kdim, k
