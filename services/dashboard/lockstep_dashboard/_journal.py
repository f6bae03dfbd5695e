"""Journal payloads turned into table rows.

The shapes of the records themselves are read by `lockstep.api._records` (one place for
each journal form: per-agent digests, spawned names, observations, parents); this module
only picks the fields each view shows. A field an older journal lacks is None, shown as
a dash.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lockstep.abi import LOG_LEVELS
from lockstep.api._records import (
    OBSERVE_LEVEL,
    JournalRecord,
    agent_digests,
    decode_observation,
    parent_of,
)
from lockstep.records import TICK_STATS_COUNTS

__all__ = [
    "STATS_FIELDS",
    "Edge",
    "InferenceRow",
    "LogRow",
    "RunInfo",
    "flow_edges",
    "inference_row",
    "log_row",
    "run_info",
    "stats_row",
    "text_of_hex",
]

# The per-tick statistics (`tick.stats`) charted on the run page, in chart order, with
# their labels; the others are listed in the summary.
STATS_FIELDS: tuple[tuple[str, str], ...] = (
    ("wall_ms", "tick wall time (ms)"),
    ("steps", "steps"),
    ("messages", "messages delivered"),
    ("fuel", "fuel"),
    ("faults", "faults"),
)
ALL_STATS = TICK_STATS_COUNTS


@dataclass(frozen=True)
class RunInfo:
    """What a run's `run.start` (and `run.restore`) record says about it."""

    run_id: str
    label: str | None = None
    seed: int | None = None
    config_hash: str | None = None
    pools: int | None = None
    inference_latency: int | None = None
    max_steps_per_tick: int | None = None
    parent: tuple[str, str, int] | None = None  # (parent run, checkpoint id, tick)


def run_info(run_id: str, records: Iterable[JournalRecord]) -> RunInfo:
    """RunInfo from the run's first records (run.start, run.restore)."""
    recs = list(records)
    start = next((r.payload for r in recs if r.kind == "run.start"), None)
    if start is None:
        return RunInfo(run_id, parent=parent_of(recs))
    config = start.get("config")
    digest = None
    if isinstance(config, str):
        try:
            digest = "sha256:" + hashlib.sha256(bytes.fromhex(config)).hexdigest()[:16]
        except ValueError:
            digest = None

    def num(key: str) -> int | None:
        value = start.get(key)
        return int(value) if isinstance(value, int | float) else None

    label = start.get("label")
    return RunInfo(
        run_id,
        str(label) if label is not None else None,
        num("seed"),
        digest,
        num("pools"),
        num("inference_latency"),
        num("max_steps_per_tick"),
        parent_of(recs),
    )


def stats_row(record: JournalRecord) -> dict[str, Any]:
    """One `tick.stats` record as {tick, field: value or None, pools_ms: [...] or None}."""
    p = record.payload
    row: dict[str, Any] = {"tick": record.tick}
    for name in ALL_STATS:
        value = p.get(name)
        row[name] = value if isinstance(value, int | float) else None
    pools = p.get("pools_ms")
    row["pools_ms"] = [float(v) for v in pools] if isinstance(pools, list) else None
    return row


@dataclass(frozen=True)
class LogRow:
    """One agent log line; an observation (level 5) also carries its decoded values."""

    sequence: int
    tick: int
    agent: str
    level: int
    text: str
    observation: tuple[tuple[str, float], ...] | None = None

    @property
    def level_name(self) -> str:
        return LOG_LEVELS[self.level] if 0 <= self.level < len(LOG_LEVELS) else str(self.level)


def log_row(record: JournalRecord) -> LogRow:
    """An `agent.log` record as a row (a malformed observation keeps its text only)."""
    p = record.payload
    level = int(p.get("level", 0)) if isinstance(p.get("level", 0), int) else -1
    text = str(p.get("text", ""))
    obs: tuple[tuple[str, float], ...] | None = None
    if level == OBSERVE_LEVEL:
        try:
            obs = tuple(decode_observation(text))
        except ValueError:
            obs = None
    return LogRow(
        record.sequence, int(p.get("tick", record.tick)), str(p.get("agent", "")), level, text, obs
    )


