"""``python -m lockstep_wasm_pool --address 127.0.0.1:0 --auth-file F --ready-file R``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lockstep.auth import TokenStore
from lockstep.server import BoundServer, run_service
from lockstep_wasm_pool._config import WasmPoolConfig
from lockstep_wasm_pool._service import create_server

DEFAULT_ADDRESS = "127.0.0.1:7071"  # the port the Dockerfile and compose use


def _create(args: argparse.Namespace, auth: TokenStore | None) -> BoundServer:
    # Configuration is read once, here; bad values end the process with status 2.
    return create_server(args.address, auth=auth, config=WasmPoolConfig.from_sources(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pool service until SIGTERM/SIGINT."""
    return run_service("wasm_pool", argv, DEFAULT_ADDRESS, WasmPoolConfig.add_arguments, _create)


if __name__ == "__main__":
    sys.exit(main())
