"""Softmax and LogSoftmax along the middle axis of an (outer, L, inner) view."""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange


@kernel(parallel=True)
def softmax(x, log, out):
    """x, out: O x L x I. Normalises along L, subtracting the max for stability.

    NaN and inf propagate as in onnxruntime: a NaN anywhere on a line makes the
    line NaN, +inf makes it NaN (inf - inf).
    """
    o_count, l_count, i_count = x.shape
    for oi in prange(o_count * i_count):
        o = oi // i_count
        i = oi % i_count
        m = -np.inf
        for k in range(l_count):
            v = x[o, k, i]
            if v > m or v != v:
                m = v
        acc = np.float32(0.0)
        for k in range(l_count):
            acc += np.exp(x[o, k, i] - m)
        if log:
            lse = np.log(acc)
            for k in range(l_count):
                out[o, k, i] = x[o, k, i] - m - lse
        else:
            inv = np.float32(1.0) / acc
            for k in range(l_count):
                out[o, k, i] = np.exp(x[o, k, i] - m) * inv
