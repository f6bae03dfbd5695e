"""Byte layouts shared with agents and pools (docs/abi.md) and the tick digest encoding
(docs/determinism.md). Pure functions, no state."""

from __future__ import annotations

import re
import struct

# Message kinds (docs/abi.md).
KIND_AGENT = 0
KIND_EXTERNAL = 1
KIND_INFER_RESULT = 2
KIND_INFER_ERROR = 3
KIND_UNDELIVERABLE = 4

RECORD_HEADER = struct.Struct("<IBBHqqIHH")  # 32-byte message record header
SEND_HEADER = struct.Struct("<IH")  # pool wire format: payload length, destination length
_BATCH = struct.Struct("<II")
NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}\Z")


def message_record(kind: int, sender: bytes, dest: bytes, tick: int, corr: int,
                   payload: bytes) -> bytes:
    """One ABI v1 message record."""
    total = RECORD_HEADER.size + len(sender) + len(dest) + len(payload)
    header = RECORD_HEADER.pack(total, kind, 0, len(sender), tick, corr, len(payload), len(dest), 0)
    return b"".join((header, sender, dest, payload))


def batch_buffer(records: list[bytes]) -> bytes:
    """The ABI v1 batch buffer for `agent_receive_batch` (also the pool inbox format)."""
    body = b"".join(records)
    return _BATCH.pack(_BATCH.size + len(body), len(records)) + body


def valid_name(name: str) -> bool:
    """Agent and topic names: [A-Za-z0-9_.:/-], 1..64 bytes."""
    return NAME_RE.match(name) is not None


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def i64(n: int) -> bytes:
    return struct.pack("<q", n)


def u64(n: int) -> bytes:
    return struct.pack("<Q", n)


def lp(data: bytes) -> bytes:
    """Length-prefixed bytes: u32 length then the bytes."""
    return struct.pack("<I", len(data)) + data
