"""Peer comparisons: Mesa (Boltzmann wealth model) and the AutoGen gRPC runtime.

    python -m bench.peers [--quick]             # prints the metrics as JSON
    python -m bench.peers --setup               # create the peer venvs (needs PyPI)

The peers live in their own virtual environments under ``$LOCKSTEP_BENCH_PEERS``
(default ``~/.cache/lockstep/bench-peers``): ``mesa/`` (PyPI ``mesa``) and ``autogen/``
(``autogen-core``, ``autogen-ext[grpc]``, whose grpcio/protobuf pins differ from ours).
`--setup` creates them; nothing is downloaded while benchmarks run. A missing venv turns
its metrics into one "skipped" row that says how to create it.

Mesa: the grid-less Boltzmann wealth model. N agents start with 1 unit; every step each
agent with wealth gives 1 unit to a uniformly random *other* agent (Mesa: immediately,
agents activated in random order; Lockstep: wealth agents, the unit travels as a message
and arrives next tick). Ticks/s side by side at 100, 1,000 and 10,000 agents and the Gini
coefficient after 100 ticks; plus a compute-heavy variant (2,000 xorshift64* rounds per
step before deciding: examples/agents/wealth_heavy vs the same arithmetic in Python).
Mesa's ticks/s are `model.step()` calls timed one by one in its own process; Lockstep's are
the run as `lockstep run` drives it: one RunUntil stream to the orchestrator, timed between
its progress messages (one every RUN_PROGRESS ticks). The `.step_rpc` row at 100 agents
times one Step RPC per tick instead, as an interactive client steps, a client round trip
in every tick.

AutoGen: a host, a receiver worker and a sender worker, three processes on the gRPC
runtime (`GrpcWorkerAgentRuntimeHost` / `GrpcWorkerAgentRuntime`). The sender publishes
N small messages to the receiver's topic; the time until the receiver has handled all N
gives messages/s between agents in separate processes.

This file also runs as the peers' child script (``--mesa`` / ``--autogen``) under the
peer venv's interpreter, so its module level imports only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PEERS_DIR", "gini", "peer_python", "run", "setup"]

HERE = Path(__file__).resolve()
PEERS_DIR = Path(
    os.environ.get("LOCKSTEP_BENCH_PEERS", Path.home() / ".cache" / "lockstep" / "bench-peers")
)
PEER_PACKAGES = {"mesa": ["mesa"], "autogen": ["autogen-core", "autogen-ext[grpc]"]}
HEAVY_WORK = 2000
# Lockstep's runs are timed between the progress messages of one RunUntil stream, one every
# RUN_PROGRESS ticks, as `lockstep run` asks for them (runner.py: every max(10, ticks/200));
# runs shorter than 41 ticks report more often.
RUN_PROGRESS = 10
MASK = (1 << 64) - 1


def gini(wealth: list[int]) -> float:
    """Mesa's compute_gini (the Boltzmann tutorial's)."""
    x = sorted(wealth)
    n = len(x)
    total = sum(x)
    if not n or not total:
        return 0.0
    b = sum(xi * (n - i) for i, xi in enumerate(x)) / (n * total)
    return 1 + (1 / n) - 2 * b


# ---- child side: Mesa ------------------------------------------------------------------


def _mesa_child(n: int, ticks: int, work: int, seed: int, deferred: int) -> dict[str, Any]:
    import mesa  # type: ignore[import-not-found]

    class MoneyAgent(mesa.Agent):  # type: ignore[misc]
        def __init__(self, model: Any, index: int) -> None:
            super().__init__(model)
            self.wealth = 1
            self.index = index
            self.acc = 0

        def busywork(self) -> None:
            # The same xorshift64* rounds as wealth.c's busywork (64-bit wrap by mask).
            x = ((self.model.steps << 32) ^ (self.wealth + 0x9E3779B97F4A7C15) ^ self.acc) & MASK
            for _ in range(work):
                x ^= x >> 12
                x ^= (x << 25) & MASK
                x ^= x >> 27
                x = (x * 0x2545F4914F6CDD1D) & MASK
            self.acc = x

        def step(self) -> None:
            if work:
                self.busywork()
            if self.wealth == 0:
                return
            other = self.random.randrange(n - 1)
            if other >= self.index:
                other += 1
            if deferred:
                self.model.incoming[other] += 1
            else:
                self.model.roster[other].wealth += 1
            self.wealth -= 1

    class MoneyModel(mesa.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            try:
                super().__init__(rng=seed)
            except TypeError:  # Mesa < 3.2
                super().__init__(seed=seed)
            self.roster = [MoneyAgent(self, i) for i in range(n)]
            self.incoming = [0] * n

        def step(self) -> None:
            self.agents.shuffle_do("step")
            if deferred:  # units given this step arrive at the next one, as in Lockstep
                for agent, units in zip(self.roster, self.incoming, strict=True):
                    agent.wealth += units
                self.incoming = [0] * n

    model = MoneyModel()
    secs = []
    for _ in range(ticks):
        t0 = time.perf_counter()
        model.step()
        secs.append(time.perf_counter() - t0)
    return {
        "version": mesa.__version__,
        "tick_s": secs,
        "gini": gini([a.wealth for a in model.roster]),
    }


# ---- child side: AutoGen ---------------------------------------------------------------


@dataclass
class Msg:
    """AutoGen benchmark message."""

    n: int


@dataclass
class Query:
    """Ask the receiver how many messages it has handled."""


@dataclass
class Count:
    """The receiver's answer."""

    n: int


