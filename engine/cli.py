"""The `aipnet` command line.

Errors a user can cause print one line (``aipnet: error: ...``) and exit with status 2;
no tracebacks (set AIPNET_DEBUG=1 to see one for an internal error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from .errors import AipnetError, DataError
from .knobs import add_knob_args, knobs_from_args

EXIT_USAGE = 2


def _load_npy(path: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a valid .npy file ({exc})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is an .npz archive; pass one .npy per input as NAME=FILE.npy")
    return arr


def _feeds(model, specs: Sequence[str]) -> Any:
    names = [s.name for s in model.inputs]
    if len(specs) == 1 and "=" not in specs[0]:
        return _load_npy(specs[0])
    feeds = {}
    for spec in specs:
        if "=" not in spec:
            raise AipnetError(f"--input {spec!r}: the model has inputs {names}; write NAME=FILE.npy")
        name, path = spec.split("=", 1)
        feeds[name] = _load_npy(path)
    return feeds


def _write_json(path: str | None, obj: Any) -> None:
    text = json.dumps(obj, indent=2, default=_json_default)
    if path in (None, "-"):
        print(text)
    else:
        Path(path).write_text(text + "\n")


def _report(args: argparse.Namespace, result: Any, render: Callable[[Any], str]) -> int:
    """Print a command's result: JSON with --json, else the human rendering."""
    if args.json:
        _write_json(None, result)
    else:
        print(render(result))
    return 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


# -- commands ------------------------------------------------------------------------
def cmd_info(args: argparse.Namespace) -> int:
    from .info import format_table, layer_table
    from .model import load

    model = load(args.model)
    if args.backend != "numba":
        from .session import Session

        Session(model, backend=args.backend)  # the backend can load the model
    info = layer_table(model, args.batch)
    info["backend"] = args.backend
    return _report(args, info, format_table)


def cmd_run(args: argparse.Namespace) -> int:
    from .model import load
    from .session import Session

    model = load(args.model)
    sess = Session(model, backend=args.backend, threads=args.threads, **knobs_from_args(args))
    out = sess.run(_feeds(model, args.input))
    if args.output:
        if isinstance(out, dict):
            np.savez(args.output, **out)
        else:
            np.save(args.output, out)
    if args.stats:
        _write_json(args.stats, sess.stats)
    if args.json:
        _write_json(None, {"outputs": {k: list(np.shape(v)) for k, v in (out.items() if isinstance(out, dict) else [(model.outputs[0], out)])},
                           "stats": sess.stats})
    elif not args.output:
        print(out)
    else:
        t = sess.stats["total"]
        print(f"wrote {args.output}: {out.shape if not isinstance(out, dict) else list(out)}; "
              f"{t['macs'] / 1e6:.1f} M MACs (analytic), {t['time_s'] * 1e3:.2f} ms")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from . import aipn_format
    from .model import load

    model = load(args.model)
    if model.packed_path:
        src_hash = model.packed_meta.get("source.hash", "")
    elif Path(args.model).is_file():
        src_hash = aipn_format.source_hash(args.model)
    else:
        src_hash = aipn_format.source_hash(data=model.onnx_model.SerializeToString())
    knobs: dict[str, Any] = {"optimized": True}
    if args.aip or args.aip_policy or args.aip_fraction or args.calib or args.calib_data or args.config:
        knobs.update(_pack_aip(model, args))
    meta = {"source": Path(model.source).name, "source.hash": src_hash, "knobs": json.dumps(knobs)}
    size = aipn_format.save(model.graph, args.output, meta)
    print(f"wrote {args.output}: {size / 1e6:.2f} MB, {len(model.graph.nodes)} nodes, "
          f"{len(model.graph.initializers)} tensors (format {aipn_format.VERSION_MAJOR}.{aipn_format.VERSION_MINOR})")
    return 0


