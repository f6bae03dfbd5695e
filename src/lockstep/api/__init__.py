"""Lockstep from Python: deployments, runs, DataFrames, sweeps, forks and diffs.

    import lockstep

    with lockstep.Deployment.local(pools=1) as dep:
        run = dep.run("examples/scenarios/wealth.toml", overrides={"agents.0.count": 100})
        run.agents()          # state and counters per agent (pandas)
        run.digests()         # the digest chain, with per-agent digests
        run.verify()          # replay from the journal, every tick compared

See docs/python.md. Everything here goes through the public gRPC APIs of the orchestrator
and telemetry services.
"""

from __future__ import annotations

from lockstep.api._collect import Collector, gini, model_reporters
from lockstep.api._deployment import (
    AGENT_COLUMNS,
    MESSAGE_COLUMNS,
    Checkpoint,
    Deployment,
    Run,
    RunStatus,
)
from lockstep.api._diff import RunDiff, diff, diff_records
from lockstep.api._export import export_run, read_table, write_table
from lockstep.api._records import (
    OBSERVE_LEVEL,
    JournalRecord,
    agent_digests,
    decode_observation,
    encode_observation,
)
from lockstep.api._sweep import parse_seeds, split_values, sweep
from lockstep.api._trace import chrome_trace
from lockstep.runner import ReplayResult
from lockstep.scenario import Action, AgentGroup, Scenario, load_scenario, scenario_from_dict

__all__ = [
    "AGENT_COLUMNS",
    "MESSAGE_COLUMNS",
    "OBSERVE_LEVEL",
    "Action",
    "AgentGroup",
    "Checkpoint",
    "Collector",
    "Deployment",
    "JournalRecord",
    "ReplayResult",
    "Run",
    "RunDiff",
    "RunStatus",
    "Scenario",
    "agent_digests",
    "chrome_trace",
    "decode_observation",
    "diff",
    "diff_records",
    "encode_observation",
    "export_run",
    "gini",
    "load_scenario",
    "model_reporters",
    "parse_seeds",
    "read_table",
    "scenario_from_dict",
    "split_values",
    "sweep",
    "write_table",
]
