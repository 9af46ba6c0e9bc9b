"""AipFC: a fully-connected layer stored in AIP's packed layout (written by
``aipnet convert --aip-...``). With the session's ``aip`` knob off it computes the exact
layer (every row refined); with it on, the approximate pass and selective refinement.

Inputs: x (B x K), approx (nb x k x 16), rest (N x (K-k)), perm (K, int64), bias (N,
optional). Attributes: k, scale, policy, fraction, theta (the layer's calibrated
threshold), calibrated, and a fused ``_act``.
"""

from __future__ import annotations

import numpy as np

from ..aip import DEFAULT_REFINE, PackedFC, aip_fc
from ..registry import register
from .base import OpImpl
from .fused import FusedActivation


@register("AipFC")
class AipFC(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = shapes[0]
        if any(c is None for c in consts[1:4]):
            raise self.bad_input("the packed weights (approx, rest, perm) must be constants")
        approx, rest, perm = consts[1], consts[2], consts[3]
        k = int(self.attr("k", -1))
        n, kr = rest.shape if rest.ndim == 2 else (-1, -1)
        kdim = perm.shape[0] if perm.ndim == 1 else -1
        if (approx.ndim != 3 or approx.shape[2] != 16 or approx.shape[1] != k or rest.ndim != 2
                or kdim != k + kr or approx.shape[0] != -(-n // 16) or k < 1):
            raise self.bad_input(f"inconsistent packed shapes: approx {approx.shape}, rest {rest.shape}, "
                                 f"perm {perm.shape}, k={k}")
        if perm.dtype.kind not in "iu" or not np.array_equal(np.sort(perm), np.arange(kdim)):
            raise self.bad_input("perm is not a permutation of the inputs")
        if xs is None or len(xs) != 2 or xs[1] != kdim:
            raise self.bad_input(f"input shape {xs} does not match the layer's {kdim} inputs")
        bias = consts[4] if len(consts) > 4 else None
        if bias is not None and bias.shape != (n,):
            raise self.bad_input(f"bias shape {bias.shape} is not ({n},)")
        self.pk = PackedFC(perm.astype(np.int64), k, approx, rest, float(self.attr("scale", kdim / k)),
                           str(self.attr("policy", "stride")), float(self.attr("fraction", k / kdim)))
        self.bias = bias
        self.theta = float(self.attr("theta", 0.0))
        self.out_shapes = [(xs[0], n)]
        self.weight_inputs = (1, 2, 4)
        self.macs = xs[0] * n * kdim

    def run(self, inputs):
        x = np.ascontiguousarray(inputs[0], dtype=np.float32)
        kn = self.knobs
        role = self.graph_role or ("relu" if self.node.attrs.get("_act") == "relu" else "dense")
        if kn is not None and kn.aip:
            theta = kn.aip_threshold if kn.aip_threshold is not None else self.theta
            y, counts = aip_fc(x, self.pk, self.bias, role, theta, kn.aip_refine or DEFAULT_REFINE,
                               kn.aip_mode, kn.aip_skip_zeros, FusedActivation.from_node(self.node).args())
            self.run_counts = counts
        else:
            # exact: refine every row (the packed layout holds no other copy of W)
            y, counts = aip_fc(x, self.pk, self.bias, role, -np.inf, self.pk.n, "refine", False,
                               FusedActivation.from_node(self.node).args())
            self.run_counts = None
        return [y]

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = self.macs
        return c
