"""Host functions (send/log/tick/random/infer), quotas, context and inbox delivery."""

from __future__ import annotations

import struct

import pytest

from lockstep.abi import (
    LS_ERR_BAD_ARG,
    LS_ERR_BAD_NAME,
    LS_ERR_QUOTA,
    LS_ERR_TOO_LARGE,
    chacha20_keystream,
    random_key,
    unpack_sends,
)
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig
from tests.wasm_pool.conftest import agent_wat, batch, create, record, spec, step

pytestmark = pytest.mark.unit

# An agent whose step runs a list of host calls and stores each i32 result at 512 + 4*i,
# and copies the context buffer to 1024 so the test can read both from a snapshot.
RESULTS = 512


def calls_agent(*calls: str, **kw: str) -> bytes:
    body = "".join(f"(i32.store (i32.const {RESULTS + 4 * i}) {c}) " for i, c in enumerate(calls))
    copy = "(memory.copy (i32.const 1024) (local.get $ctx) (i32.load (local.get $ctx)))"
    return agent_wat(step=copy + body + "(i32.const 0)", **kw)


def results_of(pool: WasmPool, seq: int, n: int) -> list[int]:
    mem = pool.snapshot([seq])[0].memory
    return list(struct.unpack_from(f"<{n}i", mem, RESULTS))


def run_calls(
    pool: WasmPool,
    *calls: str,
    data: str = "",
    **kw: str,
) -> tuple[pb.AgentStepResult, list[int]]:
    extra = f'(data (i32.const 2048) "{data}")' if data else ""
    create(pool, (1, "a", calls_agent(*calls, extra=extra, **kw)))
    (result,) = step(pool, 5, 1)
    assert not result.HasField("fault"), result.fault
    return result, results_of(pool, 1, len(calls))


def send(dest_ptr: int, dest_len: int, pay_ptr: int, pay_len: int) -> str:
    return (
        f"(call $send (i32.const {dest_ptr}) (i32.const {dest_len}) "
        f"(i32.const {pay_ptr}) (i32.const {pay_len}))"
    )


def test_send_records_and_wire_format(pool: WasmPool) -> None:
    # 2048: "*", 2049: "#news", 2054: "$subscribe", 2064: "news"
    result, codes = run_calls(
        pool,
        send(0, 4, 16, 5),
        send(2048, 1, 32, 2),
        send(2049, 5, 16, 0),
        send(2054, 10, 2064, 4),
        data="*#news$subscribenews",
    )
    assert codes == [0, 0, 0, 0]
    assert result.send_count == 4
    assert unpack_sends(result.sends) == [
        (b"peer", b"hello"),
        (b"*", b"ok"),
        (b"#news", b""),
        (b"$subscribe", b"news"),
    ]
    assert result.sends[:6] == struct.pack("<IH", 5, 4)
    assert result.refused_calls == 0


@pytest.mark.parametrize(
    ("dest", "payload", "code"),
    [
        ("$other", "x", LS_ERR_BAD_NAME),
        ("bad name", "x", LS_ERR_BAD_NAME),
        ("$subscribe", "bad topic", LS_ERR_BAD_NAME),
        ("#", "x", LS_ERR_BAD_NAME),
        ("\\ff\\fe", "x", LS_ERR_BAD_NAME),
        ("a" * 65, "x", LS_ERR_BAD_NAME),
    ],
)
def test_send_bad_names(pool: WasmPool, dest: str, payload: str, code: int) -> None:
    dlen = len(dest.encode().decode("unicode_escape").encode("latin-1"))
    data = dest + payload
    result, codes = run_calls(pool, send(2048, dlen, 2048 + dlen, len(payload)), data=data)
    assert codes == [code]
    assert result.send_count == 0 and result.refused_calls == 1


def test_send_too_large_negative_and_quota() -> None:
    cfg = WasmPoolConfig()
    with WasmPool(cfg) as pool:
        wasm = calls_agent(
            send(0, 4, 0, 9),
            send(0, -1, 0, 1),
            send(0, 4, 16, 1),
            send(0, 4, 16, 1),
            send(0, 4, 16, 1),
        )
        digest = pool.load_module(wasm).module_hash
        limits = cpb.Limits(max_message_bytes=8, max_messages_per_step=2)
        pool.create_agents(
            pb.CreateAgentsRequest(seed=1, agents=[spec(1, "a", digest, limits=limits)])
        )
        (result,) = step(pool, 1, 1)
        assert results_of(pool, 1, 5) == [LS_ERR_TOO_LARGE, LS_ERR_BAD_ARG, 0, 0, LS_ERR_QUOTA]
        assert result.send_count == 2 and result.refused_calls == 3
        # Quotas are per tick.
        (result,) = step(pool, 2, 1)
        assert result.send_count == 2


