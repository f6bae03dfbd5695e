"""Agent lifecycle and run control on a running deployment:
`lockstep agent spawn|pause|resume|terminate|send|list|inspect` and `lockstep step|until`.

Every action takes effect at the next tick boundary; the command prints that tick.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from lockstep.auth import Role
from lockstep.cli._agent import agent_app
from lockstep.cli._app import app
from lockstep.cli._context import StateDirOption, connect, fail
from lockstep.cli._run import _bar
from lockstep.errors import LockstepError
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc

console = Console()
S = opb.AgentState


def _stub(
    state_dir: Path | None, role: Role
) -> tuple[grpc.Channel, opb_grpc.OrchestratorServiceStub]:
    channel = connect("orchestrator", role, state_dir)
    return channel, opb_grpc.OrchestratorServiceStub(channel)


def _call(state_dir: Path | None, role: Role, rpc: str, request: object) -> object:
    try:
        channel, stub = _stub(state_dir, role)
        with channel:
            return getattr(stub, rpc)(request)
    except grpc.RpcError as exc:
        raise fail(f"{exc.code().name}: {exc.details()}") from None
    except LockstepError as exc:
        raise fail(exc) from None


def _state(value: int) -> str:
    return S.Name(value).removeprefix("AGENT_STATE_").lower()


@agent_app.command()
def spawn(
    name: Annotated[str, typer.Argument(help="unique agent name")],
    module: Annotated[str, typer.Option(help="registered module name or sha256:... hash")],
    args: Annotated[str, typer.Option(help="spawn arguments (UTF-8)")] = "",
    priority: Annotated[int, typer.Option(help="higher steps first")] = 0,
    topic: Annotated[list[str] | None, typer.Option(help="subscribe to a topic")] = None,
    max_restarts: Annotated[int, typer.Option(min=0, help="restarts after faults")] = 0,
    backoff_ticks: Annotated[int, typer.Option(min=0, help="ticks before a restart")] = 1,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Spawn an agent at the next tick."""
    req = opb.SpawnAgentsRequest(
        agents=[
            opb.AgentSpawn(
                name=name,
                module=module,
                args=args.encode(),
                priority=priority,
                topics=topic or [],
                restart=opb.RestartPolicy(max_restarts=max_restarts, backoff_ticks=backoff_ticks),
            )
        ]
    )
    resp = _call(state_dir_opt, Role.OPERATOR, "SpawnAgents", req)
    console.print(f"spawn of {name} takes effect at tick {resp.effective_tick}")  # type: ignore[attr-defined]


def _lifecycle(rpc: str, verb: str, names: list[str], state_dir: Path | None) -> None:
    resp = _call(state_dir, Role.OPERATOR, rpc, opb.AgentSelector(names=names))
    console.print(f"{verb} {', '.join(names)} at tick {resp.effective_tick}")  # type: ignore[attr-defined]


@agent_app.command()
def pause(
    names: Annotated[list[str], typer.Argument(help="agent names")],
    state_dir_opt: StateDirOption = None,
) -> None:
    """Pause agents at the next tick (their inboxes keep filling)."""
    _lifecycle("PauseAgents", "pausing", names, state_dir_opt)


@agent_app.command()
def resume(
    names: Annotated[list[str], typer.Argument(help="agent names")],
    state_dir_opt: StateDirOption = None,
) -> None:
    """Resume paused agents at the next tick."""
    _lifecycle("ResumeAgents", "resuming", names, state_dir_opt)


@agent_app.command()
def terminate(
    names: Annotated[list[str], typer.Argument(help="agent names")],
    state_dir_opt: StateDirOption = None,
) -> None:
    """Terminate agents at the next tick (agent_shutdown is called)."""
    _lifecycle("TerminateAgents", "terminating", names, state_dir_opt)


@agent_app.command()
def send(
    to: Annotated[str, typer.Argument(help="agent name, * or #topic")],
    payload: Annotated[str, typer.Argument(help="message text (UTF-8)")],
    state_dir_opt: StateDirOption = None,
) -> None:
    """Send a message from outside the run; delivered at the next tick."""
    resp = _call(
        state_dir_opt,
        Role.OPERATOR,
        "SendMessages",
        opb.SendMessagesRequest(messages=[opb.ExternalMessage(to=to, payload=payload.encode())]),
    )
    console.print(f"message to {to} delivered at tick {resp.effective_tick}")  # type: ignore[attr-defined]


