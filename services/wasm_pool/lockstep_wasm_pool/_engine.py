"""The Python reference engine: agents (one Store each), their call sequences, and the
protobuf and packed request paths.

The other jobs live beside it: modules (`_modules`), faults (`_faults`), host functions
(`_host`), snapshot hashing (`_snapshots`); the native engine (`_native_engine`) reuses them.

Every public method of `WasmPool` takes and returns the protobuf messages of
``lockstep.wasm_pool.v1`` so the gRPC layer is a thin shell. Agent faults are results
(``AgentStepResult.fault``); `PoolError` subclasses are raised only for requests that
cannot be honoured at all, and such requests change nothing.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import wasmtime

from lockstep import abi as _abi
from lockstep import batch as wire
from lockstep import wasmbin as _wasmbin
from lockstep.pb.common.v1 import common_pb2
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb

from . import _native
from ._config import WASM_PAGE, WasmPoolConfig
from ._errors import (
    AlreadyExistsError,
    InvalidRequestError,
    LimitReachedError,
    ModuleRejectedError,
    NotFoundError,
)
from ._faults import (
    FK,
    _Fault,
    _first_line,
    _HostFault,
    _trap_fault,
    _trap_fault_of,
    instantiate_fault,
    trap_detail,
)
from ._host import HostFunctions
from ._modules import WASMTIME_VERSION, ModuleInfo, compile_module, make_engine
from ._snapshots import check_snapshot, state_hash

__all__ = [
    "WASMTIME_VERSION",
    "ModuleInfo",
    "WasmPool",
    "instantiate_fault",
    "make_engine",
    "state_hash",
    "trap_detail",
]

log = logging.getLogger("lockstep.wasm_pool")

# wasmtime-py keeps the exception raised by a host function in a process-global slot
# until the call returns, so two threads must never run wasm at the same time.
_WASM_LOCK = threading.RLock()


@dataclass(frozen=True)
class _Limits:
    fuel: int
    pages: int
    sends: int
    message_bytes: int
    logs: int

    def proto(self) -> common_pb2.Limits:
        return common_pb2.Limits(
            fuel_per_step=self.fuel,
            max_memory_pages=self.pages,
            max_messages_per_step=self.sends,
            max_message_bytes=self.message_bytes,
            max_logs_per_step=self.logs,
        )


@dataclass
class _Agent:
    """One live agent: its Store, instance handles, ABI state, and per-sequence output."""

    seq: int
    name: str
    name_bytes: bytes
    spec: pb.AgentSpec
    seed: int
    module: ModuleInfo
    limits: _Limits
    store: wasmtime.Store
    fuel: _native.Fuel
    random: _abi.RandomStream
    # The instance, bound once: an _Agent exists only after a successful instantiation.
    memory: Any  # wasmtime.Memory
    mem: Any  # _native.Memory accessor
    f_alloc: Any  # entry points: callables (i32 args) -> i32, see _native.make_call
    f_init: Any
    f_step: Any
    f_receive: Any
    f_shutdown: Any
    f_batch: Any | None  # only for modules that export agent_receive_batch
    f_start: Any | None  # only for modules that had a start function
    globals: list[tuple[int, str, Any]]
    next_request_id: int = 1
    idle: bool = False
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
        self.fuel = _native.Fuel(self.store)  # drop the raw accessor before the store
        self.store.close()


class WasmPool(HostFunctions):
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
        return _Limits(
            c.fuel_per_step,
            c.max_memory_pages,
            c.max_messages_per_step,
            c.max_message_bytes,
            c.max_logs_per_step,
        ).proto()

    # ------------------------------------------------------------------ modules
    def _compile(self, digest: str, wasm: bytes) -> ModuleInfo:
        return compile_module(self.engine, self._linker, self.config, digest, wasm)

    def load_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        """Validate and compile a module (cached by hash). Raises ModuleRejectedError."""
        if len(wasm) > self.config.max_module_bytes:
            raise InvalidRequestError(
                f"module is {len(wasm)} bytes, above the pool limit of "
                f"{self.config.max_module_bytes}"
            )
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

    def _check_new_agents(
        self,
        specs: Sequence[pb.AgentSpec],
        snaps: Sequence[pb.AgentSnapshot | None],
    ) -> list[ModuleInfo | ModuleRejectedError]:
        """Validate a whole request before changing anything."""
        if len(self._agents) + len(specs) > self.config.max_agents:
            raise LimitReachedError(f"pool would hold more than {self.config.max_agents} agents")
        seqs: set[int] = set()
        names: set[str] = set()
        plans: list[ModuleInfo | ModuleRejectedError] = []
        for i, spec in enumerate(specs):
            where = f"agents[{i}] (sequence {spec.sequence})"
            if spec.sequence in self._agents or spec.sequence in seqs:
                raise AlreadyExistsError(f"{where}: sequence is already live")
            if not _abi.is_valid_name(spec.name.encode()):
                raise InvalidRequestError(
                    f"{where}: bad agent name {spec.name!r} (1-64 bytes of [A-Za-z0-9_.:/-])"
                )
            if spec.name in self._names or spec.name in names:
                raise AlreadyExistsError(f"{where}: agent name {spec.name!r} is already live")
            if len(spec.args) > self.config.max_args_bytes:
                raise InvalidRequestError(
                    f"{where}: args are {len(spec.args)} bytes, above the "
                    f"limit of {self.config.max_args_bytes}"
                )
            self._resolve_limits(spec.limits, where)
            try:
                plan: ModuleInfo | ModuleRejectedError = self.module(spec.module_hash)
            except ModuleRejectedError as exc:
                if snaps[i] is not None:
                    raise InvalidRequestError(
                        f"{where}: module {spec.module_hash} was rejected: {exc.detail}"
                    ) from None
                plan = exc
            plans.append(plan)
            seqs.add(spec.sequence)
            names.add(spec.name)
        return plans

    def _resolve_limits(self, lim: common_pb2.Limits, where: str) -> _Limits:
        c = self.config
        pages = lim.max_memory_pages or c.max_memory_pages
        if pages > c.max_memory_pages_cap:
            raise InvalidRequestError(
                f"{where}: max_memory_pages {pages} is above the pool cap of "
                f"{c.max_memory_pages_cap}"
            )
        return _Limits(
            lim.fuel_per_step or c.fuel_per_step,
            pages,
            lim.max_messages_per_step or c.max_messages_per_step,
            lim.max_message_bytes or c.max_message_bytes,
            lim.max_logs_per_step or c.max_logs_per_step,
        )

    def _new_agent(self, spec: pb.AgentSpec, seed: int, info: ModuleInfo) -> _Agent:
        """A Store, the instance and its bound exports, as one complete record; raises
        _Fault when instantiation fails. Instantiation runs no agent code (a start function
        is called later, as `__lockstep_start`) and is never charged fuel."""
        limits = self._resolve_limits(spec.limits, spec.name)
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limits.pages * WASM_PAGE, instances=1, memories=1)
        fuel = _native.make_fuel(store, fast=self._fast)
        fuel.set(limits.fuel)  # initialising memory from data segments may use some
        try:
            instance = info.pre.instantiate(store)
        except wasmtime.Trap as exc:
            store.close()
            raise _trap_fault_of(exc, "instantiate", limits.fuel) from None
        except wasmtime.WasmtimeError as exc:
            store.close()
            raise instantiate_fault(str(exc), limits.fuel) from None
        exports = instance.exports(store)
        fast = self._fast

        def entry(name: str, nargs: int) -> Callable[..., int]:
            func = exports[name]
            assert isinstance(func, wasmtime.Func)
            return _native.make_call(store, func, nargs, self._host, fast=fast)

        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)  # checked at load
        own_spec = pb.AgentSpec()
        own_spec.CopyFrom(spec)
        name_bytes = spec.name.encode()
        args = bytes(spec.args)
        return _Agent(
            seq=spec.sequence,
            name=spec.name,
            name_bytes=name_bytes,
            spec=own_spec,
            seed=seed,
            module=info,
            limits=limits,
            store=store,
            fuel=fuel,
            random=_abi.RandomStream(seed, spec.name),
            memory=memory,
            mem=_native.make_memory(store, memory, fast=fast),
            f_alloc=entry("agent_alloc", 1),
            f_init=entry("agent_init", 0),
            f_step=entry("agent_step", 1),
            f_receive=entry("agent_receive", 1),
            f_shutdown=entry("agent_shutdown", 0),
            f_batch=entry("agent_receive_batch", 1) if info.has_receive_batch else None,
            f_start=entry(_wasmbin.START_EXPORT, 0) if info.has_start else None,
            globals=[
                (index, type_name, exports[_wasmbin.global_export_name(index)])
                for index, type_name in info.mutable_globals
            ],
            ctx_tail=name_bytes + args,
            ctx_total=24 + len(name_bytes) + len(args),
            ctx_args_len=len(args),
        )

    def _create_one(
        self,
        spec: pb.AgentSpec,
        seed: int,
        tick: int,
        plan: ModuleInfo | ModuleRejectedError,
        result: pb.AgentStepResult,
    ) -> None:
        if isinstance(plan, ModuleRejectedError):
            result.sequence = spec.sequence
            result.fault.CopyFrom(plan.fault)
            return
        try:
            agent = self._new_agent(spec, seed, plan)
        except _Fault as exc:  # nothing ran: no fuel was used
            result.sequence = spec.sequence
            result.code = exc.code
            result.fault.kind = exc.kind
            result.fault.detail = exc.detail
            result.fault.entry_point = exc.entry_point
            return
        # The budget starts after instantiation: what initialising memory costs depends on
        # how the engine does it (copy-on-write image or not).
        self._begin(agent, tick)
        code = 0
        fault: _Fault | None = None
        try:
            if agent.f_start is not None:
                self._call(agent, agent.f_start, (), "instantiate")
            code = self._entry(agent, agent.f_init, (), "agent_init")
            if code == 1:  # idle means nothing for agent_init
                code = 0
        except _Fault as exc:
            fault = exc
        self._finish(agent, code, fault, result)
        if fault is None:
            self._agents[agent.seq] = agent
            self._names[agent.name] = agent.seq
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
                seq = step.sequence
                agent = agents.get(seq)
                if agent is None:
                    raise NotFoundError(f"steps[{i}]: no live agent with sequence {seq}")
                if seq in seen:
                    raise InvalidRequestError(f"steps[{i}]: sequence {seq} appears twice")
                seen.add(seq)
                inbox = step.inbox
                records = no_records
                if inbox or step.inbox_count:
                    if len(inbox) > self.config.max_inbox_bytes:
                        raise InvalidRequestError(
                            f"steps[{i}]: inbox is {len(inbox)} bytes, above the limit of "
                            f"{self.config.max_inbox_bytes}"
                        )
                    try:
                        records = _abi.split_inbox(inbox, step.inbox_count)
                    except ValueError as exc:
                        raise InvalidRequestError(
                            f"steps[{i}] (sequence {seq}): bad inbox: {exc}"
                        ) from None
                plans.append((agent, inbox, records))
            response = pb.StepBatchResponse()
            add = response.results.add
            tick = request.tick
            for agent, inbox, records in plans:
                self._step_one(agent, tick, inbox, records, add())
            return response

    def _step_one(
        self,
        agent: _Agent,
        tick: int,
        inbox: bytes,
        records: list[bytes],
        result: pb.AgentStepResult,
    ) -> None:
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
            context = (
                _abi.CONTEXT_HEADER.pack(
                    agent.ctx_total,
                    _abi.ABI_VERSION,
                    len(agent.name_bytes),
                    tick,
                    len(records),
                    agent.ctx_args_len,
                )
                + agent.ctx_tail
            )
            code = self._entry_buffer(agent, agent.f_step, context, "agent_step")
            agent.idle = code == 1
        except _Fault as exc:
            fault = exc
        self._finish(agent, code, fault, result)
        if fault is not None:
            self._drop(agent.seq)

    def destroy_agents(self, request: pb.DestroyAgentsRequest) -> pb.DestroyAgentsResponse:
        """Optionally call agent_shutdown, then drop the instances."""
        with _WASM_LOCK:
            seqs = list(request.sequences)
            for i, seq in enumerate(seqs):
                if seq not in self._agents:
                    raise NotFoundError(f"sequences[{i}]: no live agent with sequence {seq}")
                if seqs.index(seq) != i:
                    raise InvalidRequestError(f"sequences[{i}]: sequence {seq} appears twice")
            response = pb.DestroyAgentsResponse()
            for seq in seqs:
                agent = self._agents[seq]
                if request.call_shutdown:
                    self._begin(agent, request.tick)
                    code = 0
                    fault: _Fault | None = None
                    try:
                        code = self._entry(agent, agent.f_shutdown, (), "agent_shutdown")
                    except _Fault as exc:
                        fault = exc
                    self._finish(agent, code, fault, response.results.add())
                self._drop(seq)
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
            spec = pb.AgentSpec(
                sequence=int(row["seq"]), name=name, module_hash=module_hash, args=args
            )
            limits = (
                int(row["fuel"]),
                int(row["pages"]),
                int(row["sends"]),
                int(row["message_bytes"]),
                int(row["logs"]),
            )
            if any(limits):  # all zero: no limits message, as the native core snapshots it
                spec.limits.CopyFrom(
                    common_pb2.Limits(
                        fuel_per_step=limits[0],
                        max_memory_pages=limits[1],
                        max_messages_per_step=limits[2],
                        max_message_bytes=limits[3],
                        max_logs_per_step=limits[4],
                    )
                )
            specs.append(spec)
        response = self.create_agents(
            pb.CreateAgentsRequest(tick=req.tick, seed=req.seed, agents=specs)
        )
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
                seq = int(rows[i]["seq"])
                agent = agents.get(seq)
                if agent is None:
                    raise NotFoundError(f"steps[{i}]: no live agent with sequence {seq}")
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
        response = self.destroy_agents(
            pb.DestroyAgentsRequest(
                tick=req.tick,
                sequences=[int(h) for h in req.seqs],
                call_shutdown=req.call_shutdown,
            )
        )
        return wire.pack_results([result_of(r) for r in response.results])

    def reset(self) -> pb.ResetResponse:
        """Drop every agent; modules stay cached."""
        with _WASM_LOCK:
            dropped = len(self._agents)
            for seq in sorted(self._agents):
                self._drop(seq)
            return pb.ResetResponse(dropped=dropped)

    def info(self) -> pb.GetPoolInfoResponse:
        """Counts, versions and default limits."""
        with _WASM_LOCK:
            return pb.GetPoolInfoResponse(
                agents=len(self._agents),
                modules=sorted(self._modules),
                wasmtime_version=WASMTIME_VERSION,
                default_limits=self.default_limits,
            )

    def seqs(self) -> list[int]:
        """Live agents' sequences, ascending."""
        with _WASM_LOCK:
            return sorted(self._agents)

    def _drop(self, seq: int) -> None:
        agent = self._agents.pop(seq)
        del self._names[agent.name]
        agent.close()

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, seqs: Sequence[int]) -> list[pb.AgentSnapshot]:
        """Complete instance state of `seqs` (empty = all, in sequence order)."""
        with _WASM_LOCK:
            chosen = list(seqs) or sorted(self._agents)
            for i, seq in enumerate(chosen):
                if seq not in self._agents:
                    raise NotFoundError(f"sequences[{i}]: no live agent with sequence {seq}")
            return [self._snapshot_one(self._agents[h]) for h in chosen]

    def _snapshot_one(self, agent: _Agent) -> pb.AgentSnapshot:
        memory = agent.mem.read(0, agent.mem.size())
        values = [
            (
                index,
                type_name,
                _native.global_get_bits(agent.store, glob, type_name, fast=self._fast),
            )
            for index, type_name, glob in agent.globals
        ]
        return pb.AgentSnapshot(
            spec=agent.spec,
            seed=agent.seed,
            memory=memory,
            globals=[pb.GlobalValue(index=i, type=t, bits=b) for i, t, b in values],
            random_position=agent.random.position,
            next_request_id=agent.next_request_id,
            state_hash=state_hash(memory, values),
            idle=agent.idle,
        )

    def state_hash_of(self, seq: int) -> bytes:
        """The state hash of one live agent (same as its snapshot's)."""
        return self.snapshot([seq])[0].state_hash

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
                    self._agents[agent.seq] = agent
                    self._names[agent.name] = agent.seq
                    created.append(agent.seq)
            except BaseException:
                for seq in created:
                    self._drop(seq)
                raise
            return pb.RestoreResponse(sequences=created)

    def _restore_one(self, i: int, snap: pb.AgentSnapshot, info: ModuleInfo) -> _Agent:
        where = f"snapshot {i} (sequence {snap.spec.sequence})"
        limits = self._resolve_limits(snap.spec.limits, where)
        values = check_snapshot(where, snap, info, limits.pages)
        # A start function is not rerun: memory and globals come from the snapshot.
        try:
            agent = self._new_agent(snap.spec, snap.seed, info)
        except _Fault as exc:
            raise InvalidRequestError(f"{where}: cannot re-instantiate: {exc.detail}") from None
        size = agent.mem.size()
        if size > len(snap.memory):
            agent.close()
            raise InvalidRequestError(
                f"{where}: memory of {len(snap.memory)} bytes is smaller "
                f"than the module's initial {size}"
            )
        if size < len(snap.memory):
            agent.memory.grow(agent.store, (len(snap.memory) - size) // WASM_PAGE)
        agent.mem.write(0, snap.memory)
        for (index, type_name, glob), (_, _, bits) in zip(agent.globals, values, strict=True):
            _ = index
            _native.global_set_bits(agent.store, glob, type_name, bits, fast=self._fast)
        agent.random.position = snap.random_position
        agent.next_request_id = snap.next_request_id
        agent.idle = snap.idle
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

    def _finish(
        self, agent: _Agent, code: int, fault: _Fault | None, result: pb.AgentStepResult
    ) -> None:
        """Fill `result` with what the call sequence did (protobuf fields set only if used)."""
        self._current = None
        result.sequence = agent.seq
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
            raise _Fault(
                FK.FAULT_KIND_BAD_POINTER,
                f"agent_alloc({n}) returned 0x{ptr:x}, which does not leave "
                f"{n} bytes inside memory ({size} bytes) for {entry}",
                "agent_alloc",
            )
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
        return _Fault(
            FK.FAULT_KIND_TRAP, f"internal host error in {entry}: {type(exc).__name__}", entry
        )


# ---------------------------------------------------------------------- helpers
def result_of(r: pb.AgentStepResult) -> wire.Result:
    """A protobuf result as the packed codec's `Result` (the same facts, docs/wire.md)."""
    fault = (
        wire.Fault(r.fault.kind, r.fault.detail, r.fault.entry_point)
        if r.HasField("fault")
        else None
    )
    return wire.Result(
        seq=r.sequence,
        code=r.code,
        fuel=r.fuel_used,
        sends=bytes(r.sends),
        send_count=r.send_count,
        refused=r.refused_calls,
        logs=[wire.LogLine(x.level, x.text.encode()) for x in r.logs],
        infers=[wire.InferCall(c.request_id, c.model.encode(), bytes(c.input)) for c in r.infers],
        fault=fault,
    )
