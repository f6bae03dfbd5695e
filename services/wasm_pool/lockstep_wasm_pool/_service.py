"""gRPC shell around `WasmPool`: role table, error -> status mapping, server factory."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc

from lockstep import status, tick_channel
from lockstep.auth import SERVICE, TokenStore
from lockstep.batch import BatchError
from lockstep.errors import ConfigError, LockstepError
from lockstep.metrics import service_registry
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2_grpc as pb_grpc
from lockstep.server import BoundServer, ServiceBinding, build_server, role_table
from lockstep.tick_channel import ChannelServer

from . import _native
from ._config import WasmPoolConfig
from ._engine import WasmPool
from ._metrics import PoolMetrics
from ._modules import WASMTIME_VERSION

__all__ = [
    "ROLE_TABLE",
    "SERVICE_NAME",
    "WasmPoolServicer",
    "binding",
    "create_server",
    "open_pool",
]

log = logging.getLogger("lockstep.wasm_pool")

_SERVICE = pb.DESCRIPTOR.services_by_name["WasmPoolService"]
SERVICE_NAME = _SERVICE.full_name
# Only the orchestrator's service identity (and admin) may drive a pool: every RPC.
ROLE_TABLE = role_table(_SERVICE, {m.name: SERVICE for m in _SERVICE.methods})

T = TypeVar("T")
_STEP_HEAD, _STEP_ROW = 24, 24  # the step request's header and row sizes (docs/wire.md)


def _count(batch: bytes) -> int:
    """The step count of a packed step request (0 when too short: the engine refuses it)."""
    return int.from_bytes(batch[8:12], "little") if len(batch) >= _STEP_HEAD else 0


def _tick(head: bytes) -> int:
    return int.from_bytes(head[16:24], "little", signed=True)


# The agent entry point each batch RPC calls (the pool's metrics count calls by phase).
_PHASES = {"CreateAgents": "init", "StepBatch": "step", "DestroyAgents": "shutdown"}


def _refusal(exc: BaseException) -> tuple[str, str]:
    """A batch refused on the tick channel: the status the RPC would have carried."""
    if isinstance(exc, BatchError):
        return "INVALID_ARGUMENT", str(exc)
    code, detail = status.status_of(exc)
    return code.name, detail


def _guard(context: grpc.ServicerContext, fn: Callable[[], T]) -> T:
    """Run a request; a refusal becomes the status its error carries (lockstep.status)."""
    try:
        return fn()
    except LockstepError as exc:
        status.abort(context, exc)
    except BatchError as exc:  # a packed buffer off docs/wire.md: the message names the byte
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    raise AssertionError("unreachable")  # pragma: no cover


class WasmPoolServicer(pb_grpc.WasmPoolServiceServicer):
    """Implements lockstep.wasm_pool.v1.WasmPoolService over one `WasmPool`."""

    def __init__(self, pool: WasmPool, metrics: PoolMetrics | None = None) -> None:
        self.pool = pool
        self.metrics = metrics or PoolMetrics(service_registry(), lambda: pool.info().agents)
        self.channels = (
            ChannelServer(self.run_packed, _refusal, pool.config.tick_channel_poll_us / 1e6)
            if tick_channel.supported()
            else None
        )
        # The last step batch run (its header and table, its results): a batch delivered
        # twice is answered again, never run twice (docs/faults.md, pool.duplicate).
        self._last_step: tuple[bytes, int, bytes] | None = None

    def run_packed(self, method: str, batch: bytes) -> bytes:
        """One packed batch: the tick channel's handler, and the packed form of the three
        batch RPCs below."""
        if method == "StepBatch":
            return self._step_once(batch)
        self._last_step = None
        fn = {
            "CreateAgents": self.pool.create_packed,
            "DestroyAgents": self.pool.destroy_packed,
        }[method]
        return bytes(self.metrics.timed(method, _PHASES[method], lambda: fn(batch)))

    def _step_once(self, batch: bytes) -> bytes:
        """StepBatch, at most once per batch: the same tick's batch again (same length,
        header and table) since the last reset, create or destroy is a duplicate delivery
        and gets the same results. The orchestrator steps each pool once per tick and
        resets the pools before any tick is run again, so nothing else repeats a tick."""
        head = bytes(batch[: _STEP_HEAD + _STEP_ROW * _count(batch)])
        last = self._last_step
        if last is not None and last[1] == len(batch) and last[0] == head:
            log.warning("step batch of tick %d delivered twice: answered again", _tick(head))
            return last[2]
        self._last_step = None
        out = bytes(
            self.metrics.timed(
                "StepBatch", _PHASES["StepBatch"], lambda: self.pool.step_packed(batch)
            )
        )
        self._last_step = (head, len(batch), out)
        return out

    def _proto_batch(self, method: str, fn: Callable[[], T]) -> T:
        """The protobuf form of a batch RPC, counted like the packed one."""
        self._last_step = None
        return self.metrics.timed(method, _PHASES[method], fn)

    def close(self) -> None:
        if self.channels is not None:
            self.channels.close()

    def OpenTickChannel(
        self,
        request: pb.OpenTickChannelRequest,
        context: grpc.ServicerContext,
    ) -> pb.OpenTickChannelResponse:
        """A shared-memory tick channel for a caller on this host (Linux only)."""
        if self.channels is None or tick_channel.VERSION not in request.versions:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "no shared-memory tick channel here (Linux only, protocol v1)",
            )
        assert self.channels is not None
        name, secret = _guard(context, self.channels.open)
        return pb.OpenTickChannelResponse(
            version=tick_channel.VERSION,
            socket=name,
            secret=secret,
            host=tick_channel.host_identity(),
        )

    def LoadModule(
        self,
        request: pb.LoadModuleRequest,
        context: grpc.ServicerContext,
    ) -> pb.LoadModuleResponse:
        """Compile and check a module; INVALID_ARGUMENT names what is wrong with it."""
        return _guard(context, lambda: self.pool.load_module(request.wasm))

    def CreateAgents(
        self,
        request: pb.CreateAgentsRequest,
        context: grpc.ServicerContext,
    ) -> pb.CreateAgentsResponse:
        """Instantiate agents and run agent_init."""
        if request.batch:
            out = _guard(context, lambda: self.run_packed("CreateAgents", request.batch))
            return pb.CreateAgentsResponse(batch=out)
        return _guard(
            context,
            lambda: self._proto_batch("CreateAgents", lambda: self.pool.create_agents(request)),
        )

    def StepBatch(
        self,
        request: pb.StepBatchRequest,
        context: grpc.ServicerContext,
    ) -> pb.StepBatchResponse:
        """Step a batch of agents for one tick."""
        if request.batch:
            out = _guard(context, lambda: self.run_packed("StepBatch", request.batch))
            return pb.StepBatchResponse(batch=out)
        return _guard(
            context,
            lambda: self._proto_batch("StepBatch", lambda: self.pool.step_batch(request)),
        )

    def DestroyAgents(
        self,
        request: pb.DestroyAgentsRequest,
        context: grpc.ServicerContext,
    ) -> pb.DestroyAgentsResponse:
        """Call agent_shutdown (optionally) and drop agents."""
        if request.batch:
            out = _guard(context, lambda: self.run_packed("DestroyAgents", request.batch))
            return pb.DestroyAgentsResponse(batch=out)
        return _guard(
            context,
            lambda: self._proto_batch("DestroyAgents", lambda: self.pool.destroy_agents(request)),
        )

    def Snapshot(
        self,
        request: pb.SnapshotRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[pb.AgentSnapshot]:
        """Stream the complete state of the requested agents."""
        snaps = _guard(context, lambda: self.pool.snapshot(list(request.sequences)))
        yield from snaps

    def Restore(
        self,
        request_iterator: Iterator[pb.AgentSnapshot],
        context: grpc.ServicerContext,
    ) -> pb.RestoreResponse:
        """Recreate agents from a stream of snapshots (all or nothing)."""
        self._last_step = None
        return _guard(context, lambda: self.pool.restore(request_iterator))

    def Reset(
        self,
        request: pb.ResetRequest,
        context: grpc.ServicerContext,
    ) -> pb.ResetResponse:
        """Drop every agent."""
        self._last_step = None
        return self.pool.reset()

    def GetPoolInfo(
        self,
        request: pb.GetPoolInfoRequest,
        context: grpc.ServicerContext,
    ) -> pb.GetPoolInfoResponse:
        """Pool facts."""
        return self.pool.info()


def binding(servicer: WasmPoolServicer) -> ServiceBinding:
    """The service and its role table, for `lockstep.server.build_server`."""
    return ServiceBinding(
        add=lambda server: pb_grpc.add_WasmPoolServiceServicer_to_server(  # type: ignore[no-untyped-call,unused-ignore]
            servicer, server
        ),
        full_name=SERVICE_NAME,
        methods=ROLE_TABLE,
        servicer=servicer,
    )


def open_pool(config: WasmPoolConfig | None = None) -> WasmPool:
    """The pool engine `config.engine` asks for (docs/pool.md, "Native core").

    ``native``: the C core or a ConfigError; ``python``: the reference engine; ``auto``:
    native when it loads, else the Python engine with a WARNING saying why.
    """
    config = config or WasmPoolConfig()
    if config.engine == "python":
        log.info("pool engine: python (forced by engine=python)")
        return WasmPool(config)
    from ._core import CoreUnavailable
    from ._native_engine import NativePool

    try:
        pool = NativePool(config)
    except CoreUnavailable as exc:
        if config.engine == "native":
            raise ConfigError(f"engine=native but the native core is unavailable: {exc}") from None
        log.warning(
            "pool engine: NATIVE CORE UNAVAILABLE, falling back to the slower Python "
            "engine (same results): %s",
            exc,
        )
        return WasmPool(config)
    log.info("pool engine: native (C core on wasmtime %s)", WASMTIME_VERSION)
    return pool


def create_server(
    address: str, *, auth: TokenStore | None, config: WasmPoolConfig | None = None
) -> BoundServer:
    """Start a pool server on `address` ("127.0.0.1:0" picks a free port).

    `auth=None` disables role checks (dev mode). The pool is closed when the server stops.
    """
    pool = open_pool(config)
    if pool.config.fast_path and not _native.AVAILABLE:
        log.warning(
            "wasmtime-py internals are not as expected (wasmtime %s): using the "
            "slower public API; pin wasmtime==50.0.1 for the fast path",
            WASMTIME_VERSION,
        )
    registry = service_registry()
    servicer = WasmPoolServicer(pool, PoolMetrics(registry, lambda: pool.info().agents))
    # Requests are serialised on the wasm lock anyway; a few workers keep health and
    # reflection answering while a long batch runs (and a scrape of the metrics).
    bound = build_server(address, [binding(servicer)], auth=auth, max_workers=4, registry=registry)
    bound.on_stop.append(pool.close)
    bound.on_stop.append(servicer.close)
    return bound
