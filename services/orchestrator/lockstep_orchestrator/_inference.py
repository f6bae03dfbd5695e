"""The orchestrator's side of agent inference calls.

Calls made during tick t are sent to the inference service as one batch at the end of the
tick; the results are needed at tick t+L. Without an inference service every call
completes with an error result, deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class InferResult:
    """What comes back for one agent request."""

    output: bytes
    error: str
    provider: str = ""
    model_version: str = ""


class InferenceBridge:
    """Submits agent inference calls and waits for them at their delivery tick."""

    def __init__(self, client: Any | None = None) -> None:
        self._client = client

    def submit(self, key: str, model: str, data: bytes) -> Any:
        if self._client is None:
            return InferResult(b"", "inference service not configured")
        return self._client.submit(key, model, data)

    def result(self, handle: Any) -> InferResult:
        if isinstance(handle, InferResult):
            return handle
        result: InferResult = self._client.result(handle)  # type: ignore[union-attr]
        return result
