"""Snapshots: the state hash over an agent's linear memory and mutable globals (layout in
docs/pool.md, "Snapshot format")."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

_VALTYPE_BYTE = {"i32": 0x7F, "i64": 0x7E, "f32": 0x7D, "f64": 0x7C}


def state_hash(memory: bytes, globals_: Sequence[tuple[int, str, bytes]]) -> bytes:
    """SHA-256 over memory and globals (layout in docs/pool.md, "Snapshot format")."""
    h = hashlib.sha256()
    h.update(struct.pack("<Q", len(memory)))
    h.update(memory)
    h.update(struct.pack("<I", len(globals_)))
    for index, type_name, bits in globals_:
        h.update(struct.pack("<IB", index, _VALTYPE_BYTE[type_name]))
        h.update(bits)
    return h.digest()
