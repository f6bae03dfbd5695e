"""`lockstep up / status / down` with every service as its own process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lockstep.dial import wait_serving
from lockstep.supervisor import SupervisorState, pid_alive
from tests.foundation.test_service_process import grpcurl

pytestmark = pytest.mark.e2e

SERVICE_NAMES = {
    "telemetry": "lockstep.telemetry.v1.TelemetryService",
    "inference": "lockstep.inference.v1.InferenceService",
    "pool-0": "lockstep.wasm_pool.v1.WasmPoolService",
    "orchestrator": "lockstep.orchestrator.v1.OrchestratorService",
}


def lockstep(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition on the supervisor's state file (what a user would watch)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def kill_and_wait_restart(state: str | Path, name: str, timeout: float = 30.0) -> None:
    """SIGKILL the supervised service `name`, then wait until the supervisor serves it
    again (its restart count one higher)."""
    before = SupervisorState.load(Path(state))
    assert before is not None
    victim = before.service(name)
    os.kill(victim.pid, signal.SIGKILL)

    def back() -> bool:
        now = SupervisorState.load(Path(state))
        return (
            now is not None
            and now.service(name).restarts == victim.restarts + 1
            and now.service(name).status == "serving"
        )

    wait_until(back, timeout=timeout)


def journal(state: str, run_id: str, kind: str) -> list[dict]:  # type: ignore[type-arg]
    """A run's journal records of one kind, through `lockstep journal query --json`."""
    out = lockstep(
        "journal",
        "query",
        "--run",
        run_id,
        "--kind",
        kind,
        "--limit",
        "0",
        "--json",
        "--state-dir",
        state,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "state"
    yield directory
    lockstep("down", "--state-dir", str(directory))


def test_up_status_restart_down(state_dir: Path) -> None:
    sd = str(state_dir)
    up = lockstep("up", "--state-dir", sd, "--dev-mode")
    assert up.returncode == 0, up.stderr
    state = SupervisorState.load(state_dir)
    assert state is not None and state.status == "running"
    assert [s.name for s in state.services] == [
        "telemetry",
        "inference",
        "pool-0",
        "orchestrator",
        "dashboard",
    ]
    pids = {s.name: s.pid for s in state.services}
    assert len(set(pids.values())) == 5  # separate processes
    for svc in state.services:
        assert svc.address in up.stdout
        if svc.name == "dashboard":  # HTTP, not gRPC (tests/dashboard)
            assert f"dashboard: http://{svc.address}/" in up.stdout
            continue
        listed = grpcurl(svc.address, "list").split()
        assert SERVICE_NAMES[svc.name] in listed and "grpc.health.v1.Health" in listed

    status = lockstep("status", "--state-dir", sd)
    assert status.returncode == 0 and status.stdout.count("SERVING") == 5
    assert "current run" in status.stdout and "tick 0" in status.stdout
    # Credentials, the journal, checkpoints and logs are private to the user.
    assert state_dir.stat().st_mode & 0o777 == 0o700
    for path in state_dir.rglob("*"):
        if path.is_symlink() or path.is_socket():
            continue
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"

    again = lockstep("up", "--state-dir", sd)
    assert again.returncode == 2
    assert "already running" in again.stderr and "Traceback" not in again.stderr

    victim = state.service("pool-0")
    os.kill(victim.pid, signal.SIGKILL)

    def restarted() -> bool:
        now = SupervisorState.load(state_dir)
        return (
            now is not None
            and now.service("pool-0").restarts == 1
            and now.service("pool-0").status == "serving"
        )

    wait_until(restarted)
    now = SupervisorState.load(state_dir)
    assert now is not None
    new = now.service("pool-0")
    assert new.pid != victim.pid and new.address == victim.address
    wait_serving(new.address, timeout=10)
    status = lockstep("status", "--state-dir", sd)
    assert "restarted" in status.stdout and status.stdout.count("SERVING") == 5

    down = lockstep("down", "--state-dir", sd)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not any(pid_alive(s.pid) for s in now.services)
    assert not pid_alive(now.supervisor_pid)
    assert SupervisorState.load(state_dir) is None
    gone = lockstep("status", "--state-dir", sd)
    assert gone.returncode == 3 and "not running" in gone.stdout
    again = lockstep("down", "--state-dir", sd)
    assert again.returncode == 0 and "not running" in again.stdout


def test_port_in_use_fails_cleanly(state_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = lockstep(
            "up", "--state-dir", str(state_dir), "--address", f"orchestrator=127.0.0.1:{port}"
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0] and f"{port}" in lines[0]
    assert SupervisorState.load(state_dir) is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["up", "--no-such-flag"], "No such option: --no-such-flag"),
        (["up", "--address", "orchestrator"], "expected NAME=HOST:PORT"),
        (["up", "--address", "orchestrator=nowhere"], "bad address"),
        (["up", "--pools", "0"], "Invalid value for '--pools'"),
        (["until", "--tick", "-5"], "Invalid value for '--tick'"),
        (["until", "--idle", "--max-ticks", "0"], "Invalid value for '--max-ticks'"),
        (["step", "0"], "Invalid value for 'ticks'"),
    ],
)
def test_bad_flags_fail_with_one_line(state_dir: Path, args: list[str], message: str) -> None:
    result = lockstep(*args, "--state-dir", str(state_dir))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unwritable_state_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = lockstep("up", "--state-dir", str(blocker / "state"))
    assert result.returncode == 2
    assert "is not writable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unix_sockets(tmp_path: Path) -> None:
    state = tmp_path / "s"  # short: unix socket paths are limited to ~100 bytes
    up = lockstep("up", "--state-dir", str(state), "--unix")
    try:
        assert up.returncode == 0, up.stderr
        loaded = SupervisorState.load(state)
        assert loaded is not None
        # gRPC services on unix sockets; the dashboard serves HTTP on TCP loopback.
        assert all(s.address.startswith("unix:") for s in loaded.services if s.name != "dashboard")
        assert loaded.service("dashboard").address.startswith("127.0.0.1:")
        status = lockstep("status", "--state-dir", str(state))
        assert status.stdout.count("SERVING") == 5
    finally:
        assert lockstep("down", "--state-dir", str(state)).returncode == 0


def test_services_stop_when_the_supervisor_dies(state_dir: Path) -> None:
    sd = str(state_dir)
    assert lockstep("up", "--state-dir", sd).returncode == 0
    state = SupervisorState.load(state_dir)
    assert state is not None
    os.kill(state.supervisor_pid, signal.SIGKILL)
    status = lockstep("status", "--state-dir", sd)
    assert status.returncode == 3
    assert "not running" in status.stdout or "supervisor" in status.stdout
    wait_until(lambda: not any(pid_alive(s.pid) for s in state.services))
    gone = lockstep("status", "--state-dir", sd)
    assert gone.returncode == 3 and "not running" in gone.stdout
    again = lockstep("up", "--state-dir", sd)
    assert again.returncode == 0, again.stderr
    assert lockstep("status", "--state-dir", sd).stdout.count("SERVING") == 5
