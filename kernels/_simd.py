"""Register-blocked float32 micro-kernels written as LLVM IR (Numba intrinsics).

Why: Numba's auto-vectoriser turns a dot product into a vector reduction, but it will not
keep a GEMM micro-tile in registers (it vectorises the wrong loop, or spills), and a
reduction per output costs a horizontal sum. These two kernels are the inner loops of
the DrowsyNet masked convolutions (kernels/drowsy.py), where BLAS does not fit: a 16 x 64
tile is too small a GEMM for BLAS's packing to pay off, and a neuron mask has no dense
sub-blocks at all. They are plain IR on ``<8 x float>`` vectors and ``llvm.fmuladd``, so
they compile for any host (AVX2 or AVX-512 x86, NEON on AArch64: the vector is split or
widened by the backend) and are cached with their callers (``cache=True``).

Both take arrays plus element offsets (no raw pointers escape), and read what the
caller says they may: no bounds checks, so the callers keep every offset in range.

- ``mk_rows[R]``: C[r, 0:16] += sum_{k < n} A[a_off + r*a_rs + k] * B[b_off + k*b_ks + 0:16]
  for r < R (R = 1..6), C[r, :] at ``c[c_off + r*c_rs + 0:16]``: R x 16 outputs in 2R vector
  accumulators, one broadcast of A and two vector loads of B per k. A is read along its
  rows (weights, M x K row-major), B along a panel whose 16 columns are contiguous.
- ``dot_rows(R)``: s_i = sum_{k < n} w[w_off + k] * x[x_off_i + k] for i < R (R = 1, 2, 4
  or 8) over ``n`` a multiple of 8: 8 vector accumulators (R rows x 8/R interleaved
  partial sums, so that FMA latency is hidden), reduced by a transpose-add tree; the
  sums are *added* to ``res[res_off + i]``.
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


def _hadd(builder, a, b):
    """Pairwise sums of a and b, per 128-bit half: [a0+a1, a2+a3, b0+b1, b2+b3 | same for 4..7]."""
    lo = ir.Constant(ir.VectorType(_I32, 8), [0, 2, 8, 10, 4, 6, 12, 14])
    hi = ir.Constant(ir.VectorType(_I32, 8), [1, 3, 9, 11, 5, 7, 13, 15])
    return builder.fadd(builder.shuffle_vector(a, b, lo), builder.shuffle_vector(a, b, hi))


def _sum8(builder, v):
    """[sum(v0), ..., sum(v7)] of eight vectors (a transpose-add tree, 7 adds + shuffles)."""
    t = [_hadd(builder, v[0], v[1]), _hadd(builder, v[2], v[3]), _hadd(builder, v[4], v[5]), _hadd(builder, v[6], v[7])]
    u0, u1 = _hadd(builder, t[0], t[1]), _hadd(builder, t[2], t[3])
    # u0 = [s0 s1 s2 s3 (lanes 0-3 partials) | s0 s1 s2 s3 (lanes 4-7 partials)], u1 likewise for s4..s7
    lo = ir.Constant(ir.VectorType(_I32, 8), [0, 1, 2, 3, 8, 9, 10, 11])
    hi = ir.Constant(ir.VectorType(_I32, 8), [4, 5, 6, 7, 12, 13, 14, 15])
    return builder.fadd(builder.shuffle_vector(u0, u1, lo), builder.shuffle_vector(u0, u1, hi))


def _make_dot_rows(rows: int):
    unroll = 8 // rows

    @intrinsic
    def dot(typingctx, w, w_off, x, x_offs, n, res, res_off):
        if not _check_f32(w, x, res):
            return None
        if not (isinstance(x_offs, types.UniTuple) and x_offs.count == rows and isinstance(x_offs.dtype, types.Integer)):
            return None
        sig = types.void(w, types.intp, x, x_offs, types.intp, res, types.intp)

        def codegen(context, builder, signature, args):
            w, w_off, x, x_offs, n, res, res_off = args
            tw, tx, tr = signature.args[0], signature.args[2], signature.args[5]
            wp, xp, rp = (_data(context, builder, t, v) for t, v in ((tw, w), (tx, x), (tr, res)))
            xo = [builder.sext(builder.extract_value(x_offs, i), w_off.type) if builder.extract_value(x_offs, i).type != w_off.type
                  else builder.extract_value(x_offs, i) for i in range(rows)]
            fma = _fma(builder)
            acc = _accumulators(builder, 8)  # acc[u * rows + i]: row i, partial sum u
            step = 8 * unroll
            nmain = builder.mul(builder.sdiv(n, _c(n, step)), _c(n, step))

            def body(k, u):
                wv = _vload(builder, wp, builder.add(w_off, k))
                for i in range(rows):
                    slot = acc[u * rows + i]
                    xv = _vload(builder, xp, builder.add(xo[i], k))
                    builder.store(builder.call(fma, [wv, xv, builder.load(slot)]), slot)

            with cgutils.for_range(builder, builder.sdiv(nmain, _c(n, step))) as loop:
                k0 = builder.mul(loop.index, _c(n, step))
                for u in range(unroll):
                    body(builder.add(k0, _c(k0, 8 * u)), u)
            with cgutils.for_range(builder, builder.sdiv(builder.sub(n, nmain), _c(n, 8))) as loop:
                body(builder.add(nmain, builder.mul(loop.index, _c(n, 8))), 0)
            vals = [builder.load(s) for s in acc]
            # fold the interleaved partial sums of each row, then reduce the rows
            per_row = []
            for i in range(rows):
                v = vals[i]
                for u in range(1, unroll):
                    v = builder.fadd(v, vals[u * rows + i])
                per_row.append(v)
            zero = ir.Constant(_VEC, None)
            sums = _sum8(builder, per_row + [zero] * (8 - rows))
            for i in range(rows):
                p = builder.gep(rp, [builder.add(res_off, _c(res_off, i))])
                builder.store(builder.fadd(builder.load(p), builder.extract_element(sums, _I32(i))), p)
            return context.get_dummy_value()

        return sig, codegen

    return dot


mk_rows = {r: _make_mk_rows(r) for r in (1, 2, 3, 4, 5, 6)}
dot_rows = {r: _make_dot_rows(r) for r in (1, 2, 4, 8)}
mk6, mk4, mk2, mk1 = mk_rows[6], mk_rows[4], mk_rows[2], mk_rows[1]
dot8, dot4, dot2, dot1 = dot_rows[8], dot_rows[4], dot_rows[2], dot_rows[1]
