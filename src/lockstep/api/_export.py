"""Export a run's data as CSV or Parquet files (`lockstep export`, `Run.export`)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from lockstep.api._records import (
    TICK_STATS_COLUMNS,
    spawned_names,
    tick_digests,
    tick_stats_rows,
)
from lockstep.errors import ConfigError

if TYPE_CHECKING:
    from lockstep.api._deployment import Run

__all__ = ["FORMATS", "export_run", "read_table", "write_table"]

FORMATS = ("csv", "parquet")


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` as CSV or Parquet, by the suffix of `path`; nested values (dicts,
    lists) become canonical JSON text."""
    out = frame.copy()
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list | tuple)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, sort_keys=True,
                                                         separators=(",", ":")))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        out.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        out.to_csv(path, index=False)
    else:
        raise ConfigError(f"{path}: unknown table format (use .csv or .parquet)")
    return path


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a table written by `write_table` (CSV or Parquet, by suffix)."""
    p = Path(path)
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    return pd.read_csv(p)


def _ticks(run: Run) -> pd.DataFrame:
    """Per tick: digest, the tick's statistics (`tick.stats`, pools_ms as text) and the
    number of each kind of journal event of that tick."""
    records = run.lineage_records()
    stats = {row["tick"]: row for row in tick_stats_rows(records)}
    kinds = Counter((r.tick, r.kind) for r in records
                    if r.kind not in ("tick.digest", "tick.stats", "run.start"))
    all_kinds = sorted({k for _, k in kinds})
    rows = []
    for tick, (digest, per_agent) in sorted(tick_digests(records).items()):
        row: dict[str, Any] = {"tick": tick, "digest": digest,
                               "agents_touched": len(per_agent)}
        st = stats.get(tick, {})
        for col in TICK_STATS_COLUMNS[1:]:
            value = st.get(col)
            row[col] = (",".join(f"{x:g}" for x in value) if isinstance(value, list)
                        else value)
        for kind in all_kinds:
            row[kind.replace(".", "_")] = kinds.get((tick, kind), 0)
        rows.append(row)
    return pd.DataFrame(rows, columns=["tick", "digest", "agents_touched",
                                       *TICK_STATS_COLUMNS[1:],
                                       *(k.replace(".", "_") for k in all_kinds)])


def _agents(run: Run) -> pd.DataFrame:
    """Live agent table if available, else the spawns from the journal."""
    try:
        return run.agents()
    except ConfigError:
        records = run.lineage_records()
        spawns = [r for r in records if r.kind == "control.spawn"]
        names = spawned_names(spawns)
        faults = Counter(str(r.payload.get("name", "")) for r in records
                         if r.kind == "agent.fault")
        done = {str(r.payload.get("name", "")) for r in records if r.kind == "agent.done"}
        rows = [{"name": names[int(r.payload["seq"])], "sequence": int(r.payload["seq"]),
                 "module_hash": r.payload.get("module", ""), "spawn_tick": r.tick,
                 "priority": r.payload.get("priority", 0),
                 "faults": faults.get(str(r.payload["name"]), 0),
                 "done": str(r.payload["name"]) in done} for r in spawns]
        return pd.DataFrame(rows, columns=["name", "sequence", "module_hash", "spawn_tick",
                                           "priority", "faults", "done"])


def export_run(run: Run, out_dir: Path, fmt: str = "csv") -> dict[str, Path]:
    """Write ticks, agents, observations, logs and journal tables of `run` into `out_dir`
    as `<table>.csv` or `<table>.parquet`; returns {table: path}.

    - ticks: tick, digest, agents touched, and per journal kind the number of events;
    - agents: the live agent table (state and counters) while the run is current, or the
      last one this handle read; else the spawns, faults and completions from the journal;
    - observations: tick, agent, key, value; logs: tick, agent, level, text;
    - journal: every record (payload as canonical JSON text).

    The message trace is not exported: agents' messages are not journalled, and the
    public Replay call reports digests, not messages."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    tables = {"ticks": _ticks(run), "agents": _agents(run), "observations": run.observations(),
              "logs": run.logs(), "journal": run.journal()}
    return {name: write_table(frame, out_dir / f"{name}.{fmt}")
            for name, frame in tables.items()}
