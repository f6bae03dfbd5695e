"""The packed pool wire, batch format v1 (docs/wire.md): codec and validation.

The fixed-size tables are numpy structured arrays, so neither side builds a Python object
per agent to read or write a batch. `BatchError` carries the byte offset of the first
problem; the pool maps it to INVALID_ARGUMENT.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "CREATE_ROW",
    "RESULT_ROW",
    "STEP_ROW",
    "VERSION",
    "AgentSpec",
    "BatchError",
    "CreateBatch",
    "DestroyBatch",
    "Fault",
    "InferCall",
    "LogLine",
    "Result",
    "Results",
    "StepBatch",
    "check_records",
    "pack_create",
    "pack_destroy",
    "pack_results",
    "pack_step",
    "parse_create",
    "parse_destroy",
    "parse_results",
    "parse_step",
    "result_faults",
    "result_rows",
    "sends_of",
]

VERSION = 1
MAGIC_STEP = b"LSSQ"
MAGIC_CREATE = b"LSCQ"
MAGIC_DESTROY = b"LSDQ"
MAGIC_RESULTS = b"LSRS"

_STEP_HEAD = struct.Struct("<4sHHIIq")  # 24
_CREATE_HEAD = struct.Struct("<4sHHIIqQ")  # 32
_DESTROY_HEAD = struct.Struct("<4sHHIIq")  # 24
_RESULTS_HEAD = struct.Struct("<4sHHII")  # 16
_RECORD_HEAD = struct.Struct("<IBBHqqIHH")  # ABI v1 message record header, 32 bytes
_LOG_HEAD = struct.Struct("<iI")
_INFER_HEAD = struct.Struct("<qHHI")
_SEND_HEAD = struct.Struct("<IH")

STEP_ROW = np.dtype([("seq", "<u8"), ("off", "<u8"), ("len", "<u4"), ("count", "<u4")])
CREATE_ROW = np.dtype(
    [
        ("seq", "<u8"),
        ("fuel", "<u8"),
        ("pages", "<u4"),
        ("sends", "<u4"),
        ("message_bytes", "<u4"),
        ("logs", "<u4"),
        ("off", "<u8"),
        ("name_len", "<u2"),
        ("module_len", "<u2"),
        ("args_len", "<u4"),
    ]
)
RESULT_ROW = np.dtype(
    [
        ("seq", "<u8"),
        ("code", "<i4"),
        ("fault_kind", "<u4"),
        ("fuel", "<u8"),
        ("send_count", "<u4"),
        ("refused", "<u4"),
        ("off", "<u8"),
        ("sends_len", "<u4"),
        ("logs_len", "<u4"),
        ("infers_len", "<u4"),
        ("fault_len", "<u4"),
        ("log_count", "<u2"),
        ("infer_count", "<u2"),
        ("reserved", "<u4"),
    ]
)
assert STEP_ROW.itemsize == 24 and CREATE_ROW.itemsize == 48 and RESULT_ROW.itemsize == 64

Table = npt.NDArray[np.void]


class BatchError(ValueError):
    """A packed buffer that does not follow docs/wire.md; `offset` is where it breaks."""

    def __init__(self, what: str, offset: int, detail: str) -> None:
        super().__init__(f"bad {what} batch at byte {offset}: {detail}")
        self.offset = offset


def _header(
    buf: bytes | bytearray | memoryview, head: struct.Struct, magic: bytes, what: str
) -> tuple[int, ...]:
    if len(buf) < head.size:
        raise BatchError(
            what,
            len(buf),
            f"buffer of {len(buf)} bytes is shorter than its {head.size}-byte header",
        )
    fields = head.unpack_from(buf)
    if fields[0] != magic:
        raise BatchError(what, 0, f"magic {fields[0]!r}, expected {magic!r}")
    if fields[1] != VERSION:
        raise BatchError(what, 4, f"version {fields[1]}, this side reads version {VERSION}")
    return fields


def _check_table(
    buf: bytes | bytearray | memoryview, start: int, count: int, row: int, what: str
) -> None:
    end = start + count * row
    if end > len(buf):
        raise BatchError(
            what, len(buf), f"table of {count} rows needs {end} bytes, buffer has {len(buf)}"
        )


def _table(
    buf: bytes | bytearray | memoryview,
    start: int,
    count: int,
    dtype: np.dtype[np.void],
    what: str,
) -> Table:
    _check_table(buf, start, count, dtype.itemsize, what)
    return np.frombuffer(buf, dtype=dtype, count=count, offset=start)


def _check_tiling(
    offs: npt.NDArray[np.uint64],
    lens: npt.NDArray[np.uint64],
    data_start: int,
    size: int,
    row_size: int,
    table_start: int,
    what: str,
) -> None:
    """Each row's data starts where the previous row's ended; the last ends at `size`."""
    n = len(offs)
    expect = np.empty(n, dtype=np.uint64)
    if n:
        expect[0] = data_start
        np.cumsum(lens[:-1], out=expect[1:])
        expect[1:] += np.uint64(data_start)
        bad = np.flatnonzero(offs != expect)
        if bad.size:
            i = int(bad[0])
            raise BatchError(
                what,
                table_start + i * row_size + 8,
                f"row {i} data offset {int(offs[i])}, expected {int(expect[i])}",
            )
        end = int(expect[-1]) + int(lens[-1])
    else:
        end = data_start
    if end != size:
        raise BatchError(what, min(end, size), f"data area ends at {end}, buffer has {size} bytes")


def check_records(buf: bytes, start: int, length: int, count: int, what: str = "step") -> None:
    """Check that buf[start:start+length] is exactly `count` ABI v1 message records."""
    pos, end = start, start + length
    for i in range(count):
        if pos + 32 > end:
            raise BatchError(what, pos, f"record {i} header runs past the end of its inbox")
        total, _kind, _r, s_len, _t, _c, p_len, d_len, _r2 = _RECORD_HEAD.unpack_from(buf, pos)
        if total != 32 + s_len + d_len + p_len:
            raise BatchError(what, pos, f"record {i} length {total} != 32 + S + D + P")
        if pos + total > end:
            raise BatchError(what, pos, f"record {i} runs past the end of its inbox")
        pos += total
    if pos != end:
        raise BatchError(what, pos, f"{end - pos} bytes after the last of {count} records")


# ---------------------------------------------------------------------------- step
@dataclass(frozen=True)
class StepBatch:
    """A parsed step request: the table is a read-only view of the buffer."""

    tick: int
    rows: Table
    buf: bytes

    def inbox(self, i: int) -> bytes:
        """Row i's message records (no batch header)."""
        row = self.rows[i]
        off = int(row["off"])
        return self.buf[off : off + int(row["len"])]


