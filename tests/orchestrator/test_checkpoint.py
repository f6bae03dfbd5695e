"""Checkpoints: a run restored from tick t and continued has the digests of one that never
stopped, whatever the number of pools it is restored into."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from tests.orchestrator.conftest import OrchestratorFactory
from tests.orchestrator.test_scheduling import MESH, digests, spawn, start

pytestmark = pytest.mark.integration


def test_restore_and_continue_gives_the_same_digests(
    orchestrator: OrchestratorFactory, probe_wasm: bytes, tmp_path: Path
) -> None:
    stub = orchestrator(2, data_dir=tmp_path / "data")
    start(stub, probe_wasm)
    spawn(
        stub,
        *MESH,
        ("crasher", "to=a0 trap_at=9"),
        restart=opb.RestartPolicy(max_restarts=1, backoff_ticks=3),
    )
    stub.Step(opb.StepRequest(ticks=6))
    stub.PauseAgents(opb.AgentSelector(names=["a3"]))  # pending at the checkpoint
    info = stub.CreateCheckpoint(opb.CreateCheckpointRequest(label="mid"))
    assert info.tick == 6 and info.size > 0
    stub.Step(opb.StepRequest(ticks=10))
    reference = digests(stub)
    faults = stub.GetStatus(opb.GetStatusRequest()).counters.faults
    assert faults == 1

    for pools in (2, 3, 1):
        other = orchestrator(pools, data_dir=tmp_path / "data")
        other.RegisterModule(opb.RegisterModuleRequest(wasm=probe_wasm, name="probe"))
        status = other.RestoreCheckpoint(opb.RestoreCheckpointRequest(id=info.id))
        assert status.tick == 6 and status.digest == info.digest
        other.Step(opb.StepRequest(ticks=10))
        assert digests(other) == reference
        assert (
            other.GetAgent(opb.GetAgentRequest(name="a3")).steps
            < other.GetAgent(opb.GetAgentRequest(name="a2")).steps
        )


def test_checkpoint_errors(
    orchestrator: OrchestratorFactory, probe_wasm: bytes, tmp_path: Path
) -> None:
    no_dir = orchestrator(1)
    start(no_dir, probe_wasm)
    with pytest.raises(grpc.RpcError) as info:
        no_dir.CreateCheckpoint(opb.CreateCheckpointRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stub = orchestrator(1, data_dir=tmp_path / "data")
    for bad, code in (
        ("nope", grpc.StatusCode.NOT_FOUND),
        ("../x", grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(grpc.RpcError) as info:
            stub.RestoreCheckpoint(opb.RestoreCheckpointRequest(id=bad))
        assert info.value.code() == code
    start(stub, probe_wasm)
    spawn(stub, ("x", ""))
    stub.Step(opb.StepRequest(ticks=1))
    saved = stub.CreateCheckpoint(opb.CreateCheckpointRequest())
    # Registered modules survive a restart (test_restart.py); a checkpoint copied without
    # them into another data dir needs them registered first.
    shutil.copytree(tmp_path / "data" / "checkpoints", tmp_path / "other" / "checkpoints")
    fresh = orchestrator(1, data_dir=tmp_path / "other")
    with pytest.raises(grpc.RpcError) as info:
        fresh.RestoreCheckpoint(opb.RestoreCheckpointRequest(id=saved.id))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "register these modules" in str(info.value.details())
