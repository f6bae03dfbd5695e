"""A small wasm binary reader/writer: just enough to make every mutable global snapshottable.

The pool snapshots an agent's linear memory and *every* mutable global, but wasmtime only
lets the host reach exported globals. So at load time the module bytes are rewritten to
also export each mutable global under a reserved name (``__lockstep_global_<index>``).
This module parses the section layout, the import/global/export sections, and writes a
new export section; everything else is copied byte for byte.

LEB128 and section framing come from the shared ``lockstep.wasmbin``; this module adds
what only the pool needs (globals, export rewriting, code scanning). The input must
already be valid (``wasmtime.Module.validate``): errors raised here are only for what the
rewriter itself does not support (WasmBinError) or for bytes that are not a module
(``lockstep.wasmbin.MalformedModuleError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lockstep import wasmbin
from lockstep.wasmbin import MalformedModuleError, Section

__all__ = [
    "RESERVED_EXPORT_PREFIX",
    "GlobalInfo",
    "MalformedModuleError",
    "ModuleLayout",
    "Prepared",
    "WasmBinError",
    "export_mutable_globals",
    "global_export_name",
    "parse_layout",
    "prepare",
    "read_sleb",
    "read_uleb",
    "sections",
    "write_uleb",
]

RESERVED_EXPORT_PREFIX = "__lockstep_"
#: Bumped whenever `prepare` rewrites modules differently (it keys compiled-module caches).
REWRITE_VERSION = 1

SEC_CUSTOM = 0
SEC_IMPORT = 2
SEC_GLOBAL = 6
SEC_EXPORT = 7

# Canonical order of known sections (the binary format requires it; custom sections float).
_SECTION_RANK = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11,
                 10: 12, 11: 13}

VALTYPE_NAMES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128",
                 0x70: "funcref", 0x6F: "externref"}


class WasmBinError(ValueError):
    """The module uses a construct the pool does not accept or this reader does not handle."""


def read_uleb(buf: bytes, pos: int, bits: int = 32) -> tuple[int, int]:
    """Decode an unsigned LEB128 (u32 or u64) at `pos`; return (value, next pos)."""
    return wasmbin.decode_u64(buf, pos) if bits > 32 else wasmbin.decode_u32(buf, pos)


def read_sleb(buf: bytes, pos: int, bits: int = 64) -> tuple[int, int]:
    """Decode a signed LEB128 (s32, s33 or s64) at `pos`; return (value, next pos)."""
    if bits == 32:
        return wasmbin.decode_s32(buf, pos)
    if bits == 33:
        reader = wasmbin.Reader(buf, pos)
        return reader.s33(), reader.pos
    return wasmbin.decode_s64(buf, pos)


def write_uleb(value: int) -> bytes:
    """Encode a u32 as unsigned LEB128 (shortest form)."""
    return wasmbin.encode_u32(value)


def sections(wasm: bytes) -> list[Section]:
    """Split a module into its sections, in file order (framing and order checked)."""
    return wasmbin.sections(wasm)


def _read_name(buf: bytes, pos: int) -> tuple[str, int]:
    length, pos = read_uleb(buf, pos)
    raw = buf[pos:pos + length]
    if len(raw) != length:
        raise WasmBinError("name runs past the end of its section")
    return raw.decode("utf-8", errors="replace"), pos + length


def _skip_limits(buf: bytes, pos: int) -> int:
    flags = buf[pos]
    pos += 1
    _, pos = read_uleb(buf, pos, 64)
    if flags & 0x01:
        _, pos = read_uleb(buf, pos, 64)
    if flags & 0x08:  # custom page size (not enabled in the pool engine, parsed anyway)
        _, pos = read_uleb(buf, pos)
    return pos


def _skip_valtype(buf: bytes, pos: int) -> int:
    byte = buf[pos]
    if byte in (0x63, 0x64):  # (ref null? ht): function-references, disabled in the pool
        _, pos = read_sleb(buf, pos + 1, 33)
        return pos
    return pos + 1


def _skip_const_expr(buf: bytes, pos: int) -> int:
    """Skip a constant expression up to and including its `end` (0x0B)."""
    while True:
        op = buf[pos]
        pos += 1
        if op == 0x0B:
            return pos
        if op == 0x41:  # i32.const
            _, pos = read_sleb(buf, pos, 32)
        elif op == 0x42:  # i64.const
            _, pos = read_sleb(buf, pos, 64)
        elif op == 0x43:  # f32.const
            pos += 4
        elif op == 0x44:  # f64.const
            pos += 8
        elif op in (0x23, 0xD2):  # global.get, ref.func
            _, pos = read_uleb(buf, pos)
        elif op == 0xD0:  # ref.null heaptype
            _, pos = read_sleb(buf, pos, 33)
        elif op == 0xFD:  # v128.const
            sub, pos = read_uleb(buf, pos)
            if sub != 12:
                raise WasmBinError(f"unsupported SIMD opcode {sub} in a constant expression")
            pos += 16
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            continue
        else:
            raise WasmBinError(f"unsupported opcode 0x{op:02x} in a constant expression")


@dataclass(frozen=True)
class GlobalInfo:
    """One global of the module's global index space."""

    index: int
    valtype: int  # the wasm value-type byte (0x7F i32 ...)
    mutable: bool
    imported: bool

    @property
    def type_name(self) -> str:
        """"i32", "i64", "f32", "f64", "v128", ... ."""
        return VALTYPE_NAMES.get(self.valtype, f"0x{self.valtype:02x}")


