"""Scenarios through the CLI on real deployments: run, replay, the demo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_supervisor import kill_and_wait_restart, lockstep

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = str(tmp_path_factory.mktemp("deploy") / "state")
    up = lockstep("up", "--state-dir", state, "--pools", "2")
    assert up.returncode == 0, up.stderr
    yield state
    lockstep("down", "--state-dir", state)


def run_json(state: str, scenario: str) -> dict:  # type: ignore[type-arg]
    result = lockstep("run", "--state-dir", state, str(SCENARIOS / scenario), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_agents_consult_a_model_and_the_run_replays(deployment: str) -> None:
    summary = run_json(deployment, "oracle.toml")
    assert summary["counters"]["inferences"] == 2 and summary["counters"]["faults"] == 0
    for extra in ([], ["--verify-inference"]):
        replay = lockstep("replay", "--state-dir", deployment, summary["run_id"], *extra)
        assert replay.returncode == 0, replay.stderr
        assert "12 tick digests identical" in replay.stdout
    query = lockstep(
        "journal",
        "query",
        "--state-dir",
        deployment,
        "--run",
        summary["run_id"],
        "--kind",
        "infer.result",
        "--json",
    )
    results = [json.loads(line) for line in query.stdout.splitlines()]
    assert len(results) == 2
    assert "CPUExecutionProvider" in query.stdout
    verify = lockstep("journal", "verify", "--state-dir", deployment)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_same_scenario_same_digests_run_after_run(deployment: str) -> None:
    first = run_json(deployment, "gossip.toml")
    second = run_json(deployment, "gossip.toml")
    assert first["counters"]["messages"] > 1000
    assert first["agents_by_state"] == {"idle": 1000}
    assert first["digests"] == second["digests"] and first["run_id"] != second["run_id"]


def test_replay_of_a_tampered_journal_fails_naming_the_tick(
    deployment: str, tmp_path: Path
) -> None:
    summary = run_json(deployment, "pingpong.toml")
    query = lockstep(
        "journal",
        "query",
        "--state-dir",
        deployment,
        "--run",
        summary["run_id"],
        "--limit",
        "0",
        "--json",
    )
    records = [json.loads(line) for line in query.stdout.splitlines()]
    journal = tmp_path / "journal.jsonl"
    lines = []
    for r in records:
        payload = r["payload"] if isinstance(r["payload"], str) else json.dumps(r["payload"])
        if r["kind"] == "tick.digest" and r["tick"] == 5:
            body = json.loads(payload)
            body["digest"] = "ff" * 32
            payload = json.dumps(body)
        lines.append(json.dumps({"tick": r["tick"], "kind": r["kind"], "payload": payload}))
    journal.write_text("\n".join(lines) + "\n")
    result = lockstep("replay", "--state-dir", deployment, "--journal", str(journal))
    assert result.returncode == 1
    assert "diverged at tick 5" in result.stderr


def test_bad_scenarios_fail_with_one_line(deployment: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nticks = 5\nspeed = 3\n[modules.x]\nwasm = "x.wasm"\n')
    result = lockstep("run", "--state-dir", deployment, str(bad))
    assert result.returncode == 2 and "unknown key(s) speed" in result.stderr
    bad.write_text('[modules.x]\nwasm = "missing.wasm"\n[[agents]]\nmodule = "x"\nname = "a"\n')
    result = lockstep("run", "--state-dir", deployment, str(bad))
    assert result.returncode == 2 and "cannot read module" in result.stderr


def test_demo_runs_and_verifies_its_replay() -> None:
    result = lockstep("demo", "--scenario", str(SCENARIOS / "pingpong.toml"), "--pools", "1")
    assert result.returncode == 0, result.stderr
    assert "replay verified" in result.stdout and "final digest" in result.stdout


def test_faults_scenario_is_reproducible(deployment: str) -> None:
    path = Path(__file__).parent / "scenarios" / "faults.toml"
    runs = []
    for _ in range(2):
        result = lockstep("run", "--state-dir", deployment, str(path), "--json")
        assert result.returncode == 0, result.stderr
        runs.append(json.loads(result.stdout))
    first, second = runs
    assert first["counters"]["faults"] == 1 and first["counters"]["restarts"] == 1
    assert first["counters"]["undeliverable"] >= 30
    assert first["digests"] == second["digests"]


def test_lifecycle_and_run_control_commands(deployment: str) -> None:
    run_json(deployment, "pingpong.toml")  # registers the pingpong module

    def ok(*args: str) -> str:
        result = lockstep(*args, "--state-dir", deployment)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "takes effect at tick" in ok(
        "agent", "spawn", "left", "--module", "pingpong", "--args", "peer=right rounds=4 start=1"
    )
    ok("agent", "spawn", "right", "--module", "pingpong", "--args", "peer=left rounds=4")
    assert "digest" in ok("step", "2")
    listing = ok("agent", "list")
    assert "left" in listing and "right" in listing
    assert "pausing right" in ok("agent", "pause", "right")
    ok("step", "3")
    assert "paused" in ok("agent", "inspect", "right")
    ok("agent", "resume", "right")
    ok("agent", "send", "right", "hello")
    saved = ok("checkpoint", "--label", "before-the-end")
    checkpoint_id = saved.split()[1]
    out = ok("until", "--idle", "--max-ticks", "100")
    final = out.split("digest ")[-1].strip()
    assert "restored" in ok("restore", checkpoint_id)
    again = ok("until", "--idle", "--max-ticks", "100")
    assert again.split("digest ")[-1].strip() == final
    assert "stopped: idle" in out
    assert "terminated" in ok("agent", "inspect", "left")
    bad = lockstep("agent", "pause", "nobody", "--state-dir", deployment)
    assert bad.returncode == 2 and "NOT_FOUND" in bad.stderr


def test_a_pool_killed_under_the_supervisor_is_recovered(tmp_path: Path) -> None:
    """SIGKILL a pool between ticks: the supervisor restarts it, the orchestrator rebuilds
    the run by replay, and the digests equal those of an undisturbed run."""

    state = str(tmp_path / "state")
    assert lockstep("up", "--state-dir", state, "--pools", "2").returncode == 0
    try:

        def final_digest(kill: bool) -> str:
            run_json(state, "gossip.toml")  # registers gossip; the run ends idle
            for i in range(3):
                args = "n=3 k=2 origin=1" if i == 0 else "n=3 k=2"
                ok = lockstep(
                    "agent",
                    "spawn",
                    f"x{i}",
                    "--module",
                    "gossip",
                    "--args",
                    args.replace("n=3", "n=3 prefix=x"),
                    "--state-dir",
                    state,
                )
                assert ok.returncode == 0, ok.stderr
            assert lockstep("step", "2", "--state-dir", state).returncode == 0
            if kill:
                kill_and_wait_restart(state, "pool-1")
            out = lockstep("until", "--idle", "--max-ticks", "50", "--state-dir", state)
            assert out.returncode == 0, out.stderr
            return out.stdout.split("digest ")[-1].strip()

        assert final_digest(kill=True) == final_digest(kill=False)
    finally:
        lockstep("down", "--state-dir", state)


def test_same_digests_on_one_two_and_three_pool_processes(deployment: str) -> None:
    two = run_json(deployment, "gossip.toml")  # the module deployment runs 2 pools
    for pools in ("1", "3"):
        result = lockstep(
            "run", "--local", "--pools", pools, str(SCENARIOS / "gossip.toml"), "--json"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["digests"] == two["digests"]
