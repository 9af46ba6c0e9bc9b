"""The graph IR: a topologically ordered list of nodes over named float32 tensors.

It is deliberately close to ONNX (op types and attribute names are ONNX's) so that the
importer is thin and the optimiser's rewrites are easy to read. Fused activations and
other engine-private attributes start with an underscore.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Node:
    """One operator application."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"{self.op}({self.name!r}: {self.inputs} -> {self.outputs})"


@dataclass
class ValueInfo:
    """A graph input: name, declared shape (None for an unknown dim) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype


@dataclass
class Graph:
    """Nodes in execution order, constant tensors, graph inputs and outputs."""

    nodes: list[Node]
    initializers: dict[str, np.ndarray]
    inputs: list[ValueInfo]
    outputs: list[str]
    opset: int = 13
    name: str = "graph"
    metadata: dict[str, str] = field(default_factory=dict)

    def consumers(self) -> dict[str, list[Node]]:
        """Map each tensor name to the nodes that read it."""
        use: dict[str, list[Node]] = {}
        for node in self.nodes:
            for name in node.inputs:
                if name:
                    use.setdefault(name, []).append(node)
        return use

    def producer(self) -> dict[str, Node]:
        """Map each tensor name to the node that writes it."""
        return {out: node for node in self.nodes for out in node.outputs if out}

    def rename_uses(self, old: str, new: str) -> None:
        """Make every reader of ``old`` (and the graph outputs) read ``new``."""
        for node in self.nodes:
            node.inputs = [new if n == old else n for n in node.inputs]
        self.outputs = [new if n == old else n for n in self.outputs]

    def prune(self) -> None:
        """Drop nodes and initializers that no graph output depends on."""
        live = set(self.outputs)
        kept: list[Node] = []
        for node in reversed(self.nodes):
            if any(o in live for o in node.outputs):
                kept.append(node)
                live.update(n for n in node.inputs if n)
        self.nodes = kept[::-1]
        self.initializers = {k: v for k, v in self.initializers.items() if k in live}

    def param_count(self) -> int:
        return int(sum(v.size for v in self.initializers.values()))
