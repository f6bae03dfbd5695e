"""The orchestrator SIGKILLed mid-run under `lockstep up` (issue 11): the supervisor
restarts it on the same data dir, it finds the interrupted run and resumes it from its
durable journal in telemetry (shipped at the end of every call and at least once a second)
under the same run id; the run then completes with the undisturbed digest chain and a
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


def test_the_orchestrator_killed_mid_run_resumes_with_the_undisturbed_chain(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert lockstep("up", "--state-dir", state, "--pools", "2").returncode == 0
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
            killed_at = dep.status().tick
        assert killed_at < TICKS, "the run ended before the orchestrator could be killed"
        kill_and_wait_restart(state, "orchestrator", timeout=120)
        until.communicate(timeout=60)
        assert until.returncode != 0  # its stream was cut; a later call finishes the run
        log = (Path(state) / "logs" / "orchestrator.log").read_text()
        assert f"resumed interrupted run {run_id}" in log, log[-3000:]
        with Deployment.connect(state) as dep:
            resumed = dep.status()
        assert resumed.run_id == run_id and 150 <= resumed.tick <= killed_at + 10
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
    finally:
        if until is not None and until.poll() is None:
            until.kill()
            until.wait()
        lockstep("down", "--state-dir", state)
