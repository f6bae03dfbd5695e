"""`python -m lockstep_dashboard`: the read-only web dashboard as its own process.

    python -m lockstep_dashboard --orchestrator 127.0.0.1:7070 --telemetry 127.0.0.1:7090 \
        --auth-file viewer.token [--address 127.0.0.1:8780] [--ready-file F]

Every setting is a flag and an environment variable (lockstep.config; docs/services.md).
`--auth-file` holds only the viewer token (a bare token, or {"viewer": "..."}); a file
with other roles' tokens is refused. Configuration errors end the process with one line
on stderr and exit status 2, like every Lockstep service.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from lockstep.config import add_flags, from_sources
from lockstep.errors import ConfigError, LockstepError
from lockstep.tls import TLSConfig, set_process_tls
from lockstep_dashboard._config import DashboardConfig, DashboardServeConfig, read_viewer_token
from lockstep_dashboard._server import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lockstep-dashboard",
        description="Lockstep's read-only web dashboard. Every setting is a flag and an "
        "environment variable (flags win); docs/services.md lists them.",
    )
    add_flags(p, DashboardServeConfig, "serving")
    add_flags(p, DashboardConfig, "dashboard settings")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the dashboard until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=os.environ.get("LOCKSTEP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s dashboard %(levelname)s %(message)s",
    )
    args = parser().parse_args(argv)
    try:
        serving = from_sources(DashboardServeConfig, args)
        if serving.auth_file is None:
            raise ConfigError(
                "--auth-file / LOCKSTEP_DASHBOARD_TOKEN_FILE (the viewer token) is required"
            )
        if serving.tls_ca is not None:
            set_process_tls(
                TLSConfig(
                    cert=serving.tls_cert,
                    key=serving.tls_key,
                    ca=serving.tls_ca,
                    server_name=serving.tls_server_name,
                )
            )
        config = from_sources(DashboardConfig, args, token=read_viewer_token(serving.auth_file))
        serve(config, serving.address, serving.ready_file, serving.metrics_address)
    except LockstepError as exc:
        print(f"lockstep-dashboard: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
