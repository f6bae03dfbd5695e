"""A stack-overflow fault is environment-dependent (docs/determinism.md): a replay that
diverges at a tick with one reports it as such, distinctly from a determinism bug."""

from __future__ import annotations

from lockstep.batch import Fault, Result
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._manager import RunManager
from lockstep_orchestrator._ports import InProcessPools
from lockstep_orchestrator._replay import parse_journal
from tests.orchestrator.fakepool import MODULE, FakeEngine, _Agent


class SmallStack(FakeEngine):
    """An installation whose stack is smaller: the agent overflows at tick 3."""

    def _step(self, h: int, a: _Agent, tick: int) -> Result:
        if a.args.get("deep") and tick == 3:
            return Result(
                h,
                code=0,
                fuel=50,
                fault=Fault(4, "wasm call stack overflowed in agent_step", "agent_step"),
            )
        return super()._step(h, a, tick)


def manager(engine: FakeEngine) -> RunManager:
    return RunManager(
        InProcessPools([engine]), lambda h: b"", lambda: {MODULE}, None, InferenceBridge(None)
    )


def test_replay_names_a_stack_overflow_divergence_as_environment_dependent() -> None:
    m = manager(SmallStack())
    m.start(opb.RunConfig(seed=1))
    m.spawn(
        [
            (opb.AgentSpawn(name=n, module=MODULE, args=a.encode()), MODULE)
            for n, a in (("deep", "deep=1 to=z"), ("z", "to=deep"))
        ]
    )
    m.step(5)
    journal = parse_journal([(r.tick, r.kind, r.payload) for r in m.kernel.journal.records])
    *_, last = manager(FakeEngine()).replay(journal, False, 100)  # a bigger stack
    assert not last.ok and last.divergent_tick == 3 and last.divergent_agent == "deep"
    assert last.detail.startswith("environment-dependent: a stack-overflow fault"), last.detail
    assert "FAULT_KIND_STACK_OVERFLOW" in last.detail
    # Any other divergence is reported as before.
    *_, same = manager(SmallStack()).replay(journal, False, 100)
    assert same.ok, same.detail
