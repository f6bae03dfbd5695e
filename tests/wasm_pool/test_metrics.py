"""The pool's metrics count steps and faults by kind from the results buffers it sends,
read in place (lockstep_wasm_pool/_metrics.py)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from lockstep import batch as wire
from lockstep_wasm_pool._metrics import PoolMetrics

pytestmark = pytest.mark.unit


def test_steps_and_faults_by_kind_are_counted_from_a_results_buffer() -> None:
    registry = CollectorRegistry()
    metrics = PoolMetrics(registry, lambda: 3)
    results = [
        wire.Result(1, fuel=10),
        wire.Result(2, fault=wire.Fault(1, "unreachable", "agent_step")),  # trap
        wire.Result(3, fault=wire.Fault(2, "out of fuel", "agent_step")),  # fuel
        wire.Result(4, fault=wire.Fault(1, "again", "agent_receive")),  # trap
    ]
    buf = wire.pack_results(results)
    assert metrics.timed("StepBatch", "step", lambda: memoryview(buf)).tobytes() == buf
    metrics.timed("StepBatch", "step", lambda: wire.pack_results([]))  # nothing to count

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("lockstep_pool_agent_calls_total", phase="step") == 4
    assert value("lockstep_pool_faults_total", kind="trap") == 2
    assert value("lockstep_pool_faults_total", kind="fuel_exhausted") == 1
    assert value("lockstep_pool_faults_total", kind="memory_limit") == 0
    assert value("lockstep_pool_batch_duration_seconds_count", method="StepBatch") == 2
    assert value("lockstep_pool_instances") == 3
