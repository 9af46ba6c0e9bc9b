"""`aipnet eval` on the shipped reference model and the shipped subset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import aipnet
from aipnet import builtin
from aipnet.data import load_subset, preprocess
from aipnet.evaluate import evaluate, topk_hits

META = json.loads((builtin.MODELS_DIR / "reference.json").read_text())


@pytest.fixture(scope="module")
def subset():
    images, labels, _ = load_subset()
    return preprocess(images), labels


def test_exact_eval_reproduces_recorded_subset_accuracy(subset):
    x, y = subset
    res = evaluate(aipnet.load("reference"), x, y, batch=250, progress=False)
    rec = META["accuracy"]["test_subset"]
    assert res["images"] == rec["images"] == 1000
    assert round(res["top1"] * 1000) == rec["top1_correct"]
    assert round(res["top5"] * 1000) == rec["top5_correct"]
    assert res["agreement"] == 1.0
    assert res["stats"]["traffic_source"] == "analytic"
    # 4 batches of 250: MACs summed over runs are 1000 x the per-image count
    per_image = aipnet.Session(aipnet.load("reference"))
    per_image.run(x[:1])
    assert res["stats"]["total"]["macs"] == 1000 * per_image.stats["total"]["macs"]


def test_numba_and_c_backends_agree_on_every_prediction(subset):
    x, y = subset
    model = aipnet.load("reference")
    numba_res = evaluate(model, x, y, batch=200, progress=False, backend="numba")
    c_res = evaluate(model, x, y, batch=200, progress=False, backend="c")
    assert numba_res["predictions"] == c_res["predictions"]
    assert numba_res["top1"] == c_res["top1"]


def test_reference_is_the_shape_the_issue_asks_for():
    info = __import__("aipnet.info", fromlist=["layer_table"]).layer_table(aipnet.load("reference"))
    ops = [layer["op"] for layer in info["layers"]]
    assert sum(op.startswith("Conv") for op in ops) >= 3 and "LRN" in ops and "MaxPool" in ops
    fcs = [layer for layer in info["layers"] if layer["op"].startswith("Gemm") or layer["op"].startswith("MatMul")]
    assert len(fcs) == 3 and all(layer["output_shape"][1] >= 1024 for layer in fcs[:2])
    assert fcs[-1]["output_shape"][1] == 10 and ops[-1] == "Softmax"
    assert (builtin.MODELS_DIR / "reference.onnx").stat().st_size <= 25 * 2**20


def test_topk_hits():
    scores = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]])
    labels = np.array([2, 2])
    assert topk_hits(scores, labels, 1).tolist() == [False, False]
    assert topk_hits(scores, labels, 2).tolist() == [True, False]
    assert topk_hits(scores, labels, 5).tolist() == [True, True]


def test_eval_cli_json_on_subset(tmp_path):
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "eval", "reference", "--limit", "200", "--batch", "64",
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert {"top1", "top5", "agreement", "images", "data", "stats"} <= set(res)
    assert res["images"] == 200 and 0.8 <= res["top1"] <= 1.0
    assert res["stats"]["total"]["macs"] > 0


def test_eval_refuses_an_empty_data_dir(tmp_path):
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "eval", "reference", "--data", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("aipnet: error:") and "Traceback" not in r.stderr
