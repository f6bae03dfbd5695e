"""The one mapping between Lockstep errors and gRPC statuses.

Server side, `status_of` / `abort` turn an exception into the status its class carries
(`LockstepError.code`, see `lockstep.errors`); anything else is INTERNAL, so a builtin
`KeyError` or `ValueError` is never reported as NOT_FOUND or INVALID_ARGUMENT. Client side,
`error_from` turns an `RpcError` back into the error class registered for its status.
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from lockstep.errors import (
    AbortedError,
    AlreadyExistsError,
    AuthError,
    CapacityError,
    InvalidRequestError,
    LockstepError,
    NotFoundError,
    PreconditionError,
    ServiceError,
)

__all__ = ["ERRORS", "abort", "error_for", "error_from", "status_of"]


def status_of(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and detail for an exception raised while serving a call."""
    if isinstance(exc, LockstepError):
        code = getattr(exc, "code", "INTERNAL")
        try:
            return grpc.StatusCode[code], str(exc)
        except KeyError:
            return grpc.StatusCode.INTERNAL, str(exc)
    return grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"


def abort(context: grpc.ServicerContext, exc: BaseException) -> NoReturn:
    """Abort the call with the exception's status (context.abort raises)."""
    code, detail = status_of(exc)
    context.abort(code, detail)
    raise AssertionError("context.abort returned")  # pragma: no cover


# Client side: status -> error class (one per status; subclasses map to their base here).
ERRORS: dict[grpc.StatusCode, type[LockstepError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequestError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: PreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: CapacityError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.UNAVAILABLE: ServiceError,
    grpc.StatusCode.DEADLINE_EXCEEDED: ServiceError,
    grpc.StatusCode.PERMISSION_DENIED: AuthError,
    grpc.StatusCode.UNAUTHENTICATED: AuthError,
}


def error_for(what: str, exc: grpc.RpcError) -> LockstepError:
    """The Lockstep error for a failed call, its message prefixed with `what` (unmapped
    statuses give ServiceError: the service answered, but with no client-error status)."""
    code = exc.code()
    cls = ERRORS.get(code, ServiceError)
    err = cls(f"{what}: {code.name}: {exc.details()}")
    err.status = code  # type: ignore[attr-defined]
    return err


def error_from(exc: grpc.RpcError) -> LockstepError:
    """The Lockstep error for a failed call (LockstepError for unmapped statuses)."""
    code = exc.code()
    cls = ERRORS.get(code, LockstepError)
    err = cls(f"{code.name}: {exc.details()}")
    err.status = code  # type: ignore[attr-defined]
    return err
