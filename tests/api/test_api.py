"""The Python API end to end on a real local deployment: runs, DataFrames, replay,
checkpoint / restore, fork + diff, export, sweep, the CLI commands on top, the tutorial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import lockstep
from lockstep import Action, ConfigError
from lockstep.api import (
    AGENT_COLUMNS,
    Collector,
    Deployment,
    Run,
    agent_digests,
    diff,
    gini,
    parse_seeds,
    read_table,
    scenario_from_dict,
    split_values,
)
from lockstep.scenario import load_scenario, parse_override

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SMALL = HERE / "wealth_small.toml"
CHAINS = json.loads((ROOT / "tests" / "golden" / "chains.json").read_text())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=240,
        check=False,
    )


def wealth(agents: pd.DataFrame, start: int = 2) -> pd.Series:
    return start + agents["messages_received"] + agents["inbox"] - agents["messages_sent"]


# ---- scenarios, overrides (no services) ------------------------------------------------


@pytest.mark.unit
def test_overrides_are_validated_like_written_values() -> None:
    sc = load_scenario(SMALL, {"agents.0.count": 9, "run.seed": 3, "limits.fuel_per_step": 5000})
    assert (sc.agents[0].count, sc.seed, sc.limits) == (9, 3, {"fuel_per_step": 5000})
    assert sc.agents[0].expand()[0] == ("w0", b"n=9 wealth=2")
    assert sc.with_overrides(ticks=4, seed=1).ticks == 4
    assert parse_override("agents.0.args=n=4 wealth=1") == ("agents.0.args", "n=4 wealth=1")
    assert parse_override('run.label="a b"') == ("run.label", "a b")
    with pytest.raises(ConfigError, match="unknown key"):
        load_scenario(SMALL, {"run.speed": 3})
    with pytest.raises(ConfigError, match="not an index"):
        load_scenario(SMALL, {"agents.3.count": 1})
    with pytest.raises(ConfigError, match=r"\[run\].ticks"):
        load_scenario(SMALL, {"run.ticks": 0})
    assert split_values("4,8") == ["4", "8"]
    assert split_values('"n=4,w=1",[1,2]') == ['"n=4,w=1"', "[1,2]"]
    assert parse_seeds("1..3,9") == [1, 2, 3, 9]
    with pytest.raises(ConfigError):
        parse_seeds("5..1")


@pytest.mark.unit
def test_per_agent_digests_are_read_in_one_place() -> None:
    blob = (1).to_bytes(4, "little") + bytes(range(8)) + (7).to_bytes(4, "little") + b"\xff" * 8
    assert agent_digests({"agents": blob.hex()}) == {1: "0001020304050607", 7: "ff" * 8}
    assert agent_digests({}) == {}


# ---- runs ------------------------------------------------------------------------------


def test_runs_give_the_recorded_digest_chains(dep: Deployment) -> None:
    for name, path in (
        ("faults", ROOT / "tests" / "e2e" / "scenarios" / "faults.toml"),
        ("pingpong", ROOT / "examples" / "scenarios" / "pingpong.toml"),
    ):
        run = dep.run(path)
        assert list(run.digests()["digest"]) == CHAINS[name]["digests"], name
        assert run.digest == CHAINS[name]["digests"][-1]


def test_step_run_until_and_dataframes(dep: Deployment) -> None:
    run = dep.start(SMALL)
    assert run.tick == 0 and isinstance(run, Run)
    assert run.step(3).tick == 3
    st = run.run_until(8)
    assert st.tick == 8 and st.counters["steps"] > 0
    agents = run.agents()
    assert list(agents.columns) == AGENT_COLUMNS and list(agents["name"]) == [
        f"w{i}" for i in range(6)
    ]
    assert wealth(agents).sum() == 12  # every unit is held or in flight: conserved
    digests = run.digests()
    assert list(digests["tick"]) == list(range(1, 9))
    assert digests["digest"].iloc[-1] == st.digest
    assert set(digests["agents"].iloc[0]) == {f"w{i}" for i in range(6)}
    journal = run.journal()
    assert set(journal["kind"]) >= {"run.start", "control.spawn", "tick.digest"}
    assert journal["sequence"].is_monotonic_increasing
    assert run.logs().empty and list(run.observations().columns) == [
        "tick",
        "agent",
        "key",
        "value",
    ]
    idle = dep.start(ROOT / "examples" / "scenarios" / "pingpong.toml")
    done = idle.run_until_idle(max_ticks=500)
    assert done.idle and done.agents_by_state == {"terminated": 2}
    with pytest.raises(ConfigError, match="no longer the deployment's current run"):
        run.step()
    assert run.agents()["steps"].sum() == agents["steps"].sum()  # last table seen


def test_a_scenario_defined_in_python_is_the_file(dep: Deployment) -> None:
    tables = {
        "run": {"seed": 7, "ticks": 12},
        "modules": {"wealth": {"source": "../../examples/agents/wealth/wealth.c"}},
        "agents": [{"module": "wealth", "name": "w{i}", "count": 6, "args": "n={n} wealth=2"}],
    }
    a = dep.run(scenario_from_dict(tables, base_dir=HERE, name="py"))
    b = dep.run(SMALL)
    assert a.digest == b.digest and a.run_id != b.run_id


def test_collector_samples_every_tick(dep: Deployment) -> None:
    collector = Collector(
        model_reporters={"gini": lambda a: gini(wealth(a))},
        agent_reporters={"wealth": wealth, "sent": "messages_sent"},
    )
    run = dep.run(SMALL, collector=collector)
    model = collector.get_model_vars_dataframe()
    assert list(model.index) == list(range(1, 13))
    assert model["digest"].iloc[-1] == run.digest
    assert ((model["gini"] >= 0) & (model["gini"] < 1)).all()
    per_agent = collector.get_agent_vars_dataframe()
    assert per_agent.index.names == ["tick", "agent"] and len(per_agent) == 12 * 6
    assert (per_agent["wealth"].groupby(level="tick").sum() == 12).all()


def test_replay_checkpoint_and_restore(dep: Deployment) -> None:
    run = dep.start(SMALL)
    run.run_until(5)
    cp = run.checkpoint("half")
    assert cp.tick == 5 and cp.run_id == run.run_id
    run.finish()
    chain = list(run.digests()["digest"])
    restored = dep.restore(cp)
    assert restored.tick == 5 and restored.run_id != run.run_id
    assert restored.parent == (run.run_id, cp.id, 5)
    restored.run_until(12)
    assert Run(dep, restored.run_id, None, {}).parent == (run.run_id, cp.id, 5)  # journal
    assert list(restored.digests()["digest"]) == chain  # parent's ticks, then its own
    assert list(restored.digests(lineage=False)["tick"]) == list(range(6, 13))
    result = run.verify()
    assert result.ok and result.ticks == 12


def test_fork_with_an_intervention_and_diff_name_the_fork(dep: Deployment) -> None:
    parent = dep.start(SMALL)
    parent.run_until(6)
    cp = parent.checkpoint()
    parent.finish()
    control = parent.fork(cp)
    control.finish()
    assert diff(parent, control).identical
    treated = parent.fork(cp, [Action(tick=6, terminate=("w3",))])
    treated.finish()
    d = diff(parent, treated)
    assert d.first_tick == cp.tick + 1  # the intervention takes effect right after the fork
    # The terminated agent also logs less afterwards (agent.log records).
    assert d.first_agent == "w3"
    assert {k: v for k, v in d.events_b.items() if k != "agent.log"} == {"control.terminate": 1}
    assert treated.parent is not None and treated.parent[0] == parent.run_id
    out = cli("diff", "--state-dir", str(dep.state_dir), parent.run_id, treated.run_id)
    assert out.returncode == 1, out.stderr
    assert f"diverge at tick {cp.tick + 1}, first in agent w3" in out.stdout
    same = cli("diff", "--state-dir", str(dep.state_dir), parent.run_id, control.run_id, "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["identical"] is True


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_reads_back(dep: Deployment, tmp_path: Path, fmt: str) -> None:
    run = dep.run(SMALL)
    paths = run.export(tmp_path / "api", fmt)
    assert sorted(paths) == ["agents", "journal", "logs", "observations", "ticks"]
    ticks = read_table(paths["ticks"])
    assert list(ticks["digest"]) == list(run.digests()["digest"])
    stats = run.ticks()
    assert list(ticks["steps"]) == list(stats["steps"])  # the per-tick statistics too
    agents = read_table(paths["agents"])
    assert list(agents["messages_sent"]) == list(run.agents()["messages_sent"])
    journal = read_table(paths["journal"])
    assert len(journal) == len(run.journal())
    assert json.loads(journal["payload"].iloc[0])["run_id"] == run.run_id
    out = cli(
        "export",
        run.run_id,
        "--state-dir",
        str(dep.state_dir),
        "--format",
        fmt,
        "--out",
        str(tmp_path / "cli"),
    )
    assert out.returncode == 0, out.stderr
    assert read_table(tmp_path / "cli" / f"ticks.{fmt}").equals(ticks)


def test_run_command_overrides(dep: Deployment) -> None:
    out = cli(
        "run",
        "--state-dir",
        str(dep.state_dir),
        str(SMALL),
        "--seed",
        "3",
        "--ticks",
        "5",
        "--set",
        "agents.0.count=4",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    api = dep.run(SMALL, overrides={"agents.0.count": 4}, seed=3, ticks=5)
    assert summary["tick"] == 5 and summary["digest"] == api.digest
    assert sum(summary["agents_by_state"].values()) == 4


def test_sweep_2_values_by_5_seeds(dep: Deployment, tmp_path: Path) -> None:
    table_path = tmp_path / "sweep.parquet"
    out = cli(
        "sweep",
        str(SMALL),
        "--set",
        "agents.0.count=4,6",
        "--seeds",
        "3..7",
        "--parallel",
        "2",
        "--out",
        str(table_path),
    )
    assert out.returncode == 0, out.stderr
    table = read_table(table_path)
    assert len(table) == 10 and set(table["agents.0.count"]) == {4, 6}
    assert sorted(table["seed"]) == [3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert table["reproduced"].all() and (table["digests_seen"] == 1).all()
    assert (table["deployments"] == "0,1").sum() + (table["deployments"] == "1,0").sum() == 10
    assert table["digest"].nunique() == 10
    # The same parameters and seed on this other deployment give the same digest.
    row = table[(table["agents.0.count"] == 6) & (table["seed"] == 7)].iloc[0]
    assert dep.run(SMALL).digest == row["digest"]


def test_per_tick_statistics_and_the_chrome_trace(dep: Deployment, tmp_path: Path) -> None:
    run = dep.run(SMALL)
    stats = run.ticks()
    status = run.status()
    assert list(stats["tick"]) == list(range(1, 13))
    assert int(stats["steps"].sum()) == status.counters["steps"]
    assert int(stats["messages"].sum()) == status.counters["messages"]
    assert int(stats["fuel"].sum()) == status.counters["fuel_used"]
    assert (stats["wall_ms"] > 0).all() and (stats["agents"] == 6).all()
    assert stats["pools_ms"].map(len).eq(1).all()
    trace = json.loads(run.chrome_trace(tmp_path / "t.json").read_text())
    slices = [e for e in trace["traceEvents"] if e.get("cat") == "tick"]
    assert [e["args"]["tick"] for e in slices] == list(range(1, 13))
    assert trace["otherData"]["run_id"] == run.run_id


def test_tutorial_script(dep: Deployment, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "python" / "wealth_tutorial.py"),
            "--agents",
            "40",
            "--ticks",
            "30",
            "--out",
            str(tmp_path),
            "--state-dir",
            str(dep.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for name in ("wealth_gini.png", "wealth_histogram.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "30 ticks" in out.stdout and " observations; median tick " in out.stdout


def test_observations_of_a_real_run(dep: Deployment) -> None:
    sc = scenario_from_dict(
        {
            "run": {"ticks": 3},
            "modules": {"obs": {"source": "observer.c"}},
            "agents": [{"module": "obs", "name": "o{i}", "count": 2}],
        },
        base_dir=HERE,
    )
    run = dep.run(sc)
    obs = run.observations()
    assert len(obs) == 3 * 2 * 5
    assert set(obs["key"]) == {"wealth", "count", "tick", "third", "neg"}
    assert obs[obs["key"] == "wealth"]["value"].eq(2.5).all()


def test_top_level_names_are_the_api() -> None:
    assert lockstep.Deployment is Deployment and lockstep.diff is diff
    assert set(lockstep.__all__) >= {"Deployment", "Run", "diff", "sweep", "Collector"}


def test_the_message_trace_is_regenerated_by_replay(dep: Deployment, tmp_path: Path) -> None:
    run = dep.run(SMALL)
    agents = run.agents()
    trace = run.messages()
    # Every delivered message, exactly: the per-agent counters agree with the trace.
    assert len(trace) == run.status().counters["messages"]
    got = trace.groupby("receiver").size()
    for _, a in agents.iterrows():
        assert got.get(a["name"], 0) == a["messages_received"]
    sent = trace[trace["kind"] == 0].groupby("sender").size()
    assert int(sent.sum()) == int((agents["messages_sent"] - agents["inbox"]).sum())
    assert (trace["tick"] == trace["send_tick"] + 1).all()  # a unit arrives the next tick
    assert set(trace["payload"]) == {b"1"}
    window = run.messages(3, 4)
    assert set(window["tick"]) == {3, 4}
    assert window.reset_index(drop=True).equals(
        trace[trace["tick"].between(3, 4)].reset_index(drop=True)
    )
    paths = run.export(tmp_path / "with", "csv", messages=True)
    table = read_table(paths["messages"])
    assert len(table) == len(trace) and set(table["payload"].astype(str)) == {"31"}  # hex
    out = cli(
        "export",
        run.run_id,
        "--state-dir",
        str(dep.state_dir),
        "--format",
        "parquet",
        "--out",
        str(tmp_path / "cli"),
        "--messages",
    )
    assert out.returncode == 0, out.stderr
    assert len(read_table(tmp_path / "cli" / "messages.parquet")) == len(trace)
