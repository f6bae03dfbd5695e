"""Drive a scenario through a running orchestrator over gRPC (what `lockstep run` does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from lockstep import abi
from lockstep.common.v1 import common_pb2 as cpb
from lockstep.errors import ModuleError
from lockstep.modules import (
    Manifest,
    embed_manifest,
    load_private_key,
    read_manifest,
    read_signature,
    sign,
)
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.scenario import AgentGroup, Scenario
from lockstep.status import error_for

__all__ = ["ReplayResult", "RunSummary", "module_bytes", "prepare_module", "replay_run",
           "run_scenario"]


Progress = Callable[[int, int], None]  # (tick, target tick)


@dataclass(frozen=True)
class RunSummary:
    """The outcome of a scenario run."""

    label: str
    run_id: str
    tick: int
    digest: str
    agents_by_state: dict[str, int]
    counters: dict[str, int]
    digests: list[str]
    seconds: float


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of a replay."""

    ok: bool
    ticks: int
    divergent_tick: int
    divergent_agent: str
    detail: str
    replay_run_id: str


def replay_run(channel: grpc.Channel, run_id: str = "", *,
               entries: list[opb.JournalEntry] | None = None, verify_inference: bool = False,
               progress: Progress | None = None) -> ReplayResult:
    """Re-execute a journalled run (from telemetry by id, or from `entries`) and compare."""
    stub = opb_grpc.OrchestratorServiceStub(channel)
    req = opb.ReplayRequest(run_id=run_id, entries=entries or [],
                            verify_inference=verify_inference, progress_every=10)
    last = opb.ReplayProgress()
    try:
        for last in stub.Replay(req):
            if progress is not None:
                progress(last.tick, last.total_ticks)
    except grpc.RpcError as exc:
        raise error_for("replay", exc) from None
    return ReplayResult(last.ok, last.tick, last.divergent_tick, last.divergent_agent,
                        last.detail, last.replay_run_id)


def module_bytes(path: Path, name: str, build_dir: Path | None = None) -> bytes:
    """The wasm bytes of scenario module `name`: read a .wasm, or build a source file (its
    manifest then carries `name`)."""
    if path.suffix == ".wasm":
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ModuleError(f"cannot read module {path}: {exc.strerror}") from None
    from lockstep.agents import build_agent

    out = None if build_dir is None else build_dir / f"{name}.wasm"
    return build_agent(path, out, name=name).read_bytes()


def prepare_module(wasm: bytes, name: str, signing_key: Path | None) -> bytes:
    """Give a module without a manifest one (named `name`, capabilities from its imports),
    and sign an unsigned module with `signing_key` (the local deployment's key) if given."""
    if read_manifest(wasm) is None:
        wasm = embed_manifest(wasm, Manifest(name=name, version="0.0.0",
                                             capabilities=abi.capabilities_for(wasm)))
    if signing_key is not None and read_signature(wasm) is None:
        wasm = sign(wasm, load_private_key(signing_key))
    return wasm


def _call(what: str, fn: Callable[..., object], *args: object) -> object:
    try:
        return fn(*args)
    except grpc.RpcError as exc:
        raise error_for(what, exc) from None


def _spawns(groups: tuple[AgentGroup, ...], modules: dict[str, str]) -> opb.SpawnAgentsRequest:
    req = opb.SpawnAgentsRequest()
    for group in groups:
        for name, args in group.expand():
            req.agents.add(name=name, module=modules[group.module], priority=group.priority,
                           args=args, topics=group.topics,
                           restart=opb.RestartPolicy(**group.restart),
                           limits=cpb.Limits(**group.limits))
    return req


def run_scenario(scenario: Scenario, channel: grpc.Channel, *,
                 progress: Progress | None = None, build_dir: Path | None = None,
                 signing_key: Path | None = None) -> RunSummary:
    """Start a fresh run for `scenario`, execute it, and return its summary.

    Modules get a manifest if they lack one, and are signed with `signing_key` if unsigned.
    """
    stub = opb_grpc.OrchestratorServiceStub(channel)
    started = time.perf_counter()
    config = opb.RunConfig(
        seed=scenario.seed, max_steps_per_tick=scenario.max_steps_per_tick,
        inference_latency=scenario.inference_latency, label=scenario.label,
        default_limits=cpb.Limits(**scenario.limits),
    )
    wasm = {name: prepare_module(module_bytes(path, name, build_dir), name, signing_key)
            for name, path in sorted(scenario.modules.items())}
    _call("start run", stub.StartRun, opb.StartRunRequest(config=config))
    modules: dict[str, str] = {}
    for name, data in wasm.items():
        resp = _call(f"register module {name}", stub.RegisterModule,
                     opb.RegisterModuleRequest(wasm=data, name=name))
        modules[name] = resp.module.module_hash  # type: ignore[attr-defined]
    _call("spawn agents", stub.SpawnAgents, _spawns(scenario.agents, modules))

    def run_until(tick: int, until_idle: bool) -> None:
        if tick <= 0:
            return
        req = opb.RunUntilRequest(until_tick=tick, until_idle=until_idle,
                                  progress_every=max(1, scenario.ticks // 200))
        try:
            for update in stub.RunUntil(req):
                if progress is not None:
                    progress(update.status.tick, scenario.ticks)
        except grpc.RpcError as exc:
            raise error_for("run", exc) from None

    for action in scenario.actions:
        if action.tick >= scenario.ticks:
            break
        run_until(action.tick, False)
        if action.spawn:
            _call("spawn", stub.SpawnAgents, _spawns(action.spawn, modules))
        for kind, names in (("pause", action.pause), ("resume", action.resume),
                            ("terminate", action.terminate)):
            if names:
                rpc = {"pause": stub.PauseAgents, "resume": stub.ResumeAgents,
                       "terminate": stub.TerminateAgents}[kind]
                _call(kind, rpc, opb.AgentSelector(names=names))
        if action.send:
            _call("send", stub.SendMessages, opb.SendMessagesRequest(
                messages=[opb.ExternalMessage(to=to, payload=p) for to, p in action.send]))
    run_until(scenario.ticks, scenario.until_idle)
    status = _call("status", stub.GetStatus, opb.GetStatusRequest())
    digests = _call("digests", stub.GetDigests, opb.GetDigestsRequest())
    st: opb.RunStatus = status  # type: ignore[assignment]
    counters = {fd.name: getattr(st.counters, fd.name)
                for fd in opb.RunCounters.DESCRIPTOR.fields}
    return RunSummary(
        label=scenario.label, run_id=st.run_id, tick=st.tick, digest=st.digest.hex(),
        agents_by_state=dict(sorted(st.agents_by_state.items())), counters=counters,
        digests=[d.digest.hex() for d in digests.digests],  # type: ignore[attr-defined]
        seconds=time.perf_counter() - started,
    )

