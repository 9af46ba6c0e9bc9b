"""The implicit-GEMM convolution engine: exact conv and DrowsyNet's pixel, channel and tile
granularities run on it.

Output (c, p) of group g = sum_k w[c, k] * xp[g's first channel + pixoff[p] + koff[k]]:
the weights as K x 16 panels of 16 output channels (:func:`pack_panels`, packed once per
layer when they are constants), the patches read in place from the zero-padded input xp
through a table of tap offsets (koff) and the pixels' window origins (pixoff), so no patch
matrix is built and any set of output pixels is a list of window origins. The register
tile is up to 12 pixels x 16 channels (:mod:`aipnet.kernels._simd`). A work item is a run
of pixels x one panel (:data:`Q0` .. :data:`G`); the exact conv's items are all panels x
near-equal runs of all pixels (:func:`dense_items`), DrowsyNet's are those of its kept
units (:mod:`aipnet.kernels.drowsy`).

Why not im2col + BLAS (the exact conv's kernel before): building the patch matrix costs
a pass over K x P floats written and read again, and BLAS packs the weights at every
call; here the weights are packed once and the patches never copied, which measured
0.53-0.83 of im2col + OpenBLAS's time on VGG-f's convs at 1 thread (kernels/conv.py says
where BLAS is still used).
"""

from __future__ import annotations

import numpy as np

from ._buffers import aligned_empty
from ._jit import kernel, prange
from ._simd import HALF_ROWS, TILE_ROWS, fetch_add, mk_half, mk_panel, pack16x8, transpose16
from .activation import _apply
from .parallel import MIN_SPLIT_MACS

#: output channels of a weight panel (the micro-kernel's 16 lanes)
LANES = 16
#: pixels per work item (the tile granularity's item is its tile): whole register tiles,
#: enough of them that each K block of the item's weight panel, loaded into L1 once,
#: serves several micro-kernel calls
SEG_PIXELS = 60
#: K block: a KC x 16 block of a weight panel (16 KiB) stays in L1 while the item's pixels
#: pass over it
KC = 256
#: an item: its pixels pix[Q0:Q1], the outputs it writes R0 .. R1-1 (0 where not
#: computed), its panel J of group G (columns of the items arrays)
Q0, Q1, R0, R1, J, G = 0, 1, 2, 3, 4, 5