@dataclass(frozen=True)
class ModuleLayout:
    """What the pool needs to know about a module's structure."""

    sections: tuple[Section, ...]
    globals: tuple[GlobalInfo, ...]
    export_names: tuple[str, ...]


def parse_layout(wasm: bytes) -> ModuleLayout:
    """Read the sections, every global (imported first) and every export name."""
    secs = sections(wasm)
    globals_: list[GlobalInfo] = []
    exports: list[str] = []
    try:
        for sec in secs:
            pos = sec.payload_offset
            if sec.id == SEC_IMPORT:
                count, pos = read_uleb(wasm, pos)
                for _ in range(count):
                    _, pos = _read_name(wasm, pos)
                    _, pos = _read_name(wasm, pos)
                    kind = wasm[pos]
                    pos += 1
                    if kind in (0x00, 0x04):  # func typeidx / tag (attr, typeidx)
                        if kind == 0x04:
                            pos += 1
                        _, pos = read_uleb(wasm, pos)
                    elif kind == 0x01:  # table: reftype limits
                        pos = _skip_limits(wasm, _skip_valtype(wasm, pos))
                    elif kind == 0x02:
                        pos = _skip_limits(wasm, pos)
                    elif kind == 0x03:
                        valtype = wasm[pos]
                        pos = _skip_valtype(wasm, pos)
                        mut = wasm[pos]
                        pos += 1
                        globals_.append(GlobalInfo(len(globals_), valtype, mut == 1, True))
                    else:
                        raise WasmBinError(f"unknown import kind {kind}")
            elif sec.id == SEC_GLOBAL:
                count, pos = read_uleb(wasm, pos)
                for _ in range(count):
                    valtype = wasm[pos]
                    pos = _skip_valtype(wasm, pos)
                    mut = wasm[pos]
                    pos = _skip_const_expr(wasm, pos + 1)
                    globals_.append(GlobalInfo(len(globals_), valtype, mut == 1, False))
            elif sec.id == SEC_EXPORT:
                count, pos = read_uleb(wasm, pos)
                for _ in range(count):
                    name, pos = _read_name(wasm, pos)
                    pos += 1
                    _, pos = read_uleb(wasm, pos)
                    exports.append(name)
    except IndexError:
        raise WasmBinError("section contents run past their end") from None
    return ModuleLayout(tuple(secs), tuple(globals_), tuple(exports))


