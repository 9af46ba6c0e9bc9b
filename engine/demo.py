"""`aipnet demo`: the power/accuracy trade-off of the reference model in one table and
one picture, on the data at hand (Fashion-MNIST from Debian, else the shipped subset).

Rows: exact; AIP (the packed reference with its calibrated default knobs); uniform
DrowsyNet; DrowsyNet with the per-layer rates ``aipnet tune`` chose at a 3-point budget;
the combined setting tuned at a 2-point budget (both shipped with the model, if present). Columns: top-1, agreement with exact, FC weight bytes, conv MACs, energy
(all per image; bytes, MACs and energy analytic) and time per image (measured). The PNG
puts uniform DrowsyNet rates beside the non-uniform front that ``aipnet tune`` found.
Every run is at batch 1, as on a board.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from . import builtin
from .data import load_fashion_mnist
from .energy import energy
from .errors import AipnetError
from .evaluate import evaluate
from .info import format_table, layer_table
from .model import load

UNIFORM_RATES = (0.25, 0.5, 0.6)
TUNED_CONFIG = builtin.MODELS_DIR / "reference-aip.tuned.json"
DROWSY_FRONT = Path(__file__).parent / "models" / "reference.drowsy-front.json"


def _row(name: str, res: dict[str, Any], exact: dict[str, Any] | None) -> dict[str, Any]:
    st, n = res["stats"], res["images"]
    fc = sum(layer["weight_bytes_read"] for layer in st["layers"] if layer["op"] in ("Gemm", "AipFC")) / n
    conv = sum(layer["macs"] for layer in st["layers"] if layer["op"] == "Conv") / n
    return {"setting": name, "top1": res["top1"], "agreement": res["agreement"], "fc_bytes": fc, "conv_macs": conv,
            "energy_uj": energy(st, images=n)["total_j"] * 1e6, "ms_per_image": res["time_per_image_s"] * 1e3,
            "loss_pt": 100 * ((exact or res)["top1"] - res["top1"])}


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = f"{'setting':44s} {'top-1':>6s} {'loss':>7s} {'agree':>6s} {'FC bytes':>9s} {'conv MACs':>9s} {'energy':>9s} {'time':>8s}"
    lines = [head, f"{'':44s} {'':>6s} {'(pt)':>7s} {'':>6s} {'(MB)':>9s} {'(M)':>9s} {'(uJ)':>9s} {'(ms)':>8s}"]
    for r in rows:
        lines.append(f"{r['setting'][:44]:44s} {r['top1']:6.4f} {r['loss_pt']:+7.2f} {r['agreement']:6.4f} "
                     f"{r['fc_bytes'] / 1e6:9.3f} {r['conv_macs'] / 1e6:9.3f} {r['energy_uj']:9.1f} {r['ms_per_image']:8.3f}")
    return "\n".join(lines)


def demo(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    if getattr(args, "model", None) and args.model != "reference":
        model = load(args.model)
        print(format_table(layer_table(model)))
        return 0
    out_dir = Path(getattr(args, "out", None) or ".")
    if out_dir.exists() and not out_dir.is_dir():
        raise AipnetError(f"--out {out_dir}: exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y, source = load_fashion_mnist("test", getattr(args, "data", None))
    n = min(getattr(args, "limit", None) or 500, len(y))
    x, y = x[:n], y[:n]
    exact_model, packed = load("reference"), load("reference-aip")
    threads = args.threads
    print(f"aipnet demo: reference CNN on {n} images of {source}, batch 1\n")
    kw = dict(batch=1, threads=threads, progress=False)
    ex = evaluate(exact_model, x, y, **kw)
    rows = [_row("exact", ex, None)]
    aip = evaluate(packed, x, y, aip=True, **kw)
    rows.append(_row("AIP (calibrated defaults: --aip)", aip, ex))
    uniform = []
    for p in UNIFORM_RATES:
        r = evaluate(exact_model, x, y, drowsy=p, drowsy_granularity="neuron", **kw)
        uniform.append(_row(f"DrowsyNet uniform p={p} (neuron)", r, ex))
    rows += uniform
    if DROWSY_FRONT.exists():
        cfg = json.loads(DROWSY_FRONT.read_text())["config"]
        r = evaluate(exact_model, x, y, config=cfg, **kw)
        rates = "/".join(f"{v['drowsy']:g}" for v in cfg["layers"].values())
        rows.append(_row(f"DrowsyNet tuned ({rates}, neuron)", r, ex))
    if TUNED_CONFIG.exists():
        tuned = evaluate(packed, x, y, config=str(TUNED_CONFIG), **kw)
        rows.append(_row("tuned (aipnet tune, 2% budget)", tuned, ex))
    print(format_rows(rows))
    print("\nper image; FC bytes, conv MACs and energy analytic (counted by the kernels; energy with Horowitz 45 nm "
          "constants), top-1 and time measured")
    png = out_dir / "aipnet_demo_tradeoff.png"
    _plot(rows, uniform, png)
    (out_dir / "aipnet_demo.json").write_text(json.dumps({"data": source, "images": n, "rows": rows}, indent=1))
    print(f"wrote {png} and {out_dir / 'aipnet_demo.json'} ({time.perf_counter() - t_start:.0f} s)")
    return 0


def _plot(rows: list[dict[str, Any]], uniform: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ex = rows[0]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    a1.plot([0] + [100 * (1 - r["conv_macs"] / ex["conv_macs"]) for r in uniform],
            [0] + [r["loss_pt"] for r in uniform], "o-", label="uniform rate (this run)")
    if DROWSY_FRONT.exists():
        front = json.loads(DROWSY_FRONT.read_text())
        pts = sorted(front["front"], key=lambda p: p["conv_macs"], reverse=True)
        base = front["calib"]["exact"]["conv_macs"]
        a1.plot([100 * (1 - p["conv_macs"] / base) for p in pts], [100 * p["loss"] for p in pts], "s-",
                label="non-uniform, aipnet tune front\n(calibration split)")
    for r in rows:
        if r["setting"].startswith("DrowsyNet tuned"):
            a1.plot([100 * (1 - r["conv_macs"] / ex["conv_macs"])], [r["loss_pt"]], "r*", ms=12,
                    label="tuned per layer (this run)")
    a1.set_xlabel("conv MACs saved, % (analytic)")
    a1.set_ylabel("top-1 loss, points")
    a1.set_title("DrowsyNet: uniform vs per-layer rates")
    a1.grid(alpha=0.3)
    a1.legend(fontsize=8)
    for r in rows:
        a2.plot(100 * (1 - r["energy_uj"] / ex["energy_uj"]), r["loss_pt"], "o")
        a2.annotate(r["setting"].split(" (")[0], (100 * (1 - r["energy_uj"] / ex["energy_uj"]), r["loss_pt"]),
                    fontsize=7, xytext=(4, 4), textcoords="offset points")
    a2.set_xlabel("energy saved, % (analytic)")
    a2.set_ylabel("top-1 loss, points")
    a2.set_title("every setting")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

