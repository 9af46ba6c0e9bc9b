"""Register-blocked float32 micro-kernels written as LLVM IR (Numba intrinsics).

Why: Numba's auto-vectoriser will not keep a GEMM micro-tile in registers (it vectorises
the reduction loop instead, or spills). This is plain IR on float vectors and
``llvm.fmuladd``, so it compiles for any host (AVX2 or AVX-512 x86, NEON on AArch64: the
vector is split or widened by the backend) and is cached with its callers
(``cache=True``). It takes arrays plus element offsets (no raw pointers escape) and does
no bounds checks: callers keep every offset in range.

``mk_panel(rows, a, a_off, rows_off, r0, koff, k0, b, b_off, c, c_off, n)``, the
micro-kernel of the implicit-GEMM conv (:mod:`aipnet.kernels.conv_gemm`, exact and DrowsyNet):
for r < rows and j < 16,

    c[c_off + 16*r + j] += sum_{k < n} a[a_off + rows_off[r0 + r] + koff[k0 + k]] * b[b_off + 16*k + j]

A rows are output pixels whose patches are read in place from the padded input through
the tap-offset table ``koff`` (one broadcast per row and k); B is a K x 16 weight panel
(16 output channels per k, contiguous: one cache line when 64-byte aligned, measured
twice as fast as straddling two). The register tile is ``rows`` x 16: ``rows`` is a run-time
argument (1 .. TILE_ROWS), switched to a loop compiled for each row count. ``mk_half``
is the same for lanes 0-7 only (up to HALF_ROWS rows), for a panel whose other lanes
are empty.

Vector width: the weights' 16 lanes are one 16-float vector where the compile target has
AVX-512 (12-row tile: 12 accumulators of its 32 registers), else two 8-float vectors
(6-row tile: 12 of AVX2's 16 registers). The exact conv runs on this kernel too, so
DrowsyNet's ratios compare like with like (and BLAS, which the exact conv keeps for large
pointwise convs, picks its AVX-512 kernels on such hosts too); on Zen 4 (AVX-512 at
256-bit throughput) the wide form still measured 5-10% faster (fewer instructions per FMA).

Numba's cache does not track this module: after a change here, the cached code of the
kernels that call these (kernels/__pycache__) stays stale until their own files change
or the cache is cleared.

``pack16x8``: a 16 x 8 block of weight rows transposed in registers into 8 k-rows of a
panel (how :func:`aipnet.kernels.conv_gemm.pack_panels` packs); ``transpose16``: a 16 x 16
block of the accumulated tile (pixel rows) into channel rows, for contiguous stores.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_VEC = ir.VectorType(_F32, 8)


def _target_has_avx512() -> bool:
    """Whether Numba compiles for a CPU with AVX-512 (its own choice: NUMBA_CPU_FEATURES, else
    the host's features less AVX if NUMBA_ENABLE_AVX is off)."""
    feats = numba.config.CPU_FEATURES
    if feats is None:
        feats = get_host_cpu_features()
    return "+avx512f" in feats.split(",")


#: floats per vector of the micro-kernel: 16 (one per 16-channel panel row) with AVX-512, else 8
VW = 16 if _target_has_avx512() else 8
#: pixel rows of the register tile (a tile of fewer than 8 * VW / 16 rows has under 8
#: independent accumulators: bound by FMA latency, not throughput)
TILE_ROWS = 12 if VW == 16 else 6


def _data(context, builder, aryty, ary):
    return context.make_array(aryty)(context, builder, ary).data


def _vload(builder, base, off, vec=_VEC):
    return builder.load(builder.bitcast(builder.gep(base, [off]), vec.as_pointer()), align=4)


def _vstore(builder, val, base, off):
    builder.store(val, builder.bitcast(builder.gep(base, [off]), val.type.as_pointer()), align=4)


def _splat(builder, s, vec=_VEC):
    n = vec.count
    v = builder.insert_element(ir.Constant(vec, ir.Undefined), s, _I32(0))
    return builder.shuffle_vector(v, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(_I32, n), [0] * n))


def _fma(builder, vec=_VEC):
    fty = ir.FunctionType(vec, [vec, vec, vec])
    return cgutils.get_or_insert_function(builder.module, fty, f"llvm.fmuladd.v{vec.count}f32")


