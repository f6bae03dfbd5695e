"""`python -m lockstep_telemetry --db PATH --auth-file F` (``--help``: every setting)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lockstep.server import run_service
from lockstep_telemetry._config import TelemetryConfig
from lockstep_telemetry._service import create_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the telemetry service until SIGTERM/SIGINT."""
    return run_service("telemetry", argv, TelemetryConfig, create_server)


if __name__ == "__main__":
    sys.exit(main())
