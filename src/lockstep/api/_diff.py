"""`diff(run_a, run_b)`: where two runs part, from their journalled digest chains."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lockstep.api._records import (
    JournalRecord,
    lineage,
    log_rows,
    observation_rows,
    spawned_names,
    tick_digests,
)

__all__ = ["RunDiff", "diff", "diff_records"]

# Journal kinds that describe bookkeeping rather than what happened in the run.
_BOOKKEEPING = {
    "tick.digest",
    "tick.stats",
    "run.start",
    "run.restore",
    "run.checkpoint",
    "module.register",
    "run.recover",
}


@dataclass(frozen=True)
class RunDiff:
    """How two runs compare, tick by tick.

    `first_tick` is the first tick whose digest differs (or that only one run has), None
    when the chains are identical; `first_agents` are the agents whose per-agent digests
    differ at that tick (`first_agent` the first in spawn order, "" if the difference is
    not in any agent's digest, e.g. an external action). After the divergence: the agents
    that ever differ, per-kind counts of each run's journal events, and observation means
    per key at each run's last observed tick (empty until observations are journalled)."""

    run_a: str
    run_b: str
    last_tick_a: int
    last_tick_b: int
    common_ticks: int
    first_tick: int | None
    first_agents: tuple[str, ...] = ()
    agents_diverged: tuple[str, ...] = ()
    events_a: dict[str, int] = field(default_factory=dict)
    events_b: dict[str, int] = field(default_factory=dict)
    observations: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """Same digest at every tick, and the same number of ticks."""
        return self.first_tick is None

    @property
    def first_agent(self) -> str:
        return self.first_agents[0] if self.first_agents else ""

    def describe(self) -> str:
        """A few lines for people."""
        if self.identical:
            return (
                f"runs {self.run_a} and {self.run_b} are identical: {self.common_ticks} "
                "tick digests equal"
            )
        lines = [
            f"runs {self.run_a} and {self.run_b} diverge at tick {self.first_tick}"
            + (
                f", first in agent {self.first_agent}"
                if self.first_agent
                else " (not in any agent's digest)"
            )
        ]
        if len(self.first_agents) > 1:
            lines.append(
                f"agents differing at tick {self.first_tick}: {', '.join(self.first_agents)}"
            )
        lines.append(
            f"ticks: a {self.last_tick_a}, b {self.last_tick_b}; "
            f"{len(self.agents_diverged)} agent(s) differ from then on"
        )
        kinds = sorted(set(self.events_a) | set(self.events_b))
        for kind in kinds:
            a, b = self.events_a.get(kind, 0), self.events_b.get(kind, 0)
            if a != b:
                lines.append(f"{kind}: a {a}, b {b}")
        for key, (a_mean, b_mean) in sorted(self.observations.items()):
            lines.append(f"observation {key} (mean at last tick): a {a_mean}, b {b_mean}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "identical": self.identical,
            "first_tick": self.first_tick,
            "first_agent": self.first_agent,
            "first_agents": list(self.first_agents),
            "last_tick_a": self.last_tick_a,
            "last_tick_b": self.last_tick_b,
            "common_ticks": self.common_ticks,
            "agents_diverged": list(self.agents_diverged),
            "events_a": self.events_a,
            "events_b": self.events_b,
            "observations": {k: list(v) for k, v in self.observations.items()},
        }


def _obs_means(records: list[JournalRecord]) -> dict[str, float]:
    rows, _ = observation_rows(log_rows(records))
    if not rows:
        return {}
    last: dict[str, int] = {}
    for tick, _agent, key, _value in rows:
        last[key] = max(last.get(key, tick), tick)
    sums: dict[str, list[float]] = {}
    for tick, _agent, key, value in rows:
        if tick == last[key]:
            sums.setdefault(key, []).append(value)
    return {k: sum(v) / len(v) for k, v in sums.items()}


def diff_records(run_a: str, a: list[JournalRecord], run_b: str, b: list[JournalRecord]) -> RunDiff:
    """Compare two runs given their records from tick 0 (see `lineage`)."""
    da, db = tick_digests(a), tick_digests(b)
    names = {**spawned_names(a), **spawned_names(b)}
    common = sorted(set(da) & set(db))
    first = next(
        (
            t
            for t in sorted(set(da) | set(db))
            if t not in da or t not in db or da[t][0] != db[t][0]
        ),
        None,
    )
    last_a, last_b = max(da, default=0), max(db, default=0)
    if first is None:
        return RunDiff(run_a, run_b, last_a, last_b, len(common), None)

    def differing(t: int) -> list[int]:
        pa = da[t][1] if t in da else {}
        pb = db[t][1] if t in db else {}
        return sorted(s for s in set(pa) | set(pb) if pa.get(s) != pb.get(s))

    def name(seq: int) -> str:
        return names.get(seq, f"#{seq}")

    at_first = tuple(name(s) for s in differing(first))
    ever: set[int] = set()
    for t in common:
        if t >= first:
            ever.update(differing(t))

    def events(records: list[JournalRecord]) -> dict[str, int]:
        return dict(
            sorted(
                Counter(
                    r.kind for r in records if r.tick >= first and r.kind not in _BOOKKEEPING
                ).items()
            )
        )

    ma, mb = _obs_means(a), _obs_means(b)
    obs = {k: (ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))}
    return RunDiff(
        run_a,
        run_b,
        last_a,
        last_b,
        len(common),
        first,
        at_first,
        tuple(name(s) for s in sorted(ever)),
        events(a),
        events(b),
        obs,
    )


def diff(
    run_a: Any, run_b: Any, fetch: Callable[[str], list[JournalRecord]] | None = None
) -> RunDiff:
    """Compare two runs (`Run` objects, or run ids with `fetch`, e.g.
    `deployment.records`) by their journalled tick digests and per-agent digests; a run
    restored from a checkpoint is compared together with its parent's ticks up to it."""
    if fetch is None:
        for r in (run_a, run_b):
            if hasattr(r, "deployment"):
                fetch = r.deployment.records
                break
    if fetch is None:
        raise ValueError("diff of run ids needs fetch= (e.g. deployment.records)")
    ida = run_a if isinstance(run_a, str) else run_a.run_id
    idb = run_b if isinstance(run_b, str) else run_b.run_id
    return diff_records(ida, lineage(fetch, ida), idb, lineage(fetch, idb))