def _accumulators(builder, count, vec=_VEC):
    slots = []
    for _ in range(count):
        slot = cgutils.alloca_once(builder, vec)  # entry block: promoted to registers
        builder.store(ir.Constant(vec, None), slot)
        slots.append(slot)
    return slots


def _c(val, k):
    return ir.Constant(val.type, k)


def _check_f32(*arrays):
    return all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays)


def _panel_tile(builder, rows, width, ap, rp, r0, kp, bp, cp, c_off, n):
    """The loop of one register tile: ``rows`` pixel rows x the first ``width`` (16 or 8) lanes."""
    vw = min(VW, width)
    vec = ir.VectorType(_F32, vw)
    nv = width // vw
    fma = _fma(builder, vec)
    arow = [builder.gep(ap, [builder.load(builder.gep(rp, [builder.add(r0, _c(r0, r))]))]) for r in range(rows)]
    crow = [builder.add(c_off, _c(c_off, 16 * r)) for r in range(rows)]
    acc = _accumulators(builder, nv * rows, vec)
    for r in range(rows):
        for v in range(nv):
            builder.store(_vload(builder, cp, builder.add(crow[r], _c(c_off, vw * v)), vec), acc[nv * r + v])
    with cgutils.for_range(builder, n) as loop:
        k = loop.index
        ko = builder.load(builder.gep(kp, [k]))  # one base pointer per row: each broadcast loads [row + koff[k]]
        bo = builder.mul(k, _c(k, 16))
        bv = [_vload(builder, bp, builder.add(bo, _c(bo, vw * v)), vec) for v in range(nv)]
        for r in range(rows):
            s = _splat(builder, builder.load(builder.gep(arow[r], [ko])), vec)
            for v in range(nv):
                slot = acc[nv * r + v]
                builder.store(builder.call(fma, [s, bv[v], builder.load(slot)]), slot)
    for r in range(rows):
        for v in range(nv):
            _vstore(builder, builder.load(acc[nv * r + v]), cp, builder.add(crow[r], _c(c_off, vw * v)))


def _make_mk_panel(width: int, max_rows: int):
    @intrinsic
    def mk(typingctx, rows, a, a_off, rows_off, r0, koff, k0, b, b_off, c, c_off, n):
        if not _check_f32(a, b, c):
            return None
        sig = types.void(types.intp, a, types.intp, rows_off, types.intp, koff, types.intp, b, types.intp, c,
                         types.intp, types.intp)

        def codegen(context, builder, signature, args):
            rows, a, a_off, rows_off, r0, koff, k0, b, b_off, c, c_off, n = args
            ty = signature.args
            ap = builder.gep(_data(context, builder, ty[1], a), [a_off])
            rp = _data(context, builder, ty[3], rows_off)
            kp = builder.gep(_data(context, builder, ty[5], koff), [k0])
            bp = builder.gep(_data(context, builder, ty[7], b), [b_off])
            cp = _data(context, builder, ty[9], c)
            done = builder.append_basic_block("tile.done")
            switch = builder.switch(rows, done)
            for r in range(1, max_rows + 1):
                case = builder.append_basic_block(f"tile.rows{r}")
                switch.add_case(ir.Constant(rows.type, r), case)
                builder.position_at_end(case)
                _panel_tile(builder, r, width, ap, rp, r0, kp, bp, cp, c_off, n)
                builder.branch(done)
            builder.position_at_end(done)
            return context.get_dummy_value()

        return sig, codegen

    return mk


#: all 16 lanes of a panel, up to TILE_ROWS rows
mk_panel = _make_mk_panel(16, TILE_ROWS)
#: lanes 0-7 only (a panel whose other lanes are empty), one 8-float vector a row, up to
#: HALF_ROWS rows. 10: with AVX2's 16 vector registers, 11 or 12 rows spill (LLVM hoists
#: the broadcasts above the FMAs: 7x slower per FMA than 10 rows, so that such a panel cost
#: 1.15-5.1 full ones in the engine); with AVX-512, 8-11 rows measured alike and 12 slower. In
#: the engine (VGG-f conv1, conv3 shapes, Zen 4) such a panel costs 0.67-0.68 of a full one
#: with AVX-512 (0.78-0.88 with 12 rows) and 0.63-0.64 compiled for AVX2: not 0.5, as each
#: row still needs its broadcast load per k whatever the width.
HALF_ROWS = 10
mk_half = _make_mk_panel(8, HALF_ROWS)


