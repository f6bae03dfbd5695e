"""OpenTelemetry end to end: a real OTLP/gRPC receiver (the collector services generated in
opentelemetry-proto) started here, `lockstep up` with the standard OTEL_* variables, a
scenario run; the receiver gets a span per tick with its pool batches as children, the
pools' server spans in the same traces, and the orchestrator's metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mpb_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tpb_grpc

pytestmark = pytest.mark.e2e
SCENARIO = Path(__file__).resolve().parents[2] / "examples" / "scenarios" / "pingpong.toml"


class Receiver:
    """Keeps every export request of both services; `changed` is notified on each."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []  # (service.name, span)
        self.metrics: list[tuple[str, str]] = []  # (service.name, metric name)
        self.changed = threading.Condition()

    @staticmethod
    def _service(resource: Any) -> str:
        for attr in resource.attributes:
            if attr.key == "service.name":
                return str(attr.value.string_value)
        return ""

    def export(self, request: Any) -> Any:
        with self.changed:
            if isinstance(request, tpb.ExportTraceServiceRequest):
                for rs in request.resource_spans:
                    svc = self._service(rs.resource)
                    self.spans += [(svc, s) for ss in rs.scope_spans for s in ss.spans]
                response: Any = tpb.ExportTraceServiceResponse()
            else:
                for rm in request.resource_metrics:
                    svc = self._service(rm.resource)
                    self.metrics += [(svc, m.name) for sm in rm.scope_metrics for m in sm.metrics]
                response = mpb.ExportMetricsServiceResponse()
            self.changed.notify_all()
        return response


class _Traces(tpb_grpc.TraceServiceServicer):
    def __init__(self, r: Receiver) -> None:
        self.r = r

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.r.export(request)


class _Metrics(mpb_grpc.MetricsServiceServicer):
    def __init__(self, r: Receiver) -> None:
        self.r = r

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.r.export(request)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    r = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    tpb_grpc.add_TraceServiceServicer_to_server(_Traces(r), server)  # type: ignore[no-untyped-call]
    mpb_grpc.add_MetricsServiceServicer_to_server(_Metrics(r), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield r, port
    server.stop(0)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lockstep.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_a_run_exports_tick_spans_and_metrics_over_otlp(
    receiver: tuple[Receiver, int], tmp_path: Path
) -> None:
    r, port = receiver
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    state = str(tmp_path / "state")
    up = cli(env, "up", "--state-dir", state, "--pools", "2")
    assert up.returncode == 0, up.stderr
    try:
        run = cli(env, "run", "--state-dir", state, str(SCENARIO), "--json")
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
    finally:
        down = cli(env, "down", "--state-dir", state)  # flushes the exporters
    assert down.returncode == 0, down.stderr

    def ticks() -> list[Any]:
        return [s for svc, s in r.spans if svc == "lockstep-orchestrator" and s.name == "tick"]

    def have_all() -> bool:
        return len(ticks()) >= summary["tick"] and any(
            name == "lockstep.orchestrator.ticks" for _svc, name in r.metrics
        )

    with r.changed:
        assert r.changed.wait_for(have_all, timeout=60), (len(ticks()), r.metrics[:5])
    tick_spans = {s.span_id: s for s in ticks()}
    run_ticks = sorted(
        next(a.value.int_value for a in s.attributes if a.key == "lockstep.tick")
        for s in tick_spans.values()
        if any(
            a.key == "lockstep.run_id" and a.value.string_value == summary["run_id"]
            for a in s.attributes
        )
    )
    assert run_ticks == list(range(1, summary["tick"] + 1))
    batches = [s for svc, s in r.spans if s.name == "pool StepBatch"]
    assert batches and all(b.parent_span_id in tick_spans for b in batches)
    # The trace goes on into the pools: over the shared-memory tick channel (the default for
    # local pools) the request carries the trace context and the pool's span is a child of
    # the orchestrator's batch span; RPCs (LoadModule...) get the gRPC instrumentation's.
    trace_ids = {s.trace_id for s in tick_spans.values()}
    batch_ids = {s.span_id for s in batches}
    pool_side = [
        s
        for svc, s in r.spans
        if svc == "lockstep-wasm-pool" and s.name == "tick channel StepBatch"
    ]
    assert pool_side and {s.trace_id for s in pool_side} <= trace_ids
    assert all(s.parent_span_id in batch_ids for s in pool_side)
    assert any(svc == "lockstep-wasm-pool" and s.name.endswith("/LoadModule") for svc, s in r.spans)
    names = {name for svc, name in r.metrics if svc == "lockstep-orchestrator"}
    assert {
        "lockstep.orchestrator.ticks",
        "lockstep.orchestrator.tick.duration",
        "lockstep.orchestrator.steps",
    } <= names
