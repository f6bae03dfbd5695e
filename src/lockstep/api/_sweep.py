"""Parameter sweeps (Mesa's `batch_run`): a grid of overrides x seeds on local deployments."""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from lockstep.api._deployment import Deployment, ScenarioLike, _as_scenario
from lockstep.errors import ConfigError, LockstepError
from lockstep.scenario import Scenario

__all__ = ["parse_seeds", "split_values", "sweep"]

SweepProgress = Callable[[int, int], None]  # (runs done, runs in all)


def parse_seeds(text: str) -> list[int]:
    """`1..10` (inclusive), `1,5,9`, `7`, or a mix: `1..3,10`."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("..")
        try:
            if sep:
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"bad seeds {text!r}: expected e.g. 1..10 or 1,2,3") from None
    if any(s < 0 for s in seeds):
        raise ConfigError(f"bad seeds {text!r}: seeds are >= 0")
    return seeds


def split_values(text: str) -> list[str]:
    """Split a `--set` value list at commas outside quotes and brackets:
    `4,8` -> [4, 8]; `"n=4 w=1","n=8 w=1"` -> two strings; `[1,2],[3]` -> two arrays."""
    out: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return [v.strip() for v in out]


@dataclass(frozen=True)
class _Cell:
    index: int
    params: tuple[tuple[str, Any], ...]
    seed: int


def _observed(run: Any, keys: Sequence[str]) -> dict[str, float | None]:
    if not keys:
        return {}
    obs = run.observations()
    out: dict[str, float | None] = {}
    for key in keys:
        rows = obs[obs["key"] == key]
        if rows.empty:
            out[f"obs_{key}_mean"] = None
            continue
        last = rows[rows["tick"] == rows["tick"].max()]
        out[f"obs_{key}_mean"] = float(last["value"].mean())
    return out


def sweep(
    scenario: ScenarioLike,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: Iterable[int] = (0,),
    *,
    parallel: int = 1,
    repeats: int = 2,
    pools: int | None = None,
    observe: Sequence[str] = (),
    progress: SweepProgress | None = None,
) -> pd.DataFrame:
    """Run `scenario` for every combination of `grid` values (dotted override paths ->
    values) and every seed, on `parallel` private local deployments, and return one row per
    combination: the parameters, seed, run id, final tick and digest, counters, agents by
    state, `obs_<key>_mean` for each key in `observe` (mean over agents at the last observed
    tick), and determinism columns.

    Every combination runs `repeats` times (repeat r of combination i on deployment
    (i + r) mod `parallel`, so on different deployments when `parallel` > 1):
    `reproduced` is True when every repeat gave the same digest chain, False when not
    (`digests_seen` says how many distinct final digests), and None with `repeats=1`."""
    base = _as_scenario(scenario)
    grid = dict(grid or {})
    if parallel < 1 or repeats < 1:
        raise ConfigError("parallel and repeats must be >= 1")
    for path, values in grid.items():
        if not values:
            raise ConfigError(f"--set {path}: no values")
    names = list(grid)
    combos = list(itertools.product(*(grid[n] for n in names))) or [()]
    seed_list = list(seeds)
    cells = [
        _Cell(i, tuple(zip(names, combo, strict=True)), s)
        for i, (combo, s) in enumerate(itertools.product(combos, seed_list))
    ]
    # Validate every variant before starting anything.
    variants: dict[int, Scenario] = {
        c.index: base.with_overrides(dict(c.params), seed=c.seed) for c in cells
    }
    total = len(cells) * repeats
    n_workers = min(parallel, total)
    # Repeat r of combination i goes to deployment (i + r) mod N: with N > 1 the repeats of
    # one combination run on different deployments.
    tasks: list[queue.Queue[tuple[_Cell, int]]] = [queue.Queue() for _ in range(n_workers)]
    for rep in range(repeats):
        for c in cells:
            tasks[(c.index + rep) % n_workers].put((c, rep))
    results: dict[tuple[int, int], dict[str, Any]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    done = [0]

    def worker(wid: int) -> None:
        try:
            with Deployment.local(pools or base.pools) as dep:
                while not errors:
                    try:
                        cell, rep = tasks[wid].get_nowait()
                    except queue.Empty:
                        return
                    run = dep.run(variants[cell.index])
                    st = run.status()
                    chain = tuple(run.digests(lineage=False)["digest"])
                    row: dict[str, Any] = {
                        "run_id": run.run_id,
                        "tick": st.tick,
                        "digest": st.digest,
                        "chain": chain,
                        "deployment": wid,
                    }
                    row.update(st.counters)
                    row.update({f"agents_{k}": v for k, v in st.agents_by_state.items()})
                    row.update(_observed(run, observe))
                    with lock:
                        results[(cell.index, rep)] = row
                        done[0] += 1
                        if progress is not None:
                            progress(done[0], total)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        exc = errors[0]
        if isinstance(exc, LockstepError):
            raise exc
        raise ConfigError(f"sweep failed: {type(exc).__name__}: {exc}") from exc
    rows = []
    for c in cells:
        reps = [results[(c.index, r)] for r in range(repeats)]
        first = dict(reps[0])
        chains = {r["chain"] for r in reps}
        row: dict[str, Any] = {path: value for path, value in c.params}
        row["seed"] = c.seed
        del first["chain"]
        first.pop("deployment")
        row.update(first)
        row["repeats"] = repeats
        row["digests_seen"] = len({r["digest"] for r in reps})
        row["reproduced"] = (len(chains) == 1) if repeats > 1 else None
        row["deployments"] = ",".join(str(r["deployment"]) for r in reps)
        rows.append(row)
    frame = pd.DataFrame(rows)
    count_cols = [c for c in frame.columns if c.startswith("agents_")]
    frame[count_cols] = frame[count_cols].fillna(0).astype("int64")
    return frame
