"""The tick kernel without processes: scripted pool engines (tests/orchestrator/fakepool.py)
behind the in-process `Pools` adapter, and the real pool engine for the golden journal."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lockstep.errors import CapacityError, InvalidRequestError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.records import TICK_STATS_FIELDS
from lockstep_orchestrator._events import (
    NOT_COMPARED,
    TickStats,
    i64,
    lp,
    parse_event,
    u32,
    u64,
)
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._journal import Journal
from lockstep_orchestrator._kernel import DEFAULT_LIMITS, TickFailedError
from lockstep_orchestrator._manager import AutoCheckpoints, RunManager
from lockstep_orchestrator._ports import InProcessPools, PoolFailureError
from lockstep_orchestrator._replay import parse_journal
from tests.orchestrator.fakepool import MODULE, FakeEngine

S = opb.AgentState
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FULL_INBOX_DIGEST = "6604570958765b3ab836965995ca915f9a0d6a418000522dcbf8dd059686dd4e"


@pytest.fixture(params=["native", "numpy"])
def helpers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the kernel's C helpers and again with their numpy fallback: the same
    digests and journal either way."""
    from lockstep_orchestrator import _native

    if request.param == "numpy":
        monkeypatch.setattr(_native, "_LIB", None)
        monkeypatch.setattr(_native, "AVAILABLE", False)
    return str(request.param)


def make(
    n_pools: int = 1,
    engines: list[FakeEngine] | None = None,
    recovery_s: float = 5,
    data_dir: Path | None = None,
    auto: AutoCheckpoints | None = None,
    **config: Any,
) -> tuple[RunManager, list[FakeEngine]]:
    engines = engines or [FakeEngine() for _ in range(n_pools)]
    m = RunManager(
        InProcessPools(engines),
        lambda h: b"",
        lambda: {MODULE},
        None,
        InferenceBridge(None),
        recovery_s=recovery_s,
        data_dir=data_dir,
        auto=auto,
    )
    m.start(opb.RunConfig(seed=7, **config))
    return m, engines


def spawn(m: RunManager, *agents: tuple[str, str], **kw: Any) -> int:
    return m.spawn(
        [(opb.AgentSpawn(name=n, module=MODULE, args=a.encode(), **kw), MODULE) for n, a in agents]
    )


def records(m: RunManager) -> list[tuple[int, str, bytes]]:
    return [(r.tick, r.kind, r.payload) for r in m.kernel.journal.records]


@pytest.mark.usefixtures("helpers")
def test_step_order_priority_and_fifo_fairness() -> None:
    m, (e,) = make(max_steps_per_tick=2)
    spawn(m, *[(f"p{i}", "") for i in range(5)])
    spawn(m, ("vip", ""), priority=5)
    m.step(3)
    # seqs: p0..p4 = 1..5 (name order), vip = 6; vip first, then FIFO by waiting time.
    assert [h for _t, h in e.stepped] == [[6, 1], [6, 2], [6, 3]]
    m2, (e2,) = make(max_steps_per_tick=2)
    spawn(m2, *[(f"p{i}", "") for i in range(5)])
    m2.step(3)
    assert [h for _t, h in e2.stepped] == [[1, 2], [3, 4], [5, 1]]


@pytest.mark.usefixtures("helpers")
def test_routing_direct_broadcast_topics_and_undeliverable() -> None:
    m, engines = make(2)
    spawn(
        m,
        ("a", "to=b"),
        ("b", "to=ghost idle=1"),
        ("c", "bcast=1 say=hi"),
        ("d", "sub=news"),
        ("e", "topic=news say=extra"),
    )
    m.step(2)
    got = {**engines[0].delivered, **engines[1].delivered}
    inbox_b = got[(2, "b")]
    assert [(k, s, p) for k, s, _d, p, _t in inbox_b] == [
        (4, b"", b"unknown agent"),
        (0, b"a", b"t=1"),
        (0, b"c", b"hi"),
    ]
    assert [(s, d) for _k, s, d, _p, _t in got[(2, "d")]] == [(b"c", b"*"), (b"e", b"#news")]
    assert [s for _k, s, _d, _p, _t in got[(2, "c")]] == []  # a broadcast skips its sender
    c = m.status().counters
    assert c.undeliverable == 2 and c.messages == 1 + 3 + 2 + 1  # a, b, d, e at tick 2
    assert m.agent("b").state == S.AGENT_STATE_IDLE


