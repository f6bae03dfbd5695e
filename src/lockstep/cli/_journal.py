"""`lockstep journal verify | query | tail | runs`: read the telemetry service's journal.

The service address and a viewer token come from the running deployment's state
directory (``lockstep up``), unless given with ``--address`` / ``--token`` (or the
environment variables LOCKSTEP_TELEMETRY_ADDRESS / LOCKSTEP_TOKEN).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from lockstep.auth import Role
from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, connect, fail
from lockstep.errors import LockstepError
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep.telemetry_client import TelemetryClient

__all__ = ["journal_app"]

journal_app = typer.Typer(
    name="journal",
    help="Inspect the hash-chained journal kept by the telemetry service.",
    no_args_is_help=True,
)
app.add_typer(journal_app, name="journal")

console = Console()

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="telemetry HOST:PORT or unix:PATH [env LOCKSTEP_TELEMETRY_ADDRESS; "
        "default: from the state directory]",
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="credential (viewer or above) [env LOCKSTEP_TOKEN; default: the "
        "state directory's viewer token]",
    ),
]
RunOption = Annotated[str, typer.Option("--run", help="only this run id")]
KindOption = Annotated[
    list[str] | None,
    typer.Option("--kind", help="only this record kind (repeatable), e.g. tick.digest"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object per line")]

PREVIEW_CHARS = 60


def _client(
    state_dir: Path | None, address: str | None, token: str | None
) -> tuple[grpc.Channel, TelemetryClient]:
    channel = connect("telemetry", Role.VIEWER, state_dir, address, token)
    return channel, TelemetryClient(channel)


def _text(payload: bytes) -> str | None:
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\n\r\t" for c in text) else None


def _preview(rec: pb.StoredRecord) -> str:
    text = _text(rec.payload)
    if text is None:
        head = rec.payload[: PREVIEW_CHARS // 2].hex()
        more = "..." if len(rec.payload) > PREVIEW_CHARS // 2 else ""
        return f"<{len(rec.payload)} bytes> {head}{more}"
    text = text.replace("\n", "\\n")
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 3] + "..."


def _as_json(rec: pb.StoredRecord) -> str:
    out: dict[str, object] = {
        "sequence": rec.sequence,
        "run_id": rec.run_id,
        "tick": rec.tick,
        "kind": rec.kind,
        "content_type": rec.content_type,
        "hash": rec.hash.hex(),
    }
    try:
        out["payload"] = rec.payload.decode()
    except UnicodeDecodeError:
        out["payload"] = base64.b64encode(rec.payload).decode()
        out["payload_encoding"] = "base64"
    return json.dumps(out, sort_keys=True)


def _table(title: str) -> Table:
    table = Table(title=title)
    for col, justify in (
        ("seq", "right"),
        ("run", "left"),
        ("tick", "right"),
        ("kind", "left"),
        ("payload", "left"),
        ("hash", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    return table


def _row(table: Table, rec: pb.StoredRecord) -> None:
    table.add_row(
        str(rec.sequence), rec.run_id, str(rec.tick), rec.kind, _preview(rec), rec.hash.hex()[:12]
    )


def _print_records(records: Iterable[pb.StoredRecord], as_json: bool, title: str) -> int:
    if as_json:
        n = 0
        for rec in records:
            typer.echo(_as_json(rec))
            n += 1
        return n
    table = _table(title)
    for rec in records:
        _row(table, rec)
    console.print(table)
    return table.row_count


@journal_app.command()
def verify(
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
    from_seq: Annotated[int, typer.Option("--from", min=0, help="first sequence (0 = 1)")] = 0,
    to_seq: Annotated[int, typer.Option("--to", min=0, help="last sequence (0 = head)")] = 0,
    expected_hash: Annotated[
        str,
        typer.Option(
            "--expected-hash", help="hex hash the chain must reach at --to (an external anchor)"
        ),
    ] = "",
) -> None:
    """Recompute the hash chain; exit 1 and name the first bad sequence if it is broken."""
    try:
        anchor = bytes.fromhex(expected_hash)
    except ValueError:
        raise fail("--expected-hash must be 64 hex digits") from None
    try:
        channel, client = _client(state_dir_opt, address, token)
        with channel:
            res = client.verify(from_seq, to_seq, anchor)
    except LockstepError as exc:
        raise fail(exc) from None
    if res.ok and res.to_sequence == 0:
        console.print("[green]chain OK[/]: the journal is empty")
        return
    if res.ok:
        console.print(
            f"[green]chain OK[/]: records {res.from_sequence}..{res.to_sequence} "
            f"({res.records_checked} checked), head hash {res.hash.hex()}",
            soft_wrap=True,
        )
        return
    fault = pb.ChainFault.Name(res.fault).removeprefix("CHAIN_FAULT_")
    console.print(
        f"[red]chain BROKEN[/] at sequence {res.first_bad_sequence} ({fault}): {res.reason}",
        soft_wrap=True,
    )
    raise typer.Exit(1)


@journal_app.command()
def query(
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
    run: RunOption = "",
    kind: KindOption = None,
    from_tick: Annotated[int | None, typer.Option("--from-tick", min=0)] = None,
    to_tick: Annotated[int | None, typer.Option("--to-tick", min=0)] = None,
    from_seq: Annotated[int, typer.Option("--from-seq", min=0)] = 0,
    to_seq: Annotated[int, typer.Option("--to-seq", min=0)] = 0,
    limit: Annotated[int, typer.Option(min=0, help="at most N records (0 = all)")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Records matching the filters, in sequence order."""
    try:
        channel, client = _client(state_dir_opt, address, token)
        with channel:
            records = client.query(
                run,
                kinds=kind or (),
                from_tick=from_tick,
                to_tick=to_tick,
                from_sequence=from_seq,
                to_sequence=to_seq,
                limit=limit,
            )
            n = _print_records(records, as_json, "journal records")
    except LockstepError as exc:
        raise fail(exc) from None
    if not as_json and n == limit:
        console.print(f"(first {limit} records; raise --limit or use --from-seq to see more)")


