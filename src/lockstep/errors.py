"""Exception tree shared by every Lockstep package.

    LockstepError
    ├── ConfigError          bad or missing configuration, found at start-up
    ├── AuthError            missing/unknown credential or insufficient role
    ├── ServiceError         a service could not be reached or answered an error
    ├── ModuleError          a module was rejected (ABI, manifest, signature, policy)
    └── DeterminismError     two executions that must agree did not
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "DeterminismError",
    "LockstepError",
    "ModuleError",
    "ServiceError",
]


class LockstepError(Exception):
    """Base of every error Lockstep raises on purpose."""


class ConfigError(LockstepError):
    """Configuration is missing or invalid; raised at start-up, never later."""


class AuthError(LockstepError):
    """A call carried no credential, an unknown one, or one whose role is too low."""


class ServiceError(LockstepError):
    """A service could not be reached, or answered with an error."""


class ModuleError(LockstepError):
    """A wasm module was rejected; the message names the offending import/export/field."""


class DeterminismError(LockstepError):
    """Two executions that the determinism contract says must agree did not."""
