"""`lockstep logs` and `lockstep ticks`: an agent's log lines and a run's per-tick statistics,
read from the telemetry service's journal (a viewer credential is enough)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lockstep.abi import LOG_LEVELS
from lockstep.auth import Role
from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, connect, fail
from lockstep.errors import ConfigError, LockstepError
from lockstep.telemetry_client import TelemetryClient

__all__ = ["logs_cmd", "parse_level", "parse_tick_range", "ticks_cmd"]

console = Console(highlight=False)

LEVELS = {name: level for level, name in enumerate(LOG_LEVELS)}
LEVEL_NAMES = dict(enumerate(LOG_LEVELS))
_RANGE = re.compile(r"^(\d*)\.\.(\d*)$|^(\d+)$")

RunArgument = Annotated[
    str | None,
    typer.Argument(metavar="[RUN]", help="run id or a unique prefix (default: the latest run)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object per line")]


def parse_tick_range(text: str | None) -> tuple[int | None, int | None]:
    """`X..Y`, `X..`, `..Y` or `X` -> (from, to), both inclusive; ConfigError otherwise."""
    if not text:
        return None, None
    m = _RANGE.match(text.strip())
    if m is None:
        raise ConfigError(f"--ticks {text!r}: expected X..Y, X.., ..Y or X (tick numbers)")
    if m.group(3) is not None:
        return int(m.group(3)), int(m.group(3))
    lo = int(m.group(1)) if m.group(1) else None
    hi = int(m.group(2)) if m.group(2) else None
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"--ticks {text!r}: the range is empty ({lo} > {hi})")
    return lo, hi


def parse_level(text: str | None) -> frozenset[int] | None:
    """A level filter: `warn` (or 3) means warn and error; `observe` (5) only observations;
    None shows every level."""
    if text is None:
        return None
    key = text.strip().lower()
    level = LEVELS.get(key)
    if level is None and key.isdigit():
        level = int(key)
    if level is None or not 0 <= level <= 5:
        raise ConfigError(f"--level {text!r}: one of {', '.join(LEVELS)} or 0..5")
    return frozenset({5}) if level == 5 else frozenset(range(level, 5))


def resolve_run(client: TelemetryClient, run: str | None) -> str:
    """A run id from an id, a unique prefix, or None (the latest run in the journal)."""
    runs = client.runs()
    if not runs:
        raise ConfigError("the journal holds no runs yet")
    if not run:
        return str(max(runs, key=lambda r: r.first_sequence).run_id)
    ids = [r.run_id for r in runs if r.run_id.startswith(run)]
    if run in ids:
        return run
    if len(ids) == 1:
        return str(ids[0])
    if not ids:
        raise ConfigError(f"no run {run!r} in the journal (see `lockstep journal runs`)")
    raise ConfigError(f"run prefix {run!r} is ambiguous: {', '.join(sorted(ids))}")


def _log_lines(
    records: Iterable[Any], agent: str | None, levels: frozenset[int] | None
) -> Iterator[dict[str, Any]]:
    # Imported here: lockstep.api needs pandas, which the service images leave out and the
    # other commands never need.
    from lockstep.api._records import JournalRecord

    for stored in records:
        rec = JournalRecord.from_stored(stored)
        p = rec.payload
        name, level = str(p.get("agent", "")), int(p.get("level", -1))
        if agent is not None and name != agent:
            continue
        if levels is not None and level not in levels:
            continue
        yield {
            "run_id": rec.run_id,
            "tick": int(p.get("tick", rec.tick)),
            "agent": name,
            "level": level,
            "text": str(p.get("text", "")),
        }


@app.command("logs")
def logs_cmd(
    run: RunArgument = None,
    agent: Annotated[str | None, typer.Option("--agent", help="only this agent")] = None,
    ticks: Annotated[
        str | None,
        typer.Option(
            "--ticks", metavar="X..Y", help="only these ticks (X..Y inclusive, X.., ..Y or X)"
        ),
    ] = None,
    level: Annotated[
        str | None,
        typer.Option(
            "--level",
            help="trace, debug, info, warn or error: that level and above; observe: "
            "only observations (default: every line)",
        ),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="then keep printing new lines as the run goes on (Ctrl-C stops)"
        ),
    ] = False,
    as_json: JsonOption = False,
    state_dir_opt: StateDirOption = None,
) -> None:
    """The log lines agents wrote (`ls_log`), from the journal: tick, agent, level, text.

    Every line is journalled as an `agent.log` record in the tick it was written (at most
    the agent's max_logs_per_step per step)."""
    try:
        lo, hi = parse_tick_range(ticks)
        levels = parse_level(level)
        channel = connect("telemetry", Role.VIEWER, state_dir_opt)
        with channel:
            client = TelemetryClient(channel)
            run_id = resolve_run(client, run)
            head = client.head().sequence
            stream: Iterable[Any] = client.query(
                run_id, kinds=["agent.log"], from_tick=lo, to_tick=hi, to_sequence=head
            )
            shown = _print_lines(_log_lines(stream, agent, levels), as_json)
            if follow:
                live = client.follow(head + 1, run_id, ["agent.log"])
                try:
                    lines = (
                        ln
                        for ln in _log_lines(live, agent, levels)
                        if (lo is None or ln["tick"] >= lo) and (hi is None or ln["tick"] <= hi)
                    )
                    shown += _print_lines(lines, as_json)
                except KeyboardInterrupt:
                    pass
                finally:
                    live.close()
    except LockstepError as exc:
        raise fail(exc) from None
    if not shown and not as_json:
        typer.secho(f"no log lines in run {run_id} match", err=True)


def _print_lines(lines: Iterable[dict[str, Any]], as_json: bool) -> int:
    n = 0
    for ln in lines:
        n += 1
        if as_json:
            typer.echo(json.dumps(ln, sort_keys=True))
            continue
        name = LEVEL_NAMES.get(ln["level"], str(ln["level"]))
        style = {"warn": "yellow", "error": "red", "observe": "cyan"}.get(name, "")
        tag = f"[{style}]{name:<7}[/]" if style else f"{name:<7}"
        # Agent text is data, never markup: escape it.
        console.print(
            f"t={ln['tick']:<6} {escape(ln['agent'])} {tag} {escape(ln['text'])}", soft_wrap=True
        )
    return n


_TICK_COLUMNS = (
    ("tick", "tick"),
    ("wall_ms", "wall ms"),
    ("steps", "steps"),
    ("messages", "delivered"),
    ("sent", "sent"),
    ("bytes", "bytes"),
    ("fuel", "fuel"),
    ("faults", "faults"),
    ("undeliverable", "undeliv."),
    ("restarts", "restarts"),
    ("agents", "agents"),
    ("inference_in_flight", "infer"),
    ("pools_ms", "pools ms"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list):
        return " ".join(f"{x:.2f}" for x in value)
    return str(value)


@app.command("ticks")
def ticks_cmd(
    run: RunArgument = None,
    ticks: Annotated[
        str | None,
        typer.Option(
            "--ticks", metavar="X..Y", help="only these ticks (X..Y inclusive, X.., ..Y or X)"
        ),
    ] = None,
    as_json: JsonOption = False,
    chrome_trace_file: Annotated[
        Path | None,
        typer.Option(
            "--chrome-trace",
            metavar="FILE",
            help="write the tick timeline as Chrome trace JSON "
            "(open it in Perfetto or chrome://tracing)",
        ),
    ] = None,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Per-tick statistics of a run (the `tick.stats` records): wall time, steps, messages
    delivered, sends and bytes routed, fuel, faults, undeliverable sends, restarts, live
    agents, inference in flight and each pool's step time. Wall times are measured, so they
    differ run to run; they are not part of the digest."""
    from lockstep.api._records import JournalRecord, tick_stats_rows
    from lockstep.api._trace import chrome_trace

    try:
        lo, hi = parse_tick_range(ticks)
        channel = connect("telemetry", Role.VIEWER, state_dir_opt)
        with channel:
            client = TelemetryClient(channel)
            run_id = resolve_run(client, run)
            rows = tick_stats_rows(
                JournalRecord.from_stored(r)
                for r in client.query(run_id, kinds=["tick.stats"], from_tick=lo, to_tick=hi)
            )
            pools = _pools_of(client, run_id)
    except LockstepError as exc:
        raise fail(exc) from None
    if chrome_trace_file is not None:
        try:
            chrome_trace_file.write_text(json.dumps(chrome_trace(rows, run_id, pools)))
        except OSError as exc:
            raise fail(f"cannot write {chrome_trace_file}: {exc.strerror}") from None
        typer.secho(f"wrote {len(rows)} ticks to {chrome_trace_file}", err=True)
        if not as_json:
            return
    if as_json:
        for row in rows:
            typer.echo(json.dumps({"run_id": run_id, **row}, sort_keys=True))
        return
    if not rows:
        typer.secho(
            f"run {run_id} has no tick.stats records in that range (journals of "
            "older versions have none)",
            err=True,
        )
        return
    table = Table(title=f"run {run_id}: {len(rows)} ticks")
    for _key, head in _TICK_COLUMNS:
        table.add_column(head, justify="right")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for key, _head in _TICK_COLUMNS))
    console.print(table)


def _pools_of(client: TelemetryClient, run_id: str) -> list[str]:
    """Pool track names for the trace (the run's pool count from run.start)."""
    from lockstep.api._records import JournalRecord

    for stored in client.query(run_id, kinds=["run.start"], limit=1):
        n = int(JournalRecord.from_stored(stored).payload.get("pools", 0) or 0)
        return [f"pool {p}" for p in range(n)]
    return []
