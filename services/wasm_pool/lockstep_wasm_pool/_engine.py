"""The in-process pool: a deterministic wasmtime Engine, a module cache, one Store per agent.

Every public method of `WasmPool` takes and returns the protobuf messages of
``lockstep.wasm_pool.v1`` so the gRPC layer is a thin shell. Agent faults are results
(``AgentStepResult.fault``); `PoolError` subclasses are raised only for requests that
cannot be honoured at all, and such requests change nothing.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import wasmtime

from lockstep import abi as _abi
from lockstep import batch as wire
from lockstep import wasmbin as _wasmbin
from lockstep.common.v1 import common_pb2
from lockstep.wasm_pool.v1 import wasm_pool_pb2 as pb

from . import _native
from ._config import WASM_PAGE, WasmPoolConfig
from ._errors import (
    AlreadyExistsError,
    InvalidRequestError,
    LimitReachedError,
    ModuleRejectedError,
    NotFoundError,
)

__all__ = ["ModuleInfo", "WasmPool", "make_engine", "state_hash"]

FK = common_pb2
log = logging.getLogger("lockstep.wasm_pool")
_VALTYPE_BYTE = {"i32": 0x7F, "i64": 0x7E, "f32": 0x7D, "f64": 0x7C}
_NUMERIC = frozenset(_VALTYPE_BYTE)

# wasmtime-py keeps the exception raised by a host function in a process-global slot
# until the call returns, so two threads must never run wasm at the same time.
_WASM_LOCK = threading.RLock()

try:
    WASMTIME_VERSION = importlib.metadata.version("wasmtime")
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - installed from source
    WASMTIME_VERSION = "unknown"


def make_engine(config: WasmPoolConfig) -> wasmtime.Engine:
    """A wasmtime Engine configured for determinism and for many small instances."""
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    cfg.cranelift_nan_canonicalization = True
    cfg.wasm_threads = False
    cfg.shared_memory = False
    cfg.wasm_relaxed_simd = False
    cfg.wasm_simd = True
    # Proposals whose state a snapshot could not capture, or that nothing needs, are off.
    cfg.wasm_gc = False
    cfg.wasm_function_references = False
    cfg.wasm_exceptions = False
    cfg.wasm_stack_switching = False
    cfg.wasm_multi_memory = False
    cfg.wasm_memory64 = False
    cfg.wasm_custom_page_sizes = False
    cfg.wasm_component_model = False
    cfg.wasm_reference_types = True  # LLVM's call_indirect encoding needs it
    cfg.wasm_bulk_memory = True
    cfg.wasm_multi_value = True
    cfg.wasm_tail_call = True
    cfg.memory_reservation = config.memory_reservation
    cfg.memory_guard_size = config.memory_guard_size
    cfg.memory_reservation_for_growth = 0
    cfg.memory_init_cow = config.memory_init_cow
    cfg.max_wasm_stack = config.max_wasm_stack
    return wasmtime.Engine(cfg)


def state_hash(memory: bytes, globals_: Sequence[tuple[int, str, bytes]]) -> bytes:
    """SHA-256 over memory and globals (layout in docs/pool.md, "Snapshot format")."""
    h = hashlib.sha256()
    h.update(struct.pack("<Q", len(memory)))
    h.update(memory)
    h.update(struct.pack("<I", len(globals_)))
    for index, type_name, bits in globals_:
        h.update(struct.pack("<IB", index, _VALTYPE_BYTE[type_name]))
        h.update(bits)
    return h.digest()


@dataclass
class ModuleInfo:
    """A compiled, validated module."""

    hash: str
    module: wasmtime.Module
    pre: wasmtime.InstancePre
    imports: list[str]
    exports: list[str]
    has_receive_batch: bool
    mutable_globals: list[tuple[int, str]]  # (global index, type name)
    grow_helper: int | None  # function index of the injected memory.grow helper
    has_start: bool = False  # its start function is exported as wasmbin.START_EXPORT

    def response(self) -> pb.LoadModuleResponse:
        return pb.LoadModuleResponse(module_hash=self.hash, imports=self.imports,
                                     exports=self.exports,
                                     has_receive_batch=self.has_receive_batch)


@dataclass(frozen=True)
class _Limits:
    fuel: int
    pages: int
    sends: int
    message_bytes: int
    logs: int

    def proto(self) -> common_pb2.Limits:
        return common_pb2.Limits(fuel_per_step=self.fuel, max_memory_pages=self.pages,
                                 max_messages_per_step=self.sends,
                                 max_message_bytes=self.message_bytes,
                                 max_logs_per_step=self.logs)


class _Fault(Exception):  # noqa: N818 - a result carried as an exception
    """Raised inside one call sequence; turned into AgentStepResult.fault."""

    def __init__(self, kind: common_pb2.FaultKind, detail: str, entry_point: str = "",
                 code: int = 0) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.entry_point = entry_point
        self.code = code


class _HostFault(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a host function (through wasm) to fault the calling agent."""

    def __init__(self, kind: common_pb2.FaultKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass
class _Agent:
    """One live agent: its Store, instance handles, ABI state, and per-sequence output."""

    handle: int
    name: str
    name_bytes: bytes
    spec: pb.AgentSpec
    seed: int
    module: ModuleInfo
    limits: _Limits
    store: wasmtime.Store
    fuel: _native.Fuel
    random: _abi.RandomStream
    next_request_id: int = 1
    idle: bool = False
    memory: Any = None  # wasmtime.Memory
    mem: Any = None  # _native.Memory accessor
    f_alloc: Any = None  # entry points: callables (i32 args) -> i32, see _native.make_call
    f_init: Any = None
    f_step: Any = None
    f_receive: Any = None
    f_batch: Any = None
    f_shutdown: Any = None
    f_start: Any = None
    globals: list[tuple[int, str, Any]] = field(default_factory=list)
    # The constant part of every context buffer (see _abi.build_context).
    ctx_tail: bytes = b""
    ctx_total: int = 0
    ctx_args_len: int = 0
    # Per call sequence (reset by WasmPool._begin).
    tick: int = 0
    sends: bytearray = field(default_factory=bytearray)
    send_count: int = 0
    logs: list[common_pb2.LogRecord] = field(default_factory=list)
    infers: list[common_pb2.InferCall] = field(default_factory=list)
    refused: int = 0

    def close(self) -> None:
        """Release the Store now (its linear memory) rather than at garbage collection."""
        self.globals.clear()
        self.memory = self.mem = self.f_alloc = self.f_init = self.f_step = None
        self.f_receive = self.f_batch = self.f_shutdown = self.f_start = None
        self.fuel = _native.Fuel(self.store)  # drop the raw accessor before the store
        self.store.close()


class WasmPool:
    """Runs agent instances; thread-safe (one wasm call at a time per process).

    Use as a context manager or call `close()`.
    """

    def __init__(self, config: WasmPoolConfig | None = None) -> None:
        self.config = config or WasmPoolConfig()
        self.engine = make_engine(self.config)
        self._fast = self.config.fast_path and _native.AVAILABLE
        self._modules: dict[str, ModuleInfo] = {}
        self._rejected: dict[str, ModuleRejectedError] = {}
        self._agents: dict[int, _Agent] = {}
        self._names: dict[str, int] = {}
        self._current: _Agent | None = None
        self._host = _native.HostState()
        self._keep: list[object] = []  # raw callbacks must outlive the linker
        self._linker = self._make_linker()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Drop every agent and module."""
        with _WASM_LOCK:
            for agent in self._agents.values():
                agent.close()
            self._agents.clear()
            self._names.clear()
            self._modules.clear()
            self._rejected.clear()
            self._closed = True

    def __enter__(self) -> WasmPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def default_limits(self) -> common_pb2.Limits:
        """The limits applied to zero fields of AgentSpec.limits."""
        c = self.config
        return _Limits(c.fuel_per_step, c.max_memory_pages, c.max_messages_per_step,
                       c.max_message_bytes, c.max_logs_per_step).proto()

    # ------------------------------------------------------------------ modules
    def load_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        """Validate and compile a module (cached by hash). Raises ModuleRejectedError."""
        if len(wasm) > self.config.max_module_bytes:
            raise InvalidRequestError(f"module is {len(wasm)} bytes, above the pool limit of "
                                      f"{self.config.max_module_bytes}")
        digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
        with _WASM_LOCK:
            if digest in self._modules:
                return self._modules[digest].response()
            if digest in self._rejected:
                raise self._rejected[digest]
            if len(self._modules) + len(self._rejected) >= self.config.max_modules:
                raise LimitReachedError(f"pool already holds {self.config.max_modules} modules")
            try:
                info = self._compile(digest, bytes(wasm))
            except ModuleRejectedError as exc:
                self._rejected[digest] = exc
                raise
            self._modules[digest] = info
            return info.response()

    def module(self, digest: str) -> ModuleInfo:
        """A loaded module; NotFoundError / ModuleRejectedError otherwise."""
        info = self._modules.get(digest)
        if info is not None:
            return info
        if digest in self._rejected:
            raise self._rejected[digest]
        raise NotFoundError(f"module {digest} is not loaded (call LoadModule first)")

    def _compile(self, digest: str, wasm: bytes) -> ModuleInfo:
        try:
            wasmtime.Module.validate(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleRejectedError(FK.FAULT_KIND_MALFORMED_MODULE,
                                      f"invalid wasm module: {_first_line(str(exc))}") from None
        try:
            prepared = _wasmbin.prepare(wasm)
        except _wasmbin.RewriteError as exc:
            raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION,
                                      f"unsupported wasm module: {exc}") from None
        except _wasmbin.MalformedModuleError as exc:
            raise ModuleRejectedError(FK.FAULT_KIND_MALFORMED_MODULE, str(exc)) from None
        layout = prepared.layout
        for name in layout.export_names:
            if name.startswith(_wasmbin.RESERVED_EXPORT_PREFIX):
                raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION,
                                          f"export {name!r} uses the reserved prefix "
                                          f"{_wasmbin.RESERVED_EXPORT_PREFIX!r}")
        mutable: list[tuple[int, str]] = []
        for g in layout.globals:
            if g.mutable and not g.imported:
                if g.type_name not in _NUMERIC:
                    raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION,
                                              f"mutable global {g.index} has type {g.type_name}; "
                                              "ABI v1 snapshots support only i32/i64/f32/f64")
                mutable.append((g.index, g.type_name))
        module = self._compile_cached(digest, prepared.wasm)
        imports, exports, has_batch = _check_abi(prepared.wasm)
        try:
            pre = self._linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as exc:  # pragma: no cover - _check_abi covers imports
            raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION, _first_line(str(exc))) from None
        return ModuleInfo(digest, module, pre, imports, exports, has_batch, mutable,
                          prepared.grow_helper, prepared.has_start)

    def _compile_cached(self, digest: str, wasm: bytes) -> wasmtime.Module:
        cache_dir = self.config.module_cache_dir
        path: Path | None = None
        if cache_dir is not None:
            # Keyed by the engine too: a serialized module is only valid for the same
            # wasmtime version and settings.
            c = self.config
            engine_key = (f"{WASMTIME_VERSION}|{c.memory_reservation}|{c.memory_guard_size}|"
                          f"{c.max_wasm_stack}|{_wasmbin.REWRITE_VERSION}|"
                          f"cow={int(c.memory_init_cow)}")
            key = hashlib.sha256(f"{engine_key}|{digest}".encode())
            path = cache_dir / f"{key.hexdigest()}.cwasm"
            if path.is_file():
                try:
                    return wasmtime.Module.deserialize_file(self.engine, str(path))
                except wasmtime.WasmtimeError:
                    pass  # stale or corrupt: recompile and overwrite
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as exc:
            raise ModuleRejectedError(FK.FAULT_KIND_MALFORMED_MODULE,
                                      f"cannot compile module: {_first_line(str(exc))}") from None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(bytes(module.serialize()))
            tmp.replace(path)
        return module

    # ------------------------------------------------------------------ agents
    def create_agents(self, request: pb.CreateAgentsRequest) -> pb.CreateAgentsResponse:
        """Instantiate agents and run their agent_init, in request order."""
        with _WASM_LOCK:
            specs = list(request.agents)
            plans = self._check_new_agents(specs, [None] * len(specs))
            response = pb.CreateAgentsResponse()
            for spec, plan in zip(specs, plans, strict=True):
                self._create_one(spec, request.seed, request.tick, plan, response.results.add())
            return response

    def _check_new_agents(self, specs: Sequence[pb.AgentSpec],
                          snaps: Sequence[pb.AgentSnapshot | None],
                          ) -> list[ModuleInfo | ModuleRejectedError]:
        """Validate a whole request before changing anything."""
        if len(self._agents) + len(specs) > self.config.max_agents:
            raise LimitReachedError(f"pool would hold more than {self.config.max_agents} agents")
        handles: set[int] = set()
        names: set[str] = set()
        plans: list[ModuleInfo | ModuleRejectedError] = []
        for i, spec in enumerate(specs):
            where = f"agents[{i}] (handle {spec.handle})"
            if spec.handle in self._agents or spec.handle in handles:
                raise AlreadyExistsError(f"{where}: handle is already live")
            if not _abi.is_valid_name(spec.name.encode()):
                raise InvalidRequestError(f"{where}: bad agent name {spec.name!r} "
                                          "(1-64 bytes of [A-Za-z0-9_.:/-])")
            if spec.name in self._names or spec.name in names:
                raise AlreadyExistsError(f"{where}: agent name {spec.name!r} is already live")
            if len(spec.args) > self.config.max_args_bytes:
                raise InvalidRequestError(f"{where}: args are {len(spec.args)} bytes, above the "
                                          f"limit of {self.config.max_args_bytes}")
            self._resolve_limits(spec.limits, where)
            try:
                plan: ModuleInfo | ModuleRejectedError = self.module(spec.module_hash)
            except ModuleRejectedError as exc:
                if snaps[i] is not None:
                    raise InvalidRequestError(f"{where}: module {spec.module_hash} was rejected: "
                                              f"{exc.detail}") from None
                plan = exc
            plans.append(plan)
            handles.add(spec.handle)
            names.add(spec.name)
        return plans

    def _resolve_limits(self, lim: common_pb2.Limits, where: str) -> _Limits:
        c = self.config
        pages = lim.max_memory_pages or c.max_memory_pages
        if pages > c.max_memory_pages_cap:
            raise InvalidRequestError(f"{where}: max_memory_pages {pages} is above the pool cap of "
                                      f"{c.max_memory_pages_cap}")
        return _Limits(lim.fuel_per_step or c.fuel_per_step, pages,
                       lim.max_messages_per_step or c.max_messages_per_step,
                       lim.max_message_bytes or c.max_message_bytes,
                       lim.max_logs_per_step or c.max_logs_per_step)

    def _new_agent(self, spec: pb.AgentSpec, seed: int, info: ModuleInfo) -> _Agent:
        limits = self._resolve_limits(spec.limits, spec.name)
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limits.pages * WASM_PAGE, instances=1, memories=1)
        fuel = _native.make_fuel(store, fast=self._fast)
        own_spec = pb.AgentSpec()
        own_spec.CopyFrom(spec)
        name_bytes = spec.name.encode()
        args = bytes(spec.args)
        return _Agent(ctx_tail=name_bytes + args, ctx_total=24 + len(name_bytes) + len(args),
                      ctx_args_len=len(args), handle=spec.handle, name=spec.name,
                      name_bytes=name_bytes,
                      spec=own_spec, seed=seed, module=info, limits=limits, store=store,
                      fuel=fuel,
                      random=_abi.RandomStream(seed, spec.name))

    def _instantiate(self, agent: _Agent) -> None:
        """Instantiate (running any start function) and bind the ABI exports; raises _Fault."""
        try:
            instance = agent.module.pre.instantiate(agent.store)
        except _HostFault as exc:
            raise _Fault(exc.kind, exc.detail, "instantiate") from None
        except wasmtime.Trap as exc:
            pending = self._host.take()  # a raw host function's fault in a start function
            if isinstance(pending, _HostFault):
                raise _Fault(pending.kind, pending.detail, "instantiate") from None
            raise _trap_fault(exc, "instantiate", agent) from None
        except wasmtime.WasmtimeError as exc:
            # A trap in a start function arrives here as an error, not a Trap.
            pending = self._host.take()
            if isinstance(pending, _HostFault):
                raise _Fault(pending.kind, pending.detail, "instantiate") from None
            raise _instantiate_fault(str(exc), agent) from None
        exports = instance.exports(agent.store)
        fast = self._fast

        def entry(name: str, nargs: int) -> Callable[..., int]:
            func = exports[name]
            assert isinstance(func, wasmtime.Func)
            return _native.make_call(agent.store, func, nargs, self._host, fast=fast)

        agent.memory = exports["memory"]
        agent.mem = _native.make_memory(agent.store, agent.memory, fast=fast)
        agent.f_alloc = entry("agent_alloc", 1)
        agent.f_init = entry("agent_init", 0)
        agent.f_step = entry("agent_step", 1)
        agent.f_receive = entry("agent_receive", 1)
        agent.f_shutdown = entry("agent_shutdown", 0)
        agent.f_batch = entry("agent_receive_batch", 1) if agent.module.has_receive_batch \
            else None
        agent.f_start = entry(_wasmbin.START_EXPORT, 0) if agent.module.has_start else None
        agent.globals = [(index, type_name, exports[_wasmbin.global_export_name(index)])
                         for index, type_name in agent.module.mutable_globals]

    def _create_one(self, spec: pb.AgentSpec, seed: int, tick: int,
                    plan: ModuleInfo | ModuleRejectedError, result: pb.AgentStepResult) -> None:
        if isinstance(plan, ModuleRejectedError):
            result.handle = spec.handle
            result.fault.CopyFrom(plan.fault)
            return
        agent = self._new_agent(spec, seed, plan)
        self._begin(agent, tick)
        code = 0
        fault: _Fault | None = None
        try:
            self._instantiate(agent)
            # Instantiation ran no wasm code; what it cost depends on how the engine
            # initialises memory (copy-on-write image or not): the budget starts here.
            agent.fuel.set(agent.limits.fuel)
            if agent.f_start is not None:
                self._call(agent, agent.f_start, (), "instantiate")
            code = self._entry(agent, agent.f_init, (), "agent_init")
            if code == 1:  # idle means nothing for agent_init
                code = 0
        except _Fault as exc:
            fault = exc
        self._finish(agent, code, fault, result)
        if fault is None:
            self._agents[agent.handle] = agent
            self._names[agent.name] = agent.handle
        else:
            agent.close()

    def step_batch(self, request: pb.StepBatchRequest) -> pb.StepBatchResponse:
        """Deliver inboxes and step each agent once, in request order."""
        with _WASM_LOCK:
            plans: list[tuple[_Agent, bytes, list[bytes]]] = []
            seen: set[int] = set()
            agents = self._agents
            no_records: list[bytes] = []
            for i, step in enumerate(request.steps):
                handle = step.handle
                agent = agents.get(handle)
                if agent is None:
                    raise NotFoundError(f"steps[{i}]: no live agent with handle {handle}")
                if handle in seen:
                    raise InvalidRequestError(f"steps[{i}]: handle {handle} appears twice")
                seen.add(handle)
                inbox = step.inbox
                records = no_records
                if inbox or step.inbox_count:
                    if len(inbox) > self.config.max_inbox_bytes:
                        raise InvalidRequestError(
                            f"steps[{i}]: inbox is {len(inbox)} bytes, above the limit of "
                            f"{self.config.max_inbox_bytes}")
                    try:
                        records = _abi.split_inbox(inbox, step.inbox_count)
                    except ValueError as exc:
                        raise InvalidRequestError(f"steps[{i}] (handle {handle}): bad inbox: "
                                                  f"{exc}") from None
                plans.append((agent, inbox, records))
            response = pb.StepBatchResponse()
            add = response.results.add
            tick = request.tick
            for agent, inbox, records in plans:
                self._step_one(agent, tick, inbox, records, add())
            return response

    def _step_one(self, agent: _Agent, tick: int, inbox: bytes, records: list[bytes],
                  result: pb.AgentStepResult) -> None:
        self._begin(agent, tick)
        code = 0
        fault: _Fault | None = None
        try:
            if records:
                if agent.f_batch is not None:
                    self._entry_buffer(agent, agent.f_batch, inbox, "agent_receive_batch")
                else:
                    for record in records:
                        self._entry_buffer(agent, agent.f_receive, record, "agent_receive")
            context = _abi.CONTEXT_HEADER.pack(agent.ctx_total, _abi.ABI_VERSION,
                                               len(agent.name_bytes), tick, len(records),
                                               agent.ctx_args_len) + agent.ctx_tail
            code = self._entry_buffer(agent, agent.f_step, context, "agent_step")
            agent.idle = code == 1
        except _Fault as exc:
            fault = exc
        self._finish(agent, code, fault, result)
        if fault is not None:
            self._drop(agent.handle)

    def destroy_agents(self, request: pb.DestroyAgentsRequest) -> pb.DestroyAgentsResponse:
        """Optionally call agent_shutdown, then drop the instances."""
        with _WASM_LOCK:
            handles = list(request.handles)
            for i, handle in enumerate(handles):
                if handle not in self._agents:
                    raise NotFoundError(f"handles[{i}]: no live agent with handle {handle}")
                if handles.index(handle) != i:
                    raise InvalidRequestError(f"handles[{i}]: handle {handle} appears twice")
            response = pb.DestroyAgentsResponse()
            for handle in handles:
                agent = self._agents[handle]
                if request.call_shutdown:
                    self._begin(agent, request.tick)
                    code = 0
                    fault: _Fault | None = None
                    try:
                        code = self._entry(agent, agent.f_shutdown, (), "agent_shutdown")
                    except _Fault as exc:
                        fault = exc
                    self._finish(agent, code, fault, response.results.add())
                self._drop(handle)
            return response

    # ------------------------------------------------------------------ packed wire
    # docs/wire.md: the same call sequences as the protobuf methods above, one packed
    # buffer each way. A buffer that breaks the layout raises lockstep.batch.BatchError
    # (INVALID_ARGUMENT) before anything runs.
    def create_packed(self, buf: bytes) -> bytes:
        """CreateAgents with a packed request (magic LSCQ); answers packed results."""
        req = wire.parse_create(bytes(buf))
        specs = []
        for i in range(len(req.rows)):
            row = req.rows[i]
            name, module_hash, args = req.strings(i)
            spec = pb.AgentSpec(handle=int(row["handle"]), name=name,
                                module_hash=module_hash, args=args)
            limits = (int(row["fuel"]), int(row["pages"]), int(row["sends"]),
                      int(row["message_bytes"]), int(row["logs"]))
            if any(limits):  # all zero: no limits message, as the native core snapshots it
                spec.limits.CopyFrom(common_pb2.Limits(
                    fuel_per_step=limits[0], max_memory_pages=limits[1],
                    max_messages_per_step=limits[2], max_message_bytes=limits[3],
                    max_logs_per_step=limits[4]))
            specs.append(spec)
        response = self.create_agents(pb.CreateAgentsRequest(tick=req.tick, seed=req.seed,
                                                             agents=specs))
        return wire.pack_results([result_of(r) for r in response.results])

    def step_packed(self, buf: bytes) -> bytes:
        """StepBatch with a packed request (magic LSSQ); answers packed results."""
        with _WASM_LOCK:
            req = wire.parse_step(bytes(buf), self.config.max_inbox_bytes)
            rows = req.rows
            plans: list[tuple[_Agent, bytes, list[bytes]]] = []
            agents = self._agents
            head = _abi.BATCH_HEADER
            for i in range(len(rows)):
                handle = int(rows[i]["handle"])
                agent = agents.get(handle)
                if agent is None:
                    raise NotFoundError(f"steps[{i}]: no live agent with handle {handle}")
                count = int(rows[i]["count"])
                if count:
                    body = req.inbox(i)
                    inbox = head.pack(8 + len(body), count) + body
                    plans.append((agent, inbox, _abi.split_inbox(inbox, count)))
                else:
                    plans.append((agent, b"", []))
            out: list[wire.Result] = []
            tick = req.tick
            for agent, inbox, recs in plans:
                result = pb.AgentStepResult()
                self._step_one(agent, tick, inbox, recs, result)
                out.append(result_of(result))
            return wire.pack_results(out)

    def destroy_packed(self, buf: bytes) -> bytes:
        """DestroyAgents with a packed request (magic LSDQ); answers packed results."""
        req = wire.parse_destroy(bytes(buf))
        response = self.destroy_agents(pb.DestroyAgentsRequest(
            tick=req.tick, handles=[int(h) for h in req.handles],
            call_shutdown=req.call_shutdown))
        return wire.pack_results([result_of(r) for r in response.results])

    def reset(self) -> pb.ResetResponse:
        """Drop every agent; modules stay cached."""
        with _WASM_LOCK:
            dropped = len(self._agents)
            for handle in sorted(self._agents):
                self._drop(handle)
            return pb.ResetResponse(dropped=dropped)

    def info(self) -> pb.GetPoolInfoResponse:
        """Counts, versions and default limits."""
        with _WASM_LOCK:
            return pb.GetPoolInfoResponse(agents=len(self._agents),
                                          modules=sorted(self._modules),
                                          wasmtime_version=WASMTIME_VERSION,
                                          default_limits=self.default_limits)

    def handles(self) -> list[int]:
        """Live agent handles, ascending."""
        with _WASM_LOCK:
            return sorted(self._agents)

    def _drop(self, handle: int) -> None:
        agent = self._agents.pop(handle)
        del self._names[agent.name]
        agent.close()

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, handles: Sequence[int]) -> list[pb.AgentSnapshot]:
        """Complete instance state of `handles` (empty = all, in handle order)."""
        with _WASM_LOCK:
            chosen = list(handles) or sorted(self._agents)
            for i, handle in enumerate(chosen):
                if handle not in self._agents:
                    raise NotFoundError(f"handles[{i}]: no live agent with handle {handle}")
            return [self._snapshot_one(self._agents[h]) for h in chosen]

    def _snapshot_one(self, agent: _Agent) -> pb.AgentSnapshot:
        memory = agent.mem.read(0, agent.mem.size())
        values = [(index, type_name,
                   _native.global_get_bits(agent.store, glob, type_name, fast=self._fast))
                  for index, type_name, glob in agent.globals]
        return pb.AgentSnapshot(
            spec=agent.spec, seed=agent.seed, memory=memory,
            globals=[pb.GlobalValue(index=i, type=t, bits=b) for i, t, b in values],
            random_position=agent.random.position, next_request_id=agent.next_request_id,
            state_hash=state_hash(memory, values), idle=agent.idle)

    def state_hash_of(self, handle: int) -> bytes:
        """The state hash of one live agent (same as its snapshot's)."""
        return self.snapshot([handle])[0].state_hash

    def restore(self, snapshots: Iterable[pb.AgentSnapshot]) -> pb.RestoreResponse:
        """Recreate agents from snapshots; all or nothing."""
        snaps = list(snapshots)
        with _WASM_LOCK:
            specs = [s.spec for s in snaps]
            plans = self._check_new_agents(specs, snaps)
            created: list[int] = []
            try:
                for i, (snap, plan) in enumerate(zip(snaps, plans, strict=True)):
                    assert isinstance(plan, ModuleInfo)
                    agent = self._restore_one(i, snap, plan)
                    self._agents[agent.handle] = agent
                    self._names[agent.name] = agent.handle
                    created.append(agent.handle)
            except BaseException:
                for handle in created:
                    self._drop(handle)
                raise
            return pb.RestoreResponse(handles=created)

    def _restore_one(self, i: int, snap: pb.AgentSnapshot, info: ModuleInfo) -> _Agent:
        where = f"snapshot {i} (handle {snap.spec.handle})"
        expected = [(g.index, g.type) for g in snap.globals]
        if expected != info.mutable_globals:
            raise InvalidRequestError(f"{where}: globals {expected} do not match the module's "
                                      f"mutable globals {info.mutable_globals}")
        values = [(g.index, g.type, bytes(g.bits)) for g in snap.globals]
        for index, type_name, bits in values:
            if len(bits) != (4 if type_name in ("i32", "f32") else 8):
                raise InvalidRequestError(f"{where}: global {index} has {len(bits)} bytes of bits")
        if state_hash(snap.memory, values) != snap.state_hash:
            raise InvalidRequestError(f"{where}: state_hash does not match memory and globals "
                                      "(corrupted snapshot)")
        if len(snap.memory) % WASM_PAGE:
            raise InvalidRequestError(f"{where}: memory is not a whole number of 64 KiB pages")
        if snap.next_request_id < 1:
            raise InvalidRequestError(f"{where}: next_request_id must be >= 1")
        agent = self._new_agent(snap.spec, snap.seed, info)
        if len(snap.memory) > agent.limits.pages * WASM_PAGE:
            raise InvalidRequestError(f"{where}: memory of {len(snap.memory) // WASM_PAGE} pages "
                                      f"is above the agent's limit of {agent.limits.pages}")
        # A start function runs again here; whatever it does is overwritten below and its
        # host calls are discarded with this throwaway sequence.
        self._begin(agent, 0)
        try:
            self._instantiate(agent)
        except _Fault as exc:
            agent.close()
            raise InvalidRequestError(f"{where}: cannot re-instantiate: {exc.detail}") from None
        size = agent.mem.size()
        if size > len(snap.memory):
            agent.close()
            raise InvalidRequestError(f"{where}: memory of {len(snap.memory)} bytes is smaller "
                                      f"than the module's initial {size}")
        if size < len(snap.memory):
            agent.memory.grow(agent.store, (len(snap.memory) - size) // WASM_PAGE)
        agent.mem.write(0, snap.memory)
        for (index, type_name, glob), (_, _, bits) in zip(agent.globals, values, strict=True):
            _ = index
            _native.global_set_bits(agent.store, glob, type_name, bits, fast=self._fast)
        agent.random.position = snap.random_position
        agent.next_request_id = snap.next_request_id
        agent.idle = snap.idle
        self._current = None
        return agent

    # ------------------------------------------------------------------ call sequences
    def _begin(self, agent: _Agent, tick: int) -> None:
        agent.tick = tick
        # Fresh collectors only where the last sequence used them (the hot path is empty).
        if agent.send_count or agent.sends:
            agent.sends = bytearray()
            agent.send_count = 0
        if agent.logs:
            agent.logs = []
        if agent.infers:
            agent.infers = []
        agent.refused = 0
        agent.fuel.set(agent.limits.fuel)
        self._current = agent

    def _finish(self, agent: _Agent, code: int, fault: _Fault | None,
                result: pb.AgentStepResult) -> None:
        """Fill `result` with what the call sequence did (protobuf fields set only if used)."""
        self._current = None
        result.handle = agent.handle
        result.fuel_used = agent.limits.fuel - agent.fuel.remaining()
        if agent.logs:
            result.logs.extend(agent.logs)
        if agent.refused:
            result.refused_calls = agent.refused
        if fault is None:
            result.code = code
            if agent.send_count:
                result.sends = bytes(agent.sends)
                result.send_count = agent.send_count
            if agent.infers:
                result.infers.extend(agent.infers)
        else:
            result.code = fault.code
            f = result.fault
            f.kind = fault.kind
            f.detail = fault.detail
            f.entry_point = fault.entry_point

    def _entry(self, agent: _Agent, func: Any, args: tuple[int, ...], entry: str) -> int:
        """Call an ABI entry point; a negative code is an ERROR_CODE fault."""
        code = self._call(agent, func, args, entry)
        if code < 0:
            raise _Fault(FK.FAULT_KIND_ERROR_CODE, f"{entry} returned {code}", entry, code)
        return code if code in (0, 1, 2) else 0

    def _entry_buffer(self, agent: _Agent, func: Any, data: bytes, entry: str) -> int:
        """agent_alloc a buffer, write `data` into it, and call `entry` with its address.

        The per-step hot path: exceptions are mapped only when they happen.
        """
        n = len(data)
        try:
            ptr = agent.f_alloc(n) & 0xFFFFFFFF
        except Exception as exc:
            raise self._call_fault(exc, agent, "agent_alloc") from None
        size = agent.mem.put(ptr, data)
        if ptr + n > size:
            raise _Fault(FK.FAULT_KIND_BAD_POINTER,
                         f"agent_alloc({n}) returned 0x{ptr:x}, which does not leave "
                         f"{n} bytes inside memory ({size} bytes) for {entry}", "agent_alloc")
        try:
            code: int = func(ptr)
        except Exception as exc:
            raise self._call_fault(exc, agent, entry) from None
        if code < 0:
            raise _Fault(FK.FAULT_KIND_ERROR_CODE, f"{entry} returned {code}", entry, code)
        return code if code <= 2 else 0

    def _call(self, agent: _Agent, func: Any, args: tuple[int, ...], entry: str) -> int:
        try:
            return int(func(*args))
        except Exception as exc:
            raise self._call_fault(exc, agent, entry) from None

    def _call_fault(self, exc: Exception, agent: _Agent, entry: str) -> _Fault:
        """The fault for an exception out of a call into the agent."""
        if isinstance(exc, _HostFault):
            return _Fault(exc.kind, exc.detail, entry)
        if isinstance(exc, wasmtime.Trap):
            return _trap_fault(exc, entry, agent)
        if isinstance(exc, wasmtime.WasmtimeError):
            self._host.take()
            return _Fault(FK.FAULT_KIND_TRAP, _first_line(str(exc)), entry)
        # A bug in a host function must not take the batch or the pool down: the agent
        # faults (its state is suspect) and the error is logged for the operator.
        log.error("host error in %s of agent %s: %r", entry, agent.name, exc, exc_info=exc)
        return _Fault(FK.FAULT_KIND_TRAP, f"internal host error in {entry}: "
                      f"{type(exc).__name__}", entry)

    # ------------------------------------------------------------------ host functions
    def _make_linker(self) -> wasmtime.Linker:
        linker = wasmtime.Linker(self.engine)
        funcs: dict[str, tuple[Callable[..., int], int, str]] = {
            "send": (self._h_send, 4, "i32"),
            "log": (self._h_log, 3, "i32"),
            "tick": (self._h_tick, 0, "i64"),
            "random": (self._h_random, 2, "i32"),
            "infer": (self._h_infer, 4, "i64"),
        }
        for name, (fn, params, result) in funcs.items():
            want = _abi.IMPORTS[name]
            assert (want.params, want.results) == (("i32",) * params, (result,))
            _native.define_host(linker, _abi.IMPORT_MODULE, name, params, result, fn,
                                self._host, self._keep, fast=self._fast)
        return linker

    def _agent(self) -> _Agent:
        agent = self._current
        if agent is None:  # pragma: no cover - host functions only run inside a sequence
            raise _HostFault(FK.FAULT_KIND_TRAP, "host function called outside a step")
        return agent

    def _mem(self, agent: _Agent) -> _native.Memory:
        """The agent's memory; inside a start function, reached through the caller."""
        if agent.mem is not None:
            return agent.mem  # type: ignore[no-any-return]
        mem = _native.caller_memory(agent.store, self._host)
        if mem is None:  # pragma: no cover - validated modules export their memory
            raise _HostFault(FK.FAULT_KIND_ABI_VIOLATION, "no memory export reachable")
        return mem

    @staticmethod
    def _out_of_bounds(fn: str, what: str, ptr: int, length: int, size: int) -> NoReturn:
        raise _HostFault(FK.FAULT_KIND_BAD_POINTER,
                         f"{fn}: {what} [0x{ptr:x}, +{length}) is outside memory "
                         f"({size} bytes)")

    def _read(self, agent: _Agent, fn: str, what: str, ptr: int, length: int) -> bytes:
        ptr &= 0xFFFFFFFF
        mem = self._mem(agent)
        size = mem.size()
        if ptr + length > size:
            self._out_of_bounds(fn, what, ptr, length, size)
        if not length:
            return b""
        return mem.read(ptr, length)

    def _refuse(self, agent: _Agent, code: int) -> int:
        agent.refused += 1
        return code

    def _h_send(self, dptr: int, dlen: int, pptr: int, plen: int) -> int:
        # The hottest host function, so it reads memory directly rather than via _read.
        agent = self._current or self._agent()
        if dlen < 0 or plen < 0:
            return self._refuse(agent, _abi.LS_ERR_BAD_ARG)
        if plen > agent.limits.message_bytes:
            return self._refuse(agent, _abi.LS_ERR_TOO_LARGE)
        if dlen > 65:  # longest valid destination: "#" + 64-byte topic
            return self._refuse(agent, _abi.LS_ERR_BAD_NAME)
        mem = agent.mem or self._mem(agent)
        dptr &= 0xFFFFFFFF
        pptr &= 0xFFFFFFFF
        size, dest, payload = mem.read_pair(dptr, dlen, pptr, plen)
        if dest is None:
            self._out_of_bounds("send", "destination", dptr, dlen, size)
        if payload is None:
            self._out_of_bounds("send", "payload", pptr, plen, size)
        if agent.send_count >= agent.limits.sends:
            return self._refuse(agent, _abi.LS_ERR_QUOTA)
        if not _abi.check_destination(dest, payload):
            return self._refuse(agent, _abi.LS_ERR_BAD_NAME)
        sends = agent.sends
        sends += _abi.SEND_HEADER.pack(plen, dlen)
        sends += dest
        sends += payload
        agent.send_count += 1
        return 0

    def _h_log(self, level: int, ptr: int, length: int) -> int:
        agent = self._agent()
        if not 0 <= level <= 5 or length < 0:  # 5: observations (docs/abi.md)
            return self._refuse(agent, _abi.LS_ERR_BAD_ARG)
        if length > self.config.max_log_bytes:
            return self._refuse(agent, _abi.LS_ERR_TOO_LARGE)
        text = self._read(agent, "log", "text", ptr, length)
        if len(agent.logs) >= agent.limits.logs:
            return self._refuse(agent, _abi.LS_ERR_QUOTA)
        agent.logs.append(common_pb2.LogRecord(level=level,
                                               text=text.decode("utf-8", errors="replace")))
        return 0

    def _h_tick(self) -> int:
        return self._agent().tick

    def _h_random(self, ptr: int, length: int) -> int:
        agent = self._agent()
        if length < 0:
            return self._refuse(agent, _abi.LS_ERR_BAD_ARG)
        if length > self.config.max_random_bytes:
            return self._refuse(agent, _abi.LS_ERR_TOO_LARGE)
        if agent.random.position + length > _abi.RANDOM_STREAM_BYTES:
            return self._refuse(agent, _abi.LS_ERR_QUOTA)  # 256 GiB: the stream is spent
        ptr &= 0xFFFFFFFF
        mem = self._mem(agent)
        size = mem.size()
        if ptr + length > size:
            self._out_of_bounds("random", "buffer", ptr, length, size)
        if length:
            mem.write(ptr, agent.random.take(length))
        return 0

    def _h_infer(self, mptr: int, mlen: int, iptr: int, ilen: int) -> int:
        agent = self._agent()
        if mlen < 0 or ilen < 0:
            return self._refuse(agent, _abi.LS_ERR_BAD_ARG)
        if ilen > self.config.max_infer_input_bytes:
            return self._refuse(agent, _abi.LS_ERR_TOO_LARGE)
        if mlen > 128:
            return self._refuse(agent, _abi.LS_ERR_BAD_NAME)
        model = self._read(agent, "infer", "model name", mptr, mlen)
        data = self._read(agent, "infer", "input", iptr, ilen)
        if len(agent.infers) >= self.config.max_infers_per_step:
            return self._refuse(agent, _abi.LS_ERR_QUOTA)
        if not _abi.is_valid_model_name(model):
            return self._refuse(agent, _abi.LS_ERR_BAD_NAME)
        request_id = agent.next_request_id
        agent.next_request_id += 1
        agent.infers.append(common_pb2.InferCall(request_id=request_id, model=model.decode(),
                                                 input=data))
        return request_id


# ---------------------------------------------------------------------- helpers
def result_of(r: pb.AgentStepResult) -> wire.Result:
    """A protobuf result as the packed codec's `Result` (the same facts, docs/wire.md)."""
    fault = wire.Fault(r.fault.kind, r.fault.detail, r.fault.entry_point) \
        if r.HasField("fault") else None
    return wire.Result(
        handle=r.handle, code=r.code, fuel=r.fuel_used, sends=bytes(r.sends),
        send_count=r.send_count, refused=r.refused_calls,
        logs=[wire.LogLine(x.level, x.text.encode()) for x in r.logs],
        infers=[wire.InferCall(c.request_id, c.model.encode(), bytes(c.input))
                for c in r.infers],
        fault=fault)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _check_abi(wasm: bytes) -> tuple[list[str], list[str], bool]:
    """The one ABI v1 conformance check (lockstep.abi); return (imports, function exports,
    batch?) of a prepared module."""
    module = _wasmbin.parse_module(wasm)
    found = _abi.problems(module)
    if found:
        raise ModuleRejectedError(FK.FAULT_KIND_ABI_VIOLATION, _abi.describe(found[0]))
    imports = [f"{imp.module}.{imp.name}" for imp in module.imports]
    exports = [e.name for e in module.exports if e.kind == _wasmbin.ExternKind.FUNC
               and not e.name.startswith(_wasmbin.RESERVED_EXPORT_PREFIX)]
    return imports, exports, module.export("agent_receive_batch") is not None


def _instantiate_fault(text: str, agent: _Agent) -> _Fault:
    """Classify an instantiation error by its message (no trap code is available)."""
    return instantiate_fault(text, agent.limits.fuel)


def instantiate_fault(text: str, fuel: int) -> _Fault:
    """`_instantiate_fault` for an agent whose fuel budget is `fuel`."""
    cause = text.split("Caused by:", 1)[-1].strip()
    msg = _first_line(cause)
    if "memory" in msg and "limit" in msg:
        return _Fault(FK.FAULT_KIND_MEMORY_LIMIT, f"instantiation failed: {msg}",
                      "instantiate")
    if "fuel" in msg:
        return _Fault(FK.FAULT_KIND_FUEL_EXHAUSTED,
                      f"fuel budget of {fuel} for this tick exhausted in the "
                      "start function", "instantiate")
    if "stack" in msg and ("overflow" in msg or "exhausted" in msg):
        return _Fault(FK.FAULT_KIND_STACK_OVERFLOW, "wasm call stack overflowed in the start "
                      "function", "instantiate")
    return _Fault(FK.FAULT_KIND_TRAP, f"instantiation failed: {msg}", "instantiate")


def _trap_fault(exc: wasmtime.Trap, entry: str, agent: _Agent) -> _Fault:
    code = exc.trap_code
    message = str(exc.message).strip()
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return _Fault(FK.FAULT_KIND_FUEL_EXHAUSTED,
                      f"fuel budget of {agent.limits.fuel} for this tick exhausted in {entry}",
                      entry)
    helper = agent.module.grow_helper
    if code == wasmtime.TrapCode.UNREACHABLE and helper is not None:
        frames = exc.frames
        if frames and frames[0].func_index == helper:
            pages = agent.mem.size() // WASM_PAGE if agent.mem else 0
            return _Fault(FK.FAULT_KIND_MEMORY_LIMIT,
                          f"memory.grow failed in {entry}: memory is {pages} pages and the "
                          f"agent's limit is {agent.limits.pages} pages", entry)
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return _Fault(FK.FAULT_KIND_STACK_OVERFLOW, f"wasm call stack overflowed in {entry}",
                      entry)
    name = code.name.lower() if code is not None else "trap"
    return _Fault(FK.FAULT_KIND_TRAP, trap_detail(name, message), entry)


def trap_detail(name: str, message: str) -> str:
    """The TRAP fault detail for a trap named `name` with wasmtime's (stripped) message."""
    # wasmtime's text is "error while executing at wasm backtrace: <frames> Caused by:
    # <reason>"; keep the reason first and the frames compact on one line.
    cause = _first_line(message.split("Caused by:", 1)[-1])
    lines = [line.strip() for line in message.splitlines()
             if line.strip()[:1].isdigit() and ":" in line]
    where = f" [wasm backtrace: {'; '.join(lines)}]" if lines else ""
    return f"{name}: {cause}{where}"
