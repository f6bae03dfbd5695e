"""wasm_pool benchmarks: host overhead per agent step and per delivered message.

Each metric is a ratio to a bare wasmtime call of the same wasm function (a raw
``wasmtime_func_call_unchecked`` through an argtypes-free ctypes handle, the cheapest call
Python can make) measured in the same run, so numbers compare across machines.
``python bench/pool.py [--quick]``.
Never run from the test suite.
"""

from __future__ import annotations

import ctypes
import gc
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

if __package__ in (None, ""):  # `python bench/pool.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import metric, percentile, standalone
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig, make_engine

AGENT = """
(module
  (import "lockstep_v1" "send" (func $send (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $n (mut i32) (i32.const 0))
  (data (i32.const 0) "peer")
  (func (export "agent_alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "agent_init") (result i32) (i32.const 0))
  (func (export "agent_step") (param i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.load (local.get 0)))) (i32.const 0))
  (func (export "agent_receive") (param i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.load (local.get 0)))) (i32.const 0))
  (func (export "agent_shutdown") (result i32) (i32.const 0))
  %s)
"""
BATCH = """(func (export "agent_receive_batch") (param i32) (result i32)
    (global.set $n (i32.add (global.get $n) (i32.load (local.get 0)))) (i32.const 0))"""
SENDER = AGENT.replace(
    '(func (export "agent_step") (param i32) (result i32)',
    '(func (export "agent_step") (param i32) (result i32) '
    "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 8) "
    "(i32.const 16)))",
)


def _record(payload: bytes) -> bytes:
    head = struct.pack("<IBBHqqIHH", 32 + 3 + 1 + len(payload), 0, 0, 3, 0, 0, len(payload), 1, 0)
    return head + b"src" + b"a" + payload


def _inbox(n: int) -> bytes:
    body = b"".join(_record(b"%04d" % i) for i in range(n))
    return struct.pack("<II", 8 + len(body), n) + body


class _Bare:
    """The same module on plain wasmtime: one store per agent, raw unchecked calls."""

    def __init__(self, config: WasmPoolConfig, wasm: bytes, n: int) -> None:
        from wasmtime import _ffi as ffi

        self.ffi = ffi
        self.engine = make_engine(config)
        module = wasmtime.Module(self.engine, wasm)
        linker = wasmtime.Linker(self.engine)
        i32 = wasmtime.ValType.i32()
        linker.define_func("lockstep_v1", "send", wasmtime.FuncType([i32] * 4, [i32]), lambda *a: 0)
        self.stores = []
        self.funcs: dict[str, list[wasmtime.Func]] = {}
        for _ in range(n):
            store = wasmtime.Store(self.engine)
            store.set_fuel(1 << 40)
            inst = linker.instantiate(store, module)
            exports = inst.exports(store)
            self.stores.append(store)
            for name in ("agent_alloc", "agent_step", "agent_receive", "agent_receive_batch"):
                if name in [e.name for e in module.exports]:
                    self.funcs.setdefault(name, []).append(exports[name])  # type: ignore

    def calls(self, name: str) -> list[Callable[[int], int]]:
        """The fastest call Python can make: an argtypes-free handle on
        wasmtime_func_call_unchecked and an int32 view of the argument slot."""
        ffi = self.ffi
        raw = ffi.dll._FuncPtr(("wasmtime_func_call_unchecked", ffi.dll))
        raw.restype = ctypes.c_void_p
        size = ctypes.c_size_t(1)
        out: list[Callable[[int], int]] = []
        for store, func in zip(self.stores, self.funcs[name], strict=True):
            ctx = store._context()
            ref = ctypes.byref(func._func)
            buf = (ffi.wasmtime_val_raw * 1)()
            slot = ctypes.c_int32.from_buffer(buf)
            trap = ctypes.POINTER(ffi.wasm_trap_t)()
            tref = ctypes.byref(trap)

            def one(
                arg: int,
                ctx: Any = ctx,
                ref: Any = ref,
                buf: Any = buf,
                slot: Any = slot,
                tref: Any = tref,
            ) -> int:
                slot.value = arg
                raw(ctx, ref, buf, size, tref)
                return int(slot.value)

            out.append(one)
        return out


def _time_ticks(fn: Callable[[], object], ticks: int, per: int) -> list[float]:
    """Microseconds per unit of work, one sample per tick."""
    fn()  # warm up
    samples = []
    gc.disable()
    try:
        for _ in range(ticks):
            t0 = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - t0) / 1000 / per)
    finally:
        gc.enable()
    return samples


