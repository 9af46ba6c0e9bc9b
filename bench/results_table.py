"""The README's results table (issue 9): exact vs AIP vs DrowsyNet vs tuned vs
onnxruntime on the reference model, each with time (warm and cold caches, measured),
simulated DRAM bytes (cachegrind, board LLC), analytic energy and top-1 (measured).

    python bench/results_table.py --images 1000 --repeat 30 --out bench/results/results_table.json

Times: batch 1, Numba backend, all variants interleaved run by run; "cold" reads a
buffer of twice the LLC before each timed run so that weights come from DRAM.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

import aipnet
from aipnet import builtin
from aipnet.data import load_fashion_mnist
from aipnet.energy import energy
from aipnet.evaluate import evaluate
from aipnet.simulate import simulate_variants

TUNED = builtin.MODELS_DIR / "reference-aip.tuned.json"


def llc_bytes() -> int:
    try:
        return int(os.sysconf("SC_LEVEL3_CACHE_SIZE")) or 32 << 20
    except (ValueError, OSError):
        return 32 << 20


def variants():
    v = [("exact", "reference", {}), ("AIP (--aip)", "reference-aip", {"aip": True}),
         ("DrowsyNet p=0.1 neuron", "reference", {"drowsy": 0.1, "drowsy_granularity": "neuron"})]
    if TUNED.exists():
        v.append(("tuned (2-pt budget)", "reference-aip", {"config": str(TUNED)}))
    return v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", default="bench/results/results_table.json")
    args = ap.parse_args()
    x, y, source = load_fashion_mnist("test")
    x, y = x[:args.images], y[:args.images]
    rows = []
    sessions = {}
    for name, model_name, knobs in variants():
        model = aipnet.load(model_name)
        res = evaluate(model, x, y, batch=1, progress=False, **knobs)
        e = energy(res["stats"], images=len(y))
        rows.append({"variant": name, "model": model_name, "knobs": knobs, "top1": res["top1"],
                     "agreement": res["agreement"], "energy_uj": e["total_j"] * 1e6})
        sessions[name] = aipnet.Session(model, threads=1, **knobs)
        try:
            sessions[name + " [C]"] = aipnet.Session(model, backend="c", threads=1, **knobs)
        except aipnet.AipnetError:
            pass  # a knob the C runtime lacks: Numba timing only
    ort_path = builtin.MODELS_DIR / "reference.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    ort_sess = ort.InferenceSession(str(ort_path), opts, providers=["CPUExecutionProvider"])
    ort_pred = np.concatenate([ort_sess.run(None, {"input": x[i:i + 100]})[0].argmax(1) for i in range(0, len(x), 100)])
    rows.append({"variant": "onnxruntime", "model": "reference.onnx", "knobs": {}, "top1": float((ort_pred == y).mean()),
                 "energy_uj": None})
    runners = {n: (lambda s=s: s.run(x[:1])) for n, s in sessions.items()}
    runners["onnxruntime"] = lambda: ort_sess.run(None, {"input": x[:1]})
    flush = np.ones(2 * llc_bytes() // 8)
    times = {n: {"warm": [], "cold": []} for n in runners}
    for n, fn in runners.items():
        fn()
    for _ in range(args.repeat):
        for n, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[n]["warm"].append(time.perf_counter() - t0)
            flush.sum()
            t0 = time.perf_counter()
            fn()
            times[n]["cold"].append(time.perf_counter() - t0)
    sims = {}
    for name, model_name, knobs in variants():
        try:
            r = simulate_variants(aipnet.load(model_name), [(name, knobs)])
            sims[name] = r["variants"][0]["dram_bytes"]
        except aipnet.AipnetError as exc:
            sims[name] = f"n/a ({exc})"
    for r in rows:
        r["time_warm_ms"] = statistics.median(times[r["variant"]]["warm"]) * 1e3
        r["time_cold_ms"] = statistics.median(times[r["variant"]]["cold"]) * 1e3
        c = times.get(r["variant"] + " [C]")
        r["c_time_warm_ms"] = statistics.median(c["warm"]) * 1e3 if c else None
        r["c_time_cold_ms"] = statistics.median(c["cold"]) * 1e3 if c else None
        r["dram_bytes_simulated"] = sims.get(r["variant"])
    out = {"data": source, "images": len(y), "repeat": args.repeat, "rows": rows,
           "sources": {"top1": "measured", "time": "measured (wall clock, batch 1, 1 thread)",
                       "dram_bytes_simulated": "simulated (cachegrind, 1 MiB 16-way LLC)", "energy_uj": "analytic"}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("| variant | top-1 | Numba warm / cold (ms) | C warm / cold (ms) | DRAM bytes (simulated) | energy (uJ, analytic) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        d = r["dram_bytes_simulated"]
        dtxt = f"{d / 1e6:.2f} MB" if isinstance(d, (int, float)) else (d or "–")
        etxt = f"{r['energy_uj']:.0f}" if r["energy_uj"] is not None else "–"
        ctxt = (f"{r['c_time_warm_ms']:.3f} / {r['c_time_cold_ms']:.3f}" if r.get("c_time_warm_ms") is not None
                else ("–" if r["variant"] == "onnxruntime" else "n/a (knob not in C)"))
        ntxt = f"{r['time_warm_ms']:.3f} / {r['time_cold_ms']:.3f}"
        if r["variant"] == "onnxruntime":
            ntxt, ctxt = f"{r['time_warm_ms']:.3f} / {r['time_cold_ms']:.3f} (onnxruntime)", "–"
        print(f"| {r['variant']} | {r['top1']:.4f} | {ntxt} | {ctxt} | {dtxt} | {etxt} |")


if __name__ == "__main__":
    main()
