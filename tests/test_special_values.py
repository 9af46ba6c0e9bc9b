"""0, -0, +inf, -inf and NaN through elementwise ops, pooling and softmax behave as in
onnxruntime: the same NaN positions, the same infinities, the same sign of zero."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import aipnet
from cases import graph
from util import ort_run

SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.5, -2.0, 3.0], dtype=np.float32)


def special_input(shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    idx = rng.choice(flat.size, size=flat.size // 2, replace=False)
    flat[idx] = rng.choice(SPECIAL, size=idx.size)
    return x


def same_values(got, ref, what, zero_sign=True):
    got = np.asarray(got)
    assert got.shape == ref.shape, what
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"{what}: NaN positions differ"
    fin = np.isfinite(ref)
    assert np.array_equal(np.isinf(got), np.isinf(ref)) and np.array_equal(got[np.isinf(ref)], ref[np.isinf(ref)]), \
        f"{what}: infinities differ"
    np.testing.assert_allclose(got[fin], ref[fin], rtol=1e-5, atol=1e-6, err_msg=what)
    zeros = ref == 0
    assert not zero_sign or np.array_equal(np.signbit(got[zeros]), np.signbit(ref[zeros])), f"{what}: sign of zero differs"


UNARY = [
    ("Relu", {}), ("LeakyRelu", {"alpha": 0.1}), ("Sigmoid", {}), ("Tanh", {}),
    ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    ("GlobalAveragePool", {}), ("GlobalMaxPool", {}),  # global max ignores NaN, as ORT
    ("Softmax", {"axis": 1}), ("LogSoftmax", {"axis": -1}),
]


@pytest.mark.parametrize("op,attrs", UNARY, ids=lambda v: v if isinstance(v, str) else "")
def test_unary_special_values(op, attrs):
    model = graph([helper.make_node(op, ["x"], ["y"], **attrs)], {"x": (3, 6, 6)}, "y")
    x = special_input((2, 3, 6, 6))
    same_values(aipnet.Session(aipnet.load(model)).run(x), ort_run(model, {"x": x})[0], op)


@pytest.mark.parametrize("attrs", [{"kernel_shape": [2, 2], "strides": [2, 2]},
                                   {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}])
def test_maxpool_special_values(attrs):
    """0, -0 and +-inf as onnxruntime. Left out: NaN, which onnxruntime's vectorised 2-D
    path keeps or drops depending on its place in the window (unlike its own 1-D and
    global max pooling, which ignore NaN, as aipnet does everywhere: see below), and the
    sign of a zero maximum, which depends on the same order (max(0, -0) is either)."""
    model = graph([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], {"x": (3, 6, 6)}, "y")
    x = special_input((2, 3, 6, 6))
    x[np.isnan(x)] = -np.inf
    same_values(aipnet.Session(aipnet.load(model)).run(x), ort_run(model, {"x": x})[0], "MaxPool", zero_sign=False)


def test_maxpool_ignores_nan():
    model = graph([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2])], {"x": (1, 2)}, "y")
    for vals in ([np.nan, 1.0], [1.0, np.nan], [np.nan, -2.0], [np.inf, np.nan]):
        x = np.array(vals, np.float32).reshape(1, 1, 2)
        same_values(aipnet.Session(aipnet.load(model)).run(x), ort_run(model, {"x": x})[0], f"MaxPool {vals}")


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Sum"])
def test_binary_special_values(op):
    model = graph([helper.make_node(op, ["a", "b"], ["y"])], {"a": (4, 8), "b": (4, 8)}, "y")
    a = special_input((2, 4, 8), 1)
    b = special_input((2, 4, 8), 2)
    same_values(aipnet.Session(aipnet.load(model)).run({"a": a, "b": b}), ort_run(model, {"a": a, "b": b})[0], op)


def test_clip_special_values():
    model = graph([helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], {"x": (4, 8)}, "y",
                  {"lo": np.array(-1, np.float32), "hi": np.array(1, np.float32)})
    x = special_input((2, 4, 8), 3)
    same_values(aipnet.Session(aipnet.load(model)).run(x), ort_run(model, {"x": x})[0], "Clip")


def test_fused_relu_special_values():
    """Relu fused into a Conv's epilogue treats NaN and -0 like the unfused op."""
    w = np.ones((2, 3, 1, 1), np.float32)
    model = graph([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
                  {"x": (3, 4, 4)}, "y", {"w": w})
    x = special_input((1, 3, 4, 4), 4)
    same_values(aipnet.Session(aipnet.load(model)).run(x), ort_run(model, {"x": x})[0], "Conv+Relu")
