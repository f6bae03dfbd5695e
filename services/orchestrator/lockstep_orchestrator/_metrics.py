"""The orchestrator's metrics: Prometheus (scraped from `--metrics-address`) and the same
figures as OpenTelemetry instruments (exported over OTLP when lockstep.otel is on; no-ops
otherwise). Updated once per committed tick from the tick's `tick.stats`."""

from __future__ import annotations

import numpy as np
from opentelemetry import metrics as otel_metrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lockstep.metrics import LATENCY_BUCKETS, Children
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._kernel import Kernel

__all__ = ["OrchestratorMetrics"]

_STATES = [
    opb.AgentState.Name(v).removeprefix("AGENT_STATE_").lower() for v in opb.AgentState.values()
]
# tick.stats field -> (counter name, help)
_COUNTED = {
    "steps": ("lockstep_orchestrator_agent_steps", "Agent steps executed"),
    "messages": ("lockstep_orchestrator_messages_delivered", "Messages delivered to agents"),
    "sent": ("lockstep_orchestrator_messages_sent", "Sends made by agents"),
    "bytes": ("lockstep_orchestrator_message_payload_bytes", "Payload bytes of agents' sends"),
    "fuel": ("lockstep_orchestrator_fuel_used", "Fuel used by agents"),
    "faults": ("lockstep_orchestrator_agent_faults", "Agent faults"),
    "undeliverable": ("lockstep_orchestrator_undeliverable", "Sends that reached nobody"),
    "restarts": ("lockstep_orchestrator_agent_restarts", "Agent restarts"),
    "spawned": ("lockstep_orchestrator_agents_spawned", "Agents spawned"),
}


class OrchestratorMetrics:
    """Counters over every run this process executed; gauges of the current run."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ticks = Counter("lockstep_orchestrator_ticks", "Ticks committed", registry=registry)
        self.tick_seconds = Histogram(
            "lockstep_orchestrator_tick_duration_seconds",
            "Wall time of a committed tick",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.pool_step_seconds = Histogram(
            "lockstep_orchestrator_pool_step_seconds",
            "Round trip of one pool's step batch, by pool index",
            ["pool"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.counted = {
            k: Counter(name, doc, registry=registry) for k, (name, doc) in _COUNTED.items()
        }
        self.tick = Gauge(
            "lockstep_orchestrator_tick",
            "Last committed tick of the current run",
            registry=registry,
        )
        self.agents = Gauge(
            "lockstep_orchestrator_agents",
            "Agents of the current run by state",
            ["state"],
            registry=registry,
        )
        self.inference_in_flight = Gauge(
            "lockstep_orchestrator_inference_in_flight",
            "Agent inference requests sent and not yet delivered",
            registry=registry,
        )
        by_state = Children(self.agents, "state")
        self._by_state = [(i, by_state[s]) for i, s in enumerate(_STATES) if s != "unspecified"]
        self._pool_seconds = Children(self.pool_step_seconds, "pool")
        meter = otel_metrics.get_meter("lockstep.orchestrator")
        self.o_ticks = meter.create_counter(
            "lockstep.orchestrator.ticks", unit="{tick}", description="Ticks committed"
        )
        self.o_tick_seconds = meter.create_histogram(
            "lockstep.orchestrator.tick.duration",
            unit="s",
            description="Wall time of a committed tick",
        )
        self.o_counted = {
            k: meter.create_counter(f"lockstep.orchestrator.{k}", description=doc)
            for k, (_name, doc) in _COUNTED.items()
        }

    def on_tick(self, kernel: Kernel) -> None:
        """Fold one committed tick in (called by the run manager after each commit)."""
        st = kernel.last_stats
        if st is None:
            return
        seconds = st.wall_ms / 1e3
        self.ticks.inc()
        self.tick_seconds.observe(seconds)
        self.o_ticks.add(1)
        self.o_tick_seconds.record(seconds)
        for key, counter in self.counted.items():
            value = getattr(st, key)
            if value:
                counter.inc(value)
                self.o_counted[key].add(value)
        for p, ms in enumerate(st.pools_ms):
            if ms:
                self._pool_seconds[str(p)].observe(ms / 1e3)
        self.tick.set(kernel.tick)
        self.inference_in_flight.set(st.inference_in_flight)
        self.set_agents(kernel)

    def set_agents(self, kernel: Kernel) -> None:
        w = kernel.world
        counts = (
            np.bincount(w.state.astype(np.int64), minlength=len(_STATES))
            if w.n
            else np.zeros(len(_STATES), dtype=np.int64)
        )
        by_state = counts.tolist()
        for i, gauge in self._by_state:
            gauge.set(by_state[i] if i < len(by_state) else 0)
