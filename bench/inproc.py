"""The tick kernel and the native pool engine in one process: CPU time per tick, no transport.

    python -m bench.inproc --model wealth --agents 10000 --ticks 100 [--pools 2] [--repeat 3]
    python -m bench.inproc --model flood --agents 50 --ticks 2000 --profile

A developer's A/B tool for the kernel (not part of `lockstep bench`, whose figures go
through real processes): the run manager drives `InProcessPools` over `NativePool` engines
(several pools step one after the other), so the figure is the orchestrator's and the
pools' own work, CPU time (user + system), the best of `--repeat` runs, which is steadier
than wall time on a shared machine. It prints the final digest too, so a change to the tick
path can be checked not to change it. `--profile` prints cProfile's top functions.
"""

from __future__ import annotations

import argparse
import os
import time

from bench.orchestrator import FLOOD, WEALTH, agent_wasm

MODELS = {
    # model: (agent source, name prefix, spawn arguments for n agents)
    "wealth": (WEALTH, "w", "n={n} prefix=w wealth={w}"),
    "flood": (FLOOD, "f", "n={n} k={k}"),
}


def run_once(
    model: str, n: int, ticks: int, pools: int, k: int, profile: bool, wealth: int = 1
) -> tuple[float, str]:
    """Seconds of CPU time per tick after 3 warm-up ticks, and the final digest (hex)."""
    from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
    from lockstep_orchestrator._inference import InferenceBridge
    from lockstep_orchestrator._manager import RunManager
    from lockstep_orchestrator._ports import InProcessPools
    from lockstep_wasm_pool import WasmPoolConfig
    from lockstep_wasm_pool._native_engine import NativePool

    source, prefix, args = MODELS[model]
    wasm = agent_wasm(source)
    engines = [NativePool(WasmPoolConfig(max_agents=1_000_000)) for _ in range(pools)]
    module = engines[0].load_module(wasm).module_hash
    m = RunManager(
        InProcessPools(engines), lambda h: wasm, lambda: {module}, None, InferenceBridge(None)
    )
    try:
        m.start(opb.RunConfig(seed=1))
        spawn_args = args.format(n=n, k=k, w=wealth).encode()
        m.spawn(
            [
                (opb.AgentSpawn(name=f"{prefix}{i}", module=module, args=spawn_args), module)
                for i in range(n)
            ]
        )
        m.step(3)
        prof = None
        if profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        started = time.process_time()
        m.step(ticks)
        seconds = (time.process_time() - started) / ticks
        if prof is not None:
            import pstats

            prof.disable()
            pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(
                int(os.environ.get("TOP", "30"))
            )
        return seconds, m.kernel.digest.hex()
    finally:
        for engine in engines:
            engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="wealth")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--pools", type=int, default=1)
    parser.add_argument("--k", type=int, default=1, help="flood: messages per agent per tick")
    parser.add_argument(
        "--wealth",
        type=int,
        default=1,
        help="wealth: each agent's starting wealth (1, as in the rows against Mesa: many "
        "agents are soon broke and send nothing; the scale rows start at 10, so most send "
        "every tick)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    parser.add_argument("--profile", action="store_true")
    a = parser.parse_args()
    if a.agents < 2 or a.ticks < 1 or a.pools < 1 or a.repeat < 1 or a.wealth < 0:
        parser.error("need --agents >= 2, --ticks >= 1, --pools >= 1, --repeat >= 1, --wealth >= 0")
    best, digest = min(
        run_once(a.model, a.agents, a.ticks, a.pools, a.k, a.profile, a.wealth)
        for _ in range(a.repeat)
    )
    print(
        f"{a.model} {a.agents} agents, {a.pools} pool(s), {a.ticks} ticks: "
        f"{best * 1e3:.3f} ms CPU per tick, digest {digest[:16]}"
    )


if __name__ == "__main__":
    main()
