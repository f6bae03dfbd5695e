"""Load-time rewriting for the pool, on the shared reader: every mutable global snapshottable,
every ``memory.grow`` a nameable fault.

The pool snapshots an agent's linear memory and *every* mutable global, but wasmtime only lets
the host reach exported globals; so each defined mutable global is also exported under a
reserved name (``__lockstep_global_<index>``). Each ``memory.grow`` becomes a call to an
appended helper that traps when the growth fails, so that the host reports MEMORY_LIMIT
instead of the agent seeing -1. Everything else is copied byte for byte.

The input must already be valid (``wasmtime.Module.validate``): `RewriteError` is raised only
for what the rewriter does not support or a snapshot could not capture (table and segment
state), and :class:`MalformedModuleError` for bytes that are not a module.
"""

from __future__ import annotations

from dataclasses import dataclass

from lockstep.wasmbin._reader import (
    ExternKind,
    MalformedModuleError,
    Reader,
    Section,
    SectionId,
    decode_s32,
    decode_s64,
    decode_u32,
    decode_u64,
    encode_u32,
    parse_imports,
    sections,
)

__all__ = [
    "RESERVED_EXPORT_PREFIX",
    "REWRITE_VERSION",
    "START_EXPORT",
    "GlobalInfo",
    "ModuleLayout",
    "Prepared",
    "RewriteError",
    "export_mutable_globals",
    "global_export_name",
    "parse_layout",
    "prepare",
]

RESERVED_EXPORT_PREFIX = "__lockstep_"
#: Bumped whenever `prepare` rewrites modules differently (it keys compiled-module caches).
#: 2: the start function is no longer run by instantiation but exported as START_EXPORT.
REWRITE_VERSION = 2
#: The export under which a module's start function is reached (its start section removed).
START_EXPORT = f"{RESERVED_EXPORT_PREFIX}start"

# Canonical order of known sections (the binary format requires it; custom sections float).
_SECTION_RANK = {
    1: 1,
    2: 2,
    3: 3,
    4: 4,
    5: 5,
    13: 6,
    6: 7,
    7: 8,
    8: 9,
    9: 10,
    12: 11,
    10: 12,
    11: 13,
}
_VALTYPE_NAMES = {
    0x7F: "i32",
    0x7E: "i64",
    0x7D: "f32",
    0x7C: "f64",
    0x7B: "v128",
    0x70: "funcref",
    0x6F: "externref",
}


class RewriteError(ValueError):
    """The module uses a construct the pool does not accept or the rewriter does not handle."""


def _s33(buf: bytes, pos: int) -> int:
    reader = Reader(buf, pos)
    reader.s33()
    return reader.pos


def _skip_valtype(buf: bytes, pos: int) -> int:
    if buf[pos] in (0x63, 0x64):  # (ref null? ht): function-references, disabled in the pool
        return _s33(buf, pos + 1)
    return pos + 1


def _skip_const_expr(buf: bytes, pos: int) -> int:
    """Skip a constant expression up to and including its `end` (0x0B)."""
    while True:
        op = buf[pos]
        pos += 1
        if op == 0x0B:
            return pos
        if op == 0x41:  # i32.const
            _, pos = decode_s32(buf, pos)
        elif op == 0x42:  # i64.const
            _, pos = decode_s64(buf, pos)
        elif op == 0x43:  # f32.const
            pos += 4
        elif op == 0x44:  # f64.const
            pos += 8
        elif op in (0x23, 0xD2):  # global.get, ref.func
            _, pos = decode_u32(buf, pos)
        elif op == 0xD0:  # ref.null heaptype
            pos = _s33(buf, pos)
        elif op == 0xFD:  # v128.const
            sub, pos = decode_u32(buf, pos)
            if sub != 12:
                raise RewriteError(f"unsupported SIMD opcode {sub} in a constant expression")
            pos += 16
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended-const arithmetic
            continue
        else:
            raise RewriteError(f"unsupported opcode 0x{op:02x} in a constant expression")


@dataclass(frozen=True)
class GlobalInfo:
    """One global of the module's global index space."""

    index: int
    valtype: int  # the wasm value-type byte (0x7F i32 ...)
    mutable: bool
    imported: bool

    @property
    def type_name(self) -> str:
        """ "i32", "i64", "f32", "f64", "v128", ... ."""
        return _VALTYPE_NAMES.get(self.valtype, f"0x{self.valtype:02x}")


@dataclass(frozen=True)
class ModuleLayout:
    """What the pool needs to know about a module's structure."""

    sections: tuple[Section, ...]
    globals: tuple[GlobalInfo, ...]
    export_names: tuple[str, ...]
    imported_funcs: int