@agent_app.command("list")
def list_agents(state_dir_opt: StateDirOption = None) -> None:
    """Agents of the current run, in spawn order."""
    resp = _call(state_dir_opt, Role.VIEWER, "ListAgents", opb.ListAgentsRequest())
    table = Table(title="agents")
    for col in (
        "seq",
        "name",
        "state",
        "priority",
        "pool",
        "steps",
        "sent",
        "received",
        "fuel",
        "restarts",
        "inbox",
    ):
        table.add_column(col)
    for a in resp.agents:  # type: ignore[attr-defined]
        table.add_row(
            str(a.sequence),
            a.name,
            _state(a.state),
            str(a.priority),
            str(a.pool),
            str(a.steps),
            str(a.messages_sent),
            str(a.messages_received),
            f"{a.fuel_used:,}",
            str(a.restarts),
            str(a.inbox),
        )
    console.print(table)


@agent_app.command()
def inspect(
    name: Annotated[str, typer.Argument(help="agent name")], state_dir_opt: StateDirOption = None
) -> None:
    """One agent in detail, including its last fault."""
    a = _call(state_dir_opt, Role.VIEWER, "GetAgent", opb.GetAgentRequest(name=name))
    table = Table(title=f"agent {name}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for field in (
        "sequence",
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
    ):
        table.add_row(field, str(getattr(a, field)))
    table.add_row("state", _state(a.state))  # type: ignore[attr-defined]
    table.add_row("topics", ", ".join(a.topics))  # type: ignore[attr-defined]
    fault = a.last_fault  # type: ignore[attr-defined]
    if fault.kind:
        table.add_row(
            "last fault", f"{cpb.FaultKind.Name(fault.kind)} in {fault.entry_point}: {fault.detail}"
        )
    console.print(table)


def _print_status(status: opb.RunStatus) -> None:
    states = ", ".join(f"{n} {k}" for k, n in sorted(status.agents_by_state.items()))
    console.print(
        f"tick {status.tick}  agents: {states or 'none'}  messages "
        f"{status.counters.messages:,}  faults {status.counters.faults}"
    )
    console.print(f"digest {status.digest.hex()}", soft_wrap=True)


@app.command()
def step(
    ticks: Annotated[int, typer.Argument(min=1, help="ticks to execute")] = 1,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Execute N ticks of the current run."""
    status = _call(state_dir_opt, Role.OPERATOR, "Step", opb.StepRequest(ticks=ticks))
    _print_status(status)  # type: ignore[arg-type]


@app.command()
def until(
    tick: Annotated[int, typer.Option(min=0, help="stop after this tick (0 = no tick bound)")] = 0,
    idle: Annotated[bool, typer.Option(help="stop when nothing can change")] = False,
    max_ticks: Annotated[int, typer.Option(min=1, help="safety bound for --idle")] = 100_000,
    state_dir_opt: StateDirOption = None,
) -> None:
    """Run the current run until a tick and/or until it is idle, with a progress bar."""
    if not tick and not idle:
        raise fail("give --tick T and/or --idle")
    req = opb.RunUntilRequest(
        until_tick=tick, until_idle=idle, max_ticks=max_ticks, progress_every=10
    )
    try:
        channel, stub = _stub(state_dir_opt, Role.OPERATOR)
        with channel, _bar("run", False) as bar:
            task = bar.add_task("run", total=tick or None)
            last = opb.RunProgress()
            for last in stub.RunUntil(req):
                bar.update(task, completed=last.status.tick)
    except grpc.RpcError as exc:
        raise fail(f"{exc.code().name}: {exc.details()}") from None
    except LockstepError as exc:
        raise fail(exc) from None
    console.print(f"stopped: {last.reason}")
    _print_status(last.status)


@app.command()
def checkpoint(
    label: Annotated[str, typer.Option(help="a note kept with it")] = "",
    state_dir_opt: StateDirOption = None,
) -> None:
    """Checkpoint the current run at its tick boundary (orchestrator state + every agent's
    memory and globals); restore it later with `lockstep restore ID`."""
    info = _call(
        state_dir_opt, Role.OPERATOR, "CreateCheckpoint", opb.CreateCheckpointRequest(label=label)
    )
    console.print(f"checkpoint {info.id} at tick {info.tick} ({info.size:,} bytes)")  # type: ignore[attr-defined]


@app.command()
def restore(
    checkpoint_id: Annotated[str, typer.Argument(metavar="ID", help="checkpoint id")],
    state_dir_opt: StateDirOption = None,
) -> None:
    """Replace the current run with a checkpoint; continuing gives the same digests as the
    original run (into any number of pools)."""
    status = _call(
        state_dir_opt,
        Role.OPERATOR,
        "RestoreCheckpoint",
        opb.RestoreCheckpointRequest(id=checkpoint_id),
    )
    console.print(f"restored {checkpoint_id}")
    _print_status(status)  # type: ignore[arg-type]
