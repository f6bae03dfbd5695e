"""Orchestrator benchmarks: tick overhead, messages routed across processes, and scale.

    python -m bench.orchestrator [--quick]      # prints the metrics as JSON

Set-up: wasm_pool services as separate processes (`python -m lockstep_wasm_pool`, exactly
as `lockstep up` starts them) and an orchestrator server in this process, driven over
real gRPC (`Step`, `ListAgents`). Agents are `bench/agents/flood.c`: each sends k 8-byte
messages per tick to its k ring successors and never idles, and its own work is a few
hundred wasm instructions per message, so a tick's time is nearly all orchestration.

Baseline, measured in the same run: a raw gRPC round trip (bytes in, the same bytes back,
no protobuf parsing) to an echo server in another process, with the payload of the tick's
StepBatchRequest. The ratio says how many raw round trips one tick costs.

Transports: the orchestrator reaches local pools through the shared-memory tick channel
by default (lockstep.tick_channel); the round trip to a pool and the 50-agent tick are
measured on both transports in the same run (`.grpc` metrics: every batch over gRPC).

Scale (not in --quick): 10,000 wealth agents (examples/agents/wealth) in one pool
process, and up to 100,000 over four pools, with RSS per agent, ticks/s and messages/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/orchestrator.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import REPO_ROOT, ServiceProc, metric, note, rss_bytes, start_service

FLOOD = REPO_ROOT / "bench" / "agents" / "flood.c"
WEALTH = REPO_ROOT / "examples" / "agents" / "wealth" / "wealth.c"
WEALTH_HEAVY = REPO_ROOT / "examples" / "agents" / "wealth_heavy" / "wealth_heavy.c"
MAX_STEP_TICKS = 1000  # the orchestrator's MAX_TICKS_PER_CALL is at least this
SPAWN_PER_TICK = 5_000  # scale runs: see Cluster.start

_wasm_cache: dict[Path, bytes] = {}


def agent_wasm(source: Path) -> bytes:
    """Build an agent from C (cached per process) and give it a manifest."""
    if source not in _wasm_cache:
        import tempfile

        from lockstep.agents import build_agent
        from lockstep.runner import prepare_module

        with tempfile.TemporaryDirectory() as tmp:
            built = build_agent(source, Path(tmp) / (source.stem + ".wasm")).read_bytes()
        _wasm_cache[source] = prepare_module(built, source.stem, None)
    return _wasm_cache[source]


class Cluster:
    """`n_pools` pool processes plus an in-process orchestrator, no auth."""

    def __init__(
        self, n_pools: int, pool_args: tuple[str, ...] = (), transport: str = "auto"
    ) -> None:
        from lockstep.dial import AuthedChannel
        from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
        from lockstep_orchestrator import OrchestratorConfig, create_server

        self.pools: list[ServiceProc] = []
        try:
            for _ in range(n_pools):
                self.pools.append(start_service("lockstep_wasm_pool", *pool_args))
            config = OrchestratorConfig(
                pools=tuple(p.address for p in self.pools), dev_mode=True, pool_transport=transport
            )
            self.server = create_server("127.0.0.1:0", auth=None, config=config)
        except BaseException:
            for p in self.pools:
                p.stop()
            raise
        self.channel = AuthedChannel(self.server.address, None)
        self.stub = opb_grpc.OrchestratorServiceStub(self.channel)

    def start(
        self,
        source: Path,
        name: str,
        prefix: str,
        n: int,
        args: str,
        seed: int = 1,
        per_tick: int | None = None,
    ) -> None:
        """A fresh run with `n` agents <prefix>0.. of one module, all spawned at tick 1,
        or `per_tick` agents per tick when given (large runs: the orchestrator checks each
        spawn against every pending one, so one tick's spawns cost O(n^2))."""
        from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb

        self.stub.StartRun(opb.StartRunRequest(config=opb.RunConfig(seed=seed, label=name)))
        digest = self.stub.RegisterModule(
            opb.RegisterModuleRequest(wasm=agent_wasm(source), name=name)
        ).module.module_hash
        chunk = per_tick or n
        for lo in range(0, n, chunk):
            req = opb.SpawnAgentsRequest(
                agents=[
                    opb.AgentSpawn(
                        name=f"{prefix}{i}",
                        module=digest,
                        args=f"n={n} prefix={prefix} {args}".encode(),
                    )
                    for i in range(lo, min(n, lo + chunk))
                ]
            )
            self.stub.SpawnAgents(req, timeout=3600)
            self.step(1)  # spawns take effect (agents initialise and step) at the next tick

    def step(self, ticks: int) -> Any:
        from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb

        status = None
        while ticks > 0:
            chunk = min(ticks, MAX_STEP_TICKS)
            status = self.stub.Step(opb.StepRequest(ticks=chunk), timeout=3600)
            ticks -= chunk
        return status

    def run_until(self, now: int, tick: int, every: int) -> list[float]:
        """Run from tick `now` to `tick` as `lockstep run` does (one RunUntil stream, a
        progress message every `every` ticks); the ticks per second between messages."""
        from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb

        rates: list[float] = []
        last_t, last_tick = time.perf_counter(), now
        req = opb.RunUntilRequest(until_tick=tick, progress_every=every)
        for update in self.stub.RunUntil(req, timeout=3600):
            t = time.perf_counter()
            if update.status.tick > last_tick:
                rates.append((update.status.tick - last_tick) / (t - last_t))
            last_t, last_tick = t, update.status.tick
            if update.done:
                break
        return rates

    def timed_run(self, now: int, tick: int) -> tuple[list[float], list[float]]:
        """Run from tick `now` to `tick` as `lockstep run` does (one RunUntil stream, so
        each tick's batches may go out before the tick before commits), with a progress
        message every tick: (seconds, messages delivered per second) of each tick after
        the first (whose interval holds the stream's start)."""
        from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb

        secs: list[float] = []
        rates: list[float] = []
        last_t, last_m = time.perf_counter(), -1
        req = opb.RunUntilRequest(until_tick=tick, progress_every=1)
        for update in self.stub.RunUntil(req, timeout=3600):
            t, m = time.perf_counter(), update.status.counters.messages
            if update.done:
                break
            if last_m >= 0:
                secs.append(t - last_t)
                rates.append((m - last_m) / (t - last_t))
            last_t, last_m = t, m
        if len(secs) < tick - now - 1:
            raise RuntimeError(f"RunUntil to tick {tick} gave {len(secs)} intervals")
        return secs, rates

    def agents(self) -> list[Any]:
        from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb

        return list(self.stub.ListAgents(opb.ListAgentsRequest(), timeout=600).agents)

    def close(self) -> None:
        self.channel.close()
        self.server.stop(0)
        for p in self.pools:
            p.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- raw gRPC round trip baseline ------------------------------------------------------

_ECHO = r"""
import sys, grpc
from concurrent import futures
def echo(req, ctx): return req
handler = grpc.method_handlers_generic_handler("bench.Echo", {
    "Echo": grpc.unary_unary_rpc_method_handler(echo)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler],
    options=[("grpc.max_receive_message_length", 1 << 30),
             ("grpc.max_send_message_length", 1 << 30)])
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""


@contextmanager
def echo_server() -> Iterator[Any]:
    """A bytes-in/bytes-out gRPC server in its own process; yields a callable(bytes)."""
    import grpc

    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[
                ("grpc.max_receive_message_length", 1 << 30),
                ("grpc.max_send_message_length", 1 << 30),
            ],
        )
        grpc.channel_ready_future(channel).result(timeout=30)
        call = channel.unary_unary(
            "/bench.Echo/Echo", request_serializer=None, response_deserializer=None
        )
        try:
            yield call
        finally:
            channel.close()
    finally:
        proc.terminate()
        proc.wait(10)


def tick_payload(n: int, k: int) -> bytes:
    """The serialized StepBatchRequest of a flood tick: n agents, k 8-byte messages each."""
    from lockstep.abi import KIND_AGENT, batch_buffer, message_record
    from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as ppb

    req = ppb.StepBatchRequest(tick=2)
    for i in range(n):
        recs = [
            message_record(KIND_AGENT, b"f%d" % ((i - j) % n), b"f%d" % i, 1, 0, bytes(8))
            for j in range(1, k + 1)
        ]
        req.steps.add(sequence=i + 1, inbox=batch_buffer(recs), inbox_count=k)
    return req.SerializeToString()


def raw_round_trips(call: Any, payload: bytes, samples: int) -> list[float]:
    """Seconds per raw gRPC round trip of `payload` (echoed back)."""
    for _ in range(3):
        call(payload)
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        call(payload)
        out.append(time.perf_counter() - t0)
    return out


# ---- measurements ----------------------------------------------------------------------


def time_ticks(cluster: Cluster, samples: int, per_sample: int) -> tuple[list[float], list[float]]:
    """(seconds per tick, messages delivered per second), one value per sample of
    `per_sample` ticks run by one Step call."""
    status = cluster.step(per_sample)  # warm-up
    secs, rates = [], []
    for _ in range(samples):
        delivered = status.counters.messages
        t0 = time.perf_counter()
        status = cluster.step(per_sample)
        dt = time.perf_counter() - t0
        secs.append(dt / per_sample)
        rates.append((status.counters.messages - delivered) / dt)
    return secs, rates


def pool_round_trips(transport: str, samples: int) -> list[float]:
    """Seconds per orchestrator-pool round trip of an empty step batch (the pools port
    the kernel uses, to a pool process), on `transport` ("auto" = the tick channel)."""
    from lockstep import batch as wire
    from lockstep_orchestrator._ports import GrpcPools

    proc = start_service("lockstep_wasm_pool")
    try:
        pools = GrpcPools([proc.address], None, transport)
        try:
            # Tick after tick, as the kernel sends them (the same batch twice would be a
            # duplicate delivery, which the pool answers from its cache with a warning).
            def empty(tick: int) -> bytes:
                return wire.pack_step(tick, [], [], [])

            for tick in range(1, 21):
                pools.step({0: empty(tick)})
            assert pools.transports() == ["shm" if transport == "auto" else "grpc"]
            out = []
            for tick in range(21, 21 + samples):
                batch = empty(tick)
                t0 = time.perf_counter()
                pools.step({0: batch})
                out.append(time.perf_counter() - t0)
            return out
        finally:
            pools.close()
    finally:
        proc.stop()


def _round_trip(quick: bool, echo: Any) -> list[dict[str, object]]:
    samples = 300 if quick else 2000
    note("orchestrator-pool round trip: an empty step batch, shared memory and gRPC")
    shm = [s * 1e6 for s in pool_round_trips("auto", samples)]
    grpc_rt = [s * 1e6 for s in pool_round_trips("grpc", samples)]
    raw = [r * 1e6 for r in raw_round_trips(echo, b"", samples)]
    return [
        metric(
            "orchestrator.pool_round_trip",
            "us",
            shm,
            "raw gRPC round trip of empty bytes",
            raw,
            "-",
            "<= 50 us",
            transport="shared-memory tick channel",
        ),
        metric(
            "orchestrator.pool_round_trip.grpc",
            "us",
            grpc_rt,
            "raw gRPC round trip of empty bytes",
            raw,
            "-",
            "-",
            transport="gRPC",
        ),
    ]


def _tick_overhead(quick: bool, echo: Any) -> list[dict[str, object]]:
    n, k = 50, 1
    samples = 15 if quick else 40
    per = 10 if quick else 25
    raw = raw_round_trips(echo, tick_payload(n, k), samples * 5)
    base = [r * 1000 for r in raw]
    out = []
    for transport, suffix in (("auto", ""), ("grpc", ".grpc")):
        note(
            f"tick overhead: {n} flood agents, k={k}, 1 pool process, "
            f"{'shared memory' if transport == 'auto' else 'gRPC'}"
        )
        with Cluster(1, transport=transport) as cluster:
            cluster.start(FLOOD, "flood", "f", n, f"k={k}")
            secs, _ = time_ticks(cluster, samples, per)
        ms = [s * 1000 for s in secs]
        out += [
            metric(
                f"orchestrator.tick_50_agents{suffix}",
                "ms",
                ms,
                "raw gRPC round trip, same request bytes echoed",
                base,
                "< 10 ms",
                "< 1 ms",
                note="whole tick (agents' own work ~0: flood k=1)",
            ),
            metric(
                f"orchestrator.tick_overhead_50_agents{suffix}",
                "ms",
                [m - statistics.median(base) for m in ms],
                "raw gRPC round trip, same request bytes echoed",
                base,
                "< 10 ms",
                "<= 0.3 ms (kernel), <= 0.1 ms (shm)" if not suffix else "< 1 ms",
                note="tick minus one raw round trip of the same payload",
            ),
        ]
    return out


def _messages(quick: bool, echo: Any) -> list[dict[str, object]]:
    cases = [(50, 20, 1)] if quick else [(50, 20, 1), (200, 100, 1), (1000, 20, 2)]
    out = []
    for n, k, pools in cases:
        note(f"messages/s: {n} flood agents x {k} msgs/tick, {pools} pool process(es)")
        samples = 8 if quick else 15
        per = 5 if quick else 10
        with Cluster(pools) as cluster:
            cluster.start(FLOOD, "flood", "f", n, f"k={k}")
            secs, rates = time_ticks(cluster, samples, per)
        # Baseline: the same tick's bytes through one raw round trip per pool (sequential,
        # the optimistic bound for a Python client on this machine).
        payload = tick_payload(n // pools, k)
        raw = raw_round_trips(echo, payload, samples * 3)
        base_rates = [n * k / (r * pools) for r in raw]
        name = "orchestrator.messages_per_s" + ("" if (n, k) == (50, 20) else f".{n}x{k}")
        out.append(
            metric(
                name,
                "msg/s",
                rates,
                "raw gRPC round trips carrying the tick's inbox bytes",
                base_rates,
                ">= 10k/s",
                ">= 2M/s",
                agents=n,
                msgs_per_tick=n * k,
                pools=pools,
                tick_ms=round(statistics.median(secs) * 1000, 3),
            )
        )
    return out


SCALE_WARMUP_TICKS = 3


def scale_run(n: int, pools: int, ticks: int) -> dict[str, object]:
    """n wealth agents (wealth=10 each, so most step every tick) over `pools` pools; the
    rate of `ticks` ticks after SCALE_WARMUP_TICKS ticks (the processes' heaps are still
    growing in the first ticks after a big spawn: a fresh page costs ~14 us of system time
    on the 2-vCPU guest of docs/performance.md, ~10,000 of them in the first tick)."""
    with Cluster(pools) as cluster:
        rss0 = [rss_bytes(p.pid) for p in cluster.pools]
        note(f"scale: spawning {n:,} wealth agents over {pools} pool(s)")
        t0 = time.perf_counter()
        cluster.start(WEALTH, "wealth", "w", n, "wealth=10", per_tick=SPAWN_PER_TICK)
        spawn_s = time.perf_counter() - t0
        rss1 = [rss_bytes(p.pid) for p in cluster.pools]
        note(f"scale: {n:,} agents up in {spawn_s:.1f} s; running {ticks} ticks")
        status = cluster.step(SCALE_WARMUP_TICKS)
        per_tick, rates = cluster.timed_run(status.tick, status.tick + ticks + 1)
        rss2 = [rss_bytes(p.pid) for p in cluster.pools]
    return {
        "agents": n,
        "pools": pools,
        "spawn_s": spawn_s,
        "rss_per_agent": (sum(rss2) - sum(rss0)) / n,
        "rss_per_agent_after_spawn": (sum(rss1) - sum(rss0)) / n,
        "ticks_per_s": [1 / s for s in per_tick],
        "msgs_per_s": rates,
        "pool_rss_bytes": rss2,
    }


def _mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def _scale() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    small = scale_run(10_000, 1, 10)
    per_agent = float(small["rss_per_agent"])  # type: ignore[arg-type]
    out.append(
        metric(
            "scale.rss_per_agent.10k",
            "KiB",
            [per_agent / 1024],
            "-",
            [],
            "-",
            "10,000 agents per pool process",
            agents=10_000,
            spawn_s=round(float(small["spawn_s"]), 2),  # type: ignore[arg-type]
        )
    )  # type: ignore[arg-type]
    for key, unit, samples in (
        ("ticks_per_s", "tick/s", small["ticks_per_s"]),
        ("messages_per_s", "msg/s", small["msgs_per_s"]),
    ):
        out.append(
            metric(
                f"scale.{key}.10k_1_pool",
                unit,
                samples,  # type: ignore[arg-type]
                "-",
                [],
                "-",
                "-",
                agents=10_000,
                pools=1,
            )
        )
    # 100k: two pools (one per core here); shrink until the measured RSS per agent fits in
    # 60% of free memory.
    target = 100_000
    budget = 0.6 * _mem_available()
    while target > 10_000 and target * per_agent > budget:
        target -= 10_000
    big = scale_run(target, 2, 8)
    label = f"{target // 1000}k_2_pools"
    reason = (
        ""
        if target == 100_000
        else (
            f"100k would need ~{100_000 * per_agent / 2**30:.1f} GiB RSS; "
            f"{budget / 2**30:.1f} GiB usable"
        )
    )
    for key, unit, samples, goal in (
        ("ticks_per_s", "tick/s", big["ticks_per_s"], ">= 10 tick/s"),
        ("messages_per_s", "msg/s", big["msgs_per_s"], "-"),
    ):
        out.append(
            metric(
                f"scale.{key}.{label}",
                unit,
                samples,  # type: ignore[arg-type]
                "-",
                [],
                "-",
                goal,
                agents=target,
                pools=2,
                spawn_s=round(float(big["spawn_s"]), 2),  # type: ignore[arg-type]
                rss_per_agent_kib=round(float(big["rss_per_agent"]) / 1024, 1),  # type: ignore[arg-type]
                **({"limited": reason} if reason else {}),
            )
        )
    return out


def run(quick: bool) -> list[dict[str, object]]:
    """Every orchestrator metric; scale runs only without `quick`."""
    with echo_server() as echo:
        metrics = _round_trip(quick, echo)
        metrics += _tick_overhead(quick, echo)
        metrics += _messages(quick, echo)
        if not quick:
            metrics += _scale()
    return metrics


def profile(n: int, k: int, ticks: int, top: int = 25) -> str:
    """cProfile of `ticks` orchestrator ticks (n flood agents, k msgs each, one pool
    process), driving the servicer directly in this thread so the profile sees the whole
    tick; returns the top functions by own time."""
    import cProfile
    import io
    import pstats

    from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
    from lockstep_orchestrator import OrchestratorConfig
    from lockstep_orchestrator._service import OrchestratorServicer

    with start_service("lockstep_wasm_pool") as pool:
        servicer = OrchestratorServicer(
            OrchestratorConfig(pools=(pool.address,), dev_mode=True), None
        )
        try:
            servicer.StartRun(opb.StartRunRequest(config=opb.RunConfig(seed=1)), None)
            digest = servicer.RegisterModule(
                opb.RegisterModuleRequest(wasm=agent_wasm(FLOOD), name="flood"), None
            ).module.module_hash
            servicer.SpawnAgents(
                opb.SpawnAgentsRequest(
                    agents=[
                        opb.AgentSpawn(name=f"f{i}", module=digest, args=f"n={n} k={k}".encode())
                        for i in range(n)
                    ]
                ),
                None,
            )
            servicer.Step(opb.StepRequest(ticks=5), None)
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            prof.enable()
            servicer.Step(opb.StepRequest(ticks=ticks), None)
            prof.disable()
            elapsed = time.perf_counter() - t0
        finally:
            servicer.close()
    buf = io.StringIO()
    buf.write(
        f"{ticks} ticks, {n} agents x {k} msgs: {elapsed / ticks * 1000:.2f} ms/tick "
        f"(under the profiler)\n"
    )
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--profile",
        metavar="N,K[,TICKS]",
        help="profile TICKS (default 100) ticks of N agents x K msgs",
    )
    args = parser.parse_args()
    if args.profile:
        n, k, *rest = (int(x) for x in args.profile.split(","))
        print(profile(n, k, rest[0] if rest else 100))
        return
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