_GLOBAL_TYPE_BYTE = {v: k for k, v in _VALTYPE_NAMES.items()}


def parse_layout(wasm: bytes) -> ModuleLayout:
    """Read the sections, every global (imported first) and every export name."""
    secs = sections(wasm)
    imports = parse_imports(wasm)
    globals_: list[GlobalInfo] = []
    for imp in imports:
        if imp.kind == ExternKind.GLOBAL:  # detail is "[mut ]<valtype>"
            mutable = imp.detail.startswith("mut ")
            name = imp.detail.removeprefix("mut ")
            globals_.append(
                GlobalInfo(len(globals_), _GLOBAL_TYPE_BYTE.get(name, 0), mutable, True)
            )
    exports: list[str] = []
    try:
        for sec in secs:
            if sec.id == SectionId.GLOBAL:
                count, pos = decode_u32(wasm, sec.payload_offset)
                for _ in range(count):
                    valtype = wasm[pos]
                    pos = _skip_valtype(wasm, pos)
                    mut = wasm[pos]
                    pos = _skip_const_expr(wasm, pos + 1)
                    globals_.append(GlobalInfo(len(globals_), valtype, mut == 1, False))
            elif sec.id == SectionId.EXPORT:
                reader = Reader(wasm, sec.payload_offset, sec.end)
                for _ in range(reader.vec_len(3)):
                    exports.append(reader.name())
                    reader.byte()
                    reader.u32()
    except IndexError:
        raise RewriteError("section contents run past their end") from None
    funcs = sum(1 for imp in imports if imp.kind == ExternKind.FUNC)
    return ModuleLayout(tuple(secs), tuple(globals_), tuple(exports), funcs)


def global_export_name(index: int) -> str:
    """The reserved export name under which the pool reaches global `index`."""
    return f"{RESERVED_EXPORT_PREFIX}global_{index}"


def _section(sec_id: int, payload: bytes) -> bytes:
    return bytes([sec_id]) + encode_u32(len(payload)) + payload


def export_mutable_globals(wasm: bytes, layout: ModuleLayout | None = None) -> bytes:
    """Return `wasm` with each defined mutable global also exported under its reserved name.

    The export section is rewritten (or created at its canonical position); every other
    byte is kept. A module without mutable globals is returned unchanged.
    """
    layout = layout or parse_layout(wasm)
    extra = [
        (global_export_name(g.index), 0x03, g.index)
        for g in layout.globals
        if g.mutable and not g.imported
    ]
    return _add_exports(wasm, layout, extra)


def _add_exports(wasm: bytes, layout: ModuleLayout, extra: list[tuple[str, int, int]]) -> bytes:
    """`wasm` with exports (name, kind byte, index) appended to its export section."""
    if not extra:
        return wasm
    entries = bytearray()
    old_count = 0
    export_sec = next((s for s in layout.sections if s.id == SectionId.EXPORT), None)
    if export_sec is not None:
        old_count, body_pos = decode_u32(wasm, export_sec.payload_offset)
        entries += wasm[body_pos : export_sec.end]
    for name_str, kind, index in extra:
        name = name_str.encode()
        entries += encode_u32(len(name)) + name + bytes([kind]) + encode_u32(index)
    new_section = _section(SectionId.EXPORT, encode_u32(old_count + len(extra)) + bytes(entries))
    if export_sec is not None:
        return wasm[: export_sec.offset] + new_section + wasm[export_sec.end :]
    # No export section yet: insert before the first known section that must follow it.
    insert_at = len(wasm)
    for sec in layout.sections:
        if (
            sec.id != SectionId.CUSTOM
            and _SECTION_RANK.get(sec.id, 0) > _SECTION_RANK[SectionId.EXPORT]
        ):
            insert_at = sec.offset
            break
    return wasm[:insert_at] + new_section + wasm[insert_at:]


# --------------------------------------------------------------------------- code scanning
# Opcodes without immediates (MVP control/parametric/numeric, sign-extension, ref.is_null).
_NO_IMM = frozenset([0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1, *range(0x45, 0xC5)])
_ONE_ULEB = frozenset([0x0C, 0x0D, 0x10, 0x12, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2])
_SIMD_MEMARG = frozenset([*range(0, 12), 92, 93])
_SIMD_LANE = frozenset(range(21, 35))
_SIMD_MEMARG_LANE = frozenset(range(84, 92))
# Instructions that change table or segment state, which a snapshot (memory + globals)
# cannot capture: table.set, table.init, elem.drop, table.copy, table.grow, table.fill,
# data.drop.
_STATEFUL_FC = {
    9: "data.drop",
    12: "table.init",
    13: "elem.drop",
    14: "table.copy",
    15: "table.grow",
    17: "table.fill",
}


