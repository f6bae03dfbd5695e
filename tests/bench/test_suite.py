"""The benchmark suite's plumbing: selection, table, JSON shape, and one real --quick run.

Never asserts on timings: only on the shape of what the suite reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import METRIC_KEYS, metric
from bench.goals import GOALS, shortfalls, verdict
from bench.peers import gini
from bench.suite import MODULES, render, run_suite, select, write_json

REPO = Path(__file__).resolve().parents[2]
CLI = "import lockstep.cli._bench; from lockstep.cli._app import main; main()"


@pytest.mark.unit
def test_select_modules_and_prefixes() -> None:
    assert select([]) == list(MODULES)
    assert select(["orchestrator.tick", "peers"]) == ["orchestrator", "peers"]
    with pytest.raises(ValueError, match="unknown benchmark nope"):
        select(["nope"])


@pytest.mark.unit
def test_metric_ratio_and_spread() -> None:
    m = metric("x.y", "ms", [1.0, 2.0, 3.0, 4.0], "base", [2.0, 2.0], "< 10 ms", "< 1 ms")
    assert set(METRIC_KEYS) <= set(m)
    assert (m["median"], m["baseline_median"], m["ratio"]) == (2.5, 2.0, 1.25)
    assert m["p10"] == 1.0 and m["p90"] == 4.0
    no_base = metric("x.z", "KiB", [5.0], "-", [], "-", "-")
    assert no_base["ratio"] is None and no_base["baseline_median"] is None


@pytest.mark.unit
def test_gini() -> None:
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 4]) == pytest.approx(0.75)
    assert gini([]) == 0.0


@pytest.mark.unit
def test_render_and_write(tmp_path: Path) -> None:
    doc = {
        "quick": True,
        "only": [],
        "created": "2026-01-01T00:00:00+00:00",
        "module_seconds": {"orchestrator": 1.0},
        "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 1.0, "python": "3.11"},
        "metrics": [
            metric(
                "orchestrator.tick_50_agents",
                "ms",
                [2.0],
                "raw rtt",
                [0.5],
                "< 10 ms",
                "< 1 ms",
                pools=3,
            ),
            {"name": "telemetry", "error": "boom"},
            {"name": "peers.mesa", "skipped": "no venv"},
        ],
    }
    text = render(doc)
    assert "orchestrator.tick_50_agents" in text and "4.00" in text
    assert "telemetry: boom" in text and "peers.mesa: no venv" in text
    assert "orchestrator.tick_50_agents: pools=3" in text
    path = write_json(doc, tmp_path / "out" / "r.json")
    assert json.loads(path.read_text())["metrics"][0]["ratio"] == 4.0
    again = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--render", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert again.stdout == text + "\n"


@pytest.mark.unit
def test_goals_say_met_or_by_how_much_a_figure_falls_short() -> None:
    rtt = metric("orchestrator.pool_round_trip", "us", [40.0], "rtt", [500.0], "-", "-")
    assert verdict(rtt) == "met"
    slow = metric("orchestrator.pool_round_trip", "us", [120.0], "rtt", [500.0], "-", "-")
    assert verdict(slow) == "2.4x short"  # <= 50 us: 120 / 50
    mesa = metric("peers.wealth.ticks_per_s.10000", "tick/s", [85.0], "Mesa", [100.0], "-", "-")
    assert verdict(mesa) == "1.2x short"  # ratio 0.85 against >= 1x: 1 / 0.85
    both = metric("orchestrator.tick_overhead_50_agents", "ms", [0.2], "rtt", [0.5], "-", "-")
    assert verdict(both) == "kernel: met; shm: 2x short"  # <= 0.3 ms and <= 0.1 ms
    assert verdict(metric("x.no_goal", "ms", [1.0], "-", [], "-", "-")) == ""
    assert all(
        g.op in (">=", "<=") and g.of in ("median", "ratio") for gs in GOALS.values() for g in gs
    )
    met, short = shortfalls([rtt, slow, mesa, {"name": "telemetry", "error": "boom"}])
    assert met == 1
    assert short == [
        "orchestrator.pool_round_trip: 120.0 us, goal <= 50 us: 2.4x short",
        "peers.wealth.ticks_per_s.10000: 0.85x, goal >= 1x: 1.2x short",
    ]
    text = render(
        {
            "quick": False,
            "module_seconds": {},
            "machine": {"cpu": "cpu", "cores": 2, "memory_gib": 1.0, "python": "3.11"},
            "metrics": [rtt, slow],
        }
    )
    assert "vs goal" in text and "goals (bench/goals.py): 1 met, 1 short" in text
    assert "short: orchestrator.pool_round_trip: 120 us, goal <= 50 us: 2.4x short" in text


@pytest.mark.unit
def test_missing_module_is_reported_not_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.suite.MODULES", ("no_such_bench",))
    doc = run_suite(True, [])
    assert doc["metrics"][0]["name"] == "no_such_bench"
    assert "not written yet" in doc["metrics"][0]["error"]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_quick_run_writes_json(tmp_path: Path) -> None:
    """A real --quick run of one cheap metric (pool process + orchestrator + echo server)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CLI,
            "bench",
            "--quick",
            "--only",
            "orchestrator.tick",
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "orchestrator.tick_50_agents" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["quick"] is True and doc["only"] == ["orchestrator.tick"]
    assert {"cpu", "cores", "python", "wasmtime", "grpcio"} <= set(doc["machine"])
    names = [m["name"] for m in doc["metrics"]]
    assert names and all(n.startswith("orchestrator.tick") for n in names)
    for m in doc["metrics"]:
        assert set(METRIC_KEYS) <= set(m)
        for key in ("median", "p10", "p90", "baseline_median", "ratio"):
            assert isinstance(m[key], float)
        assert isinstance(m["baseline"], str) and m["baseline"] != "-"


@pytest.mark.integration
def test_cli_rejects_unknown_benchmark(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "bench", "--only", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown benchmark nope" in proc.stderr
