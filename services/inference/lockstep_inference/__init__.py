"""Lockstep inference service: ONNX Runtime with explicit CUDA->CPU fallback, an LRU model
cache under a byte budget, seeded token generation with a replayable per-step log, the
agent batch API, and the KServe v2 / Open Inference Protocol gRPC API. See
docs/inference.md.
"""

from __future__ import annotations

__version__ = "0.1.0"

from lockstep_inference._config import InferenceConfig, default_repository
from lockstep_inference._engine import InferenceEngine, TensorIn
from lockstep_inference._errors import (
    CacheFullError,
    InferenceError,
    InvalidInputError,
    ModelBusyError,
    ModelLoadError,
    ModelNotFoundError,
    ProviderUnavailableError,
    ReplayMismatchError,
    TensorTooLargeError,
    VersionMismatchError,
)
from lockstep_inference._prepare import PreparedModel, prepare_models
from lockstep_inference._sampling import draw, seed_from_key
from lockstep_inference._server import create_server
from lockstep_inference._service import ROLE_TABLE, SERVICE_NAME
from lockstep_inference._session import OrtSession

__all__ = [
    "ROLE_TABLE",
    "SERVICE_NAME",
    "CacheFullError",
    "InferenceConfig",
    "InferenceEngine",
    "InferenceError",
    "InvalidInputError",
    "ModelBusyError",
    "ModelLoadError",
    "ModelNotFoundError",
    "OrtSession",
    "PreparedModel",
    "ProviderUnavailableError",
    "ReplayMismatchError",
    "TensorIn",
    "TensorTooLargeError",
    "VersionMismatchError",
    "__version__",
    "create_server",
    "default_repository",
    "draw",
    "prepare_models",
    "seed_from_key",
]
