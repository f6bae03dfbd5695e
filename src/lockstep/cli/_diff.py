"""`lockstep diff RUN_A RUN_B`: where two journalled runs part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, fail
from lockstep.errors import LockstepError

__all__ = ["diff_cmd"]

console = Console()


@app.command("diff")
def diff_cmd(
    run_a: Annotated[str, typer.Argument(help="first run id (see `lockstep journal runs`)")],
    run_b: Annotated[str, typer.Argument(help="second run id")],
    state_dir_opt: StateDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")
                       ] = False,
) -> None:
    """Compare two runs by their journalled tick digests and per-agent digests: the first
    divergent tick and agent, and how they differ afterwards (a run restored from a
    checkpoint is compared with its parent's ticks before it). Exits 1 if they differ."""
    from lockstep.api import Deployment, diff

    try:
        with Deployment.connect(state_dir_opt) as dep:
            result = diff(run_a, run_b, fetch=dep.records)
    except LockstepError as exc:
        raise fail(exc) from None
    if as_json:
        typer.echo(json.dumps(result.as_dict(), sort_keys=True))
    else:
        console.print(result.describe(), soft_wrap=True, highlight=False)
    if not result.identical:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="run id")],
    out: Annotated[Path, typer.Option(help="directory to write the tables into")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    state_dir_opt: StateDirOption = None,
) -> None:
    """Write a run's tables (ticks, agents, observations, logs, journal) as Parquet or CSV
    files into a directory."""
    from lockstep.api import Deployment

    try:
        with Deployment.connect(state_dir_opt) as dep:
            paths = dep.run_by_id(run_id).export(out, fmt)
    except LockstepError as exc:
        raise fail(exc) from None
    for name, path in paths.items():
        console.print(f"{name}: {path}", soft_wrap=True, highlight=False)