def _pack_aip(model, args: argparse.Namespace) -> dict[str, Any]:
    """Rewrite the model's FC layers into AIP's packed layout (calibrated when data is given)."""
    from .aip import pack_graph
    from .config import check_layer_names, read_config
    from .knobs import make_knobs
    from .session import knob_layer_names

    cfg = read_config(args.config) if args.config else {}
    layers = cfg.get("layers", {})
    check_layer_names(layers, knob_layer_names(model.graph), args.config or "config")
    kn = make_knobs(aip_fraction=args.aip_fraction or cfg.get("aip_fraction", 1 / 16),
                    aip_policy=args.aip_policy or cfg.get("aip_policy", "stride"),
                    aip_threshold=args.aip_threshold if args.aip_threshold is not None else cfg.get("aip_threshold"),
                    seed=args.seed, layers=layers)
    calib = None
    if args.calib:
        calib = _load_npy(args.calib).astype(np.float32, copy=False)
    elif args.calib_data:
        from .data import load_fashion_mnist

        x, _, _ = load_fashion_mnist("train", None if args.calib_data == "default" else args.calib_data)
        pick = np.random.default_rng(args.seed).choice(len(x), size=min(args.calib_limit, len(x)), replace=False)
        calib = x[np.sort(pick)]
    theta = kn.aip_threshold if kn.aip_threshold is not None else 0.0
    n = pack_graph(model.graph, kn.aip_fraction, kn.aip_policy, kn.seed, calib, theta, layers)
    if n == 0:
        raise AipnetError(f"{model.source}: no fully-connected layer to pack for AIP")
    print(f"packed {n} FC layers for AIP: policy {kn.aip_policy}, fraction {kn.aip_fraction:g}, theta {theta:g}, "
          + (f"calibrated on {len(calib)} inputs" if calib is not None else "not calibrated"))
    return {"aip_fraction": kn.aip_fraction, "aip_policy": kn.aip_policy, "aip_threshold": theta,
            "seed": kn.seed, "calibration_inputs": 0 if calib is None else int(len(calib))}


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import bench
    from .model import load
    from .progress import progress_bar

    model = load(args.model)
    if args.counters:
        return _bench_counters(model, args)
    if args.simulate:
        return _bench_simulate(model, args)
    against = None if args.against == "none" else args.against
    with progress_bar(args.warmup + args.repeat, "bench", disable=args.json) as bar:
        res = bench(model, against, args.threads, args.batch, args.repeat, args.warmup, bar.update,
                    backend=args.backend, **knobs_from_args(args))
    if args.json:
        _write_json(None, res)
        return 0
    med = res["median_s"]
    print(f"model {res['model']}  backend {res.get('backend', 'numba')}  batch {res['batch']}  threads {res['threads'] or 'all'}  "
          f"{res['repeat']} runs each, engines alternating in blocks (wall clock, measured)")
    for k, v in med.items():
        print(f"  {k:12s} median {v * 1e3:9.3f} ms   min {res['min_s'][k] * 1e3:9.3f} ms")
    if "ratio" in res:
        print(f"  ratio aipnet / {against}: {res['ratio']:.3f}")
    print("  aipnet time by op (median ms): " + ", ".join(f"{op} {t * 1e3:.2f}" for op, t in res["op_split_s"].items()))
    return 0


def _bench_counters(model, args: argparse.Namespace) -> int:
    """`bench --counters`: hardware counters over the runs (source hw), or why there are none."""
    from .bench import bench_counters
    from .counters import format_report

    rep = bench_counters(model, args.threads, args.batch, args.repeat, args.warmup, backend=args.backend,
                         **knobs_from_args(args))
    if args.json:
        _write_json(None, rep)
        return 0
    print(f"model {rep['model']}  backend {rep['backend']}  batch {rep['batch']}  threads {rep['threads'] or 'all'}  "
          f"hardware counters over {rep['runs']} runs ({rep['scope']})")
    print(format_report(rep, rep["runs"]))
    return 0


def _bench_simulate(model, args: argparse.Namespace) -> int:
    """`bench --simulate`: DRAM bytes per inference from cachegrind (source simulated),
    the exact model first, then the knobs given on the command line, then --variants."""
    from .simulate import format_result, parse_llc, simulate_variants

    variants: list[tuple[str, dict[str, Any]]] = [("exact", {})]
    knobs = knobs_from_args(args)
    if knobs:
        variants.append((" ".join(f"{k}={v}" for k, v in knobs.items()), knobs))
    if args.variants:
        try:
            spec = json.loads(Path(args.variants).read_text())
        except (OSError, ValueError) as exc:
            raise AipnetError(f"--variants {args.variants}: {exc}") from None
        items = spec.get("variants", spec) if isinstance(spec, dict) else spec
        if not isinstance(items, list) or not all(isinstance(v, dict) and isinstance(v.get("knobs", {}), dict)
                                                  for v in items):
            raise AipnetError(f"--variants {args.variants}: expected {{\"variants\": [{{\"name\": ..., "
                              f"\"knobs\": {{...}}}}, ...]}}")
        for i, v in enumerate(items):
            variants.append((str(v.get("name", f"variant{i + 1}")), dict(v.get("knobs", {}))))
    res = simulate_variants(model, variants, parse_llc(args.llc), args.batch)
    _report(args, res, lambda r: f"model {model.source}\n{format_result(r)}")
    return 0