def _autogen_child(role: str, address: str, n: int) -> None:
    import asyncio

    from autogen_core import (  # type: ignore[import-not-found]
        AgentId,
        MessageContext,
        RoutedAgent,
        TopicId,
        TypeSubscription,
        message_handler,
        try_get_known_serializers_for_type,
    )
    from autogen_ext.runtimes.grpc import (  # type: ignore[import-not-found]
        GrpcWorkerAgentRuntime,
        GrpcWorkerAgentRuntimeHost,
    )

    # autogen resolves handler annotations (strings here, PEP 563) in module globals.
    globals()["MessageContext"] = MessageContext

    class Receiver(RoutedAgent):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__("counts messages")
            self.count = 0

        @message_handler  # type: ignore[untyped-decorator]
        async def on_msg(self, message: Msg, ctx: MessageContext) -> None:
            self.count += 1

        @message_handler  # type: ignore[untyped-decorator]
        async def on_query(self, message: Query, ctx: MessageContext) -> Count:
            return Count(self.count)

    def worker() -> Any:
        rt = GrpcWorkerAgentRuntime(host_address=address)
        for t in (Msg, Query, Count):
            rt.add_message_serializer(try_get_known_serializers_for_type(t))
        return rt

    async def main() -> None:
        if role == "host":
            host = GrpcWorkerAgentRuntimeHost(address=address)
            host.start()
            print("ready", flush=True)
            await host.stop_when_signal()
        elif role == "receiver":
            rt = worker()
            await rt.start()
            await Receiver.register(rt, "receiver", Receiver)
            await rt.add_subscription(TypeSubscription("bench", "receiver"))
            print("ready", flush=True)
            await rt.stop_when_signal()
        else:
            rt = worker()
            await rt.start()
            rid = AgentId("receiver", "default")
            base = (await rt.send_message(Query(), rid)).n
            t0 = time.perf_counter()
            for i in range(n):
                await rt.publish_message(Msg(i), TopicId("bench", "default"))
            while (await rt.send_message(Query(), rid)).n - base < n:
                await asyncio.sleep(0.0005)
            dt = time.perf_counter() - t0
            rtts = []
            for _ in range(100):
                t1 = time.perf_counter()
                await rt.send_message(Query(), rid)
                rtts.append(time.perf_counter() - t1)
            print(json.dumps({"msgs_per_s": n / dt, "rpc_s": rtts}), flush=True)
            await rt.stop()

    asyncio.run(main())


# ---- parent side -----------------------------------------------------------------------


def peer_python(name: str) -> Path | None:
    """The peer venv's interpreter, or None if the venv has not been set up."""
    py = PEERS_DIR / name / "bin" / "python"
    return py if py.exists() else None


def setup(names: list[str] | None = None) -> None:
    """Create the peer venvs (downloads from PyPI; run once, never during a benchmark)."""
    for name in names or sorted(PEER_PACKAGES):
        venv = PEERS_DIR / name
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]],
            check=True,
        )


def _skipped(name: str, why: str) -> dict[str, object]:
    return {
        "name": name,
        "unit": "-",
        "median": None,
        "p10": None,
        "p90": None,
        "baseline": "-",
        "baseline_median": None,
        "ratio": None,
        "spec_target": "-",
        "goal": "-",
        "skipped": why,
    }


