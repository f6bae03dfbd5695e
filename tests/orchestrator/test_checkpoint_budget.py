"""Automatic checkpoints cost a bounded share of the run's time (AutoCheckpoints.max_share):
one estimated to take s seconds waits until s / max_share seconds have passed since the last
one or the run's start, whatever `every` says."""

from __future__ import annotations

import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._manager import AutoCheckpoints, RunManager
from lockstep_orchestrator._ports import InProcessPools
from tests.orchestrator.fakepool import MODULE, FakeEngine

pytestmark = pytest.mark.unit


def taken(max_share: float) -> list[int]:
    m = RunManager(
        InProcessPools([FakeEngine()]),
        lambda h: b"",
        lambda: {MODULE},
        None,
        InferenceBridge(None),
        auto=AutoCheckpoints(every=2, keep=100, max_share=max_share),
    )
    m.start(opb.RunConfig(seed=1))
    m.spawn(
        [(opb.AgentSpawn(name=f"a{i}", module=MODULE, args=b"to=a0"), MODULE) for i in range(3)]
    )
    for _ in range(12):
        m.step(1)
    return [b.tick for b in m._auto]


def test_checkpoints_every_k_ticks_when_they_are_cheap() -> None:
    assert taken(max_share=float("inf")) == [2, 4, 6, 8, 10]


def test_checkpoints_costing_more_than_their_share_are_put_off() -> None:
    assert taken(max_share=1e-12) == []
