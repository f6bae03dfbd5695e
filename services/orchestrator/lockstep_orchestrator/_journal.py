"""The run journal: control actions with their tick, inference results, the digest chain.

Records are kept in memory for the current run and shipped in batches to the telemetry
service. When telemetry is down the orchestrator blocks once its bounded buffer is full
(progress stops, nothing is lost).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JournalRecord:
    """One journal entry; `payload` is canonical JSON (sorted keys, no spaces)."""

    run_id: str
    tick: int
    kind: str
    payload: bytes


Sink = Callable[[list[JournalRecord]], None]


class Journal:
    """Buffers records and ships them to `sink` when the buffer fills or on flush."""

    def __init__(self, sink: Sink | None, max_buffer: int = 4096) -> None:
        self._sink = sink
        self._max_buffer = max_buffer
        self._buffer: list[JournalRecord] = []
        self.records: list[JournalRecord] = []
        self.run_id = ""

    def record(self, kind: str, tick: int, payload: dict[str, Any]) -> None:
        if kind == "run.start":
            self.run_id = str(payload["run_id"])
        data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        rec = JournalRecord(self.run_id, tick, kind, data)
        self.records.append(rec)
        if self._sink is not None:
            self._buffer.append(rec)
            if len(self._buffer) >= self._max_buffer:
                self.flush()

    def flush(self) -> None:
        """Ship buffered records. The sink blocks while telemetry is unavailable (the
        telemetry client retries idempotently), so progress stops and nothing is lost."""
        if self._sink is None or not self._buffer:
            return
        self._sink(self._buffer)
        self._buffer = []
