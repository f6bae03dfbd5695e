"""Prometheus metrics of a service process: one registry per server, served as text on a
port of its own (`--metrics-address`, env LOCKSTEP_METRICS_ADDRESS).

Each registry holds the process collectors (CPU, memory, open files, GC, Python version)
besides the service's own metrics, so several servers in one process (the tests) keep
their figures apart. Names follow the Prometheus conventions: `lockstep_<service>_...`,
base units (seconds, bytes), `_total` on counters (added by prometheus_client).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from lockstep.errors import ConfigError

__all__ = ["LATENCY_BUCKETS", "Children", "MetricsEndpoint", "RpcMetrics", "service_registry"]

log = logging.getLogger("lockstep.metrics")

# Latency buckets (seconds) for RPCs and ticks: from 100 us to 10 s.
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Children:
    """A labelled metric's children by the value of its one label, each looked up once:
    `labels()` validates and takes a lock on every call, which the per-tick and per-batch
    updates of the services would pay each time."""

    def __init__(self, metric: Any, label: str) -> None:
        self._metric = metric
        self._label = label
        self._by_value: dict[str, Any] = {}

    def __getitem__(self, value: str) -> Any:
        child = self._by_value.get(value)
        if child is None:
            child = self._by_value[value] = self._metric.labels(**{self._label: value})
        return child


def service_registry() -> CollectorRegistry:
    """A registry with the process, platform and GC collectors registered."""
    # The *_created series (wall-clock creation stamps) only add noise to a scrape.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class MetricsEndpoint:
    """The HTTP endpoint of one registry (prometheus_client's own server)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.address = ""
        self._server: Any = None
        self._thread: Any = None

    def serve(self, address: str) -> str:
        """Serve on HOST:PORT (port 0: any free port); return the bound HOST:PORT."""
        if address.startswith("unix:"):
            raise ConfigError("metrics address must be HOST:PORT, not a unix socket")
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"bad metrics address {address!r}: expected HOST:PORT")
        host = host.strip("[]") or "0.0.0.0"
        try:
            self._server, self._thread = start_http_server(int(port), host, registry=self.registry)
        except (OSError, OverflowError) as exc:
            raise ConfigError(
                f"cannot serve metrics on {address}: {getattr(exc, 'strerror', None) or exc}"
            ) from None
        bound = host if ":" not in host else f"[{host}]"
        self.address = f"{bound}:{self._server.server_port}"
        log.info("metrics on http://%s/metrics", self.address)
        return self.address

    def close(self) -> None:
        """Stop serving. The server thread polls every 0.5 s; it is stopped in the
        background so that closing never waits for the poll."""
        server, self._server, self._thread = self._server, None, None
        if server is not None:

            def stop() -> None:
                server.shutdown()
                server.server_close()

            threading.Thread(target=stop, name="metrics-stop", daemon=True).start()


class RpcMetrics(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Counts every call a server handles, by service, method and status code, and times
    it (the grpc-ecosystem names: grpc_server_handled_total, grpc_server_handling_seconds).

    Written here rather than taken from py-grpc-prometheus because that package registers
    in the process-wide default registry, and servers here keep a registry each."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC (to the last message of a stream)",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        done = self._done(service, method)

        def one_response(inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            # unary-unary and stream-unary alike: (request or iterator, context) -> response
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    response = inner(request, context)
                except BaseException:
                    done(started, context, failed=True)
                    raise
                done(started, context)
                return response

            return call

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                one_response(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                one_response(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    yield from inner_stream(request, context)
                except BaseException:
                    done(started, context, failed=True)
                    raise
                done(started, context)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # bidirectional streams: none in these services

    def _done(self, service: str, method: str) -> Callable[..., None]:
        handled = self.handled
        seconds = self.seconds.labels(grpc_service=service, grpc_method=method)

        def done(started: float, context: grpc.ServicerContext, failed: bool = False) -> None:
            seconds.observe(time.perf_counter() - started)
            code = _code_of(context)
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            handled.labels(grpc_service=service, grpc_method=method, grpc_code=code.name).inc()

        return done


def _code_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    try:
        code = context.code()  # type: ignore[attr-defined]
    except AttributeError:
        return None
    if isinstance(code, grpc.StatusCode):
        return code
    return None
