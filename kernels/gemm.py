"""Dense fully-connected layers: y = act(x @ W.T + b) with W stored N x K (row per output).

The N x K layout is the one AIP's refinement reads row by row; the dense product goes
to BLAS through numpy, which is as fast as any hand-written GEMV for this shape.
"""

from __future__ import annotations

import numpy as np

from .activation import bias_act_cols
from .parallel import matmul_cols


def fc(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray | None,
    act: int = 0,
    act_p0: float = 0.0,
    act_p1: float = 0.0,
    threads: int = 1,
) -> np.ndarray:
    """x: B x K, w: N x K, bias: N or None. Returns B x N."""
    y = np.empty((x.shape[0], w.shape[0]), dtype=np.float32)
    matmul_cols(x, w, y, threads)
    if bias is not None or act:
        has_bias = bias is not None
        b = bias if has_bias else np.zeros(1, np.float32)
        bias_act_cols(y, b, has_bias, act, act_p0, act_p1)
    return y