def test_log_levels_quota_and_size() -> None:
    with WasmPool(WasmPoolConfig(max_log_bytes=4)) as pool:
        calls = [
            f"(call $log (i32.const {lvl}) (i32.const 16) (i32.const 3))" for lvl in (0, 4, 6, -1)
        ]  # 5 is observations, accepted
        calls += [
            "(call $log (i32.const 2) (i32.const 16) (i32.const 5))",
            "(call $log (i32.const 2) (i32.const 16) (i32.const -2))",
        ]
        calls += ["(call $log (i32.const 2) (i32.const 2048) (i32.const 2))"] * 3
        wasm = calls_agent(*calls, extra='(data (i32.const 2048) "\\ff\\fe")')
        digest = pool.load_module(wasm).module_hash
        pool.create_agents(
            pb.CreateAgentsRequest(
                agents=[spec(1, "a", digest, limits=cpb.Limits(max_logs_per_step=4))]
            )
        )
        (result,) = step(pool, 1, 1)
        codes = results_of(pool, 1, len(calls))
        assert codes == [
            0,
            0,
            LS_ERR_BAD_ARG,
            LS_ERR_BAD_ARG,
            LS_ERR_TOO_LARGE,
            LS_ERR_BAD_ARG,
            0,
            0,
            LS_ERR_QUOTA,
        ]
        assert [(r.level, r.text) for r in result.logs] == [
            (0, "hel"),
            (4, "hel"),
            (2, "\ufffd\ufffd"),
            (2, "\ufffd\ufffd"),
        ]
        assert result.refused_calls == 5


def test_tick_and_context_buffer(pool: WasmPool) -> None:
    wasm = calls_agent("(i32.wrap_i64 (call $tick))")
    digest = pool.load_module(wasm).module_hash
    pool.create_agents(
        pb.CreateAgentsRequest(agents=[spec(1, "agent-1", digest, args=b"\x01\x02args")])
    )
    (result,) = step(pool, 42, 1, inboxes={1: (batch(record(b"p")), 1)})
    mem = pool.snapshot([1])[0].memory
    assert struct.unpack_from("<i", mem, RESULTS)[0] == 42
    ctx_len = 24 + 7 + 6
    assert (
        mem[1024 : 1024 + ctx_len]
        == struct.pack("<IHHqII", ctx_len, 1, 7, 42, 1, 6) + b"agent-1" + b"\x01\x02args"
    )
    assert result.code == 0


def test_random_stream_matches_chacha20_and_is_positioned(pool: WasmPool) -> None:
    calls = [
        "(call $random (i32.const 3000) (i32.const 5))",
        "(call $random (i32.const 3005) (i32.const 70))",
        "(call $random (i32.const 3075) (i32.const 0))",
        "(call $random (i32.const 3000) (i32.const -1))",
        "(call $random (i32.const 3000) (i32.const 65537))",
    ]
    _, codes = run_calls(pool, *calls)
    assert codes == [0, 0, 0, LS_ERR_BAD_ARG, LS_ERR_TOO_LARGE]
    snap = pool.snapshot([1])[0]
    expected = chacha20_keystream(random_key(7, "a"), 0, 75)
    assert snap.memory[3000:3075] == expected
    assert snap.random_position == 75
    assert pure_chacha20(random_key(7, "a"), 75) == expected
    # Next tick continues the stream (here it rewrites the same first 5 bytes' slot).
    step(pool, 6, 1)
    assert pool.snapshot([1])[0].memory[3000:3005] == chacha20_keystream(random_key(7, "a"), 75, 5)


def test_chacha20_known_answer_rfc8439() -> None:
    # RFC 8439 appendix A.1, test vector 1: all-zero key and nonce, block counter 0.
    expected = bytes.fromhex(
        "76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7"
        "da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586"
    )
    assert chacha20_keystream(bytes(32), 0, 64) == expected
    assert pure_chacha20(bytes(32), 64) == expected
    # Unaligned reads are consecutive bytes of the same stream.
    assert chacha20_keystream(bytes(32), 10, 100) == pure_chacha20(bytes(32), 110)[10:]


