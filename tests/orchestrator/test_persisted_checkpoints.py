"""Automatic checkpoints written to the data dir, and a crashed run resumed from the latest
usable one (issue 11, bounded recovery after an orchestrator crash), on scripted in-process
pools: files atomic and private, only the last `keep` of the run on disk, other runs' removed;
a resume restores the latest checkpoint whose tick and digest chain match the journal and
replays only the later ticks, skipping damaged, foreign or later ones, and falls back to
tick 1 when none is usable; the resumed run continues with the undisturbed chain."""

from __future__ import annotations

import json
import shutil
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_orchestrator._autosave import CheckpointWriter, auto_id, persisted
from lockstep_orchestrator._checkpoint import load
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._journal import JournalRecord
from lockstep_orchestrator._manager import AutoCheckpoints, RunManager
from lockstep_orchestrator._ports import InProcessPools
from tests.orchestrator.fakepool import MODULE, FakeEngine

pytestmark = pytest.mark.unit

AGENTS = [("a", "to=b"), ("b", "to=a,c log=1"), ("c", "bcast=1"), ("d", "topic=t sub=t")]


def manager(
    data_dir: Path, shipped: list[JournalRecord], keep: int = 3, every: int = 3
) -> tuple[RunManager, list[FakeEngine]]:
    engines = [FakeEngine(), FakeEngine()]
    m = RunManager(
        InProcessPools(engines),
        lambda h: b"",
        lambda: {MODULE},
        lambda recs, _timeout: shipped.extend(recs),
        InferenceBridge(None),
        data_dir=data_dir,
        # Every K ticks whatever they cost (their time budget: test_checkpoint_budget.py).
        auto=AutoCheckpoints(every=every, keep=keep, max_share=float("inf")),
    )
    m.writer = CheckpointWriter(background=False)  # each written before the next tick
    return m, engines


def crashed_run(tmp_path: Path, keep: int = 3) -> tuple[str, list[bytes], list[tuple]]:  # type: ignore[type-arg]
    """A run of 14 ticks whose orchestrator "dies" after tick 14 with ticks 11..14 never
    shipped: (run id, its digest chain, the journal telemetry holds, up to tick 10).
    Checkpoints are taken at ticks 3, 6, 9 and 12 (when the tick after is asked for)."""
    shipped: list[JournalRecord] = []
    m, _ = manager(tmp_path, shipped, keep=keep)
    m.start(opb.RunConfig(seed=11))
    m.spawn([(opb.AgentSpawn(name=n, module=MODULE, args=a.encode()), MODULE) for n, a in AGENTS])
    m.step(10)
    for _ in range(4):
        m.tick_once()
    m.wait_checkpoints()
    run_id = m.kernel.run_id
    durable = [(r.tick, r.kind, r.payload) for r in shipped if r.run_id == run_id]
    assert max(t for t, k, _ in durable if k == "tick.digest") == 10
    return run_id, list(m.kernel.digests), durable


def files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()}


def test_checkpoints_are_written_atomically_privately_and_pruned(tmp_path: Path) -> None:
    run_id, chain, _ = crashed_run(tmp_path, keep=2)
    directory = tmp_path / "checkpoints"
    ids = [auto_id(run_id, t) for t in (9, 12)]  # the last two; 3 and 6 removed
    assert files(directory) == {f"{i}.{ext}" for i in ids for ext in ("json", "snap")}
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}
    assert persisted(directory, run_id) == [(12, ids[1]), (9, ids[0])]
    # The format of explicit checkpoints (`lockstep restore ID` takes one).
    state, snapshots = load(directory, ids[1])
    assert state["tick"] == 12 and state["digests"] == [d.hex() for d in chain[:12]]
    assert len(snapshots) == len(AGENTS)

    # Restored (from a copy: restoring makes another run current) it continues the chain.
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy / "checkpoints")
    shipped: list[JournalRecord] = []
    other, _ = manager(copy, shipped)
    other.restore(ids[1])
    other.step(2)
    assert other.kernel.digests == chain[:14]
    # Another run started here removes the automatic checkpoints of the one before.
    fresh, _ = manager(tmp_path, shipped)
    fresh.start(opb.RunConfig(seed=1))
    fresh.wait_checkpoints()
    assert files(directory) == set()


