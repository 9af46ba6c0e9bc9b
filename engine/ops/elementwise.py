"""Add, Sub, Mul, Div, Sum with numpy broadcasting.

numpy's ufuncs are already vectorised loops over contiguous memory; they also serve the
int64 arithmetic that exporters write on shapes, which the planner folds.
"""

from __future__ import annotations

import numpy as np

from ..registry import register
from .base import OpImpl


class _Broadcast(OpImpl):
    ufunc = staticmethod(np.add)

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        if any(s is None for s in shapes) or not shapes:
            raise self.bad_input("input shapes unknown")
        try:
            out = np.broadcast_shapes(*[tuple(s) for s in shapes])
        except ValueError:
            raise self.bad_input(f"shapes {[tuple(s) for s in shapes]} do not broadcast") from None
        self.out_shapes = [tuple(out)]
        self.weight_inputs = tuple(i for i, c in enumerate(consts) if c is not None)

    def run(self, inputs):
        y = inputs[0]
        for other in inputs[1:]:
            y = self.ufunc(y, other)
        return [np.asarray(y)]

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = c.outputs * max(1, len(shapes) - 1)
        return c


@register("Add")
class Add(_Broadcast):
    ufunc = staticmethod(np.add)


@register("Sub")
class Sub(_Broadcast):
    ufunc = staticmethod(np.subtract)


@register("Mul")
class Mul(_Broadcast):
    ufunc = staticmethod(np.multiply)


@register("Div")
class Div(_Broadcast):
    def run(self, inputs):
        a, b = inputs
        if np.issubdtype(a.dtype, np.integer):
            # ONNX integer division truncates toward zero (as C does)
            return [np.asarray(np.trunc(a / b).astype(a.dtype))]
        with np.errstate(divide="ignore", invalid="ignore"):
            return [np.asarray(np.divide(a, b))]


@register("Sum")
class Sum(_Broadcast):
    ufunc = staticmethod(np.add)
