"""Hardware performance counters around a run: the front end of ``csrc/perf.c``
(perf_event_open(2) through ``aipnet._native``).

Every figure here is labelled ``hw``: a count the CPU's PMU made. Where the machine has
no counters (VMs without a virtual PMU, such as the development machines) each event
carries the errno of perf_event_open and what it means, the report says so, and points
to ``aipnet bench --simulate`` (cachegrind, labelled ``simulated``). Nothing here ever
fills in an estimate for a missing count.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Callable, Sequence

from .errors import AipnetError

SOURCE = "hw"
SOFTWARE_SOURCE = "sw"  # kernel software events (AIPN_PERF_SOFTWARE): a plumbing check, never hardware
SIMULATE_HINT = ("for memory traffic on this machine use `aipnet bench MODEL --simulate` "
                 "(cachegrind with a board-like last-level cache, labelled simulated)")

# What perf_event_open's errno means for counting (perf_event_open(2), ERRORS).
MEANINGS = {
    _errno.ENOENT: "this CPU's PMU has no such event (typical of a VM without a virtual PMU: "
                   "the hypervisor does not expose hardware counters)",
    _errno.EOPNOTSUPP: "the PMU cannot count this event in this mode (no such hardware event, or no "
                       "overflow interrupt on a VM)",
    _errno.ENODEV: "no PMU supports this event on this CPU",
    _errno.EACCES: "not permitted by /proc/sys/kernel/perf_event_paranoid (lower it, or run with "
                   "CAP_PERFMON)",
    _errno.EPERM: "not permitted (perf_event_paranoid, a seccomp filter or a container's policy)",
    _errno.ENOSYS: "perf events are not available (kernel without CONFIG_PERF_EVENTS, or not Linux)",
    _errno.EINVAL: "the kernel rejected the event description (event not valid on this CPU)",
    _errno.EBUSY: "the counters are in exclusive use by another user (e.g. the NMI watchdog or another "
                  "profiler)",
    _errno.EMFILE: "too many open files (one counter per thread and event)",
    _errno.E2BIG: "the kernel does not know this perf_event_attr size (kernel too old)",
}


def explain(err: int) -> str:
    """``ENOENT (No such file or directory): <what it means for perf counters>``."""
    name = _errno.errorcode.get(err, f"errno {err}")
    meaning = MEANINGS.get(err, "perf_event_open failed")
    return f"{name} ({os.strerror(err)}): {meaning}"


def parse_counts(names: Sequence[str], values: Sequence[int], errors: Sequence[int],
                 enabled: Sequence[int], running: Sequence[int], threads: int,
                 source: str = SOURCE) -> dict[str, Any]:
    """The report of one measurement from the raw fields of ``aipn_perf_counts``.

    ``{"source", "available", "threads_counted", "events": [{"name", "source", "value"
    (None when not counted), "errno", "error", "multiplexed", "time_enabled_ns",
    "time_running_ns"}], "message"}``. An event that was multiplexed keeps its raw
    count (not scaled) and says so; ``available`` is True only if every event counted.
    """
    events = []
    for name, v, e, te, tr in zip(names, values, errors, enabled, running):
        ev: dict[str, Any] = {"name": name, "source": source, "value": None if e else int(v), "errno": int(e),
                              "error": explain(e) if e else None,
                              "multiplexed": bool(not e and tr < te), "time_enabled_ns": int(te),
                              "time_running_ns": int(tr)}
        events.append(ev)
    counted = [ev for ev in events if ev["value"] is not None]
    rep: dict[str, Any] = {"source": source, "available": len(counted) == len(events) and bool(events),
                           "threads_counted": int(threads), "events": events}
    if not counted:
        errs = sorted({ev["errno"] for ev in events})
        rep["message"] = ("hardware performance counters are not available on this machine: perf_event_open "
                          "failed with " + "; ".join(explain(e) for e in errs) + ". No hardware figure is "
                          "reported; " + SIMULATE_HINT + ".")
    elif len(counted) < len(events):
        missing = ", ".join(f"{ev['name']} ({_errno.errorcode.get(ev['errno'], ev['errno'])})"
                            for ev in events if ev["value"] is None)
        rep["message"] = f"some events are not counted on this machine: {missing}; they are left out, not estimated."
    else:
        rep["message"] = ""
    if any(ev["multiplexed"] for ev in events):
        rep["message"] += (" Some events were multiplexed by the kernel (time_running < time_enabled): their values "
                           "are raw counts over the running time, not scaled.")
    return rep


class PerfCounters:
    """A context manager around ``aipn_perf_*``: open (after the session exists, so its
    worker threads are counted), start on enter, stop on exit; ``report`` afterwards."""

    def __init__(self, software: bool = False):
        from . import native

        native._require()
        self._ffi, self._lib = native.ffi, native.lib
        out = self._ffi.new("aipn_perf **")
        native._check(self._lib.aipn_perf_open(self._lib.AIPN_PERF_SOFTWARE if software else 0, out))
        self._ptr = self._ffi.gc(out[0], self._lib.aipn_perf_close)
        self.source = SOFTWARE_SOURCE if software else SOURCE
        self.report: dict[str, Any] | None = None

    def __enter__(self) -> "PerfCounters":
        from . import native

        native._check(self._lib.aipn_perf_start(self._ptr))
        return self

    def __exit__(self, *exc: Any) -> None:
        from . import native

        c = self._ffi.new("aipn_perf_counts *")
        native._check(self._lib.aipn_perf_stop(self._ptr, c))
        n = self._lib.AIPN_PERF_EVENTS
        names = [self._ffi.string(c.name[i]).decode() for i in range(n)]
        self.report = parse_counts(names, list(c.value), list(c.error), list(c.time_enabled_ns),
                                   list(c.time_running_ns), c.threads, self.source)


def measure(fn: Callable[[], Any], software: bool = False) -> dict[str, Any]:
    """Count the events of one call of ``fn`` (every thread of the process)."""
    pc = PerfCounters(software)
    with pc:
        fn()
    assert pc.report is not None
    return pc.report


def counters_available() -> tuple[bool, str]:
    """(True, "") when the hardware counters count here, else (False, the reason)."""
    try:
        rep = measure(lambda: None)
    except AipnetError as exc:
        return False, str(exc)
    return rep["available"], rep["message"]


def format_report(rep: dict[str, Any], runs: int = 1) -> str:
    """Lines for the CLI: each counted event with its source label, or the reason it is not."""
    lines = []
    label = rep["source"]
    per = f" per run (mean of {runs})" if runs > 1 else ""
    for ev in rep["events"]:
        if ev["value"] is None:
            code = _errno.errorcode.get(ev["errno"], f"errno {ev['errno']}")
            lines.append(f"  {ev['name']:18s} not counted ({label} unavailable: {code})")
        else:
            v = ev["value"] / runs
            mux = "  [multiplexed: raw count, not scaled]" if ev["multiplexed"] else ""
            lines.append(f"  {ev['name']:18s} {v:16,.0f}  ({label}){per}{mux}")
    if rep["message"]:
        lines.append("  " + rep["message"].strip())
    return "\n".join(lines)
