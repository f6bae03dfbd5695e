"""Client of the telemetry service, for the orchestrator and tools.

It depends only on the generated stubs (``lockstep.pb.telemetry.v1``), never on the service
package. Appends are idempotent: every batch carries a batch id made of this client's id
and a counter, and a batch whose response was lost is re-sent with the same id, so the
service answers it from the first attempt instead of storing it twice.

Delivery semantics (docs/adr/011-fault-injection-and-stress-testing.md: telemetry being
down blocks progress, never loses records):

- :meth:`TelemetryClient.append` returns only once every record is stored durably. While
  the service is unreachable or answers a transient error it retries with capped
  exponential backoff, forever by default (``give_up_after=None``): the caller blocks.
  It raises :class:`TelemetryRefusedError` at once for a permanent refusal (bad input, batch
  too large, wrong role), since retrying would never succeed.
- :class:`RecordBuffer` is the bounded in-memory buffer in front of it: ``add`` only
  appends to a list until ``max_records`` are held, then flushes synchronously, which
  blocks while telemetry is down. So at most ``max_records`` records are ever held in
  memory and none is dropped.

Example::

    channel = lockstep.dial.AuthedChannel(address, service_token)
    client = TelemetryClient(channel)
    head = client.append("run-1", [make_record(0, "run.config", b"{...}", "application/json")])
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from lockstep.errors import ServiceError
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep.pb.telemetry.v1 import telemetry_pb2_grpc as pb_grpc

__all__ = [
    "ChainHead",
    "RecordBuffer",
    "TelemetryClient",
    "TelemetryRefusedError",
    "TelemetryUnavailableError",
    "make_record",
]

log = logging.getLogger("lockstep.telemetry_client")

# Codes after which re-sending the same batch id may succeed. Everything else is a
# permanent answer about this batch (bad input, size limits, role, conflicting batch id).
_RETRIABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)


class TelemetryRefusedError(ServiceError):
    """The service refused a call for good (the message holds the gRPC status and detail;
    `status` is the status itself)."""

    def __init__(self, message: str, status: grpc.StatusCode) -> None:
        super().__init__(message)
        self.status = status


class TelemetryUnavailableError(ServiceError):
    """The service stayed unreachable for longer than ``give_up_after``.

    Nothing is lost or doubled: the first ``stored`` records of the call were acknowledged;
    call :meth:`TelemetryClient.append` again with the remaining records (``records[stored:]``)
    and the client re-sends the unacknowledged batch under the same id ``batch_id``, so
    the service stores it at most once.
    """

    def __init__(self, message: str, batch_id: str, stored: int) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.stored = stored


@dataclass(frozen=True)
class ChainHead:
    """The end of the hash chain: last sequence (0 = empty) and its 32-byte hash."""

    sequence: int
    hash: bytes

    @classmethod
    def from_pb(cls, head: pb.ChainHead) -> ChainHead:
        return cls(int(head.sequence), bytes(head.hash))


def make_record(tick: int, kind: str, payload: bytes, content_type: str = "") -> pb.Record:
    """One record to append (the service assigns its sequence number and hash)."""
    return pb.Record(tick=tick, kind=kind, payload=payload, content_type=content_type)


class TelemetryClient:
    """Idempotent, blocking appends and the read calls of ``TelemetryService``.

    `channel` must carry a credential (``lockstep.dial.AuthedChannel``): the service role
    for appends, viewer or above for reads. The client does not own the channel.

    `client_id` names this writer inside batch ids. It must be unique among writers of
    one telemetry database; the default is 16 random hex digits. Randomness is fine here:
    the id only names batches for de-duplication and never influences a run.
    """

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        client_id: str | None = None,
        max_batch_records: int = 4096,
        max_batch_bytes: int = 8 * 1024 * 1024,
        call_timeout: float = 30.0,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        give_up_after: float | None = None,
    ) -> None:
        if max_batch_records < 1 or max_batch_bytes < 1:
            raise ValueError("max_batch_records and max_batch_bytes must be >= 1")
        # The generated stub module is untyped; `Any` keeps strict mode quiet in every setup.
        stub_class: Any = pb_grpc.TelemetryServiceStub
        self._stub = stub_class(channel)
        self.client_id = client_id if client_id is not None else secrets.token_hex(8)
        self._max_records = max_batch_records
        self._max_bytes = max_batch_bytes
        self._timeout = call_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._give_up_after = give_up_after
        self._counter = 0
        # The batch that last failed transiently, so an identical re-send reuses its id.
        self._pending: tuple[str, str, bytes] | None = None

    # -- appends -------------------------------------------------------------------

    def append(self, run_id: str, records: Iterable[pb.Record]) -> ChainHead:
        """Store `records` of one run, in order; return the chain head after the last one.

        Splits into batches of at most ``max_batch_records`` records / ``max_batch_bytes``
        payload bytes; each batch is stored atomically and idempotently. Blocks while the
        service is unavailable (see the module docstring). Raises TelemetryRefusedError for a
        permanent refusal; batches before the refused one stay stored.
        """
        head: ChainHead | None = None
        stored = 0
        for chunk in self._chunks(list(records)):
            head = self._append_batch(run_id, chunk, stored)
            stored += len(chunk)
        if head is None:
            return self.head()
        return head

    def _chunks(self, records: Sequence[pb.Record]) -> Iterator[list[pb.Record]]:
        chunk: list[pb.Record] = []
        size = 0
        for rec in records:
            n = len(rec.payload)
            if chunk and (len(chunk) >= self._max_records or size + n > self._max_bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(rec)
            size += n
        if chunk:
            yield chunk

    def _batch_id(self, body: pb.AppendRecordsRequest) -> str:
        # Only after a transient failure can this batch be a re-send of the pending one;
        # serialise for the comparison only then (it costs as much as sending).
        if self._pending is not None:
            pending_id, run_id, content = self._pending
            if run_id == body.run_id and content == body.SerializeToString(deterministic=True):
                return pending_id
        self._counter += 1
        return f"{self.client_id}-{self._counter}"

    def _append_batch(self, run_id: str, chunk: list[pb.Record], stored: int) -> ChainHead:
        body = pb.AppendRecordsRequest(run_id=run_id, records=chunk)
        batch_id = self._batch_id(body)
        request = pb.AppendRecordsRequest(run_id=run_id, records=chunk, batch_id=batch_id)
        delay = self._backoff_initial
        started = time.monotonic()
        while True:
            try:
                resp: pb.AppendRecordsResponse = self._stub.AppendRecords(
                    request, timeout=self._timeout, wait_for_ready=True
                )
            except grpc.RpcError as exc:
                code = exc.code()
                if code not in _RETRIABLE:
                    self._pending = None
                    raise TelemetryRefusedError(
                        f"telemetry refused batch {batch_id} ({len(chunk)} records of run "
                        f"{run_id!r}): {code.name}: {exc.details()}",
                        code,
                    ) from None
                if self._pending is None or self._pending[0] != batch_id:
                    # Remember the content (without the id) to recognise a later re-send.
                    self._pending = (batch_id, run_id, body.SerializeToString(deterministic=True))
                waited = time.monotonic() - started
                if self._give_up_after is not None and waited >= self._give_up_after:
                    raise TelemetryUnavailableError(
                        f"telemetry unavailable for {waited:.1f}s ({code.name}: "
                        f"{exc.details()}); batch {batch_id} not acknowledged",
                        batch_id,
                        stored,
                    ) from None
                log.warning(
                    "telemetry append of batch %s failed (%s: %s); retrying in %.2fs",
                    batch_id,
                    code.name,
                    exc.details(),
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self._backoff_max)
                continue
            self._pending = None
            return ChainHead.from_pb(resp.head)

    # -- reads -----------------------------------------------------------------------

    def head(self) -> ChainHead:
        """The current chain head."""
        try:
            resp: pb.GetHeadResponse = self._stub.GetHead(
                pb.GetHeadRequest(), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise _refused("GetHead", exc) from None
        return ChainHead.from_pb(resp.head)

    def query(
        self,
        run_id: str = "",
        *,
        kinds: Sequence[str] = (),
        from_tick: int | None = None,
        to_tick: int | None = None,
        from_sequence: int = 0,
        to_sequence: int = 0,
        limit: int = 0,
    ) -> Iterator[pb.StoredRecord]:
        """Stored records matching every given filter, in sequence order."""
        req = pb.QueryRecordsRequest(
            run_id=run_id,
            kinds=list(kinds),
            from_sequence=from_sequence,
            to_sequence=to_sequence,
            limit=limit,
        )
        if from_tick is not None:
            req.from_tick = from_tick
        if to_tick is not None:
            req.to_tick = to_tick
        try:
            for batch in self._stub.QueryRecords(req, timeout=self._timeout * 10):
                yield from batch.records
        except grpc.RpcError as exc:
            raise _refused("QueryRecords", exc) from None

    def follow(
        self, from_sequence: int = 0, run_id: str = "", kinds: Sequence[str] = ()
    ) -> Generator[pb.StoredRecord, None, None]:
        """Records from `from_sequence` on (0 = only new ones), forever; close the
        generator (or break out of the loop) to cancel the stream."""
        call = self._stub.FollowRecords(
            pb.FollowRecordsRequest(from_sequence=from_sequence, run_id=run_id, kinds=list(kinds))
        )
        try:
            for batch in call:
                yield from batch.records
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _refused("FollowRecords", exc) from None
        finally:
            call.cancel()

    def verify(
        self, from_sequence: int = 0, to_sequence: int = 0, expected_hash: bytes = b""
    ) -> pb.VerifyChainResponse:
        """Recompute the chain over a range (see VerifyChainResponse for the verdict)."""
        req = pb.VerifyChainRequest(
            from_sequence=from_sequence, to_sequence=to_sequence, expected_hash=expected_hash
        )
        try:
            resp: pb.VerifyChainResponse = self._stub.VerifyChain(
                req, timeout=max(self._timeout, 600.0)
            )
        except grpc.RpcError as exc:
            raise _refused("VerifyChain", exc) from None
        return resp

    def runs(self, limit: int = 0) -> list[pb.RunSummary]:
        """Runs with records, in order of their first record."""
        try:
            resp: pb.ListRunsResponse = self._stub.ListRuns(
                pb.ListRunsRequest(limit=limit), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            raise _refused("ListRuns", exc) from None
        return list(resp.runs)


def _refused(what: str, exc: grpc.RpcError) -> TelemetryRefusedError:
    code = exc.code()
    return TelemetryRefusedError(f"telemetry {what} failed: {code.name}: {exc.details()}", code)


class RecordBuffer:
    """A bounded, synchronous buffer of records in front of a :class:`TelemetryClient`.

    ``add`` holds records in memory; once ``max_records`` are held it flushes, which
    blocks while telemetry is down (so memory stays bounded and nothing is dropped).
    ``flush`` ships everything held, one append per run in first-seen order, and returns
    the chain head. Not thread-safe: one writer thread owns it.
    """

    def __init__(self, client: TelemetryClient, max_records: int = 4096) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        self._client = client
        self._max = max_records
        self._held: list[tuple[str, pb.Record]] = []
        self.last_head: ChainHead | None = None

    def __len__(self) -> int:
        return len(self._held)

    def add(
        self, run_id: str, tick: int, kind: str, payload: bytes, content_type: str = ""
    ) -> None:
        """Hold one record; flush (and block while telemetry is down) when full."""
        self._held.append((run_id, make_record(tick, kind, payload, content_type)))
        if len(self._held) >= self._max:
            self.flush()

    def flush(self) -> ChainHead | None:
        """Ship every held record in order; return the head (None when nothing was held)."""
        while self._held:
            run_id = self._held[0][0]
            # Consecutive records of one run go in one append; order across runs is kept.
            n = 1
            while n < len(self._held) and self._held[n][0] == run_id:
                n += 1
            self.last_head = self._client.append(run_id, [r for _, r in self._held[:n]])
            del self._held[:n]
        return self.last_head
