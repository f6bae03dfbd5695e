"""lockstep.wasmbin against modules produced by wasmtime.wat2wasm."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
import wasmtime

from lockstep import wasmbin
from lockstep.errors import ModuleError
from lockstep.wasmbin import ExternKind, FuncType, MalformedModuleError, SectionId

pytestmark = pytest.mark.unit

AGENT_WAT = """
(module $agent
  (import "lockstep_v1" "send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "lockstep_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "lockstep_v1" "tick" (func $tick (result i64)))
  (import "lockstep_v1" "random" (func $random (param i32 i32) (result i32)))
  (import "lockstep_v1" "infer" (func $infer (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1 4)
  (global $g (export "counter") (mut i64) (i64.const 7))
  (table (export "tbl") 2 funcref)
  (func (export "agent_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32)
    (drop (call $tick)) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
  (func (export "multi") (param i64 f32 f64 funcref externref) (result i32 i64)
    i32.const 1 i64.const 2)
  (data (i32.const 0) "hello")
)
"""

OTHER_IMPORTS_WAT = """
(module
  (import "env" "mem" (memory 2 10))
  (import "env" "shared" (memory 1 2 shared))
  (import "env" "tab" (table 3 funcref))
  (import "env" "g" (global i32))
  (import "env" "gm" (global (mut f64)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
)
"""


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


@pytest.fixture(scope="module")
def agent() -> bytes:
    return wat(AGENT_WAT)


def compiles(data: bytes) -> bool:
    wasmtime.Module(wasmtime.Engine(), data)
    return True


# --------------------------------------------------------------------------- LEB128

KNOWN_U = [
    (0, "00"),
    (1, "01"),
    (127, "7f"),
    (128, "8001"),
    (624485, "e58e26"),
    (2**32 - 1, "ffffffff0f"),
]
KNOWN_S = [
    (0, "00"),
    (1, "01"),
    (-1, "7f"),
    (63, "3f"),
    (64, "c000"),
    (-64, "40"),
    (-65, "bf7f"),
    (-123456, "c0bb78"),
    (2**31 - 1, "ffffffff07"),
    (-(2**31), "8080808078"),
]


@pytest.mark.parametrize(("value", "hexed"), KNOWN_U)
def test_u32_known_vectors(value: int, hexed: str) -> None:
    assert wasmbin.encode_u32(value).hex() == hexed
    assert wasmbin.decode_u32(bytes.fromhex(hexed)) == (value, len(hexed) // 2)


@pytest.mark.parametrize(("value", "hexed"), KNOWN_S)
def test_s32_known_vectors(value: int, hexed: str) -> None:
    assert wasmbin.encode_s32(value).hex() == hexed
    assert wasmbin.decode_s32(bytes.fromhex(hexed)) == (value, len(hexed) // 2)


def test_leb_round_trips_at_boundaries_and_random() -> None:
    rng = random.Random(1234)
    u32 = [0, 1, 2**7 - 1, 2**7, 2**14, 2**21, 2**28, 2**32 - 1]
    u64 = [*u32, 2**32, 2**56, 2**63, 2**64 - 1]
    s32 = [0, -1, 1, 2**31 - 1, -(2**31), 63, 64, -64, -65, 8191, -8192]
    s64 = [*s32, 2**63 - 1, -(2**63), 2**32, -(2**32)]
    u32 += [rng.randrange(2**32) for _ in range(500)]
    u64 += [rng.randrange(2**64) for _ in range(500)]
    s32 += [rng.randrange(-(2**31), 2**31) for _ in range(500)]
    s64 += [rng.randrange(-(2**63), 2**63) for _ in range(500)]
    cases = [
        (u32, wasmbin.encode_u32, wasmbin.decode_u32),
        (u64, wasmbin.encode_u64, wasmbin.decode_u64),
        (s32, wasmbin.encode_s32, wasmbin.decode_s32),
        (s64, wasmbin.encode_s64, wasmbin.decode_s64),
    ]
    for values, enc, dec in cases:
        for v in values:
            encoded = enc(v)
            # decoding at an offset inside a larger buffer, with trailing bytes
            assert dec(b"\xaa" + encoded + b"\xff", 1) == (v, 1 + len(encoded))


def test_leb_non_minimal_encodings_are_accepted() -> None:
    assert wasmbin.decode_u32(bytes.fromhex("8000")) == (0, 2)
    assert wasmbin.decode_u32(bytes.fromhex("8180808000")) == (1, 5)
    assert wasmbin.decode_s32(bytes.fromhex("ffffffff7f")) == (-1, 5)


@pytest.mark.parametrize(
    ("decoder", "hexed", "words"),
    [
        (wasmbin.decode_u32, "ffffffff1f", "overflows"),
        (wasmbin.decode_u32, "ffffffff8f00", "longer than 5"),
        (wasmbin.decode_u64, "ffffffffffffffffff03", "overflows"),
        (wasmbin.decode_u64, "ffffffffffffffffff8100", "longer than 10"),
        (wasmbin.decode_s32, "ffffffff0f", "overflows"),
        (wasmbin.decode_s32, "8080808070", "overflows"),
        (wasmbin.decode_s64, "ffffffffffffffffff01", "overflows"),
        (wasmbin.decode_u32, "", "truncated"),
        (wasmbin.decode_u32, "80", "truncated"),
        (wasmbin.decode_u64, "ffffffff", "truncated"),
        (wasmbin.decode_s32, "c0", "truncated"),
        (wasmbin.decode_s64, "ff", "truncated"),
    ],
)
def test_leb_malformed_raises_module_error(
    decoder: Callable[[bytes], tuple[int, int]], hexed: str, words: str
) -> None:
    with pytest.raises(MalformedModuleError, match=words) as info:
        decoder(bytes.fromhex(hexed))
    assert isinstance(info.value, ModuleError)
    assert info.value.offset == 0


@pytest.mark.parametrize(
    ("encoder", "value"),
    [
        (wasmbin.encode_u32, -1),
        (wasmbin.encode_u32, 2**32),
        (wasmbin.encode_u64, 2**64),
        (wasmbin.encode_s32, 2**31),
        (wasmbin.encode_s32, -(2**31) - 1),
        (wasmbin.encode_s64, 2**63),
    ],
)
def test_leb_encode_out_of_range(encoder: Callable[[int], bytes], value: int) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encoder(value)


# --------------------------------------------------------------------------- parsing


def test_sections_in_order_and_framed(agent: bytes) -> None:
    secs = wasmbin.sections(agent)
    ids = [s.id for s in secs if s.id != SectionId.CUSTOM]
    assert ids == [
        SectionId.TYPE,
        SectionId.IMPORT,
        SectionId.FUNCTION,
        SectionId.TABLE,
        SectionId.MEMORY,
        SectionId.GLOBAL,
        SectionId.EXPORT,
        SectionId.CODE,
        SectionId.DATA,
    ]
    assert secs[0].offset == 8
    for before, after in itertools.pairwise(secs):
        assert before.end == after.offset
    assert secs[-1].end == len(agent)
    # wat2wasm emits a "name" custom section for $identifiers
    assert "name" in wasmbin.parse_module(agent).custom_section_names()


def test_imports_with_signatures(agent: bytes) -> None:
    module = wasmbin.parse_module(agent)
    assert [(i.module, i.name, i.kind) for i in module.imports] == [
        ("lockstep_v1", n, ExternKind.FUNC) for n in ("send", "log", "tick", "random", "infer")
    ]
    sigs = {i.name: module.import_type(i) for i in module.imports}
    assert sigs["send"] == FuncType(("i32",) * 4, ("i32",))
    assert sigs["log"] == FuncType(("i32",) * 3, ("i32",))
    assert sigs["tick"] == FuncType((), ("i64",))
    assert sigs["random"] == FuncType(("i32", "i32"), ("i32",))
    assert sigs["infer"] == FuncType(("i32",) * 4, ("i64",))
    assert str(sigs["infer"]) == "(i32, i32, i32, i32) -> (i64)"


def test_exports_with_signatures(agent: bytes) -> None:
    module = wasmbin.parse_module(agent)
    kinds = {e.name: e.kind for e in module.exports}
    assert kinds == {
        "memory": ExternKind.MEMORY,
        "counter": ExternKind.GLOBAL,
        "tbl": ExternKind.TABLE,
        "agent_alloc": ExternKind.FUNC,
        "agent_init": ExternKind.FUNC,
        "agent_step": ExternKind.FUNC,
        "agent_receive": ExternKind.FUNC,
        "agent_shutdown": ExternKind.FUNC,
        "multi": ExternKind.FUNC,
    }
    # function indices count the 5 imported functions first
    step = module.export("agent_step")
    assert step is not None and step.index == 7
    assert module.export_type("agent_step") == FuncType(("i32",), ("i32",))
    assert module.export_type("agent_init") == FuncType((), ("i32",))
    assert module.export_type("multi") == FuncType(
        ("i64", "f32", "f64", "funcref", "externref"), ("i32", "i64")
    )
    assert module.export_type("memory") is None
    assert module.export_type("absent") is None
    assert len(module.function_types) == 11


def test_non_function_imports() -> None:
    data = wat(OTHER_IMPORTS_WAT)
    imports = wasmbin.parse_imports(data)
    assert [(i.name, i.kind, i.type_index, i.detail) for i in imports] == [
        ("mem", ExternKind.MEMORY, None, "min=2 max=10"),
        ("shared", ExternKind.MEMORY, None, "min=1 max=2 shared"),
        ("tab", ExternKind.TABLE, None, "funcref min=3"),
        ("g", ExternKind.GLOBAL, None, "i32"),
        ("gm", ExternKind.GLOBAL, None, "mut f64"),
        ("fd_write", ExternKind.FUNC, 0, ""),
    ]
    assert wasmbin.parse_exports(data) == []


def test_empty_module() -> None:
    data = wat("(module)")
    assert data == wasmbin.MAGIC + wasmbin.VERSION
    module = wasmbin.parse_module(data)
    assert module.sections == () and module.imports == () and module.types == ()


def test_v128_and_typed_references() -> None:
    data = wat(
        '(module (type $t (func)) (func (export "f") (param v128 (ref null $t)) '
        "(result (ref null func))  ref.null func))"
    )
    module = wasmbin.parse_module(data)
    assert module.export_type("f") == FuncType(("v128", "(ref null 0)"), ("funcref",))


# --------------------------------------------------------------------------- custom sections


def test_append_read_replace_remove_custom_sections(agent: bytes) -> None:
    one = wasmbin.append_custom_section(agent, "lockstep.test", b"\x00payload\xff")
    assert one.startswith(agent)
    assert wasmbin.custom_section(one, "lockstep.test") == b"\x00payload\xff"
    assert wasmbin.custom_sections(one, "lockstep.test") == [b"\x00payload\xff"]
    assert compiles(one)

    two = wasmbin.append_custom_section(one, "lockstep.test", b"second")
    assert wasmbin.custom_sections(two, "lockstep.test") == [b"\x00payload\xff", b"second"]
    with pytest.raises(MalformedModuleError, match=r"2 custom sections named 'lockstep\.test'"):
        wasmbin.custom_section(two, "lockstep.test")

    replaced = wasmbin.replace_custom_section(two, "lockstep.test", b"x" * 300)
    assert wasmbin.custom_sections(replaced, "lockstep.test") == [b"x" * 300]
    assert compiles(replaced)

    assert wasmbin.remove_custom_sections(replaced, "lockstep.test") == agent
    assert wasmbin.remove_custom_sections(agent, "absent") == agent
    assert wasmbin.custom_section(agent, "absent") is None


def test_custom_section_in_the_middle_is_removed_byte_exactly(agent: bytes) -> None:
    secs = wasmbin.sections(agent)
    code = next(s for s in secs if s.id == SectionId.CODE)
    extra = wasmbin.append_custom_section(wasmbin.MAGIC + wasmbin.VERSION, "mid", b"abc")[8:]
    spliced = agent[: code.offset] + extra + agent[code.offset :]
    assert compiles(spliced)
    assert wasmbin.custom_section(spliced, "mid") == b"abc"
    assert wasmbin.remove_custom_sections(spliced, "mid") == agent


def test_unicode_section_name(agent: bytes) -> None:
    data = wasmbin.append_custom_section(agent, "naïve.✓", b"")
    assert wasmbin.custom_section(data, "naïve.✓") == b""


# --------------------------------------------------------------------------- malformed


def raw_section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + wasmbin.encode_u32(len(payload)) + payload


HEADER = wasmbin.MAGIC + wasmbin.VERSION


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "truncated header"),
        (b"\x00as", "truncated header"),
        (b"\x00asm\x01", "truncated header"),
        (b"MZ\x90\x00", "bad magic"),
        (b"\x7fELF\x02\x01\x01\x00", "bad magic"),
        (b"\x00asm\x02\x00\x00\x00", "unsupported binary version"),
        (b"\x00asm\x0d\x00\x01\x00", "component"),
        (HEADER + b"\x01", "truncated u32"),
        (HEADER + b"\x01\x05\x01", "announces 5 bytes"),
        (HEADER + b"\x01\xff\xff\xff\xff\x7f", "overflows"),
        (HEADER + raw_section(14, b""), "unknown section id 14"),
        (HEADER + raw_section(1, b"\x00") + raw_section(1, b"\x00"), "duplicate TYPE"),
        (HEADER + raw_section(2, b"\x00") + raw_section(1, b"\x00"), "TYPE section out of order"),
        (HEADER + raw_section(0, b""), "truncated u32"),
        (HEADER + raw_section(0, b"\x05ab"), "5 bytes announced"),
        (HEADER + raw_section(0, b"\x02\xff\xfe"), "not valid UTF-8"),
    ],
)
def test_malformed_framing(data: bytes, words: str) -> None:
    with pytest.raises(MalformedModuleError, match=words):
        wasmbin.parse_module(data)


@pytest.mark.parametrize(
    ("section", "words"),
    [
        (raw_section(1, b"\x01\x5f\x00\x00"), "unsupported type form 0x5f"),
        (raw_section(1, b"\x01\x60\x01\x40\x00"), "unknown value type 0x40"),
        (raw_section(1, b"\x01\x60\x00\x00\x00"), "trailing bytes in type"),
        (raw_section(1, b"\xff\xff\x03"), "cannot fit"),
        (raw_section(2, b"\x01\x01m\x01n\x09"), "unknown import kind 0x09"),
        (raw_section(2, b"\x01\x01m\x01n\x02\x09\x01"), "memory limits flags"),
        (raw_section(2, b"\x01\x01m\x01n\x03\x7f\x02"), "mutability"),
        (raw_section(2, b"\x01\x01m\x01n\x04\x01\x00"), "tag attribute"),
        (raw_section(2, b"\x01\x01m\x01n\x00"), "truncated u32"),
        (raw_section(7, b"\x01\x01e\x07\x00"), "unknown export kind 0x07"),
        (raw_section(3, b"\x02\x00"), "cannot fit"),
    ],
)
def test_malformed_sections(section: bytes, words: str) -> None:
    with pytest.raises(MalformedModuleError, match=words):
        wasmbin.parse_module(HEADER + section)


def test_every_truncation_is_a_module_error_or_parses(agent: bytes) -> None:
    boundaries = {s.end for s in wasmbin.sections(agent)} | {8}
    for cut in range(len(agent)):
        prefix = agent[:cut]
        if cut in boundaries:
            wasmbin.parse_module(prefix)
            continue
        with pytest.raises(MalformedModuleError):
            wasmbin.parse_module(prefix)


def test_random_corruption_never_escapes_as_another_exception(agent: bytes) -> None:
    rng = random.Random(99)
    for _ in range(3000):
        data = bytearray(agent)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        try:
            module = wasmbin.parse_module(data)
            for imp in module.imports:
                module.import_type(imp)
            for exp in module.exports:
                module.export_type(exp.name)
        except ModuleError:
            pass


def test_accepts_bytearray_and_memoryview(agent: bytes) -> None:
    assert wasmbin.parse_module(bytearray(agent)) == wasmbin.parse_module(memoryview(agent))
