"""What every operator implementation provides, and helpers to read attributes.

An op implementation is built once per (node, input shapes) when a session plans a run:
its constructor validates attributes against the shapes, resolves padding and axes, and
computes output shapes; ``run`` then only computes. Constant inputs (weights) are given
to the constructor so that it can pre-arrange them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import InputError, UnsupportedAttributeError
from ..graph import Node

Shape = tuple[int, ...]


@dataclass
class Cost:
    """Analytic cost of one exact execution: what the kernel does for these shapes."""

    macs: int = 0
    weight_bytes: int = 0
    act_bytes_read: int = 0
    act_bytes_written: int = 0
    outputs: int = 0


class OpImpl(ABC):
    """Base class. Subclasses set ``op`` and implement ``__init__`` and ``run``.

    Attributes set by the constructor:
        out_shapes: shapes of the outputs.
        weight_inputs: indices of inputs that are weights (counted as weight bytes).
    """

    op: ClassVar[str] = ""
    #: threads the kernels may use (set by the planner from the session's knob)
    threads: int = 1
    #: the session's approximation knobs (set by the planner; None means exact)
    knobs: Any = None
    #: the op's role in the graph where a technique needs it (AIP: relu/final/dense)
    graph_role: str | None = None
    #: counts a run measured itself (macs_skipped, outputs_refined, weight_bytes_read...):
    #: set by ``run`` in approximate kernels, they override the analytic cost
    run_counts: dict[str, int] | None = None
    #: ops whose outputs can be computed at plan time from constant inputs only
    foldable: ClassVar[bool] = True

    def __init__(self, node: Node, shapes: Sequence[Shape | None], consts: Sequence[np.ndarray | None], opset: int):
        self.node = node
        self.opset = opset
        self.out_shapes: list[Shape] = []
        self.weight_inputs: tuple[int, ...] = ()

    # -- attribute helpers -------------------------------------------------------
    def attr(self, key: str, default: Any = None) -> Any:
        return self.node.attrs.get(key, default)

    def bad_attr(self, key: str, value: Any, why: str) -> UnsupportedAttributeError:
        return UnsupportedAttributeError(
            f"node {self.node.name!r} ({self.node.op}): attribute {key}={value!r} is not supported: {why}"
        )

    def bad_input(self, why: str) -> InputError:
        return InputError(f"node {self.node.name!r} ({self.node.op}): {why}")

    def configure(self, threads: int, knobs: Any) -> None:
        """Called once by the planner after construction. Approximate variants override
        it to arrange their weights (e.g. AIP packing) for the session's knobs."""
        self.threads = threads
        self.knobs = knobs

    # -- execution ----------------------------------------------------------------
    @abstractmethod
    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Compute the outputs from the inputs (weights included, in node order)."""

    def cost(self, shapes: Sequence[Shape | None]) -> Cost:
        """Default cost: read inputs, write outputs, no MACs."""
        read = sum(_nbytes(s) for i, s in enumerate(shapes) if s is not None and i not in self.weight_inputs)
        wbytes = sum(_nbytes(shapes[i]) for i in self.weight_inputs if i < len(shapes) and shapes[i] is not None)
        written = sum(_nbytes(s) for s in self.out_shapes)
        return Cost(0, wbytes, read, written, sum(int(np.prod(s)) for s in self.out_shapes))


def _nbytes(shape: Shape) -> int:
    return 4 * int(np.prod(shape)) if shape is not None else 0


def norm_axis(impl: OpImpl, axis: int, rank: int, key: str = "axis") -> int:
    """Resolve a possibly negative axis, or raise naming the attribute."""
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise impl.bad_attr(key, axis, f"out of range for rank {rank}")
    return a
