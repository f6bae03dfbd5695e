"""The orchestrator SIGKILLed under `lockstep up` (issue 11): the supervisor restarts it
on the same address and data dir, it reads its registered modules back, and a checkpoint
taken before its death restores and continues with the digests of a run that never
stopped. (Resuming the interrupted run itself is not built: docs/adr/011.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.test_supervisor import kill_and_wait_restart, lockstep

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
GOSSIP = ROOT / "examples" / "scenarios" / "gossip.toml"


def final_digest(state: str, kill: bool) -> str:
    run = lockstep("run", "--state-dir", state, str(GOSSIP), "--ticks", "5")
    assert run.returncode == 0, run.stderr
    taken = lockstep("checkpoint", "--state-dir", state, "--label", "t5")
    assert taken.returncode == 0, taken.stderr
    checkpoint_id = re.search(r"checkpoint (\S+) at tick 5", taken.stdout)
    assert checkpoint_id, taken.stdout
    if kill:
        kill_and_wait_restart(state, "orchestrator", timeout=60)
    restored = lockstep("restore", checkpoint_id[1], "--state-dir", state)
    assert restored.returncode == 0, restored.stderr
    out = lockstep("until", "--idle", "--max-ticks", "50", "--state-dir", state)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("digest ")[-1].strip()


def test_a_checkpoint_restores_after_the_orchestrator_was_killed(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    assert lockstep("up", "--state-dir", state, "--pools", "2").returncode == 0
    try:
        assert final_digest(state, kill=True) == final_digest(state, kill=False)
        log = (Path(state) / "logs" / "orchestrator.log").read_text()
        assert "1 registered modules read back" in log, log[-2000:]
    finally:
        lockstep("down", "--state-dir", state)