def pack_step(
    tick: int,
    seqs: Sequence[int] | npt.NDArray[np.uint64],
    inboxes: Sequence[bytes],
    counts: Sequence[int] | npt.NDArray[np.uint32],
) -> bytes:
    """A step request; inboxes[i] holds row i's records back to back (b"" for none)."""
    n = len(seqs)
    rows = np.zeros(n, dtype=STEP_ROW)
    rows["seq"] = seqs
    lens = np.fromiter((len(b) for b in inboxes), dtype=np.uint64, count=n)
    rows["len"] = lens
    rows["count"] = counts
    start = _STEP_HEAD.size + n * STEP_ROW.itemsize
    if n:
        rows["off"][0] = start
        rows["off"][1:] = start + np.cumsum(lens[:-1])
    return b"".join((_STEP_HEAD.pack(MAGIC_STEP, VERSION, 0, n, 0, tick), rows.tobytes(), *inboxes))


def parse_step(buf: bytes, max_inbox_bytes: int | None = None) -> StepBatch:
    """Parse and fully validate a step request (records included)."""
    _m, _v, _r, count, _r2, tick = _header(buf, _STEP_HEAD, MAGIC_STEP, "step")
    head = _STEP_HEAD.size
    rows = _table(buf, head, count, STEP_ROW, "step")
    data_start = head + count * STEP_ROW.itemsize
    lens = rows["len"].astype(np.uint64)
    _check_tiling(rows["off"], lens, data_start, len(buf), STEP_ROW.itemsize, head, "step")
    seqs = rows["seq"]
    if count > 1:
        order = np.argsort(seqs, kind="stable")
        dup = np.flatnonzero(seqs[order][1:] == seqs[order][:-1])
        if dup.size:
            i = int(max(order[dup[0]], order[dup[0] + 1]))
            raise BatchError(
                "step",
                head + i * STEP_ROW.itemsize,
                f"row {i}: sequence {int(seqs[i])} appears twice",
            )
    if max_inbox_bytes is not None:
        big = np.flatnonzero(lens + 8 > max_inbox_bytes)
        if big.size:
            i = int(big[0])
            raise BatchError(
                "step",
                head + i * STEP_ROW.itemsize + 16,
                f"row {i}: inbox is {int(lens[i]) + 8} bytes, above the limit of {max_inbox_bytes}",
            )
    for i in map(int, np.flatnonzero((rows["count"] != 0) | (lens != 0))):
        row = rows[i]
        check_records(buf, int(row["off"]), int(row["len"]), int(row["count"]))
    return StepBatch(tick, rows, buf)


