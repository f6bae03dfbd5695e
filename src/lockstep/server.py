"""Building and running a Lockstep gRPC service process.

Every service gets the same frame: standard health checking, server reflection, role
checks, a bounded message size, no SO_REUSEPORT (so "port in use" is detected), a
Prometheus registry with the process collectors (served with `--metrics-address`),
OpenTelemetry export when the standard OTEL_* variables ask for it (lockstep.otel), a
ready file for supervisors, and graceful shutdown on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from lockstep.auth import AuthInterceptor, Role, TokenStore
from lockstep.config import add_flags, from_sources, setting
from lockstep.errors import ConfigError, LockstepError
from lockstep.metrics import MetricsEndpoint, RpcMetrics, service_registry
from lockstep.otel import configure_otel, shutdown_otel
from lockstep.reflection import enable_reflection
from lockstep.tls import TLSConfig, process_tls, set_process_tls

__all__ = [
    "DEFAULT_ADDRESS",
    "BoundServer",
    "ServeConfig",
    "ServerFactory",
    "ServiceBinding",
    "build_server",
    "parse_address",
    "role_table",
    "run_service",
    "service_parser",
]

log = logging.getLogger("lockstep.server")

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Every service listens on loopback, on a free port, unless told otherwise (containers
#: set LOCKSTEP_LISTEN in their Dockerfile; `lockstep up` passes --address).
DEFAULT_ADDRESS = "127.0.0.1:0"
C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to host: how to add it, its full name, and its role table."""

    add: Callable[[grpc.Server], None]
    full_name: str
    methods: Mapping[str, frozenset[Role]]
    servicer: object = None  # the object serving it (BoundServer.servicers, for tests)


