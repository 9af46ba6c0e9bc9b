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
# cores with the BLAS blocks of kernels.parallel. But sleeping at once makes every parallel
# region pay a futex wake-up, and a network runs one or more regions per layer: a short
# bounded spin (GOMP_SPINCOUNT, libgomp's unit; the C pool spins up to 200 us likewise)
# measured VGG-f's exact conv stack 0-13% faster at 2 threads and DrowsyNet's neuron
# kernel, which runs a region per conv group, 0.98-1.0 -> 0.84 of exact (bench_drowsy,
# 41 rounds, two runs each). (Only defaults: a user's setting wins, and they take effect
# only if no OpenMP runtime was loaded before aipnet.)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("GOMP_SPINCOUNT", "100000")

import numba  # noqa: E402

FASTMATH = {"contract", "reassoc"}


def kernel(parallel: bool = False):
    """Decorate a function as an aipnet kernel (njit with the house flags)."""
    return numba.njit(cache=True, nogil=True, fastmath=FASTMATH, parallel=parallel)


prange = numba.prange
