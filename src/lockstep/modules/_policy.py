"""The operator's registration policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from lockstep.errors import ConfigError, ModuleError
from lockstep.modules._manifest import LIMIT_NAMES, check_capability

__all__ = ["DEFAULT_CAPABILITIES", "DEFAULT_MAX_MODULE_SIZE", "Policy"]

DEFAULT_CAPABILITIES = frozenset({"log", "random", "send", "tick"})
"""Granted by default: everything but inference, which costs real resources."""

DEFAULT_MAX_MODULE_SIZE = 16 * 1024 * 1024
"""16 MiB."""


@dataclass(frozen=True)
class Policy:
    """What an operator lets modules do; checked at registration.

    Fields:
      allowed_capabilities: capabilities a manifest may request. ``infer:*`` here grants
        every ``infer:<model>`` as well as ``infer:*``; ``infer:<model>`` grants only that
        model. Default: ``send``, ``log``, ``random``, ``tick`` (no inference).
      trusted_keys_dir: directory of ``*.pub`` keys trusted to sign modules (used when
        ``verify`` is not given the keys); None trusts no key.
      max_module_size: largest module accepted, in bytes (default 16 MiB).
      dev_mode: accept unsigned modules with the verdict ``unsigned-dev-mode`` and a loud
        warning. Signed modules are still verified in full; every other check still applies.
      max_limits: upper bounds for limits a manifest may request, by limit name; a
        request above its bound is refused. Limits not named here are not bounded by
        the policy (the runtime's own caps still apply).
      check_exports: also require the ABI v1 exports with their signatures (default on).
    """

    allowed_capabilities: frozenset[str] = DEFAULT_CAPABILITIES
    trusted_keys_dir: Path | None = None
    max_module_size: int = DEFAULT_MAX_MODULE_SIZE
    dev_mode: bool = False
    max_limits: Mapping[str, int] = field(default_factory=dict)
    check_exports: bool = True

    def __post_init__(self) -> None:
        caps = self.allowed_capabilities
        if isinstance(caps, str):
            raise ConfigError("policy: allowed_capabilities must be a set of strings")
        for cap in sorted(caps):
            try:
                check_capability(cap)
            except ModuleError as exc:
                raise ConfigError(f"policy: {exc}") from None
        if self.max_module_size <= 0:
            raise ConfigError(f"policy: max_module_size {self.max_module_size} must be > 0")
        for name in sorted(self.max_limits):
            value = self.max_limits[name]
            if name not in LIMIT_NAMES:
                raise ConfigError(f"policy: unknown limit {name!r}")
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"policy: max limit {name} = {value!r} must be > 0")
        object.__setattr__(self, "allowed_capabilities", frozenset(caps))
        object.__setattr__(
            self, "max_limits", MappingProxyType(dict(sorted(self.max_limits.items())))
        )
        if self.trusted_keys_dir is not None:
            object.__setattr__(self, "trusted_keys_dir", Path(self.trusted_keys_dir))

    def grants(self, capability: str) -> bool:
        """Whether a manifest may request ``capability``."""
        if capability in self.allowed_capabilities:
            return True
        return (
            capability.startswith("infer:")
            and capability != "infer:*"
            and "infer:*" in self.allowed_capabilities
        )
