"""The native core against the Python reference engine: the same batches give byte-identical
results buffers (faults of every kind, refusals, random bytes, invalid UTF-8 logs, infers,
per-record and batch receivers), snapshots and restores included."""

from __future__ import annotations

import struct

import pytest

from lockstep import batch as wire
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig
from tests.wasm_pool.conftest import GOOD, NATIVE, agent_wat, record
from tests.wasm_pool.test_packed import load, packed_runner
from tests.wasm_pool.test_snapshot import CHATTY
from tests.wasm_pool.zoo import ALL, Scenario, inbox_for, play

pytestmark = [pytest.mark.unit, pytest.mark.skipif(not NATIVE, reason="native core not built")]


def native(cfg: WasmPoolConfig | None = None) -> WasmPool:
    from lockstep_wasm_pool._native_engine import NativePool

    return NativePool(cfg or WasmPoolConfig())


def python(cfg: WasmPoolConfig | None = None) -> WasmPool:
    return WasmPool(cfg or WasmPoolConfig(engine="python"))


@pytest.mark.parametrize("seed", [11, 12345])
def test_zoo_byte_identical(seed: int) -> None:
    with python() as a, native() as b:
        x = play(Scenario(packed_runner(a), seed=seed), load(a), ticks=5)
        y = play(Scenario(packed_runner(b), seed=seed), load(b), ticks=5)
    assert len(x) == len(y)
    for i, (p, q) in enumerate(zip(x, y, strict=True)):
        assert p == q, f"batch {i} differs"
    kinds = {int(k) for out in y for k in wire.parse_results(out).rows["fault_kind"]}
    assert {
        cpb.FAULT_KIND_TRAP,
        cpb.FAULT_KIND_FUEL_EXHAUSTED,
        cpb.FAULT_KIND_STACK_OVERFLOW,
        cpb.FAULT_KIND_MEMORY_LIMIT,
        cpb.FAULT_KIND_BAD_POINTER,
        cpb.FAULT_KIND_ERROR_CODE,
        cpb.FAULT_KIND_ABI_VIOLATION,
    } <= kinds


def test_zoo_with_tight_limits_byte_identical() -> None:
    cfg = WasmPoolConfig(
        max_log_bytes=3,
        max_infers_per_step=1,
        max_random_bytes=8,
        max_messages_per_step=2,
        fuel_per_step=50_000,
    )
    with python(WasmPoolConfig(**{**cfg.__dict__, "engine": "python"})) as a, native(cfg) as b:
        x = play(Scenario(packed_runner(a)), load(a), ticks=3)
        y = play(Scenario(packed_runner(b)), load(b), ticks=3)
    assert x == y


def test_protobuf_methods_identical() -> None:
    with python() as a, native() as b:
        out: list[list[bytes] | list[int]] = []
        for pool in (a, b):
            digest = pool.load_module(CHATTY).module_hash
            created = pool.create_agents(
                pb.CreateAgentsRequest(
                    seed=3,
                    tick=0,
                    agents=[
                        pb.AgentSpec(sequence=h, name=f"n{h}", module_hash=digest)
                        for h in (1, 2, 3)
                    ],
                )
            )
            steps = []
            for tick in range(1, 4):
                body = record(struct.pack("<I", tick))
                inbox = struct.pack("<II", 8 + len(body), 1) + body
                steps.append(
                    pool.step_batch(
                        pb.StepBatchRequest(
                            tick=tick,
                            steps=[
                                pb.AgentStep(sequence=h, inbox=inbox, inbox_count=1)
                                for h in (3, 1, 2)
                            ],
                        )
                    )
                )
            destroyed = pool.destroy_agents(
                pb.DestroyAgentsRequest(tick=4, sequences=[2], call_shutdown=True)
            )
            out.append(
                [m.SerializeToString(deterministic=True) for m in (created, *steps, destroyed)]
            )
            out.append([s.SerializeToString(deterministic=True) for s in pool.snapshot([])])
            out.append(pool.seqs())
        assert out[0:3] == out[3:6]


