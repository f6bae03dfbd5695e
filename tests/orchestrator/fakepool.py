"""A scripted pool engine for the kernel's unit tests: the packed wire of docs/wire.md, no
wasm. Agents act on their spawn arguments (like tests/orchestrator/agents/probe.c):

    to=A,B     send "t=<tick>" to each     bcast=1   also send to "*"
    topic=T    also publish to "#T"        sub=T     subscribe to T at the first step
    idle=1     return idle                 done_at=K return done at tick K
    trap_at=K  fault at tick K             log=1     log "n=<received>" each step
    burst=N    send N messages to `to`     say=P     payload P instead of "t=<tick>"
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from lockstep.batch import (
    Fault,
    LogLine,
    Result,
    pack_results,
    parse_create,
    parse_destroy,
    parse_step,
)
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb

MODULE = "sha256:" + "ab" * 32
_REC = struct.Struct("<IBBHqqIHH")


def sends(items: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(struct.pack("<IH", len(p), len(d)) + d + p for d, p in items)


def records(buf: bytes) -> list[tuple[int, bytes, bytes, bytes, int]]:
    """(kind, sender, dest, payload, tick) of back-to-back message records."""
    out, pos = [], 0
    while pos < len(buf):
        total, kind, _r, s, tick, _c, p, d, _r2 = _REC.unpack_from(buf, pos)
        body = buf[pos + 32 : pos + total]
        out.append((kind, body[:s], body[s : s + d], body[s + d : s + d + p], tick))
        pos += total
    return out


@dataclass
class _Agent:
    name: str
    args: dict[str, str]
    received: int = 0
    subscribed: bool = False


@dataclass
class FakeEngine:
    max_agents: int = 1000
    max_inbox_bytes: int = 16 * 1024 * 1024
    agents: dict[int, _Agent] = field(default_factory=dict)
    stepped: list[tuple[int, list[int]]] = field(default_factory=list)
    delivered: dict[tuple[int, str], list[tuple[int, bytes, bytes, bytes, int]]] = field(
        default_factory=dict
    )
    destroyed: list[tuple[int, list[int], bool]] = field(default_factory=list)
    fail_step: Callable[[int], Exception | None] | None = None
    gate: threading.Event | None = None  # step waits for it (reads-during-a-tick tests)
    entered: threading.Event = field(default_factory=threading.Event)

    @property
    def config(self) -> Any:
        return SimpleNamespace(
            max_agents=self.max_agents,
            max_memory_pages_cap=512,
            max_inbox_bytes=self.max_inbox_bytes,
            max_args_bytes=65536,
        )

    def close(self) -> None:
        pass

    def load_module(self, wasm: bytes) -> pb.LoadModuleResponse:
        return pb.LoadModuleResponse(module_hash=MODULE)

    def reset(self) -> pb.ResetResponse:
        n = len(self.agents)
        self.agents = {}
        return pb.ResetResponse(dropped=n)

    def create_packed(self, buf: bytes) -> bytes:
        batch = parse_create(buf)
        out = []
        for i in range(len(batch.rows)):
            seq = int(batch.rows[i]["seq"])
            name, _module, args = batch.strings(i)
            if len(self.agents) >= self.max_agents:
                from lockstep_wasm_pool import LimitReachedError

                raise LimitReachedError(f"pool would hold more than {self.max_agents} agents")
            kv = dict(p.split("=", 1) for p in args.decode().split() if "=" in p)
            self.agents[seq] = _Agent(name, kv)
            out.append(Result(seq, code=0, fuel=7))
        return pack_results(out)

    def step_packed(self, buf: bytes) -> bytes:
        batch = parse_step(buf, self.max_inbox_bytes)
        tick = batch.tick
        seqs = [int(h) for h in batch.rows["seq"]]
        for h in seqs:
            if h not in self.agents:
                from lockstep_wasm_pool import NotFoundError

                raise NotFoundError(f"no live agent with sequence {h}")
        if self.fail_step is not None:
            exc = self.fail_step(tick)
            if exc is not None:
                raise exc
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        self.stepped.append((tick, seqs))
        out = []
        for i, h in enumerate(seqs):
            a = self.agents[h]
            mail = records(batch.inbox(i))
            self.delivered[(tick, a.name)] = mail
            a.received += len(mail)
            out.append(self._step(h, a, tick))
            if out[-1].fault is not None:
                del self.agents[h]
        return pack_results(out)

    def _step(self, h: int, a: _Agent, tick: int) -> Result:
        g = a.args.get
        if g("trap_at") == str(tick):
            return Result(
                h, code=0, fuel=50, fault=Fault(2, "wasm trap: unreachable", "agent_step")
            )
        payload = (g("say") or f"t={tick}").encode()
        items: list[tuple[bytes, bytes]] = []
        if not a.subscribed and g("sub"):
            items.append((b"$subscribe", g("sub", "").encode()))
            a.subscribed = True
        for dest in filter(None, (g("to") or "").split(",")):
            items += [(dest.encode(), payload)] * int(g("burst", "1"))
        if g("bcast"):
            items.append((b"*", payload))
        if g("topic"):
            items.append((b"#" + g("topic", "").encode(), payload))
        logs = [LogLine(1, f"n={a.received}".encode())] if g("log") else []
        code = 2 if g("done_at") == str(tick) else (1 if g("idle") else 0)
        return Result(
            h,
            code=code,
            fuel=100 + a.received,
            sends=sends(items),
            send_count=len(items),
            logs=logs,
        )

    def destroy_packed(self, buf: bytes) -> bytes:
        batch = parse_destroy(buf)
        seqs = [int(h) for h in batch.seqs]
        self.destroyed.append((batch.tick, seqs, batch.call_shutdown))
        out = []
        for h in seqs:
            self.agents.pop(h)
            if batch.call_shutdown:
                out.append(Result(h, code=0, fuel=3))
        return pack_results(out)

    def snapshot(self, seqs: list[int]) -> list[pb.AgentSnapshot]:
        return [
            pb.AgentSnapshot(
                spec=pb.AgentSpec(sequence=h, name=self.agents[h].name),
                memory=repr(
                    (self.agents[h].args, self.agents[h].received, self.agents[h].subscribed)
                ).encode(),
            )
            for h in seqs
        ]

    def restore(self, snaps: Any) -> pb.RestoreResponse:
        import ast

        for s in snaps:
            args, received, sub = ast.literal_eval(s.memory.decode())
            self.agents[s.spec.sequence] = _Agent(s.spec.name, args, received, sub)
        return pb.RestoreResponse()
