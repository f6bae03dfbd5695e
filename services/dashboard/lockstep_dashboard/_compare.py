"""Compare two runs by their journalled digest chains, a window of ticks at a time.

The same rule as `lockstep.diff` (src/lockstep/api/_diff.py): the first tick whose digest
differs or that only one run has is the divergence, and the agents whose per-agent
digests differ there are named. A run restored from a checkpoint is read with its parent's
ticks up to the checkpoint. Unlike `diff`, this never reads a whole run: digests are read
`WINDOW` ticks at a time and the scan stops at the first difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lockstep.api._records import agent_digests, spawned_names
from lockstep_dashboard._journal import run_info
from lockstep_dashboard._source import Source

__all__ = ["Comparison", "compare_runs"]

WINDOW = 200  # ticks per read; a tick.digest of N agents touched is ~24 N bytes
MAX_TICKS = 1_000_000
Digests = dict[int, tuple[str, str]]  # tick -> (digest hex, per-agent digests as stored)


@dataclass(frozen=True)
class Comparison:
    """Where runs `a` and `b` part (first_tick None: identical over `checked` ticks)."""

    a: str
    b: str
    last_tick_a: int
    last_tick_b: int
    checked: int
    first_tick: int | None
    first_agents: tuple[str, ...] = ()
    rows: list[tuple[int, str | None, str | None]] = field(default_factory=list)

    @property
    def first_agent(self) -> str:
        return self.first_agents[0] if self.first_agents else ""


class _Chain:
    """Digests of one run by tick, its parent's up to the checkpoint for a restored run."""

    def __init__(self, source: Source, run_id: str, depth: int = 0) -> None:
        self.source = source
        self.run_id = run_id
        summary = source.run(run_id)
        self.own_last = int(summary.max_tick) if summary is not None else 0
        info = run_info(run_id, source.start_records(run_id))
        self.parent: _Chain | None = None
        self.at = 0
        if (
            info.parent is not None
            and info.parent[0]
            and depth < 32
            and source.run(info.parent[0]) is not None
        ):
            self.parent = _Chain(source, info.parent[0], depth + 1)
            self.at = info.parent[2]

    @property
    def last_tick(self) -> int:
        return self.own_last

    def window(self, lo: int, hi: int) -> Digests:
        """Digests of ticks lo..hi (inclusive)."""
        out: Digests = {}
        if self.parent is not None and lo <= self.at:
            out.update(self.parent.window(lo, min(hi, self.at)))
            lo = self.at + 1
        if lo <= hi:
            recs = self.source.records(
                self.run_id,
                kinds=["tick.digest"],
                from_tick=lo,
                to_tick=hi,
                limit=(hi - lo + 1) * 4 + 16,
            )
            # A later record of the same tick (after pool recovery) wins, as in diff.
            out.update(
                {
                    r.tick: (str(r.payload.get("digest", "")), str(r.payload.get("agents", "")))
                    for r in recs
                    if r.kind == "tick.digest"
                }
            )
        return out

    def names(self, limit: int) -> dict[int, str]:
        recs = self.source.records(self.run_id, kinds=["control.spawn"], limit=limit)
        names = spawned_names(recs)
        if self.parent is not None:
            names = {**self.parent.names(limit), **names}
        return names


def compare_runs(source: Source, a: str, b: str) -> Comparison:
    """The first divergent tick and agents of runs `a` and `b`, and the digests of both
    runs around it (two ticks either side)."""
    ca, cb = _Chain(source, a), _Chain(source, b)
    last = max(ca.last_tick, cb.last_tick)
    lo = 0
    first: int | None = None
    da: Digests = {}
    db: Digests = {}
    while lo <= min(last, MAX_TICKS):
        hi = lo + WINDOW - 1
        da, db = ca.window(lo, hi), cb.window(lo, hi)
        for t in sorted(set(da) | set(db)):
            if t not in da or t not in db or da[t][0] != db[t][0]:
                first = t
                break
        if first is not None:
            break
        lo = hi + 1
    checked = min(lo, last + 1) if first is None else first
    if first is None:
        return Comparison(a, b, ca.last_tick, cb.last_tick, checked, None)
    # Per-agent digests are decoded only at the divergent tick.
    pa = agent_digests({"agents": da[first][1]}) if first in da else {}
    pb = agent_digests({"agents": db[first][1]}) if first in db else {}
    seqs = sorted(s for s in set(pa) | set(pb) if pa.get(s) != pb.get(s))
    names = {**ca.names(source.config.max_scan), **cb.names(source.config.max_scan)}
    near_a = ca.window(max(0, first - 2), first + 2)
    near_b = cb.window(max(0, first - 2), first + 2)
    rows = [
        (t, near_a[t][0] if t in near_a else None, near_b[t][0] if t in near_b else None)
        for t in sorted(set(near_a) | set(near_b))
    ]
    return Comparison(
        a,
        b,
        ca.last_tick,
        cb.last_tick,
        checked,
        first,
        tuple(names.get(s, f"#{s}") for s in seqs),
        rows,
    )
