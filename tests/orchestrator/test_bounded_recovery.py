"""Bounded pool recovery (issue 11) on the in-process pools: automatic checkpoints every K
ticks, a failed pool rebuilt from the latest one and caught up by replaying only the ticks
after it, repeated failures (also during the rebuild) retried until pool_recovery_s, then a
precise error with the run intact and resumable."""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc
import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._kernel import TickFailedError
from lockstep_orchestrator._manager import AutoCheckpoints, RunManager
from lockstep_orchestrator._ports import InProcessPools, PoolFailureError
from tests.orchestrator.fakepool import MODULE, FakeEngine

AGENTS = [
    ("a", "to=b"),
    ("b", "to=c,a"),
    ("c", "bcast=1 log=1"),
    ("d", "to=a sub=t"),
    ("e", "topic=t trap_at=12"),
]


def gone(pool: int = 1, method: str = "StepBatch") -> PoolFailureError:
    return PoolFailureError(
        pool, f"in-process:{pool}", method, grpc.StatusCode.UNAVAILABLE, "connection reset"
    )


@dataclass
class Killer:
    """Kills engine 1 (its instances are gone with the process) at chosen step ticks, in
    order: one step request of tick `at[0]` fails, then one of `at[1]`, ..."""

    engine: FakeEngine
    at: list[int]
    fired: int = 0

    def __call__(self, tick: int) -> Exception | None:
        if self.at and tick == self.at[0]:
            del self.at[0]
            self.fired += 1
            self.engine.agents = {}
            return gone()
        return None


class FlakyReset(FakeEngine):
    """A pool that is still down (fails Reset) the first `resets_failing` times."""

    resets_failing = 0

    def reset(self) -> pb.ResetResponse:
        if self.resets_failing:
            self.resets_failing -= 1
            raise gone(1, "Reset")
        return super().reset()


def make(
    engines: list[FakeEngine], every: int = 10, recovery_s: float = 30, **auto: int
) -> RunManager:
    m = RunManager(
        InProcessPools(engines),
        lambda h: b"",
        lambda: {MODULE},
        None,
        InferenceBridge(None),
        recovery_s=recovery_s,
        # Every K ticks whatever they cost (their time budget: test_checkpoint_budget.py).
        auto=AutoCheckpoints(every=every, max_share=float("inf"), **auto),
    )
    m.start(opb.RunConfig(seed=3))
    m.spawn(
        [
            (
                opb.AgentSpawn(
                    name=n,
                    module=MODULE,
                    args=a.encode(),
                    restart=opb.RestartPolicy(max_restarts=1, backoff_ticks=2),
                ),
                MODULE,
            )
            for n, a in AGENTS
        ]
    )
    return m


def drive(m: RunManager) -> list[bytes]:
    m.step(25)
    m.lifecycle("pause", ["d"])
    m.step(10)
    return m.kernel.digests


@pytest.fixture(scope="module")
def undisturbed() -> list[bytes]:
    chain = drive(make([FakeEngine(), FakeEngine()], every=0))
    assert drive(make([FakeEngine(), FakeEngine()], every=10)) == chain  # checkpoints: no trace
    return chain


def recovers(m: RunManager) -> list[dict[str, int]]:
    return [json.loads(r.payload) for r in m.kernel.journal.records if r.kind == "run.recover"]


def reexecuted(engines: list[FakeEngine]) -> dict[int, int]:
    """Tick -> how many more times than once it was stepped on a pool."""
    counts: dict[tuple[int, int], int] = {}
    for i, e in enumerate(engines):
        for tick, _handles in e.stepped:
            counts[(i, tick)] = counts.get((i, tick), 0) + 1
    out: dict[int, int] = {}
    for (_i, tick), n in counts.items():
        if n > 1:
            out[tick] = max(out.get(tick, 0), n - 1)
    return out


