"""TelemetryService over real gRPC: append, query, head, runs, idempotency, bad input,
roles, follow, restart on the same database, metrics."""

from __future__ import annotations

import threading
import urllib.request

import grpc
import pytest

from lockstep.auth import Role
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from tests.telemetry.conftest import Telemetry, records
from tests.telemetry.test_chain import reference_verify

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def append(stub, run_id: str, recs: list[pb.Record], **kw) -> pb.AppendRecordsResponse:  # type: ignore[no-untyped-def]
    resp: pb.AppendRecordsResponse = stub.AppendRecords(
        pb.AppendRecordsRequest(run_id=run_id, records=recs, **kw), timeout=10
    )
    return resp


def query(stub, **kw) -> list[pb.StoredRecord]:  # type: ignore[no-untyped-def]
    return [
        r
        for batch in stub.QueryRecords(pb.QueryRecordsRequest(**kw), timeout=10)
        for r in batch.records
    ]


def test_append_assigns_consecutive_sequences_and_chains(telemetry: Telemetry) -> None:
    stub = telemetry.stub()
    head0 = stub.GetHead(pb.GetHeadRequest(), timeout=10)
    assert head0.head.sequence == 0 and head0.head.hash == bytes(32)
    assert head0.record_format == 1
    r1 = append(stub, "run-1", records(3, kind="run.config"))
    r2 = append(stub, "run-2", records(2, kind="control.spawn"))
    assert (r1.first_sequence, r1.count, r1.head.sequence) == (1, 3, 3)
    assert (r2.first_sequence, r2.count, r2.head.sequence) == (4, 2, 5)
    assert not r1.duplicate and not r2.duplicate
    head = stub.GetHead(pb.GetHeadRequest(), timeout=10).head
    assert head == r2.head
    stored = query(stub)
    assert [r.sequence for r in stored] == [1, 2, 3, 4, 5]
    assert stored[2].hash == r1.head.hash
    assert (stored[0].run_id, stored[0].kind, stored[0].payload, stored[0].content_type) == (
        "run-1",
        "run.config",
        b"p0",
        "text/plain",
    )
    assert reference_verify(telemetry.db_path) == head.hash
    verdict = stub.VerifyChain(pb.VerifyChainRequest(), timeout=10)
    assert verdict.ok and verdict.records_checked == 5 and verdict.hash == head.hash


def test_query_filters(telemetry: Telemetry) -> None:
    stub = telemetry.stub()
    append(stub, "run-1", records(10, kind="agent.log"))  # 1..10, ticks 0..9
    append(stub, "run-2", records(5, kind="agent.log"))  # 11..15
    append(stub, "run-1", records(4, kind="tick.digest", start_tick=10))  # 16..19
    viewer = telemetry.stub(Role.VIEWER)
    assert [r.sequence for r in query(viewer, run_id="run-2")] == [11, 12, 13, 14, 15]
    assert [r.sequence for r in query(viewer, run_id="run-1", kinds=["tick.digest"])] == [
        16,
        17,
        18,
        19,
    ]
    assert [r.tick for r in query(viewer, run_id="run-1", from_tick=8, to_tick=11)] == [
        8,
        9,
        10,
        11,
    ]
    assert [r.sequence for r in query(viewer, from_sequence=9, to_sequence=12)] == [9, 10, 11, 12]
    assert [r.sequence for r in query(viewer, run_id="run-1", limit=3, from_sequence=5)] == [
        5,
        6,
        7,
    ]
    assert query(viewer, run_id="no-such-run") == []
    assert [r.sequence for r in query(viewer, kinds=["agent.log", "tick.digest"], from_tick=9)] == [
        10,
        16,
        17,
        18,
        19,
    ]
    runs = viewer.ListRuns(pb.ListRunsRequest(), timeout=10).runs
    assert [
        (r.run_id, r.first_sequence, r.last_sequence, r.record_count, r.min_tick, r.max_tick)
        for r in runs
    ] == [("run-1", 1, 19, 14, 0, 13), ("run-2", 11, 15, 5, 0, 4)]
    assert len(viewer.ListRuns(pb.ListRunsRequest(limit=1), timeout=10).runs) == 1


