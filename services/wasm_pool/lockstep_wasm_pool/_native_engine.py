"""The native engine: `NativePool`, the same interface as `WasmPool` on the C stepping core.

Modules are validated, rewritten and compiled by the Python engine's code (same Engine, same
cache); the core gets the compiled module pointer and makes its own InstancePre on a linker
whose host functions are C. Every agent lives in the core (its Store, instance, limits,
random stream, request ids): the Python side keeps only two dicts of plain str/int (names),
which the cyclic GC does not walk. Fault details that need wasmtime's trap text formatted,
and log lines that are not UTF-8, come back as fixups; Python rewrites those rows with the
reference engine's own formatting functions (the rare path).
"""

from __future__ import annotations

import ctypes
import hashlib
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import wasmtime

from lockstep import abi as _abi
from lockstep import batch as wire
from lockstep.pb.common.v1 import common_pb2
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb

from . import _core
from ._config import WasmPoolConfig
from ._engine import _WASM_LOCK, WasmPool
from ._errors import (
    AlreadyExistsError,
    InvalidRequestError,
    LimitReachedError,
    ModuleRejectedError,
    NotFoundError,
)
from ._faults import FK, _first_line, instantiate_fault, trap_detail
from ._modules import ModuleInfo
from ._snapshots import check_snapshot, state_hash

__all__ = ["NativePool"]

_KIND = {"i32": 0, "i64": 1, "f32": 2, "f64": 3}
_WIDTH = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}
_EMPTY = np.zeros(0, dtype=np.uint64)


def _addr(obj: Any) -> int:
    return ctypes.cast(obj.ptr(), ctypes.c_void_p).value or 0


def _buf(data: bytes | np.ndarray) -> Any:
    """A pointer to the bytes (kept alive by the caller)."""
    if isinstance(data, np.ndarray):
        return data.ctypes.data
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p)


