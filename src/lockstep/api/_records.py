"""Reading a run's journal (the telemetry service's records) into plain Python values.

Everything that knows a journal payload's shape lives here, each in one small function, so
that a change of form (the per-agent digests, the agent log records) is adapted in one
place: `agent_digests`, `spawned_names`, `log_rows`, `decode_observation`.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lockstep.errors import ConfigError
from lockstep.records import TICK_STATS_FIELDS

__all__ = [
    "OBSERVE_LEVEL",
    "JournalRecord",
    "agent_digests",
    "decode_observation",
    "encode_observation",
    "lineage",
    "log_rows",
    "observation_rows",
    "parent_of",
    "spawned_names",
    "tick_digests",
    "tick_stats_rows",
]

# The reserved agent log level that carries observations (docs/abi.md, "Observations").
OBSERVE_LEVEL = 5

_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
_INT = re.compile(r"-?[0-9]{1,19}")
_DEC = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_HEX = re.compile(r"x[0-9a-f]{16}")


@dataclass(frozen=True)
class JournalRecord:
    """One journal record as stored by telemetry; `payload` is the decoded JSON (or, for a
    payload that is not JSON, {"raw": text})."""

    sequence: int
    run_id: str
    tick: int
    kind: str
    payload: dict[str, Any]
    hash: str

    @classmethod
    def from_stored(cls, rec: Any) -> JournalRecord:
        """From a telemetry `StoredRecord`."""
        raw = bytes(rec.payload)
        try:
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                payload = {"value": payload}
        except (ValueError, UnicodeDecodeError):
            payload = {"raw": raw.decode(errors="replace")}
        return cls(
            int(rec.sequence), rec.run_id, int(rec.tick), rec.kind, payload, bytes(rec.hash).hex()
        )


# ---- per-tick statistics -----------------------------------------------------------------
# The fields of a `tick.stats` record (docs/telemetry.md, "Per-tick statistics"); records
# written by an older orchestrator may lack some (the value is then missing).
TICK_STATS_COLUMNS = ("tick", *TICK_STATS_FIELDS)


def tick_stats_rows(records: Iterable[JournalRecord]) -> list[dict[str, Any]]:
    """One dict per `tick.stats` record, in tick order (a tick redone after a restore:
    the last record wins)."""
    by_tick = {r.tick: {"tick": r.tick, **r.payload} for r in records if r.kind == "tick.stats"}
    return [by_tick[t] for t in sorted(by_tick)]


# ---- tick digests and per-agent digests --------------------------------------------------


def agent_digests(payload: dict[str, Any]) -> dict[int, str]:
    """The per-agent digests of a `tick.digest` record: {spawn sequence: 16 hex digits}.

    Today's form (docs/architecture.md, "Journal"): `agents` is the hex of, per agent
    touched in the tick, a u32 little-endian spawn sequence and an 8-byte hash."""
    blob = bytes.fromhex(str(payload.get("agents", "")))
    return {
        int.from_bytes(blob[i : i + 4], "little"): blob[i + 4 : i + 12].hex()
        for i in range(0, len(blob) - 11, 12)
    }


def tick_digests(records: Iterable[JournalRecord]) -> dict[int, tuple[str, dict[int, str]]]:
    """{tick: (digest hex, per-agent digests)} from `tick.digest` records (a later record of
    the same tick, as after pool recovery, wins)."""
    return {
        r.tick: (str(r.payload.get("digest", "")), agent_digests(r.payload))
        for r in records
        if r.kind == "tick.digest"
    }


def spawned_names(records: Iterable[JournalRecord]) -> dict[int, str]:
    """{spawn sequence: agent name} from `control.spawn` records."""
    return {
        int(r.payload["seq"]): str(r.payload["name"])
        for r in records
        if r.kind == "control.spawn" and "seq" in r.payload
    }


# ---- lineage: restored runs continue their parent's journal -------------------------------


def parent_of(records: Sequence[JournalRecord]) -> tuple[str, str, int] | None:
    """(parent run id, checkpoint id, checkpoint tick) of a run restored from a checkpoint:
    its journal holds the orchestrator's `run.restore` record; None for an original run."""
    for r in records:
        if r.kind == "run.restore":
            return str(r.payload.get("from_run", "")), str(r.payload.get("checkpoint", "")), r.tick
    return None


