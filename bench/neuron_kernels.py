"""Speed of the Numba neuron kernel's dot products (GMAC/s), with operands in L1 or in L2.

The neuron granularity computes its kept outputs as groups of eight dot products
vectorised over K (:mod:`aipnet.kernels._dot8`). This times three of the group kinds on
synthetic rows, so that their speed can be set against where their operands live:

- ``biclique``: 2 weight rows x 4 patches (6 loads per 8 FMAs);
- ``single``: 1 weight row x 8 patches (9 loads per 8 FMAs);
- ``spread``: 8 weight rows x 8 patches, one pair per lane (16 loads per 8 FMAs).

Each case runs 64 groups over ``rows`` rows of ``length`` floats per operand, 64-byte
aligned; few rows fit L1 (32 KB and up), many only L2. Compare with the exact conv's rate
on the same machine: ``aipnet bench vggf-conv --threads 1`` prints the conv time by op, and
the VGG-f conv stack has 665.5 M multiply-adds.

    python bench/neuron_kernels.py
"""

from __future__ import annotations

import argparse
import functools
import time

import numba
import numpy as np

from aipnet.kernels._buffers import aligned_empty
from aipnet.kernels._dot8 import VEC_WIDTH, dot8_any, dot8_bi, dot8_8

#: (kind, weight rows, patches) per group
KINDS = {"biclique": (dot8_bi, 2, 4), "single": (dot8_8, 1, 8), "spread": (dot8_any, 8, 8)}
GROUPS = 64


@functools.lru_cache(maxsize=None)
def _runner(dot):
    @numba.njit(cache=False)
    def run(w, x, offs, reps, length, acc):
        for _ in range(reps):
            for g in range(GROUPS):
                dot(w, x, offs, 16 * g, 0, 0, 1, length, 0, 0, acc, 8 * g)
    return run


def gmacs(kind: str, rows: int, length: int, best_of: int = 3) -> float:
    """GMAC/s of ``kind`` over operand sets of ``rows`` rows of ``length`` floats."""
    dot, nw, nx = KINDS[kind]
    w = aligned_empty((rows * length,))
    x = aligned_empty((rows * length,))
    w[:] = 1.0
    x[:] = 1.0
    offs = np.zeros(16 * GROUPS, np.int64)
    for g in range(GROUPS):
        # the groups walk over the rows, so that the set read is all ``rows`` rows
        for j in range(8):
            offs[16 * g + j] = ((g * nw + j % nw) % rows) * length
            offs[16 * g + 8 + j] = ((g * nx + j % nx) % rows) * length
    acc = np.zeros(8 * GROUPS, np.float32)
    run = _runner(dot)
    run(w, x, offs, 1, length, acc)  # compile
    reps = max(1, int(2e8 / (GROUPS * 8 * length)))
    best = float("inf")
    for _ in range(best_of):
        t = time.perf_counter()
        run(w, x, offs, reps, length, acc)
        best = min(best, time.perf_counter() - t)
    return GROUPS * 8 * length * reps / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--length", type=int, default=640, help="floats per dot product (a multiple of 16)")
    args = ap.parse_args()
    kb = args.length * 4 / 1024
    cases = [("L1", 4), ("L2", 64)]
    print(f"vector width {VEC_WIDTH} floats; dot products of {args.length} floats")
    print("| kind | " + " | ".join(f"{where}: {rows} rows ({2 * rows * kb:.0f} KB)" for where, rows in cases) + " |")
    print("|---|" + "---:|" * len(cases))
    for kind in KINDS:
        print(f"| {kind} | " + " | ".join(f"{gmacs(kind, rows, args.length):.1f}" for _, rows in cases) + " |")


if __name__ == "__main__":
    main()
