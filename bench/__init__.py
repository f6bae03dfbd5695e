"""Lockstep benchmark suite (ADR-006): `lockstep bench` or `python -m bench.suite`.

Every module here exposes ``run(quick: bool) -> list[dict]``; each dict is one metric with
the keys of :data:`METRIC_KEYS`. A metric is always measured against a baseline taken in
the same run on the same machine, so `ratio` (median / baseline_median) compares across
machines while the absolute numbers do not.

This package also holds the few helpers the bench modules share: metric dicts,
percentiles, service processes started the way the supervisor starts them, and RSS.
"""

from __future__ import annotations

import argparse
import atexit
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lockstep.spawn import ServiceProcess
from lockstep.spawn import start_service as _start

__all__ = [
    "METRIC_KEYS",
    "REPO_ROOT",
    "ServiceProc",
    "metric",
    "note",
    "percentile",
    "rss_bytes",
    "set_reporter",
    "standalone",
    "start_service",
]

REPO_ROOT = Path(__file__).resolve().parent.parent

METRIC_KEYS = (
    "name",
    "unit",
    "median",
    "p10",
    "p90",
    "baseline",
    "baseline_median",
    "ratio",
    "spec_target",
    "goal",
)


def percentile(values: list[float], q: float) -> float:
    """The q-quantile by nearest rank (q in [0, 1])."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def metric(
    name: str,
    unit: str,
    samples: list[float],
    baseline: str,
    base_samples: list[float],
    spec_target: str,
    goal: str,
    **extra: object,
) -> dict[str, object]:
    """One metric dict: median and p10/p90 of `samples`, ratio to the baseline's median."""
    median = statistics.median(samples)
    base = statistics.median(base_samples) if base_samples else 0.0
    out: dict[str, object] = {
        "name": name,
        "unit": unit,
        "median": round(median, 4),
        "p10": round(percentile(samples, 0.1), 4),
        "p90": round(percentile(samples, 0.9), 4),
        "baseline": baseline,
        "baseline_median": round(base, 4) if base_samples else None,
        "ratio": round(median / base, 3) if base else None,
        "spec_target": spec_target,
        "goal": goal,
    }
    out.update(extra)
    return out


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


_started: list[ServiceProcess] = []


@atexit.register
def _stop_all() -> None:
    # An interrupted benchmark must not leave pool processes behind.
    for svc in _started:
        svc.stop()


ServiceProc = ServiceProcess


def start_service(
    module: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> ServiceProcess:
    """Start `python -m module` on port 0 without auth and wait until it serves.
    Benchmarks run without auth: token checks are a per-call constant the services pay
    either way, and no credentials need to exist on disk."""
    svc = _start(module, None, *args, timeout=timeout, env=env)
    _started.append(svc)
    return svc


_reporter: list[object] = []


def set_reporter(fn: object) -> None:
    """Route :func:`note` to `fn(text)` (the suite's progress display); None restores stderr."""
    _reporter[:] = [] if fn is None else [fn]


def note(text: str) -> None:
    """Progress of a long benchmark step ("spawning 10,000 agents...")."""
    if _reporter:
        _reporter[0](text)  # type: ignore[operator]
    else:
        print(f"  .. {text}", file=sys.stderr, flush=True)


def standalone(
    run: Callable[[bool], list[dict[str, Any]]],
    description: str | None,
    argv: list[str] | None = None,
) -> int:
    """`python bench/<module>.py [--quick] [--json]`: one module's metrics on their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    metrics = run(args.quick)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    width = max(len(str(m["name"])) for m in metrics)
    print(f"{'metric':{width}} {'median':>9} {'p10':>9} {'p90':>9} {'base':>9} {'ratio':>7}  goal")
    for m in metrics:
        print(
            f"{m['name']!s:{width}} {m['median']!s:>9} {m['p10']!s:>9} {m['p90']!s:>9} "
            f"{m['baseline_median']!s:>9} {m['ratio']!s:>7}  {m['goal']}"
        )
    return 0
