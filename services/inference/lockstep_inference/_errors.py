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

from typing import ClassVar

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
    """Base of the inference service's errors; `code` is the name of the gRPC status to
    answer with (lockstep.errors' convention), `status` the grpc.StatusCode member."""

    code: ClassVar[str] = "INTERNAL"

    @property
    def status(self) -> grpc.StatusCode:
        """The gRPC status to answer with."""
        return grpc.StatusCode[self.code]


class ModelNotFoundError(InferenceError):
    """No model of that name (or version) in the repository."""

    code: ClassVar[str] = "NOT_FOUND"


class InvalidInputError(InferenceError):
    """A tensor, prompt or parameter does not fit the model or the API."""

    code: ClassVar[str] = "INVALID_ARGUMENT"


class TensorTooLargeError(InferenceError):
    """A tensor (or request) is above the configured size bound."""

    code: ClassVar[str] = "RESOURCE_EXHAUSTED"


class CacheFullError(InferenceError):
    """The model does not fit the cache budget, even after evicting every idle model."""

    code: ClassVar[str] = "RESOURCE_EXHAUSTED"


class ModelLoadError(InferenceError):
    """The model file is unreadable, corrupt, or its lockstep.json is invalid."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class ModelBusyError(InferenceError):
    """The model has requests in flight, so it cannot be unloaded or replaced now."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class VersionMismatchError(InferenceError):
    """The caller expected another model version than the one loaded."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class ProviderUnavailableError(InferenceError):
    """CUDA is required ("require-cuda") but the session did not get it."""

    code: ClassVar[str] = "FAILED_PRECONDITION"


class ReplayMismatchError(InferenceError, DeterminismError):
    """Re-running a logged generation gave another logits hash or token."""

    code: ClassVar[str] = "ABORTED"
