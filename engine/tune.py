"""`aipnet tune`: the cheapest per-layer setting of DrowsyNet rates and AIP thresholds
within an accuracy budget.

Data: a seeded random half of the images is the calibration split (the search sees
only it) and the other half the held-out split (the chosen setting is reported there).
The loss is the top-1 drop against the exact model on the same images; the cost is the
objective per image: ``energy`` (aipnet.energy, analytic), ``traffic`` (weight bytes
read, analytic), ``macs`` (analytic) or ``time`` (measured).

A setting is feasible when its calibration loss plus ``margin`` standard errors stays
within the budget. The standard error is that of the paired per-image difference
(exact right minus setting right), about 1 point on 1,000 images at a 3-point loss; the
margin (default 2) offsets the winner's curse of picking the cheapest of many noisy
estimates, which otherwise lets the held-out loss overshoot the budget: on the reference
model at a 3-point DrowsyNet budget (2,000 + 2,000 images) a margin of 1 chose a setting
that lost 2.4 points on calibration and 3.35 on held-out; a margin of 2 chose one that
lost 2.0 and 1.85.

Two searches run and the better feasible one (lower cost on the calibration split) is
kept:
- ``greedy``: per-layer sensitivity. Each layer alone is swept over its levels; then,
  starting from exact, the step with the best cost saved per point of loss (from the
  sweep) is taken while the real combined loss stays within the budget.
- ``random``: a seeded global random search over the whole grid (each point's layers
  drawn independently), followed by the same improvement steps from its best point.
- ``uniform``: one level for every layer of a kind (every conv at the same rate; every FC
  at the same threshold), then the improvement steps from the cheapest feasible one, so
  the tuned setting is never worse than the best uniform one on calibration.

The improvement steps raise one layer's level at a time and, when no raise fits the
budget, trade a raise in one layer for a lower level in another.

Settings with AIP are evaluated at batch 1, as on a board: weights are read for each
image and each image decides its own AIP refinement. DrowsyNet-only settings with the
``macs`` objective run in batches of 50, which gives the same outputs and MACs (masks
are per image id) much faster; their weight bytes (and so traffic and energy) are then
per batch of 50, and the result says ``"batch": 50``. Evaluations are cached on disk, keyed by the
model's weights, the images and the setting, so a second run is fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .energy import EnergyConstants, energy
from .errors import KnobError
from .model import Model
from .session import Session
from .stats import accumulate

OBJECTIVES = ("energy", "traffic", "macs", "time")
#: DrowsyNet rate levels per conv layer: 0.05 steps where budgets of a few points land
DROWSY_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
#: AIP threshold levels per FC layer; None = AIP refines everything there (theta = -inf)
AIP_LEVELS = (None, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)


@dataclass
class Point:
    """One evaluated setting: per-layer level indices, its metrics on a split."""

    levels: tuple[int, ...]
    top1: float
    loss: float
    agreement: float
    cost: float
    metrics: dict[str, float] = field(default_factory=dict)


class Tuner:
    def __init__(self, model: Model, images: np.ndarray, labels: np.ndarray, budget: float,
                 objective: str = "energy", granularity: str = "pixel", aip: bool = True, drowsy: bool = True,
                 seed: int = 0, threads: int | None = None, cache_dir: str | os.PathLike | None = None,
                 constants: EnergyConstants | None = None, progress: Callable[[int], None] | None = None,
                 margin: float = 2.0):
        if objective not in OBJECTIVES:
            raise KnobError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        if not 0.0 <= budget < 1.0:
            raise KnobError(f"budget is a top-1 loss fraction in [0, 1), got {budget!r}")
        if not 0.0 <= margin <= 10.0:
            raise KnobError(f"margin is a number of standard errors in [0, 10], got {margin!r}")
        if len(labels) < 20:
            raise KnobError(f"tuning needs at least 20 images, got {len(labels)}")
        self.model, self.budget, self.objective, self.margin = model, budget, objective, margin
        self.granularity, self.seed, self.threads = granularity, seed, threads
        self.constants = constants or EnergyConstants()
        self.progress = progress
        order = np.random.default_rng(seed).permutation(len(labels))
        half = len(labels) // 2
        self.splits = {"calib": (images[order[:half]], labels[order[:half]]),
                       "heldout": (images[order[half:]], labels[order[half:]])}
        g = model.graph
        self.convs = [n.name for n in g.nodes if n.op == "Conv"] if drowsy else []
        self.fcs = [n.name for n in g.nodes if n.op in ("Gemm", "AipFC")] if aip else []
        self.layers = self.convs + self.fcs
        self.levels = [len(DROWSY_LEVELS)] * len(self.convs) + [len(AIP_LEVELS)] * len(self.fcs)
        self._exact: dict[str, np.ndarray] = {}
        self._cache_path = self._cache_file(cache_dir)
        self._cache: dict[str, dict[str, float]] = self._read_cache()
        self.evaluations = 0
        self.cache_hits = 0

    # -- settings ----------------------------------------------------------------------
    def config(self, levels: tuple[int, ...]) -> dict[str, Any]:
        """The config file (aipnet.config schema) of a setting."""
        layers: dict[str, dict[str, Any]] = {}
        for name, lv in zip(self.convs, levels[:len(self.convs)]):
            if DROWSY_LEVELS[lv]:
                layers[name] = {"drowsy": DROWSY_LEVELS[lv]}
        use_aip = False
        for name, lv in zip(self.fcs, levels[len(self.convs):]):
            theta = AIP_LEVELS[lv]
            if theta is not None:
                use_aip = True
                layers[name] = {"aip_threshold": theta}
        cfg: dict[str, Any] = {"layers": layers}
        if use_aip:
            cfg["aip"] = True
            for name in self.fcs:  # layers without a level are refined in full
                layers.setdefault(name, {"aip_threshold": -1e30})
        if any("drowsy" in v for v in layers.values()):
            cfg["drowsy_granularity"] = self.granularity
        cfg["seed"] = self.seed
        return cfg

    # -- evaluation --------------------------------------------------------------------
    def exact_predictions(self, split: str) -> np.ndarray:
        if split not in self._exact:
            x, _ = self.splits[split]
            sess = Session(self.model, threads=self.threads)
            self._exact[split] = np.concatenate([sess.run(x[s:s + 100]).argmax(1) for s in range(0, len(x), 100)])
        return self._exact[split]

    def evaluate(self, levels: tuple[int, ...], split: str = "calib") -> Point:
        # keyed by the setting itself, not level indices, which change when the grids do
        key = json.dumps([4, split, self.objective, self.config(levels)], sort_keys=True)
        m = self._cache.get(key)
        if m is None:
            m = self._measure(levels, split)
            self._cache[key] = m
            self._write_cache()
            self.evaluations += 1
        else:
            self.cache_hits += 1
        if self.progress:
            self.progress(1)
        return Point(tuple(levels), m["top1"], m["loss"], m["agreement"], m[self.objective], m)

    def batch_for(self, cfg: dict[str, Any]) -> int:
        """50 where batching changes neither outputs nor the objective, else 1."""
        return 50 if self.objective == "macs" and not self.fcs and not cfg.get("aip") else 1

    def feasible(self, p: Point) -> bool:
        """Within the budget on calibration, ``margin`` standard errors included."""
        return p.loss + self.margin * p.metrics.get("loss_se", 0.0) <= self.budget + 1e-12

    def _measure(self, levels: tuple[int, ...], split: str) -> dict[str, float]:
        x, y = self.splits[split]
        cfg = self.config(levels)
        sess = Session(self.model, threads=self.threads, config=cfg)
        # AIP: the board's case, weights read and refinement decided per image. DrowsyNet
        # masks depend on the image id only, so batching changes nothing but the speed.
        batch = self.batch_for(cfg)
        preds, stats, elapsed = [], None, 0.0
        for s in range(0, len(x), batch):
            t0 = time.perf_counter()
            out = sess.run(x[s:s + batch], image_offset=s)
            elapsed += time.perf_counter() - t0
            preds.append(out.argmax(1))
            stats = accumulate(stats, sess.stats)
        pred = np.concatenate(preds)
        exact = self.exact_predictions(split)
        n = len(y)
        top1 = float((pred == y).mean())
        e = energy(stats, self.constants, n)
        diff = (exact == y).astype(np.float64) - (pred == y)
        return {"top1": top1, "loss": float(diff.mean()), "loss_se": float(diff.std(ddof=1) / np.sqrt(n)),
                "agreement": float((pred == exact).mean()),
                "energy": e["total_j"], "traffic": stats["total"]["weight_bytes_read"] / n,
                "macs": stats["total"]["macs"] / n, "time": elapsed / n,
                "fc_bytes": sum(layer["weight_bytes_read"] for layer in stats["layers"]
                                if layer["op"] in ("Gemm", "AipFC")) / n,
                "conv_macs": sum(layer["macs"] for layer in stats["layers"] if layer["op"] == "Conv") / n}

    # -- searches ----------------------------------------------------------------------
    def greedy(self) -> tuple[Point, list[Point], dict[tuple[int, int], Point]]:
        """Per-layer sensitivity sweep, then cost-per-loss steps within the budget; returns
        (best, seen, sweep), the sweep keyed by (layer, level)."""
        base = tuple([0] * len(self.layers))
        exact = self.evaluate(base)
        sweep: dict[tuple[int, int], Point] = {}
        for i, count in enumerate(self.levels):
            for lv in range(1, count):
                p = self.evaluate(tuple(lv if j == i else 0 for j in range(len(self.layers))))
                sweep[(i, lv)] = p
                if p.loss > 2 * self.budget + 0.02:
                    break  # deeper levels of this layer only lose more
        seen = [exact, *sweep.values()]
        best = self._improve(exact, sweep, seen, exact)
        return best, seen, sweep

    def uniform_search(self, sweep: dict[tuple[int, int], Point]) -> tuple[Point, Point, list[Point]]:
        """Every layer of a kind at one level, then the improvement steps guided by the
        greedy ``sweep``; returns (improved best, best uniform, seen)."""
        exact = self.evaluate(tuple([0] * len(self.layers)))
        seen = [exact]
        nc = len(self.convs)
        kinds = [(range(0, nc), len(DROWSY_LEVELS)), (range(nc, len(self.layers)), len(AIP_LEVELS))]
        for idx, count in kinds:
            if not len(idx):
                continue
            for lv in range(1, count):
                p = self.evaluate(tuple(lv if j in idx else 0 for j in range(len(self.layers))))
                seen.append(p)
                if p.loss > 2 * self.budget + 0.02:
                    break
        start = min((p for p in seen if self.feasible(p)), key=lambda p: p.cost)
        return self._improve(start, sweep, seen, exact), start, seen

    def random_search(self, samples: int = 24) -> tuple[Point, list[Point]]:
        """Seeded random points over the grid, then the improvement steps from the best."""
        rng = random.Random(self.seed + 1)
        seen = [self.evaluate(tuple([0] * len(self.layers)))]
        for _ in range(samples):
            lv = tuple(rng.randrange(c) for c in self.levels)
            seen.append(self.evaluate(lv))
        feasible = [p for p in seen if self.feasible(p)]
        start = min(feasible, key=lambda p: p.cost)
        return self._improve(start, {}, seen, seen[0]), seen

    def _improve(self, start: Point, sweep: dict, seen: list[Point], exact: Point) -> Point:
        """From ``start``, raise one layer's level at a time (most promising first, by the
        per-layer sweep when there is one) while the real loss stays within budget."""
        cur = start
        while True:
            steps = []
            for i, count in enumerate(self.levels):
                lv = cur.levels[i] + 1
                if lv >= count:
                    continue
                single = sweep.get((i, lv))
                if sweep and single is None:
                    continue  # the sweep stopped before this level: too lossy alone
                steps.append((i, lv, single))
            if not steps:
                return cur

            def promise(step):
                i, lv, single = step
                if single is None:
                    return 0.0
                prev = sweep.get((i, lv - 1), exact)
                dcost = prev.cost - single.cost
                dloss = single.loss - prev.loss
                return dcost / max(dloss, 1e-4)

            steps.sort(key=promise, reverse=True)
            for i, lv, _ in steps[:4]:
                cand = self.evaluate(tuple(lv if j == i else v for j, v in enumerate(cur.levels)))
                seen.append(cand)
                if self.feasible(cand) and cand.cost < cur.cost:
                    cur = cand
                    break
            else:
                traded = self._trade(cur, [(i, lv) for i, lv, _ in steps[:3]], seen)
                if traded is None:
                    return cur
                cur = traded

    def _trade(self, cur: Point, raises: list[tuple[int, int]], seen: list[Point]) -> Point | None:
        """The first feasible, cheaper setting that raises one layer (from ``raises``) and
        lowers another by one level, or None."""
        for i, lv in raises:
            for j in range(len(self.layers)):
                if j == i or cur.levels[j] == 0:
                    continue
                lv_new = list(cur.levels)
                lv_new[i], lv_new[j] = lv, cur.levels[j] - 1
                cand = self.evaluate(tuple(lv_new))
                seen.append(cand)
                if self.feasible(cand) and cand.cost < cur.cost:
                    return cand
        return None

    def run(self) -> dict[str, Any]:
        g_best, g_seen, sweep = self.greedy()
        r_best, r_seen = self.random_search()
        u_best, u_start, u_seen = self.uniform_search(sweep)
        found = {"greedy": g_best, "random": r_best, "uniform": u_best}
        method = min(found, key=lambda k: found[k].cost)
        best = found[method]
        base = tuple([0] * len(self.layers))
        held = {"exact": self.evaluate(base, "heldout"), "tuned": self.evaluate(best.levels, "heldout")}
        points = {p.levels: p for p in g_seen + r_seen + u_seen}
        return {
            "config": self.config(best.levels), "method": method, "budget": self.budget, "margin": self.margin,
            "batch": self.batch_for(self.config(best.levels)),
            "objective": self.objective, "granularity": self.granularity,
            "searches": {k: _pt(v) for k, v in found.items()},
            "best_uniform": {"calib": _pt(u_start), "heldout": _pt(self.evaluate(u_start.levels, "heldout"))},
            "calib": {"exact": _pt(self.evaluate(base)), "tuned": _pt(best)},
            "heldout": {k: _pt(v) for k, v in held.items()},
            "front": [_pt(p) for p in pareto(list(points.values()))],
            "images": {k: len(v[1]) for k, v in self.splits.items()},
            "evaluations": self.evaluations, "cache_hits": self.cache_hits,
            "source": {"loss": "measured", self.objective: "measured" if self.objective == "time" else "analytic"},
        }

    # -- cache -------------------------------------------------------------------------
    def _cache_file(self, cache_dir) -> Path:
        h = hashlib.sha256()
        for name in sorted(self.model.graph.initializers):
            arr = self.model.graph.initializers[name]
            h.update(name.encode())
            h.update(np.ascontiguousarray(arr).view(np.uint8).data[:1 << 16])
            h.update(str(arr.shape).encode())
        for x, y in self.splits.values():
            h.update(np.ascontiguousarray(x).tobytes()[:1 << 20])
            h.update(y.tobytes())
        h.update(json.dumps(self.layers).encode())
        root = Path(cache_dir or os.environ.get("AIPNET_CACHE", Path.home() / ".cache" / "aipnet")) / "tune"
        return root / f"{h.hexdigest()[:24]}.json"

    def _read_cache(self) -> dict[str, dict[str, float]]:
        try:
            return json.loads(self._cache_path.read_text())
        except (OSError, ValueError):
            return {}

    def _write_cache(self) -> None:
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._cache))
            tmp.replace(self._cache_path)
        except OSError:
            pass  # a read-only home: tuning still works, only slower the second time


def pareto(points: list[Point]) -> list[Point]:
    """Non-dominated points (lower cost, lower loss), by cost."""
    front, best_loss = [], float("inf")
    for p in sorted(points, key=lambda p: (p.cost, p.loss)):
        if p.loss < best_loss:
            front.append(p)
            best_loss = p.loss
    return front


def _pt(p: Point) -> dict[str, Any]:
    return {"levels": list(p.levels), "top1": p.top1, "loss": p.loss, "agreement": p.agreement, "cost": p.cost,
            **{k: v for k, v in p.metrics.items() if k not in ("top1", "loss", "agreement")}}



def format_tune(res: dict[str, Any]) -> str:
    """A human summary of a tuning result."""
    obj = res["objective"]
    unit = {"energy": ("uJ", 1e6), "traffic": ("MB", 1e-6), "macs": ("M MACs", 1e-6), "time": ("ms", 1e3)}[obj]
    ex, tu = res["heldout"]["exact"], res["heldout"]["tuned"]
    lines = [
        f"tuned {res['images']['calib']} calibration images, reported on {res['images']['heldout']} held-out "
        f"images of {res.get('data', '?')}",
        f"budget {res['budget'] * 100:.1f} points top-1 ({res.get('margin', 0):g} standard errors kept "
        f"below it on calibration); objective {obj} per image ({res['source'][obj]}); "
        f"kept the {res['method']} search ("
        + ", ".join(f"{k} {v['cost'] * unit[1]:.4g}" for k, v in res["searches"].items())
        + f" {unit[0]} on calibration)",
        f"{res['evaluations']} evaluations ({res['cache_hits']} from cache)",
        "",
        f"held-out      top-1   loss    {obj} ({unit[0]})   FC bytes   conv MACs",
    ]
    rows = [("exact", ex), ("tuned", tu)]
    if "best_uniform" in res:
        rows.append(("best uniform", res["best_uniform"]["heldout"]))
    for name, p in rows:
        lines.append(f"{name:12s} {p['top1']:.4f}  {p['loss'] * 100:+.2f}pt  {p['cost'] * unit[1]:12.4g}   "
                     f"{p['fc_bytes'] / 1e6:7.3f}M  {p['conv_macs'] / 1e6:8.3f}M")
    saved = 1 - tu["cost"] / ex["cost"] if ex["cost"] else 0.0
    lines.append(f"saved {saved * 100:.1f}% of {obj} at {tu['loss'] * 100:.2f} points top-1 loss (held-out)")
    if ex["conv_macs"] and tu["conv_macs"] < ex["conv_macs"]:
        lines.append(f"conv MACs saved: {(1 - tu['conv_macs'] / ex['conv_macs']) * 100:.1f}% (analytic)")
    if res.get("batch", 1) > 1:
        lines.append(f"evaluated in batches of {res['batch']}: FC bytes are per batch, not per image")
    lines.append("config: " + json.dumps(res["config"]))
    if res.get("config_file"):
        lines.append(f"wrote {res['config_file']}")
    if res.get("plot"):
        lines.append(f"wrote {res['plot']}")
    return "\n".join(lines)


def plot_front(res: dict[str, Any], path: str | os.PathLike) -> None:
    """Loss against cost of the Pareto front found on the calibration split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex = res["calib"]["exact"]["cost"]
    pts = sorted(res["front"], key=lambda p: p["cost"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot([100 * (1 - p["cost"] / ex) for p in pts], [100 * p["loss"] for p in pts], "o-", label="Pareto front (calibration)")
    tu = res["calib"]["tuned"]
    ax.plot([100 * (1 - tu["cost"] / ex)], [100 * tu["loss"]], "r*", ms=14, label="chosen")
    ax.axhline(100 * res["budget"], color="gray", ls="--", lw=0.8, label="budget")
    ax.set_xlabel(f"{res['objective']} saved, % ({res['source'][res['objective']]})")
    ax.set_ylabel("top-1 loss, points")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
