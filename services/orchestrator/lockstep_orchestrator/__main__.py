"""`python -m lockstep_orchestrator --pools A,B --auth-file F` (``--help``: every setting)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lockstep.server import run_service
from lockstep_orchestrator._config import OrchestratorConfig
from lockstep_orchestrator._service import create_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the orchestrator until SIGTERM/SIGINT."""
    return run_service("orchestrator", argv, OrchestratorConfig, create_server)


if __name__ == "__main__":
    sys.exit(main())
