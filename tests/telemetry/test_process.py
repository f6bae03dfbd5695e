"""`python -m lockstep_telemetry` as its own process: start-up errors are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lockstep.auth import Role, TokenStore
from lockstep.telemetry_client import TelemetryClient, make_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def run(*args: str, auth_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep_telemetry",
            "--address",
            "127.0.0.1:0",
            "--auth-file",
            str(auth_file),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_serves_and_survives_restart(
    service_factory,
    tmp_path: Path,  # type: ignore[no-untyped-def]
    auth: tuple[Path, TokenStore],
) -> None:
    db = tmp_path / "data" / "telemetry.db"  # the parent directory is created
    svc = service_factory(
        "lockstep_telemetry", auth[0], "--db", str(db), "--metrics-address", "127.0.0.1:0"
    )
    with svc.channel(auth[1], Role.SERVICE) as channel:
        head = TelemetryClient(channel).append("run-1", [make_record(0, "run.config", b"{}")])
    assert head.sequence == 1
    assert svc.stop() == 0
    assert any("metrics on http://127.0.0.1:" in line for line in svc.output)
    svc = service_factory("lockstep_telemetry", auth[0], "--db", str(db), "--verify-on-start")
    with svc.channel(auth[1], Role.SERVICE) as channel:
        client = TelemetryClient(channel)
        assert client.head() == head
        assert client.append("run-1", [make_record(1, "tick.digest", b"d")]).sequence == 2
    assert any("chain verified: 1 records" in line for line in svc.output)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: ["--db", str(d)], "is a directory"),
        (lambda d: ["--db", str(d / "file" / "x.db")], "cannot create directory"),
        (lambda d: ["--db", str(d / "garbage.db")], "file is not a database"),
        (
            lambda d: ["--db", str(d / "t.db"), "--synchronous", "sometimes"],
            "synchronous must be one of FULL, NORMAL",
        ),
        (lambda d: ["--db", str(d / "t.db"), "--metrics-address", "nonsense"], "bad address"),
        (
            lambda d: ["--db", str(d / "t.db"), "--max-batch-records", "0"],
            "max_batch_records must be a positive integer",
        ),
        (lambda d: [], "no --db"),
    ],
)
def test_bad_configuration_fails_with_one_line(
    tmp_path: Path,
    auth: tuple[Path, TokenStore],
    make_args: Callable[[Path], list[str]],
    message: str,
) -> None:
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "garbage.db").write_bytes(b"this is not sqlite" * 100)
    result = run(*make_args(tmp_path), auth_file=auth[0])
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("lockstep-telemetry: error:")
    assert message in lines[0]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_unwritable_location(auth: tuple[Path, TokenStore]) -> None:
    # /proc refuses new files even to root, unlike a chmod-ed directory.
    result = run("--db", "/proc/lockstep-telemetry.db", auth_file=auth[0])
    assert result.returncode == 2
    assert "cannot open telemetry database /proc/lockstep-telemetry.db" in result.stderr
