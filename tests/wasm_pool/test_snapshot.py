"""Determinism, snapshots and restore (in process); the cross-process case is in test_service."""

from __future__ import annotations

import struct

import pytest

from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import (
    AlreadyExistsError,
    InvalidRequestError,
    NotFoundError,
    WasmPool,
    state_hash,
)
from tests.wasm_pool.conftest import agent_wat, batch, create, record, step

pytestmark = pytest.mark.unit

# State in memory, in an unexported i32/i64/f64 global, in the random stream and request ids.
CHATTY = agent_wat(
    step="(drop (call $random (i32.const 3000) (i32.const 8))) "
    "(global.set $count (i32.add (global.get $count) (i32.const 1))) "
    "(global.set $wide (i64.mul (global.get $wide) (i64.const 3))) "
    "(global.set $fl (f64.mul (global.get $fl) (f64.const 1.25))) "
    "(i32.store (i32.const 700) (global.get $count)) "
    "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 3000) (i32.const 8))) "
    "(drop (call $infer (i32.const 0) (i32.const 4) (i32.const 3000) (i32.const 4))) "
    "(drop (call $log (i32.const 1) (i32.const 3000) (i32.const 8))) "
    "(i32.const 0)",
    receive="(i32.store (i32.const 704) (i32.add (i32.load (i32.const 704)) "
    "(i32.load (local.get $msg)))) (i32.const 0)",
)


def run_ticks(pool: WasmPool, first: int, last: int) -> list[pb.StepBatchResponse]:
    out = []
    for tick in range(first, last):
        inbox = batch(record(struct.pack("<I", tick)))
        steps = [pb.AgentStep(sequence=h, inbox=inbox, inbox_count=1) for h in (1, 2)]
        out.append(pool.step_batch(pb.StepBatchRequest(tick=tick, steps=steps)))
    return out


def test_same_batches_give_identical_results() -> None:
    runs = []
    for _ in range(2):
        with WasmPool() as pool:
            created = create(pool, (1, "a", CHATTY), (2, "b", CHATTY), seed=99)
            responses = run_ticks(pool, 1, 6)
            runs.append(
                (
                    [created.SerializeToString(deterministic=True)]
                    + [r.SerializeToString(deterministic=True) for r in responses],
                    [s.state_hash for s in pool.snapshot([])],
                )
            )
    assert runs[0] == runs[1]
    # And the agents really differ from each other (the name keys the random stream).
    with WasmPool() as pool:
        create(pool, (1, "a", CHATTY), (2, "b", CHATTY), seed=99)
        a, b = run_ticks(pool, 1, 2)[0].results
        assert a.sends != b.sends and a.fuel_used == b.fuel_used


def test_snapshot_contents_and_hash(pool: WasmPool) -> None:
    create(pool, (1, "a", CHATTY), seed=5)
    run_ticks_one(pool)
    snap = pool.snapshot([1])[0]
    assert snap.spec.name == "a" and snap.seed == 5
    assert [(g.index, g.type) for g in snap.globals] == [(0, "i32"), (1, "i64"), (2, "f64")]
    assert struct.unpack("<i", snap.globals[0].bits)[0] == 1
    assert struct.unpack("<q", snap.globals[1].bits)[0] == 21
    assert struct.unpack("<d", snap.globals[2].bits)[0] == 1.5 * 1.25
    assert snap.random_position == 8 and snap.next_request_id == 2
    values = [(g.index, g.type, g.bits) for g in snap.globals]
    assert snap.state_hash == state_hash(snap.memory, values)
    assert pool.state_hash_of(1) == snap.state_hash


def run_ticks_one(pool: WasmPool) -> None:
    step(pool, 1, 1)


def test_restore_then_step_matches_uninterrupted_run() -> None:
    with WasmPool() as straight:
        create(straight, (1, "a", CHATTY), (2, "b", CHATTY), seed=3)
        run_ticks(straight, 1, 4)
        snaps = straight.snapshot([])
        want = [r.SerializeToString(deterministic=True) for r in run_ticks(straight, 4, 8)]
        want_hashes = [s.state_hash for s in straight.snapshot([])]
    with WasmPool() as restored:
        restored.load_module(CHATTY)
        assert list(restored.restore(snaps).sequences) == [1, 2]
        assert [s.state_hash for s in restored.snapshot([])] == [s.state_hash for s in snaps]
        got = [r.SerializeToString(deterministic=True) for r in run_ticks(restored, 4, 8)]
        assert got == want
        assert [s.state_hash for s in restored.snapshot([])] == want_hashes


def test_restore_nan_bits_exactly(pool: WasmPool) -> None:
    # f64.reinterpret of an odd NaN pattern is not canonicalised; the snapshot keeps it.
    wasm = agent_wat(
        step="(global.set $fl (f64.reinterpret_i64 (i64.const 0x7ff4000000000123))) (i32.const 0)"
    )
    create(pool, (1, "a", wasm))
    step(pool, 1, 1)
    snap = pool.snapshot([1])[0]
    assert snap.globals[2].bits == struct.pack("<Q", 0x7FF4000000000123)
    pool.destroy_agents(pb.DestroyAgentsRequest(sequences=[1]))
    pool.restore([snap])
    assert pool.snapshot([1])[0].globals[2].bits == snap.globals[2].bits


def test_restore_grown_memory(pool: WasmPool) -> None:
    wasm = agent_wat(
        step="(drop (memory.grow (i32.const 3))) (i32.store (i32.const 200000) "
        "(i32.const 77)) (i32.const 0)"
    )
    create(pool, (1, "a", wasm))
    step(pool, 1, 1)
    snap = pool.snapshot([1])[0]
    assert len(snap.memory) == 4 * 65536
    pool.reset()
    pool.restore([snap])
    again = pool.snapshot([1])[0]
    assert again.memory == snap.memory and again.state_hash == snap.state_hash


def test_restore_validation(pool: WasmPool) -> None:
    create(pool, (1, "a", CHATTY))
    step(pool, 1, 1)
    (snap,) = pool.snapshot([1])
    with pytest.raises(AlreadyExistsError):
        pool.restore([snap])
    pool.reset()
    tampered = pb.AgentSnapshot()
    tampered.CopyFrom(snap)
    tampered.memory = b"\x01" + snap.memory[1:]
    with pytest.raises(InvalidRequestError, match="state_hash does not match"):
        pool.restore([tampered])
    wrong = pb.AgentSnapshot()
    wrong.CopyFrom(snap)
    del wrong.globals[1]
    with pytest.raises(InvalidRequestError, match="do not match the module"):
        pool.restore([wrong])
    # All or nothing: a good snapshot followed by a bad one restores neither.
    other = pb.AgentSnapshot()
    other.CopyFrom(snap)
    other.spec.sequence = 2
    other.spec.name = "b"
    with pytest.raises(InvalidRequestError):
        pool.restore([other, tampered])
    assert pool.seqs() == []
    with WasmPool() as fresh, pytest.raises(NotFoundError, match="not loaded"):
        fresh.restore([snap])


def test_snapshot_unknown_sequence(pool: WasmPool) -> None:
    with pytest.raises(NotFoundError):
        pool.snapshot([42])