# ---------------------------------------------------------------------------- create
@dataclass(frozen=True)
class CreateBatch:
    """A parsed create request."""

    tick: int
    seed: int
    rows: Table
    buf: bytes

    def strings(self, i: int) -> tuple[str, str, bytes]:
        """(name, module hash, args) of row i."""
        row = self.rows[i]
        off, n, m, a = (
            int(row["off"]),
            int(row["name_len"]),
            int(row["module_len"]),
            int(row["args_len"]),
        )
        b = self.buf
        return (
            b[off : off + n].decode(),
            b[off + n : off + n + m].decode(),
            b[off + n + m : off + n + m + a],
        )


@dataclass(frozen=True)
class AgentSpec:
    """One agent of a create request (the orchestrator resolves every limit)."""

    seq: int
    name: str
    module_hash: str
    args: bytes = b""
    fuel: int = 0
    pages: int = 0
    sends: int = 0
    message_bytes: int = 0
    logs: int = 0


def pack_create(tick: int, seed: int, agents: Sequence[AgentSpec]) -> bytes:
    """A create request."""
    n = len(agents)
    rows = np.zeros(n, dtype=CREATE_ROW)
    blobs: list[bytes] = []
    pos = _CREATE_HEAD.size + n * CREATE_ROW.itemsize
    for i, a in enumerate(agents):
        name, module = a.name.encode(), a.module_hash.encode()
        if len(name) > 0xFFFF or len(module) > 0xFFFF:
            raise BatchError("create", 0, f"agent {i}: name or module hash too long")
        rows[i] = (
            a.seq,
            a.fuel,
            a.pages,
            a.sends,
            a.message_bytes,
            a.logs,
            pos,
            len(name),
            len(module),
            len(a.args),
        )
        blobs += (name, module, a.args)
        pos += len(name) + len(module) + len(a.args)
    return b"".join(
        (_CREATE_HEAD.pack(MAGIC_CREATE, VERSION, 0, n, 0, tick, seed), rows.tobytes(), *blobs)
    )


def parse_create(buf: bytes) -> CreateBatch:
    """Parse and validate a create request (layout only; names are the pool's business)."""
    _m, _v, _r, count, _r2, tick, seed = _header(buf, _CREATE_HEAD, MAGIC_CREATE, "create")
    head = _CREATE_HEAD.size
    rows = _table(buf, head, count, CREATE_ROW, "create")
    lens = (
        rows["name_len"].astype(np.uint64)
        + rows["module_len"].astype(np.uint64)
        + rows["args_len"].astype(np.uint64)
    )
    _check_tiling(
        rows["off"],
        lens,
        head + count * CREATE_ROW.itemsize,
        len(buf),
        CREATE_ROW.itemsize,
        head,
        "create",
    )
    out = CreateBatch(tick, seed, rows, buf)
    for i in range(count):
        try:
            out.strings(i)
        except UnicodeDecodeError:
            raise BatchError(
                "create", int(rows[i]["off"]), f"row {i}: name or module hash is not UTF-8"
            ) from None
    return out


# ---------------------------------------------------------------------------- destroy
@dataclass(frozen=True)
class DestroyBatch:
    """A parsed destroy request."""

    tick: int
    call_shutdown: bool
    seqs: npt.NDArray[np.uint64]


