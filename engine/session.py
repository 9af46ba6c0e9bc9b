"""Sessions: run a loaded model on numpy inputs and report what each layer did."""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

import numba
import numpy as np

from .errors import InputError, KnobError
from .config import check_layer_names, merge, read_config
from .knobs import make_knobs
from .model import Model, load
from .plan import Plan, plan_or_raise
from .stats import layer_record, summarize

BACKENDS = ("numba", "c")
SMALL_INT_INPUT = 64
_BLAS = None  # threadpoolctl controller, made on first run (library discovery is slow)


def _check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise KnobError(f"threads must be a positive integer, got {threads!r}")
    return int(threads)


class Session:
    """A model bound to a backend and a set of knobs.

    Example::

        sess = aipnet.Session(aipnet.load("reference"), threads=2)
        probs = sess.run(images)          # N x 1 x 28 x 28 float32 -> N x 10
        sess.stats["total"]["macs"]

    Args:
        model: a :class:`Model`, or anything :func:`aipnet.load` accepts.
        backend: ``"numba"``, or ``"c"`` (the C runtime through ``aipnet._native``,
            one FFI call per run; float32 inputs).
        threads: worker threads for the kernels (default: all cores).
        config: a config file (JSON or TOML) or dict of knobs, global and per layer
            (see :mod:`aipnet.config`); keyword knobs override its global values.
        **knobs: the approximation knobs (``aip``, ``aip_threshold``, ``drowsy``, ...):
            see :class:`aipnet.knobs.Knobs` for the list, defaults and ranges.
    """

    def __init__(self, model: Model | str | os.PathLike, backend: str = "numba", threads: int | None = None,
                 config: str | os.PathLike | Mapping[str, Any] | None = None, **knobs: Any):
        if not isinstance(model, Model):
            model = load(model)
        if backend not in BACKENDS:
            raise KnobError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        self.model = model
        self.backend = backend
        self.threads = _check_threads(threads)
        if config is not None:
            cfg = read_config(config)
            knobs = merge(cfg, knobs)
            check_layer_names(knobs.get("layers", {}), knob_layer_names(model.graph),
                              config if isinstance(config, (str, os.PathLike)) else "config")
        self.knobs = make_knobs(**knobs)
        self._plans: dict[tuple, Plan] = {}
        self.stats: dict[str, Any] = summarize([])
        self._native = None
        if backend == "c":
            from .native import NativeSession

            self._native = NativeSession(model, self.threads, self.knobs)

    # -- inputs -------------------------------------------------------------------
    def _feeds(self, x: np.ndarray | Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        specs = self.model.graph.inputs
        names = [s.name for s in specs]
        if isinstance(x, Mapping):
            unknown = sorted(set(x) - set(names))
            missing = [n for n in names if n not in x]
            if unknown or missing:
                raise InputError(
                    f"inputs {unknown or ''}{' are unknown' if unknown else ''}"
                    f"{'; ' if unknown and missing else ''}{'missing ' + str(missing) if missing else ''}"
                    f"; the model's inputs are {names}")
            feeds = dict(x)
        else:
            if len(specs) != 1:
                raise InputError(f"the model has {len(specs)} inputs {names}: pass a dict of name -> array")
            feeds = {names[0]: x}
        for spec in specs:
            a = feeds[spec.name]
            if not isinstance(a, np.ndarray):
                raise InputError(f"input {spec.name!r} must be a numpy array, got {type(a).__name__}")
            if a.dtype != spec.dtype:
                raise InputError(
                    f"input {spec.name!r} has dtype {a.dtype}, expected {spec.dtype} "
                    f"(convert with .astype(np.{spec.dtype.name}))")
            if spec.shape is not None:
                if a.ndim != len(spec.shape):
                    raise InputError(
                        f"input {spec.name!r} has rank {a.ndim} (shape {a.shape}), expected rank "
                        f"{len(spec.shape)} (shape {_fmt_shape(spec.shape)})")
                for i, (got, want) in enumerate(zip(a.shape, spec.shape)):
                    if i > 0 and want is not None and got != want:
                        raise InputError(
                            f"input {spec.name!r} has shape {a.shape}, expected {_fmt_shape(spec.shape)} "
                            f"(dim {i} must be {want})")
            feeds[spec.name] = np.ascontiguousarray(a)
        return feeds

    def plan_for(self, shapes: Mapping[str, tuple[int, ...]], values: Mapping[str, np.ndarray] | None = None) -> Plan:
        """The (cached) execution plan for these input shapes (and small integer input values)."""
        values = dict(values or {})
        key = (tuple(sorted((k, tuple(v)) for k, v in shapes.items())),
               tuple(sorted((k, v.dtype.str, v.shape, v.tobytes()) for k, v in values.items())))
        plan = self._plans.get(key)
        if plan is None:
            plan = plan_or_raise(self.model.graph, dict(shapes), self.backend, values, self.effective_threads,
                                 self.knobs)
            self._plans[key] = plan
        return plan

    # -- running ------------------------------------------------------------------
    def run(self, x: np.ndarray | Mapping[str, np.ndarray], image_offset: int = 0) -> np.ndarray | dict[str, np.ndarray]:
        """Run the model. One input array in, one out; or a dict in and out.

        Inputs are batch first, of the dtype and non-batch dims the model declares.
        Non-finite input values propagate as they do in onnxruntime (no check here).
        ``image_offset``: DrowsyNet image id of the first image of the batch (image i of
        the batch gets its own mask, id ``image_offset + i``); give each batch of a data
        set its position so that every image gets its own mask.
        """
        if isinstance(image_offset, bool) or not isinstance(image_offset, (int, np.integer)) or image_offset < 0:
            raise KnobError(f"image_offset must be a non-negative integer, got {image_offset!r}")
        feeds = self._feeds(x)
        if self._native is not None:
            outs = self._native.run([feeds[s.name] for s in self.model.graph.inputs], int(image_offset))
            self.stats = self._native.stats()
            return outs[0] if len(outs) == 1 else dict(zip(self.model.graph.outputs, outs))
        threads = self.effective_threads
        # Small integer inputs are shapes, axes or indices: plans may depend on their values.
        values = {k: v for k, v in feeds.items() if v.dtype.kind in "iu" and v.size <= SMALL_INT_INPUT}
        plan = self.plan_for({k: v.shape for k, v in feeds.items()}, values)
        if self.knobs.any_drowsy:
            from .drowsy import bind

            bind(plan, self.model.graph, int(image_offset))
        numba.set_num_threads(threads)
        # BLAS runs single-threaded inside a run: kernels.parallel splits GEMMs itself
        with self._blas_single_thread():
            env, layers = self._execute(plan, feeds)
        self.stats = summarize(layers)
        outs = {name: np.asarray(env[name] if name in env else plan.consts[name]) for name in plan.outputs}
        return next(iter(outs.values())) if len(outs) == 1 else outs

    def _execute(self, plan: Plan, feeds: dict[str, np.ndarray]):
        env: dict[str, np.ndarray] = dict(feeds)
        consts = plan.consts
        layers = []
        clock = time.perf_counter
        for st in plan.steps:
            ins = [(env[n] if n in env else consts[n]) if n else None for n in st.node.inputs]
            t0 = clock()
            outs = st.impl.run(ins)
            dt = clock() - t0
            for name, val in zip(st.node.outputs, outs):
                if name:
                    env[name] = val
            for name in st.release:
                env.pop(name, None)
            c = st.cost
            rec = layer_record(
                st.node.name, st.node.op, macs=c.macs, macs_skipped=0, weight_bytes_read=c.weight_bytes,
                weight_bytes_total=st.weight_bytes_total, act_bytes_read=c.act_bytes_read,
                act_bytes_written=c.act_bytes_written, outputs=c.outputs, outputs_refined=0, time_s=dt,
                activation=st.node.attrs.get("_act", ""))
            if st.impl.run_counts:
                # approximate kernels count what they really did on this run
                rec.update(st.impl.run_counts)
            layers.append(rec)
        return env, layers

    @property
    def effective_threads(self) -> int:
        """The threads the kernels use: the ``threads`` knob, or all cores."""
        return min(self.threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS)

    def _blas_single_thread(self):
        global _BLAS
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        return _BLAS.limit(limits=1, user_api="blas")


def knob_layer_names(g) -> set[str]:
    """Names of the layers a config may address (convolutions and FC layers)."""
    return {n.name for n in g.nodes if n.op in ("Conv", "Gemm", "MatMul", "AipFC")}


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("N" if (i == 0) else ("?" if d is None else str(d)) for i, d in enumerate(shape)) + ")"
