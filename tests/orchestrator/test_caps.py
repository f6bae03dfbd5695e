"""Operator caps over real gRPC (issue 11): each oversized or past request is refused with
its status when it is made, quoting at most a short prefix of what it was given, and the
next valid call on the same orchestrator still works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from lockstep.errors import QUOTE_CHARS
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from tests.orchestrator.conftest import OrchestratorFactory
from tests.orchestrator.test_scheduling import spawn, start

pytestmark = pytest.mark.integration

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def refused(call: Callable[[], Any], code: grpc.StatusCode, *words: str) -> str:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if hasattr(result, "__next__"):  # a server stream fails on its first read
            list(result)
    assert info.value.code() == code, info.value.details()
    details = str(info.value.details())
    for word in words:
        assert word in details, details
    return details


def still_serving(stub: Any, ticks: int = 1) -> None:
    before = stub.GetStatus(opb.GetStatusRequest()).tick
    assert stub.Step(opb.StepRequest(ticks=ticks)).tick == before + ticks


@pytest.fixture
def stub(orchestrator: OrchestratorFactory, probe_wasm: bytes, tmp_path: Path) -> Any:
    s = orchestrator(
        1,
        max_fuel_per_step=5_000_000,
        max_agents_per_run=3,
        max_inference_latency=10,
        data_dir=tmp_path,
    )
    start(s, probe_wasm)
    spawn(s, ("a", "to=b"), limits={"fuel_per_step": 1_000_000})
    still_serving(s)
    return s


def test_fuel_per_step_above_the_operator_cap(stub: Any) -> None:
    refused(
        lambda: spawn(stub, ("hog", ""), limits={"fuel_per_step": 10**12}),
        INVALID,
        "fuel_per_step 1000000000000",
        "cap of 5000000",
        "--max-fuel-per-step",
    )
    config = opb.RunConfig(seed=1, default_limits={"fuel_per_step": 10**12})
    refused(
        lambda: stub.StartRun(opb.StartRunRequest(config=config)),
        INVALID,
        "default fuel_per_step",
        "cap of 5000000",
    )
    # The default limits (10M fuel) are themselves above this cap: a spawn says so.
    refused(lambda: spawn(stub, ("default", "")), INVALID, "fuel_per_step 10000000")
    spawn(stub, ("b", ""), limits={"fuel_per_step": 5_000_000})
    still_serving(stub)
    assert stub.GetAgent(opb.GetAgentRequest(name="b")).steps == 1


def test_total_agents_per_run(stub: Any) -> None:
    limits = {"fuel_per_step": 1_000_000}
    refused(
        lambda: spawn(stub, ("b", ""), ("c", ""), ("d", ""), limits=limits),
        EXHAUSTED,
        "at most 3 agents",
        "would make 4",
    )
    spawn(stub, ("b", ""), ("c", ""), limits=limits)
    still_serving(stub)
    refused(lambda: spawn(stub, ("e", ""), limits=limits), EXHAUSTED, "at most 3 agents")
    assert stub.GetStatus(opb.GetStatusRequest()).agents_by_state["running"] == 3


def test_label_and_name_sizes_quote_a_short_prefix(stub: Any) -> None:
    huge = "x" * 10_000
    for call in (
        lambda: stub.StartRun(opb.StartRunRequest(config=opb.RunConfig(label=huge))),
        lambda: stub.CreateCheckpoint(opb.CreateCheckpointRequest(label=huge)),
        lambda: spawn(stub, (huge, "")),
        lambda: spawn(stub, ("t", ""), topics=[huge]),
        lambda: stub.GetAgent(opb.GetAgentRequest(name=huge)),
        lambda: stub.PauseAgents(opb.AgentSelector(names=[huge])),
        lambda: stub.SpawnAgents(
            opb.SpawnAgentsRequest(agents=[opb.AgentSpawn(name="m", module=huge)])
        ),
        lambda: stub.RestoreCheckpoint(opb.RestoreCheckpointRequest(id=huge)),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        details = str(info.value.details())
        assert info.value.code() in (
            INVALID,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION,
        ), details
        assert "x" * QUOTE_CHARS in details, details
        assert "x" * (QUOTE_CHARS + 1) not in details and len(details) < 300, details
    refused(
        lambda: stub.StartRun(opb.StartRunRequest(config=opb.RunConfig(label="y" * 257))),
        INVALID,
        "longer than 256 bytes",
    )
    still_serving(stub)
    assert stub.GetStatus(opb.GetStatusRequest()).config.label == ""


def test_inference_latency_above_the_cap(stub: Any) -> None:
    config = opb.RunConfig(seed=1, inference_latency=11)
    refused(
        lambda: stub.StartRun(opb.StartRunRequest(config=config)),
        INVALID,
        "inference_latency 11",
        "cap of 10 ticks",
    )
    still_serving(stub)
    ok = stub.StartRun(opb.StartRunRequest(config=opb.RunConfig(seed=1, inference_latency=10)))
    assert ok.config.inference_latency == 10


def test_tick_arguments_in_the_past(stub: Any) -> None:
    stub.Step(opb.StepRequest(ticks=4))  # the run is at tick 5
    refused(
        lambda: stub.RunUntil(opb.RunUntilRequest(until_tick=-5)),
        INVALID,
        "until_tick must be positive",
    )
    refused(
        lambda: stub.RunUntil(opb.RunUntilRequest(until_tick=3)),
        INVALID,
        "until_tick 3 has already passed",
        "at tick 5",
    )
    refused(
        lambda: stub.RunUntil(opb.RunUntilRequest(until_tick=2, until_idle=True)),
        INVALID,
        "already passed",
    )
    refused(lambda: stub.Step(opb.StepRequest(ticks=0)), INVALID, "ticks must be in")
    *_, last = stub.RunUntil(opb.RunUntilRequest(until_tick=5))  # now: nothing to do
    assert last.done and last.status.tick == 5
    *_, last = stub.RunUntil(opb.RunUntilRequest(until_tick=7))
    assert last.done and last.status.tick == 7


def test_a_scenario_of_too_many_agents_is_refused_before_it_is_expanded() -> None:
    from lockstep.errors import ConfigError
    from lockstep.scenario import MAX_SCENARIO_AGENTS, scenario_from_dict

    group = {"module": "m", "name": "a{i}", "count": 1_000_000}
    tables = {
        "modules": {"m": {"wasm": "m.wasm"}},
        "agents": [{**group, "name": f"g{j}-{{i}}"} for j in range(1000)],
    }
    with pytest.raises(
        ConfigError,
        match=f"1000000000 agents in all; a scenario holds at most {MAX_SCENARIO_AGENTS}",
    ):
        scenario_from_dict(tables)
    spawned = {"tick": 3, "spawn": [{**group, "name": "late{i}", "count": 1}]}
    with pytest.raises(ConfigError, match="1000001 agents in all"):
        scenario_from_dict({**tables, "agents": [group], "actions": [spawned]})
    assert len(scenario_from_dict({**tables, "agents": [group]}).agents) == 1


def test_a_negative_tick_channel_poll_is_refused_at_start_up() -> None:
    from lockstep.config import from_sources
    from lockstep.errors import ConfigError
    from lockstep_orchestrator import OrchestratorConfig

    env = {"LOCKSTEP_POOL_ADDRESSES": "127.0.0.1:1", "LOCKSTEP_TICK_CHANNEL_POLL_US": "-1"}
    with pytest.raises(ConfigError, match="tick_channel_poll_us must be >= 0"):
        from_sources(OrchestratorConfig, None, env)
    env["LOCKSTEP_TICK_CHANNEL_POLL_US"] = "0"
    assert from_sources(OrchestratorConfig, None, env).tick_channel_poll_us == 0
