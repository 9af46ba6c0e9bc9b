"""DrowsyNet speed: conv time of the VGG-f conv stack (batch 1) against the drop rate.

For every backend (numba, c), granularity and p in {0, .25, .5, .75}, the summed time of
the Conv layers (from session stats) as a ratio to p = 0 of the same backend (its exact
kernels), all variants interleaved call by call in one run so that background load hits
them alike; medians over ``--repeat`` rounds. Writes ``bench/drowsy_speed.json`` (rows
of the Numba backend under "rows", as before, and of the C backend under "rows_c") and
``docs/drowsy_speed.png``.

    python bench/bench_drowsy.py [--repeat 10] [--threads 2] [--backends numba,c] [--json F] [--plot F.png]
    pytest bench/bench_drowsy.py --benchmark-only     (pytest-benchmark, p = 0 and 0.5)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

import aipnet

ROOT = Path(__file__).resolve().parent.parent
GRANS = ("neuron", "pixel", "channel", "tile")
RATES = (0.25, 0.5, 0.75)


def conv_time(sess: aipnet.Session) -> float:
    return sum(layer["time_s"] for layer in sess.stats["layers"] if layer["op"] == "Conv")


def measure(repeat: int = 10, threads: int | None = None, warmup: int = 2, backends: tuple[str, ...] = ("numba",)) -> dict:
    model = aipnet.load("vggf-conv")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    sessions = {}
    for b in backends:
        suffix = "" if b == "numba" else "@" + b
        sessions[("exact" + suffix, 0.0)] = aipnet.Session(model, threads=threads, backend=b)
        for g in GRANS:
            for p in RATES:
                sessions[(g + suffix, p)] = aipnet.Session(model, threads=threads, backend=b, drowsy=p,
                                                           drowsy_granularity=g)
    times: dict[tuple, list[float]] = {k: [] for k in sessions}
    macs: dict[tuple, float] = {}
    bar = tqdm(total=warmup + repeat, desc="drowsy speed rounds", unit="round", leave=False, dynamic_ncols=True)
    for i in range(warmup + repeat):
        bar.update()
        for key, sess in sessions.items():
            # each timed run right after an untimed one of the same session: both runtimes'
            # workers spin for a while after a parallel region (OpenMP's spin count, the C
            # pool's 200 us), and each C session has its own pool, so without it a session
            # would share the cores with the previous session's spinning workers
            sess.run(x, image_offset=2 * i)
            sess.run(x, image_offset=2 * i + 1)
            if i >= warmup:
                times[key].append(conv_time(sess))
                convs = [layer for layer in sess.stats["layers"] if layer["op"] == "Conv"]
                macs[key] = sum(c["macs"] for c in convs) / sum(c["macs"] + c["macs_skipped"] for c in convs)
    bar.close()
    out = {"model": "vggf-conv", "batch": 1, "repeat": repeat,
           "threads": aipnet.Session(model, threads=threads).effective_threads, "backends": list(backends)}
    for b in backends:
        suffix = "" if b == "numba" else "@" + b
        base = statistics.median(times[("exact" + suffix, 0.0)])
        rows = [{"granularity": g, "p": p, "median_conv_s": statistics.median(times[(g + suffix, p)]),
                 "ratio": statistics.median(times[(g + suffix, p)]) / base, "macs_fraction": macs[(g + suffix, p)]}
                for g in GRANS for p in RATES]
        key = "" if b == "numba" else "_" + b
        out["exact_median_conv_s" + key] = base
        out["rows" + key] = rows
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for b in res.get("backends", ["numba"]):
        key = "rows" if b == "numba" else "rows_" + b
        for g in GRANS:
            rs = [r for r in res[key] if r["granularity"] == g]
            ax.plot([0] + [r["p"] for r in rs], [1.0] + [r["ratio"] for r in rs], marker="o",
                    linestyle="-" if b == "numba" else "--", label=f"{g} ({b})")
    ax.plot([0, 0.75], [1, 0.25], "k:", label="1 - p")
    ax.set_xlabel("drop rate p")
    ax.set_ylabel("conv time / exact conv time")
    ax.set_title(f"DrowsyNet, VGG-f conv stack, batch 1, {res['threads']} threads (median of {res['repeat']})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--backends", default="numba,c", help="comma-separated: numba, c")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "drowsy_speed.json", help="where the results go")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "drowsy_speed.png", help="where the plot goes")
    args = ap.parse_args()
    res = measure(args.repeat, args.threads, backends=tuple(args.backends.split(",")))
    args.json.write_text(json.dumps(res, indent=1))
    plot(res, args.plot)
    for b in res["backends"]:
        key = "" if b == "numba" else "_" + b
        print(f"backend {b}: exact conv time {res['exact_median_conv_s' + key] * 1e3:.2f} ms (median of "
              f"{res['repeat']}, {res['threads']} threads)")
        print("| granularity | p | conv MACs executed | conv time / exact |")
        print("|---|---|---|---|")
        for r in res["rows" + key]:
            print(f"| {r['granularity']} | {r['p']} | {r['macs_fraction'] * 100:.1f}% | {r['ratio']:.3f} |")


# -- pytest-benchmark ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def vggf():
    return aipnet.load("vggf-conv"), np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)


@pytest.mark.parametrize("backend", ["numba", "c"])
@pytest.mark.parametrize("p", [0.0, 0.5])
@pytest.mark.parametrize("gran", GRANS)
def test_bench_drowsy(benchmark, vggf, gran, p, backend):
    model, x = vggf
    sess = aipnet.Session(model, drowsy=p, drowsy_granularity=gran, backend=backend)
    sess.run(x)
    benchmark.extra_info.update(granularity=gran, p=p, backend=backend)
    benchmark.pedantic(sess.run, args=(x,), rounds=5, iterations=1)


if __name__ == "__main__":
    main()
