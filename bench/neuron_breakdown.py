"""Where the Numba neuron kernel's time goes, by part, on the VGG-f conv shapes (p = 0.5).

The neuron granularity (:mod:`aipnet.kernels.drowsy_neuron`) lists an item's kept
outputs as 2 x 4 bicliques and left-over groups, then runs their dot products K chunk by
K chunk. To split its time, this compiles copies of the kernel module with one part
taken out (a source edit each, so the copies are the shipped code but for that part) and
times them against the full kernel, interleaved, one thread, each timed call right after
an untimed call of the same copy and layer (so that the parts' times add up to the whole):

- ``full``: the kernel as shipped;
- ``bicliques only``: the left-over groups' dot products skipped;
- ``left-overs only``: the bicliques' dot products skipped;
- ``no dot products``: every dot8 kernel a stub (listing, sorting, dispatch kept);
- ``set-up only``: no groups listed (the mask, the image and patch copies, the output pass);
- ``operands in L1``: every dot product reads the same patch and the same weight row, so
  the whole kernel runs with its operands in L1 (what the cache misses cost).

Differences give each part's time; the bicliques' share of the kept outputs comes from a
copy that counts them (on the first image's masks; the timed runs draw a fresh mask per
call, as the engine does). The copies compute wrong outputs on purpose: this measures, it does
not check. The exact conv (:func:`aipnet.kernels.conv.conv2d`, weights prepared once) is
timed the same way in the same rounds.

    python bench/neuron_breakdown.py --repeat 25
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import numba
import numpy as np
from tqdm import tqdm

from aipnet.kernels import drowsy_neuron
from aipnet.kernels.conv import conv2d
from aipnet.kernels.conv_gemm import prepare
from aipnet.kernels.drowsy import drop_threshold

#: (name, input channels, input side, output channels, kernel, stride, pad): VGG-f's
#: conv1, conv2 and conv3 (conv4 and conv5 have conv3's shape)
LAYERS = [("conv1", 3, 224, 64, 11, 4, 0), ("conv2", 64, 27, 256, 5, 1, 2), ("conv3", 256, 13, 256, 3, 1, 1)]

_BI_FIRST = "            if k == DOT8_BI:\n                dot8_bi("
EDITS = {
    "full": [],
    "bicliques only": [(_BI_FIRST, "            if k != DOT8_BI:\n                continue\n" + _BI_FIRST)],
    "left-overs only": [(_BI_FIRST, "            if k == DOT8_BI:\n                continue\n" + _BI_FIRST)],
    "no dot products": [],
    "set-up only": [("    ng = _neuron_groups(bm, c0, nc, kn, xq, offs, dst, idx)\n", "    ng = 0\n")],
    # every group reads the same patch and the same weight row: all operands in L1
    "operands in L1": [("            xq[t] = (oy * sh * wp + ox * sw) * cb\n", "            xq[t] = 0\n"),
                       ("            xq[t] = d\n", "            xq[t] = 0\n"),
                       ("        wa = (c0 + ca) * kn\n", "        wa = c0 * kn\n"),
                       ("            wb = (c0 + cb) * kn\n", "            wb = c0 * kn\n"),
                       ("(c0 + (pend[at + GROUP_HEADS[mask, j]] >> NEURON_SLOT_BITS)) * kn", "c0 * kn")],
    # not timed: the item returns its biclique outputs instead of its kept outputs
    "count": [("    return kept\n", "    return 8 * np.int64((idx[:ng] == DOT8_BI).sum())\n")],
}


@numba.njit(inline="always")
def _stub(wf, xb, offs, o, w0, x0, ns, sl, w_seg, x_seg, acc, a):
    acc[a] += 1.0


def load_copy(name: str, edits: list, folder: str):
    """drowsy_neuron's source with ``edits`` applied, imported as a sibling module (its
    relative imports resolve; compiled from a file like the original)."""
    with open(drowsy_neuron.__file__) as f:
        src = f.read()
    for old, new in edits:
        if src.count(old) != 1:
            sys.exit(f"neuron_breakdown: the kernel source changed; this edit no longer applies "
                     f"to one place: {old.strip()[:60]!r}")
        src = src.replace(old, new)
    path = os.path.join(folder, f"drowsy_neuron_{len(os.listdir(folder))}.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location(f"aipnet.kernels._breakdown_{name.replace(' ', '_')}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if name == "no dot products":
        for attr in list(vars(mod)):
            if attr.startswith("dot8_"):
                setattr(mod, attr, _stub)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=25, help="timed rounds (each figure is a median)")
    ap.add_argument("--rate", type=float, default=0.5)
    args = ap.parse_args()
    numba.set_num_threads(1)
    thr = drop_threshold(args.rate)
    rng = np.random.default_rng(0)
    cases = []
    for name, cin, side, m, k, s, pad in LAYERS:
        out = (side + 2 * pad - k) // s + 1
        x = rng.standard_normal((cin, side, side)).astype(np.float32)
        w = rng.standard_normal((m, cin, k, k)).astype(np.float32)
        cases.append((name, x, w, np.zeros(m, np.float32), np.empty((m, out * out), np.float32),
                      (k, k, s, s, 1, 1, pad, pad, out, out), cin * k * k, m * out * out * cin * k * k))
    prepared = [prepare(c[2], 1) for c in cases]

    def run_exact(i):
        _, x, w, b, _, geo, _, _ = cases[i]
        k, _, s, _, _, _, pad, _, out, _ = geo
        return conv2d(x[None], w, b, (s, s), (pad,) * 4, (1, 1), 1, (out, out), threads=1, prepared=prepared[i])

    with tempfile.TemporaryDirectory() as folder:
        mods = {}
        for name, edits in tqdm(EDITS.items(), desc="compiling copies", unit="copy"):
            mods[name] = load_copy(name, edits, folder)

        def run(mod, case, image):
            _, x, w, b, y, geo, _, _ = case
            return mod.conv_neuron_group(x, w, 0, w.shape[0], image, thr, b, False, 0, 0.0, 0.0, 1.0, geo, y)

        kept = {c[0]: run(mods["full"], c, 0) for c in cases}
        bi = {c[0]: run(mods["count"], c, 0) for c in cases}
        for mod in mods.values():
            for c in cases:
                run(mod, c, 1)  # compile and warm
        timed = [n for n in EDITS if n != "count"]
        times = {(n, c[0]): [] for n in timed for c in cases}
        exact = [[] for _ in cases]
        for r in tqdm(range(args.repeat), desc="rounds", unit="round"):
            for i in range(len(cases)):
                run_exact(i)
                t0 = time.perf_counter()
                run_exact(i)
                exact[i].append(time.perf_counter() - t0)
            for n in timed:
                for c in cases:
                    run(mods[n], c, 2 + r)  # untimed: the copy's code and this layer's data in cache
                    t0 = time.perf_counter()
                    run(mods[n], c, 2 + r)
                    times[(n, c[0])].append(time.perf_counter() - t0)
    ex = [float(np.median(t)) for t in exact]
    print(f"Numba neuron kernel at p = {args.rate}, 1 thread, median of {args.repeat} rounds "
          f"(ms; GMAC/s of the part's kept multiply-adds)")
    print("| layer | exact | full | operands in L1 | bicliques | left-overs | listing, dispatch | set-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, *_, kdim, dense), e in zip(cases, ex):
        med = {n: float(np.median(times[(n, name)])) for n in timed}
        t_bi = med["bicliques only"] - med["no dot products"]
        t_left = med["left-overs only"] - med["no dot products"]
        t_list = med["no dot products"] - med["set-up only"]
        mac_bi, mac_left = bi[name] * kdim, (kept[name] - bi[name]) * kdim
        share = bi[name] / kept[name]
        print(f"| {name} | {e * 1e3:.3f} ({dense / e / 1e9:.1f}) "
              f"| {med['full'] * 1e3:.3f} ({med['full'] / e:.2f} of exact) "
              f"| {med['operands in L1'] * 1e3:.3f} "
              f"| {t_bi * 1e3:.3f} ({share:.0%} of outputs, {mac_bi / t_bi / 1e9:.1f}) "
              f"| {t_left * 1e3:.3f} ({1 - share:.0%}, {mac_left / t_left / 1e9:.1f}) "
              f"| {t_list * 1e3:.3f} | {med['set-up only'] * 1e3:.3f} |")


if __name__ == "__main__":
    main()
