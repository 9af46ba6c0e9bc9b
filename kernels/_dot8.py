"""Eight float32 dot products at once, vectorised along K (LLVM-IR Numba intrinsics).

The micro-kernels of DrowsyNet's neuron granularity (:func:`aipnet.kernels.drowsy_neuron.conv_neuron`):
each kept output is one dot product of a weight row and a patch, and the kept outputs of
a random mask share nothing regular enough for a GEMM register tile. So eight (weight,
patch) pairs are computed together: eight vector accumulators, one fused multiply-add per
pair and vector step of K, reduced at the end with a transpose-add (the eight horizontal
sums as one vector). Numba's auto-vectoriser does not do this reliably (it vectorises
across the pairs, or not at all), hence explicit IR, like :mod:`aipnet.kernels._simd`:
plain ``<VEC_WIDTH x float>`` vectors and ``llvm.fmuladd``, cached with their callers.
VEC_WIDTH is the host's: 16 with AVX-512 (the exact path's BLAS uses it too), else 8
(AVX2; NEON, where LLVM splits the vector).

The eight pairs of a kernel share loads where they share operands: ``dot8[shape]``
loads ``nw`` weight rows and ``nx`` patches per step and pairs them on its lanes as
``shape`` says (compile time). Two shapes:

- a biclique, 2 weight rows x 4 patches (the lanes are every pair of them): 6 loads per
  8 multiply-adds;
- runs, a partition of 8 (``PARTITIONS``): 8 patches, lanes in runs of the given
  lengths, the lanes of run j sharing weight row j (``()``: eight rows, one per lane).

``dot8[shape](w, x, offs, o, w0, x0, nseg, seg_len, w_seg, x_seg, acc, a_off)``: weight
row j starts at ``w[w0 + offs[o + j]]`` and patch j at ``x[x0 + offs[o + 8 + j]]``; a dot
product is ``nseg`` segments of ``seg_len`` floats (a multiple of 8), segment s at
``+ s * w_seg`` in the weights and ``+ s * x_seg`` in the patch. Lane i's sum is added to
``acc[a_off + i]``; lanes with the same operands get the same sum, to the bit. No bounds
checks: callers keep every offset in range.

Beside them, small intrinsics for the kernel's mask and pair listing and copies:
``keep_bits`` (the mask generator of :mod:`aipnet.kernels.drowsy`, eight units per
vector), ``popcount64``, ``ctz64`` and ``copy_run``.
"""

from __future__ import annotations

import os

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._simd import _c, _check_f32, _data, _vload, _vstore

_I32 = ir.IntType(32)
_F32 = ir.FloatType()


def _host_width() -> int:
    """Floats per vector of the K loop: 16 where the host has AVX-512 (Numba compiles
    for the host, and so does the exact path's BLAS), else 8 (AVX2, NEON: LLVM splits
    the vector). A pinned NUMBA_CPU_NAME (portable caches) gets 8."""
    if os.environ.get("NUMBA_CPU_NAME", "host") != "host":
        return 8
    return 16 if llvm.get_host_cpu_features().get("avx512f", False) else 8


VEC_WIDTH = _host_width()


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


def _lanes(shape: tuple) -> tuple[int, int, list]:
    """(weight rows, patches, lane i's (row, patch)) of a kernel shape."""
    if shape == "biclique":
        return 2, 4, [(a, b) for a in range(2) for b in range(4)]
    if not shape:
        return 8, 8, [(i, i) for i in range(8)]
    rows = [j for j, n in enumerate(shape) for _ in range(n)]
    return len(shape), 8, list(zip(rows, range(8)))


