"""cffi build of the C runtime as ``aipnet._native`` (``pip install .`` runs it through
setup.py's ``cffi_modules``). The cdef is the text of ``include/aipnet.h`` between its
AIPN_CDEF markers, preprocessor lines removed: declarations are written once."""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
SOURCES = ["format.c", "runtime.c", "ops.c", "threads.c", "activation.c", "conv.c", "conv_panels.c", "gemm.c", "pool.c",
           "norm.c", "softmax.c", "perf.c", "aip.c", "drowsy.c", "drowsy_neuron.c"]
CFLAGS = ["-O3", "-std=gnu11", "-pthread", "-fvisibility=hidden", "-Wno-unused-parameter"]


def cdef_text() -> str:
    text = (HERE / "include" / "aipnet.h").read_text()
    body = text.split("/* AIPN_CDEF_BEGIN */", 1)[1].split("/* AIPN_CDEF_END */", 1)[0]
    return "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("#"))


def _rel(p: Path) -> str:
    # setuptools wants sources relative to the setup.py directory (the build's cwd)
    try:
        return os.path.relpath(p)
    except ValueError:  # pragma: no cover (another drive on Windows)
        return str(p)


ffibuilder = FFI()
ffibuilder.cdef(cdef_text())
ffibuilder.set_source(
    "aipnet._native",
    '#include "aipnet.h"',
    sources=[_rel(HERE / s) for s in SOURCES],
    include_dirs=[_rel(HERE / "include"), _rel(HERE)],
    extra_compile_args=CFLAGS,
    extra_link_args=["-pthread"],
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