def test_random_key_derivation() -> None:
    import hashlib

    want = hashlib.sha256(b"lockstep.random.v1" + (7).to_bytes(8, "little") + b"a").digest()
    assert random_key(7, "a") == want


def test_infer_request_ids_and_refusals(pool: WasmPool) -> None:
    model = "(i32.const 2048) (i32.const 5)"
    calls = [
        f"(i32.wrap_i64 (call $infer {model} (i32.const 16) (i32.const 5)))",
        f"(i32.wrap_i64 (call $infer {model} (i32.const 16) (i32.const 0)))",
        "(i32.wrap_i64 (call $infer (i32.const 2053) (i32.const 3) (i32.const 0) (i32.const 0)))",
        f"(i32.wrap_i64 (call $infer {model} (i32.const 16) (i32.const -1)))",
        f"(i32.wrap_i64 (call $infer {model} (i32.const 16) (i32.const 1048577)))",
    ]
    result, codes = run_calls(pool, *calls, data="gpt-2b c")
    assert codes == [1, 2, LS_ERR_BAD_NAME, LS_ERR_BAD_ARG, LS_ERR_TOO_LARGE]
    assert [(c.request_id, c.model, c.input) for c in result.infers] == [
        (1, "gpt-2", b"hello"),
        (2, "gpt-2", b""),
    ]
    (result,) = step(pool, 6, 1)
    assert [c.request_id for c in result.infers] == [3, 4]
    assert pool.snapshot([1])[0].next_request_id == 5


def test_infer_quota() -> None:
    with WasmPool(WasmPoolConfig(max_infers_per_step=2)) as pool:
        call = (
            "(i32.wrap_i64 (call $infer (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 0)))"
        )
        _, codes = run_calls(pool, call, call, call)
        assert codes == [1, 2, LS_ERR_QUOTA]


def test_receive_per_record_and_batch_deliver_the_same(pool: WasmPool) -> None:
    # Both agents copy every delivered record after the previous one at 8192.
    append = (
        "(memory.copy (i32.add (i32.const 8192) (global.get $count)) (local.get {p}) "
        "(local.get $n)) (global.set $count (i32.add (global.get $count) (local.get $n)))"
    )
    per_record = agent_wat(
        receive="(local $n i32) (local.set $n (i32.load (local.get $msg)))"
        + append.format(p="$msg")
        + " (i32.const 0)"
    )
    batched = agent_wat(
        batch="(local $n i32) (local.set $n (i32.sub (i32.load (local.get $p)) "
        "(i32.const 8))) (local.set $p (i32.add (local.get $p) (i32.const 8)))"
        + append.format(p="$p")
        + " (i32.const 0)"
    )
    assert pool.load_module(batched).has_receive_batch
    assert not pool.load_module(per_record).has_receive_batch
    create(pool, (1, "r", per_record), (2, "b", batched))
    inbox = batch(
        record(b"one", sender=b"x", tick=3),
        record(b"", kind=1, sender=b""),
        record(b"result", kind=2, sender=b"model", corr=9),
    )
    step(pool, 4, 1, 2, inboxes={1: (inbox, 3), 2: (inbox, 3)})
    snaps = pool.snapshot([1, 2])
    body = inbox[8:]
    assert snaps[0].memory[8192 : 8192 + len(body)] == body
    assert snaps[1].memory[8192 : 8192 + len(body)] == body


@pytest.mark.parametrize(
    ("inbox", "count", "reason"),
    [
        (b"", 1, "inbox is empty"),
        (b"\x00" * 4, 0, "shorter than its 8-byte"),
        (struct.pack("<II", 9, 0), 0, "header says 9 bytes"),
        (batch(record(b"x")), 2, "header says 1 records"),
        (batch(record(b"x"))[:-1] + b"", 1, "header says"),
        (
            struct.pack("<II", 8 + 32, 1) + struct.pack("<IBBHqqIHH", 33, 0, 0, 0, 0, 0, 0, 0, 0),
            1,
            "length 33",
        ),
    ],
)
def test_bad_inbox_is_invalid_argument(
    pool: WasmPool, inbox: bytes, count: int, reason: str
) -> None:
    from lockstep_wasm_pool import InvalidRequestError

    create(pool, (1, "a", agent_wat()))
    with pytest.raises(InvalidRequestError, match=reason):
        step(pool, 1, 1, inboxes={1: (inbox, count)})


