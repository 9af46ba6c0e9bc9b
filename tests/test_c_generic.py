"""The C runtime's portable kernels (what AArch64 and x86 CPUs without AVX2 + FMA run),
checked on this machine: the C DrowsyNet and panel tests rerun in a subprocess with
AIPNET_C_GENERIC=1, which turns the AVX2 dispatch off (read once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_generic_c_kernels_pass_the_c_drowsy_tests():
    env = dict(os.environ, AIPNET_C_GENERIC="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                        str(TESTS / "test_c_drowsy.py"), str(TESTS / "test_drowsy_panels.py"), "-k", "not huge"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert " passed" in r.stdout
