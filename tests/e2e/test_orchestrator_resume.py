"""The orchestrator SIGKILLed mid-run under `lockstep up` (issue 11): the supervisor
restarts it on the same data dir, it finds the interrupted run and resumes it under the same
run id from its latest automatic checkpoint on disk (every 100 ticks here), replaying only
the later ticks of its durable journal in telemetry (shipped at the end of every call and at
least once a second); the run then completes with the undisturbed digest chain and a
complete journal (every tick once) that verifies and replays."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from lockstep.api import Deployment
from tests.e2e.test_supervisor import journal, kill_and_wait_restart, lockstep, wait_until

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHAINS = json.loads((ROOT / "tests" / "golden" / "chains.json").read_text())
WEALTH = ROOT / "examples" / "scenarios" / "wealth.toml"  # 1,000 agents
TICKS = 400


def test_the_orchestrator_killed_mid_run_resumes_with_the_undisturbed_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = str(tmp_path / "state")
    # A checkpoint every 100 ticks whatever it costs (the supervisor passes these on; by
    # default they take at most 5% of the run's time: one per ~20 s of this run).
    monkeypatch.setenv("LOCKSTEP_CHECKPOINT_EVERY", "100")
    monkeypatch.setenv("LOCKSTEP_CHECKPOINT_MAX_SHARE", "100")
    assert lockstep("up", "--state-dir", state, "--pools", "2").returncode == 0
    checkpoints = Path(state) / "data" / "orchestrator" / "checkpoints"
    until = None
    try:
        calm = lockstep("run", "--state-dir", state, str(WEALTH), "--ticks", str(TICKS), "--json")
        assert calm.returncode == 0, calm.stderr
        want = json.loads(calm.stdout)["digests"]
        assert want[:100] == CHAINS["wealth"]["digests"] and len(want) == TICKS

        first = lockstep("run", "--state-dir", state, str(WEALTH), "--ticks", "150", "--json")
        assert first.returncode == 0, first.stderr
        run_id = json.loads(first.stdout)["run_id"]
        until = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep.cli",
                "until",
                "--tick",
                str(TICKS),
                "--state-dir",
                state,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with Deployment.connect(state) as dep:
            wait_until(lambda: dep.status().tick >= 200, timeout=120)
            wait_until(lambda: (checkpoints / f"{run_id}-auto-t100.json").exists(), timeout=60)
            killed_at = dep.status().tick
        assert killed_at < TICKS, "the run ended before the orchestrator could be killed"
        kill_and_wait_restart(state, "orchestrator", timeout=120)
        until.communicate(timeout=60)
        assert until.returncode != 0  # its stream was cut; a later call finishes the run
        with Deployment.connect(state) as dep:
            resumed = dep.status()
        assert resumed.run_id == run_id and 150 <= resumed.tick <= killed_at + 10
        # From the checkpoint of tick 100 or a later one, not from tick 1.
        (note,) = [json.loads(r["payload"]) for r in journal(state, run_id, "run.resume")]
        assert note["tick"] == resumed.tick and note["from_tick"] in (100, 200, 300), note
        assert note["replayed_ticks"] == resumed.tick - note["from_tick"], note
        assert note["checkpoint"] == f"{run_id}-auto-t{note['from_tick']}", note
        log = (Path(state) / "logs" / "orchestrator.log").read_text()
        assert (
            f"resumed interrupted run {run_id} at tick {resumed.tick} (from tick "
            f"{note['from_tick']}, {note['replayed_ticks']} ticks replayed)" in log
        ), log[-3000:]
        done = lockstep("until", "--tick", str(TICKS), "--state-dir", state)
        assert done.returncode == 0, done.stderr

        records = journal(state, run_id, "tick.digest")
        ticks = Counter(r["tick"] for r in records)
        assert sorted(ticks) == list(range(1, TICKS + 1)) and set(ticks.values()) == {1}
        chain = [
            json.loads(r["payload"])["digest"] for r in sorted(records, key=lambda r: r["tick"])
        ]
        assert chain == want
        verify = lockstep("journal", "verify", "--state-dir", state)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        replay = lockstep("replay", run_id, "--state-dir", state)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        # The replay's run replaced the resumed one: its automatic checkpoints are gone.
        assert not list(checkpoints.glob("*-auto-*"))
    finally:
        if until is not None and until.poll() is None:
            until.kill()
            until.wait()
        lockstep("down", "--state-dir", state)
