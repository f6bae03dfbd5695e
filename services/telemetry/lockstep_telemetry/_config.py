"""Configuration of the telemetry service, read once at start-up (lockstep.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lockstep.config import setting
from lockstep.errors import ConfigError

__all__ = ["SYNCHRONOUS_MODES", "TelemetryConfig"]

SYNCHRONOUS_MODES = ("FULL", "NORMAL")


@dataclass(frozen=True)
class TelemetryConfig:
    """Telemetry service settings: each field is a flag ``--<field-name>`` and the variable
    ``LOCKSTEP_TELEMETRY_<FIELD_NAME>`` (docs/services.md)."""

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_TELEMETRY_"

    db_path: Path = setting(
        env="LOCKSTEP_TELEMETRY_DB",
        aliases=("--db",),
        help="The SQLite database file (created, with its directory, if missing).",
    )
    synchronous: str = setting(
        "FULL",
        parse=str.upper,
        help="SQLite `PRAGMA synchronous`: FULL fsyncs the WAL on every commit, so an "
        "acknowledged append survives power loss; NORMAL survives process crashes only, "
        "and is faster on slow disks.",
    )
    max_batch_records: int = setting(
        10_000, help="Most records in one AppendRecords call (RESOURCE_EXHAUSTED above)."
    )
    max_payload_bytes: int = setting(
        1024 * 1024, help="Largest payload of one record (RESOURCE_EXHAUSTED above)."
    )
    max_batch_bytes: int = setting(
        32 * 1024 * 1024, help="Largest total payload of one AppendRecords call."
    )
    max_followers: int = setting(
        8, help="Most concurrent FollowRecords streams (RESOURCE_EXHAUSTED above)."
    )
    stream_batch_records: int = setting(
        1000, help="Most records in one streamed RecordBatch message."
    )
    stream_batch_bytes: int = setting(
        4 * 1024 * 1024, help="Payload bytes after which a streamed RecordBatch is cut."
    )
    verify_on_start: bool = setting(
        False,
        help="Recompute the whole chain at start-up and refuse to start if it is broken "
        "(one pass over every record).",
    )
    max_workers: int = setting(
        24, help="gRPC worker threads (each follower holds one while it waits)."
    )

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
