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
    def mk(typingctx, a, a_off, a_rs, b, b_off, b_ks, c, c_off, c_rs, n):
        if not _check_f32(a, b, c):
            return None
        sig = types.void(a, types.intp, types.intp, b, types.intp, types.intp, c, types.intp, types.intp, types.intp)

        def codegen(context, builder, signature, args):
            a, a_off, a_rs, b, b_off, b_ks, c, c_off, c_rs, n = args
            ta, tb, tc = signature.args[0], signature.args[3], signature.args[6]
            ap, bp, cp = (_data(context, builder, t, v) for t, v in ((ta, a), (tb, b), (tc, c)))
            fma = _fma(builder)
            crow = [builder.add(c_off, builder.mul(c_rs, _c(c_off, r))) for r in range(rows)]
            acc = _accumulators(builder, 2 * rows)
            for r in range(rows):
                for v in range(2):
                    builder.store(_vload(builder, cp, builder.add(crow[r], _c(c_off, 8 * v))), acc[2 * r + v])
            arow = [builder.add(a_off, builder.mul(a_rs, _c(a_off, r))) for r in range(rows)]
            with cgutils.for_range(builder, n) as loop:
                k = loop.index
                bo = builder.add(b_off, builder.mul(k, b_ks))
                b0 = _vload(builder, bp, bo)
                b1 = _vload(builder, bp, builder.add(bo, _c(bo, 8)))
                for r in range(rows):
                    s = _splat(builder, builder.load(builder.gep(ap, [builder.add(arow[r], k)])))
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
mk6, mk4, mk2, mk1 = mk_rows[6], mk_rows[4], mk_rows[2], mk_rows[1]
