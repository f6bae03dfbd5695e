"""The run journal: control actions with their tick, inference results, the digest chain.

Records are kept in memory for the current run and shipped in batches to the telemetry
service at tick boundaries: at the end of every Step/RunUntil call, at least once a second
during a long RunUntil, and whenever 4,096 are buffered (what a resumed run starts from).
Ticks a RunUntil progress message acknowledges before they are shipped are made durable in
a write-ahead file first (`Journal.durable`), which a restarted orchestrator drains.
When telemetry is down the orchestrator blocks once its bounded buffer is full (progress
stops, nothing is lost).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockstep.errors import ServiceError
from lockstep_orchestrator._events import (
    Event,
    RunStart,
    TickDigest,
    canonical_json,
    journal_kind,
)

log = logging.getLogger("lockstep.orchestrator.journal")


@dataclass(frozen=True)
class JournalRecord:
    """One journal entry; `payload` is canonical JSON (sorted keys, no spaces)."""

    run_id: str
    tick: int
    kind: str
    payload: bytes


# A sink ships records; with a timeout it raises ServiceError instead of blocking longer.
Sink = Callable[[list[JournalRecord], float | None], None]


class Journal:
    """Buffers records and ships them to `sink` when the buffer fills or on flush.

    With `wal_dir`, `durable()` makes every record so far durable before a tick is
    acknowledged to a client without waiting for telemetry: the records not yet shipped
    are appended to `<wal_dir>/<run id>.jsonl` with one write and one fsync (a batch per
    acknowledgement, never per record). A shipment that empties the buffer removes the
    file; an orchestrator restarted after a crash drains what it holds (`read_wal`)."""

    def __init__(
        self, sink: Sink | None, max_buffer: int = 4096, wal_dir: Path | None = None
    ) -> None:
        self._sink = sink
        self._max_buffer = max_buffer
        self._buffer: list[JournalRecord] = []
        self.records: list[JournalRecord] = []
        self.run_id = ""
        self._flushed_at = time.monotonic()
        self._wal_dir = wal_dir if sink is not None else None
        self._wal_fd = -1
        self._durable = 0  # records[:_durable] are in telemetry or the write-ahead file

    def durable(self) -> None:
        """Make every record so far durable (see the class): before acknowledging ticks."""
        n = len(self.records)
        if self._wal_dir is None or self._durable >= n:
            return
        if not self._buffer:
            self._durable = n
            return
        first = max(self._durable, n - len(self._buffer))
        if self._wal_fd < 0:
            self._wal_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._wal_fd = os.open(
                self._wal_dir / f"{self.run_id}.jsonl",
                os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                0o600,
            )
        lines = b"".join(_wal_line(i, self.records[i]) for i in range(first, n))
        os.write(self._wal_fd, lines)
        os.fdatasync(self._wal_fd)
        self._durable = n

    def _shipped(self) -> None:
        """Everything so far is in telemetry: the write-ahead file is no longer needed."""
        self._durable = len(self.records)
        if self._wal_fd >= 0:
            os.close(self._wal_fd)
            self._wal_fd = -1
        if self._wal_dir is not None and self.run_id:
            (self._wal_dir / f"{self.run_id}.jsonl").unlink(missing_ok=True)

    def adopt(self, records: list[JournalRecord], unsent: int) -> None:
        """Continue a journal whose records are `records`, of which the last `unsent` are
        not in telemetry yet (drained from a write-ahead file: shipped at the next flush)."""
        self.records = list(records)
        self._buffer = self.records[len(self.records) - unsent :] if unsent else []
        self._durable = len(self.records)

    def record(self, kind: str, tick: int, payload: dict[str, Any]) -> None:
        if kind == "run.start":
            self.run_id = str(payload["run_id"])
        self._add(JournalRecord(self.run_id, tick, kind, canonical_json(payload)))

    @staticmethod
    def payload(event: Event) -> bytes:
        """An event's journal payload (canonical JSON)."""
        if type(event) is TickDigest:  # one per tick, the biggest: encoded directly
            return event.journal_json()
        return canonical_json(event.journal())

    def append(self, tick: int, event: Event) -> None:
        """Journal one event with its tick."""
        if isinstance(event, RunStart):
            self.run_id = event.run_id
        self._add(JournalRecord(self.run_id, tick, journal_kind(event), self.payload(event)))

    def _add(self, rec: JournalRecord) -> None:
        self.records.append(rec)
        if self._sink is not None:
            self._buffer.append(rec)

    def tick_done(self) -> None:
        """Called after each tick: ship the buffer once it is full. Records are shipped
        only at tick boundaries, so a tick that fails can be discarded and redone."""
        if len(self._buffer) >= self._max_buffer:
            self.flush()

    def discard_from(self, tick: int) -> None:
        """Forget the records of ticks >= `tick` (a failed tick, before it is redone)."""
        self.records = [r for r in self.records if r.tick < tick]
        self._buffer = [r for r in self._buffer if r.tick < tick]

    def flush(self, older_than: float = 0.0) -> None:
        """Ship buffered records (with `older_than`, only if the last shipment is at least
        that many seconds old). The sink blocks while telemetry is unavailable (the
        telemetry client retries idempotently), so progress stops and nothing is lost."""
        if self._sink is None or not self._buffer:
            return
        if older_than and time.monotonic() - self._flushed_at < older_than:
            return
        self._sink(self._buffer, None)
        self._buffer = []
        self._flushed_at = time.monotonic()
        self._shipped()

    def close(self, spill_dir: Path, timeout: float = 10.0) -> None:
        """Final flush at shutdown: wait `timeout` seconds at most for telemetry, then write
        what is still unsent to a JSON-lines file in `spill_dir` (never drop it)."""
        if self._sink is None or not self._buffer:
            return
        try:
            self._sink(self._buffer, timeout)
            self._shipped()
        except ServiceError as exc:
            spill_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            path = spill_dir / f"journal-{self.run_id}-unsent.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as fh:
                for rec in self._buffer:
                    fh.write(
                        json.dumps(
                            {
                                "run_id": rec.run_id,
                                "tick": rec.tick,
                                "kind": rec.kind,
                                "payload": rec.payload.decode(),
                            },
                            sort_keys=True,
                        )
                        + "\n"
                    )
            log.error(
                "telemetry unreachable at shutdown (%s): %d journal records written to %s",
                exc,
                len(self._buffer),
                path,
            )
        self._buffer = []


def _wal_line(index: int, rec: JournalRecord) -> bytes:
    return (
        json.dumps(
            {"i": index, "tick": rec.tick, "kind": rec.kind, "payload": rec.payload.decode()},
            separators=(",", ":"),
        ).encode()
        + b"\n"
    )


def read_wal(wal_dir: Path, run_id: str) -> dict[int, tuple[int, str, bytes]]:
    """The records a crashed orchestrator left in its write-ahead file for `run_id`, by
    their index in the run's journal (a torn last line, cut by the crash, is ignored: it
    was never acknowledged)."""
    out: dict[int, tuple[int, str, bytes]] = {}
    try:
        data = (wal_dir / f"{run_id}.jsonl").read_bytes()
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        try:
            raw = json.loads(line)
            out[int(raw["i"])] = (int(raw["tick"]), str(raw["kind"]), raw["payload"].encode())
        except (ValueError, KeyError, TypeError):
            break
    return out
