"""`aipnet tune` and the energy model: a tiny tune finishes, respects its budget on its
calibration split, caches its evaluations, and writes a config that sessions accept."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import aipnet
from aipnet.data import load_subset, preprocess
from aipnet.energy import EnergyConstants, energy
from aipnet.errors import KnobError
from aipnet.tune import Tuner, pareto, Point


@pytest.fixture(scope="module")
def data():
    images, labels, _ = load_subset()
    return preprocess(images[:80]), labels[:80]


def test_tiny_tune_respects_budget_and_caches(data, tmp_path):
    x, y = data
    model = aipnet.load("reference")
    t = Tuner(model, x, y, budget=0.05, objective="traffic", cache_dir=tmp_path)
    res = t.run()
    assert res["calib"]["tuned"]["loss"] <= 0.05
    # the default margin keeps two standard errors of the estimate below the budget too
    tuned = res["calib"]["tuned"]
    assert res["margin"] == 2.0 and tuned["loss"] + 2 * tuned["loss_se"] <= 0.05 + 1e-12
    assert res["calib"]["tuned"]["cost"] <= res["calib"]["exact"]["cost"]
    assert res["method"] in ("greedy", "random", "uniform")
    assert min(s["cost"] for s in res["searches"].values()) == res["calib"]["tuned"]["cost"]
    # never worse than the best uniform setting on calibration
    assert res["calib"]["tuned"]["cost"] <= res["best_uniform"]["calib"]["cost"]
    assert res["images"] == {"calib": 40, "heldout": 40}
    # the chosen setting is a valid config for a session
    aipnet.Session(model, config=res["config"])
    # a second run is served from the cache
    t2 = Tuner(model, x, y, budget=0.05, objective="traffic", cache_dir=tmp_path)
    res2 = t2.run()
    assert t2.evaluations == 0 and t2.cache_hits > 0
    assert res2["config"] == res["config"]


def test_pareto_front():
    pts = [Point((0,), 0.9, 0.0, 1, 10.0), Point((1,), 0.9, 0.01, 1, 8.0), Point((2,), 0.9, 0.02, 1, 9.0),
           Point((3,), 0.9, 0.05, 1, 5.0)]
    assert [p.levels for p in pareto(pts)] == [(3,), (1,), (0,)]


def test_bad_tune_arguments(data):
    x, y = data
    model = aipnet.load("reference")
    with pytest.raises(KnobError, match="objective"):
        Tuner(model, x, y, 0.02, objective="speed")
    with pytest.raises(KnobError, match="budget"):
        Tuner(model, x, y, 1.5)
    with pytest.raises(KnobError, match="margin"):
        Tuner(model, x, y, 0.02, margin=-1)


def test_loss_standard_error_is_the_paired_one(data, tmp_path):
    """loss_se is the standard error of (exact right - setting right) per image, so a
    setting that flips no prediction has loss 0 and standard error 0."""
    x, y = data
    t = Tuner(aipnet.load("reference"), x, y, budget=0.05, objective="macs", aip=False, cache_dir=tmp_path)
    exact = t.evaluate(tuple([0] * len(t.layers)))
    assert exact.loss == 0 and exact.metrics["loss_se"] == 0
    noisy = t.evaluate(tuple([len(t.levels) and t.levels[0] - 1] * len(t.layers)))
    ex = t.exact_predictions("calib")
    _, yc = t.splits["calib"]
    assert noisy.metrics["loss_se"] > 0 or noisy.agreement == 1.0
    assert noisy.loss == pytest.approx(float((ex == yc).mean()) - noisy.top1)


def test_energy_model_counts_dram_compute_and_sram():
    stats = {"layers": [{"op": "Gemm", "weight_bytes_read": 400, "act_bytes_read": 40, "act_bytes_written": 40,
                         "macs": 100}], "total": {"weight_bytes_read": 400, "act_bytes_read": 40,
                                                  "act_bytes_written": 40, "macs": 100}}
    e = energy(stats)
    assert e["source"] == "analytic"
    assert e["dram_j"] == pytest.approx(100 * 640e-12)
    assert e["sram_j"] == pytest.approx(20 * 5e-12)
    assert e["compute_j"] == pytest.approx(100 * 4.6e-12)
    assert e["fc_j"] == pytest.approx(e["total_j"])
    c = EnergyConstants.load({"dram_pj": 100})
    assert energy(stats, c)["dram_j"] == pytest.approx(100 * 100e-12)
    with pytest.raises(KnobError, match="unknown energy constant"):
        EnergyConstants.load({"flux_pj": 1})


def test_tune_cli(tmp_path):
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "tune", "reference", "--limit", "40", "--budget", "0.1",
                        "--no-aip", "--objective", "macs", "--out", tmp_path / "c.json", "--json"],
                       capture_output=True, text=True, env={**__import__("os").environ, "AIPNET_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["calib"]["tuned"]["loss"] <= 0.1
    cfg = json.loads((tmp_path / "c.json").read_text())
    assert cfg == res["config"] and "aip" not in cfg


def test_batch_only_where_it_changes_nothing(data, tmp_path):
    """Batching would read FC weights once per batch: with AIP in the search, or an
    objective that counts bytes, every setting (exact included) runs at batch 1, so that
    exact and AIP settings are priced alike."""
    x, y = data
    model = aipnet.load("reference")
    combined = Tuner(model, x, y, 0.02, objective="energy", cache_dir=tmp_path)
    assert combined.batch_for(combined.config(tuple([0] * len(combined.layers)))) == 1
    drowsy_energy = Tuner(model, x, y, 0.02, objective="energy", aip=False, cache_dir=tmp_path)
    assert drowsy_energy.batch_for(drowsy_energy.config(tuple([1] * len(drowsy_energy.layers)))) == 1
    drowsy_macs = Tuner(model, x, y, 0.02, objective="macs", aip=False, cache_dir=tmp_path)
    assert drowsy_macs.batch_for(drowsy_macs.config(tuple([1] * len(drowsy_macs.layers)))) == 50
