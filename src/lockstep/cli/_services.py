"""`lockstep up | status | down`: the local deployment."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import psutil
import typer
from rich.console import Console
from rich.table import Table

from lockstep.cli._app import app
from lockstep.cli._context import (
    ProfileOption,
    RemoteAddressOption,
    RemoteTokenOption,
    StateDirOption,
    fail,
    remote_selected,
    state_dir,
)
from lockstep.dial import health_status
from lockstep.errors import ConfigError, LockstepError
from lockstep.server import parse_address
from lockstep.supervisor import SupervisorState, pid_alive
from lockstep.supervisor._dashboard import dashboard_url, http_status
from lockstep.supervisor._supervisor import last_line

console = Console()


def _check_writable(directory: Path) -> None:
    # The state dir holds credentials, the journal, checkpoints (agents' memory) and logs:
    # everything `lockstep up` and its services create is private to the user.
    os.umask(0o077)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        probe = directory / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"state directory {directory} is not writable: {exc.strerror}") from None


def _prepare_models(repository: Path) -> None:
    """Put the real models shipped by installed packages into the model repository once."""
    if repository.is_dir() and any(repository.iterdir()):
        return
    try:
        from lockstep_inference import prepare_models

        prepare_models(repository, None)
    except (ImportError, LockstepError) as exc:
        console.print(
            f"[yellow]note[/]: models not prepared ({exc}); see `lockstep models prepare`"
        )


def _services_table(state: SupervisorState, live: bool) -> Table:
    table = Table(title=f"Lockstep services (state: {state.state_dir})")
    with_metrics = any(svc.metrics for svc in state.services)
    cols = (
        "service",
        "address",
        "pid",
        "status",
        "restarts",
        *(("metrics",) if with_metrics else ()),
    )
    for col in cols:
        table.add_column(col, overflow="fold")
    for svc in state.services:
        probe = http_status if svc.module == "lockstep_dashboard" else health_status
        status = probe(svc.address) if live and svc.address else svc.status
        restarts = str(svc.restarts)
        if svc.restarts:
            restarts += f" (restarted; last exit {svc.last_exit})"
        row = [svc.name, svc.address, str(svc.pid or ""), status, restarts]
        if with_metrics:
            row.append(f"http://{svc.metrics}/metrics" if svc.metrics else "-")
        table.add_row(*row)
    return table


def _wait_started(
    directory: Path, proc: subprocess.Popen[bytes], timeout: float
) -> SupervisorState:
    deadline = time.monotonic() + timeout
    with console.status("starting services..."):
        while time.monotonic() < deadline:
            state = SupervisorState.load(directory)
            mine = state is not None and state.supervisor_pid == proc.pid
            if mine and state is not None and state.status == "running":
                return state
            if proc.poll() is not None or (mine and state is not None and state.status == "failed"):
                proc.wait(60)
                if mine and state is not None:
                    state = SupervisorState.load(directory) or state
                    state.path.unlink(missing_ok=True)
                    if state.error:
                        raise ConfigError(state.error)
                raise ConfigError(
                    "supervisor exited during start-up: "
                    + last_line(directory / "logs" / "supervisor.log")
                )
            time.sleep(0.05)
    proc.terminate()
    raise ConfigError(f"services did not start within {timeout:.0f}s; see {directory / 'logs'}")


@app.command()
def up(
    state_dir_opt: StateDirOption = None,
    pools: Annotated[int, typer.Option(min=1, help="number of wasm_pool processes")] = 1,
    unix: Annotated[bool, typer.Option(help="listen on unix sockets in the state dir")] = False,
    address: Annotated[
        list[str] | None,
        typer.Option("--address", help="fixed address for a service, NAME=HOST:PORT (repeatable)"),
    ] = None,
    dev_mode: Annotated[
        bool, typer.Option("--dev-mode", help="accept unsigned modules (development only)")
    ] = False,
    shm: Annotated[
        bool,
        typer.Option(
            "--shm/--no-shm",
            help="local pools' batches through the shared-memory tick channel "
            "(Linux; default) or all over gRPC",
        ),
    ] = True,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics",
            help="every service serves Prometheus metrics (a free loopback port "
            "each; `lockstep status` lists them)",
        ),
    ] = False,
    dashboard: Annotated[
        bool, typer.Option(help="start the read-only web dashboard (docs/dashboard.md)")
    ] = True,
    foreground: Annotated[bool, typer.Option(help="supervise in this terminal")] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for SERVING")] = 120.0,
) -> None:
    """Start every service as its own process and supervise them."""
    directory = state_dir(state_dir_opt)
    try:
        _check_writable(directory)
        existing = SupervisorState.load(directory)
        if existing is not None and existing.supervisor_alive():
            raise ConfigError(
                f"Lockstep is already running (supervisor pid "
                f"{existing.supervisor_pid}, state {directory}); "
                "see `lockstep status` or stop it with `lockstep down`"
            )
        if existing is not None:
            _wait_orphans(existing)
        fixed: list[str] = []
        for item in address or []:
            _name, sep, addr = item.partition("=")
            if not sep:
                raise ConfigError(f"bad --address {item!r}: expected NAME=HOST:PORT")
            parse_address(addr)
            fixed += ["--address", item]
        args = [
            "--state-dir",
            str(directory),
            "--pools",
            str(pools),
            *fixed,
            "--start-timeout",
            str(timeout),
        ]
        if unix:
            args.append("--unix")
        if dev_mode:
            args.append("--dev-mode")
        if not dashboard:
            args.append("--no-dashboard")
        if metrics:
            args.append("--metrics")
        if not shm:
            args.append("--no-shm")
        _prepare_models(directory / "data" / "models")
        if foreground:
            from lockstep.supervisor.__main__ import main as supervisor_main

            raise typer.Exit(supervisor_main(args))
        (directory / "logs").mkdir(exist_ok=True)
        with open(directory / "logs" / "supervisor.log", "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lockstep.supervisor", *args],
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        state = _wait_started(directory, proc, timeout + 30)
    except LockstepError as exc:
        raise fail(exc) from None
    console.print(_services_table(state, live=False))
    _print_dashboard(state)
    console.print(f"supervisor pid {state.supervisor_pid}; stop with `lockstep down`")


def _wait_orphans(state: SupervisorState, timeout: float = 15.0) -> None:
    """Services of a dead supervisor stop by themselves (they watch their parent); wait for
    them so that a new deployment never runs beside the old one, then kill stragglers."""
    procs = []
    for svc in state.services:
        if pid_alive(svc.pid):
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(svc.pid))
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


@app.command()
def status(
    state_dir_opt: StateDirOption = None,
    address: RemoteAddressOption = None,
    token: RemoteTokenOption = None,
    profile: ProfileOption = None,
) -> None:
    """Show each service's address, pid, health and restarts (of a remote deployment with
    --profile / --address: each service's health and the current run)."""
    if remote_selected():
        raise typer.Exit(_remote_status())
    directory = state_dir(state_dir_opt)
    try:
        state = SupervisorState.load(directory)
    except LockstepError as exc:
        raise fail(exc) from None
    if state is None or not state.supervisor_alive():
        orphans = [s for s in (state.services if state else []) if pid_alive(s.pid)]
        if state is not None and orphans:
            # Never disown services that still serve: say what is left and how to clear it.
            console.print(
                f"Lockstep's supervisor (pid {state.supervisor_pid}) is gone; its "
                f"services stop by themselves ({len(orphans)} still alive: "
                f"{', '.join(f'{s.name} pid {s.pid}' for s in orphans)}). "
                "`lockstep down` stops them now.",
                soft_wrap=True,
            )
        else:
            console.print(f"Lockstep is not running (no live supervisor in {directory}).")
        raise typer.Exit(3)
    console.print(_services_table(state, live=True))
    _print_dashboard(state)
    _print_run(directory)