def _error(name: str, exc: Exception) -> dict[str, object]:
    row = _skipped(name, "")
    del row["skipped"]
    row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _mesa(
    py: Path, n: int, ticks: int, work: int, seed: int, deferred: bool = False
) -> dict[str, Any]:
    out = subprocess.run(
        [
            str(py),
            str(HERE),
            "--mesa",
            str(n),
            str(ticks),
            str(work),
            str(seed),
            str(int(deferred)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"mesa child failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    return result


def _lockstep_wealth(
    n: int,
    ticks: int,
    heavy: bool,
    seed: int,
    pools: int = 1,
    transport: str = "auto",
    step_rpc: bool = False,
) -> dict[str, Any]:
    """The run as `lockstep run` drives it (one RunUntil stream, a progress message every
    RUN_PROGRESS ticks: the ticks per second between messages), or with `step_rpc` one
    Step RPC per tick (an interactive client's way, a client round trip in every tick)."""
    from bench.orchestrator import WEALTH, WEALTH_HEAVY, Cluster

    with Cluster(pools, transport=transport) as cluster:
        source = WEALTH_HEAVY if heavy else WEALTH
        cluster.start(source, source.stem, "w", n, "wealth=1", seed=seed)  # runs tick 1
        if step_rpc:
            rates = []
            for _ in range(ticks - 1):
                t0 = time.perf_counter()
                cluster.step(1)
                rates.append(1 / (time.perf_counter() - t0))
        else:
            # Short runs (the heavy variant's 5 and 20 ticks) report more often, so that
            # they still give several samples.
            every = min(RUN_PROGRESS, max(1, (ticks - 1) // 4))
            rates = cluster.run_until(1, ticks, every)
        # Wealth held = start + received - sent, plus units in flight to it (its inbox).
        wealth = [1 + a.messages_received + a.inbox - a.messages_sent for a in cluster.agents()]
    if sum(wealth) != n:
        raise RuntimeError(f"wealth not conserved: {sum(wealth)} != {n}")
    return {"rates": rates, "gini": gini(wealth)}


def _wealth_metrics(quick: bool) -> list[dict[str, object]]:
    from bench import metric, note

    py = peer_python("mesa")
    if py is None:
        return [_skipped("peers.mesa", "no Mesa venv: run `lockstep bench --setup-peers`")]
    out: list[dict[str, object]] = []
    plain = [(100, 100)] if quick else [(100, 100), (1_000, 100), (10_000, 100)]
    heavy = [] if quick else [(100, 20), (1_000, 5)]
    for n, ticks in plain + [(-n, t) for n, t in heavy]:
        work = HEAVY_WORK if n < 0 else 0
        n = abs(n)
        kind = "wealth_heavy" if work else "wealth"
        note(f"peers: {kind} {n:,} agents x {ticks} ticks, Mesa then Lockstep")
        try:
            mesa = _mesa(py, n, ticks, work, seed=42)
            ours = _lockstep_wealth(n, ticks, bool(work), seed=42)
        except Exception as exc:  # one case failing must not hide the others
            out.append(_error(f"peers.{kind}.{n}", exc))
            continue
        base = f"Mesa {mesa['version']} (Python), same model"
        ours_rate = ours["rates"]
        mesa_rate = [1 / s for s in mesa["tick_s"]]
        out.append(
            metric(
                f"peers.{kind}.ticks_per_s.{n}",
                "tick/s",
                ours_rate,
                base,
                mesa_rate,
                "-",
                ">= 0.3x Mesa" if n == 100 and not work else "faster than Mesa",
                agents=n,
                ticks=ticks,
                transport="shared memory",
            )
        )
        if n == 100 and not work:  # the same on gRPC, and one Step RPC per tick
            variants: list[tuple[str, dict[str, Any], dict[str, str]]] = [
                ("grpc", {"transport": "grpc"}, {"transport": "gRPC"}),
                (
                    "step_rpc",
                    {"step_rpc": True},
                    {
                        "transport": "shared memory",
                        "note": "one Step RPC per tick: a client round trip in every tick",
                    },
                ),
            ]
            for suffix, how, details in variants:
                run = _lockstep_wealth(n, ticks, False, seed=42, **how)
                out.append(
                    metric(
                        f"peers.{kind}.ticks_per_s.{n}.{suffix}",
                        "tick/s",
                        run["rates"],
                        base,
                        mesa_rate,
                        "-",
                        "-",
                        agents=n,
                        ticks=ticks,
                        **details,
                    )
                )
        if n >= 10_000 and not work:  # one pool per core of this machine
            two = _lockstep_wealth(n, ticks, False, seed=42, pools=2)
            out.append(
                metric(
                    f"peers.{kind}.ticks_per_s.{n}_2_pools",
                    "tick/s",
                    two["rates"],
                    base,
                    mesa_rate,
                    "-",
                    "faster than Mesa",
                    agents=n,
                    ticks=ticks,
                    pools=2,
                )
            )
        if ticks >= 100:
            out.append(
                metric(
                    f"peers.{kind}.gini_after_{ticks}.{n}",
                    "gini",
                    [ours["gini"]],
                    base,
                    [mesa["gini"]],
                    "-",
                    "~ Mesa (0.63 at 1k+)",
                    agents=n,
                )
            )
            # The same model with Mesa's transfers applied at the end of each step (money
            # arrives next step, as Lockstep's messages do): separates the update rule
            # from the implementation.
            later = _mesa(py, n, ticks, work, seed=42, deferred=True)
            out.append(
                metric(
                    f"peers.{kind}.gini_vs_deferred_mesa.{n}",
                    "gini",
                    [ours["gini"]],
                    base + ", transfers arrive next step",
                    [later["gini"]],
                    "-",
                    "ratio ~ 1",
                    agents=n,
                )
            )
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _autogen_metrics(quick: bool) -> list[dict[str, object]]:
    from bench import metric, note
    from bench.orchestrator import echo_server, raw_round_trips

    py = peer_python("autogen")
    if py is None:
        return [_skipped("peers.autogen", "no AutoGen venv: run `lockstep bench --setup-peers`")]
    n = 1000 if quick else 5000
    address = f"127.0.0.1:{_free_port()}"
    note(f"peers: AutoGen gRPC runtime, {n:,} messages host+2 workers")
    procs: list[subprocess.Popen[str]] = []
    try:
        for role in ("host", "receiver"):
            proc = subprocess.Popen(
                [str(py), str(HERE), "--autogen", role, address, "0"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"AutoGen {role} did not start")
        runs = []
        for _ in range(1 if quick else 3):
            out = subprocess.run(
                [str(py), str(HERE), "--autogen", "sender", address, str(n)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"AutoGen sender failed: {out.stderr[-2000:]}")
            runs.append(json.loads(out.stdout.splitlines()[-1]))
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)
    with echo_server() as echo:
        raw = raw_round_trips(echo, b"x" * 64, 200)
    rates = [r["msgs_per_s"] for r in runs]
    rtts = [x * 1000 for r in runs for x in r["rpc_s"]]
    return [
        metric(
            "peers.autogen.messages_per_s",
            "msg/s",
            rates,
            "raw gRPC round trips/s (64 B, sequential)",
            [1 / r for r in raw],
            "-",
            "-",
            messages=n,
            processes=3,
        ),
        metric(
            "peers.autogen.rpc_round_trip",
            "ms",
            rtts,
            "raw gRPC round trip (64 B)",
            [r * 1000 for r in raw],
            "-",
            "-",
        ),
    ]


def run(quick: bool) -> list[dict[str, object]]:
    """Mesa and AutoGen comparisons (each skipped with a reason if its venv is missing)."""
    try:
        autogen = _autogen_metrics(quick)
    except Exception as exc:  # keep the Mesa rows when AutoGen fails
        autogen = [_error("peers.autogen", exc)]
    return _wealth_metrics(quick) + autogen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--setup", action="store_true", help="create the peer venvs")
    parser.add_argument(
        "--mesa", nargs=5, type=int, metavar=("N", "TICKS", "WORK", "SEED", "DEFERRED")
    )
    parser.add_argument("--autogen", nargs=3, metavar=("ROLE", "ADDRESS", "N"))
    args = parser.parse_args()
    if args.mesa:
        print(json.dumps(_mesa_child(*args.mesa)))
    elif args.autogen:
        _autogen_child(args.autogen[0], args.autogen[1], int(args.autogen[2]))
    elif args.setup:
        setup()
    else:
        if str(HERE.parent.parent) not in sys.path:
            sys.path.insert(0, str(HERE.parent.parent))
        print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
