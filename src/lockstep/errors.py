"""Exception tree shared by every Lockstep package.

    LockstepError                  INTERNAL
    ├── ConfigError                FAILED_PRECONDITION  configuration missing or invalid
    ├── AuthError                  PERMISSION_DENIED    missing/unknown credential, low role
    ├── ServiceError               UNAVAILABLE          a service could not be reached
    ├── ModuleError                INVALID_ARGUMENT     a module was rejected
    ├── DeterminismError           FAILED_PRECONDITION  two executions that must agree did not
    ├── InvalidRequestError        INVALID_ARGUMENT     a request is malformed or out of bounds
    ├── NotFoundError              NOT_FOUND            a named thing does not exist
    ├── AlreadyExistsError         ALREADY_EXISTS       a named thing exists already
    ├── PreconditionError          FAILED_PRECONDITION  valid, but not in this state
    ├── CapacityError              RESOURCE_EXHAUSTED   more than the services can hold
    └── AbortedError               ABORTED              rolled back; the same call may succeed

Every error carries its gRPC status as `code` (the `grpc.StatusCode` member name), so one
mapping (`lockstep.status`) serves every service, and clients map a status back to the
same class. Builtin exceptions are never given a client-error status: a `KeyError` or
`ValueError` that escapes a servicer is a bug and is answered INTERNAL.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "QUOTE_CHARS",
    "AbortedError",
    "AlreadyExistsError",
    "AuthError",
    "CapacityError",
    "ConfigError",
    "DeterminismError",
    "InvalidRequestError",
    "LockstepError",
    "ModuleError",
    "NotFoundError",
    "PreconditionError",
    "ServiceError",
    "quote",
]


class LockstepError(Exception):
    """Base of every error Lockstep raises on purpose."""

    code: ClassVar[str] = "INTERNAL"


class ConfigError(LockstepError):
    """Configuration is missing or invalid."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class AuthError(LockstepError):
    """A call carried no credential, an unknown one, or one whose role is too low."""

    code: ClassVar[str] = "PERMISSION_DENIED"


class ServiceError(LockstepError):
    """A service could not be reached, or answered with an error."""

    code: ClassVar[str] = "UNAVAILABLE"


class ModuleError(LockstepError):
    """A wasm module was rejected; the message names the offending import/export/field."""

    code: ClassVar[str] = "INVALID_ARGUMENT"


class DeterminismError(LockstepError):
    """Two executions that the determinism contract says must agree did not."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class InvalidRequestError(LockstepError):
    """A request is malformed or out of bounds; the message names the field."""

    code: ClassVar[str] = "INVALID_ARGUMENT"


class NotFoundError(LockstepError):
    """A named thing (agent, module, run, checkpoint) does not exist."""

    code: ClassVar[str] = "NOT_FOUND"


class AlreadyExistsError(LockstepError):
    """A named thing exists already."""

    code: ClassVar[str] = "ALREADY_EXISTS"


class PreconditionError(LockstepError):
    """The request is valid but the service is not in a state to serve it."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class CapacityError(LockstepError):
    """The request asks for more than the services can hold (agents, memory, bytes)."""

    code: ClassVar[str] = "RESOURCE_EXHAUSTED"


class AbortedError(LockstepError):
    """The operation was rolled back whole (nothing changed); the same call may succeed."""

    code: ClassVar[str] = "ABORTED"


QUOTE_CHARS = 40


def quote(value: str | bytes, limit: int = QUOTE_CHARS) -> str:
    """A client-supplied string for an error message: its repr, cut to a short prefix
    (`limit` characters, then "...") so that a 10 KB name is never echoed whole."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(value)} {'bytes' if isinstance(value, bytes) else 'chars'})"
