"""Max and average pooling over NCHW maps, with pads, strides, dilations.

The caller resolves ceil_mode / auto_pad into explicit pads and output sizes.

Max pooling on special values: NaN never wins a comparison, so NaN inputs are ignored
(as onnxruntime's generic pooling does), and a window of only -inf (or NaN) gives -inf
(as onnxruntime's vectorised 2-D pooling does; its generic path gives -FLT_MAX there).
The sign of a zero maximum is unspecified, as max(0, -0) is.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange

LOWEST = np.float32(-np.inf)


@kernel()
def _tap_range(o, stride, pad, dil, k, size):
    """The taps [lo, hi) of a window that fall inside [0, size) (hoisted bounds checks)."""
    start = o * stride - pad
    lo = 0 if start >= 0 else (-start + dil - 1) // dil
    hi = (size - start + dil - 1) // dil
    return start, lo, min(k, hi)


@kernel(parallel=True)
def maxpool2d(x, kh, kw, sh, sw, dh, dw, pt, pl, out):
    """x: P x H x W (planes), out: P x OH x OW. Padding never wins the max."""
    p_count, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(p_count):
        for y in range(oh):
            y0, i_lo, i_hi = _tap_range(y, sh, pt, dh, kh, h)
            for xx in range(ow):
                x0, j_lo, j_hi = _tap_range(xx, sw, pl, dw, kw, w)
                best = LOWEST
                for i in range(i_lo, i_hi):
                    iy = y0 + i * dh
                    for j in range(j_lo, j_hi):
                        v = x[p, iy, x0 + j * dw]
                        if v > best:
                            best = v
                out[p, y, xx] = best


@kernel(parallel=True)
def avgpool2d(x, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, count_include_pad, out):
    """Average pooling. With count_include_pad the divisor counts padded taps that lie
    within the explicitly padded input (not the extra ceil_mode overhang), as ONNX says."""
    p_count, h, w = x.shape
    oh, ow = out.shape[1], out.shape[2]
    for p in prange(p_count):
        for y in range(oh):
            for xx in range(ow):
                acc = np.float32(0.0)
                n = 0
                for i in range(kh):
                    iy = y * sh - pt + i * dh
                    inside_pad_y = iy >= -pt and iy < h + pb
                    for j in range(kw):
                        ix = xx * sw - pl + j * dw
                        if iy >= 0 and iy < h and ix >= 0 and ix < w:
                            acc += x[p, iy, ix]
                            n += 1
                        elif count_include_pad and inside_pad_y and ix >= -pl and ix < w + pr:
                            n += 1
                out[p, y, xx] = acc / n if n > 0 else np.float32(0.0)


@kernel(parallel=True)
def global_pool(x, is_max, out):
    """x: P x S, out: P. Mean or max over S."""
    p_count, s = x.shape
    for p in prange(p_count):
        if is_max:
            best = LOWEST
            for i in range(s):
                v = x[p, i]
                if v > best:
                    best = v
            out[p] = best
        else:
            acc = 0.0
            for i in range(s):
                acc += x[p, i]
            out[p] = acc / s
