"""The seeded fault-injection suite's harness (issue 11, docs/faults.md).

One case = one seed: `lockstep.faults.draw(seed)` picks the faults (kinds, targets, ticks,
phases, durations), a fresh `lockstep up` runs with that plan in LOCKSTEP_FAULTS, and
`lockstep run` drives the fault scenario (tests/faults/scenario.toml: 2 pools, 200
wealth agents, an oracle asking the inference service every tick). The invariant, for
every case: either the run completes (reconnecting by itself if the orchestrator died)
or it fails closed with a precise error and `lockstep run --resume` (after a new `lockstep
up` when the supervisor died) finishes it; and then its digest chain equals the fault-free
run's, every journal record of the fault-free run is there exactly once (recovery and
resume notes aside), and telemetry's hash chain verifies.

    python3 dev.py soak --seed S --cases N     # N cases from seed S (S, S+1, ...)
    python tests/faults/harness.py --seed S --cases N [--table docs/faults.md]

A failing case prints its seed; `--seed SEED --cases 1` reruns exactly that case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `python tests/faults/harness.py`
    sys.path.insert(0, str(ROOT))

from lockstep import faults  # noqa: E402
from lockstep.auth import Role, TokenStore  # noqa: E402
from lockstep.dial import AuthedChannel  # noqa: E402
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb  # noqa: E402
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc  # noqa: E402
from lockstep.supervisor import SupervisorState  # noqa: E402
from lockstep.telemetry_client import TelemetryClient  # noqa: E402

SCENARIO = ROOT / "tests" / "faults" / "scenario.toml"
TABLE = ROOT / "docs" / "faults.md"
POOLS = 2
TICKS = 60
CHECKPOINT_EVERY = 10
# Journal kinds that differ between a faulted run and the fault-free one by design: the
# recovery and resume notes, wall times, and run.start's run id (compared without it).
VARYING = frozenset({"tick.stats", "run.recover", "run.resume"})
BEGIN, END = "<!-- soak table: begin -->", "<!-- soak table: end -->"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 240
) -> tuple[int, str, str]:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "lockstep.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**(env or os.environ), "COLUMNS": "200"},
        )
    except subprocess.TimeoutExpired as exc:
        return 124, str(exc.stdout or ""), f"timed out after {timeout:g} s: lockstep {args[0]}"
    return out.returncode, out.stdout, out.stderr


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@dataclass
class Journal:
    digests: list[str]
    records: list[tuple[int, str, str]]  # (tick, kind, payload) of the compared kinds
    verified: bool
    detail: str = ""


def read_journal(state: Path, run_id: str) -> Journal:
    sup = SupervisorState.load(state)
    assert sup is not None, f"no deployment in {state}"
    token = TokenStore.load(sup.tokens_path).token(Role.ADMIN)
    with AuthedChannel(sup.service("telemetry").address, token) as channel:
        client = TelemetryClient(channel)
        records = []
        digests: dict[int, list[str]] = {}
        for r in client.query(run_id):
            payload = r.payload.decode()
            if r.kind == "tick.digest":
                digests.setdefault(r.tick, []).append(json.loads(payload)["digest"])
            if r.kind in VARYING:
                continue
            if r.kind == "run.start":
                body = json.loads(payload)
                body.pop("run_id", None)
                payload = json.dumps(body, sort_keys=True)
            records.append((r.tick, r.kind, payload))
        verdict = client.verify()
    chain = [d for t in sorted(digests) for d in digests[t]]
    return Journal(chain, records, verdict.ok, verdict.reason)


def current_run(state: Path) -> opb.RunStatus:
    sup = SupervisorState.load(state)
    assert sup is not None
    token = TokenStore.load(sup.tokens_path).token(Role.VIEWER)
    with AuthedChannel(sup.service("orchestrator").address, token) as channel:
        status: opb.RunStatus = opb_grpc.OrchestratorServiceStub(channel).GetStatus(
            opb.GetStatusRequest(), timeout=30
        )
    return status


def supervisor_alive(state: Path) -> bool:
    sup = SupervisorState.load(state)
    return sup is not None and sup.supervisor_alive()


def up(state: Path, env: dict[str, str]) -> None:
    rc, out, err = cli(
        "up", "--state-dir", str(state), "--pools", str(POOLS), "--no-dashboard", env=env
    )
    if rc != 0:
        raise RuntimeError(f"lockstep up failed: {last_line(err) or last_line(out)}")


def down(state: Path) -> None:
    cli("down", "--state-dir", str(state), timeout=120)


def scenario_file(workdir: Path) -> Path:
    """The fault scenario with its modules built once (each case would rebuild them)."""
    from lockstep.agents import build_agent
    from lockstep.scenario import load_scenario

    target = workdir / "scenario.toml"
    if target.exists():
        return target
    sc = load_scenario(SCENARIO)
    text = SCENARIO.read_text()
    for name, path in sc.modules.items():
        wasm = build_agent(path, workdir / f"{name}.wasm", name=name)
        rel = os.path.relpath(path, SCENARIO.parent)
        text = text.replace(f'"{rel}"', json.dumps(str(wasm)))
    target.write_text(text)
    return target


@dataclass
class Reference:
    digests: list[str]
    records: list[tuple[int, str, str]]


def reference(workdir: Path) -> Reference:
    """The fault-free run of the scenario."""
    state = workdir / "reference"
    env = {**os.environ, "LOCKSTEP_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY)}
    env.pop(faults.ENV, None)
    up(state, env)
    try:
        rc, out, err = cli("run", str(scenario_file(workdir)), "--state-dir", str(state), "--json")
        assert rc == 0, err
        summary = json.loads(out)
        j = read_journal(state, summary["run_id"])
        assert j.digests == summary["digests"] and len(j.digests) == TICKS and j.verified
        return Reference(summary["digests"], j.records)
    finally:
        down(state)
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class Case:
    seed: int
    plan: faults.Plan
    fired: dict[str, dict[str, object]] = field(default_factory=dict)
    outcome: str = ""  # completed | resumed | FAILED
    error: str = ""  # the precise error a run failed closed with (then resumed)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def fired_kinds(self) -> set[str]:
        return {f.kind for f in self.plan.faults if f.id in self.fired}

    def describe(self) -> str:
        return "; ".join(
            f.describe() + ("" if f.id in self.fired else " (did not fire)")
            for f in self.plan.faults
        )

    def reproduce(self) -> str:
        return f"python3 dev.py soak --seed {self.seed} --cases 1"


def run_case(seed: int, workdir: Path, ref: Reference) -> Case:
    state = workdir / f"case-{seed}"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, mode=0o700)
    plan = replace(faults.draw(seed, pools=POOLS, ticks=TICKS), state_dir=str(state))
    case = Case(seed, plan)
    plan_file = state / "fault-plan.json"
    plan_file.write_text(plan.to_json())
    env = {
        **os.environ,
        faults.ENV: str(plan_file),
        "LOCKSTEP_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
        # Ticks started ahead wherever they can be (the reference runs as `auto` decides):
        # the faults meet ticks in flight, and the chain must still be the reference's.
        "LOCKSTEP_TICKS_AHEAD": "on",
    }
    started = time.monotonic()
    scenario = str(scenario_file(workdir))
    try:
        up(state, env)
        rc, out, err = cli("run", scenario, "--state-dir", str(state), "--json", env=env)
        if rc == 0:
            summary = json.loads(out)
            run_id, digests = summary["run_id"], summary["digests"]
            case.outcome = "completed"
        else:
            case.error = last_line(err) or f"exit status {rc}"
            if "error:" not in err or "Traceback" in err:
                case.problems.append(f"the run did not fail closed: {case.error}")
            if not supervisor_alive(state):
                up(state, env)  # the new orchestrator resumes the interrupted run
            run_id = current_run(state).run_id
            rc, out, err = cli(
                "run", scenario, "--state-dir", str(state), "--json", "--resume", run_id, env=env
            )
            if rc != 0:
                case.outcome = "FAILED"
                case.problems.append(f"--resume {run_id} failed: {last_line(err)}")
                return case
            digests = json.loads(out)["digests"]
            case.outcome = "resumed"
        if digests != ref.digests:
            first = next(
                (
                    i + 1
                    for i, (a, b) in enumerate(zip(digests, ref.digests, strict=False))
                    if a != b
                ),
                min(len(digests), len(ref.digests)) + 1,
            )
            case.problems.append(f"digest chain differs from the fault-free run at tick {first}")
        j = read_journal(state, run_id)
        if not j.verified:
            case.problems.append(f"journal chain does not verify: {j.detail}")
        if j.digests != ref.digests:
            case.problems.append(
                f"journal digests: {len(j.digests)} tick.digest records, want {len(ref.digests)} "
                "(one per tick, the fault-free chain)"
            )
        if j.records != ref.records:
            missing = [r for r in ref.records if r not in j.records]
            extra = [r for r in j.records if r not in ref.records]
            case.problems.append(
                f"journal records differ from the fault-free run: {len(missing)} missing "
                f"(first {missing[:1]}), {len(extra)} extra (first {extra[:1]})"
            )
    except Exception as exc:  # a harness failure is a failed case, with its seed
        case.problems.append(f"{type(exc).__name__}: {exc}")
    finally:
        case.fired = faults.fired(plan)
        down(state)
        case.seconds = time.monotonic() - started
        if case.outcome == "":
            case.outcome = "FAILED"
        if not case.problems:
            shutil.rmtree(state, ignore_errors=True)
    return case


def run_cases(seeds: list[int], workdir: Path, log: bool = True) -> list[Case]:
    ref = reference(workdir)
    cases = []
    for seed in seeds:
        case = run_case(seed, workdir, ref)
        cases.append(case)
        if log:
            verdict = "ok" if case.ok else "FAILED: " + " | ".join(case.problems)
            print(
                f"seed {seed}: {case.outcome} in {case.seconds:.1f} s [{case.describe()}] {verdict}",
                flush=True,
            )
            if not case.ok:
                print(f"  reproduce: {case.reproduce()} (state kept in {workdir})", flush=True)
    return cases


def table(cases: list[Case], command: str) -> str:
    """The markdown table of faults and outcomes (docs/faults.md)."""
    by_kind: dict[str, list[Case]] = {k: [] for k in faults.KINDS}
    for case in cases:
        for kind in case.fired_kinds():
            by_kind[kind].append(case)
    lines = [
        BEGIN,
        f"Generated by `{command}`: {len(cases)} cases, "
        f"{sum(c.ok for c in cases)} held the invariant.",
        "",
        "| fault kind | what it does | cases fired | completed | resumed | failed | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, what in faults.KINDS.items():
        cs = by_kind[kind]
        seeds = ", ".join(str(c.seed) for c in cs[:6]) + (", ..." if len(cs) > 6 else "")
        lines.append(
            f"| `{kind}` | {what} | {len(cs)} | {sum(c.outcome == 'completed' for c in cs)} | "
            f"{sum(c.outcome == 'resumed' for c in cs)} | {sum(not c.ok for c in cs)} | {seeds} |"
        )
    lines += [
        "",
        "| seed | faults | outcome | error the run failed closed with |",
        "|---|---|---|---|",
    ]
    for c in cases:
        outcome = c.outcome if c.ok else f"FAILED ({'; '.join(c.problems)})"
        lines.append(f"| {c.seed} | {c.describe()} | {outcome} | {c.error.replace('|', '/')} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_table(path: Path, text: str) -> None:
    doc = path.read_text()
    start, end = doc.index(BEGIN), doc.index(END) + len(END) + 1
    path.write_text(doc[:start] + text + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the seeded fault-injection soak (docs/faults.md)")
    parser.add_argument(
        "--seed", type=int, default=0, help="first seed (cases use seed, seed+1, ...)"
    )
    parser.add_argument("--cases", type=int, default=30, help="number of cases")
    parser.add_argument("--table", type=Path, default=None, help="rewrite this doc's soak table")
    args = parser.parse_args(argv)
    seeds = list(range(args.seed, args.seed + args.cases))
    workdir = Path(tempfile.mkdtemp(prefix="lockstep-soak-"))
    cases = run_cases(seeds, workdir)
    fired = set().union(*(c.fired_kinds() for c in cases)) if cases else set()
    unfired = [k for k in faults.KINDS if k not in fired]
    if args.table is not None:
        write_table(
            args.table,
            table(cases, f"python3 dev.py soak --seed {args.seed} --cases {args.cases}"),
        )
    bad = [c for c in cases if not c.ok]
    print(
        f"{len(cases)} cases, {len(bad)} failed; fault kinds that never fired: "
        f"{', '.join(unfired) or 'none'}"
    )
    for c in bad:
        print(f"FAILED seed {c.seed}: {c.reproduce()}")
    if not bad:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