def _pool_with(config: WasmPoolConfig, wasm: bytes, n: int) -> WasmPool:
    pool = WasmPool(config)
    digest = pool.load_module(wasm).module_hash
    pool.create_agents(
        pb.CreateAgentsRequest(
            seed=1,
            agents=[
                pb.AgentSpec(sequence=i + 1, name=f"agent-{i}", module_hash=digest)
                for i in range(n)
            ],
        )
    )
    return pool


def run(quick: bool) -> list[dict[str, object]]:
    """Run every pool benchmark; return one metrics dict per measurement."""
    n = 50 if quick else 100
    ticks = 30 if quick else 200
    msgs = 20
    config = WasmPoolConfig()
    plain = wasmtime.wat2wasm(AGENT % "")
    batched = wasmtime.wat2wasm(AGENT % BATCH)
    sender = wasmtime.wat2wasm(SENDER % "")
    metrics: list[dict[str, object]] = []
    baseline = "bare wasmtime_func_call_unchecked of the same export, same engine settings"

    bare = _Bare(config, bytes(plain), n)
    step_calls = bare.calls("agent_step")
    recv_calls = bare.calls("agent_receive")
    alloc_calls = bare.calls("agent_alloc")

    def bare_abi_step() -> None:
        # What the ABI itself asks of a step: agent_alloc for the context, then agent_step.
        for alloc, call in zip(alloc_calls, step_calls, strict=True):
            alloc(40)
            call(4096)

    def bare_step() -> None:
        for call in step_calls:
            call(4096)

    def bare_receive() -> None:
        for call in recv_calls:
            for _ in range(msgs):
                call(4096)

    base_step = _time_ticks(bare_step, ticks, n)
    base_recv = _time_ticks(bare_receive, ticks, n * msgs)
    base_abi = _time_ticks(bare_abi_step, ticks, n)

    for fast in (True, False):
        label = "" if fast else ".public_api"
        cfg = WasmPoolConfig(fast_path=fast)
        with _pool_with(cfg, bytes(plain), n) as pool:
            empty = pb.StepBatchRequest(
                tick=1, steps=[pb.AgentStep(sequence=i + 1) for i in range(n)]
            )
            step_samples = _time_ticks(lambda: pool.step_batch(empty), ticks, n)  # noqa: B023
            metrics.append(
                metric(
                    f"pool.step_per_agent{label}",
                    "us",
                    step_samples,
                    baseline,
                    base_step,
                    "< 5000 us",
                    "< 3 us overhead",
                )
            )
            overhead = [s - statistics.median(base_step) for s in step_samples]
            metrics.append(
                metric(
                    f"pool.host_overhead_per_step{label}",
                    "us",
                    overhead,
                    baseline,
                    base_step,
                    "< 5000 us",
                    "< 3 us",
                )
            )
            beyond = [s - statistics.median(base_abi) for s in step_samples]
            metrics.append(
                metric(
                    f"pool.host_overhead_beyond_abi_calls{label}",
                    "us",
                    beyond,
                    "bare agent_alloc + agent_step calls",
                    base_abi,
                    "< 5000 us",
                    "< 3 us",
                )
            )
            inbox = _inbox(msgs)
            full = pb.StepBatchRequest(
                tick=2,
                steps=[
                    pb.AgentStep(sequence=i + 1, inbox=inbox, inbox_count=msgs) for i in range(n)
                ],
            )
            msg_samples = _time_ticks(lambda: pool.step_batch(full), ticks, n * msgs)  # noqa: B023
            # Per delivered message: the tick's time minus the empty tick's, per message.
            step_med = statistics.median(step_samples)
            per_msg = [s - step_med / msgs for s in msg_samples]
            metrics.append(
                metric(
                    f"pool.message_delivered{label}",
                    "us",
                    per_msg,
                    baseline,
                    base_recv,
                    "-",
                    "< 3 us overhead",
                )
            )
        with _pool_with(cfg, bytes(batched), n) as pool:
            full = pb.StepBatchRequest(
                tick=2,
                steps=[
                    pb.AgentStep(sequence=i + 1, inbox=_inbox(msgs), inbox_count=msgs)
                    for i in range(n)
                ],
            )
            batch_samples = _time_ticks(lambda: pool.step_batch(full), ticks, n * msgs)  # noqa: B023
            metrics.append(
                metric(
                    f"pool.message_delivered_batch{label}",
                    "us",
                    batch_samples,
                    baseline,
                    base_recv,
                    "-",
                    "< 3 us overhead",
                )
            )
        with _pool_with(cfg, bytes(sender), n) as pool:
            req = pb.StepBatchRequest(
                tick=1, steps=[pb.AgentStep(sequence=i + 1) for i in range(n)]
            )
            send_samples = _time_ticks(lambda: pool.step_batch(req), ticks, n)  # noqa: B023
            metrics.append(
                metric(
                    f"pool.step_with_one_send{label}",
                    "us",
                    send_samples,
                    baseline,
                    base_step,
                    "-",
                    "-",
                )
            )
    if not quick:
        metrics.append(_many_agents(config, bytes(plain)))
    metrics.extend(run_native(quick, bytes(plain), bytes(batched), base_step, base_recv))
    return metrics