def pack_destroy(
    tick: int, seqs: Sequence[int] | npt.NDArray[np.uint64], call_shutdown: bool
) -> bytes:
    """A destroy request."""
    arr = np.asarray(seqs, dtype="<u8")
    return (
        _DESTROY_HEAD.pack(MAGIC_DESTROY, VERSION, int(call_shutdown), len(arr), 0, tick)
        + arr.tobytes()
    )


def parse_destroy(buf: bytes) -> DestroyBatch:
    """Parse and validate a destroy request."""
    _m, _v, flags, count, _r, tick = _header(buf, _DESTROY_HEAD, MAGIC_DESTROY, "destroy")
    if flags & ~1:
        raise BatchError("destroy", 6, f"unknown flags 0x{flags:x}")
    head = _DESTROY_HEAD.size
    if len(buf) != head + 8 * count:
        raise BatchError(
            "destroy",
            min(len(buf), head + 8 * count),
            f"{count} sequences need {head + 8 * count} bytes, buffer has {len(buf)}",
        )
    seqs = np.frombuffer(buf, dtype="<u8", count=count, offset=head)
    if count > 1:
        order = np.argsort(seqs, kind="stable")
        dup = np.flatnonzero(seqs[order][1:] == seqs[order][:-1])
        if dup.size:
            i = int(max(order[dup[0]], order[dup[0] + 1]))
            raise BatchError("destroy", head + 8 * i, f"sequence {int(seqs[i])} appears twice")
    return DestroyBatch(tick, bool(flags & 1), seqs)


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class LogLine:
    level: int
    text: bytes  # UTF-8


@dataclass(frozen=True)
class InferCall:
    request_id: int
    model: bytes
    input: bytes


@dataclass(frozen=True)
class Fault:
    kind: int
    detail: str
    entry_point: str


@dataclass
class Result:
    """One agent's call sequence, as the Python reference engine builds it."""

    seq: int
    code: int = 0
    fuel: int = 0
    sends: bytes = b""
    send_count: int = 0
    refused: int = 0
    logs: list[LogLine] | None = None
    infers: list[InferCall] | None = None
    fault: Fault | None = None


def pack_results(results: Sequence[Result]) -> bytes:
    """A results buffer (the Python reference; the native core writes the same bytes)."""
    n = len(results)
    rows = np.zeros(n, dtype=RESULT_ROW)
    blobs: list[bytes] = []
    pos = _RESULTS_HEAD.size + n * RESULT_ROW.itemsize
    for i, r in enumerate(results):
        logs = b"".join(_LOG_HEAD.pack(x.level, len(x.text)) + x.text for x in r.logs or ())
        infers = b"".join(
            _INFER_HEAD.pack(c.request_id, len(c.model), 0, len(c.input)) + c.model + c.input
            for c in r.infers or ()
        )
        fault = b""
        kind = 0
        if r.fault is not None:
            entry = r.fault.entry_point.encode()
            fault = struct.pack("<H", len(entry)) + entry + r.fault.detail.encode()
            kind = r.fault.kind
        rows[i] = (
            r.seq,
            r.code,
            kind,
            r.fuel,
            r.send_count,
            r.refused,
            pos,
            len(r.sends),
            len(logs),
            len(infers),
            len(fault),
            len(r.logs or ()),
            len(r.infers or ()),
            0,
        )
        blobs += (r.sends, logs, infers, fault)
        pos += len(r.sends) + len(logs) + len(infers) + len(fault)
    return b"".join((_RESULTS_HEAD.pack(MAGIC_RESULTS, VERSION, 0, n, 0), rows.tobytes(), *blobs))