@kernel()
def group_lanes(row0, mg):
    """The weight panels of a conv group's channels row0 .. row0+mg-1 (global numbers).

    Panels hold 16 channels, split where global channel numbers are multiples of 16, so
    that each panel lies in one DrowsyNet tile row: lanes[j, v] = the group-local channel
    in lane v of panel j (global channel = row0 + lanes[j, v], lane v = its global number
    mod 16), -1 for an empty lane.
    """
    first = row0 // LANES
    npanel = (row0 + mg - 1) // LANES - first + 1
    lanes = np.full((npanel, LANES), -1, np.int64)
    for c in range(mg):
        g = row0 + c
        lanes[g // LANES - first, g % LANES] = c
    return lanes


@kernel()
def pack_panels(w, lanes, panels):
    """panels[j, k, v] = w[lanes[j, v], k]: weight rows as K x 16 panels.

    w: Mg x K (C-contiguous); panels: len(lanes) x K x 16, 64-byte aligned, so that each
    k of a panel is one cache line, the micro-kernel's B operand (16 channels in one or
    two vectors). Rows are transposed 8 k at a time in registers. An empty lane (-1) gets
    a copy of a used lane of its panel: computed with it, never stored.
    """
    kdim = w.shape[1]
    wf = w.ravel()
    pf = panels.ravel()
    offs = np.empty(LANES, np.int64)
    k8 = kdim - kdim % 8
    for j in range(lanes.shape[0]):
        used = 0
        for v in range(LANES):
            if lanes[j, v] >= 0:
                used = lanes[j, v]
        for v in range(LANES):
            offs[v] = (lanes[j, v] if lanes[j, v] >= 0 else used) * kdim
        base = j * kdim * LANES
        for k0 in range(0, k8, 8):
            pack16x8(wf, offs, 0, k0, pf, base + k0 * LANES)
        for k in range(k8, kdim):
            for v in range(LANES):
                pf[base + k * LANES + v] = wf[offs[v] + k]


def prepare(w: np.ndarray, group: int) -> tuple:
    """(w2, panels, lanes, npanel) of a conv's weights, what :func:`conv_gemm` needs besides
    the input: w2 the G x Mg x K weights, panels all weight panels (G x NP x K x 16), their
    lanes (G x NP x 16, :func:`group_lanes`) and counts (G)."""
    mg = w.shape[0] // group
    w2 = np.ascontiguousarray(w, dtype=np.float32).reshape(group, mg, -1)
    lanes_g = [group_lanes(g * mg, mg) for g in range(group)]
    npanel = np.array([ln.shape[0] for ln in lanes_g], np.int64)
    lanes = np.full((group, int(npanel.max()), LANES), -1, np.int64)
    panels = aligned_empty((group, lanes.shape[1], w2.shape[2], LANES))
    for g in range(group):
        lanes[g, :npanel[g]] = lanes_g[g]
        pack_panels(w2[g], lanes[g], panels[g])
    return w2, panels, lanes, npanel


@kernel()
def pad_channels(x, pt, pl, xp, c0, c1):
    """xp[c] = x[c] inside a zero border (xp[c, pt + y, pl + x] = x[c, y, x]) for c0 <= c < c1.

    x: C x H x W, xp: C x HP x WP (HP >= pt + H, WP >= pl + W). Zeroing the planes first,
    then copying the rows, is twice as fast as writing each padded row's pieces (rows are
    short); unsigned offsets make both plain vectorised loops.
    """
    h, w = x.shape[1], x.shape[2]
    hp, wp = xp.shape[1], xp.shape[2]
    xf = x.ravel()
    pf = xp.ravel()
    for t in range(np.uint64(c0 * hp * wp), np.uint64(c1 * hp * wp)):
        pf[t] = 0.0
    for c in range(c0, c1):
        for iy in range(h):
            d = np.uint64((c * hp + pt + iy) * wp + pl)
            s = np.uint64((c * h + iy) * w)
            for t in range(np.uint64(w)):
                pf[d + t] = xf[s + t]


@kernel()
def windows(x_shape, group, geo):
    """The padded input every window lies in, and the tap offsets of one group's windows.

    geo: (kh, kw, sh, sw, dh, dw, pt, pl, oh, ow). Returns (xp, koff, wp): xp an empty
    C x HP x WP buffer for :func:`conv_image` to fill, or a 0 x 0 x 0 one when x needs no
    border (then read in place); koff[(c, i, j)] = offset of tap (c, i, j) from its
    pixel's window origin; wp the row length windows are addressed with.
    """
    c_count, h, wd = x_shape[1], x_shape[2], x_shape[3]
    kh, kw, sh, sw, dh, dw, pt, pl, oh, ow = geo
    hp = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)
    wp = max(wd + pl, (ow - 1) * sw + (kw - 1) * dw + 1)
    pad = hp != h or wp != wd
    xp = np.empty((c_count, hp, wp) if pad else (0, 0, 0), np.float32)
    koff = np.empty((c_count // group) * kh * kw, np.int64)
    t = 0
    for c in range(c_count // group):
        for i in range(kh):
            for j in range(kw):
                koff[t] = (c * hp + i * dh) * wp + j * dw
                t += 1
    return xp, koff, wp


@kernel()
def pixel_offsets(oh, ow, sh, sw, wp):
    """Window origin of every output pixel p = y*OW + x in the padded input (one plane),
    row by row: no division per pixel (1.1 us instead of 6.7 for VGG-f conv1's 2916
    pixels, per call). A list of pixels takes its origins from this table."""
    off = np.empty(oh * ow, np.int64)
    for y in range(oh):
        for x in range(ow):
            off[y * ow + x] = y * sh * wp + x * sw
    return off


@kernel()
def put_item(items, t, q0, q1, r0, r1, j, g):
    items[t, Q0] = q0
    items[t, Q1] = q1
    items[t, R0] = r0
    items[t, R1] = r1
    items[t, J] = j
    items[t, G] = g


@kernel()
def dense_items(npanel, p_count, extra):
    """Items computing panels 0 .. npanel[g]-1 of each group g over all P pixels (pix =
    0 .. P-1): near-equal runs of about SEG_PIXELS pixels, each run x all panels, run by
    run (consecutive items share their input windows in cache). ``extra`` rows are left at the
    end for the caller. Returns (items, the number filled)."""
    ns = max(1, (p_count + SEG_PIXELS - 1) // SEG_PIXELS)
    items = np.empty((ns * npanel.sum() + extra, 6), np.int64)
    t = 0
    for s in range(ns):
        q0 = s * p_count // ns
        q1 = (s + 1) * p_count // ns
        for g in range(npanel.shape[0]):
            for j in range(npanel[g]):
                put_item(items, t, q0, q1, q0, q1, j, g)
                t += 1
    return items, t


@kernel()
def conv_image(x, xp, pt, pl, w2, panels, lanes, npk, koff, pixoff, items, pix, bias, has_bias, act, p0, p1, scale,
               y, workers):
    """One image of a conv: the padding, the packing of panels it needs, the work items.

    x: C x H x W; xp: C x HP x WP, filled here from x, or empty when x needs no border
    (then read in place); w2: G x Mg x K; panels: G x NP x K x 16, of which panels
    0 .. npk[g]-1 of group g are packed here (:func:`pack_panels`, by lanes; npk all 0
    when they are packed already); pixoff: the window origins of pix; items: rows of
    (Q0 .. G); y: M x P, every element written. The tasks (the border in chunks of
    channels, the packing, then the items in order) run on up to ``workers`` threads
    (:func:`_run_workers`), or on this one when they are too small to share: below
    MIN_SPLIT_MACS a parallel launch costs more than it saves. Returns the number of
    outputs computed.
    """
    c_count = x.shape[0]
    kdim = w2.shape[2]
    npad = min(c_count, 16) if xp.size > 0 else 0
    packs = np.empty((npk.sum(), 2), np.int64)
    t = 0
    for g in range(w2.shape[0]):
        for j in range(npk[g]):
            packs[t, 0] = g
            packs[t, 1] = j
            t += 1
    ntask = npad + t + items.shape[0]
    maxq = 1
    work = 0
    for it in range(items.shape[0]):
        nq = items[it, Q1] - items[it, Q0]
        maxq = max(maxq, nq)
        work += nq
    tstride = (maxq + 15) // 16 * 16
    nw = max(1, min(workers, ntask))
    if work * LANES * kdim < MIN_SPLIT_MACS:
        nw = 1
    queue = np.zeros(2, np.int64)  # [next task, preparation tasks finished]
    if nw == 1:
        return _worker(x, xp, pt, pl, w2, panels, lanes, koff, pixoff, items, pix, bias, has_bias, act, p0, p1,
                       scale, y, npad, packs, tstride, queue)
    return _run_workers(nw, x, xp, pt, pl, w2, panels, lanes, koff, pixoff, items, pix, bias, has_bias, act, p0, p1,
                        scale, y, npad, packs, tstride, queue)


@kernel(parallel=True)
def _run_workers(nw, x, xp, pt, pl, w2, panels, lanes, koff, pixoff, items, pix, bias, has_bias, act, p0, p1, scale, y,
                 npad, packs, tstride, queue):
    """One parallel region: ``nw`` prange iterations (one per thread) take tasks from the
    shared queue until it is empty, so that the threads stay busy to the end whatever the
    tasks' sizes or other load on the cores.

    No array expressions here (np.zeros, .sum()): under parallel=True each becomes a
    parallel region of its own, and every region wakes the sleeping OpenMP workers (100-200
    us each on a 2-core VM, measured)."""
    done = np.empty(nw, np.int64)
    for wk in prange(nw):
        done[wk] = _worker(x, xp, pt, pl, w2, panels, lanes, koff, pixoff, items, pix, bias, has_bias, act, p0, p1,
                           scale, y, npad, packs, tstride, queue)
    computed = 0
    for wk in range(nw):
        computed += done[wk]
    return computed


@kernel()
def _worker(x, xp, pt, pl, w2, panels, lanes, koff, pixoff, items, pix, bias, has_bias, act, p0, p1, scale, y, npad,
            packs, tstride, queue):
    """One thread's share of :func:`conv_image`'s tasks, taken in order from a shared
    counter (queue[0], an atomic add): task t < npad pads channel chunk t, then packs[t -
    npad] = (group, panel) is packed, then, once queue[1] says every preparation task is
    done, item t - npad - len(packs) runs. An item accumulates its pixels x 16 lanes in a
    small buffer, K block by K block, TILE_ROWS pixels at a time in the micro-kernel's
    register tile, transposes it to channel rows and writes act(acc + bias) * scale over
    its span R0 .. R1-1 (0 where not computed). Returns the outputs it computed."""
    c_count = x.shape[0]
    group, mg, kdim = w2.shape
    cg = c_count // group
    p_count = y.shape[1]
    yf = y.ravel()
    pad = xp.size > 0
    src = xp.ravel() if pad else x.ravel()
    hpwp = xp.shape[1] * xp.shape[2] if pad else x.shape[1] * x.shape[2]
    nprep = npad + packs.shape[0]
    ntask = nprep + items.shape[0]
    acc = np.empty(tstride * LANES, np.float32)
    acct = np.empty(LANES * tstride, np.float32)
    ready = nprep == 0
    computed = 0
    while True:
        task = fetch_add(queue, 0, 1)
        if task >= ntask:
            break
        if task < npad:
            pad_channels(x, pt, pl, xp, task * c_count // npad, (task + 1) * c_count // npad)
            fetch_add(queue, 1, 1)
            continue
        if task < nprep:
            g, j = packs[task - npad, 0], packs[task - npad, 1]
            pack_panels(w2[g], lanes[g, j:j + 1], panels[g, j:j + 1])
            fetch_add(queue, 1, 1)
            continue
        while not ready:  # the other threads' last preparation tasks (a few us at most)
            ready = fetch_add(queue, 1, 0) == nprep
        it = task - nprep
        q0, q1, r0, r1, j, g = items[it, Q0], items[it, Q1], items[it, R0], items[it, R1], items[it, J], items[it, G]
        nq = q1 - q0
        if nq > 0:
            acc[:nq * LANES] = 0.0
            # a panel whose lanes 8-15 are empty (a group's last, channel's last) takes the
            # 8-lane kernel: about 2/3 of a full panel's time (kernels/_simd.py, HALF_ROWS)
            half = lanes[g, j, 8:].max() < 0
            rows = HALF_ROWS if half else TILE_ROWS
            x0 = g * cg * hpwp
            pg = panels[g]
            for k0 in range(0, kdim, KC):
                n = min(KC, kdim - k0)
                boff = (j * kdim + k0) * LANES
                q = 0
                while q < nq:
                    # full register tiles, the last rows+1 .. 2*rows-1 as two near-equal
                    # tiles (a tile of few rows is bound by FMA latency)
                    r = nq - q
                    r = rows if r >= 2 * rows else ((r + 1) // 2 if r > rows else r)
                    if half:
                        mk_half(r, src, x0, pixoff, q0 + q, koff, k0, pg, boff, acc, q * LANES, n)
                    else:
                        mk_panel(r, src, x0, pixoff, q0 + q, koff, k0, pg, boff, acc, q * LANES, n)
                    q += r
            # lane-major (16 x 16 register transposes): each channel's outputs contiguous
            for i in range(0, nq, 16):
                transpose16(acc, i * LANES, acct, i, tstride)
        for v in range(LANES):
            ch = lanes[g, j, v]
            if ch < 0:
                continue
            ch += g * mg
            computed += nq
            bv = bias[ch] if has_bias else np.float32(0.0)
            yo = np.uint64(ch * p_count)
            to = np.uint64(v * tstride)
            if r1 - r0 == nq:  # the span is the computed pixels (pix[q0:q1] = r0 .. r1-1)
                yo += np.uint64(r0)
                for i in range(np.uint64(nq)):
                    yf[yo + i] = _apply(acct[to + i] + bv, act, p0, p1) * scale
                continue
            for p in range(np.uint64(r0), np.uint64(r1)):
                yf[yo + p] = 0.0
            for i in range(nq):
                yf[yo + np.uint64(pix[q0 + i])] = _apply(acct[to + np.uint64(i)] + bv, act, p0, p1) * scale
    return computed


@kernel()
def conv_gemm(x, w2, panels, lanes, npanel, geo, bias, has_bias, act, p0, p1, out, workers):
    """Exact convolution, all images and groups: out[n] = act(conv(x[n]) + bias).

    x: N x C x H x W; w2, panels, lanes, npanel: :func:`prepare`; geo: (kh, kw, sh, sw,
    dh, dw, pt, pl, oh, ow); out: N x M x P. ``workers``: threads (prange iterations).
    """
    pt, pl, ow = geo[6], geo[7], geo[9]
    p_count = out.shape[2]
    xp, koff, wp = windows(x.shape, w2.shape[0], geo)
    pix = np.arange(p_count)
    pixoff = pixel_offsets(geo[8], ow, geo[2], geo[3], wp)
    items = dense_items(npanel, p_count, 0)[0]
    no_packing = np.zeros(w2.shape[0], np.int64)
    for n in range(x.shape[0]):
        conv_image(x[n], xp, pt, pl, w2, panels, lanes, no_packing, koff, pixoff, items, pix, bias, has_bias, act,
                   p0, p1, np.float32(1.0), out[n], workers)
