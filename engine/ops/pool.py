"""MaxPool, AveragePool (1-D and 2-D), GlobalAveragePool, GlobalMaxPool."""

from __future__ import annotations

import numpy as np

from aipnet.kernels.pool import avgpool2d, global_pool, maxpool2d

from ..registry import register
from .base import OpImpl
from .conv import as_2d, resolve_pads, spatial_attrs


class _Pool(OpImpl):
    is_max = True

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = shapes[0]
        if xs is None or len(xs) not in (3, 4):
            raise self.bad_input(f"only 1-D and 2-D pooling are supported, got input shape {xs}")
        if len([o for o in node.outputs if o]) > 1:
            raise self.bad_attr("outputs", node.outputs, "the Indices output of MaxPool is not supported")
        self.nd = nd = len(xs) - 2
        kernel = self.attr("kernel_shape")
        if kernel is None or len(kernel) != nd or any(k < 1 for k in kernel):
            raise self.bad_attr("kernel_shape", kernel, f"expected {nd} positive values")
        strides, dilations = spatial_attrs(self, nd, kernel)
        ceil_mode = int(self.attr("ceil_mode", 0))
        pads, outs = resolve_pads(self, xs[2:], kernel, strides, dilations, bool(ceil_mode))
        self.kernel = as_2d(nd, kernel, 1)
        self.strides = as_2d(nd, strides, 1)
        self.dilations = as_2d(nd, dilations, 1)
        self.pads = (0, pads[0], 0, pads[1]) if nd == 1 else tuple(pads)
        self.count_include_pad = int(self.attr("count_include_pad", 0))
        self.out_shapes = [(xs[0], xs[1], *outs)]
        self.out_hw = as_2d(nd, outs, 1)
        self.macs = int(np.prod(self.out_shapes[0])) * int(np.prod(kernel))

    def run(self, inputs):
        x = inputs[0]
        n, c = x.shape[:2]
        h, w = (1, x.shape[2]) if self.nd == 1 else x.shape[2:]
        planes = np.ascontiguousarray(x).reshape(n * c, h, w)
        out = np.empty((n * c, *self.out_hw), dtype=np.float32)
        kh, kw = self.kernel
        sh, sw = self.strides
        dh, dw = self.dilations
        pt, pl, pb, pr = self.pads
        if self.is_max:
            maxpool2d(planes, kh, kw, sh, sw, dh, dw, pt, pl, out)
        else:
            avgpool2d(planes, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, bool(self.count_include_pad), out)
        return [out.reshape(self.out_shapes[0])]

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = self.macs
        return c


@register("MaxPool")
class MaxPool(_Pool):
    is_max = True

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        if int(self.attr("storage_order", 0)) not in (0, 1):
            raise self.bad_attr("storage_order", self.attr("storage_order"), "expected 0 or 1")


@register("AveragePool")
class AveragePool(_Pool):
    is_max = False


class _GlobalPool(OpImpl):
    is_max = False

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = shapes[0]
        if xs is None or len(xs) < 3:
            raise self.bad_input(f"expected an N x C x ... input, got shape {xs}")
        self.out_shapes = [tuple(xs[:2]) + (1,) * (len(xs) - 2)]

    def run(self, inputs):
        x = np.ascontiguousarray(inputs[0])
        planes = x.reshape(x.shape[0] * x.shape[1], -1)
        out = np.empty(planes.shape[0], dtype=np.float32)
        global_pool(planes, self.is_max, out)
        return [out.reshape(self.out_shapes[0])]


@register("GlobalAveragePool")
class GlobalAveragePool(_GlobalPool):
    is_max = False


@register("GlobalMaxPool")
class GlobalMaxPool(_GlobalPool):
    is_max = True
