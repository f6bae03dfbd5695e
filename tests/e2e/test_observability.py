"""Observability end to end: `lockstep logs`, `lockstep ticks` (and its Chrome trace), and
every service's Prometheus endpoint under `lockstep up --metrics`, parsed with
prometheus_client's own parser."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lockstep.supervisor import SupervisorState
from tests.e2e.test_supervisor import lockstep

pytestmark = pytest.mark.e2e
SCENARIO = Path(__file__).resolve().parent / "scenarios" / "logging.toml"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:  # type: ignore[type-arg]
    state = str(tmp_path_factory.mktemp("obs") / "state")
    up = lockstep("up", "--state-dir", state, "--pools", "2", "--metrics")
    assert up.returncode == 0, up.stderr
    try:
        run = lockstep("run", "--state-dir", state, str(SCENARIO), "--json")
        assert run.returncode == 0, run.stderr
        yield state, json.loads(run.stdout)
    finally:
        lockstep("down", "--state-dir", state)


def ok(*args: str) -> str:
    result = lockstep(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_logs_print_the_agents_lines_and_match_the_journal(
    deployment: tuple[str, dict],  # type: ignore[type-arg]
) -> None:
    state, summary = deployment
    run_id = summary["run_id"]
    text = ok("logs", run_id, "--state-dir", state)
    assert "w0" in text and "wealth=" in text and "info" in text
    lines = [json.loads(x) for x in ok("logs", "--state-dir", state, "--json").splitlines()]
    # w0..w3 log at ticks 2, 4, 6, 8; x0 while it has wealth, and warns of undeliverable units.
    info = [ln for ln in lines if ln["level"] == 2]
    assert sorted({ln["tick"] for ln in info if ln["agent"] == "w1"}) == [2, 4, 6, 8]
    assert {ln["agent"] for ln in info} == {"w0", "w1", "w2", "w3", "x0"}
    assert all(ln["run_id"] == run_id for ln in lines)  # no RUN: the latest run
    journal = ok(
        "journal",
        "query",
        "--state-dir",
        state,
        "--run",
        run_id,
        "--kind",
        "agent.log",
        "--limit",
        "0",
        "--json",
    ).splitlines()
    assert len(journal) == len(lines)
    one = [
        json.loads(x)
        for x in ok(
            "logs", run_id[:6], "--state-dir", state, "--agent", "w1", "--ticks", "3..6", "--json"
        ).splitlines()
    ]
    assert [(ln["agent"], ln["tick"]) for ln in one] == [("w1", 4), ("w1", 6)]
    warn = [
        json.loads(x)
        for x in ok("logs", run_id, "--state-dir", state, "--level", "warn", "--json").splitlines()
    ]
    assert warn and all(ln["level"] == 3 and ln["agent"] == "x0" for ln in warn)
    bad = lockstep("logs", run_id, "--state-dir", state, "--ticks", "9..2")
    assert bad.returncode == 2 and "range is empty" in bad.stderr
    bad = lockstep("logs", run_id, "--state-dir", state, "--level", "loud")
    assert bad.returncode == 2 and "--level" in bad.stderr
    bad = lockstep("logs", "nosuchrun", "--state-dir", state)
    assert bad.returncode == 2 and "no run" in bad.stderr
    replay = ok("replay", "--state-dir", state, run_id)
    assert "8 tick digests identical" in replay


def test_ticks_add_up_to_the_run_and_export_a_chrome_trace(
    deployment: tuple[str, dict],  # type: ignore[type-arg]
    tmp_path: Path,
) -> None:
    state, summary = deployment
    run_id = summary["run_id"]
    rows = [json.loads(x) for x in ok("ticks", run_id, "--state-dir", state, "--json").splitlines()]
    assert [r["tick"] for r in rows] == list(range(1, 9))
    c = summary["counters"]
    assert sum(r["steps"] for r in rows) == c["steps"]
    assert sum(r["messages"] for r in rows) == c["messages"]
    assert sum(r["fuel"] for r in rows) == int(c["fuel_used"])
    assert rows[0]["spawned"] == 5 and all(len(r["pools_ms"]) == 2 for r in rows)
    assert all(r["wall_ms"] > 0 and r["agents"] == 5 for r in rows)
    table = ok("ticks", run_id, "--state-dir", state, "--ticks", "2..3")
    assert "2 ticks" in table and "wall ms" in table
    trace_file = tmp_path / "trace.json"
    ok("ticks", run_id, "--state-dir", state, "--chrome-trace", str(trace_file))
    trace = json.loads(trace_file.read_text())
    ticks = [e for e in trace["traceEvents"] if e.get("cat") == "tick"]
    batches = [e for e in trace["traceEvents"] if e.get("cat") == "pool"]
    assert [e["args"]["tick"] for e in ticks] == list(range(1, 9))
    assert all(e["ph"] == "X" and e["dur"] > 0 for e in ticks)
    assert {e["tid"] for e in batches} == {1, 2}  # one track per pool
    assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(ticks))


EXPECTED = {
    "orchestrator": {
        "lockstep_orchestrator_ticks",
        "lockstep_orchestrator_tick_duration_seconds",
        "lockstep_orchestrator_agents",
        "lockstep_orchestrator_agent_steps",
        "lockstep_orchestrator_messages_delivered",
        "lockstep_orchestrator_agent_faults",
        "lockstep_orchestrator_fuel_used",
        "lockstep_orchestrator_inference_in_flight",
    },
    "pool-0": {
        "lockstep_pool_instances",
        "lockstep_pool_agent_calls",
        "lockstep_pool_faults",
        "lockstep_pool_batch_duration_seconds",
    },
    "pool-1": {"lockstep_pool_instances", "lockstep_pool_agent_calls"},
    "inference": {
        "lockstep_inference_requests",
        "lockstep_inference_cache_bytes",
        "lockstep_inference_provider",
    },
    "telemetry": {
        "lockstep_telemetry_records_appended",
        "lockstep_telemetry_head_sequence",
        "lockstep_telemetry_append_seconds",
    },
}


def scrape(address: str) -> dict[str, object]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {fam.name: fam for fam in text_string_to_metric_families(text)}


def test_every_service_serves_prometheus_metrics(deployment: tuple[str, dict]) -> None:  # type: ignore[type-arg]
    state_dir, summary = deployment
    state = SupervisorState.load(Path(state_dir))
    assert state is not None
    families = {svc.name: scrape(svc.metrics) for svc in state.services}
    for name, wanted in EXPECTED.items():
        got = families[name]
        assert wanted <= set(got), (name, sorted(wanted - set(got)))
        # Process collectors and the per-RPC counters are on in every service.
        assert {
            "process_cpu_seconds",
            "process_resident_memory_bytes",
            "grpc_server_handled",
        } <= set(got), name
    orch = families["orchestrator"]

    def value(fam: object, sample: str, **labels: str) -> float:
        return sum(
            s.value
            for s in fam.samples  # type: ignore[attr-defined]
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
        )

    assert value(orch["lockstep_orchestrator_ticks"], "lockstep_orchestrator_ticks_total") >= 8
    assert (
        value(orch["lockstep_orchestrator_agents"], "lockstep_orchestrator_agents", state="running")
        + value(orch["lockstep_orchestrator_agents"], "lockstep_orchestrator_agents", state="idle")
        == 5
    )
    steps = value(
        orch["lockstep_orchestrator_agent_steps"], "lockstep_orchestrator_agent_steps_total"
    )
    pool_steps = sum(
        value(
            families[p]["lockstep_pool_agent_calls"],
            "lockstep_pool_agent_calls_total",
            phase="step",
        )
        for p in ("pool-0", "pool-1")
    )
    # The pools also count the steps of replays (the logs test replays the run).
    assert steps == summary["counters"]["steps"] and pool_steps >= steps
    assert (
        value(families["pool-0"]["lockstep_pool_instances"], "lockstep_pool_instances")
        + value(families["pool-1"]["lockstep_pool_instances"], "lockstep_pool_instances")
        == 5
    )
    handled = families["orchestrator"]["grpc_server_handled"]
    assert value(handled, "grpc_server_handled_total", grpc_method="StartRun", grpc_code="OK") >= 1
    status = ok("status", "--state-dir", state_dir)
    assert "/metrics" in status and state.service("orchestrator").metrics in status


@pytest.mark.timeout(120)
def test_logs_follow_prints_new_lines_as_the_run_goes_on(
    deployment: tuple[str, dict],  # type: ignore[type-arg]
) -> None:
    # Last in this file: it starts another run on the deployment.
    from lockstep.api import Deployment

    state, _ = deployment
    with Deployment.connect(state) as dep:
        run = dep.start(SCENARIO)
        run.step(2)
        with subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep.cli",
                "logs",
                run.run_id,
                "--state-dir",
                state,
                "--agent",
                "w0",
                "--follow",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        ) as proc:
            try:
                assert proc.stdout is not None
                assert json.loads(proc.stdout.readline())["tick"] == 2  # already journalled
                run.step(2)  # the next line arrives while the command follows
                line = json.loads(proc.stdout.readline())
                assert (line["agent"], line["tick"], line["run_id"]) == ("w0", 4, run.run_id)
            finally:
                proc.terminate()
