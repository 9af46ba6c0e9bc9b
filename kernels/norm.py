"""Normalisation kernels: local response normalisation across channels, and
batch normalisation in inference form (when it could not be folded into a conv)."""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange


BLOCK = 256


@kernel()
def _inv_pow(t, beta):
    """t ** -beta, with the common exponents done by (vectorisable) square roots."""
    if beta == 0.75:
        r = np.sqrt(t)
        return np.float32(1.0) / (r * np.sqrt(r))
    if beta == 0.5:
        return np.float32(1.0) / np.sqrt(t)
    if beta == 1.0:
        return np.float32(1.0) / t
    return t ** (-beta)


@kernel(parallel=True)
def lrn(x, size, alpha, beta, bias, out):
    """ONNX LRN over x: N x C x S (S = flattened spatial).

    sq[n, c, s] = sum over c' in [c - floor((size-1)/2), c + ceil((size-1)/2)] of x²,
    out = x / (bias + alpha / size * sq) ** beta.

    Works on blocks of BLOCK pixels so that the inner loops run along contiguous
    memory and vectorise. The window sum is recomputed per channel (``size`` FMAs)
    rather than slid with add/subtract, which would cancel catastrophically when a
    large value leaves the window.
    """
    n_count, c_count, s_count = x.shape
    lo_off = (size - 1) // 2
    hi_off = size - 1 - lo_off
    scale = np.float32(alpha / size)
    nblocks = (s_count + BLOCK - 1) // BLOCK
    for job in prange(n_count * nblocks):
        n = job // nblocks
        s0 = (job % nblocks) * BLOCK
        s1 = min(s0 + BLOCK, s_count)
        sq = np.empty(BLOCK, dtype=np.float32)
        for c in range(c_count):
            sq[:] = 0.0
            for k in range(max(0, c - lo_off), min(c_count - 1, c + hi_off) + 1):
                for s in range(s0, s1):
                    v = x[n, k, s]
                    sq[s - s0] += v * v
            for s in range(s0, s1):
                t = bias + scale * sq[s - s0]
                out[n, c, s] = x[n, c, s] * _inv_pow(t, beta)


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
