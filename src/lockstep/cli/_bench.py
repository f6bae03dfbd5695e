"""`lockstep bench`: the benchmark suite of ADR-006 (bench/ in the source checkout).

The suite is not installed (it needs the example agents and services of a checkout): it
runs as `python -m bench.suite` in the checkout that lockstep.checkout names.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from lockstep.checkout import require_checkout
from lockstep.cli._app import app
from lockstep.cli._context import fail
from lockstep.errors import ConfigError


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="CI smoke run: under a minute.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            metavar="NAME",
            help="Module (pool, orchestrator, inference, telemetry, peers) or metric-name "
            "prefix (orchestrator.tick); repeatable.",
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="PATH",
            help="Write the results here (default bench-results/bench-<time>.json).",
        ),
    ] = None,
    setup_peers: Annotated[
        bool,
        typer.Option(
            "--setup-peers",
            help="Create the Mesa and AutoGen venvs the peer comparison runs in (downloads "
            "from PyPI into ~/.cache/lockstep/bench-peers or $LOCKSTEP_BENCH_PEERS), "
            "then exit.",
        ),
    ] = False,
) -> None:
    """Run the benchmarks: metric, spec target, goal, median, p10..p90 and the ratio to a
    baseline measured in the same run. See docs/performance.md. The suite is bench/ of
    the source checkout ($LOCKSTEP_CHECKOUT, else the editable install's)."""
    try:
        root = require_checkout("bench/suite.py").parent.parent
    except ConfigError as exc:
        raise fail(exc) from None
    if setup_peers:
        cmd = [sys.executable, "-m", "bench.peers", "--setup"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "bench.suite",
            *(["--quick"] if quick else []),
            *[a for name in only or [] for a in ("--only", name)],
            *(["--json", str(json_path.resolve())] if json_path else []),
        ]
    code = subprocess.run(cmd, cwd=root, check=False).returncode
    if setup_peers and code == 0:
        typer.echo("peer venvs ready")
    if code:
        raise typer.Exit(code)