def _test_images(args: argparse.Namespace):
    """The Fashion-MNIST test images of --data (cut to --limit), and where they came from."""
    from .data import load_fashion_mnist

    images, labels, source = load_fashion_mnist("test", args.data)
    if args.limit is not None:
        images, labels = images[:args.limit], labels[:args.limit]
    return images, labels, source


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_eval
    from .model import load

    model = load(args.model)
    images, labels, source = _test_images(args)
    res = evaluate(model, images, labels, args.batch, args.threads, source, progress=not args.json,
                   backend=args.backend, **knobs_from_args(args))
    return _report(args, res, format_eval)


def cmd_tune(args: argparse.Namespace) -> int:
    from .config import write_config
    from .energy import EnergyConstants
    from .model import load
    from .progress import progress_bar
    from .tune import Tuner, format_tune, plot_front

    model = load(args.model)
    images, labels, source = _test_images(args)
    with progress_bar(None, "tune (evaluations)", disable=args.json) as bar:
        tuner = Tuner(model, images, labels, args.budget, args.objective, args.drowsy_granularity,
                      aip=not args.no_aip, drowsy=not args.no_drowsy, seed=args.seed, threads=args.threads,
                      constants=EnergyConstants.load(args.energy_constants), progress=bar.update,
                      margin=args.margin)
        res = tuner.run()
    res["data"] = source
    if args.out:
        write_config(args.out, res["config"])
        res["config_file"] = args.out
    if args.plot:
        plot_front(res, args.plot)
        res["plot"] = args.plot
    return _report(args, res, format_tune)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return demo(args)


