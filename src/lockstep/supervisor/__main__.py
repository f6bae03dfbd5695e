"""`python -m lockstep.supervisor`: the process `lockstep up` starts in the background."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lockstep.errors import ConfigError
from lockstep.supervisor._supervisor import SupervisorConfig, run_supervisor


def parse_addresses(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise ConfigError(f"bad --address {item!r}: expected NAME=HOST:PORT")
        out[name] = addr
    return out


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s supervisor %(levelname)s %(message)s"
    )
    parser = argparse.ArgumentParser(prog="lockstep-supervisor")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--pools", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--unix", action="store_true")
    parser.add_argument("--address", action="append", default=[], metavar="NAME=ADDR")
    parser.add_argument("--start-timeout", type=float, default=60.0)
    parser.add_argument("--dev-mode", action="store_true")
    parser.add_argument("--no-dashboard", action="store_true")
    parser.add_argument(
        "--no-shm",
        action="store_true",
        help="keep every pool batch on gRPC (no shared-memory tick channel)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="every service serves Prometheus metrics on a free port",
    )
    args = parser.parse_args(argv)
    try:
        config = SupervisorConfig(
            state_dir=args.state_dir,
            pools=args.pools,
            host=args.host,
            unix=args.unix,
            addresses=parse_addresses(args.address),
            start_timeout=args.start_timeout,
            dashboard=not args.no_dashboard,
            dev_mode=args.dev_mode,
            metrics=args.metrics,
            shm=not args.no_shm,
        )
    except ConfigError as exc:
        print(f"lockstep-supervisor: error: {exc}", file=sys.stderr)
        return 2
    return run_supervisor(config)


if __name__ == "__main__":
    sys.exit(main())
