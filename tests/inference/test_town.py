"""The LLM-agent example scenario (examples/scenarios/town.toml) through the normal
`lockstep up` / `lockstep run` path: three SmolLM2 villagers, 9 chat requests decoded in
3 batches; the digest chain repeats and the replay verifies from the journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inference.conftest import HAVE_REAL, needs_llm

pytestmark = [
    pytest.mark.e2e,
    needs_llm,
    pytest.mark.skipif(not HAVE_REAL, reason="lockstep up prepares every model"),
]
ROOT = Path(__file__).resolve().parents[2]
TOWN = ROOT / "examples" / "scenarios" / "town.toml"


def lockstep(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = str(tmp_path_factory.mktemp("town") / "state")
    up = lockstep("up", "--state-dir", directory)
    assert up.returncode == 0, up.stderr
    yield directory
    lockstep("down", "--state-dir", directory)


def test_town_repeats_and_replays(state: str) -> None:
    runs = []
    for _ in range(2):
        result = lockstep("run", "--state-dir", state, str(TOWN), "--json")
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    first, second = runs
    assert first["counters"]["inferences"] == 9 and first["counters"]["faults"] == 0
    assert first["digests"] == second["digests"]
    records = lockstep(
        "journal",
        "query",
        "--state-dir",
        state,
        "--run",
        first["run_id"],
        "--kind",
        "infer.result",
        "--json",
    )
    assert records.returncode == 0, records.stderr
    replies = [json.loads(json.loads(line)["payload"]) for line in records.stdout.splitlines()]
    assert len(replies) == 9 and not any(r["error"] for r in replies)
    assert all(bytes.fromhex(r["output"]).decode() for r in replies)  # natural language
    replay = lockstep("replay", "--state-dir", state, first["run_id"])
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "identical" in replay.stdout