def _make_dot8(shape):
    nw, nx, lanes = _lanes(shape)
    width = VEC_WIDTH
    vec = ir.VectorType(_F32, width)
    half = ir.VectorType(_F32, 8)

    def vload(builder, base, off, ty=vec):
        return builder.load(builder.bitcast(builder.gep(base, [off]), ty.as_pointer()), align=4)

    @intrinsic
    def dot8(typingctx, w, x, offs, o, w0, x0, nseg, seg_len, w_seg, x_seg, acc, a_off):
        if not _check_f32(w, x, acc):
            return None
        if not (isinstance(offs, types.Array) and offs.dtype == types.int64):
            return None
        ip = types.intp
        sig = types.void(w, x, offs, ip, ip, ip, ip, ip, ip, ip, acc, ip)

        def codegen(context, builder, signature, args):
            w, x, offs, o, w0, x0, nseg, seg_len, w_seg, x_seg, acc, a_off = args
            tw, tx, to, ta = signature.args[0], signature.args[1], signature.args[2], signature.args[10]
            wp, xp, op, ap = (_data(context, builder, t, v) for t, v in ((tw, w), (tx, x), (to, offs), (ta, acc)))
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3),
                                                 f"llvm.fmuladd.v{width}f32")

            def off(i, base):
                return builder.add(builder.load(builder.gep(op, [builder.add(o, _c(o, i))])), base)

            def step(wv, xv):
                for i, (a, b) in enumerate(lanes):
                    builder.store(builder.call(fma, [wv[a], xv[b], builder.load(sums[i])]), sums[i])

            wo = [off(j, w0) for j in range(nw)]
            xo = [off(8 + j, x0) for j in range(nx)]
            sums = []
            for _ in range(8):
                slot = cgutils.alloca_once(builder, vec)  # entry block: promoted to registers
                builder.store(ir.Constant(vec, None), slot)
                sums.append(slot)
            nvec = builder.udiv(seg_len, _c(seg_len, width))
            tail = builder.icmp_unsigned("!=", builder.mul(nvec, _c(seg_len, width)), seg_len)
            with cgutils.for_range(builder, nseg) as seg:
                ws = builder.mul(seg.index, w_seg)
                xs = builder.mul(seg.index, x_seg)
                wb = [builder.add(v, ws) for v in wo]
                xb = [builder.add(v, xs) for v in xo]
                with cgutils.for_range(builder, nvec) as k:
                    kk = builder.mul(k.index, _c(seg_len, width))
                    step([vload(builder, wp, builder.add(b, kk)) for b in wb],
                         [vload(builder, xp, builder.add(b, kk)) for b in xb])
                if width > 8:
                    # a segment of 8 (mod 16) floats: its last 8, widened with zeros
                    with builder.if_then(tail, likely=False):
                        kk = builder.mul(nvec, _c(seg_len, width))
                        zero = ir.Constant(half, None)
                        widen = ir.Constant(ir.VectorType(_I32, width), list(range(width)))

                        def wide(base, b):
                            return builder.shuffle_vector(vload(builder, base, builder.add(b, kk), half), zero, widen)

                        step([wide(wp, b) for b in wb], [wide(xp, b) for b in xb])
            vals = [builder.load(v) for v in sums]
            if width > 8:
                lo = ir.Constant(ir.VectorType(_I32, 8), list(range(8)))
                hi = ir.Constant(ir.VectorType(_I32, 8), list(range(8, 16)))
                vals = [builder.fadd(builder.shuffle_vector(v, v, lo), builder.shuffle_vector(v, v, hi)) for v in vals]
            res = _reduce8(builder, vals)
            _vstore(builder, builder.fadd(_vload(builder, ap, a_off), res), ap, a_off)
            return context.get_dummy_value()

        return sig, codegen

    return dot8


def _partitions(n: int, most: int, parts: int) -> list[tuple]:
    if n == 0:
        return [()]
    if parts == 0:
        return []
    return [(k,) + rest for k in range(min(n, most), 0, -1) for rest in _partitions(n - k, k, parts - 1)]


#: the partitions of 8 into at most 4 parts, largest part first (15 of them); a kernel
#: each, plus dot8_any (eight rows) and dot8_bi (the 2 x 4 biclique)
PARTITIONS = _partitions(8, 8, 4)
dot8 = {s: _make_dot8(s) for s in PARTITIONS + [(), "biclique"]}
(dot8_8, dot8_71, dot8_62, dot8_611, dot8_53, dot8_521, dot8_5111, dot8_44, dot8_431, dot8_422, dot8_4211,
 dot8_332, dot8_3311, dot8_3221, dot8_2222, dot8_any, dot8_bi) = (dot8[s] for s in PARTITIONS + [(), "biclique"])


@intrinsic
def popcount64(typingctx, v):
    """The number of set bits of a uint64."""
    if v != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.uint64(v), codegen


@intrinsic
def ctz64(typingctx, v):
    """The index of the lowest set bit of a nonzero uint64."""
    if v != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.uint64(v), codegen


