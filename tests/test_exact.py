"""Exactness against onnxruntime: every hand-built case at batch 1 and 3, and the real
architectures of the onnx wheel with random, well-scaled weights."""

from __future__ import annotations

import numpy as np
import pytest

import aipnet
from cases import CASES
from light_models import LIGHT_MODELS, randomized_light_model
from util import assert_close, ort_run


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_case_matches_onnxruntime(case, batch):
    model = case.model()
    feeds = case.feeds(batch)
    ref = ort_run(model, feeds)
    sess = aipnet.Session(aipnet.load(model))
    out = sess.run(feeds)
    outs = list(out.values()) if isinstance(out, dict) else [out]
    for got, want in zip(outs, ref):
        assert_close(got, want, case.name)


@pytest.mark.parametrize("name", LIGHT_MODELS)
def test_light_model_matches_onnxruntime(name):
    model, feeds = randomized_light_model(name)
    ref = ort_run(model, feeds)[0]
    got = aipnet.Session(aipnet.load(model)).run(feeds)
    assert_close(got, ref, name)
    # random weights must make the output informative, or the comparison proves little
    assert np.std(ref) > 1e-3 * np.max(np.abs(ref)), f"{name}: near-constant reference output"


def test_stats_follow_the_contract():
    case = next(c for c in CASES if c.name == "small_cnn")
    sess = aipnet.Session(aipnet.load(case.model()))
    sess.run(case.feeds(2))
    st = sess.stats
    assert st["traffic_source"] == "analytic"
    keys = {"name", "op", "macs", "macs_skipped", "weight_bytes_read", "weight_bytes_total",
            "act_bytes_read", "act_bytes_written", "outputs", "outputs_refined", "time_s"}
    assert all(keys <= set(layer) for layer in st["layers"])
    convs = [layer for layer in st["layers"] if layer["op"] == "Conv"]
    # conv1: 2 images x 8 outputs x 16x16 x (3x5x5) MACs; BN folded into conv2, relu fused
    assert convs[0]["macs"] == 2 * 8 * 16 * 16 * 75
    assert convs[0]["activation"] == "relu"
    assert [layer["op"] for layer in st["layers"]].count("BatchNormalization") == 0
    assert st["total"]["macs"] == sum(layer["macs"] for layer in st["layers"])
    fc = [layer for layer in st["layers"] if layer["op"] == "Gemm"]
    assert fc[0]["weight_bytes_read"] == (32 * 256 + 32) * 4
