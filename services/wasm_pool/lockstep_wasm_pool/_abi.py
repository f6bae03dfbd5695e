"""ABI v1 byte layouts and rules (docs/abi.md), as pure functions the engine and tests share."""

from __future__ import annotations

import hashlib
import re
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from lockstep.modules import ABI_EXPORTS, ABI_IMPORTS
from lockstep.modules import OPTIONAL_EXPORTS as _OPTIONAL

__all__ = [
    "ABI_VERSION",
    "IMPORT_MODULE",
    "LS_ERR_BAD_ARG",
    "LS_ERR_BAD_NAME",
    "LS_ERR_QUOTA",
    "LS_ERR_TOO_LARGE",
    "RANDOM_STREAM_BYTES",
    "REQUIRED_EXPORTS",
    "RandomStream",
    "build_context",
    "chacha20_keystream",
    "check_destination",
    "is_valid_agent_name",
    "is_valid_model_name",
    "pack_send",
    "random_key",
    "split_inbox",
    "unpack_sends",
]

ABI_VERSION = 1
IMPORT_MODULE = "lockstep_v1"

LS_ERR_QUOTA = -1
LS_ERR_TOO_LARGE = -2
LS_ERR_BAD_NAME = -3
LS_ERR_BAD_ARG = -4

#: ChaCha20 with a 32-bit block counter yields 2^32 blocks of 64 bytes per key.
RANDOM_STREAM_BYTES = 64 << 32

# (params, results) as wasm value-type names.
Signature = tuple[tuple[str, ...], tuple[str, ...]]

# The signature tables come from lockstep.modules, which registration checks against.
IMPORTS: dict[str, Signature] = {n: (t.params, t.results) for n, t in ABI_IMPORTS.items()}
REQUIRED_EXPORTS: dict[str, Signature] = {
    n: (t.params, t.results) for n, t in ABI_EXPORTS.items()}
OPTIONAL_EXPORTS: dict[str, Signature] = {
    n: (t.params, t.results) for n, t in _OPTIONAL.items()}

_NAME_RE = re.compile(rb"[A-Za-z0-9_.:/-]{1,64}")
# Model names may be content hashes ("sha256:<64 hex>"), so they get more room.
_MODEL_RE = re.compile(rb"[A-Za-z0-9_.:/-]{1,128}")

CONTEXT_HEADER = struct.Struct("<IHHqII")
RECORD_HEADER = struct.Struct("<IBBHqqIHH")
BATCH_HEADER = struct.Struct("<II")
SEND_HEADER = struct.Struct("<IH")


def is_valid_agent_name(name: bytes) -> bool:
    """Agent (and topic) name syntax: ``[A-Za-z0-9_.:/-]``, 1 to 64 bytes."""
    return _NAME_RE.fullmatch(name) is not None


def is_valid_model_name(name: bytes) -> bool:
    """Model name syntax: ``[A-Za-z0-9_.:/-]``, 1 to 128 bytes."""
    return _MODEL_RE.fullmatch(name) is not None


def check_destination(dest: bytes, payload: bytes) -> bool:
    """True when `dest` (with `payload` for subscriptions) is a valid send destination."""
    if dest == b"*":
        return True
    if dest[:1] == b"#":
        return is_valid_agent_name(dest[1:])
    if dest in (b"$subscribe", b"$unsubscribe"):
        return is_valid_agent_name(payload)
    return is_valid_agent_name(dest)


def build_context(name: bytes, tick: int, delivered: int, args: bytes) -> bytes:
    """The agent_step context buffer."""
    total = 24 + len(name) + len(args)
    return CONTEXT_HEADER.pack(total, ABI_VERSION, len(name), tick, delivered, len(args)) \
        + name + args


def split_inbox(inbox: bytes, count: int) -> list[bytes]:
    """Check a batch buffer and cut it into its message records.

    Raises ValueError with the reason when the layout is inconsistent.
    """
    if not inbox:
        if count:
            raise ValueError(f"inbox is empty but inbox_count is {count}")
        return []
    if len(inbox) < 8:
        raise ValueError("inbox shorter than its 8-byte batch header")
    total, n = BATCH_HEADER.unpack_from(inbox)
    if total != len(inbox):
        raise ValueError(f"inbox header says {total} bytes, got {len(inbox)}")
    if n != count:
        raise ValueError(f"inbox header says {n} records, inbox_count is {count}")
    records: list[bytes] = []
    pos = 8
    for i in range(n):
        if pos + 32 > total:
            raise ValueError(f"record {i} header runs past the end of the inbox")
        length, _kind, _res, s_len, _tick, _corr, p_len, d_len, _res2 = \
            RECORD_HEADER.unpack_from(inbox, pos)
        if length != 32 + s_len + d_len + p_len:
            raise ValueError(f"record {i} length {length} != 32 + S + D + P")
        if pos + length > total:
            raise ValueError(f"record {i} runs past the end of the inbox")
        records.append(inbox[pos:pos + length])
        pos += length
    if pos != total:
        raise ValueError(f"{total - pos} trailing bytes after the last record")
    return records


def pack_send(dest: bytes, payload: bytes) -> bytes:
    """One send in the pool wire format: u32 payload len, u16 dest len, dest, payload."""
    return SEND_HEADER.pack(len(payload), len(dest)) + dest + payload


def unpack_sends(packed: bytes) -> list[tuple[bytes, bytes]]:
    """Inverse of concatenated `pack_send` records: [(dest, payload), ...]."""
    out: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(packed):
        p_len, d_len = SEND_HEADER.unpack_from(packed, pos)
        pos += 6
        dest = packed[pos:pos + d_len]
        pos += d_len
        out.append((dest, packed[pos:pos + p_len]))
        pos += p_len
    return out


def random_key(seed: int, name: str) -> bytes:
    """Key of an agent's random stream: SHA-256("lockstep.random.v1" || u64 seed || name)."""
    return hashlib.sha256(b"lockstep.random.v1" + struct.pack("<Q", seed)
                          + name.encode()).digest()


def chacha20_keystream(key: bytes, position: int, length: int) -> bytes:
    """`length` bytes of the RFC 8439 ChaCha20 keystream (zero nonce) from byte `position`."""
    block, skip = divmod(position, 64)
    if block + (skip + length + 63) // 64 > 1 << 32:
        raise ValueError("random stream exhausted (2^32 blocks)")
    # cryptography's 16-byte nonce is OpenSSL's layout: u32 LE block counter || 96-bit nonce.
    nonce = struct.pack("<I", block) + bytes(12)
    enc = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()
    return enc.update(bytes(skip + length))[skip:]


class RandomStream:
    """One agent's random stream and its position (bytes consumed)."""

    __slots__ = ("key", "position")

    def __init__(self, seed: int, name: str, position: int = 0) -> None:
        self.key = random_key(seed, name)
        self.position = position

    def take(self, length: int) -> bytes:
        """The next `length` bytes of the stream."""
        out = chacha20_keystream(self.key, self.position, length)
        self.position += length
        return out