def test_query_streams_in_bounded_batches(telemetry: Telemetry) -> None:
    telemetry.restart(stream_batch_records=7)
    stub = telemetry.stub()
    append(stub, "run-1", records(3000))
    batches = list(stub.QueryRecords(pb.QueryRecordsRequest(run_id="run-1"), timeout=10))
    assert all(0 < len(b.records) <= 7 for b in batches)
    seqs = [r.sequence for b in batches for r in b.records]
    assert seqs == list(range(1, 3001))


def test_retried_batch_id_is_stored_once(telemetry: Telemetry) -> None:
    stub = telemetry.stub()
    first = append(stub, "run-1", records(4), batch_id="w-1")
    append(stub, "run-1", records(1, kind="agent.fault"))
    again = append(stub, "run-1", records(4), batch_id="w-1")
    assert again.duplicate and not first.duplicate
    assert (again.first_sequence, again.count, again.head) == (1, 4, first.head)
    assert stub.GetHead(pb.GetHeadRequest(), timeout=10).head.sequence == 5
    # The same id with other content is a client bug, refused loudly.
    for run_id, recs in [
        ("run-1", records(4, payload=b"q")),
        ("run-1", records(3)),
        ("run-2", records(4)),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            append(stub, run_id, recs, batch_id="w-1")
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "'w-1' was already used" in str(err.value.details())
    assert stub.GetHead(pb.GetHeadRequest(), timeout=10).head.sequence == 5


def test_expected_next_sequence(telemetry: Telemetry) -> None:
    stub = telemetry.stub()
    assert append(stub, "r", records(2), expected_next_sequence=1).first_sequence == 1
    with pytest.raises(grpc.RpcError) as err:
        append(stub, "r", records(2), expected_next_sequence=1)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "next sequence is 3" in str(err.value.details())
    assert append(stub, "r", records(1), expected_next_sequence=3).first_sequence == 3
    # A retry of a stored batch is recognised by its id before the precondition.
    append(stub, "r", records(1), batch_id="b", expected_next_sequence=4)
    assert append(stub, "r", records(1), batch_id="b", expected_next_sequence=4).duplicate


@pytest.mark.parametrize(
    "run_id, recs, batch_id, code, detail",
    [
        ("", records(1), "", "INVALID_ARGUMENT", "run_id is empty"),
        ("r" * 129, records(1), "", "INVALID_ARGUMENT", "run_id"),
        ("run\n1", records(1), "", "INVALID_ARGUMENT", "printable ASCII"),
        ("r", [], "", "INVALID_ARGUMENT", "at least one record"),
        (
            "r",
            [*records(2), pb.Record(tick=0, kind="Agent.Log")],
            "",
            "INVALID_ARGUMENT",
            "record 2: kind 'Agent.Log' must match",
        ),
        ("r", [pb.Record(tick=0, kind="")], "", "INVALID_ARGUMENT", "kind '' must match"),
        (
            "r",
            [pb.Record(tick=-1, kind="agent.log")],
            "",
            "INVALID_ARGUMENT",
            "record 0: tick -1 is negative",
        ),
        (
            "r",
            [pb.Record(tick=0, kind="a", content_type="x" * 129)],
            "",
            "INVALID_ARGUMENT",
            "content_type",
        ),
        ("r", records(1), "b" * 129, "INVALID_ARGUMENT", "batch_id is longer"),
        ("r", records(101), "", "RESOURCE_EXHAUSTED", "batch of 101 records exceeds the limit"),
        (
            "r",
            [pb.Record(tick=0, kind="a", payload=bytes(1025))],
            "",
            "RESOURCE_EXHAUSTED",
            "payload of 1025 bytes exceeds the limit of 1024",
        ),
        (
            "r",
            [pb.Record(tick=0, kind="a", payload=bytes(1000))] * 5,
            "",
            "RESOURCE_EXHAUSTED",
            "batch payloads total 5000 bytes",
        ),
    ],
)
def test_bad_appends_are_refused_with_precise_status(
    telemetry: Telemetry, run_id: str, recs: list[pb.Record], batch_id: str, code: str, detail: str
) -> None:
    telemetry.restart(max_batch_records=100, max_payload_bytes=1024, max_batch_bytes=4096)
    stub = telemetry.stub()
    with pytest.raises(grpc.RpcError) as err:
        append(stub, run_id, recs, batch_id=batch_id)
    assert err.value.code().name == code
    assert detail in str(err.value.details())
    # Nothing of a refused batch is stored, and the service keeps working.
    assert stub.GetHead(pb.GetHeadRequest(), timeout=10).head.sequence == 0
    assert append(stub, "r", records(1)).first_sequence == 1


@pytest.mark.parametrize(
    "request_, detail",
    [
        (pb.QueryRecordsRequest(from_tick=5, to_tick=4), "from_tick 5 is after to_tick 4"),
        (pb.QueryRecordsRequest(from_sequence=5, to_sequence=4), "from_sequence 5 is after"),
        (pb.QueryRecordsRequest(kinds=["BAD KIND"]), "kind 'BAD KIND' must match"),
        (pb.QueryRecordsRequest(run_id="x" * 200), "run_id"),
        (pb.QueryRecordsRequest(kinds=["k"] * 65), "at most 64 kinds"),
    ],
)
def test_bad_queries(telemetry: Telemetry, request_: pb.QueryRecordsRequest, detail: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(telemetry.stub(Role.VIEWER).QueryRecords(request_, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in str(err.value.details())


def test_bad_verify_requests(telemetry: Telemetry) -> None:
    stub = telemetry.stub(Role.VIEWER)
    append(telemetry.stub(), "r", records(3))
    cases = [
        (pb.VerifyChainRequest(from_sequence=3, to_sequence=2), "INVALID_ARGUMENT"),
        (pb.VerifyChainRequest(expected_hash=b"short"), "INVALID_ARGUMENT"),
        (pb.VerifyChainRequest(from_sequence=9), "OUT_OF_RANGE"),
    ]
    for request, code in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.VerifyChain(request, timeout=10)
        assert err.value.code().name == code
    # Partial ranges verify from the stored hash before them.
    part = stub.VerifyChain(pb.VerifyChainRequest(from_sequence=2, to_sequence=3), timeout=10)
    assert (
        part.ok and part.records_checked == 2 and (part.from_sequence, part.to_sequence) == (2, 3)
    )


def test_roles(telemetry: Telemetry) -> None:
    for role, code in [
        (Role.VIEWER, grpc.StatusCode.PERMISSION_DENIED),
        (Role.OPERATOR, grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            append(telemetry.stub(role), "r", records(1))
        assert err.value.code() == code
    assert append(telemetry.stub(Role.SERVICE), "r", records(1)).first_sequence == 1
    assert append(telemetry.stub(Role.ADMIN), "r", records(1)).first_sequence == 2
    for role in (Role.VIEWER, Role.OPERATOR, Role.SERVICE, Role.ADMIN):
        stub = telemetry.stub(role)
        assert stub.GetHead(pb.GetHeadRequest(), timeout=10).head.sequence == 2
        assert len(query(stub)) == 2
        assert stub.VerifyChain(pb.VerifyChainRequest(), timeout=10).ok
    with pytest.raises(grpc.RpcError) as err:
        telemetry.stub(None).GetHead(pb.GetHeadRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_follow_history_then_live_records(telemetry: Telemetry) -> None:
    writer = telemetry.stub()
    append(writer, "run-1", records(3))
    viewer = telemetry.stub(Role.VIEWER)
    call = viewer.FollowRecords(pb.FollowRecordsRequest(from_sequence=2, run_id="run-1"))
    faults = viewer.FollowRecords(pb.FollowRecordsRequest(from_sequence=4, kinds=["agent.fault"]))
    got: list[int] = []
    for batch in call:
        got += [r.sequence for r in batch.records]
        if got == [2, 3]:
            append(writer, "run-2", records(2))  # 4, 5: other run
            append(writer, "run-1", records(2, kind="agent.fault"))  # 6, 7
        if len(got) == 4:
            break
    assert got == [2, 3, 6, 7]
    call.cancel()
    assert [r.sequence for r in next(iter(faults)).records] == [6, 7]
    faults.cancel()


def test_follow_from_zero_sends_only_new_records(telemetry: Telemetry) -> None:
    writer = telemetry.stub()
    append(writer, "r", records(3))
    live = telemetry.stub(Role.VIEWER).FollowRecords(pb.FollowRecordsRequest())
    done = threading.Event()

    def keep_appending() -> None:
        # The stream starts at the head as of the server handling the call, which this
        # test cannot observe; appending until the first record arrives is race-free.
        for _ in range(10_000):
            if done.is_set():
                return
            append(writer, "r", records(1, kind="agent.fault"))

    thread = threading.Thread(target=keep_appending)
    thread.start()
    try:
        first = next(iter(live)).records[0]
    finally:
        done.set()
        thread.join()
        live.cancel()
    assert first.sequence > 3 and first.kind == "agent.fault"


def test_follow_limit_and_cancel_releases_slot(telemetry: Telemetry) -> None:
    telemetry.restart(max_followers=2, max_workers=8)
    viewer = telemetry.stub(Role.VIEWER)
    append(telemetry.stub(), "r", records(1))
    calls = [viewer.FollowRecords(pb.FollowRecordsRequest(from_sequence=1)) for _ in range(2)]
    for call in calls:  # both are streaming (each got the first record)
        assert next(call).records[0].sequence == 1
    third = viewer.FollowRecords(pb.FollowRecordsRequest(from_sequence=1))
    with pytest.raises(grpc.RpcError) as err:
        next(third)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    calls[0].cancel()
    # The slot is released once the server notices the cancellation; gRPC tells us when.
    released = threading.Event()
    assert telemetry.server is not None
    servicer = telemetry.servicer
    while servicer.followers > 1:
        released.wait(0.01)
    again = viewer.FollowRecords(pb.FollowRecordsRequest(from_sequence=1))
    assert next(again).records[0].sequence == 1
    again.cancel()
    calls[1].cancel()


def test_follow_ends_when_server_stops(telemetry: Telemetry) -> None:
    viewer = telemetry.stub(Role.VIEWER)
    call = viewer.FollowRecords(pb.FollowRecordsRequest())
    append(telemetry.stub(), "r", records(1))
    assert next(call).records[0].sequence == 1
    assert telemetry.server is not None
    telemetry.server.stop(0)
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)
    telemetry.server = None


def test_restart_continues_the_chain(telemetry: Telemetry) -> None:
    stub = telemetry.stub()
    append(stub, "run-1", records(5), batch_id="a")
    head = stub.GetHead(pb.GetHeadRequest(), timeout=10).head
    telemetry.restart(verify_on_start=True)
    stub = telemetry.stub()
    assert stub.GetHead(pb.GetHeadRequest(), timeout=10).head == head
    # Batch ids survive the restart (a retry after a crash is still recognised).
    assert append(stub, "run-1", records(5), batch_id="a").duplicate
    nxt = append(stub, "run-1", records(2, start_tick=5))
    assert nxt.first_sequence == 6
    verdict = stub.VerifyChain(pb.VerifyChainRequest(), timeout=10)
    assert verdict.ok and verdict.records_checked == 7
    assert reference_verify(telemetry.db_path) == nxt.head.hash
    runs = stub.ListRuns(pb.ListRunsRequest(), timeout=10).runs
    assert [(r.run_id, r.record_count, r.max_tick) for r in runs] == [("run-1", 7, 6)]


def test_metrics_endpoint(telemetry: Telemetry) -> None:
    stub = telemetry.stub()
    append(stub, "r", records(3, kind="agent.log") + records(2, kind="tick.digest"))
    append(stub, "r", records(1), batch_id="x")
    append(stub, "r", records(1), batch_id="x")
    with pytest.raises(grpc.RpcError):
        append(stub, "", records(1))
    assert telemetry.server is not None
    url = f"http://{telemetry.server.metrics_address}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    assert 'lockstep_telemetry_records_appended_total{kind="agent.log"} 4.0' in text
    assert 'lockstep_telemetry_records_appended_total{kind="tick.digest"} 2.0' in text
    assert "lockstep_telemetry_head_sequence 6.0" in text
    assert 'lockstep_telemetry_append_batches_total{outcome="stored"} 2.0' in text
    assert 'lockstep_telemetry_append_batches_total{outcome="duplicate"} 1.0' in text
    assert 'lockstep_telemetry_append_batches_total{outcome="rejected"} 1.0' in text
    assert "lockstep_telemetry_append_seconds_count 3.0" in text
    assert 'lockstep_telemetry_append_seconds_bucket{le="+Inf"} 3.0' in text
