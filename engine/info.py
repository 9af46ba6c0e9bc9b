"""`aipnet info`: a per-layer table of a model (op, output shape, params, MACs, bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .model import Model
from .plan import plan_or_raise


def input_shapes(model: Model, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Concrete input shapes: the batch dim set to ``batch``, other unknown dims to 1."""
    shapes = {}
    for spec in model.inputs:
        dims = spec.shape or ()
        shapes[spec.name] = tuple(batch if i == 0 else (d or 1) for i, d in enumerate(dims))
    return shapes


def layer_table(model: Model, batch: int = 1) -> dict[str, Any]:
    """Rows (one per executed layer) and totals, computed from a plan at ``batch``."""
    plan = plan_or_raise(model.graph, input_shapes(model, batch))
    rows = []
    for st in plan.steps:
        params = sum(int(plan.consts[n].size) for n in st.node.inputs
                     if n in plan.consts and plan.consts[n].dtype.kind == "f")
        out = st.impl.out_shapes[0] if st.impl.out_shapes else ()
        op = st.node.op + ("+" + st.node.attrs["_act"].capitalize() if st.node.attrs.get("_act") else "")
        rows.append({"name": st.node.name, "op": op, "output_shape": list(out), "params": params,
                     "macs": st.cost.macs, "weight_bytes": st.cost.weight_bytes})
    totals = {k: sum(r[k] for r in rows) for k in ("params", "macs", "weight_bytes")}
    return {"model": model.source, "batch": batch, "opset": model.graph.opset,
            "inputs": {k: list(v) for k, v in input_shapes(model, batch).items()},
            "outputs": model.outputs, "layers": rows, "total": totals, "source": "analytic"}


def human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.2f}{unit}"
    return f"{n:.0f}"


def format_table(info: dict[str, Any]) -> str:
    head = ("layer", "op", "output", "params", "MACs", "weight bytes")
    rows = [(r["name"], r["op"], "x".join(map(str, r["output_shape"])), human(r["params"]),
             human(r["macs"]), human(r["weight_bytes"])) for r in info["layers"]]
    t = info["total"]
    rows.append(("total", "", "", human(t["params"]), human(t["macs"]), human(t["weight_bytes"])))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = lambda r: "  ".join(str(x).ljust(w) if i < 3 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
    lines = [f"model {info['model']}  opset {info['opset']}  batch {info['batch']}  "
             f"inputs {info['inputs']}  (MACs and bytes: analytic)", fmt(head), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows[:-1]] + [fmt(["-" * w for w in widths]), fmt(rows[-1])]
    return "\n".join(lines)


def random_feeds(model: Model, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = input_shapes(model, batch)
    return {s.name: rng.standard_normal(shapes[s.name]).astype(s.dtype) for s in model.inputs}
