"""OpenTelemetry export, configured by the standard environment variables.

A service process exports traces and metrics over OTLP/gRPC when any of
OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT is set (and OTEL_SDK_DISABLED is not "true"). The
SDK's exporters read the rest themselves (OTEL_EXPORTER_OTLP_INSECURE, _HEADERS,
_CERTIFICATE, _TIMEOUT, OTEL_METRIC_EXPORT_INTERVAL, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, ...). Every gRPC server and client call gets a span from the
OpenTelemetry gRPC instrumentation, with the trace context carried in the call's metadata,
so one tick's trace spans the orchestrator, the pools and the inference service.

Without those variables nothing is configured, and the tick path makes no spans at all
(`tracing_on()`: the API's no-op spans cost ~10 us a tick, 1-3% of a small one).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace as _trace

__all__ = ["configure_otel", "otel_requested", "shutdown_otel", "tracing_on"]

log = logging.getLogger("lockstep.otel")

_ENDPOINT_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
_providers: list[Any] = []
_NO_PROVIDER = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)


def tracing_on() -> bool:
    """Whether a tracer provider is installed in this process (by `configure_otel` or by the
    embedding program): until one is, the API hands out non-recording spans, which the tick
    path skips making."""
    return not isinstance(_trace.get_tracer_provider(), _NO_PROVIDER)


def otel_requested() -> bool:
    """Whether the environment asks for OTLP export."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(v) for v in _ENDPOINT_VARS)


def configure_otel(service: str) -> bool:
    """Set up OTLP export of traces and metrics for this process (once); True if on."""
    if _providers or not otel_requested():
        return bool(_providers)
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc").strip().lower()
    if protocol != "grpc":
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s: only grpc is supported; using grpc", protocol)
    from opentelemetry import metrics, trace
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.grpc import (
        GrpcInstrumentorClient,
        GrpcInstrumentorServer,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or f"lockstep-{service.replace('_', '-')}"
    resource = Resource.create({SERVICE_NAME: name})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    metrics.set_meter_provider(meter_provider)
    GrpcInstrumentorServer().instrument()  # type: ignore[no-untyped-call]
    GrpcInstrumentorClient().instrument()  # type: ignore[no-untyped-call]
    _providers.extend([tracer_provider, meter_provider])
    log.info("OpenTelemetry: exporting traces and metrics over OTLP as %s", name)
    return True


def shutdown_otel() -> None:
    """Flush and stop the exporters (at process exit)."""
    while _providers:
        provider = _providers.pop()
        try:
            provider.shutdown()
        except Exception as exc:  # an unreachable collector must not fail the shutdown
            log.warning("OpenTelemetry shutdown: %s", exc)
