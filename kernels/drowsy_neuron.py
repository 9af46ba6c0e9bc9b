"""DrowsyNet, neuron granularity: masked 2-D convolution that computes only the kept
(channel, pixel) outputs of a per-neuron random mask (the mask itself, and the other
granularities, are in :mod:`aipnet.kernels.drowsy`; the C mirror is csrc/drowsy_neuron.c).
"""

from __future__ import annotations

import functools
import threading
import weakref

import numba
import numpy as np

from ._buffers import aligned_empty
from ._dot8 import (PARTITIONS, VEC_WIDTH, copy_run, ctz64, dot8_8, dot8_71, dot8_62, dot8_611, dot8_53, dot8_521,
                    dot8_5111, dot8_44, dot8_431, dot8_422, dot8_4211, dot8_332, dot8_3311, dot8_3221, dot8_2222,
                    dot8_any, dot8_bi, keep_bits, popcount64)
from ._jit import kernel, prange
from ._simd import fetch_add
from .activation import _apply

#: group kinds past the partitions (PARTITIONS index k < DOT8_ANY): eight weight rows, and
#: the 2 x 4 biclique
DOT8_ANY = len(PARTITIONS)
DOT8_BI = DOT8_ANY + 1

# -- neuron: eight kept outputs at a time, straight from a channels-last image ------------
#: a work item is a run of at most NEURON_SLOTS consecutive output pixels (whole output
#: rows, or part of one) x a chunk of NEURON_CHANNELS channels; the image region that
#: one K chunk of its patches reads is kept under NEURON_REGION bytes (it stays in L1
#: while the weight rows pass), or, where patches are copied to rows, the rows that one
#: K chunk reads under NEURON_ROWS_REGION (measured: for short K, whole rows that stay
#: in L2 beat K chunks of rows that stay in L1, whose dot products are too short)
NEURON_SLOT_BITS = 6
NEURON_SLOTS = 1 << NEURON_SLOT_BITS
NEURON_CHANNELS = 64
NEURON_REGION = 24 * 1024
NEURON_ROWS_REGION = 96 * 1024
#: bicliques pair a channel with the next NEURON_WINDOW channels of its chunk
NEURON_WINDOW = 5


