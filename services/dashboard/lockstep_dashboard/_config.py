"""The dashboard's settings, read once into a frozen dataclass, and its credential."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lockstep.errors import ConfigError

__all__ = ["DashboardConfig", "read_viewer_token"]


@dataclass(frozen=True)
class DashboardConfig:
    """How the dashboard reaches the services and how much it reads per page.

    orchestrator, telemetry: gRPC addresses ("host:port" or "unix:/path").
    token: the viewer credential sent on every call (never an operator or admin token).
    page_size: rows per page of every table (agents, journal, inference, digests, flow).
    max_scan: the most journal records one page may read to fill itself (the agent
        filter of the journal browser, the logs of one agent): a page never reads more.
    max_ticks: the widest tick range one chart or flow view reads.
    render_interval_ms: how often a live page redraws at most (Mesa's render interval).
    cache_ttl_s: how long a pulled snapshot (status, agent table, run list) is served
        from memory, so that page views do not become calls on the services.
    """

    orchestrator: str
    telemetry: str
    token: str
    page_size: int = 50
    max_scan: int = 20_000
    max_ticks: int = 2_000
    render_interval_ms: int = 1_000
    cache_ttl_s: float = 0.5

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
