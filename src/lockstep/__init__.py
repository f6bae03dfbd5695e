"""Lockstep: a deterministic, local-first runtime for multi-agent systems.

This package holds what every part shares: configuration, credentials, the gRPC server
frame, clients, the generated protobuf stubs (``lockstep.<service>.v1``), the local
supervisor and the ``lockstep`` command line.

The public Python API (docs/python.md) is importable from here: ``lockstep.Deployment``,
``lockstep.Run``, ``lockstep.diff``, ``lockstep.sweep``, ... They are loaded on first use, so
that importing the package (as every service does) does not load pandas.
"""

from typing import TYPE_CHECKING, Any

from lockstep.errors import (
    AuthError,
    ConfigError,
    DeterminismError,
    LockstepError,
    ModuleError,
    ServiceError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from lockstep.api import (
        Action,
        AgentGroup,
        Checkpoint,
        Collector,
        Deployment,
        ReplayResult,
        Run,
        RunDiff,
        RunStatus,
        Scenario,
        diff,
        export_run,
        gini,
        load_scenario,
        model_reporters,
        read_table,
        scenario_from_dict,
        sweep,
    )

_API = (
    "Action",
    "AgentGroup",
    "Checkpoint",
    "Collector",
    "Deployment",
    "ReplayResult",
    "Run",
    "RunDiff",
    "RunStatus",
    "Scenario",
    "diff",
    "export_run",
    "gini",
    "load_scenario",
    "model_reporters",
    "read_table",
    "scenario_from_dict",
    "sweep",
)


def __getattr__(name: str) -> Any:
    if name in _API:
        import lockstep.api

        return getattr(lockstep.api, name)
    raise AttributeError(f"module 'lockstep' has no attribute {name!r}")


__all__ = [
    "Action",
    "AgentGroup",
    "AuthError",
    "Checkpoint",
    "Collector",
    "ConfigError",
    "Deployment",
    "DeterminismError",
    "LockstepError",
    "ModuleError",
    "ReplayResult",
    "Run",
    "RunDiff",
    "RunStatus",
    "Scenario",
    "ServiceError",
    "__version__",
    "diff",
    "export_run",
    "gini",
    "load_scenario",
    "model_reporters",
    "read_table",
    "scenario_from_dict",
    "sweep",
]
