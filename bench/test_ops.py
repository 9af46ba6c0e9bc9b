"""Microbenchmarks: every hand-built case (one per op and attribute family, from the
same list the tests use) on aipnet and on onnxruntime, and the VGG-f stacks.

    pytest bench --benchmark-only --benchmark-group-by=param:case

Compare the two engines' rows of a group: they ran in the same session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import aipnet

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from cases import CASES  # noqa: E402

MODELS = {c.name: c for c in CASES}


def _ort(model, threads=1):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("engine", ["aipnet", "onnxruntime"])
@pytest.mark.parametrize("case", sorted(MODELS))
def test_case(benchmark, case, engine):
    c = MODELS[case]
    model = c.model()
    feeds = c.feeds(8)
    if engine == "aipnet":
        sess = aipnet.Session(aipnet.load(model), threads=1)
        fn = lambda: sess.run(feeds)
    else:
        s = _ort(model)
        fn = lambda: s.run(None, feeds)
    benchmark(fn)


@pytest.mark.parametrize("engine", ["aipnet", "onnxruntime"])
@pytest.mark.parametrize("model", ["vggf-conv", "vggf-fc"])
def test_vggf_stack(benchmark, model, engine):
    m = aipnet.load(model)
    from aipnet.info import random_feeds

    feeds = random_feeds(m)
    if engine == "aipnet":
        sess = aipnet.Session(m, threads=1)
        fn = lambda: sess.run(feeds)
    else:
        s = _ort(m.onnx_model)
        fn = lambda: s.run(None, feeds)
    benchmark(fn)
