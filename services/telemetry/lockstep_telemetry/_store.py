"""The SQLite store: one writer, append-only records, a hash chain per database.

Layout (created with sqlite-utils; appends use the raw connection's ``executemany`` on
the hot path because sqlite-utils' ``insert_all`` rebuilds a dict per row, which costs
more than the hashing):

- ``records(seq INTEGER PRIMARY KEY, run_id, tick, kind, content_type, payload, hash)``:
  one row per record, never updated or deleted by the service; triggers refuse UPDATE and
  DELETE as a second line of defence (tamper evidence is the chain itself).
- ``batches(batch_id PRIMARY KEY, run_id, first_seq, count, digest)``: the batch ids seen,
  so a retried batch is answered from its first attempt.
- ``runs(run_id PRIMARY KEY, first_seq, last_seq, record_count, min_tick, max_tick)``: a
  summary maintained in the append transaction, so ListRuns never scans records.
- ``meta(key PRIMARY KEY, value)``: schema version and record format.

Each append runs in one ``BEGIN IMMEDIATE`` transaction that re-reads the chain tail
inside the transaction, so even a second process writing the same file (a mistake) could
not fork the chain: it would continue it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import struct
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import sqlite_utils

from lockstep import faults
from lockstep.errors import ConfigError, LockstepError
from lockstep_telemetry._chain import (
    BATCH_DIGEST_TAG,
    GENESIS,
    RECORD_FORMAT,
    encode_record,
)

__all__ = [
    "AppendOutcome",
    "BatchConflictError",
    "CorruptRecordError",
    "InvalidRecordError",
    "LimitExceededError",
    "RecordLike",
    "SequenceMismatchError",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoredRow",
    "VerifyResult",
]

log = logging.getLogger("lockstep.telemetry.store")
# Fault points (docs/faults.md): a failing or full disk under the append transaction, only
# when LOCKSTEP_FAULTS names a plan; None otherwise (nothing is checked).
_FAULTS = faults.injector("telemetry")

SCHEMA_VERSION = "1"
KIND_RE = re.compile(r"[a-z0-9_.\-]{1,64}\Z")
MAX_RUN_ID = 128
MAX_CONTENT_TYPE = 128
MAX_BATCH_ID = 128
MAX_TICK = 2**63 - 1

_PREFIX = struct.Struct("<BQ")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")

# Fault kinds, equal to the proto's ChainFault numbers.
FAULT_NONE = 0
FAULT_HASH_MISMATCH = 1
FAULT_SEQUENCE_GAP = 2
FAULT_ANCHOR_MISMATCH = 3
FAULT_TRUNCATED = 4
FAULT_MALFORMED = 5


class StoreError(LockstepError):
    """Base of the store's refusals; each carries its gRPC status (lockstep.status maps it)."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class InvalidRecordError(StoreError):
    """A field is malformed (INVALID_ARGUMENT)."""

    code: ClassVar[str] = "INVALID_ARGUMENT"


class LimitExceededError(StoreError):
    """A batch or payload is larger than the configured bound (RESOURCE_EXHAUSTED)."""

    code: ClassVar[str] = "RESOURCE_EXHAUSTED"


class BatchConflictError(StoreError):
    """A batch id was reused for different records (ALREADY_EXISTS)."""

    code: ClassVar[str] = "ALREADY_EXISTS"


class SequenceMismatchError(StoreError):
    """expected_next_sequence does not hold (FAILED_PRECONDITION)."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class CorruptRecordError(StoreError):
    """A stored row cannot be read back as a record: it was altered (DATA_LOSS)."""

    code: ClassVar[str] = "DATA_LOSS"


class StoreClosedError(StoreError):
    """The store was closed (UNAVAILABLE)."""

    code: ClassVar[str] = "UNAVAILABLE"


class RecordLike(Protocol):
    """What append needs from a record (the proto ``Record`` fits)."""

    @property
    def tick(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def payload(self) -> bytes: ...
    @property
    def content_type(self) -> str: ...


@dataclass(frozen=True)
class AppendOutcome:
    """Where a batch went: sequences first_seq .. first_seq + count - 1."""

    first_seq: int
    count: int
    head_seq: int
    head_hash: bytes
    duplicate: bool
    kinds: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class StoredRow:
    """A record as stored."""

    seq: int
    run_id: str
    tick: int
    kind: str
    content_type: str
    payload: bytes
    hash: bytes


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain verification (fault numbers follow the proto's ChainFault)."""

    ok: bool
    from_seq: int
    to_seq: int
    checked: int
    hash: bytes
    first_bad: int = 0
    fault: int = FAULT_NONE
    reason: str = ""


