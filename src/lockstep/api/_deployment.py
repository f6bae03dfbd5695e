"""Deployments and runs: the public Python API over the orchestrator and telemetry gRPC APIs.

Only the public services are used (`lockstep.orchestrator.v1`, `lockstep.telemetry.v1`) and
the shared client helpers (`lockstep.runner` for module preparation, `TelemetryClient`);
nothing here reaches into a service's internals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import pandas as pd

from lockstep.api._collect import Collector
from lockstep.api._records import (
    TICK_STATS_COLUMNS,
    JournalRecord,
    lineage,
    log_rows,
    observation_rows,
    parent_of,
    spawned_names,
    tick_digests,
    tick_stats_rows,
)
from lockstep.api._trace import chrome_trace
from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.errors import ConfigError, DeterminismError, ServiceError
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.runner import (
    ReplayResult,
    message_trace,
    module_bytes,
    prepare_module,
    replay_run,
)
from lockstep.scenario import Action, AgentGroup, Scenario, load_scenario
from lockstep.supervisor import SupervisorState, default_state_dir
from lockstep.supervisor._supervisor import local_signing_key
from lockstep.telemetry_client import TelemetryClient

__all__ = ["AGENT_COLUMNS", "MESSAGE_COLUMNS", "Checkpoint", "Deployment", "Run", "RunStatus"]

MESSAGE_COLUMNS = [
    "tick",
    "receiver",
    "sender",
    "kind",
    "send_tick",
    "destination",
    "correlation",
    "payload",
]

Progress = Callable[[int, int], None]  # (tick, target tick)
ScenarioLike = Scenario | str | os.PathLike[str]

AGENT_COLUMNS = [
    "name",
    "sequence",
    "state",
    "module_hash",
    "priority",
    "pool",
    "steps",
    "messages_sent",
    "messages_received",
    "fuel_used",
    "restarts",
    "spawn_tick",
    "inbox",
    "topics",
    "last_fault",
]

_build_lock = threading.Lock()
_built: dict[tuple[str, str, int, int], bytes] = {}


def _module_wasm(path: Path, name: str, build_dir: Path, signing_key: Path | None) -> bytes:
    """Built (for sources) and prepared module bytes, cached per process by file identity."""
    st = path.stat()
    key = (str(path), name, st.st_mtime_ns, st.st_size)
    with _build_lock:
        if key not in _built:
            build_dir.mkdir(parents=True, exist_ok=True)
            _built[key] = module_bytes(path, name, build_dir)
        raw = _built[key]
    return prepare_module(raw, name, signing_key)


def _rpc(what: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except grpc.RpcError as exc:
        raise ServiceError(f"{what}: {exc.code().name}: {exc.details()}") from None


def _state_name(value: int) -> str:
    return opb.AgentState.Name(value).removeprefix("AGENT_STATE_").lower()


@dataclass(frozen=True)
class RunStatus:
    """The orchestrator's view of the current run after a tick boundary."""

    run_id: str
    tick: int
    digest: str
    agents_by_state: dict[str, int]
    counters: dict[str, int]
    idle: bool

    @classmethod
    def from_pb(cls, st: opb.RunStatus) -> RunStatus:
        counters = {
            fd.name: int(getattr(st.counters, fd.name)) for fd in opb.RunCounters.DESCRIPTOR.fields
        }
        return cls(
            st.run_id,
            int(st.tick),
            st.digest.hex(),
            dict(sorted(st.agents_by_state.items())),
            counters,
            bool(st.idle),
        )


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint taken at a tick boundary (`Run.checkpoint`)."""

    id: str
    run_id: str
    tick: int
    digest: str
    size: int


@dataclass
class _Pending:
    """Scenario actions still to apply, in tick order (applied after their tick)."""

    actions: list[Action] = field(default_factory=list)


class Deployment:
    """A Lockstep deployment reached over gRPC: its orchestrator and telemetry.

    Start a private one for the life of a `with` block::

        with lockstep.Deployment.local(pools=1) as dep:
            run = dep.run("examples/scenarios/wealth.toml")

    or connect to a running `lockstep up` by its state directory (`connect()`), or by
    addresses and an admin token. The orchestrator holds one current run at a time:
    `start`, `run`, `restore`, `Run.fork` and `Run.replay` each make a new current run;
    earlier runs stay readable from the journal (digests, journal, logs, observations).
    """

    def __init__(
        self,
        *,
        orchestrator: str,
        telemetry: str,
        token: str,
        state_dir: Path | None = None,
        signing_key: Path | None = None,
        owned: bool = False,
    ) -> None:
        self.orchestrator_address = orchestrator
        self.telemetry_address = telemetry
        self.state_dir = state_dir
        self.signing_key = signing_key
        self._owned = owned
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._channel = AuthedChannel(orchestrator, token)
        self._tchannel = AuthedChannel(telemetry, token)
        self.stub = opb_grpc.OrchestratorServiceStub(self._channel)
        self.telemetry = TelemetryClient(self._tchannel)
        self._modules: dict[tuple[str, str], str] = {}
        self._lock = threading.RLock()
        self._current: Run | None = None
        if state_dir is not None:
            self.build_dir = state_dir / "build"
        else:
            self._tmp_build = tempfile.TemporaryDirectory(prefix="lockstep-build-")
            self.build_dir = Path(self._tmp_build.name)

    # ---- lifecycle ---------------------------------------------------------------------

    @classmethod
    def local(
        cls, pools: int = 1, *, state_dir: Path | str | None = None, timeout: float = 120.0
    ) -> Deployment:
        """Start every service as its own process (`lockstep up`) on loopback port 0, in
        `state_dir` (default: a new temporary directory, removed at `close`). Use it as a
        context manager, or call `close()`; either stops the services."""
        tmp = None
        if state_dir is None:
            tmp = tempfile.TemporaryDirectory(prefix="lockstep-")
            directory = Path(tmp.name) / "state"
        else:
            directory = Path(state_dir)
        cmd = [
            sys.executable,
            "-m",
            "lockstep.cli",
            "up",
            "--state-dir",
            str(directory),
            "--pools",
            str(pools),
            "--timeout",
            str(timeout),
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
        )
        if proc.returncode != 0:
            if tmp is not None:
                tmp.cleanup()
            lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
            raise ServiceError(f"lockstep up failed: {lines[-1]}")
        try:
            dep = cls.connect(directory)
        except Exception:
            _down(directory)
            if tmp is not None:
                tmp.cleanup()
            raise
        dep._owned = True
        dep._tmp = tmp
        return dep

    @classmethod
    def connect(
        cls,
        state_dir: Path | str | None = None,
        *,
        orchestrator: str | None = None,
        telemetry: str | None = None,
        token: str | None = None,
        signing_key: Path | str | None = None,
    ) -> Deployment:
        """Connect to a running deployment: addresses and the admin token from its state
        directory (default $LOCKSTEP_HOME or ~/.lockstep), unless given. Modules without a
        signature are signed with the deployment's local key (or `signing_key`)."""
        directory: Path | None = None
        if orchestrator is None or telemetry is None or token is None:
            directory = Path(state_dir) if state_dir is not None else default_state_dir()
            state = SupervisorState.load(directory)
            if state is None or not state.supervisor_alive():
                raise ConfigError(
                    f"Lockstep is not running (no live supervisor in "
                    f"{directory}); start it with `lockstep up` or use "
                    "Deployment.local()"
                )
            orchestrator = orchestrator or state.service("orchestrator").address
            telemetry = telemetry or state.service("telemetry").address
            token = token or TokenStore.load(state.tokens_path).token(Role.ADMIN)
        key = (
            Path(signing_key)
            if signing_key is not None
            else (local_signing_key(directory) if directory is not None else None)
        )
        return cls(
            orchestrator=orchestrator,
            telemetry=telemetry,
            token=token,
            state_dir=directory,
            signing_key=key,
        )

    def close(self) -> None:
        """Close the channels; stop the services if this object started them."""
        self._channel.close()
        self._tchannel.close()
        if self._owned and self.state_dir is not None:
            _down(self.state_dir)
            self._owned = False
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        tmp_build = getattr(self, "_tmp_build", None)
        if tmp_build is not None:
            tmp_build.cleanup()

    def __enter__(self) -> Deployment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---- runs -------------------------------------------------------------------------

    def register(self, scenario: Scenario) -> dict[str, str]:
        """Register the scenario's modules (built from source when needed); returns
        {module name: module hash}. Registering the same bytes again is harmless."""
        hashes = {}
        for name, path in sorted(scenario.modules.items()):
            key = (str(path), name)
            wasm = _module_wasm(path, name, self.build_dir, self.signing_key)
            resp = _rpc(
                f"register module {name}",
                self.stub.RegisterModule,
                opb.RegisterModuleRequest(wasm=wasm, name=name),
            )
            hashes[name] = resp.module.module_hash
            self._modules[key] = hashes[name]
        return hashes

    def start(
        self,
        scenario: ScenarioLike,
        *,
        overrides: Mapping[str, Any] | None = None,
        seed: int | None = None,
        ticks: int | None = None,
    ) -> Run:
        """Start a fresh run of `scenario` (a `Scenario` or a path), with optional
        overrides, register its modules and spawn its agents; no tick has run yet (the
        spawns take effect at tick 1). Returns the new current run."""
        sc = _as_scenario(scenario)
        if overrides or seed is not None or ticks is not None:
            sc = sc.with_overrides(overrides, seed=seed, ticks=ticks)
        with self._lock:
            config = opb.RunConfig(
                seed=sc.seed,
                max_steps_per_tick=sc.max_steps_per_tick,
                inference_latency=sc.inference_latency,
                label=sc.label,
                default_limits=cpb.Limits(**sc.limits),
            )
            modules = self.register(sc)
            st = _rpc("start run", self.stub.StartRun, opb.StartRunRequest(config=config))
            run = Run(self, st.run_id, sc, modules)
            if sc.agents:
                _rpc("spawn agents", self.stub.SpawnAgents, _spawns(sc.agents, modules))
            run._pending.actions = list(sc.actions)
            self._current = run
            return run

    def run(
        self,
        scenario: ScenarioLike,
        *,
        overrides: Mapping[str, Any] | None = None,
        seed: int | None = None,
        ticks: int | None = None,
        collector: Collector | None = None,
        progress: Progress | None = None,
    ) -> Run:
        """Start `scenario` and run it as `lockstep run` does (its actions at their ticks,
        until its `ticks`, or earlier when idle if `until_idle`); returns the finished run
        (the same digests as `lockstep run` of the same file)."""
        run = self.start(scenario, overrides=overrides, seed=seed, ticks=ticks)
        run.finish(collector=collector, progress=progress)
        return run

    def current(self) -> Run:
        """A handle on the orchestrator's current run (possibly started by someone else)."""
        st = RunStatus.from_pb(_rpc("status", self.stub.GetStatus, opb.GetStatusRequest()))
        if self._current is not None and self._current.run_id == st.run_id:
            return self._current
        return Run(self, st.run_id, None, {})

    def run_by_id(self, run_id: str) -> Run:
        """A handle on any journalled run (live methods only work while it is current)."""
        if self._current is not None and self._current.run_id == run_id:
            return self._current
        return Run(self, run_id, None, {})

    def restore(self, checkpoint: Checkpoint | str) -> Run:
        """Restore a checkpoint as a new current run (a new run id; its journal starts with
        `run.start` and `run.restore`, which names the parent run and checkpoint)."""
        cid = checkpoint.id if isinstance(checkpoint, Checkpoint) else checkpoint
        with self._lock:
            st = _rpc("restore", self.stub.RestoreCheckpoint, opb.RestoreCheckpointRequest(id=cid))
            run = Run(self, st.run_id, None, {})
            if isinstance(checkpoint, Checkpoint):
                run._parent = (checkpoint.run_id, checkpoint.id, checkpoint.tick)
            self._current = run
            return run

    def runs(self) -> pd.DataFrame:
        """Runs with records in the journal (run_id, records, first/last sequence, ticks)."""
        rows = [
            {
                "run_id": r.run_id,
                "records": r.record_count,
                "first_sequence": r.first_sequence,
                "last_sequence": r.last_sequence,
                "min_tick": r.min_tick,
                "max_tick": r.max_tick,
            }
            for r in self.telemetry.runs()
        ]
        return pd.DataFrame(
            rows,
            columns=[
                "run_id",
                "records",
                "first_sequence",
                "last_sequence",
                "min_tick",
                "max_tick",
            ],
        )

    def records(self, run_id: str, kinds: Sequence[str] = ()) -> list[JournalRecord]:
        """The journal records of one run, in order."""
        return [
            JournalRecord.from_stored(r) for r in self.telemetry.query(run_id, kinds=list(kinds))
        ]

    def status(self) -> RunStatus:
        """The current run's status."""
        return RunStatus.from_pb(_rpc("status", self.stub.GetStatus, opb.GetStatusRequest()))


