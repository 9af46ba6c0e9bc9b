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

Dropped outputs are 0 whatever the fused activation (Clip with lo > 0 and LeakyRelu
included): the mask is applied after bias and activation. Survivors are multiplied by
``scale`` (1/(1-p) with rescaling, else 1) after the activation, as inverted dropout does.
"""

from __future__ import annotations

import weakref

import numpy as np

from ._jit import kernel, prange
from ._dot8 import (PARTITIONS, dot8_8, dot8_71, dot8_62, dot8_611, dot8_53, dot8_521, dot8_5111, dot8_44, dot8_431,
                    dot8_422, dot8_4211, dot8_332, dot8_3311, dot8_3221, dot8_2222, dot8_any)

from ._simd import mk1, mk2, mk4, mk6
from .activation import _apply
from .parallel import matmul_rows

DOT8_ANY = len(PARTITIONS)

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


# -- neuron: eight kept outputs at a time, straight from a channels-last image ------------
#: a work item is a run of at most NEURON_SLOTS pixels of one output row (at most
#: NEURON_ROWS_RUN where patches are copied to rows) x a chunk of NEURON_CHANNELS
#: channels; the image region of its patches that one K chunk reads is kept under
#: NEURON_REGION bytes (it stays in L1 while the chunk's weight rows pass)
NEURON_SLOTS = 32
NEURON_ROWS_RUN = 16
NEURON_CHANNELS = 64
NEURON_REGION = 20 * 1024


def neuron_layout(cg, kh, kw, sh, sw, dh, dw, oh, ow):
    """The neuron kernel's layout of one conv group (the C backend's, csrc/drowsy.c).

    The group's input is copied to a zero-padded channels-last image (Hp x Wp x cg) and
    the weights reordered to the same (tap row, tap column, channel) order, so that the
    patch of output pixel (oy, ox) is kh runs of kw * cg contiguous floats of the image
    itself ("direct", when dw == 1 and kw * cg is a multiple of 8); otherwise each patch
    is copied to a row of K rounded up to 8 floats. Returns a dict: direct, kn (weight
    row length), hp, wp, seg_len, nseg, x_seg (a patch is nseg segments of seg_len floats,
    x_seg apart), nbr (pixel runs per output row), sc (segments per K chunk).
    """
    k = cg * kh * kw
    direct = dw == 1 and (kw * cg) % 8 == 0
    kn = k if direct else -(-k // 8) * 8
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    nbr = -(-ow // (NEURON_SLOTS if direct else NEURON_ROWS_RUN))
    nb = -(-ow // nbr)
    if direct:
        seg_len, nseg, x_seg = kw * cg, kh, dh * wp * cg
        nbytes = ((nb - 1) * sw + kw) * cg * 4
    else:
        seg_len, nseg, x_seg = kn, 1, 0
        nbytes = nb * kn * 4
    nchunk = min(max(-(-(nseg * nbytes) // NEURON_REGION), 1), nseg)
    return dict(direct=direct, kn=kn, hp=hp, wp=wp, seg_len=seg_len, nseg=nseg, x_seg=x_seg, nbr=nbr,
                sc=-(-nseg // nchunk))


@kernel(parallel=True)
def neuron_weights(w, kn, wn):
    """wn[m, (i*kw + j)*cg + c] = w[m, c, i, j], rows zero-padded to kn (w: M x cg x kh x kw)."""
    m_count, cg, kh, kw = w.shape
    kk = kh * kw
    for m in prange(m_count):
        for c in range(cg):
            for t in range(kk):
                wn[m, t * cg + c] = w[m, c, t // kw, t % kw]
        for t in range(cg * kk, kn):
            wn[m, t] = 0.0


@kernel(parallel=True)
def neuron_image(x, pt, pl, xp):
    """xp[yy, xx, c] = x[c, yy - pt, xx - pl], 0 outside the image (x: C x H x W, xp: Hp x Wp x C).

    One padded row per task, transposed in 8 x 8 blocks (8 columns of a row are read, 8
    channels of a pixel written: both in few cache lines).
    """
    c_count, h, w = x.shape
    hp, wp, _ = xp.shape
    x0 = min(max(pl, 0), wp)
    x1 = max(min(pl + w, wp), x0)
    for yy in prange(hp):
        iy = yy - pt
        if iy < 0 or iy >= h:
            for xx in range(wp):
                for c in range(c_count):
                    xp[yy, xx, c] = 0.0
            continue
        for xx in range(x0):
            for c in range(c_count):
                xp[yy, xx, c] = 0.0
        for xx in range(x1, wp):
            for c in range(c_count):
                xp[yy, xx, c] = 0.0
        for c8 in range(0, c_count, 8):
            ce = min(c8 + 8, c_count)
            for x8 in range(x0, x1, 8):
                xe = min(x8 + 8, x1)
                for xx in range(x8, xe):
                    for c in range(c8, ce):
                        xp[yy, xx, c] = x[c, iy, xx - pl]


def _group_tables():
    """GROUP_KERNEL[mask], GROUP_LANES[mask]: for eight pairs in channel order whose channel
    changes before pair i (i = 1..7) where bit i - 1 of mask is set, the dot8 kernel
    (index into PARTITIONS, DOT8_ANY past 4 runs) and the pairs' order on its lanes (runs
    longest first; stable)."""
    kern = np.full(128, DOT8_ANY, np.int64)
    lanes = np.tile(np.arange(8, dtype=np.int64), (128, 1))
    for mask in range(128):
        starts = [0] + [i for i in range(1, 8) if mask >> (i - 1) & 1] + [8]
        runs = [(starts[j + 1] - starts[j], starts[j]) for j in range(len(starts) - 1)]
        if len(runs) > 4:
            continue
        runs.sort(key=lambda r: -r[0])
        kern[mask] = PARTITIONS.index(tuple(r[0] for r in runs))
        lanes[mask] = [i for length, at in runs for i in range(at, at + length)]
    return kern, lanes


GROUP_KERNEL, GROUP_LANES = _group_tables()


@kernel()
def _neuron_groups(lst, n, c0, kn, xq, offs, dst, idx):
    """Cut the item's list of kept pairs (entries channel * NEURON_SLOTS + pixel slot, in
    channel order) into groups of eight consecutive pairs, lanes ordered for dot8.

    Group g's lanes go in runs of one channel each, longest run first (GROUP_LANES, by the
    mask of where the channel changes; idx[g] = the kernel, GROUP_KERNEL); offs[16 g + i]
    = lane i's weight row offset (channel c0 + its channel, rows kn apart), offs[16 g + 8
    + i] = its patch offset xq[slot]; dst[8 g + i] = its accumulator index (a spare slot
    for the copies of the last pair that pad the item's last group). No data-dependent
    branches (the mask is random).
    """
    spare = NEURON_CHANNELS * NEURON_SLOTS
    ng = (n + 7) // 8
    ev = np.empty(8, np.int64)
    for g in range(ng):
        b = 8 * g
        last = min(8, n - b) - 1
        mask = 0
        prev = lst[b] // NEURON_SLOTS
        ev[0] = lst[b]
        for i in range(1, 8):
            e = lst[b + min(i, last)]
            ev[i] = e if i <= last else spare
            cc = e // NEURON_SLOTS
            mask |= np.int64(cc != prev) << (i - 1)
            prev = cc
        idx[g] = GROUP_KERNEL[mask]
        for lane in range(8):
            i = GROUP_LANES[mask, lane]
            e = lst[b + min(i, last)]
            offs[16 * g + lane] = (c0 + e // NEURON_SLOTS) * kn
            offs[16 * g + 8 + lane] = xq[e % NEURON_SLOTS]
            dst[b + lane] = ev[i]


@kernel(parallel=True)
def conv_neuron(wn, xp, keep, bias, row0, has_bias, act, p0, p1, scale, out,
                direct, kh, kw, sh, sw, dh, dw, ow, seg_len, nseg, x_seg, sc, nbr):
    """out[c, p] = act(wn[c] . patch(p) + bias[row0 + c]) * scale where keep[c, p], else 0.

    One conv group. wn: Mg x kn reordered weights (:func:`neuron_weights`); xp: the
    group's channels-last padded image Hp x Wp x cg (:func:`neuron_image`); keep: Mg x P
    uint8; out: Mg x P, every output written. Geometry from :func:`neuron_layout`.

    Work items, shared out over threads: a run of at most NEURON_SLOTS pixels of an output
    row (nbr runs a row) x NEURON_CHANNELS channels, channel-chunk major so that a
    thread's consecutive items share weight rows. A patch is read straight from xp
    (``direct``: kh segments of kw * cg floats), or else the run's patches are first
    copied to rows of kn floats, zero-padded. The item's kept (channel, pixel) pairs are
    listed without a branch (each pair written, the count advanced by its mask byte), in
    channel order, and computed eight at a time (consecutive pairs, across channels and
    pixels: only the last group of an item can be short) by the dot8 micro-kernels, a
    channel's lanes sharing its weight loads (:func:`_neuron_groups`); per K chunk (a few
    tap rows whose image region stays in L1) every group runs. Returns the number of
    outputs computed.
    """
    mg, kn = wn.shape
    hp, wp, cg = xp.shape
    p_count = keep.shape[1]
    oh = p_count // ow
    k_real = cg * kh * kw
    wf = wn.ravel()
    xf = xp.ravel()
    nblocks = oh * nbr
    nch = (mg + NEURON_CHANNELS - 1) // NEURON_CHANNELS
    counts = np.zeros(nch * nblocks, np.int64)
    for it in prange(nch * nblocks):
        ch = it // nblocks
        blk = it % nblocks
        oy = blk // nbr
        bi = blk % nbr
        ox0 = bi * ow // nbr
        nb = (bi + 1) * ow // nbr - ox0
        c0 = ch * NEURON_CHANNELS
        c1 = min(c0 + NEURON_CHANNELS, mg)
        q0 = oy * ow + ox0
        xq = np.empty(NEURON_SLOTS, np.int64)
        if direct:
            xb = xf
            for t in range(nb):
                xq[t] = (oy * sh * wp + (ox0 + t) * sw) * cg
        else:
            # the run's patches as rows of kn floats (64-byte aligned rows: kn * 4 is a
            # multiple of 32 and the buffer starts on a 64-byte boundary)
            raw = np.empty(nb * kn + 16, np.float32)
            a0 = ((-raw.ctypes.data) % 64) // 4
            xb = raw[a0:a0 + nb * kn]
            for t in range(nb):
                d = t * kn
                xq[t] = d
                run = kw * cg if dw == 1 else cg
                for i in range(kh):
                    for j in range(kw * cg // run):
                        src = ((oy * sh + i * dh) * wp + (ox0 + t) * sw + j * dw) * cg
                        xb[d:d + run] = xf[src:src + run]
                        d += run
                for k in range(k_real, kn):
                    xb[t * kn + k] = 0.0
        lst = np.empty(NEURON_CHANNELS * NEURON_SLOTS, np.int64)
        n = 0
        for c in range(c0, c1):
            for t in range(nb):
                lst[n] = (c - c0) * NEURON_SLOTS + t
                n += np.int64(keep[c, q0 + t])
        counts[it] = n
        ng = (n + 7) // 8
        offs = np.empty(ng * 16, np.int64)
        dst = np.empty(ng * 8, np.int64)
        idx = np.empty(ng, np.int64)
        _neuron_groups(lst, n, c0, kn, xq, offs, dst, idx)
        acc = np.zeros(NEURON_CHANNELS * NEURON_SLOTS + 1, np.float32)
        r = np.empty(8, np.float32)
        for s0 in range(0, nseg, sc):
            ns = min(sc, nseg - s0)
            wv = wf[s0 * seg_len:]
            xv = xb[s0 * x_seg:]
            for g in range(ng):
                # dot8[PARTITIONS[k]], written out here so that it is inlined (a call would
                # pass and reference-count the arrays for every group)
                k = idx[g]
                if k == 0:
                    dot8_8(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 1:
                    dot8_71(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 2:
                    dot8_62(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 3:
                    dot8_611(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 4:
                    dot8_53(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 5:
                    dot8_521(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 6:
                    dot8_5111(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 7:
                    dot8_44(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 8:
                    dot8_431(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 9:
                    dot8_422(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 10:
                    dot8_4211(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 11:
                    dot8_332(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 12:
                    dot8_3311(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 13:
                    dot8_3221(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                elif k == 14:
                    dot8_2222(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                else:
                    dot8_any(wv, xv, offs, 16 * g, ns, seg_len, seg_len, x_seg, r, 0)
                for i in range(8):
                    acc[dst[8 * g + i]] += r[i]
        for c in range(c0, c1):
            b = bias[row0 + c] if has_bias else np.float32(0.0)
            a0 = (c - c0) * NEURON_SLOTS
            for t in range(nb):
                v = _apply(acc[a0 + t] + b, act, p0, p1) * scale
                out[c, q0 + t] = v if keep[c, q0 + t] else np.float32(0.0)
    return counts.sum()


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
def aligned_empty(shape, align: int = 64) -> np.ndarray:
    """An uninitialised float32 array whose data starts on an ``align``-byte boundary.

    The micro-kernels' vector loads are unaligned loads, but one that straddles a cache
    line costs two: keeping panels on 64-byte boundaries halves the load traffic.
    """
    n = int(np.prod(shape))
    buf = np.empty(n + align // 4, np.float32)
    off = (-buf.ctypes.data % align) // 4
    return buf[off:off + n].reshape(shape)


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
                lay = neuron_layout(cg, kh, kw, sh, sw, dh, dw, oh, ow)
                if g == 0:
                    wn = _neuron_weights_cached(w, lay["kn"])
                xp = aligned_empty((lay["hp"], lay["wp"], cg))
                neuron_image(xg, pt, pl, xp)
                keep = um.reshape(m_count, p_count)[g * mg:(g + 1) * mg]
                k = conv_neuron(wn[g * mg:(g + 1) * mg], xp, keep, b, g * mg, has_bias, act, act_p0, act_p1, sc, yg,
                                lay["direct"], kh, kw, sh, sw, dh, dw, ow, lay["seg_len"], lay["nseg"], lay["x_seg"],
                                lay["sc"], lay["nbr"])
                computed += k
                macs += k * kdim
    return out, macs, computed


#: reordered neuron weights per weight array (id -> (weak reference, kn, wn)): a layer's
#: weights are constants, reordered once (the C backend's wt_ready); an entry goes when
#: its array is freed, so an id is never reused while its entry is there
_NEURON_WEIGHTS: dict[int, tuple] = {}


def _neuron_weights_cached(w: np.ndarray, kn: int) -> np.ndarray:
    key = id(w)
    hit = _NEURON_WEIGHTS.get(key)
    if hit is not None and hit[0]() is w and hit[1] == kn and hit[2] == w.shape:
        return hit[3]
    wn = aligned_empty((w.shape[0], kn))
    neuron_weights(w, kn, wn)
    try:
        ref = weakref.ref(w, lambda _r, key=key: _NEURON_WEIGHTS.pop(key, None))
    except TypeError:  # not weak-referenceable: no caching
        return wn
    _NEURON_WEIGHTS[key] = (ref, kn, w.shape, wn)
    return wn


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
