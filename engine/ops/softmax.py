"""Softmax and LogSoftmax with their opset-dependent axis rules.

Before opset 13 the input is coerced to 2-D at ``axis`` (default 1) and normalised over
everything from ``axis`` on; from opset 13 it is normalised along ``axis`` (default -1).
"""

from __future__ import annotations

import numpy as np

from aipnet.kernels.softmax import softmax

from ..registry import register
from .base import OpImpl, norm_axis


class _Softmax(OpImpl):
    log = False

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = shapes[0]
        if xs is None or len(xs) == 0:
            raise self.bad_input(f"expected an input of rank >= 1, got {xs}")
        rank = len(xs)
        if opset < 13:
            axis = norm_axis(self, int(self.attr("axis", 1)), rank)
            self.view = (int(np.prod(xs[:axis])), int(np.prod(xs[axis:])), 1)
        else:
            axis = norm_axis(self, int(self.attr("axis", -1)), rank)
            self.view = (int(np.prod(xs[:axis])), xs[axis], int(np.prod(xs[axis + 1:])))
        self.out_shapes = [tuple(xs)]

    def run(self, inputs):
        x = np.ascontiguousarray(inputs[0], dtype=np.float32).reshape(self.view)
        out = np.empty_like(x)
        softmax(x, self.log, out)
        return [out.reshape(self.out_shapes[0])]


@register("Softmax")
class Softmax(_Softmax):
    log = False


@register("LogSoftmax")
class LogSoftmax(_Softmax):
    log = True
