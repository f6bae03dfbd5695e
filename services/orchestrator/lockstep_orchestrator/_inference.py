"""The orchestrator's side of agent inference calls.

Calls made during tick t go to the inference service as one AgentInferBatch at the end of
the tick; their results are needed at tick t+L, and the orchestrator blocks there only if
they are not back yet. An unreachable service is retried, never turned into an error
result: what an agent sees must not depend on timing. Without an inference service every
call completes with the same error result, deterministically.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import trace

from lockstep.dial import AuthedChannel
from lockstep.errors import ServiceError
from lockstep.pb.inference.v1 import inference_pb2 as ipb
from lockstep.pb.inference.v1 import inference_pb2_grpc as ipb_grpc

log = logging.getLogger("lockstep.orchestrator.inference")

_tracer = trace.get_tracer("lockstep.orchestrator")
RETRY_FOR_S = 120.0
RPC_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class InferResult:
    """What comes back for one agent request."""

    output: bytes
    error: str
    provider: str = ""
    model_version: str = ""


@dataclass
class _Batch:
    requests: list[ipb.AgentInferRequest] = field(default_factory=list)
    future: Any = None
    response: ipb.AgentInferBatchResponse | None = None


class InferenceBridge:
    """Batches a tick's calls and hands back results at their delivery tick."""

    def __init__(self, address: str | None = None, token: str | None = None) -> None:
        self._stub = None
        self._channel = None
        if address:
            self._channel = AuthedChannel(address, token)
            self._stub = ipb_grpc.InferenceServiceStub(self._channel)
        self._current = _Batch()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()

    def submit(self, key: str, model: str, data: bytes) -> Any:
        if self._stub is None:
            return InferResult(b"", "inference service not configured")
        self._current.requests.append(ipb.AgentInferRequest(key=key, model=model, input=data))
        return (self._current, len(self._current.requests) - 1)

    def flush(self) -> None:
        """Send the tick's batch (called at the end of every tick)."""
        batch = self._current
        if self._stub is None or not batch.requests:
            return
        self._current = _Batch()
        span = _tracer.start_span(
            "inference batch",
            attributes={
                "lockstep.requests": len(batch.requests),
                "lockstep.models": sorted({r.model for r in batch.requests}),
            },
        )
        with trace.use_span(span):
            batch.future = self._stub.AgentInferBatch.future(
                ipb.AgentInferBatchRequest(requests=batch.requests), timeout=RPC_TIMEOUT_S
            )
        batch.future.add_done_callback(lambda _f: span.end())

    def result(self, handle: Any) -> InferResult:
        if isinstance(handle, InferResult):
            return handle
        batch, index = handle
        if batch.future is None:
            self.flush()
        if batch.response is None:
            batch.response = self._wait(batch)
        r = batch.response.results[index]
        return InferResult(r.output, r.error, r.provider, r.model_version)

    def _wait(self, batch: _Batch) -> ipb.AgentInferBatchResponse:
        deadline = time.monotonic() + RETRY_FOR_S
        delay = 0.1
        while True:
            try:
                response: ipb.AgentInferBatchResponse = batch.future.result()
                return response
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise ServiceError(
                        f"inference batch failed: {exc.code().name}: {exc.details()}"
                    ) from None
                log.warning("inference unavailable; retrying in %.1fs", delay)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                assert self._stub is not None
                batch.future = self._stub.AgentInferBatch.future(
                    ipb.AgentInferBatchRequest(requests=batch.requests), timeout=RPC_TIMEOUT_S
                )
