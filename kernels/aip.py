"""AIP kernels: the approximate pass over a subset of inputs, and exact refinement of
chosen rows that reuses the approximate partial sums.

Layouts (built once by ``aipnet.aip.pack_fc``):
- ``approx``: nb x k x LANES float32, ``approx[b, t, r] = W[b*LANES + r, S[t]]``: the
  N x k sub-weights of the subset S as one contiguous stream, 16 output rows
  interleaved so that each input x[S[t]] multiplies one 64-byte line (one cache line,
  whatever the SIMD width: 2 AVX2 vectors, 1 AVX-512 vector, 4 NEON vectors). Rows
  past N are zero.
- ``rest``: N x (K - k) float32, ``rest[j, :] = W[j, ~S]``: each refined row reads its
  remaining weights as one contiguous run.

Every kernel counts what it read, so stats are measured by the kernels, never derived
from the knobs.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel, prange

LANES = 16
LINE_BYTES = LANES * 4


@kernel(parallel=True)
def approx_pass(approx, xs, skip_zeros, partial, lines_read):
    """partial[s, b*LANES + r] = sum_t approx[b, t, r] * xs[s, t].

    approx: nb x k x LANES; xs: B x k (the inputs x[S] of B samples); partial: B x
    (nb*LANES). With ``skip_zeros`` an input that is zero in every sample is skipped and
    its weight line never read. lines_read[b] counts the 64-byte lines block b read.
    """
    nb, k, lanes = approx.shape
    bsz = xs.shape[0]
    for b in prange(nb):
        acc = np.zeros((bsz, lanes), dtype=np.float32)
        n = 0
        for t in range(k):
            if skip_zeros:
                nonzero = False
                for s in range(bsz):
                    if xs[s, t] != 0.0:
                        nonzero = True
                        break
                if not nonzero:
                    continue
            n += 1
            for s in range(bsz):
                v = xs[s, t]
                for r in range(lanes):
                    acc[s, r] += approx[b, t, r] * v
        lines_read[b] = n
        for s in range(bsz):
            for r in range(lanes):
                partial[s, b * lanes + r] = acc[s, r]


@kernel(parallel=True)
def refine_rows(rest, xr, rows, out):
    """out[s, i] = rest[rows[i], :] . xr[s, :]: the remainder of each chosen row.

    rest: N x (K-k); xr: B x (K-k) (the inputs x[~S]); rows: the rows to refine.
    Each row's remainder is read once, contiguously, for all samples.
    """
    bsz, kr = xr.shape
    for i in prange(rows.shape[0]):
        j = rows[i]
        for s in range(bsz):
            acc = np.float32(0.0)
            for t in range(kr):
                acc += rest[j, t] * xr[s, t]
            out[s, i] = acc