def _tail_records(
    client: TelemetryClient, run: str, kinds: list[str], last: int
) -> Generator[pb.StoredRecord, None, None]:
    head = client.head().sequence
    if last and head:
        # The last N matching records: widen a window back from the head until it holds
        # N of them (without filters the first window is exact).
        window = last
        while True:
            start = max(1, head - window + 1)
            recent = list(client.query(run, kinds=kinds, from_sequence=start, to_sequence=head))
            if len(recent) >= last or start == 1:
                break
            window *= 4
        yield from recent[-last:]
    yield from client.follow(head + 1, run, kinds)


@journal_app.command()
def tail(
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
    run: RunOption = "",
    kind: KindOption = None,
    last: Annotated[int, typer.Option(min=0, help="show the last N records first")] = 10,
    count: Annotated[
        int, typer.Option(min=0, help="stop after N records (0 = follow until Ctrl-C)")
    ] = 0,
    as_json: JsonOption = False,
) -> None:
    """Show the last records, then follow new ones as they are appended (like tail -f)."""
    shown = 0
    try:
        channel, client = _client(state_dir_opt, address, token)
        with channel:
            stream = _tail_records(client, run, list(kind or ()), last)
            try:
                for rec in stream:
                    if as_json:
                        typer.echo(_as_json(rec))
                    else:
                        console.print(
                            f"{rec.sequence:>8} {rec.run_id} t={rec.tick} "
                            f"[bold]{rec.kind}[/] {_preview(rec)}",
                            soft_wrap=True,
                            markup=True,
                            highlight=False,
                        )
                    shown += 1
                    if count and shown >= count:
                        break
            except KeyboardInterrupt:
                pass
            finally:
                stream.close()
    except LockstepError as exc:
        raise fail(exc) from None


@journal_app.command()
def runs(
    state_dir_opt: StateDirOption = None,
    address: AddressOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Runs with records in the journal."""
    try:
        channel, client = _client(state_dir_opt, address, token)
        with channel:
            found = client.runs()
    except LockstepError as exc:
        raise fail(exc) from None
    if as_json:
        for r in found:
            typer.echo(
                json.dumps(
                    {
                        "run_id": r.run_id,
                        "first_sequence": r.first_sequence,
                        "last_sequence": r.last_sequence,
                        "record_count": r.record_count,
                        "min_tick": r.min_tick,
                        "max_tick": r.max_tick,
                    },
                    sort_keys=True,
                )
            )
        return
    table = Table(title="journal runs")
    for col in ("run", "records", "sequences", "ticks"):
        table.add_column(col)
    for r in found:
        table.add_row(
            r.run_id,
            str(r.record_count),
            f"{r.first_sequence}..{r.last_sequence}",
            f"{r.min_tick}..{r.max_tick}",
        )
    console.print(table)
