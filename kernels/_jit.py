"""The house decorator for Numba kernels.

One place decides how every kernel is compiled:
- ``cache=True`` so that a second process (a test run, CI) skips compilation;
- ``nogil=True`` so that kernels can run beside Python threads;
- fastmath limited to ``contract`` (fused multiply-add) and ``reassoc`` (vectorised
  reductions). ``nnan``/``ninf``/``nsz`` stay off so that NaN, inf and -0 behave as
  IEEE says, which is what onnxruntime does and what our special-value tests check.
"""

from __future__ import annotations

import os

# Idle OpenMP workers under Numba's prange must sleep, not spin: they share a handful of
# cores with the BLAS blocks of kernels.parallel. (Only a default: a user's setting wins,
# and it has effect only if no OpenMP runtime was loaded before aipnet.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402

FASTMATH = {"contract", "reassoc"}


def kernel(parallel: bool = False):
    """Decorate a function as an aipnet kernel (njit with the house flags)."""
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=parallel)


prange = numba.prange
