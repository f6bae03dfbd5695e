"""WAT-built ABI v1 agents for the modules tests (a uniquely named module, not conftest,
so that test files can import it whatever other test directories hold)."""

from __future__ import annotations

import wasmtime

EXPORTS = """
  (memory (export "memory") 1)
  (func (export "agent_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
"""

IMPORTS = {
    "send": '(import "lockstep_v1" "send" (func (param i32 i32 i32 i32) (result i32)))',
    "log": '(import "lockstep_v1" "log" (func (param i32 i32 i32) (result i32)))',
    "tick": '(import "lockstep_v1" "tick" (func (result i64)))',
    "random": '(import "lockstep_v1" "random" (func (param i32 i32) (result i32)))',
    "infer": '(import "lockstep_v1" "infer" (func (param i32 i32 i32 i32) (result i64)))',
}


def agent_wasm(*imports: str, extra: str = "", exports: str = EXPORTS) -> bytes:
    """An ABI v1 agent importing the named lockstep_v1 functions (or raw import lines)."""
    lines = [IMPORTS.get(i, i) for i in imports]
    return bytes(wasmtime.wat2wasm(f"(module {' '.join(lines)} {exports} {extra})"))