def _skip_memarg(buf: bytes, pos: int) -> int:
    align, pos = decode_u32(buf, pos)
    if align & 0x40:  # multi-memory: explicit memory index
        _, pos = decode_u32(buf, pos)
    _, pos = decode_u64(buf, pos)
    return pos


def _scan_body(buf: bytes, pos: int, end: int) -> list[tuple[int, int]]:
    """Spans [start, end) of every memory.grow in one function body's instructions.

    Raises RewriteError for instructions whose state a snapshot cannot capture.
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
                raise RewriteError(
                    "instruction table.set changes table state, which a snapshot cannot capture"
                )
            _, pos = decode_u32(buf, pos)
        elif op in (0x02, 0x03, 0x04):  # block type: empty, a value type, or a type index
            if buf[pos] == 0x40 or buf[pos] in _VALTYPE_NAMES:
                pos += 1
            else:
                pos = _s33(buf, pos)
        elif op == 0x0E:  # br_table
            count, pos = decode_u32(buf, pos)
            for _ in range(count + 1):
                _, pos = decode_u32(buf, pos)
        elif op in (0x11, 0x13):  # call_indirect / return_call_indirect
            _, pos = decode_u32(buf, pos)
            _, pos = decode_u32(buf, pos)
        elif op == 0x1C:  # typed select
            count, pos = decode_u32(buf, pos)
            for _ in range(count):
                pos = _skip_valtype(buf, pos)
        elif 0x28 <= op <= 0x3E:
            pos = _skip_memarg(buf, pos)
        elif op in (0x3F, 0x40):  # memory.size / memory.grow
            _, pos = decode_u32(buf, pos)
            if op == 0x40:
                grows.append((start, pos))
        elif op == 0x41:
            _, pos = decode_s32(buf, pos)
        elif op == 0x42:
            _, pos = decode_s64(buf, pos)
        elif op == 0x43:
            pos += 4
        elif op == 0x44:
            pos += 8
        elif op == 0xD0:
            pos = _s33(buf, pos)
        elif op == 0xFC:
            sub, pos = decode_u32(buf, pos)
            if sub in _STATEFUL_FC:
                raise RewriteError(
                    f"instruction {_STATEFUL_FC[sub]} changes table or segment "
                    "state, which a snapshot cannot capture"
                )
            if sub <= 7:
                continue
            if sub in (8, 10):  # memory.init dataidx memidx / memory.copy memidx memidx
                _, pos = decode_u32(buf, pos)
                _, pos = decode_u32(buf, pos)
            elif sub in (11, 16):  # memory.fill memidx / table.size tableidx
                _, pos = decode_u32(buf, pos)
            else:
                raise RewriteError(f"unsupported instruction 0xfc {sub}")
        elif op == 0xFD:
            sub, pos = decode_u32(buf, pos)
            if sub in _SIMD_MEMARG:
                pos = _skip_memarg(buf, pos)
            elif sub in (12, 13):  # v128.const, i8x16.shuffle
                pos += 16
            elif sub in _SIMD_LANE:
                pos += 1
            elif sub in _SIMD_MEMARG_LANE:
                pos = _skip_memarg(buf, pos) + 1
            elif sub > 0xFF:
                raise RewriteError(f"unsupported SIMD instruction 0xfd {sub}")
        else:
            raise RewriteError(f"unsupported opcode 0x{op:02x}")
        if pos > end:
            raise RewriteError("instruction runs past the end of its function body")
    return grows


# The helper appended to instrumented modules:
#   (func (param i32) (result i32) (local i32)
#     local.get 0  memory.grow 0  local.tee 1  i32.const -1  i32.eq
#     if  unreachable  end  local.get 1)
_GROW_HELPER_BODY = bytes(
    [
        0x01,
        0x01,
        0x7F,
        0x20,
        0x00,
        0x40,
        0x00,
        0x22,
        0x01,
        0x41,
        0x7F,
        0x46,
        0x04,
        0x40,
        0x00,
        0x0B,
        0x20,
        0x01,
        0x0B,
    ]
)
_GROW_HELPER_TYPE = bytes([0x60, 0x01, 0x7F, 0x01, 0x7F])


@dataclass(frozen=True)
class Prepared:
    """Module bytes rewritten for the pool, plus what the rewrite added."""

    wasm: bytes
    layout: ModuleLayout
    #: Function index of the memory.grow helper; None when the module never grows memory.
    grow_helper: int | None
    #: True when the module had a start function, now exported as START_EXPORT: the host
    #: calls it after instantiation, metered like agent_init. Instantiation itself then runs
    #: no wasm code, so the fuel an agent is charged cannot depend on how the engine
    #: initialises memory (with or without a copy-on-write image).
    has_start: bool = False


def _vec_append(payload: bytes, extra_items: int, extra: bytes) -> bytes:
    count, pos = decode_u32(payload, 0)
    return encode_u32(count + extra_items) + payload[pos:] + extra


def prepare(wasm: bytes) -> Prepared:
    """Rewrite a (validated) module for the pool.

    * every defined mutable global is also exported under `global_export_name`;
    * every ``memory.grow`` becomes a call to an appended helper that traps when the
      growth fails, so a memory-limit hit is a fault the host can name;
    * instructions that change table or data/elem segment state are rejected
      (RewriteError), because a snapshot of memory and globals would not capture them.
    """
    layout = parse_layout(wasm)
    by_id = {s.id: s for s in layout.sections if s.id != SectionId.CUSTOM}
    # Scan every body (also to reject stateful table/segment instructions).
    code = by_id.get(SectionId.CODE)
    bodies: list[tuple[int, int, int, list[tuple[int, int]]]] = []  # (start, instr, end, grows)
    if code is not None:
        try:
            count, pos = decode_u32(wasm, code.payload_offset)
            for _ in range(count):
                size, body_start = decode_u32(wasm, pos)
                body_end = body_start + size
                n_locals, p = decode_u32(wasm, body_start)
                for _ in range(n_locals):
                    _, p = decode_u32(wasm, p)
                    p = _skip_valtype(wasm, p)
                bodies.append((pos, p, body_end, _scan_body(wasm, p, body_end)))
                pos = body_end
        except (IndexError, MalformedModuleError):
            raise RewriteError("function body runs past its end") from None
    grow_helper: int | None = None
    replaced: dict[int, bytes] = {}
    if any(b[3] for b in bodies):
        types = by_id.get(SectionId.TYPE)
        funcs = by_id.get(SectionId.FUNCTION)
        if types is None or funcs is None or code is None:  # pragma: no cover - bodies imply
            raise RewriteError("module has code but no type/function section")
        n_types, _ = decode_u32(wasm, types.payload_offset)
        n_defined, _ = decode_u32(wasm, funcs.payload_offset)
        grow_helper = layout.imported_funcs + n_defined
        call = b"\x10" + encode_u32(grow_helper)
        new_bodies = bytearray()
        for head, instr, end, grows in bodies:
            _, body_start = decode_u32(wasm, head)
            if not grows:
                new_bodies += wasm[head:end]
                continue
            body = bytearray(wasm[body_start:instr])
            last = instr
            for g_start, g_end in grows:
                body += wasm[last:g_start] + call
                last = g_end
            body += wasm[last:end]
            new_bodies += encode_u32(len(body)) + body
        new_bodies += encode_u32(len(_GROW_HELPER_BODY)) + _GROW_HELPER_BODY
        replaced[SectionId.TYPE] = _section(
            SectionId.TYPE,
            _vec_append(wasm[types.payload_offset : types.end], 1, _GROW_HELPER_TYPE),
        )
        replaced[SectionId.FUNCTION] = _section(
            SectionId.FUNCTION,
            _vec_append(wasm[funcs.payload_offset : funcs.end], 1, encode_u32(n_types)),
        )
        replaced[SectionId.CODE] = _section(
            SectionId.CODE, encode_u32(len(bodies) + 1) + bytes(new_bodies)
        )
    start = by_id.get(SectionId.START)
    start_func: int | None = None
    if start is not None:
        start_func, _ = decode_u32(wasm, start.payload_offset)
        replaced[SectionId.START] = b""  # dropped: the host calls it as START_EXPORT
    out = bytearray(wasm[:8])
    for sec in layout.sections:
        if sec.id != SectionId.CUSTOM and sec.id in replaced:
            out += replaced[sec.id]
        else:
            out += wasm[sec.offset : sec.end]
    rewritten = bytes(out)
    if replaced:
        layout = parse_layout(rewritten)
    extra = [
        (global_export_name(g.index), 0x03, g.index)
        for g in layout.globals
        if g.mutable and not g.imported
    ]
    if start_func is not None:
        extra.append((START_EXPORT, 0x00, start_func))
    return Prepared(
        _add_exports(rewritten, layout, extra), layout, grow_helper, start_func is not None
    )