def global_export_name(index: int) -> str:
    """The reserved export name under which the pool reaches global `index`."""
    return f"{RESERVED_EXPORT_PREFIX}global_{index}"


def export_mutable_globals(wasm: bytes, layout: ModuleLayout | None = None) -> bytes:
    """Return `wasm` with each defined mutable global also exported under its reserved name.

    The export section is rewritten (or created at its canonical position); every other
    byte is kept. A module without mutable globals is returned unchanged.
    """
    layout = layout or parse_layout(wasm)
    extra = [g.index for g in layout.globals if g.mutable and not g.imported]
    if not extra:
        return wasm
    entries = bytearray()
    old_count = 0
    export_sec = next((s for s in layout.sections if s.id == SEC_EXPORT), None)
    if export_sec is not None:
        old_count, body_pos = read_uleb(wasm, export_sec.payload_offset)
        entries += wasm[body_pos:export_sec.end]
    for index in extra:
        name = global_export_name(index).encode()
        entries += write_uleb(len(name)) + name + b"\x03" + write_uleb(index)
    payload = write_uleb(old_count + len(extra)) + bytes(entries)
    new_section = bytes([SEC_EXPORT]) + write_uleb(len(payload)) + payload
    if export_sec is not None:
        return wasm[:export_sec.offset] + new_section + wasm[export_sec.end:]
    # No export section yet: insert before the first known section that must follow it.
    insert_at = len(wasm)
    for sec in layout.sections:
        if sec.id != SEC_CUSTOM and _SECTION_RANK.get(sec.id, 0) > _SECTION_RANK[SEC_EXPORT]:
            insert_at = sec.offset
            break
    return wasm[:insert_at] + new_section + wasm[insert_at:]


# --------------------------------------------------------------------------- code scanning
SEC_TYPE = 1
SEC_FUNCTION = 3
SEC_CODE = 10

# Opcodes without immediates (MVP control/parametric/numeric, sign-extension, ref.is_null).
_NO_IMM = frozenset([0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)])
_ONE_ULEB = frozenset([0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2])
_SIMD_MEMARG = frozenset([*range(0, 12), 92, 93])
_SIMD_LANE = frozenset(range(21, 35))
_SIMD_MEMARG_LANE = frozenset(range(84, 92))
# Instructions that change table or segment state, which a snapshot (memory + globals)
# cannot capture: table.set, table.init, elem.drop, table.copy, table.grow, table.fill,
# data.drop.
_STATEFUL_FC = {9: "data.drop", 12: "table.init", 13: "elem.drop", 14: "table.copy",
                15: "table.grow", 17: "table.fill"}


def _skip_memarg(buf: bytes, pos: int) -> int:
    align, pos = read_uleb(buf, pos)
    if align & 0x40:  # multi-memory: explicit memory index
        _, pos = read_uleb(buf, pos)
    _, pos = read_uleb(buf, pos, 64)
    return pos


