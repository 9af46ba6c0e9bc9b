"""Graph rewrites done once at load: constant folding, dropping no-ops, folding
BatchNormalization into its producer, and fusing activations into producers.

Every pass keeps the graph's input and output names, so a user's feeds and fetches
mean the same thing before and after.
"""

from __future__ import annotations

import numpy as np

from .errors import AipnetError
from .graph import Graph, Node
from .ops.norm import bn_scale_shift
from .registry import lookup

FUSE_INTO = ("Conv", "Gemm", "MatMul")


def optimize(g: Graph) -> Graph:
    """Run every pass in order; returns the same (mutated) graph."""
    fold_constants(g)
    drop_noops(g)
    fold_batchnorm(g)
    fuse_activations(g)
    g.prune()
    return g


def fold_constants(g: Graph) -> None:
    """Evaluate nodes whose inputs are all constants (Constant, ConstantOfShape, ...)."""
    kept: list[Node] = []
    for node in g.nodes:
        ins = [n for n in node.inputs if n]
        if all(n in g.initializers for n in ins) and node.op not in ("Dropout",):
            impl_cls = lookup(node.op, "numba", node.name)
            consts = [g.initializers.get(n) if n else None for n in node.inputs]
            shapes = [c.shape if c is not None else None for c in consts]
            try:
                impl = impl_cls(node, shapes, consts, g.opset)
                outs = impl.run(consts)
            except AipnetError:
                raise
            for name, val in zip(node.outputs, outs):
                if name:
                    g.initializers[name] = np.asarray(val)
            continue
        kept.append(node)
    g.nodes = kept


def _single_use(g: Graph, name: str, uses: dict[str, list[Node]]) -> bool:
    return len(uses.get(name, [])) == 1 and name not in g.outputs


def drop_noops(g: Graph) -> None:
    """Remove Identity and inference-mode Dropout whose result is not a graph output."""
    kept = []
    for node in g.nodes:
        extra_used = any(o for o in node.outputs[1:])
        if node.op in ("Identity", "Dropout") and not extra_used and node.outputs[0] not in g.outputs:
            if node.op == "Dropout" and len(node.inputs) > 2 and node.inputs[2]:
                mode = g.initializers.get(node.inputs[2])
                if mode is None or bool(mode):
                    kept.append(node)
                    continue
            g.rename_uses(node.outputs[0], node.inputs[0])
            continue
        kept.append(node)
    g.nodes = kept


def fold_batchnorm(g: Graph) -> None:
    """Conv/Gemm -> BatchNormalization becomes one Conv/Gemm with scaled weights."""
    producer, uses = g.producer(), g.consumers()
    removed = set()
    for bn in g.nodes:
        if bn.op != "BatchNormalization" or len([o for o in bn.outputs if o]) != 1:
            continue
        if int(bn.attrs.get("training_mode", 0)):
            continue
        src = producer.get(bn.inputs[0])
        params = [g.initializers.get(n) for n in bn.inputs[1:5]]
        if src is None or any(p is None for p in params) or not _single_use(g, bn.inputs[0], uses):
            continue
        if src.op == "Conv":
            wname = src.inputs[1]
        elif src.op == "Gemm" and int(src.attrs.get("transB", 0)) == 1 and float(src.attrs.get("alpha", 1.0)) == 1.0:
            wname = src.inputs[1]
        else:
            continue
        w = g.initializers.get(wname)
        if w is None or "_act" in src.attrs or len(uses.get(wname, [])) != 1:
            continue
        if params[0].shape != (w.shape[0],):
            continue
        scale, shift = bn_scale_shift(*params, float(bn.attrs.get("epsilon", 1e-5)))
        bias_name = src.inputs[2] if len(src.inputs) > 2 and src.inputs[2] else None
        if src.op == "Gemm" and bias_name is not None:
            b = g.initializers.get(bias_name)
            if b is None or b.size != w.shape[0] or float(src.attrs.get("beta", 1.0)) != 1.0:
                continue
        old_b = g.initializers[bias_name].reshape(-1).astype(np.float64) if bias_name else 0.0
        new_w = (w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
        new_b = (old_b * scale + shift).astype(np.float32)
        g.initializers[wname] = new_w
        new_bias = f"{src.name}__bn_bias"
        g.initializers[new_bias] = new_b
        src.inputs = src.inputs[:2] + [new_bias]
        if src.op == "Gemm":
            src.attrs["beta"] = 1.0
        src.outputs = [bn.outputs[0]]
        removed.add(id(bn))
    g.nodes = [n for n in g.nodes if id(n) not in removed]


def _activation_of(g: Graph, node: Node) -> tuple[str, list[float]] | None:
    if node.op == "Relu":
        return "relu", []
    if node.op == "LeakyRelu":
        return "leaky", [0.0, float(node.attrs.get("alpha", 0.01))]
    if node.op == "Clip":
        if g.opset < 11:
            return "clip", [float(node.attrs.get("min", -np.inf)), float(node.attrs.get("max", np.inf))]
        bounds = []
        for i, default in ((1, -np.inf), (2, np.inf)):
            name = node.inputs[i] if len(node.inputs) > i else ""
            if not name:
                bounds.append(default)
            elif name in g.initializers:
                bounds.append(float(g.initializers[name]))
            else:
                return None
        return "clip", bounds
    return None


def fuse_activations(g: Graph) -> None:
    """Relu, Clip and LeakyRelu after Conv/Gemm/MatMul run inside the producer's epilogue."""
    producer, uses = g.producer(), g.consumers()
    removed = set()
    for node in g.nodes:
        act = _activation_of(g, node)
        if act is None:
            continue
        src = producer.get(node.inputs[0])
        if src is None or src.op not in FUSE_INTO or "_act" in src.attrs:
            continue
        if not _single_use(g, node.inputs[0], uses):
            continue
        src.attrs["_act"], src.attrs["_act_params"] = act
        src.outputs = [node.outputs[0]]
        removed.add(id(node))
    g.nodes = [n for n in g.nodes if id(n) not in removed]
