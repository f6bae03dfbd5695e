"""Every fault kind faults only its agent: the others in the same batch still run."""

from __future__ import annotations

import pytest

from lockstep.abi import unpack_sends
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig
from tests.wasm_pool.conftest import GOOD, agent_wat, batch, create, record, step

pytestmark = pytest.mark.unit

SEND_THEN = "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 5))) "


def run_with_good(
    pool: WasmPool,
    bad: bytes,
    *,
    inbox: tuple[bytes, int] | None = None,
) -> tuple[cpb.Fault, list[pb.AgentStepResult]]:
    """Create good(1), bad(2), good(3); step all at tick 1; check the good ones ran."""
    created = create(pool, (1, "g1", GOOD), (2, "bad", bad), (3, "g3", GOOD))
    assert [r.HasField("fault") for r in created.results] == [False, False, False]
    inboxes = {h: inbox for h in (1, 2, 3)} if inbox else None
    results = step(pool, 1, 1, 2, 3, inboxes=inboxes)
    assert [r.sequence for r in results] == [1, 2, 3]
    for good in (results[0], results[2]):
        assert not good.HasField("fault")
        assert unpack_sends(good.sends) == [(b"peer", b"ok")]
    bad_result = results[1]
    assert bad_result.HasField("fault")
    # Sends and infers of a faulted tick are dropped.
    assert bad_result.sends == b"" and bad_result.send_count == 0 and not bad_result.infers
    # The faulted instance is gone; the others go on.
    assert pool.seqs() == [1, 3]
    again = step(pool, 2, 1, 3)
    assert all(not r.HasField("fault") for r in again)
    return bad_result.fault, results


def test_trap_unreachable(pool: WasmPool) -> None:
    fault, _ = run_with_good(pool, agent_wat(step=SEND_THEN + "unreachable"))
    assert fault.kind == cpb.FAULT_KIND_TRAP
    assert fault.entry_point == "agent_step"
    assert fault.detail.startswith("unreachable:")


def test_trap_division_by_zero(pool: WasmPool) -> None:
    fault, _ = run_with_good(pool, agent_wat(step="(i32.div_u (i32.const 1) (i32.const 0))"))
    assert fault.kind == cpb.FAULT_KIND_TRAP
    assert fault.detail.startswith("integer_division_by_zero:")


def test_trap_out_of_bounds_access(pool: WasmPool) -> None:
    fault, _ = run_with_good(pool, agent_wat(step="(i32.load (i32.const 70000))"))
    assert fault.kind == cpb.FAULT_KIND_TRAP
    assert fault.detail.startswith("memory_out_of_bounds:")


def test_fuel_exhausted(pool: WasmPool) -> None:
    fault, results = run_with_good(
        pool, agent_wat(step=SEND_THEN + "(loop $l (br $l)) (i32.const 0)")
    )
    assert fault.kind == cpb.FAULT_KIND_FUEL_EXHAUSTED
    assert fault.entry_point == "agent_step"
    assert "10000000" in fault.detail
    assert results[1].fuel_used == 10_000_000


def test_stack_overflow(pool: WasmPool) -> None:
    bad = agent_wat(
        step="(call $rec (i32.const 0))",
        extra="(func $rec (param i32) (result i32) "
        "(call $rec (i32.add (local.get 0) (i32.const 1))))",
    )
    fault, _ = run_with_good(pool, bad)
    assert fault.kind == cpb.FAULT_KIND_STACK_OVERFLOW
    assert fault.entry_point == "agent_step"


def test_memory_limit_on_grow(pool: WasmPool) -> None:
    # Default limit is 256 pages; growing by 300 is refused by the store limiter and the
    # pool turns that failed memory.grow into a MEMORY_LIMIT fault.
    bad = agent_wat(step="(drop (memory.grow (i32.const 300))) (i32.const 0)")
    fault, _ = run_with_good(pool, bad)
    assert fault.kind == cpb.FAULT_KIND_MEMORY_LIMIT
    assert fault.entry_point == "agent_step"
    assert "256" in fault.detail


def test_memory_limit_at_instantiation(pool: WasmPool) -> None:
    created = create(pool, (1, "g1", GOOD), (2, "big", agent_wat(memory="300")), (3, "g3", GOOD))
    fault = created.results[1].fault
    assert fault.kind == cpb.FAULT_KIND_MEMORY_LIMIT
    assert fault.entry_point == "instantiate"
    assert not created.results[0].HasField("fault")
    assert not created.results[2].HasField("fault")
    assert pool.seqs() == [1, 3]


def test_bad_pointer_in_host_call(pool: WasmPool) -> None:
    bad = agent_wat(
        step="(call $send (i32.const 65530) (i32.const 10) (i32.const 0) (i32.const 1))"
    )
    fault, _ = run_with_good(pool, bad)
    assert fault.kind == cpb.FAULT_KIND_BAD_POINTER
    assert fault.entry_point == "agent_step"
    assert fault.detail.startswith("send: destination [0xfffa, +10) is outside memory")


