"""Seeded fault injection (issue 11; docs/faults.md), in the spirit of FoundationDB's
BUGGIFY and TigerBeetle's VOPR.

A fault plan is drawn from a seed of its own (never a run's seed): a list of faults, each
at a logical point (a tick and a phase of that tick, never a timer). The plan reaches the
services through one environment variable, ``LOCKSTEP_FAULTS`` (the plan as JSON, or the
path of a JSON file), which `lockstep up` passes on to every service it starts. Without it
nothing here is loaded into a service's hot path: the services install their fault points
only when a plan is set (`injector` returns None otherwise), so they cost nothing when off.

Fault points, all real code paths of the services:

- the orchestrator, around each pool's step batch of a tick (``before`` it is sent,
  ``during`` it, i.e. concurrently with the call, ``after`` the responses and before the
  tick commits) and at the start of a pool rebuild (``recovery``): it sends SIGKILL or
  SIGSTOP (then SIGCONT after ``ms``) to a pool, telemetry, inference, the supervisor or
  itself (the pids come from the supervisor's state file), and drops, duplicates (sends the
  step batch twice) or delays a pool's response;
- telemetry, in its append transaction: the write fails (an I/O error) or the disk is
  full, for ``count`` appends in a row from the first batch reaching the fault's tick.

Each fault fires at most once per deployment, across restarts: the process that fires it
first creates ``<state_dir>/faults/<id>.fired`` (O_EXCL), which also tells a harness what
fired where.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ENV",
    "KINDS",
    "PHASES",
    "Fault",
    "Injector",
    "Plan",
    "draw",
    "fired",
    "injector",
    "load",
]

log = logging.getLogger("lockstep.faults")

ENV = "LOCKSTEP_FAULTS"

# kind -> what it does (the table in docs/faults.md lists each one).
KINDS: dict[str, str] = {
    "pool.kill": "SIGKILL a pool process at a tick phase",
    "pool.pause": "SIGSTOP a pool process, SIGCONT after ms",
    "pool.drop": "a pool's step response is lost after the pool ran the batch",
    "pool.duplicate": "a pool's step batch is delivered twice",
    "pool.delay": "a pool's step response arrives ms late",
    "telemetry.kill": "SIGKILL the telemetry service at a tick phase",
    "telemetry.pause": "SIGSTOP telemetry, SIGCONT after ms",
    "inference.kill": "SIGKILL the inference service at a tick phase",
    "inference.pause": "SIGSTOP inference, SIGCONT after ms",
    "orchestrator.kill": "SIGKILL the orchestrator at a tick phase",
    "orchestrator.pause": "SIGSTOP the orchestrator, SIGCONT after ms",
    "supervisor.kill": "SIGKILL the supervisor (lockstep up) at a tick phase",
    "supervisor.pause": "SIGSTOP the supervisor, SIGCONT after ms",
    "journal.fail": "telemetry's journal write fails (I/O error) for count appends",
    "disk.full": "telemetry's disk is full (SQLITE_FULL) for count appends",
}
# Phases of a tick at which a signal fault fires (pool response faults: the step batch).
PHASES = ("before", "during", "after", "recovery")
_SIGNAL_KINDS = frozenset(k for k in KINDS if k.endswith((".kill", ".pause")))
_RESPONSE_KINDS = frozenset({"pool.drop", "pool.duplicate", "pool.delay"})
_STORE_KINDS = frozenset({"journal.fail", "disk.full"})


@dataclass(frozen=True)
class Fault:
    """One fault. `tick`: the tick whose phase triggers it (for `recovery`: the first pool
    rebuild of a tick at or after it; for telemetry: the first append holding a record of
    it or later). `target`: the service (`pool-1`, `telemetry`, ...). `ms`: how long a
    pause or delay lasts. `count`: failing appends in a row (telemetry kinds)."""

    id: str
    kind: str
    tick: int
    phase: str = "before"
    target: str = ""
    ms: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.phase not in PHASES:
            raise ValueError(f"unknown fault phase {self.phase!r}; one of {', '.join(PHASES)}")

    def describe(self) -> str:
        where = f"tick {self.tick} {self.phase}"
        extra = f" {self.ms} ms" if self.ms else ""
        if self.kind in _STORE_KINDS:
            return f"{self.kind} x{self.count} from tick {self.tick}"
        return f"{self.kind} {self.target} at {where}{extra}".replace("  ", " ")


@dataclass(frozen=True)
class Plan:
    """A fault plan: its seed, its faults, and the deployment's state dir (pids from its
    state file, fired markers in its `faults/`)."""

    seed: int
    faults: tuple[Fault, ...]
    state_dir: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        raw = json.loads(text)
        return cls(
            seed=int(raw["seed"]),
            faults=tuple(Fault(**f) for f in raw.get("faults", [])),
            state_dir=str(raw.get("state_dir", "")),
            meta=dict(raw.get("meta", {})),
        )


def load(env: Mapping[str, str] | None = None) -> Plan | None:
    """The plan named by LOCKSTEP_FAULTS (JSON, or a path to a JSON file); None when unset."""
    value = (os.environ if env is None else env).get(ENV, "").strip()
    if not value:
        return None
    text = value if value.startswith("{") else Path(value).read_text()
    return Plan.from_json(text)


# ---------------------------------------------------------------- drawing plans from a seed
_TARGETS = {
    "telemetry": "telemetry",
    "inference": "inference",
    "orchestrator": "orchestrator",
    "supervisor": "supervisor",
}


def draw(seed: int, *, pools: int, ticks: int, kind: str | None = None, extra: int = 1) -> Plan:
    """A plan from `seed` alone: one fault of `kind` (default: KINDS[seed % len(KINDS)], so
    consecutive seeds cover every kind) and up to `extra` more of random kinds, at random
    ticks and phases of a run of `ticks` ticks on `pools` pools. A `recovery` phase always
    comes with a pool kill before it, so that a recovery happens."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    first = kind or kinds[seed % len(kinds)]
    chosen = [first] + [rng.choice(kinds) for _ in range(rng.randint(0, extra))]
    faults: list[Fault] = []
    lo, hi = max(2, ticks // 10), max(3, ticks - ticks // 5)
    for i, k in enumerate(chosen):
        tick = rng.randint(lo, hi)
        phase = "after" if k in _RESPONSE_KINDS else rng.choice(PHASES)
        owner = k.split(".")[0]
        target = f"pool-{rng.randrange(pools)}" if owner == "pool" else _TARGETS.get(owner, "")
        ms = rng.randint(50, 400) if k.endswith((".pause", ".delay")) else 0
        count = rng.randint(1, 4) if k in _STORE_KINDS else 1
        if k in _STORE_KINDS:
            phase = "before"
        if phase == "recovery":
            faults.append(
                Fault(f"f{i}r", "pool.kill", tick, "before", f"pool-{rng.randrange(pools)}")
            )
        faults.append(Fault(f"f{i}", k, tick, phase, target, ms, count))
    return Plan(seed=seed, faults=tuple(faults))


# ---------------------------------------------------------------- firing faults
def _marker(plan: Plan, fault: Fault) -> Path:
    return Path(plan.state_dir or ".") / "faults" / f"{fault.id}.fired"


def fired(plan: Plan) -> dict[str, dict[str, Any]]:
    """The faults of `plan` that fired in its deployment: id -> where and when."""
    out = {}
    for fault in plan.faults:
        try:
            out[fault.id] = json.loads(_marker(plan, fault).read_text())
        except (OSError, ValueError):
            continue
    return out


class Injector:
    """The fault points of one process (`process`: orchestrator or telemetry)."""

    def __init__(self, plan: Plan, process: str) -> None:
        self.plan = plan
        self.process = process
        self._lock = threading.Lock()
        self._store_left: dict[str, int] = {}
        self._recovery_done: set[str] = set()
        mine = {
            "orchestrator": _SIGNAL_KINDS | _RESPONSE_KINDS,
            "telemetry": _STORE_KINDS,
        }.get(process, frozenset())
        self.faults = [f for f in plan.faults if f.kind in mine]

    def _claim(self, fault: Fault, **where: Any) -> bool:
        """Fire `fault` only once in the whole deployment (across restarts)."""
        path = _marker(self.plan, fault)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as fh:
            json.dump({"process": self.process, "pid": os.getpid(), **where}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        log.warning("fault injection (seed %d): %s", self.plan.seed, fault.describe())
        return True

    # ---- the orchestrator's tick phases --------------------------------------------
    def at(self, phase: str, tick: int) -> None:
        """Fire the signal faults due at `phase` of `tick`."""
        for fault in self.faults:
            if fault.kind not in _SIGNAL_KINDS or fault.phase != phase:
                continue
            due = fault.tick <= tick if phase == "recovery" else fault.tick == tick
            if due and self._claim(fault, tick=tick, phase=phase):
                self._signal(fault)

    def response(self, tick: int, pool: int) -> Fault | None:
        """The response fault (drop, duplicate, delay) of pool `pool`'s step at `tick`."""
        for fault in self.faults:
            if (
                fault.kind in _RESPONSE_KINDS
                and fault.tick == tick
                and fault.target == f"pool-{pool}"
                and self._claim(fault, tick=tick, phase="after")
            ):
                return fault
        return None

    def _pid(self, target: str) -> int:
        if target == "orchestrator":
            return os.getpid()
        state = json.loads((Path(self.plan.state_dir) / "state.json").read_text())
        if target == "supervisor":
            return int(state["supervisor_pid"])
        for svc in state["services"]:
            if svc["name"] == target:
                return int(svc["pid"])
        raise KeyError(target)

    def _signal(self, fault: Fault) -> None:
        try:
            pid = self._pid(fault.target)
        except (OSError, ValueError, KeyError) as exc:
            log.error("fault %s: no pid for %s (%s)", fault.id, fault.target, exc)
            return
        if pid <= 0:
            return
        if fault.kind.endswith(".kill"):
            _kill(pid, signal.SIGKILL)
            return
        if pid == os.getpid():
            # A stopped process cannot wake itself: a detached helper sends SIGCONT.
            subprocess.Popen(
                ["/bin/sh", "-c", f"sleep {fault.ms / 1000:.3f}; kill -CONT {pid}"],
                start_new_session=True,
            )
            _kill(pid, signal.SIGSTOP)
            return
        _kill(pid, signal.SIGSTOP)
        threading.Timer(fault.ms / 1000, _kill, (pid, signal.SIGCONT)).start()

    # ---- telemetry's append transaction ---------------------------------------------
    def store_error(self, max_tick: int) -> str | None:
        """The error an append of records up to `max_tick` fails with, or None."""
        with self._lock:
            for fault in self.faults:
                left = self._store_left.get(fault.id)
                if left is None and fault.tick <= max_tick and self._claim(fault, tick=max_tick):
                    left = fault.count
                if left:
                    self._store_left[fault.id] = left - 1
                    return (
                        "database or disk is full"
                        if fault.kind == "disk.full"
                        else "disk I/O error (injected)"
                    )
        return None


def _kill(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def injector(process: str, env: Mapping[str, str] | None = None) -> Injector | None:
    """This process's fault points, or None (no plan: nothing to install)."""
    try:
        plan = load(env)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{ENV}: not a fault plan ({exc})") from None
    if plan is None:
        return None
    inj = Injector(plan, process)
    log.warning(
        "FAULT INJECTION ON (%s, seed %d): %d fault(s) here",
        ENV,
        plan.seed,
        len(inj.faults),
    )
    return inj