def test_idle_and_done_codes(pool: WasmPool) -> None:
    create(
        pool,
        (1, "idle", agent_wat(step="(i32.const 1)")),
        (2, "done", agent_wat(step="(i32.const 2)")),
        (3, "odd", agent_wat(step="(i32.const 17)")),
    )
    results = step(pool, 1, 1, 2, 3)
    assert [r.code for r in results] == [1, 2, 0]
    snaps = pool.snapshot([])
    assert [s.idle for s in snaps] == [True, False, False]


def test_shutdown(pool: WasmPool) -> None:
    create(
        pool,
        (
            1,
            "a",
            agent_wat(
                shutdown="(drop (call $send (i32.const 0) (i32.const 4) "
                "(i32.const 16) (i32.const 5))) (i32.const 0)"
            ),
        ),
        (2, "b", agent_wat(shutdown="(i32.const -9)")),
    )
    resp = pool.destroy_agents(
        pb.DestroyAgentsRequest(tick=9, sequences=[1, 2], call_shutdown=True)
    )
    assert unpack_sends(resp.results[0].sends) == [(b"peer", b"hello")]
    assert resp.results[1].fault.kind == cpb.FAULT_KIND_ERROR_CODE
    assert resp.results[1].fault.entry_point == "agent_shutdown"
    assert pool.seqs() == []


def test_fuel_is_one_budget_per_tick_across_calls() -> None:
    # Each receive burns ~3000 fuel; with a 7000 budget the third message runs it out.
    burn = (
        "(local $i i32) (local.set $i (i32.const 500)) (loop $l (local.set $i "
        "(i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i))) (i32.const 0)"
    )
    with WasmPool(WasmPoolConfig(fuel_per_step=7000)) as pool:
        create(pool, (1, "a", agent_wat(receive=burn)), (2, "b", agent_wat(receive=burn)))
        two = batch(record(b"1"), record(b"2"))
        three = batch(record(b"1"), record(b"2"), record(b"3"))
        ok, bad = step(pool, 1, 1, 2, inboxes={1: (two, 2), 2: (three, 3)})
        assert not ok.HasField("fault") and 6000 < ok.fuel_used < 7000
        assert bad.fault.kind == cpb.FAULT_KIND_FUEL_EXHAUSTED
        assert bad.fault.entry_point == "agent_receive"
        assert bad.fuel_used == 7000


def pure_chacha20(key: bytes, length: int) -> bytes:
    """Independent RFC 8439 ChaCha20 keystream (zero nonce, counter from 0) for checking."""

    def rotl(v: int, n: int) -> int:
        return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF

    def qr(s: list[int], a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 7)

    out = b""
    counter = 0
    while len(out) < length:
        init = [
            0x61707865,
            0x3320646E,
            0x79622D32,
            0x6B206574,
            *struct.unpack("<8I", key),
            counter,
            0,
            0,
            0,
        ]
        s = list(init)
        for _ in range(10):
            qr(s, 0, 4, 8, 12)
            qr(s, 1, 5, 9, 13)
            qr(s, 2, 6, 10, 14)
            qr(s, 3, 7, 11, 15)
            qr(s, 0, 5, 10, 15)
            qr(s, 1, 6, 11, 12)
            qr(s, 2, 7, 8, 13)
            qr(s, 3, 4, 9, 14)
        out += struct.pack("<16I", *((x + y) & 0xFFFFFFFF for x, y in zip(s, init, strict=True)))
        counter += 1
    return out[:length]


def test_random_stream_end_is_a_refusal(pool: WasmPool) -> None:
    from lockstep.abi import RANDOM_STREAM_BYTES

    create(pool, (1, "a", calls_agent("(call $random (i32.const 3000) (i32.const 8))")))
    (snap,) = pool.snapshot([1])
    pool.reset()
    snap.random_position = RANDOM_STREAM_BYTES - 4
    pool.restore([snap])
    (result,) = step(pool, 1, 1)
    assert results_of(pool, 1, 1) == [-1] and result.refused_calls == 1


def test_memory_page_limit_above_cap_is_invalid(pool: WasmPool) -> None:
    from lockstep_wasm_pool import InvalidRequestError

    digest = pool.load_module(agent_wat()).module_hash
    with pytest.raises(InvalidRequestError, match="above the pool cap of 512"):
        pool.create_agents(
            pb.CreateAgentsRequest(
                agents=[spec(1, "a", digest, limits=cpb.Limits(max_memory_pages=513))]
            )
        )
