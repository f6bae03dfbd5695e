"""Pool configuration: one frozen dataclass, read once at start-up from flags or environment."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from lockstep.errors import ConfigError

__all__ = ["WasmPoolConfig"]

_ENV_PREFIX = "LOCKSTEP_POOL_"
MIB = 1024 * 1024
ENGINES = ("auto", "native", "python")
WASM_PAGE = 65536


@dataclass(frozen=True)
class WasmPoolConfig:
    """Settings of one pool process. Per-agent defaults follow docs/abi.md ("Limits").

    Every field can be set with a flag ``--<field-name>`` or the environment variable
    ``LOCKSTEP_POOL_<FIELD_NAME>`` (flags win); see docs/pool.md.
    """

    # --- per-agent defaults (AgentSpec.limits fields that are zero take these) ---
    #: Fuel for all calls into one agent in one tick together.
    fuel_per_step: int = 10_000_000
    #: Linear memory cap per agent, in 64 KiB pages (256 = 16 MiB).
    max_memory_pages: int = 256
    #: `send` calls accepted per agent per tick.
    max_messages_per_step: int = 1024
    #: Largest message payload, bytes.
    max_message_bytes: int = 65_536
    #: `log` calls accepted per agent per tick.
    max_logs_per_step: int = 64
    # --- fixed per-agent limits (not in common.Limits) ---
    #: Longest log line, bytes.
    max_log_bytes: int = 4096
    #: `infer` calls accepted per agent per tick.
    max_infers_per_step: int = 16
    #: Largest inference input, bytes.
    max_infer_input_bytes: int = MIB
    #: Most random bytes per `random` call.
    max_random_bytes: int = 65_536
    #: Largest spawn-argument blob, bytes.
    max_args_bytes: int = 65_536
    # --- request bounds ---
    #: Largest module accepted by LoadModule, bytes.
    max_module_bytes: int = 32 * MIB
    #: Largest inbox of one agent in one StepBatch, bytes.
    max_inbox_bytes: int = 16 * MIB
    #: Upper bound on any agent's max_memory_pages. A snapshot travels as one gRPC message
    #: (64 MiB at most), so the default keeps a whole memory (32 MiB) well inside it.
    max_memory_pages_cap: int = 512
    #: Most modules (accepted or rejected) remembered; LoadModule beyond it is refused.
    max_modules: int = 1024
    #: Most live agents in this pool.
    max_agents: int = 100_000
    # --- wasmtime engine ---
    #: Virtual address space reserved per linear memory (0: memories are moved on growth).
    memory_reservation: int = 0
    #: Guard region after each linear memory (0: explicit bounds checks).
    memory_guard_size: int = 0
    #: Copy-on-write images for linear memory initialisation. Off (the default) costs no
    #: memory mapping per instance; on costs 2, so vm.max_map_count caps a process near 32k
    #: agents. Digests do not depend on it: instantiation is never charged fuel
    #: (docs/pool.md, "Memory configuration").
    memory_init_cow: bool = False
    #: Most native stack a wasm call may use; deeper recursion is a STACK_OVERFLOW fault.
    max_wasm_stack: int = 512 * 1024
    #: Directory for serialized compiled modules (None = compile on every process start).
    module_cache_dir: Path | None = None
    #: Use the raw-call fast path on wasmtime-py internals when they are as expected.
    fast_path: bool = True
    #: Stepping engine: ``native`` (the C core, services/wasm_pool/native/; start-up fails
    #: when it cannot load), ``python`` (the reference engine), or ``auto`` (native when it
    #: loads, otherwise python with a WARNING). See docs/pool.md.
    engine: str = "auto"

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

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """Add one ``--<field>`` flag per field (default: environment, then built-in)."""
        for f in fields(WasmPoolConfig):
            flag = "--" + f.name.replace("_", "-")
            env = _ENV_PREFIX + f.name.upper()
            if f.type in ("bool", bool):
                parser.add_argument(
                    flag,
                    dest=f"pool_{f.name}",
                    default=None,
                    choices=["0", "1"],
                    help=f"[env {env}]",
                )
            elif f.name == "engine":
                parser.add_argument(
                    flag,
                    dest=f"pool_{f.name}",
                    default=None,
                    choices=list(ENGINES),
                    help=f"default {f.default} [env {env}]",
                )
            else:
                parser.add_argument(
                    flag,
                    dest=f"pool_{f.name}",
                    default=None,
                    help=f"default {f.default} [env {env}]",
                )

    @classmethod
    def from_sources(
        cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None
    ) -> WasmPoolConfig:
        """Build from flags (when given) over environment variables over defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = getattr(args, f"pool_{f.name}", None) if args is not None else None
            if raw is None:
                raw = env.get(_ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f, str(raw))
        return cls(**values)  # type: ignore[arg-type]


def _parse(f: dataclasses.Field[object], raw: str) -> object:
    kind = str(f.type)
    try:
        if "Path" in kind:
            return Path(raw) if raw else None
        if "bool" in kind:
            if raw not in ("0", "1", "true", "false"):
                raise ValueError(raw)
            return raw in ("1", "true")
        if kind in ("str", "<class 'str'>"):
            return raw
        return int(raw.replace("_", ""), 0)
    except ValueError:
        raise ConfigError(f"bad value {raw!r} for {f.name}") from None
