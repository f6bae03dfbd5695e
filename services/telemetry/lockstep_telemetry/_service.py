"""gRPC servicer of ``lockstep.telemetry.v1.TelemetryService`` and server construction."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, NoReturn

import grpc

from lockstep import status
from lockstep.auth import SERVICE, VIEWER, Role, TokenStore
from lockstep.errors import ConfigError
from lockstep.metrics import service_registry
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep.pb.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from lockstep.server import BoundServer, ServiceBinding, build_server, role_table
from lockstep_telemetry._chain import RECORD_FORMAT
from lockstep_telemetry._config import TelemetryConfig
from lockstep_telemetry._metrics import Metrics
from lockstep_telemetry._store import (
    CorruptRecordError,
    InvalidRecordError,
    Store,
    StoreClosedError,
    StoredRow,
    StoreError,
    check_kind,
    check_run_id,
)

__all__ = ["ROLE_TABLE", "SERVICE_NAME", "TelemetryServicer", "create_server"]

log = logging.getLogger("lockstep.telemetry")

_SERVICE = pb.DESCRIPTOR.services_by_name["TelemetryService"]
SERVICE_NAME = _SERVICE.full_name
ROLE_TABLE: dict[str, frozenset[Role]] = role_table(
    _SERVICE,
    {
        "AppendRecords": SERVICE,
        "GetHead": VIEWER,
        "QueryRecords": VIEWER,
        "FollowRecords": VIEWER,
        "VerifyChain": VIEWER,
        "ListRuns": VIEWER,
    },
)
MAX_FILTER_KINDS = 64


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, detail: str) -> NoReturn:
    context.abort(code, detail)
    raise AssertionError("unreachable: context.abort raises")


def _abort_store(context: grpc.ServicerContext, exc: Exception) -> NoReturn:
    if isinstance(exc, StoreError):  # each carries its status (lockstep.status)
        status.abort(context, exc)
    if isinstance(exc, sqlite3.OperationalError):
        # Busy, disk full, I/O error: nothing was stored (the transaction rolled back), and
        # the same batch id may be retried.
        _abort(context, grpc.StatusCode.UNAVAILABLE, f"telemetry store unavailable: {exc}")
    log.exception("telemetry store error")
    _abort(context, grpc.StatusCode.INTERNAL, f"telemetry store error: {exc}")


def _check_filters(context: grpc.ServicerContext, run_id: str, kinds: Iterable[str]) -> list[str]:
    kinds = list(kinds)
    try:
        if run_id:
            check_run_id(run_id)
        if len(kinds) > MAX_FILTER_KINDS:
            raise InvalidRecordError(f"at most {MAX_FILTER_KINDS} kinds per filter")
        for kind in kinds:
            check_kind(kind)
    except InvalidRecordError as exc:
        _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    return kinds


# The generated registration function is untyped; `Any` keeps strict mode quiet.
_add_servicer: Any = pb_grpc.add_TelemetryServiceServicer_to_server


def _head_pb(seq: int, digest: bytes) -> pb.ChainHead:
    return pb.ChainHead(sequence=seq, hash=digest)


class TelemetryServicer(pb_grpc.TelemetryServiceServicer):
    """The RPCs; every call goes to one shared :class:`Store`."""

    def __init__(self, store: Store, config: TelemetryConfig, metrics: Metrics) -> None:
        self.store = store
        self.config = config
        self.metrics = metrics
        self._followers = 0
        self._followers_lock = threading.Lock()
        self._stops: set[threading.Event] = set()
        metrics.head_sequence.set(store.head()[0])

    @property
    def followers(self) -> int:
        """Open FollowRecords streams."""
        with self._followers_lock:
            return self._followers

    def close(self) -> None:
        """End every follow stream and close the store."""
        with self._followers_lock:
            stops = list(self._stops)
        for stop in stops:
            stop.set()
        self.store.close()

    # -- appends -------------------------------------------------------------------

    def AppendRecords(
        self,
        request: pb.AppendRecordsRequest,
        context: grpc.ServicerContext,
    ) -> pb.AppendRecordsResponse:
        started = time.perf_counter()  # metrics only; never decides anything
        expected = (
            request.expected_next_sequence if request.HasField("expected_next_sequence") else None
        )
        try:
            out = self.store.append(request.run_id, request.records, request.batch_id, expected)
        except (StoreError, sqlite3.Error) as exc:
            outcome = "rejected" if isinstance(exc, StoreError) else "failed"
            self.metrics.batches.labels(outcome=outcome).inc()
            _abort_store(context, exc)
        self.metrics.append_seconds.observe(time.perf_counter() - started)
        if out.duplicate:
            self.metrics.batches.labels(outcome="duplicate").inc()
        else:
            self.metrics.batches.labels(outcome="stored").inc()
            self.metrics.count_records(out.kinds)
            self.metrics.head_sequence.set(out.head_seq)
        return pb.AppendRecordsResponse(
            first_sequence=out.first_seq,
            count=out.count,
            head=_head_pb(out.head_seq, out.head_hash),
            duplicate=out.duplicate,
        )

    # -- reads -----------------------------------------------------------------------

    def GetHead(
        self,
        request: pb.GetHeadRequest,
        context: grpc.ServicerContext,
    ) -> pb.GetHeadResponse:
        seq, digest = self.store.head()
        return pb.GetHeadResponse(head=_head_pb(seq, digest), record_format=RECORD_FORMAT)

    def _batches(self, rows: Iterable[StoredRow]) -> Iterator[pb.RecordBatch]:
        max_records = self.config.stream_batch_records
        max_bytes = self.config.stream_batch_bytes
        batch: list[pb.StoredRecord] = []
        size = 0
        for row in rows:
            try:
                batch.append(
                    pb.StoredRecord(
                        sequence=row.seq,
                        run_id=row.run_id,
                        tick=row.tick,
                        kind=row.kind,
                        content_type=row.content_type,
                        payload=row.payload,
                        hash=row.hash,
                    )
                )
            except (TypeError, ValueError):
                raise CorruptRecordError(
                    f"stored record {row.seq} has a field of the wrong type (it was altered "
                    "outside the service); run VerifyChain"
                ) from None
            size += len(row.payload) + 128
            if len(batch) >= max_records or size >= max_bytes:
                yield pb.RecordBatch(records=batch)
                batch, size = [], 0
        if batch:
            yield pb.RecordBatch(records=batch)

    def QueryRecords(
        self,
        request: pb.QueryRecordsRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[pb.RecordBatch]:
        kinds = _check_filters(context, request.run_id, request.kinds)
        from_tick = request.from_tick if request.HasField("from_tick") else None
        to_tick = request.to_tick if request.HasField("to_tick") else None
        if from_tick is not None and to_tick is not None and from_tick > to_tick:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"from_tick {from_tick} is after to_tick {to_tick}",
            )
        if request.to_sequence and request.from_sequence > request.to_sequence:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"from_sequence {request.from_sequence} is after to_sequence {request.to_sequence}",
            )
        rows = self.store.query(
            run_id=request.run_id,
            kinds=kinds,
            from_tick=from_tick,
            to_tick=to_tick,
            from_seq=request.from_sequence,
            to_seq=request.to_sequence,
            limit=request.limit,
        )
        try:
            yield from self._batches(rows)
        except (StoreError, sqlite3.Error) as exc:
            _abort_store(context, exc)

    def FollowRecords(
        self,
        request: pb.FollowRecordsRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[pb.RecordBatch]:
        kinds = _check_filters(context, request.run_id, request.kinds)
        stop = threading.Event()
        with self._followers_lock:
            if self._followers >= self.config.max_followers:
                _abort(
                    context,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"too many followers (limit {self.config.max_followers}); close one",
                )
            self._followers += 1
            self._stops.add(stop)
            self.metrics.followers.set(self._followers)

        def on_done() -> None:
            stop.set()
            self.store.wake()

        context.add_callback(on_done)
        try:
            cursor = request.from_sequence or self.store.head()[0] + 1
            while not stop.is_set() and not self.store.closed:
                head = self.store.head()[0]
                if head < cursor:
                    self.store.wait_beyond(cursor - 1, stop)
                    continue
                # Records up to `head` are committed, so one query sees all of them.
                rows = self.store.query(
                    run_id=request.run_id, kinds=kinds, from_seq=cursor, to_seq=head
                )
                for batch in self._batches(rows):
                    if stop.is_set():
                        return
                    yield batch
                cursor = head + 1
        except StoreClosedError:
            return
        except (StoreError, sqlite3.Error) as exc:
            _abort_store(context, exc)
        finally:
            with self._followers_lock:
                self._followers -= 1
                self._stops.discard(stop)
                self.metrics.followers.set(self._followers)

    def VerifyChain(
        self,
        request: pb.VerifyChainRequest,
        context: grpc.ServicerContext,
    ) -> pb.VerifyChainResponse:
        if request.to_sequence and request.from_sequence > request.to_sequence:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"from_sequence {request.from_sequence} is after to_sequence {request.to_sequence}",
            )
        if request.expected_hash and len(request.expected_hash) != 32:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"expected_hash must be 32 bytes, got {len(request.expected_hash)}",
            )
        head = self.store.head()[0]
        if request.from_sequence > max(head, 1):
            _abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                f"from_sequence {request.from_sequence} is beyond the head ({head})",
            )
        try:
            res = self.store.verify(
                request.from_sequence, request.to_sequence, bytes(request.expected_hash)
            )
        except (StoreError, sqlite3.Error) as exc:
            _abort_store(context, exc)
        if not res.ok:
            log.warning("chain verification failed: %s", res.reason)
        return pb.VerifyChainResponse(
            ok=res.ok,
            from_sequence=res.from_seq,
            to_sequence=res.to_seq,
            records_checked=res.checked,
            hash=res.hash,
            first_bad_sequence=res.first_bad,
            fault=pb.ChainFault.Name(res.fault),
            reason=res.reason,
        )

    def ListRuns(
        self,
        request: pb.ListRunsRequest,
        context: grpc.ServicerContext,
    ) -> pb.ListRunsResponse:
        try:
            runs = self.store.runs(request.limit)
        except (StoreError, sqlite3.Error) as exc:
            _abort_store(context, exc)
        return pb.ListRunsResponse(
            runs=[
                pb.RunSummary(
                    run_id=r[0],
                    first_sequence=r[1],
                    last_sequence=r[2],
                    record_count=r[3],
                    min_tick=r[4],
                    max_tick=r[5],
                )
                for r in runs
            ]
        )


def create_server(
    address: str, *, auth: TokenStore | None, config: TelemetryConfig | None = None
) -> BoundServer:
    """Open the store and start a telemetry server on `address` ("127.0.0.1:0",
    "unix:/path"); the servicer is ``bound.servicers[SERVICE_NAME]``.

    `config` is required in practice (it names the database file); raises ConfigError
    when missing, or when the database cannot be opened or written.
    """
    if config is None:
        raise ConfigError("the telemetry service needs a config naming its database (--db)")
    store = Store(
        config.db_path,
        synchronous=config.synchronous,
        max_batch_records=config.max_batch_records,
        max_payload_bytes=config.max_payload_bytes,
        max_batch_bytes=config.max_batch_bytes,
    )
    registry = service_registry()
    metrics = Metrics(registry)
    try:
        if config.verify_on_start:
            res = store.verify()
            if not res.ok:
                raise ConfigError(
                    f"telemetry database {config.db_path}: chain verification failed: {res.reason}"
                )
            log.info("chain verified: %d records", res.checked)
        servicer = TelemetryServicer(store, config, metrics)
        binding = ServiceBinding(
            add=lambda server: _add_servicer(servicer, server),
            full_name=SERVICE_NAME,
            methods=ROLE_TABLE,
            servicer=servicer,
        )
        # Append payloads may total max_batch_bytes; leave room for the framing.
        max_message = max(64 * 1024 * 1024, config.max_batch_bytes + 4 * 1024 * 1024)
        bound = build_server(
            address,
            [binding],
            auth=auth,
            max_workers=config.max_workers,
            max_message_bytes=max_message,
            registry=registry,
        )
    except BaseException:
        store.close()
        raise
    bound.on_stop.append(servicer.close)
    seq, _ = store.head()
    log.info("telemetry database %s: head at sequence %d", config.db_path, seq)
    return bound
