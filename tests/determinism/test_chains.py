"""The digest chain of every example scenario, recorded before the tick path was rebuilt
(tests/golden/chains.json), must come out identical: on 3 pool processes (it was recorded on
2), and on the forced Python pool engine. A deliberate change of encoding regenerates the
file with tests/golden/record_chains.py in the same commit (docs/determinism.md)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_supervisor import lockstep

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHAINS = json.loads((ROOT / "tests" / "golden" / "chains.json").read_text())
PATHS = {p.stem: p for p in [*(ROOT / "examples" / "scenarios").glob("*.toml"),
                             ROOT / "tests" / "e2e" / "scenarios" / "faults.toml"]}


def test_every_example_scenario_has_a_recorded_chain() -> None:
    assert sorted(CHAINS) == sorted(PATHS)


@pytest.fixture(scope="module", params=["default", "python"])
def deployment(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = str(tmp_path_factory.mktemp("chains") / "state")
    # The supervisor passes its environment to the pools it starts.
    saved = os.environ.get("LOCKSTEP_POOL_ENGINE")
    os.environ["LOCKSTEP_POOL_ENGINE"] = "python" if request.param == "python" else "auto"
    try:
        up = lockstep("up", "--state-dir", state, "--pools", "3")
    finally:
        if saved is None:
            del os.environ["LOCKSTEP_POOL_ENGINE"]
        else:
            os.environ["LOCKSTEP_POOL_ENGINE"] = saved
    assert up.returncode == 0, up.stderr
    yield state
    lockstep("down", "--state-dir", state)


@pytest.mark.parametrize("scenario", sorted(CHAINS))
def test_chain_is_unchanged(deployment: str, scenario: str) -> None:
    result = lockstep("run", "--state-dir", deployment, str(PATHS[scenario]), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    want = CHAINS[scenario]["digests"]
    got = summary["digests"]
    first = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    assert first is None and len(got) == len(want), (
        f"{scenario}: chain differs from tick {first + 1 if first is not None else len(want)}")
