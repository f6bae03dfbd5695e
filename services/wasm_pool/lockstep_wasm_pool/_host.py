"""The lockstep_v1 host functions of the Python engine (the native core has the same ones in
C, with the same checks, in the same order, and the same refusal codes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import wasmtime

from lockstep import abi as _abi
from lockstep.pb.common.v1 import common_pb2

from . import _native
from ._config import WasmPoolConfig
from ._faults import _HostFault

if TYPE_CHECKING:
    from ._engine import _Agent

FK = common_pb2


class HostFunctions:
    """Mixin of `WasmPool`: the host functions, bound to the agent whose call sequence runs."""

    config: WasmPoolConfig
    engine: wasmtime.Engine
    _current: _Agent | None
    _host: _native.HostState
    _keep: list[object]
    _fast: bool

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
            _native.define_host(
                linker,
                _abi.IMPORT_MODULE,
                name,
                params,
                result,
                fn,
                self._host,
                self._keep,
                fast=self._fast,
            )
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
        raise _HostFault(
            FK.FAULT_KIND_BAD_POINTER,
            f"{fn}: {what} [0x{ptr:x}, +{length}) is outside memory ({size} bytes)",
        )

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
        agent.logs.append(
            common_pb2.LogRecord(level=level, text=text.decode("utf-8", errors="replace"))
        )
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
        agent.infers.append(
            common_pb2.InferCall(request_id=request_id, model=model.decode(), input=data)
        )
        return request_id
