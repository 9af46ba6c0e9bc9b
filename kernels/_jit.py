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

# Idle OpenMP workers under Numba's prange must not spin for long: they share a handful of
# cores with BLAS's threads (the FC layers' Gemm, kernels.parallel). But sleeping at once
# makes every parallel region pay a futex wake-up, and a network runs one or more regions
# per layer. So: PASSIVE, with a short bounded spin (GOMP_SPINCOUNT, libgomp's unit). At
# 2 threads on VGG-f, 10,000 measured conv time 6.7-7.0 ms against 7.3 without a spin
# and DrowsyNet's neuron kernel (a region per conv group) 0.79 of exact against 0.91,
# with the FC Gemm unchanged (9.2-10.1 against 9.5 ms); 100,000 slowed the Gemm to 14 ms,
# its BLAS threads starting beside spinning OpenMP workers. (Only defaults: a user's
# setting wins, and they take effect only if no OpenMP runtime was loaded before aipnet.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import numba  # noqa: E402

FASTMATH = {"contract", "reassoc"}


def kernel(parallel: bool = False):
    """Decorate a function as an aipnet kernel (njit with the house flags)."""
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=parallel)


prange = numba.prange
