"""A run's tick timeline as Chrome trace JSON (the Trace Event Format that Perfetto and
chrome://tracing open), built from its `tick.stats` records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["chrome_trace"]

_COUNTERS = ("steps", "messages", "sent", "fuel", "faults", "undeliverable", "agents")


def chrome_trace(
    stats: Sequence[dict[str, Any]], run_id: str = "", pools: Sequence[str] = ()
) -> dict[str, Any]:
    """The trace of `stats` (rows of `tick_stats_rows`, in tick order): one complete event
    per tick on the orchestrator's track, one per pool step batch on that pool's track (sent
    at `step_at_ms` into the tick, lasting `pools_ms`), and counter tracks for steps,
    messages, sends, fuel, faults, undeliverable sends and live agents. Timestamps are
    microseconds from the first tick's start (wall clock of the run that wrote them)."""
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": 1,
            "args": {"name": f"lockstep run {run_id}".strip()},
        },
        {"name": "thread_name", "ph": "M", "pid": 1, "tid": 0, "args": {"name": "ticks"}},
    ]
    npools = max((len(r.get("pools_ms") or ()) for r in stats), default=0)
    for p in range(npools):
        label = pools[p] if p < len(pools) else f"pool {p}"
        events.append(
            {"name": "thread_name", "ph": "M", "pid": 1, "tid": p + 1, "args": {"name": label}}
        )
    starts = [float(r["started"]) for r in stats if r.get("started")]
    origin = min(starts) if starts else 0.0
    clock = 0.0  # ticks without a start time (older records) are laid end to end
    for r in stats:
        tick = int(r["tick"])
        dur = float(r.get("wall_ms") or 0.0) * 1e3
        ts = (float(r["started"]) - origin) * 1e6 if r.get("started") else clock
        clock = ts + dur
        args = {k: r[k] for k in _COUNTERS if k in r}
        events.append(
            {
                "name": f"tick {tick}",
                "cat": "tick",
                "ph": "X",
                "pid": 1,
                "tid": 0,
                "ts": round(ts, 3),
                "dur": round(dur, 3),
                "args": {"tick": tick, **args},
            }
        )
        step_at = float(r.get("step_at_ms") or 0.0) * 1e3
        for p, ms in enumerate(r.get("pools_ms") or ()):
            if ms:
                events.append(
                    {
                        "name": "step batch",
                        "cat": "pool",
                        "ph": "X",
                        "pid": 1,
                        "tid": p + 1,
                        "ts": round(ts + step_at, 3),
                        "dur": round(float(ms) * 1e3, 3),
                        "args": {"tick": tick},
                    }
                )
        for key, value in args.items():
            events.append(
                {"name": key, "ph": "C", "pid": 1, "ts": round(ts, 3), "args": {key: value}}
            )
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": {"run_id": run_id, "ticks": len(stats)},
    }
