"""The local supervisor: every service as its own process, health-checked and restarted.

Processes are started by spawn/exec (never fork: wasmtime deadlocks in a forked child).
Each child binds its address (port 0 on first start, the same address on restarts so that
its peers keep working), reports it through a ready file, and is then waited on through the
standard gRPC health service.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lockstep.auth import write_token_file
from lockstep.dial import wait_serving
from lockstep.errors import ConfigError, ServiceError
from lockstep.modules import keygen
from lockstep.supervisor._dashboard import VIEWER_TOKEN_FILE, wait_http, write_viewer_token
from lockstep.supervisor._state import ServiceState, SupervisorState

log = logging.getLogger("lockstep.supervisor")

# Restart backoff: 0.25 s doubling up to 5 s; a child that stayed up 30 s starts over.
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 5.0
STABLE_AFTER_S = 30.0
STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class SupervisorConfig:
    """How `lockstep up` lays out the deployment.

    state_dir: where the state file, tokens, logs and data live.
    pools: number of wasm_pool processes (>= 1).
    host: loopback host to bind ("127.0.0.1"); ports are picked by the OS unless fixed.
    unix: use unix sockets in state_dir instead of TCP.
    addresses: fixed addresses by service name (e.g. {"orchestrator": "127.0.0.1:7070"}).
    start_timeout: seconds to wait for each service to report SERVING.
    dev_mode: let the orchestrator accept unsigned modules (loudly).
    dashboard: also start the read-only web dashboard (docs/dashboard.md).
    shm: the orchestrator sends the local pools' batches through the shared-memory tick
        channel (Linux; docs/adr/004); False keeps every batch on gRPC.
    metrics: every service serves Prometheus metrics on `host` (a free port each, kept
        across restarts); `lockstep status` lists the endpoints.
    """

    state_dir: Path
    pools: int = 1
    host: str = "127.0.0.1"
    unix: bool = False
    addresses: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    dev_mode: bool = False
    dashboard: bool = True
    metrics: bool = False
    shm: bool = True

    def __post_init__(self) -> None:
        if self.pools < 1:
            raise ConfigError(f"pools must be >= 1, got {self.pools}")


@dataclass(frozen=True)
class ServiceSpec:
    """How to start one service; `args` may depend on the addresses of those before it.

    http: it serves HTTP, not gRPC (the dashboard): probed with GET /healthz, always on
    TCP, given only the viewer token, and optional (a failed start does not stop the rest).
    """

    name: str
    module: str
    args: Callable[[dict[str, str]], list[str]]
    http: bool = False


def service_plan(config: SupervisorConfig) -> list[ServiceSpec]:
    """Services in start order: dependencies first, the orchestrator last."""
    data = config.state_dir / "data"
    specs = [
        ServiceSpec(
            "telemetry", "lockstep_telemetry", lambda _a: ["--db", str(data / "telemetry.db")]
        ),
        ServiceSpec(
            "inference", "lockstep_inference", lambda _a: ["--model-repo", str(data / "models")]
        ),
    ]
    specs += [
        ServiceSpec(f"pool-{i}", "lockstep_wasm_pool", lambda _a: []) for i in range(config.pools)
    ]

    def orchestrator_args(addr: dict[str, str]) -> list[str]:
        pools = ",".join(addr[f"pool-{i}"] for i in range(config.pools))
        args = [
            "--pools",
            pools,
            "--telemetry",
            addr["telemetry"],
            "--inference",
            addr["inference"],
            "--data-dir",
            str(data / "orchestrator"),
            "--trusted-keys",
            str(config.state_dir / "keys" / "trusted"),
        ]
        if not config.shm:
            args += ["--pool-transport", "grpc"]
        return [*args, "--dev-mode"] if config.dev_mode else args

    specs.append(ServiceSpec("orchestrator", "lockstep_orchestrator", orchestrator_args))
    if config.dashboard:
        specs.append(
            ServiceSpec(
                "dashboard",
                "lockstep_dashboard",
                lambda addr: [
                    "--orchestrator",
                    addr["orchestrator"],
                    "--telemetry",
                    addr["telemetry"],
                ],
                http=True,
            )
        )
    return specs


class _Child:
    def __init__(self, spec: ServiceSpec, state: ServiceState, config: SupervisorConfig) -> None:
        self.spec = spec
        self.state = state
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.backoff = BACKOFF_FIRST_S
        self.restart_at: float | None = None

    def initial_address(self) -> str:
        if self.spec.name in self.config.addresses:
            return self.config.addresses[self.spec.name]
        if self.config.unix and not self.spec.http:
            return f"unix:{self.config.state_dir / 'sockets' / (self.spec.name + '.sock')}"
        return f"{self.config.host}:0"

    def start(self, addresses: dict[str, str], tokens: Path) -> None:
        ready = self.config.state_dir / "run" / f"{self.spec.name}.ready"
        ready.unlink(missing_ok=True)
        address = self.state.address or self.initial_address()
        # The dashboard gets a file with the viewer token only, never tokens.json.
        auth = tokens.with_name(VIEWER_TOKEN_FILE) if self.spec.http else tokens
        cmd = [
            sys.executable,
            "-m",
            self.spec.module,
            "--address",
            address,
            "--auth-file",
            str(auth),
            "--ready-file",
            str(ready),
            *self.spec.args(addresses),
        ]
        if self.config.metrics:
            cmd += ["--metrics-address", self.state.metrics or f"{self.config.host}:0"]
        logf = open(self.state.log, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                # The service stops by itself if this supervisor dies (server.run_service).
                env={
                    **os.environ,
                    "PYTHONUNBUFFERED": "1",
                    "LOCKSTEP_SUPERVISOR_PID": str(os.getpid()),
                },
            )
        finally:
            logf.close()
        self.started_at = time.monotonic()
        self.state.pid = self.proc.pid
        self.state.status = "starting"
        self.state.address, self.state.metrics = self._await_ready(ready)
        wait = wait_http if self.spec.http else wait_serving
        wait(self.state.address, timeout=self.config.start_timeout)
        self.state.status = "serving"
        self.state.error = ""

    def _await_ready(self, ready: Path) -> tuple[str, str]:
        # The child learns its ports only after binding (port 0), so it reports them in a
        # file: (gRPC address, metrics address or "").
        assert self.proc is not None
        deadline = time.monotonic() + self.config.start_timeout
        while time.monotonic() < deadline:
            if ready.exists():
                info = json.loads(ready.read_text())
                return str(info["address"]), str(info.get("metrics", ""))
            code = self.proc.poll()
            if code is not None:
                raise ServiceError(
                    f"{self.spec.name} exited with status {code} during start-up: "
                    f"{last_line(Path(self.state.log))}"
                )
            time.sleep(0.02)
        raise ServiceError(f"{self.spec.name} did not bind within {self.config.start_timeout:.0f}s")

    def terminate(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_signing_key(keys_dir: Path) -> Path:
    """A new key pair: private key in keys_dir/signing, public key in keys_dir/trusted."""
    kid = keygen(keys_dir / "signing")
    (keys_dir / "trusted").mkdir(parents=True, exist_ok=True)
    (keys_dir / "signing" / f"{kid}.pub").replace(keys_dir / "trusted" / f"{kid}.pub")
    return keys_dir / "signing" / f"{kid}.key"


def local_signing_key(state_dir: Path) -> Path | None:
    """The deployment's private signing key, if one was made."""
    keys = sorted((state_dir / "keys" / "signing").glob("*.key"))
    return keys[0] if keys else None


