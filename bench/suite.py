"""The benchmark suite: run every bench module, print one table, write JSON.

    lockstep bench [--quick] [--only NAME ...] [--json PATH]
    python -m bench.suite [--quick] [--only NAME ...] [--json PATH]    # same, from the repo root

Modules (each ``bench.<module>.run(quick) -> list[dict]``, see bench/__init__.py) run in
MODULES order, one at a time, so they never compete for the machine's cores. A module
that is missing (another engineer's, not yet written) or fails is reported as one row
with its error and the others still run. `--only` takes module names ("orchestrator")
or metric-name prefixes ("orchestrator.tick"): a module runs if any selector matches it.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import platform
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/suite.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import METRIC_KEYS, REPO_ROOT, set_reporter
from bench.goals import shortfalls, verdict

__all__ = ["MODULES", "machine", "render", "run_suite", "select", "write_json"]

MODULES = ("pool", "orchestrator", "inference", "llm", "telemetry", "peers")
DEFAULT_DIR = REPO_ROOT / "bench-results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = next(
            int(line.split()[1]) * 1024
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration):
        mem = 0
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("wasmtime", "grpcio", "onnxruntime-gpu", "onnxruntime", "protobuf"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


def select(only: list[str]) -> list[str]:
    """The modules to run for `--only` selectors (all when empty)."""
    if not only:
        return list(MODULES)
    chosen = [m for m in MODULES if any(sel == m or sel.split(".", 1)[0] == m for sel in only)]
    unknown = [sel for sel in only if sel.split(".", 1)[0] not in MODULES]
    if unknown:
        raise ValueError(f"unknown benchmark {', '.join(unknown)}; modules: {', '.join(MODULES)}")
    return chosen


def _keep(module: str, metric: dict[str, Any], only: list[str]) -> bool:
    """A whole module when named; otherwise metrics whose name starts with a selector."""
    if not only or module in only:
        return True
    return any(str(metric.get("name", "")).startswith(s) for s in only)


def _error_row(module: str, error: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(METRIC_KEYS)
    row.update(name=module, unit="-", baseline="-", spec_target="-", goal="-", error=error)
    return row


def run_suite(quick: bool, only: list[str], progress: Any = None) -> dict[str, Any]:
    """Run the selected modules; returns the JSON document (machine, metrics, timings)."""
    metrics: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for module in select(only):
        if progress is not None:
            progress(f"bench.{module}")
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(f"bench.{module}")
        except ImportError as exc:
            if exc.name == f"bench.{module}":
                metrics.append(_error_row(module, f"not written yet (no bench/{module}.py)"))
                continue
            metrics.append(_error_row(module, f"import failed: {exc}"))
            continue
        try:
            rows = mod.run(quick)
        except Exception as exc:  # one module's failure must not hide the rest
            detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
            metrics.append(_error_row(module, detail))
        else:
            metrics.extend(r for r in rows if _keep(module, r, only))
        seconds[module] = round(time.perf_counter() - t0, 2)
    return {
        "schema": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "only": only,
        "machine": machine(),
        "module_seconds": seconds,
        "metrics": metrics,
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        mag = abs(value)
        if mag >= 1e6:
            return f"{value / 1e6:.2f}M"
        if mag >= 1e4:
            return f"{value / 1e3:.1f}k"
        if mag >= 100:
            return f"{value:.0f}"
        if mag >= 1:
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def render(doc: dict[str, Any], width: int | None = None) -> str:
    """The results as a rich table (plain text)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="Lockstep benchmarks" + (" (--quick)" if doc["quick"] else ""), show_lines=False
    )
    for col, just in (
        ("metric", "left"),
        ("unit", "left"),
        ("median", "right"),
        ("p10..p90", "right"),
        ("baseline", "right"),
        ("ratio", "right"),
        ("spec", "left"),
        ("goal", "left"),
        ("vs goal", "left"),
    ):
        table.add_column(col, justify=just, no_wrap=True)  # type: ignore[arg-type]
    notes: list[str] = []
    details: list[str] = []
    for m in doc["metrics"]:
        if m.get("error") or m.get("skipped"):
            table.add_row(
                m["name"],
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "ERROR" if m.get("error") else "skipped",
                "-",
            )
            notes.append(f"{m['name']}: {m.get('error') or m.get('skipped')}")
            continue
        spread = f"{_fmt(m['p10'])}..{_fmt(m['p90'])}"
        table.add_row(
            m["name"],
            str(m["unit"]),
            _fmt(m["median"]),
            spread,
            _fmt(m["baseline_median"]),
            _fmt(m["ratio"]),
            str(m["spec_target"]),
            str(m["goal"]),
            verdict(m),
        )
        extra = {k: v for k, v in m.items() if k not in METRIC_KEYS and k != "limited"}
        if extra:
            details.append(f"{m['name']}: " + ", ".join(f"{k}={v}" for k, v in extra.items()))
        if m.get("limited"):
            notes.append(f"{m['name']}: {m['limited']}")
    console = Console(
        width=width or 200, record=True, force_terminal=False, file=io.StringIO()
    )  # recorded, exported below
    console.print(table)
    baselines = sorted(
        {str(m["baseline"]) for m in doc["metrics"] if m.get("baseline") not in (None, "-")}
    )
    mach = doc["machine"]
    console.print(
        f"machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_gib']} GiB, "
        f"Python {mach['python']}, wasmtime {mach.get('wasmtime')}, "
        f"grpcio {mach.get('grpcio')}, "
        f"onnxruntime {mach.get('onnxruntime-gpu') or mach.get('onnxruntime')}"
    )
    console.print("ratio = median / baseline median, both measured in this run. Baselines:")
    for b in baselines:
        console.print(f"  - {b}")
    if details:
        console.print("details:")
        for d in details:
            console.print(f"  {d}")
    for n in notes:
        console.print(f"note: {n}")
    met, short = shortfalls(doc["metrics"], _fmt)
    if met or short:
        console.print(f"goals (bench/goals.py): {met} met, {len(short)} short")
        for line in short:
            console.print(f"  short: {line}")
    console.print(
        "seconds per module: " + ", ".join(f"{k} {v}" for k, v in doc["module_seconds"].items())
    )
    text: str = console.export_text()
    return text


