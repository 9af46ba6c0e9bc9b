"""Normalisation kernels: local response normalisation across channels, and
batch normalisation in inference form (when it could not be folded into a conv)."""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange


@kernel(parallel=True)
def lrn(x, size, alpha, beta, bias, out):
    """ONNX LRN over x: N x C x S (S = flattened spatial).

    sq[n, c, s] = sum over c' in [c - floor((size-1)/2), c + ceil((size-1)/2)] of x²,
    out = x / (bias + alpha / size * sq) ** beta.
    """
    n_count, c_count, s_count = x.shape
    lo_off = (size - 1) // 2
    hi_off = size - 1 - lo_off
    scale = alpha / size
    for ns in prange(n_count * s_count):
        n = ns // s_count
        s = ns % s_count
        for c in range(c_count):
            lo = max(0, c - lo_off)
            hi = min(c_count - 1, c + hi_off)
            sq = np.float32(0.0)
            for k in range(lo, hi + 1):
                v = x[n, k, s]
                sq += v * v
            out[n, c, s] = x[n, c, s] / (bias + scale * sq) ** beta


@kernel(parallel=True)
def scale_shift(x, scale, shift, out):
    """out[n, c, s] = x[n, c, s] * scale[c] + shift[c] (inference batch norm)."""
    n_count, c_count, s_count = x.shape
    for nc in prange(n_count * c_count):
        n = nc // c_count
        c = nc % c_count
        a = scale[c]
        b = shift[c]
        for s in range(s_count):
            out[n, c, s] = x[n, c, s] * a + b
