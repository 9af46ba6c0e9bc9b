"""Simulated DRAM traffic of the reference model, exact vs AIP, per test image (issue 9).

Runs `aipnet bench MODEL --simulate`'s machinery (aipnet-run under cachegrind, board-like
LLC, steady state) on the first N Fashion-MNIST test images one at a time (batch 1: each
image decides its own refinement), for the exact model and for AIP at the packed model's
stored theta; prints per-image figures and the mean FC ratio (source: simulated), with
the kernels' analytic FC weight bytes alongside (source: analytic).

    aipnet convert reference -o ref_aip.aipn --aip --aip-policy importance --calib-data default
    python bench/sim_traffic.py ref_aip.aipn --images 8 [--llc 1048576,16,64] [--out sim.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

import aipnet
from aipnet import simulate
from aipnet.data import load_fashion_mnist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a packed .aipn model with AipFC layers (aipnet convert --aip ...)")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--llc", default=None, metavar="BYTES,WAYS,LINE")
    ap.add_argument("--aip-threshold", type=float, default=None, help="theta for every layer (default: stored)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = aipnet.load(args.model)
    imgs, _, _ = load_fashion_mnist("test")
    aip = {"aip": True} if args.aip_threshold is None else {"aip": True, "aip_threshold": args.aip_threshold}
    rows = []
    for i in range(args.images):
        x = np.ascontiguousarray(imgs[i:i + 1].reshape(1, 1, 28, 28), dtype=np.float32)
        r = simulate.simulate_variants(model, [("exact", {}), ("aip", aip)], simulate.parse_llc(args.llc), x=x)
        row = {"image": i, "source": "simulated"}
        for v in r["variants"]:
            row[v["name"]] = {k: v[k] for k in ("dram_bytes", "fc_dram_bytes", "conv_dram_bytes")}
            row[v["name"]]["analytic"] = v["analytic"]
        rows.append(row)
        e, a = row["exact"], row["aip"]
        print(f"image {i}: FC {a['fc_dram_bytes'] / 1e6:.3f} / {e['fc_dram_bytes'] / 1e6:.3f} MB "
              f"= {a['fc_dram_bytes'] / e['fc_dram_bytes']:.3f} (simulated); total "
              f"{a['dram_bytes'] / e['dram_bytes']:.3f}; FC simulated/analytic exact "
              f"{e['fc_dram_bytes'] / e['analytic']['fc_weight_bytes_read']:.3f}, aip "
              f"{a['fc_dram_bytes'] / a['analytic']['fc_weight_bytes_read']:.3f}", flush=True)
    fc = [r["aip"]["fc_dram_bytes"] / r["exact"]["fc_dram_bytes"] for r in rows]
    tot = [r["aip"]["dram_bytes"] / r["exact"]["dram_bytes"] for r in rows]
    summary = {"source": "simulated", "images": len(rows), "fc_ratio_mean": statistics.mean(fc),
               "fc_ratio_min": min(fc), "fc_ratio_max": max(fc), "total_ratio_mean": statistics.mean(tot)}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "images": rows}, f, indent=1)


if __name__ == "__main__":
    main()
