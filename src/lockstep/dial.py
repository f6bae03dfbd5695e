"""Client-side helpers: channels with credentials, and waiting on health."""

from __future__ import annotations

import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lockstep.auth import bearer_metadata
from lockstep.errors import ServiceError
from lockstep.server import DEFAULT_MAX_MESSAGE_BYTES
from lockstep.tls import TLSConfig, process_tls

__all__ = ["AuthedChannel", "health_status", "open_channel", "wait_serving"]


def open_channel(
    address: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, tls: TLSConfig | None = None
) -> grpc.Channel:
    """A channel with Lockstep's message-size bound: TLS (mTLS with a certificate) when `tls`
    or the process's configuration (lockstep.tls.process_tls) says so, else plaintext."""
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    tls = tls if tls is not None else process_tls()
    if tls is not None and tls.dials_tls:
        return grpc.secure_channel(
            address, tls.channel_credentials(), options=[*options, *tls.channel_options()]
        )
    return grpc.insecure_channel(address, options=options)


class _BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    def __init__(self, token: str) -> None:
        self._metadata = bearer_metadata(token)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=[*(details.metadata or ()), *self._metadata])

    def intercept_unary_unary(self, cont: Any, details: Any, request: Any) -> Any:
        return cont(self._details(details), request)

    def intercept_unary_stream(self, cont: Any, details: Any, request: Any) -> Any:
        return cont(self._details(details), request)

    def intercept_stream_unary(self, cont: Any, details: Any, it: Any) -> Any:
        return cont(self._details(details), it)

    def intercept_stream_stream(self, cont: Any, details: Any, it: Any) -> Any:
        return cont(self._details(details), it)


def AuthedChannel(  # noqa: N802 - reads as the channel type it returns
    address: str,
    token: str | None,
    tls: TLSConfig | None = None,
) -> grpc.Channel:
    """A channel that sends `token` as a bearer credential on every call (None = no credential)."""
    channel = open_channel(address, tls=tls)
    if token is None:
        return channel
    return grpc.intercept_channel(channel, _BearerInterceptor(token))


def health_status(
    address: str, service: str = "", timeout: float = 2.0, tls: TLSConfig | None = None
) -> str:
    """ "SERVING", "NOT_SERVING", ... or "UNREACHABLE"."""
    with open_channel(address, tls=tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError:
            return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


def wait_serving(
    address: str, timeout: float = 30.0, service: str = "", tls: TLSConfig | None = None
) -> None:
    """Block until `address` reports SERVING, using gRPC's wait-for-ready, not sleeps."""
    deadline = time.monotonic() + timeout
    with open_channel(address, tls=tls) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ServiceError(f"{address} did not report SERVING within {timeout:.0f}s")
            try:
                resp = stub.Check(
                    health_pb2.HealthCheckRequest(service=service),
                    timeout=min(remaining, 5.0),
                    wait_for_ready=True,
                )
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue
                raise ServiceError(f"{address}: health check failed: {exc.details()}") from None
            if resp.status == health_pb2.HealthCheckResponse.SERVING:
                return
            # Not serving yet: block on the Watch stream until the status changes; when
            # the stream ends (deadline, server gone) the loop above decides what next.
            try:
                for update in stub.Watch(
                    health_pb2.HealthCheckRequest(service=service),
                    timeout=max(0.1, deadline - time.monotonic()),
                ):
                    if update.status == health_pb2.HealthCheckResponse.SERVING:
                        return
            except grpc.RpcError:
                continue
