"""Hardware performance counters (csrc/perf.c, aipnet.counters, `aipnet bench --counters`).

The development VMs have no PMU, so the unavailable path is the real path there: it must
say why (errno and meaning), point to --simulate, and carry no numbers. Where a machine
does count, the same tests check that the counts are there and labelled hw. The kernel's
software events check the plumbing (threads, start/stop, read) on any Linux machine.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

import aipnet
from aipnet import counters, native
from cases import CASES

pytestmark = pytest.mark.skipif(not native.available(), reason="the C extension is not built")


def _busy(n=200_000):
    s = 0
    for i in range(n):
        s += i
    return s


def test_hw_counters_count_or_say_why_not():
    rep = counters.measure(_busy)
    assert rep["source"] == "hw" and [e["name"] for e in rep["events"]][:2] == ["cycles", "instructions"]
    assert all(e["source"] == "hw" for e in rep["events"])
    if rep["available"]:
        cyc, ins = rep["events"][0]["value"], rep["events"][1]["value"]
        assert cyc > 0 and ins > 100_000  # the loop above runs far more instructions than that
    else:
        for e in rep["events"]:
            if e["value"] is None:
                assert e["errno"] > 0 and errno.errorcode[e["errno"]] in e["error"]
        if not any(e["value"] is not None for e in rep["events"]):
            assert "--simulate" in rep["message"] and "not available" in rep["message"]
            assert errno.errorcode[rep["events"][0]["errno"]] in rep["message"]


def test_software_events_count_every_thread_of_a_c_session():
    model = aipnet.load(onnx_small())
    sess = native.NativeSession(model, threads=2)
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    sess.run([x])
    pc = counters.PerfCounters(software=True)
    assert pc.source == "sw"
    with pc:
        for _ in range(5):
            sess.run([x])
        _busy()
    rep = pc.report
    assert rep["source"] == "sw" and rep["available"], rep
    assert rep["threads_counted"] >= 2  # the caller and the pool's worker
    ev = {e["name"]: e for e in rep["events"]}
    assert ev["task_clock_ns"]["value"] > 0 and ev["task_clock_ns"]["source"] == "sw"
    assert ev["task_clock_ns"]["time_enabled_ns"] >= ev["task_clock_ns"]["time_running_ns"] > 0


def onnx_small():
    case = next(c for c in CASES if c.name == "small_cnn")
    return case.model()


def test_parse_counts_labels_partial_and_multiplexed_counts():
    rep = counters.parse_counts(["cycles", "instructions", "llc_loads", "llc_misses"], [100, 200, 0, 0],
                                [0, 0, errno.ENOENT, errno.ENOENT], [10, 10, 0, 0], [10, 5, 0, 0], 2)
    ev = rep["events"]
    assert rep["available"] is False and rep["threads_counted"] == 2
    assert ev[0]["value"] == 100 and not ev[0]["multiplexed"]
    assert ev[1]["value"] == 200 and ev[1]["multiplexed"]  # raw, not scaled by 10/5
    assert ev[2]["value"] is None and "ENOENT" in ev[2]["error"] and "PMU" in ev[2]["error"]
    assert "llc_loads (ENOENT)" in rep["message"] and "not estimated" in rep["message"]
    assert "multiplexed" in rep["message"]
    text = counters.format_report(rep, runs=2)
    assert "50  (hw) per run" in text and "100  (hw) per run" in text and "not counted (hw unavailable: ENOENT)" in text


def test_parse_counts_all_counted_and_none_counted():
    ok = counters.parse_counts(["a", "b"], [1, 2], [0, 0], [5, 5], [5, 5], 1)
    assert ok["available"] and ok["message"] == ""
    none = counters.parse_counts(["a", "b"], [7, 7], [errno.EACCES, errno.EACCES], [0, 0], [0, 0], 1)
    assert not none["available"] and all(e["value"] is None for e in none["events"])
    assert "perf_event_paranoid" in none["message"] and "--simulate" in none["message"]
    assert "7" not in counters.format_report(none).split("not counted")[0]  # no number printed for a failed event


def test_explain_names_errno_and_meaning():
    for code in (errno.ENOENT, errno.EACCES, errno.ENOSYS, errno.EOPNOTSUPP):
        text = counters.explain(code)
        assert text.startswith(errno.errorcode[code]) and ":" in text
    assert "errno 12345" in counters.explain(12345)


def test_cli_bench_counters_json(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(onnx_small(), path)
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "bench", str(path), "--counters", "--backend", "c",
                        "--repeat", "2", "--warmup", "1", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["source"] == "hw" and rep["runs"] == 2 and rep["backend"] == "c"
    assert all(e["source"] == "hw" for e in rep["events"])
    if not rep["available"]:
        assert "--simulate" in rep["message"] or any(e["value"] is not None for e in rep["events"])
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "bench", str(path), "--counters", "--backend", "c",
                        "--repeat", "1", "--warmup", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "(hw" in r.stdout and "cycles" in r.stdout
