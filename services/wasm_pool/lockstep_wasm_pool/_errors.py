"""Errors of the pool. Agent faults are *results* (a Fault in AgentStepResult), not errors.

LockstepError
├── ModuleError            (lockstep.errors)
│   └── ModuleRejectedError     a module failed validation; `fault` says why
└── PoolError              a request the pool cannot honour
    ├── InvalidRequestError     malformed or out-of-bounds input  -> INVALID_ARGUMENT
    ├── NotFoundError           unknown agent sequence / module    -> NOT_FOUND
    ├── AlreadyExistsError      sequence or name already live     -> ALREADY_EXISTS
    └── LimitReachedError       pool capacity (agents, modules)   -> RESOURCE_EXHAUSTED
"""

from __future__ import annotations

from lockstep import errors as _shared
from lockstep.errors import LockstepError, ModuleError
from lockstep.pb.common.v1 import common_pb2

__all__ = [
    "AlreadyExistsError",
    "InvalidRequestError",
    "LimitReachedError",
    "ModuleRejectedError",
    "NotFoundError",
    "PoolError",
]


class PoolError(LockstepError):
    """A pool request that cannot be honoured; nothing was changed. Each subclass carries its
    gRPC status through its shared base (lockstep.errors, mapped by lockstep.status)."""

    code = "FAILED_PRECONDITION"


class InvalidRequestError(_shared.InvalidRequestError, PoolError):
    """Malformed or out-of-bounds input."""


class NotFoundError(_shared.NotFoundError, PoolError):
    """An unknown agent sequence or module hash."""


class AlreadyExistsError(_shared.AlreadyExistsError, PoolError):
    """A sequence or agent name that is already live in this pool."""


class LimitReachedError(_shared.CapacityError, PoolError):
    """The pool is at capacity (agents or modules)."""


class ModuleRejectedError(ModuleError):
    """A module failed validation; ``fault`` carries the kind and the precise reason."""

    def __init__(self, kind: common_pb2.FaultKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    @property
    def fault(self) -> common_pb2.Fault:
        """The fault reported for agents that reference this module."""
        return common_pb2.Fault(kind=self.kind, detail=self.detail, entry_point="load")
