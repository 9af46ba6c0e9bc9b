"""One pool of worker threads for the BLAS calls inside our kernels.

Why not let BLAS thread itself: on a small board (2 cores here) two thread pools that
spin while idle (OpenBLAS's and the OpenMP one under Numba's prange) steal each other's
cores between calls, and a network alternates GEMMs with Numba kernels dozens of times
per image. So the session runs BLAS single-threaded and splits each GEMM into row
blocks itself, on these threads, which sleep (not spin) when idle; numpy releases the
GIL inside matmul, so the blocks run in parallel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
#: below this many multiply-adds a GEMM is not worth splitting
MIN_SPLIT_MACS = 1 << 18


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    if _pool is None or _pool_size < workers:
        if _pool is not None:
            _pool.shutdown(wait=True)
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aipnet")
        _pool_size = workers
    return _pool


def run_blocks(fn: Callable[[int, int], None], n: int, threads: int, align: int = 8) -> None:
    """Call fn(start, stop) over [0, n) split into ``threads`` blocks, in parallel.

    Block edges are multiples of ``align`` so that each block starts on whole SIMD rows.
    The calling thread does the first block itself.
    """
    if threads <= 1 or n < 2 * align:
        fn(0, n)
        return
    step = -(-n // threads)
    step = -(-step // align) * align
    edges = [(s, min(s + step, n)) for s in range(0, n, step)]
    pool = _executor(threads - 1)
    futures = [pool.submit(fn, a, b) for a, b in edges[1:]]
    fn(*edges[0])
    for f in futures:
        f.result()


def matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray, threads: int) -> None:
    """out = a @ b, split over the rows of ``a`` (a: M x K, b: K x N, out: M x N)."""
    m, k = a.shape
    if threads <= 1 or m * k * b.shape[1] < MIN_SPLIT_MACS:
        np.matmul(a, b, out=out)
        return
    run_blocks(lambda s, e: np.matmul(a[s:e], b, out=out[s:e]), m, threads)


def matmul_cols(a: np.ndarray, bt: np.ndarray, out: np.ndarray, threads: int) -> None:
    """out = a @ bt.T, split over the rows of ``bt`` (a: B x K, bt: N x K, out: B x N).

    The fully-connected shape: each block reads a contiguous band of weight rows.
    """
    n, k = bt.shape
    if threads <= 1 or a.shape[0] * k * n < MIN_SPLIT_MACS:
        np.matmul(a, bt.T, out=out)
        return
    run_blocks(lambda s, e: np.matmul(a, bt[s:e].T, out=out[:, s:e]), n, threads, align=16)
