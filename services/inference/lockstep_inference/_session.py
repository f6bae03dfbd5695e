"""One ONNX Runtime session, opened with an explicit provider policy.

Never trusts `onnxruntime.get_available_providers()`: the session is opened with the
providers asked for, then `session.get_providers()` says what it really got. CUDA that was
asked for but not obtained is a recorded fallback (or an error under "require-cuda").
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil

from lockstep_inference._config import InferenceConfig
from lockstep_inference._dtypes import kserve_of_ort
from lockstep_inference._errors import (
    InferenceError,
    InvalidInputError,
    ModelLoadError,
    ProviderUnavailableError,
)

__all__ = ["CPU", "CUDA", "OrtSession", "TensorSpecInfo"]

log = logging.getLogger("lockstep.inference")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_GRAPH = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}

# Session creation is serialised so that the RSS growth measured around one creation is
# that session's (other loads cannot allocate in between; inference keeps running).
_CREATE_LOCK = threading.Lock()


@dataclass(frozen=True)
class TensorSpecInfo:
    """A declared model input or output."""

    name: str
    datatype: str
    shape: tuple[int, ...]  # -1 where the model leaves the dimension free


def session_options(config: InferenceConfig) -> ort.SessionOptions:
    """The fixed, deterministic session settings of this server."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = _GRAPH[config.graph_optimization]
    opts.intra_op_num_threads = config.intra_op_threads
    opts.inter_op_num_threads = config.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads burn the shared cores between calls; results do not depend on it.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if hasattr(opts, "use_deterministic_compute"):
        opts.use_deterministic_compute = True
    opts.log_severity_level = 3
    return opts


def _spec(arg: Any) -> TensorSpecInfo:
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpecInfo(name=arg.name, datatype=kserve_of_ort(arg.type), shape=shape)


class OrtSession:
    """An ONNX Runtime session plus what it really runs on; close() releases it."""

    def __init__(self, model_bytes: bytes, config: InferenceConfig, label: str) -> None:
        self.label = label
        self.requested_provider = config.provider
        self.fallback_reason = ""
        self.settings = config.settings_text
        opts = session_options(config)
        want_cuda = config.provider in ("cuda", "require-cuda")
        providers: list[Any] = (
            [(CUDA, {"device_id": config.device_id}), CPU] if want_cuda else [CPU]
        )
        with _CREATE_LOCK:
            rss_before = psutil.Process().memory_info().rss
            try:
                session = ort.InferenceSession(model_bytes, sess_options=opts, providers=providers)
            except Exception as exc:
                if not want_cuda or not self._is_provider_failure(exc):
                    raise ModelLoadError(
                        f"model {label!r}: onnxruntime cannot load it: {_short(exc)}"
                    ) from None
                if config.provider == "require-cuda":
                    raise ProviderUnavailableError(
                        f"model {label!r}: CUDA required but session creation failed: {_short(exc)}"
                    ) from None
                # CUDA blew up while building the session: retry on CPU explicitly.
                self.fallback_reason = f"CUDA session creation failed: {_short(exc)}"
                try:
                    session = ort.InferenceSession(model_bytes, sess_options=opts, providers=[CPU])
                except Exception as exc2:
                    raise ModelLoadError(
                        f"model {label!r}: onnxruntime cannot load it: {_short(exc2)}"
                    ) from None
            self.rss_delta = max(0, psutil.Process().memory_info().rss - rss_before)
        got = list(session.get_providers())
        self.provider = got[0] if got else CPU
        if want_cuda and self.provider != CUDA:
            if not self.fallback_reason:
                self.fallback_reason = (
                    f"CUDA requested, session got {got} (no usable CUDA device or libraries)"
                )
            if config.provider == "require-cuda":
                del session
                raise ProviderUnavailableError(
                    f"model {label!r}: CUDA required but not available: {self.fallback_reason}"
                )
            log.warning("model %s: falling back to CPU: %s", label, self.fallback_reason)
        self._session: ort.InferenceSession | None = session
        # Kept (CUDA sessions only) so a failed GPU run can be rebuilt on CPU (ADR-009).
        self._model_bytes = model_bytes if self.provider == CUDA else b""
        self._config = config
        self._swap_lock = threading.Lock()
        self.inputs = [_spec(a) for a in session.get_inputs()]
        self.outputs = [_spec(a) for a in session.get_outputs()]

    @staticmethod
    def _is_provider_failure(exc: Exception) -> bool:
        text = str(exc)
        return "CUDA" in text or "cuda" in text or "cudnn" in text.lower()

    def run(
        self,
        feeds: dict[str, np.ndarray],
        output_names: list[str] | None = None,
    ) -> list[np.ndarray]:
        """Run the model; ONNX Runtime's input complaints become INVALID_ARGUMENT."""
        session = self._session
        if session is None:
            raise InferenceError(f"model {self.label!r}: session is closed")
        try:
            outs = session.run(output_names, feeds)
        except Exception as exc:
            name = type(exc).__name__
            if name in ("InvalidArgument", "InvalidGraph", "NotImplemented") or isinstance(
                exc, (ValueError, TypeError)
            ):
                raise InvalidInputError(
                    f"model {self.label!r} rejected the inputs: {_short(exc)}"
                ) from None
            if self.provider == CUDA and self.requested_provider == "cuda":
                self._fall_back_to_cpu(exc)
                return self.run(feeds, output_names)
            raise InferenceError(
                f"model {self.label!r}: onnxruntime failed: {_short(exc)}"
            ) from None
        return [np.asarray(o) for o in outs]

    def _fall_back_to_cpu(self, exc: Exception) -> None:
        """A failed GPU run: rebuild the session on CPU, recorded, and carry on."""
        with self._swap_lock:
            if self.provider != CUDA:
                return  # another thread already swapped
            log.warning(
                "model %s: CUDA run failed, falling back to CPU: %s", self.label, _short(exc)
            )
            try:
                cpu = ort.InferenceSession(
                    self._model_bytes, sess_options=session_options(self._config), providers=[CPU]
                )
            except Exception as exc2:
                raise InferenceError(
                    f"model {self.label!r}: CUDA run failed and the CPU "
                    f"fallback could not be built: {_short(exc2)}"
                ) from None
            self._session = cpu
            self.provider = CPU
            self.fallback_reason = f"CUDA run failed: {_short(exc)}"

    def close(self) -> None:
        """Release the native session."""
        self._session = None

    def __enter__(self) -> OrtSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."
