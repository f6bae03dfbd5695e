"""Mapping engine errors to gRPC statuses, so a bad request never takes the server down."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from lockstep_inference._errors import InferenceError

__all__ = ["grpc_errors", "grpc_errors_stream"]

log = logging.getLogger("lockstep.inference")

F = TypeVar("F", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, method: str, exc: Exception) -> None:
    if isinstance(exc, InferenceError):
        context.set_trailing_metadata((("lockstep-error", type(exc).__name__),))
        context.abort(exc.status, str(exc))
    log.exception("%s: unexpected error", method)
    context.abort(
        grpc.StatusCode.INTERNAL, f"{method}: internal error: {type(exc).__name__}: {exc}"
    )


def grpc_errors(fn: F) -> F:
    """Unary handler wrapper: InferenceError -> its status; anything else -> INTERNAL."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortError":
                raise
            _abort(context, fn.__name__, exc)

    return wrapper  # type: ignore[return-value]


def grpc_errors_stream(fn: F) -> F:
    """Server-streaming handler wrapper with the same mapping."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            if isinstance(exc, grpc.RpcError) or type(exc).__name__ == "_AbortError":
                raise
            _abort(context, fn.__name__, exc)

    return wrapper  # type: ignore[return-value]
