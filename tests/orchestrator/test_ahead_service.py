"""Ticks started ahead through the service, over real pool processes: a `RunUntil` whose
client goes away finishes the tick it started ahead, and the run goes on with the digests
of an undisturbed one (docs/architecture.md, "Ticks in flight")."""

from __future__ import annotations

import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from tests.orchestrator.conftest import OrchestratorFactory
from tests.orchestrator.test_scheduling import MESH, digests, spawn, start

pytestmark = pytest.mark.integration


def test_a_run_until_whose_client_goes_away_leaves_no_tick_in_flight(
    orchestrator: OrchestratorFactory, probe_wasm: bytes
) -> None:
    stub = orchestrator(2, ticks_ahead="on")
    start(stub, probe_wasm)
    spawn(stub, *MESH)
    stream = stub.RunUntil(opb.RunUntilRequest(until_tick=100_000, progress_every=1))
    seen = [next(stream).status.tick for _ in range(5)]
    stream.cancel()  # the loop notices at its next tick boundary, then settles
    # Racing the loop's end (a tick computing, one started ahead, or none): the pause
    # takes effect where the answer says.
    effective = stub.PauseAgents(opb.AgentSelector(names=["a2"])).effective_tick
    assert effective > seen[-1]
    # Step waits for the tick lock, so for the loop to end.
    now = stub.Step(opb.StepRequest(ticks=1)).tick
    last = max(now, effective) + 2
    stub.Step(opb.StepRequest(ticks=last - now))
    got = digests(stub)
    reference = orchestrator(1, ticks_ahead="off")
    start(reference, probe_wasm)
    spawn(reference, *MESH)
    reference.Step(opb.StepRequest(ticks=effective - 1))
    assert reference.PauseAgents(opb.AgentSelector(names=["a2"])).effective_tick == effective
    reference.Step(opb.StepRequest(ticks=last - effective + 1))
    assert got == digests(reference) and len(got) == last
