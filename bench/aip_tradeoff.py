"""AIP accuracy/traffic trade-off on the reference model (issue 6, "Measure").

For each subset policy, fraction and threshold, evaluates the reference model at batch 1
(the deployment case: each image decides its own refinement) and records top-1, its loss
against the exact model, agreement with the exact top-1, and FC weight bytes read
(counted by the kernels, analytic) against the exact FC bytes.

    python bench/aip_tradeoff.py --limit 2000 --out bench/results/aip_tradeoff.json --plot docs/aip_tradeoff.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

import aipnet
from aipnet.data import load_fashion_mnist
from aipnet.aip import pack_graph
from aipnet.evaluate import evaluate


def fc_bytes(stats) -> tuple[int, int]:
    fcs = [layer for layer in stats["layers"] if layer["op"] in ("Gemm", "AipFC")]
    return sum(layer["weight_bytes_read"] for layer in fcs), sum(layer["weight_bytes_total"] for layer in fcs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="reference")
    ap.add_argument("--data", default=None)
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--policies", default="stride,random,importance,calibrated",
                    help="'calibrated' = importance on real activations + fitted scale (aipnet convert --calib-data)")
    ap.add_argument("--calib", type=int, default=2000, help="calibration images (train split) for 'calibrated'")
    ap.add_argument("--fractions", default="0.0625,0.125")
    ap.add_argument("--thresholds", default="-0.5,-0.25,-0.1,0,0.1,0.25")
    ap.add_argument("--out", default="bench/results/aip_tradeoff.json")
    ap.add_argument("--plot", default="docs/aip_tradeoff.png")
    args = ap.parse_args()

    model = aipnet.load(args.model)
    x, y, source = load_fashion_mnist("test", args.data)
    x, y = x[:args.limit], y[:args.limit]
    exact = evaluate(model, x, y, batch=100, progress=False)
    sess = aipnet.Session(model)
    sess.run(x[:1])
    ex_fc_per_image = fc_bytes(sess.stats)[0]
    rows = [{"policy": "exact", "fraction": 1.0, "threshold": None, "top1": exact["top1"], "top1_loss": 0.0,
             "agreement": 1.0, "fc_bytes_per_image": ex_fc_per_image, "fc_bytes_ratio": 1.0}]
    print(f"exact: top-1 {exact['top1']:.4f} on {len(y)} images of {source}; FC bytes/image {ex_fc_per_image}")
    grid = itertools.product(args.policies.split(","), map(float, args.fractions.split(",")),
                             map(float, args.thresholds.split(",")))
    packed: dict[float, aipnet.Model] = {}
    for policy, frac, th in grid:
        t0 = time.perf_counter()
        if policy == "calibrated":
            # importance on real activations + fitted scale, packed once per fraction
            if frac not in packed:
                calib, _, _ = load_fashion_mnist("train", args.data)
                pick = np.sort(np.random.default_rng(0).choice(len(calib), args.calib, replace=False))
                packed[frac] = aipnet.load(args.model)
                pack_graph(packed[frac].graph, frac, "importance", 0, calib[pick])
            res = evaluate(packed[frac], x, y, batch=1, progress=False, aip=True, aip_threshold=th)
        else:
            res = evaluate(model, x, y, batch=1, progress=False, aip=True, aip_policy=policy,
                           aip_fraction=frac, aip_threshold=th)
        read, _ = fc_bytes(res["stats"])
        per_image = read / len(y)
        row = {"policy": policy, "fraction": frac, "threshold": th, "top1": res["top1"],
               "top1_loss": exact["top1"] - res["top1"], "agreement": res["agreement"],
               "fc_bytes_per_image": per_image, "fc_bytes_ratio": per_image / ex_fc_per_image}
        rows.append(row)
        print(f"{policy:10s} f={frac:.4f} theta={th:+.2f}: top-1 {res['top1']:.4f} (loss {row['top1_loss']*100:+.2f} pt), "
              f"agreement {res['agreement']:.4f}, FC bytes {row['fc_bytes_ratio']:.3f} of exact "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    out = {"model": args.model, "data": source, "images": len(y), "batch": 1,
           "source": {"accuracy": "measured", "bytes": "analytic (counted by the kernels)"}, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    if args.plot:
        plot(out, args.plot)


def plot(out, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows = [r for r in out["rows"] if r["policy"] != "exact"]
    for (policy, frac) in sorted({(r["policy"], r["fraction"]) for r in rows}):
        pts = sorted((r["fc_bytes_ratio"], r["top1_loss"]) for r in rows if r["policy"] == policy and r["fraction"] == frac)
        ax.plot([100 * (1 - p[0]) for p in pts], [100 * p[1] for p in pts], "o-", label=f"{policy}, f={frac:g}")
    ax.axhline(1.0, color="gray", ls="--", lw=0.8)
    ax.axvline(60.0, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("FC weight bytes saved, % (analytic, counted by the kernels)")
    ax.set_ylabel("top-1 loss vs exact, points")
    ax.set_title(f"AIP on {out['model']}: {out['images']} test images, batch 1")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
