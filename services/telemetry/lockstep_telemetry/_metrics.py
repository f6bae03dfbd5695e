"""Prometheus metrics of one telemetry server (in the server's registry, served by the
shared endpoint of lockstep.server / lockstep.metrics)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

# Append latency buckets (seconds): a batch takes from ~100 us (a few records, no fsync)
# to ~100 ms (10k records with fsync on a slow disk).
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Metrics:
    """The server's metrics, in `registry` (several servers may share a process)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = Counter(
            "lockstep_telemetry_records_appended",
            "Records appended by this process, by kind",
            ["kind"],
            registry=registry,
        )
        self.batches = Counter(
            "lockstep_telemetry_append_batches",
            "AppendRecords calls by outcome (stored, duplicate, rejected, failed)",
            ["outcome"],
            registry=registry,
        )
        self.append_seconds = Histogram(
            "lockstep_telemetry_append_seconds",
            "Server-side latency of AppendRecords (validation, hashing, commit)",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.head_sequence = Gauge(
            "lockstep_telemetry_head_sequence",
            "Sequence number of the chain head",
            registry=registry,
        )
        self.followers = Gauge(
            "lockstep_telemetry_followers", "Open FollowRecords streams", registry=registry
        )

    def count_records(self, kinds: Iterable[tuple[str, int]]) -> None:
        for kind, n in kinds:
            self.records.labels(kind=kind).inc(n)
