"""Ship journal records to the telemetry service (blocking, idempotent retries)."""

from __future__ import annotations

from lockstep.client import AuthedChannel
from lockstep.telemetry_client import TelemetryClient, make_record
from lockstep_orchestrator._journal import JournalRecord, Sink


def telemetry_sink(address: str, token: str | None) -> Sink:
    """A journal sink appending to telemetry; blocks while the service is unavailable."""
    client = TelemetryClient(AuthedChannel(address, token))

    def sink(records: list[JournalRecord]) -> None:
        # A run's records are contiguous in the buffer; send each run's slice in order.
        start = 0
        while start < len(records):
            run_id = records[start].run_id
            end = start
            while end < len(records) and records[end].run_id == run_id:
                end += 1
            client.append(run_id, [make_record(r.tick, r.kind, r.payload, "application/json")
                                   for r in records[start:end]])
            start = end

    return sink