@functools.lru_cache(maxsize=512)
def neuron_layout(cg, kh, kw, sh, sw, dh, dw, oh, ow):
    """The neuron kernel's layout of one conv group.

    The group's input is copied to a zero-padded channels-last image in blocks of cb
    channels (nblk x Hp x Wp x cb) and the weights reordered to the same (block, tap row,
    tap column, channel) order, so that the patch of output pixel (oy, ox) is, per block,
    kh runs of kw * cb contiguous floats of the image itself ("direct", when dw == 1 and
    kw * cb is a multiple of 8); otherwise (one block) each patch is copied to a row of K
    rounded up to VEC_WIDTH floats. A K chunk is ni tap rows of one block (direct; the longest
    chunk whose image region for a work item's pixels stays under NEURON_REGION) or
    chunk_len floats of the rows (their part under NEURON_ROWS_REGION). Work items: the
    output rows cut in nry runs of whole rows (nbr == 1), or each row cut in nbr parts
    (nry == OH). Returns (direct, cb, nblk, ni, kn, hp, wp, nry, nbr, chunk_len).
    """
    k = cg * kh * kw
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    direct = dw == 1 and (cg % 8 == 0 or (kw * cg) % 8 == 0)
    if ow <= NEURON_SLOTS:
        nbr = 1
        nry = -(-oh // (NEURON_SLOTS // ow))
        rows = -(-oh // nry)
        run_w = ow
    else:
        nbr = -(-ow // NEURON_SLOTS)
        nry = oh
        rows = 1
        run_w = -(-ow // nbr)
    if not direct:
        vw = VEC_WIDTH
        kn = -(-k // vw) * vw
        nb = rows * run_w
        most = max(NEURON_ROWS_REGION // (4 * nb) // vw * vw, vw)
        nck = -(-kn // most)
        return False, cg, 1, kh, kn, hp, wp, nry, nbr, -(-(-(-kn // nck)) // vw) * vw
    blocks = [d for d in range(8, cg + 1, 8) if cg % d == 0] if cg % 8 == 0 else [cg]
    best = None
    for cb in blocks:
        for ni in range(1, kh + 1):
            region = ((rows - 1) * sh + (ni - 1) * dh + 1) * ((run_w - 1) * sw + kw) * cb * 4
            # the longest chunk whose region fits (else the smallest region), then the widest block
            key = (region <= NEURON_REGION, ni * kw * cb if region <= NEURON_REGION else -region, cb)
            if best is None or key > best[0]:
                best = (key, cb, ni)
    _, cb, ni = best
    return True, cb, cg // cb, ni, k, hp, wp, nry, nbr, 0


@kernel(parallel=True)
def neuron_weights(w, cb, kn, wn):
    """wn[m, ((b*kh + i)*kw + j)*cb + c] = w[m, b*cb + c, i, j], rows zero-padded to kn."""
    m_count, cg, kh, kw = w.shape
    for m in prange(m_count):
        for c in range(cg):
            b = c // cb
            for i in range(kh):
                for j in range(kw):
                    wn[m, ((b * kh + i) * kw + j) * cb + c - b * cb] = w[m, c, i, j]
        for t in range(cg * kh * kw, kn):
            wn[m, t] = 0.0


@kernel()
def neuron_image(x, pt, pl, xp, r0, r1):
    """xp[b, yy, xx, c] = x[b*cb + c, yy - pt, xx - pl], 0 outside the image, for the rows
    r0 <= b*Hp + yy < r1 (x: C x H x W, xp: nblk x Hp x Wp x cb).

    A strided slice copy per channel and padded row (Numba's slice copies run several
    times faster than element loops here).
    """
    c_count, h, w = x.shape
    nblk, hp, wp, cb = xp.shape
    x0 = min(max(pl, 0), wp)
    x1 = max(min(pl + w, wp), x0)
    for r in range(r0, r1):
        b = r // hp
        yy = r % hp
        iy = yy - pt
        if iy < 0 or iy >= h:
            xp[b, yy] = 0.0
            continue
        xp[b, yy, :x0] = 0.0
        xp[b, yy, x1:] = 0.0
        for c in range(cb):
            xp[b, yy, x0:x1, c] = x[b * cb + c, iy, x0 - pl:x1 - pl]


def _group_tables():
    """For eight pairs in channel order whose channel changes before pair i (i = 1..7)
    where bit i - 1 of mask is set: GROUP_KERNEL[mask], the dot8 kernel (index into
    PARTITIONS, DOT8_ANY past 4 runs); GROUP_LANES[mask], the pairs' order on its lanes
    (runs longest first; stable); GROUP_HEADS[mask, j], the pair whose channel is run j's
    (lane j's for DOT8_ANY)."""
    kern = np.full(128, DOT8_ANY, np.int64)
    lanes = np.tile(np.arange(8, dtype=np.int64), (128, 1))
    heads = np.tile(np.arange(8, dtype=np.int64), (128, 1))
    for mask in range(128):
        starts = [0] + [i for i in range(1, 8) if mask >> (i - 1) & 1] + [8]
        runs = [(starts[j + 1] - starts[j], starts[j]) for j in range(len(starts) - 1)]
        if len(runs) > 4:
            continue
        runs.sort(key=lambda r: -r[0])
        kern[mask] = PARTITIONS.index(tuple(r[0] for r in runs))
        lanes[mask] = [i for length, at in runs for i in range(at, at + length)]
        heads[mask, :len(runs)] = [at for _, at in runs]
    return kern, lanes, heads


GROUP_KERNEL, GROUP_LANES, GROUP_HEADS = _group_tables()


@kernel()
def _neuron_groups(bm, c0, nc, kn, xq, offs, dst, idx):
    """List the kept (channel, pixel) pairs of one work item in groups of eight, for the
    dot8 kernels; returns the number of groups. bm[c]: bit t set iff pixel t of the
    item's run is kept in channel c0 + c (c < nc); consumed here.

    Bicliques first: channel c is paired with each of the next NEURON_WINDOW channels d
    in turn, and the pixels where both are still unlisted are taken four at a time as a
    2 x 4 biclique (two weight rows and four patches loaded per step for eight outputs).
    The pairs left over are listed in channel order and cut into groups of eight
    consecutive pairs whose lanes go in runs of one channel each, longest first
    (GROUP_LANES; a channel's lanes share its weight loads). Channel c's left-overs are
    listed right after its bicliques, so that its weight rows are reused while in cache.
    Group g: weight row offsets offs[16 g + j], patch offsets offs[16 g + 8 + j]
    (xq[slot]), kernel idx[g]; lane i: output dst[8 g + i] = channel * NEURON_SLOTS +
    slot. The last group is padded with copies of the last pair.
    """
    one = np.uint64(1)
    # pending left-overs (channel * NEURON_SLOTS + slot); a set bit of ``starts`` marks the
    # first pair of a channel (room for a channel's pairs past 7 pending, and padding)
    pend = np.empty(NEURON_SLOTS + 16, np.int64)
    starts = np.uint64(0)
    npend = 0
    ng = 0
    for ca in range(nc):
        # channel ca's unlisted pixels in a local (the stores below could alias bm[ca])
        ma = bm[ca]
        wa = (c0 + ca) * kn
        for cb in range(ca + 1, min(ca + 1 + NEURON_WINDOW, nc)):
            both = ma & bm[cb]
            nq = np.int64(popcount64(both)) >> 2
            if nq == 0:
                continue
            left = both
            wb = (c0 + cb) * kn
            for _ in range(nq):
                o = 16 * ng
                offs[o] = wa
                offs[o + 1] = wb
                for j in range(4):
                    # unsigned indices here and below: no negative-index wrap-around code
                    tu = ctz64(left)
                    t = np.int64(tu)
                    left &= left - one
                    offs[o + 8 + j] = xq[tu]
                    dst[8 * ng + j] = ca * NEURON_SLOTS + t
                    dst[8 * ng + 4 + j] = cb * NEURON_SLOTS + t
                idx[ng] = DOT8_BI
                ng += 1
            ma ^= both ^ left
            bm[cb] ^= both ^ left
        if ma != 0:
            starts |= np.uint64(npend > 0) << np.uint64(npend)
            while ma != 0:
                pend[npend] = ca * NEURON_SLOTS + np.int64(ctz64(ma))
                ma &= ma - one
                npend += 1
        if ca == nc - 1 and npend % 8 != 0:
            # pad the last group with copies of the last pair: they compute its sum again,
            # to the bit (same operands, same order), and store it again, harmlessly
            for i in range(npend, npend + 8 - npend % 8):
                pend[i] = pend[npend - 1]
            npend += 8 - npend % 8
        at = 0
        while npend - at >= 8:
            # bit i of starts: pending pair at + i starts a channel
            mask = np.int64((starts >> one) & np.uint64(127))
            o = 16 * ng
            idx[ng] = GROUP_KERNEL[mask]
            for j in range(8):
                offs[o + j] = (c0 + (pend[at + GROUP_HEADS[mask, j]] >> NEURON_SLOT_BITS)) * kn
            for lane in range(8):
                q = pend[at + GROUP_LANES[mask, lane]]
                offs[o + 8 + lane] = xq[np.uint64(q & (NEURON_SLOTS - 1))]
                dst[8 * ng + lane] = q
            ng += 1
            at += 8
            starts >>= np.uint64(8)
        if at > 0:
            for i in range(at, npend):
                pend[i - at] = pend[i]
            npend -= at
    return ng


@kernel()
def _neuron_item(wf, xf, key, thr, bias, row0, has_bias, act, p0, p1, scale, of, p_count, mg, kn, hp, wp, cb,
                 nblk, direct, kh, kw, sh, sw, dh, dw, ow, ni, nchunk, chunk_len, c0, nc, q0, nb):
    """One work item of :func:`conv_neuron`: channels c0 .. c0 + nc - 1 x the run of nb
    pixels from q0; returns the number of outputs computed."""
    seg = kw * cb
    ntap = -(-kh // ni)
    # the item's mask, channel by channel: bit t of bm[c] for pixel q0 + t
    keep = np.empty(nc, np.uint64)
    bm = np.empty(nc, np.uint64)
    kept = 0
    for c in range(nc):
        keep[c] = keep_bits(key, thr, (row0 + c0 + c) * p_count + q0, nb)
        bm[c] = keep[c]
        kept += np.int64(popcount64(keep[c]))
    xq = np.empty(NEURON_SLOTS, np.int64)
    if direct:
        xb = xf
        for t in range(nb):
            oy = (q0 + t) // ow
            ox = (q0 + t) % ow
            xq[t] = (oy * sh * wp + ox * sw) * cb
    else:
        # the run's patches as rows of kn floats (rows on vector boundaries: kn is a
        # multiple of VEC_WIDTH and the buffer starts on a 64-byte boundary)
        # (room past the end for copy_run's last vector)
        raw = np.empty(nb * kn + 16 + VEC_WIDTH, np.float32)
        a0 = ((-raw.ctypes.data) % 64) // 4
        xb = raw[a0:a0 + nb * kn]
        run_len = kw * cb if dw == 1 else cb
        for t in range(nb):
            oy = (q0 + t) // ow
            ox = (q0 + t) % ow
            d = t * kn
            xq[t] = d
            for i in range(kh):
                for j in range(kw * cb // run_len):
                    # in increasing order: each run overwrites what the last one wrote past its end
                    copy_run(xb, d, xf, ((oy * sh + i * dh) * wp + ox * sw + j * dw) * cb, run_len)
                    d += run_len
            for k in range(d, t * kn + kn):
                xb[k] = 0.0
    ng_most = (nc * nb) // 8 + 2
    offs = np.empty(ng_most * 16, np.int64)
    dst = np.empty(ng_most * 8, np.int64)
    idx = np.empty(ng_most, np.int64)
    ng = _neuron_groups(bm, c0, nc, kn, xq, offs, dst, idx)
    acc = np.zeros(ng * 8, np.float32)
    # the groups by kind (a counting sort, stable): each kind's run of groups takes
    # the same branch, where mixed kinds would mispredict it group after group
    order = np.empty(ng, np.int64)
    first = np.zeros(DOT8_BI + 2, np.int64)
    for g in range(ng):
        first[idx[g] + 1] += 1
    for k in range(DOT8_BI + 1):
        first[k + 1] += first[k]
    for g in range(ng):
        order[first[idx[g]]] = g
        first[idx[g]] += 1
    for ci in range(nchunk):
        if direct:
            blk = ci // ntap
            i0 = (ci % ntap) * ni
            w0 = (blk * kh + i0) * seg
            x0 = (blk * hp + i0 * dh) * wp * cb
            ns = min(ni, kh - i0)
            sl = seg
            w_seg = seg
            x_seg = dh * wp * cb
        else:
            w0 = ci * chunk_len
            x0 = w0
            ns = 1
            sl = min(chunk_len, kn - w0)
            w_seg = 0
            x_seg = 0
        for gi in range(ng):
            g = order[gi]
            # dot8 by kind, written out here so that it is inlined (a call would pass
            # and reference-count the arrays for every group)
            k = idx[g]
            o = 16 * g
            a = 8 * g
            if k == DOT8_BI:
                dot8_bi(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 0:
                dot8_8(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 1:
                dot8_71(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 2:
                dot8_62(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 3:
                dot8_611(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 4:
                dot8_53(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 5:
                dot8_521(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 6:
                dot8_5111(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 7:
                dot8_44(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 8:
                dot8_431(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 9:
                dot8_422(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 10:
                dot8_4211(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 11:
                dot8_332(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 12:
                dot8_3311(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 13:
                dot8_3221(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            elif k == 14:
                dot8_2222(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
            else:
                dot8_any(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a)
    # the sums to a tile (channel x slot), then its rows out with bias and activation:
    # every output written, the dropped ones 0 (their tile slots are never set)
    tile = np.empty(nc * NEURON_SLOTS, np.float32)
    for i in range(8 * ng):
        tile[np.uint64(dst[i])] = acc[i]
    for c in range(nc):
        m = keep[c]
        bc = bias[row0 + c0 + c] if has_bias else np.float32(0.0)
        # slices, indexed from 0 by the loop: no negative-index wrap-around in the loop
        orow = of[(c0 + c) * p_count + q0:(c0 + c) * p_count + q0 + nb]
        trow = tile[c * NEURON_SLOTS:c * NEURON_SLOTS + nb]
        for t in range(nb):
            v = np.float32(_apply(trow[t] + bc, act, p0, p1) * scale)
            orow[t] = v if (m >> np.uint64(t)) & np.uint64(1) else np.float32(0.0)
    return kept


@kernel(parallel=True)
def conv_neuron(wn, x, pt, pl, xp, key, thr, bias, row0, has_bias, act, p0, p1, scale, out,
                direct, kh, kw, sh, sw, dh, dw, ow, ni, nry, nbr, chunk_len, workers):
    """out[c, p] = act(wn[c] . patch(p) + bias[row0 + c]) * scale where unit (row0 + c) * P
    + p of the mask (key, thr) is kept, else 0.

    One conv group. wn: Mg x kn reordered weights (:func:`neuron_weights`); x: the
    group's input, C/group x H x W, copied here to xp, its channels-last padded image
    in blocks, nblk x Hp x Wp x cb (:func:`neuron_image`; VEC_WIDTH floats of room past
    its end, which copy_run reads over: :func:`_image_buffer`); key, thr (uint64): the
    layer key and drop threshold of the mask generator; out: Mg x P, every output
    written. Geometry from :func:`neuron_layout`.

    Work items: a run of at most NEURON_SLOTS consecutive pixels x NEURON_CHANNELS
    channels, channel-chunk major so that consecutive items share weight rows. An item
    makes its own part of the mask (:func:`keep_bits`). A patch is read straight from
    xp (``direct``: per block, kh segments of kw * cb floats), or else the run's
    patches are first copied to rows of kn floats, zero-padded. The item's kept pairs
    are listed in groups of eight (:func:`_neuron_groups`) and, per K chunk (whose image
    region stays in cache while the weight rows pass), every group runs its dot8
    kernel, adding its eight partial sums to its accumulators; then the item's outputs
    are written.

    One parallel region: ``workers`` prange iterations (one per thread) take tasks in
    order from a shared counter (an atomic add), so that the threads stay busy to the
    end whatever the tasks' sizes or other load on the cores: first the image copy
    (chunks of rows), then, once a second counter says those are done, the items.
    Returns the number of outputs computed.
    """
    mg, kn = wn.shape
    nblk, hp, wp, cb = xp.shape
    p_count = out.shape[1]
    oh = p_count // ow
    wf = wn.ravel()
    of = out.reshape(out.size)
    xf = xp.ravel()
    nchunk = nblk * -(-kh // ni) if direct else -(-kn // chunk_len)
    nruns = nry * nbr
    nitem = -(-mg // NEURON_CHANNELS) * nruns
    nrows = nblk * hp
    nimg = min(nrows, 4 * workers) if workers > 1 else 1
    ntask = nimg + nitem
    nw = max(1, min(workers, ntask))
    done = np.zeros(nw, np.int64)
    queue = np.zeros(2, np.int64)  # [next task, image tasks finished]
    for wk in prange(nw):
        ready = False
        computed = 0  # this thread's outputs (written to done once: no shared line per item)
        while True:
            task = fetch_add(queue, 0, 1)
            if task >= ntask:
                break
            if task < nimg:
                neuron_image(x, pt, pl, xp, task * nrows // nimg, (task + 1) * nrows // nimg)
                fetch_add(queue, 1, 1)
                continue
            while not ready:  # the other threads' last rows (a few us at most)
                ready = fetch_add(queue, 1, 0) == nimg
            it = task - nimg
            ch = it // nruns
            # a chunk's runs last to first: the runs cut from the end are the longest,
            # so the queue's last items are short (a shorter tail on the other threads)
            run = nruns - 1 - it % nruns
            ry = run // nbr
            oy0 = ry * oh // nry
            bi = run % nbr
            ox0 = bi * ow // nbr
            nb = ((ry + 1) * oh // nry - oy0) * ((bi + 1) * ow // nbr - ox0)
            c0 = ch * NEURON_CHANNELS
            computed += _neuron_item(wf, xf, key, thr, bias, row0, has_bias, act, p0, p1, scale, of, p_count, mg, kn,
                                     hp, wp, cb, nblk, direct, kh, kw, sh, sw, dh, dw, ow, ni, nchunk, chunk_len, c0,
                                     min(NEURON_CHANNELS, mg - c0), oy0 * ow + ox0, nb)
        done[wk] = computed
    return done.sum()


def conv_neuron_group(xg, w, g, mg, key, thr, bias, has_bias, act, p0, p1, scale, geo, yg) -> int:
    """Kept outputs of conv group ``g`` of one image; returns how many were computed.

    xg: the group's input (C/group x H x W); w: all the weights (M x C/group x KH x KW,
    reordered once per array and cached); key, thr: the image's mask (layer key and
    drop threshold, :mod:`aipnet.kernels.drowsy`), whose units are those of all M
    channels; geo: (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow); yg: the group's Mg x P
    output, every element written (dropped outputs 0).
    """
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geo
    cg = xg.shape[0]
    direct, cb, nblk, ni, kn, hp, wp, nry, nbr, chunk_len = neuron_layout(cg, kh, kw, sh, sw, dh, dw, oh, ow)
    wn = _neuron_weights_cached(w, cb, kn)
    xp = _image_buffer(nblk * hp * wp * cb).reshape(nblk, hp, wp, cb)
    return int(conv_neuron(wn[g * mg:(g + 1) * mg], xg, pt, pl, xp, np.uint64(key), np.uint64(thr), bias, g * mg,
                           has_bias, act, p0, p1, scale, yg, direct, kh, kw, sh, sw, dh, dw, ow, ni, nry, nbr,
                           chunk_len, numba.get_num_threads()))


#: the padded image's buffer, per Python thread, kept from call to call (fresh memory
#: for it would be mapped and faulted in page by page at every call)
_SCRATCH = threading.local()


def _image_buffer(size: int) -> np.ndarray:
    """size floats, with VEC_WIDTH more past the end (copy_run reads a vector's tail past
    the image)."""
    buf = getattr(_SCRATCH, "image", None)
    if buf is None or buf.size < size + VEC_WIDTH:
        buf = aligned_empty((size + VEC_WIDTH,))
        _SCRATCH.image = buf
    return buf[:size]


#: reordered neuron weights per weight array (id -> (weak reference, layout, wn)): a
#: layer's weights are constants, reordered once; an entry goes when its array is freed,
#: so an id is never reused while its entry is there
_NEURON_WEIGHTS: dict[int, tuple] = {}


def _neuron_weights_cached(w: np.ndarray, cb: int, kn: int) -> np.ndarray:
    key = id(w)
    hit = _NEURON_WEIGHTS.get(key)
    lay = (cb, kn, w.shape)
    if hit is not None and hit[0]() is w and hit[1] == lay:
        return hit[2]
    wn = aligned_empty((w.shape[0], kn))
    neuron_weights(w, cb, kn, wn)
    try:
        ref = weakref.ref(w, lambda _r, key=key: _NEURON_WEIGHTS.pop(key, None))
    except TypeError:  # not weak-referenceable: no caching
        return wn
    _NEURON_WEIGHTS[key] = (ref, lay, wn)
    return wn
