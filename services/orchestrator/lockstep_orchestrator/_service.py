"""gRPC face of the orchestrator: validates requests, queues control actions, runs ticks."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from lockstep.auth import ADMIN_ONLY, OPERATOR, VIEWER, Role, TokenStore
from lockstep.client import AuthedChannel
from lockstep.common.v1 import common_pb2 as cpb
from lockstep.errors import (
    ConfigError,
    DeterminismError,
    LockstepError,
    ModuleError,
    ServiceError,
)
from lockstep.modules import KeyFileError, Policy, load_trusted_keys
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.server import BoundServer, ServiceBinding, build_server
from lockstep.telemetry_client import TelemetryClient
from lockstep_orchestrator._checkpoint import capture, load, restore_into, save
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._journal import Journal, Sink
from lockstep_orchestrator._pools import PoolSet
from lockstep_orchestrator._registry import ModuleRegistry
from lockstep_orchestrator._replay import (
    NOT_COMPARED,
    JournalInference,
    ParsedJournal,
    agent_hashes,
    first_difference,
    parse_journal,
    reexecute_tick,
)
from lockstep_orchestrator._run import Run

log = logging.getLogger("lockstep.orchestrator")

SERVICE_NAME = "lockstep.orchestrator.v1.OrchestratorService"
S = opb.AgentState

ROLES = {
    "RegisterModule": ADMIN_ONLY, "ListModules": VIEWER, "StartRun": OPERATOR,
    "SpawnAgents": OPERATOR, "PauseAgents": OPERATOR, "ResumeAgents": OPERATOR,
    "TerminateAgents": OPERATOR, "SendMessages": OPERATOR, "ListAgents": VIEWER,
    "GetAgent": VIEWER, "Step": OPERATOR, "RunUntil": OPERATOR, "GetStatus": VIEWER,
    "GetDigests": VIEWER, "CreateCheckpoint": OPERATOR, "RestoreCheckpoint": OPERATOR,
    "Replay": OPERATOR,
}
MAX_TICKS_PER_CALL = 10_000_000
# Inference is a core feature, so the default policy grants it along with the rest.
DEFAULT_GRANTED = frozenset({"send", "log", "random", "tick", "infer:*"})


@dataclass(frozen=True)
class OrchestratorConfig:
    """Orchestrator settings.

    pools: wasm_pool addresses in shard order (at least one).
    telemetry: telemetry service address; None keeps the journal in memory only.
    inference: inference service address; None answers agents' infer calls with errors.
    data_dir: where registered modules are stored; None keeps them in memory.
    trusted_keys: directory of *.pub keys trusted to sign modules; None trusts none.
    capabilities: capabilities the operator grants to modules.
    dev_mode: accept unsigned modules (loudly); every other check still applies.
    shutdown_flush_s: at shutdown, how long to wait for telemetry before writing unsent
        journal records to a file in data_dir.
    pool_recovery_s: when a pool fails mid-tick, how long to wait for it to serve again
        (the supervisor restarts it) before rebuilding the run by replay; 0 = fail the tick.
    """

    pools: tuple[str, ...]
    telemetry: str | None = None
    inference: str | None = None
    data_dir: Path | None = None
    trusted_keys: Path | None = None
    capabilities: frozenset[str] = DEFAULT_GRANTED
    dev_mode: bool = False
    shutdown_flush_s: float = 10.0
    pool_recovery_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.pools:
            raise ConfigError("at least one wasm_pool address is required (--pools)")


class PreconditionError(LockstepError):
    """The request is valid but the orchestrator is not in a state to serve it."""


def _abort(context: grpc.ServicerContext, exc: Exception) -> Any:
    if isinstance(exc, KeyFileError | DeterminismError | PreconditionError):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, KeyError):
        context.abort(grpc.StatusCode.NOT_FOUND, str(exc.args[0]))
    if isinstance(exc, ConfigError | ModuleError | ValueError):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, ServiceError):
        context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


class OrchestratorServicer(opb_grpc.OrchestratorServiceServicer):
    """Holds the one current run; a lock serialises ticks and control-plane changes."""

    def __init__(self, config: OrchestratorConfig, service_token: str | None,
                 journal_sink: Sink | None = None) -> None:
        self.config = config
        if config.trusted_keys is not None:
            load_trusted_keys(config.trusted_keys)  # fail at start-up, not at registration
        self._telemetry = (TelemetryClient(AuthedChannel(config.telemetry, service_token))
                           if config.telemetry else None)
        self.pools = PoolSet(config.pools, service_token)
        policy = Policy(allowed_capabilities=config.capabilities,
                        trusted_keys_dir=config.trusted_keys, dev_mode=config.dev_mode)
        self.modules = ModuleRegistry(
            self.pools, config.data_dir / "modules" if config.data_dir else None, policy)
        self._sink = journal_sink
        self._inference = InferenceBridge(config.inference, service_token)
        self._lock = threading.RLock()
        self.run = self._new_run(opb.RunConfig())

    def close(self) -> None:
        with self._lock:
            self.run.journal.close(self.config.data_dir or Path.cwd(),
                                   self.config.shutdown_flush_s)
        self.pools.close()
        self._inference.close()

    def _new_run(self, config: opb.RunConfig) -> Run:
        return Run(config, self.pools, self.modules.wasm, Journal(self._sink), self._inference)

    # ---- modules ----
    def RegisterModule(self, request: opb.RegisterModuleRequest, context: Any) -> Any:  # noqa: N802
        try:
            with self._lock:
                info = self.modules.register(request.wasm, request.name)
                self.run.journal.record("module.register", self.run.tick + 1, {
                    "module": info.module_hash, "name": info.name, "verdict": info.verdict})
        except Exception as exc:
            return _abort(context, exc)
        return opb.RegisterModuleResponse(module=info)

    def ListModules(self, request: Any, context: Any) -> Any:  # noqa: N802
        return opb.ListModulesResponse(modules=self.modules.list())

    # ---- run control ----
    def StartRun(self, request: opb.StartRunRequest, context: Any) -> Any:  # noqa: N802
        try:
            with self._lock:
                self.run.journal.flush()
                self.pools.reset()
                self.run = self._new_run(request.config)
                return self.run.status()
        except Exception as exc:
            return _abort(context, exc)

    def SpawnAgents(self, request: opb.SpawnAgentsRequest, context: Any) -> Any:  # noqa: N802
        try:
            with self._lock:
                resolved = []
                names = set()
                for spawn in request.agents:
                    module_hash = self.modules.resolve(spawn.module)
                    self.run.validate_spawn(spawn, module_hash)
                    if spawn.name in names:
                        raise ConfigError(f"agent {spawn.name!r} appears twice in the request")
                    names.add(spawn.name)
                    resolved.append((spawn, module_hash))
                tick = self.run.tick + 1
                for item in resolved:
                    self.run.enqueue("spawn", item)
                return opb.ControlResponse(effective_tick=tick)
        except Exception as exc:
            return _abort(context, exc)

    def _lifecycle(self, kind: str, request: opb.AgentSelector, context: Any) -> Any:
        try:
            with self._lock:
                for name in request.names:
                    self.run.agent(name)
                tick = self.run.tick + 1
                seqs = []
                for name in request.names:
                    self.run.enqueue(kind, name)
                    seqs.append(self.run.agent(name).seq)
                return opb.ControlResponse(effective_tick=tick, sequences=seqs)
        except Exception as exc:
            return _abort(context, exc)

    def PauseAgents(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._lifecycle("pause", request, context)

    def ResumeAgents(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._lifecycle("resume", request, context)

    def TerminateAgents(self, request: Any, context: Any) -> Any:  # noqa: N802
        return self._lifecycle("terminate", request, context)

    def SendMessages(self, request: opb.SendMessagesRequest, context: Any) -> Any:  # noqa: N802
        try:
            with self._lock:
                for msg in request.messages:
                    if len(msg.payload) > 65536:
                        raise ConfigError(f"message to {msg.to!r} exceeds 65536 bytes")
                    if msg.to != "*" and not msg.to.startswith("#"):
                        self.run.agent(msg.to)
                tick = self.run.tick + 1
                for msg in request.messages:
                    self.run.enqueue("message", (msg.to, msg.payload))
                return opb.ControlResponse(effective_tick=tick)
        except Exception as exc:
            return _abort(context, exc)

    # ---- queries ----
    def ListAgents(self, request: opb.ListAgentsRequest, context: Any) -> Any:  # noqa: N802
        with self._lock:
            wanted = set(request.states)
            return opb.ListAgentsResponse(agents=[
                a.info() for a in self.run.by_seq if not wanted or a.state in wanted])

    def GetAgent(self, request: opb.GetAgentRequest, context: Any) -> Any:  # noqa: N802
        try:
            with self._lock:
                return self.run.agent(request.name).info()
        except Exception as exc:
            return _abort(context, exc)

    def GetStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        with self._lock:
            return self.run.status()

    def GetDigests(self, request: opb.GetDigestsRequest, context: Any) -> Any:  # noqa: N802
        with self._lock:
            first = max(1, request.from_tick or 1)
            last = min(self.run.tick, request.to_tick or self.run.tick)
            return opb.GetDigestsResponse(digests=[
                cpb.TickDigest(tick=t, digest=self.run.digests[t - 1])
                for t in range(first, last + 1)])

    # ---- ticks ----
    def _tick(self) -> None:
        with self._lock:
            pending = list(self.run.pending)
            try:
                self.run.step_tick()
            except ServiceError as exc:
                if not self.config.pool_recovery_s:
                    raise
                log.warning("tick %d failed (%s): recovering", self.run.tick + 1, exc)
                self._recover(pending)
                self.run.step_tick()

    def _recover(self, pending: list[Any]) -> None:
        """Rebuild the run after a pool failure: wait for the pools, replay the completed
        ticks from the journal into fresh instances (checking every digest), re-queue the
        failed tick's actions. The failed tick then runs again, so the digest chain is the
        one a fault-free run gives."""
        old = self.run
        failed = old.tick + 1
        self.pools.wait_all_serving(self.config.pool_recovery_s)
        self.pools.forget_modules()
        self.pools.reset()
        old.journal.discard_from(failed)
        parsed = parse_journal([(r.tick, r.kind, r.payload) for r in old.journal.records])
        run = Run(parsed.config, self.pools, self.modules.wasm, Journal(None),
                  JournalInference(parsed.inference), run_id=old.run_id)
        for t in range(1, failed):
            reexecute_tick(run, parsed, t)
            if run.digest != old.digests[t - 1]:
                raise DeterminismError(f"recovery replay diverged at tick {t}")
        run.take_infer_due(old, failed)
        run.journal, run.inference = old.journal, self._inference
        for action in pending:
            run.enqueue(action.kind, action.payload)
        run.journal.record("run.recover", failed, {"replayed_ticks": failed - 1})
        self.run = run

    def Step(self, request: opb.StepRequest, context: Any) -> Any:  # noqa: N802
        if not 1 <= request.ticks <= MAX_TICKS_PER_CALL:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"ticks must be in 1..{MAX_TICKS_PER_CALL}, got {request.ticks}")
        try:
            for _ in range(request.ticks):
                self._tick()
            with self._lock:
                self.run.journal.flush()
                return self.run.status()
        except Exception as exc:
            return _abort(context, exc)

    def RunUntil(self, request: opb.RunUntilRequest, context: Any) -> Iterator[Any]:  # noqa: N802
        if not request.until_tick and not request.until_idle:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "set until_tick and/or until_idle")
        if request.until_idle and not request.until_tick and not request.max_ticks:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "until_idle needs max_ticks or until_tick as a safety bound")
        every = max(1, request.progress_every)
        done_ticks = 0
        try:
            while True:
                with self._lock:
                    reason = ""
                    if request.until_tick and self.run.tick >= request.until_tick:
                        reason = "tick"
                    elif request.until_idle and self.run.idle():
                        reason = "idle"
                    elif request.max_ticks and done_ticks >= request.max_ticks:
                        reason = "max_ticks"
                    if reason:
                        self.run.journal.flush()
                        yield opb.RunProgress(status=self.run.status(), done=True, reason=reason)
                        return
                if not context.is_active():
                    return
                self._tick()
                done_ticks += 1
                if done_ticks % every == 0:
                    with self._lock:
                        status = self.run.status()
                    yield opb.RunProgress(status=status)
        except Exception as exc:
            _abort(context, exc)

    def _journal_entries(self, request: opb.ReplayRequest) -> list[tuple[int, str, bytes]]:
        if request.entries:
            return [(e.tick, e.kind, e.payload) for e in request.entries]
        if not request.run_id:
            raise ConfigError("give a run_id or the journal entries")
        if self._telemetry is None:
            raise ConfigError("no telemetry service configured: pass the journal entries")
        entries = [(r.tick, r.kind, r.payload) for r in self._telemetry.query(request.run_id)]
        if not entries:
            raise KeyError(f"no journal records for run {request.run_id!r}")
        return entries

    def Replay(self, request: opb.ReplayRequest, context: Any) -> Iterator[Any]:  # noqa: N802
        every = request.progress_every or 100
        try:
            parsed = parse_journal(self._journal_entries(request))
            with self._lock:
                missing = sorted({p[1] for acts in parsed.actions.values() for k, p in acts
                                  if k == "spawn" and p[1] not in self.modules.known()})
                if missing:
                    raise PreconditionError(
                        f"register these modules before replaying: {', '.join(missing)}")
                self.run.journal.flush()
                self.pools.reset()
                bridge = (self._inference if request.verify_inference
                          else JournalInference(parsed.inference))
                self.run = Run(parsed.config, self.pools, self.modules.wasm, Journal(self._sink),
                               bridge)
            total = parsed.last_tick
            cursor = 0
            for t in range(1, total + 1):
                with self._lock:
                    run = self.run
                    reexecute_tick(run, parsed, t)
                    records = run.journal.records
                    events = [(r.kind, r.payload) for r in records[cursor:]
                              if r.tick == t and r.kind not in NOT_COMPARED]
                    cursor = len(records)
                    expected, agents = parsed.digests.get(t, (b"", b""))
                    if run.digest != expected or events != parsed.events.get(t, []):
                        run.journal.flush()
                        yield self._divergence(parsed, t, agents, events)
                        return
                if t % every == 0:
                    yield opb.ReplayProgress(tick=t, total_ticks=total, ok=True,
                                             replay_run_id=self.run.run_id)
            with self._lock:
                self.run.journal.flush()
                yield opb.ReplayProgress(tick=total, total_ticks=total, done=True, ok=True,
                                         replay_run_id=self.run.run_id,
                                         detail=f"{total} tick digests identical")
        except Exception as exc:
            _abort(context, exc)

    def _divergence(self, parsed: ParsedJournal, t: int, agents: bytes,
                    events: list[tuple[str, bytes]]) -> opb.ReplayProgress:
        run = self.run
        original = agent_hashes(agents)
        replayed = agent_hashes(run.last_agent_digests)
        seqs = sorted(set(original) | set(replayed))
        first = next((s for s in seqs if original.get(s) != replayed.get(s)), None)
        name = run.by_seq[first - 1].name if first is not None and first <= len(run.by_seq) else ""
        return opb.ReplayProgress(
            tick=t, total_ticks=parsed.last_tick, done=True, ok=False, divergent_tick=t,
            divergent_agent=name, replay_run_id=run.run_id,
            detail=first_difference(parsed.events.get(t, []), events))

    def _checkpoint_dir(self) -> Path:
        if self.config.data_dir is None:
            raise PreconditionError("checkpoints need a data directory (--data-dir)")
        return self.config.data_dir / "checkpoints"

    def CreateCheckpoint(self, request: opb.CreateCheckpointRequest,  # noqa: N802
                         context: Any) -> Any:
        try:
            with self._lock:
                directory = self._checkpoint_dir()
                run = self.run
                run.journal.flush()
                state, snapshots = capture(run, request.label)
                checkpoint_id = f"{run.run_id}-t{run.tick}"
                size = save(directory, checkpoint_id, state, snapshots)
                run.journal.record("run.checkpoint", run.tick, {
                    "id": checkpoint_id, "label": request.label, "agents": len(snapshots)})
                return opb.CheckpointInfo(id=checkpoint_id, tick=run.tick, digest=run.digest,
                                          size=size)
        except Exception as exc:
            return _abort(context, exc)

    def RestoreCheckpoint(self, request: opb.RestoreCheckpointRequest,  # noqa: N802
                          context: Any) -> Any:
        try:
            with self._lock:
                state, snapshots = load(self._checkpoint_dir(), request.id)
                missing = sorted({a["module_hash"] for a in state["agents"]}
                                 - self.modules.known())
                if missing:
                    raise PreconditionError(
                        f"register these modules before restoring: {', '.join(missing)}")
                self.run.journal.flush()
                self.pools.reset()
                config = opb.RunConfig.FromString(bytes.fromhex(state["config"]))
                run = Run(config, self.pools, self.modules.wasm, Journal(self._sink),
                          self._inference)
                restore_into(run, state, snapshots)
                run.journal.record("run.restore", run.tick, {
                    "checkpoint": request.id, "from_run": state["run_id"],
                    "digest": run.digest.hex()})
                self.run = run
                return run.status()
        except Exception as exc:
            return _abort(context, exc)


def create_server(address: str, *, auth: TokenStore | None,
                  config: OrchestratorConfig | None = None) -> BoundServer:
    """Start an orchestrator on `address` ("127.0.0.1:0", "unix:/path")."""
    if config is None:
        raise ConfigError("the orchestrator needs a config with at least one pool address")
    token = auth.token(Role.SERVICE) if auth is not None else None
    sink = None
    if config.telemetry:
        from lockstep_orchestrator._telemetry import telemetry_sink

        sink = telemetry_sink(config.telemetry, token)
    servicer = OrchestratorServicer(config, token, sink)
    binding = ServiceBinding(
        add=lambda server: opb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
        full_name=SERVICE_NAME,
        methods={f"/{SERVICE_NAME}/{m}": roles for m, roles in ROLES.items()},
    )
    bound = build_server(address, [binding], auth=auth)
    bound.on_stop.append(servicer.close)
    return bound


__all__ = ["OrchestratorConfig", "OrchestratorServicer", "create_server"]
