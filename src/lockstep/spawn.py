"""Start a Lockstep service as its own process and learn the address it bound.

Used by tests and benchmarks (the supervisor has its own, restartable variant). The child
is started by exec, never fork: wasmtime deadlocks in a forked child.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel, wait_serving

__all__ = ["ServiceProcess", "start_service"]

_SERVING = re.compile(r"serving on (\S+) \(pid")
MAX_OUTPUT_LINES = 2000


@dataclass
class ServiceProcess:
    """A running service process; `address` is where it listens, `output` its first lines."""

    proc: subprocess.Popen[str]
    address: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def channel(self, store: TokenStore, role: Role = Role.ADMIN) -> grpc.Channel:
        """A channel to this service carrying `role`'s token from `store`."""
        return AuthedChannel(self.address, store.token(role))

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 15 s; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader is not None:
            self.reader.join(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_service(
    module: str,
    auth_file: Path | None,
    *args: str,
    address: str = "127.0.0.1:0",
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> ServiceProcess:
    """Run `python -m module --address ADDRESS` (with `--auth-file`, or `--insecure-no-auth`
    when `auth_file` is None) plus `args`; read the address it reports, wait until SERVING."""
    cmd = [sys.executable, "-m", module, "--address", address]
    cmd += ["--auth-file", str(auth_file)] if auth_file else ["--insecure-no-auth"]
    proc = subprocess.Popen(
        [*cmd, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # The child stops by itself when this process dies (server.run_service), as under
        # `lockstep up`: a killed test or benchmark leaves no service running.
        env={
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "LOCKSTEP_SUPERVISOR_PID": str(os.getpid()),
            **(env or {}),
        },
    )
    svc = ServiceProcess(proc)
    found = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(svc.output) < MAX_OUTPUT_LINES:
                svc.output.append(line)
            match = _SERVING.search(line)
            if match and not found.is_set():
                svc.address = match.group(1)
                found.set()
        found.set()

    svc.reader = threading.Thread(target=drain, daemon=True)
    svc.reader.start()
    if not found.wait(timeout) or not svc.address:
        svc.stop()
        raise RuntimeError(f"{module} did not start:\n{''.join(svc.output)}")
    wait_serving(svc.address, timeout=timeout)
    return svc
