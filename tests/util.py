"""Helpers shared by the tests: onnxruntime reference runs and the exactness check."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

#: max abs error allowed, relative to max |reference| (issue: 1e-4)
REL_TOL = 1e-4


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close(got: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    got = np.asarray(got)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    assert err <= REL_TOL * max(scale, 1e-30), f"{what}: max abs error {err:.3g} > {REL_TOL} x {scale:.3g}"
