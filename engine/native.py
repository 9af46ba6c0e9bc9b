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


def aip_packed_graph(g: Any, fraction: float, policy: str, seed: int) -> tuple[Any, dict[str, int]]:
    """A copy of ``g`` whose fully-connected Gemm layers are ``AipFC`` nodes in AIP's packed
    layout, packed exactly as the Numba backend packs them with ``aip=True`` (the same Gemm
    layers, :func:`aipnet.aip.packed_for` with the same fraction, policy and seed, theta 0).
    The C runtime then runs them as it runs a converted model. Packing is done here, in
    Python, because the random and importance policies are defined by numpy (its
    generator, its pairwise sums); the stride policy would be reproducible in C, but one
    path for all three keeps the backends identical. Returns (graph, packed layer name ->
    its number of inputs K); the graph is ``g`` itself when nothing is packed."""
    from .aip import packed_for
    from .graph import Graph, Node
    from .plan import make_plan

    shapes = {v.name: tuple(1 if (i == 0 or d is None) else d for i, d in enumerate(v.shape or ()))
              for v in g.inputs}
    plan = make_plan(g, shapes)
    fcs = {st.node.name: st.impl for st in plan.steps
           if st.node.op == "Gemm" and getattr(st.impl, "w", None) is not None and not st.impl.c_general}
    if not fcs:
        return g, {}
    inits = dict(g.initializers)
    nodes = []
    for node in g.nodes:
        impl = fcs.get(node.name)
        if impl is None:
            nodes.append(node)
            continue
        pk = packed_for(impl.w, fraction, policy, seed)
        base = node.name
        x = node.inputs[0]
        if impl.trans_a:
            nodes.append(Node("Transpose", f"{base}.aip_transpose", [x], [f"{base}.aip_xt"], {"perm": [1, 0]}))
            x = f"{base}.aip_xt"
        inits[f"{base}.aip_approx"] = pk.approx
        inits[f"{base}.aip_rest"] = pk.rest
        inits[f"{base}.aip_perm"] = pk.perm
        inputs = [x, f"{base}.aip_approx", f"{base}.aip_rest", f"{base}.aip_perm"]
        if impl.bias is not None:
            inits[f"{base}.aip_bias"] = np.ascontiguousarray(impl.bias, dtype=np.float32)
            inputs.append(f"{base}.aip_bias")
        attrs = {"k": pk.k, "scale": pk.scale, "policy": pk.policy, "fraction": pk.fraction, "theta": 0.0,
                 "calibrated": 0}
        for key in ("_act", "_act_params"):
            if key in node.attrs:
                attrs[key] = node.attrs[key]
        nodes.append(Node("AipFC", base, inputs, list(node.outputs), attrs))
    out = Graph(nodes, inits, list(g.inputs), list(g.outputs), g.opset, g.name, dict(g.metadata))
    out.prune()
    return out, {name: impl.w.shape[1] for name, impl in fcs.items()}


