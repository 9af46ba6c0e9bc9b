"""Buffers for the kernels."""

from __future__ import annotations

import numpy as np


def aligned_empty(shape, align: int = 64) -> np.ndarray:
    """An uninitialised float32 array whose data starts on an ``align``-byte boundary.

    The micro-kernels' vector loads are unaligned loads, but one that straddles a cache
    line costs two: keeping panels on 64-byte boundaries halves the load traffic.
    """
    n = int(np.prod(shape))
    buf = np.empty(n + align // 4, np.float32)
    off = (-buf.ctypes.data % align) // 4
    return buf[off:off + n].reshape(shape)
