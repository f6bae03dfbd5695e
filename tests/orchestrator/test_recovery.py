"""A pool process that dies mid-run is rebuilt by replay; the digests equal a fault-free
run's (docs/adr/011-fault-injection-and-stress-testing.md)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import grpc
import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep_orchestrator import OrchestratorConfig, create_server
from tests.orchestrator.conftest import OrchestratorFactory
from tests.orchestrator.test_scheduling import MESH, digests, spawn, start

pytestmark = pytest.mark.integration


def scenario(stub, probe_wasm: bytes, ticks: int) -> None:  # type: ignore[no-untyped-def]
    start(stub, probe_wasm)
    spawn(
        stub,
        *MESH,
        ("crasher", "to=a1 trap_at=5"),
        restart=opb.RestartPolicy(max_restarts=1, backoff_ticks=2),
    )
    stub.Step(opb.StepRequest(ticks=ticks))


def test_a_killed_pool_is_rebuilt_and_the_run_goes_on(
    orchestrator: OrchestratorFactory,
    probe_wasm: bytes,
    auth: tuple[Path, TokenStore],
    service_factory,
) -> None:  # type: ignore[no-untyped-def]
    reference = orchestrator(2)
    scenario(reference, probe_wasm, 8)
    reference.PauseAgents(opb.AgentSelector(names=["a2"]))
    reference.Step(opb.StepRequest(ticks=8))
    expected = digests(reference)

    pools = [service_factory("lockstep_wasm_pool", auth[0]) for _ in range(2)]
    config = OrchestratorConfig(
        pools=tuple(p.address for p in pools), dev_mode=True, pool_recovery_s=30
    )
    with (
        create_server("127.0.0.1:0", auth=auth[1], config=config) as bound,
        AuthedChannel(bound.address, auth[1].token(Role.ADMIN)) as channel,
    ):
        stub = opb_grpc.OrchestratorServiceStub(channel)
        scenario(stub, probe_wasm, 8)
        stub.PauseAgents(opb.AgentSelector(names=["a2"]))  # queued for the failing tick
        os.kill(pools[1].pid, signal.SIGKILL)
        pools[1].stop()
        # What the supervisor does: start the pool again on the same address.
        service_factory("lockstep_wasm_pool", auth[0], address=pools[1].address)
        status = stub.Step(opb.StepRequest(ticks=8))
        assert status.tick == 16
        assert digests(stub) == expected
        assert stub.GetAgent(opb.GetAgentRequest(name="crasher")).restarts == 1


def test_without_recovery_the_tick_fails_clearly(
    probe_wasm: bytes, auth: tuple[Path, TokenStore], service_factory
) -> None:  # type: ignore[no-untyped-def]
    pool = service_factory("lockstep_wasm_pool", auth[0])
    config = OrchestratorConfig(pools=(pool.address,), dev_mode=True, pool_recovery_s=0)
    with (
        create_server("127.0.0.1:0", auth=auth[1], config=config) as bound,
        AuthedChannel(bound.address, auth[1].token(Role.ADMIN)) as channel,
    ):
        stub = opb_grpc.OrchestratorServiceStub(channel)
        scenario(stub, probe_wasm, 2)
        pool.stop()
        with pytest.raises(grpc.RpcError) as info:
            stub.Step(opb.StepRequest(ticks=1))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "StepBatch failed" in str(info.value.details())