# ---------------------------------------------------------------------- native core
def _native(config: WasmPoolConfig | None = None) -> WasmPool:
    from lockstep_wasm_pool._native_engine import NativePool

    return NativePool(config or WasmPoolConfig())


def _packed_pool(wasm: bytes, n: int, args: bytes = b"", name: str = "agent-") -> WasmPool:
    from lockstep import batch as wire

    pool = _native()
    digest = pool.load_module(wasm).module_hash
    pool.create_packed(
        wire.pack_create(
            0, 1, [wire.AgentSpec(i + 1, f"{name}{i}", digest, args) for i in range(n)]
        )
    )
    return pool


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_native(
    quick: bool, plain: bytes, batched: bytes, base_step: list[float], base_recv: list[float]
) -> list[dict[str, object]]:
    """The native stepping core (packed wire, one C call per batch)."""
    from lockstep import batch as wire

    try:
        from lockstep_wasm_pool._core import CoreUnavailable, load

        load()
    except CoreUnavailable as exc:
        return [
            {
                "name": "pool.native",
                "unit": "-",
                "median": None,
                "p10": None,
                "p90": None,
                "baseline": f"native core unavailable: {exc}",
                "baseline_median": None,
                "ratio": None,
                "spec_target": "-",
                "goal": "-",
            }
        ]
    out: list[dict[str, object]] = []
    n = 1000
    ticks = 30 if quick else 200
    msgs = 20
    baseline = "bare wasmtime_func_call_unchecked of agent_step from Python (one call)"
    seqs = list(range(1, n + 1))
    empty = wire.pack_step(1, seqs, [b""] * n, [0] * n)
    body = _inbox(msgs)[8:]
    full = wire.pack_step(2, seqs, [body] * n, [msgs] * n)
    with _packed_pool(plain, n) as pool:
        step = _time_ticks(lambda: pool.step_packed(empty), ticks, n)
        out.append(
            metric(
                "pool.native.step_per_agent",
                "us",
                step,
                baseline,
                base_step,
                "-",
                "<= 0.3 us host overhead",
                note="whole step (alloc + context + agent_step + result row), an "
                "upper bound of the host overhead",
            )
        )
        recv = _time_ticks(lambda: pool.step_packed(full), ticks, n * msgs)
        med = statistics.median(step)
        out.append(
            metric(
                "pool.native.message_delivered",
                "us",
                [s - med / msgs for s in recv],
                baseline,
                base_recv,
                "-",
                "<= 0.1 us",
                note="per-record agent_alloc + agent_receive",
            )
        )
    with _packed_pool(batched, n) as pool:
        pool.step_packed(empty)
        step_b = statistics.median(_time_ticks(lambda: pool.step_packed(empty), ticks, n))
        recv_b = _time_ticks(lambda: pool.step_packed(full), ticks, n * msgs)
        out.append(
            metric(
                "pool.native.message_delivered_batch",
                "us",
                [s - step_b / msgs for s in recv_b],
                baseline,
                base_recv,
                "-",
                "<= 0.1 us",
                note="agent_receive_batch, per message",
            )
        )
    out.append(_native_wealth(10_000, 5 if quick else 20))
    out.append(_native_create(10_000 if quick else 100_000, plain))
    return out


