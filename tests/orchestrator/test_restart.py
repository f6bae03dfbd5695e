"""Registered modules survive an orchestrator restart (issue 11): a new orchestrator on
the same data dir lists them, restores a checkpoint of the old one without registering
anything, and goes on with the digests of the run that never stopped."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from tests.orchestrator.conftest import OrchestratorFactory
from tests.orchestrator.test_scheduling import MESH, digests, spawn, start

pytestmark = pytest.mark.integration


def test_a_checkpoint_restores_after_a_restart_without_registering_again(
    orchestrator: OrchestratorFactory, probe_wasm: bytes, tmp_path: Path
) -> None:
    first = orchestrator(2, data_dir=tmp_path)
    module_hash = start(first, probe_wasm)
    spawn(first, *MESH)
    first.Step(opb.StepRequest(ticks=4))
    info = first.CreateCheckpoint(opb.CreateCheckpointRequest(label="before"))
    first.Step(opb.StepRequest(ticks=5))
    want = digests(first)

    # What the supervisor does after the orchestrator died: a new one on the same data dir.
    second = orchestrator(2, data_dir=tmp_path)
    listed = second.ListModules(opb.ListModulesRequest()).modules
    assert [(m.name, m.module_hash) for m in listed] == [("probe", module_hash)]
    status = second.RestoreCheckpoint(opb.RestoreCheckpointRequest(id=info.id))
    assert status.tick == 4 and status.digest == info.digest
    second.Step(opb.StepRequest(ticks=5))
    assert digests(second) == want
    modules = tmp_path / "modules"
    assert stat.S_IMODE(modules.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in modules.iterdir()} == {0o600}
    checkpoints = tmp_path / "checkpoints"  # every agent's memory: the owner's only
    assert stat.S_IMODE(checkpoints.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in checkpoints.iterdir()} == {0o600}

    # A module file that no longer verifies is not read back (and nothing else breaks).
    (path,) = modules.glob("*.module")
    path.write_bytes(path.read_bytes()[:-1] + bytes([path.read_bytes()[-1] ^ 1]))
    third = orchestrator(1, data_dir=tmp_path)
    assert not third.ListModules(opb.ListModulesRequest()).modules
    assert third.GetStatus(opb.GetStatusRequest()).tick == 0
