"""Activations fused into a producer (Conv, Gemm, MatMul) by the optimiser.

The optimiser writes ``_act`` (``relu``, ``clip`` or ``leaky``) and ``_act_params`` on
the producer; kernels take the integer code and two float parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from aipnet.kernels.activation import ACT_CLIP, ACT_LEAKY, ACT_NONE, ACT_RELU

from ..graph import Node

CODES = {"": ACT_NONE, "relu": ACT_RELU, "clip": ACT_CLIP, "leaky": ACT_LEAKY}


@dataclass(frozen=True)
class FusedActivation:
    kind: str = ""
    p0: float = 0.0
    p1: float = 0.0

    @classmethod
    def from_node(cls, node: Node) -> "FusedActivation":
        kind = node.attrs.get("_act", "")
        p = list(node.attrs.get("_act_params", [])) + [0.0, 0.0]
        return cls(kind, float(p[0]), float(p[1]))

    def args(self) -> tuple[int, float, float]:
        return CODES[self.kind], self.p0, self.p1

    def __bool__(self) -> bool:
        return bool(self.kind)
