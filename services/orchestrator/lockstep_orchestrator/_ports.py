"""The `Pools` port: how the kernel reaches the wasm_pool engines.

The kernel speaks only packed buffers (docs/wire.md, batch format v1) through this protocol.
Two adapters: `GrpcPools` (pool processes, the `batch` fields of CreateAgents, StepBatch and
DestroyAgents) and `InProcessPools` (engine objects in this process, for unit tests and
embedding). A pool that answers with protobuf results only (older pools) is served through
the same bytes by converting at the edge.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from opentelemetry import trace

from lockstep import tick_channel
from lockstep.batch import (
    Fault,
    InferCall,
    LogLine,
    Result,
    pack_results,
    parse_create,
    parse_destroy,
    parse_step,
)
from lockstep.dial import AuthedChannel, wait_serving
from lockstep.errors import ConfigError, ServiceError
from lockstep.otel import tracing_on
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2_grpc as pb_grpc
from lockstep.tick_channel import ChannelClient, ChannelClosedError, ChannelRefusedError

RPC_TIMEOUT_S = 600.0
_BATCH = struct.Struct("<II")


@dataclass(frozen=True)
class PoolLimits:
    """What one pool accepts (defaults: docs/pool.md)."""

    max_agents: int = 100_000
    max_memory_pages_cap: int = 512
    max_inbox_bytes: int = 16 * 1024 * 1024
    max_args_bytes: int = 65_536


class PoolFailureError(ServiceError):
    """A pool call failed during a tick or a control operation. `code` is the gRPC status
    the pool answered (UNAVAILABLE when it is gone), `pool` its index."""

    def __init__(
        self, pool: int, address: str, method: str, code: grpc.StatusCode, detail: str
    ) -> None:
        super().__init__(f"pool {address}: {method} failed: {code.name}: {detail}")
        self.pool = pool
        self.method = method
        self.status = code
        self.detail = detail


_tracer = trace.get_tracer("lockstep.orchestrator")


def _using(span: trace.Span, end_on_exit: bool = False) -> AbstractContextManager[Any]:
    """The span as the current one; nothing to do for the no-op span of tracing off."""
    if span is trace.INVALID_SPAN:
        return contextlib.nullcontext()
    return trace.use_span(span, end_on_exit=end_on_exit)


log = logging.getLogger("lockstep.orchestrator.pools")


class Pools(Protocol):
    """N pool engines; agent placement is the kernel's (never affects digests)."""

    addresses: list[str]
    # Seconds each pool took for the last create/step/destroy call (statistics only).
    last_seconds: dict[int, float]

    def __len__(self) -> int: ...
    def limits(self) -> list[PoolLimits]: ...
    def ensure_module(self, pool: int, module_hash: str, wasm: bytes) -> None: ...
    def check_module(self, wasm: bytes) -> pb.LoadModuleResponse: ...
    def create(self, requests: dict[int, bytes]) -> dict[int, bytes]: ...
    def step(self, requests: dict[int, bytes]) -> dict[int, bytes]: ...
    def step_begin(self, requests: dict[int, bytes]) -> Callable[[], dict[int, bytes]]:
        """Send the step batches and return the wait for their results; a failure
        raises as `step` would, from either (`step(r)` is `step_begin(r)()`). In between the
        pools work while the caller does its own (the kernel commits the tick before:
        docs/architecture.md)."""
        ...

    def overlaps(self) -> bool:
        """Whether the pools stepping while the caller commits can gain anything: they have
        cores of their own. Where they share this host's cores with it, the overlap only
        moves work around (100,000 wealth agents on 2 local pools and 2 vCPUs: 8.3-9.8
        tick/s overlapped against 8.9-10.7 one tick at a time)."""
        ...

    def destroy(self, requests: dict[int, bytes]) -> dict[int, bytes]: ...
    def snapshot(self, pool: int, seqs: list[int]) -> list[pb.AgentSnapshot]: ...
    def restore(self, pool: int, snapshots: list[pb.AgentSnapshot]) -> None: ...
    def reset(self) -> None: ...
    def forget_modules(self) -> None: ...
    def wait_all_serving(self, timeout: float) -> None: ...
    def close(self) -> None: ...


# ------------------------------------------------------------------ protobuf edge
def step_proto(buf: bytes) -> pb.StepBatchRequest:
    batch = parse_step(buf)
    req = pb.StepBatchRequest(tick=batch.tick)
    for i in range(len(batch.rows)):
        row = batch.rows[i]
        records = batch.inbox(i)
        count = int(row["count"])
        inbox = _BATCH.pack(_BATCH.size + len(records), count) + records if count else b""
        req.steps.add(sequence=int(row["seq"]), inbox=inbox, inbox_count=count)
    return req


