"""lockstep.agents.abi_problems on hand-written modules (WAT), one ABI rule at a time."""

from __future__ import annotations

import pytest
import wasmtime

from lockstep.agents import ABI_EXPORTS, ABI_IMPORTS, abi_problems

pytestmark = pytest.mark.unit

_IMPORTS = {
    "send": "(param i32 i32 i32 i32) (result i32)",
    "log": "(param i32 i32 i32) (result i32)",
    "tick": "(result i64)",
    "random": "(param i32 i32) (result i32)",
    "infer": "(param i32 i32 i32 i32) (result i64)",
}
_EXPORTS = {
    "agent_alloc": "(param i32) (result i32) (i32.const 1024)",
    "agent_init": "(result i32) (i32.const 0)",
    "agent_step": "(param i32) (result i32) (i32.const 0)",
    "agent_receive": "(param i32) (result i32) (i32.const 0)",
    "agent_shutdown": "(result i32) (i32.const 0)",
    "agent_receive_batch": "(param i32) (result i32) (i32.const 0)",
}


def module(
    *,
    imports: dict[str, str] | None = None,
    exports: dict[str, str] | None = None,
    extra: str = "",
    memory: bool = True,
) -> bytes:
    imports = _IMPORTS if imports is None else imports
    exports = _EXPORTS if exports is None else exports
    text = "(module\n"
    for key, sig in imports.items():
        mod, _, name = key.partition(".") if "." in key else ("", "", key)
        text += f'(import "{mod or "lockstep_v1"}" "{name}" (func {sig}))\n'
    if memory:
        text += '(memory (export "memory") 1)\n'
    for name, body in exports.items():
        text += f'(func (export "{name}") {body})\n'
    return bytes(wasmtime.wat2wasm(text + extra + ")"))


def test_a_complete_module_conforms() -> None:
    assert abi_problems(module()) == []
    assert set(ABI_IMPORTS) == set(_IMPORTS)
    assert set(_EXPORTS) | {"memory"} == ABI_EXPORTS


def test_batch_export_is_optional_and_extra_exports_are_allowed() -> None:
    exports = {k: v for k, v in _EXPORTS.items() if k != "agent_receive_batch"}
    exports["helper"] = "(result i32) (i32.const 7)"
    assert abi_problems(module(exports=exports)) == []


@pytest.mark.parametrize(
    "name", ["agent_alloc", "agent_init", "agent_step", "agent_receive", "agent_shutdown"]
)
def test_each_required_export_is_named_when_missing(name: str) -> None:
    exports = {k: v for k, v in _EXPORTS.items() if k != name}
    assert abi_problems(module(exports=exports)) == [f"missing export {name}"]


def test_missing_memory() -> None:
    assert abi_problems(module(memory=False)) == ["missing export memory"]


def test_wrong_export_signatures_are_spelled_out() -> None:
    exports = dict(
        _EXPORTS,
        agent_step="(param i64) (result i32) (i32.const 0)",
        agent_receive_batch="(param i32)",
    )
    assert abi_problems(module(exports=exports)) == [
        "export agent_step has signature (i64) -> (i32), ABI v1 wants (i32) -> (i32)",
        "export agent_receive_batch has signature (i32) -> (), ABI v1 wants (i32) -> (i32)",
    ]


def test_memory_must_be_a_memory_and_functions_functions() -> None:
    exports = {k: v for k, v in _EXPORTS.items() if k != "agent_init"}
    wasm = module(
        exports=exports,
        memory=False,
        extra=(
            '(memory 1) (global (export "agent_init") i32 (i32.const 0))'
            '(func (export "memory") (result i32) (i32.const 0))'
        ),
    )
    assert abi_problems(wasm) == [
        "export memory is not a memory",
        "export agent_init is not a function",
    ]


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("env.seed", "Math.random"),
        ("env.abort", "abort hook"),
        ("env.Date.now", "use tick()"),
        ("env.memcpy", "memcpy is a libc function"),
        ("wasi_snapshot_preview1.clock_time_get", "WASI is not available"),
        ("other.thing", "only lockstep_v1 functions are linked"),
    ],
)
def test_foreign_imports_are_refused_with_a_hint(key: str, hint: str) -> None:
    problems = abi_problems(module(imports={**_IMPORTS, key: "(param i32)"}))
    assert len(problems) == 1
    assert problems[0].startswith(f"import {key} is not allowed (")
    assert hint in problems[0]


def test_unknown_and_mistyped_lockstep_imports() -> None:
    imports = dict(_IMPORTS, tick="(result i32)", clock="(result i64)")
    assert abi_problems(module(imports=imports)) == [
        "import lockstep_v1.tick has signature () -> (i32), ABI v1 wants () -> (i64)",
        "import lockstep_v1.clock is unknown (lockstep_v1 has send, log, tick, random, infer)",
    ]


@pytest.mark.parametrize(
    "data", [b"", b"\x00asm", b"not wasm at all", b"\x00asm\x01\x00\x00\x00\x07\x05"]
)
def test_malformed_bytes_give_one_problem_not_a_crash(data: bytes) -> None:
    problems = abi_problems(data)
    assert len(problems) == 1 and "malformed wasm module" in problems[0]
