"""Section-level reader/writer for the WebAssembly binary format (pure Python).

This is not a validator: wasmtime validates code when it compiles a module. It reads
exactly what Lockstep needs before that (custom sections, imports, exports, function
signatures) and rewrites custom sections without touching any other byte, so that a
module's hash over "everything but the signature section" is stable.

Every read is bounds-checked: malformed input (bad magic/version, truncation, LEB128
overflow, a section overrunning its parent, bad UTF-8 names) raises
:class:`MalformedModuleError`, a :class:`lockstep.errors.ModuleError`, with the byte
offset where it went wrong — never ``IndexError`` or ``UnicodeDecodeError``.

Reference: WebAssembly Core Specification 2.0, chapter 5 "Binary Format".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

from lockstep.errors import ModuleError

__all__ = [
    "MAGIC",
    "VERSION",
    "Export",
    "ExternKind",
    "FuncType",
    "Import",
    "MalformedModuleError",
    "Reader",
    "Section",
    "SectionId",
    "WasmModule",
    "append_custom_section",
    "custom_section",
    "custom_sections",
    "decode_s32",
    "decode_s64",
    "decode_u32",
    "decode_u64",
    "encode_s32",
    "encode_s64",
    "encode_u32",
    "encode_u64",
    "iter_sections",
    "parse_exports",
    "parse_function_types",
    "parse_imports",
    "parse_module",
    "parse_types",
    "remove_custom_sections",
    "replace_custom_section",
    "sections",
]

MAGIC = b"\x00asm"
"""The four bytes every module starts with."""

VERSION = b"\x01\x00\x00\x00"
"""Binary format version 1 (the only one; the component model uses a different layer)."""

_HEADER_LEN = len(MAGIC) + len(VERSION)


class MalformedModuleError(ModuleError):
    """The bytes are not a well-formed wasm binary (at the level this module reads).

    ``offset`` is the byte offset in the module where the problem was found.
    """

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"malformed wasm module at byte {offset}: {message}")
        self.offset = offset


class SectionId(IntEnum):
    """Section ids (spec 5.5.2). ``TAG`` is from the exception-handling proposal."""

    CUSTOM = 0
    TYPE = 1
    IMPORT = 2
    FUNCTION = 3
    TABLE = 4
    MEMORY = 5
    GLOBAL = 6
    EXPORT = 7
    START = 8
    ELEMENT = 9
    CODE = 10
    DATA = 11
    DATA_COUNT = 12
    TAG = 13


# Required order of the non-custom sections (spec 5.5.16; tag sits after memory in the
# exception-handling proposal, data count before code).
_SECTION_ORDER: dict[int, int] = {
    sid: rank
    for rank, sid in enumerate(
        (
            SectionId.TYPE,
            SectionId.IMPORT,
            SectionId.FUNCTION,
            SectionId.TABLE,
            SectionId.MEMORY,
            SectionId.TAG,
            SectionId.GLOBAL,
            SectionId.EXPORT,
            SectionId.START,
            SectionId.ELEMENT,
            SectionId.DATA_COUNT,
            SectionId.CODE,
            SectionId.DATA,
        )
    )
}


class ExternKind(IntEnum):
    """Import/export descriptor kinds (spec 5.5.5, 5.5.10)."""

    FUNC = 0
    TABLE = 1
    MEMORY = 2
    GLOBAL = 3
    TAG = 4

    @property
    def label(self) -> str:
        """Lower-case name as used in WAT (``func``, ``memory``...)."""
        return self.name.lower()


# --------------------------------------------------------------------------- LEB128


def _encode_unsigned(value: int, bits: int) -> bytes:
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{value} does not fit in u{bits}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _encode_signed(value: int, bits: int) -> bytes:
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f"{value} does not fit in s{bits}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7  # arithmetic shift: Python ints are sign-preserving
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        if done:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def encode_u32(value: int) -> bytes:
    """Unsigned LEB128 of a u32 (shortest form). ``ValueError`` when out of range."""
    return _encode_unsigned(value, 32)


def encode_u64(value: int) -> bytes:
    """Unsigned LEB128 of a u64 (shortest form). ``ValueError`` when out of range."""
    return _encode_unsigned(value, 64)


def encode_s32(value: int) -> bytes:
    """Signed LEB128 of an s32 (shortest form). ``ValueError`` when out of range."""
    return _encode_signed(value, 32)


def encode_s64(value: int) -> bytes:
    """Signed LEB128 of an s64 (shortest form). ``ValueError`` when out of range."""
    return _encode_signed(value, 64)


def _decode_unsigned(data: bytes, offset: int, bits: int, end: int) -> tuple[int, int]:
    # The spec allows non-minimal encodings but bounds the length to ceil(bits/7) bytes
    # and requires the unused bits of the last byte to be zero.
    max_len = (bits + 6) // 7
    result = 0
    shift = 0
    pos = offset
    for i in range(max_len):
        if pos >= end:
            raise MalformedModuleError(f"truncated u{bits} LEB128", offset)
        byte = data[pos]
        pos += 1
        if i == max_len - 1:
            if byte & 0x80:
                raise MalformedModuleError(f"u{bits} LEB128 longer than {max_len} bytes", offset)
            unused = bits - 7 * i
            if byte >> unused:
                raise MalformedModuleError(f"u{bits} LEB128 overflows", offset)
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos
    raise AssertionError("unreachable")  # pragma: no cover - loop always returns/raises


def _decode_signed(data: bytes, offset: int, bits: int, end: int) -> tuple[int, int]:
    max_len = (bits + 6) // 7
    result = 0
    shift = 0
    pos = offset
    for i in range(max_len):
        if pos >= end:
            raise MalformedModuleError(f"truncated s{bits} LEB128", offset)
        byte = data[pos]
        pos += 1
        if i == max_len - 1:
            if byte & 0x80:
                raise MalformedModuleError(f"s{bits} LEB128 longer than {max_len} bytes", offset)
            # The unused high bits (and the last used one) must be a sign extension.
            used = bits - 7 * i  # payload bits this byte may carry, sign bit included
            top = (byte & 0x7F) >> (used - 1)
            if top not in (0, (1 << (8 - used)) - 1):
                raise MalformedModuleError(f"s{bits} LEB128 overflows", offset)
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos
    raise AssertionError("unreachable")  # pragma: no cover


def decode_u32(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a u32 LEB128 at ``offset``; returns ``(value, offset after it)``."""
    return _decode_unsigned(data, offset, 32, len(data))


