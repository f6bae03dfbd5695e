"""`lockstep run` and `lockstep demo`: execute scenarios and print their summary."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lockstep.auth import Role
from lockstep.checkout import require_checkout
from lockstep.cli._app import app
from lockstep.cli._context import (
    ProfileOption,
    RemoteAddressOption,
    RemoteTokenOption,
    StateDirOption,
    connect,
    fail,
    local_only,
    remote_selected,
    signing_key_override,
    state_dir,
)
from lockstep.errors import ConfigError, DeterminismError, LockstepError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.runner import ReplayResult, RunSummary, replay_run, run_scenario
from lockstep.scenario import Scenario, cli_overrides, load_scenario
from lockstep.supervisor import SupervisorState
from lockstep.supervisor._supervisor import local_signing_key

console = Console()
DEMO_SCENARIO = "examples/scenarios/market.toml"  # in the source checkout


@contextlib.contextmanager
def local_deployment(pools: int, quiet: bool = False) -> Iterator[Path]:
    """A private `lockstep up` in a temporary state directory, stopped on exit. With
    `quiet`, what up and down print goes to stderr (stdout may be carrying JSON)."""
    from lockstep.cli._services import down, up

    def chatter() -> contextlib.AbstractContextManager[object]:
        return contextlib.redirect_stdout(sys.stderr) if quiet else contextlib.nullcontext()

    with tempfile.TemporaryDirectory(prefix="lockstep-") as tmp, local_only():
        directory = Path(tmp)
        with chatter():
            up(
                state_dir_opt=directory,
                pools=pools,
                unix=False,
                address=None,
                dev_mode=False,
                foreground=False,
                timeout=120.0,
            )
        try:
            yield directory
        finally:
            with chatter():
                down(state_dir_opt=directory, timeout=30.0)


def execute(
    scenario: Scenario, directory: Path | None, quiet: bool, resume: str = ""
) -> RunSummary:
    channel = connect("orchestrator", Role.ADMIN, directory)
    # A local deployment is gone once its supervisor is (no use waiting to reconnect).
    alive = None if remote_selected() else lambda: _supervisor_alive(state_dir(directory))
    with channel, _bar(scenario.label, quiet) as bar:
        task = bar.add_task("run", total=scenario.ticks)
        return run_scenario(
            scenario,
            channel,
            progress=lambda tick, total: bar.update(task, completed=tick, total=total),
            build_dir=state_dir(directory) / "build",
            signing_key=signing_key_override() or local_signing_key(state_dir(directory)),
            resume=resume,
            alive=alive,
        )


def _supervisor_alive(directory: Path) -> bool:
    state = SupervisorState.load(directory)
    return state is not None and state.supervisor_alive()


def _bar(label: str, quiet: bool) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("ticks"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )


def replay_and_report(
    directory: Path | None,
    run_id: str,
    entries: list[object] | None,
    verify_inference: bool,
    quiet: bool = False,
) -> ReplayResult:
    channel = connect("orchestrator", Role.OPERATOR, directory)
    with channel, _bar(f"replay {run_id or 'journal'}", quiet) as bar:
        task = bar.add_task("replay", total=None)
        result = replay_run(
            channel,
            run_id,
            entries=entries,  # type: ignore[arg-type]
            verify_inference=verify_inference,
            progress=lambda t, total: bar.update(task, completed=t, total=total),
        )
    if not result.ok:
        where = f" (agent {result.divergent_agent})" if result.divergent_agent else ""
        raise DeterminismError(
            f"replay diverged at tick {result.divergent_tick}{where}: {result.detail}"
        )
    return result


def print_summary(summary: RunSummary) -> None:
    table = Table(title=f"run {summary.label} ({summary.run_id})", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("ticks", str(summary.tick))
    for state, count in summary.agents_by_state.items():
        table.add_row(f"agents {state}", str(count))
    for name, value in summary.counters.items():
        table.add_row(name.replace("_", " "), f"{value:,}")
    rate = summary.counters["messages"] / summary.seconds if summary.seconds else 0.0
    table.add_row(
        "wall time",
        f"{summary.seconds:.2f} s ({summary.tick / summary.seconds:.0f} "
        f"ticks/s, {rate:,.0f} msgs/s)"
        if summary.seconds
        else "-",
    )
    console.print(table)
    console.print(f"final digest (tick {summary.tick}): {summary.digest}", soft_wrap=True)


@app.command("run")
def run_cmd(
    scenario_path: Annotated[Path, typer.Argument(metavar="SCENARIO", help="scenario TOML file")],
    state_dir_opt: StateDirOption = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="start a private deployment for this run and stop it afterwards"
        ),
    ] = False,
    pools: Annotated[int | None, typer.Option(help="pools for --local (default: scenario)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    seed: Annotated[int | None, typer.Option(min=0, help="override [run].seed")] = None,
    ticks: Annotated[int | None, typer.Option(min=1, help="override [run].ticks")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="override any scenario value, PATH=VALUE (repeatable), e.g. "
            "agents.0.count=1000 (VALUE is TOML, else a string)",
        ),
    ] = None,
    resume: Annotated[
        str,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="finish run RUN of this scenario instead of starting one (the orchestrator "
            "resumed it after a crash)",
        ),
    ] = "",
    address: RemoteAddressOption = None,
    token: RemoteTokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Run a scenario on the running services (or on a private deployment with --local).

    If the orchestrator dies mid-run, the run waits for it to come back (the supervisor
    restarts it and it resumes the run) and finishes."""
    try:
        scenario = load_scenario(scenario_path, cli_overrides(set_, seed, ticks))
        if local:
            if resume:
                raise ConfigError("--resume needs a running deployment, not --local")
            with local_deployment(pools or scenario.pools, quiet=as_json) as directory:
                summary = execute(scenario, directory, as_json)
        else:
            summary = execute(scenario, state_dir_opt, as_json, resume)
    except LockstepError as exc:
        raise fail(exc) from None
    if as_json:
        print(json.dumps(asdict(summary), indent=2))
    else:
        print_summary(summary)


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="run to replay (see `lockstep journal runs`)")] = "",
    journal: Annotated[
        Path | None,
        typer.Option(help="replay this JSON-lines journal file instead of the telemetry copy"),
    ] = None,
    verify_inference: Annotated[
        bool,
        typer.Option(help="recompute inference results instead of taking them from the journal"),
    ] = False,
    state_dir_opt: StateDirOption = None,
    address: RemoteAddressOption = None,
    token: RemoteTokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Re-execute a journalled run on the running services and compare every tick digest;
    exits 1 naming the first divergent tick, agent and event."""
    try:
        entries = None
        if journal is not None:
            entries = [
                opb.JournalEntry(tick=r["tick"], kind=r["kind"], payload=r["payload"].encode())
                for r in map(json.loads, journal.read_text().splitlines())
                if r
            ]
        elif not run_id:
            raise ConfigError("give a RUN_ID or --journal FILE")
        result = replay_and_report(
            state_dir_opt,
            run_id,
            entries,  # type: ignore[arg-type]
            verify_inference,
        )
    except DeterminismError as exc:
        raise fail(exc, code=1) from None
    except (LockstepError, OSError, ValueError, KeyError) as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]replay verified[/]: {result.detail} (replay run {result.replay_run_id})")


@app.command()
def demo(
    scenario_path: Annotated[
        Path | None,
        typer.Option(
            "--scenario", help=f"scenario to run (default: the checkout's {DEMO_SCENARIO})"
        ),
    ] = None,
    pools: Annotated[int | None, typer.Option(help="pool processes (default: scenario)")] = None,
) -> None:
    """The main job: start every service as its own process, run the demo scenario, print
    its summary, replay it from the journal and check every tick digest, then stop."""
    try:
        scenario = load_scenario(scenario_path or require_checkout(DEMO_SCENARIO))
        n = pools or scenario.pools
        console.print(f"starting Lockstep with {n} pool process(es)...")
        with local_deployment(n) as directory:
            first = execute(scenario, directory, quiet=False)
            print_summary(first)
            console.print(
                f"replaying run {first.run_id} from its journal in the telemetry "
                "service, comparing every tick digest..."
            )
            result = replay_and_report(directory, first.run_id, None, verify_inference=False)
        console.print(
            f"[green]replay verified[/]: {result.ticks} tick digests identical "
            f"(replay run {result.replay_run_id}); final digest {first.digest}",
            soft_wrap=True,
        )
    except LockstepError as exc:
        raise fail(exc) from None


__all__ = ["demo", "run_cmd"]
