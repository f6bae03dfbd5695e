"""`lockstep bench`: the benchmark suite of ADR-006 (bench/ in the checkout)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lockstep.cli._app import app

# The suite lives in the repository's bench/ package, next to src/ (it is not installed:
# it needs the example agents and services of a source checkout). The editable install
# runs this file from <repo>/src/lockstep/cli/, so the repository root is three up.
REPO_ROOT = Path(__file__).resolve().parents[3]


def _import_suite() -> tuple[Any, Any]:
    if not (REPO_ROOT / "bench" / "suite.py").is_file():
        print(f"error: lockstep bench needs a source checkout (no bench/suite.py under "
              f"{REPO_ROOT})", file=sys.stderr)
        raise typer.Exit(2)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from bench import peers, suite

    return suite, peers


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="CI smoke run: under a minute.")] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="NAME",
        help="Module (pool, orchestrator, inference, telemetry, peers) or metric-name "
             "prefix (orchestrator.tick); repeatable.")] = None,
    json_path: Annotated[Path | None, typer.Option(
        "--json", metavar="PATH",
        help="Write the results here (default bench-results/bench-<time>.json).")] = None,
    setup_peers: Annotated[bool, typer.Option(
        "--setup-peers",
        help="Create the Mesa and AutoGen venvs the peer comparison runs in (downloads "
             "from PyPI into ~/.cache/lockstep/bench-peers or $LOCKSTEP_BENCH_PEERS), "
             "then exit.")] = False,
) -> None:
    """Run the benchmarks: metric, spec target, goal, median, p10..p90 and the ratio to a
    baseline measured in the same run. See docs/performance.md."""
    suite, peers = _import_suite()
    if setup_peers:
        peers.setup()
        typer.echo(f"peer venvs ready under {peers.PEERS_DIR}")
        return
    try:
        suite.select(list(only or []))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    code = suite.main_cli(quick, list(only or []), json_path)
    if code:
        raise typer.Exit(code)
