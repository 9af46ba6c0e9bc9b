"""AIP: the packed layout, the approximate pass and refinement, and the counted bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import aipnet
from aipnet.aip import LANES, LINE_BYTES, aip_fc, fc_roles, pack_fc, select_subset
from cases import _rand, graph


def fc_model(k=64, n=40, classes=10, seed=0):
    """x -> FC(k->n)+ReLU -> FC(n->classes) -> Softmax."""
    i = {"w1": _rand((n, k), seed), "b1": _rand((n,), seed + 1, 0.1),
         "w2": _rand((classes, n), seed + 2), "b2": _rand((classes,), seed + 3, 0.1)}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    return graph(nodes, {"x": (k,)}, "y", i)


def relu_input(shape, seed=0, zeros=0.5):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[rng.random(shape) < zeros] = 0.0
    return x


# -- layout ------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["stride", "random", "importance"])
@pytest.mark.parametrize("n,k,f", [(40, 64, 1 / 16), (17, 33, 0.25), (1, 5, 1.0), (100, 1000, 0.01)])
def test_pack_round_trips(policy, n, k, f):
    w = _rand((n, k), 1)
    pk = pack_fc(w, f, policy, seed=3)
    np.testing.assert_array_equal(pk.unpack(), w)
    assert pk.k == max(1, int(np.ceil(f * k - 1e-9)))
    assert pk.approx.shape == (-(-n // LANES), pk.k, LANES)
    assert pk.rest.shape == (n, k - pk.k)
    assert sorted(pk.perm.tolist()) == list(range(k))
    assert pk.approx.flags.c_contiguous and pk.rest.flags.c_contiguous


def test_stride_policy_takes_every_16th():
    assert select_subset(np.ones((2, 64), np.float32), 1 / 16, "stride").tolist() == [0, 16, 32, 48]


def test_importance_prefers_big_columns():
    w = np.ones((4, 32), np.float32)
    w[:, [3, 7]] = 10.0
    assert select_subset(w, 2 / 32, "importance").tolist() == [3, 7]
    calib = np.ones((5, 32), np.float32)
    calib[:, 7] = 0.0
    assert 7 not in select_subset(w, 2 / 32, "importance", calib_x=calib).tolist()


# -- the layer ---------------------------------------------------------------------------
def dense(x, w, b):
    return x.astype(np.float64) @ w.T.astype(np.float64) + b


def estimate(x, w, b, pk):
    """AIP's estimate, recomputed from the dense weights: scale * x[S] . W[:, S] + b."""
    s_idx = pk.perm[:pk.k]
    return pk.scale * (x[:, s_idx] @ w[:, s_idx].T) + b


@pytest.mark.parametrize("role", ["relu", "final", "dense"])
@pytest.mark.parametrize("batch", [1, 4])
def test_refine_everything_equals_dense(role, batch):
    w, b = _rand((50, 96), 2), _rand((50,), 3, 0.1)
    x = relu_input((batch, 96), 4)
    pk = pack_fc(w, 1 / 16)
    y, counts = aip_fc(x, pk, b, role, -np.inf, 50, "refine", True)
    ref = dense(x, w, b)
    if role == "relu":
        ref = np.maximum(ref, 0)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    assert counts["outputs_refined"] == 50 * batch


def test_refined_outputs_are_exact_and_skipped_ones_zero():
    w, b = _rand((64, 128), 5), _rand((64,), 6, 0.1)
    x = relu_input((1, 128), 7)
    pk = pack_fc(w, 1 / 8)
    y, counts = aip_fc(x, pk, b, "relu", 0.0, 10, "refine", True)
    est = estimate(x, w, b, pk)
    refined = est[0] > 0.0
    ref = np.maximum(dense(x, w, b), 0)[0]
    np.testing.assert_allclose(y[0, refined], ref[refined], rtol=1e-5, atol=1e-6)
    assert (y[0, ~refined] == 0).all()
    assert counts["aip_rows_refined"] == int(refined.sum())


def test_final_layer_refines_top_candidates():
    w, b = _rand((100, 64), 8), _rand((100,), 9, 0.1)
    x = relu_input((2, 64), 10)
    pk = pack_fc(w, 1 / 16)
    y, counts = aip_fc(x, pk, b, "final", 0.0, 7, "refine", True)
    est = estimate(x, w, b, pk)
    top = set(np.argsort(-est, axis=1)[:, :7].ravel().tolist())
    assert counts["aip_rows_refined"] == len(top)
    exact = dense(x, w, b)
    for j in range(100):
        want = exact[:, j] if j in top else est[:, j]
        np.testing.assert_allclose(y[:, j], want, rtol=1e-5, atol=1e-5)