def create_proto(buf: bytes) -> pb.CreateAgentsRequest:
    batch = parse_create(buf)
    req = pb.CreateAgentsRequest(tick=batch.tick, seed=batch.seed)
    for i in range(len(batch.rows)):
        row = batch.rows[i]
        name, module, args = batch.strings(i)
        req.agents.add(
            sequence=int(row["seq"]),
            name=name,
            module_hash=module,
            args=args,
            limits=cpb.Limits(
                fuel_per_step=int(row["fuel"]),
                max_memory_pages=int(row["pages"]),
                max_messages_per_step=int(row["sends"]),
                max_message_bytes=int(row["message_bytes"]),
                max_logs_per_step=int(row["logs"]),
            ),
        )
    return req


def destroy_proto(buf: bytes) -> pb.DestroyAgentsRequest:
    batch = parse_destroy(buf)
    return pb.DestroyAgentsRequest(
        tick=batch.tick, sequences=[int(h) for h in batch.seqs], call_shutdown=batch.call_shutdown
    )


def results_packed(results: Sequence[pb.AgentStepResult]) -> bytes:
    return pack_results(
        [
            Result(
                seq=r.sequence,
                code=r.code,
                fuel=r.fuel_used,
                sends=r.sends,
                send_count=r.send_count,
                refused=r.refused_calls,
                logs=[LogLine(x.level, x.text.encode()) for x in r.logs],
                infers=[InferCall(c.request_id, c.model.encode(), c.input) for c in r.infers],
                fault=(
                    Fault(r.fault.kind, r.fault.detail, r.fault.entry_point)
                    if r.fault.kind
                    else None
                ),
            )
            for r in results
        ]
    )


# ------------------------------------------------------------------ gRPC adapter
_PROTO = {
    "CreateAgents": (create_proto, pb.CreateAgentsRequest),
    "StepBatch": (step_proto, pb.StepBatchRequest),
    "DestroyAgents": (destroy_proto, pb.DestroyAgentsRequest),
}


