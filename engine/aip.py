"""AIP (approximate inner products) for fully-connected layers: packing and the run.

For an FC layer y = act(W x + b) with W of N x K, AIP picks a subset S of k = ceil(f K)
inputs and stores W in the blocked layout of :mod:`aipnet.kernels.aip`. A run:

1. approximate pass: p_j = W[j, S] . x[S] for every output (reads N k weights);
2. estimate: est_j = s p_j + b_j (s = K/k, or fitted on calibration data);
3. decision, by the layer's role in the graph:
   - ``relu`` (a ReLU follows): outputs with est_j <= theta are 0 and the rest of their
     row is never read; the others are refined exactly,
     y_j = relu(p_j + W[j, ~S] . x[~S] + b_j), reusing p_j (one full row per output);
   - ``final`` (feeds the graph output, possibly through Softmax): the top ``refine``
     estimates are refined, the others keep their estimates;
   - ``dense`` (anything else): every row is refined (exact).
   With batch > 1 the union of what any sample needs is refined for all samples.
4. ``aip_mode="approx"`` skips refinement: the estimates are the outputs.

With theta = -inf every row is refined and the layer equals the dense one (up to float
summation order).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from aipnet.kernels.aip import LANES, LINE_BYTES, approx_pass, refine_rows

from .errors import KnobError
from .graph import Graph

ROLES = ("relu", "final", "dense")
#: a final layer feeds top-n decisions; n = 5 (top-5 is what eval reports), so by default
#: max(2n, 5) = 10 candidates are refined (the aip_refine knob overrides it)
TOP_N = 5
DEFAULT_REFINE = max(2 * TOP_N, 5)


@dataclass
class PackedFC:
    """One FC layer in the AIP blocked layout (no second copy of the dense weights)."""

    perm: np.ndarray       # K int64: the subset S (sorted) then the rest (sorted)
    k: int                 # |S|
    approx: np.ndarray     # nb x k x LANES float32
    rest: np.ndarray       # N x (K - k) float32
    scale: float           # estimate = scale * partial + bias
    policy: str
    fraction: float

    @property
    def n(self) -> int:
        return self.rest.shape[0]

    @property
    def kdim(self) -> int:
        return self.perm.shape[0]

    def unpack(self) -> np.ndarray:
        """The dense N x K weights, rebuilt from the packed layout."""
        n, k = self.n, self.k
        w = np.empty((n, self.kdim), dtype=np.float32)
        sub = self.approx.transpose(0, 2, 1).reshape(-1, k)[:n]
        w[:, self.perm[:k]] = sub
        w[:, self.perm[k:]] = self.rest
        return w


def subset_size(kdim: int, fraction: float) -> int:
    return max(1, min(kdim, math.ceil(fraction * kdim - 1e-9)))


def select_subset(w: np.ndarray, fraction: float, policy: str, seed: int = 0,
                  calib_x: np.ndarray | None = None) -> np.ndarray:
    """The input indices S (sorted) of the approximate pass.

    ``stride``: every (1/f)-th input; ``random``: a seeded random subset;
    ``importance``: the inputs with the largest expected |w_ij x_i| (mean |x_i| over the
    calibration inputs times the mean |w_ij| over outputs; without calibration inputs,
    |x_i| is taken as 1).
    """
    kdim = w.shape[1]
    k = subset_size(kdim, fraction)
    if policy == "stride":
        idx = np.unique(np.floor(np.arange(k) * (kdim / k)).astype(np.int64))
    elif policy == "random":
        idx = np.sort(np.random.default_rng(seed).choice(kdim, size=k, replace=False))
    elif policy == "importance":
        col = np.abs(w).mean(axis=0, dtype=np.float64)
        if calib_x is not None:
            col = col * np.abs(calib_x).mean(axis=0, dtype=np.float64)
        idx = np.sort(np.argsort(-col, kind="stable")[:k])
    else:
        raise KnobError(f"aip_policy must be stride, random or importance; got {policy!r}")
    return idx.astype(np.int64)


def pack_fc(w: np.ndarray, fraction: float = 1 / 16, policy: str = "stride", seed: int = 0,
            calib_x: np.ndarray | None = None, bias: np.ndarray | None = None) -> PackedFC:
    """Pack N x K weights for AIP; with calibration inputs, fit the estimate's scale."""
    if not 0.0 < fraction <= 1.0:
        raise KnobError(f"aip_fraction must be in (0, 1], got {fraction!r}")
    w = np.ascontiguousarray(w, dtype=np.float32)
    n, kdim = w.shape
    s_idx = select_subset(w, fraction, policy, seed, calib_x)
    rest_idx = np.setdiff1d(np.arange(kdim, dtype=np.int64), s_idx)
    k = s_idx.size
    nb = -(-n // LANES)
    padded = np.zeros((nb * LANES, k), dtype=np.float32)
    padded[:n] = w[:, s_idx]
    approx = np.ascontiguousarray(padded.reshape(nb, LANES, k).transpose(0, 2, 1))
    rest = np.ascontiguousarray(w[:, rest_idx])
    scale = kdim / k
    if calib_x is not None and k < kdim:
        p = calib_x[:, s_idx].astype(np.float64) @ w[:, s_idx].T.astype(np.float64)
        full = calib_x.astype(np.float64) @ w.T.astype(np.float64)
        denom = float((p * p).sum())
        if denom > 0:
            scale = float((p * full).sum() / denom)
    return PackedFC(np.concatenate([s_idx, rest_idx]), k, approx, rest, float(scale), policy, float(fraction))


# -- packing cache: one packed copy per weight array and packing knobs -------------------
_PACKS: dict[tuple, PackedFC] = {}


def packed_for(w: np.ndarray, fraction: float, policy: str, seed: int) -> PackedFC:
    """Pack once per (weights, knobs) and share across plans and sessions."""
    key = (id(w), w.shape, fraction, policy, seed)
    pk = _PACKS.get(key)
    if pk is None:
        pk = pack_fc(w, fraction, policy, seed)
        _PACKS[key] = pk
        weakref.finalize(w, _PACKS.pop, key, None)
    return pk


# -- roles -------------------------------------------------------------------------------
def fc_roles(g: Graph) -> dict[str, str]:
    """Role of every Gemm / AipFC node: ``relu`` (fused ReLU), ``final`` (reaches a graph output
    directly or through Softmax/LogSoftmax/Flatten/Reshape), else ``dense``."""
    uses = g.consumers()
    roles = {}
    for node in g.nodes:
        if node.op not in ("Gemm", "AipFC"):
            continue
        act = node.attrs.get("_act", "")
        if act == "relu":
            roles[node.name] = "relu"
            continue
        name, role = node.outputs[0], "dense"
        while not act:
            if name in g.outputs:
                role = "final"
                break
            nxt = uses.get(name, [])
            if len(nxt) != 1 or nxt[0].op not in ("Softmax", "LogSoftmax", "Flatten", "Reshape", "Identity"):
                break
            name = nxt[0].outputs[0]
        roles[node.name] = role
    return roles


# -- the run -------------------------------------------------------------------------------
def aip_fc(x: np.ndarray, pk: PackedFC, bias: np.ndarray | None, role: str, threshold: float,
           refine: int, mode: str, skip_zeros: bool,
           act: tuple[int, float, float] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One AIP FC layer on x (B x K). Returns (B x N output, counts measured by the kernels).

    ``act``: the layer's fused activation as (code, p0, p1) (FusedActivation.args());
    a ``relu`` layer applies its ReLU as part of the decision, any other role applies
    ``act`` (Clip, LeakyRelu) to its outputs at the end."""
    bsz = x.shape[0]
    n, k, kr = pk.n, pk.k, pk.kdim - pk.k
    xp = x[:, pk.perm]
    xs = np.ascontiguousarray(xp[:, :k])
    xr = np.ascontiguousarray(xp[:, k:])
    nb = pk.approx.shape[0]
    partial = np.empty((bsz, nb * LANES), dtype=np.float32)
    lines = np.empty(nb, dtype=np.int64)
    approx_pass(pk.approx, xs, skip_zeros, partial, lines)
    p = partial[:, :n]
    b = bias if bias is not None else np.zeros(n, np.float32)
    est = np.float32(pk.scale) * p + b
    if mode == "approx" or kr == 0:
        rows = np.arange(n) if kr == 0 else np.empty(0, np.int64)
    elif role == "relu":
        rows = np.flatnonzero((est > threshold).any(axis=0))
    elif role == "final":
        m = min(refine, n)
        top = np.argpartition(-est, m - 1, axis=1)[:, :m] if m < n else np.tile(np.arange(n), (bsz, 1))
        rows = np.unique(top)
    else:
        rows = np.arange(n)
    rows = rows.astype(np.int64)
    y = est.copy()
    if rows.size and kr:
        r = np.empty((bsz, rows.size), dtype=np.float32)
        refine_rows(pk.rest, xr, rows, r)
        y[:, rows] = p[:, rows] + r + b[rows]
    elif rows.size:
        y[:, rows] = p[:, rows] + b[rows]
    if role == "relu":
        if mode == "refine":
            keep = np.zeros(n, dtype=bool)
            keep[rows] = True
            y[:, ~keep] = 0.0
        np.maximum(y, 0.0, out=y)
    elif act is not None and act[0]:
        from aipnet.kernels.activation import act_inplace

        act_inplace(y.reshape(-1), *act)
    rows_in_block = np.minimum(LANES, n - np.arange(nb) * LANES)
    macs_done = int((lines * rows_in_block).sum()) * bsz + rows.size * kr * bsz
    counts = {
        "macs": macs_done,
        "macs_skipped": bsz * n * pk.kdim - macs_done,
        "weight_bytes_read": int(lines.sum()) * LINE_BYTES + rows.size * kr * 4 + (n * 4 if bias is not None else 0),
        "outputs_refined": int(rows.size) * bsz,
        "aip_rows_refined": int(rows.size),
        "aip_role": role,
    }
    return y, counts


# -- packing a whole graph (aipnet convert --aip-...) --------------------------------------
def capture_fc_inputs(g: Graph, x: np.ndarray, names: set[str], batch: int = 250) -> dict[str, np.ndarray]:
    """Run the exact graph on calibration inputs and keep the input of each named node."""
    from .plan import make_plan

    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    feed_name = g.inputs[0].name
    for s in range(0, len(x), batch):
        xb = np.ascontiguousarray(x[s:s + batch], dtype=np.float32)
        plan = make_plan(g, {feed_name: xb.shape})
        env = {feed_name: xb}
        for st in plan.steps:
            ins = [(env[n] if n in env else plan.consts[n]) if n else None for n in st.node.inputs]
            if st.node.name in got:
                got[st.node.name].append(np.array(ins[0], dtype=np.float32).reshape(len(xb), -1))
            for name, val in zip(st.node.outputs, st.impl.run(ins)):
                env[name] = val
    return {n: np.concatenate(v) for n, v in got.items() if v}


def pack_graph(g: Graph, fraction: float = 1 / 16, policy: str = "stride", seed: int = 0,
               calib_x: np.ndarray | None = None, theta: float = 0.0,
               layers: dict[str, dict[str, Any]] | None = None) -> int:
    """Rewrite every fully-connected Gemm (constant weights) of ``g`` into an ``AipFC``
    node holding the packed layout; with calibration inputs, select by importance on
    real activations and fit each layer's scale. ``layers`` may override
    ``aip_fraction`` and ``aip_threshold`` (the stored theta) per layer name.
    Returns the number of layers packed."""
    from .plan import make_plan

    shapes = {v.name: tuple(1 if (i == 0 or d is None) else d for i, d in enumerate(v.shape or ()))
              for v in g.inputs}
    plan = make_plan(g, shapes)
    fcs = {st.node.name: st.impl for st in plan.steps
           if st.node.op == "Gemm" and getattr(st.impl, "w", None) is not None and not st.impl.c_general
           and not st.impl.trans_a}
    calib = capture_fc_inputs(g, calib_x, set(fcs)) if calib_x is not None and fcs else {}
    for node in g.nodes:
        impl = fcs.get(node.name)
        if impl is None:
            continue
        over = (layers or {}).get(node.name, {})
        pk = pack_fc(impl.w, over.get("aip_fraction", fraction), policy, seed, calib.get(node.name))
        base = node.name
        g.initializers[f"{base}.aip_approx"] = pk.approx
        g.initializers[f"{base}.aip_rest"] = pk.rest
        g.initializers[f"{base}.aip_perm"] = pk.perm
        inputs = [node.inputs[0], f"{base}.aip_approx", f"{base}.aip_rest", f"{base}.aip_perm"]
        if impl.bias is not None:
            g.initializers[f"{base}.aip_bias"] = np.ascontiguousarray(impl.bias, dtype=np.float32)
            inputs.append(f"{base}.aip_bias")
        layer_theta = over.get("aip_threshold")
        attrs = {"k": pk.k, "scale": pk.scale, "policy": pk.policy, "fraction": pk.fraction,
                 "theta": float(theta if layer_theta is None else layer_theta),
                 "calibrated": int(node.name in calib)}
        if node.attrs.get("_act"):
            attrs["_act"] = node.attrs["_act"]
            attrs["_act_params"] = node.attrs.get("_act_params", [])
        node.op, node.inputs, node.attrs = "AipFC", inputs, attrs
    g.prune()
    return len(fcs)