def text_of_hex(value: Any, limit: int = 200) -> str:
    """Hex-encoded bytes of a payload field as text (undecodable bytes replaced), cut to
    `limit` characters; the template escapes it like any other agent-provided string."""
    if not isinstance(value, str):
        return ""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return value[:limit]
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= limit else text[:limit] + "…"


@dataclass(frozen=True)
class InferenceRow:
    """One journalled inference result (`infer.result`)."""

    sequence: int
    tick: int  # the tick its result is delivered at
    request_tick: int | None  # tick - inference latency, when the latency is known
    agent: str
    request_id: int | None
    model: str
    model_version: str
    provider: str
    key: str  # "<run seed>/<agent spawn sequence>/<request id>": seeds sampling
    seed: str
    latency_ticks: int | None
    latency_ms: float | None
    error: str
    output: str


def inference_row(record: JournalRecord, latency: int | None) -> InferenceRow:
    """An `infer.result` record as a row; `latency` is the run's inference latency (ticks)."""
    p = record.payload
    key = str(p.get("key", ""))
    seed = str(p["seed"]) if "seed" in p else (key.split("/", 1)[0] if "/" in key else "")
    wall = p.get("latency_ms")
    rid = p.get("request_id")
    return InferenceRow(
        record.sequence,
        record.tick,
        record.tick - latency if latency is not None else None,
        str(p.get("agent", "")),
        int(rid) if isinstance(rid, int) else None,
        str(p.get("model", "")),
        str(p.get("model_version", "")),
        str(p.get("provider", "")),
        key,
        seed,
        latency,
        float(wall) if isinstance(wall, int | float) else None,
        str(p.get("error", "")),
        text_of_hex(p.get("output")),
    )


@dataclass
class Edge:
    """Traffic from one party to another over a tick range, as the journal records it."""

    source: str
    target: str
    kind: str
    count: int = 0
    first_tick: int = 0
    last_tick: int = 0
    samples: list[str] = field(default_factory=list)


OUTSIDE = "(outside the run)"


def flow_edges(records: Iterable[JournalRecord], latency: int | None) -> list[Edge]:
    """Who sent what to whom, from the journalled records of a tick range.

    Agent-to-agent messages are not journalled (replay regenerates them; their per-tick
    totals are in `tick.stats`), so the edges are the traffic that crosses the run's
    boundary: external messages (`control.message`, outside -> agent), inference requests
    (agent -> model, at the request tick) and results (model -> agent, at delivery)."""
    edges: dict[tuple[str, str, str], Edge] = {}

    def add(source: str, target: str, kind: str, tick: int, sample: str) -> None:
        edge = edges.setdefault(
            (source, target, kind), Edge(source, target, kind, first_tick=tick, last_tick=tick)
        )
        edge.count += 1
        edge.first_tick = min(edge.first_tick, tick)
        edge.last_tick = max(edge.last_tick, tick)
        if len(edge.samples) < 3 and sample:
            edge.samples.append(sample)

    for r in records:
        p = r.payload
        if r.kind == "control.message":
            add(
                OUTSIDE,
                str(p.get("to", "")),
                "external message",
                r.tick,
                text_of_hex(p.get("payload"), 80),
            )
        elif r.kind == "infer.result":
            agent, model = str(p.get("agent", "")), "model " + str(p.get("model", ""))
            request_tick = r.tick - latency if latency is not None else r.tick
            add(agent, model, "inference request", request_tick, "")
            kind = "inference error" if p.get("error") else "inference result"
            add(model, agent, kind, r.tick, text_of_hex(p.get("output"), 80))
    return sorted(edges.values(), key=lambda e: (-e.count, e.source, e.target, e.kind))


def touched_ticks(records: Iterable[JournalRecord], sequence: int) -> list[tuple[int, str]]:
    """(tick, 16-hex per-agent digest) of each `tick.digest` in which agent `sequence` was
    touched (stepped, messaged, created or destroyed)."""
    out = []
    for r in records:
        if r.kind == "tick.digest":
            digest = agent_digests(r.payload).get(sequence)
            if digest is not None:
                out.append((r.tick, digest))
    return out


def kind_counts(records: Iterable[JournalRecord]) -> dict[str, int]:
    """Records per kind."""
    return dict(sorted(Counter(r.kind for r in records).items()))
