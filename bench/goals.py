"""The goals each `lockstep bench` run is checked against, and by how much a figure misses.

One table for the whole suite: the performance goals of ADR-006 as the kernel, native pool
and shared-memory issues restated them, and the service overhead goals of the inference,
LLM and telemetry benchmarks. The table printed by `lockstep bench` (and `--render`, old
result files included) gets a "vs goal" column from it: "met", or how many times better
the figure has to get ("1.2x short"). A metric's own `goal` text stays what its module
wrote; where the two differ, this table is the one checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["GOALS", "Goal", "shortfalls", "verdict"]


@dataclass(frozen=True)
class Goal:
    """`of` (the metric's "median" or its "ratio" to the baseline) `op` (">=" or "<=")
    `value`; `label` names whose goal it is when a metric has more than one."""

    of: str
    op: str
    value: float
    label: str = ""

    def text(self, unit: str, fmt: Callable[[Any], str] = str) -> str:
        number = f"{self.value:g}" if self.value < 1e4 else fmt(self.value)
        what = f"{number}x" if self.of == "ratio" else f"{number} {unit}"
        return f"{self.label + ' ' if self.label else ''}{self.op} {what}"

    def short_by(self, metric: dict[str, Any]) -> float | None:
        """1.0 when met, else the factor the figure is short by; None without a figure."""
        x = metric.get(self.of)
        if not isinstance(x, int | float):
            return None
        if self.op == ">=":
            return 1.0 if x >= self.value else (self.value / x if x > 0 else float("inf"))
        return 1.0 if x <= self.value else (x / self.value if self.value > 0 else float("inf"))


def _at_least(value: float, of: str = "median") -> tuple[Goal, ...]:
    return (Goal(of, ">=", value),)


def _at_most(value: float, of: str = "median") -> tuple[Goal, ...]:
    return (Goal(of, "<=", value),)


GOALS: dict[str, tuple[Goal, ...]] = {
    # Native pool core (us per agent step / message, s for 100,000 agents).
    "pool.native.step_per_agent": _at_most(0.3),
    "pool.native.message_delivered": _at_most(0.1),
    "pool.native.message_delivered_batch": _at_most(0.1),
    "pool.native.wealth_step_per_agent_10000": _at_most(1.0),
    "pool.native.create_100000_agents": _at_most(3.0),
    # Shared-memory tick channel and the tick kernel.
    "orchestrator.pool_round_trip": _at_most(50.0),
    "orchestrator.tick_overhead_50_agents": (
        Goal("median", "<=", 0.3, "kernel"),
        Goal("median", "<=", 0.1, "shm"),
    ),
    "orchestrator.messages_per_s": _at_least(2e6),
    "orchestrator.messages_per_s.200x100": _at_least(2e6),
    "orchestrator.messages_per_s.1000x20": _at_least(2e6),
    "scale.ticks_per_s.100k_2_pools": _at_least(10.0),
    # Against Mesa, same run (ratio = Lockstep / Mesa ticks per second).
    "peers.wealth.ticks_per_s.100": _at_least(0.3, "ratio"),
    "peers.wealth.ticks_per_s.1000": _at_least(2.0, "ratio"),
    "peers.wealth.ticks_per_s.10000": _at_least(1.0, "ratio"),
    "peers.wealth.ticks_per_s.10000_2_pools": _at_least(1.0, "ratio"),
    "peers.wealth_heavy.ticks_per_s.100": _at_least(1.0, "ratio"),
    "peers.wealth_heavy.ticks_per_s.1000": _at_least(1.0, "ratio"),
    # Services against their direct baselines.
    "inference.service_round_trip_batch8": _at_most(1.2, "ratio"),
    "inference.agent_batch8_round_trip": _at_most(1.2, "ratio"),
    "llm.service_batch1": _at_most(1.1, "ratio"),
    "llm.service_batch8": _at_most(1.1, "ratio"),
    "llm.service_batch32": _at_most(1.1, "ratio"),
    "llm.kv_cache_speedup": _at_least(1.0, "ratio"),
    "telemetry.append_records_per_s": _at_least(100_000),
    "telemetry.store_append_records_per_s": _at_least(100_000),
}


def _factor(by: float) -> str:
    return f"{by:.3g}x short" if by < 1.1 else f"{by:.2g}x short"


def verdict(metric: dict[str, Any]) -> str:
    """The "vs goal" cell of a metric: "" when it has no goal here."""
    parts = []
    goals = GOALS.get(str(metric.get("name")), ())
    for goal in goals:
        by = goal.short_by(metric)
        state = "?" if by is None else "met" if by == 1.0 else _factor(by)
        parts.append(f"{goal.label + ': ' if goal.label else ''}{state}")
    return "; ".join(parts)


def shortfalls(
    metrics: list[dict[str, Any]], fmt: Callable[[Any], str] = str
) -> tuple[int, list[str]]:
    """How many goals the metrics met, and one line per goal missed (largest first);
    `fmt` formats the figures."""
    met = 0
    short: list[tuple[float, str]] = []
    for m in metrics:
        if m.get("error") or m.get("skipped"):
            continue
        for goal in GOALS.get(str(m.get("name")), ()):
            by = goal.short_by(m)
            if by is None:
                continue
            if by == 1.0:
                met += 1
            else:
                have = m.get(goal.of)
                unit = str(m["unit"])
                have_text = f"{have:g}x" if goal.of == "ratio" else f"{fmt(have)} {unit}"
                goal_text = goal.text(unit, fmt)
                short.append((by, f"{m['name']}: {have_text}, goal {goal_text}: {_factor(by)}"))
    return met, [line for _, line in sorted(short, key=lambda s: -s[0])]