def _transpose8(builder, rows):
    """The 8 x 8 transpose of eight <8 x float> rows (unpack, 64-bit shuffle, 128-bit lane swap)."""

    def shuf(a, b, idx):
        return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, 8), idx))

    t = []
    for i in range(0, 8, 2):
        t.append(shuf(rows[i], rows[i + 1], [0, 8, 1, 9, 4, 12, 5, 13]))
        t.append(shuf(rows[i], rows[i + 1], [2, 10, 3, 11, 6, 14, 7, 15]))
    s = []
    for i in (0, 4):
        for a, b in ((t[i], t[i + 2]), (t[i + 1], t[i + 3])):
            s.append(shuf(a, b, [0, 1, 8, 9, 4, 5, 12, 13]))
            s.append(shuf(a, b, [2, 3, 10, 11, 6, 7, 14, 15]))
    # s[0..3]: columns (0|4), (1|5), (2|6), (3|7) of rows 0-3; s[4..7]: the same of rows 4-7
    lo = [shuf(s[i], s[i + 4], [0, 1, 2, 3, 8, 9, 10, 11]) for i in range(4)]
    hi = [shuf(s[i], s[i + 4], [4, 5, 6, 7, 12, 13, 14, 15]) for i in range(4)]
    return lo + hi


@intrinsic
def pack16x8(typingctx, a, rows_off, r0, k0, p, p_off):
    """p[p_off + k*16 + v] = a[rows_off[r0 + v] + k0 + k] for v < 16, k < 8: a 16 x 8 block of
    16 rows of A, transposed into 8 rows of a K x 16 panel (two 8 x 8 register transposes)."""
    if not _check_f32(a, p):
        return None
    sig = types.void(a, rows_off, types.intp, types.intp, p, types.intp)

    def codegen(context, builder, signature, args):
        a, rows_off, r0, k0, p, p_off = args
        ty = signature.args
        ap = builder.gep(_data(context, builder, ty[0], a), [k0])
        rp = _data(context, builder, ty[1], rows_off)
        pp = builder.gep(_data(context, builder, ty[4], p), [p_off])
        rows = [_vload(builder, ap, builder.load(builder.gep(rp, [builder.add(r0, _c(r0, v))]))) for v in range(16)]
        for half in range(2):
            for k, col in enumerate(_transpose8(builder, rows[8 * half:8 * half + 8])):
                _vstore(builder, col, pp, _c(p_off, 16 * k + 8 * half))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def transpose16(typingctx, a, a_off, t, t_off, t_rs):
    """t[t_off + v*t_rs + i] = a[a_off + 16*i + v] for i, v < 16: a 16 x 16 block, rows of
    16 floats, transposed (four 8 x 8 register transposes)."""
    if not _check_f32(a, t):
        return None
    sig = types.void(a, types.intp, t, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        a, a_off, t, t_off, t_rs = args
        ty = signature.args
        ap = builder.gep(_data(context, builder, ty[0], a), [a_off])
        tp = builder.gep(_data(context, builder, ty[2], t), [t_off])
        for ib in range(2):
            for vb in range(2):
                rows = [_vload(builder, ap, _c(a_off, (8 * ib + r) * 16 + 8 * vb)) for r in range(8)]
                for c, col in enumerate(_transpose8(builder, rows)):
                    off = builder.add(builder.mul(t_rs, _c(t_rs, 8 * vb + c)), _c(t_rs, 8 * ib))
                    _vstore(builder, col, tp, off)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fetch_add(typingctx, a, i, v):
    """Atomically a[i] += v; returns the old a[i] (int64 array): a work queue for prange's
    threads. Sequentially consistent, so that what a thread wrote before an increment is
    seen by a thread that reads the count after it."""
    if not (isinstance(a, types.Array) and a.dtype == types.int64):
        return None
    sig = types.int64(a, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        a, i, v = args
        ptr = builder.gep(_data(context, builder, signature.args[0], a), [i])
        return builder.atomic_rmw("add", ptr, v, "seq_cst")

    return sig, codegen