@dataclass
class BoundServer:
    """A started server, the address it really listens on, and clean-up hooks."""

    server: grpc.Server
    address: str
    port: int
    health: health.HealthServicer
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # The service's Prometheus metrics (and the process collectors).
    registry: CollectorRegistry = field(default_factory=service_registry)
    metrics_address: str = ""  # HOST:PORT of /metrics once served, else ""
    # Each hosted service's servicer, by full service name.
    servicers: dict[str, object] = field(default_factory=dict)

    def serve_metrics(self, address: str) -> str:
        """Serve `registry` at http://HOST:PORT/metrics (port 0: any); the bound address."""
        endpoint = MetricsEndpoint(self.registry)
        self.metrics_address = endpoint.serve(address)
        self.on_stop.append(endpoint.close)
        return self.metrics_address

    def stop(self, grace: float | None = 5.0) -> None:
        """Mark NOT_SERVING, drain in-flight calls for `grace` seconds, run clean-up hooks."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        for hook in reversed(self.on_stop):
            hook()
        self.on_stop.clear()

    def __enter__(self) -> BoundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=0)


def role_table(service: Any, roles: Mapping[str, frozenset[Role]]) -> dict[str, frozenset[Role]]:
    """The role table of one gRPC service, keyed by full method path, derived from its
    descriptor (`pb2.DESCRIPTOR.services_by_name[...]`): every RPC the proto declares must
    have roles and every entry must name one of its RPCs, else ConfigError (a new RPC
    without a decision cannot slip through denied or, worse, allowed)."""
    declared = [m.name for m in service.methods]
    missing = sorted(set(declared) - set(roles))
    unknown = sorted(set(roles) - set(declared))
    if missing or unknown:
        raise ConfigError(
            f"role table of {service.full_name}: "
            + "; ".join(
                filter(
                    None,
                    [
                        f"no roles for {', '.join(missing)}" if missing else "",
                        f"not in the proto: {', '.join(unknown)}" if unknown else "",
                    ],
                )
            )
        )
    return {f"/{service.full_name}/{m}": roles[m] for m in declared}


def parse_address(address: str) -> str:
    """Validate "host:port" (port may be 0) or "unix:/path"; return it unchanged."""
    if address.startswith("unix:"):
        if len(address) <= len("unix:"):
            raise ConfigError(f"bad address {address!r}: unix socket path is empty")
        return address
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"bad address {address!r}: expected HOST:PORT or unix:PATH")
    return address


def build_server(
    address: str,
    services: Sequence[ServiceBinding],
    *,
    auth: TokenStore | None,
    max_workers: int = 16,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    tls: TLSConfig | None = None,
    registry: CollectorRegistry | None = None,
) -> BoundServer:
    """Create, bind and start a server hosting `services` plus health and reflection.

    `auth=None` disables role checks (explicit dev mode; the caller must say so loudly).
    `tls` (default: the process's, lockstep.tls.process_tls) with a certificate makes the
    port TLS-only, with a CA mTLS. `registry`: the service's metrics (default: a new one
    with the process collectors). Raises ConfigError when the address cannot be bound.
    """
    parse_address(address)
    methods: dict[str, frozenset[Role]] = {}
    for svc in services:
        methods.update(svc.methods)
    registry = registry if registry is not None else service_registry()
    # Metrics first, so refused calls are counted with their status too.
    interceptors: list[Any] = [RpcMetrics(registry)]
    if auth is not None:
        interceptors.append(AuthInterceptor(auth, methods))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ],
    )
    for svc in services:
        svc.add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [svc.full_name for svc in services]
    enable_reflection([*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name], server)
    tls = tls if tls is not None else process_tls()
    if tls is not None and tls.required and not tls.serves_tls:
        raise ConfigError(
            "TLS is required but no server certificate is configured "
            "(--tls-cert / LOCKSTEP_TLS_CERT)"
        )
    try:
        if tls is not None and tls.serves_tls:
            port = server.add_secure_port(address, tls.server_credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc} (port in use?)") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {address} (port in use or not permitted)")
    server.start()
    for name in ["", *names]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    bound = address if address.startswith("unix:") else f"{address.rpartition(':')[0]}:{port}"
    return BoundServer(
        server=server,
        address=bound,
        port=port,
        health=health_servicer,
        registry=registry,
        servicers={svc.full_name: svc.servicer for svc in services},
    )


def _write_ready_file(path: Path, address: str, metrics: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"address": address, "pid": os.getpid(), "metrics": metrics}))
    os.replace(tmp, path)


@dataclass(frozen=True)
class ServeConfig:
    """How every service process serves: the settings `run_service` adds to each service's
    own (docs/services.md, "Every service")."""

    ENV_PREFIX: ClassVar[str] = "LOCKSTEP_"

    address: str = setting(
        DEFAULT_ADDRESS,
        env="LOCKSTEP_LISTEN",
        help="Where to listen: HOST:PORT (port 0: a free port, announced in the ready file "
        'and the log line "serving on ADDRESS") or unix:PATH.',
    )
    auth_file: Path | None = setting(
        None,
        help="JSON file of role -> bearer token (tokens.json); required unless --insecure-no-auth.",
    )
    insecure_no_auth: bool = setting(
        False, help="Accept calls without credentials (development only; logged loudly)."
    )
    ready_file: Path | None = setting(
        None,
        env="",
        help="Once serving, write {address, pid, metrics} as JSON here (atomically; the "
        "supervisor waits on it).",
    )
    metrics_address: str = setting(
        "",
        help='Serve Prometheus metrics at http://HOST:PORT/metrics (port 0: a free port; "": off).',
    )
    tls_cert: Path | None = setting(None, help="Serve TLS only, with this certificate (PEM).")
    tls_key: Path | None = setting(None, help="The certificate's private key (PEM).")
    tls_ca: Path | None = setting(
        None,
        help="CA that peers' certificates must chain to: clients must present one (mTLS) "
        "and the channels this service opens use TLS.",
    )
    tls_client_auth: str = setting(
        "require",
        choices=("require", "none"),
        help="With --tls-ca: require client certificates, or not.",
    )
    tls_server_name: str | None = setting(
        None, help="The name expected in the certificates of the services this one dials."
    )
    tls_required: bool = setting(False, help="Refuse to start without a TLS certificate.")

    def __post_init__(self) -> None:
        parse_address(self.address)
        if self.metrics_address:
            if self.metrics_address.startswith("unix:"):
                raise ConfigError("metrics address must be HOST:PORT, not a unix socket")
            parse_address(self.metrics_address)

    def tls(self) -> TLSConfig | None:
        """The TLS configuration these settings name (None: plaintext)."""
        config = TLSConfig(
            cert=self.tls_cert,
            key=self.tls_key,
            ca=self.tls_ca,
            client_auth=self.tls_client_auth,
            server_name=self.tls_server_name,
            required=self.tls_required,
        )
        return config if (config.dials_tls or config.required) else None

    def auth(self, service: str) -> TokenStore | None:
        """The token store named by `auth_file`, or None in explicit dev mode."""
        if self.insecure_no_auth:
            log.warning(
                "%s: AUTHENTICATION DISABLED (--insecure-no-auth): any caller may do anything",
                service,
            )
            return None
        if self.auth_file is None:
            raise ConfigError(
                "no --auth-file / LOCKSTEP_AUTH_FILE given (or pass --insecure-no-auth)"
            )
        return TokenStore.load(self.auth_file)


def _watch_supervisor(stop: threading.Event) -> None:
    """Under `lockstep up`, stop when the supervisor that started this process is gone (its
    death must not leave services running that no CLI command knows about)."""
    raw = os.environ.get("LOCKSTEP_SUPERVISOR_PID", "")
    if not raw.isdigit():
        return
    supervisor = int(raw)

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != supervisor:
                log.warning("supervisor (pid %d) is gone: shutting down", supervisor)
                stop.set()

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


class ServerFactory(Protocol[C_contra]):
    """A service's ``create_server(address, *, auth, config)``."""

    def __call__(
        self, address: str, *, auth: TokenStore | None, config: C_contra
    ) -> BoundServer: ...


