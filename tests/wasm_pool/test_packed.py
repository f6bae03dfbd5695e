"""The packed wire (docs/wire.md) on the Python engine: same results as the protobuf
methods, and garbled buffers are refused (BatchError / INVALID_ARGUMENT), never a crash."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockstep import batch as wire
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import NotFoundError, WasmPool, WasmPoolConfig
from tests.wasm_pool.conftest import GOOD, create, record
from tests.wasm_pool.zoo import Scenario, play

pytestmark = pytest.mark.unit


def _result(r: pb.AgentStepResult) -> wire.Result:
    """Independent of the engine's own conversion."""
    fault = None
    if r.HasField("fault"):
        fault = wire.Fault(r.fault.kind, r.fault.detail, r.fault.entry_point)
    return wire.Result(
        r.sequence,
        r.code,
        r.fuel_used,
        r.sends,
        r.send_count,
        r.refused_calls,
        [wire.LogLine(x.level, x.text.encode("utf-8")) for x in r.logs],
        [wire.InferCall(c.request_id, c.model.encode(), c.input) for c in r.infers],
        fault,
    )


def proto_runner(pool: WasmPool):  # type: ignore[no-untyped-def]
    """Run a packed request through the protobuf methods and pack their answer."""

    def run(kind: str, buf: bytes) -> bytes:
        if kind == "create":
            c = wire.parse_create(buf)
            specs = []
            for i, row in enumerate(c.rows):
                name, module_hash, args = c.strings(i)
                limits = cpb.Limits(
                    fuel_per_step=int(row["fuel"]),
                    max_memory_pages=int(row["pages"]),
                    max_messages_per_step=int(row["sends"]),
                    max_message_bytes=int(row["message_bytes"]),
                    max_logs_per_step=int(row["logs"]),
                )
                specs.append(
                    pb.AgentSpec(
                        sequence=int(row["seq"]),
                        name=name,
                        module_hash=module_hash,
                        args=args,
                        limits=limits,
                    )
                )
            results = pool.create_agents(
                pb.CreateAgentsRequest(tick=c.tick, seed=c.seed, agents=specs)
            ).results
        elif kind == "step":
            s = wire.parse_step(buf)
            steps = []
            for i, row in enumerate(s.rows):
                recs = s.inbox(i)
                n = int(row["count"])
                inbox = struct.pack("<II", 8 + len(recs), n) + recs if n else b""
                steps.append(pb.AgentStep(sequence=int(row["seq"]), inbox=inbox, inbox_count=n))
            results = pool.step_batch(pb.StepBatchRequest(tick=s.tick, steps=steps)).results
        else:
            d = wire.parse_destroy(buf)
            results = pool.destroy_agents(
                pb.DestroyAgentsRequest(
                    tick=d.tick, sequences=[int(h) for h in d.seqs], call_shutdown=d.call_shutdown
                )
            ).results
        return wire.pack_results([_result(r) for r in results])

    return run


def packed_runner(pool: WasmPool):  # type: ignore[no-untyped-def]
    def run(kind: str, buf: bytes) -> bytes:
        return {
            "create": pool.create_packed,
            "step": pool.step_packed,
            "destroy": pool.destroy_packed,
        }[kind](buf)

    return run


def load(pool: WasmPool):  # type: ignore[no-untyped-def]
    return lambda wasm: pool.load_module(wasm).module_hash


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "public"])
def test_packed_equals_protobuf_on_the_zoo(fast: bool) -> None:
    cfg = WasmPoolConfig(fast_path=fast, engine="python")
    with WasmPool(cfg) as a, WasmPool(cfg) as b:
        via_proto = play(Scenario(proto_runner(a)), load(a))
        via_packed = play(Scenario(packed_runner(b)), load(b))
    assert len(via_packed) == len(via_proto) == 7
    for x, y in zip(via_proto, via_packed, strict=True):
        assert x == y
    # The scenario covers what it claims: faults of many kinds, logs, sends, infers.
    kinds = {int(k) for out in via_packed for k in wire.parse_results(out).rows["fault_kind"]}
    assert {
        cpb.FAULT_KIND_TRAP,
        cpb.FAULT_KIND_FUEL_EXHAUSTED,
        cpb.FAULT_KIND_STACK_OVERFLOW,
        cpb.FAULT_KIND_MEMORY_LIMIT,
        cpb.FAULT_KIND_BAD_POINTER,
        cpb.FAULT_KIND_ERROR_CODE,
    } <= kinds