def test_approx_mode_returns_estimates():
    w, b = _rand((20, 64), 11), _rand((20,), 12, 0.1)
    x = relu_input((3, 64), 13)
    pk = pack_fc(w, 0.25)
    y, counts = aip_fc(x, pk, b, "final", 0.0, 5, "approx", False)
    est = estimate(x, w, b, pk)
    np.testing.assert_allclose(y, est, rtol=1e-5, atol=1e-5)
    assert counts["outputs_refined"] == 0


def touched_bytes(x, pk, b, role, threshold, refine, mode, skip_zeros):
    """An instrumented reference: mark every weight byte the algorithm must read."""
    n, k = pk.n, pk.k
    xs = x[:, pk.perm[:k]]
    nb = -(-n // LANES)
    used_t = (xs != 0).any(axis=0) if skip_zeros else np.ones(k, bool)
    lines = nb * int(used_t.sum())
    est = pk.scale * (np.where(used_t, xs, 0) @ pk.unpack()[:, pk.perm[:k]].T) + b
    if mode == "approx":
        rows = set()
    elif role == "relu":
        rows = set(np.flatnonzero((est > threshold).any(axis=0)).tolist())
    elif role == "final":
        m = min(refine, n)
        rows = set(np.argsort(-est, axis=1, kind="stable")[:, :m].ravel().tolist())
    else:
        rows = set(range(n))
    return lines * LINE_BYTES + len(rows) * (pk.kdim - k) * 4 + n * 4


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 70), kdim=st.integers(1, 300), f=st.sampled_from([1 / 16, 1 / 8, 0.3, 1.0]),
       theta=st.sampled_from([-np.inf, -0.5, 0.0, 0.3, np.inf]), batch=st.integers(1, 4),
       role=st.sampled_from(["relu", "final", "dense"]), mode=st.sampled_from(["refine", "approx"]),
       skip=st.booleans(), seed=st.integers(0, 1000))
def test_counted_bytes_equal_touched_bytes(n, kdim, f, theta, batch, role, mode, skip, seed):
    w, b = _rand((n, kdim), seed), _rand((n,), seed + 1, 0.1)
    x = relu_input((batch, kdim), seed + 2)
    pk = pack_fc(w, f)
    y, counts = aip_fc(x, pk, b, role, theta, 3, mode, skip)
    assert counts["weight_bytes_read"] == touched_bytes(x, pk, b, role, theta, 3, mode, skip)
    assert counts["macs"] + counts["macs_skipped"] == batch * n * kdim
    assert counts["macs_skipped"] >= 0
    if mode == "refine" and theta == -np.inf and role != "final":
        ref = dense(x, w, b)
        np.testing.assert_allclose(y, np.maximum(ref, 0) if role == "relu" else ref, rtol=1e-4, atol=1e-4)


# -- through a session -------------------------------------------------------------------
def test_roles_in_a_graph():
    g = aipnet.load(fc_model()).graph
    assert sorted(fc_roles(g).values()) == ["final", "relu"]


@pytest.mark.parametrize("batch", [1, 3])
def test_session_theta_minus_inf_equals_exact(batch):
    m = aipnet.load(fc_model())
    x = relu_input((batch, 64), 20)
    exact = aipnet.Session(m).run(x)
    approx = aipnet.Session(m, aip=True, aip_threshold=-np.inf, aip_refine=10).run(x)
    np.testing.assert_allclose(approx, exact, rtol=1e-5, atol=1e-6)


def test_session_stats_count_reads():
    m = aipnet.load(fc_model(k=256, n=64))
    sess = aipnet.Session(m, aip=True, aip_threshold=0.0)
    sess.run(relu_input((1, 256), 21))
    fcs = [layer for layer in sess.stats["layers"] if layer["op"] == "Gemm"]
    assert fcs[0]["aip_role"] == "relu" and fcs[1]["aip_role"] == "final"
    assert 0 < fcs[0]["weight_bytes_read"] < fcs[0]["weight_bytes_total"]
    assert fcs[0]["macs_skipped"] > 0
    assert sess.stats["total"]["weight_bytes_read"] == sum(layer["weight_bytes_read"] for layer in sess.stats["layers"])


def test_reference_model_aip_saves_bytes_with_little_loss():
    from aipnet.data import load_subset, preprocess

    images, labels, _ = load_subset()
    x = preprocess(images[:100])
    m = aipnet.load("reference")
    exact = aipnet.Session(m).run(x).argmax(1)
    sess = aipnet.Session(m, aip=True, aip_threshold=0.0)
    agree, read, total = 0, 0, 0
    for i in range(100):
        agree += int(sess.run(x[i:i + 1]).argmax(1)[0] == exact[i])
        for layer in sess.stats["layers"]:
            if layer["op"] == "Gemm":
                read += layer["weight_bytes_read"]
                total += layer["weight_bytes_total"]
    assert read < 0.5 * total
    assert agree >= 90


