"""`lockstep journal ...` against a real telemetry server (addresses and tokens given as
options, as when no supervisor state exists)."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest
from typer.testing import CliRunner

import lockstep.cli._journal  # noqa: F401 - registers the `journal` sub-app
from lockstep.auth import Role
from lockstep.cli._app import app
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from tests.telemetry.conftest import Telemetry, records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def invoke(telemetry: Telemetry, *args: str, role: Role = Role.VIEWER):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    return runner.invoke(
        app,
        ["journal", *args, "--address", telemetry.address, "--token", telemetry.tokens.token(role)],
        env={"COLUMNS": "200"},
    )


@pytest.fixture
def filled(telemetry: Telemetry) -> Telemetry:
    client = telemetry.client()
    client.append(
        "run-1",
        [
            pb.Record(
                tick=0, kind="run.config", payload=b'{"seed":1}', content_type="application/json"
            )
        ],
    )
    client.append("run-1", records(5, start_tick=1))
    client.append("run-2", [pb.Record(tick=3, kind="tick.digest", payload=bytes(range(200, 240)))])
    return telemetry


def test_verify_empty(telemetry: Telemetry) -> None:
    result = invoke(telemetry, "verify")
    assert result.exit_code == 0 and "chain OK: the journal is empty" in result.output


def test_verify_ok_and_broken(filled: Telemetry) -> None:
    result = invoke(filled, "verify")
    assert result.exit_code == 0, result.output
    assert "chain OK: records 1..7 (7 checked)" in result.output
    con = sqlite3.connect(filled.db_path, isolation_level=None)
    con.execute("DROP TRIGGER records_no_update")
    con.execute("UPDATE records SET payload = x'00' WHERE seq = 4")
    con.close()
    result = invoke(filled, "verify")
    assert result.exit_code == 1
    assert "chain BROKEN at sequence 4 (HASH_MISMATCH)" in result.output
    assert invoke(filled, "verify", "--to", "3").exit_code == 0
    bad = invoke(filled, "verify", "--expected-hash", "zz")
    assert bad.exit_code == 2 and "64 hex digits" in bad.output


def test_query_table_and_json(filled: Telemetry) -> None:
    result = invoke(filled, "query", "--run", "run-1", "--kind", "agent.log", "--from-tick", "2")
    assert result.exit_code == 0, result.output
    assert "journal records" in result.output
    for line in ("p1", "p2", "p3", "p4"):
        assert line in result.output
    assert "run.config" not in result.output
    lines = invoke(filled, "query", "--json").output.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["sequence"] for r in rows] == list(range(1, 8))
    assert rows[0]["payload"] == '{"seed":1}' and rows[0]["content_type"] == "application/json"
    assert rows[6]["payload_encoding"] == "base64" and len(rows[6]["hash"]) == 64
    limited = invoke(filled, "query", "--limit", "2")
    assert "first 2 records" in limited.output
    binary = invoke(filled, "query", "--run", "run-2")
    assert "<40 bytes> c8c9ca" in binary.output


def test_runs(filled: Telemetry) -> None:
    result = invoke(filled, "runs", "--json")
    assert result.exit_code == 0, result.output
    runs = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["run_id"], r["record_count"], r["max_tick"]) for r in runs] == [
        ("run-1", 6, 5),
        ("run-2", 1, 3),
    ]
    table = invoke(filled, "runs")
    assert "run-1" in table.output and "1..6" in table.output


def test_tail_shows_last_then_follows(filled: Telemetry) -> None:
    writer = filled.client()
    done = threading.Event()

    def keep_appending() -> None:
        # The CLI follows from the head it read; appending until it has seen a new record
        # is race-free without sleeping.
        for _ in range(10_000):
            if done.is_set():
                return
            writer.append("run-1", [pb.Record(tick=9, kind="agent.fault", payload=b"new")])

    thread = threading.Thread(target=keep_appending)
    thread.start()
    try:
        result = invoke(filled, "tail", "--run", "run-1", "--last", "2", "--count", "3", "--json")
    finally:
        done.set()
        thread.join()
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["payload"] for r in rows[:2]] in (["p3", "p4"], ["p4", "new"], ["new", "new"])
    assert rows[2]["kind"] == "agent.fault"


def test_errors_are_one_line(filled: Telemetry) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["journal", "runs", "--address", filled.address, "--token", "not-a-token"]
    )
    assert result.exit_code == 2
    assert "UNAUTHENTICATED" in result.output
    result = invoke(filled, "query", "--kind", "BAD")
    assert result.exit_code == 2 and "INVALID_ARGUMENT" in result.output