def _down(directory: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "lockstep.cli", "down", "--state-dir", str(directory)],
        capture_output=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _as_scenario(scenario: ScenarioLike) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    return load_scenario(Path(scenario))


def _spawns(groups: Iterable[AgentGroup], modules: Mapping[str, str]) -> opb.SpawnAgentsRequest:
    req = opb.SpawnAgentsRequest()
    for group in groups:
        module = modules.get(group.module, group.module)
        for name, args in group.expand():
            req.agents.add(
                name=name,
                module=module,
                priority=group.priority,
                args=args,
                topics=group.topics,
                restart=opb.RestartPolicy(**group.restart),
                limits=cpb.Limits(**group.limits),
            )
    return req


class Run:
    """One run: live control while it is the deployment's current run, and its journal
    (digests, records, logs, observations) at any time.

    `scenario` is the scenario it was started from (None for runs found by id or
    restored); its actions are applied at their ticks as the run advances through
    `step`, `run_until` and `finish`.
    """

    def __init__(
        self,
        deployment: Deployment,
        run_id: str,
        scenario: Scenario | None,
        modules: Mapping[str, str],
    ) -> None:
        self.deployment = deployment
        self.run_id = run_id
        self.scenario = scenario
        self.modules = dict(modules)
        self._pending = _Pending()
        self._last_agents: pd.DataFrame | None = None
        self._last_status: RunStatus | None = None
        self._parent: tuple[str, str, int] | None = None

    def __repr__(self) -> str:
        label = self.scenario.label if self.scenario is not None else "?"
        return f"Run({self.run_id!r}, label={label!r})"

    # ---- live state -------------------------------------------------------------------

    def _live(self) -> opb_grpc.OrchestratorServiceStub:
        st = self.deployment.status()
        if st.run_id != self.run_id:
            raise ConfigError(
                f"run {self.run_id} is no longer the deployment's current run "
                f"(that is {st.run_id}); its journal is still readable"
            )
        return self.deployment.stub

    def is_current(self) -> bool:
        """Whether this is the orchestrator's current run."""
        return self.deployment.status().run_id == self.run_id

    def status(self) -> RunStatus:
        """Tick, digest, agents by state and counters (live; for a finished run that is no
        longer current, the last status this handle saw)."""
        st = self.deployment.status()
        if st.run_id == self.run_id:
            self._last_status = st
            return st
        if self._last_status is not None:
            return self._last_status
        raise ConfigError(
            f"run {self.run_id} is not the current run and this handle never saw its status"
        )

    @property
    def tick(self) -> int:
        """The last completed tick."""
        return self.status().tick

    @property
    def digest(self) -> str:
        """The digest after the last completed tick (hex)."""
        return self.status().digest

    def agents(self) -> pd.DataFrame:
        """One row per agent, in spawn order: name, sequence, state, module hash, priority,
        pool, steps, messages sent / received, fuel used, restarts, spawn tick, inbox,
        topics, last fault. Live while current; afterwards, the last table this handle read
        (`Deployment.run` reads it when the run ends)."""
        if not self.is_current():
            if self._last_agents is not None:
                return self._last_agents.copy()
            raise ConfigError(
                f"run {self.run_id} is not the current run; its agents' "
                "counters are only known live (read them before the next run)"
            )
        resp = _rpc("list agents", self.deployment.stub.ListAgents, opb.ListAgentsRequest())
        rows = []
        for a in resp.agents:
            fault = a.last_fault
            rows.append(
                {
                    "name": a.name,
                    "sequence": int(a.sequence),
                    "state": _state_name(a.state),
                    "module_hash": a.module_hash,
                    "priority": int(a.priority),
                    "pool": int(a.pool),
                    "steps": int(a.steps),
                    "messages_sent": int(a.messages_sent),
                    "messages_received": int(a.messages_received),
                    "fuel_used": int(a.fuel_used),
                    "restarts": int(a.restarts),
                    "spawn_tick": int(a.spawn_tick),
                    "inbox": int(a.inbox),
                    "topics": ",".join(a.topics),
                    "last_fault": (
                        f"{cpb.FaultKind.Name(fault.kind)}: {fault.detail}" if fault.kind else ""
                    ),
                }
            )
        frame = pd.DataFrame(rows, columns=AGENT_COLUMNS)
        self._last_agents = frame
        return frame.copy()

    # ---- advancing ---------------------------------------------------------------------

    def _apply_due(self, tick: int) -> None:
        """Apply the scenario actions of `tick` (they take effect at tick + 1); drop any
        older ones (a restore or fork past them)."""
        actions = self._pending.actions
        while actions and actions[0].tick <= tick:
            action = actions.pop(0)
            if action.tick == tick:
                self._apply(action)

    def _apply(self, action: Action) -> None:
        if action.spawn:
            self._control(
                "spawn", self.deployment.stub.SpawnAgents, _spawns(action.spawn, self.modules)
            )
        for names, rpc in (
            (action.pause, self.deployment.stub.PauseAgents),
            (action.resume, self.deployment.stub.ResumeAgents),
            (action.terminate, self.deployment.stub.TerminateAgents),
        ):
            if names:
                self._control("control", rpc, opb.AgentSelector(names=list(names)))
        if action.send:
            self._control(
                "send",
                self.deployment.stub.SendMessages,
                opb.SendMessagesRequest(
                    messages=[opb.ExternalMessage(to=to, payload=p) for to, p in action.send]
                ),
            )

    def _control(self, what: str, rpc: Callable[..., Any], request: Any) -> int:
        self._live()
        resp = _rpc(what, rpc, request)
        return int(resp.effective_tick)

    def _advance(
        self,
        until_tick: int,
        until_idle: bool,
        max_ticks: int,
        collector: Collector | None,
        progress: Progress | None,
        apply_actions: bool = True,
    ) -> RunStatus:
        stub = self._live()
        st = self.deployment.status()
        done = 0
        while True:
            if apply_actions:
                self._apply_due(st.tick)
            if st.tick >= until_tick or done >= max_ticks or (until_idle and st.idle):
                break
            stop = until_tick
            if apply_actions and self._pending.actions:
                stop = min(stop, self._pending.actions[0].tick)
            stop = min(stop, st.tick + (max_ticks - done))
            if collector is not None:
                stop = min(stop, st.tick + 1)
            req = opb.RunUntilRequest(
                until_tick=stop,
                until_idle=until_idle,
                max_ticks=max(1, stop - st.tick),
                progress_every=max(1, (stop - st.tick) // 100),
            )
            last = opb.RunProgress()
            try:
                for last in stub.RunUntil(req):
                    if progress is not None:
                        progress(last.status.tick, until_tick)
            except grpc.RpcError as exc:
                raise ServiceError(f"run: {exc.code().name}: {exc.details()}") from None
            new = RunStatus.from_pb(last.status)
            done += new.tick - st.tick
            st = new
            if collector is not None:
                collector.maybe_collect(self, st.tick)
            if until_idle and st.idle:
                if apply_actions:
                    self._apply_due(st.tick)
                break
        self._last_status = st
        return st

    def step(self, ticks: int = 1, *, collector: Collector | None = None) -> RunStatus:
        """Execute `ticks` ticks (scenario actions due on the way are applied)."""
        if ticks < 1:
            raise ValueError("ticks must be >= 1")
        st = self.status()
        return self._advance(st.tick + ticks, False, ticks, collector, None)

    def run_until(
        self,
        tick: int | None = None,
        *,
        idle: bool = False,
        max_ticks: int = 100_000,
        collector: Collector | None = None,
        progress: Progress | None = None,
    ) -> RunStatus:
        """Run until `tick`, and/or until nothing can change (`idle`), at most `max_ticks`
        more ticks."""
        if tick is None and not idle:
            raise ValueError("give tick= and/or idle=True")
        target = tick if tick is not None else self.status().tick + max_ticks
        return self._advance(target, idle, max_ticks, collector, progress)

    def run_until_idle(
        self, max_ticks: int = 100_000, *, collector: Collector | None = None
    ) -> RunStatus:
        """Run until nothing can change (every agent idle with an empty inbox, or gone)."""
        return self.run_until(idle=True, max_ticks=max_ticks, collector=collector)

    def finish(
        self, *, collector: Collector | None = None, progress: Progress | None = None
    ) -> RunStatus:
        """Run to the scenario's end as `lockstep run` does: actions at their ticks (those
        at or past `ticks` are never applied), then until `ticks`, or earlier when idle if
        the scenario says `until_idle`. Reads the agents table at the end."""
        if self.scenario is None:
            raise ConfigError("this run has no scenario to finish; use run_until")
        sc = self.scenario
        self._pending.actions = [a for a in self._pending.actions if a.tick < sc.ticks]
        while self._pending.actions:
            self._advance(self._pending.actions[0].tick, False, 2**31, collector, progress)
        st = self._advance(sc.ticks, sc.until_idle, 2**31, collector, progress)
        self.agents()
        return st

    # ---- control actions (effective at the next tick) ------------------------------------

    def send(self, to: str, payload: bytes | str) -> int:
        """Send a message from outside (kind 1) to an agent, `*` or `#topic`; returns the tick
        at which it is delivered."""
        data = payload.encode() if isinstance(payload, str) else payload
        return self._control(
            "send",
            self.deployment.stub.SendMessages,
            opb.SendMessagesRequest(messages=[opb.ExternalMessage(to=to, payload=data)]),
        )

    def pause(self, *names: str) -> int:
        """Pause agents at the next tick (returns that tick)."""
        return self._control(
            "pause", self.deployment.stub.PauseAgents, opb.AgentSelector(names=list(names))
        )

    def resume(self, *names: str) -> int:
        """Resume paused agents at the next tick."""
        return self._control(
            "resume", self.deployment.stub.ResumeAgents, opb.AgentSelector(names=list(names))
        )

    def terminate(self, *names: str) -> int:
        """Terminate agents at the next tick."""
        return self._control(
            "terminate", self.deployment.stub.TerminateAgents, opb.AgentSelector(names=list(names))
        )

    def spawn(
        self,
        name: str,
        module: str,
        args: bytes | str = b"",
        *,
        priority: int = 0,
        topics: Sequence[str] = (),
    ) -> int:
        """Spawn an agent at the next tick; `module` is a scenario module name or a
        registered module name / hash."""
        data = args.encode() if isinstance(args, str) else args
        group = AgentGroup(
            module=module, name=name, priority=priority, args=data, topics=tuple(topics)
        )
        return self._control(
            "spawn", self.deployment.stub.SpawnAgents, _spawns([group], self.modules)
        )

    def schedule(self, actions: Iterable[Action]) -> None:
        """Add scenario actions, applied after their ticks as the run advances."""
        merged = [*self._pending.actions, *actions]
        self._pending.actions = sorted(merged, key=lambda a: a.tick)

    # ---- checkpoints, forks, replay -------------------------------------------------

    def checkpoint(self, label: str = "") -> Checkpoint:
        """Checkpoint the run at its tick boundary."""
        self._live()
        info = _rpc(
            "checkpoint",
            self.deployment.stub.CreateCheckpoint,
            opb.CreateCheckpointRequest(label=label),
        )
        return Checkpoint(info.id, self.run_id, int(info.tick), info.digest.hex(), int(info.size))

    def fork(
        self,
        checkpoint: Checkpoint,
        actions: Iterable[Action] = (),
        *,
        inherit_actions: bool = True,
    ) -> Run:
        """A new run from `checkpoint` (of this run), with an intervention: `actions`
        (scenario `Action`s, at ticks >= the checkpoint's) applied from then on, plus, with
        `inherit_actions`, this run's own scenario actions after the checkpoint tick.

        The new run's parent is recorded by the orchestrator in its journal (`run.restore`:
        from_run, checkpoint); `parent` reads it. The label stays the parent's (the
        RestoreCheckpoint call takes only the checkpoint id)."""
        extra = list(actions)
        early = [a for a in extra if a.tick < checkpoint.tick]
        if early:
            raise ConfigError(
                f"intervention at tick {early[0].tick} is before the "
                f"checkpoint (tick {checkpoint.tick})"
            )
        child = self.deployment.restore(checkpoint)
        child.scenario = self.scenario
        child.modules = dict(self.modules)
        inherited: list[Action] = []
        if inherit_actions and self.scenario is not None:
            inherited = [a for a in self.scenario.actions if a.tick >= checkpoint.tick]
        child.schedule([*inherited, *extra])
        return child

    @property
    def parent(self) -> tuple[str, str, int] | None:
        """(parent run id, checkpoint id, checkpoint tick) if this run was restored from a
        checkpoint, else None: from its journal's `run.restore` record (shipped to
        telemetry with the next tick), or, before that, from the checkpoint this handle was
        restored from."""
        return parent_of(self.records(kinds=("run.restore",))) or self._parent

    def replay(
        self, *, verify_inference: bool = False, progress: Progress | None = None
    ) -> ReplayResult:
        """Re-execute this run from its journal and compare every tick (the replay becomes
        the deployment's current run). `ok` is False naming the divergent tick otherwise."""
        with self.deployment._lock:
            result = replay_run(
                self.deployment._channel,
                self.run_id,
                verify_inference=verify_inference,
                progress=progress,
            )
            self.deployment._current = None
        return result

    def messages(
        self, from_tick: int = 0, to_tick: int = 0, *, progress: Progress | None = None
    ) -> pd.DataFrame:
        """The message trace: every message delivered at ticks from..to (0 = unbounded),
        as (tick, receiver, sender, kind, send_tick, destination, correlation, payload).
        Messages are not journalled, so this replays the run (which becomes the
        deployment's current run) and raises DeterminismError if the replay diverges."""
        with self.deployment._lock:
            result, messages = message_trace(
                self.deployment._channel, self.run_id, from_tick, to_tick, progress
            )
            self.deployment._current = None
        if not result.ok:
            raise DeterminismError(
                f"replay of {self.run_id} diverged at tick {result.divergent_tick}: {result.detail}"
            )
        rows = [
            {
                "tick": m.tick,
                "receiver": m.receiver,
                "sender": m.sender,
                "kind": m.kind,
                "send_tick": m.send_tick,
                "destination": m.destination,
                "correlation": m.correlation,
                "payload": bytes(m.payload),
            }
            for m in messages
        ]
        return pd.DataFrame(rows, columns=MESSAGE_COLUMNS)

    def verify(self, *, verify_inference: bool = False) -> ReplayResult:
        """`replay`, raising DeterminismError (naming tick and agent) unless identical."""
        result = self.replay(verify_inference=verify_inference)
        if not result.ok:
            where = f" (agent {result.divergent_agent})" if result.divergent_agent else ""
            raise DeterminismError(
                f"replay of {self.run_id} diverged at tick "
                f"{result.divergent_tick}{where}: {result.detail}"
            )
        return result

    # ---- the journal ---------------------------------------------------------------------

    def records(self, kinds: Sequence[str] = ()) -> list[JournalRecord]:
        """This run's own journal records."""
        return self.deployment.records(self.run_id, kinds)

    def lineage_records(self) -> list[JournalRecord]:
        """This run's records from tick 0: a restored run's ancestors' records up to the
        checkpoint, then its own."""
        return lineage(self.deployment.records, self.run_id)

    def journal(self, kinds: Sequence[str] = ()) -> pd.DataFrame:
        """The journal as a DataFrame: sequence, run_id, tick, kind, payload (dict), hash."""
        rows = [
            {
                "sequence": r.sequence,
                "run_id": r.run_id,
                "tick": r.tick,
                "kind": r.kind,
                "payload": r.payload,
                "hash": r.hash,
            }
            for r in self.records(kinds)
        ]
        return pd.DataFrame(rows, columns=["sequence", "run_id", "tick", "kind", "payload", "hash"])

    def ticks(self, *, lineage: bool = True) -> pd.DataFrame:
        """Per-tick statistics (the `tick.stats` records): tick, wall_ms, steps, messages
        delivered, sends and payload bytes routed, fuel, faults, undeliverable, restarts,
        spawned, done, live agents, inference in flight, and per-pool step time (pools_ms,
        a list). Wall times vary run to run; everything else is deterministic. With
        `lineage`, a restored run includes its parent's ticks up to the checkpoint."""
        records = self.lineage_records() if lineage else self.records(kinds=("tick.stats",))
        return pd.DataFrame(tick_stats_rows(records), columns=list(TICK_STATS_COLUMNS))

    def chrome_trace(self, path: Path | str) -> Path:
        """Write the tick timeline (`ticks()`) as Chrome trace JSON, which Perfetto and
        chrome://tracing open; returns the path."""
        rows = tick_stats_rows(self.records(kinds=("tick.stats",)))
        out = Path(path)
        out.write_text(json.dumps(chrome_trace(rows, self.run_id)))
        return out

    def digests(self, *, lineage: bool = True) -> pd.DataFrame:
        """The digest chain from the journal: tick, digest, and the per-agent digests of the
        agents touched that tick ({agent name: 16 hex digits}). With `lineage`, a restored
        run includes its parent's ticks up to the checkpoint."""
        records = self.lineage_records() if lineage else self.records()
        names = spawned_names(records)
        rows = [
            {
                "tick": t,
                "digest": d,
                "agents": {names.get(s, f"#{s}"): h for s, h in sorted(per.items())},
            }
            for t, (d, per) in sorted(tick_digests(records).items())
        ]
        return pd.DataFrame(rows, columns=["tick", "digest", "agents"])

    def logs(self) -> pd.DataFrame:
        """Agent log lines journalled for this run: tick, agent, level, text (empty until
        the orchestrator journals `agent.log` records, see docs/python.md)."""
        rows = log_rows(self.records(kinds=("agent.log",)))
        return pd.DataFrame(rows, columns=["tick", "agent", "level", "text"])

    def observations(self) -> pd.DataFrame:
        """Observations (`ls_observe` in the SDKs): one row per (tick, agent, key, value),
        decoded from the level-5 agent log lines (see `logs`)."""
        rows, _bad = observation_rows(log_rows(self.records(kinds=("agent.log",))))
        frame = pd.DataFrame(rows, columns=["tick", "agent", "key", "value"])
        return frame.astype({"tick": "int64", "value": "float64"})

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: run id, label, tick, digest, agents by state, counters."""
        st = self.status()
        return {
            "run_id": self.run_id,
            "label": self.scenario.label if self.scenario is not None else "",
            "tick": st.tick,
            "digest": st.digest,
            "agents_by_state": st.agents_by_state,
            "counters": st.counters,
        }

    def export(
        self, out_dir: Path | str, fmt: str = "csv", *, messages: bool = False
    ) -> dict[str, Path]:
        """Write this run's tables to `out_dir` (see `lockstep.api.export_run`); with
        `messages`, the message trace too (regenerated by replay)."""
        from lockstep.api._export import export_run

        return export_run(self, Path(out_dir), fmt, messages)