def test_a_clean_shutdown_leaves_no_automatic_checkpoint(tmp_path: Path) -> None:
    shipped: list[JournalRecord] = []
    m, _ = manager(tmp_path, shipped)
    m.start(opb.RunConfig(seed=2))
    m.spawn([(opb.AgentSpawn(name="a", module=MODULE, args=b"to=a"), MODULE)])
    m.step(4)
    m.step(1)
    m.wait_checkpoints()
    assert persisted(tmp_path / "checkpoints", m.kernel.run_id) == [
        (3, auto_id(m.kernel.run_id, 3))
    ]
    m.close(tmp_path, 1.0)
    assert files(tmp_path / "checkpoints") == set()


def resume(tmp_path: Path, durable: list[tuple]) -> tuple[RunManager, list[FakeEngine]]:  # type: ignore[type-arg]
    again: list[JournalRecord] = []
    r, engines = manager(tmp_path, again)
    status = r.resume(durable)
    assert status.tick == 10
    return r, engines


def stepped(engines: list[FakeEngine]) -> list[int]:
    return sorted({t for e in engines for t, _ in e.stepped})


def test_a_crashed_run_resumes_from_its_latest_checkpoint(tmp_path: Path) -> None:
    run_id, chain, durable = crashed_run(tmp_path)
    r, engines = resume(tmp_path, durable)
    # Tick 12's checkpoint is past the journal's last durable tick: tick 9's is used.
    assert r.resumed == {
        "tick": 10,
        "from_tick": 9,
        "replayed_ticks": 1,
        "checkpoint": auto_id(run_id, 9),
    }
    assert stepped(engines) == [10]  # only the ticks after the checkpoint ran again
    note = [rec for rec in r.kernel.journal.records if rec.kind == "run.resume"]
    assert len(note) == 1 and note[0].tick == 11
    assert json.loads(note[0].payload) == r.resumed
    r.step(4)
    assert r.kernel.digests == chain
    # The resumed run's own checkpoints go on (tick 12, then 9 and 12 of the last three).
    r.wait_checkpoints()
    assert [t for t, _ in persisted(tmp_path / "checkpoints", run_id)] == [12, 9, 6]