class NativePool(WasmPool):
    """`WasmPool` whose agents run in the native core. Raises CoreUnavailable at start."""

    engine_name = "native"

    def __init__(self, config: WasmPoolConfig | None = None) -> None:
        self._lib = _core.load()
        super().__init__(config)
        c = self.config
        s = _core.Settings()
        s.max_log_bytes = c.max_log_bytes
        s.max_infers = c.max_infers_per_step
        s.max_infer_input = c.max_infer_input_bytes
        s.max_random = c.max_random_bytes
        s.max_inbox = c.max_inbox_bytes
        s.code_stack_overflow = wasmtime.TrapCode.STACK_OVERFLOW.value
        s.code_unreachable = wasmtime.TrapCode.UNREACHABLE.value
        s.code_out_of_fuel = wasmtime.TrapCode.OUT_OF_FUEL.value
        kinds = [
            FK.FAULT_KIND_ABI_VIOLATION,
            FK.FAULT_KIND_TRAP,
            FK.FAULT_KIND_FUEL_EXHAUSTED,
            FK.FAULT_KIND_MEMORY_LIMIT,
            FK.FAULT_KIND_STACK_OVERFLOW,
            FK.FAULT_KIND_BAD_POINTER,
            FK.FAULT_KIND_ERROR_CODE,
        ]
        for i, k in enumerate(kinds):
            s.fk[i] = k
        self._core = self._lib.ls_pool_new(_addr(self.engine), ctypes.byref(s))
        if not self._core:
            raise _core.CoreUnavailable("ls_pool_new failed")
        err = self._lib.ls_error(self._core)
        if err:
            self._lib.ls_pool_free(self._core)
            raise _core.CoreUnavailable(f"native core: {err.decode()}")
        self._module_ids: dict[str, int] = {}
        self._module_hashes: list[str] = []
        self._module_infos: list[ModuleInfo] = []
        self._native_names: dict[str, int] = {}  # live agent name -> seq
        self._name_of: dict[int, str] = {}  # seq -> name
        self._len = ctypes.c_size_t(0)
        self._row_fuel = _NO_FUEL
        self._bad = ctypes.c_uint32(0)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        with _WASM_LOCK:
            if getattr(self, "_core", None):
                self._lib.ls_pool_free(self._core)
                self._core = None
            self._native_names.clear()
            self._name_of.clear()
            super().close()

    # ------------------------------------------------------------------ modules
    def load_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        with _WASM_LOCK:
            response = super().load_module(wasm)
            digest = response.module_hash
            if digest not in self._module_ids:
                info = self._modules[digest]
                idx = np.array([i for i, _ in info.mutable_globals] or [0], dtype=np.uint32)
                kinds = np.array([_KIND[t] for _, t in info.mutable_globals] or [0], dtype=np.uint8)
                mid = self._lib.ls_module_add(
                    self._core,
                    _addr(info.module),
                    int(info.has_receive_batch),
                    -1 if info.grow_helper is None else info.grow_helper,
                    len(info.mutable_globals),
                    idx.ctypes.data,
                    kinds.ctypes.data,
                )
                if mid < 0:  # pragma: no cover - _check_abi covers imports
                    raise ModuleRejectedError(
                        FK.FAULT_KIND_ABI_VIOLATION,
                        _first_line(self._lib.ls_error(self._core).decode("utf-8", "replace")),
                    )
                self._module_ids[digest] = mid
                self._module_hashes.append(digest)
                self._module_infos.append(info)
            return response

    # ------------------------------------------------------------------ results
    def _take_out(self, plans: Sequence[ModuleRejectedError | None] | None = None) -> bytes:
        """The core's results buffer, with fixup rows rewritten by Python."""
        lib, core = self._lib, self._core
        ptr = lib.ls_out(core, ctypes.byref(self._len))
        out = ctypes.string_at(ptr, self._len.value)
        n = ctypes.c_size_t(0)
        fixes = lib.ls_fixups(core, ctypes.byref(n))
        if not n.value:
            return out
        text_base = lib.ls_fixtext(core)
        parsed = wire.parse_results(out)
        results = [parsed.result(i) for i in range(len(parsed))]
        for k in range(n.value):
            f = fixes[k]
            r = results[f.row]
            text = ctypes.string_at(text_base + f.text_off, f.text_len) if f.text_len else b""
            entry = _core.ENTRIES[f.entry]
            if f.type == _core.FIX_LOGS:
                r.logs = [
                    wire.LogLine(x.level, x.text.decode("utf-8", "replace").encode())
                    for x in r.logs or ()
                ]
            elif f.type == _core.FIX_REJECTED:
                assert plans is not None
                plan = plans[f.row]
                assert plan is not None
                r.fault = wire.Fault(plan.kind, plan.detail, "load")
            elif f.type == _core.FIX_TRAP:
                name = wasmtime.TrapCode(f.trap_code).name.lower() if f.trap_code >= 0 else "trap"
                r.fault = wire.Fault(
                    FK.FAULT_KIND_TRAP, trap_detail(name, text.decode("utf-8").strip()), entry
                )
            else:  # FIX_ERROR
                msg = text.decode("utf-8")
                if entry == "instantiate":
                    fuel = self._fuel_of_row(r)
                    fault = instantiate_fault(msg, fuel)
                    r.fault = wire.Fault(fault.kind, fault.detail, fault.entry_point)
                else:
                    r.fault = wire.Fault(FK.FAULT_KIND_TRAP, _first_line(msg), entry)
        return wire.pack_results(results)

    def _fuel_of_row(self, r: wire.Result) -> int:
        """The fuel budget of a row's agent (instantiation faults name it)."""
        return self._row_fuel.get(r.seq, self.config.fuel_per_step)

    # ------------------------------------------------------------------ create
    def create_packed(self, buf: bytes) -> bytes:
        buf = bytes(buf)
        req = wire.parse_create(buf)
        with _WASM_LOCK:
            return self._create(req, buf)

    def _create(self, req: wire.CreateBatch, buf: bytes) -> bytes:
        rows = req.rows
        n = len(rows)
        c = self.config
        live = int(self._lib.ls_live(self._core))
        if live + n > c.max_agents:
            raise LimitReachedError(f"pool would hold more than {c.max_agents} agents")
        seqs = np.ascontiguousarray(rows["seq"], dtype=np.uint64)
        slots = np.empty(n, dtype=np.int64)
        self._lib.ls_lookup(self._core, seqs.ctypes.data, n, slots.ctypes.data)
        pages = np.where(rows["pages"] == 0, c.max_memory_pages, rows["pages"]).astype(np.uint32)
        fuel = np.where(rows["fuel"] == 0, c.fuel_per_step, rows["fuel"]).astype(np.uint64)
        sends = np.where(rows["sends"] == 0, c.max_messages_per_step, rows["sends"]).astype(
            np.uint32
        )
        mb = np.where(
            rows["message_bytes"] == 0, c.max_message_bytes, rows["message_bytes"]
        ).astype(np.uint32)
        logs = np.where(rows["logs"] == 0, c.max_logs_per_step, rows["logs"]).astype(np.uint32)
        modules = np.empty(n, dtype=np.int32)
        keys = bytearray(32 * n)
        plans: list[ModuleRejectedError | None] = [None] * n
        names: dict[str, int] = {}
        seen: set[int] = set()
        live_names = self._native_names
        seed_bytes = b"lockstep.random.v1" + struct.pack("<Q", req.seed)
        for i in range(n):
            name, module_hash, args = req.strings(i)
            seq = int(seqs[i])
            where = f"agents[{i}] (sequence {seq})"
            if slots[i] >= 0 or seq in seen:
                raise AlreadyExistsError(f"{where}: sequence is already live")
            if not _abi.is_valid_name(name.encode()):
                raise InvalidRequestError(
                    f"{where}: bad agent name {name!r} (1-64 bytes of [A-Za-z0-9_.:/-])"
                )
            if name in live_names or name in names:
                raise AlreadyExistsError(f"{where}: agent name {name!r} is already live")
            if len(args) > c.max_args_bytes:
                raise InvalidRequestError(
                    f"{where}: args are {len(args)} bytes, above the limit of {c.max_args_bytes}"
                )
            if pages[i] > c.max_memory_pages_cap:
                raise InvalidRequestError(
                    f"{where}: max_memory_pages {int(pages[i])} is above "
                    f"the pool cap of {c.max_memory_pages_cap}"
                )
            mid = self._module_ids.get(module_hash)
            if mid is None:
                try:
                    self.module(module_hash)
                except ModuleRejectedError as exc:
                    plans[i] = exc
                    mid = -1
                else:  # pragma: no cover - every loaded module is registered
                    raise AssertionError(module_hash)
            modules[i] = mid
            keys[32 * i : 32 * i + 32] = hashlib.sha256(seed_bytes + name.encode()).digest()
            seen.add(seq)
            names[name] = seq
        self._row_fuel = _RowFuel(seqs, fuel)
        kb = bytes(keys)
        self._lib.ls_create(
            self._core,
            _buf(buf),
            len(buf),
            modules.ctypes.data,
            fuel.ctypes.data,
            pages.ctypes.data,
            sends.ctypes.data,
            mb.ctypes.data,
            logs.ctypes.data,
            _buf(kb),
        )
        out = self._take_out(plans)
        res = np.frombuffer(out, dtype=wire.RESULT_ROW, count=n, offset=16)
        all_names = list(names)
        for i in map(int, np.flatnonzero(res["fault_kind"] == 0)):
            name = all_names[i]
            h = int(seqs[i])
            live_names[name] = h
            self._name_of[h] = name
        return out

    def create_agents(self, request: pb.CreateAgentsRequest) -> pb.CreateAgentsResponse:
        specs = [
            wire.AgentSpec(
                seq=s.sequence,
                name=s.name,
                module_hash=s.module_hash,
                args=s.args,
                fuel=s.limits.fuel_per_step,
                pages=s.limits.max_memory_pages,
                sends=s.limits.max_messages_per_step,
                message_bytes=s.limits.max_message_bytes,
                logs=s.limits.max_logs_per_step,
            )
            for s in request.agents
        ]
        for i, s in enumerate(specs):  # what pack_create cannot carry
            if len(s.name.encode()) > 0xFFFF or len(s.module_hash.encode()) > 0xFFFF:
                raise InvalidRequestError(
                    f"agents[{i}] (sequence {s.seq}): bad agent name or module hash"
                )
            if s.fuel >= 1 << 64 or s.pages >= 1 << 32:
                raise InvalidRequestError(f"agents[{i}]: limit out of range")
        out = self.create_packed(wire.pack_create(request.tick, request.seed, specs))
        return pb.CreateAgentsResponse(results=_proto_results(out))

    # ------------------------------------------------------------------ step
    def step_packed(self, buf: bytes) -> bytes:
        buf = bytes(buf)
        with _WASM_LOCK:
            st = self._lib.ls_step(self._core, _buf(buf), len(buf), ctypes.byref(self._bad))
            if st:
                wire.parse_step(buf, self.config.max_inbox_bytes)  # raises the BatchError
                if st == 2:
                    row = self._bad.value
                    seq = struct.unpack_from("<Q", buf, 24 + 24 * row)[0]
                    raise NotFoundError(f"steps[{row}]: no live agent with sequence {seq}")
                raise wire.BatchError("step", 0, f"refused by the native core (status {st})")
            self._row_fuel = _NO_FUEL
            out = self._take_out()
            self._forget_faulted(out)
            return out

    def _forget_faulted(self, out: bytes) -> None:
        kinds = wire.result_faults(out)
        if not np.count_nonzero(kinds):  # (4x cheaper than kinds.any() on this view)
            return
        res = wire.result_rows(out)
        for i in np.flatnonzero(kinds):
            h = int(res["seq"][i])
            name = self._name_of.pop(h, None)
            if name is not None:
                self._native_names.pop(name, None)

    def step_batch(self, request: pb.StepBatchRequest) -> pb.StepBatchResponse:
        with _WASM_LOCK:
            seen: set[int] = set()
            seqs, inboxes, counts = [], [], []
            found = np.empty(len(request.steps), dtype=np.int64)
            hs = np.array([s.sequence for s in request.steps], dtype=np.uint64)
            self._lib.ls_lookup(self._core, hs.ctypes.data, len(hs), found.ctypes.data)
            for i, step in enumerate(request.steps):
                seq = step.sequence
                if found[i] < 0:
                    raise NotFoundError(f"steps[{i}]: no live agent with sequence {seq}")
                if seq in seen:
                    raise InvalidRequestError(f"steps[{i}]: sequence {seq} appears twice")
                seen.add(seq)
                inbox = step.inbox
                body = b""
                if inbox or step.inbox_count:
                    if len(inbox) > self.config.max_inbox_bytes:
                        raise InvalidRequestError(
                            f"steps[{i}]: inbox is {len(inbox)} bytes, above the limit of "
                            f"{self.config.max_inbox_bytes}"
                        )
                    try:
                        _abi.split_inbox(inbox, step.inbox_count)
                    except ValueError as exc:
                        raise InvalidRequestError(
                            f"steps[{i}] (sequence {seq}): bad inbox: {exc}"
                        ) from None
                    body = inbox[8:]
                seqs.append(seq)
                inboxes.append(body)
                counts.append(step.inbox_count)
            out = self.step_packed(wire.pack_step(request.tick, seqs, inboxes, counts))
        return pb.StepBatchResponse(results=_proto_results(out))

    # ------------------------------------------------------------------ destroy
    def destroy_packed(self, buf: bytes) -> bytes:
        req = wire.parse_destroy(bytes(buf))
        with _WASM_LOCK:
            return self._destroy(
                np.ascontiguousarray(req.seqs, dtype=np.uint64), req.tick, req.call_shutdown
            )

    def _destroy(self, seqs: np.ndarray, tick: int, shutdown: bool) -> bytes:
        n = len(seqs)
        found = np.empty(n, dtype=np.int64)
        self._lib.ls_lookup(self._core, seqs.ctypes.data, n, found.ctypes.data)
        missing = np.flatnonzero(found < 0)
        if missing.size:
            i = int(missing[0])
            raise NotFoundError(f"sequences[{i}]: no live agent with sequence {int(seqs[i])}")
        self._row_fuel = _NO_FUEL
        self._lib.ls_destroy(self._core, seqs.ctypes.data, n, int(shutdown), tick)
        out = self._take_out()
        for h in seqs:
            name = self._name_of.pop(int(h), None)
            if name is not None:
                self._native_names.pop(name, None)
        return out

    def destroy_agents(self, request: pb.DestroyAgentsRequest) -> pb.DestroyAgentsResponse:
        seqs = list(request.sequences)
        with _WASM_LOCK:
            found = np.empty(len(seqs), dtype=np.int64)
            arr = np.array(seqs, dtype=np.uint64)
            self._lib.ls_lookup(self._core, arr.ctypes.data, len(arr), found.ctypes.data)
            for i, seq in enumerate(seqs):
                if found[i] < 0:
                    raise NotFoundError(f"sequences[{i}]: no live agent with sequence {seq}")
                if seqs.index(seq) != i:
                    raise InvalidRequestError(f"sequences[{i}]: sequence {seq} appears twice")
            out = self._destroy(arr, request.tick, request.call_shutdown)
        return pb.DestroyAgentsResponse(results=_proto_results(out))

    # ------------------------------------------------------------------ queries
    def reset(self) -> pb.ResetResponse:
        with _WASM_LOCK:
            dropped = int(self._lib.ls_live(self._core))
            self._lib.ls_reset(self._core)
            self._native_names.clear()
            self._name_of.clear()
            return pb.ResetResponse(dropped=dropped)

    def info(self) -> pb.GetPoolInfoResponse:
        with _WASM_LOCK:
            return pb.GetPoolInfoResponse(
                agents=int(self._lib.ls_live(self._core)),
                modules=sorted(self._modules),
                wasmtime_version=_wasmtime_version(),
                default_limits=self.default_limits,
            )

    def seqs(self) -> list[int]:
        with _WASM_LOCK:
            n = int(self._lib.ls_live(self._core))
            out = np.empty(max(n, 1), dtype=np.uint64)
            k = self._lib.ls_handles(self._core, out.ctypes.data)
            return sorted(int(h) for h in out[:k])

    # ------------------------------------------------------------------ snapshots
    def snapshot(self, seqs: Sequence[int]) -> list[pb.AgentSnapshot]:
        with _WASM_LOCK:
            chosen = list(seqs) or self.seqs()
            arr = np.array(chosen, dtype=np.uint64)
            found = np.empty(len(arr), dtype=np.int64)
            self._lib.ls_lookup(self._core, arr.ctypes.data, len(arr), found.ctypes.data)
            for i, seq in enumerate(chosen):
                if found[i] < 0:
                    raise NotFoundError(f"sequences[{i}]: no live agent with sequence {seq}")
            return [self._snapshot_native(h) for h in chosen]

    def _snapshot_native(self, seq: int) -> pb.AgentSnapshot:
        info = _core.Info()
        gbits = (ctypes.c_uint8 * (8 * 64))()
        self._lib.ls_agent_info(self._core, seq, ctypes.byref(info), None)
        module = self._module_infos[info.module]
        if info.n_globals > 64:
            gbits = (ctypes.c_uint8 * (8 * info.n_globals))()
        self._lib.ls_agent_info(self._core, seq, ctypes.byref(info), gbits)
        strings = ctypes.string_at(info.strings, info.name_len + info.args_len)
        memory = ctypes.string_at(info.mem, info.mem_size)
        raw = bytes(gbits)
        values = [
            (index, t, raw[8 * g : 8 * g + _WIDTH[t]])
            for g, (index, t) in enumerate(module.mutable_globals)
        ]
        spec = pb.AgentSpec(
            sequence=seq,
            name=strings[: info.name_len].decode(),
            module_hash=self._module_hashes[info.module],
            args=strings[info.name_len :],
        )
        raw_limits = (info.raw_fuel, info.raw_pages, info.raw_sends, info.raw_mb, info.raw_logs)
        if any(raw_limits):  # as the Python engine keeps the spec: no limits = unset
            spec.limits.CopyFrom(
                common_pb2.Limits(
                    fuel_per_step=info.raw_fuel,
                    max_memory_pages=info.raw_pages,
                    max_messages_per_step=info.raw_sends,
                    max_message_bytes=info.raw_mb,
                    max_logs_per_step=info.raw_logs,
                )
            )
        return pb.AgentSnapshot(
            spec=spec,
            seed=info.seed,
            memory=memory,
            globals=[pb.GlobalValue(index=i, type=t, bits=b) for i, t, b in values],
            random_position=info.rand_pos,
            next_request_id=info.next_request_id,
            state_hash=state_hash(memory, values),
            idle=bool(info.idle),
        )

    def restore(self, snapshots: Iterable[pb.AgentSnapshot]) -> pb.RestoreResponse:
        snaps = list(snapshots)
        with _WASM_LOCK:
            specs = [s.spec for s in snaps]
            self._check_native_new(specs, snaps)
            created: list[int] = []
            try:
                for i, snap in enumerate(snaps):
                    self._restore_native(i, snap)
                    created.append(snap.spec.sequence)
            except BaseException:
                if created:
                    self._destroy(np.array(created, dtype=np.uint64), 0, False)
                raise
            return pb.RestoreResponse(sequences=created)

    def _check_native_new(
        self, specs: Sequence[pb.AgentSpec], snaps: Sequence[pb.AgentSnapshot]
    ) -> None:
        c = self.config
        if int(self._lib.ls_live(self._core)) + len(specs) > c.max_agents:
            raise LimitReachedError(f"pool would hold more than {c.max_agents} agents")
        arr = np.array([s.sequence for s in specs], dtype=np.uint64)
        found = np.empty(len(arr), dtype=np.int64)
        self._lib.ls_lookup(self._core, arr.ctypes.data, len(arr), found.ctypes.data)
        seqs: set[int] = set()
        names: set[str] = set()
        for i, spec in enumerate(specs):
            where = f"agents[{i}] (sequence {spec.sequence})"
            if found[i] >= 0 or spec.sequence in seqs:
                raise AlreadyExistsError(f"{where}: sequence is already live")
            if not _abi.is_valid_name(spec.name.encode()):
                raise InvalidRequestError(
                    f"{where}: bad agent name {spec.name!r} (1-64 bytes of [A-Za-z0-9_.:/-])"
                )
            if spec.name in self._native_names or spec.name in names:
                raise AlreadyExistsError(f"{where}: agent name {spec.name!r} is already live")
            if len(spec.args) > c.max_args_bytes:
                raise InvalidRequestError(
                    f"{where}: args are {len(spec.args)} bytes, above the "
                    f"limit of {c.max_args_bytes}"
                )
            self._resolve_limits(spec.limits, where)
            try:
                self.module(spec.module_hash)
            except ModuleRejectedError as exc:
                raise InvalidRequestError(
                    f"{where}: module {spec.module_hash} was rejected: {exc.detail}"
                ) from None
            seqs.add(spec.sequence)
            names.add(spec.name)
        _ = snaps

    def _restore_native(self, i: int, snap: pb.AgentSnapshot) -> None:
        info = self.module(snap.spec.module_hash)
        where = f"snapshot {i} (sequence {snap.spec.sequence})"
        spec = snap.spec
        limits = self._resolve_limits(spec.limits, spec.name)
        values = check_snapshot(where, snap, info, limits.pages)
        gbits = b"".join(bits.ljust(8, b"\0") for _, _, bits in values) or bytes(8)
        name = spec.name.encode()
        args = bytes(spec.args)
        memory = bytes(snap.memory)
        key = _abi.random_key(snap.seed, spec.name)
        lim = spec.limits
        raw = (ctypes.c_uint64 * 5)(
            lim.fuel_per_step,
            lim.max_memory_pages,
            lim.max_messages_per_step,
            lim.max_message_bytes,
            lim.max_logs_per_step,
        )
        size = ctypes.c_uint64(0)
        self._row_fuel = _RowFuel(
            np.array([spec.sequence], dtype=np.uint64), np.array([limits.fuel], dtype=np.uint64)
        )
        st = self._lib.ls_restore(
            self._core,
            spec.sequence,
            self._module_ids[spec.module_hash],
            limits.fuel,
            limits.pages,
            limits.sends,
            limits.message_bytes,
            limits.logs,
            _buf(key),
            snap.seed,
            _buf(name),
            len(name),
            _buf(args),
            len(args),
            _buf(memory),
            len(memory),
            _buf(gbits),
            snap.random_position,
            snap.next_request_id,
            int(snap.idle),
            raw,
            ctypes.byref(size),
        )
        if st == 1:
            fault = wire.parse_results(self._take_out()).fault(0)
            detail = fault.detail if fault is not None else "?"
            raise InvalidRequestError(f"{where}: cannot re-instantiate: {detail}")
        if st == 2:
            raise InvalidRequestError(
                f"{where}: memory of {len(memory)} bytes is smaller "
                f"than the module's initial {size.value}"
            )
        if st:
            raise InvalidRequestError(f"{where}: cannot restore memory or globals (status {st})")
        self._native_names[spec.name] = spec.sequence
        self._name_of[spec.sequence] = spec.name

    def state_hash_of(self, seq: int) -> bytes:
        return self.snapshot([seq])[0].state_hash


