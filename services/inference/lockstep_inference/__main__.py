"""`python -m lockstep_inference --auth-file F [--model-repository DIR]` (``--help``: every
setting)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lockstep.server import run_service
from lockstep_inference._config import InferenceConfig
from lockstep_inference._server import create_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the inference service until SIGTERM/SIGINT."""
    return run_service("inference", argv, InferenceConfig, create_server)


if __name__ == "__main__":
    sys.exit(main())
