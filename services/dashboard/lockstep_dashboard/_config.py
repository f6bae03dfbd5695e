"""The dashboard's settings, read once into a frozen dataclass, and its credential."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lockstep.config import setting
from lockstep.errors import ConfigError
from lockstep.server import parse_address

__all__ = ["DashboardConfig", "DashboardServeConfig", "read_viewer_token"]

#: A browser's address, so a fixed port rather than port 0 (`lockstep up` passes port 0
#: and prints the URL; containers set LOCKSTEP_DASHBOARD_LISTEN).
DEFAULT_ADDRESS = "127.0.0.1:8780"


@dataclass(frozen=True)
class DashboardServeConfig:
    """How the dashboard process serves (its counterpart of lockstep.server.ServeConfig:
    HTTP on TCP, a viewer token file, TLS only towards the services)."""

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_"

    address: str = setting(
        DEFAULT_ADDRESS,
        env="LOCKSTEP_DASHBOARD_LISTEN",
        help="HOST:PORT to serve HTTP on (loopback; port 0: a free port, in the ready file).",
    )
    auth_file: Path | None = setting(
        None,
        env="LOCKSTEP_DASHBOARD_TOKEN_FILE",
        help='File holding only the viewer token (a bare token, or {"viewer": ...}); a '
        "file with other roles' tokens is refused. Required.",
    )
    ready_file: Path | None = setting(
        None, env="", help="Once serving, write {address, pid, url} as JSON here."
    )
    metrics_address: str = setting(
        "", help="Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free port)."
    )
    tls_ca: Path | None = setting(
        None, help="CA of the services' certificates: dial them with TLS."
    )
    tls_cert: Path | None = setting(None, help="Client certificate for mTLS.")
    tls_key: Path | None = setting(None, help="Its private key.")
    tls_server_name: str | None = setting(
        None, help="The name expected in the services' certificates."
    )

    def __post_init__(self) -> None:
        parse_address(self.address)
        if self.metrics_address:
            parse_address(self.metrics_address)


@dataclass(frozen=True)
class DashboardConfig:
    """How the dashboard reaches the services and how much it reads per page: each field
    but the token is a flag ``--<field-name>`` and a variable (docs/services.md)."""

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_DASHBOARD_"

    orchestrator: str = setting(
        env="LOCKSTEP_ORCHESTRATOR_ADDRESS", help="The orchestrator's gRPC address."
    )
    telemetry: str = setting(env="LOCKSTEP_TELEMETRY_ADDRESS", help="Telemetry's gRPC address.")
    #: The viewer credential sent on every call (never an operator or admin token); read
    #: from --auth-file, never a flag itself.
    token: str = setting(flag=False, help="The viewer token.")
    page_size: int = setting(
        50, help="Rows per page of every table (agents, journal, inference, digests, flow)."
    )
    max_scan: int = setting(
        20_000,
        help="The most journal records one page may read to fill itself (the agent filter "
        "of the journal browser, the logs of one agent).",
    )
    max_ticks: int = setting(2_000, help="The widest tick range one chart or flow view reads.")
    render_interval_ms: int = setting(
        1_000, help="How often a live page redraws at most (Mesa's render interval)."
    )
    cache_ttl_s: float = setting(
        0.5,
        help="How long a pulled snapshot (status, agent table, run list) is served from "
        "memory, so that page views do not become calls on the services.",
    )

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= 1_000:
            raise ConfigError(f"page_size must be in 1..1000, got {self.page_size}")
        if self.max_scan < self.page_size:
            raise ConfigError("max_scan must be >= page_size")
        if self.max_ticks < 1:
            raise ConfigError(f"max_ticks must be >= 1, got {self.max_ticks}")
        if self.render_interval_ms < 100:
            raise ConfigError(f"render_interval_ms must be >= 100, got {self.render_interval_ms}")
        if self.cache_ttl_s < 0:
            raise ConfigError("cache_ttl_s must be >= 0")


def read_viewer_token(path: Path) -> str:
    """The viewer token from `path`: a file holding the bare token, or a JSON object with
    only a "viewer" entry. A file that also holds other roles' tokens (the deployment's
    tokens.json) is refused: the dashboard must not hold credentials it does not need."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"credential file {path} is unreadable: {exc.strerror}") from None
    if text.startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"credential file {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or set(raw) != {"viewer"}:
            roles = ", ".join(sorted(raw)) if isinstance(raw, dict) else "?"
            raise ConfigError(
                f"credential file {path} must hold only the viewer token "
                f"(it holds: {roles}); the dashboard takes no other role"
            )
        text = str(raw["viewer"])
    if len(text) < 16 or any(c.isspace() for c in text):
        raise ConfigError(f"credential file {path} does not hold a token (>= 16 characters)")
    return text
