"""`python -m lockstep_orchestrator`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lockstep.auth import TokenStore
from lockstep.server import BoundServer, run_service
from lockstep_orchestrator._manager import AutoCheckpoints, Caps
from lockstep_orchestrator._service import DEFAULT_GRANTED, OrchestratorConfig, create_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pools",
        default=os.environ.get("LOCKSTEP_POOL_ADDRESSES", ""),
        help="comma-separated wasm_pool addresses [env LOCKSTEP_POOL_ADDRESSES]",
    )
    parser.add_argument(
        "--telemetry",
        default=os.environ.get("LOCKSTEP_TELEMETRY_ADDRESS"),
        help="telemetry address [env LOCKSTEP_TELEMETRY_ADDRESS]",
    )
    parser.add_argument(
        "--inference",
        default=os.environ.get("LOCKSTEP_INFERENCE_ADDRESS"),
        help="inference address [env LOCKSTEP_INFERENCE_ADDRESS]",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=os.environ.get("LOCKSTEP_DATA_DIR"),
        help="where registered modules are kept [env LOCKSTEP_DATA_DIR]",
    )
    parser.add_argument(
        "--trusted-keys",
        type=Path,
        default=os.environ.get("LOCKSTEP_TRUSTED_KEYS"),
        help="directory of *.pub keys trusted to sign modules [env LOCKSTEP_TRUSTED_KEYS]",
    )
    parser.add_argument(
        "--capability",
        action="append",
        default=None,
        help="capability granted to modules (repeatable; default: send, log, "
        "random, tick, infer:*)",
    )
    parser.add_argument(
        "--dev-mode",
        action="store_true",
        default=os.environ.get("LOCKSTEP_DEV_MODE") == "1",
        help="accept unsigned modules [env LOCKSTEP_DEV_MODE=1]",
    )
    parser.add_argument(
        "--pool-transport",
        default=os.environ.get("LOCKSTEP_POOL_TRANSPORT", "auto"),
        help="auto: pools on this host get the shared-memory tick channel "
        "(Linux), others gRPC; grpc: always gRPC; or one per pool, "
        "comma-separated [env LOCKSTEP_POOL_TRANSPORT]",
    )
    for flag, env, what, default in (
        (
            "max-fuel-per-step",
            "LOCKSTEP_MAX_FUEL_PER_STEP",
            "the most fuel per agent step a run or spawn may ask for",
            Caps.max_fuel_per_step,
        ),
        (
            "max-agents-per-run",
            "LOCKSTEP_MAX_AGENTS_PER_RUN",
            "the most agents one run may spawn",
            Caps.max_agents_per_run,
        ),
        (
            "max-inference-latency",
            "LOCKSTEP_MAX_INFERENCE_LATENCY",
            "the largest inference_latency a run may set, in ticks",
            Caps.max_inference_latency,
        ),
        (
            "checkpoint-every",
            "LOCKSTEP_CHECKPOINT_EVERY",
            "an automatic in-memory checkpoint every K ticks, from which a failed pool is "
            "rebuilt (0 = off)",
            AutoCheckpoints.every,
        ),
        (
            "checkpoint-keep",
            "LOCKSTEP_CHECKPOINT_KEEP",
            "how many automatic checkpoints to keep",
            AutoCheckpoints.keep,
        ),
        (
            "checkpoint-max-bytes",
            "LOCKSTEP_CHECKPOINT_MAX_BYTES",
            "no automatic checkpoint while the instances would exceed this size",
            AutoCheckpoints.max_bytes,
        ),
    ):
        parser.add_argument(
            f"--{flag}",
            type=int,
            default=int(os.environ.get(env) or default),
            help=f"{what} (default {default:,}) [env {env}]",
        )


def create(args: argparse.Namespace, auth: TokenStore | None) -> BoundServer:
    config = OrchestratorConfig(
        pools=tuple(p for p in args.pools.split(",") if p),
        telemetry=args.telemetry or None,
        inference=args.inference or None,
        data_dir=args.data_dir,
        trusted_keys=args.trusted_keys,
        dev_mode=args.dev_mode,
        capabilities=frozenset(args.capability) if args.capability else DEFAULT_GRANTED,
        pool_transport=args.pool_transport,
        max_fuel_per_step=args.max_fuel_per_step,
        max_agents_per_run=args.max_agents_per_run,
        max_inference_latency=args.max_inference_latency,
        checkpoint_every=args.checkpoint_every,
        checkpoint_keep=args.checkpoint_keep,
        checkpoint_max_bytes=args.checkpoint_max_bytes,
    )
    return create_server(args.address, auth=auth, config=config)


if __name__ == "__main__":
    sys.exit(run_service("orchestrator", None, "127.0.0.1:7070", add_arguments, create))