def damage_json(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def damage_snap(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def other_chain(path: Path) -> None:
    state = json.loads(path.read_bytes())
    state["digests"][0] = "00" * 32
    path.write_text(json.dumps(state))


def other_run(path: Path) -> None:
    state = json.loads(path.read_bytes())
    state["run_id"] = "feedfacefeedface"
    path.write_text(json.dumps(state))


@pytest.mark.parametrize(
    ("damage", "suffix"),
    [
        (damage_json, ".json"),
        (damage_snap, ".snap"),
        (Path.unlink, ".snap"),
        (other_chain, ".json"),
        (other_run, ".json"),
    ],
    ids=["truncated json", "flipped snap byte", "snap missing", "other chain", "other run"],
)
def test_an_unusable_checkpoint_is_skipped_for_the_one_before(
    tmp_path: Path, damage: object, suffix: str
) -> None:
    run_id, chain, durable = crashed_run(tmp_path)
    damage(tmp_path / "checkpoints" / f"{auto_id(run_id, 9)}{suffix}")  # type: ignore[operator]
    r, engines = resume(tmp_path, durable)
    assert (r.resumed["from_tick"], r.resumed["replayed_ticks"]) == (6, 4)
    assert stepped(engines) == [7, 8, 9, 10]
    r.step(4)
    assert r.kernel.digests == chain


def test_with_no_usable_checkpoint_the_resume_replays_from_tick_1(tmp_path: Path) -> None:
    run_id, chain, durable = crashed_run(tmp_path)
    for t in (6, 9, 12):
        damage_snap(tmp_path / "checkpoints" / f"{auto_id(run_id, t)}.snap")
    r, engines = resume(tmp_path, durable)
    assert r.resumed == {"tick": 10, "from_tick": 0, "replayed_ticks": 10, "checkpoint": ""}
    assert stepped(engines) == list(range(1, 11))
    r.step(4)
    assert r.kernel.digests == chain


class RefusesRestore(FakeEngine):
    """A pool that refuses the snapshots it is given (as a pool whose caps shrank would)."""

    def restore(self, snaps: Any) -> pb.RestoreResponse:
        from lockstep_wasm_pool import InvalidRequestError

        raise InvalidRequestError("snapshot refused")


def test_a_checkpoint_that_does_not_restore_falls_back_to_tick_1(tmp_path: Path) -> None:
    _run_id, chain, durable = crashed_run(tmp_path)
    engines: list[FakeEngine] = [RefusesRestore(), RefusesRestore()]
    r = RunManager(
        InProcessPools(engines),
        lambda h: b"",
        lambda: {MODULE},
        lambda recs, _timeout: None,
        InferenceBridge(None),
        data_dir=tmp_path,
    )
    assert r.resume(durable).tick == 10
    assert r.resumed["from_tick"] == 0 and stepped(engines) == list(range(1, 11))
    assert r.kernel.digests == chain[:10]


def test_writing_counts_in_the_time_budget(tmp_path: Path) -> None:
    """A checkpoint whose write would take longer than its share of the run is put off;
    without a data dir (nothing written) the same one is taken."""

    def taken(data_dir: Path | None) -> list[int]:
        m = RunManager(
            InProcessPools([FakeEngine()]),
            lambda h: b"",
            lambda: {MODULE},
            None,
            InferenceBridge(None),
            data_dir=data_dir,
            auto=AutoCheckpoints(every=2, keep=10, max_share=1e6),
        )
        m.writer.bytes_per_s = 1e-9  # a disk this slow makes every write too costly
        m.start(opb.RunConfig(seed=1))
        m.spawn([(opb.AgentSpawn(name="a", module=MODULE, args=b"to=a"), MODULE)])
        for _ in range(7):
            m.step(1)
        return [b.tick for b in m._auto]

    assert taken(None) == [2, 4, 6]
    assert taken(tmp_path) == []


class GatedWriter(CheckpointWriter):
    """The background writer on a disk that stalls until `gate` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.started: list[int] = []

    def _write(self, directory: Path, run_id: str, tick: int, *rest: Any) -> None:
        self.started.append(tick)
        self.entered.set()
        self.gate.wait(30)
        super()._write(directory, run_id, tick, *rest)


def test_ticks_never_wait_for_a_slow_disk(tmp_path: Path) -> None:
    """While a write is stalled the run goes on; the checkpoints taken meanwhile replace each
    other (the latest is written next), and every one is kept in memory."""
    shipped: list[JournalRecord] = []
    m, _ = manager(tmp_path, shipped, keep=2)
    m.writer = writer = GatedWriter()
    m.start(opb.RunConfig(seed=4))
    m.spawn([(opb.AgentSpawn(name="a", module=MODULE, args=b"to=a"), MODULE)])
    m.step(4)  # the checkpoint of tick 3, whose write stalls
    assert writer.entered.wait(30)
    m.step(9)  # those of ticks 6, 9 and 12 meanwhile
    assert [b.tick for b in m._auto] == [9, 12] and writer.started == [3]
    writer.gate.set()
    m.wait_checkpoints()
    assert writer.started == [3, 12] and writer.superseded == 2
    assert [t for t, _ in persisted(tmp_path / "checkpoints", m.kernel.run_id)] == [12, 3]
    m.close(tmp_path, 1.0)
