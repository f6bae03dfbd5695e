"""`python -m lockstep_telemetry --address 127.0.0.1:0 --db PATH --auth-file F`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lockstep.auth import TokenStore
from lockstep.server import BoundServer, run_service
from lockstep_telemetry._config import add_arguments, config_from_args
from lockstep_telemetry._service import start_telemetry


def _create(args: argparse.Namespace, auth: TokenStore | None) -> BoundServer:
    return start_telemetry(args.address, auth=auth, config=config_from_args(args)).bound


def main(argv: Sequence[str] | None = None) -> int:
    """Run the telemetry service until SIGTERM/SIGINT."""
    return run_service("telemetry", argv, "127.0.0.1:0", add_arguments, _create)


if __name__ == "__main__":
    sys.exit(main())
