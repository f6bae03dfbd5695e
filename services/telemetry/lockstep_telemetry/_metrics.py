"""Prometheus metrics of one telemetry server, served as text on their own HTTP port."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from lockstep.errors import ConfigError

__all__ = ["Metrics"]

log = logging.getLogger("lockstep.telemetry.metrics")

# Append latency buckets (seconds): a batch takes from ~100 us (a few records, no fsync)
# to ~100 ms (10k records with fsync on a slow disk).
_LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The server's metrics in a registry of its own (several servers may share a process)."""

    def __init__(self) -> None:
        # The *_created series (wall-clock creation stamps) only add noise to a scrape.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter(
            "lockstep_telemetry_records_appended", "Records appended by this process, by kind",
            ["kind"], registry=self.registry)
        self.batches = Counter(
            "lockstep_telemetry_append_batches",
            "AppendRecords calls by outcome (stored, duplicate, rejected, failed)",
            ["outcome"], registry=self.registry)
        self.append_seconds = Histogram(
            "lockstep_telemetry_append_seconds",
            "Server-side latency of AppendRecords (validation, hashing, commit)",
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.head_sequence = Gauge(
            "lockstep_telemetry_head_sequence", "Sequence number of the chain head",
            registry=self.registry)
        self.followers = Gauge(
            "lockstep_telemetry_followers", "Open FollowRecords streams", registry=self.registry)
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.address = ""

    def count_records(self, kinds: Iterable[tuple[str, int]]) -> None:
        for kind, n in kinds:
            self.records.labels(kind=kind).inc(n)

    def serve(self, address: str) -> str:
        """Start the HTTP endpoint on HOST:PORT; return the bound HOST:PORT."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        registry = self.registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/", "/metrics"):
                    self.send_error(404, "only /metrics is served here")
                    return
                body = generate_latest(registry)
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the service log

        try:
            server = ThreadingHTTPServer((host, int(port)), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {address}: {exc.strerror}") from None
        server.daemon_threads = True
        # A short poll interval keeps shutdown() quick (it waits for the next poll).
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name="metrics-http", daemon=True)
        self._thread.start()
        self._http = server
        bound_host = host if ":" not in host else f"[{host}]"
        self.address = f"{bound_host}:{server.server_address[1]}"
        log.info("metrics on http://%s/metrics", self.address)
        return self.address

    def close(self) -> None:
        """Stop the HTTP endpoint."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