class NativeModel:
    """A C model handle: the .aipn file mapped again by C, or the graph packed in memory.

    ``graph``: run this graph (an AIP-packed copy of the model's) instead of the model's."""

    def __init__(self, model: Any, verify: bool = True, graph: Any = None):
        _require()
        out = ffi.new("aipn_model **")
        flags = 0 if verify else lib.AIPN_LOAD_SKIP_CHECKSUMS
        if graph is None and getattr(model, "packed_path", None):
            _check(lib.aipn_model_load_file(str(model.packed_path).encode(), flags, out), f"{model.packed_path}: ")
        else:
            data = aipn_format.dumps(graph if graph is not None else model.graph)
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

    #: knobs the C runtime implements; aip_fraction and aip_policy act through the
    #: packing done here, seed through the random policy's packing and the DrowsyNet masks
    C_KNOBS = ("aip", "aip_threshold", "aip_refine", "aip_mode", "aip_fraction", "aip_policy", "aip_skip_zeros",
               "seed", "drowsy", "drowsy_granularity", "drowsy_rescale", "drowsy_fixed_mask", "layers")
    #: per-layer knobs (config files) the C runtime takes: the DrowsyNet ones, on Conv layers
    C_LAYER_KNOBS = ("drowsy", "drowsy_granularity", "drowsy_rescale")
    GRANULARITY = {"neuron": 0, "pixel": 1, "channel": 2, "tile": 3}

    def __init__(self, model: Any, threads: int | None = None, knobs: Any = None):
        self.gemm_packed: dict[str, int] = {}
        if knobs is not None:
            from dataclasses import fields

            default = type(knobs)()
            changed = [f.name for f in fields(knobs) if f.name not in self.C_KNOBS
                       and getattr(knobs, f.name) != getattr(default, f.name)]
            per_layer = sorted({k for over in knobs.layers.values() for k in over} - set(self.C_LAYER_KNOBS))
            changed += [f"per-layer {k}" for k in per_layer]
            if changed:
                raise KnobError(f"backend 'c' does not implement {', '.join(changed)} yet; "
                                "use backend='numba' for these knobs")
        if isinstance(model, NativeModel):
            self.model = model
        elif knobs is not None and knobs.aip:
            graph, self.gemm_packed = aip_packed_graph(model.graph, knobs.aip_fraction, knobs.aip_policy, knobs.seed)
            self.model = NativeModel(model, graph=graph if self.gemm_packed else None)
        else:
            self.model = NativeModel(model)
        cfg = ffi.new("aipn_config *")
        lib.aipn_config_default(cfg)
        cfg.threads = int(threads or 0)
        if knobs is not None and knobs.aip:
            cfg.aip = 1
            if knobs.aip_threshold is not None:
                cfg.aip_threshold_set = 1
                cfg.aip_threshold = float(knobs.aip_threshold)
            cfg.aip_refine = int(knobs.aip_refine or 0)
            cfg.aip_mode = 1 if knobs.aip_mode == "approx" else 0
            cfg.aip_skip_zeros = 1 if knobs.aip_skip_zeros else 0
        keep = []
        if knobs is not None:
            cfg.drowsy = float(knobs.drowsy)
            cfg.drowsy_granularity = self.GRANULARITY[knobs.drowsy_granularity]
            cfg.drowsy_rescale = 1 if knobs.drowsy_rescale else 0
            cfg.drowsy_fixed_mask = 1 if knobs.drowsy_fixed_mask else 0
            cfg.seed = int(knobs.seed)
            convs = {n.name for n in model.graph.nodes if n.op == "Conv"} if not isinstance(model, NativeModel) \
                else None
            layers = [(name, over) for name, over in knobs.layers.items() if convs is None or name in convs]
            if layers:
                arr = ffi.new("aipn_layer_knobs[]", len(layers))
                for rec, (name, over) in zip(arr, layers):
                    cname = ffi.new("char[]", name.encode())
                    keep.append(cname)
                    rec.name = cname
                    rec.drowsy = float(over.get("drowsy", -1.0))
                    g = over.get("drowsy_granularity")
                    rec.drowsy_granularity = -1 if g is None else self.GRANULARITY[g]
                    r = over.get("drowsy_rescale")
                    rec.drowsy_rescale = -1 if r is None else int(bool(r))
                keep.append(arr)
                cfg.layers = arr
                cfg.n_layers = len(layers)
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

    def run(self, inputs: Sequence[np.ndarray], image_offset: int = 0) -> list[np.ndarray]:
        """``image_offset``: DrowsyNet image id of the batch's first image."""
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
        _check(lib.aipn_session_set_image_offset(self.ptr, int(image_offset)))
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
            name, op = ffi.string(s.name).decode(), ffi.string(s.op).decode()
            act_read = s.act_bytes_read
            if op == "AipFC" and name in self.gemm_packed:
                # a Gemm packed at load reports as the Gemm it is, as in the Numba backend
                # (which reads no permutation: its K int64 are not activations)
                op = "Gemm"
                act_read -= 4 * self.gemm_packed[name]
            elif self.gemm_packed and name.endswith(".aip_transpose") and name[:-14] in self.gemm_packed:
                continue  # the transA of a packed Gemm (the Numba Gemm transposes inline)
            rec = layer_record(
                name, op, macs=s.macs, macs_skipped=s.macs_skipped,
                weight_bytes_read=s.weight_bytes_read, weight_bytes_total=s.weight_bytes_total,
                act_bytes_read=act_read, act_bytes_written=s.act_bytes_written, outputs=s.outputs,
                outputs_refined=s.outputs_refined, time_s=s.time_s, activation=ffi.string(s.activation).decode())
            role = ffi.string(s.aip_role).decode() if s.aip_role != ffi.NULL else ""
            if role:
                rec["aip_rows_refined"] = s.aip_rows_refined
                rec["aip_role"] = role
            if s.drowsy_rate > 0:  # a masked conv: the key the Numba backend adds
                rec["outputs_computed"] = s.drowsy_outputs_computed
            recs.append(rec)
        return summarize(recs, ffi.string(src[0]).decode())


if lib is not None:
    register_ops()