def _scan_body(buf: bytes, pos: int, end: int) -> list[tuple[int, int]]:
    """Spans [start, end) of every memory.grow in one function body's instructions.

    Raises WasmBinError for instructions whose state a snapshot cannot capture.
    """
    grows: list[tuple[int, int]] = []
    while pos < end:
        start = pos
        op = buf[pos]
        pos += 1
        if op in _NO_IMM:
            continue
        if op in _ONE_ULEB:
            if op == 0x26:
                raise WasmBinError("instruction table.set changes table state, which a "
                                   "snapshot cannot capture")
            _, pos = read_uleb(buf, pos)
        elif op in (0x02, 0x03, 0x04):  # block type: empty, a value type, or a type index
            if buf[pos] == 0x40 or buf[pos] in VALTYPE_NAMES:
                pos += 1
            else:
                _, pos = read_sleb(buf, pos, 33)
        elif op == 0x0E:  # br_table
            count, pos = read_uleb(buf, pos)
            for _ in range(count + 1):
                _, pos = read_uleb(buf, pos)
        elif op in (0x11, 0x13):  # call_indirect / return_call_indirect
            _, pos = read_uleb(buf, pos)
            _, pos = read_uleb(buf, pos)
        elif op == 0x1C:  # typed select
            count, pos = read_uleb(buf, pos)
            for _ in range(count):
                pos = _skip_valtype(buf, pos)
        elif 0x28 <= op <= 0x3E:
            pos = _skip_memarg(buf, pos)
        elif op in (0x3F, 0x40):  # memory.size / memory.grow
            _, pos = read_uleb(buf, pos)
            if op == 0x40:
                grows.append((start, pos))
        elif op == 0x41:
            _, pos = read_sleb(buf, pos, 32)
        elif op == 0x42:
            _, pos = read_sleb(buf, pos, 64)
        elif op == 0x43:
            pos += 4
        elif op == 0x44:
            pos += 8
        elif op == 0xD0:
            _, pos = read_sleb(buf, pos, 33)
        elif op == 0xFC:
            sub, pos = read_uleb(buf, pos)
            if sub in _STATEFUL_FC:
                raise WasmBinError(f"instruction {_STATEFUL_FC[sub]} changes table or segment "
                                   "state, which a snapshot cannot capture")
            if sub <= 7:
                continue
            if sub == 8 or sub == 10:  # memory.init dataidx memidx
                _, pos = read_uleb(buf, pos)
                _, pos = read_uleb(buf, pos)
            elif sub in (11, 16):  # memory.fill memidx / table.size tableidx
                _, pos = read_uleb(buf, pos)
            else:
                raise WasmBinError(f"unsupported instruction 0xfc {sub}")
        elif op == 0xFD:
            sub, pos = read_uleb(buf, pos)
            if sub in _SIMD_MEMARG:
                pos = _skip_memarg(buf, pos)
            elif sub in (12, 13):  # v128.const, i8x16.shuffle
                pos += 16
            elif sub in _SIMD_LANE:
                pos += 1
            elif sub in _SIMD_MEMARG_LANE:
                pos = _skip_memarg(buf, pos) + 1
            elif sub > 0xFF:
                raise WasmBinError(f"unsupported SIMD instruction 0xfd {sub}")
        else:
            raise WasmBinError(f"unsupported opcode 0x{op:02x}")
        if pos > end:
            raise WasmBinError("instruction runs past the end of its function body")
    return grows


# A helper appended to instrumented modules: memory.grow, and trap if it failed, so that
# the host can report MEMORY_LIMIT instead of letting the agent see -1.
#   (func (param i32) (result i32) (local i32)
#     local.get 0  memory.grow 0  local.tee 1  i32.const -1  i32.eq
#     if  unreachable  end  local.get 1)
_GROW_HELPER_BODY = bytes([0x01, 0x01, 0x7F,
                           0x20, 0x00, 0x40, 0x00, 0x22, 0x01, 0x41, 0x7F, 0x46,
                           0x04, 0x40, 0x00, 0x0B, 0x20, 0x01, 0x0B])
_GROW_HELPER_TYPE = bytes([0x60, 0x01, 0x7F, 0x01, 0x7F])


@dataclass(frozen=True)
class Prepared:
    """Module bytes rewritten for the pool, plus what the rewrite added."""

    wasm: bytes
    layout: ModuleLayout
    #: Function index of the memory.grow helper; None when the module never grows memory.
    grow_helper: int | None


def _vec_append(payload: bytes, extra_items: int, extra: bytes) -> bytes:
    count, pos = read_uleb(payload, 0)
    return write_uleb(count + extra_items) + payload[pos:] + extra


def _section(sec_id: int, payload: bytes) -> bytes:
    return bytes([sec_id]) + write_uleb(len(payload)) + payload


