"""Record encoding v1 and the hash chain (specified in docs/telemetry.md).

    record_n = 0x01                                  format version (1 byte)
             || u64le(sequence)
             || i64le(tick)
             || u32le(len(run_id))       || run_id        (UTF-8)
             || u32le(len(kind))         || kind          (UTF-8)
             || u32le(len(content_type)) || content_type  (UTF-8)
             || u32le(len(payload))      || payload
    h_0 = 32 zero bytes;  h_n = SHA-256(h_{n-1} || record_n)

Everything after the sequence number is the record's *body*; a batch digest (used to
recognise a retried batch) is SHA-256 over a domain tag and the bodies of its records.
"""

from __future__ import annotations

import hashlib
import struct

__all__ = [
    "GENESIS",
    "RECORD_FORMAT",
    "chain_hash",
    "encode_body",
    "encode_record",
]

RECORD_FORMAT = 1
GENESIS = bytes(32)
BATCH_DIGEST_TAG = b"lockstep.telemetry.batch.v1\x00"

_PREFIX = struct.Struct("<BQ")
_I64 = struct.Struct("<q")
_U32 = struct.Struct("<I")


def lp(data: bytes) -> bytes:
    """Length-prefixed bytes: u32le(len) || data."""
    return _U32.pack(len(data)) + data


def encode_body(run_id: str, tick: int, kind: str, content_type: str, payload: bytes) -> bytes:
    """The record without its version byte and sequence number."""
    return (
        _I64.pack(tick)
        + lp(run_id.encode())
        + lp(kind.encode())
        + lp(content_type.encode())
        + lp(payload)
    )


def encode_record(
    sequence: int, run_id: str, tick: int, kind: str, content_type: str, payload: bytes
) -> bytes:
    """The canonical bytes of one record, as hashed into the chain."""
    return _PREFIX.pack(RECORD_FORMAT, sequence) + encode_body(
        run_id, tick, kind, content_type, payload
    )


def chain_hash(previous: bytes, record: bytes) -> bytes:
    """h_n = SHA-256(h_{n-1} || record_n)."""
    return hashlib.sha256(previous + record).digest()
