"""Tamper evidence: rows edited, deleted, rewritten or cut off behind the service's back
with plain sqlite3 are found by VerifyChain, which names the first bad sequence."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from lockstep.auth import Role
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep_telemetry import encode_record
from tests.telemetry.conftest import Telemetry, records

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def tamper(db_path: Path, *statements: str) -> None:
    """Run SQL as an attacker would: another connection, triggers dropped first."""
    con = sqlite3.connect(db_path, isolation_level=None)
    con.execute("DROP TRIGGER IF EXISTS records_no_update")
    con.execute("DROP TRIGGER IF EXISTS records_no_delete")
    for sql in statements:
        con.execute(sql)
    con.close()


def verify(telemetry: Telemetry, **kw: object) -> pb.VerifyChainResponse:
    resp: pb.VerifyChainResponse = telemetry.stub(Role.VIEWER).VerifyChain(
        pb.VerifyChainRequest(**kw),  # type: ignore[arg-type]
        timeout=10,
    )
    return resp


@pytest.fixture
def filled(telemetry: Telemetry) -> Telemetry:
    stub = telemetry.stub()
    for i in range(4):
        stub.AppendRecords(
            pb.AppendRecordsRequest(run_id=f"run-{i % 2}", records=records(5, start_tick=i * 5)),
            timeout=10,
        )
    assert verify(telemetry).ok
    return telemetry


def test_triggers_refuse_plain_edits(filled: Telemetry) -> None:
    con = sqlite3.connect(filled.db_path)
    for sql in (
        "UPDATE records SET payload = x'00' WHERE seq = 3",
        "DELETE FROM records WHERE seq = 3",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    con.close()


@pytest.mark.parametrize(
    "sql, fault, reason",
    [
        (
            "UPDATE records SET payload = x'deadbeef' WHERE seq = 7",
            "HASH_MISMATCH",
            "record 7: recomputed hash",
        ),
        ("UPDATE records SET payload = 'text now' WHERE seq = 7", "HASH_MISMATCH", "record 7"),
        ("UPDATE records SET tick = 99 WHERE seq = 7", "HASH_MISMATCH", "record 7"),
        ("UPDATE records SET run_id = 'run-x' WHERE seq = 7", "HASH_MISMATCH", "record 7"),
        ("UPDATE records SET kind = 'agent.fault' WHERE seq = 7", "HASH_MISMATCH", "record 7"),
        ("UPDATE records SET hash = zeroblob(32) WHERE seq = 7", "HASH_MISMATCH", "record 7"),
        ("UPDATE records SET hash = x'00' WHERE seq = 7", "MALFORMED", "record 7"),
        ("UPDATE records SET tick = 'seven' WHERE seq = 7", "MALFORMED", "record 7"),
        ("DELETE FROM records WHERE seq = 7", "SEQUENCE_GAP", "record 7 is missing"),
        ("DELETE FROM records WHERE seq IN (7, 8, 9)", "SEQUENCE_GAP", "record 7 is missing"),
    ],
)
def test_edit_is_named_by_sequence(filled: Telemetry, sql: str, fault: str, reason: str) -> None:
    tamper(filled.db_path, sql)
    verdict = verify(filled)
    assert not verdict.ok
    assert verdict.first_bad_sequence == 7
    assert pb.ChainFault.Name(verdict.fault) == f"CHAIN_FAULT_{fault}"
    assert reason in verdict.reason
    assert verdict.records_checked == 6
    # A range before the damage still verifies; one starting after it trusts stored hashes.
    assert verify(filled, from_sequence=1, to_sequence=6).ok


def test_truncated_tail_is_detected(filled: Telemetry) -> None:
    tamper(filled.db_path, "DELETE FROM records WHERE seq > 17")
    verdict = verify(filled)
    assert not verdict.ok
    assert pb.ChainFault.Name(verdict.fault) == "CHAIN_FAULT_TRUNCATED"
    assert verdict.first_bad_sequence == 18
    assert "records 18..20" in verdict.reason


def test_rewritten_chain_is_caught_by_the_anchor(filled: Telemetry) -> None:
    anchor = filled.stub().GetHead(pb.GetHeadRequest(), timeout=10).head
    # Rewrite record 12 and recompute every hash after it: internally consistent.
    con = sqlite3.connect(filled.db_path, isolation_level=None)
    con.execute("DROP TRIGGER records_no_update")
    prev = con.execute("SELECT hash FROM records WHERE seq = 11").fetchone()[0]
    rows = con.execute(
        "SELECT seq, run_id, tick, kind, content_type, payload FROM records "
        "WHERE seq >= 12 ORDER BY seq"
    ).fetchall()
    for seq, run_id, tick, kind, ctype, payload in rows:
        if seq == 12:
            payload = b"forged"
        prev = hashlib.sha256(
            prev + encode_record(seq, run_id, tick, kind, ctype, payload)
        ).digest()
        con.execute("UPDATE records SET payload = ?, hash = ? WHERE seq = ?", (payload, prev, seq))
    con.close()
    assert verify(filled).ok  # without an anchor the forgery is self-consistent
    verdict = verify(filled, to_sequence=anchor.sequence, expected_hash=anchor.hash)
    assert not verdict.ok
    assert pb.ChainFault.Name(verdict.fault) == "CHAIN_FAULT_ANCHOR_MISMATCH"
    assert verdict.first_bad_sequence == 20
    assert "rewritten at or before record 20" in verdict.reason


def test_tampered_database_refuses_verify_on_start(filled: Telemetry) -> None:
    from lockstep.errors import ConfigError

    filled.stop()
    tamper(filled.db_path, "UPDATE records SET payload = x'00' WHERE seq = 5")
    with pytest.raises(ConfigError, match="record 5"):
        filled.start(verify_on_start=True)
    # Without the check it starts, and appends continue the stored chain.
    filled.start(verify_on_start=False)
    assert (
        filled.stub()
        .AppendRecords(pb.AppendRecordsRequest(run_id="r", records=records(1)), timeout=10)
        .first_sequence
        == 21
    )
    assert verify(filled).first_bad_sequence == 5


def test_query_over_an_altered_row_is_data_loss(filled: Telemetry) -> None:
    import grpc

    tamper(filled.db_path, "UPDATE records SET tick = 'seven' WHERE seq = 7")
    stub = filled.stub(Role.VIEWER)
    with pytest.raises(grpc.RpcError) as err:
        list(stub.QueryRecords(pb.QueryRecordsRequest(), timeout=10))
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert "stored record 7" in str(err.value.details())
    # Records before it are still readable.
    ok = list(stub.QueryRecords(pb.QueryRecordsRequest(to_sequence=6), timeout=10))
    assert sum(len(b.records) for b in ok) == 6
