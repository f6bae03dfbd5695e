"""Serving the dashboard: bind (port 0 allowed), report the bound address in a ready file,
serve with uvicorn until SIGTERM or until the supervisor that started it is gone."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from lockstep.errors import ConfigError
from lockstep.server import parse_address
from lockstep_dashboard._app import create_app
from lockstep_dashboard._config import DashboardConfig

__all__ = ["bind", "serve", "serve_metrics"]

log = logging.getLogger("lockstep.dashboard")


def bind(address: str) -> socket.socket:
    """A listening TCP socket on "host:port" (port 0 = any free port)."""
    parse_address(address)
    if address.startswith("unix:"):
        raise ConfigError(f"the dashboard serves HTTP on TCP only, not {address!r}")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name != "nt":
        # A restart on the same address must not wait for the old connections' TIME_WAIT
        # (on POSIX this never lets two processes listen on one port).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {address}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve_metrics(address: str) -> tuple[str, Callable[[], None]]:
    """Prometheus text at http://ADDRESS/metrics (the process collectors), like every
    service under `lockstep up --metrics`; returns the bound address and a stop hook."""
    from prometheus_client import (
        GC_COLLECTOR,
        PLATFORM_COLLECTOR,
        PROCESS_COLLECTOR,
        CollectorRegistry,
        start_http_server,
    )

    parse_address(address)
    host, _, port = address.rpartition(":")
    registry = CollectorRegistry()
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    try:
        httpd, _thread = start_http_server(int(port), addr=host.strip("[]"), registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {address}: {exc.strerror}") from None
    return f"{host}:{httpd.server_port}", httpd.shutdown


def bound_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, writing the ready file once it accepts connections."""

    def __init__(
        self, config: uvicorn.Config, ready_file: Path | None, address: str, metrics: str = ""
    ) -> None:
        super().__init__(config)
        self.ready_file = ready_file
        self.address = address
        self.metrics = metrics

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT stop the server gracefully. Unlike uvicorn's own, this does not
        re-raise the signal afterwards: a Lockstep service stops with status 0."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        if self.ready_file is not None:
            tmp = self.ready_file.with_suffix(self.ready_file.suffix + ".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "address": self.address,
                        "pid": os.getpid(),
                        "metrics": self.metrics,
                        "url": f"http://{self.address}/",
                    }
                )
            )
            os.replace(tmp, self.ready_file)
        log.info("serving on %s (pid %d): http://%s/", self.address, os.getpid(), self.address)


def _watch_supervisor(server: uvicorn.Server) -> None:
    """Under `lockstep up`, stop when the supervisor that started this process is gone."""
    raw = os.environ.get("LOCKSTEP_SUPERVISOR_PID", "")
    if not raw.isdigit():
        return
    supervisor = int(raw)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != supervisor:
                log.warning("supervisor (pid %d) is gone: shutting down", supervisor)
                server.should_exit = True
                return

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def serve(
    config: DashboardConfig,
    address: str,
    ready_file: Path | None = None,
    metrics_address: str = "",
    **uvicorn_options: Any,
) -> None:
    """Serve the dashboard on `address` until SIGTERM/SIGINT (uvicorn handles both), and
    Prometheus metrics on `metrics_address` when given."""
    sock = bind(address)
    actual = bound_address(sock)
    stop_metrics: Callable[[], None] | None = None
    metrics = ""
    try:
        if metrics_address:
            metrics, stop_metrics = serve_metrics(metrics_address)
        app = create_app(config)
        uconfig = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            server_header=False,
            **uvicorn_options,
        )
        server = _Server(uconfig, ready_file, actual, metrics)
        _watch_supervisor(server)
        server.run(sockets=[sock])
    finally:
        sock.close()
        if stop_metrics is not None:
            stop_metrics()
