"""The stats record of a run (DESIGN.md, "Stats contract").

Benchmarks, the tuner and the energy model read these keys; keys may be added, never
renamed. Every traffic figure here is counted by the kernels (``analytic``).
"""

from __future__ import annotations

from typing import Any

LAYER_KEYS = (
    "macs", "macs_skipped", "weight_bytes_read", "weight_bytes_total", "act_bytes_read",
    "act_bytes_written", "outputs", "outputs_refined", "time_s",
)


def layer_record(name: str, op: str, **counts: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"name": name, "op": op}
    for k in LAYER_KEYS:
        rec[k] = counts.get(k, 0)
    rec.update({k: v for k, v in counts.items() if k not in rec})
    return rec


def summarize(layers: list[dict[str, Any]], source: str = "analytic") -> dict[str, Any]:
    total = {k: sum(layer[k] for layer in layers) for k in LAYER_KEYS}
    return {"layers": layers, "total": total, "traffic_source": source}


def accumulate(acc: dict[str, Any] | None, stats: dict[str, Any]) -> dict[str, Any]:
    """Sum two stats records layer by layer (for eval over many batches)."""
    if acc is None:
        return {"layers": [dict(layer) for layer in stats["layers"]], "total": dict(stats["total"]),
                "traffic_source": stats["traffic_source"]}
    for a, b in zip(acc["layers"], stats["layers"]):
        for k in LAYER_KEYS:
            a[k] += b[k]
    for k in LAYER_KEYS:
        acc["total"][k] += stats["total"][k]
    return acc


def by_op(stats: dict[str, Any], key: str = "time_s") -> dict[str, float]:
    """Sum one key per op type, e.g. time per op for the bench's split."""
    out: dict[str, float] = {}
    for layer in stats["layers"]:
        out[layer["op"]] = out.get(layer["op"], 0) + layer[key]
    return out
