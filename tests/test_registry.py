"""The registry is the list of what aipnet runs: every registered op must be exercised by
the shared case list (and so by the exactness tests and the benchmarks)."""

import aipnet
from aipnet.registry import PRIVATE_OPS, REGISTRY, lookup, supported_ops
from cases import CASES


def test_every_registered_op_has_a_case():
    used = {n.op_type for c in CASES for n in c.model().graph.node}
    missing = [op for op in supported_ops() if op not in used and op not in PRIVATE_OPS]
    assert not missing, f"ops without a test case: {missing}"


def test_lookup_unknown_op_lists_supported():
    try:
        lookup("NoSuchOp", node_name="n1")
    except aipnet.AipnetError as e:
        assert "NoSuchOp" in str(e) and "n1" in str(e) and "Conv" in str(e)
    else:
        raise AssertionError("lookup of an unknown op did not raise")


def test_registry_has_the_issue_ops():
    required = {"Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum", "Relu", "LeakyRelu", "Clip",
                "Sigmoid", "Tanh", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
                "GlobalMaxPool", "LRN", "Softmax", "LogSoftmax", "Flatten", "Reshape", "Transpose", "Concat",
                "Squeeze", "Unsqueeze", "Dropout", "Identity", "Constant", "Shape", "Gather", "ConstantOfShape"}
    assert required <= set(REGISTRY)