def service_parser(name: str, config: type) -> argparse.ArgumentParser:
    """The command line of service `name`: the serving settings, then its own (`config`)."""
    parser = argparse.ArgumentParser(
        prog=f"lockstep-{name.replace('_', '-')}",
        description=f"Lockstep {name} service. Every setting is a flag and an environment "
        "variable (flags win); docs/services.md lists them.",
    )
    add_flags(parser, ServeConfig, "serving (every service)")
    add_flags(parser, config, f"{name} settings")
    return parser


def run_service(
    name: str,
    argv: Sequence[str] | None,
    config: type[C],
    create: ServerFactory[C],
) -> int:
    """Entry point shared by every service's ``main()``: read the settings (flags over
    environment over defaults, `ServeConfig` and the service's `config` class), bind,
    announce the bound address, serve until SIGTERM/SIGINT.

    Configuration errors end the process with one line on stderr and exit status 2.
    """
    os.umask(0o077)  # databases, checkpoints and logs a service writes are private
    logging.basicConfig(
        level=os.environ.get("LOCKSTEP_LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s {name} %(levelname)s %(message)s",
    )
    args = service_parser(name, config).parse_args(argv)
    try:
        serve = from_sources(ServeConfig, args)
        settings = from_sources(config, args)
        set_process_tls(serve.tls())
        configure_otel(name)
        bound = create(serve.address, auth=serve.auth(name), config=settings)
        if serve.metrics_address and not bound.metrics_address:
            try:
                bound.serve_metrics(serve.metrics_address)
            except ConfigError:
                bound.stop(grace=0)
                raise
        if serve.ready_file is not None:
            try:
                _write_ready_file(serve.ready_file, bound.address, bound.metrics_address)
            except OSError as exc:
                bound.stop(grace=0)
                raise ConfigError(f"cannot write ready file {serve.ready_file}: {exc}") from None
    except LockstepError as exc:
        print(f"lockstep-{name}: error: {exc}", file=sys.stderr)
        return 2
    log.info("serving on %s (pid %d)", bound.address, os.getpid())
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _watch_supervisor(stop)
    stop.wait()
    bound.stop(grace=5.0)
    shutdown_otel()
    log.info("stopped")
    return 0