def _print_dashboard(state: SupervisorState) -> None:
    """The dashboard's page address, when this deployment runs one."""
    for svc in state.services:
        if svc.module == "lockstep_dashboard" and svc.address:
            console.print(f"dashboard: {dashboard_url(svc.address)}")


def _remote_status() -> int:
    """Health of each service named by the profile (or --address: the orchestrator)."""
    from lockstep.cli._context import current_profile, remote_address

    try:
        chosen = current_profile()
    except LockstepError as exc:
        raise fail(exc) from None
    addresses = dict(chosen.addresses) if chosen else {}
    if remote_address():
        addresses["orchestrator"] = str(remote_address())
    table = Table(
        title=f"Lockstep services (profile {chosen.name})" if chosen else "Lockstep services"
    )
    for col in ("service", "address", "status"):
        table.add_column(col, overflow="fold")
    tls = chosen.tls if chosen else None
    statuses = {name: health_status(addr, tls=tls) for name, addr in addresses.items()}
    for name, addr in addresses.items():
        table.add_row(name, addr, statuses[name])
    console.print(table)
    if "orchestrator" in addresses:
        _print_run(None)
    return 0 if statuses and all(v == "SERVING" for v in statuses.values()) else 3


def _print_run(directory: Path | None) -> None:
    """One line about the orchestrator's current run, if it answers."""
    import grpc

    from lockstep.auth import Role
    from lockstep.cli._context import connect
    from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
    from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc

    try:
        with connect("orchestrator", Role.VIEWER, directory) as channel:
            st = opb_grpc.OrchestratorServiceStub(channel).GetStatus(
                opb.GetStatusRequest(), timeout=5
            )
    except (grpc.RpcError, LockstepError):
        console.print("current run: orchestrator not answering")
        return
    agents = ", ".join(f"{n} {k}" for k, n in sorted(st.agents_by_state.items())) or "none"
    console.print(
        f"current run {st.run_id}: tick {st.tick}, agents {agents}, "
        f"digest {st.digest.hex()[:16]}...",
        soft_wrap=True,
    )


@app.command()
def down(
    state_dir_opt: StateDirOption = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a clean stop")] = 30.0,
) -> None:
    """Stop every service cleanly (SIGTERM, then SIGKILL after the timeout)."""
    directory = state_dir(state_dir_opt)
    try:
        state = SupervisorState.load(directory)
    except LockstepError as exc:
        raise fail(exc) from None
    if state is None:
        console.print(f"Lockstep is not running (nothing to stop in {directory}).")
        return
    pids = [state.supervisor_pid] + [s.pid for s in state.services]
    procs = []
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(psutil.Error):
                procs.append(psutil.Process(pid))
    if not procs:
        state.path.unlink(missing_ok=True)
        console.print("Lockstep was not running (stale state removed).")
        return
    # The supervisor stops its children in reverse start order; if it is gone, do it here.
    target = procs[:1] if procs[0].pid == state.supervisor_pid else procs
    for proc in target:
        proc.terminate()
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        proc.kill()
    state.path.unlink(missing_ok=True)
    console.print(f"Lockstep stopped ({len(procs)} processes).")


@app.command()
def tokens(
    path: Annotated[Path, typer.Argument(help="token file to create (e.g. deploy/tokens.json)")],
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Create a credentials file with a fresh token per role (for compose / Kubernetes)."""
    from lockstep.auth import write_token_file

    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to replace it")
    try:
        write_token_file(path)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror}") from None
    console.print(f"wrote {path} (roles: admin, operator, viewer, service; mode 0600)")
