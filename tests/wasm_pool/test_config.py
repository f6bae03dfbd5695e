"""Configuration parsing, many agents per process, and concurrent use of pools."""

from __future__ import annotations

import argparse
import threading

import pytest

from lockstep.config import add_flags, from_sources
from lockstep.errors import ConfigError
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig
from tests.wasm_pool.conftest import GOOD, agent_wat, create, spec, step

pytestmark = pytest.mark.unit


def test_config_from_flags_and_environment() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, WasmPoolConfig)
    args = parser.parse_args(["--fuel-per-step", "5_000", "--fast-path", "0"])
    env = {
        "LOCKSTEP_POOL_FUEL_PER_STEP": "7",
        "LOCKSTEP_POOL_MAX_MEMORY_PAGES": "0x20",
        "LOCKSTEP_POOL_MODULE_CACHE_DIR": "/tmp/x",
    }
    cfg = from_sources(WasmPoolConfig, args, env)
    assert cfg.fuel_per_step == 5000  # the flag wins over the environment
    assert cfg.max_memory_pages == 32 and cfg.fast_path is False
    assert str(cfg.module_cache_dir) == "/tmp/x"
    assert from_sources(WasmPoolConfig, None, {}) == WasmPoolConfig()
    assert from_sources(WasmPoolConfig, None, {"LOCKSTEP_POOL_ENGINE": "python"}).engine == "python"
    flagged = parser.parse_args(["--engine", "native"])
    assert (
        from_sources(WasmPoolConfig, flagged, {"LOCKSTEP_POOL_ENGINE": "python"}).engine == "native"
    )
    with WasmPool(cfg) as pool:
        assert pool.info().default_limits.fuel_per_step == 5000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOCKSTEP_POOL_FUEL_PER_STEP": "many"}, "bad value 'many' for fuel_per_step"),
        ({"LOCKSTEP_POOL_FUEL_PER_STEP": "0"}, "fuel_per_step must be > 0"),
        ({"LOCKSTEP_POOL_MAX_LOG_BYTES": "-1"}, "max_log_bytes must be >= 0"),
        ({"LOCKSTEP_POOL_MAX_MEMORY_PAGES": "600"}, "max_memory_pages must be <="),
        ({"LOCKSTEP_POOL_FAST_PATH": "yes"}, "bad value 'yes' for fast_path"),
        ({"LOCKSTEP_POOL_ENGINE": "fast"}, "engine must be one of auto, native, python"),
        ({"LOCKSTEP_POOL_TICK_CHANNEL_POLL_US": "-5"}, "tick_channel_poll_us must be >= 0"),
    ],
)
def test_bad_config_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_sources(WasmPoolConfig, None, env)


def test_thousands_of_agents_in_one_pool() -> None:
    with WasmPool() as pool:
        digest = pool.load_module(GOOD).module_hash
        n = 2000
        pool.create_agents(
            pb.CreateAgentsRequest(agents=[spec(i + 1, f"a{i}", digest) for i in range(n)])
        )
        results = pool.step_batch(
            pb.StepBatchRequest(tick=1, steps=[pb.AgentStep(sequence=i + 1) for i in range(n)])
        ).results
        assert len(results) == n and not any(r.HasField("fault") for r in results)
        assert pool.reset().dropped == n


def test_pools_in_threads_keep_their_faults_apart() -> None:
    # Host faults travel through a process-global slot in wasmtime-py; pools serialise
    # wasm calls so that two threads never mix them up.
    bad = agent_wat(
        step="(call $send (i32.const 65530) (i32.const 10) (i32.const 0) (i32.const 1))"
    )
    trap = agent_wat(step="unreachable")
    errors: list[BaseException] = []

    def work(fast: bool) -> None:
        try:
            with WasmPool(WasmPoolConfig(fast_path=fast)) as pool:
                for tick in range(30):
                    create(pool, (1, "bad", bad), (2, "trap", trap), (3, "good", GOOD))
                    r = step(pool, tick, 1, 2, 3)
                    assert r[0].fault.kind == cpb.FAULT_KIND_BAD_POINTER
                    assert r[1].fault.kind == cpb.FAULT_KIND_TRAP
                    assert not r[2].HasField("fault")
                    pool.reset()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(fast,)) for fast in (True, False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
