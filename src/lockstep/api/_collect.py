"""A DataCollector in the manner of Mesa's: model and agent variables sampled per tick.

Sampling reads the public API only (`GetStatus`, `ListAgents`) after each tick, so what it
records is what the orchestrator reports; nothing is estimated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from lockstep.api._deployment import Run

__all__ = ["Collector", "gini", "model_reporters"]

AgentReporter = str | Callable[[pd.DataFrame], "pd.Series[Any]"]
ModelReporter = Callable[[pd.DataFrame], Any]


def gini(values: Sequence[float] | pd.Series[Any]) -> float:
    """The Gini coefficient (Mesa's Boltzmann tutorial `compute_gini`): 0 equal, -> 1 one
    holds all."""
    x = sorted(float(v) for v in values)
    n = len(x)
    total = sum(x)
    if not n or not total:
        return 0.0
    b = sum(xi * (n - i) for i, xi in enumerate(x)) / (n * total)
    return 1 + (1 / n) - 2 * b


class Collector:
    """Samples a run after every `every`-th tick while `Run.step` / `Run.run_until` (given
    `collector=`) advance it, or whenever `collect(run)` is called.

    - `model_reporters`: name -> function of the agents DataFrame at that tick (one row per
      agent, indexed by name, columns as `Run.agents()`), returning one value.
    - `agent_reporters`: name -> a column name of that DataFrame, or a function returning a
      Series indexed by agent name.

    Results: `model_vars()` (index tick; the reporters plus the run's counters and digest),
    `agent_vars()` (index (tick, agent)); Mesa's names `get_model_vars_dataframe` /
    `get_agent_vars_dataframe` work too.
    """

    def __init__(
        self,
        model_reporters: Mapping[str, ModelReporter] | None = None,
        agent_reporters: Mapping[str, AgentReporter] | None = None,
        every: int = 1,
    ) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.model_reporters = dict(model_reporters or {})
        self.agent_reporters = dict(agent_reporters or {})
        self.every = every
        self._model: list[dict[str, Any]] = []
        self._agents: list[pd.DataFrame] = []

    def collect(self, run: Run) -> None:
        """Sample `run` now (at its current tick)."""
        status = run.status()
        row: dict[str, Any] = {"tick": status.tick, "digest": status.digest}
        row.update(status.counters)
        row.update({f"agents_{k}": v for k, v in status.agents_by_state.items()})
        need_agents = bool(self.model_reporters or self.agent_reporters)
        agents = run.agents().set_index("name") if need_agents else pd.DataFrame()
        for name, fn in self.model_reporters.items():
            row[name] = fn(agents)
        self._model.append(row)
        if self.agent_reporters:
            frame = pd.DataFrame(index=agents.index)
            for name, rep in self.agent_reporters.items():
                frame[name] = agents[rep] if isinstance(rep, str) else rep(agents)
            frame.insert(0, "tick", status.tick)
            self._agents.append(frame.reset_index().rename(columns={"name": "agent"}))

    def maybe_collect(self, run: Run, tick: int) -> None:
        """Sample if `tick` is one of the collector's ticks (a multiple of `every`)."""
        if tick % self.every == 0:
            self.collect(run)

    def model_vars(self) -> pd.DataFrame:
        """One row per sampled tick (index `tick`)."""
        if not self._model:
            return pd.DataFrame(columns=["digest"], index=pd.Index([], name="tick"))
        frame = pd.DataFrame(self._model).drop_duplicates("tick", keep="last")
        states = [c for c in frame.columns if c.startswith("agents_")]
        frame[states] = frame[states].fillna(0).astype("int64")
        return frame.set_index("tick")

    def agent_vars(self) -> pd.DataFrame:
        """One row per (tick, agent) sampled (MultiIndex)."""
        if not self._agents:
            return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["tick", "agent"]))
        frame = pd.concat(self._agents, ignore_index=True)
        return frame.drop_duplicates(["tick", "agent"], keep="last").set_index(["tick", "agent"])

    get_model_vars_dataframe = model_vars
    get_agent_vars_dataframe = agent_vars


def model_reporters(
    observations: pd.DataFrame, reporters: Mapping[str, Callable[[pd.DataFrame], Any]]
) -> pd.DataFrame:
    """Model-level values per tick computed from observations (the (tick, agent, key, value)
    DataFrame of `Run.observations()`): each reporter gets, per tick, a DataFrame with one
    row per agent and one column per observed key. Index: tick."""
    if observations.empty:
        return pd.DataFrame(columns=list(reporters), index=pd.Index([], name="tick"))
    wide = observations.pivot_table(
        index=["tick", "agent"], columns="key", values="value", aggfunc="last"
    )
    rows = {}
    for tick, frame in wide.groupby(level="tick"):
        per_agent = frame.droplevel("tick")
        rows[tick] = {name: fn(per_agent) for name, fn in reporters.items()}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "tick"
    return out