def test_a_pool_is_rebuilt_from_the_latest_automatic_checkpoint(undisturbed: list[bytes]) -> None:
    engines = [FakeEngine(), FakeEngine()]
    engines[1].fail_step = Killer(engines[1], [26])
    m = make(engines)
    assert drive(m) == undisturbed
    # Checkpoints at 10 and 20 (the last two kept: 20 and 10), the failure at 26: only the
    # ticks 21..25 are re-executed, once, then 26 is run again.
    assert recovers(m) == [{"replayed_ticks": 5, "from_tick": 20, "failures": 1}]
    assert reexecuted(engines) == {t: 1 for t in range(21, 27)}
    assert m.recoveries == 1 and m.replayed_ticks == 5


def test_without_automatic_checkpoints_recovery_replays_from_tick_1(
    undisturbed: list[bytes],
) -> None:
    for auto in ({"every": 0}, {"every": 10, "max_bytes": 1}):  # off, or too large to keep
        engines = [FakeEngine(), FakeEngine()]
        engines[1].fail_step = Killer(engines[1], [26])
        m = make(engines, **auto)
        assert drive(m) == undisturbed
        assert recovers(m) == [{"replayed_ticks": 25, "from_tick": 0, "failures": 1}]


def test_failures_during_recovery_are_retried_until_the_run_goes_on(
    undisturbed: list[bytes],
) -> None:
    engines: list[FakeEngine] = [FakeEngine(), FlakyReset()]
    # Dies at 26; then twice more while its rebuild re-executes tick 23, and its Reset
    # fails twice (the process is not back yet) before the last rebuild.
    killer = Killer(engines[1], [26, 23, 23])
    engines[1].fail_step = killer

    def after_second_death(tick: int) -> Exception | None:
        exc = killer(tick)
        if killer.fired == 3 and exc is not None:
            engines[1].resets_failing = 2  # type: ignore[attr-defined]
        return exc

    engines[1].fail_step = after_second_death
    m = make(engines)
    assert drive(m) == undisturbed
    assert killer.fired == 3 and engines[1].resets_failing == 0  # type: ignore[attr-defined]
    assert recovers(m) == [{"replayed_ticks": 5, "from_tick": 20, "failures": 5}]
    assert m.recoveries == 1


def test_past_the_deadline_the_tick_fails_precisely_and_the_run_resumes(
    undisturbed: list[bytes],
) -> None:
    engines = [FakeEngine(), FakeEngine()]
    down = {"on": True}

    def dead(tick: int) -> Exception | None:
        if tick >= 26 and down["on"]:
            engines[1].agents = {}
            return gone()
        return None

    engines[1].fail_step = dead
    m = make(engines, recovery_s=0.3)
    m.step(25)
    m.lifecycle("pause", ["d"])
    before = (m.status(), m.kernel.digests)
    with pytest.raises(TickFailedError) as info:
        m.step(1)
    text = str(info.value)
    assert info.value.code == "UNAVAILABLE"
    assert "tick 26 failed and was rolled back: pool recovery gave up after 0.3 s" in text
    assert "last error: pool in-process:1: StepBatch failed: UNAVAILABLE" in text
    assert "the run is intact at tick 25" in text
    assert (m.status(), m.kernel.digests) == before and len(m.kernel.pending) == 1
    down["on"] = False  # the pool serves again: the next call rebuilds and goes on
    m.step(10)
    assert m.kernel.digests == undisturbed
    assert recovers(m)[-1]["from_tick"] == 20


def test_a_refusal_is_not_retried() -> None:
    from lockstep_wasm_pool import InvalidRequestError as PoolRefusal

    engines = [FakeEngine(), FakeEngine()]
    calls = []

    def refuse(tick: int) -> Exception | None:
        calls.append(tick)
        return PoolRefusal("refused for the test") if tick == 5 else None

    engines[1].fail_step = refuse
    m = make(engines)
    m.step(4)
    with pytest.raises(TickFailedError) as info:
        m.step(1)
    assert info.value.code == "ABORTED" and calls.count(5) == 1