def lineage(
    fetch: Callable[[str], list[JournalRecord]], run_id: str, max_depth: int = 64
) -> list[JournalRecord]:
    """The records that describe run `run_id` from tick 0: for a restored run, its
    ancestors' records up to the checkpoint tick, then its own (minus its `run.start`)."""
    own = fetch(run_id)
    if not own:
        raise ConfigError(f"no journal records for run {run_id!r}")
    parent = parent_of(own)
    if parent is None or max_depth <= 0 or not parent[0]:
        return own
    parent_id, _checkpoint, at = parent
    try:
        before = [r for r in lineage(fetch, parent_id, max_depth - 1) if r.tick <= at]
    except ConfigError:
        return own  # the parent's journal is elsewhere: only this run's own ticks are known
    return before + [r for r in own if r.kind != "run.start"]


# ---- agent logs and observations ----------------------------------------------------------


def log_rows(records: Iterable[JournalRecord]) -> list[tuple[int, str, int, str]]:
    """(tick, agent, level, text) of each `agent.log` record.

    The documented form (docs/abi.md, "Observations"): kind `agent.log`, payload
    {"tick": T, "agent": NAME, "level": L, "text": TEXT}; the record's tick is used when the
    payload has none (the orchestrator writes agent, level and text)."""
    out = []
    for r in records:
        if r.kind != "agent.log":
            continue
        p = r.payload
        out.append(
            (
                int(p.get("tick", r.tick)),
                str(p.get("agent", "")),
                int(p.get("level", 0)),
                str(p.get("text", "")),
            )
        )
    return out


def decode_observation(text: str) -> list[tuple[str, float]]:
    """The (key, value) pairs of one observation line (log level 5): `key=value` tokens
    separated by single spaces. A value is a decimal integer, a decimal number, or `x` and
    16 hex digits: the IEEE-754 binary64 bits, exact. Raises ValueError on anything else."""
    pairs = []
    for token in text.split(" "):
        key, sep, value = token.partition("=")
        if not sep or not _KEY.fullmatch(key):
            raise ValueError(f"bad observation token {token!r}: expected key=value")
        if _HEX.fullmatch(value):
            number: float = struct.unpack(">d", bytes.fromhex(value[1:]))[0]
        elif _INT.fullmatch(value):
            number = float(int(value))
        elif _DEC.fullmatch(value):
            number = float(value)
        else:
            raise ValueError(f"bad observation value {value!r} for {key!r}")
        pairs.append((key, number))
    return pairs


def encode_observation(pairs: Iterable[tuple[str, float | int]]) -> str:
    """The observation line the SDKs write for `pairs` (ints in decimal, floats as exact
    binary64 bits), e.g. for tests and for agents written in other languages."""
    tokens = []
    for key, value in pairs:
        if not _KEY.fullmatch(key):
            raise ValueError(f"bad observation key {key!r}")
        if isinstance(value, int) and not isinstance(value, bool):
            tokens.append(f"{key}={value}")
        else:
            tokens.append(f"{key}=x{struct.pack('>d', float(value)).hex()}")
    return " ".join(tokens)


def observation_rows(
    logs: Iterable[tuple[int, str, int, str]],
) -> tuple[list[tuple[int, str, str, float]], int]:
    """(tick, agent, key, value) rows from the level-5 log lines, and how many level-5
    lines were malformed (skipped, never guessed)."""
    rows: list[tuple[int, str, str, float]] = []
    bad = 0
    for tick, agent, level, text in logs:
        if level != OBSERVE_LEVEL:
            continue
        try:
            pairs = decode_observation(text)
        except ValueError:
            bad += 1
            continue
        rows.extend((tick, agent, key, value) for key, value in pairs)
    return rows, bad
