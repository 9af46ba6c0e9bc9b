"""Eight float32 dot products at once, vectorised along K (an LLVM-IR Numba intrinsic).

The micro-kernel of DrowsyNet's neuron granularity (:func:`aipnet.kernels.drowsy_neuron.conv_neuron`):
each kept output is one dot product of a weight row and a patch, and the kept outputs of
a random mask share nothing regular enough for a register tile. So eight arbitrary
(weight, patch) pairs are computed together: eight ``<8 x float>`` accumulators, one
fused multiply-add per pair and 8-float step of K, reduced at the end with a
transpose-add (the eight horizontal sums as one vector). Numba's auto-vectoriser does not
do this reliably (it vectorises across the pairs, or not at all), hence explicit IR,
like :mod:`aipnet.kernels._simd`: plain ``<8 x float>`` vectors and ``llvm.fmuladd``, so
it compiles for any host (AVX2 needs no AVX-512) and is cached with its callers.

``dot8[runs](w, x, offs, o, nseg, seg_len, w_seg, x_seg, r, r_off)``: pair i's weight row
starts at ``w[offs[o + i]]`` and its patch at ``x[offs[o + 8 + i]]``. ``runs`` (a
partition of 8, compile-time) says which weight rows are the same, so that each is loaded
once per step for the lanes that share it: lanes come in runs of the given lengths, the
lanes of a run sharing the row of its first lane; ``runs = ()`` means eight rows, one load
per lane. ``PARTITIONS`` lists the partitions of 8 into at most 4 parts, a kernel each
(``dot8[()]`` beside them; module-level names ``dot8_<parts>`` and ``dot8_any``, for
Numba's globals). A dot product is ``nseg``
segments of ``seg_len`` floats (a multiple of 8), segment s at ``+ s * w_seg`` in the
weights and ``+ s * x_seg`` in the patch. ``r[r_off + i]`` = pair i's sum. No bounds
checks: callers keep every offset in range.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._simd import _VEC, _accumulators, _c, _check_f32, _data, _fma, _vload, _vstore

_I32 = ir.IntType(32)


def _shuf(builder, a, b, idx):
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, 8), idx))


def _hadd(builder, a, b):
    """AVX's vhaddps: [a0+a1, a2+a3, b0+b1, b2+b3, a4+a5, a6+a7, b4+b5, b6+b7]."""
    lo = _shuf(builder, a, b, [0, 2, 8, 10, 4, 6, 12, 14])
    hi = _shuf(builder, a, b, [1, 3, 9, 11, 5, 7, 13, 15])
    return builder.fadd(lo, hi)


def _reduce8(builder, v):
    """The eight horizontal sums of v[0..7] as one vector (lane i = sum of v[i])."""
    h01, h23 = _hadd(builder, v[0], v[1]), _hadd(builder, v[2], v[3])
    h45, h67 = _hadd(builder, v[4], v[5]), _hadd(builder, v[6], v[7])
    a, b = _hadd(builder, h01, h23), _hadd(builder, h45, h67)
    lo = _shuf(builder, a, b, [0, 1, 2, 3, 8, 9, 10, 11])
    hi = _shuf(builder, a, b, [4, 5, 6, 7, 12, 13, 14, 15])
    return builder.fadd(lo, hi)


def _make_dot8(runs: tuple):
    @intrinsic
    def dot8(typingctx, w, x, offs, o, nseg, seg_len, w_seg, x_seg, r, r_off):
        if not _check_f32(w, x, r):
            return None
        if not (isinstance(offs, types.Array) and offs.dtype == types.int64):
            return None
        sig = types.void(w, x, offs, types.intp, types.intp, types.intp, types.intp, types.intp, r, types.intp)

        def codegen(context, builder, signature, args):
            w, x, offs, o, nseg, seg_len, w_seg, x_seg, r, r_off = args
            tw, tx, to, tr = signature.args[0], signature.args[1], signature.args[2], signature.args[8]
            wp, xp, op, rp = (_data(context, builder, t, v) for t, v in ((tw, w), (tx, x), (to, offs), (tr, r)))
            fma = _fma(builder)

            def off(i):
                return builder.load(builder.gep(op, [builder.add(o, _c(o, i))]))

            if not runs:
                wo = [off(i) for i in range(8)]
            else:
                wo, at = [], 0
                for length in runs:
                    head = off(at)
                    wo += [head] * length
                    at += length
            xo = [off(8 + i) for i in range(8)]
            acc = _accumulators(builder, 8)
            nvec = builder.udiv(seg_len, _c(seg_len, 8))
            with cgutils.for_range(builder, nseg) as seg:
                s = seg.index
                ws = builder.mul(s, w_seg)
                xs = builder.mul(s, x_seg)
                wbase = {id(v): builder.add(v, ws) for v in wo}
                xbase = [builder.add(v, xs) for v in xo]
                with cgutils.for_range(builder, nvec) as step:
                    k = builder.mul(step.index, _c(seg_len, 8))
                    wv = {key: _vload(builder, wp, builder.add(b, k)) for key, b in wbase.items()}
                    for i in range(8):
                        xv = _vload(builder, xp, builder.add(xbase[i], k))
                        builder.store(builder.call(fma, [wv[id(wo[i])], xv, builder.load(acc[i])]), acc[i])
            res = _reduce8(builder, [builder.load(a) for a in acc])
            _vstore(builder, res, rp, r_off)
            return context.get_dummy_value()

        return sig, codegen

    return dot8


def _partitions(n: int, most: int, parts: int) -> list[tuple]:
    if n == 0:
        return [()]
    if parts == 0:
        return []
    return [(k,) + rest for k in range(min(n, most), 0, -1) for rest in _partitions(n - k, k, parts - 1)]


#: the partitions of 8 into at most 4 parts, largest part first (15 of them), and the
#: kernel of each (dot8_<parts>; dot8_any: eight rows)
PARTITIONS = _partitions(8, 8, 4)
dot8 = {runs: _make_dot8(runs) for runs in PARTITIONS + [()]}
(dot8_8, dot8_71, dot8_62, dot8_611, dot8_53, dot8_521, dot8_5111, dot8_44, dot8_431, dot8_422, dot8_4211,
 dot8_332, dot8_3311, dot8_3221, dot8_2222, dot8_any) = (dot8[r] for r in PARTITIONS + [()])
