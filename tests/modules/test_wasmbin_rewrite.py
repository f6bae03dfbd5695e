"""The pool's load-time rewrite on the shared wasm reader (lockstep.wasmbin)."""

from __future__ import annotations

import pytest
import wasmtime

from lockstep.wasmbin import (
    MalformedModuleError,
    RewriteError,
    export_mutable_globals,
    global_export_name,
    parse_layout,
    prepare,
    sections,
)

pytestmark = pytest.mark.unit


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def test_sections_and_bad_magic() -> None:
    wasm = wat('(module (memory 1) (func (export "f")))')
    assert [s.id for s in sections(wasm)] == [1, 3, 5, 7, 10]
    with pytest.raises(MalformedModuleError, match="version"):
        sections(b"\x00asm\x02\x00\x00\x00")
    with pytest.raises(MalformedModuleError, match="announces"):
        sections(wasm[:-1])


def exported_globals(wasm: bytes) -> dict[str, int]:
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, wasm)
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, module, [])
    exports = inst.exports(store)
    return {
        e.name: exports[e.name].value(store)  # type: ignore[union-attr]
        for e in module.exports
        if isinstance(e.type, wasmtime.GlobalType)
    }


def test_export_mutable_globals_without_export_section() -> None:
    wasm = wat(
        "(module (global (mut i32) (i32.const 5)) (global i32 "
        "(i32.const 6)) (global (mut i64) (i64.const 7)) (func) "
        '(data "x"))'
    )
    out = export_mutable_globals(wasm)
    layout = parse_layout(out)
    assert layout.export_names == (global_export_name(0), global_export_name(2))
    assert [(g.index, g.type_name, g.mutable) for g in layout.globals] == [
        (0, "i32", True),
        (1, "i32", False),
        (2, "i64", True),
    ]
    assert exported_globals(out) == {"__lockstep_global_0": 5, "__lockstep_global_2": 7}
    # Section order stays canonical (export before code), or wasmtime would refuse it.
    assert [s.id for s in sections(out)].index(7) < [s.id for s in sections(out)].index(10)


def test_existing_exports_are_kept_and_custom_sections_preserved() -> None:
    wasm = (
        wat('(module (global $g (export "g") (mut f32) (f32.const 1.5)) (func (export "f")))')
        + b"\x00\x05\x04name"
    )
    out = export_mutable_globals(wasm)
    assert parse_layout(out).export_names == ("g", "f", "__lockstep_global_0")
    assert out.endswith(b"\x00\x05\x04name")
    assert exported_globals(out)["__lockstep_global_0"] == 1.5
    plain = wat("(module (func))")
    assert export_mutable_globals(plain) == plain


def test_prepare_instruments_memory_grow() -> None:
    text = """(module (import "m" "f" (func)) (memory 1 3)
      (func (export "grow") (param i32) (result i32)
        (block (result i32) (br_table 0 0 (memory.grow (local.get 0)) (i32.const 0))))
      (func (export "simd") (result i32)
        (i32x4.extract_lane 1 (v128.const i32x4 1 2 3 4))))"""
    wasm = wat(text)
    prepared = prepare(wasm)
    assert prepared.grow_helper == 3  # 1 import + 2 defined
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, prepared.wasm)
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_func("m", "f", wasmtime.FuncType([], []), lambda: None)
    inst = linker.instantiate(store, module)
    grow = inst.exports(store)["grow"]
    assert grow(store, 1) == 1  # type: ignore[operator]
    with pytest.raises(wasmtime.Trap) as info:
        grow(store, 5)  # type: ignore[operator]
    assert info.value.frames[0].func_index == 3
    assert inst.exports(store)["simd"](store) == 2  # type: ignore[operator]


def test_prepare_leaves_growless_module_code_alone() -> None:
    wasm = wat("(module (memory 1) (func (drop (memory.size))))")
    prepared = prepare(wasm)
    assert prepared.grow_helper is None and prepared.wasm == wasm


def test_prepare_rejects_stateful_table_instructions() -> None:
    with pytest.raises(RewriteError, match=r"table\.grow"):
        prepare(
            wat(
                "(module (table 1 funcref) (func (drop (table.grow (ref.null func) "
                "(i32.const 1)))))"
            )
        )
