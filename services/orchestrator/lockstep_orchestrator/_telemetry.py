"""Ship journal records to the telemetry service (blocking, idempotent retries)."""

from __future__ import annotations

from lockstep.dial import AuthedChannel
from lockstep.telemetry_client import TelemetryClient, make_record
from lockstep_orchestrator._journal import JournalRecord, Sink


def telemetry_sink(address: str, token: str | None) -> Sink:
    """A journal sink appending to telemetry. Without a timeout it blocks while the service
    is unavailable; with one it raises TelemetryUnavailableError (a ServiceError) after it."""
    channel = AuthedChannel(address, token)
    blocking = TelemetryClient(channel)

    def sink(records: list[JournalRecord], timeout: float | None) -> None:
        client = (
            blocking
            if timeout is None
            else TelemetryClient(
                channel,
                client_id=blocking.client_id + "-final",
                give_up_after=timeout,
                call_timeout=timeout,
            )
        )
        # A run's records are contiguous in the buffer; send each run's slice in order.
        start = 0
        while start < len(records):
            run_id = records[start].run_id
            end = start
            while end < len(records) and records[end].run_id == run_id:
                end += 1
            client.append(
                run_id,
                [
                    make_record(r.tick, r.kind, r.payload, "application/json")
                    for r in records[start:end]
                ],
            )
            start = end

    return sink
