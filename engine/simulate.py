"""Simulated DRAM traffic: ``aipnet-run`` under valgrind's cachegrind with a board-like
last-level cache (DESIGN.md, "Measuring on these machines"). Figures from here are
labelled ``simulated``.

Method. The model (as .aipn) runs in ``aipnet-run`` built with debug info
(``make -C csrc sim``), one thread, checksums skipped, under
``valgrind --tool=cachegrind --cache-sim=yes --LL=BYTES,WAYS,LINE``, twice: with
``--repeat 1`` and ``--repeat 2``. Per function, the misses of the second process minus
those of the first are the misses of one steady-state inference (loading, planning and
file I/O are the same in both and cancel; the caches hold what the previous inference
left, as on a board that classifies a stream of images). DRAM bytes = (LL data read
misses + LL data write misses) x line size, summed over the engine's own functions (the
functions of ``csrc/``, found by their source files in the debug info; code of libc and
the loader is left out and reported apart as ``outside_engine_dram_bytes``). The FC /
conv split is by function: FC = the AIP kernels (``aip.c``), the small-batch FC product
(``fc_*`` in gemm.c) and the Gemm/MatMul/AipFC op bodies; conv = ``conv.c``,
``conv_panels.c``, ``drowsy*.c`` and the blocked SGEMM (at batch > 4 an FC layer also runs through SGEMM and is counted as conv:
simulate at batch <= 4 for a clean split). Cachegrind's model: write-allocate, LRU,
inclusive LL, no prefetcher, no write-back traffic (a dirty line's eviction is not
counted); instruction-fetch misses are not counted (code is tiny next to weights).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import AipnetError, KnobError

SOURCE = "simulated"
DEFAULT_LLC = (1 << 20, 16, 64)  # 1 MiB, 16-way, 64-byte lines: a board-like last-level cache

# FC functions (by name) outside aip.c; everything in aip.c is FC too.
FC_FUNCTIONS = {"fc_f32", "fc_task", "fc_rows", "fc_rows_avx2", "dot", "run_gemm", "run_matmul", "run_aipfc",
                "aip_fc_run"}
# conv_panels.c: the dense conv engine (exact and DrowsyNet tile/pixel/channel); drowsy*.c: the masks and neuron kernel
CONV_FILES = {"conv.c", "conv_panels.c", "drowsy.c", "drowsy_neuron.c"}
FC_FILES = {"aip.c"}
# in gemm.c, what is not FC serves convs: the weight packing of the exact conv and the
# blocked SGEMM of the im2col fallback for huge planes
CONV_FUNCTIONS = {"run_conv", "conv2d", "im2col_task", "depthwise_task", "sgemm", "gemm_task", "gemm_block_avx2",
                  "gemm_block_base", "pack_a", "pack_b", "ukernel", "ukernel_avx2"}


@dataclass(frozen=True)
class LLC:
    size: int
    ways: int
    line: int

    @property
    def flag(self) -> str:
        return f"--LL={self.size},{self.ways},{self.line}"

    def as_dict(self) -> dict[str, int]:
        return {"bytes": self.size, "ways": self.ways, "line": self.line}


def parse_llc(text: str | Sequence[int] | None) -> LLC:
    """``"1048576,16,64"`` (bytes, ways, line bytes; ``1M``/``512K`` allowed for the size)."""
    if text is None:
        return LLC(*DEFAULT_LLC)
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise KnobError(f"--llc {text!r}: expected BYTES,WAYS,LINE (e.g. 1048576,16,64)")
        vals = []
        for p in parts:
            m = re.fullmatch(r"(\d+)([KkMm]?)(i?[Bb]?)", p)
            if not m:
                raise KnobError(f"--llc {text!r}: {p!r} is not a whole number")
            vals.append(int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20}[m.group(2).lower()])
    else:
        vals = [int(v) for v in text]
    size, ways, line = vals
    if size <= 0 or ways <= 0 or line <= 0:
        raise KnobError(f"--llc: size, ways and line must be positive, got {size},{ways},{line}")
    if line & (line - 1) or line < 16:
        raise KnobError(f"--llc: the line size must be a power of two >= 16, got {line}")
    if size % (ways * line):
        raise KnobError(f"--llc: the size {size} is not a multiple of ways x line = {ways * line}")
    return LLC(size, ways, line)


# -- cachegrind output ---------------------------------------------------------------------
def parse_cachegrind(text: str) -> dict[str, Any]:
    """Parse a cachegrind.out file: ``{"events": [...], "desc": {...}, "cmd": str,
    "functions": {(file, function): {event: count}}, "summary": {event: count}}``.
    Lines of counts may omit trailing zero events (the format allows it)."""
    events: list[str] = []
    desc: dict[str, str] = {}
    cmd = ""
    funcs: dict[tuple[str, str], list[int]] = {}
    summary: list[int] = []
    fl = fn = "???"
    cur: list[int] | None = None
    for line in text.splitlines():
        if not line:
            continue
        c = line[0]
        if c.isdigit():
            if cur is None:
                raise AipnetError("cachegrind output: counts before any fn= line")
            nums = line.split()
            if len(nums) - 1 > len(events):
                raise AipnetError(f"cachegrind output: {len(nums) - 1} counts for {len(events)} events: {line!r}")
            for i, v in enumerate(nums[1:]):
                cur[i] += int(v)
        elif line.startswith("fl="):
            fl = line[3:]
        elif line.startswith("fn="):
            fn = line[3:]
            cur = funcs.setdefault((fl, fn), [0] * len(events))
        elif line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("desc:"):
            k, _, v = line[5:].strip().partition(":")
            desc[k.strip()] = v.strip()
        elif line.startswith("cmd:"):
            cmd = line[4:].strip()
        elif line.startswith("summary:"):
            summary = [int(v) for v in line.split()[1:]]
    if not events:
        raise AipnetError("cachegrind output: no events line (not a cachegrind.out file?)")
    return {"events": events, "desc": desc, "cmd": cmd,
            "functions": {k: dict(zip(events, v)) for k, v in funcs.items()},
            "summary": dict(zip(events, summary + [0] * (len(events) - len(summary))))}


def category(file: str, function: str) -> str:
    """``fc``, ``conv`` or ``other`` for one of the engine's functions."""
    base = os.path.basename(file)
    name = function.split("@")[0].split(".")[0]  # gcc clones: foo.isra.0, foo.constprop.1
    if base in FC_FILES or name in FC_FUNCTIONS:
        return "fc"
    if base in CONV_FILES or name in CONV_FUNCTIONS:
        return "conv"
    return "other"


