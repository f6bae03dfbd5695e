"""Fixtures shared by every test area: credentials and real service processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lockstep.auth import Role, TokenStore, write_token_file
from lockstep.client import AuthedChannel, wait_serving

_SERVING = re.compile(r"serving on (\S+) \(pid")


@pytest.fixture(scope="session")
def auth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TokenStore]:
    """A token file with one token per role, and its store."""
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    return path, write_token_file(path)


@dataclass
class ServiceProcess:
    """A service started as its own process on port 0; `address` is where it listens."""

    proc: subprocess.Popen[str]
    address: str = ""
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def channel(self, store: TokenStore, role: Role = Role.ADMIN):  # type: ignore[no-untyped-def]
        return AuthedChannel(self.address, store.token(role))

    def stop(self) -> int:
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


def start_service(module: str, auth_file: Path | None, *args: str,
                  address: str = "127.0.0.1:0", timeout: float = 60.0) -> ServiceProcess:
    """Start `python -m module`, read the address it reports, wait until SERVING."""
    cmd = [sys.executable, "-m", module, "--address", address]
    cmd += ["--auth-file", str(auth_file)] if auth_file else ["--insecure-no-auth"]
    proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    svc = ServiceProcess(proc)
    found = threading.Event()

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
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


@pytest.fixture
def service_factory() -> Iterator[object]:
    """Start service processes that are stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def factory(module: str, auth_file: Path | None, *args: str, **kw: object) -> ServiceProcess:
        svc = start_service(module, auth_file, *args, **kw)  # type: ignore[arg-type]
        started.append(svc)
        return svc

    yield factory
    for svc in reversed(started):
        svc.stop()
