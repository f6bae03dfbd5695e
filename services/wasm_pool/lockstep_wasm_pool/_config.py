"""Pool configuration: one frozen dataclass, read once at start-up from flags or
environment (lockstep.config)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

from lockstep import tick_channel
from lockstep.config import setting
from lockstep.errors import ConfigError

__all__ = ["WasmPoolConfig"]

MIB = 1024 * 1024
ENGINES = ("auto", "native", "python")
WASM_PAGE = 65536


@dataclass(frozen=True)
class WasmPoolConfig:
    """Settings of one pool process. Per-agent defaults follow docs/abi.md ("Limits").

    Every field can be set with a flag ``--<field-name>`` or the environment variable
    ``LOCKSTEP_POOL_<FIELD_NAME>`` (flags win); see docs/services.md.
    """

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_POOL_"

    # --- per-agent defaults (AgentSpec.limits fields that are zero take these) ---
    fuel_per_step: int = setting(
        10_000_000,
        help="Fuel for all calls into one agent in one tick together.",
    )
    max_memory_pages: int = setting(
        256,
        help="Linear memory cap per agent, in 64 KiB pages (256 = 16 MiB).",
    )
    max_messages_per_step: int = setting(
        1024,
        help="`send` calls accepted per agent per tick.",
    )
    max_message_bytes: int = setting(
        65_536,
        help="Largest message payload, bytes.",
    )
    max_logs_per_step: int = setting(
        64,
        help="`log` calls accepted per agent per tick.",
    )
    # --- fixed per-agent limits (not in common.Limits) ---
    max_log_bytes: int = setting(
        4096,
        help="Longest log line, bytes.",
    )
    max_infers_per_step: int = setting(
        16,
        help="`infer` calls accepted per agent per tick.",
    )
    max_infer_input_bytes: int = setting(
        MIB,
        help="Largest inference input, bytes.",
    )
    max_random_bytes: int = setting(
        65_536,
        help="Most random bytes per `random` call.",
    )
    max_args_bytes: int = setting(
        65_536,
        help="Largest spawn-argument blob, bytes.",
    )
    # --- request bounds ---
    max_module_bytes: int = setting(
        32 * MIB,
        help="Largest module accepted by LoadModule, bytes.",
    )
    max_inbox_bytes: int = setting(
        16 * MIB,
        help="Largest inbox of one agent in one StepBatch, bytes.",
    )
    max_memory_pages_cap: int = setting(
        512,
        help="Upper bound on any agent's max_memory_pages. A snapshot travels as one gRPC "
        "message (64 MiB at most), so the default keeps a whole memory (32 MiB) well inside "
        "it.",
    )
    max_modules: int = setting(
        1024,
        help="Most modules (accepted or rejected) remembered; LoadModule beyond it is refused.",
    )
    max_agents: int = setting(
        100_000,
        help="Most live agents in this pool.",
    )
    # --- wasmtime engine ---
    memory_reservation: int = setting(
        0,
        help="Virtual address space reserved per linear memory (0: memories are moved on growth).",
    )
    memory_guard_size: int = setting(
        0,
        help="Guard region after each linear memory (0: explicit bounds checks).",
    )
    memory_init_cow: bool = setting(
        False,
        help="Copy-on-write images for linear memory initialisation. Off (the default) costs "
        "no memory mapping per instance; on costs 2, so vm.max_map_count caps a process near "
        "32k agents. Digests do not depend on it: instantiation is never charged fuel "
        '(docs/pool.md, "Memory configuration").',
    )
    max_wasm_stack: int = setting(
        512 * 1024,
        help="Most native stack a wasm call may use; deeper recursion is a STACK_OVERFLOW fault.",
    )
    module_cache_dir: Path | None = setting(
        None,
        help="Directory for serialized compiled modules (none: compile on every process start).",
    )
    fast_path: bool = setting(
        True,
        help="Use the raw-call fast path on wasmtime-py internals when they are as expected.",
    )
    engine: str = setting(
        "auto",
        choices=ENGINES,
        help="Stepping engine: `native` (the C core, services/wasm_pool/native/; start-up "
        "fails when it cannot load), `python` (the reference engine), or `auto` (native "
        "when it loads, otherwise python with a WARNING). See docs/pool.md.",
    )

    tick_channel_poll_us: int = setting(
        round(tick_channel.BATCH_POLL_S * 1e6),
        help="How long a tick channel connection polls for the next batch before blocking, "
        "in microseconds (only while batches keep coming that fast and the orchestrator "
        "says a core is free for it; 0: always block). See "
        "docs/adr/004.",
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{f.name} must be >= 0, got {value}")
        positive = [
            "fuel_per_step",
            "max_memory_pages",
            "max_message_bytes",
            "max_log_bytes",
            "max_module_bytes",
            "max_memory_pages_cap",
            "max_modules",
            "max_agents",
            "max_wasm_stack",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0")
        if self.max_memory_pages_cap > 65_536:
            raise ConfigError("max_memory_pages_cap must be <= 65536 (wasm32)")
        if self.max_memory_pages > self.max_memory_pages_cap:
            raise ConfigError("max_memory_pages must be <= max_memory_pages_cap")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
