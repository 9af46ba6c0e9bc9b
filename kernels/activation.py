"""Bias + activation epilogues, fused into the producer's output in place.

Activation codes are plain integers so that kernels (and the C mirror) need no enums:
ACT_NONE, ACT_RELU, ACT_CLIP (lo, hi), ACT_LEAKY (alpha).
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange

ACT_NONE = 0
ACT_RELU = 1
ACT_CLIP = 2
ACT_LEAKY = 3


@kernel()
def _apply(v, act, p0, p1):
    if act == ACT_RELU:
        # `v < 0` is False for NaN and -0.0, so both pass through as max(x, 0) in ORT
        return 0.0 if v < 0.0 else v
    if act == ACT_CLIP:
        # min first, then max: with min > max everything becomes max, as ONNX says
        r = p0 if v < p0 else v
        return p1 if r > p1 else r
    if act == ACT_LEAKY:
        return v * p1 if v < 0.0 else v
    return v


@kernel(parallel=True)
def bias_act_rows(y, bias, has_bias, act, p0, p1):
    """y[m, :] = act(y[m, :] + bias[m]) in place; y is M x P (channels x pixels)."""
    m_count, p_count = y.shape
    for m in prange(m_count):
        b = bias[m] if has_bias else np.float32(0.0)
        for p in range(p_count):
            y[m, p] = _apply(y[m, p] + b, act, p0, p1)


@kernel(parallel=True)
def bias_act_cols(y, bias, has_bias, act, p0, p1):
    """y[r, :] = act(y[r, :] + bias[:]) in place; y is R x N (rows x features)."""
    r_count, n_count = y.shape
    for r in prange(r_count):
        for n in range(n_count):
            b = bias[n] if has_bias else np.float32(0.0)
            y[r, n] = _apply(y[r, n] + b, act, p0, p1)


@kernel(parallel=True)
def act_inplace(flat, act, p0, p1):
    """Apply an activation to a flat float32 array in place."""
    for i in prange(flat.shape[0]):
        flat[i] = _apply(flat[i], act, p0, p1)


@kernel(parallel=True)
def sigmoid(flat, out):
    for i in prange(flat.shape[0]):
        v = flat[i]
        if v >= 0:
            out[i] = 1.0 / (1.0 + np.exp(-v))
        else:
            e = np.exp(v)
            out[i] = e / (1.0 + e)


@kernel(parallel=True)
def tanh(flat, out):
    for i in prange(flat.shape[0]):
        out[i] = np.tanh(flat[i])
