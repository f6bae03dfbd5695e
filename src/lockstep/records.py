"""Journal payload fields that the writer (the orchestrator) and its readers (the Python
API, the CLI, the dashboard) must agree on, defined once."""

from __future__ import annotations

__all__ = ["TICK_STATS_COUNTS", "TICK_STATS_FIELDS"]

# The counts of a `tick.stats` record (docs/telemetry.md, "Per-tick statistics"),
# deterministic except wall_ms.
TICK_STATS_COUNTS = (
    "wall_ms",
    "steps",
    "messages",
    "sent",
    "bytes",
    "fuel",
    "faults",
    "undeliverable",
    "restarts",
    "spawned",
    "done",
    "agents",
    "inference_in_flight",
)
# Every field of a `tick.stats` payload, in journal order: the counts, the per-pool step
# times (a list), the tick's start (Unix seconds) and when the step batches were sent.
TICK_STATS_FIELDS = (*TICK_STATS_COUNTS, "pools_ms", "started", "step_at_ms")
