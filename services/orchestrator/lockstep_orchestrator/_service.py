"""gRPC face of the orchestrator: decodes requests, calls the run manager, maps errors to
statuses (lockstep.status). No run logic lives here."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lockstep.auth import ADMIN_ONLY, OPERATOR, VIEWER, Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.errors import ConfigError, InvalidRequestError, LockstepError, NotFoundError
from lockstep.metrics import service_registry
from lockstep.modules import Policy, load_trusted_keys
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.server import BoundServer, ServiceBinding, build_server, role_table
from lockstep.status import abort
from lockstep.telemetry_client import TelemetryClient
from lockstep_orchestrator._config import OrchestratorConfig
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._journal import Sink
from lockstep_orchestrator._manager import AutoCheckpoints, Caps, RunManager
from lockstep_orchestrator._metrics import OrchestratorMetrics
from lockstep_orchestrator._ports import GrpcPools
from lockstep_orchestrator._registry import ModuleRegistry
from lockstep_orchestrator._replay import parse_journal

log = logging.getLogger("lockstep.orchestrator")

_SERVICE = opb.DESCRIPTOR.services_by_name["OrchestratorService"]
SERVICE_NAME = _SERVICE.full_name
S = opb.AgentState

ROLE_TABLE = role_table(
    _SERVICE,
    {
        "RegisterModule": ADMIN_ONLY,
        "ListModules": VIEWER,
        "StartRun": OPERATOR,
        "SpawnAgents": OPERATOR,
        "PauseAgents": OPERATOR,
        "ResumeAgents": OPERATOR,
        "TerminateAgents": OPERATOR,
        "SendMessages": OPERATOR,
        "ListAgents": VIEWER,
        "GetAgent": VIEWER,
        "Step": OPERATOR,
        "RunUntil": OPERATOR,
        "GetStatus": VIEWER,
        "GetDigests": VIEWER,
        "CreateCheckpoint": OPERATOR,
        "RestoreCheckpoint": OPERATOR,
        "Replay": OPERATOR,
    },
)
MAX_TICKS_PER_CALL = 10_000_000
DURABLE_WITHIN_S = 1.0  # during a long RunUntil, journal records ship at least this often


class OrchestratorServicer(opb_grpc.OrchestratorServiceServicer):
    """Thin typed servicer over one `RunManager`."""

    def __init__(
        self,
        config: OrchestratorConfig,
        service_token: str | None,
        journal_sink: Sink | None = None,
    ) -> None:
        self.config = config
        if config.trusted_keys is not None:
            load_trusted_keys(config.trusted_keys)  # fail at start-up, not at registration
        self._telemetry = (
            TelemetryClient(AuthedChannel(config.telemetry, service_token))
            if config.telemetry
            else None
        )
        self.pools = GrpcPools(
            config.pools,
            service_token,
            config.pool_transport,
            poll_s=config.tick_channel_poll_us / 1e6,
            ahead=config.ticks_ahead,
        )
        policy = Policy(
            allowed_capabilities=config.capabilities,
            trusted_keys_dir=config.trusted_keys,
            dev_mode=config.dev_mode,
        )
        self.modules = ModuleRegistry(
            self.pools, config.data_dir / "modules" if config.data_dir else None, policy
        )
        self._inference = InferenceBridge(config.inference, service_token)
        self.manager = RunManager(
            self.pools,
            self.modules.wasm,
            self.modules.known,
            journal_sink,
            self._inference,
            config.pool_recovery_s,
            config.data_dir,
            Caps(
                max_fuel_per_step=config.max_fuel_per_step,
                max_agents_per_run=config.max_agents_per_run,
                max_inference_latency=config.max_inference_latency,
            ),
            AutoCheckpoints(
                every=config.checkpoint_every,
                keep=config.checkpoint_keep,
                max_bytes=config.checkpoint_max_bytes,
                max_share=config.checkpoint_max_share,
            ),
        )

        if config.resume:
            self._resume_interrupted()

    def _resume_interrupted(self) -> None:
        """After a crash: find the run this data dir names and resume it from telemetry's
        journal; a run that cannot be resumed is logged and left (it can be replayed)."""
        run_id = self.manager.interrupted_run()
        if not run_id or self._telemetry is None:
            return
        # Tried once: if this attempt dies too (or outlasts the supervisor's start-up
        # timeout), the next start does not try again (no crash loop); the run can still
        # be replayed from its journal.
        self.manager.forget()
        log.info("resuming interrupted run %s from its journal", run_id)
        try:
            entries = [(r.tick, r.kind, r.payload) for r in self._telemetry.query(run_id)]
            if not entries:
                raise NotFoundError("telemetry holds no journal records for it")
            status = self.manager.resume(entries)
        except LockstepError as exc:
            log.error("interrupted run %s not resumed: %s", run_id, exc)
            self.manager.forget()
            return
        r = self.manager.resumed
        log.info(
            "resumed interrupted run %s at tick %d (from tick %d, %d ticks replayed)",
            run_id,
            status.tick,
            r["from_tick"],
            r["replayed_ticks"],
        )

    def close(self) -> None:
        self.manager.close(self.config.data_dir or Path.cwd(), self.config.shutdown_flush_s)
        self.pools.close()
        self._inference.close()

    # ---- modules ----
    def RegisterModule(self, request: opb.RegisterModuleRequest, context: Any) -> Any:
        try:
            info = self.modules.register(request.wasm, request.name)
            self.manager.note(
                "module.register",
                {"module": info.module_hash, "name": info.name, "verdict": info.verdict},
            )
            return opb.RegisterModuleResponse(module=info)
        except Exception as exc:
            abort(context, exc)

    def ListModules(self, request: Any, context: Any) -> Any:
        return opb.ListModulesResponse(modules=self.modules.list())

    # ---- run control ----
    def StartRun(self, request: opb.StartRunRequest, context: Any) -> Any:
        try:
            return self.manager.start(request.config)
        except Exception as exc:
            abort(context, exc)

    def SpawnAgents(self, request: opb.SpawnAgentsRequest, context: Any) -> Any:
        try:
            resolved = [(s, self.modules.resolve(s.module)) for s in request.agents]
            return opb.ControlResponse(effective_tick=self.manager.spawn(resolved))
        except Exception as exc:
            abort(context, exc)

    def _lifecycle(self, verb: str, request: opb.AgentSelector, context: Any) -> Any:
        try:
            tick, seqs = self.manager.lifecycle(verb, list(request.names))
            return opb.ControlResponse(effective_tick=tick, sequences=seqs)
        except Exception as exc:
            abort(context, exc)

    def PauseAgents(self, request: Any, context: Any) -> Any:
        return self._lifecycle("pause", request, context)

    def ResumeAgents(self, request: Any, context: Any) -> Any:
        return self._lifecycle("resume", request, context)

    def TerminateAgents(self, request: Any, context: Any) -> Any:
        return self._lifecycle("terminate", request, context)

    def SendMessages(self, request: opb.SendMessagesRequest, context: Any) -> Any:
        try:
            return opb.ControlResponse(effective_tick=self.manager.send(list(request.messages)))
        except Exception as exc:
            abort(context, exc)

    # ---- queries (never wait for a tick) ----
    def ListAgents(self, request: opb.ListAgentsRequest, context: Any) -> Any:
        return opb.ListAgentsResponse(agents=self.manager.agents(set(request.states)))

    def GetAgent(self, request: opb.GetAgentRequest, context: Any) -> Any:
        try:
            return self.manager.agent(request.name)
        except Exception as exc:
            abort(context, exc)

    def GetStatus(self, request: Any, context: Any) -> Any:
        return self.manager.status()

    def GetDigests(self, request: opb.GetDigestsRequest, context: Any) -> Any:
        return opb.GetDigestsResponse(
            digests=self.manager.digests(request.from_tick, request.to_tick)
        )

    # ---- ticks ----
    def Step(self, request: opb.StepRequest, context: Any) -> Any:
        try:
            if not 1 <= request.ticks <= MAX_TICKS_PER_CALL:
                raise InvalidRequestError(
                    f"ticks must be in 1..{MAX_TICKS_PER_CALL}, got {request.ticks}"
                )
            return self.manager.step(request.ticks)
        except Exception as exc:
            abort(context, exc)

    def RunUntil(self, request: opb.RunUntilRequest, context: Any) -> Iterator[Any]:
        try:
            if not request.until_tick and not request.until_idle:
                raise InvalidRequestError("set until_tick and/or until_idle")
            now = self.manager.kernel.tick
            if request.until_tick < 0:
                raise InvalidRequestError(f"until_tick must be positive, got {request.until_tick}")
            if request.until_tick and request.until_tick < now:
                raise InvalidRequestError(
                    f"until_tick {request.until_tick} has already passed: the run is at tick {now}"
                )
            if request.until_idle and not request.until_tick and not request.max_ticks:
                raise InvalidRequestError(
                    "until_idle needs max_ticks or until_tick as a safety bound"
                )
            every = max(1, request.progress_every)
            done_ticks = 0
            m = self.manager
            first, start_tick = m.kernel, m.kernel.tick
            while True:
                k = m.kernel
                reason = ""
                if request.until_tick and k.tick >= request.until_tick:
                    reason = "tick"
                elif request.until_idle and k.idle():
                    reason = "idle"
                elif request.max_ticks and done_ticks >= request.max_ticks:
                    reason = "max_ticks"
                if reason:
                    k.journal.flush()
                    yield opb.RunProgress(status=m.status(), done=True, reason=reason)
                    return
                if not context.is_active():
                    m.settle()  # the tick started ahead: finished, as a tick in progress is
                    return
                # Another tick follows this one unless a bound says so (an idle run is
                # never started ahead by the kernel), so the kernel may start it early.
                more = (not request.until_tick or k.tick + 1 < request.until_tick) and (
                    not request.max_ticks or done_ticks + 1 < request.max_ticks
                )
                m.tick_once(ahead=more)
                # Counted by ticks: a checkpoint between two may have finished one started
                # ahead (Manager.settle).
                done_ticks = m.kernel.tick - start_tick if m.kernel is first else done_ticks + 1
                if done_ticks % every == 0:
                    # Durable before acknowledged: the ticks a progress message reports are
                    # in the write-ahead file (one fsync per message); telemetry gets them
                    # at least once a second (an append per message would cost more).
                    m.kernel.journal.flush(older_than=DURABLE_WITHIN_S)
                    m.kernel.journal.durable()
                    yield opb.RunProgress(status=m.status())
        except Exception as exc:
            abort(context, exc)

    def _journal_entries(self, request: opb.ReplayRequest) -> list[tuple[int, str, bytes]]:
        if request.entries:
            return [(e.tick, e.kind, e.payload) for e in request.entries]
        if not request.run_id:
            raise InvalidRequestError("give a run_id or the journal entries")
        if self._telemetry is None:
            raise InvalidRequestError("no telemetry service configured: pass the journal entries")
        entries = [(r.tick, r.kind, r.payload) for r in self._telemetry.query(request.run_id)]
        if not entries:
            raise NotFoundError(f"no journal records for run {request.run_id!r}")
        return entries

    def Replay(self, request: opb.ReplayRequest, context: Any) -> Iterator[Any]:
        try:
            parsed = parse_journal(self._journal_entries(request))
            trace = (
                (request.trace_from_tick, request.trace_to_tick) if request.trace_messages else None
            )
            yield from self.manager.replay(
                parsed, request.verify_inference, request.progress_every or 100, trace
            )
        except Exception as exc:
            abort(context, exc)

    def CreateCheckpoint(
        self,
        request: opb.CreateCheckpointRequest,
        context: Any,
    ) -> Any:
        try:
            return self.manager.checkpoint(request.label)
        except Exception as exc:
            abort(context, exc)

    def RestoreCheckpoint(
        self,
        request: opb.RestoreCheckpointRequest,
        context: Any,
    ) -> Any:
        try:
            return self.manager.restore(request.id)
        except Exception as exc:
            abort(context, exc)


def create_server(
    address: str, *, auth: TokenStore | None, config: OrchestratorConfig | None = None
) -> BoundServer:
    """Start an orchestrator on `address` ("127.0.0.1:0", "unix:/path")."""
    if config is None:
        raise ConfigError("the orchestrator needs a config with at least one pool address")
    token = auth.token(Role.SERVICE) if auth is not None else None
    sink = None
    if config.telemetry:
        from lockstep_orchestrator._telemetry import telemetry_sink

        sink = telemetry_sink(config.telemetry, token)
    servicer = OrchestratorServicer(config, token, sink)
    registry = service_registry()
    metrics = OrchestratorMetrics(registry)
    servicer.manager.on_commit = metrics.on_tick
    binding = ServiceBinding(
        add=lambda server: opb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
        full_name=SERVICE_NAME,
        methods=ROLE_TABLE,
        servicer=servicer,
    )
    bound = build_server(address, [binding], auth=auth, registry=registry)
    bound.on_stop.append(servicer.close)
    return bound


__all__ = ["ROLE_TABLE", "SERVICE_NAME", "OrchestratorServicer", "create_server"]