def check_run_id(run_id: str) -> None:
    """Raise InvalidRecordError unless `run_id` is 1..128 printable ASCII characters."""
    if not run_id:
        raise InvalidRecordError("run_id is empty")
    if len(run_id) > MAX_RUN_ID or not run_id.isascii() or not run_id.isprintable():
        raise InvalidRecordError(
            f"run_id {run_id[:40]!r} must be 1..{MAX_RUN_ID} printable ASCII characters"
        )


def check_kind(kind: str) -> None:
    """Raise InvalidRecordError unless `kind` is a lowercase dotted name."""
    if not KIND_RE.match(kind):
        raise InvalidRecordError(
            f"kind {kind[:80]!r} must match [a-z0-9_.-]{{1,64}}, e.g. 'tick.digest'"
        )


class Store:
    """The telemetry database. Thread-safe: one lock serialises writers; each read opens
    its own read-only connection (WAL lets readers run beside the writer)."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch_records: int = 10_000,
        max_payload_bytes: int = 1024 * 1024,
        max_batch_bytes: int = 32 * 1024 * 1024,
    ) -> None:
        self.path = Path(path)
        self.max_batch_records = max_batch_records
        self.max_payload_bytes = max_payload_bytes
        self.max_batch_bytes = max_batch_bytes
        self._lock = threading.Lock()
        self._changed = threading.Condition(threading.Lock())
        self._closed = False
        self._conn = self._open(synchronous)
        seq, digest = self._tail(self._conn)
        self._head_seq = seq
        self._head_hash = digest
        # The highest sequence this process has seen stored: a tail below it is truncation.
        self._high_water = seq

    # -- opening -------------------------------------------------------------------

    def _open(self, synchronous: str) -> sqlite3.Connection:
        path = self.path
        if path.is_dir():
            raise ConfigError(f"telemetry database {path} is a directory")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create directory {path.parent} for the telemetry database: {exc.strerror}"
            ) from None
        try:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open telemetry database {path}: {exc}") from None
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            db = sqlite_utils.Database(conn)
            db.enable_wal()
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"telemetry database {path}: cannot enable WAL mode "
                    f"(journal_mode is {mode!r}; is it on a network filesystem?)"
                )
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            self._create_schema(db)
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError(f"cannot use telemetry database {path}: {exc}") from None
        except ConfigError:
            conn.close()
            raise
        return conn

    def _create_schema(self, db: sqlite_utils.Database) -> None:
        conn = db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
            stored = {row[0]: row[1] for row in conn.execute("SELECT key, value FROM meta")}
            if stored and stored.get("schema_version") != SCHEMA_VERSION:
                raise ConfigError(
                    f"telemetry database {self.path} has schema version "
                    f"{stored.get('schema_version')!r}; this service reads {SCHEMA_VERSION!r}"
                )
            if not stored:
                conn.executemany(
                    "INSERT INTO meta(key, value) VALUES (?, ?)",
                    [
                        ("schema_version", SCHEMA_VERSION),
                        ("record_format", str(RECORD_FORMAT)),
                    ],
                )
            records = db.table("records")
            records.create(
                {
                    "seq": int,
                    "run_id": str,
                    "tick": int,
                    "kind": str,
                    "content_type": str,
                    "payload": bytes,
                    "hash": bytes,
                },
                pk="seq",
                not_null={"run_id", "tick", "kind", "content_type", "payload", "hash"},
                if_not_exists=True,
            )
            # (run_id) indexes (run_id, seq): a run's records in sequence order.
            records.create_index(["run_id"], index_name="records_by_run", if_not_exists=True)
            db.table("batches").create(
                {"batch_id": str, "run_id": str, "first_seq": int, "count": int, "digest": bytes},
                pk="batch_id",
                if_not_exists=True,
            )
            db.table("runs").create(
                {
                    "run_id": str,
                    "first_seq": int,
                    "last_seq": int,
                    "record_count": int,
                    "min_tick": int,
                    "max_tick": int,
                },
                pk="run_id",
                if_not_exists=True,
            )
            for op in ("UPDATE", "DELETE"):
                conn.execute(
                    f"CREATE TRIGGER IF NOT EXISTS records_no_{op.lower()} BEFORE {op} ON records "
                    "BEGIN SELECT RAISE(ABORT, 'telemetry records are append-only'); END"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- state -----------------------------------------------------------------------

    @staticmethod
    def _tail(conn: sqlite3.Connection) -> tuple[int, bytes]:
        row = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return 0, GENESIS
        digest = row[1] if isinstance(row[1], bytes) else b""
        return int(row[0]), digest

    def head(self) -> tuple[int, bytes]:
        """(last sequence, its hash) as last committed by this process, or read at start."""
        with self._changed:
            return self._head_seq, self._head_hash

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop accepting appends, wake every follower, close the writer connection."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- appending -------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        records: Sequence[RecordLike],
        batch_id: str = "",
        expected_next: int | None = None,
    ) -> AppendOutcome:
        """Store `records` of one run atomically; see AppendRecordsRequest for semantics."""
        check_run_id(run_id)
        if len(batch_id) > MAX_BATCH_ID:
            raise InvalidRecordError(f"batch_id is longer than {MAX_BATCH_ID} characters")
        n = len(records)
        if n == 0:
            raise InvalidRecordError("a batch needs at least one record")
        if n > self.max_batch_records:
            raise LimitExceededError(
                f"batch of {n} records exceeds the limit of "
                f"{self.max_batch_records} records per call"
            )
        with self._lock:
            if self._closed:
                raise StoreClosedError("the telemetry store is closed")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                if _FAULTS is not None:
                    error = _FAULTS.store_error(max(r.tick for r in records))
                    if error is not None:
                        raise sqlite3.OperationalError(error)
                outcome = self._append_locked(conn, run_id, records, batch_id, expected_next)
                if outcome.duplicate:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if not outcome.duplicate:
            with self._changed:
                self._head_seq = outcome.head_seq
                self._head_hash = outcome.head_hash
                self._high_water = max(self._high_water, outcome.head_seq)
                self._changed.notify_all()
        return outcome

    def _append_locked(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        records: Sequence[RecordLike],
        batch_id: str,
        expected_next: int | None,
    ) -> AppendOutcome:
        seq, prev = self._tail(conn)
        if len(prev) != 32:
            raise StoreError(f"stored hash of record {seq} is malformed; run VerifyChain")
        first = seq + 1
        run_b = run_id.encode()
        run_part = _U32.pack(len(run_b)) + run_b
        digest = hashlib.sha256(BATCH_DIGEST_TAG)
        sha256 = hashlib.sha256
        pack_prefix = _PREFIX.pack
        pack_tick = _I64.pack
        pack_len = _U32.pack
        max_payload = self.max_payload_bytes
        # (kind, content_type) -> validated, length-prefixed encoding; batches repeat few.
        middles: dict[tuple[str, str], bytes] = {}
        kind_counts: dict[str, int] = {}
        rows: list[tuple[int, str, int, str, str, bytes, bytes]] = []
        total = 0
        min_tick = MAX_TICK
        max_tick = -1
        for i, rec in enumerate(records):
            tick = rec.tick
            kind = rec.kind
            ctype = rec.content_type
            payload = rec.payload
            key = (kind, ctype)
            middle = middles.get(key)
            if middle is None:
                try:
                    check_kind(kind)
                except InvalidRecordError as exc:
                    raise InvalidRecordError(f"record {i}: {exc}") from None
                if len(ctype) > MAX_CONTENT_TYPE or not ctype.isprintable():
                    raise InvalidRecordError(
                        f"record {i}: content_type must be at most "
                        f"{MAX_CONTENT_TYPE} printable characters"
                    )
                kb = kind.encode()
                cb = ctype.encode()
                middle = pack_len(len(kb)) + kb + pack_len(len(cb)) + cb
                middles[key] = middle
            if tick < 0:
                raise InvalidRecordError(f"record {i}: tick {tick} is negative")
            size = len(payload)
            if size > max_payload:
                raise LimitExceededError(
                    f"record {i}: payload of {size} bytes exceeds the limit of {max_payload} bytes"
                )
            total += size
            if tick < min_tick:
                min_tick = tick
            if tick > max_tick:
                max_tick = tick
            kind_counts[kind] = kind_counts.get(kind, 0) + 1
            seq += 1
            body = pack_tick(tick) + run_part + middle + pack_len(size) + payload
            digest.update(body)
            prev = sha256(prev + pack_prefix(RECORD_FORMAT, seq) + body).digest()
            rows.append((seq, run_id, tick, kind, ctype, payload, prev))
        if total > self.max_batch_bytes:
            raise LimitExceededError(
                f"batch payloads total {total} bytes, over the limit of "
                f"{self.max_batch_bytes} bytes per call"
            )
        batch_digest = digest.digest()
        if batch_id:
            found = conn.execute(
                "SELECT run_id, first_seq, count, digest FROM batches WHERE batch_id = ?",
                (batch_id,),
            ).fetchone()
            if found is not None:
                if found[0] != run_id or found[2] != len(rows) or found[3] != batch_digest:
                    raise BatchConflictError(
                        f"batch_id {batch_id!r} was already used for different records "
                        f"(run {found[0]!r}, {found[2]} records from sequence {found[1]})"
                    )
                last = int(found[1]) + int(found[2]) - 1
                row = conn.execute("SELECT hash FROM records WHERE seq = ?", (last,)).fetchone()
                return AppendOutcome(
                    int(found[1]),
                    int(found[2]),
                    last,
                    row[0] if row is not None else b"",
                    duplicate=True,
                )
        if expected_next is not None and expected_next != first:
            raise SequenceMismatchError(
                f"expected_next_sequence is {expected_next} but the next sequence is {first}"
            )
        conn.executemany(
            "INSERT INTO records(seq, run_id, tick, kind, content_type, payload, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if batch_id:
            conn.execute(
                "INSERT INTO batches(batch_id, run_id, first_seq, count, digest) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch_id, run_id, first, len(rows), batch_digest),
            )
        conn.execute(
            "INSERT INTO runs(run_id, first_seq, last_seq, record_count, min_tick, max_tick) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(run_id) DO UPDATE SET "
            "last_seq = excluded.last_seq, record_count = record_count + excluded.record_count, "
            "min_tick = min(min_tick, excluded.min_tick), "
            "max_tick = max(max_tick, excluded.max_tick)",
            (run_id, first, seq, len(rows), min_tick, max_tick),
        )
        return AppendOutcome(
            first, len(rows), seq, prev, duplicate=False, kinds=tuple(sorted(kind_counts.items()))
        )

    # -- reading ---------------------------------------------------------------------

    def reader(self) -> sqlite3.Connection:
        """A new read-only connection (the caller closes it)."""
        if self._closed:
            raise StoreClosedError("the telemetry store is closed")
        uri = self.path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def query(
        self,
        *,
        run_id: str = "",
        kinds: Sequence[str] = (),
        from_tick: int | None = None,
        to_tick: int | None = None,
        from_seq: int = 1,
        to_seq: int = 0,
        limit: int = 0,
        page: int = 1024,
    ) -> Iterator[StoredRow]:
        """Rows matching every filter, in sequence order, read page by page (so no read
        snapshot stays open for a whole long stream)."""
        where = ["seq >= ?"]
        base: list[object] = []
        if run_id:
            where.append("run_id = ?")
            base.append(run_id)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            base.extend(kinds)
        if from_tick is not None:
            where.append("tick >= ?")
            base.append(from_tick)
        if to_tick is not None:
            where.append("tick <= ?")
            base.append(to_tick)
        if to_seq:
            where.append("seq <= ?")
            base.append(to_seq)
        sql = (
            "SELECT seq, run_id, tick, kind, content_type, payload, hash FROM records "
            f"WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        )
        cursor = max(from_seq, 1)
        remaining = limit if limit > 0 else -1
        conn = self.reader()
        try:
            while remaining != 0:
                want = page if remaining < 0 else min(page, remaining)
                cur = conn.execute(sql, [cursor, *base, want])
                got = 0
                while rows := cur.fetchmany(64):
                    for row in rows:
                        got += 1
                        yield StoredRow(*row)
                    cursor = int(rows[-1][0]) + 1
                if remaining > 0:
                    remaining -= got
                if got < want:
                    return
        finally:
            conn.close()

    def wait_beyond(self, seq: int, stop: threading.Event, timeout: float = 5.0) -> int:
        """Block until the head passes `seq`, `stop` is set, the store closes, or `timeout`
        passes; return the head sequence."""
        with self._changed:
            if self._head_seq <= seq and not stop.is_set() and not self._closed:
                self._changed.wait(timeout)
            return self._head_seq

    def wake(self) -> None:
        """Wake every waiting follower (after setting its stop event)."""
        with self._changed:
            self._changed.notify_all()

    def runs(self, limit: int = 0) -> list[tuple[str, int, int, int, int, int]]:
        """(run_id, first_seq, last_seq, record_count, min_tick, max_tick) by first_seq."""
        conn = self.reader()
        try:
            rows = conn.execute(
                "SELECT run_id, first_seq, last_seq, record_count, min_tick, max_tick FROM runs "
                "ORDER BY first_seq LIMIT ?",
                (limit if limit > 0 else -1,),
            ).fetchall()
        finally:
            conn.close()
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]

    # -- verification ----------------------------------------------------------------

    def verify(
        self, from_seq: int = 0, to_seq: int = 0, expected_hash: bytes = b""
    ) -> VerifyResult:
        """Recompute h over [from_seq, to_seq] and compare it with the stored hashes."""
        conn = self.reader()
        try:
            # One read transaction: the whole verification sees one snapshot.
            conn.execute("BEGIN")
            return self._verify(conn, max(from_seq, 1), to_seq, expected_hash)
        finally:
            conn.close()

    def _verify(
        self, conn: sqlite3.Connection, start: int, to_seq: int, expected_hash: bytes
    ) -> VerifyResult:
        tail = conn.execute("SELECT max(seq) FROM records").fetchone()[0]
        tail = int(tail) if tail is not None else 0
        high = self._high_water
        end = tail if to_seq == 0 else min(to_seq, tail)
        if start == 1:
            prev = GENESIS
        else:
            row = conn.execute("SELECT hash FROM records WHERE seq = ?", (start - 1,)).fetchone()
            if row is None:
                return VerifyResult(
                    False,
                    start,
                    end,
                    0,
                    b"",
                    start - 1,
                    FAULT_SEQUENCE_GAP,
                    f"record {start - 1} (the starting point) is missing",
                )
            if not isinstance(row[0], bytes) or len(row[0]) != 32:
                return VerifyResult(
                    False,
                    start,
                    end,
                    0,
                    b"",
                    start - 1,
                    FAULT_MALFORMED,
                    f"record {start - 1}: stored hash is not 32 bytes",
                )
            prev = row[0]
        expected = start
        checked = 0
        cur = conn.execute(
            "SELECT seq, run_id, tick, kind, content_type, payload, hash FROM records "
            "WHERE seq >= ? AND seq <= ? ORDER BY seq",
            (start, end),
        )
        while rows := cur.fetchmany(512):
            for seq, run_id, tick, kind, ctype, payload, stored in rows:
                if seq != expected:
                    return VerifyResult(
                        False,
                        start,
                        end,
                        checked,
                        prev,
                        expected,
                        FAULT_SEQUENCE_GAP,
                        f"record {expected} is missing: the next stored record is {seq}",
                    )
                if isinstance(payload, str):
                    # Someone wrote text into the blob column; hash its UTF-8 bytes so the
                    # report says what happened (a content mismatch) at this sequence.
                    payload = payload.encode()
                if not (
                    isinstance(run_id, str)
                    and isinstance(tick, int)
                    and isinstance(kind, str)
                    and isinstance(ctype, str)
                    and isinstance(payload, bytes)
                ):
                    return VerifyResult(
                        False,
                        start,
                        end,
                        checked,
                        prev,
                        seq,
                        FAULT_MALFORMED,
                        f"record {seq}: a stored field has the wrong type (record altered)",
                    )
                if not isinstance(stored, bytes) or len(stored) != 32:
                    return VerifyResult(
                        False,
                        start,
                        end,
                        checked,
                        prev,
                        seq,
                        FAULT_MALFORMED,
                        f"record {seq}: stored hash is not 32 bytes",
                    )
                try:
                    record = encode_record(seq, run_id, tick, kind, ctype, payload)
                except (struct.error, UnicodeEncodeError) as exc:
                    return VerifyResult(
                        False,
                        start,
                        end,
                        checked,
                        prev,
                        seq,
                        FAULT_MALFORMED,
                        f"record {seq} cannot be encoded: {exc}",
                    )
                computed = hashlib.sha256(prev + record).digest()
                if computed != stored:
                    return VerifyResult(
                        False,
                        start,
                        end,
                        checked,
                        prev,
                        seq,
                        FAULT_HASH_MISMATCH,
                        f"record {seq}: recomputed hash {computed.hex()[:16]}... differs from "
                        f"the stored hash {stored.hex()[:16]}... (the record or an earlier "
                        "hash was altered)",
                    )
                prev = computed
                checked += 1
                expected += 1
        if expected <= end:
            return VerifyResult(
                False,
                start,
                end,
                checked,
                prev,
                expected,
                FAULT_SEQUENCE_GAP,
                f"records {expected}..{end} are missing",
            )
        wanted_end = to_seq if to_seq else high
        if wanted_end > tail and high > tail:
            return VerifyResult(
                False,
                start,
                end,
                checked,
                prev,
                tail + 1,
                FAULT_TRUNCATED,
                f"records {tail + 1}..{high} were stored by this service but are gone "
                "(chain truncated)",
            )
        if expected_hash and expected_hash != prev:
            return VerifyResult(
                False,
                start,
                end,
                checked,
                prev,
                end,
                FAULT_ANCHOR_MISMATCH,
                f"the recomputed hash at record {end} ({prev.hex()[:16]}...) differs from the "
                f"expected hash ({expected_hash.hex()[:16]}...): the chain was rewritten at or "
                f"before record {end}",
            )
        return VerifyResult(True, start, end, checked, prev)
