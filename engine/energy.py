"""An energy estimate from a run's stats, with documented per-operation constants.

Defaults: Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm, per 32-bit word
or operation: DRAM access 640 pJ, float multiply 3.7 pJ, float add 0.9 pJ, 8 KB SRAM
read 5 pJ. The model: weights come from DRAM (on a board their megabytes do not fit in
cache), activations from on-chip SRAM, one multiply and one add per MAC. Every figure is
``analytic``: counted by the kernels, priced by these constants.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .errors import KnobError


@dataclass(frozen=True)
class EnergyConstants:
    """Picojoules per 32-bit word moved or per operation."""

    dram_pj: float = 640.0
    sram_pj: float = 5.0
    mul_pj: float = 3.7
    add_pj: float = 0.9

    @classmethod
    def load(cls, src: str | os.PathLike | Mapping[str, float] | None) -> "EnergyConstants":
        """From a JSON file or dict of any of the fields (the rest keep their defaults)."""
        if src is None:
            return cls()
        if not isinstance(src, Mapping):
            try:
                src = json.loads(open(src).read())
            except (OSError, ValueError) as exc:
                raise KnobError(f"{src}: cannot read energy constants: {exc}") from None
        unknown = sorted(set(src) - set(asdict(cls())))
        if unknown:
            raise KnobError(f"unknown energy constant(s) {unknown}; known: {', '.join(asdict(cls()))}")
        vals = {k: float(v) for k, v in src.items()}
        if any(v < 0 for v in vals.values()):
            raise KnobError("energy constants must be non-negative")
        return cls(**vals)


def layer_energy(layer: Mapping[str, Any], c: EnergyConstants) -> dict[str, float]:
    """Joules of one layer record, split into DRAM (weights), SRAM (activations), compute."""
    dram = layer["weight_bytes_read"] / 4 * c.dram_pj
    sram = (layer["act_bytes_read"] + layer["act_bytes_written"]) / 4 * c.sram_pj
    compute = layer["macs"] * (c.mul_pj + c.add_pj)
    return {"dram_j": dram * 1e-12, "sram_j": sram * 1e-12, "compute_j": compute * 1e-12,
            "total_j": (dram + sram + compute) * 1e-12}


def energy(stats: Mapping[str, Any], c: EnergyConstants | None = None, images: int = 1) -> dict[str, Any]:
    """Energy per image of a stats record (summed over ``images`` images), labelled analytic."""
    c = c or EnergyConstants()
    total = layer_energy(stats["total"], c)
    fc = [layer for layer in stats["layers"] if layer["op"] in ("Gemm", "AipFC", "MatMul")]
    conv = [layer for layer in stats["layers"] if layer["op"] == "Conv"]
    per = {k: v / images for k, v in total.items()}
    per["fc_j"] = sum(layer_energy(layer, c)["total_j"] for layer in fc) / images
    per["conv_j"] = sum(layer_energy(layer, c)["total_j"] for layer in conv) / images
    per["source"] = "analytic"
    per["constants_pj"] = asdict(c)
    return per
