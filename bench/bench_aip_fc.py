"""AIP on VGG-f's FC stack (9216 -> 4096 -> 4096 -> 1000, ``aipnet.load("vggf-fc")``) at
batch 1: time and FC weight bytes of AIP (Numba and C) against our dense GEMV (Numba and
C) and onnxruntime's Gemm, in one run, warm and cold caches, as ratios.

The operating point: the fraction of FC weight bytes that AIP reads on the reference
model at its default point (``aipnet.Session("reference", aip=True)``, batch 1, over
test images) is measured first; theta on vggf-fc is then chosen (bisection, C backend)
so that AIP reads the same fraction there. Inputs are post-ReLU-like: relu(N(0,1) - 0.25),
about 60% zeros (DESIGN.md: post-ReLU FC inputs are 50-80% zeros).

Cold: before each timed run a buffer of twice the last-level cache (sysconf, else lscpu,
else 64 MiB) is read through the caches, so the weights come from DRAM. Warm: runs
back to back. Every variant is timed in rounds that interleave the variants (the machines
are shared), and the median is reported.

    python bench/bench_aip_fc.py [--reps 15] [--threads 1] [--json out.json]

Also a pytest-benchmark test (``pytest bench/bench_aip_fc.py``) of the C AIP run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time

import numpy as np

import aipnet
import aipnet.data

FC_OPS = ("Gemm", "AipFC")


def llc_bytes() -> int:
    for name in ("SC_LEVEL3_CACHE_SIZE", "SC_LEVEL2_CACHE_SIZE"):
        try:
            v = os.sysconf(name)
            if v and v > 0:
                return int(v)
        except (ValueError, OSError):
            pass
    try:
        out = subprocess.run(["lscpu", "-B"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("L3 cache:"):
                return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return 64 << 20


class Flusher:
    """Streams a buffer twice the size of the last-level cache through the caches."""

    def __init__(self) -> None:
        self.buf = np.ones(2 * llc_bytes() // 8, dtype=np.float64)

    def __call__(self) -> float:
        # read only: writing would leave dirty lines whose write-back the timed run pays
        return float(self.buf.sum())


def fc_bytes(stats) -> tuple[int, int]:
    layers = [la for la in stats["layers"] if la["op"] in FC_OPS]
    return sum(la["weight_bytes_read"] for la in layers), sum(la["weight_bytes_total"] for la in layers)


def dense_fc_bytes(model) -> int:
    s = aipnet.Session(model, backend="c")
    s.run(np.zeros((1, model.graph.inputs[0].shape[1]), np.float32))
    return fc_bytes(s.stats)[1]


def reference_fraction(n_images: int = 200) -> float:
    """FC weight bytes read by AIP / dense FC bytes on the reference model, default knobs."""
    images, _, _ = aipnet.data.load_subset()
    x = (images[:n_images].astype(np.float32) / 255.0)[:, None]
    model = aipnet.load("reference")
    dense = dense_fc_bytes_4d(model)
    s = aipnet.Session(model, backend="c", aip=True)
    read = 0
    for i in range(len(x)):
        s.run(np.ascontiguousarray(x[i:i + 1]))
        read += fc_bytes(s.stats)[0]
    return read / (dense * len(x))


def dense_fc_bytes_4d(model) -> int:
    s = aipnet.Session(model, backend="c")
    s.run(np.zeros((1, 1, 28, 28), np.float32))
    return sum(la["weight_bytes_read"] for la in s.stats["layers"] if la["op"] in FC_OPS)


def inputs(n: int, kdim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.maximum(rng.standard_normal((n, 1, kdim)).astype(np.float32) - 0.25, 0.0)


def pick_theta(model, xs, target: float, threads: int) -> tuple[float, float]:
    """theta whose mean FC byte fraction over xs is closest to target (bisection)."""
    from aipnet.aip import pack_graph
    from aipnet.graph import Graph
    from aipnet.knobs import make_knobs
    from aipnet.model import Model
    from aipnet.native import NativeModel, NativeSession

    dense = dense_fc_bytes(model)
    g = model.graph
    g = Graph(list(g.nodes), dict(g.initializers), list(g.inputs), list(g.outputs), g.opset, g.name)
    g.nodes = [type(n)(n.op, n.name, list(n.inputs), list(n.outputs), dict(n.attrs)) for n in g.nodes]
    pack_graph(g)  # the stride packing a Session with aip=True makes at load, once for the search
    nm = NativeModel(Model(g, "vggf-fc (packed)"))

    def frac(theta: float) -> float:
        s = NativeSession(nm, threads, make_knobs(aip=True, aip_threshold=theta))
        tot = 0
        for x in xs:
            s.run([x])
            tot += fc_bytes(s.stats())[0]
        return tot / (dense * len(xs))

    lo, hi = -1.0, 1.0
    while frac(lo) < target:
        lo *= 2
    while frac(hi) > target:
        hi *= 2
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        if frac(mid) > target:
            lo = mid
        else:
            hi = mid
    theta = 0.5 * (lo + hi)
    return theta, frac(theta)


def ort_session(model, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model.onnx_model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})


def run(reps: int = 15, threads: int = 1, n_inputs: int = 8, ref_images: int = 200, verbose: bool = True) -> dict:
    log = print if verbose else (lambda *a, **k: None)
    model = aipnet.load("vggf-fc")
    kdim = model.graph.inputs[0].shape[1]
    target = reference_fraction(ref_images)
    log(f"reference model, default AIP point: FC bytes read / dense = {target:.3f}")
    xs = list(inputs(n_inputs, kdim))
    theta, got = pick_theta(model, xs, target, threads)
    log(f"vggf-fc: theta = {theta:.4f} gives FC bytes read / dense = {got:.3f}  "
        f"(inputs {100 * float(np.mean([(x == 0).mean() for x in xs])):.0f}% zeros)")
    dense_bytes = dense_fc_bytes(model)

    variants = {
        "aip_c": aipnet.Session(model, backend="c", threads=threads, aip=True, aip_threshold=theta),
        "aip_numba": aipnet.Session(model, backend="numba", threads=threads, aip=True, aip_threshold=theta),
        "dense_c": aipnet.Session(model, backend="c", threads=threads),
        "dense_numba": aipnet.Session(model, backend="numba", threads=threads),
    }
    runs = {k: s.run for k, s in variants.items()}
    runs["onnxruntime"] = ort_session(model, threads)
    # warm-up (compiles, packs, plans) and the bytes of each variant over the inputs
    bytes_read = {}
    refined = {}
    for k, f in runs.items():
        tot, rows = 0, []
        for x in xs:
            f(x)
            if k in variants:
                tot += fc_bytes(variants[k].stats)[0]
                rows += [la.get("aip_rows_refined", 0) / la["outputs"] for la in variants[k].stats["layers"]
                         if la.get("aip_role") == "relu"]
        bytes_read[k] = tot / len(xs) if k in variants else dense_bytes
        if rows:
            refined[k] = float(np.mean(rows))
    flush = Flusher()
    times: dict[str, dict[str, list[float]]] = {"warm": {k: [] for k in runs}, "cold": {k: [] for k in runs}}
    for r in range(reps):
        x = xs[r % len(xs)]
        for k, f in runs.items():  # warm: a run to load, then the timed one
            f(x)
            t0 = time.perf_counter()
            f(x)
            times["warm"][k].append(time.perf_counter() - t0)
        for k, f in runs.items():
            flush()
            t0 = time.perf_counter()
            f(x)
            times["cold"][k].append(time.perf_counter() - t0)
    res = {"theta": theta, "target_byte_fraction": target, "byte_fraction": got, "threads": threads,
           "relu_rows_refined": refined, "llc_bytes": llc_bytes(), "dense_bytes": dense_bytes,
           "bytes": bytes_read, "time_s": {}, "ratios": {}}
    for cache in ("warm", "cold"):
        med = {k: statistics.median(v) for k, v in times[cache].items()}
        res["time_s"][cache] = med
        ratios = {}
        for impl in ("c", "numba"):
            tr = med[f"aip_{impl}"] / med[f"dense_{impl}"]
            br = bytes_read[f"aip_{impl}"] / bytes_read[f"dense_{impl}"]
            ratios[impl] = {"time_ratio": tr, "byte_ratio": br, "time_over_bytes": tr / br,
                            "aip_vs_onnxruntime": med[f"aip_{impl}"] / med["onnxruntime"]}
        ratios["dense_c_vs_onnxruntime"] = med["dense_c"] / med["onnxruntime"]
        res["ratios"][cache] = ratios
    if verbose:
        print(f"threads {threads}, LLC {llc_bytes() >> 20} MiB, {reps} rounds, median times (ms):")
        print(f"{'':8} " + " ".join(f"{k:>12}" for k in runs))
        for cache in ("warm", "cold"):
            print(f"{cache:8} " + " ".join(f"{1e3 * res['time_s'][cache][k]:12.2f}" for k in runs))
        print("FC MB    " + " ".join(f"{bytes_read[k] / 1e6:12.1f}" for k in runs))
        for cache in ("warm", "cold"):
            for impl in ("c", "numba"):
                q = res["ratios"][cache][impl]
                print(f"{cache} {impl:5}: AIP/dense time {q['time_ratio']:.3f}, bytes {q['byte_ratio']:.3f}, "
                      f"time/bytes {q['time_over_bytes']:.2f}, AIP/onnxruntime time {q['aip_vs_onnxruntime']:.3f}")
    return res


def test_bench_aip_fc_c(benchmark):
    model = aipnet.load("vggf-fc")
    x = inputs(1, model.graph.inputs[0].shape[1])[0]
    s = aipnet.Session(model, backend="c", aip=True, aip_threshold=0.5)
    s.run(x)
    benchmark(s.run, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--inputs", type=int, default=8)
    ap.add_argument("--ref-images", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res = run(a.reps, a.threads, a.inputs, a.ref_images)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
