"""Faults: how a failed call sequence is classified and worded (the words enter the tick
digest, so the native core's fixups are rewritten with these same functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import wasmtime

from lockstep.pb.common.v1 import common_pb2

from ._config import WASM_PAGE

if TYPE_CHECKING:
    from ._engine import _Agent

FK = common_pb2


class _Fault(Exception):  # noqa: N818 - a result carried as an exception
    """Raised inside one call sequence; turned into AgentStepResult.fault."""

    def __init__(
        self, kind: common_pb2.FaultKind, detail: str, entry_point: str = "", code: int = 0
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.entry_point = entry_point
        self.code = code


class _HostFault(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a host function (through wasm) to fault the calling agent."""

    def __init__(self, kind: common_pb2.FaultKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def instantiate_fault(text: str, fuel: int) -> _Fault:
    """Classify an instantiation error by its message (no trap code is available); `fuel`
    is the agent's budget."""
    cause = text.split("Caused by:", 1)[-1].strip()
    msg = _first_line(cause)
    if "memory" in msg and "limit" in msg:
        return _Fault(FK.FAULT_KIND_MEMORY_LIMIT, f"instantiation failed: {msg}", "instantiate")
    if "fuel" in msg:
        return _Fault(
            FK.FAULT_KIND_FUEL_EXHAUSTED,
            f"fuel budget of {fuel} for this tick exhausted in the start function",
            "instantiate",
        )
    if "stack" in msg and ("overflow" in msg or "exhausted" in msg):
        return _Fault(
            FK.FAULT_KIND_STACK_OVERFLOW,
            "wasm call stack overflowed in the start function",
            "instantiate",
        )
    return _Fault(FK.FAULT_KIND_TRAP, f"instantiation failed: {msg}", "instantiate")


def _trap_fault(exc: wasmtime.Trap, entry: str, agent: _Agent) -> _Fault:
    code = exc.trap_code
    helper = agent.module.grow_helper
    if code == wasmtime.TrapCode.UNREACHABLE and helper is not None:
        frames = exc.frames
        if frames and frames[0].func_index == helper:
            pages = agent.mem.size() // WASM_PAGE
            return _Fault(
                FK.FAULT_KIND_MEMORY_LIMIT,
                f"memory.grow failed in {entry}: memory is {pages} pages and the "
                f"agent's limit is {agent.limits.pages} pages",
                entry,
            )
    return _trap_fault_of(exc, entry, agent.limits.fuel)


def _trap_fault_of(exc: wasmtime.Trap, entry: str, fuel: int) -> _Fault:
    """The fault of a trap outside the memory.grow helper (fuel = the agent's budget)."""
    code = exc.trap_code
    message = str(exc.message).strip()
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return _Fault(
            FK.FAULT_KIND_FUEL_EXHAUSTED,
            f"fuel budget of {fuel} for this tick exhausted in {entry}",
            entry,
        )
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return _Fault(FK.FAULT_KIND_STACK_OVERFLOW, f"wasm call stack overflowed in {entry}", entry)
    name = code.name.lower() if code is not None else "trap"
    return _Fault(FK.FAULT_KIND_TRAP, trap_detail(name, message), entry)


def trap_detail(name: str, message: str) -> str:
    """The TRAP fault detail for a trap named `name` with wasmtime's (stripped) message."""
    # wasmtime's text is "error while executing at wasm backtrace: <frames> Caused by:
    # <reason>"; keep the reason first and the frames compact on one line.
    cause = _first_line(message.split("Caused by:", 1)[-1])
    lines = [
        line.strip() for line in message.splitlines() if line.strip()[:1].isdigit() and ":" in line
    ]
    where = f" [wasm backtrace: {'; '.join(lines)}]" if lines else ""
    return f"{name}: {cause}{where}"
