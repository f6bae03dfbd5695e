"""The dashboard under `lockstep up`: its viewer-only credential file and its HTTP probe.

The dashboard (services/dashboard, docs/dashboard.md) is the one supervised process that
serves HTTP instead of gRPC, so it is probed with a GET of /healthz rather than the gRPC
health service, and it is given a file holding only the viewer token, never the
deployment's tokens.json.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from lockstep.auth import Role, TokenStore
from lockstep.errors import ServiceError

__all__ = ["VIEWER_TOKEN_FILE", "dashboard_url", "http_status", "wait_http", "write_viewer_token"]

VIEWER_TOKEN_FILE = "viewer.token"


def write_viewer_token(tokens: Path, out: Path) -> Path:
    """Write the viewer token of the token file `tokens` alone into `out` (mode 0600)."""
    token = TokenStore.load(tokens).token(Role.VIEWER)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return out


def dashboard_url(address: str) -> str:
    """The page address of a dashboard listening on HOST:PORT."""
    return f"http://{address}/"


def http_status(address: str, timeout: float = 2.0) -> str:
    """ "SERVING" when GET http://ADDRESS/healthz answers 200, else "UNREACHABLE"."""
    try:
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=timeout) as resp:
            return "SERVING" if resp.status == 200 else f"HTTP {resp.status}"
    except (urllib.error.URLError, OSError):
        return "UNREACHABLE"


def wait_http(address: str, timeout: float = 30.0) -> None:
    """Block until the dashboard at `address` answers /healthz (it writes its ready file
    once it accepts connections, so the first probe normally succeeds)."""
    deadline = time.monotonic() + timeout
    while (
        http_status(address, timeout=max(0.1, min(2.0, deadline - time.monotonic()))) != "SERVING"
    ):
        if time.monotonic() >= deadline:
            raise ServiceError(f"dashboard at {address} did not answer within {timeout:.0f}s")
        time.sleep(0.05)
