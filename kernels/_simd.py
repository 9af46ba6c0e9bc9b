"""A register-blocked float32 micro-kernel written as LLVM IR (a Numba intrinsic).

Why: Numba's auto-vectoriser will not keep a GEMM micro-tile in registers (it vectorises
the reduction loop instead, or spills), and BLAS does badly on the small products of
DrowsyNet's masked convolutions (kernels/drowsy.py: a 16 x 64 tile is too small a GEMM
for BLAS's packing to pay off). This is plain IR on ``<8 x float>`` vectors and
``llvm.fmuladd``, so it compiles for any host (AVX2 or AVX-512 x86, NEON on AArch64: the
vector is split or widened by the backend) and is cached with its callers
(``cache=True``). It takes arrays plus element offsets (no raw pointers escape) and does
no bounds checks: callers keep every offset in range.

``mk_rows[R]`` (R = 1..6): C[r, 0:16] += sum_{k < n} A[a_off + r*a_rs + k] * B[b_off + k*b_ks + 0:16]
for r < R, with C[r, :] at ``c[c_off + r*c_rs + 0:16]``: R x 16 outputs in 2R vector
accumulators, one broadcast of A and two vector loads of B per k. A is read along its
rows (weights, M x K row-major), B along a panel whose 16 columns are contiguous; B rows
on 64-byte boundaries keep each load on one cache line (measured: twice as fast).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_VEC = ir.VectorType(_F32, 8)
_FMA_TY = ir.FunctionType(_VEC, [_VEC, _VEC, _VEC])


def _data(context, builder, aryty, ary):
    return context.make_array(aryty)(context, builder, ary).data


def _vload(builder, base, off):
    return builder.load(builder.bitcast(builder.gep(base, [off]), _VEC.as_pointer()), align=4)


def _vstore(builder, val, base, off):
    builder.store(val, builder.bitcast(builder.gep(base, [off]), _VEC.as_pointer()), align=4)


def _splat(builder, s):
    v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), s, _I32(0))
    return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined), ir.Constant(ir.VectorType(_I32, 8), [0] * 8))


def _fma(builder):
    return cgutils.get_or_insert_function(builder.module, _FMA_TY, "llvm.fmuladd.v8f32")


def _accumulators(builder, count):
    slots = []
    for _ in range(count):
        slot = cgutils.alloca_once(builder, _VEC)  # entry block: promoted to registers
        builder.store(ir.Constant(_VEC, None), slot)
        slots.append(slot)
    return slots


def _c(val, k):
    return ir.Constant(val.type, k)


def _check_f32(*arrays):
    return all(isinstance(a, types.Array) and a.dtype == types.float32 for a in arrays)


def _make_mk_rows(rows: int):
    @intrinsic
    def mk(typingctx, a, a_off, rows_off, r0, koff, k0, b, b_off, c, c_off, n):
        if not _check_f32(a, b, c):
            return None
        sig = types.void(a, types.intp, rows_off, types.intp, koff, types.intp, b, types.intp, c, types.intp,
                         types.intp)

        def codegen(context, builder, signature, args):
            a, a_off, rows_off, r0, koff, k0, b, b_off, c, c_off, n = args
            ty = signature.args
            ap = builder.gep(_data(context, builder, ty[0], a), [a_off])
            rp = _data(context, builder, ty[2], rows_off)
            kp = builder.gep(_data(context, builder, ty[4], koff), [k0])
            bp = builder.gep(_data(context, builder, ty[6], b), [b_off])
            cp = _data(context, builder, ty[8], c)
            fma = _fma(builder)
            # one base pointer per row, so that each broadcast is a load at [row + koff[k]]
            arow = [builder.gep(ap, [builder.load(builder.gep(rp, [builder.add(r0, _c(r0, r))]))]) for r in range(rows)]
            crow = [builder.add(c_off, _c(c_off, 16 * r)) for r in range(rows)]
            acc = _accumulators(builder, 2 * rows)
            for r in range(rows):
                for v in range(2):
                    builder.store(_vload(builder, cp, builder.add(crow[r], _c(c_off, 8 * v))), acc[2 * r + v])
            with cgutils.for_range(builder, n) as loop:
                k = loop.index
                ko = builder.load(builder.gep(kp, [k]))
                bo = builder.mul(k, _c(k, 16))
                b0 = _vload(builder, bp, bo)
                b1 = _vload(builder, bp, builder.add(bo, _c(bo, 8)))
                for r in range(rows):
                    s = _splat(builder, builder.load(builder.gep(arow[r], [ko])))
                    for v, bv in enumerate((b0, b1)):
                        slot = acc[2 * r + v]
                        builder.store(builder.call(fma, [s, bv, builder.load(slot)]), slot)
            for r in range(rows):
                for v in range(2):
                    _vstore(builder, builder.load(acc[2 * r + v]), cp, builder.add(crow[r], _c(c_off, 8 * v)))
            return context.get_dummy_value()

        return sig, codegen

    return mk


mk_rows = {r: _make_mk_rows(r) for r in (1, 2, 3, 4, 5, 6)}
mk1, mk2, mk3, mk4, mk5, mk6 = (mk_rows[r] for r in (1, 2, 3, 4, 5, 6))


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
