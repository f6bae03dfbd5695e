"""Fault plans, the fault points' bookkeeping, the pool's at-most-once step and the
journal's write-ahead file, without processes (docs/faults.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockstep import faults
from lockstep.batch import pack_step
from lockstep_orchestrator._journal import Journal, JournalRecord, read_wal

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_a_plan_is_a_function_of_its_seed_and_consecutive_seeds_cover_every_kind() -> None:
    a = faults.draw(7, pools=2, ticks=60)
    assert a == faults.draw(7, pools=2, ticks=60)
    assert a != faults.draw(8, pools=2, ticks=60)
    kinds = {faults.draw(s, pools=2, ticks=60).faults[-1].kind for s in range(len(faults.KINDS))}
    firsts = {
        next(f for f in faults.draw(s, pools=2, ticks=60).faults if f.id == "f0").kind
        for s in range(len(faults.KINDS))
    }
    assert firsts == set(faults.KINDS), kinds
    for seed in range(200):
        plan = faults.draw(seed, pools=2, ticks=60)
        for i, f in enumerate(plan.faults):
            assert 2 <= f.tick <= 48 and f.phase in faults.PHASES
            if f.phase == "recovery":  # always a pool death before it, so it can fire
                before = plan.faults[i - 1]
                assert before.kind == "pool.kill" and before.tick == f.tick
        assert faults.Plan.from_json(plan.to_json()) == plan


def test_no_plan_installs_nothing_and_a_bad_one_is_refused() -> None:
    assert faults.injector("orchestrator", env={}) is None
    with pytest.raises(ValueError, match="LOCKSTEP_FAULTS"):
        faults.injector("orchestrator", env={faults.ENV: "{not json"})
    with pytest.raises(ValueError, match="unknown fault kind"):
        faults.Fault("x", "pool.explode", 3)


def test_store_faults_fail_count_appends_once_per_deployment(tmp_path: Path) -> None:
    plan = faults.Plan(
        seed=1, faults=(faults.Fault("f0", "disk.full", 5, count=2),), state_dir=str(tmp_path)
    )
    env = {faults.ENV: plan.to_json()}
    inj = faults.injector("telemetry", env=env)
    assert inj is not None and faults.injector("orchestrator", env=env).faults == []  # type: ignore[union-attr]
    assert inj.store_error(4) is None
    assert inj.store_error(5) == "database or disk is full"
    assert inj.store_error(6) == "database or disk is full"
    assert inj.store_error(7) is None
    assert set(faults.fired(plan)) == {"f0"}
    again = faults.injector("telemetry", env=env)  # a restarted telemetry: already fired
    assert again is not None and again.store_error(9) is None


def test_a_response_fault_fires_for_its_pool_and_tick_only(tmp_path: Path) -> None:
    plan = faults.Plan(
        seed=2,
        faults=(faults.Fault("f0", "pool.drop", 9, "after", "pool-1"),),
        state_dir=str(tmp_path),
    )
    inj = faults.Injector(plan, "orchestrator")
    assert inj.response(8, 1) is None and inj.response(9, 0) is None
    fault = inj.response(9, 1)
    assert fault is not None and fault.kind == "pool.drop"
    assert inj.response(9, 1) is None  # once
    where = faults.fired(plan)["f0"]
    assert where["tick"] == 9 and where["process"] == "orchestrator"


def test_a_step_batch_delivered_twice_runs_once() -> None:
    from prometheus_client import CollectorRegistry

    from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
    from lockstep_wasm_pool import WasmPoolConfig
    from lockstep_wasm_pool._engine import WasmPool
    from lockstep_wasm_pool._metrics import PoolMetrics
    from lockstep_wasm_pool._service import WasmPoolServicer
    from tests.wasm_pool.conftest import agent_wat, spec

    counting = agent_wat(
        step="(global.set $count (i32.add (global.get $count) (i32.const 1))) (i32.const 0)"
    )
    with WasmPool(WasmPoolConfig(engine="python")) as pool:
        servicer = WasmPoolServicer(pool, PoolMetrics(CollectorRegistry(), lambda: 0))
        try:
            digest = pool.load_module(counting).module_hash
            pool.create_agents(
                pb.CreateAgentsRequest(tick=0, seed=1, agents=[spec(1, "a", digest)])
            )

            def state() -> bytes:
                return bytes(pool.snapshot([1])[0].SerializeToString())

            b1, b2 = pack_step(1, [1], [b""], [0]), pack_step(2, [1], [b""], [0])
            first = servicer.run_packed("StepBatch", b1)
            after_one = state()
            assert servicer.run_packed("StepBatch", b1) == first  # the same results again
            assert state() == after_one  # and not run a second time
            servicer.run_packed("StepBatch", b2)
            assert state() != after_one  # the next tick runs
            servicer.Reset(pb.ResetRequest(), None)  # type: ignore[arg-type]
            assert servicer._last_step is None
        finally:
            servicer.close()


def _rec(tick: int, kind: str = "tick.digest") -> JournalRecord:
    return JournalRecord("run-1", tick, kind, json.dumps({"t": tick}).encode())


def test_durable_writes_unshipped_records_once_and_a_shipment_removes_the_file(
    tmp_path: Path,
) -> None:
    shipped: list[list[JournalRecord]] = []
    journal = Journal(lambda recs, _t: shipped.append(list(recs)), wal_dir=tmp_path)
    journal.run_id = "run-1"
    for t in (1, 2):
        journal._add(_rec(t))
    journal.durable()
    journal._add(_rec(3))
    journal.durable()
    journal.durable()  # nothing new: no write
    wal = read_wal(tmp_path, "run-1")
    assert sorted(wal) == [0, 1, 2] and wal[2][0] == 3
    assert not shipped
    journal.flush()
    assert len(shipped[0]) == 3 and not (tmp_path / "run-1.jsonl").exists()
    journal._add(_rec(4))
    journal.durable()
    assert sorted(read_wal(tmp_path, "run-1")) == [3]  # indices in the run's journal
    with (tmp_path / "run-1.jsonl").open("ab") as fh:
        fh.write(b'{"i": 4, "tick": 5, "ki')  # torn by a crash: never acknowledged
    assert sorted(read_wal(tmp_path, "run-1")) == [3]


def test_the_committed_table_lists_every_fault_kind() -> None:
    doc = (ROOT / "docs" / "faults.md").read_text()
    start, end = doc.index("<!-- soak table: begin -->"), doc.index("<!-- soak table: end -->")
    table = doc[start:end]
    missing = [k for k in faults.KINDS if f"| `{k}` |" not in table]
    assert not missing, f"docs/faults.md's table lacks {missing}: run python3 dev.py soak"
