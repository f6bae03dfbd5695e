"""Lockstep: a deterministic, local-first runtime for multi-agent systems.

This package holds what every part shares: configuration, credentials, the gRPC server
frame, clients, the generated protobuf stubs (``lockstep.<service>.v1``), the local
supervisor and the ``lockstep`` command line.
"""

from lockstep.errors import (
    AuthError,
    ConfigError,
    DeterminismError,
    LockstepError,
    ModuleError,
    ServiceError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "DeterminismError",
    "LockstepError",
    "ModuleError",
    "ServiceError",
    "__version__",
]