def _native_wealth(n: int, ticks: int) -> dict[str, object]:
    """Wealth agents (examples/agents/wealth) in one native pool; pool side per agent."""
    from lockstep import batch as wire
    from lockstep.agents import build_agent

    root = Path(__file__).resolve().parent.parent
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        wasm = build_agent(
            root / "examples/agents/wealth/wealth.c", Path(tmp) / "wealth.wasm"
        ).read_bytes()
    names = [f"w{i}".encode() for i in range(n)]
    index = {name: i for i, name in enumerate(names)}
    samples: list[float] = []
    with _packed_pool(wasm, n, f"n={n} wealth=10".encode(), name="w") as pool:
        inboxes: list[list[bytes]] = [[] for _ in range(n)]
        seqs = list(range(1, n + 1))
        idle = [False] * n
        for tick in range(1, ticks + 1):
            live = [i for i in range(n) if not idle[i] or inboxes[i]]
            buf = wire.pack_step(
                tick,
                [seqs[i] for i in live],
                [b"".join(inboxes[i]) for i in live],
                [len(inboxes[i]) for i in live],
            )
            t0 = time.perf_counter_ns()
            res = wire.parse_results(pool.step_packed(buf))
            samples.append((time.perf_counter_ns() - t0) / 1000 / max(1, len(live)))
            inboxes = [[] for _ in range(n)]
            codes = res.rows["code"]
            for k, i in enumerate(live):
                idle[i] = bool(codes[k] == 1)
                for dest, payload in wire.sends_of(res.sends(k)):
                    j = index.get(dest)
                    if j is not None:
                        head = struct.pack(
                            "<IBBHqqIHH",
                            32 + len(names[i]) + len(dest) + len(payload),
                            0,
                            0,
                            len(names[i]),
                            tick,
                            0,
                            len(payload),
                            len(dest),
                            0,
                        )
                        inboxes[j].append(head + names[i] + dest + payload)
    return metric(
        f"pool.native.wealth_step_per_agent_{n}",
        "us",
        samples,
        "-",
        [],
        "-",
        "<= 1 us per stepped agent, pool side",
        note="step_packed call per stepped agent: parse, deliver, step, results",
    )


def _native_create(count: int, wasm: bytes) -> dict[str, object]:
    """`count` small agents created in one native pool: time and RSS per agent."""
    from lockstep import batch as wire

    gc.collect()
    with _native(WasmPoolConfig(max_agents=max(count, 100_000))) as pool:
        digest = pool.load_module(wasm).module_hash
        buf = wire.pack_create(0, 1, [wire.AgentSpec(i + 1, f"a{i}", digest) for i in range(count)])
        maps0 = len(Path("/proc/self/maps").read_text().splitlines())
        rss0 = _rss_kib()
        t0 = time.perf_counter_ns()
        pool.create_packed(buf)
        total_s = (time.perf_counter_ns() - t0) / 1e9
        rss = (_rss_kib() - rss0) / count
        maps = (len(Path("/proc/self/maps").read_text().splitlines()) - maps0) / count
        assert pool.info().agents == count
    return {
        "name": f"pool.native.create_{count}_agents",
        "unit": "s",
        "median": round(total_s, 3),
        "p10": None,
        "p90": None,
        "baseline": "-",
        "baseline_median": None,
        "ratio": None,
        "spec_target": "-",
        "goal": "100,000 in <= 3 s, RSS <= 16 KiB/agent",
        "rss_kib_per_agent": round(rss, 2),
        "maps_per_agent": round(maps, 3),
        "us_per_agent": round(total_s * 1e6 / count, 2),
    }


def _many_agents(config: WasmPoolConfig, wasm: bytes, count: int = 10_000) -> dict[str, object]:
    """Create `count` agents in one pool (design goal: 10,000 per process)."""
    with WasmPool(config) as pool:
        digest = pool.load_module(wasm).module_hash
        samples = []
        for chunk in range(count // 1000):
            t0 = time.perf_counter_ns()
            pool.create_agents(
                pb.CreateAgentsRequest(
                    seed=1,
                    agents=[
                        pb.AgentSpec(
                            sequence=chunk * 1000 + i + 1,
                            name=f"a{chunk * 1000 + i}",
                            module_hash=digest,
                        )
                        for i in range(1000)
                    ],
                )
            )
            samples.append((time.perf_counter_ns() - t0) / 1000 / 1000)
        assert pool.info().agents == count
        req = pb.StepBatchRequest(
            tick=1, steps=[pb.AgentStep(sequence=i + 1) for i in range(count)]
        )
        t0 = time.perf_counter_ns()
        pool.step_batch(req)
        step_us = (time.perf_counter_ns() - t0) / 1000 / count
    return {
        "name": f"pool.create_per_agent_{count}_agents",
        "unit": "us",
        "median": round(statistics.median(samples), 2),
        "p10": round(percentile(samples, 0.1), 2),
        "p90": round(percentile(samples, 0.9), 2),
        "baseline": f"one step of all {count} agents",
        "baseline_median": round(step_us, 2),
        "ratio": None,
        "spec_target": "-",
        "goal": "10,000 agents per pool process",
    }


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
