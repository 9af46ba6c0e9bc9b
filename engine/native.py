"""The one module that wraps the C runtime (``aipnet._native``, built by cffi from
``csrc/``). Handles are freed with ``ffi.gc``; arrays are passed with
``ffi.from_buffer`` after their dtype and contiguity are checked; a run is one FFI call
(output shapes are planned once per input shape and cached)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import aipn_format
from .errors import (AipnetError, InputError, KnobError, ModelError, ModelFileError, UnsupportedAttributeError,
                     UnsupportedOpError)
from .stats import layer_record, summarize

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover (a build without a C compiler)
    ffi = lib = None
    _IMPORT_ERROR = str(exc)

# aipn_status -> the Python error class
_ERRORS = {1: KnobError, 2: ModelFileError, 3: ModelFileError, 4: ModelFileError, 5: ModelFileError, 6: ModelError,
           7: UnsupportedOpError, 8: InputError, 9: InputError, 10: AipnetError, 11: AipnetError}


def available() -> bool:
    return lib is not None


def _require() -> None:
    if lib is None:
        raise AipnetError(f"the C backend is not built ({_IMPORT_ERROR}); reinstall with a C compiler: pip install .")


def _check(status: int, where: str = "") -> None:
    if status != 0:
        msg = ffi.string(lib.aipn_last_error()).decode("utf-8", "replace")
        cls = _ERRORS.get(status, AipnetError)
        if status == 7 and "attribute" in msg:
            cls = UnsupportedAttributeError
        raise cls(f"{where}{msg}")


def supported_ops() -> list[str]:
    _require()
    return ffi.string(lib.aipn_supported_ops()).decode().split(",")


def register_ops() -> None:
    """Add the ops the C runtime implements to the registry under backend "c" (the
    value is the C session class: the C runtime runs whole graphs, not single ops)."""
    from .registry import REGISTRY, _load_ops

    _load_ops()
    for op in supported_ops():
        REGISTRY.setdefault(op, {})["c"] = NativeSession


class NativeModel:
    """A C model handle: the .aipn file mapped again by C, or the graph packed in memory."""

    def __init__(self, model: Any, verify: bool = True):
        _require()
        out = ffi.new("aipn_model **")
        flags = 0 if verify else lib.AIPN_LOAD_SKIP_CHECKSUMS
        if getattr(model, "packed_path", None):
            _check(lib.aipn_model_load_file(str(model.packed_path).encode(), flags, out), f"{model.packed_path}: ")
        else:
            data = aipn_format.dumps(model.graph)
            _check(lib.aipn_model_load_memory(ffi.from_buffer(data), len(data), flags | lib.AIPN_LOAD_COPY, out),
                   f"{model.source}: ")
        self.ptr = ffi.gc(out[0], lib.aipn_model_free)

    @classmethod
    def from_bytes(cls, data: bytes, verify: bool = True) -> "NativeModel":
        """Load .aipn bytes (copied); raises AipnetError for a bad file."""
        _require()
        self = cls.__new__(cls)
        out = ffi.new("aipn_model **")
        flags = lib.AIPN_LOAD_COPY | (0 if verify else lib.AIPN_LOAD_SKIP_CHECKSUMS)
        _check(lib.aipn_model_load_memory(ffi.from_buffer(data), len(data), flags, out))
        self.ptr = ffi.gc(out[0], lib.aipn_model_free)
        return self


class NativeSession:
    """A C session on a NativeModel; ``run`` takes and returns float32 arrays in the
    model's input and output order."""

    def __init__(self, model: Any, threads: int | None = None, knobs: Any = None):
        if knobs is not None:
            from dataclasses import fields

            default = type(knobs)()
            changed = [f.name for f in fields(knobs) if getattr(knobs, f.name) != getattr(default, f.name)]
            if changed:
                raise KnobError(f"backend 'c' does not implement {', '.join(changed)} yet; "
                                "use backend='numba' for the approximation knobs")
        self.model = model if isinstance(model, NativeModel) else NativeModel(model)
        cfg = ffi.new("aipn_config *")
        lib.aipn_config_default(cfg)
        cfg.threads = int(threads or 0)
        out = ffi.new("aipn_session **")
        _check(lib.aipn_session_new(self.model.ptr, cfg, out))
        self.ptr = ffi.gc(out[0], lib.aipn_session_free)
        n = ffi.new("uint32_t *")
        _check(lib.aipn_model_num_inputs(self.model.ptr, n))
        self.n_in = n[0]
        _check(lib.aipn_model_num_outputs(self.model.ptr, n))
        self.n_out = n[0]
        self._plans: dict[tuple, tuple[Any, Any, list[tuple[int, ...]]]] = {}

    def _plan(self, shapes: tuple[tuple[int, ...], ...]):
        entry = self._plans.get(shapes)
        if entry is None:
            ins = ffi.new("aipn_tensor[]", max(self.n_in, 1))
            outs = ffi.new("aipn_tensor[]", max(self.n_out, 1))
            for t, shape in zip(ins, shapes):
                if len(shape) > 8:
                    raise InputError(f"input rank {len(shape)} > 8")
                t.ndim = len(shape)
                for i, d in enumerate(shape):
                    t.dims[i] = d
            _check(lib.aipn_session_plan(self.ptr, ins, self.n_in, outs, self.n_out))
            out_shapes = [tuple(outs[i].dims[k] for k in range(outs[i].ndim)) for i in range(self.n_out)]
            entry = (ins, outs, out_shapes)
            self._plans[shapes] = entry
        return entry

    def run(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != self.n_in:
            raise InputError(f"the model has {self.n_in} inputs, got {len(inputs)}")
        for a in inputs:
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise InputError("the C backend takes C-contiguous float32 arrays")
        ins, outs, out_shapes = self._plan(tuple(a.shape for a in inputs))
        keep = []
        for t, a in zip(ins, inputs):
            buf = ffi.from_buffer("float[]", a)
            keep.append(buf)
            t.data = buf
            t.len = a.size
        results = [np.empty(s, dtype=np.float32) for s in out_shapes]
        for t, r in zip(outs, results):
            buf = ffi.from_buffer("float[]", r, require_writable=True)
            keep.append(buf)
            t.data = buf
            t.len = r.size
        _check(lib.aipn_session_run(self.ptr, ins, self.n_in, outs, self.n_out))
        return results

    def stats(self) -> dict[str, Any]:
        layers = ffi.new("aipn_layer_stats **")
        n = ffi.new("uint32_t *")
        src = ffi.new("char **")
        _check(lib.aipn_session_stats(self.ptr, layers, n, src))
        recs = []
        for i in range(n[0]):
            s = layers[0][i]
            recs.append(layer_record(
                ffi.string(s.name).decode(), ffi.string(s.op).decode(), macs=s.macs, macs_skipped=s.macs_skipped,
                weight_bytes_read=s.weight_bytes_read, weight_bytes_total=s.weight_bytes_total,
                act_bytes_read=s.act_bytes_read, act_bytes_written=s.act_bytes_written, outputs=s.outputs,
                outputs_refined=s.outputs_refined, time_s=s.time_s, activation=ffi.string(s.activation).decode()))
        return summarize(recs, ffi.string(src[0]).decode())


if lib is not None:
    register_ops()
