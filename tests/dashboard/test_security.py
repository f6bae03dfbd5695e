"""The dashboard cannot change anything: GET only, loopback, a viewer-only credential that
the services refuse on every mutating call; and a service being down is shown, not fatal."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.errors import ConfigError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.pb.telemetry.v1 import telemetry_pb2 as tpb
from lockstep.pb.telemetry.v1 import telemetry_pb2_grpc as tpb_grpc
from lockstep_dashboard import read_viewer_token
from tests.dashboard.conftest import Env

pytestmark = pytest.mark.e2e


def request(url: str, method: str = "GET") -> tuple[int, Any, str]:
    """(status, headers (case-insensitive), body)."""
    req = urllib.request.Request(
        url, method=method, data=b"x" if method in ("POST", "PUT", "PATCH") else None
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/", "/runs/x/journal", "/api/runs/x/live", "/no-such-page"])
def test_only_get_is_allowed(env: Env, method: str, path: str) -> None:
    code, headers, body = request(env.url + path, method)
    assert code == 405 and headers["Allow"] == "GET, HEAD"
    assert "read-only" in body


def test_security_headers_and_loopback(env: Env) -> None:
    code, headers, _ = request(env.url + "/")
    assert code == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert env.address.startswith("127.0.0.1:")
    assert request(env.url + "/", "HEAD")[0] == 200


def test_holds_only_the_viewer_token(env: Env) -> None:
    assert env.dep.state_dir is not None
    tokens = TokenStore.load(env.dep.state_dir / "tokens.json")
    viewer_file = env.dep.state_dir / "viewer.token"
    assert viewer_file.read_text().strip() == tokens.token(Role.VIEWER)
    assert viewer_file.stat().st_mode & 0o777 == 0o600
    cmdline = psutil.Process(env.state.service("dashboard").pid).cmdline()
    assert cmdline[cmdline.index("--auth-file") + 1] == str(viewer_file)
    assert "tokens.json" not in " ".join(cmdline)
    # The dashboard itself refuses a file holding other roles' tokens.
    with pytest.raises(ConfigError, match="only the viewer token"):
        read_viewer_token(env.dep.state_dir / "tokens.json")


def test_the_dashboard_credential_is_refused_on_every_mutating_rpc(env: Env) -> None:
    assert env.dep.state_dir is not None
    token = read_viewer_token(env.dep.state_dir / "viewer.token")
    orch = env.state.service("orchestrator").address
    tel = env.state.service("telemetry").address
    with AuthedChannel(orch, token) as channel, AuthedChannel(tel, token) as tchannel:
        stub = opb_grpc.OrchestratorServiceStub(channel)
        calls = [
            (stub.StartRun, opb.StartRunRequest()),
            (stub.SpawnAgents, opb.SpawnAgentsRequest(agents=[opb.AgentSpawn(name="x")])),
            (stub.PauseAgents, opb.AgentSelector(names=["ping"])),
            (stub.ResumeAgents, opb.AgentSelector(names=["ping"])),
            (stub.TerminateAgents, opb.AgentSelector(names=["ping"])),
            (stub.SendMessages, opb.SendMessagesRequest()),
            (stub.Step, opb.StepRequest(ticks=1)),
            (stub.RegisterModule, opb.RegisterModuleRequest(wasm=b"\0asm")),
            (stub.CreateCheckpoint, opb.CreateCheckpointRequest()),
            (stub.RestoreCheckpoint, opb.RestoreCheckpointRequest(id="x")),
        ]
        for method, req in calls:
            with pytest.raises(grpc.RpcError) as err:
                method(req, timeout=10)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
        for streaming, req in [
            (stub.RunUntil, opb.RunUntilRequest(until_tick=1)),
            (stub.Replay, opb.ReplayRequest(run_id=env.fork.run_id)),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                list(streaming(req, timeout=10))
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as err:
            tpb_grpc.TelemetryServiceStub(tchannel).AppendRecords(
                tpb.AppendRecordsRequest(run_id="x", records=[tpb.Record(kind="x")]), timeout=10
            )
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        # ... while its reads work.
        assert stub.GetStatus(opb.GetStatusRequest(), timeout=10).run_id == env.fork.run_id


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def dashboard_of(env: Env, tmp_path: Path) -> Iterator[object]:
    """Start extra dashboard processes (port 0) against given addresses."""
    procs: list[subprocess.Popen[str]] = []

    def start(orchestrator: str, telemetry: str) -> str:
        assert env.dep.state_dir is not None
        ready = tmp_path / f"ready-{len(procs)}.json"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lockstep_dashboard",
                "--address",
                "127.0.0.1:0",
                "--orchestrator",
                orchestrator,
                "--telemetry",
                telemetry,
                "--auth-file",
                str(env.dep.state_dir / "viewer.token"),
                "--ready-file",
                str(ready),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:  # blocks until it logs that it serves (or exits)
            if "serving on" in line:
                break
        else:
            pytest.fail(f"dashboard did not start (status {proc.wait()})")
        return f"http://{json.loads(ready.read_text())['address']}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(15)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_service_down_is_shown_not_fatal(env: Env, dashboard_of: object) -> None:
    start = dashboard_of
    telemetry = env.state.service("telemetry").address
    url = start(_dead_address(), telemetry)  # type: ignore[operator]
    code, _, body = request(url + "/")
    assert code == 200 and "orchestrator GetStatus failed: UNAVAILABLE" in body
    assert env.run.run_id in body  # the journal's runs still show
    code, _, body = request(f"{url}/runs/{env.run.run_id}/journal")
    assert code == 200 and "hash chain verified" in body
    url = start(_dead_address(), _dead_address())  # type: ignore[operator]
    code, _, body = request(url + "/")
    assert code == 503 and "telemetry ListRuns failed: UNAVAILABLE" in body
    assert request(url + "/healthz")[0] == 200  # the dashboard itself keeps serving


def test_unknown_run_and_bad_parameters(env: Env) -> None:
    code, _, body = request(env.url + "/runs/nope")
    assert code == 404 and "telemetry has no run" in body
    code, _, body = request(f"{env.url}/runs/{env.run.run_id}/journal?after=abc")
    assert code == 400 and "after must be an integer" in body
    code, _, body = request(f"{env.url}/runs/{env.run.run_id}/agents/nobody")
    assert code == 404


def test_a_tampered_journal_shows_as_broken(env: Env) -> None:
    """Edit a stored record behind telemetry's back (as someone with the database file
    could): the digests and journal pages name the broken record. The deployment's first
    run (the orchestrator's start-up run) is edited, so the other runs' chains, verified
    from their own first record, stay intact for the other tests."""
    assert env.dep.state_dir is not None
    first = env.dep.telemetry.runs()[0]
    assert first.run_id not in (env.run.run_id, env.fork.run_id)
    db = sqlite3.connect(env.dep.state_dir / "data" / "telemetry.db")
    try:
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'records'"
        ).fetchall()
        with db:
            for name, _sql in triggers:
                db.execute(f'DROP TRIGGER "{name}"')
            db.execute(
                "UPDATE records SET payload = CAST('{\"forged\":1}' AS BLOB) WHERE seq = ?",
                (first.first_sequence,),
            )
            for _name, sql in triggers:
                db.execute(sql)
    finally:
        db.close()
    code, _, body = request(f"{env.url}/runs/{first.run_id}/digests")
    assert code == 200
    assert f"hash chain BROKEN: CHAIN_FAULT_HASH_MISMATCH at record {first.first_sequence}" in body
    code, _, body = request(f"{env.url}/runs/{first.run_id}/journal")
    assert code == 200 and "hash chain BROKEN" in body and "&#34;forged&#34;" in body
