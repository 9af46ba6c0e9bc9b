"""Data movement and shape ops: Flatten, Reshape, Transpose, Concat, Squeeze,
Unsqueeze, Shape, Gather, Constant, ConstantOfShape, Identity, Dropout.

These cost no arithmetic; most are views. Shape-computing chains (Shape -> Gather ->
Concat -> Reshape) have constant inputs once input shapes are known, so the planner
evaluates them once per input shape instead of at every run.
"""

from __future__ import annotations

import numpy as np

from ..registry import register
from .base import OpImpl, norm_axis

#: a constant the model asks us to materialise may not exceed this (8 GiB of float32)
MAX_ELEMENTS = 1 << 31


def _const_input(impl: OpImpl, consts, i: int, what: str) -> np.ndarray:
    if i >= len(consts) or consts[i] is None:
        raise impl.bad_input(f"{what} (input {i}) must be a constant or computable from input shapes")
    return np.asarray(consts[i])


def _axes(impl: OpImpl, consts, opset: int, attr_until: int = 13, required: bool = False):
    if opset < attr_until:
        axes = impl.attr("axes")
    else:
        axes = _const_input(impl, consts, 1, "axes").tolist() if len(consts) > 1 and consts[1] is not None else None
        if len(impl.node.inputs) > 1 and impl.node.inputs[1] and axes is None:
            axes = _const_input(impl, consts, 1, "axes").tolist()
    if required and axes is None:
        raise impl.bad_attr("axes", None, "axes are required")
    return None if axes is None else [int(a) for a in np.atleast_1d(axes)]


