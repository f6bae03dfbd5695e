"""The orchestrator's Prometheus metrics folded from committed ticks (OrchestratorMetrics),
read back from a real registry: per-pool step times, agents by state, the counters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._events import TickStats
from lockstep_orchestrator._metrics import OrchestratorMetrics

pytestmark = pytest.mark.unit


def test_ticks_fold_into_the_registry() -> None:
    registry = CollectorRegistry()
    metrics = OrchestratorMetrics(registry)
    states = np.array([opb.AGENT_STATE_RUNNING] * 3 + [opb.AGENT_STATE_IDLE], dtype=np.int8)
    for tick, pools_ms in ((1, (0.25, 0.0)), (2, (0.5, 1.5))):
        stats = TickStats(wall_ms=2.0, steps=4, messages=3, pools_ms=pools_ms)
        kernel = SimpleNamespace(
            last_stats=stats, tick=tick, world=SimpleNamespace(n=4, state=states)
        )
        metrics.on_tick(kernel)  # type: ignore[arg-type]
    value = registry.get_sample_value
    assert value("lockstep_orchestrator_ticks_total") == 2
    assert value("lockstep_orchestrator_tick", {}) == 2
    assert value("lockstep_orchestrator_pool_step_seconds_count", {"pool": "0"}) == 2
    assert value("lockstep_orchestrator_pool_step_seconds_count", {"pool": "1"}) == 1
    assert value("lockstep_orchestrator_pool_step_seconds_sum", {"pool": "1"}) == 1.5e-3
    assert value("lockstep_orchestrator_agents", {"state": "running"}) == 3
    assert value("lockstep_orchestrator_agents", {"state": "idle"}) == 1
    assert value("lockstep_orchestrator_agents", {"state": "faulted"}) == 0
    assert value("lockstep_orchestrator_agents", {"state": "unspecified"}) is None
    assert value("lockstep_orchestrator_agent_steps_total") == 8