@pytest.mark.parametrize(
    "call",
    [
        "(call $log (i32.const 2) (i32.const -1) (i32.const 4))",
        "(call $random (i32.const 65535) (i32.const 2))",
        "(i32.wrap_i64 (call $infer (i32.const 0) (i32.const 4) (i32.const 65536) (i32.const 1)))",
        "(call $send (i32.const 0) (i32.const 4) (i32.const 70000) (i32.const 1))",
    ],
)
def test_bad_pointer_every_host_function(pool: WasmPool, call: str) -> None:
    fault, _ = run_with_good(pool, agent_wat(step=call))
    assert fault.kind == cpb.FAULT_KIND_BAD_POINTER
    assert "outside memory" in fault.detail


def test_bad_alloc_pointer(pool: WasmPool) -> None:
    fault, _ = run_with_good(pool, agent_wat(alloc="(i32.const 65530)"))
    assert fault.kind == cpb.FAULT_KIND_BAD_POINTER
    assert fault.entry_point == "agent_alloc"
    assert "agent_alloc(" in fault.detail and "for agent_step" in fault.detail


def test_negative_step_code(pool: WasmPool) -> None:
    fault, results = run_with_good(pool, agent_wat(step=SEND_THEN + "(i32.const -7)"))
    assert fault.kind == cpb.FAULT_KIND_ERROR_CODE
    assert fault.entry_point == "agent_step"
    assert fault.detail == "agent_step returned -7"
    assert results[1].code == -7


def test_negative_receive_code_faults_before_step(pool: WasmPool) -> None:
    bad = agent_wat(receive="(i32.const -3)", step=SEND_THEN + "(i32.const 0)")
    fault, _ = run_with_good(pool, bad, inbox=(batch(record(b"x")), 1))
    assert fault.kind == cpb.FAULT_KIND_ERROR_CODE
    assert fault.entry_point == "agent_receive"


def test_negative_receive_batch_code(pool: WasmPool) -> None:
    bad = agent_wat(batch="(i32.const -2)")
    fault, _ = run_with_good(pool, bad, inbox=(batch(record(b"x"), record(b"y")), 2))
    assert fault.kind == cpb.FAULT_KIND_ERROR_CODE
    assert fault.entry_point == "agent_receive_batch"


def test_negative_init_code(pool: WasmPool) -> None:
    created = create(pool, (1, "g1", GOOD), (2, "bad", agent_wat(init="(i32.const -1)")))
    assert created.results[1].fault.kind == cpb.FAULT_KIND_ERROR_CODE
    assert created.results[1].fault.entry_point == "agent_init"
    assert pool.seqs() == [1]


def test_trap_in_start_function(pool: WasmPool) -> None:
    bad = agent_wat(extra="(func $start unreachable) (start $start)")
    created = create(pool, (1, "g1", GOOD), (2, "bad", bad))
    assert created.results[1].fault.kind == cpb.FAULT_KIND_TRAP
    assert created.results[1].fault.entry_point == "instantiate"
    assert pool.seqs() == [1]


def test_faulted_agent_logs_are_kept_and_sequence_reusable(pool: WasmPool) -> None:
    bad = agent_wat(
        step="(drop (call $log (i32.const 3) (i32.const 16) (i32.const 5))) unreachable"
    )
    _fault, results = run_with_good(pool, bad)
    assert [log.text for log in results[1].logs] == ["hello"]
    # The orchestrator restarts by re-creating the same sequence.
    again = create(pool, (2, "bad", GOOD))
    assert not again.results[0].HasField("fault")


def test_small_stack_config_still_isolates() -> None:
    with WasmPool(WasmPoolConfig(max_wasm_stack=64 * 1024)) as small:
        bad = agent_wat(
            step="(call $rec (i32.const 0))",
            extra="(func $rec (param i32) (result i32) "
            "(call $rec (i32.add (local.get 0) (i32.const 1))))",
        )
        fault, _ = run_with_good(small, bad)
        assert fault.kind == cpb.FAULT_KIND_STACK_OVERFLOW


def test_fuel_exhausted_in_start_function(pool: WasmPool) -> None:
    bad = agent_wat(extra="(func $start (loop $l (br $l))) (start $start)")
    created = create(pool, (1, "g1", GOOD), (2, "bad", bad))
    assert created.results[1].fault.kind == cpb.FAULT_KIND_FUEL_EXHAUSTED
    assert created.results[1].fault.entry_point == "instantiate"
    assert created.results[1].fuel_used == 10_000_000
    assert pool.seqs() == [1]


def test_start_function_sends_belong_to_init(pool: WasmPool) -> None:
    wasm = agent_wat(
        extra="(func $start (drop (call $send (i32.const 0) (i32.const 4) "
        "(i32.const 16) (i32.const 5)))) (start $start)"
    )
    created = create(pool, (1, "a", wasm))
    assert unpack_sends(created.results[0].sends) == [(b"peer", b"hello")]
