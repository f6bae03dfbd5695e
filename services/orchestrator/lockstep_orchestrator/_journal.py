"""The run journal: control actions with their tick, inference results, the digest chain.

Records are kept in memory for the current run and shipped in batches to the telemetry
service at tick boundaries: at the end of every Step/RunUntil call, at least once a second
during a long RunUntil, and whenever 4,096 are buffered (what a resumed run starts from).
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
from lockstep_orchestrator._events import Event, canonical_json, journal_kind

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
    """Buffers records and ships them to `sink` when the buffer fills or on flush."""

    def __init__(self, sink: Sink | None, max_buffer: int = 4096) -> None:
        self._sink = sink
        self._max_buffer = max_buffer
        self._buffer: list[JournalRecord] = []
        self.records: list[JournalRecord] = []
        self.run_id = ""
        self._flushed_at = time.monotonic()

    def record(self, kind: str, tick: int, payload: dict[str, Any]) -> None:
        if kind == "run.start":
            self.run_id = str(payload["run_id"])
        self._add(JournalRecord(self.run_id, tick, kind, canonical_json(payload)))

    @staticmethod
    def payload(event: Event) -> bytes:
        """An event's journal payload (canonical JSON)."""
        return canonical_json(event.journal())

    def append(self, tick: int, event: Event) -> None:
        """Journal one event with its tick."""
        self.record(journal_kind(event), tick, event.journal())

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

    def close(self, spill_dir: Path, timeout: float = 10.0) -> None:
        """Final flush at shutdown: wait `timeout` seconds at most for telemetry, then write
        what is still unsent to a JSON-lines file in `spill_dir` (never drop it)."""
        if self._sink is None or not self._buffer:
            return
        try:
            self._sink(self._buffer, timeout)
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
