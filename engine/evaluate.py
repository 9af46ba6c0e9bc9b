"""`aipnet eval`: accuracy of a classifier on Fashion-MNIST, and what it cost.

Reports top-1 and top-5 accuracy, agreement with the exact model's top-1 on the same
images (1.0 by construction when no approximation knob is set), the stats of every
run summed over the images (MACs executed and skipped, weight bytes read: analytic),
and wall-clock time per image.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import KnobError
from .model import Model
from .progress import progress_bar
from .session import Session
from .stats import accumulate


def topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: is the label among the k highest scores?"""
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def evaluate(model: Model, images: np.ndarray, labels: np.ndarray, batch: int = 100,
             threads: int | None = None, data: str = "", progress: bool = True,
             backend: str = "numba", **knobs: Any) -> dict[str, Any]:
    """Evaluate ``model`` with the session ``knobs`` on preprocessed ``images``.

    Returns a dict with ``top1``, ``top5``, ``agreement`` (with the exact model's top-1),
    ``images``, ``data``, ``stats`` (summed over all runs), ``time_per_image_s`` and
    ``predictions`` (top-1 class per image).
    """
    if batch < 1:
        raise KnobError(f"batch must be at least 1, got {batch}")
    sess = Session(model, backend=backend, threads=threads, **knobs)
    exact = Session(model, backend=backend, threads=threads) if knobs else None
    preds = np.empty(len(labels), dtype=np.int64)
    n = len(labels)
    top1 = top5 = agree = 0
    stats = None
    elapsed = 0.0
    if n:
        sess.run(images[:min(batch, n)])  # warm-up (compilation, plans) is not timed
    with progress_bar(n, "eval", disable=not progress) as bar:
        for s in range(0, n, batch):
            x, y = images[s:s + batch], labels[s:s + batch]
            t0 = time.perf_counter()
            scores = sess.run(x, image_offset=s)
            elapsed += time.perf_counter() - t0
            stats = accumulate(stats, sess.stats)
            pred = scores.argmax(axis=1)
            preds[s:s + len(y)] = pred
            top1 += int((pred == y).sum())
            top5 += int(topk_hits(scores, y, 5).sum())
            ref = exact.run(x).argmax(axis=1) if exact is not None else pred
            agree += int((pred == ref).sum())
            bar.update(len(y))
    return {
        "model": model.source, "data": data, "images": n,
        "top1": top1 / n, "top5": top5 / n, "agreement": agree / n,
        "time_per_image_s": elapsed / n, "batch": batch, "backend": backend, "knobs": knobs,
        "predictions": preds.tolist(),
        "stats": stats, "source": {"accuracy": "measured", "stats": "analytic", "time": "measured (wall clock)"},
    }


def format_eval(res: dict[str, Any]) -> str:
    from .info import human

    lines = [
        f"model {res['model']} on {res['data']}",
        f"top-1 {res['top1']:.4f}   top-5 {res['top5']:.4f}   agreement with exact top-1 {res['agreement']:.4f}   "
        f"({res['images']} images, batch {res['batch']})",
        f"time {res['time_per_image_s'] * 1e3:.3f} ms/image (measured)",
        "",
        "per image (analytic)      MACs  MACs skipped  weight bytes read",
    ]
    n = res["images"]
    for layer in res["stats"]["layers"] + [dict(res["stats"]["total"], name="total")]:
        if layer["name"] != "total" and not layer["macs"] and not layer["weight_bytes_read"]:
            continue
        lines.append(f"{layer['name'][-22:]:22s} {human(layer['macs'] / n):>8s}  {human(layer['macs_skipped'] / n):>12s}  "
                     f"{human(layer['weight_bytes_read'] / n):>17s}")
    return "\n".join(lines)
