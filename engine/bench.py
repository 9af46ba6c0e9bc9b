"""`aipnet bench`: time aipnet against onnxruntime in one run, as a ratio.

Both engines run the same model on the same input, interleaved call by call so that
the machine's background noise hits both alike; we report medians and their ratio,
and aipnet's time split by op type (from its stats).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

from .errors import AipnetError
from .info import random_feeds
from .model import Model
from .session import Session
from .stats import by_op


def _ort_session(model: Model, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise AipnetError("--against onnxruntime needs onnxruntime: pip install onnxruntime") from None
    if model.onnx_model is None:
        raise AipnetError(f"{model.source}: no ONNX graph to give onnxruntime")
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.onnx_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


#: timed calls per engine in a row (after one untimed call)
BLOCK = 5


def bench(model: Model, against: str | None = "onnxruntime", threads: int | None = None, batch: int = 1,
          repeat: int = 20, warmup: int = 3, progress: Callable[[int], None] | None = None,
          backend: str = "numba", **knobs: Any) -> dict[str, Any]:
    """Median seconds per run of aipnet (and of ``against``), their ratio, and the op split."""
    feeds = random_feeds(model, batch)
    sess = Session(model, backend=backend, threads=threads, **knobs)
    runners: dict[str, Callable[[], Any]] = {"aipnet": lambda: sess.run(feeds)}
    if against == "onnxruntime":
        ort_sess = _ort_session(model, threads)
        runners["onnxruntime"] = lambda: ort_sess.run(None, feeds)
    elif against:
        raise AipnetError(f"--against {against!r}: only onnxruntime is supported")
    times: dict[str, list[float]] = {k: [] for k in runners}
    op_split: dict[str, list[float]] = {}
    for _ in range(warmup):
        for fn in runners.values():
            fn()
        if progress:
            progress(1)
    # Engines alternate in short blocks: the first call of a block (which pays for the
    # other engine's leftovers: its spinning thread pool, its weights in the caches) is
    # not timed, the rest run back to back as a deployed engine would.
    done = 0
    while done < repeat:
        n = min(BLOCK, repeat - done)
        for name, fn in runners.items():
            fn()
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
                if name == "aipnet":
                    for op, t in by_op(sess.stats).items():
                        op_split.setdefault(op, []).append(t)
        done += n
        if progress:
            progress(n)
    result: dict[str, Any] = {
        "model": model.source, "backend": backend, "batch": batch, "threads": threads, "repeat": repeat,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "min_s": {k: min(v) for k, v in times.items()},
        "op_split_s": {op: statistics.median(v) for op, v in sorted(op_split.items(), key=lambda kv: -statistics.median(kv[1]))},
        "source": f"measured (wall clock, engines alternating in blocks of {BLOCK} runs)",
    }
    if against:
        result["ratio"] = result["median_s"]["aipnet"] / result["median_s"][against]
    return result


def bench_counters(model: Model, threads: int | None = None, batch: int = 1, repeat: int = 20, warmup: int = 3,
                   backend: str = "numba", **knobs: Any) -> dict[str, Any]:
    """Hardware counters (source ``hw``) over ``repeat`` runs of aipnet alone, after
    ``warmup`` runs; opened after the session so that its worker threads are counted.
    Where the machine has none the report says why (errno) and carries no values."""
    from .counters import PerfCounters

    feeds = random_feeds(model, batch)
    sess = Session(model, backend=backend, threads=threads, **knobs)
    for _ in range(max(warmup, 1)):
        sess.run(feeds)
    pc = PerfCounters()
    with pc:
        for _ in range(repeat):
            sess.run(feeds)
    rep = dict(pc.report or {})
    rep.update({"model": model.source, "backend": backend, "batch": batch, "threads": threads, "runs": repeat,
                "scope": "every thread of the aipnet process, user space, the runs only (not load or warm-up)"})
    return rep


def check_outputs_agree(model: Model, threads: int | None = None) -> float:
    """Max abs difference between aipnet and onnxruntime on one random input (a sanity check)."""
    feeds = random_feeds(model, 1)
    ours = Session(model, threads=threads).run(feeds)
    ref = _ort_session(model, threads).run(None, feeds)[0]
    ours = next(iter(ours.values())) if isinstance(ours, dict) else ours
    return float(np.max(np.abs(ours - ref)))
