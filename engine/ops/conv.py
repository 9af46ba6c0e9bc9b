"""Conv (1-D and 2-D, groups, dilations, strides, asymmetric pads, auto_pad)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from aipnet.kernels.conv import conv2d, engine_for, padded_plane_too_big
from aipnet.kernels.conv_gemm import prepare
from aipnet.kernels.drowsy import CHANNEL, GRANULARITY_CODES, NEURON, conv2d_drowsy, prepare_gemm

from ..errors import UnsupportedOpError
from ..registry import register
from .base import Cost, OpImpl, Shape
from .fused import FusedActivation


def resolve_pads(
    impl: OpImpl, in_sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
    dilations: Sequence[int], ceil_mode: bool = False,
) -> tuple[list[int], list[int]]:
    """Explicit (begin..., end...) pads and output sizes from pads/auto_pad, as ONNX says."""
    nd = len(in_sizes)
    auto_pad = impl.attr("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        outs = [math.ceil(i / s) for i, s in zip(in_sizes, strides)]
        pads = [0] * (2 * nd)
        for a in range(nd):
            total = max(0, (outs[a] - 1) * strides[a] + eff[a] - in_sizes[a])
            small, big = total // 2, total - total // 2
            pads[a], pads[a + nd] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        return pads, outs
    if auto_pad == "VALID":
        pads = [0] * (2 * nd)
    elif auto_pad in ("NOTSET", ""):
        pads = list(impl.attr("pads", [0] * (2 * nd)))
        if len(pads) != 2 * nd:
            raise impl.bad_attr("pads", pads, f"expected {2 * nd} values")
        if any(p < 0 for p in pads):
            raise impl.bad_attr("pads", pads, "negative pads")
    else:
        raise impl.bad_attr("auto_pad", auto_pad, "expected NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    outs = []
    for a in range(nd):
        span = in_sizes[a] + pads[a] + pads[a + nd] - eff[a]
        if span < 0:
            raise impl.bad_input(f"kernel {kernel} larger than the padded input {list(in_sizes)}")
        if ceil_mode:
            o = -(-span // strides[a]) + 1
            # the last window must start inside the input or its leading pad
            if (o - 1) * strides[a] >= in_sizes[a] + pads[a]:
                o -= 1
        else:
            o = span // strides[a] + 1
        outs.append(o)
    return pads, outs


def spatial_attrs(impl: OpImpl, nd: int, kernel: Sequence[int]) -> tuple[list[int], list[int]]:
    strides = list(impl.attr("strides", [1] * nd))
    dilations = list(impl.attr("dilations", [1] * nd))
    for key, val in (("strides", strides), ("dilations", dilations)):
        if len(val) != nd or any(v < 1 for v in val):
            raise impl.bad_attr(key, val, f"expected {nd} positive values")
    return strides, dilations


def as_2d(nd: int, vals: Sequence[int], fill: int) -> tuple[int, int]:
    return (fill, vals[0]) if nd == 1 else (vals[0], vals[1])


@register("Conv")
class Conv(OpImpl):
    """Convolution; 1-D runs as 2-D with height 1. Fused bias and activation."""

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs, ws = shapes[0], shapes[1]
        if xs is None or ws is None:
            raise self.bad_input("input and weight shapes must be known")
        if len(xs) not in (3, 4):
            raise self.bad_input(f"only 1-D and 2-D convolution are supported, got input rank {len(xs)}")
        if len(ws) != len(xs):
            raise self.bad_input(f"weight rank {len(ws)} does not match input rank {len(xs)}")
        self.nd = nd = len(xs) - 2
        group = int(self.attr("group", 1))
        n, c = xs[0], xs[1]
        m, cg = ws[0], ws[1]
        if group < 1 or c % group or m % group or cg * group != c:
            raise self.bad_attr("group", group, f"input channels {c}, weight {list(ws)}")
        kernel = list(ws[2:])
        ks = self.attr("kernel_shape")
        if ks is not None and list(ks) != kernel:
            raise self.bad_attr("kernel_shape", ks, f"does not match weight shape {list(ws)}")
        strides, dilations = spatial_attrs(self, nd, kernel)
        pads, outs = resolve_pads(self, xs[2:], kernel, strides, dilations)
        if len(shapes) > 2 and shapes[2] is not None and tuple(shapes[2]) != (m,):
            raise self.bad_input(f"bias shape {shapes[2]} is not ({m},)")
        self.group = group
        self.strides = as_2d(nd, strides, 1)
        self.dilations = as_2d(nd, dilations, 1)
        self.pads = (0, pads[0], 0, pads[1]) if nd == 1 else (pads[0], pads[1], pads[2], pads[3])
        self.out_hw = as_2d(nd, outs, 1)
        self.out_shapes = [(n, m, *outs)]
        self.weight_inputs = (1, 2)
        self.act = FusedActivation.from_node(node)
        #: the weights when they are a constant (prepared once, in configure)
        self._w_const = consts[1] if len(consts) > 1 else None
        self._depthwise = cg == 1 and group > 1
        self._gemm = not self._depthwise and engine_for((m, cg, *as_2d(nd, kernel, 1)), self.strides, self.pads,
                                                        self.out_hw) == "gemm"
        self.macs = n * m * int(np.prod(outs)) * cg * int(np.prod(kernel))

    #: DrowsyNet: set by engine.drowsy.bind before each run (None: not bound, run exact)
    drowsy_layer: int | None = None
    drowsy_image: int = 0

    def configure(self, threads, knobs):
        super().configure(threads, knobs)
        self.drowsy = knobs is not None and knobs.drowsy > 0
        w = self._w_const
        # constant weights are packed once here, for the exact kernel (when its shape runs
        # on the implicit GEMM) and DrowsyNet's (a run's Python time counts at 2 threads);
        # the pixel and tile granularities share the exact kernel's packing
        self._prepared = self._drowsy_prepared = None
        if not self.drowsy:
            if w is not None and self._gemm:
                self._prepared = prepare(w, self.group)
            return
        from .. import drowsy

        self._drowsy_code = GRANULARITY_CODES[knobs.drowsy_granularity]
        self._drowsy_scale = drowsy.scale(knobs)
        self._drowsy_seed, self._drowsy_fixed, self._drowsy_thr = drowsy.mask_knobs(knobs)
        if w is not None and not self._depthwise and self._drowsy_code != NEURON:
            self._drowsy_prepared = prepare_gemm(w, self.group, self._drowsy_code)
            if self._drowsy_code != CHANNEL and self._gemm:
                self._prepared = self._drowsy_prepared

    def run(self, inputs):
        x, w = inputs[0], inputs[1]
        b = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
        if self.nd == 1:
            x = x[:, :, None, :]
            w = w[:, :, None, :]
        if self.drowsy and self.drowsy_layer is not None:
            return self._run_drowsy(np.ascontiguousarray(x), np.ascontiguousarray(w), b)
        y = conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w), b, self.strides, self.pads,
                   self.dilations, self.group, self.out_hw, *self.act.args(), threads=self.threads,
                   prepared=self._prepared)
        return [y.reshape(self.out_shapes[0])]

    def _run_drowsy(self, x, w, b):
        """DrowsyNet: compute kept outputs only; count what was done (engine/drowsy.py)."""
        _, _, kh, kw = w.shape
        if not self._depthwise and padded_plane_too_big(kh, kw, *self.strides, *self.dilations, *self.out_hw):
            # the masked kernels all pad the input (and the C backend's offsets are 32-bit)
            raise UnsupportedOpError(
                f"DrowsyNet on node {self.node.name!r}: its zero-padded input plane (dilated taps and pads) "
                "has 2^31 floats or more, past the masked conv kernels' limit; run this layer exact (drowsy rate 0)")
        mask = (self._drowsy_seed, self.drowsy_image, self._drowsy_fixed, self.drowsy_layer, self._drowsy_thr)
        y, macs, computed = conv2d_drowsy(
            x, w, b, self.strides, self.pads, self.dilations, self.group, self.out_hw, *self.act.args(),
            self._drowsy_code, mask, self._drowsy_scale, self._drowsy_prepared)
        dense = self.macs * x.shape[0] // self.out_shapes[0][0]
        self.run_counts = {"macs": macs, "macs_skipped": dense - macs, "outputs_computed": computed}
        return [y.reshape((x.shape[0],) + tuple(self.out_shapes[0][1:]))]

    def cost(self, shapes):
        c = super().cost(shapes)
        c.macs = self.macs
        return c
