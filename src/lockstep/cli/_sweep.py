"""`lockstep sweep FILE --set PATH=V1,V2 --seeds 1..10 --parallel N`: a parameter grid."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lockstep.cli._app import app
from lockstep.cli._context import fail
from lockstep.errors import ConfigError, LockstepError
from lockstep.scenario import load_scenario, parse_value

__all__ = ["sweep_cmd"]

console = Console(stderr=True)


@app.command("sweep")
def sweep_cmd(
    scenario_path: Annotated[Path, typer.Argument(metavar="SCENARIO", help="scenario TOML file")],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="PATH=V1,V2,... values to sweep (repeatable; commas inside quotes or "
            "brackets do not split), e.g. agents.0.count=10,100",
        ),
    ] = None,
    seeds: Annotated[str, typer.Option(help="seeds: 1..10, 1,2,3 or a mix")] = "",
    parallel: Annotated[int, typer.Option(min=1, help="local deployments run at once")] = 1,
    repeats: Annotated[
        int,
        typer.Option(
            min=1,
            help="runs of each combination; with 2 or more the table says whether "
            "they gave the same digests (column reproduced)",
        ),
    ] = 2,
    pools: Annotated[
        int | None, typer.Option(min=1, help="pools per deployment (default: scenario)")
    ] = None,
    observe: Annotated[
        list[str] | None,
        typer.Option(help="observation key to report (mean over agents at the last observed tick)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="results table: .csv or .parquet")] = Path("sweep.csv"),
    as_json: Annotated[
        bool, typer.Option("--json", help="also print the rows as JSON lines on stdout")
    ] = False,
) -> None:
    """Run a scenario for every combination of --set values and every seed, each on private
    local deployments, and write one results table (parameters, seed, final digest,
    counters, whether repeats agree). Exits 1 if any combination did not reproduce."""
    from lockstep.api import parse_seeds, split_values, sweep, write_table

    try:
        scenario = load_scenario(scenario_path)
        grid: dict[str, list[object]] = {}
        for item in set_ or []:
            path, sep, text = item.partition("=")
            if not sep or not path.strip():
                raise ConfigError(f"bad --set {item!r}: expected PATH=V1,V2,...")
            grid[path.strip()] = [parse_value(v) for v in split_values(text)]
        seed_list = parse_seeds(seeds) if seeds else [scenario.seed]
        total = repeats * len(seed_list)
        for values in grid.values():
            total *= len(values)
        if out.suffix not in (".csv", ".parquet"):
            raise ConfigError(f"--out {out}: use a .csv or .parquet file")
        with Progress(
            TextColumn(f"[bold]sweep {scenario.label}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("runs"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("sweep", total=total)
            table = sweep(
                scenario,
                grid,
                seed_list,
                parallel=parallel,
                repeats=repeats,
                pools=pools,
                observe=observe or (),
                progress=lambda done, n: bar.update(task, completed=done, total=n),
            )
        write_table(table, out)
    except LockstepError as exc:
        raise fail(exc) from None
    if as_json:
        for row in table.to_dict(orient="records"):
            typer.echo(json.dumps(row, sort_keys=True, default=str))
    bad = table[table["reproduced"] == False]  # noqa: E712 (None means unchecked)
    console.print(f"{len(table)} combinations x {repeats} run(s) -> {out}", soft_wrap=True)
    if repeats > 1:
        if len(bad):
            console.print(
                f"[red]{len(bad)} combination(s) gave different digests[/]: "
                f"run ids {', '.join(bad['run_id'])}"
            )
            raise typer.Exit(1)
        console.print("[green]every repeat of every combination gave the same digests[/]")
