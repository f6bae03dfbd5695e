"""Resuming a journalled run under its own id (RunManager.resume, issue 11) on scripted
in-process pools: the resumed run continues with the digests of one that never stopped,
its journal continues the original (records already durable are not sent again)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep.errors import PreconditionError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._journal import JournalRecord
from lockstep_orchestrator._manager import RunManager
from lockstep_orchestrator._ports import InProcessPools
from tests.orchestrator.fakepool import MODULE, FakeEngine


def manager(data_dir: Path, shipped: list[JournalRecord]) -> RunManager:
    return RunManager(
        InProcessPools([FakeEngine(), FakeEngine()]),
        lambda h: b"",
        lambda: {MODULE},
        lambda recs, _timeout: shipped.extend(recs),
        InferenceBridge(None),
        data_dir=data_dir,
    )


def test_a_resumed_run_continues_its_chain_and_journal(tmp_path: Path) -> None:
    shipped: list[JournalRecord] = []
    m = manager(tmp_path, shipped)
    m.start(opb.RunConfig(seed=5))
    m.spawn(
        [
            (opb.AgentSpawn(name=n, module=MODULE, args=a.encode()), MODULE)
            for n, a in (("a", "to=b"), ("b", "to=a log=1"), ("c", "bcast=1"))
        ]
    )
    m.step(6)
    run_id = m.kernel.run_id
    assert m.interrupted_run() == run_id  # what a restarted orchestrator would find
    for _ in range(4):  # ticks not shipped yet: the orchestrator "dies" with them
        m.tick_once()
    want = m.kernel.digests
    durable = [(r.tick, r.kind, r.payload) for r in shipped if r.run_id == run_id]
    assert max(t for t, k, _ in durable if k == "tick.digest") == 6

    again: list[JournalRecord] = []
    r = manager(tmp_path, again)
    assert r.interrupted_run() == run_id
    status = r.resume(durable)
    assert status.run_id == run_id and status.tick == 6
    r.step(4)
    assert r.kernel.digests == want
    kinds = [(rec.tick, rec.kind) for rec in again]
    assert kinds[0] == (7, "run.resume") and ("run.start" not in {k for _t, k in kinds})
    ticks = [
        rec.tick for rec in [*shipped, *again] if rec.kind == "tick.digest" and rec.run_id == run_id
    ]
    assert ticks == list(range(1, 11))
    r.close(tmp_path, 1.0)  # a clean shutdown leaves nothing to resume
    assert r.interrupted_run() == ""


def test_a_restored_run_is_not_resumed_from_its_own_journal(tmp_path: Path) -> None:
    shipped: list[JournalRecord] = []
    m = manager(tmp_path, shipped)
    m.start(opb.RunConfig(seed=5))
    m.spawn([(opb.AgentSpawn(name="a", module=MODULE), MODULE)])
    m.step(2)
    info = m.checkpoint("x")
    m.restore(info.id)
    assert m.interrupted_run() == ""
    m.step(1)
    restored = m.kernel.run_id
    with pytest.raises(PreconditionError, match="restored run"):
        manager(tmp_path, []).resume(
            [(r.tick, r.kind, r.payload) for r in shipped if r.run_id == restored]
        )
