"""lockstep.telemetry_client against a real server: idempotent retries, blocking while
the service is down (never losing or doubling records), the bounded buffer."""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep.telemetry_client import (
    ChainHead,
    RecordBuffer,
    TelemetryClient,
    TelemetryRefusedError,
    TelemetryUnavailableError,
    make_record,
)
from tests.telemetry.conftest import Telemetry, records
from tests.telemetry.test_chain import reference_verify

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_append_query_verify_runs(telemetry: Telemetry) -> None:
    client = telemetry.client(max_batch_records=3)
    head = client.append("run-1", records(8))  # 3 batches: 3 + 3 + 2
    assert head.sequence == 8 and head == client.head()
    assert client.append("run-2", []) == head  # nothing to store
    viewer = telemetry.client(Role.VIEWER)
    assert [r.tick for r in viewer.query("run-1", from_tick=6)] == [6, 7]
    assert viewer.verify().ok
    assert [r.run_id for r in viewer.runs()] == ["run-1"]
    with pytest.raises(TelemetryRefusedError) as err:
        viewer.append("run-1", records(1))
    assert err.value.status == grpc.StatusCode.PERMISSION_DENIED


def test_chunks_respect_byte_bound(telemetry: Telemetry) -> None:
    client = telemetry.client(max_batch_bytes=250)
    client.append("r", [make_record(0, "a", bytes(100)) for _ in range(5)])
    runs = telemetry.client(Role.VIEWER).runs()
    assert runs[0].record_count == 5
    # 5 x 100 bytes in batches of <= 250 bytes: 3 batches, visible in the batch metrics.
    assert telemetry.server is not None
    stored = telemetry.server.registry.get_sample_value(
        "lockstep_telemetry_append_batches_total", {"outcome": "stored"}
    )
    assert stored == 3


def test_lost_response_is_not_stored_twice(telemetry: Telemetry) -> None:
    """The first attempt was stored but its response never reached the client: the
    client's retry carries the same batch id and is answered as a duplicate."""
    client = telemetry.client(client_id="orch")
    first_attempt = telemetry.stub().AppendRecords(
        pb.AppendRecordsRequest(run_id="run-1", records=records(4), batch_id="orch-1"), timeout=10
    )
    head = client.append("run-1", records(4))  # the client's batch "orch-1"
    assert head == ChainHead.from_pb(first_attempt.head)
    assert client.head().sequence == 4
    assert client.append("run-1", records(1)).sequence == 5  # "orch-2": a new batch


def test_permanent_refusal_raises_at_once(telemetry: Telemetry) -> None:
    client = telemetry.client()
    with pytest.raises(TelemetryRefusedError, match="INVALID_ARGUMENT: record 0: kind"):
        client.append("r", [make_record(0, "Bad Kind", b"")])
    with pytest.raises(TelemetryRefusedError, match="run_id is empty"):
        client.append("", records(1))


def test_blocks_while_down_then_delivers_exactly_once(
    tmp_path: Path, auth: tuple[Path, TokenStore]
) -> None:
    """Telemetry is down when the writer appends: the call blocks (it neither fails nor
    drops records) until a server comes up on the same address, then stores them once."""
    address = f"unix:{tmp_path / 'telemetry.sock'}"
    channel = AuthedChannel(address, auth[1].token(Role.SERVICE))
    client = TelemetryClient(channel, call_timeout=2.0, backoff_initial=0.01, backoff_max=0.05)
    result: list[ChainHead] = []
    writer = threading.Thread(target=lambda: result.append(client.append("run-1", records(6))))
    writer.start()
    env = Telemetry(tmp_path / "t.db", auth[1], address=address)
    try:
        writer.join(30)
        assert not writer.is_alive() and result[0].sequence == 6
        assert env.client().head().sequence == 6
        assert reference_verify(env.db_path) == result[0].hash
    finally:
        env.stop()
        channel.close()


def test_give_up_after_keeps_the_batch_id(tmp_path: Path, auth: tuple[Path, TokenStore]) -> None:
    address = f"unix:{tmp_path / 'telemetry.sock'}"
    channel = AuthedChannel(address, auth[1].token(Role.SERVICE))
    client = TelemetryClient(
        channel,
        client_id="w",
        call_timeout=0.2,
        backoff_initial=0.01,
        give_up_after=0.3,
        max_batch_records=2,
    )
    recs = records(5)
    with pytest.raises(TelemetryUnavailableError) as err:
        client.append("r", recs)
    assert err.value.batch_id == "w-1" and err.value.stored == 0
    env = Telemetry(tmp_path / "t.db", auth[1], address=address)
    try:
        # The same records again: the unacknowledged batch is re-sent as "w-1".
        head = client.append("r", recs[err.value.stored :])
        assert head.sequence == 5
        stub = env.stub()
        again = stub.AppendRecords(
            pb.AppendRecordsRequest(run_id="r", records=recs[:2], batch_id="w-1"), timeout=10
        )
        assert again.duplicate and again.first_sequence == 1
    finally:
        env.stop()
        channel.close()


def test_record_buffer_is_bounded_and_ordered(telemetry: Telemetry) -> None:
    buffer = RecordBuffer(telemetry.client(), max_records=4)
    for i in range(3):
        buffer.add("run-1", i, "agent.log", b"a%d" % i)
    assert len(buffer) == 3 and telemetry.client(Role.VIEWER).head().sequence == 0
    buffer.add("run-2", 0, "run.config", b"{}", "application/json")  # 4th: flushes
    assert len(buffer) == 0 and buffer.last_head is not None
    assert buffer.last_head.sequence == 4
    buffer.add("run-1", 3, "agent.log", b"a3")
    head = buffer.flush()
    assert head is not None and head.sequence == 5 and buffer.flush() == head
    stored = list(telemetry.client(Role.VIEWER).query())
    assert [(r.run_id, r.tick) for r in stored] == [
        ("run-1", 0),
        ("run-1", 1),
        ("run-1", 2),
        ("run-2", 0),
        ("run-1", 3),
    ]
    assert stored[3].content_type == "application/json"
    with pytest.raises(ValueError):
        RecordBuffer(telemetry.client(), max_records=0)


def test_follow_generator_cancels_on_close(telemetry: Telemetry) -> None:
    client = telemetry.client()
    client.append("r", records(2))
    follow = telemetry.client(Role.VIEWER).follow(from_sequence=1)
    assert [next(follow).sequence, next(follow).sequence] == [1, 2]
    follow.close()
    assert telemetry.server is not None
    servicer = telemetry.servicer
    done = threading.Event()
    while servicer.followers:
        done.wait(0.01)
