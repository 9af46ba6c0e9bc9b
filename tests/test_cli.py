"""The `aipnet` command line: run, info, bench, demo."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx

import aipnet
from cases import CASES


def cli(*args):
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _model(tmp_path):
    case = next(c for c in CASES if c.name == "small_cnn")
    path = tmp_path / "m.onnx"
    onnx.save(case.model(), path)
    return case, path


def test_run_writes_the_session_output_and_stats(tmp_path):
    case, path = _model(tmp_path)
    x = case.feeds(2)["x"]
    np.save(tmp_path / "x.npy", x)
    cli("run", path, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--stats", tmp_path / "s.json")
    y = np.load(tmp_path / "y.npy")
    np.testing.assert_array_equal(y, aipnet.Session(aipnet.load(path)).run(x))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["traffic_source"] == "analytic"
    assert stats["total"]["macs"] > 0 and len(stats["layers"]) >= 5


def test_info_table_and_json(tmp_path):
    _, path = _model(tmp_path)
    text = cli("info", path)
    assert "Conv+Relu" in text and "total" in text and "analytic" in text
    info = json.loads(cli("info", path, "--json"))
    conv1 = info["layers"][0]
    assert conv1["output_shape"] == [1, 8, 16, 16]
    assert conv1["params"] == 8 * 3 * 25 + 8
    assert info["total"]["macs"] == sum(layer["macs"] for layer in info["layers"])


def test_info_builtin_vggf():
    info = json.loads(cli("info", "vggf", "--json"))
    fc = [layer for layer in info["layers"] if layer["op"].startswith("Gemm")]
    assert [layer["params"] for layer in fc] == [9216 * 4096 + 4096, 4096 * 4096 + 4096, 4096 * 1000 + 1000]


def test_bench_json(tmp_path):
    _, path = _model(tmp_path)
    res = json.loads(cli("bench", path, "--repeat", "3", "--warmup", "1", "--threads", "1", "--json"))
    assert set(res["median_s"]) == {"aipnet", "onnxruntime"}
    assert res["ratio"] > 0 and "Conv" in res["op_split_s"]


def test_demo_end_to_end(tmp_path):
    out = cli("demo", "--limit", "40", "--out", tmp_path)
    assert "exact" in out and "AIP" in out and "DrowsyNet uniform" in out
    assert (tmp_path / "aipnet_demo_tradeoff.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "aipnet_demo.json").read_text())["rows"]
    exact, aip = rows[0], rows[1]
    assert aip["fc_bytes"] < 0.5 * exact["fc_bytes"]
    assert all(r["conv_macs"] < exact["conv_macs"] for r in rows if r["setting"].startswith("DrowsyNet"))
    # the shipped per-layer DrowsyNet setting (aipnet tune, 3-point budget) skips over half the conv MACs
    tuned = [r for r in rows if r["setting"].startswith("DrowsyNet tuned")]
    assert len(tuned) == 1 and tuned[0]["conv_macs"] < 0.5 * exact["conv_macs"]
