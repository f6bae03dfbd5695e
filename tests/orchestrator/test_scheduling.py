"""The determinism contract end to end: real pools, real wasm agents, real gRPC."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from tests.orchestrator.conftest import OrchestratorFactory

pytestmark = pytest.mark.integration
S = opb.AgentState


def start(stub, probe_wasm: bytes, seed: int = 7, **config: Any):  # type: ignore[no-untyped-def]
    stub.StartRun(opb.StartRunRequest(config=opb.RunConfig(seed=seed, **config)))
    return stub.RegisterModule(
        opb.RegisterModuleRequest(wasm=probe_wasm, name="probe")
    ).module.module_hash


def spawn(stub, *agents: tuple[str, str], priority: int = 0, **kw) -> None:  # type: ignore[no-untyped-def]
    stub.SpawnAgents(
        opb.SpawnAgentsRequest(
            agents=[
                opb.AgentSpawn(
                    name=name, module="probe", args=args.encode(), priority=priority, **kw
                )
                for name, args in agents
            ]
        )
    )


def digests(stub) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [d.digest for d in stub.GetDigests(opb.GetDigestsRequest()).digests]


MESH = [
    (f"a{i}", f"to=a{(i + 1) % 6} topic=news sub=news echo=1" + (" bcast=1" if i == 0 else ""))
    for i in range(6)
]


def run_mesh(stub, probe_wasm: bytes, order: list[int], separate_calls: bool) -> list[bytes]:  # type: ignore[no-untyped-def]
    start(stub, probe_wasm)
    agents = [MESH[i] for i in order]
    if separate_calls:
        for agent in agents:
            spawn(stub, agent)
    else:
        spawn(stub, *agents)
    stub.Step(opb.StepRequest(ticks=3))
    spawn(stub, ("late", "to=a0 echo=1"))
    status = stub.Step(opb.StepRequest(ticks=12))
    assert status.counters.messages > 100
    return digests(stub)


def test_digests_do_not_depend_on_pool_count_or_spawn_call_order(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    reference = run_mesh(orchestrator(1), probe_wasm, list(range(6)), separate_calls=False)
    assert len(reference) == 15 and len(set(reference)) == 15
    assert run_mesh(orchestrator(2), probe_wasm, [5, 3, 1, 0, 2, 4], True) == reference
    assert run_mesh(orchestrator(3), probe_wasm, [2, 0, 1, 5, 4, 3], True) == reference
    # A different seed changes the random streams and therefore the digests.
    stub = orchestrator(1)
    start(stub, probe_wasm, seed=8)
    spawn(stub, *MESH)
    stub.Step(opb.StepRequest(ticks=3))
    assert digests(stub) != reference[:3]


def faulty_run(
    stub, probe_wasm: bytes
) -> tuple[list[bytes], opb.RunStatus, dict[str, opb.AgentInfo]]:  # type: ignore[no-untyped-def]
    start(stub, probe_wasm)
    spawn(
        stub,
        ("talker", "to=ghost"),
        ("victim", "to=talker trap_at=4"),
        ("sleeper", "to=talker"),
        restart=opb.RestartPolicy(max_restarts=2, backoff_ticks=2),
    )
    stub.Step(opb.StepRequest(ticks=5))
    stub.PauseAgents(opb.AgentSelector(names=["sleeper"]))
    stub.Step(opb.StepRequest(ticks=3))
    stub.ResumeAgents(opb.AgentSelector(names=["sleeper"]))
    stub.SendMessages(
        opb.SendMessagesRequest(messages=[opb.ExternalMessage(to="sleeper", payload=b"wake up")])
    )
    status = stub.Step(opb.StepRequest(ticks=4))
    infos = {a.name: a for a in stub.ListAgents(opb.ListAgentsRequest()).agents}
    return digests(stub), status, infos


def test_faults_unknown_destinations_pause_and_resume_are_reproducible(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    first, status, infos = faulty_run(orchestrator(2), probe_wasm)
    assert status.counters.faults == 1
    assert status.counters.restarts == 1
    assert status.counters.undeliverable >= 12  # talker -> ghost, every tick
    assert infos["victim"].restarts == 1
    assert infos["victim"].last_fault.kind != 0
    assert "unreachable" in infos["victim"].last_fault.detail.lower()
    assert infos["sleeper"].state == S.AGENT_STATE_RUNNING
    assert infos["sleeper"].steps == 12 - 3  # paused for ticks 6..8
    second, _status, _infos = faulty_run(orchestrator(3), probe_wasm)
    assert first == second


def test_max_steps_per_tick_keeps_fifo_order(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    stub = orchestrator(1)
    start(stub, probe_wasm, max_steps_per_tick=2)
    spawn(stub, *[(f"p{i}", "") for i in range(5)])
    stub.Step(opb.StepRequest(ticks=1))
    steps = {a.name: a.steps for a in stub.ListAgents(opb.ListAgentsRequest()).agents}
    assert steps == {"p0": 1, "p1": 1, "p2": 0, "p3": 0, "p4": 0}
    stub.Step(opb.StepRequest(ticks=1))
    steps = {a.name: a.steps for a in stub.ListAgents(opb.ListAgentsRequest()).agents}
    assert steps == {"p0": 1, "p1": 1, "p2": 1, "p3": 1, "p4": 0}  # waiting agents first


def test_priority_idle_done_and_terminate(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    stub = orchestrator(1)
    start(stub, probe_wasm, max_steps_per_tick=1)
    spawn(stub, ("low", ""))
    spawn(stub, ("high", "idle=1"), priority=5)
    stub.Step(opb.StepRequest(ticks=3))
    infos = {a.name: a for a in stub.ListAgents(opb.ListAgentsRequest()).agents}
    assert infos["high"].steps == 1 and infos["high"].state == S.AGENT_STATE_IDLE
    assert infos["low"].steps == 2
    stub.SendMessages(
        opb.SendMessagesRequest(messages=[opb.ExternalMessage(to="high", payload=b"x")])
    )
    stub.Step(opb.StepRequest(ticks=1))
    assert stub.GetAgent(opb.GetAgentRequest(name="high")).steps == 2
    spawn(stub, ("quitter", "done_at=6"))
    stub.TerminateAgents(opb.AgentSelector(names=["low"]))
    status = stub.Step(opb.StepRequest(ticks=3))
    assert stub.GetAgent(opb.GetAgentRequest(name="low")).state == S.AGENT_STATE_TERMINATED
    assert stub.GetAgent(opb.GetAgentRequest(name="quitter")).state == S.AGENT_STATE_TERMINATED
    assert status.agents_by_state["terminated"] == 2


def test_bad_requests_get_precise_statuses(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    stub = orchestrator(1)
    start(stub, probe_wasm)

    def code(fn, req) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.RpcError) as info:
            fn(req)
        return info.value.code(), info.value.details() or ""

    assert (
        code(
            stub.SpawnAgents,
            opb.SpawnAgentsRequest(agents=[opb.AgentSpawn(name="x", module="nope")]),
        )[0]
        == grpc.StatusCode.NOT_FOUND
    )
    c, d = code(
        stub.SpawnAgents,
        opb.SpawnAgentsRequest(agents=[opb.AgentSpawn(name="bad name!", module="probe")]),
    )
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "bad agent name" in d
    spawn(stub, ("dup", ""))
    c, d = code(
        stub.SpawnAgents,
        opb.SpawnAgentsRequest(agents=[opb.AgentSpawn(name="dup", module="probe")]),
    )
    assert c == grpc.StatusCode.ALREADY_EXISTS and "already exists" in d
    assert (
        code(stub.PauseAgents, opb.AgentSelector(names=["ghost"]))[0] == grpc.StatusCode.NOT_FOUND
    )
    assert code(stub.Step, opb.StepRequest(ticks=0))[0] == grpc.StatusCode.INVALID_ARGUMENT
    c, d = code(stub.RegisterModule, opb.RegisterModuleRequest(wasm=b"\0asm junk", name="j"))
    assert c == grpc.StatusCode.INVALID_ARGUMENT
    c, d = code(lambda r: list(stub.RunUntil(r)), opb.RunUntilRequest(until_idle=True))
    assert c == grpc.StatusCode.INVALID_ARGUMENT and "safety bound" in d


def test_run_until_idle_streams_progress(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    stub = orchestrator(1)
    start(stub, probe_wasm)
    spawn(stub, ("a", "idle=1 to=b"), ("b", "idle=1"))
    updates = list(stub.RunUntil(opb.RunUntilRequest(until_idle=True, max_ticks=50)))
    assert updates[-1].done and updates[-1].reason == "idle"
    assert updates[-1].status.tick == 2  # a sends at 1, b wakes at 2, then all idle
    assert [u.status.tick for u in updates[:-1]] == [1, 2]
