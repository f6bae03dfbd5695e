"""Shared helpers: inline WAT agents and a pool fixture."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest
import wasmtime

from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig

IMPORTS = """
  (import "lockstep_v1" "send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "lockstep_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "lockstep_v1" "tick" (func $tick (result i64)))
  (import "lockstep_v1" "random" (func $random (param i32 i32) (result i32)))
  (import "lockstep_v1" "infer" (func $infer (param i32 i32 i32 i32) (result i64)))
"""


def wat(text: str) -> bytes:
    """WAT text to module bytes."""
    return bytes(wasmtime.wat2wasm(text))


def agent_wat(
    *,
    step: str = "(i32.const 0)",
    receive: str = "(i32.const 0)",
    init: str = "(i32.const 0)",
    shutdown: str = "(i32.const 0)",
    alloc: str = "(i32.const 4096)",
    batch: str | None = None,
    extra: str = "",
    memory: str = "1",
    imports: str = IMPORTS,
) -> bytes:
    """A complete ABI v1 agent; bodies are WAT instruction sequences returning i32.

    Memory layout: 0..63 "peer", 16 "hello", 32 "ok"; the host buffer from agent_alloc is
    at 4096; a mutable global $count counts received messages.
    """
    batch_fn = (
        ""
        if batch is None
        else f'(func (export "agent_receive_batch") (param $p i32) (result i32) {batch})'
    )
    text = f"""
(module
  {imports}
  (memory (export "memory") {memory})
  (global $count (mut i32) (i32.const 0))
  (global $wide (mut i64) (i64.const 7))
  (global $fl (mut f64) (f64.const 1.5))
  (data (i32.const 0) "peer")
  (data (i32.const 16) "hello")
  (data (i32.const 32) "ok")
  (func (export "agent_alloc") (param $size i32) (result i32) {alloc})
  (func (export "agent_init") (result i32) {init})
  (func (export "agent_step") (param $ctx i32) (result i32) {step})
  (func (export "agent_receive") (param $msg i32) (result i32) {receive})
  (func (export "agent_shutdown") (result i32) {shutdown})
  {batch_fn}
  {extra}
)"""
    return bytes(wasmtime.wat2wasm(text))


# A well-behaved agent: counts receives, sends "ok" to "peer" every step.
GOOD = agent_wat(
    step="(drop (call $send (i32.const 0) (i32.const 4) (i32.const 32) (i32.const 2))) "
    "(i32.const 0)",
    receive="(global.set $count (i32.add (global.get $count) (i32.const 1))) (i32.const 0)",
)


def record(
    payload: bytes,
    *,
    sender: bytes = b"src",
    dest: bytes = b"a",
    kind: int = 0,
    tick: int = 0,
    corr: int = 0,
) -> bytes:
    """One ABI message record."""
    head = struct.pack(
        "<IBBHqqIHH",
        32 + len(sender) + len(dest) + len(payload),
        kind,
        0,
        len(sender),
        tick,
        corr,
        len(payload),
        len(dest),
        0,
    )
    return head + sender + dest + payload


def batch(*records: bytes) -> bytes:
    """An ABI batch buffer."""
    body = b"".join(records)
    return struct.pack("<II", 8 + len(body), len(records)) + body


def spec(seq: int, name: str, module_hash: str, **kw: object) -> pb.AgentSpec:
    return pb.AgentSpec(sequence=seq, name=name, module_hash=module_hash, **kw)  # type: ignore[arg-type]


def native_available() -> bool:
    from lockstep_wasm_pool._core import CoreUnavailable, load

    try:
        load()
    except CoreUnavailable:
        return False
    return True


NATIVE = native_available()
needs_native = pytest.mark.skipif(not NATIVE, reason="native core not built")


@pytest.fixture(params=["fast", "public", "native"])
def pool(request: pytest.FixtureRequest) -> Iterator[WasmPool]:
    """The Python engine on the raw fast path, on wasmtime-py's public API only, and the
    native core (skipped where it is not built)."""
    if request.param == "native":
        if not NATIVE:
            pytest.skip("native core not built")
        from lockstep_wasm_pool._native_engine import NativePool

        with NativePool(WasmPoolConfig()) as p:
            yield p
        return
    with WasmPool(WasmPoolConfig(fast_path=request.param == "fast", engine="python")) as p:
        yield p


def create(
    pool: WasmPool, *agents: tuple[int, str, bytes], seed: int = 7, tick: int = 0
) -> pb.CreateAgentsResponse:
    """Load each module and create the agents (seq, name, wasm)."""
    specs = []
    for seq, name, wasm in agents:
        digest = pool.load_module(wasm).module_hash
        specs.append(spec(seq, name, digest))
    return pool.create_agents(pb.CreateAgentsRequest(tick=tick, seed=seed, agents=specs))


def step(
    pool: WasmPool, tick: int, *seqs: int, inboxes: dict[int, tuple[bytes, int]] | None = None
) -> list[pb.AgentStepResult]:
    inboxes = inboxes or {}
    steps = [
        pb.AgentStep(
            sequence=h, inbox=inboxes.get(h, (b"", 0))[0], inbox_count=inboxes.get(h, (b"", 0))[1]
        )
        for h in seqs
    ]
    return list(pool.step_batch(pb.StepBatchRequest(tick=tick, steps=steps)).results)