def is_engine_file(file: str, source_files: Iterable[str]) -> bool:
    """True for a file of csrc/ (an absolute path to one of ``source_files``, or a bare
    name of one: the debug info names what the compiler was given)."""
    srcs = {str(Path(f).resolve()) for f in source_files}
    if os.path.isabs(file):
        return str(Path(file).resolve()) in srcs
    return "/" not in file and any(os.path.basename(f) == file for f in srcs)


def engine_functions(functions: Iterable[tuple[str, str]], source_files: Iterable[str]) -> set[str]:
    """Names of the functions defined in the engine's sources; code of compiler headers
    inlined into them (the debug info files it under the header) counts with them."""
    srcs = list(source_files)
    return {fn for fl, fn in functions if is_engine_file(fl, srcs)}


def attribute(profile: Mapping[str, Any], source_files: Iterable[str], line: int,
              minus: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """DRAM bytes by category from a parsed profile (optionally minus another profile,
    function by function): ``{"fc", "conv", "other", "outside_engine", "by_function"}``.
    Files of the engine's functions are matched by basename (the .c files of csrc/)."""
    srcs = list(source_files)
    funcs: dict[tuple[str, str], dict[str, int]] = {k: dict(v) for k, v in profile["functions"].items()}
    if minus is not None:
        for k, v in minus["functions"].items():
            d = funcs.setdefault(k, {e: 0 for e in profile["events"]})
            for e, n in v.items():
                d[e] = d.get(e, 0) - n
    ours = engine_functions(funcs, srcs)
    # a function's category comes from the engine file that defines it (not an inlined header)
    home: dict[str, str] = {}
    for fl, fn in funcs:
        if fn in ours and is_engine_file(fl, srcs):
            home.setdefault(fn, fl)
    out = {"fc": 0, "conv": 0, "other": 0, "outside_engine": 0}
    reads = writes = 0
    by_fn: dict[str, int] = {}
    for (fl, fn), ev in funcs.items():
        misses = ev.get("DLmr", 0) + ev.get("DLmw", 0)
        if fn in ours:
            cat = category(home.get(fn, fl), fn)
            out[cat] += misses * line
            reads += ev.get("DLmr", 0)
            writes += ev.get("DLmw", 0)
            key = f"{os.path.basename(home.get(fn, fl))}:{fn}"
            by_fn[key] = by_fn.get(key, 0) + misses * line
        else:
            out["outside_engine"] += misses * line
    out["ll_read_misses"] = reads
    out["ll_write_misses"] = writes
    out["by_function"] = dict(sorted(((k, v) for k, v in by_fn.items() if v), key=lambda kv: -kv[1]))
    return out


# -- the runner ----------------------------------------------------------------------------
def csrc_dir() -> Path | None:
    """The C sources: $AIPNET_CSRC, else beside the package (editable install), else ./csrc."""
    cands = [os.environ.get("AIPNET_CSRC"), Path(__file__).resolve().parent.parent / "csrc", Path.cwd() / "csrc"]
    for c in cands:
        if c and (Path(c) / "aipnet_run.c").is_file() and (Path(c) / "Makefile").is_file():
            return Path(c)
    return None


def source_files(csrc: Path) -> list[str]:
    return sorted(str(p) for p in csrc.glob("*.c"))


def build_runner(csrc: Path | None = None) -> Path:
    """``csrc/build/aipnet-run-g`` (aipnet-run with -g), built with make if missing or stale."""
    csrc = csrc or csrc_dir()
    if csrc is None:
        raise AipnetError("--simulate needs the C sources (csrc/) to build aipnet-run with debug info; run from a "
                          "checkout of aipnet or set AIPNET_CSRC")
    if shutil.which("make") is None:
        raise AipnetError("--simulate needs make and a C compiler to build aipnet-run: apt-get install build-essential")
    r = subprocess.run(["make", "-C", str(csrc), "-s", "sim"], capture_output=True, text=True)
    if r.returncode != 0:
        raise AipnetError(f"building aipnet-run for the simulation failed: {r.stderr.strip()[-500:]}")
    return csrc / "build" / "aipnet-run-g"


def valgrind_path() -> str:
    vg = shutil.which("valgrind")
    if vg is None:
        raise AipnetError("--simulate needs valgrind (cachegrind): apt-get install valgrind")
    return vg


def run_cachegrind(runner: Path, model_path: Path, input_path: Path, llc: LLC, repeat: int, workdir: Path,
                   extra_args: Sequence[str] = ()) -> dict[str, Any]:
    out = workdir / f"cachegrind.out.{repeat}"
    cmd = [valgrind_path(), "--tool=cachegrind", "--cache-sim=yes", llc.flag, f"--cachegrind-out-file={out}",
           str(runner), str(model_path), str(input_path), str(workdir / "y.npy"), "--threads", "1", "--no-verify",
           "--repeat", str(repeat), *extra_args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not out.is_file():
        tail = "\n".join(r.stderr.strip().splitlines()[-5:])
        raise AipnetError(f"cachegrind run failed (exit {r.returncode}): {tail}")
    prof = parse_cachegrind(out.read_text())
    prof["command"] = " ".join(cmd)
    return prof


# -- knobs -> aipnet-run flags -----------------------------------------------------------
def runner_flags(knobs: Mapping[str, Any], supported: Sequence[str] = ()) -> list[str]:
    """aipnet-run flags for the run-time knobs; a knob the C runtime (aipnet-run) does not
    implement is an error naming it (never silently simulated exact)."""
    flags: list[str] = []
    missing = []
    for k, v in knobs.items():
        if k in ("aip_fraction", "aip_policy") or (k == "seed" and "--seed" not in supported):
            continue  # packing knobs: applied when the .aipn file is written (the seed: and by DrowsyNet's masks)
        flag = "--" + k.replace("_", "-")
        if flag not in supported:
            missing.append(k)
            continue
        if isinstance(v, bool):
            flags.append(flag if v else "--no-" + flag[2:])
        else:
            flags += [flag, str(v)]
    if missing:
        raise KnobError(f"--simulate runs the C runtime (aipnet-run), which does not implement "
                        f"{', '.join(missing)} yet; simulate without {'it' if len(missing) == 1 else 'them'} "
                        "(or use backend numba for timings and analytic counts)")
    return flags


def runner_knob_flags(runner: Path) -> list[str]:
    """The knob flags this aipnet-run accepts (from its usage line)."""
    r = subprocess.run([str(runner)], capture_output=True, text=True)
    return re.findall(r"--[a-z][a-z-]+", r.stderr)


# -- the whole thing -------------------------------------------------------------------------
def default_inputs(model: Any, batch: int) -> np.ndarray:
    """Real Fashion-MNIST test images for a 1 x 28 x 28 model (AIP's refinement depends on
    real activations), else seeded standard-normal values."""
    from .info import random_feeds

    feeds = random_feeds(model, batch)
    if len(feeds) != 1:
        raise AipnetError("--simulate runs aipnet-run, which takes models with one input")
    x = next(iter(feeds.values()))
    if tuple(x.shape[1:]) == (1, 28, 28):
        try:
            from .data import load_fashion_mnist

            imgs, _, _ = load_fashion_mnist("test")
            return np.ascontiguousarray(imgs[:batch].reshape(x.shape), dtype=np.float32)
        except AipnetError:
            pass
    return np.ascontiguousarray(x, dtype=np.float32)


def analytic_fc_weight_bytes(model: Any, x: np.ndarray, knobs: Mapping[str, Any]) -> int | None:
    """FC weight bytes read by one run as the kernels count them (source analytic),
    with the C backend (the runtime that was simulated)."""
    from .session import Session

    try:
        sess = Session(model, backend="c", threads=1, **knobs)
        sess.run(x)
    except AipnetError:
        return None
    return int(sum(l["weight_bytes_read"] for l in sess.stats["layers"] if l["op"] in ("Gemm", "MatMul", "AipFC")))


def simulate_variants(model: Any, variants: Sequence[tuple[str, Mapping[str, Any]]], llc: LLC | None = None,
                      batch: int = 1, x: np.ndarray | None = None, keep: str | None = None) -> dict[str, Any]:
    """Simulated DRAM bytes of one steady-state inference per variant (name, knobs)."""
    from . import aipn_format

    llc = llc or LLC(*DEFAULT_LLC)
    csrc = csrc_dir()
    runner = build_runner(csrc)
    valgrind_path()
    supported = runner_knob_flags(runner)
    x = default_inputs(model, batch) if x is None else np.ascontiguousarray(x, dtype=np.float32)
    srcs = source_files(csrc)  # type: ignore[arg-type]
    result: dict[str, Any] = {"source": SOURCE, "llc": llc.as_dict(), "batch": int(x.shape[0]), "threads": 1,
                              "variants": [], "method": "cachegrind, misses of 2 runs minus 1 run (steady state), "
                              "engine functions only, (LL data read + write misses) x line"}
    with tempfile.TemporaryDirectory(prefix="aipnet-sim-", dir=keep) as tmp:
        work = Path(tmp)
        np.save(work / "x.npy", x)
        planned = []
        for name, knobs in variants:  # every variant's flags first: refuse before simulating anything
            knobs = dict(knobs)
            if "config" in knobs:  # a config file (aipnet.config): its knobs, explicit ones overriding
                from .config import merge, read_config

                cfg = knobs.pop("config")
                knobs = merge(read_config(cfg), knobs)
            planned.append((name, knobs, runner_flags(knobs, supported)))
        for name, knobs, flags in planned:
            mpath = _model_file(model, knobs, work / f"{_slug(name)}.aipn", aipn_format)
            p1 = run_cachegrind(runner, mpath, work / "x.npy", llc, 1, work, flags)
            p2 = run_cachegrind(runner, mpath, work / "x.npy", llc, 2, work, flags)
            att = attribute(p2, srcs, llc.line, minus=p1)
            fc_an = analytic_fc_weight_bytes(model, x, knobs)
            v = {"name": name, "knobs": knobs, "source": SOURCE,
                 "dram_bytes": att["fc"] + att["conv"] + att["other"],
                 "fc_dram_bytes": att["fc"], "conv_dram_bytes": att["conv"], "other_dram_bytes": att["other"],
                 "outside_engine_dram_bytes": att["outside_engine"],
                 "ll_read_misses": att["ll_read_misses"], "ll_write_misses": att["ll_write_misses"],
                 "by_function": att["by_function"],
                 "analytic": {"source": "analytic", "fc_weight_bytes_read": fc_an},
                 "command": p2["command"]}
            result["variants"].append(v)
    return result


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "variant"


def _model_file(model: Any, knobs: Mapping[str, Any], path: Path, aipn_format: Any) -> Path:
    """The .aipn file to run: the model's own packed file, or the graph written out
    (packed for AIP first when AIP knobs are on and the model has no packed FC layer)."""
    wants_aip = bool(knobs.get("aip"))
    has_aipfc = any(n.op == "AipFC" for n in model.graph.nodes)
    if model.packed_path and (has_aipfc or not wants_aip):
        return Path(model.packed_path)
    g = model.graph
    if wants_aip and not has_aipfc:
        import copy

        from .aip import pack_graph
        from .knobs import make_knobs

        kn = make_knobs(**{k: v for k, v in knobs.items() if k in ("aip_fraction", "aip_policy", "seed")})
        g = copy.deepcopy(g)
        theta = knobs.get("aip_threshold")
        pack_graph(g, kn.aip_fraction, kn.aip_policy, kn.seed, None, 0.0 if theta is None else theta)
    aipn_format.save(g, path, {"source": Path(str(model.source)).name})
    return path


def format_result(res: Mapping[str, Any]) -> str:
    llc = res["llc"]
    lines = [f"simulated DRAM traffic per inference (cachegrind, LL {llc['bytes']} B, {llc['ways']}-way, "
             f"{llc['line']} B lines; batch {res['batch']}, 1 thread; steady state: 2 runs minus 1)"]
    exact = res["variants"][0]["dram_bytes"] if res["variants"] else 0
    for v in res["variants"]:
        rel = f"  ({v['dram_bytes'] / exact:.2f}x {res['variants'][0]['name']})" if exact and v is not res["variants"][0] else ""
        lines.append(f"  {v['name']:24s} {v['dram_bytes'] / 1e6:9.3f} MB (simulated){rel}")
        lines.append(f"    fc {v['fc_dram_bytes'] / 1e6:9.3f} MB (simulated)   conv {v['conv_dram_bytes'] / 1e6:8.3f} MB "
                     f"(simulated)   other {v['other_dram_bytes'] / 1e6:7.3f} MB (simulated)   outside the engine "
                     f"(libc) {v['outside_engine_dram_bytes'] / 1e6:.3f} MB (simulated, not counted)")
        an = v["analytic"]["fc_weight_bytes_read"]
        if an:
            lines.append(f"    fc weight bytes read {an / 1e6:9.3f} MB (analytic): simulated fc / analytic = "
                         f"{v['fc_dram_bytes'] / an:.3f}")
    return "\n".join(lines)
