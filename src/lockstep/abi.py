"""Agent ABI v1 for the whole Python side (docs/abi.md): one source for every rule.

The names and signatures of the ABI, the import-to-capability rule, the one conformance
check, the byte layouts (context, message record, batch buffer, send record), message kinds,
refusal codes, name rules and the per-agent random stream. The pool, the orchestrator,
registration (:mod:`lockstep.modules`) and the SDK builder (:mod:`lockstep.agents`) all use
this module. ``tests/sdk/world.py`` keeps an independent byte-layout oracle on purpose.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from lockstep import wasmbin
from lockstep.wasmbin import ExternKind, FuncType

__all__ = [
    "ABI_MAJOR",
    "ABI_VERSION",
    "BATCH_HEADER",
    "CONTEXT_HEADER",
    "EXPORTS",
    "IMPORTS",
    "IMPORT_MODULE",
    "KIND_AGENT",
    "KIND_EXTERNAL",
    "KIND_INFER_ERROR",
    "KIND_INFER_RESULT",
    "KIND_UNDELIVERABLE",
    "LOG_LEVELS",
    "LS_ERR_BAD_ARG",
    "LS_ERR_BAD_NAME",
    "LS_ERR_QUOTA",
    "LS_ERR_TOO_LARGE",
    "OPTIONAL_EXPORTS",
    "RANDOM_STREAM_BYTES",
    "RECORD_HEADER",
    "SEND_HEADER",
    "Problem",
    "RandomStream",
    "batch_buffer",
    "build_context",
    "capabilities_for",
    "capability_for",
    "chacha20_keystream",
    "check_abi",
    "check_destination",
    "covers",
    "describe",
    "hint_for",
    "is_valid_model_name",
    "is_valid_name",
    "message_record",
    "pack_send",
    "problems",
    "random_key",
    "split_inbox",
    "unpack_sends",
    "valid_name",
]

ABI_MAJOR = 1
ABI_VERSION = 1  # the u16 written into every context buffer
IMPORT_MODULE = "lockstep_v1"

_I32 = "i32"
IMPORTS: Mapping[str, FuncType] = {
    "send": FuncType((_I32,) * 4, (_I32,)),
    "log": FuncType((_I32,) * 3, (_I32,)),
    "tick": FuncType((), ("i64",)),
    "random": FuncType((_I32,) * 2, (_I32,)),
    "infer": FuncType((_I32,) * 4, ("i64",)),
}
"""``lockstep_v1`` functions and their signatures (docs/abi.md, "Imports")."""

EXPORTS: Mapping[str, FuncType] = {
    "agent_alloc": FuncType((_I32,), (_I32,)),
    "agent_init": FuncType((), (_I32,)),
    "agent_step": FuncType((_I32,), (_I32,)),
    "agent_receive": FuncType((_I32,), (_I32,)),
    "agent_shutdown": FuncType((), (_I32,)),
}
"""Required function exports (plus the ``memory`` export)."""

OPTIONAL_EXPORTS: Mapping[str, FuncType] = {"agent_receive_batch": FuncType((_I32,), (_I32,))}
"""Function exports a module may have."""

# ---------------------------------------------------------------------- capabilities


def capability_for(import_name: str) -> str:
    """The least capability a build asks for to import `import_name`: the import's own name,
    except ``infer``, which asks for ``infer:*`` (the models an agent calls are only known
    at run time; an operator may grant ``infer:<model>`` instead)."""
    return "infer:*" if import_name == "infer" else import_name


def capabilities_for(wasm: bytes) -> tuple[str, ...]:
    """Sorted capabilities covering every ``lockstep_v1`` import of a module."""
    return tuple(
        sorted(
            {
                capability_for(imp.name)
                for imp in wasmbin.parse_imports(wasm)
                if imp.module == IMPORT_MODULE and imp.name in IMPORTS
            }
        )
    )


def covers(capabilities: Iterable[str], import_name: str) -> bool:
    """True when `capabilities` allow importing ``lockstep_v1.<import_name>``: ``infer``
    needs ``infer:*`` or any ``infer:<model>``; every other import its own name."""
    caps = list(capabilities)
    if import_name == "infer":
        return any(c.startswith("infer:") for c in caps)
    return import_name in caps


# ---------------------------------------------------------------------- conformance


@dataclass(frozen=True)
class Problem:
    """One way a module breaks ABI v1. `code` is one of: foreign-import, unknown-import,
    import-kind, import-signature, missing-memory, memory-kind, missing-export, export-kind,
    export-signature. `name` is the import ("module.name") or export name."""

    code: str
    name: str
    import_module: str = ""
    got: str = ""
    want: str = ""


def problems(module: wasmbin.WasmModule, *, exports: bool = True) -> list[Problem]:
    """The one ABI v1 conformance check: every problem, imports first, in module order."""
    out: list[Problem] = []
    for imp in module.imports:
        label = f"{imp.module}.{imp.name}"
        if imp.module != IMPORT_MODULE:
            out.append(Problem("foreign-import", label, imp.module, imp.kind.label))
            continue
        expected = IMPORTS.get(imp.name)
        if expected is None:
            out.append(Problem("unknown-import", label, imp.module))
            continue
        if imp.kind != ExternKind.FUNC:
            out.append(Problem("import-kind", label, imp.module, imp.kind.label, str(expected)))
            continue
        got = module.import_type(imp)
        if got != expected:
            out.append(
                Problem(
                    "import-signature", label, imp.module, str(got or imp.kind.label), str(expected)
                )
            )
    if not exports:
        return out
    memory = module.export("memory")
    if memory is None:
        out.append(Problem("missing-memory", "memory"))
    elif memory.kind != ExternKind.MEMORY:
        out.append(Problem("memory-kind", "memory", got=memory.kind.label, want="memory"))
    for name, expected in (*EXPORTS.items(), *OPTIONAL_EXPORTS.items()):
        exp = module.export(name)
        if exp is None:
            if name in EXPORTS:
                out.append(Problem("missing-export", name, want=str(expected)))
            continue
        if exp.kind != ExternKind.FUNC:
            out.append(Problem("export-kind", name, got=exp.kind.label, want="function"))
            continue
        got = module.func_type(exp.index)
        if got != expected:
            out.append(Problem("export-signature", name, got=str(got), want=str(expected)))
    return out


# Why a foreign import usually appears, keyed by (module, name); "" matches any name.
_HINTS: dict[tuple[str, str], str] = {
    ("env", "abort"): "the AssemblyScript abort hook; build with `lockstep agent build` "
    "(sdk/assemblyscript/asconfig.json routes it to the SDK)",
    ("env", "seed"): "Math.random in AssemblyScript; use randomU64()/randomBelow()",
    ("env", "Date.now"): "Date in AssemblyScript; use tick() for time",
    ("env", "trace"): "trace() in AssemblyScript; use log()",
    ("env", "console.log"): "console.log in AssemblyScript; use log()",
}
_LIBC = {
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "malloc",
    "free",
    "calloc",
    "realloc",
    "strlen",
    "printf",
    "puts",
    "abort",
    "exit",
    "time",
    "rand",
}


def hint_for(module: str, name: str) -> str:
    """Why an import outside lockstep_v1 usually appears, and what to use instead."""
    if module.startswith("wasi"):
        return "WASI is not available to agents (no clock, entropy or files)"
    hint = _HINTS.get((module, name))
    if hint is not None:
        return hint
    if module == "env" and name in _LIBC:
        return f"{name} is a libc function; agents have no libc (see sdk/c/lockstep.h)"
    return f"only {IMPORT_MODULE} functions are linked"


def describe(p: Problem) -> str:
    """One line for a problem, as the SDK builder and the pool report it."""
    if p.code == "foreign-import":
        module, _, name = p.name.partition(".")
        return f"import {p.name} is not allowed ({hint_for(module, name)})"
    return {
        "unknown-import": f"import {p.name} is unknown ({IMPORT_MODULE} has {', '.join(IMPORTS)})",
        "import-kind": f"import {p.name} has signature {p.got}, ABI v1 wants {p.want}",
        "import-signature": f"import {p.name} has signature {p.got}, ABI v1 wants {p.want}",
        "missing-memory": "missing export memory",
        "memory-kind": "export memory is not a memory",
        "missing-export": f"missing export {p.name}",
        "export-kind": f"export {p.name} is not a function",
        "export-signature": f"export {p.name} has signature {p.got}, ABI v1 wants {p.want}",
    }[p.code]


def check_abi(module: wasmbin.WasmModule, *, exports: bool = True) -> None:
    """Refuse a module whose imports or exports do not match ABI v1, naming the first
    offending import or export (:class:`lockstep.modules.ForeignImportError` for an import
    outside ``lockstep_v1``, :class:`lockstep.modules.AbiError` otherwise)."""
    from lockstep.modules._errors import AbiError, ForeignImportError

    found = problems(module, exports=exports)
    if not found:
        return
    p = found[0]
    if p.code == "foreign-import":
        raise ForeignImportError(
            f"import {p.name} ({p.got}) is outside {IMPORT_MODULE}; "
            f"agents may only import {IMPORT_MODULE} functions"
        )
    raise AbiError(
        {
            "unknown-import": f"import {p.name} is not an ABI v1 function "
            f"(known: {', '.join(sorted(IMPORTS))})",
            "import-kind": f"import {p.name} must be a function, not a {p.got}",
            "import-signature": f"import {p.name} has signature {p.got}, ABI v1 says {p.want}",
            "missing-memory": "missing export memory",
            "memory-kind": f"export memory must be a memory, not a {p.got}",
            "missing-export": f"missing export {p.name} {p.want}",
            "export-kind": f"export {p.name} must be a function, not a {p.got}",
            "export-signature": f"export {p.name} has signature {p.got}, ABI v1 says {p.want}",
        }[p.code]
    )


# ---------------------------------------------------------------------- refusals, kinds

LS_ERR_QUOTA = -1
LS_ERR_TOO_LARGE = -2
LS_ERR_BAD_NAME = -3
LS_ERR_BAD_ARG = -4

# `log` levels 0..5 by name (docs/abi.md); 5 carries observations.
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "observe")

KIND_AGENT = 0
KIND_EXTERNAL = 1
KIND_INFER_RESULT = 2
KIND_INFER_ERROR = 3
KIND_UNDELIVERABLE = 4

# ---------------------------------------------------------------------- names

_NAME_RE = re.compile(rb"[A-Za-z0-9_.:/-]{1,64}")
# Model names may be content hashes ("sha256:<64 hex>"), so they get more room.
_MODEL_RE = re.compile(rb"[A-Za-z0-9_.:/-]{1,128}")


def is_valid_name(name: bytes) -> bool:
    """Agent and topic name syntax: ``[A-Za-z0-9_.:/-]``, 1 to 64 bytes."""
    return _NAME_RE.fullmatch(name) is not None


def valid_name(name: str) -> bool:
    """`is_valid_name` for a str."""
    return name.isascii() and is_valid_name(name.encode())


def is_valid_model_name(name: bytes) -> bool:
    """Model name syntax: ``[A-Za-z0-9_.:/-]``, 1 to 128 bytes."""
    return _MODEL_RE.fullmatch(name) is not None


def check_destination(dest: bytes, payload: bytes) -> bool:
    """True when `dest` (with `payload` for subscriptions) is a valid send destination."""
    if dest == b"*":
        return True
    if dest[:1] == b"#":
        return is_valid_name(dest[1:])
    if dest in (b"$subscribe", b"$unsubscribe"):
        return is_valid_name(payload)
    return is_valid_name(dest)


# ---------------------------------------------------------------------- byte layouts

CONTEXT_HEADER = struct.Struct("<IHHqII")  # 24 bytes, then name and args
RECORD_HEADER = struct.Struct("<IBBHqqIHH")  # 32 bytes, then sender, destination, payload
BATCH_HEADER = struct.Struct("<II")  # total length, record count
SEND_HEADER = struct.Struct("<IH")  # pool wire: payload length, destination length


def build_context(name: bytes, tick: int, delivered: int, args: bytes) -> bytes:
    """The agent_step context buffer."""
    total = CONTEXT_HEADER.size + len(name) + len(args)
    return (
        CONTEXT_HEADER.pack(total, ABI_VERSION, len(name), tick, delivered, len(args)) + name + args
    )


def message_record(
    kind: int, sender: bytes, dest: bytes, tick: int, corr: int, payload: bytes
) -> bytes:
    """One message record."""
    total = RECORD_HEADER.size + len(sender) + len(dest) + len(payload)
    header = RECORD_HEADER.pack(total, kind, 0, len(sender), tick, corr, len(payload), len(dest), 0)
    return b"".join((header, sender, dest, payload))


def batch_buffer(records: list[bytes]) -> bytes:
    """The batch buffer of `agent_receive_batch`."""
    body = b"".join(records)
    return BATCH_HEADER.pack(BATCH_HEADER.size + len(body), len(records)) + body


def split_inbox(inbox: bytes, count: int) -> list[bytes]:
    """Check a batch buffer and cut it into its message records.

    Raises ValueError with the reason when the layout is inconsistent.
    """
    if not inbox:
        if count:
            raise ValueError(f"inbox is empty but inbox_count is {count}")
        return []
    if len(inbox) < BATCH_HEADER.size:
        raise ValueError("inbox shorter than its 8-byte batch header")
    total, n = BATCH_HEADER.unpack_from(inbox)
    if total != len(inbox):
        raise ValueError(f"inbox header says {total} bytes, got {len(inbox)}")
    if n != count:
        raise ValueError(f"inbox header says {n} records, inbox_count is {count}")
    records: list[bytes] = []
    pos = BATCH_HEADER.size
    for i in range(n):
        if pos + RECORD_HEADER.size > total:
            raise ValueError(f"record {i} header runs past the end of the inbox")
        length, _kind, _res, s_len, _tick, _corr, p_len, d_len, _res2 = RECORD_HEADER.unpack_from(
            inbox, pos
        )
        if length != RECORD_HEADER.size + s_len + d_len + p_len:
            raise ValueError(f"record {i} length {length} != 32 + S + D + P")
        if pos + length > total:
            raise ValueError(f"record {i} runs past the end of the inbox")
        records.append(inbox[pos : pos + length])
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
        pos += SEND_HEADER.size
        dest = packed[pos : pos + d_len]
        pos += d_len
        out.append((dest, packed[pos : pos + p_len]))
        pos += p_len
    return out


# ---------------------------------------------------------------------- random stream

#: ChaCha20 with a 32-bit block counter yields 2^32 blocks of 64 bytes per key.
RANDOM_STREAM_BYTES = 64 << 32


def random_key(seed: int, name: str) -> bytes:
    """Key of an agent's random stream: SHA-256("lockstep.random.v1" || u64 seed || name)."""
    return hashlib.sha256(b"lockstep.random.v1" + struct.pack("<Q", seed) + name.encode()).digest()


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
