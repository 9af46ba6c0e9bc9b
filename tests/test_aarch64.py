"""The C runtime cross-built for AArch64 (`make -C csrc CROSS=aarch64-linux-gnu-`, Debian's
gcc-aarch64-linux-gnu) and run under qemu-user: the C API tests, and `aipnet-run` on a
model (exact, and AIP on a packed one) against the x86-64 build's output, with the
exactness tolerance. Skipped only where the cross compiler or qemu-aarch64 is absent
(.ci/run installs both, so CI runs it)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import aipnet
from aipnet import aipn_format
from aipnet.aip import pack_graph
from util import assert_close

CSRC = Path(__file__).resolve().parent.parent / "csrc"
CROSS = "aarch64-linux-gnu-"
XBUILD = CSRC / "build-aarch64-linux-gnu"
QEMU = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"]

pytestmark = pytest.mark.skipif(
    shutil.which(CROSS + "gcc") is None or shutil.which("qemu-aarch64") is None or shutil.which("make") is None
    or not (CSRC / "Makefile").is_file(),
    reason="no aarch64 cross toolchain or qemu-user (apt-get install gcc-aarch64-linux-gnu qemu-user)")


def _make(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["make", "-C", str(CSRC), "-s", "-j2", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def builds():
    _make(f"CROSS={CROSS}")
    _make("aipnet-run")
    return XBUILD / "aipnet-run", CSRC / "aipnet-run"


def test_cross_build_is_aarch64_and_has_no_x86_kernels(builds):
    arm, _ = builds
    head = arm.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    lib = (XBUILD / "libaipnet.a").read_bytes()
    assert b"gemm_block_avx2" not in lib and b"gemm_block_base" in lib


def test_c_api_tests_pass_under_qemu(builds):
    r = _make(f"CROSS={CROSS}", "check")
    assert "0 failures" in r.stdout + r.stderr


def _run_both(builds, model_path: Path, x: np.ndarray, tmp_path: Path, *flags: str) -> tuple[np.ndarray, np.ndarray]:
    arm, native = builds
    np.save(tmp_path / "x.npy", x)
    subprocess.run([*QEMU, str(arm), str(model_path), str(tmp_path / "x.npy"), str(tmp_path / "y_arm.npy"),
                    "--threads", "2", *flags], check=True, capture_output=True)
    subprocess.run([str(native), str(model_path), str(tmp_path / "x.npy"), str(tmp_path / "y_x86.npy"),
                    "--threads", "2", *flags], check=True, capture_output=True)
    return np.load(tmp_path / "y_arm.npy"), np.load(tmp_path / "y_x86.npy")


def test_aipnet_run_under_qemu_matches_x86(builds, tmp_path):
    model = CSRC / "tests" / "small_cnn.aipn"
    x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    arm, x86 = _run_both(builds, model, x, tmp_path)
    assert_close(arm, x86, "aarch64 vs x86-64 aipnet-run")
    assert_close(arm, aipnet.Session(aipnet.load(model)).run(x), "aarch64 aipnet-run vs the Numba engine")


def test_aip_under_qemu_matches_x86(builds, tmp_path):
    m = aipnet.load(CSRC / "tests" / "small_cnn.aipn")
    g = copy.deepcopy(m.graph)
    assert pack_graph(g, 1 / 4, "stride", 0, None, 0.0) > 0
    path = tmp_path / "aip.aipn"
    aipn_format.save(g, path, {"source": "small_cnn"})
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    for flags in ((), ("--aip",), ("--aip", "--aip-threshold", "0"), ("--aip", "--aip-mode", "approx")):
        arm, x86 = _run_both(builds, path, x, tmp_path, *flags)
        assert_close(arm, x86, f"aarch64 vs x86-64 aipnet-run {' '.join(flags)}")
