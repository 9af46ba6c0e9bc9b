"""Simulated DRAM traffic (aipnet.simulate, `aipnet bench --simulate`): the cachegrind
parser, the attribution to engine functions and FC/conv, the LLC option, the knob
flags, and one small end-to-end cachegrind run (small model, small LLC: seconds)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import onnx
import pytest

from aipnet import simulate
from aipnet.errors import AipnetError, KnobError
from cases import CASES

CG = """desc: I1 cache:         32768 B, 64 B, 8-way associative
desc: D1 cache:         32768 B, 64 B, 8-way associative
desc: LL cache:         1048576 B, 64 B, 16-way associative
cmd: aipnet-run m.aipn x.npy y.npy --repeat 2
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
fl=/src/csrc/gemm.c
fn=fc_rows_avx2
10 5 0 0 100 50 40 1 1 2
11 1
fn=gemm_block_avx2
20 5 0 0 10 5 3 0 0 1
fl=/usr/lib/gcc/x86_64-linux-gnu/12/include/fmaintrin.h
fn=gemm_block_avx2
30 1 0 0 4 4 4
fl=/src/csrc/aip.c
fn=aip_approx.constprop.0
5 1 0 0 9 9 7 1 1 1
fl=/src/csrc/pool.c
fn=max_task
1 1 0 0 2 2 2
fl=./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S
fn=__memcpy_avx_unaligned_erms
7 1 0 0 3 3 3 3 3 3
summary: 74 14 0 0 128 73 59 5 5 7
"""
SRCS = ["/src/csrc/gemm.c", "/src/csrc/aip.c", "/src/csrc/pool.c", "/src/csrc/conv.c"]


def test_parse_cachegrind_sums_lines_and_pads_omitted_zeros():
    p = simulate.parse_cachegrind(CG)
    assert p["events"][5] == "DLmr" and p["desc"]["LL cache"].startswith("1048576 B")
    fc = p["functions"][("/src/csrc/gemm.c", "fc_rows_avx2")]
    assert fc["Ir"] == 6 and fc["DLmr"] == 40 and fc["DLmw"] == 2 and fc["Dw"] == 1
    inl = p["functions"][("/usr/lib/gcc/x86_64-linux-gnu/12/include/fmaintrin.h", "gemm_block_avx2")]
    assert inl["DLmr"] == 4 and inl["DLmw"] == 0
    assert p["summary"]["DLmr"] == 73
    with pytest.raises(AipnetError):
        simulate.parse_cachegrind("fn=x\n1 2 3\n")


def test_attribute_counts_engine_functions_by_category_and_leaves_libc_out():
    p = simulate.parse_cachegrind(CG)
    a = simulate.attribute(p, SRCS, 64)
    assert a["fc"] == (40 + 2 + 7 + 1) * 64             # fc_rows_avx2 + aip.c
    assert a["conv"] == (3 + 1 + 4) * 64                 # gemm_block_avx2, incl. its inlined intrinsics
    assert a["other"] == 2 * 64                          # max_task
    assert a["outside_engine"] == (3 + 3) * 64           # memcpy: reported apart, not counted
    assert a["ll_read_misses"] == 40 + 3 + 4 + 7 + 2 and a["ll_write_misses"] == 2 + 1 + 1
    assert list(a["by_function"])[0] == "gemm.c:fc_rows_avx2"
    # steady state: a profile minus itself is nothing
    z = simulate.attribute(p, SRCS, 64, minus=p)
    assert z["fc"] == z["conv"] == z["other"] == z["outside_engine"] == 0 and z["by_function"] == {}


def test_category_and_engine_files():
    assert simulate.category("/x/aip.c", "anything") == "fc"
    assert simulate.category("/x/gemm.c", "fc_rows_avx2") == "fc"
    assert simulate.category("/x/gemm.c", "gemm_block_avx2") == "conv"
    assert simulate.category("/x/conv.c", "im2col_task.part.0") == "conv"
    assert simulate.category("/x/conv_panels.c", "panel_task") == "conv"
    assert simulate.category("/x/drowsy_neuron.c", "neuron_item.constprop.0") == "conv"
    assert simulate.category("/x/ops.c", "run_gemm") == "fc"
    assert simulate.category("/x/pool.c", "max_task") == "other"
    assert simulate.is_engine_file("/src/csrc/gemm.c", SRCS) and simulate.is_engine_file("gemm.c", SRCS)
    assert not simulate.is_engine_file("/usr/include/stdlib.h", SRCS)
    assert not simulate.is_engine_file("./stdlib/gemm.c", SRCS)


def test_parse_llc():
    assert simulate.parse_llc(None) == simulate.LLC(1048576, 16, 64)
    assert simulate.parse_llc("512K,8,64") == simulate.LLC(524288, 8, 64)
    assert simulate.parse_llc("2M,16,128").flag == "--LL=2097152,16,128"
    for bad in ("1048576,16", "1M,16,60", "1000,16,64", "x,1,64", "0,1,64"):
        with pytest.raises(KnobError):
            simulate.parse_llc(bad)


def test_runner_flags_refuse_knobs_the_c_runtime_lacks():
    assert simulate.runner_flags({"aip": True, "aip_threshold": 0.0}, ["--aip", "--aip-threshold"]) == [
        "--aip", "--aip-threshold", "0.0"]
    assert simulate.runner_flags({"aip_skip_zeros": False}, ["--aip-skip-zeros"]) == ["--no-aip-skip-zeros"]
    assert simulate.runner_flags({"aip_fraction": 0.1, "aip_policy": "stride"}, []) == []  # packing knobs
    with pytest.raises(KnobError, match="drowsy"):
        simulate.runner_flags({"drowsy": 0.3}, ["--aip"])


needs_valgrind = pytest.mark.skipif(shutil.which("valgrind") is None or shutil.which("make") is None
                                    or simulate.csrc_dir() is None,
                                    reason="valgrind, make or the C sources are absent")


@needs_valgrind
def test_cli_simulate_small_model(tmp_path):
    case = next(c for c in CASES if c.name == "small_cnn")
    path = tmp_path / "m.onnx"
    onnx.save(case.model(), path)
    # a 64 KiB LLC: the model's 34 KB of FC weights and its conv working set do not both fit
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "bench", str(path), "--simulate", "--llc", "65536,8,64",
                        "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["source"] == "simulated" and res["llc"] == {"bytes": 65536, "ways": 8, "line": 64}
    v = res["variants"][0]
    assert v["name"] == "exact" and v["source"] == "simulated" and v["analytic"]["source"] == "analytic"
    for k in ("dram_bytes", "fc_dram_bytes", "conv_dram_bytes"):
        assert isinstance(v[k], int) and v[k] % 64 == 0
    assert v["dram_bytes"] == v["fc_dram_bytes"] + v["conv_dram_bytes"] + v["other_dram_bytes"]
    an = v["analytic"]["fc_weight_bytes_read"]
    assert an > 0 and 0.85 * an <= v["fc_dram_bytes"] <= 1.15 * an + 4096
    assert v["conv_dram_bytes"] > 0


@needs_valgrind
def test_runner_takes_the_drowsy_knobs(tmp_path):
    """aipnet-run implements DrowsyNet (csrc/drowsy.c): its flags, the seed included."""
    supported = simulate.runner_knob_flags(simulate.build_runner())
    assert simulate.runner_flags({"drowsy": 0.3, "drowsy_granularity": "tile", "drowsy_rescale": False, "seed": 4},
                                 supported) == ["--drowsy", "0.3", "--drowsy-granularity", "tile",
                                                "--no-drowsy-rescale", "--seed", "4"]


@needs_valgrind
def test_cli_simulate_refuses_a_config_knob_the_c_runtime_lacks_before_simulating(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"drowsy": 0.3, "layers": {"Conv_0": {"drowsy": 0.5}}}')
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "bench", str(simulate.csrc_dir() / "tests" / "small_cnn.aipn"),
                        "--simulate", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and "layers" in r.stderr and "does not implement" in r.stderr