# -- parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aipnet", description="CNN inference with AIP and DrowsyNet knobs")
    p.add_argument("--version", action="version", version=f"aipnet {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def model_arg(sp):
        sp.add_argument("model", help="an .onnx or .aipn file or a built-in model name (reference, vggf, ...)")

    def threads_arg(sp):
        sp.add_argument("--threads", type=int, default=None, help="kernel threads (default: all cores)")

    def backend_arg(sp):
        sp.add_argument("--backend", default="numba", choices=["numba", "c"],
                        help="numba (default) or c (the C runtime through aipnet._native)")

    sp = sub.add_parser("info", help="per-layer table: op, output shape, params, MACs, weight bytes")
    model_arg(sp)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    backend_arg(sp)
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser("run", help="run a model on .npy inputs")
    model_arg(sp)
    sp.add_argument("--input", "-i", action="append", required=True, metavar="X.npy|NAME=X.npy")
    sp.add_argument("--output", "-o", help="write the output (.npy; .npz for several outputs)")
    sp.add_argument("--stats", metavar="S.json", help="write the stats record of the run")
    sp.add_argument("--json", action="store_true", help="print output shapes and stats as JSON")
    threads_arg(sp)
    backend_arg(sp)
    add_knob_args(sp)
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("bench", help="time aipnet against onnxruntime in one run")
    model_arg(sp)
    sp.add_argument("--against", default="onnxruntime", choices=["onnxruntime", "none"])
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--repeat", type=int, default=20)
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--counters", action="store_true",
                    help="count cycles, instructions and last-level-cache loads/misses with the hardware counters "
                         "(perf_event_open; source hw) over the runs instead of timing; where the machine has "
                         "none, say why")
    sp.add_argument("--simulate", action="store_true",
                    help="instead of timing: DRAM bytes per inference from a cache simulation (aipnet-run under "
                         "valgrind's cachegrind; source simulated), for the exact model and the knobs given")
    sp.add_argument("--llc", default=None, metavar="BYTES,WAYS,LINE",
                    help="--simulate: the last-level cache (default 1048576,16,64: a board-like 1 MiB, 16-way)")
    sp.add_argument("--variants", default=None, metavar="FILE.json",
                    help='--simulate: more knob sets, {"variants": [{"name": "aip", "knobs": {"aip": true}}]}')
    threads_arg(sp)
    backend_arg(sp)
    add_knob_args(sp)
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("convert", help="write the optimised model as a packed .aipn file")
    model_arg(sp)
    sp.add_argument("--output", "-o", required=True, metavar="MODEL.aipn")
    aip = sp.add_argument_group("AIP packing of the FC layers (any of these switches it on)")
    aip.add_argument("--aip", action="store_true", help="pack FC layers (default: stride policy, fraction 1/16)")
    aip.add_argument("--aip-fraction", type=float, default=None, help="fraction of inputs in the approximate pass")
    aip.add_argument("--aip-policy", choices=["stride", "random", "importance"], default=None)
    aip.add_argument("--aip-threshold", type=float, default=None, help="the layers' stored theta (default 0)")
    aip.add_argument("--calib", metavar="X.npy", help="calibration inputs (batch first) for importance and scale")
    aip.add_argument("--calib-data", metavar="DIR", help="calibrate on Fashion-MNIST train images from DIR "
                     "('default': the Debian path)")
    aip.add_argument("--calib-limit", type=int, default=2000, help="calibration images drawn (seeded)")
    aip.add_argument("--seed", type=int, default=0)
    aip.add_argument("--config", default=None, metavar="FILE",
                     help="JSON/TOML knobs: aip_fraction, aip_policy, aip_threshold, per-layer aip_fraction "
                          "and aip_threshold (flags override it)")
    sp.set_defaults(func=cmd_convert)

    sp = sub.add_parser("eval", help="top-1/top-5 accuracy and cost on Fashion-MNIST")
    model_arg(sp)
    sp.add_argument("--data", default=None, metavar="DIR",
                    help="folder with the IDX files (default: the Debian path, else the shipped subset)")
    sp.add_argument("--limit", type=int, default=None, help="evaluate the first N images only")
    sp.add_argument("--batch", type=int, default=100)
    sp.add_argument("--json", action="store_true")
    threads_arg(sp)
    backend_arg(sp)
    add_knob_args(sp)
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("tune", help="cheapest per-layer DrowsyNet rates and AIP thresholds within a top-1 budget")
    model_arg(sp)
    sp.add_argument("--data", default=None, metavar="DIR",
                    help="folder with the IDX files (default: the Debian path, else the shipped subset)")
    sp.add_argument("--limit", type=int, default=2000, help="images used (half calibration, half held-out)")
    sp.add_argument("--budget", type=float, default=0.02, help="allowed top-1 loss, as a fraction (0.02 = 2 points)")
    sp.add_argument("--margin", type=float, default=2.0,
                    help="standard errors of the calibration loss kept below the budget (default 2; 0 = none)")
    sp.add_argument("--objective", default="energy", choices=["energy", "traffic", "macs", "time"])
    sp.add_argument("--drowsy-granularity", default="pixel", choices=["neuron", "pixel", "channel", "tile"])
    sp.add_argument("--no-aip", action="store_true", help="tune DrowsyNet rates only")
    sp.add_argument("--no-drowsy", action="store_true", help="tune AIP thresholds only")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--energy-constants", metavar="FILE", help="JSON of dram_pj, sram_pj, mul_pj, add_pj")
    sp.add_argument("--out", metavar="CONFIG.json", help="write the chosen setting as a config file")
    sp.add_argument("--plot", metavar="FRONT.png", help="plot the Pareto front of the evaluated settings")
    sp.add_argument("--json", action="store_true")
    threads_arg(sp)
    sp.set_defaults(func=cmd_tune)

    sp = sub.add_parser("demo", help="the reference model's trade-off: exact vs AIP vs DrowsyNet vs tuned, "
                        "a table and a PNG")
    sp.add_argument("--model", default=None, help="another model: just print its info table")
    sp.add_argument("--data", default=None, metavar="DIR", help="Fashion-MNIST IDX folder (default: Debian's, "
                    "else the shipped subset)")
    sp.add_argument("--limit", type=int, default=500, help="images evaluated (batch 1)")
    sp.add_argument("--out", default=".", metavar="DIR", help="where the PNG and JSON go")
    threads_arg(sp)
    sp.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key in ("batch", "repeat", "limit", "calib_limit"):
        if getattr(args, key, 1) is not None and getattr(args, key, 1) < 1:
            parser.exit(EXIT_USAGE, f"aipnet: error: --{key} must be at least 1\n")
    try:
        return int(args.func(args) or 0)
    except AipnetError as exc:
        print(f"aipnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aipnet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: still one line, with a way to see more
        if os.environ.get("AIPNET_DEBUG"):
            raise
        print(f"aipnet: internal error: {type(exc).__name__}: {exc} (set AIPNET_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
