"""Config files: parsing, errors, per-layer knobs, and flags overriding them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import aipnet
from aipnet.config import read_config
from aipnet.errors import KnobError

FC1 = "/net/classifier/classifier.1/Gemm"


@pytest.fixture(scope="module")
def ref():
    return aipnet.load("reference")


@pytest.fixture(scope="module")
def x():
    from aipnet.data import load_subset, preprocess

    return preprocess(load_subset()[0][:1])


def test_toml_and_json_read_the_same(tmp_path):
    (tmp_path / "c.toml").write_text('aip = true\ndrowsy = 0.2\n[layers."a"]\naip_threshold = 0.5\n')
    (tmp_path / "c.json").write_text(json.dumps({"aip": True, "drowsy": 0.2, "layers": {"a": {"aip_threshold": 0.5}}}))
    assert read_config(tmp_path / "c.toml") == read_config(tmp_path / "c.json")


@pytest.mark.parametrize("text,needle", [
    ('aip = true\nturbo = 1\n', "unknown key"),
    ('[layers."a"]\nseed = 3\n', "per-layer keys"),
    ('layers = 3\n', "'layers' must map"),
    ('aip = \n', "not valid TOML"),
])
def test_bad_config_files(tmp_path, text, needle):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(KnobError, match=needle):
        read_config(tmp_path / "c.toml")


def test_missing_config_file(tmp_path):
    with pytest.raises(KnobError, match="no such config file"):
        read_config(tmp_path / "none.toml")


def test_bad_values_and_layer_names(ref):
    with pytest.raises(KnobError, match="drowsy"):
        aipnet.Session(ref, config={"layers": {FC1: {"drowsy": 2.0}}})
    with pytest.raises(KnobError, match="no layer named"):
        aipnet.Session(ref, config={"layers": {"fc99": {"aip_threshold": 1.0}}})


def test_per_layer_threshold_applies_to_that_layer_only(ref, x):
    base = aipnet.Session(ref, aip=True)
    base.run(x)
    tuned = aipnet.Session(ref, aip=True, config={"layers": {FC1: {"aip_threshold": -np.inf}}})
    tuned.run(x)
    b = {layer["name"]: layer for layer in base.stats["layers"]}
    t = {layer["name"]: layer for layer in tuned.stats["layers"]}
    assert t[FC1]["outputs_refined"] == 1024 > b[FC1]["outputs_refined"]


def test_keywords_override_the_file(ref, x, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"aip": True, "aip_threshold": -1e9}))
    s = aipnet.Session(ref, config=tmp_path / "c.json", aip_threshold=1e9)
    s.run(x)
    fc = [layer for layer in s.stats["layers"] if layer["name"] == FC1][0]
    assert fc["outputs_refined"] == 0


def test_cli_config_and_flag_override(tmp_path, x):
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "c.toml").write_text(f'aip = true\n[layers."{FC1}"]\naip_threshold = 1e9\n')
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "run", "reference", "--input", tmp_path / "x.npy",
                        "--config", tmp_path / "c.toml", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    layers = {layer["name"]: layer for layer in json.loads(r.stdout)["stats"]["layers"]}
    assert layers[FC1]["outputs_refined"] == 0
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "run", "reference", "--input", tmp_path / "x.npy",
                        "--config", tmp_path / "c.toml", "--no-aip", "--json"], capture_output=True, text=True)
    layers = {layer["name"]: layer for layer in json.loads(r.stdout)["stats"]["layers"]}
    assert layers[FC1]["outputs_refined"] == 0 and layers[FC1]["macs_skipped"] == 0
    (tmp_path / "bad.toml").write_text("speed = 11\n")
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "eval", "reference", "--config", tmp_path / "bad.toml"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "unknown key" in r.stderr
