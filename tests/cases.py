"""One list of small hand-built ONNX models that covers every op and attribute aipnet
supports. Tests run each case against onnxruntime (and every backend); benchmarks can
time them. A case is defined once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


@dataclass
class Case:
    name: str
    model: Callable[[], onnx.ModelProto]
    #: input name -> shape without the batch dimension
    inputs: dict[str, tuple[int, ...]]
    tags: tuple[str, ...] = field(default_factory=tuple)

    def feeds(self, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {k: rng.standard_normal((batch, *s)).astype(np.float32) for k, s in self.inputs.items()}


def _rand(shape, seed, scale=None):
    rng = np.random.default_rng(seed)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    s = scale if scale is not None else np.sqrt(2.0 / max(fan_in, 1))
    return (rng.standard_normal(shape) * s).astype(np.float32)


def graph(nodes, inputs, output, inits=(), opset=13, out_dims=None) -> onnx.ModelProto:
    """A model with batch-first float inputs named in ``inputs`` (name -> dims w/o batch)."""
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, ["N", *v]) for k, v in inputs.items()]
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in ([output] if isinstance(output, str) else output)]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()]
    g = helper.make_graph(list(nodes), "case", ins, outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="aipnet-tests")
    m.ir_version = 8
    return m


def conv_case(name, cin, hw, cout, k, opset=13, bias=True, act=None, **attrs) -> Case:
    group = attrs.get("group", 1)
    kk = k if isinstance(k, tuple) else (k, k)
    w = _rand((cout, cin // group, *kk), 1)
    inits = {"w": w}
    ins = ["x", "w"]
    if bias:
        inits["b"] = _rand((cout,), 2, 0.1)
        ins.append("b")
    nodes = [helper.make_node("Conv", ins, ["y" if act is None else "c"], **attrs)]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    elif act == "clip6":
        nodes += [helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
        inits.update(lo=np.array(0, np.float32), hi=np.array(6, np.float32))
    shape = (cin, *hw)
    return Case(name, lambda: graph(nodes, {"x": shape}, "y", inits, opset), {"x": shape}, ("conv",))


def _unary(op, shape=(3, 4, 5), opset=13, **attrs) -> Case:
    nodes = [helper.make_node(op, ["x"], ["y"], **attrs)]
    tag = "_".join(f"{k}{v}" for k, v in attrs.items()).replace("[", "").replace("]", "").replace(", ", "-")
    name = f"{op.lower()}{'_' + tag if tag else ''}_op{opset}"
    return Case(name, lambda: graph(nodes, {"x": shape}, "y", opset=opset), {"x": shape}, (op.lower(),))


def _pool(op, shape=(3, 11, 10), opset=13, **attrs) -> Case:
    return _unary(op, shape, opset, **attrs)


def _binary(op, ashape, bshape, const_b=False) -> Case:
    nodes = [helper.make_node(op, ["a", "b"], ["y"])]
    if const_b:
        inits = {"b": _rand(bshape, 3, 1.0) + (2.0 if op == "Div" else 0.0)}
        ins = {"a": ashape}
    else:
        inits, ins = {}, {"a": ashape, "b": bshape}
    name = f"{op.lower()}_{'x'.join(map(str, ashape))}_{'x'.join(map(str, bshape))}{'_const' if const_b else ''}"
    return Case(name, lambda: graph(nodes, ins, "y", inits), ins, (op.lower(),))


def _gemm(name, k, n, trans_a=0, trans_b=0, alpha=1.0, beta=1.0, c_shape=(None,), act=None) -> Case:
    b = _rand((n, k) if trans_b else (k, n), 4)
    inits = {"B": b}
    ins = ["A", "B"]
    if c_shape != (None,):
        inits["C"] = _rand(c_shape, 5, 0.5)
        ins.append("C")
    attrs = dict(alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)
    out = "y" if act is None else "g"
    nodes = [helper.make_node("Gemm", ins, [out], **attrs)]
    if act:
        nodes.append(helper.make_node(act, ["g"], ["y"]))
    if trans_a:
        # A^T is K x batch: transpose the batch-first input inside the model
        nodes.insert(0, helper.make_node("Transpose", ["x"], ["A"], perm=[1, 0]))
    else:
        nodes.insert(0, helper.make_node("Identity", ["x"], ["A"]))
    return Case(name, lambda: graph(nodes, {"x": (k,)}, "y", inits), {"x": (k,)}, ("gemm",))


def _cnn(name, opset=13) -> Case:
    """A small VGG-f-like network: conv, relu, LRN, pool, BN, flatten via a shape chain, FCs."""
    i = {
        "w1": _rand((8, 3, 5, 5), 10), "b1": _rand((8,), 11, 0.1),
        "w2": _rand((16, 8, 3, 3), 12), "b2": _rand((16,), 13, 0.1),
        "g": np.abs(_rand((16,), 14, 1.0)) + 0.5, "be": _rand((16,), 15, 0.1),
        "mu": _rand((16,), 16, 0.1), "var": np.abs(_rand((16,), 17, 1.0)) + 0.5,
        "f1": _rand((32, 16 * 4 * 4), 18), "fb1": _rand((32,), 19, 0.1),
        "f2": _rand((10, 32), 20), "fb2": _rand((10,), 21, 0.1),
        "zero": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("LRN", ["r1"], ["l1"], size=5, alpha=1e-3, beta=0.75, bias=2.0),
        helper.make_node("MaxPool", ["l1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c2", "g", "be", "mu", "var"], ["bn2"], epsilon=1e-3),
        helper.make_node("Relu", ["bn2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["p2"], ["d2"]),
        helper.make_node("Shape", ["d2"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Concat", ["n", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["d2", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "f1", "fb1"], ["h1"], transB=1),
        helper.make_node("Relu", ["h1"], ["hr1"]),
        helper.make_node("Gemm", ["hr1", "f2", "fb2"], ["h2"], transB=1),
        helper.make_node("Softmax", ["h2"], ["y"], axis=1),
    ]
    return Case(name, lambda: graph(nodes, {"x": (3, 16, 16)}, "y", i, opset), {"x": (3, 16, 16)}, ("model",))


def _shape_ops(opset) -> Case:
    """Transpose, Squeeze, Unsqueeze, Concat, Flatten, Constant, ConstantOfShape, Identity, Gather."""
    ax = {"axes": [1]} if opset < 13 else {}
    extra = [] if opset < 13 else [helper.make_node("Constant", [], ["ax1"], value=numpy_helper.from_array(np.array([1], np.int64)))]
    sq_in = ["u"] if opset < 13 else ["u", "ax1"]
    un_in = ["x"] if opset < 13 else ["x", "ax1"]
    nodes = extra + [
        helper.make_node("Unsqueeze", un_in, ["u"], **ax),
        helper.make_node("Squeeze", sq_in, ["s"], **ax),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 3, 1]),
        helper.make_node("Constant", [], ["cs"], value=numpy_helper.from_array(np.array([1, 5, 6, 1], np.int64))),
        helper.make_node("ConstantOfShape", ["cs"], ["ones"], value=numpy_helper.from_array(np.array([1.5], np.float32))),
        helper.make_node("Mul", ["t", "ones"], ["m"]),
        helper.make_node("Identity", ["m"], ["i"]),
        helper.make_node("Concat", ["i", "t"], ["cat"], axis=-1),
        helper.make_node("Gather", ["cat", "idx"], ["gath"], axis=2),
        helper.make_node("Flatten", ["gath"], ["y"], axis=2),
    ]
    inits = {"idx": np.array([[0, 2], [1, -1]], np.int64)}
    return Case(f"shape_ops_op{opset}", lambda: graph(nodes, {"x": (1, 5, 6)}, "y", inits, opset),
                {"x": (1, 5, 6)}, ("shape",))


def _matmul_cases() -> list[Case]:
    w = _rand((12, 7), 6)
    c1 = Case("matmul_const", lambda: graph([helper.make_node("MatMul", ["x", "w"], ["y"])], {"x": (12,)}, "y", {"w": w}),
              {"x": (12,)}, ("matmul",))
    c2 = Case("matmul_batched", lambda: graph([helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": (2, 3, 4), "b": (2, 4, 5)}, "y"),
              {"a": (2, 3, 4), "b": (2, 4, 5)}, ("matmul",))
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    c3 = Case("matmul_relu", lambda: graph(nodes, {"x": (12,)}, "y", {"w": w}), {"x": (12,)}, ("matmul",))
    return [c1, c2, c3]


def _sum_case() -> Case:
    nodes = [helper.make_node("Sum", ["a", "b", "c"], ["y"])]
    ins = {"a": (3, 4), "b": (1, 4), "c": (3, 1)}
    return Case("sum_broadcast3", lambda: graph(nodes, ins, "y"), ins, ("sum",))


def _bn_unfused() -> Case:
    i = {"g": np.abs(_rand((4,), 1, 1.0)) + 0.5, "be": _rand((4,), 2, 0.1), "mu": _rand((4,), 3, 0.1),
         "var": np.abs(_rand((4,), 4, 1.0)) + 0.5}
    nodes = [helper.make_node("BatchNormalization", ["x", "g", "be", "mu", "var"], ["y"], epsilon=1e-4)]
    return Case("batchnorm_unfused", lambda: graph(nodes, {"x": (4, 5, 6)}, "y", i), {"x": (4, 5, 6)}, ("batchnorm",))


def _clip_attr_case() -> Case:
    nodes = [helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.7)]
    return Case("clip_attrs_op9", lambda: graph(nodes, {"x": (3, 4)}, "y", opset=9), {"x": (3, 4)}, ("clip",))


def _clip_input_case() -> Case:
    nodes = [helper.make_node("Clip", ["x", "lo", ""], ["y"])]
    return Case("clip_min_only_op13", lambda: graph(nodes, {"x": (3, 4)}, "y", {"lo": np.array(-0.3, np.float32)}), {"x": (3, 4)}, ("clip",))


CASES: list[Case] = [
    conv_case("conv_basic", 3, (9, 9), 4, 3),
    conv_case("conv_pads_strides", 3, (10, 9), 5, 3, strides=[2, 2], pads=[1, 1, 1, 1]),
    conv_case("conv_asym_pads", 2, (8, 7), 3, (3, 2), pads=[0, 1, 2, 0], strides=[1, 2]),
    conv_case("conv_dilations", 3, (12, 12), 4, 3, dilations=[2, 3], pads=[2, 2, 2, 2]),
    conv_case("conv_groups", 4, (7, 7), 6, 3, group=2, pads=[1, 1, 1, 1]),
    conv_case("conv_depthwise", 4, (9, 8), 4, 3, group=4, pads=[1, 1, 1, 1], strides=[2, 2]),
    conv_case("conv_depthwise_mult2", 3, (6, 6), 6, 3, group=3),
    conv_case("conv_autopad_same_upper", 3, (9, 8), 4, 4, auto_pad="SAME_UPPER", strides=[2, 2]),
    conv_case("conv_autopad_same_lower", 3, (9, 8), 4, 4, auto_pad="SAME_LOWER", strides=[2, 2]),
    conv_case("conv_autopad_valid", 3, (9, 8), 4, 3, auto_pad="VALID"),
    conv_case("conv_1x1", 8, (5, 5), 6, 1),
    conv_case("conv_no_bias_relu", 3, (8, 8), 4, 3, bias=False, act="relu"),
    conv_case("conv_relu6", 3, (8, 8), 4, 3, act="clip6", pads=[1, 1, 1, 1]),
    conv_case("conv_11x11_s4", 3, (39, 39), 8, 11, strides=[4, 4]),
    conv_case("conv1d", 3, (17,), 4, (3,), pads=[1, 2], strides=[2]),
    _gemm("gemm_fc", 20, 7, trans_b=1, c_shape=(7,)),
    _gemm("gemm_alpha_beta", 9, 5, alpha=0.5, beta=2.0, c_shape=(1, 5)),
    _gemm("gemm_transA", 6, 4, trans_a=1, c_shape=(4,)),
    _gemm("gemm_scalar_c_relu", 6, 4, c_shape=(1,), act="Relu"),
    _gemm("gemm_no_c", 8, 3, trans_b=1),
    *_matmul_cases(),
    _binary("Add", (3, 4, 5), (4, 5)), _binary("Sub", (3, 4, 5), (3, 1, 5)),
    _binary("Mul", (3, 4), (4,), const_b=True), _binary("Div", (2, 3), (2, 3), const_b=True),
    _sum_case(),
    _unary("Relu"), _unary("LeakyRelu", alpha=0.2), _unary("Sigmoid"), _unary("Tanh"),
    _clip_attr_case(), _clip_input_case(),
    _bn_unfused(),
    _pool("MaxPool", kernel_shape=[3, 3]),
    _pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    _pool("MaxPool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    _pool("MaxPool", kernel_shape=[2, 2], dilations=[2, 2]),
    _pool("MaxPool", kernel_shape=[3, 2], auto_pad="SAME_UPPER", strides=[2, 2]),
    _pool("MaxPool", shape=(3, 13), kernel_shape=[3], strides=[2]),
    _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
    _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
    _pool("AveragePool", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
    _pool("AveragePool", kernel_shape=[2, 3], strides=[2, 2], ceil_mode=1, pads=[1, 0, 0, 1], count_include_pad=1),
    _pool("AveragePool", kernel_shape=[2, 2], auto_pad="SAME_LOWER"),
    _unary("GlobalAveragePool", (3, 5, 6)), _unary("GlobalMaxPool", (3, 5, 6)),
    _unary("LRN", (7, 4, 5), size=3), _unary("LRN", (7, 4, 5), size=5, alpha=1e-2, beta=0.5, bias=1.5),
    _unary("Softmax", (3, 4, 5), opset=11), _unary("Softmax", (3, 4, 5), opset=11, axis=2),
    _unary("Softmax", (3, 4, 5)), _unary("Softmax", (3, 4, 5), axis=1),
    _unary("LogSoftmax", (3, 4, 5), opset=11), _unary("LogSoftmax", (6,), axis=-1),
    _unary("Flatten", (2, 3, 4), axis=0), _unary("Flatten", (2, 3, 4), opset=11, axis=-1),
    _shape_ops(11), _shape_ops(13),
    _cnn("small_cnn"), _cnn("small_cnn_op9", opset=9),
]
