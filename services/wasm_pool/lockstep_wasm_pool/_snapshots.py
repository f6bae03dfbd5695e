"""Snapshots: the state hash over an agent's linear memory and mutable globals (layout in
docs/pool.md, "Snapshot format")."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb

from ._config import WASM_PAGE
from ._errors import InvalidRequestError

if TYPE_CHECKING:
    from ._modules import ModuleInfo

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


def check_snapshot(
    where: str, snap: pb.AgentSnapshot, info: ModuleInfo, max_pages: int
) -> list[tuple[int, str, bytes]]:
    """Validate a snapshot against its module and the agent's page limit (both engines);
    return its globals as (index, type, bits). InvalidRequestError says what is wrong."""
    expected = [(g.index, g.type) for g in snap.globals]
    if expected != info.mutable_globals:
        raise InvalidRequestError(
            f"{where}: globals {expected} do not match the module's "
            f"mutable globals {info.mutable_globals}"
        )
    values = [(g.index, g.type, bytes(g.bits)) for g in snap.globals]
    for index, type_name, bits in values:
        if len(bits) != (4 if type_name in ("i32", "f32") else 8):
            raise InvalidRequestError(f"{where}: global {index} has {len(bits)} bytes of bits")
    if state_hash(snap.memory, values) != snap.state_hash:
        raise InvalidRequestError(
            f"{where}: state_hash does not match memory and globals (corrupted snapshot)"
        )
    if len(snap.memory) % WASM_PAGE:
        raise InvalidRequestError(f"{where}: memory is not a whole number of 64 KiB pages")
    if snap.next_request_id < 1:
        raise InvalidRequestError(f"{where}: next_request_id must be >= 1")
    if len(snap.memory) > max_pages * WASM_PAGE:
        raise InvalidRequestError(
            f"{where}: memory of {len(snap.memory) // WASM_PAGE} pages "
            f"is above the agent's limit of {max_pages}"
        )
    return values
