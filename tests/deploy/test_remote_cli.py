"""The CLI against a deployment it did not start: --address / --token flags and named
profiles (docs/clients.md), as for compose or a Kubernetes port-forward. The deployment is a
`lockstep up` in one state directory; the CLI runs with LOCKSTEP_HOME pointing elsewhere,
so that nothing but the flags and the profile can lead it there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CHAINS = json.loads((ROOT / "tests" / "golden" / "chains.json").read_text())
PINGPONG = str(ROOT / "examples" / "scenarios" / "pingpong.toml")


def cli(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "COLUMNS": "200"},
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    state = tmp_path_factory.mktemp("remote") / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCKSTEP_", "COLUMNS"))}
    up = cli("up", "--state-dir", str(state), "--pools", "2", env=env)
    assert up.returncode == 0, up.stderr
    try:
        services = {
            s["name"]: s["address"]
            for s in json.loads((state / "state.json").read_text())["services"]
        }
        elsewhere = tmp_path_factory.mktemp("elsewhere")
        client_env = {
            **env,
            "LOCKSTEP_HOME": str(elsewhere / "home"),
            "LOCKSTEP_PROFILES": str(elsewhere / "profiles.toml"),
        }
        yield {
            "state": state,
            "services": services,
            "env": client_env,
            "tokens": json.loads((state / "tokens.json").read_text()),
        }
    finally:
        cli("down", "--state-dir", str(state), env=env)


def test_profiles_drive_run_replay_journal_and_status(deployment: dict[str, object]) -> None:
    env = deployment["env"]
    services = deployment["services"]
    state = deployment["state"]
    assert isinstance(env, dict) and isinstance(services, dict) and isinstance(state, Path)
    made = cli(
        "profile",
        "set",
        "remote",
        "--orchestrator",
        services["orchestrator"],
        "--telemetry",
        services["telemetry"],
        "--inference",
        services["inference"],
        "--tokens",
        str(state / "tokens.json"),
        "--keys",
        str(state / "keys"),
        env=env,
    )
    assert made.returncode == 0, made.stderr
    listed = cli("profile", "list", env=env)
    assert "remote: orchestrator " + services["orchestrator"] in listed.stdout

    run = cli("--profile", "remote", "run", PINGPONG, "--json", env=env)
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["digests"] == CHAINS["pingpong"]["digests"]

    # The same profile after the command, and from the environment.
    replay = cli("replay", summary["run_id"], "--profile", "remote", env=env)
    assert replay.returncode == 0, replay.stderr
    assert "replay verified" in replay.stdout
    runs = cli("journal", "runs", env={**env, "LOCKSTEP_PROFILE": "remote"})
    assert runs.returncode == 0, runs.stderr
    assert summary["run_id"] in runs.stdout
    status = cli("--profile", "remote", "status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("SERVING") == 3
    # The current run is the replay's, which ended where the run did.
    assert f"tick {summary['tick']}, agents 2 terminated" in status.stdout


def test_address_and_token_flags_reach_a_deployment(deployment: dict[str, object]) -> None:
    env = deployment["env"]
    services = deployment["services"]
    tokens = deployment["tokens"]
    assert isinstance(env, dict) and isinstance(services, dict) and isinstance(tokens, dict)
    orch = services["orchestrator"]
    listed = cli("--address", orch, "--token", tokens["viewer"], "agent", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    # Role checks still apply: a viewer may not step the run.
    step = cli("--address", orch, "--token", tokens["viewer"], "step", env=env)
    assert step.returncode == 2
    assert "PERMISSION_DENIED" in step.stderr
    bad = cli("--address", orch, "--token", "x" * 32, "agent", "list", env=env)
    assert bad.returncode == 2 and "UNAUTHENTICATED" in bad.stderr
    # Without flags or a profile the CLI has nothing to go on, and says so.
    lost = cli("agent", "list", env=env)
    assert lost.returncode == 2 and "not running" in lost.stderr
    unknown = cli("--profile", "nope", "agent", "list", env=env)
    assert unknown.returncode == 2 and "no profile 'nope'" in unknown.stderr
