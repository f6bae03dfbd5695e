"""The pool's Prometheus metrics: instances, steps, faults (traps) by kind and batch time,
counted from the results the pool sends back (never from inside the stepping loop)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lockstep.batch import result_faults
from lockstep.metrics import LATENCY_BUCKETS, Children
from lockstep.pb.common.v1 import common_pb2 as cpb

__all__ = ["PoolMetrics"]

T = TypeVar("T")
_KINDS = {
    v: cpb.FaultKind.Name(v).removeprefix("FAULT_KIND_").lower()
    for v in cpb.FaultKind.values()
    if v
}


class PoolMetrics:
    """Counters of one pool server; `instances` reads the engine when scraped."""

    def __init__(self, registry: CollectorRegistry, agents: Callable[[], int]) -> None:
        self.instances = Gauge("lockstep_pool_instances", "Live agent instances", registry=registry)
        self.instances.set_function(lambda: float(agents()))
        self.calls = Counter(
            "lockstep_pool_agent_calls",
            "Agent entry-point calls by phase (init, step, shutdown)",
            ["phase"],
            registry=registry,
        )
        self.faults = Counter(
            "lockstep_pool_faults",
            "Agent faults (traps, fuel exhausted, memory limit...) by kind",
            ["kind"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "lockstep_pool_batch_duration_seconds",
            "Server-side time of one create, step or destroy batch",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for kind in _KINDS.values():
            self.faults.labels(kind=kind)  # every kind shows, at 0 until it happens
        self._seconds = Children(self.batch_seconds, "method")
        self._calls = Children(self.calls, "phase")

    def timed(self, method: str, phase: str, fn: Callable[[], T]) -> T:
        """Run one batch call, then count its rows and faults from what it returns."""
        started = time.perf_counter()
        out = fn()
        self._seconds[method].observe(time.perf_counter() - started)
        self._count(phase, out)
        return out

    def _count(self, phase: str, response: Any) -> None:
        packed = (
            response
            if isinstance(response, bytes | bytearray | memoryview)
            else getattr(response, "batch", b"")
        )
        if packed:
            # Read in place: a full parse here (a copy and the tiling check) cost ~24 us a
            # batch at 100 agents, before the reply; the orchestrator checks every buffer.
            kinds = result_faults(packed)
            n = len(kinds)
            by_kind = {}
            if np.count_nonzero(kinds):
                found = np.bincount(kinds[kinds != 0].astype(np.int64))
                by_kind = {k: int(c) for k, c in enumerate(found.tolist()) if c}
        else:
            results = list(getattr(response, "results", ()))
            n = len(results)
            by_kind = {}
            for r in results:
                if r.fault.kind:
                    by_kind[r.fault.kind] = by_kind.get(r.fault.kind, 0) + 1
        if n:
            self._calls[phase].inc(n)
        for kind, count in by_kind.items():
            self.faults.labels(kind=_KINDS.get(kind, str(kind))).inc(count)