def last_line(path: Path) -> str:
    """The last non-empty line of a log file (the child's one-line error)."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


class Supervisor:
    """Starts the plan, keeps it running, stops it on SIGTERM."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.stop_event = threading.Event()
        os.umask(0o077)  # inherited by every service: state files are private (0600/0700)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        config.state_dir.chmod(0o700)
        for sub in ("logs", "run", "data", "sockets"):
            (config.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.tokens = config.state_dir / "tokens.json"
        if not self.tokens.exists():
            write_token_file(self.tokens)
        write_viewer_token(self.tokens, config.state_dir / VIEWER_TOKEN_FILE)
        # The deployment's own module-signing key: `lockstep run` signs with it, and the
        # orchestrator trusts it (plus any *.pub an admin adds to keys/).
        if local_signing_key(config.state_dir) is None:
            make_signing_key(config.state_dir / "keys")
        self.state = SupervisorState(state_dir=str(config.state_dir), supervisor_pid=os.getpid())
        self.children: list[_Child] = []
        for spec in service_plan(config):
            svc = ServiceState(
                name=spec.name,
                module=spec.module,
                log=str(config.state_dir / "logs" / f"{spec.name}.log"),
            )
            self.state.services.append(svc)
            self.children.append(_Child(spec, svc, config))

    def addresses(self) -> dict[str, str]:
        return {c.spec.name: c.state.address for c in self.children if c.state.address}

    def start_all(self) -> None:
        self.state.save()
        for child in self.children:
            try:
                child.start(self.addresses(), self.tokens)
            except (ServiceError, OSError) as exc:
                child.state.status = "failed"
                child.state.error = str(exc)
                if child.spec.http:  # nothing depends on the dashboard: `watch` retries it
                    child.terminate()
                    log.warning("%s failed to start: %s", child.spec.name, exc)
                    continue
                self.state.error = str(exc)
                self.stop_all(final_status="failed")
                raise
            finally:
                self.state.save()
            log.info(
                "%s serving on %s (pid %d)", child.spec.name, child.state.address, child.state.pid
            )
        self.state.status = "running"
        self.state.save()

    def watch(self) -> None:
        """Restart children that die, with bounded exponential backoff, until stopped."""
        while not self.stop_event.wait(0.1):
            changed = False
            now = time.monotonic()
            for child in self.children:
                proc = child.proc
                if child.restart_at is None and proc is not None and proc.poll() is not None:
                    child.state.last_exit = proc.returncode
                    child.state.status = "restarting"
                    if now - child.started_at > STABLE_AFTER_S:
                        child.backoff = BACKOFF_FIRST_S
                    child.restart_at = now + child.backoff
                    child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
                    log.warning("%s exited with %s; restarting", child.spec.name, proc.returncode)
                    changed = True
                elif child.restart_at is not None and now >= child.restart_at:
                    child.restart_at = None
                    child.state.restarts += 1
                    try:
                        child.start(self.addresses(), self.tokens)
                    except (ServiceError, OSError) as exc:
                        child.state.error = str(exc)
                        child.terminate()
                        child.restart_at = time.monotonic() + child.backoff
                        child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
                    changed = True
            if changed:
                self.state.save()

    def stop_all(self, final_status: str = "stopped") -> None:
        """Stop children in reverse start order; the state file ends with `final_status`."""
        self.state.status = "stopping"
        self.state.save()
        for child in reversed(self.children):
            child.terminate()
            if child.state.status != "failed":
                child.state.status = "stopped"
            child.state.pid = 0
        self.state.status = final_status
        self.state.save()


def run_supervisor(config: SupervisorConfig) -> int:
    """Run in the foreground until SIGTERM/SIGINT; the state file is removed on exit."""
    sup = Supervisor(config)

    def on_signal(_signum: int, _frame: object) -> None:
        sup.stop_event.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sup.start_all()
    except (ServiceError, OSError) as exc:
        log.error("start-up failed: %s", exc)
        return 2
    try:
        sup.watch()
    finally:
        sup.stop_all()
        sup.state.path.unlink(missing_ok=True)
    return 0
