"""Gemm (alpha, beta, transA, transB) and MatMul (numpy broadcasting).

A Gemm whose B is constant is a fully-connected layer: its weights are arranged once,
at plan time, as N x K rows (the layout AIP refines row by row), alpha folded in and
beta*C turned into a bias vector when C broadcasts along rows.
"""

from __future__ import annotations

import numpy as np

from aipnet.kernels.activation import act_inplace
from aipnet.kernels.gemm import fc

from ..registry import register
from .base import OpImpl
from .fused import FusedActivation


def _broadcast_ok(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(a, b)
        return True
    except ValueError:
        return False


@register("Gemm")
class Gemm(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        a_s, b_s = shapes[0], shapes[1]
        if a_s is None or b_s is None or len(a_s) != 2 or len(b_s) != 2:
            raise self.bad_input(f"Gemm needs 2-D A and B, got {a_s} and {b_s}")
        self.alpha = float(self.attr("alpha", 1.0))
        self.beta = float(self.attr("beta", 1.0))
        self.trans_a = int(self.attr("transA", 0))
        self.trans_b = int(self.attr("transB", 0))
        m, k = (a_s[1], a_s[0]) if self.trans_a else a_s
        kb, n = (b_s[1], b_s[0]) if self.trans_b else b_s
        if k != kb:
            raise self.bad_input(f"inner dimensions differ: A {a_s} (transA={self.trans_a}), B {b_s} (transB={self.trans_b})")
        c_s = shapes[2] if len(shapes) > 2 else None
        if c_s is not None and not _broadcast_ok(tuple(c_s), (m, n)):
            raise self.bad_input(f"C of shape {c_s} does not broadcast to ({m}, {n})")
        self.m, self.n, self.k = m, n, k
        self.out_shapes = [(m, n)]
        self.weight_inputs = (1, 2)
        self.act = FusedActivation.from_node(node)
        # Fast path: constant B (a fully-connected layer) and a C that is a row vector.
        self.w = None
        self.bias = None
        self.c_general = None
        if consts[1] is not None:
            w = consts[1] if self.trans_b else consts[1].T
            if self.alpha != 1.0:
                w = w * np.float32(self.alpha)
            self.w = np.ascontiguousarray(w, dtype=np.float32)
        if c_s is not None:
            c = consts[2] if len(consts) > 2 else None
            if c is not None and (c.size == 1 or tuple(c_s) in ((n,), (1, n))):
                self.bias = np.ascontiguousarray(
                    np.broadcast_to(np.float32(self.beta) * c.astype(np.float32).reshape(-1), (n,)))
            else:
                self.c_general = True

    def configure(self, threads, knobs):
        super().configure(threads, knobs)
        self.aip = None
        if knobs is not None and knobs.aip and self.w is not None and not self.c_general and self.graph_role:
            from ..aip import packed_for

            self.aip = packed_for(self.w, knobs.aip_fraction, knobs.aip_policy, knobs.seed)

    def run(self, inputs):
        a = inputs[0].T if self.trans_a else inputs[0]
        a = np.ascontiguousarray(a, dtype=np.float32)
        if self.aip is not None:
            return [self._run_aip(a)]
        if self.w is not None and not self.c_general:
            return [fc(a, self.w, self.bias, *self.act.args(), threads=self.threads)]
        b = inputs[1] if self.trans_b else inputs[1].T
        if self.w is not None:
            b = self.w
        elif self.alpha != 1.0:
            b = b * np.float32(self.alpha)
        y = np.ascontiguousarray(np.matmul(a, b.T))
        if len(inputs) > 2 and inputs[2] is not None and inputs[2].size:
            y += np.float32(self.beta) * inputs[2]
        if self.act:
            act_inplace(y.reshape(-1), *self.act.args())
        return [y]

    def _run_aip(self, a):
        from ..aip import DEFAULT_REFINE, aip_fc

        kn = self.knobs
        theta = kn.aip_threshold if kn.aip_threshold is not None else 0.0
        y, counts = aip_fc(a, self.aip, self.bias, self.graph_role, theta,
                           kn.aip_refine or DEFAULT_REFINE, kn.aip_mode, kn.aip_skip_zeros, self.act.args())
        counts["weight_bytes_total"] = (self.aip.approx.nbytes + self.aip.rest.nbytes
                                        + (self.bias.nbytes if self.bias is not None else 0))
        self.run_counts = counts
        return y

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = self.m * self.n * self.k
        return c


@register("MatMul")
class MatMul(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        a_s, b_s = shapes[0], shapes[1]
        if a_s is None or b_s is None or len(a_s) == 0 or len(b_s) == 0:
            raise self.bad_input("MatMul needs inputs of rank >= 1")
        a2 = a_s if len(a_s) > 1 else (1,) + tuple(a_s)
        b2 = b_s if len(b_s) > 1 else tuple(b_s) + (1,)
        if a2[-1] != b2[-2]:
            raise self.bad_input(f"inner dimensions differ: {a_s} @ {b_s}")
        try:
            batch = np.broadcast_shapes(tuple(a2[:-2]), tuple(b2[:-2]))
        except ValueError:
            raise self.bad_input(f"batch dimensions do not broadcast: {a_s} @ {b_s}") from None
        out = tuple(batch) + (a2[-2], b2[-1])
        if len(a_s) == 1:
            out = out[:-2] + out[-1:]
        if len(b_s) == 1:
            out = out[:-1]
        self.out_shapes = [out]
        self.weight_inputs = (1,) if consts[1] is not None else ()
        self.act = FusedActivation.from_node(node)
        self.macs = int(np.prod(batch)) * a2[-2] * a2[-1] * b2[-1]

    def run(self, inputs):
        y = np.ascontiguousarray(np.matmul(inputs[0], inputs[1])).reshape(self.out_shapes[0])
        if self.act:
            act_inplace(y.reshape(-1), *self.act.args())
        return [y]

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = self.macs
        return c
