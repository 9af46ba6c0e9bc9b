"""Config files: knobs for a whole model and per layer, in JSON or TOML.

Schema (every key optional; unknown keys are errors)::

    # any Session knob, for every layer
    aip = true
    aip_threshold = 0.0
    drowsy = 0.2
    drowsy_granularity = "tile"

    [layers."conv2"]          # a layer by its node name (aipnet info lists them)
    drowsy = 0.4
    [layers."fc6"]
    aip_threshold = 0.25
    aip_refine = 10

Per layer: aip_threshold, aip_refine, aip_mode, aip_fraction, drowsy,
drowsy_granularity, drowsy_rescale. The same as JSON: ``{"aip": true, "layers":
{"fc6": {"aip_threshold": 0.25}}}``. Command-line flags and Session keywords override
the file's global values.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping

from .errors import KnobError
from .knobs import LAYER_KNOBS, Knobs

GLOBAL_KEYS = tuple(f.name for f in fields(Knobs) if f.name != "layers")


def read_config(config: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Parse a config file (.json or .toml) or take a dict; check its keys."""
    if isinstance(config, Mapping):
        data, where = dict(config), "config"
    else:
        p = Path(config)
        where = str(p)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise KnobError(f"{p}: no such config file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KnobError(f"{p}: cannot read config: {exc}") from None
        try:
            data = json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
            raise KnobError(f"{p}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise KnobError(f"{where}: the top level must be a table/object of knobs")
    unknown = sorted(set(data) - set(GLOBAL_KEYS) - {"layers"})
    if unknown:
        raise KnobError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(GLOBAL_KEYS)}, layers")
    layers = data.get("layers", {})
    if not isinstance(layers, dict) or not all(isinstance(v, dict) for v in layers.values()):
        raise KnobError(f"{where}: 'layers' must map layer names to tables of knobs")
    for name, over in layers.items():
        bad = sorted(set(over) - set(LAYER_KNOBS))
        if bad:
            raise KnobError(f"{where}: layer {name!r}: unknown or global-only key(s) {bad}; "
                            f"per-layer keys: {', '.join(LAYER_KNOBS)}")
    return data


def merge(config: Mapping[str, Any] | None, knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Knob keywords from a parsed config with explicit keywords overriding it."""
    out = dict(config or {})
    out.update(knobs)
    return out


def check_layer_names(layers: Mapping[str, Any], names: set[str], where: str = "config") -> None:
    unknown = sorted(set(layers) - names)
    if unknown:
        raise KnobError(f"{where}: no layer named {unknown} in the model; layers with knobs: "
                        f"{', '.join(sorted(names))}")


def write_config(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    """Write a config as JSON (the format `aipnet tune --out` produces)."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
