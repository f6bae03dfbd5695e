"""`python -m lockstep_dashboard`: the read-only web dashboard as its own process.

    python -m lockstep_dashboard --address 127.0.0.1:8780 --orchestrator 127.0.0.1:7070 \
        --telemetry 127.0.0.1:7090 --auth-file viewer.token [--ready-file F]

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
from pathlib import Path

from lockstep.errors import LockstepError
from lockstep.tls import set_process_tls
from lockstep_dashboard._config import DashboardConfig, read_viewer_token
from lockstep_dashboard._server import serve

DEFAULT_ADDRESS = "127.0.0.1:8780"


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="lockstep-dashboard", description="Lockstep's read-only web dashboard"
    )
    p.add_argument(
        "--address",
        default=env("LOCKSTEP_DASHBOARD_LISTEN", DEFAULT_ADDRESS),
        help="HOST:PORT to serve HTTP on (port 0 = any free port; default "
        f"{DEFAULT_ADDRESS}, loopback) [env LOCKSTEP_DASHBOARD_LISTEN]",
    )
    p.add_argument(
        "--orchestrator",
        default=env("LOCKSTEP_ORCHESTRATOR_ADDRESS"),
        help="orchestrator gRPC address [env LOCKSTEP_ORCHESTRATOR_ADDRESS]",
    )
    p.add_argument(
        "--telemetry",
        default=env("LOCKSTEP_TELEMETRY_ADDRESS"),
        help="telemetry gRPC address [env LOCKSTEP_TELEMETRY_ADDRESS]",
    )
    p.add_argument(
        "--auth-file",
        type=Path,
        default=env("LOCKSTEP_DASHBOARD_TOKEN_FILE"),
        help="file holding only the viewer token [env LOCKSTEP_DASHBOARD_TOKEN_FILE]",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        default=None,
        help="write {address, pid, url} as JSON here once serving",
    )
    p.add_argument(
        "--metrics-address",
        default=env("LOCKSTEP_METRICS_ADDRESS", ""),
        help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0 = any "
        "free port; default: off) [env LOCKSTEP_METRICS_ADDRESS]",
    )
    p.add_argument(
        "--page-size",
        type=int,
        default=int(env("LOCKSTEP_DASHBOARD_PAGE_SIZE", "50")),
        help="rows per table page [env LOCKSTEP_DASHBOARD_PAGE_SIZE]",
    )
    p.add_argument(
        "--render-interval-ms",
        type=int,
        default=int(env("LOCKSTEP_DASHBOARD_RENDER_INTERVAL_MS", "1000")),
        help="a live page redraws at most this often [env LOCKSTEP_DASHBOARD_RENDER_INTERVAL_MS]",
    )
    p.add_argument(
        "--tls-ca",
        type=Path,
        default=env("LOCKSTEP_TLS_CA") or None,
        help="CA of the services' certificates: dial them with TLS [env LOCKSTEP_TLS_CA]",
    )
    p.add_argument(
        "--tls-cert",
        type=Path,
        default=env("LOCKSTEP_TLS_CERT") or None,
        help="client certificate for mTLS [env LOCKSTEP_TLS_CERT]",
    )
    p.add_argument(
        "--tls-key",
        type=Path,
        default=env("LOCKSTEP_TLS_KEY") or None,
        help="its private key [env LOCKSTEP_TLS_KEY]",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=os.environ.get("LOCKSTEP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s dashboard %(levelname)s %(message)s",
    )
    args = parser().parse_args(argv)
    try:
        if not args.orchestrator or not args.telemetry:
            raise LockstepError(
                "--orchestrator and --telemetry are required (or "
                "LOCKSTEP_ORCHESTRATOR_ADDRESS / LOCKSTEP_TELEMETRY_ADDRESS)"
            )
        if args.auth_file is None:
            raise LockstepError("--auth-file (the viewer token) is required")
        if args.tls_ca is not None:
            from lockstep.tls import TLSConfig

            set_process_tls(
                TLSConfig(
                    cert=args.tls_cert,
                    key=args.tls_key,
                    ca=args.tls_ca,
                    server_name=os.environ.get("LOCKSTEP_TLS_SERVER_NAME") or None,
                )
            )
        config = DashboardConfig(
            orchestrator=args.orchestrator,
            telemetry=args.telemetry,
            token=read_viewer_token(args.auth_file),
            page_size=args.page_size,
            render_interval_ms=args.render_interval_ms,
        )
        serve(config, args.address, args.ready_file, args.metrics_address)
    except LockstepError as exc:
        print(f"lockstep-dashboard: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
