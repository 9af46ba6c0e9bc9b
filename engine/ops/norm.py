"""BatchNormalization (inference form, when not folded into a conv) and LRN."""

from __future__ import annotations

import numpy as np

from aipnet.kernels.norm import lrn, scale_shift

from ..registry import register
from .base import OpImpl


@register("BatchNormalization")
class BatchNormalization(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = shapes[0]
        if xs is None or len(xs) < 2:
            raise self.bad_input(f"expected an N x C x ... input, got shape {xs}")
        if int(self.attr("training_mode", 0)):
            raise self.bad_attr("training_mode", 1, "aipnet runs inference only")
        if len([o for o in node.outputs if o]) > 1:
            raise self.bad_attr("outputs", node.outputs, "running mean/var outputs are training-only")
        c = xs[1]
        for i, what in zip(range(1, 5), ("scale", "B", "mean", "var")):
            if shapes[i] is None or tuple(shapes[i]) != (c,):
                raise self.bad_input(f"{what} has shape {shapes[i]}, expected ({c},)")
        self.eps = float(self.attr("epsilon", 1e-5))
        self.out_shapes = [tuple(xs)]
        self.weight_inputs = (1, 2, 3, 4)

    def run(self, inputs):
        x, gamma, beta, mean, var = inputs[:5]
        scale, shift = bn_scale_shift(gamma, beta, mean, var, self.eps)
        x3 = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], x.shape[1], -1)
        out = np.empty_like(x3)
        scale_shift(x3, scale, shift, out)
        return [out.reshape(x.shape)]


def bn_scale_shift(gamma, beta, mean, var, eps):
    """Per-channel scale and shift equivalent to inference batch norm (float64 math)."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
    return scale.astype(np.float32), shift.astype(np.float32)


@register("LRN")
class LRN(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = shapes[0]
        if xs is None or len(xs) < 2:
            raise self.bad_input(f"expected an N x C x ... input, got shape {xs}")
        size = self.attr("size")
        if size is None or int(size) < 1:
            raise self.bad_attr("size", size, "a positive size is required")
        self.size = int(size)
        self.alpha = np.float32(self.attr("alpha", 1e-4))
        self.beta = np.float32(self.attr("beta", 0.75))
        self.bias = np.float32(self.attr("bias", 1.0))
        self.out_shapes = [tuple(xs)]
        self.macs = int(np.prod(xs)) * (self.size + 2)

    def run(self, inputs):
        x = inputs[0]
        x3 = np.ascontiguousarray(x, dtype=np.float32).reshape(x.shape[0], x.shape[1], -1)
        out = np.empty_like(x3)
        lrn(x3, self.size, self.alpha, self.beta, self.bias, out)
        return [out.reshape(x.shape)]

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = self.macs
        return c
