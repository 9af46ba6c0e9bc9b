"""Models that ship with aipnet or are built on demand, usable by name anywhere a
model path is accepted (``aipnet info vggf``, ``aipnet.load("reference")``).

- ``reference``: the trained Fashion-MNIST CNN shipped in ``aipnet/models``.
- ``reference-aip``: the same model packed for AIP (importance subsets of 1/16 of each
  FC layer's inputs, calibrated on 2,000 training images, stored theta 0), made by
  ``aipnet convert reference -o engine/models/reference-aip.aipn --aip-policy importance
  --calib-data default``.
- ``vggf``: a VGG-f (CNN-F) shaped ImageNet network with random, well-scaled weights,
  built in memory: the shape that matters for speed and traffic, no download needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MODELS_DIR = Path(__file__).parent / "models"


def _conv(name, x, cin, cout, k, stride, pad, rng, nodes, inits):
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.01).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [name], name=name,
                                  kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
    nodes.append(helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"))
    return f"{name}.relu"


def _fc(name, x, k, n, rng, nodes, inits, relu=True):
    w = (rng.standard_normal((n, k)) * np.sqrt(2.0 / k)).astype(np.float32)
    b = (rng.standard_normal(n) * 0.01).astype(np.float32)
    inits += [numpy_helper.from_array(w, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    nodes.append(helper.make_node("Gemm", [x, f"{name}.w", f"{name}.b"], [name], name=name, transB=1))
    if not relu:
        return name
    nodes.append(helper.make_node("Relu", [name], [f"{name}.relu"], name=f"{name}.relu"))
    return f"{name}.relu"


def vggf_onnx(seed: int = 0, fc_only: bool = False, conv_only: bool = False) -> onnx.ModelProto:
    """CNN-F (Chatfield et al. 2014, "VGG-f"): conv 11x11/4 64, LRN, pool, 5x5 256, LRN,
    pool, three 3x3 256, pool, FC 9216-4096-4096-1000, softmax; input 1x3x224x224.

    ``fc_only`` gives just the FC stack (input 9216); ``conv_only`` the conv stack
    (output 256x6x6).
    """
    rng = np.random.default_rng(seed)
    nodes: list = []
    inits: list = []
    if fc_only:
        x = "input"
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 9216])
    else:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])
        x = _conv("conv1", "input", 3, 64, 11, 4, 0, rng, nodes, inits)
        nodes.append(helper.make_node("LRN", [x], ["lrn1"], name="lrn1", size=5, alpha=1e-4, beta=0.75, bias=2.0))
        nodes.append(helper.make_node("MaxPool", ["lrn1"], ["pool1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]))
        x = _conv("conv2", "pool1", 64, 256, 5, 1, 2, rng, nodes, inits)
        nodes.append(helper.make_node("LRN", [x], ["lrn2"], name="lrn2", size=5, alpha=1e-4, beta=0.75, bias=2.0))
        nodes.append(helper.make_node("MaxPool", ["lrn2"], ["pool2"], name="pool2", kernel_shape=[3, 3], strides=[2, 2]))
        x = _conv("conv3", "pool2", 256, 256, 3, 1, 1, rng, nodes, inits)
        x = _conv("conv4", x, 256, 256, 3, 1, 1, rng, nodes, inits)
        x = _conv("conv5", x, 256, 256, 3, 1, 1, rng, nodes, inits)
        nodes.append(helper.make_node("MaxPool", [x], ["pool5"], name="pool5", kernel_shape=[3, 3], strides=[2, 2]))
        x = "pool5"
        if not conv_only:
            nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
            x = "flat"
    if not conv_only:
        x = _fc("fc6", x, 9216, 4096, rng, nodes, inits)
        x = _fc("fc7", x, 4096, 4096, rng, nodes, inits)
        x = _fc("fc8", x, 4096, 1000, rng, nodes, inits, relu=False)
        nodes.append(helper.make_node("Softmax", [x], ["prob"], name="prob", axis=1))
        out = helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1000])
    else:
        out = helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 256, 6, 6])
    name = "vggf_fc" if fc_only else "vggf_conv" if conv_only else "vggf"
    graph = helper.make_graph(nodes, name, [inp], [out], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="aipnet")


BUILDERS = {
    "vggf": lambda: vggf_onnx(),
    "vggf-fc": lambda: vggf_onnx(fc_only=True),
    "vggf-conv": lambda: vggf_onnx(conv_only=True),
}


def builtin_names() -> list[str]:
    return sorted(set(BUILDERS) | {p.stem for p in MODELS_DIR.glob("*.onnx")} | {p.stem for p in MODELS_DIR.glob("*.aipn")})


def resolve(name: str) -> Path | onnx.ModelProto | None:
    """The shipped file or built model for a built-in name, or None if not a name."""
    for suffix in (".onnx", ".aipn"):
        shipped = MODELS_DIR / f"{name}{suffix}"
        if "/" not in name and shipped.exists():
            return shipped
    if name in BUILDERS:
        return BUILDERS[name]()
    return None
