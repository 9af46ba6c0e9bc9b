"""Load time of .aipn against .onnx as models grow (python bench/load_time.py).

Models: stacks of FC layers of growing width (weights random), and the built-in VGG-f.
For each: aipnet.load of the .onnx (parse, import, optimise), of the .aipn (mmap, with
and without checksum verification), and the C loader (aipn_model_load_file). Files are
read once before timing, so the page cache is warm for both formats; medians of 5.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import aipnet
from aipnet import aipn_format, native
from aipnet.builtin import vggf_onnx


def fc_stack(width: int, layers: int = 4) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        w = rng.standard_normal((width, width)).astype(np.float32) * 0.01
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Gemm", [x, f"w{i}"], [f"h{i}"], transB=1))
        x = f"h{i}"
    g = helper.make_graph(nodes, "fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    models = [(f"fc{w}x4", fc_stack(w)) for w in (256, 1024, 2048, 4096)] + [("vggf", vggf_onnx())]
    print("| model | size MB | .onnx load ms | .aipn load ms | .aipn no-verify ms | C load ms | C no-verify ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, proto in models:
            onnx_path, aipn_path = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.aipn"
            onnx.save(proto, onnx_path)
            aipn_format.save(aipnet.load(onnx_path).graph, aipn_path)
            onnx_path.read_bytes(), aipn_path.read_bytes()  # warm the page cache
            row = [timed(lambda: aipnet.load(onnx_path), 3),
                   timed(lambda: aipnet.load(aipn_path)),
                   timed(lambda: aipnet.load(aipn_path, verify_checksums=False))]
            if native.available():
                m = aipnet.load(aipn_path)
                row += [timed(lambda: native.NativeModel(m)), timed(lambda: native.NativeModel(m, verify=False))]
            size = aipn_path.stat().st_size / 1e6
            print(f"| {name} | {size:.1f} | " + " | ".join(f"{t * 1e3:.2f}" for t in row) + " |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
