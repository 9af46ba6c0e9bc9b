"""Per-layer DrowsyNet conv time as a ratio to exact, on the VGG-f conv stack at batch 1.

Where :mod:`bench_drowsy` reports the whole stack, this shows which layers carry the
cost, and, at rates near 0 and 1, how much of a layer's time the mask does not scale:
at p = 0.999 almost nothing is computed, so what is left is the per-output cost (the
mask, building the work, the output pass); at p = 0.001 everything is computed, so the
ratio is the masked kernel's speed per multiply-add against the exact conv's.

    python bench/drowsy_layers.py --backend numba --granularity neuron --rates 0.001,0.5,0.999

One session per rate and the exact session run interleaved in one process (each timed
run after an untimed run of the same session); each figure is the median over rounds.
"""

from __future__ import annotations

import argparse

import numpy as np
from tqdm import tqdm

import aipnet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="numba", choices=["numba", "c"])
    ap.add_argument("--granularity", default="neuron", choices=["neuron", "pixel", "channel", "tile"])
    ap.add_argument("--rates", default="0.001,0.5,0.999", help="comma-separated drop rates in (0, 1)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    model = aipnet.load("vggf-conv")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sessions = {"exact": aipnet.Session(model, backend=args.backend, threads=args.threads)}
    for p in rates:
        sessions[p] = aipnet.Session(model, backend=args.backend, threads=args.threads, drowsy=p,
                                     drowsy_granularity=args.granularity)
    times: dict = {k: [] for k in sessions}
    for i in tqdm(range(args.repeat), desc="rounds", unit="round"):
        for k, sess in sessions.items():
            sess.run(x, image_offset=i)   # untimed: wakes this session's threads and caches
            sess.run(x, image_offset=i)
            times[k].append([rec["time_s"] for rec in sess.stats["layers"] if rec["op"] == "Conv"])
    exact = np.median(np.array(times["exact"]), axis=0)
    exact_total = np.median(np.array(times["exact"]).sum(axis=1))
    names = [f"conv{i + 1}" for i in range(len(exact))]
    print(f"{args.backend} {args.granularity}, {args.threads} thread(s), median of {args.repeat} rounds")
    print(f"{'':10s}" + "".join(f"{n:>15s}" for n in names) + f"{'total':>15s}")
    print(f"{'exact ms':10s}" + "".join(f"{t * 1e3:8.2f}       " for t in exact) + f"{exact_total * 1e3:8.2f}")
    for p in rates:
        t = np.median(np.array(times[p]), axis=0)
        total = np.median(np.array(times[p]).sum(axis=1))
        cells = "".join(f"{a * 1e3:8.2f} ({a / e:.2f})" for a, e in zip(t, exact))
        print(f"{'p=' + str(p):10s}" + cells + f"{total * 1e3:8.2f} ({total / exact_total:.2f})")


if __name__ == "__main__":
    main()