def prepare(wasm: bytes) -> Prepared:
    """Rewrite a (validated) module for the pool.

    * every defined mutable global is also exported under `global_export_name`;
    * every ``memory.grow`` becomes a call to an appended helper that traps when the
      growth fails, so a memory-limit hit is a fault the host can name;
    * instructions that change table or data/elem segment state are rejected
      (WasmBinError), because a snapshot of memory and globals would not capture them.
    """
    layout = parse_layout(wasm)
    by_id = {s.id: s for s in layout.sections if s.id != SEC_CUSTOM}
    n_imported_funcs = 0
    imp = by_id.get(SEC_IMPORT)
    if imp is not None:
        count, pos = read_uleb(wasm, imp.payload_offset)
        for _ in range(count):
            _, pos = _read_name(wasm, pos)
            _, pos = _read_name(wasm, pos)
            kind = wasm[pos]
            pos += 1
            if kind == 0x00:
                n_imported_funcs += 1
                _, pos = read_uleb(wasm, pos)
            elif kind == 0x04:
                _, pos = read_uleb(wasm, pos + 1)
            elif kind == 0x01:
                pos = _skip_limits(wasm, _skip_valtype(wasm, pos))
            elif kind == 0x02:
                pos = _skip_limits(wasm, pos)
            else:
                pos = _skip_valtype(wasm, pos) + 1
    # Scan every body (also to reject stateful table/segment instructions).
    code = by_id.get(SEC_CODE)
    bodies: list[tuple[int, int, int, list[tuple[int, int]]]] = []  # (start, instr, end, grows)
    if code is not None:
        try:
            count, pos = read_uleb(wasm, code.payload_offset)
            for _ in range(count):
                size, body_start = read_uleb(wasm, pos)
                body_end = body_start + size
                n_locals, p = read_uleb(wasm, body_start)
                for _ in range(n_locals):
                    _, p = read_uleb(wasm, p)
                    p = _skip_valtype(wasm, p)
                bodies.append((pos, p, body_end, _scan_body(wasm, p, body_end)))
                pos = body_end
        except IndexError:
            raise WasmBinError("function body runs past its end") from None
    grow_helper: int | None = None
    replaced: dict[int, bytes] = {}
    if any(b[3] for b in bodies):
        types = by_id.get(SEC_TYPE)
        funcs = by_id.get(SEC_FUNCTION)
        if types is None or funcs is None or code is None:  # pragma: no cover - bodies imply
            raise WasmBinError("module has code but no type/function section")
        n_types, _ = read_uleb(wasm, types.payload_offset)
        n_defined, _ = read_uleb(wasm, funcs.payload_offset)
        grow_helper = n_imported_funcs + n_defined
        call = b"\x10" + write_uleb(grow_helper)
        new_bodies = bytearray()
        for _head, instr, end, grows in bodies:
            _, body_start = read_uleb(wasm, _head)
            if not grows:
                new_bodies += wasm[_head:end]
                continue
            body = bytearray(wasm[body_start:instr])
            last = instr
            for g_start, g_end in grows:
                body += wasm[last:g_start] + call
                last = g_end
            body += wasm[last:end]
            new_bodies += write_uleb(len(body)) + body
        new_bodies += write_uleb(len(_GROW_HELPER_BODY)) + _GROW_HELPER_BODY
        replaced[SEC_TYPE] = _section(SEC_TYPE, _vec_append(
            wasm[types.payload_offset:types.end], 1, _GROW_HELPER_TYPE))
        replaced[SEC_FUNCTION] = _section(SEC_FUNCTION, _vec_append(
            wasm[funcs.payload_offset:funcs.end], 1, write_uleb(n_types)))
        replaced[SEC_CODE] = _section(SEC_CODE, write_uleb(len(bodies) + 1)
                                      + bytes(new_bodies))
    out = bytearray(wasm[:8])
    for sec in layout.sections:
        if sec.id != SEC_CUSTOM and sec.id in replaced:
            out += replaced[sec.id]
        else:
            out += wasm[sec.offset:sec.end]
    rewritten = bytes(out)
    if replaced:
        layout = parse_layout(rewritten)
    return Prepared(export_mutable_globals(rewritten, layout), layout, grow_helper)
