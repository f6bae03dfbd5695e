"""`python -m lockstep_wasm_pool --auth-file F [--address HOST:PORT]` (``--help``: every
setting)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lockstep.server import run_service
from lockstep_wasm_pool._config import WasmPoolConfig
from lockstep_wasm_pool._service import create_server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pool service until SIGTERM/SIGINT."""
    return run_service("wasm_pool", argv, WasmPoolConfig, create_server)


if __name__ == "__main__":
    sys.exit(main())