class _RowFuel:
    """seq -> fuel budget of the last request, for the (rare) fixup path."""

    def __init__(self, seqs: np.ndarray, fuel: np.ndarray) -> None:
        self.seqs, self.fuel = seqs, fuel

    def get(self, seq: int, default: int) -> int:
        hit = np.flatnonzero(self.seqs == seq)
        return int(self.fuel[hit[0]]) if hit.size else default


_NO_FUEL = _RowFuel(_EMPTY, _EMPTY)


def _wasmtime_version() -> str:
    from ._modules import WASMTIME_VERSION

    return WASMTIME_VERSION


def _proto_results(out: bytes) -> list[pb.AgentStepResult]:
    """Packed results as protobuf results (the protobuf methods of the native engine)."""
    res = wire.parse_results(out)
    results = []
    for i in range(len(res)):
        r = res.result(i)
        p = pb.AgentStepResult(sequence=r.seq, code=r.code, fuel_used=r.fuel)
        if r.sends:
            p.sends = r.sends
        if r.send_count:
            p.send_count = r.send_count
        if r.refused:
            p.refused_calls = r.refused
        for x in r.logs or ():
            p.logs.add(level=x.level, text=x.text.decode("utf-8"))
        for c in r.infers or ():
            p.infers.add(request_id=c.request_id, model=c.model.decode(), input=c.input)
        if r.fault is not None:
            p.fault.kind = r.fault.kind  # type: ignore[assignment]
            p.fault.detail = r.fault.detail
            p.fault.entry_point = r.fault.entry_point
        results.append(p)
    return results