@register("Flatten")
class Flatten(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = tuple(shapes[0])
        axis = int(self.attr("axis", 1))
        axis = axis + len(xs) if axis < 0 else axis
        if not 0 <= axis <= len(xs):
            raise self.bad_attr("axis", self.attr("axis"), f"out of range for rank {len(xs)}")
        self.out_shapes = [(int(np.prod(xs[:axis])), int(np.prod(xs[axis:])))]

    def run(self, inputs):
        return [inputs[0].reshape(self.out_shapes[0])]


@register("Reshape")
class Reshape(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = tuple(shapes[0])
        target = [int(v) for v in _const_input(self, consts, 1, "the target shape").reshape(-1)]
        allowzero = int(self.attr("allowzero", 0))
        out = []
        for i, v in enumerate(target):
            if v == 0 and not allowzero:
                if i >= len(xs):
                    raise self.bad_input(f"target shape {target} copies dim {i} of a rank-{len(xs)} input")
                out.append(xs[i])
            else:
                out.append(v)
        size = int(np.prod(xs))
        if out.count(-1) > 1 or any(v < -1 for v in out):
            raise self.bad_input(f"invalid target shape {target}")
        if -1 in out:
            rest = int(np.prod([v for v in out if v != -1]))
            if rest == 0 or size % rest:
                raise self.bad_input(f"cannot reshape {list(xs)} to {target}")
            out[out.index(-1)] = size // rest
        if int(np.prod(out)) != size:
            raise self.bad_input(f"cannot reshape {list(xs)} ({size} elements) to {target}")
        self.out_shapes = [tuple(out)]

    def run(self, inputs):
        return [inputs[0].reshape(self.out_shapes[0])]


@register("Transpose")
class Transpose(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = tuple(shapes[0])
        perm = self.attr("perm")
        self.perm = list(range(len(xs)))[::-1] if perm is None else [int(p) for p in perm]
        if sorted(self.perm) != list(range(len(xs))):
            raise self.bad_attr("perm", perm, f"not a permutation of {len(xs)} axes")
        self.out_shapes = [tuple(xs[p] for p in self.perm)]

    def run(self, inputs):
        return [np.ascontiguousarray(np.transpose(inputs[0], self.perm))]


@register("Concat")
class Concat(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        if "axis" not in node.attrs:
            raise self.bad_attr("axis", None, "Concat needs an axis")
        xs = [tuple(s) for s in shapes]
        rank = len(xs[0])
        self.axis = a = norm_axis(self, int(self.attr("axis")), rank)
        for s in xs:
            if len(s) != rank or s[:a] + s[a + 1:] != xs[0][:a] + xs[0][a + 1:]:
                raise self.bad_input(f"shapes {xs} do not agree off axis {a}")
        self.out_shapes = [xs[0][:a] + (sum(s[a] for s in xs),) + xs[0][a + 1:]]

    def run(self, inputs):
        return [np.concatenate(inputs, axis=self.axis)]


@register("Squeeze")
class Squeeze(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = tuple(shapes[0])
        axes = _axes(self, consts, opset)
        if axes is None:
            keep = [d for d in xs if d != 1]
        else:
            axes = {norm_axis(self, a, len(xs), "axes") for a in axes}
            for a in axes:
                if xs[a] != 1:
                    raise self.bad_input(f"cannot squeeze axis {a} of size {xs[a]}")
            keep = [d for i, d in enumerate(xs) if i not in axes]
        self.out_shapes = [tuple(keep)]

    def run(self, inputs):
        return [inputs[0].reshape(self.out_shapes[0])]


@register("Unsqueeze")
class Unsqueeze(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = list(shapes[0])
        axes = _axes(self, consts, opset, required=True)
        rank = len(xs) + len(axes)
        norm = sorted(norm_axis(self, a, rank, "axes") for a in axes)
        if len(set(norm)) != len(norm):
            raise self.bad_attr("axes", axes, "repeated axes")
        for a in norm:
            xs.insert(a, 1)
        self.out_shapes = [tuple(xs)]

    def run(self, inputs):
        return [inputs[0].reshape(self.out_shapes[0])]


@register("Shape")
class Shape(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs = tuple(shapes[0])
        start = int(self.attr("start", 0))
        end = self.attr("end")
        self.value = np.array(xs[slice(start, None if end is None else int(end))], dtype=np.int64)
        self.out_shapes = [self.value.shape]

    def run(self, inputs):
        return [self.value.copy()]


@register("Gather")
class Gather(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        xs, ids = tuple(shapes[0]), tuple(shapes[1])
        self.axis = a = norm_axis(self, int(self.attr("axis", 0)), len(xs))
        self.dim = xs[a]
        if consts[1] is not None:
            self._check(consts[1])
        self.out_shapes = [xs[:a] + ids + xs[a + 1:]]

    def _check(self, idx: np.ndarray) -> None:
        if idx.size and (idx.min() < -self.dim or idx.max() >= self.dim):
            raise self.bad_input(f"indices out of range [-{self.dim}, {self.dim - 1}]")

    def run(self, inputs):
        data, idx = inputs
        if not np.issubdtype(idx.dtype, np.integer):
            raise self.bad_input(f"indices must be integers, got {idx.dtype}")
        self._check(idx)
        return [np.take(data, np.where(idx < 0, idx + self.dim, idx), axis=self.axis)]


@register("Constant")
class Constant(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        attrs = node.attrs
        if "value" in attrs:
            v = np.asarray(attrs["value"])
        elif "value_float" in attrs:
            v = np.array(attrs["value_float"], dtype=np.float32)
        elif "value_floats" in attrs:
            v = np.array(attrs["value_floats"], dtype=np.float32)
        elif "value_int" in attrs:
            v = np.array(attrs["value_int"], dtype=np.int64)
        elif "value_ints" in attrs:
            v = np.array(attrs["value_ints"], dtype=np.int64)
        else:
            raise self.bad_attr("value", sorted(attrs), "a dense value, value_float(s) or value_int(s) is required")
        self.value = v
        self.out_shapes = [v.shape]

    def run(self, inputs):
        return [self.value]


@register("ConstantOfShape")
class ConstantOfShape(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        shape = _const_input(self, consts, 0, "shape").astype(np.int64).reshape(-1)
        if (shape < 0).any():
            raise self.bad_input(f"negative dims in {shape.tolist()}")
        if float(np.prod(shape.astype(np.float64))) > MAX_ELEMENTS:
            raise self.bad_input(f"shape {shape.tolist()} has more than {MAX_ELEMENTS} elements")
        value = np.asarray(self.attr("value", np.zeros(1, np.float32)))
        if value.size != 1:
            raise self.bad_attr("value", value, "must hold one element")
        self.value = value.reshape(())
        self.out_shapes = [tuple(int(d) for d in shape)]

    def run(self, inputs):
        return [np.full(self.out_shapes[0], self.value, dtype=self.value.dtype)]


@register("Identity")
class Identity(OpImpl):
    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        self.out_shapes = [tuple(shapes[0])]

    def run(self, inputs):
        return [inputs[0]]


@register("Dropout")
class Dropout(OpImpl):
    """Inference: the identity, and an all-true mask if that output is asked for."""

    def __init__(self, node, shapes, consts, opset):
        super().__init__(node, shapes, consts, opset)
        if opset >= 12 and len(consts) > 2 and consts[2] is not None and bool(consts[2]):
            raise self.bad_attr("training_mode", True, "aipnet runs inference only")
        self.out_shapes = [tuple(shapes[0]), tuple(shapes[0])]

    def run(self, inputs):
        return [inputs[0], np.ones(inputs[0].shape, dtype=bool)]