def decode_u64(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a u64 LEB128 at ``offset``; returns ``(value, offset after it)``."""
    return _decode_unsigned(data, offset, 64, len(data))


def decode_s32(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode an s32 LEB128 at ``offset``; returns ``(value, offset after it)``."""
    return _decode_signed(data, offset, 32, len(data))


def decode_s64(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode an s64 LEB128 at ``offset``; returns ``(value, offset after it)``."""
    return _decode_signed(data, offset, 64, len(data))


# --------------------------------------------------------------------------- reader


class Reader:
    """A bounds-checked cursor over ``data[pos:end]``; offsets stay module-absolute."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    @property
    def remaining(self) -> int:
        """Bytes left before ``end``."""
        return self.end - self.pos

    def at_end(self) -> bool:
        """True when every byte up to ``end`` was consumed."""
        return self.pos >= self.end

    def byte(self) -> int:
        """One byte."""
        if self.pos >= self.end:
            raise MalformedModuleError("unexpected end of data", self.pos)
        value = self.data[self.pos]
        self.pos += 1
        return value

    def bytes(self, n: int) -> bytes:
        """``n`` bytes."""
        if n < 0 or n > self.end - self.pos:
            raise MalformedModuleError(
                f"{n} bytes announced but only {self.end - self.pos} left", self.pos
            )
        value = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(value)

    def u32(self) -> int:
        """A u32 LEB128."""
        value, self.pos = _decode_unsigned(self.data, self.pos, 32, self.end)
        return value

    def u64(self) -> int:
        """A u64 LEB128."""
        value, self.pos = _decode_unsigned(self.data, self.pos, 64, self.end)
        return value

    def s33(self) -> int:
        """An s33 LEB128 (heap types and block types)."""
        value, self.pos = _decode_signed(self.data, self.pos, 33, self.end)
        return value

    def name(self) -> str:
        """A length-prefixed UTF-8 name."""
        start = self.pos
        raw = self.bytes(self.u32())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedModuleError("name is not valid UTF-8", start) from None

    def vec_len(self, min_item_size: int = 1) -> int:
        """A vector length, checked against the bytes left so a huge count fails fast."""
        start = self.pos
        count = self.u32()
        if count * min_item_size > self.end - self.pos:
            raise MalformedModuleError(
                f"vector of {count} items cannot fit in {self.end - self.pos} bytes", start
            )
        return count


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True, slots=True)
class Section:
    """One section as found in the module.

    ``offset`` is where the section starts (its id byte); ``payload_offset`` and
    ``payload_len`` delimit its contents. For custom sections, ``name`` is the section
    name and ``content_offset`` is where the bytes after the name start.
    """

    id: int
    offset: int
    payload_offset: int
    payload_len: int
    name: str | None = None
    content_offset: int | None = None

    @property
    def end(self) -> int:
        """Offset just past the section."""
        return self.payload_offset + self.payload_len

    def payload(self, data: bytes) -> bytes:
        """The section's payload in ``data``."""
        return bytes(data[self.payload_offset : self.end])

    def content(self, data: bytes) -> bytes:
        """For a custom section the bytes after its name, otherwise the payload."""
        start = self.payload_offset if self.content_offset is None else self.content_offset
        return bytes(data[start : self.end])


def _check_header(data: bytes) -> None:
    if len(data) < _HEADER_LEN:
        if MAGIC.startswith(bytes(data[:4])):
            raise MalformedModuleError(
                f"truncated header ({len(data)} bytes, need {_HEADER_LEN})", len(data)
            )
        raise MalformedModuleError("bad magic (not a wasm module)", 0)
    if bytes(data[:4]) != MAGIC:
        raise MalformedModuleError(f"bad magic {bytes(data[:4])!r} (not a wasm module)", 0)
    if bytes(data[4:8]) != VERSION:
        if bytes(data[4:8]) == b"\x0d\x00\x01\x00":
            raise MalformedModuleError("this is a WebAssembly component, not a core module", 4)
        raise MalformedModuleError(
            f"unsupported binary version {bytes(data[4:8]).hex()} (want 01000000)", 4
        )


def iter_sections(data: bytes | bytearray | memoryview) -> Iterator[Section]:
    """Yield every section in order, after checking the header.

    Checks section framing, ids, that non-custom sections appear at most once and in
    the order the spec requires, and that custom section names are valid UTF-8.
    """
    buf = data if isinstance(data, bytes) else bytes(data)
    _check_header(buf)
    pos = _HEADER_LEN
    last_rank = -1
    while pos < len(buf):
        offset = pos
        sid = buf[pos]
        reader = Reader(buf, pos + 1)
        size = reader.u32()
        payload_offset = reader.pos
        if size > len(buf) - payload_offset:
            raise MalformedModuleError(
                f"section id {sid} announces {size} bytes but only "
                f"{len(buf) - payload_offset} remain",
                offset,
            )
        end = payload_offset + size
        if sid == SectionId.CUSTOM:
            sub = Reader(buf, payload_offset, end)
            name = sub.name()
            yield Section(sid, offset, payload_offset, size, name, sub.pos)
        else:
            rank = _SECTION_ORDER.get(sid)
            if rank is None:
                raise MalformedModuleError(f"unknown section id {sid}", offset)
            if rank == last_rank:
                raise MalformedModuleError(f"duplicate {SectionId(sid).name} section", offset)
            if rank < last_rank:
                raise MalformedModuleError(f"{SectionId(sid).name} section out of order", offset)
            last_rank = rank
            yield Section(sid, offset, payload_offset, size)
        pos = end


def sections(data: bytes | bytearray | memoryview) -> list[Section]:
    """All sections, in order (see :func:`iter_sections`)."""
    return list(iter_sections(data))


def custom_sections(data: bytes | bytearray | memoryview, name: str) -> list[bytes]:
    """Contents (after the name) of every custom section called ``name``, in order."""
    buf = bytes(data)
    return [s.content(buf) for s in iter_sections(buf) if s.name == name]


def custom_section(data: bytes | bytearray | memoryview, name: str) -> bytes | None:
    """Contents of the custom section ``name``; None when absent.

    Raises :class:`MalformedModuleError` when there is more than one, because a reader
    picking "the first" and another picking "the last" would see different modules.
    """
    buf = bytes(data)
    found = [s for s in iter_sections(buf) if s.name == name]
    if not found:
        return None
    if len(found) > 1:
        raise MalformedModuleError(
            f"{len(found)} custom sections named {name!r} (at most one allowed)", found[1].offset
        )
    return found[0].content(buf)


def _custom_section_bytes(name: str, content: bytes) -> bytes:
    encoded_name = name.encode("utf-8")
    payload_len = len(encode_u32(len(encoded_name))) + len(encoded_name) + len(content)
    return b"".join(
        (
            bytes([SectionId.CUSTOM]),
            encode_u32(payload_len),
            encode_u32(len(encoded_name)),
            encoded_name,
            content,
        )
    )


def append_custom_section(data: bytes | bytearray | memoryview, name: str, content: bytes) -> bytes:
    """The module with a custom section ``name`` holding ``content`` appended at the end."""
    buf = bytes(data)
    sections(buf)  # validate framing before producing something derived from it
    return buf + _custom_section_bytes(name, bytes(content))


def remove_custom_sections(data: bytes | bytearray | memoryview, name: str) -> bytes:
    """The module without any custom section called ``name``; every other byte is kept."""
    buf = bytes(data)
    parts = [buf[:_HEADER_LEN]]
    for section in iter_sections(buf):
        if section.name != name:
            parts.append(buf[section.offset : section.end])
    return b"".join(parts)


def replace_custom_section(
    data: bytes | bytearray | memoryview, name: str, content: bytes
) -> bytes:
    """Remove every custom section ``name`` and append one holding ``content``."""
    return remove_custom_sections(data, name) + _custom_section_bytes(name, bytes(content))


# --------------------------------------------------------------------------- types

_NUM_TYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128"}
# Abbreviated reference types (reference-types, function-references, GC proposals).
_ABBREV_REF_TYPES = {
    0x70: "funcref",
    0x6F: "externref",
    0x6E: "anyref",
    0x6D: "eqref",
    0x6C: "i31ref",
    0x6B: "structref",
    0x6A: "arrayref",
    0x71: "nullref",
    0x72: "nullexternref",
    0x73: "nullfuncref",
    0x69: "exnref",
    0x74: "nullexnref",
}
_ABSTRACT_HEAP_TYPES = {
    0x70: "func",
    0x6F: "extern",
    0x6E: "any",
    0x6D: "eq",
    0x6C: "i31",
    0x6B: "struct",
    0x6A: "array",
    0x71: "none",
    0x72: "noextern",
    0x73: "nofunc",
    0x69: "exn",
    0x74: "noexn",
}


def _heap_type(reader: Reader) -> str:
    start = reader.pos
    first = reader.data[start] if start < reader.end else None
    if first is not None and first in _ABSTRACT_HEAP_TYPES:
        reader.pos += 1
        return _ABSTRACT_HEAP_TYPES[first]
    index = reader.s33()
    if index < 0:
        raise MalformedModuleError(f"unknown heap type {index}", start)
    return str(index)


def _val_type(reader: Reader) -> str:
    start = reader.pos
    code = reader.byte()
    if code in _NUM_TYPES:
        return _NUM_TYPES[code]
    if code in _ABBREV_REF_TYPES:
        return _ABBREV_REF_TYPES[code]
    if code in (0x63, 0x64):  # (ref null ht) / (ref ht)
        heap = _heap_type(reader)
        return f"(ref null {heap})" if code == 0x63 else f"(ref {heap})"
    raise MalformedModuleError(f"unknown value type 0x{code:02x}", start)


@dataclass(frozen=True, slots=True)
class FuncType:
    """A function signature; value types are spelled as in WAT (``i32``, ``funcref``)."""

    params: tuple[str, ...]
    results: tuple[str, ...]

    def __str__(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


def _section_reader(data: bytes, section_id: SectionId) -> Reader | None:
    for section in iter_sections(data):
        if section.id == section_id:
            return Reader(data, section.payload_offset, section.end)
    return None


def _expect_end(reader: Reader, what: str) -> None:
    if not reader.at_end():
        raise MalformedModuleError(
            f"{reader.remaining} trailing bytes in {what} section", reader.pos
        )


def parse_types(data: bytes | bytearray | memoryview) -> list[FuncType]:
    """The type section's function signatures, by type index (empty when absent).

    Only plain function types (form 0x60) are supported; GC-proposal recursive, struct
    and array types raise :class:`MalformedModuleError` naming the form, because the
    Lockstep engine configuration does not enable GC.
    """
    buf = bytes(data)
    reader = _section_reader(buf, SectionId.TYPE)
    if reader is None:
        return []
    types: list[FuncType] = []
    for _ in range(reader.vec_len(3)):
        start = reader.pos
        form = reader.byte()
        if form != 0x60:
            raise MalformedModuleError(
                f"unsupported type form 0x{form:02x} (only function types 0x60)", start
            )
        params = tuple(_val_type(reader) for _ in range(reader.vec_len()))
        results = tuple(_val_type(reader) for _ in range(reader.vec_len()))
        types.append(FuncType(params, results))
    _expect_end(reader, "type")
    return types


@dataclass(frozen=True, slots=True)
class Import:
    """One import. ``type_index`` is set for function and tag imports, else None.

    ``detail`` describes non-function imports briefly (limits of a memory or table,
    type and mutability of a global), for display.
    """

    module: str
    name: str
    kind: ExternKind
    type_index: int | None = None
    detail: str = ""


def _limits(reader: Reader, what: str) -> str:
    start = reader.pos
    flags = reader.byte()
    if flags > 0x07:
        raise MalformedModuleError(f"unknown {what} limits flags 0x{flags:02x}", start)
    is64 = bool(flags & 0x04)
    read = reader.u64 if is64 else reader.u32
    minimum = read()
    text = f"min={minimum}"
    if flags & 0x01:
        text += f" max={read()}"
    if flags & 0x02:
        text += " shared"
    if is64:
        text += " i64"
    # Custom page sizes proposal: flag 0x08 carries a page-size log2, not supported here.
    return text


def _table_type(reader: Reader) -> str:
    ref = _val_type(reader)
    return f"{ref} {_limits(reader, 'table')}"


def _global_type(reader: Reader) -> str:
    val = _val_type(reader)
    start = reader.pos
    mut = reader.byte()
    if mut not in (0, 1):
        raise MalformedModuleError(f"bad global mutability 0x{mut:02x}", start)
    return f"{'mut ' if mut else ''}{val}"


def parse_imports(data: bytes | bytearray | memoryview) -> list[Import]:
    """The import section, in order (empty when absent)."""
    buf = bytes(data)
    reader = _section_reader(buf, SectionId.IMPORT)
    if reader is None:
        return []
    imports: list[Import] = []
    for _ in range(reader.vec_len(4)):
        module = reader.name()
        name = reader.name()
        start = reader.pos
        kind_byte = reader.byte()
        if kind_byte == ExternKind.FUNC:
            imports.append(Import(module, name, ExternKind.FUNC, reader.u32()))
        elif kind_byte == ExternKind.TABLE:
            imports.append(Import(module, name, ExternKind.TABLE, None, _table_type(reader)))
        elif kind_byte == ExternKind.MEMORY:
            imports.append(Import(module, name, ExternKind.MEMORY, None, _limits(reader, "memory")))
        elif kind_byte == ExternKind.GLOBAL:
            imports.append(Import(module, name, ExternKind.GLOBAL, None, _global_type(reader)))
        elif kind_byte == ExternKind.TAG:
            attr_at = reader.pos
            if reader.byte() != 0:
                raise MalformedModuleError("bad tag attribute", attr_at)
            imports.append(Import(module, name, ExternKind.TAG, reader.u32()))
        else:
            raise MalformedModuleError(f"unknown import kind 0x{kind_byte:02x}", start)
    _expect_end(reader, "import")
    return imports


@dataclass(frozen=True, slots=True)
class Export:
    """One export: its name, kind and index in that kind's index space."""

    name: str
    kind: ExternKind
    index: int


def parse_exports(data: bytes | bytearray | memoryview) -> list[Export]:
    """The export section, in order (empty when absent)."""
    buf = bytes(data)
    reader = _section_reader(buf, SectionId.EXPORT)
    if reader is None:
        return []
    exports: list[Export] = []
    for _ in range(reader.vec_len(3)):
        name = reader.name()
        start = reader.pos
        kind_byte = reader.byte()
        if kind_byte not in ExternKind._value2member_map_:
            raise MalformedModuleError(f"unknown export kind 0x{kind_byte:02x}", start)
        exports.append(Export(name, ExternKind(kind_byte), reader.u32()))
    _expect_end(reader, "export")
    return exports


def parse_function_types(data: bytes | bytearray | memoryview) -> list[int]:
    """Type index of every function in the function index space.

    Imported functions come first (in import order), then the functions the module
    defines (from the function section), as the spec numbers them.
    """
    buf = bytes(data)
    indices = [i.type_index for i in parse_imports(buf) if i.kind == ExternKind.FUNC]
    result: list[int] = [i for i in indices if i is not None]
    reader = _section_reader(buf, SectionId.FUNCTION)
    if reader is not None:
        for _ in range(reader.vec_len()):
            result.append(reader.u32())
        _expect_end(reader, "function")
    return result


@dataclass(frozen=True, slots=True)
class WasmModule:
    """What :func:`parse_module` reads from a module, all at once."""

    sections: tuple[Section, ...]
    types: tuple[FuncType, ...]
    imports: tuple[Import, ...]
    exports: tuple[Export, ...]
    function_types: tuple[int, ...]

    def func_type(self, func_index: int) -> FuncType:
        """Signature of function ``func_index`` (imports first, then defined functions)."""
        if not 0 <= func_index < len(self.function_types):
            raise ModuleError(f"function index {func_index} out of range")
        type_index = self.function_types[func_index]
        if not 0 <= type_index < len(self.types):
            raise ModuleError(f"function {func_index} has type index {type_index} out of range")
        return self.types[type_index]

    def import_type(self, imp: Import) -> FuncType | None:
        """Signature of a function import; None for other kinds."""
        if imp.kind != ExternKind.FUNC or imp.type_index is None:
            return None
        if not 0 <= imp.type_index < len(self.types):
            raise ModuleError(
                f"import {imp.module}.{imp.name} has type index {imp.type_index} out of range"
            )
        return self.types[imp.type_index]

    def export(self, name: str) -> Export | None:
        """The export called ``name``, or None."""
        for exp in self.exports:
            if exp.name == name:
                return exp
        return None

    def export_type(self, name: str) -> FuncType | None:
        """Signature of the exported function ``name``; None if absent or not a function."""
        exp = self.export(name)
        if exp is None or exp.kind != ExternKind.FUNC:
            return None
        return self.func_type(exp.index)

    def custom_section_names(self) -> tuple[str, ...]:
        """Names of the custom sections, in module order (duplicates kept)."""
        return tuple(s.name for s in self.sections if s.name is not None)


def parse_module(data: bytes | bytearray | memoryview) -> WasmModule:
    """Sections, types, imports, exports and function type indices of a module."""
    buf = bytes(data)
    return WasmModule(
        sections=tuple(iter_sections(buf)),
        types=tuple(parse_types(buf)),
        imports=tuple(parse_imports(buf)),
        exports=tuple(parse_exports(buf)),
        function_types=tuple(parse_function_types(buf)),
    )
