"""DrowsyNet accuracy sweep on the reference model: top-1 loss against conv MACs saved.

Runs ``aipnet eval reference --drowsy p --drowsy-granularity g [--drowsy-rescale]
--limit N --json`` for every (granularity, rescale, p) and writes
``bench/drowsy_accuracy.json``, ``docs/drowsy_accuracy.png`` and a markdown table
(printed) whose rows carry the command that reproduces them.

    python bench/drowsy_accuracy.py [--limit 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRANS = ("neuron", "pixel", "channel", "tile")
RATES = (0.1, 0.2, 0.3, 0.5)


def run_eval(limit: int | None, *flags: str) -> dict:
    cmd = ["aipnet", "eval", "reference", *flags] + (["--limit", str(limit)] if limit else [])
    out = subprocess.run([sys.executable, "-m", "aipnet.cli", *cmd[1:], "--json"], check=True,
                         capture_output=True, text=True).stdout
    res = json.loads(out)
    convs = [layer for layer in res["stats"]["layers"] if layer["op"] == "Conv"]
    done, skipped = sum(c["macs"] for c in convs), sum(c["macs_skipped"] for c in convs)
    return {"command": " ".join(cmd), "top1": res["top1"], "top5": res["top5"], "data": res["data"],
            "images": res["images"], "conv_macs_saved": skipped / (done + skipped)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=2000, help="first N test images (0: all 10,000)")
    ap.add_argument("--table-only", action="store_true", help="redraw plot and table from the JSON")
    args = ap.parse_args()
    if args.table_only:
        d = json.loads((ROOT / "bench" / "drowsy_accuracy.json").read_text())
        plot(d["exact"], d["rows"], ROOT / "docs" / "drowsy_accuracy.png")
        print(table(d["exact"], d["rows"]))
        return
    limit = args.limit or None
    exact = run_eval(limit)
    rows = []
    for g in GRANS:
        for rescale in (False, True):
            for p in RATES:
                flags = ["--drowsy", str(p), "--drowsy-granularity", g] + (["--drowsy-rescale"] if rescale else ["--no-drowsy-rescale"])
                r = run_eval(limit, *flags)
                r.update(granularity=g, rescale=rescale, p=p, top1_loss=exact["top1"] - r["top1"])
                rows.append(r)
                print(f"{g:8s} rescale={rescale!s:5s} p={p}: top-1 {r['top1']:.4f} "
                      f"(loss {r['top1_loss']:+.4f}), conv MACs saved {r['conv_macs_saved']:.3f}", flush=True)
    (ROOT / "bench" / "drowsy_accuracy.json").write_text(json.dumps({"exact": exact, "rows": rows}, indent=1))
    plot(exact, rows, ROOT / "docs" / "drowsy_accuracy.png")
    print(table(exact, rows))


def plot(exact: dict, rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for g in GRANS:
        for rescale, style in ((False, "--"), (True, "-")):
            rs = [r for r in rows if r["granularity"] == g and r["rescale"] == rescale]
            ax.plot([r["conv_macs_saved"] * 100 for r in rs], [r["top1_loss"] * 100 for r in rs], style, marker="o",
                    label=f"{g}{' rescaled' if rescale else ''}")
    ax.set_xlabel("conv MACs saved (%)")
    ax.set_ylabel("top-1 loss (percentage points)")
    ax.set_title(f"DrowsyNet on the reference model ({exact['images']} test images)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(exact: dict, rows: list[dict]) -> str:
    lines = [f"Exact: top-1 {exact['top1']:.4f} on {exact['images']} images (`{exact['command']}`).", "",
             "| granularity | rescale | p | conv MACs saved | top-1 | top-1 loss | command |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['granularity']} | {'yes' if r['rescale'] else 'no'} | {r['p']} | "
                     f"{r['conv_macs_saved'] * 100:.1f}% | {r['top1']:.4f} | {r['top1_loss'] * 100:+.2f} pp | "
                     f"`{r['command']}` |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
