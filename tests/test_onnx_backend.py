"""ONNX's own backend test suite run against aipnet: the node tests of every op aipnet
supports, and the real (light) architectures shipped in the onnx wheel.

What is excluded, and why, is listed in EXCLUDED below; nothing is skipped silently:
a test of a supported op that aipnet cannot run fails.
"""

import re

import onnx.backend.test
import pytest

from aipnet.onnx_backend import AipnetBackend

OPS = [
    "conv", "gemm", "matmul", "add", "sub", "mul", "div", "sum", "relu", "leakyrelu", "clip",
    "sigmoid", "tanh", "batchnorm", "maxpool", "averagepool", "globalaveragepool",
    "globalmaxpool", "lrn", "softmax", "logsoftmax", "flatten", "reshape", "transpose",
    "concat", "squeeze", "unsqueeze", "dropout", "identity", "constant", "constantofshape",
    "shape", "gather",
]

#: pattern -> why it is excluded
EXCLUDED = {
    r"_expanded": "decomposed into other ops (ReduceMax, Exp, ...) that aipnet does not implement",
    r"_3d|_1d_.*_3d": "3-D convolution and pooling are not supported (aipnet runs 1-D and 2-D)",
    r"test_.*_(uint8|int8|int16|int32|uint16|uint32|uint64|bfloat16|float16|double|bool)": "aipnet computes in float32",
    r"test_(conv|gemm|matmul)integer|test_qlinear": "quantised ops are not supported",
    r"test_convtranspose": "ConvTranspose is not supported",
    r"test_gather_elements|test_gathernd": "GatherElements/GatherND are other ops",
    r"test_identity_(opt|sequence)": "optional and sequence types are not supported",
    r"test_dropout_default_mask|test_dropout_.*mask|test_training_dropout": "training-mode dropout and its random mask",
    r"test_maxpool_with_argmax": "the Indices output of MaxPool is not supported",
    r"test_batchnorm_.*training": "training-mode BatchNormalization",
    r"test_constant_pad": "the Pad op is not supported (only its name starts like Constant's)",
    r"test_softmax_(functional_dim3|lastdim)": "opset 6 models; aipnet supports opsets 7 to 25",
    r"test_squeezenet": (
        "its constant 0.02 weights give ~9.5e9 logits equal up to 1 ulp, and softmax turns the "
        "last-bit difference of BLAS summation order into 0 vs 0.001; tests/test_exact.py runs "
        "squeezenet with random weights against onnxruntime instead"),
}

backend_test = onnx.backend.test.BackendTest(AipnetBackend, __name__)
for op in OPS:
    backend_test.include(rf"^test_{op}(_.*)?_cpu$")
for model in ("alexnet", "vgg19", "zfnet", "squeezenet", "resnet50", "densenet121",
              "inception_v1", "inception_v2", "shufflenet"):
    backend_test.include(rf"^test_(bvlc_)?{model}.*_cpu$")
for pattern in EXCLUDED:
    backend_test.exclude(pattern)

# Tests of ops aipnet does not implement are dropped rather than reported as thousands of
# skips; excluded tests of supported ops stay visible as skips carrying their reason.
_wanted = [re.compile(p) for p in backend_test._include_patterns]
for _items in backend_test._test_items.values():
    for _name in [n for n in _items if not any(p.search(n) for p in _wanted)]:
        del _items[_name]

globals().update(backend_test.enable_report().test_cases)
