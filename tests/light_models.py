"""The real architectures in the onnx wheel (backend/test/data/light), with their
constant (ConstantOfShape) weights replaced by random, well-scaled initializers so that
their outputs are informative."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIGHT_MODELS = sorted(p.stem.removeprefix("light_") for p in LIGHT_DIR.glob("light_*.onnx"))


def randomized_light_model(name: str, seed: int = 0):
    model = onnx.load(str(LIGHT_DIR / f"light_{name}.onnx"))
    g = model.graph
    rng = np.random.default_rng(seed)
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in g.node:
        for i, inp in enumerate(node.input):
            consumers.setdefault(inp, []).append((node, i))
    keep = []
    new_inits = []
    for node in g.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            keep.append(node)
            continue
        shape = tuple(int(d) for d in numpy_helper.to_array(inits[node.input[0]]))
        use, idx = consumers[node.output[0]][0]
        if use.op_type == "BatchNormalization":
            # scale and var positive around 1, bias and mean small
            val = rng.uniform(0.5, 1.5, shape) if idx in (1, 4) else rng.normal(0, 0.1, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            val = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        else:
            val = rng.normal(0, 0.05, shape)
        new_inits.append(numpy_helper.from_array(val.astype(np.float32), node.output[0]))
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    data = [i for i in g.input if i.name not in {t.name for t in g.initializer}][0]
    dims = [d.dim_value or 1 for d in data.type.tensor_type.shape.dim]
    x = rng.uniform(-1, 1, dims).astype(np.float32)
    return model, {data.name: x}
