"""Operator implementations; importing this package registers them all."""

from . import activation, aip_fc, conv, elementwise, gemm, norm, pool, shape_ops, softmax  # noqa: F401