#: the mask generator's constants (kernels/drowsy.py's docstring)
_GAMMA, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


@intrinsic
def keep_bits(typingctx, key, thr, u, n):
    """Bit t (t < n <= 64) set iff mask unit u + t is kept: h(unit) =
    mix64(key ^ (GAMMA * (unit + 1))) and the unit is dropped iff (h >> 40) < thr, as in
    :func:`aipnet.kernels.drowsy.keep_units` (key: :func:`~aipnet.kernels.drowsy.layer_key`),
    computed on vectors of eight units (the loop over units does not vectorise: its
    result is a bit set). The final ``z ^ (z >> 31)`` of mix64 leaves bits 40-63 as they
    are, so it is skipped."""
    if not (key == types.uint64 and thr == types.uint64):
        return None
    sig = types.uint64(key, thr, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        key, thr, u, n = args
        i64 = ir.IntType(64)
        v8 = ir.VectorType(i64, 8)

        def splat(v):
            return builder.shuffle_vector(builder.insert_element(ir.Constant(v8, None), v, _I32(0)),
                                          ir.Constant(v8, None), ir.Constant(ir.VectorType(_I32, 8), [0] * 8))

        def shr(z, k):
            return builder.xor(z, builder.lshr(z, ir.Constant(v8, [k] * 8)))

        kv, tv = splat(key), splat(thr)
        res = cgutils.alloca_once_value(builder, ir.Constant(i64, 0))
        nvec = builder.udiv(builder.add(n, _c(n, 7)), _c(n, 8))
        with cgutils.for_range(builder, nvec) as loop:
            unit = builder.add(splat(builder.add(u, builder.mul(loop.index, _c(n, 8)))),
                               ir.Constant(v8, list(range(1, 9))))
            z = builder.xor(kv, builder.mul(unit, ir.Constant(v8, [_GAMMA] * 8)))
            z = builder.mul(shr(z, 30), ir.Constant(v8, [_M1] * 8))
            z = builder.mul(shr(z, 27), ir.Constant(v8, [_M2] * 8))
            kept = builder.icmp_unsigned(">=", builder.lshr(z, ir.Constant(v8, [40] * 8)), tv)
            bits = builder.zext(builder.bitcast(kept, ir.IntType(8)), i64)
            builder.store(builder.or_(builder.load(res), builder.shl(bits, builder.mul(loop.index, _c(n, 8)))), res)
        # the units past n (the last vector's tail) cleared; n == 64 keeps all
        full = builder.icmp_unsigned(">=", n, _c(n, 64))
        low = builder.sub(builder.shl(ir.Constant(i64, 1), builder.and_(n, _c(n, 63))), ir.Constant(i64, 1))
        return builder.and_(builder.load(res), builder.select(full, ir.Constant(i64, -1), low))

    return sig, codegen


@intrinsic
def copy_run(typingctx, dst, d, src, s, n):
    """dst[d .. d + n - 1] = src[s .. s + n - 1] (float32 arrays) in whole vectors of
    VEC_WIDTH: it reads and writes up to VEC_WIDTH - 1 floats past both ends, so callers
    leave that much room in both buffers and write what follows the run afterwards (the
    next run, or zeros). No branches on n but the loop's: runs of a few vectors (patch
    rows) copy at a vector per step. No bounds checks; the ranges must not overlap."""
    if not _check_f32(dst, src):
        return None
    ip = types.intp

    def codegen(context, builder, signature, args):
        dst, d, src, s, n = args
        dp = _data(context, builder, signature.args[0], dst)
        sp = _data(context, builder, signature.args[2], src)
        ty = ir.VectorType(_F32, VEC_WIDTH).as_pointer()
        nvec = builder.udiv(builder.add(n, _c(n, VEC_WIDTH - 1)), _c(n, VEC_WIDTH))
        with cgutils.for_range(builder, nvec) as loop:
            k = builder.mul(loop.index, _c(n, VEC_WIDTH))
            v = builder.load(builder.bitcast(builder.gep(sp, [builder.add(s, k)]), ty), align=4)
            builder.store(v, builder.bitcast(builder.gep(dp, [builder.add(d, k)]), ty), align=4)
        return context.get_dummy_value()

    return types.void(dst, ip, src, ip, ip), codegen
