"""Ticks started ahead (Kernel.step_tick(ahead=True), docs/architecture.md "Ticks in
flight"): the next tick's step batches go out before the tick before it commits. The same
digests and journal as one tick at a time, actions queued meanwhile take effect where
`enqueue` says, and a failure of either tick leaves the run as after its last commit."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep.errors import ConfigError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.tick_channel import polls_fit
from lockstep_orchestrator._events import NOT_COMPARED
from lockstep_orchestrator._kernel import TickFailedError
from lockstep_orchestrator._manager import AutoCheckpoints, RunManager
from lockstep_orchestrator._ports import GrpcPools
from lockstep_orchestrator._replay import parse_journal
from tests.orchestrator.fakepool import FakeEngine
from tests.orchestrator.test_kernel import helpers, make, records, scenario, spawn

__all__ = ["helpers"]  # the fixture: C helpers and their numpy forms


def compared(m: RunManager) -> list[tuple[int, str, bytes]]:
    return [r for r in records(m) if r[1] not in NOT_COMPARED]


def one_at_a_time(m: RunManager, ticks: int) -> None:
    for _ in range(ticks):
        m.tick_once()  # never ahead


@pytest.mark.usefixtures("helpers")
def test_ticks_started_ahead_give_the_digests_and_journal_of_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ahead, serial = make(2), make(2)
    scenario(ahead[0])  # RunManager.step: every tick but the last of each call ahead
    monkeypatch.setattr(RunManager, "step", lambda self, n: one_at_a_time(self, n))
    scenario(serial[0])
    assert ahead[0].kernel.digests == serial[0].kernel.digests
    assert compared(ahead[0]) == compared(serial[0])
    assert [e.stepped for e in ahead[1]] == [e.stepped for e in serial[1]]


def test_a_tick_is_started_ahead_only_where_nothing_else_decides_it() -> None:
    m, _ = make(1)
    spawn(m, ("a", "to=b"), ("b", "to=a"))
    m.tick_once(ahead=True)
    assert m.kernel.tick == 1 and m.kernel.ahead
    m.tick_once(ahead=False)  # finishes tick 2, starts nothing
    assert m.kernel.tick == 2 and not m.kernel.ahead
    m.send([opb.ExternalMessage(to="a", payload=b"x")])  # queued for tick 3: decides it
    m.tick_once(ahead=True)
    assert m.kernel.tick == 3 and m.kernel.ahead  # tick 4 has no action of its own
    m.tick_once()
    idle, _ = make(1)
    spawn(idle, ("s", "idle=1"))
    idle.tick_once(ahead=True)  # s goes idle with an empty inbox: nobody to step at 2
    assert idle.kernel.tick == 1 and not idle.kernel.ahead
    every, _ = make(1, auto=AutoCheckpoints(every=2))
    spawn(every, ("a", "to=a"))
    every.tick_once(ahead=True)
    assert every.kernel.ahead  # tick 2 started: the checkpoint comes after it
    every.tick_once(ahead=True)
    assert every.kernel.tick == 2 and not every.kernel.ahead  # the pools are captured now


def test_an_action_queued_while_a_tick_is_ahead_takes_effect_after_it() -> None:
    m, (e,) = make(1)
    spawn(m, ("a", "to=b"), ("b", "to=a"))
    m.tick_once(ahead=True)  # tick 1 committed, tick 2's batch out
    at, _ = m.lifecycle("pause", ["a"])
    assert at == 3
    m.tick_once(ahead=True)  # tick 2 (without the pause), tick 3 out: the pause decides it
    assert m.kernel.tick == 2 and not m.kernel.ahead
    m.tick_once()
    assert [(t, kind) for t, kind, _p in records(m) if kind == "control.pause"] == [
        (3, "control.pause")
    ]
    assert [h for t, h in e.stepped if t >= 2] == [[1, 2], [2]]


MIXED = [("a", "to=b"), ("b", "to=c,a"), ("c", "bcast=1"), ("d", "to=a")]


def paused_at_4() -> list[bytes]:
    """The digests of MIXED on 2 pools over 5 ticks, d paused from tick 4, undisturbed."""
    want, _ = make(2)
    spawn(want, *MIXED)
    want.step(3)
    want.lifecycle("pause", ["d"])
    want.step(2)
    return want.kernel.digests


def test_a_tick_started_ahead_that_fails_leaves_the_tick_before_committed() -> None:
    fail = {"on": True}

    def refuse(tick: int) -> Exception | None:
        from lockstep_wasm_pool import InvalidRequestError as PoolRefusal

        return PoolRefusal("refused for the test") if tick == 3 and fail["on"] else None

    m, _ = make(engines=[FakeEngine(), FakeEngine(fail_step=refuse)], recovery_s=0)
    spawn(m, *MIXED)
    m.tick_once()
    m.tick_once(ahead=True)  # tick 2 commits; tick 3's batches fail as they go out
    assert m.kernel.tick == 2 and m.kernel.ahead
    at, _ = m.lifecycle("pause", ["d"])  # tick 3's actions are fixed (none): at 4
    assert at == 4
    before = (m.status(), records(m))
    with pytest.raises(TickFailedError) as info:
        m.tick_once()
    assert info.value.code == "ABORTED" and "refused for the test" in str(info.value)
    assert (m.status(), records(m)) == before and not m.kernel.ahead
    fail["on"] = False
    m.step(3)  # rebuilt by replay; tick 3 again without the pause, which comes at 4
    assert [t for t, kind, _p in records(m) if kind == "control.pause"] == [4]
    assert m.kernel.digests == paused_at_4()
    r, _ = make(1)
    *_, last = r.replay(parse_journal(records(m)), False, 100)
    assert last.ok, last


def test_a_checkpoint_between_ticks_finishes_the_tick_started_ahead(tmp_path: Path) -> None:
    m, _ = make(1, data_dir=tmp_path)
    spawn(m, ("a", "to=b"), ("b", "to=a"))
    m.tick_once(ahead=True)
    info = m.checkpoint("between")
    assert info.tick == 2 and m.kernel.tick == 2 and not m.kernel.ahead
    m.step(2)
    want, _ = make(1)
    spawn(want, ("a", "to=b"), ("b", "to=a"))
    want.step(4)
    assert m.kernel.digests == want.kernel.digests
    m.tick_once(ahead=True)
    m.start(opb.RunConfig(seed=8))  # a new run drops the tick started ahead
    assert m.kernel.tick == 0 and not m.kernel.ahead


def test_the_ticks_ahead_setting_is_checked_and_obeyed() -> None:
    with pytest.raises(ConfigError, match="auto, on or off"):
        GrpcPools(["127.0.0.1:1"], None, ahead="sometimes")
    for ahead, overlaps in (("on", True), ("off", False), ("auto", polls_fit(0))):
        pools = GrpcPools(["127.0.0.1:1"], None, ahead=ahead)
        try:
            assert pools.overlaps() is overlaps
        finally:
            pools.close()


@pytest.mark.parametrize("ahead", [False, True])
def test_an_action_queued_during_a_failed_tick_waits_for_the_tick_it_was_promised(
    ahead: bool,
) -> None:
    """A tick's actions are fixed when it is first computed: its retry does not take the
    actions queued meanwhile (they were answered with the tick after), whether it was
    computed in turn or started ahead."""
    answered: list[int] = []
    fail = {"on": True}

    def refuse(tick: int) -> Exception | None:
        from lockstep_wasm_pool import InvalidRequestError as PoolRefusal

        if tick == 3 and fail["on"]:
            answered.append(m.lifecycle("pause", ["d"])[0])  # while tick 3 is computed
            return PoolRefusal("refused for the test")
        return None

    m, _ = make(engines=[FakeEngine(), FakeEngine(fail_step=refuse)])
    spawn(m, *MIXED)
    m.tick_once(ahead)
    m.tick_once(ahead)
    with pytest.raises(TickFailedError):
        m.tick_once(ahead)
    assert answered == [4] and m.kernel.tick == 2
    fail["on"] = False
    m.step(3)  # rebuilt by replay; tick 3 again, still without the pause
    assert [t for t, kind, _p in records(m) if kind == "control.pause"] == [4]
    assert m.kernel.digests == paused_at_4()
