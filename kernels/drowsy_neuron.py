"""DrowsyNet, neuron granularity: masked 2-D convolution that computes only the kept
(channel, pixel) outputs of a per-neuron random mask (the mask itself, and the other
granularities, are in :mod:`aipnet.kernels.drowsy`; the C mirror is csrc/drowsy_neuron.c).
"""

from __future__ import annotations

import weakref

import numpy as np

from ._buffers import aligned_empty
from ._dot8 import (PARTITIONS, dot8_8, dot8_71, dot8_62, dot8_611, dot8_53, dot8_521, dot8_5111, dot8_44, dot8_431,
                    dot8_422, dot8_4211, dot8_332, dot8_3311, dot8_3221, dot8_2222, dot8_any)
from ._jit import kernel, prange
from .activation import _apply

DOT8_ANY = len(PARTITIONS)


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


def conv_neuron_group(xg, w, g, mg, keep_all, bias, has_bias, act, p0, p1, scale, geo, yg) -> int:
    """Kept outputs of conv group ``g`` of one image; returns how many were computed.

    xg: the group's input (C/group x H x W); w: all the weights (M x C/group x KH x KW,
    reordered once per array and cached); keep_all: the image's M x P uint8 mask; geo:
    (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow); yg: the group's Mg x P output, every element
    written (dropped outputs 0).
    """
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geo
    cg = xg.shape[0]
    lay = neuron_layout(cg, kh, kw, sh, sw, dh, dw, oh, ow)
    wn = _neuron_weights_cached(w, lay["kn"])
    xp = aligned_empty((lay["hp"], lay["wp"], cg))
    neuron_image(xg, pt, pl, xp)
    keep = keep_all[g * mg:(g + 1) * mg]
    return int(conv_neuron(wn[g * mg:(g + 1) * mg], xp, keep, bias, g * mg, has_bias, act, p0, p1, scale, yg,
                           lay["direct"], kh, kw, sh, sw, dh, dw, ow, lay["seg_len"], lay["nseg"], lay["x_seg"],
                           lay["sc"], lay["nbr"]))


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
