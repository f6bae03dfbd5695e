"""Errors of the inference service and the gRPC status each maps to.

    InferenceError (lockstep.errors.LockstepError)        INTERNAL
    ├── ModelNotFoundError       unknown model name        NOT_FOUND
    ├── InvalidInputError        bad tensor/prompt/params  INVALID_ARGUMENT
    ├── TensorTooLargeError      tensor above the limit    RESOURCE_EXHAUSTED
    ├── CacheFullError           model does not fit        RESOURCE_EXHAUSTED
    ├── ModelLoadError           corrupt/unreadable model  FAILED_PRECONDITION
    ├── ModelBusyError           unload while in use       FAILED_PRECONDITION
    ├── VersionMismatchError     expected version differs  FAILED_PRECONDITION
    ├── ProviderUnavailableError require-cuda without GPU  FAILED_PRECONDITION
    └── ReplayMismatchError      verify found a divergence ABORTED (also a DeterminismError)
"""

from __future__ import annotations

import grpc

from lockstep.errors import DeterminismError, LockstepError

__all__ = [
    "CacheFullError",
    "InferenceError",
    "InvalidInputError",
    "ModelBusyError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ProviderUnavailableError",
    "ReplayMismatchError",
    "TensorTooLargeError",
    "VersionMismatchError",
]


class InferenceError(LockstepError):
    """Base of the inference service's errors; `code` is the gRPC status to answer with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ModelNotFoundError(InferenceError):
    """No model of that name (or version) in the repository."""

    code = grpc.StatusCode.NOT_FOUND


class InvalidInputError(InferenceError):
    """A tensor, prompt or parameter does not fit the model or the API."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class TensorTooLargeError(InferenceError):
    """A tensor (or request) is above the configured size bound."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class CacheFullError(InferenceError):
    """The model does not fit the cache budget, even after evicting every idle model."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class ModelLoadError(InferenceError):
    """The model file is unreadable, corrupt, or its lockstep.json is invalid."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ModelBusyError(InferenceError):
    """The model has requests in flight, so it cannot be unloaded or replaced now."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class VersionMismatchError(InferenceError):
    """The caller expected another model version than the one loaded."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ProviderUnavailableError(InferenceError):
    """CUDA is required ("require-cuda") but the session did not get it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ReplayMismatchError(InferenceError, DeterminismError):
    """Re-running a logged generation gave another logits hash or token."""

    code = grpc.StatusCode.ABORTED
