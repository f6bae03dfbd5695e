"""Lockstep's read-only web dashboard (docs/dashboard.md).

A separate process holding only a viewer credential: it pulls from the orchestrator's and
telemetry's read calls and serves HTML pages (GET only) on loopback.
"""

from lockstep_dashboard._app import create_app
from lockstep_dashboard._config import DashboardConfig, DashboardServeConfig, read_viewer_token
from lockstep_dashboard._server import bind, serve
from lockstep_dashboard._source import Source, SourceError

__all__ = [
    "DashboardConfig",
    "DashboardServeConfig",
    "Source",
    "SourceError",
    "bind",
    "create_app",
    "read_viewer_token",
    "serve",
]
