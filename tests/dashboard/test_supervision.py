"""The dashboard under `lockstep up`: in the plan unless --no-dashboard, given only the
viewer token, restarted like any child; and its settings and credential checks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lockstep.auth import Role, write_token_file
from lockstep.errors import ConfigError
from lockstep.supervisor import SupervisorConfig, SupervisorState, service_plan
from lockstep.supervisor._dashboard import http_status, write_viewer_token
from lockstep_dashboard import DashboardConfig, read_viewer_token
from tests.dashboard.conftest import Env


@pytest.mark.unit
def test_plan_has_the_dashboard_last_unless_disabled(tmp_path: Path) -> None:
    plan = service_plan(SupervisorConfig(state_dir=tmp_path))
    assert [s.name for s in plan][-2:] == ["orchestrator", "dashboard"]
    dash = plan[-1]
    assert dash.http and dash.module == "lockstep_dashboard"
    assert dash.args({"orchestrator": "o:1", "telemetry": "t:2"}) == [
        "--orchestrator",
        "o:1",
        "--telemetry",
        "t:2",
    ]
    plan = service_plan(SupervisorConfig(state_dir=tmp_path, dashboard=False))
    assert "dashboard" not in [s.name for s in plan]
    assert not any(s.http for s in plan)


@pytest.mark.unit
def test_viewer_token_files(tmp_path: Path) -> None:
    store = write_token_file(tmp_path / "tokens.json")
    path = write_viewer_token(tmp_path / "tokens.json", tmp_path / "viewer.token")
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_viewer_token(path) == store.token(Role.VIEWER)
    (tmp_path / "v.json").write_text(json.dumps({"viewer": store.token(Role.VIEWER)}))
    assert read_viewer_token(tmp_path / "v.json") == store.token(Role.VIEWER)
    (tmp_path / "two.json").write_text(json.dumps({"viewer": "x" * 20, "admin": "y" * 20}))
    with pytest.raises(ConfigError, match="it holds: admin, viewer"):
        read_viewer_token(tmp_path / "two.json")
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ConfigError, match="does not hold a token"):
        read_viewer_token(tmp_path / "short")
    with pytest.raises(ConfigError, match="unreadable"):
        read_viewer_token(tmp_path / "missing")


@pytest.mark.unit
@pytest.mark.parametrize(
    "field, value",
    [("page_size", 0), ("page_size", 5000), ("render_interval_ms", 10), ("max_ticks", 0)],
)
def test_config_is_checked(field: str, value: int) -> None:
    with pytest.raises(ConfigError):
        DashboardConfig(orchestrator="a:1", telemetry="b:2", token="t" * 20, **{field: value})


@pytest.mark.e2e
def test_a_killed_dashboard_is_restarted_on_its_address(env: Env) -> None:
    assert env.dep.state_dir is not None
    before = env.state.service("dashboard")
    os.kill(before.pid, signal.SIGKILL)
    # The supervisor's state file is what `lockstep status` reads: wait on it.
    deadline = time.monotonic() + 30
    while True:
        state = SupervisorState.load(env.dep.state_dir)
        assert state is not None
        now = state.service("dashboard")
        if now.restarts == 1 and now.status == "serving":
            break
        assert time.monotonic() < deadline, "the dashboard was not restarted"
        time.sleep(0.05)
    assert now.address == before.address and now.pid != before.pid
    assert http_status(now.address) == "SERVING"
    env.state = state


@pytest.mark.e2e
def test_status_shows_the_url_and_lockstep_dashboard_serves(env: Env) -> None:
    assert env.dep.state_dir is not None
    sd = str(env.dep.state_dir)
    status = subprocess.run(
        [sys.executable, "-m", "lockstep.cli", "status", "--state-dir", sd],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    address = SupervisorState.load(env.dep.state_dir).service("dashboard").address  # type: ignore[union-attr]
    assert f"dashboard: http://{address}/" in status.stdout
    # `lockstep dashboard`: another one, in the foreground, for the same deployment.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lockstep.cli",
            "dashboard",
            "--state-dir",
            sd,
            "--address",
            "127.0.0.1:0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        found = None
        for line in proc.stdout:  # blocks until it says where it serves
            found = re.search(r"serving on (\S+) \(pid", line)
            if found:
                break
        assert found, f"lockstep dashboard exited with {proc.wait()}"
        assert found.group(1).startswith("127.0.0.1:")
        assert http_status(found.group(1)) == "SERVING"
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
        if proc.stdout is not None:
            proc.stdout.close()
