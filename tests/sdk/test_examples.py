"""The example agents, built from source, running in the real pool engine."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from lockstep.agents import build_agent, examples_dir
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from tests.sdk.conftest import Built
from tests.sdk.world import World

pytestmark = pytest.mark.integration


def pingpong_run(wasm_a: bytes, wasm_b: bytes, rounds: int, seed: int = 7) -> World:
    world = World(seed=seed)
    ha, hb = world.load(wasm_a), world.load(wasm_b)
    world.spawn("alice", ha, f"peer=bob rounds={rounds} start=1".encode())
    world.spawn("bob", hb, f"rounds={rounds},peer=alice".encode())
    world.run(4 * rounds + 10)
    return world


def behaviour(world: World) -> tuple[list[object], list[object], list[object]]:
    return list(world.sends()), list(world.logs()), list(world.faults())


# --------------------------------------------------------------------------- pingpong
@pytest.mark.parametrize("name", ["pingpong.c", "pingpong.ts"])
def test_pingpong_pair_exchanges_n_rounds(built: Built, name: str) -> None:
    wasm = built.wasm(name)
    with pingpong_run(wasm, wasm, rounds=5) as world:
        assert world.faults() == []
        expected = []
        for k in range(1, 6):
            expected.append((2 * k - 2, "alice", "bob", f"ping {k}".encode()))
            expected.append((2 * k - 1, "bob", "alice", f"pong {k}".encode()))
        assert world.sends() == expected
        logs = world.logs()
        assert (9, "bob", 2, "done: served=5") in logs
        assert (10, "alice", 2, "done: replies=5") in logs
        assert (0, "alice", 2, "ping 1 -> bob") in logs
        assert world.live() == []  # both returned DONE
        # Idle between messages: each agent is stepped only when the ball is with it.
        assert [e.tick for e in world.events if e.agent == "bob"] == [0, 0, 1, 3, 5, 7, 9]


def test_pingpong_c_and_assemblyscript_make_identical_sends_and_logs(built: Built) -> None:
    c, ts = built.wasm("pingpong.c"), built.wasm("pingpong.ts")
    with (
        pingpong_run(c, c, 12) as ref,
        pingpong_run(ts, ts, 12) as other,
        pingpong_run(c, ts, 12) as mixed_a,
        pingpong_run(ts, c, 12) as mixed_b,
    ):
        assert len(ref.sends()) == 24
        for world in (other, mixed_a, mixed_b):
            assert behaviour(world) == behaviour(ref)
        # Same behaviour, different code: fuel tells the builds apart.
        assert sum(e.fuel for e in other.events) != sum(e.fuel for e in ref.events)


def test_debug_and_release_builds_behave_the_same(built: Built) -> None:
    with pingpong_run(built.wasm("pingpong.c"), built.wasm("pingpong.c"), 4) as ref:
        for name in ("pingpong.c", "pingpong.ts"):
            dbg = built.wasm(name, optimize=False)
            with pingpong_run(dbg, dbg, 4) as world:
                assert behaviour(world) == behaviour(ref)


def test_batch_export_and_per_message_receive_agree(built: Built, tmp_path: Path) -> None:
    # The header's default agent_receive_batch against the host calling agent_receive
    # once per message: the same pingpong without the batch export.
    src = tmp_path / "pingpong_nobatch.c"
    src.write_text(
        "#define LOCKSTEP_NO_RECEIVE_BATCH\n"
        f'#include "{examples_dir() / "pingpong" / "pingpong.c"}"\n'
    )
    nobatch = build_agent(src, tmp_path / "nobatch.wasm").read_bytes()
    with World() as world:
        assert "agent_receive_batch" not in world.pool.module(world.load(nobatch)).exports
    c = built.wasm("pingpong.c")
    with pingpong_run(c, c, 6) as ref, pingpong_run(nobatch, nobatch, 6) as world:
        assert behaviour(world) == behaviour(ref)


@pytest.mark.parametrize("name", ["pingpong.c", "pingpong.ts"])
def test_many_and_large_messages_fit_the_scratch_allocator(built: Built, name: str) -> None:
    # 20 payloads of 60 KiB in one inbox: a 1.2 MB batch buffer, far above the initial
    # memory, so agent_alloc must grow it. Each is "unexpected" and logged, no fault.
    with World() as world:
        h = world.load(built.wasm(name))
        world.spawn("p", h, b"peer=q rounds=1")
        world.spawn("q", h, b"peer=p rounds=1")
        for i in range(20):
            world.send_external("p", bytes([65 + i]) * 61_440)
        world.send_external("p", b"ping 1")
        events = world.step()
        assert world.faults() == []
        p = next(e for e in events if e.agent == "p")
        assert p.logs == [(3, "unexpected message")] * 20 + [
            (2, "pong 1 -> q"),
            (2, "done: served=1"),
        ]
        assert p.sends == [("q", b"pong 1")]


@pytest.mark.parametrize("name", ["pingpong.c", "pingpong.ts"])
def test_pingpong_to_an_unknown_peer_stops(built: Built, name: str) -> None:
    with World() as world:
        world.spawn("a", world.load(built.wasm(name)), b"peer=ghost start=1")
        world.run(10)
        assert world.logs() == [
            (0, "a", 2, "ping 1 -> ghost"),
            (1, "a", 3, "undeliverable to ghost: unknown agent"),
        ]
        assert world.live() == []


@pytest.mark.parametrize("name", ["pingpong.c", "pingpong.ts"])
def test_pingpong_without_peer_logs_an_error_and_is_done(built: Built, name: str) -> None:
    with World() as world:
        world.spawn("a", world.load(built.wasm(name)), b"rounds=2 peer=")
        world.run(5)
        assert world.logs() == [(0, "a", 4, "missing peer=NAME argument")]
        assert world.events[-1].code == 2


def test_snapshot_and_restore_mid_game_continue_identically(built: Built) -> None:
    # The AS runtime keeps its heap and GC state in memory and globals: a restored
    # instance must carry on exactly where the original was.
    wasm = built.wasm("pingpong.ts")
    with pingpong_run(wasm, wasm, 8) as ref:
        expected = behaviour(ref)
    with World() as world:
        h = world.load(wasm)
        world.spawn("alice", h, b"peer=bob rounds=8 start=1")
        world.spawn("bob", h, b"rounds=8,peer=alice")
        for _ in range(5):
            world.step()
        snaps = world.pool.snapshot([])
        world.pool.reset()
        world.pool.restore(snaps)
        world.run(50)
        assert behaviour(world) == expected


# --------------------------------------------------------------------------- wealth
def wealth_run(wasm: bytes, n: int, ticks: int, seed: int, wealth: int = 2) -> World:
    world = World(seed=seed)
    h = world.load(wasm)
    for i in range(n):
        world.spawn(f"w{i}", h, f"n={n} wealth={wealth}".encode())
    for _ in range(ticks):
        world.step()
    return world


def test_wealth_moves_one_unit_per_tick_to_a_random_other_agent(built: Built) -> None:
    n, w0 = 12, 2
    with wealth_run(built.wasm("wealth.c"), n, 40, seed=5, wealth=w0) as world:
        assert world.faults() == []
        balance = {f"w{i}": w0 for i in range(n)}
        sends = world.sends()
        by_tick = collections.defaultdict(list)
        for tick, sender, dest, payload in sends:
            by_tick[tick].append((sender, dest, payload))
        for tick in range(40):
            senders = [s for s, _, _ in by_tick[tick]]
            assert len(senders) == len(set(senders))  # at most one unit per agent per tick
            for sender, dest, payload in by_tick[tick]:
                assert payload == b"1" and dest != sender and dest in balance
                assert balance[sender] > 0
                balance[sender] -= 1
            # Everyone with money gives; it arrives at the next tick.
            assert sorted(senders) == sorted(
                a for a, v in balance.items() if v + senders.count(a) > 0
            )
            for _, dest, _ in by_tick[tick]:
                balance[dest] += 1
        assert sum(balance.values()) == n * w0
        assert len({d for _, _, d, _ in sends}) == n  # every agent got money at some point


def test_wealth_c_and_assemblyscript_draw_and_send_identically(built: Built) -> None:
    # Exercises the two SDKs' random_below on the same host stream, and their logs.
    def run(name: str) -> World:
        world = World(seed=9)
        h = world.load(built.wasm(name))
        for i in range(15):
            world.spawn(f"w{i}", h, b"n=15 wealth=3 log_every=7 work=50")
        for _ in range(40):
            world.step()
        return world

    with run("wealth.c") as c, run("wealth.ts") as ts:
        assert len(c.sends()) > 300 and c.faults() == []
        assert any(t.startswith("wealth=") for _, _, _, t in c.logs())
        assert behaviour(ts) == behaviour(c)


def test_wealth_is_deterministic_per_seed(built: Built) -> None:
    wasm = built.wasm("wealth.c")
    with (
        wealth_run(wasm, 8, 15, seed=1) as a,
        wealth_run(wasm, 8, 15, seed=1) as b,
        wealth_run(wasm, 8, 15, seed=2) as c,
    ):
        assert a.sends() == b.sends()
        assert a.sends() != c.sends()


def test_wealth_heavy_decides_like_wealth_but_works_harder(built: Built) -> None:
    with (
        wealth_run(built.wasm("wealth.c"), 8, 15, seed=3) as light,
        wealth_run(built.wasm("wealth_heavy.c"), 8, 15, seed=3) as heavy,
    ):
        assert heavy.sends() == light.sends()
        fuel = [sum(e.fuel for e in w.events) / len(w.events) for w in (light, heavy)]
        assert fuel[1] > 20 * fuel[0]


def test_wealth_with_bad_name_or_args_is_done(built: Built) -> None:
    with World() as world:
        h = world.load(built.wasm("wealth.c"))
        world.spawn("x1", h, b"n=4")  # name does not match the default prefix "w"
        world.spawn("w9", h, b"n=4")  # index out of range
        world.spawn("w0", h, b"")  # no n
        world.step()
        assert [e.code for e in world.events[-3:]] == [2, 2, 2]
        assert {t for _, _, _, t in world.logs()} == {
            "bad arguments: need n=N (>= 2) and my name = prefix<index>"
        }


# --------------------------------------------------------------------------- gossip
def test_gossip_each_hearer_tells_k_distinct_peers_once(built: Built) -> None:
    n, k = 25, 3
    with World(seed=11) as world:
        h = world.load(built.wasm("gossip.c"))
        for i in range(n):
            args = f"n={n} k={k}" + (" origin=1 rumour=psst" if i == 0 else "")
            world.spawn(f"g{i}", h, args.encode())
        world.run(60)
        assert world.faults() == []
        assert all(world._live[a].idle for a in world.live())  # died out by itself
        sends = world.sends()
        told: dict[str, list[str]] = collections.defaultdict(list)
        for _, sender, dest, payload in sends:
            assert payload == b"psst"
            told[sender].append(dest)
        heard = {a for _, a, _, t in world.logs() if t.startswith("heard it from")}
        assert set(told) == heard | {"g0"}
        for sender, dests in told.items():
            assert len(dests) == k and len(set(dests)) == k and sender not in dests
        # Termination reports how often each agent heard it again.
        seqs = [world._live[a].seq for a in world.live()]
        res = world.pool.destroy_agents(
            pb.DestroyAgentsRequest(tick=world.tick, sequences=seqs, call_shutdown=True)
        )
        texts = [log.text for r in res.results for log in r.logs]
        assert len(texts) == n
        assert sum(t.startswith("knew the rumour") for t in texts) == len(heard) + 1


# --------------------------------------------------------------------------- trader
def test_market_matches_deterministically_and_conserves_cash_and_shares(built: Built) -> None:
    def run(seed: int) -> tuple[World, list[str]]:
        world = World(seed=seed)
        world.spawn("market", world.load(built.wasm("market.c")), b"ttl=4")
        ht = world.load(built.wasm("trader.c"))
        for i in range(8):
            world.spawn(f"t{i}", ht, b"orders=12 cash=5000 shares=50")
        world.run(200)
        seqs = [world._live[a].seq for a in world.live()]
        res = world.pool.destroy_agents(
            pb.DestroyAgentsRequest(tick=world.tick, sequences=seqs, call_shutdown=True)
        )
        return world, [log.text for r in res.results for log in r.logs]

    world, finals = run(42)
    with world:
        assert world.faults() == []
        assert world.live() == ["market"] + [f"t{i}" for i in range(8)]
        fills = [
            (d, p.decode().split())
            for _, s, d, p in world.sends()
            if s == "market" and p.startswith(b"fill")
        ]
        assert fills, "no trades happened"
        for _, (_, side, qty, price, limit) in fills:
            assert int(qty) > 0
            assert (int(price) <= int(limit)) if side == "buy" else (int(price) >= int(limit))
        totals: collections.Counter[str] = collections.Counter()
        for text in finals:
            fields = dict(f.split("=") for f in text.split())
            totals["cash"] += int(fields["cash"])
            totals["shares"] += int(fields["shares"])
        assert totals == {"cash": 8 * 5000, "shares": 8 * 50}  # book empty: all settled
        assert any(t.startswith("trades=") for _, a, _, t in world.logs() if a == "market")
        prices = [p for _, s, d, p in world.sends() if d == "#prices"]
        assert prices and all(p.startswith(b"price ") for p in prices)
    again, finals_again = run(42)
    with again:
        assert behaviour(again) == behaviour(world) and finals_again == finals


# --------------------------------------------------------------------------- oracle
def scripted_model(model: str, data: bytes) -> tuple[bool, bytes]:
    if model == "echo":
        return True, b"echo: " + data
    return False, f"model {model} is not loaded".encode()


def test_oracle_asks_forwards_and_reports_errors(built: Built) -> None:
    with World(infer=scripted_model) as world:
        ho = world.load(built.wasm("oracle.c"))
        hp = world.load(built.wasm("pingpong.c"))
        world.spawn("oracle", ho, b"model=echo prompt=what is 6 x 7?")
        world.spawn("broken", ho, b"model=missing")
        world.step()
        # An agent asks: pingpong's "ping 1" is the prompt; the answer comes back to it.
        world.spawn("asker", hp, b"peer=oracle start=1 rounds=1")
        world.send_external("oracle", b"from outside")
        world.spawn("asker2", hp, b"peer=broken start=1 rounds=1")
        world.run(10)
        assert world.faults() == []
        logs = [(a, lvl, t) for _, a, lvl, t in world.logs()]
        assert ("oracle", 2, "result #1: echo: what is 6 x 7?") in logs
        assert ("oracle", 2, "result #2: echo: from outside") in logs
        assert ("oracle", 2, "result #3: echo: ping 1") in logs
        assert ("broken", 3, "request #1 failed: model missing is not loaded") in logs
        sends = [(s, d, p) for _, s, d, p in world.sends()]
        assert ("oracle", "asker", b"echo: ping 1") in sends
        assert ("broken", "asker2", b"error: model missing is not loaded") in sends
        # External askers and the oracle's own prompt get no reply message.
        assert [d for s, d, _ in sends if s == "oracle"] == ["asker"]


def test_oracle_without_model_is_done(built: Built) -> None:
    with World(infer=scripted_model) as world:
        world.spawn("o", world.load(built.wasm("oracle.c")), b"prompt=hi")
        world.step()
        assert world.logs() == [(0, "o", 4, "missing model=NAME argument")]
        assert world.live() == []


# --------------------------------------------------------------------------- faults
def test_assemblyscript_abort_logs_where_and_faults_the_agent(tmp_path: Path) -> None:
    src = tmp_path / "aborts.ts"
    src.write_text(
        'import { Context, OK, IDLE, receiveBatch } from "@lockstep/sdk";\n'
        'export { agent_alloc } from "@lockstep/sdk";\n'
        "export function agent_init(): i32 { return OK; }\n"
        "export function agent_step(p: i32): i32 {\n"
        "  const c = Context.read(p);\n"
        '  if (c.tick == 2) abort("tick " + c.tick.toString() + " is too late");\n'
        "  const a = new Array<i64>(1);\n"
        "  return <i32>a[<i32>c.tick];  // out of range at tick 1\n"
        "}\n"
        "export function agent_receive(p: i32): i32 { return OK; }\n"
        "export function agent_receive_batch(p: i32): i32 { return receiveBatch(p, agent_receive); }\n"
        "export function agent_shutdown(): i32 { return OK; }\n"
    )
    wasm = build_agent(src, tmp_path / "aborts.wasm").read_bytes()
    with World() as world:
        h = world.load(wasm)
        world.spawn("a", h, b"")
        world.step()
        world.step()
        world.spawn("b", h, b"")
        world.run(10)
        assert world.logs() == [
            (1, "a", 4, "abort: Index out of range at ~lib/array.ts:114:42"),
            (2, "b", 4, "abort: tick 2 is too late"),
        ]
        assert [(t, a) for t, a, _ in world.faults()] == [(1, "a"), (2, "b")]
        assert all(f.startswith("FAULT_KIND_TRAP: unreachable") for _, _, f in world.faults())


def test_c_agent_returning_an_error_code_faults(tmp_path: Path) -> None:
    src = tmp_path / "neg.c"
    src.write_text(
        "#define LOCKSTEP_DEFAULT_ALLOC\n#define LOCKSTEP_DEFAULT_INIT\n"
        '#define LOCKSTEP_DEFAULT_SHUTDOWN\n#include "lockstep.h"\n'
        "int32_t agent_receive(int32_t p) { return -7; }\n"
        "int32_t agent_step(int32_t p) { return LS_IDLE; }\n"
    )
    wasm = build_agent(src, tmp_path / "neg.wasm").read_bytes()
    with World() as world:
        world.spawn("a", world.load(wasm), b"")
        world.step()
        world.send_external("a", b"x")
        world.step()
        # The header's agent_receive_batch passes the negative code on, as the host
        # would see it from agent_receive.
        assert world.faults() == [
            (1, "a", "FAULT_KIND_ERROR_CODE: agent_receive_batch returned -7")
        ]
