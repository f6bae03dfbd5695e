"""Replay from the journal: identical digests, and tampering named precisely."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.telemetry_client import TelemetryClient
from tests.orchestrator.conftest import OrchestratorFactory
from tests.orchestrator.test_scheduling import faulty_run

pytestmark = pytest.mark.integration
GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def replay(stub, **request) -> opb.ReplayProgress:  # type: ignore[no-untyped-def]
    updates = list(stub.Replay(opb.ReplayRequest(**request)))
    assert updates[-1].done
    return updates[-1]


def entries_of(records: list[tuple[int, str, bytes]]) -> list[opb.JournalEntry]:
    return [opb.JournalEntry(tick=t, kind=k, payload=p) for t, k, p in records]


@pytest.fixture
def telemetry(service_factory, auth: tuple[Path, TokenStore], tmp_path: Path):  # type: ignore[no-untyped-def]
    return service_factory("lockstep_telemetry", auth[0], "--db", str(tmp_path / "t.db"))


def test_replay_from_telemetry_matches_and_tampering_is_named(
    telemetry,
    orchestrator: OrchestratorFactory,
    probe_wasm: bytes,  # type: ignore[no-untyped-def]
    auth: tuple[Path, TokenStore],
) -> None:
    stub = orchestrator(2, telemetry=telemetry.address)
    digests, status, _infos = faulty_run(stub, probe_wasm)
    result = replay(stub, run_id=status.run_id)
    assert result.ok and result.tick == len(digests) == 12, result
    assert result.replay_run_id != status.run_id

    with AuthedChannel(telemetry.address, auth[1].token(Role.VIEWER)) as channel:
        records = [
            (r.tick, r.kind, r.payload) for r in TelemetryClient(channel).query(status.run_id)
        ]
    kinds = [k for _t, k, _p in records]
    assert kinds[0] == "run.start" and kinds.count("tick.digest") == 12
    assert {
        "control.spawn",
        "control.pause",
        "control.resume",
        "control.message",
        "agent.fault",
        "agent.restart",
    } <= set(kinds)

    # Tamper with the external message: the replay re-applies the journal's actions, so the
    # events agree, but the digest shows the agent saw something else; tick and agent named.
    tampered = []
    for tick, kind, payload in records:
        if kind == "control.message":
            body = json.loads(payload)
            body["payload"] = b"go back to sleep".hex()
            payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            message_tick = tick
        tampered.append((tick, kind, payload))
    result = replay(stub, entries=entries_of(tampered))
    assert not result.ok and result.divergent_tick == message_tick
    assert result.divergent_agent == "sleeper"
    assert "differ" in result.detail

    # Tamper with a fault record: the differing event itself is named.
    tampered = [
        (t, k, p.replace(b"unreachable", b"divide by zero") if k == "agent.fault" else p)
        for t, k, p in records
    ]
    fault_tick = next(t for t, k, _p in records if k == "agent.fault")
    original = [r for r in tampered if r[1] != "tick.digest" or r[0] != fault_tick]
    original += [r for r in records if r[1] == "tick.digest" and r[0] == fault_tick]
    result = replay(stub, entries=entries_of(sorted(original, key=lambda r: r[0])))
    assert not result.ok and result.divergent_tick == fault_tick
    assert "journal had agent.fault" in result.detail and "divide by zero" in result.detail
    assert json.loads(records[0][2])["run_id"] == status.run_id


def test_replay_needs_the_modules(
    telemetry,
    orchestrator: OrchestratorFactory,  # type: ignore[no-untyped-def]
    probe_wasm: bytes,
) -> None:
    stub = orchestrator(1, telemetry=telemetry.address)
    _digests, status, _ = faulty_run(stub, probe_wasm)
    fresh = orchestrator(1, telemetry=telemetry.address)
    with pytest.raises(grpc.RpcError) as info:
        replay(fresh, run_id=status.run_id)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "register these modules" in str(info.value.details())
    with pytest.raises(grpc.RpcError) as info:
        replay(fresh, run_id="no-such-run")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def golden_records() -> list[tuple[int, str, bytes]]:
    lines = (GOLDEN / "probe-run.jsonl").read_text().splitlines()
    return [(r["tick"], r["kind"], r["payload"].encode()) for r in map(json.loads, lines)]


def test_golden_journal_replays_and_a_tampered_copy_fails(
    orchestrator: OrchestratorFactory,
) -> None:
    stub = orchestrator(3)
    wasm = (GOLDEN / "probe.wasm").read_bytes()
    stub.RegisterModule(opb.RegisterModuleRequest(wasm=wasm, name="probe"))
    records = golden_records()
    result = replay(stub, entries=entries_of(records))
    assert result.ok and result.tick == 12, result
    # Flip the recorded digest of tick 7: the replay must stop there and say so.
    tampered = []
    for tick, kind, payload in records:
        if kind == "tick.digest" and tick == 7:
            body = json.loads(payload)
            body["digest"] = "00" * 32
            payload = json.dumps(body).encode()
        tampered.append((tick, kind, payload))
    result = replay(stub, entries=entries_of(tampered))
    assert not result.ok and result.divergent_tick == 7


def test_unsent_journal_records_are_spilled_at_shutdown(
    telemetry,
    pools,
    auth: tuple[Path, TokenStore],
    probe_wasm: bytes,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
    from lockstep_orchestrator import OrchestratorConfig, create_server

    config = OrchestratorConfig(
        pools=(pools[0].address,),
        telemetry=telemetry.address,
        data_dir=tmp_path / "data",
        dev_mode=True,
        shutdown_flush_s=0.5,
    )
    bound = create_server("127.0.0.1:0", auth=auth[1], config=config)
    with AuthedChannel(bound.address, auth[1].token(Role.ADMIN)) as ch:
        stub = opb_grpc.OrchestratorServiceStub(ch)
        stub.RegisterModule(opb.RegisterModuleRequest(wasm=probe_wasm, name="probe"))
    telemetry.stop()  # telemetry is gone before the journal could be shipped
    bound.stop(0)
    spilled = list((tmp_path / "data").glob("journal-*-unsent.jsonl"))
    assert len(spilled) == 1
    kinds = [json.loads(line)["kind"] for line in spilled[0].read_text().splitlines()]
    assert kinds == ["run.start", "module.register"]
