"""The wasmtime-py internals adapter: available for the pinned version, same behaviour."""

from __future__ import annotations

import struct

import pytest
import wasmtime

from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig, _native
from tests.wasm_pool.conftest import GOOD, agent_wat, batch, create, record, step, wat
from tests.wasm_pool.test_snapshot import CHATTY

pytestmark = pytest.mark.unit


def test_available_for_pinned_wasmtime() -> None:
    import importlib.metadata

    if importlib.metadata.version("wasmtime") == "50.0.1":
        assert _native.AVAILABLE


def _instance(text: str) -> tuple[wasmtime.Store, wasmtime.Instance, _native.HostState]:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    state = _native.HostState()
    linker = wasmtime.Linker(engine)
    keep: list[object] = []

    def boom(x: int) -> int:
        if x < 0:
            raise KeyError(x)
        return x * 2

    _native.define_host(linker, "h", "f", 1, "i32", boom, state, keep, fast=True)
    _native.define_host(linker, "h", "g", 0, "i64", lambda: -(1 << 40), state, keep, fast=True)
    inst = linker.instantiate(store, wasmtime.Module(engine, wat(text)))
    store.keep = keep  # type: ignore[attr-defined]
    return store, inst, state


@pytest.mark.parametrize("fast", [True, False])
def test_make_call_results_traps_and_host_exceptions(fast: bool) -> None:
    store, inst, state = _instance("""(module
      (import "h" "f" (func $f (param i32) (result i32)))
      (import "h" "g" (func $g (result i64)))
      (func (export "div") (param i32) (result i32) (i32.div_s (i32.const 100) (local.get 0)))
      (func (export "host") (param i32) (result i32) (call $f (local.get 0)))
      (func (export "wide") (result i32) (i32.wrap_i64 (i64.shr_s (call $g) (i64.const 32)))))""")
    ex = inst.exports(store)
    div = _native.make_call(store, ex["div"], 1, state, fast=fast)  # type: ignore[arg-type]
    host = _native.make_call(store, ex["host"], 1, state, fast=fast)  # type: ignore[arg-type]
    wide = _native.make_call(store, ex["wide"], 0, state, fast=fast)  # type: ignore[arg-type]
    assert div(-7) == -14
    for _ in range(3):  # the trap out-pointer is reset between calls
        with pytest.raises(wasmtime.Trap) as info:
            div(0)
        assert info.value.trap_code == wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO
        assert div(50) == 2
    assert host(21) == 42
    if fast:  # the public path raises through wasmtime-py's own trampoline
        with pytest.raises(KeyError):
            host(-1)
        assert state.pending is None
        assert host(1) == 2
    assert wide() == -256


@pytest.mark.parametrize("fast", [True, False])
def test_memory_accessor(fast: bool) -> None:
    store, inst, _ = _instance(
        '(module (memory (export "memory") 1) '
        '(func (export "grow") (result i32) (memory.grow (i32.const 1))))'
    )
    memory = inst.exports(store)["memory"]
    assert isinstance(memory, wasmtime.Memory)
    mem = _native.make_memory(store, memory, fast=fast)
    assert mem.size() == 65536
    mem.write(65530, b"abcdef")
    assert mem.read(65530, 6) == b"abcdef"
    assert mem.read_pair(65530, 3, 65533, 3) == (65536, b"abc", b"def")
    assert mem.read_pair(65534, 3, 0, 0) == (65536, None, b"")
    assert mem.read_pair(0, 1, 65536, 1) == (65536, b"\x00", None)
    assert mem.put(65535, b"xy") == 65536 and mem.read(65535, 1) == b"f"
    inst.exports(store)["grow"](store)  # type: ignore[operator]
    assert mem.size() == 131072  # base pointer re-read after growth
    assert mem.read(65530, 6) == b"abcdef"
    mem.write(0, b"")


@pytest.mark.parametrize("type_name", ["i32", "i64", "f32", "f64"])
def test_global_bits_both_paths(type_name: str) -> None:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    ty = {
        "i32": wasmtime.ValType.i32(),
        "i64": wasmtime.ValType.i64(),
        "f32": wasmtime.ValType.f32(),
        "f64": wasmtime.ValType.f64(),
    }[type_name]
    init: object = 0.0 if type_name[0] == "f" else 0
    glob = wasmtime.Global(store, wasmtime.GlobalType(ty, True), init)
    bits = {
        "i32": struct.pack("<i", -5),
        "i64": struct.pack("<q", 1 << 40),
        "f32": struct.pack("<f", 2.5),
        "f64": struct.pack("<d", -0.125),
    }[type_name]
    for fast in (True, False):
        _native.global_set_bits(store, glob, type_name, bits, fast=fast)
        assert _native.global_get_bits(store, glob, type_name, fast=True) == bits
        assert _native.global_get_bits(store, glob, type_name, fast=False) == bits


def test_fast_and_public_paths_agree_byte_for_byte() -> None:
    scenario = [
        GOOD,
        CHATTY,
        agent_wat(step="(call $send (i32.const 65530) (i32.const 10) (i32.const 0) (i32.const 1))"),
        agent_wat(step="(loop $l (br $l)) (i32.const 0)"),
        agent_wat(step="(drop (memory.grow (i32.const 300))) (i32.const 0)"),
        agent_wat(receive="(i32.const -4)"),
        agent_wat(
            extra="(func $s (drop (call $send (i32.const 0) (i32.const 4) "
            "(i32.const 70000) (i32.const 1)))) (start $s)"
        ),
    ]
    outputs = []
    for fast in (True, False):
        with WasmPool(WasmPoolConfig(fast_path=fast, fuel_per_step=100_000)) as pool:
            created = create(pool, *[(i + 1, f"a{i}", w) for i, w in enumerate(scenario)])
            out = [created.SerializeToString(deterministic=True)]
            inbox = (batch(record(b"m1"), record(b"m2")), 2)
            for tick in (1, 2):
                live = pool.seqs()
                out += [
                    r.SerializeToString(deterministic=True)
                    for r in step(pool, tick, *live, inboxes={h: inbox for h in live})
                ]
            out += [s.SerializeToString(deterministic=True) for s in pool.snapshot([])]
            outputs.append(out)
            kinds = [r.fault.kind for r in created.results]
            assert kinds[-1] == cpb.FAULT_KIND_BAD_POINTER  # host fault in a start function
    assert outputs[0] == outputs[1]
    assert pb.AgentSnapshot.FromString(outputs[0][-1]).spec.name == "a1"