def write_json(doc: dict[str, Any], path: Path | None) -> Path:
    """Write the document to `path` (default bench-results/bench-<UTC time>.json)."""
    if path is None:
        stamp = doc["created"].replace(":", "").replace("-", "").split("+")[0]
        path = DEFAULT_DIR / f"bench-{stamp}{'-quick' if doc['quick'] else ''}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def main_cli(quick: bool, only: list[str], json_path: Path | None) -> int:
    """Run with a live progress display on stderr; print the table; write the JSON."""
    from rich.console import Console

    err = Console(stderr=True)
    select(only)  # fail on unknown names before starting anything
    # SIGTERM unwinds like Ctrl-C, so the pool processes started so far are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with err.status("starting...") as status:
        current = [""]

        def progress(module: str) -> None:
            current[0] = module
            status.update(f"[bold]{module}[/] ({time.perf_counter() - started:.0f} s)")

        def detail(text: str) -> None:
            status.update(f"[bold]{current[0]}[/]: {text} ({time.perf_counter() - started:.0f} s)")
            err.log(f"{current[0]}: {text}")

        set_reporter(detail)
        try:
            doc = run_suite(quick, only, progress)
        finally:
            set_reporter(None)
    print(render(doc))
    path = write_json(doc, json_path)
    print(f"JSON: {path}  ({time.perf_counter() - started:.0f} s)")
    return 1 if any(m.get("error") for m in doc["metrics"]) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Lockstep benchmark suite")
    parser.add_argument("--quick", action="store_true", help="CI smoke: under a minute")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="module (orchestrator) or metric prefix; repeatable",
    )
    parser.add_argument("--json", type=Path, default=None, help="where to write the JSON")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="print the table of a saved run and exit (runs nothing)",
    )
    args = parser.parse_args(argv)
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return 0
    try:
        return main_cli(args.quick, args.only, args.json)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
