"""The digest chain of every example scenario, recorded before the tick path was rebuilt
(tests/golden/chains.json), must come out identical: on 3 pool processes (it was recorded on
2) with their batches through the shared-memory tick channel, on the forced Python pool
engine, with a mixed deployment (pools 0 and 2 over gRPC, pool 1 on shared memory), and
with the orchestrator's numpy fallback instead of its C helpers, with ticks started ahead
always and never. A deliberate change of encoding regenerates the
file with tests/golden/record_chains.py in the same commit (docs/determinism.md)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_supervisor import lockstep

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHAINS = json.loads((ROOT / "tests" / "golden" / "chains.json").read_text())
PATHS = {
    p.stem: p
    for p in [
        *(ROOT / "examples" / "scenarios").glob("*.toml"),
        ROOT / "tests" / "e2e" / "scenarios" / "faults.toml",
    ]
}


def test_every_example_scenario_has_a_recorded_chain() -> None:
    assert sorted(CHAINS) == sorted(PATHS)


SETTINGS = {  # pool engine, pool transport, orchestrator's native helpers, ticks ahead
    "default": ("auto", "auto", "1", "on"),  # on: 3 pools on 2 cores would not (auto)
    "python": ("python", "auto", "1", "off"),
    "mixed": ("auto", "grpc,auto,grpc", "1", "auto"),
    "numpy": ("auto", "auto", "0", "auto"),  # the orchestrator's numpy fallback, no C helpers
}


@pytest.fixture(scope="module", params=sorted(SETTINGS))
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    state = str(tmp_path_factory.mktemp("chains") / "state")
    # The supervisor passes its environment to the services it starts.
    engine, transport, native, ahead = SETTINGS[request.param]
    env = {
        "LOCKSTEP_POOL_ENGINE": engine,
        "LOCKSTEP_POOL_TRANSPORT": transport,
        "LOCKSTEP_ORCHESTRATOR_NATIVE": native,
        "LOCKSTEP_TICKS_AHEAD": ahead,
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        up = lockstep("up", "--state-dir", state, "--pools", "3")
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    assert up.returncode == 0, up.stderr
    yield state, request.param
    lockstep("down", "--state-dir", state)


@pytest.mark.parametrize("scenario", sorted(CHAINS))
def test_chain_is_unchanged(deployment: tuple[str, str], scenario: str) -> None:
    result = lockstep("run", "--state-dir", deployment[0], str(PATHS[scenario]), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    want = CHAINS[scenario]["digests"]
    got = summary["digests"]
    first = next((i for i, (a, b) in enumerate(zip(want, got, strict=False)) if a != b), None)
    assert first is None and len(got) == len(want), (
        f"{scenario}: chain differs from tick {first + 1 if first is not None else len(want)}"
    )


def test_the_pools_use_the_transport_asked_for(deployment: tuple[str, str]) -> None:
    """After the scenarios ran: the orchestrator's log names the pools on the tick channel."""
    state, name = deployment
    text = (Path(state) / "logs" / "orchestrator.log").read_text()
    on_shm = set(re.findall(r"pool (\S+): batches through the shared-memory tick channel", text))
    assert len(on_shm) == {"default": 3, "python": 3, "mixed": 1, "numpy": 3}[name], text[-2000:]
    assert ("native helpers off" in text) == (name == "numpy"), text[-2000:]
