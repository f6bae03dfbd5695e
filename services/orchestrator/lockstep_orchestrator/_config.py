"""The orchestrator's settings, read once at start-up (lockstep.config)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lockstep import tick_channel
from lockstep.config import setting
from lockstep.errors import ConfigError
from lockstep_orchestrator._manager import AutoCheckpoints, Caps

__all__ = ["DEFAULT_GRANTED", "OrchestratorConfig"]

# Inference is a core feature, so the default policy grants it along with the rest.
DEFAULT_GRANTED = frozenset({"send", "log", "random", "tick", "infer:*"})


@dataclass(frozen=True)
class OrchestratorConfig:
    """Orchestrator settings: each field is a flag ``--<field-name>`` and the variable
    ``LOCKSTEP_<FIELD_NAME>`` unless it names another (docs/services.md). The orchestrator
    owns the run, so its caps keep the short names (``LOCKSTEP_MAX_FUEL_PER_STEP``)."""

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_"

    pools: tuple[str, ...] = setting(
        env="LOCKSTEP_POOL_ADDRESSES",
        help="The wasm_pool addresses, comma-separated, in shard order (at least one).",
    )
    telemetry: str | None = setting(
        None,
        env="LOCKSTEP_TELEMETRY_ADDRESS",
        help="The telemetry service's address; none keeps the journal in memory only.",
    )
    inference: str | None = setting(
        None,
        env="LOCKSTEP_INFERENCE_ADDRESS",
        help="The inference service's address; none answers agents' infer calls with errors.",
    )
    data_dir: Path | None = setting(
        None,
        help="Where registered modules and the current run's marker are kept (none: in "
        "memory; no resume after a crash).",
    )
    trusted_keys: Path | None = setting(
        None, help="Directory of `*.pub` keys trusted to sign modules (none: trust none)."
    )
    capabilities: frozenset[str] = setting(
        DEFAULT_GRANTED,
        help="The capabilities the operator grants to modules, comma-separated.",
    )
    dev_mode: bool = setting(
        False, help="Accept unsigned modules (loudly); every other check still applies."
    )
    shutdown_flush_s: float = setting(
        10.0,
        help="At shutdown, how long to wait for telemetry before writing the unsent journal "
        "records to a file in the data dir.",
    )
    pool_recovery_s: float = setting(
        60.0,
        help="When a pool fails mid-tick, how long to keep rebuilding the run (the "
        "supervisor restarts the pool) before the call fails UNAVAILABLE; 0 fails the tick.",
    )
    pool_transport: str = setting(
        "auto",
        help="`auto` sends the batches of pools on this host through the shared-memory tick "
        "channel (Linux; docs/adr/004), `grpc` never; or one of the two per pool, "
        "comma-separated.",
    )
    ticks_ahead: str = setting(
        "auto",
        help="`auto` sends a tick's step batches before the tick before it commits (in "
        "`Step` and `RunUntil`, where nothing else decides that tick) when this process and "
        "its local pools each have a core, `on` always, `off` never; digests are the same "
        'either way (docs/architecture.md, "Ticks in flight").',
    )
    tick_channel_poll_us: int = setting(
        round(tick_channel.RESULT_POLL_S * 1e6),
        help="How long to poll the tick channel for a pool's results before blocking, in "
        "microseconds (only while results keep coming that fast and this process and its "
        "local pools each have a core; 0: always block). See "
        "docs/adr/004.",
    )
    max_fuel_per_step: int = setting(
        Caps.max_fuel_per_step,
        help="The most fuel per agent step a run's default limits or a spawn may ask for "
        "(INVALID_ARGUMENT above).",
    )
    max_agents_per_run: int = setting(
        Caps.max_agents_per_run,
        help="The most agents one run may ever spawn (RESOURCE_EXHAUSTED above).",
    )
    max_inference_latency: int = setting(
        Caps.max_inference_latency,
        help="The largest `RunConfig.inference_latency` a run may set, in ticks.",
    )
    checkpoint_every: int = setting(
        AutoCheckpoints.every,
        help="An automatic checkpoint every K ticks (outside the journal; also written to the "
        "data dir), from which a failed pool is rebuilt and a crashed run resumed; 0: off "
        "(both replay from tick 1).",
    )
    checkpoint_keep: int = setting(
        AutoCheckpoints.keep,
        help="How many automatic checkpoints to keep (in memory, and per run on disk).",
    )
    checkpoint_max_bytes: int = setting(
        AutoCheckpoints.max_bytes,
        help="No automatic checkpoint while the run's instances would exceed this size.",
    )
    checkpoint_max_share: float = setting(
        AutoCheckpoints.max_share,
        help="The most of the run's time automatic checkpoints may take (capture and write, "
        "estimated from the last one); one due sooner is put off.",
    )
    resume: bool = setting(
        True,
        help="At start-up, resume the run an orchestrator on the same data dir was running "
        "when it died (needs the data dir and telemetry: its journal is read back).",
    )

    def __post_init__(self) -> None:
        if not self.pools:
            raise ConfigError("at least one wasm_pool address is required (--pools)")
        if self.tick_channel_poll_us < 0:
            raise ConfigError(f"tick_channel_poll_us must be >= 0, got {self.tick_channel_poll_us}")
