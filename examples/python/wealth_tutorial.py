"""The Boltzmann wealth model (Mesa's introductory tutorial) on Lockstep, from Python.

    python examples/python/wealth_tutorial.py                  # 100 agents, 100 ticks
    python examples/python/wealth_tutorial.py --agents 50 --ticks 40 --out /tmp/figs
    python examples/python/wealth_tutorial.py --state-dir ~/.lockstep   # a running `lockstep up`

N agents start with one unit of wealth; every tick each agent with wealth gives one unit
to a uniformly random other agent (examples/agents/wealth/wealth.c; the unit travels as a
message and arrives the next tick). As in Mesa's tutorial, a DataCollector records the
Gini coefficient every tick and each agent's wealth; the script plots Gini over time and
the final wealth histogram (with the Boltzmann-Gibbs expectation) and saves both figures.

Each agent reports its wealth every step with `ls_observe("wealth", w)` (wealth.c's
`observe=1`): the observations come back from the journal as a (tick, agent, key, value)
DataFrame, like the agent variables of Mesa's DataCollector. An agent that is not stepped
at a tick is asleep with wealth 0 (it returned idle and no unit arrived). The run's
per-tick statistics (`run.ticks()`) give the wall time per tick.
Without --state-dir the script starts a private local deployment and stops it after.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEALTH = ROOT / "examples" / "scenarios" / "wealth.toml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--ticks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="use this running deployment instead of starting one",
    )
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    import lockstep
    from lockstep.api import gini

    scenario = lockstep.load_scenario(
        WEALTH,
        overrides={
            "agents.0.count": args.agents,
            "agents.0.args": "n={n} wealth=1 observe=1",
            "run.ticks": args.ticks,
            "run.seed": args.seed,
            "run.label": "wealth-tutorial",
        },
    )
    deployment = (
        lockstep.Deployment.connect(args.state_dir)
        if args.state_dir
        else lockstep.Deployment.local(pools=1)
    )
    with deployment as dep:
        run = dep.run(scenario)
        status = run.status()
        names = list(run.agents()["name"])
        observations = run.observations()
        ticks = run.ticks()

    # Agent variables: wealth per (tick, agent); agents not stepped at a tick hold 0.
    reported = observations[observations["key"] == "wealth"]
    table: pd.DataFrame = reported.pivot(index="tick", columns="agent", values="value")
    table = table.reindex(index=range(1, status.tick + 1), columns=names).fillna(0)
    totals = table.sum(axis=1)
    if not (totals == args.agents).all():
        print(
            f"error: wealth not conserved: {totals[totals != args.agents].head()}", file=sys.stderr
        )
        return 1
    model = pd.DataFrame({"gini": table.apply(gini, axis=1)})  # a model-level reporter
    final = table.loc[status.tick]

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(model.index, model["gini"], color="tab:blue")
    ax.set_xlabel("tick")
    ax.set_ylabel("Gini coefficient")
    ax.set_title(f"Boltzmann wealth model on Lockstep ({args.agents} agents, seed {args.seed})")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    gini_path = args.out / "wealth_gini.png"
    fig.savefig(gini_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    top = int(final.to_numpy().max())
    ax.hist(
        final, bins=range(top + 2), align="left", rwidth=0.85, color="tab:green", label="agents"
    )
    # Boltzmann-Gibbs for integer wealth with mean 1: P(w) = 2^-(w+1).
    xs = list(range(top + 1))
    ax.plot(xs, [args.agents * 2.0 ** -(w + 1) for w in xs], "k.--", label="exponential")
    ax.set_xlabel("wealth")
    ax.set_ylabel("agents")
    ax.set_title(f"Wealth after {status.tick} ticks")
    ax.legend()
    fig.tight_layout()
    hist_path = args.out / "wealth_histogram.png"
    fig.savefig(hist_path, dpi=110)
    plt.close(fig)

    print(f"run {run.run_id}: {status.tick} ticks, final digest {status.digest}")
    print(
        f"Gini: tick 1 {model['gini'].iloc[0]:.3f}, tick {status.tick} {model['gini'].iloc[-1]:.3f}"
    )
    print(
        f"{len(observations)} observations; median tick {ticks['wall_ms'].median():.2f} ms "
        f"({int(ticks['steps'].sum())} steps, {int(ticks['messages'].sum())} messages)"
    )
    print(f"figures: {gini_path}, {hist_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