def test_packed_log_text_is_replaced_utf8() -> None:
    with WasmPool(WasmPoolConfig(engine="python")) as pool:
        log = play(Scenario(packed_runner(pool)), load(pool), ticks=1)
        res = wire.parse_results(log[1])
        busy = next(i for i in range(len(res)) if res.rows[i]["seq"] == 2)
        texts = [x.text for x in res.logs(busy)]
        assert texts[:2] == [b"hello", b"\xff\xfeA\xc3".decode("utf-8", "replace").encode()]


def test_packed_request_validated_before_anything_runs() -> None:
    with WasmPool(WasmPoolConfig(engine="python", max_inbox_bytes=8 + 40)) as pool:
        create(pool, (1, "a", GOOD), (2, "b", GOOD))
        before = pool.snapshot([])
        rec = record(b"x" * 8)  # 32 + 3 + 1 + 8 = 44 bytes: with the header 52 > 48
        with pytest.raises(NotFoundError):
            pool.step_packed(wire.pack_step(1, [1, 9], [b"", b""], [0, 0]))
        with pytest.raises(wire.BatchError, match="above the limit"):
            pool.step_packed(wire.pack_step(1, [1, 2], [b"", rec], [0, 1]))
        with pytest.raises(wire.BatchError, match="appears twice"):
            pool.step_packed(wire.pack_step(1, [1, 1], [b"", b""], [0, 0]))
        assert pool.snapshot([]) == before
        small = record(b"x" * 4)  # 40 + 8 = 48: at the limit, accepted
        out = wire.parse_results(pool.step_packed(wire.pack_step(1, [2], [small], [1])))
        assert out.fault(0) is None and int(out.rows[0]["seq"]) == 2


def test_packed_zero_limits_take_pool_defaults() -> None:
    with WasmPool(WasmPoolConfig(engine="python", fuel_per_step=123_456)) as pool:
        digest = pool.load_module(GOOD).module_hash
        loop = pool.load_module(
            __import__("tests.wasm_pool.zoo", fromlist=["FAULTING"]).FAULTING[3][1]
        ).module_hash
        pool.create_packed(
            wire.pack_create(
                0, 1, [wire.AgentSpec(1, "a", digest), wire.AgentSpec(2, "b", loop, fuel=999)]
            )
        )
        out = wire.parse_results(pool.step_packed(wire.pack_step(1, [1, 2], [b"", b""], [0, 0])))
        assert int(out.rows[1]["fuel"]) == 999
        fault = out.fault(1)
        assert fault is not None and "999" in fault.detail
    with WasmPool(WasmPoolConfig(engine="python", fuel_per_step=1000)) as pool:
        loop = pool.load_module(
            __import__("tests.wasm_pool.zoo", fromlist=["FAULTING"]).FAULTING[3][1]
        ).module_hash
        pool.create_packed(wire.pack_create(0, 1, [wire.AgentSpec(1, "a", loop)]))
        out = wire.parse_results(pool.step_packed(wire.pack_step(1, [1], [b""], [0])))
        assert int(out.rows[0]["fuel"]) == 1000