# -- packed models (aipnet convert --aip-...) ------------------------------------------
def test_convert_packs_and_round_trips(tmp_path):
    import onnx

    from aipnet.aip import pack_graph
    from aipnet.aipn_format import load_graph, save

    onnx.save(fc_model(k=96, n=48), tmp_path / "m.onnx")
    m = aipnet.load(tmp_path / "m.onnx")
    dense_w = {n.name: m.graph.initializers[n.inputs[1]].copy() for n in m.graph.nodes if n.op == "Gemm"}
    calib = relu_input((64, 96), 30)
    assert pack_graph(m.graph, 1 / 8, "importance", calib_x=calib, theta=0.25) == 2
    save(m.graph, tmp_path / "m.aipn")
    g, _ = load_graph(tmp_path / "m.aipn")
    packed = [n for n in g.nodes if n.op == "AipFC"]
    assert len(packed) == 2 and all(n.attrs["calibrated"] == 1 and n.attrs["theta"] == 0.25 for n in packed)
    for n in packed:
        from aipnet.aip import PackedFC

        pk = PackedFC(g.initializers[n.inputs[3]], n.attrs["k"], g.initializers[n.inputs[1]],
                      g.initializers[n.inputs[2]], n.attrs["scale"], n.attrs["policy"], n.attrs["fraction"])
        np.testing.assert_array_equal(pk.unpack(), dense_w[n.name])
    # no second copy of the dense weights in the file
    assert not any(n.op == "Gemm" for n in g.nodes)
    # aip off: the packed model computes the exact layers
    x = relu_input((3, 96), 31)
    exact = aipnet.Session(aipnet.load(tmp_path / "m.onnx")).run(x)
    np.testing.assert_allclose(aipnet.Session(aipnet.load(tmp_path / "m.aipn")).run(x), exact, rtol=1e-5, atol=1e-6)
    # aip on: the stored theta is the default, a knob overrides it
    s = aipnet.Session(aipnet.load(tmp_path / "m.aipn"), aip=True)
    s.run(x[:1])
    stored = s.stats["total"]["weight_bytes_read"]
    s2 = aipnet.Session(aipnet.load(tmp_path / "m.aipn"), aip=True, aip_threshold=-np.inf)
    s2.run(x[:1])
    assert s2.stats["total"]["weight_bytes_read"] > stored


def test_convert_cli(tmp_path):
    import json
    import subprocess
    import sys

    import onnx

    onnx.save(fc_model(k=96, n=48), tmp_path / "m.onnx")
    np.save(tmp_path / "calib.npy", relu_input((32, 96), 40))
    r = subprocess.run([sys.executable, "-m", "aipnet.cli", "convert", tmp_path / "m.onnx", "-o", tmp_path / "m.aipn",
                        "--aip-policy", "importance", "--calib", tmp_path / "calib.npy"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "packed 2 FC layers" in r.stdout and "calibrated on 32 inputs" in r.stdout
    info = json.loads(subprocess.run([sys.executable, "-m", "aipnet.cli", "info", tmp_path / "m.aipn", "--json"],
                                     capture_output=True, text=True).stdout)
    assert [layer["op"] for layer in info["layers"]].count("AipFC+Relu") == 1


def test_shipped_packed_reference_sits_at_the_operating_point():
    """`--aip` alone on the packed reference (its stored, calibrated knobs) saves at least
    60% of FC weight bytes and keeps the exact top-1 on nearly every image."""
    from aipnet.data import load_subset, preprocess
    from aipnet.evaluate import evaluate

    images, labels, _ = load_subset()
    x, y = preprocess(images[:300]), labels[:300]
    packed = aipnet.load("reference-aip")
    assert sum(n.op == "AipFC" and n.attrs["calibrated"] == 1 for n in packed.graph.nodes) == 3
    res = evaluate(packed, x, y, batch=1, progress=False, aip=True)
    exact = evaluate(aipnet.load("reference"), x, y, batch=100, progress=False)
    fc = lambda st: sum(layer["weight_bytes_read"] for layer in st["layers"] if layer["op"] in ("Gemm", "AipFC"))
    single = aipnet.Session(aipnet.load("reference"))
    single.run(x[:1])
    saved = 1 - fc(res["stats"]) / (len(y) * fc(single.stats))
    assert saved >= 0.60
    assert res["agreement"] >= 0.97
    assert exact["top1"] - res["top1"] <= 0.02