class GrpcPools:
    """Pool processes over gRPC, packed `batch` fields both ways."""

    def __init__(
        self,
        addresses: Sequence[str],
        token: str | None,
        transport: str = "auto",
        poll_s: float = tick_channel.RESULT_POLL_S,
        ahead: str = "auto",
    ) -> None:
        """`transport`: "auto" (the shared-memory tick channel for pools on this host,
        gRPC for the others), "grpc", or one of those per pool, comma-separated; `poll_s`:
        how long a tick channel polls for results before blocking; `ahead`: whether a
        tick's batches may go out before the tick before commits ("auto": `overlaps`,
        "on", "off")."""
        if not addresses:
            raise ServiceError("no wasm_pool addresses configured")
        if ahead not in ("auto", "on", "off"):
            raise ConfigError(f"ticks ahead {ahead!r}: auto, on or off")
        self._ahead = ahead
        self.addresses = list(addresses)
        choices = [t.strip() for t in transport.split(",")]
        if len(choices) == 1:
            choices *= len(self.addresses)
        if len(choices) != len(self.addresses) or set(choices) - {"auto", "grpc"}:
            raise ConfigError(
                f"pool transport {transport!r}: auto or grpc, or one per pool (comma-separated)"
            )
        if not tick_channel.supported():
            choices = ["grpc"] * len(choices)
        self._transport = choices
        self._poll_s = poll_s
        self._channels_shm: list[ChannelClient | None] = [None] * len(self.addresses)
        self._shm_tried = [False] * len(self.addresses)
        self.last_seconds: dict[int, float] = {}
        self._channels = [AuthedChannel(a, token) for a in self.addresses]
        self._stubs = [pb_grpc.WasmPoolServiceStub(c) for c in self._channels]
        self._loaded: list[set[str]] = [set() for _ in self.addresses]
        self._packed: list[bool | None] = [None] * len(self.addresses)  # None: not yet known
        self._limits: list[PoolLimits] | None = None

    def __len__(self) -> int:
        return len(self.addresses)

    def close(self) -> None:
        for chan in self._channels_shm:
            if chan is not None:
                chan.close()
        for channel in self._channels:
            channel.close()

    def _fail(self, i: int, method: str, exc: grpc.RpcError) -> PoolFailureError:
        return PoolFailureError(i, self.addresses[i], method, exc.code(), str(exc.details()))

    def limits(self) -> list[PoolLimits]:
        if self._limits is None:
            out = []
            for i, stub in enumerate(self._stubs):
                try:
                    info = stub.GetPoolInfo(pb.GetPoolInfoRequest(), timeout=RPC_TIMEOUT_S)
                except grpc.RpcError as exc:
                    raise self._fail(i, "GetPoolInfo", exc) from None
                out.append(limits_of(info))
            self._limits = out
        return self._limits

    def ensure_module(self, pool: int, module_hash: str, wasm: bytes) -> None:
        if module_hash in self._loaded[pool]:
            return
        try:
            resp = self._stubs[pool].LoadModule(
                pb.LoadModuleRequest(wasm=wasm), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise self._fail(pool, "LoadModule", exc) from None
        self._loaded[pool].add(resp.module_hash)

    def check_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        """Compile and ABI-check a module in pool 0 (the registration check)."""
        try:
            resp: pb.LoadModuleResponse = self._stubs[0].LoadModule(
                pb.LoadModuleRequest(wasm=wasm), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            raise self._fail(0, "LoadModule", exc) from None
        self._loaded[0].add(resp.module_hash)
        return resp

    def _call(self, method: str, requests: dict[int, bytes]) -> dict[int, bytes]:
        """One batch per pool, all in flight at once: through a pool's shared-memory tick
        channel when it has one, else gRPC."""
        return self._begin(method, requests)()

    def _begin(
        self, method: str, requests: dict[int, bytes], in_flight: bool = False
    ) -> Callable[[], dict[int, bytes]]:
        """Send `_call`'s batches; returns the wait for the results. A single gRPC batch
        is sent by the wait itself (cheaper than a future) unless `in_flight`."""
        to_proto, request_type = _PROTO[method]
        futures: dict[int, Any] = {}
        started = time.perf_counter()
        seconds: dict[int, float] = {}
        self.last_seconds = seconds
        spans: dict[int, trace.Span] = {}
        error: PoolFailureError | None = None

        def done_at(i: int) -> Callable[[Any], None]:
            def done(_f: Any) -> None:
                seconds[i] = time.perf_counter() - started
                spans[i].end()

            return done

        tracing = tracing_on()
        poll = tick_channel.polls_fit(sum(c is not None for c in self._channels_shm))
        for i, buf in sorted(requests.items()):
            spans[i] = (
                _tracer.start_span(
                    f"pool {method}",
                    attributes={
                        "lockstep.pool": i,
                        "lockstep.pool.address": self.addresses[i],
                        "lockstep.batch_bytes": len(buf),
                    },
                )
                if tracing
                else trace.INVALID_SPAN
            )
            chan = self._tick_channel(i)
            if chan is not None:
                spans[i].set_attribute("lockstep.transport", "shm")
                try:
                    with _using(spans[i]):  # the pool's span becomes its child
                        chan.send(method, buf, poll)
                    futures[i] = (None, chan)
                except ChannelClosedError as exc:
                    error = error or self._lost(i, method, exc)
                    spans[i].end()
                continue
            stub = getattr(self._stubs[i], method)
            req = request_type(batch=buf) if self._packed[i] is not False else to_proto(buf)
            if len(requests) == 1 and not in_flight:
                futures[i] = (req, None)
            else:
                with _using(spans[i]):
                    fut = stub.future(req, timeout=RPC_TIMEOUT_S)
                fut.add_done_callback(done_at(i))
                futures[i] = (req, fut)
        return lambda: self._collect(method, requests, futures, started, seconds, spans, error)

    def _collect(
        self,
        method: str,
        requests: dict[int, bytes],
        futures: dict[int, Any],
        started: float,
        seconds: dict[int, float],
        spans: dict[int, trace.Span],
        error: PoolFailureError | None,
    ) -> dict[int, bytes]:
        to_proto = _PROTO[method][0]
        out: dict[int, bytes] = {}
        for i, (req, fut) in futures.items():
            if isinstance(fut, ChannelClient):
                try:
                    out[i] = fut.receive(RPC_TIMEOUT_S)
                except ChannelRefusedError as exc:
                    code = getattr(grpc.StatusCode, exc.status, grpc.StatusCode.UNKNOWN)
                    error = error or PoolFailureError(
                        i, self.addresses[i], method, code, exc.detail
                    )
                except ChannelClosedError as exc:
                    error = error or self._lost(i, method, exc)
                seconds[i] = time.perf_counter() - started
                spans[i].end()
                continue
            stub = getattr(self._stubs[i], method)
            try:
                if fut is not None:
                    resp = fut.result()
                else:
                    with _using(spans[i], end_on_exit=True):
                        resp = stub(req, timeout=RPC_TIMEOUT_S)
                    seconds[i] = time.perf_counter() - started
                if self._packed[i] is None:
                    self._packed[i] = bool(resp.batch)
                    if not resp.batch:  # an older pool ignored `batch` and did nothing
                        resp = stub(to_proto(requests[i]), timeout=RPC_TIMEOUT_S)
                out[i] = resp.batch if resp.batch else results_packed(resp.results)
            except grpc.RpcError as exc:
                error = error or self._fail(i, method, exc)
        if error is not None:
            raise error
        return out

    # ---- the shared-memory tick channel (lockstep.tick_channel, ADR-004) ----------------
    def _tick_channel(self, i: int) -> ChannelClient | None:
        """Pool i's tick channel: opened on first use when the pool is on this host (same
        boot and network namespace) and the transport allows it; None means gRPC."""
        chan = self._channels_shm[i]
        if chan is not None or self._transport[i] != "auto" or self._shm_tried[i]:
            return chan
        self._shm_tried[i] = True
        address = self.addresses[i]
        try:
            resp = self._stubs[i].OpenTickChannel(
                pb.OpenTickChannelRequest(versions=[tick_channel.VERSION]), timeout=RPC_TIMEOUT_S
            )
        except grpc.RpcError as exc:
            log.info(
                "pool %s: no shared-memory tick channel (%s: %s); using gRPC",
                address,
                exc.code().name,
                exc.details(),
            )
            return None
        if not resp.host or resp.host != tick_channel.host_identity():
            log.info("pool %s is on another host or network namespace; using gRPC", address)
            return None
        try:
            chan = ChannelClient.connect(resp.socket, resp.secret, poll_s=self._poll_s)
        except ChannelClosedError as exc:
            log.warning("pool %s: %s; using gRPC", address, exc)
            return None
        log.info("pool %s: batches through the shared-memory tick channel", address)
        self._channels_shm[i] = chan
        return chan

    def _lost(self, i: int, method: str, exc: ChannelClosedError) -> PoolFailureError:
        """The channel broke (the pool process is gone): drop it; the next call after the
        rebuild opens a new one."""
        chan, self._channels_shm[i] = self._channels_shm[i], None
        if chan is not None:
            chan.close()
        self._shm_tried[i] = False
        return PoolFailureError(i, self.addresses[i], method, grpc.StatusCode.UNAVAILABLE, str(exc))

    def transports(self) -> list[str]:
        """Per pool: "shm" when its batches use the tick channel, else "grpc"."""
        return ["shm" if c is not None else "grpc" for c in self._channels_shm]

    def create(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self._call("CreateAgents", requests)

    def step(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self._call("StepBatch", requests)

    def step_begin(self, requests: dict[int, bytes]) -> Callable[[], dict[int, bytes]]:
        return self._begin("StepBatch", requests, in_flight=True)

    def overlaps(self) -> bool:
        """With `ahead` "auto": the pools on this host (those on the tick channel) and this
        process each have a core (`tick_channel.polls_fit`); pools reached over gRPC count
        as remote."""
        if self._ahead != "auto":
            return self._ahead == "on"
        return tick_channel.polls_fit(sum(c is not None for c in self._channels_shm))

    def destroy(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self._call("DestroyAgents", requests)

    def snapshot(self, pool: int, seqs: list[int]) -> list[pb.AgentSnapshot]:
        try:
            return list(
                self._stubs[pool].Snapshot(
                    pb.SnapshotRequest(sequences=seqs), timeout=RPC_TIMEOUT_S
                )
            )
        except grpc.RpcError as exc:
            raise self._fail(pool, "Snapshot", exc) from None

    def restore(self, pool: int, snapshots: list[pb.AgentSnapshot]) -> None:
        try:
            self._stubs[pool].Restore(iter(snapshots), timeout=RPC_TIMEOUT_S)
        except grpc.RpcError as exc:
            raise self._fail(pool, "Restore", exc) from None

    def forget_modules(self) -> None:
        """A pool may have restarted and lost its compiled modules: load them again (and
        open a new tick channel to it)."""
        for i in range(len(self.addresses)):
            chan, self._channels_shm[i] = self._channels_shm[i], None
            if chan is not None:
                chan.close()
            self._shm_tried[i] = False
        self._loaded = [set() for _ in self.addresses]
        self._packed = [None] * len(self.addresses)
        self._limits = None

    def wait_all_serving(self, timeout: float) -> None:
        for address in self.addresses:
            wait_serving(address, timeout=timeout)

    def reset(self) -> None:
        for i, stub in enumerate(self._stubs):
            try:
                stub.Reset(pb.ResetRequest(), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError as exc:
                raise self._fail(i, "Reset", exc) from None


def limits_of(info: Any) -> PoolLimits:
    """Pool limits from a GetPoolInfoResponse (fields a pool does not report keep the
    documented defaults)."""
    known = {f.name for f in info.DESCRIPTOR.fields}
    values = {
        name: getattr(info, name)
        for name in PoolLimits.__dataclass_fields__
        if name in known and getattr(info, name)
    }
    return PoolLimits(**values)


# ------------------------------------------------------------------ in-process adapter
_ENGINE_STATUS = {
    "InvalidRequestError": grpc.StatusCode.INVALID_ARGUMENT,
    "ModuleRejectedError": grpc.StatusCode.INVALID_ARGUMENT,
    "BatchError": grpc.StatusCode.INVALID_ARGUMENT,
    "NotFoundError": grpc.StatusCode.NOT_FOUND,
    "AlreadyExistsError": grpc.StatusCode.ALREADY_EXISTS,
    "LimitReachedError": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "PoolError": grpc.StatusCode.FAILED_PRECONDITION,
}


class InProcessPools:
    """Pool engines (`lockstep_wasm_pool.WasmPool`) in this process: the same bytes as the
    gRPC adapter, no processes. Used by the kernel's unit tests."""

    def __init__(self, engines: Sequence[Any]) -> None:
        self.engines = list(engines)
        self.addresses = [f"in-process:{i}" for i in range(len(self.engines))]
        self.last_seconds: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.engines)

    def close(self) -> None:
        for engine in self.engines:
            engine.close()

    def _guard(self, i: int, method: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            for cls in type(exc).__mro__:
                code = _ENGINE_STATUS.get(cls.__name__)
                if code is not None:
                    raise PoolFailureError(i, self.addresses[i], method, code, str(exc)) from None
            raise

    def limits(self) -> list[PoolLimits]:
        out = []
        for e in self.engines:
            c = e.config
            out.append(
                PoolLimits(
                    c.max_agents, c.max_memory_pages_cap, c.max_inbox_bytes, c.max_args_bytes
                )
            )
        return out

    def ensure_module(self, pool: int, module_hash: str, wasm: bytes) -> None:
        self._guard(pool, "LoadModule", self.engines[pool].load_module, wasm)

    def check_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        resp: pb.LoadModuleResponse = self._guard(
            0, "LoadModule", self.engines[0].load_module, wasm
        )
        return resp

    def _each(
        self, method: str, packed: str, proto: str, convert: Any, requests: dict[int, bytes]
    ) -> dict[int, bytes]:
        out = {}
        self.last_seconds = {}
        for i, buf in sorted(requests.items()):
            engine = self.engines[i]
            started = time.perf_counter()
            fn = getattr(engine, packed, None)
            if fn is not None:
                out[i] = bytes(self._guard(i, method, fn, buf))
            else:
                req = self._guard(i, method, convert, buf)
                resp = self._guard(i, method, getattr(engine, proto), req)
                out[i] = results_packed(resp.results)
            self.last_seconds[i] = time.perf_counter() - started
        return out

    def create(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self._each("CreateAgents", "create_packed", "create_agents", create_proto, requests)

    def step(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self._each("StepBatch", "step_packed", "step_batch", step_proto, requests)

    def step_begin(self, requests: dict[int, bytes]) -> Callable[[], dict[int, bytes]]:
        """In one process the engines step now (a refusal raises now); the wait gives
        their results."""
        out = self.step(requests)
        return lambda: out

    def overlaps(self) -> bool:
        """Nothing overlaps in one process, but the kernel keeps the order of work it has
        with pool processes, so its tests cover that order."""
        return True

    def destroy(self, requests: dict[int, bytes]) -> dict[int, bytes]:
        return self._each(
            "DestroyAgents", "destroy_packed", "destroy_agents", destroy_proto, requests
        )

    def snapshot(self, pool: int, seqs: list[int]) -> list[pb.AgentSnapshot]:
        snaps: list[pb.AgentSnapshot] = self._guard(
            pool, "Snapshot", self.engines[pool].snapshot, seqs
        )
        return snaps

    def restore(self, pool: int, snapshots: list[pb.AgentSnapshot]) -> None:
        self._guard(pool, "Restore", self.engines[pool].restore, iter(snapshots))

    def reset(self) -> None:
        for engine in self.engines:
            engine.reset()

    def forget_modules(self) -> None:
        pass

    def wait_all_serving(self, timeout: float) -> None:
        pass
