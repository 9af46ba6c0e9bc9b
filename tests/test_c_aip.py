"""AIP in the C backend (csrc/aip.c, the AipFC op, Gemm layers packed at load) against the
Numba backend, which is the reference semantics: same outputs (1e-5 relative), same rows
refined, same counts."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aipnet
import aipnet.data
from aipnet import native
from aipnet.aip import pack_fc, pack_graph
from aipnet.errors import AipnetError, KnobError
from aipnet.graph import Graph, Node, ValueInfo
from aipnet.model import Model
from cases import _rand
from test_aip import fc_model, relu_input

pytestmark = pytest.mark.skipif(not native.available(), reason="aipnet._native is not built")

COUNTED = ("macs", "macs_skipped", "weight_bytes_read", "weight_bytes_total", "outputs", "outputs_refined",
           "act_bytes_read", "act_bytes_written")


def one_layer(n, kdim, f, role, bias=True, seed=0, policy="stride", theta=0.0):
    """A model of one AipFC layer whose graph gives it ``role``."""
    w = _rand((n, kdim), seed)
    pk = pack_fc(w, f, policy, seed=seed)
    inits = {"approx": pk.approx, "rest": pk.rest, "perm": pk.perm}
    ins = ["x", "approx", "rest", "perm"]
    if bias:
        inits["b"] = _rand((n,), seed + 1, 0.1)
        ins.append("b")
    attrs = {"k": pk.k, "scale": pk.scale, "policy": policy, "fraction": f, "theta": theta, "calibrated": 0}
    if role == "relu":
        attrs["_act"] = "relu"
    nodes = [Node("AipFC", "fc", ins, ["z" if role == "dense" else "y"], attrs)]
    if role == "dense":  # an unfused consumer that is not part of a top-n chain
        nodes.append(Node("Sigmoid", "sig", ["z"], ["y"]))
    g = Graph(nodes, inits, [ValueInfo("x", (None, kdim), np.dtype(np.float32))], ["y"])
    return Model(g, "<one AipFC layer>")


def both(model, x, **knobs):
    """Outputs and stats of the Numba and the C backend."""
    a = aipnet.Session(model, backend="numba", **knobs)
    b = aipnet.Session(model, backend="c", threads=2, **knobs)
    return a.run(x), a.stats, b.run(x), b.stats


def assert_same(ya, sa, yb, sb, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(yb, ya, rtol=rtol, atol=atol)
    assert [la["name"] for la in sa["layers"]] == [lb["name"] for lb in sb["layers"]]
    for la, lb in zip(sa["layers"], sb["layers"]):
        assert la["op"] == lb["op"]
        for key in COUNTED + ("aip_rows_refined", "aip_role"):
            assert la.get(key) == lb.get(key), (la["name"], key, la.get(key), lb.get(key))


# -- one layer: the property test -------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), kdim=st.integers(1, 300), f=st.sampled_from([1 / 16, 1 / 8, 0.3, 1.0]),
       theta=st.sampled_from([-np.inf, -0.5, 0.0, 0.3, np.inf, None]), batch=st.integers(1, 4),
       role=st.sampled_from(["relu", "final", "dense"]), mode=st.sampled_from(["refine", "approx"]),
       skip=st.booleans(), refine=st.integers(1, 12), bias=st.booleans(), seed=st.integers(0, 1000),
       zeros=st.sampled_from([0.0, 0.5, 0.9, 1.0]))
def test_numba_equals_c_on_one_layer(n, kdim, f, theta, batch, role, mode, skip, refine, bias, seed, zeros):
    model = one_layer(n, kdim, f, role, bias, seed, theta=0.1)
    x = relu_input((batch, kdim), seed + 2, zeros)
    ya, sa, yb, sb = both(model, x, aip=True, aip_threshold=theta, aip_refine=refine, aip_mode=mode,
                          aip_skip_zeros=skip)
    assert_same(ya, sa, yb, sb)
    layer = sb["layers"][0]
    assert layer["aip_role"] == role
    assert layer["macs"] + layer["macs_skipped"] == batch * n * kdim
    if role == "relu":  # the same rows are zero (not refined or negative)
        np.testing.assert_array_equal(yb == 0, ya == 0)


@pytest.mark.parametrize("role", ["relu", "final", "dense"])
@pytest.mark.parametrize("batch", [1, 5])
def test_theta_minus_inf_equals_dense(role, batch):
    model = one_layer(50, 200, 1 / 16, role, seed=3)
    x = relu_input((batch, 200), 4)
    exact = aipnet.Session(model, backend="c").run(x)
    sess = aipnet.Session(model, backend="c", aip=True, aip_threshold=-np.inf, aip_refine=50)
    np.testing.assert_allclose(sess.run(x), exact, rtol=1e-5, atol=1e-6)
    assert sess.stats["layers"][0]["outputs_refined"] == 50 * batch
    w = _rand((50, 200), 3)
    dense = x.astype(np.float64) @ w.T.astype(np.float64) + _rand((50,), 4, 0.1)
    if role == "relu":
        dense = np.maximum(dense, 0)
    elif role == "dense":
        dense = 1 / (1 + np.exp(-dense))
    np.testing.assert_allclose(exact, dense, rtol=1e-4, atol=1e-5)


def test_threads_do_not_change_the_result():
    model = one_layer(300, 1000, 1 / 16, "relu", seed=5)
    x = relu_input((2, 1000), 6)
    outs = []
    for t in (1, 2, 3):
        s = aipnet.Session(model, backend="c", threads=t, aip=True)
        outs.append((s.run(x), s.stats["layers"][0]["weight_bytes_read"]))
    for y, b in outs[1:]:
        np.testing.assert_array_equal(y, outs[0][0])
        assert b == outs[0][1]


# -- whole models -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fc_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("aip") / "fc.onnx"
    onnx.save(fc_model(k=300, n=90, classes=20, seed=7), path)
    return path


@pytest.mark.parametrize("policy", ["stride", "random", "importance"])
@pytest.mark.parametrize("knobs", [{}, {"aip_threshold": 0.3, "aip_refine": 4}, {"aip_mode": "approx"},
                                   {"aip_skip_zeros": False, "aip_fraction": 0.25}])
def test_gemm_packed_at_load(fc_onnx, policy, knobs):
    model = aipnet.load(fc_onnx)
    x = relu_input((3, 300), 8)
    ya, sa, yb, sb = both(model, x, aip=True, aip_policy=policy, seed=2, **knobs)
    assert_same(ya, sa, yb, sb)
    assert [la["op"] for la in sb["layers"] if la.get("aip_role")] == ["Gemm", "Gemm"]
    assert [la["aip_role"] for la in sb["layers"] if la.get("aip_role")] == ["relu", "final"]


def test_packed_file_from_convert(fc_onnx, tmp_path):
    out = tmp_path / "fc.aipn"
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "convert", str(fc_onnx), "-o", str(out), "--aip",
                        "--aip-policy", "importance", "--aip-fraction", "0.125"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    model = aipnet.load(out)
    assert any(n.op == "AipFC" for n in model.graph.nodes)
    x = relu_input((4, 300), 9)
    for knobs in ({}, {"aip": True}, {"aip": True, "aip_threshold": -0.2, "aip_refine": 2},
                  {"aip": True, "aip_mode": "approx"}):
        ya, sa, yb, sb = both(model, x, **knobs)
        assert_same(ya, sa, yb, sb)
    # aip off: the packed model is exact
    exact = aipnet.Session(aipnet.load(fc_onnx), backend="c").run(x)
    np.testing.assert_allclose(aipnet.Session(model, backend="c").run(x), exact, rtol=1e-5, atol=1e-6)


def _fc_bytes(stats):
    return sum(la["weight_bytes_read"] for la in stats["layers"] if la["op"] in ("Gemm", "AipFC"))


@pytest.fixture(scope="module")
def reference_images():
    images, labels, _ = aipnet.data.load_subset()
    x = (images.astype(np.float32) / 255.0)[:, None]
    return x, labels


def test_reference_model_numba_equals_c(reference_images):
    x, _ = reference_images
    plain = aipnet.load("reference")
    packed = aipnet.load("reference")
    packed = Model(copy.deepcopy(packed.graph), "reference (packed)")
    # calibration on the first 200 images, evaluation on the next 300
    assert pack_graph(packed.graph, 1 / 16, "importance", calib_x=x[:200]) > 0
    xe = np.ascontiguousarray(x[200:500])
    for model in (plain, packed):
        for batch in (1, 100):
            preds = {}
            fc = {}
            for backend in ("numba", "c"):
                s = aipnet.Session(model, backend=backend, aip=True, threads=2)
                outs, total = [], 0
                for i in range(0, 100 if batch == 1 else len(xe), batch):
                    outs.append(s.run(xe[i:i + batch]))
                    total += _fc_bytes(s.stats)
                preds[backend] = np.concatenate(outs).argmax(1)
                fc[backend] = total
            np.testing.assert_array_equal(preds["c"], preds["numba"])
            assert fc["c"] == fc["numba"]


# -- bad knobs ----------------------------------------------------------------------------------
def test_bad_knobs_through_c():
    model = one_layer(20, 64, 1 / 16, "relu")
    for bad in ({"aip_threshold": float("nan")}, {"aip_refine": 0}, {"aip_fraction": 0.0}, {"aip_mode": "x"},
                {"aip_policy": "best"}):
        with pytest.raises(KnobError):
            aipnet.Session(model, backend="c", aip=True, **bad)
    with pytest.raises(KnobError, match="drowsy"):
        aipnet.Session(model, backend="c", aip=True, drowsy=1.5)


def test_bad_config_statuses():
    from aipnet.native import ffi, lib

    nm = native.NativeModel(one_layer(20, 64, 1 / 16, "relu"))
    for field, value in (("aip", 2), ("aip_mode", 2), ("aip_refine", -1), ("aip_skip_zeros", 3),
                         ("aip_threshold_set", 2)):
        cfg = ffi.new("aipn_config *")
        lib.aipn_config_default(cfg)
        setattr(cfg, field, value)
        out = ffi.new("aipn_session **")
        assert lib.aipn_session_new(nm.ptr, cfg, out) == lib.AIPN_ERR_ARGUMENT, field
        assert field.split("_set")[0] in ffi.string(lib.aipn_last_error()).decode()
    cfg = ffi.new("aipn_config *")
    lib.aipn_config_default(cfg)
    assert cfg.aip == 0 and cfg.aip_skip_zeros == 1 and cfg.aip_threshold_set == 0
    cfg.aip, cfg.aip_threshold_set, cfg.aip_threshold = 1, 1, float("nan")
    assert lib.aipn_session_new(nm.ptr, cfg, ffi.new("aipn_session **")) == lib.AIPN_ERR_ARGUMENT
    # aip on an unpacked model through the bare C API: refused, not silently exact
    raw = native.NativeModel(aipnet.load(fc_model()))
    cfg.aip_threshold = 0.0
    assert lib.aipn_session_new(raw.ptr, cfg, ffi.new("aipn_session **")) == lib.AIPN_ERR_UNSUPPORTED


def test_corrupt_packed_layers_are_refused():
    model = one_layer(20, 64, 1 / 16, "relu")
    g = model.graph
    bad_perm = copy.deepcopy(g)
    bad_perm.initializers["perm"] = np.zeros(64, np.int64)
    bad_k = copy.deepcopy(g)
    bad_k.nodes[0].attrs["k"] = 5
    for graph in (bad_perm, bad_k):
        with pytest.raises(AipnetError):
            s = aipnet.Session(Model(graph, "bad"), backend="c")
            s.run(np.zeros((1, 64), np.float32))


# -- fused Clip / LeakyRelu on a dense or final AIP layer --------------------------------------
@pytest.mark.parametrize("act,params", [("clip", [0.1, 0.5]), ("leaky", [0.0, 0.2])])
@pytest.mark.parametrize("packed", [True, False])
def test_dense_layer_applies_its_fused_clip_or_leaky(act, params, packed):
    """An AIP layer whose fused activation is Clip or LeakyRelu (role dense) applies it, on
    both backends, AipFC or a Gemm packed at load, refine and approx mode."""
    n, kdim = 24, 96
    w = _rand((n, kdim), 3)
    b = _rand((n,), 4, 0.1)
    x = relu_input((3, kdim), 5, 0.3)
    want = x @ w.T + b
    want = np.clip(want, *params) if act == "clip" else np.where(want < 0, want * params[1], want)
    attrs = {"_act": act, "_act_params": params}
    if packed:
        pk = pack_fc(w, 1 / 8, "stride")
        node = Node("AipFC", "fc", ["x", "approx", "rest", "perm", "b"], ["y"],
                    {"k": pk.k, "scale": pk.scale, "policy": "stride", "fraction": 1 / 8, "theta": 0.0,
                     "calibrated": 0, **attrs})
        inits = {"approx": pk.approx, "rest": pk.rest, "perm": pk.perm, "b": b}
    else:
        node = Node("Gemm", "fc", ["x", "w", "b"], ["y"], {"transB": 1, **attrs})
        inits = {"w": w, "b": b}
    g = Graph([node], inits, [ValueInfo("x", (None, kdim), np.dtype(np.float32))], ["y"])
    model = Model(g, "<one fc with a fused activation>")
    for mode in ("refine", "approx"):
        ya, sa, yb, sb = both(model, x, aip=True, aip_mode=mode)
        assert_same(ya, sa, yb, sb)
        assert sa["layers"][0]["aip_role"] == "dense"
        if mode == "refine":  # dense: every row refined, so exact
            np.testing.assert_allclose(ya, want, rtol=1e-5, atol=1e-5)
        else:
            lo, hi = (params if act == "clip" else (-np.inf, np.inf))
            assert np.all(ya >= lo) and np.all(ya <= hi)
            if act == "leaky":  # negative estimates scaled by alpha
                est = np.where(ya < 0, ya / params[1], ya)
                assert np.all((ya >= 0) | (est < 0))
    if packed:  # aip off: exact, activation included
        np.testing.assert_allclose(aipnet.Session(model, backend="c").run(x), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(aipnet.Session(model).run(x), want, rtol=1e-5, atol=1e-5)
