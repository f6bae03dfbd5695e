"""Configuration of the telemetry service, read once at start-up."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from lockstep.errors import ConfigError
from lockstep.server import parse_address

__all__ = ["TelemetryConfig", "add_arguments", "config_from_args"]

SYNCHRONOUS_MODES = ("FULL", "NORMAL")


@dataclass(frozen=True)
class TelemetryConfig:
    """Telemetry service settings.

    Attributes:
        db_path: the SQLite database file (created with its parent directory if missing).
        synchronous: SQLite ``PRAGMA synchronous``: "FULL" (default) fsyncs the WAL on
            every commit, so an acknowledged append survives power loss; "NORMAL" survives
            process crashes only, and is faster on slow disks.
        max_batch_records: most records in one AppendRecords call (RESOURCE_EXHAUSTED above).
        max_payload_bytes: largest payload of one record (RESOURCE_EXHAUSTED above).
        max_batch_bytes: largest total payload of one AppendRecords call.
        max_followers: most concurrent FollowRecords streams (RESOURCE_EXHAUSTED above).
        stream_batch_records: most records in one streamed RecordBatch message.
        stream_batch_bytes: payload bytes after which a streamed RecordBatch is cut.
        metrics_address: HOST:PORT of the Prometheus text endpoint; "" disables it, port 0
            picks a free port (logged at start-up).
        verify_on_start: recompute the whole chain at start-up and refuse to start if it is
            broken (costs about a second per million records).
        max_workers: gRPC worker threads (each follower holds one while it waits).
    """

    db_path: Path
    synchronous: str = "FULL"
    max_batch_records: int = 10_000
    max_payload_bytes: int = 1024 * 1024
    max_batch_bytes: int = 32 * 1024 * 1024
    max_followers: int = 8
    stream_batch_records: int = 1000
    stream_batch_bytes: int = 4 * 1024 * 1024
    metrics_address: str = ""
    verify_on_start: bool = False
    max_workers: int = 24

    def __post_init__(self) -> None:
        if self.synchronous not in SYNCHRONOUS_MODES:
            raise ConfigError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}, "
                f"got {self.synchronous!r}"
            )
        for name in (
            "max_batch_records",
            "max_payload_bytes",
            "max_batch_bytes",
            "max_followers",
            "stream_batch_records",
            "stream_batch_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.max_workers < self.max_followers + 4:
            raise ConfigError(
                f"max_workers ({self.max_workers}) must exceed max_followers "
                f"({self.max_followers}) by at least 4"
            )
        if self.metrics_address:
            if self.metrics_address.startswith("unix:"):
                raise ConfigError("metrics address must be HOST:PORT, not a unix socket")
            parse_address(self.metrics_address)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"${name} must be an integer, got {raw!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The telemetry service's own flags (each also read from an environment variable)."""
    parser.add_argument(
        "--db",
        type=Path,
        default=os.environ.get("LOCKSTEP_TELEMETRY_DB"),
        help="SQLite database file [env LOCKSTEP_TELEMETRY_DB]",
    )
    parser.add_argument(
        "--synchronous",
        type=str.upper,
        default=os.environ.get("LOCKSTEP_TELEMETRY_SYNCHRONOUS", "FULL"),
        help="FULL (default, durable on power loss) or NORMAL [env LOCKSTEP_TELEMETRY_SYNCHRONOUS]",
    )
    parser.add_argument(
        "--max-batch-records",
        type=int,
        default=None,
        help="most records per AppendRecords call (default 10000)",
    )
    parser.add_argument(
        "--max-payload-bytes", type=int, default=None, help="largest record payload (default 1 MiB)"
    )
    parser.add_argument(
        "--verify-on-start",
        action="store_true",
        default=os.environ.get("LOCKSTEP_TELEMETRY_VERIFY_ON_START") == "1",
        help="verify the whole chain before serving; refuse to start if broken",
    )


def config_from_args(args: argparse.Namespace) -> TelemetryConfig:
    """Build the config from parsed flags; raises ConfigError on a bad value."""
    if args.db is None:
        raise ConfigError("no --db / LOCKSTEP_TELEMETRY_DB given")
    max_records = args.max_batch_records
    if max_records is None:
        max_records = _env_int("LOCKSTEP_TELEMETRY_MAX_BATCH_RECORDS", 10_000)
    max_payload = args.max_payload_bytes
    if max_payload is None:
        max_payload = _env_int("LOCKSTEP_TELEMETRY_MAX_PAYLOAD_BYTES", 1024 * 1024)
    return TelemetryConfig(
        db_path=Path(args.db),
        synchronous=args.synchronous,
        max_batch_records=max_records,
        max_payload_bytes=max_payload,
        # --metrics-address is a flag of every service (lockstep.server); the telemetry
        # service's older variable still works.
        metrics_address=args.metrics_address
        or os.environ.get("LOCKSTEP_TELEMETRY_METRICS_ADDRESS", ""),
        verify_on_start=args.verify_on_start,
    )
