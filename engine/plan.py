"""Planning: bind every node to an op implementation for one set of input shapes.

A plan is made once per distinct input shape (a session caches them). While planning,
nodes whose inputs are all known (weights, or values computed from shapes such as the
Shape -> Gather -> Concat -> Reshape chains exporters write) are evaluated once and
become constants; the rest become steps that run on every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .aip import fc_roles
from .errors import AipnetError, ModelError
from .graph import Graph, Node
from .ops.base import Cost, OpImpl, Shape
from .registry import lookup


@dataclass
class Step:
    node: Node
    impl: OpImpl
    cost: Cost
    weight_bytes_total: int
    #: names whose buffers can be released after this step (their last reader)
    release: list[str] = field(default_factory=list)


@dataclass
class Plan:
    steps: list[Step]
    consts: dict[str, np.ndarray]
    shapes: dict[str, Shape]
    outputs: list[str]


def make_plan(g: Graph, input_shapes: dict[str, Shape], backend: str = "numba",
              input_values: dict[str, np.ndarray] | None = None, threads: int = 1,
              knobs: Any = None) -> Plan:
    """Plan ``g`` for the given input shapes (names of graph inputs -> shapes).

    ``input_values`` are small integer inputs (shapes, axes, indices) whose values the
    plan may depend on, as if they were constants.
    """
    consts: dict[str, np.ndarray] = dict(g.initializers)
    consts.update(input_values or {})
    shapes: dict[str, Shape] = {k: tuple(v.shape) for k, v in consts.items()}
    shapes.update({k: tuple(v) for k, v in input_shapes.items()})
    steps: list[Step] = []
    roles = fc_roles(g) if any(n.op == "AipFC" for n in g.nodes) or getattr(knobs, "aip", False) else {}
    for node in g.nodes:
        impl_cls = lookup(node.op, backend, node.name)
        in_shapes = [shapes.get(n) if n else None for n in node.inputs]
        for n, s in zip(node.inputs, in_shapes):
            if n and s is None:
                raise ModelError(f"node {node.name!r} reads {n!r}, which is not computed before it")
        in_consts = [consts.get(n) if n else None for n in node.inputs]
        impl = impl_cls(node, in_shapes, in_consts, g.opset)
        impl.graph_role = roles.get(node.name)
        impl.configure(threads, knobs.for_layer(node.name) if knobs is not None else None)
        const_ins = all(c is not None for n, c in zip(node.inputs, in_consts) if n)
        if impl.foldable and (const_ins or node.op == "Shape"):
            outs = impl.run(in_consts)
            for name, val in zip(node.outputs, outs):
                if name:
                    consts[name] = np.asarray(val)
                    shapes[name] = tuple(np.shape(val))
            continue
        for name, s in zip(node.outputs, impl.out_shapes):
            if name:
                shapes[name] = tuple(int(d) for d in s)
        cost = impl.cost(in_shapes)
        wtotal = sum(int(consts[n].nbytes) for n in node.inputs if n in consts and consts[n].dtype.kind == "f")
        steps.append(Step(node, impl, cost, wtotal))
    _mark_releases(steps, set(g.outputs))
    missing = [o for o in g.outputs if o not in shapes]
    if missing:
        raise ModelError(f"graph outputs {missing} are never computed")
    return Plan(steps, consts, shapes, list(g.outputs))


def _mark_releases(steps: Sequence[Step], keep: set[str]) -> None:
    last: dict[str, int] = {}
    for i, st in enumerate(steps):
        for n in st.node.inputs:
            if n:
                last[n] = i
    for n, i in last.items():
        if n not in keep:
            steps[i].release.append(n)


def plan_or_raise(g: Graph, input_shapes: dict[str, Shape], backend: str = "numba",
                  input_values: dict[str, np.ndarray] | None = None, threads: int = 1,
                  knobs: Any = None) -> Plan:
    """make_plan, with numpy errors from a malformed model turned into AipnetError."""
    try:
        return make_plan(g, input_shapes, backend, input_values, threads, knobs)
    except AipnetError:
        raise
    except (ValueError, IndexError, TypeError) as exc:
        raise ModelError(f"cannot plan the model for input shapes {input_shapes}: {exc}") from None