# ------------------------------------------------------------------ fuzz
def _valid_buffers() -> dict[str, bytes]:
    recs = record(b"payload", sender=b"s", dest=b"a") + record(b"", sender=b"", dest=b"#t")
    return {
        "step": wire.pack_step(3, [1, 2, 5], [recs, b"", record(b"z")], [2, 0, 1]),
        "create": wire.pack_create(
            0, 9, [wire.AgentSpec(1, "a", "sha256:00", b"xy"), wire.AgentSpec(2, "b", "sha256:11")]
        ),
        "destroy": wire.pack_destroy(4, [1, 2, 3], True),
        "results": wire.pack_results(
            [
                wire.Result(
                    1,
                    0,
                    5,
                    b"\x02\x00\x00\x00\x01\x00ahi",
                    1,
                    0,
                    [wire.LogLine(2, b"x")],
                    [wire.InferCall(1, b"m", b"in")],
                ),
                wire.Result(2, -1, 0, fault=wire.Fault(4, "bad", "agent_step")),
            ]
        ),
    }


_PARSERS: dict[str, Callable[[bytes], object]] = {
    "step": wire.parse_step,
    "create": wire.parse_create,
    "destroy": wire.parse_destroy,
    "results": wire.parse_results,
}


def _parse_fully(kind: str, buf: bytes) -> None:
    parsed = _PARSERS[kind](buf)
    if isinstance(parsed, wire.Results):
        for i in range(len(parsed)):  # every row's accessors stay inside the buffer
            parsed.data(i)


@st.composite
def garbled(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(sorted(_PARSERS)))
    buf = bytearray(_valid_buffers()[kind])
    how = draw(st.sampled_from(["truncate", "flip", "extend", "random"]))
    if how == "truncate":
        del buf[draw(st.integers(0, max(0, len(buf) - 1))) :]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] = draw(st.integers(0, 255))
    elif how == "extend":
        buf += draw(st.binary(min_size=1, max_size=16))
    else:
        buf = bytearray(draw(st.binary(max_size=200)))
        if draw(st.booleans()):
            magic = {"step": b"LSSQ", "create": b"LSCQ", "destroy": b"LSDQ", "results": b"LSRS"}[
                kind
            ]
            buf[:6] = magic + b"\x01\x00"
    return kind, bytes(buf)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbled())
def test_fuzz_parsers_refuse_with_batch_error(case: tuple[str, bytes]) -> None:
    kind, buf = case
    try:
        _parse_fully(kind, buf)
    except wire.BatchError as exc:
        assert "byte" in str(exc) and exc.offset >= 0
    # A garbled buffer may still be a valid one (e.g. a flipped payload byte): no error.


@pytest.fixture(scope="module")
def fuzz_pool():  # type: ignore[no-untyped-def]
    with WasmPool(WasmPoolConfig(engine="python")) as pool:
        digest = pool.load_module(GOOD).module_hash
        pool.create_packed(
            wire.pack_create(0, 1, [wire.AgentSpec(h, f"a{h}", digest) for h in (1, 2, 5)])
        )
        yield pool


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(garbled())
def test_fuzz_pool_packed_methods_never_crash(fuzz_pool: WasmPool, case: tuple[str, bytes]) -> None:
    kind, buf = case
    if kind in ("results", "destroy", "create"):
        kind = "step"  # destroy/create of garbage could legitimately change the pool
        buf = _valid_buffers()["step"][: len(buf)] if len(buf) < 100 else buf
    with contextlib.suppress(wire.BatchError, NotFoundError):
        fuzz_pool.step_packed(buf)
    assert fuzz_pool.seqs() == [1, 2, 5]


def test_result_faults_reads_the_fault_column_in_place() -> None:
    results = [
        wire.Result(seq=1),
        wire.Result(seq=2, fault=wire.Fault(3, "trap", "agent_step")),
        wire.Result(seq=3, sends=b"x" * 5, send_count=0),
        wire.Result(seq=4, fault=wire.Fault(1, "fuel", "agent_step")),
    ]
    buf = wire.pack_results(results)
    kinds = wire.result_faults(buf)
    assert kinds.tolist() == [0, 3, 0, 1]
    assert kinds.tolist() == wire.result_rows(buf)["fault_kind"].tolist()
    assert wire.result_faults(wire.pack_results([])).tolist() == []
    with pytest.raises(wire.BatchError, match="table of 4 rows"):
        wire.result_faults(buf[:40])
    with pytest.raises(wire.BatchError, match="magic"):
        wire.result_faults(b"\0" * 16)