def test_a_full_inbox_routes_the_tick_one_send_at_a_time(
    helpers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When an inbox could fill up this tick, every send is routed in order, one at a time:
    the sends past the bound are reported undeliverable, the rest delivered in order (the
    same digests with the C helpers and with numpy)."""
    from lockstep_orchestrator import _kernel

    monkeypatch.setattr(_kernel, "MAX_INBOX", 4)
    m, (e,) = make()
    spawn(m, ("a", "to=b burst=3"), ("b", ""), ("c", "to=b"))
    m.step(1)  # 3 + 1 sends to b: the bound is reached, all delivered in order
    m.lifecycle("pause", ["b"])
    m.step(1)  # b does not take them: its inbox is full, the next 4 are refused
    c = m.status().counters
    assert (c.undeliverable, m.agent("b").inbox) == (4, 4)
    m.lifecycle("resume", ["b"])
    m.step(1)
    assert [(s, p) for _k, s, _d, p, _t in e.delivered[(3, "b")]] == [
        (b"a", b"t=1"),
        (b"a", b"t=1"),
        (b"a", b"t=1"),
        (b"c", b"t=1"),
    ]
    for name, refused in (("a", 3), ("c", 1)):
        notices = [(k, p) for k, _s, _d, p, _t in e.delivered[(3, name)]]
        assert notices == [(4, b"inbox of b full")] * refused
    # The same with the C helpers and with numpy (and before ls_route, one C call a phase).
    assert m.kernel.digest.hex() == FULL_INBOX_DIGEST


@pytest.mark.usefixtures("helpers")
@pytest.mark.parametrize(
    ("damage", "says"),
    [
        ("offset", "row 1 data offset"),
        ("tail", "data area ends at"),
        ("seq", "step results do not match the request"),
    ],
)
def test_step_results_that_do_not_tile_fail_the_tick_saying_where(damage: str, says: str) -> None:
    """A pool's step results whose rows' data do not tile the buffer (an offset off by one,
    a byte too many) or answer for another agent: the tick fails, nothing is committed."""
    from lockstep.batch import RESULT_ROW

    class Damaging(FakeEngine):
        def step_packed(self, buf: bytes) -> bytes:
            out = bytearray(super().step_packed(buf))
            if damage == "tail":
                return bytes(out + b"x")
            rows = np.frombuffer(out, dtype=RESULT_ROW, count=2, offset=16).copy()
            if damage == "offset":
                rows[1]["off"] += 1
            else:
                rows[1]["seq"] += 7
            out[16 : 16 + rows.nbytes] = rows.tobytes()
            return bytes(out)

    m, _ = make(engines=[Damaging()], recovery_s=0)
    spawn(m, ("a", "to=b"), ("b", "to=a"))
    with pytest.raises(TickFailedError, match=says):
        m.step(1)
    assert m.status().tick == 0


@pytest.mark.usefixtures("helpers")
def test_digest_encoding_matches_docs() -> None:
    m, _ = make()
    spawn(m, ("x", ""))
    m.step(1)
    limits = DEFAULT_LIMITS.SerializeToString(deterministic=True)
    e = (
        b"LSTK"
        + i64(1)
        + b"SPWN"
        + u64(1)
        + lp(b"x")
        + lp(MODULE.encode())
        + i64(0)
        + lp(limits)
        + lp(b"")
        + lp(b"")
        + b"INIT"
        + b"init"
        + u64(1)
        + i64(0)
        + u64(7)
        + u32(0)
        + lp(b"")
        + u32(0)
        + b"STEP"
        + u32(1)
        + u64(1)
        + lp(b"")
        + b"step"
        + u64(1)
        + i64(0)
        + u64(100)
        + u32(0)
        + lp(b"")
        + u32(0)
    )
    assert m.kernel.digest == hashlib.sha256(bytes(32) + e).digest()


def scenario(m: RunManager) -> None:
    spawn(
        m,
        ("talker", "to=ghost"),
        ("victim", "to=talker trap_at=4 log=1"),
        ("sleeper", "to=talker"),
        ("quitter", "done_at=3"),
        ("quitter2", "done_at=3"),
        restart=opb.RestartPolicy(max_restarts=2, backoff_ticks=2),
    )
    m.step(5)
    m.lifecycle("pause", ["sleeper"])
    m.step(3)
    m.lifecycle("resume", ["sleeper"])
    m.send([opb.ExternalMessage(to="sleeper", payload=b"wake up")])
    m.lifecycle("terminate", ["talker"])
    m.step(4)


@pytest.mark.usefixtures("helpers")
def test_journal_round_trip_replay_and_named_divergence() -> None:
    m, engines = make(2)
    scenario(m)
    # quitter (1) and quitter2 (2) are done at tick 3: one destroy batch per pool.
    assert [d for e in engines for d in e.destroyed if d[0] == 3] == [
        (3, [1], False),
        (3, [2], False),
    ]
    recs = records(m)
    for tick, kind, raw in recs:  # every record parses back to the same bytes
        assert Journal.payload(parse_event(tick, kind, raw)) == raw, kind
    kinds = {k for _t, k, _p in recs}
    assert {
        "control.spawn",
        "control.pause",
        "control.message",
        "control.terminate",
        "agent.fault",
        "agent.restart",
        "agent.done",
        "tick.digest",
    } <= kinds
    digests = m.kernel.digests
    r, _ = make(3)
    *_, last = r.replay(parse_journal(recs), False, 100)
    assert last.ok and last.tick == 12 and r.kernel.digests == digests
    tampered = []
    for t, k, p in recs:
        if k == "control.message":
            body = json.loads(p)
            body["payload"] = b"sleep".hex()
            p = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
            msg_tick = t
        tampered.append((t, k, p))
    r2, _ = make(1)
    *_, last = r2.replay(parse_journal(tampered), False, 100)
    assert not last.ok and last.divergent_tick == msg_tick and last.divergent_agent == "sleeper"


def test_checkpoint_round_trip_into_another_pool_count(tmp_path: Path) -> None:
    m, _ = make(1, data_dir=tmp_path)
    spawn(m, ("a", "to=b"), ("b", "to=a idle=1"), ("c", "bcast=1 sub=t topic=t"))
    m.step(3)
    m.send([opb.ExternalMessage(to="b", payload=b"queued")])
    info = m.checkpoint("x")
    m.step(4)
    want = m.kernel.digests
    r, _ = make(3, data_dir=tmp_path)
    status = r.restore(info.id)
    assert status.tick == 3 and status.digest == info.digest
    r.step(4)
    assert r.kernel.digests == want


def undisturbed(n_pools: int = 2) -> list[bytes]:
    m, _ = make(n_pools)
    spawn(m, ("a", "to=b"), ("b", "to=c,a"), ("c", "bcast=1"), ("d", "to=a"))
    m.step(2)
    m.lifecycle("pause", ["d"])
    m.step(3)
    return m.kernel.digests


def test_a_pool_refusing_mid_tick_leaves_the_run_as_before() -> None:
    fail = {"on": True}

    def refuse(tick: int) -> Exception | None:
        from lockstep_wasm_pool import InvalidRequestError as PoolRefusal

        return PoolRefusal("refused for the test") if tick == 3 and fail["on"] else None

    engines = [FakeEngine(), FakeEngine(fail_step=refuse)]
    m, _ = make(engines=engines)
    spawn(m, ("a", "to=b"), ("b", "to=c,a"), ("c", "bcast=1"), ("d", "to=a"))
    m.step(2)
    m.lifecycle("pause", ["d"])
    before = (m.status(), records(m), [a.SerializeToString() for a in m.agents(set())])
    with pytest.raises(TickFailedError) as info:
        m.step(1)
    assert info.value.code == "ABORTED" and "refused for the test" in str(info.value)
    assert (m.status(), records(m), [a.SerializeToString() for a in m.agents(set())]) == before
    assert len(m.kernel.pending) == 1  # the pause is still queued
    assert m.agent("d").state == S.AGENT_STATE_RUNNING
    fail["on"] = False
    m.step(3)  # the retry rebuilds the pools by replay first
    assert m.kernel.digests == undisturbed()
    r, _ = make(1)
    *_, last = r.replay(parse_journal(records(m)), False, 100)
    assert last.ok, last


def test_a_pool_dying_mid_tick_is_rebuilt_or_fails_cleanly() -> None:
    for recovery in (5.0, 0.0):
        dead = {"on": True}
        engines = [FakeEngine(), FakeEngine()]

        def die(
            tick: int, e: FakeEngine = engines[1], dead: dict[str, bool] = dead
        ) -> Exception | None:
            if tick == 3 and dead["on"]:
                dead["on"] = False
                e.agents = {}  # the process is gone with its instances
                import grpc

                return PoolFailureError(
                    1, "x", "StepBatch", grpc.StatusCode.UNAVAILABLE, "connection reset"
                )
            return None

        engines[1].fail_step = die
        m, _ = make(engines=engines, recovery_s=recovery)
        spawn(m, ("a", "to=b"), ("b", "to=c,a"), ("c", "bcast=1"), ("d", "to=a"))
        m.step(2)
        m.lifecycle("pause", ["d"])
        if recovery:
            m.step(3)
        else:
            with pytest.raises(TickFailedError) as info:
                m.step(1)
            assert info.value.code == "UNAVAILABLE" and m.status().tick == 2
            m.step(3)
        assert m.kernel.digests == undisturbed()
        kinds = [k for _t, k, _p in records(m)]
        assert kinds.count("tick.digest") == 5 and "run.recover" in kinds


def test_capacity_and_caps_are_refused_at_request_time() -> None:
    m, _ = make(engines=[FakeEngine(max_agents=2), FakeEngine(max_agents=2)])
    spawn(m, ("a", ""), ("b", ""), ("c", ""))
    with pytest.raises(CapacityError, match="at most 2 agents"):
        spawn(m, ("d", ""), ("e", ""))
    assert m.kernel.pending_spawns() == 3
    spawn(m, ("d", ""))
    with pytest.raises(InvalidRequestError, match="cap of 512"):
        m.spawn(
            [(opb.AgentSpawn(name="big", module=MODULE, limits={"max_memory_pages": 1024}), MODULE)]
        )
    m.step(2)
    assert m.status().agents_by_state == {"running": 4}


def test_reads_answer_from_the_last_committed_tick_while_a_tick_runs() -> None:
    m, (e,) = make()
    spawn(m, ("a", "to=b"), ("b", ""))
    m.step(1)
    e.gate = threading.Event()
    e.entered.clear()
    worker = threading.Thread(target=m.step, args=(1,))
    worker.start()
    try:
        assert e.entered.wait(30)
        assert m.status().tick == 1
        assert [a.steps for a in m.agents(set())] == [1, 1]
        assert m.agent("b").inbox == 1
        assert len(m.digests(0, 0)) == 1
        assert spawn(m, ("late", "")) == 3  # queued behind the tick in flight
    finally:
        e.gate.set()
        worker.join(30)
    assert m.status().tick == 2 and m.agent("b").steps == 2


@pytest.mark.usefixtures("helpers")
def test_the_golden_journal_replays_on_the_in_process_engine() -> None:
    from lockstep_wasm_pool import WasmPool

    lines = (GOLDEN / "probe-run.jsonl").read_text().splitlines()
    recs = [(r["tick"], r["kind"], r["payload"].encode()) for r in map(json.loads, lines)]
    wasm = (GOLDEN / "probe.wasm").read_bytes()
    engines = [WasmPool(), WasmPool()]
    pools = InProcessPools(engines)
    module = pools.check_module(wasm).module_hash
    m = RunManager(pools, lambda h: wasm, lambda: {module}, None, InferenceBridge(None))
    try:
        *_, last = m.replay(parse_journal(recs), False, 100)
        assert last.ok and last.tick == 12, last
        assert [k for _t, k, _p in records(m) if k not in NOT_COMPARED] == [
            k for _t, k, _p in recs if k not in NOT_COMPARED
        ]
    finally:
        pools.close()


def test_tick_stats_add_up_to_the_run_counters_and_stay_out_of_the_digest() -> None:
    m, _ = make(2)
    scenario(m)
    stats = [(t, json.loads(p)) for t, k, p in records(m) if k == "tick.stats"]
    assert [t for t, _ in stats] == list(range(1, m.kernel.tick + 1))
    c = m.status().counters
    for field, total in (
        ("steps", c.steps),
        ("messages", c.messages),
        ("faults", c.faults),
        ("undeliverable", c.undeliverable),
        ("restarts", c.restarts),
        ("fuel", c.fuel_used),
    ):
        assert sum(s[field] for _, s in stats) == total, field
    assert stats[0][1]["spawned"] == 5 and sum(s["spawned"] for _, s in stats) == 5
    assert sum(s["done"] for _, s in stats) >= 2  # the two quitters (and their restarts)
    assert all(s["wall_ms"] >= 0 and len(s["pools_ms"]) == 2 for _, s in stats)
    assert all(s["sent"] >= s["undeliverable"] for _, s in stats)
    assert "tick.stats" in NOT_COMPARED
    # The event's fields are the shared record schema (lockstep.records), in order.
    assert tuple(f.name for f in dataclasses.fields(TickStats)) == TICK_STATS_FIELDS
    # The statistics follow the tick's digest record and parse back as their event.
    kinds = [k for _t, k, _p in records(m)]
    assert kinds[kinds.index("tick.stats") - 1] == "tick.digest"
    ev = parse_event(
        1, "tick.stats", dict((t, p) for t, k, p in records(m) if k == "tick.stats")[1]
    )
    assert ev.journal() == stats[0][1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", [1, 2])
def test_the_digest_record_is_encoded_directly_as_canonical_json(version: int) -> None:
    from lockstep_orchestrator._events import TickDigest, canonical_json

    ev = TickDigest(bytes(range(32)), bytes(range(7, 43)), version)
    assert ev.journal_json() == canonical_json(ev.journal())
    assert Journal.payload(ev) == canonical_json(ev.journal())
    j = Journal(None)
    j.append(3, ev)
    assert (j.records[-1].kind, j.records[-1].payload) == ("tick.digest", ev.journal_json())


def test_a_big_ticks_digest_is_hashed_beside_its_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tick whose digest input passes PARALLEL_HASH_MIN is hashed on a second thread
    while its per-agent checks are computed: the same digest chain and checks as hashing
    every tick inline."""
    from lockstep_orchestrator import _kernel

    def run() -> tuple[list[bytes], bytes]:
        m, _ = make()
        spawn(m, *[(f"a{i}", f"to=a{(i + 1) % 40} burst=2") for i in range(40)])
        m.step(4)
        return list(m.kernel.state.digests), m.kernel.state.agent_checks

    monkeypatch.setattr(_kernel, "PARALLEL_HASH_MIN", 1 << 62)
    inline = run()
    monkeypatch.setattr(_kernel, "PARALLEL_HASH_MIN", 0)
    threaded: list[bool] = []
    from concurrent.futures import ThreadPoolExecutor

    submit = ThreadPoolExecutor.submit

    def counted(self: Any, *args: Any) -> Any:
        threaded.append(True)
        return submit(self, *args)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", counted)
    assert run() == inline
    assert len(threaded) >= 4  # every tick went through the second thread
    data = bytes(range(256)) * 2000
    seqs, starts, lens = (np.array(v, dtype=np.int64) for v in ([2, 1], [0, 9], [9, 500]))
    digest, checks = _kernel.digest_and_checks(b"p" * 32, data, seqs, starts, lens, 2)
    assert digest == hashlib.sha256(b"p" * 32 + data).digest()
    assert checks == _kernel.agent_checks(data, seqs, starts, lens, 2)