@dataclass(frozen=True)
class Results:
    """A parsed results buffer: a numpy table plus accessors for the variable parts."""

    rows: Table
    buf: bytes

    def __len__(self) -> int:
        return len(self.rows)

    def data(self, i: int) -> tuple[int, int]:
        """(offset, total length) of row i's data."""
        r = self.rows[i]
        return int(r["off"]), int(r["sends_len"]) + int(r["logs_len"]) + int(r["infers_len"]) + int(
            r["fault_len"]
        )

    def sends(self, i: int) -> bytes:
        r = self.rows[i]
        off = int(r["off"])
        return self.buf[off : off + int(r["sends_len"])]

    def logs(self, i: int) -> list[LogLine]:
        r = self.rows[i]
        pos = int(r["off"]) + int(r["sends_len"])
        out = []
        for _ in range(int(r["log_count"])):
            level, n = _LOG_HEAD.unpack_from(self.buf, pos)
            pos += _LOG_HEAD.size
            out.append(LogLine(level, self.buf[pos : pos + n]))
            pos += n
        return out

    def infers(self, i: int) -> list[InferCall]:
        r = self.rows[i]
        pos = int(r["off"]) + int(r["sends_len"]) + int(r["logs_len"])
        out = []
        for _ in range(int(r["infer_count"])):
            rid, m, _res, n = _INFER_HEAD.unpack_from(self.buf, pos)
            pos += _INFER_HEAD.size
            out.append(InferCall(rid, self.buf[pos : pos + m], self.buf[pos + m : pos + m + n]))
            pos += m + n
        return out

    def fault(self, i: int) -> Fault | None:
        r = self.rows[i]
        if not int(r["fault_kind"]):
            return None
        pos = int(r["off"]) + int(r["sends_len"]) + int(r["logs_len"]) + int(r["infers_len"])
        end = pos + int(r["fault_len"])
        (n,) = struct.unpack_from("<H", self.buf, pos)
        entry = self.buf[pos + 2 : pos + 2 + n].decode("utf-8", "replace")
        return Fault(
            int(r["fault_kind"]), self.buf[pos + 2 + n : end].decode("utf-8", "replace"), entry
        )

    def result(self, i: int) -> Result:
        """Row i as a Python object (the slow, general path)."""
        r = self.rows[i]
        return Result(
            int(r["seq"]),
            int(r["code"]),
            int(r["fuel"]),
            self.sends(i),
            int(r["send_count"]),
            int(r["refused"]),
            self.logs(i),
            self.infers(i),
            self.fault(i),
        )


def result_rows(buf: bytes | bytearray | memoryview) -> Table:
    """The row table of a results buffer, read in place: header and table bounds checked,
    not the tiling of the variable parts (for a buffer this side wrote; a buffer from
    another process goes through parse_results)."""
    _m, _v, _r, count, _r2 = _header(buf, _RESULTS_HEAD, MAGIC_RESULTS, "results")
    return _table(buf, _RESULTS_HEAD.size, count, RESULT_ROW, "results")


assert RESULT_ROW.fields is not None
_FAULT_KIND_AT: int = RESULT_ROW.fields["fault_kind"][1]


def result_faults(buf: bytes | bytearray | memoryview) -> npt.NDArray[np.uint32]:
    """The fault kind of every row of a results buffer (0: none), read in place as one
    strided column: result_rows without building the structured table (for the pool's
    per-batch bookkeeping, where that view cost more than the rest of it)."""
    _m, _v, _r, count, _r2 = _header(buf, _RESULTS_HEAD, MAGIC_RESULTS, "results")
    size = RESULT_ROW.itemsize
    _check_table(buf, _RESULTS_HEAD.size, count, size, "results")
    if not count:
        return np.zeros(0, dtype=np.uint32)
    return np.ndarray((count,), "<u4", buf, _RESULTS_HEAD.size + _FAULT_KIND_AT, (size,))


def parse_results(buf: bytes) -> Results:
    """Parse and validate a results buffer (the table and the tiling; variable parts are
    checked when read)."""
    head = _RESULTS_HEAD.size
    rows = result_rows(buf)
    count = len(rows)
    lens = (
        rows["sends_len"].astype(np.uint64)
        + rows["logs_len"]
        + rows["infers_len"]
        + rows["fault_len"]
    )
    _check_tiling(
        rows["off"],
        lens,
        head + count * RESULT_ROW.itemsize,
        len(buf),
        RESULT_ROW.itemsize,
        head,
        "results",
    )
    return Results(rows, buf)


def sends_of(packed: bytes) -> list[tuple[bytes, bytes]]:
    """[(destination, payload)] of a packed sends blob."""
    out = []
    pos = 0
    while pos < len(packed):
        plen, dlen = _SEND_HEAD.unpack_from(packed, pos)
        pos += _SEND_HEAD.size
        out.append((packed[pos : pos + dlen], packed[pos + dlen : pos + dlen + plen]))
        pos += dlen + plen
    return out
