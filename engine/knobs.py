"""Every run-time knob of a session, in one place (DESIGN.md: "every knob has one home").

A knob is a field of :class:`Knobs`: its name is the ``aipnet.Session`` keyword and,
with dashes, the CLI flag (``aip_threshold`` <-> ``--aip-threshold``); its metadata
carries the help text and the CLI type, so the CLI is generated from this table.
Validation happens here, once, with an error that names the knob.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from .errors import KnobError

#: the knobs a config file may set per layer
LAYER_KNOBS = ("aip_threshold", "aip_refine", "aip_mode", "aip_fraction", "drowsy", "drowsy_granularity",
               "drowsy_rescale")
AIP_MODES = ("refine", "approx")
AIP_POLICIES = ("stride", "random", "importance")
DROWSY_GRANULARITIES = ("neuron", "pixel", "channel", "tile")


def _knob(default: Any, help: str, **cli: Any) -> Any:
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class Knobs:
    """The approximation knobs of a session (all off by default: the exact engine)."""

    aip: bool = _knob(False, "approximate inner products in FC layers (AIP)", flag=True)
    aip_threshold: float | None = _knob(
        None, "AIP: outputs whose estimate is <= this are not refined (theta; default: the layer's "
        "calibrated theta in a packed model, else 0)", type=float)
    aip_refine: int | None = _knob(None, "AIP: candidates refined in a final (top-n) layer (default max(2n, 5))", type=int)
    aip_mode: str = _knob("refine", "AIP: refine the outputs that matter, or approx (estimates only)", choices=AIP_MODES)
    aip_fraction: float = _knob(1 / 16, "AIP: fraction of inputs in the approximate pass (packing at load)", type=float)
    aip_policy: str = _knob("stride", "AIP: how the approximate subset is chosen (packing at load)", choices=AIP_POLICIES)
    aip_skip_zeros: bool = _knob(True, "AIP: skip the weight lines of inputs that are zero (post-ReLU)", flag=True)
    drowsy: float = _knob(0.0, "DrowsyNet: drop rate of conv outputs, 0 <= p < 1", type=float)
    drowsy_granularity: str = _knob("pixel", "DrowsyNet: what a mask drops", choices=DROWSY_GRANULARITIES)
    drowsy_rescale: bool = _knob(True, "DrowsyNet: scale survivors by 1/(1-p) (measured better: README)", flag=True)
    drowsy_fixed_mask: bool = _knob(False, "DrowsyNet: one mask for every image instead of a fresh one each", flag=True)
    seed: int = _knob(0, "seed of the DrowsyNet masks (and the random AIP policy)", type=int)
    #: per-layer overrides, layer name -> {knob: value} (from a config file; no CLI flag)
    layers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, metadata={"cli": False})

    def __post_init__(self) -> None:
        _check_bool(self, "aip", "aip_skip_zeros", "drowsy_rescale", "drowsy_fixed_mask")
        if self.aip_threshold is not None:
            _check_number(self, "aip_threshold", allow_inf=True)
        if not (isinstance(self.aip_fraction, (int, float)) and 0.0 < self.aip_fraction <= 1.0):
            raise KnobError(f"aip_fraction must be in (0, 1], got {self.aip_fraction!r}")
        if self.aip_refine is not None and (isinstance(self.aip_refine, bool) or not isinstance(self.aip_refine, int)
                                            or self.aip_refine < 1):
            raise KnobError(f"aip_refine must be an integer >= 1, got {self.aip_refine!r}")
        _check_choice(self, "aip_mode", AIP_MODES)
        _check_choice(self, "aip_policy", AIP_POLICIES)
        _check_number(self, "drowsy")
        if not 0.0 <= self.drowsy < 1.0:
            raise KnobError(f"drowsy must be a drop rate with 0 <= p < 1, got {self.drowsy!r}")
        _check_choice(self, "drowsy_granularity", DROWSY_GRANULARITIES)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise KnobError(f"seed must be a non-negative integer, got {self.seed!r}")
        for layer, over in self.layers.items():
            bad = sorted(set(over) - set(LAYER_KNOBS))
            if bad:
                raise KnobError(f"layer {layer!r}: {bad} cannot be set per layer; per-layer knobs are "
                                f"{', '.join(LAYER_KNOBS)}")
            replace(self, layers={}, **over)  # validates the values

    def for_layer(self, name: str) -> "Knobs":
        """These knobs with the overrides of layer ``name`` applied."""
        over = self.layers.get(name)
        return replace(self, **over) if over else self

    @property
    def any_drowsy(self) -> bool:
        """True when DrowsyNet drops outputs in some layer (globally or per layer)."""
        return self.drowsy > 0.0 or any(o.get("drowsy", 0) for o in self.layers.values())

    @property
    def exact(self) -> bool:
        """True when no approximation is switched on (in any layer)."""
        return not self.aip and not self.any_drowsy

    def changed(self) -> dict[str, Any]:
        """The knobs that differ from their defaults."""
        base = Knobs()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)}

    def __hash__(self) -> int:  # layers is a dict: hash its items
        return hash(tuple((f.name, getattr(self, f.name)) for f in fields(self) if f.name != "layers")
                    + tuple(sorted((k, tuple(sorted(v.items()))) for k, v in self.layers.items())))

    def with_(self, **kw: Any) -> "Knobs":
        return replace(self, **kw)


def make_knobs(**kw: Any) -> Knobs:
    """Knobs from keyword arguments, with an error naming any unknown keyword."""
    names = {f.name for f in fields(Knobs)}
    unknown = sorted(set(kw) - names)
    if unknown:
        raise KnobError(f"unknown knob(s) {unknown}; knobs are: {', '.join(sorted(names))}")
    return Knobs(**kw)


def _check_bool(k: Knobs, *names: str) -> None:
    for n in names:
        if not isinstance(getattr(k, n), bool):
            raise KnobError(f"{n} must be True or False, got {getattr(k, n)!r}")


def _check_number(k: Knobs, name: str, allow_inf: bool = False) -> None:
    v = getattr(k, name)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise KnobError(f"{name} must be a {'number' if allow_inf else 'finite number'}, got {v!r}")


def _check_choice(k: Knobs, name: str, choices: tuple[str, ...]) -> None:
    if getattr(k, name) not in choices:
        raise KnobError(f"{name} must be one of {', '.join(choices)}; got {getattr(k, name)!r}")


# -- CLI ---------------------------------------------------------------------------------
def add_knob_args(parser: argparse.ArgumentParser) -> None:
    """Add one flag per knob (``--aip-threshold`` ...) to a subcommand's parser."""
    group = parser.add_argument_group("knobs (as aipnet.Session keywords)")
    group.add_argument("--config", default=None, metavar="FILE",
                       help="JSON or TOML file of knobs, global and per layer (flags override it)")
    for f in fields(Knobs):
        if f.metadata.get("cli", True) is False:
            continue
        flag = "--" + f.name.replace("_", "-")
        meta = dict(f.metadata)
        helptext = meta.pop("help") + f" (default {f.default})"
        if meta.pop("flag", False):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=helptext)
        else:
            group.add_argument(flag, dest=f.name, default=None, help=helptext, **meta)


def knobs_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The knobs given on the command line (only those the user set)."""
    out = {f.name: getattr(args, f.name) for f in fields(Knobs)
           if f.metadata.get("cli", True) is not False and getattr(args, f.name, None) is not None}
    if getattr(args, "config", None):
        out["config"] = args.config
    return out