def test_snapshot_restore_identical_across_engines() -> None:
    """A snapshot taken on either engine restores into the other, and both step on the same."""
    wasms = [w for _, w in ALL[:9]] + [CHATTY]
    with python() as a, native() as b:
        for pool in (a, b):
            hashes = [pool.load_module(w).module_hash for w in wasms]
            pool.create_packed(
                wire.pack_create(
                    0,
                    5,
                    [
                        wire.AgentSpec(h, f"a{h}", hashes[h - 1], b"xy", pages=0 if h % 2 else 3)
                        for h in range(1, len(wasms) + 1)
                    ],
                )
            )
            for tick in (1, 2):
                live = pool.seqs()
                boxes = [inbox_for(h, tick) for h in live]
                pool.step_packed(
                    wire.pack_step(tick, live, [x for x, _ in boxes], [n for _, n in boxes])
                )
        sa, sb = a.snapshot([]), b.snapshot([])
        assert [s.SerializeToString() for s in sa] == [s.SerializeToString() for s in sb]
        with python() as a2, native() as b2:
            for pool, snaps in ((a2, sb), (b2, sa)):
                for w in wasms:
                    pool.load_module(w)
                pool.restore(snaps)
            live = a.seqs()
            assert a2.seqs() == b2.seqs() == live
            outs = []
            for pool in (a, b, a2, b2):
                boxes = [inbox_for(h, 3) for h in live]
                outs.append(
                    pool.step_packed(
                        wire.pack_step(3, live, [x for x, _ in boxes], [n for _, n in boxes])
                    )
                )
            assert outs[0] == outs[1] == outs[2] == outs[3]
            assert [s.state_hash for s in a2.snapshot([])] == [
                s.state_hash for s in b2.snapshot([])
            ]


def test_random_stream_matches_the_reference() -> None:
    from lockstep.abi import chacha20_keystream, random_key

    big = agent_wat(
        step="(drop (call $random (i32.const 256) (i32.const 3000))) "
        "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 256) "
        "(i32.const 3000))) (i32.const 0)"
    )
    with native() as b:
        digest = b.load_module(big).module_hash
        b.create_packed(wire.pack_create(0, 99, [wire.AgentSpec(1, "r", digest)]))
        got = b""
        for tick in (1, 2):
            res = wire.parse_results(b.step_packed(wire.pack_step(tick, [1], [b""], [0])))
            ((_, payload),) = wire.sends_of(res.sends(0))
            got += payload
    assert got == chacha20_keystream(random_key(99, "r"), 0, 6000)


def test_native_refuses_like_python() -> None:
    from lockstep_wasm_pool import NotFoundError

    with native() as b:
        digest = b.load_module(GOOD).module_hash
        b.create_packed(
            wire.pack_create(0, 1, [wire.AgentSpec(1, "a", digest), wire.AgentSpec(2, "b", digest)])
        )
        step = wire.pack_step(1, [1, 2], [record(b"x"), b""], [1, 0])
        for bad in (step[:-1], step + b"\0", b"LSSQ", step[:8] + b"\xff" + step[9:]):
            with pytest.raises(wire.BatchError):
                b.step_packed(bad)
        with pytest.raises(wire.BatchError, match="appears twice"):
            b.step_packed(wire.pack_step(1, [1, 1], [b"", b""], [0, 0]))
        with pytest.raises(wire.BatchError, match="appears twice"):
            b.step_packed(wire.pack_step(1, [9, 9], [b"", b""], [0, 0]))
        with pytest.raises(NotFoundError, match=r"steps\[1\]: no live agent with sequence 9"):
            b.step_packed(wire.pack_step(1, [1, 9], [b"", b""], [0, 0]))
        with pytest.raises(NotFoundError):
            b.destroy_packed(wire.pack_destroy(1, [1, 9], True))
        assert b.seqs() == [1, 2]
