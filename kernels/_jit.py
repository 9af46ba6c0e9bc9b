"""The house decorator for Numba kernels.

One place decides how every kernel is compiled:
- ``cache=True`` so that a second process (a test run, CI) skips compilation;
- ``nogil=True`` so that kernels can run beside Python threads;
- fastmath limited to ``contract`` (fused multiply-add) and ``reassoc`` (vectorised
  reductions). ``nnan``/``ninf``/``nsz`` stay off so that NaN, inf and -0 behave as
  IEEE says, which is what onnxruntime does and what our special-value tests check.
"""

from __future__ import annotations

import numba

FASTMATH = {"contract", "reassoc"}


def kernel(parallel: bool = False):
    """Decorate a function as an aipnet kernel (njit with the house flags)."""
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=parallel)


prange = numba.prange
