"""A small test driver around the real pool engine (lockstep_wasm_pool.WasmPool).

The pool is the host: it instantiates agents, runs their entry points and serves the
lockstep_v1 imports. This driver only plays the orchestrator's routing part, enough for
the SDK tests: it keeps the tick counter, packs each agent's inbox as the ABI batch
buffer (docs/abi.md, written out here independently of the pool's own helpers, so the
byte layout is checked from both sides), delivers sends at tick t+1 in canonical order
(send tick, sender's spawn order, send order), steps agents that are not idle or have
mail, answers inference calls with a scripted function, and drops agents that return
DONE or fault.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from lockstep.pb.common.v1 import common_pb2
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep_wasm_pool import WasmPool, WasmPoolConfig

_RECORD = struct.Struct("<IBBHqqIHH")
_BATCH = struct.Struct("<II")
_SEND = struct.Struct("<IH")

KIND_AGENT = 0
KIND_EXTERNAL = 1
KIND_INFER_RESULT = 2
KIND_INFER_ERROR = 3
KIND_UNDELIVERABLE = 4

#: (model, input) -> (ok, payload): the scripted inference service.
InferFn = Callable[[str, bytes], tuple[bool, bytes]]


def message_record(
    kind: int, sender: bytes, dest: bytes, payload: bytes, sent_tick: int, correlation: int = 0
) -> bytes:
    """One message record, docs/abi.md "Message record"."""
    total = 32 + len(sender) + len(dest) + len(payload)
    return (
        _RECORD.pack(
            total, kind, 0, len(sender), sent_tick, correlation, len(payload), len(dest), 0
        )
        + sender
        + dest
        + payload
    )


def batch_buffer(records: list[bytes]) -> bytes:
    """The batch buffer, docs/abi.md "Batch buffer"."""
    body = b"".join(records)
    return _BATCH.pack(8 + len(body), len(records)) + body


def unpack_sends(packed: bytes) -> list[tuple[str, bytes]]:
    """AgentStepResult.sends: records of u32 payload len, u16 dest len, dest, payload."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(packed):
        p_len, d_len = _SEND.unpack_from(packed, pos)
        pos += _SEND.size
        dest = packed[pos : pos + d_len].decode()
        pos += d_len
        out.append((dest, packed[pos : pos + p_len]))
        pos += p_len
    return out


@dataclass
class Event:
    """Something an agent did in one call: its sends, logs, code and fault."""

    tick: int
    agent: str
    code: int
    sends: list[tuple[str, bytes]]
    logs: list[tuple[int, str]]
    fault: str = ""
    fuel: int = 0


@dataclass
class _Live:
    seq: int
    name: str
    idle: bool = False
    topics: set[str] = field(default_factory=set)


class World:
    """Agents in one WasmPool, ticked in lockstep. Use as a context manager."""

    def __init__(
        self, seed: int = 7, infer: InferFn | None = None, config: WasmPoolConfig | None = None
    ) -> None:
        self.pool = WasmPool(config or WasmPoolConfig())
        self.seed = seed
        self.infer = infer
        self.tick = 0
        self.events: list[Event] = []
        self._live: dict[str, _Live] = {}  # insertion order = spawn order
        self._next_seq = 1
        # Records due at the next step, per agent, already in canonical order: senders are
        # routed in spawn order and each sender's sends in call order.
        self._mail: dict[str, list[bytes]] = {}

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    # ------------------------------------------------------------------ setup
    def load(self, wasm: bytes) -> str:
        """Load a module into the pool; returns its hash."""
        return str(self.pool.load_module(wasm).module_hash)

    def spawn(self, name: str, module_hash: str, args: bytes = b"") -> Event:
        """Create an agent (runs agent_init) at the current tick."""
        seq = self._next_seq
        self._next_seq += 1
        resp = self.pool.create_agents(
            pb.CreateAgentsRequest(
                tick=self.tick,
                seed=self.seed,
                agents=[pb.AgentSpec(sequence=seq, name=name, module_hash=module_hash, args=args)],
            )
        )
        event = self._record(name, resp.results[0])
        if not event.fault and event.code != 2:
            self._live[name] = _Live(seq, name)
        return event

    def send_external(self, dest: str, payload: bytes) -> None:
        """An operator message, delivered at the next step (kind 1, empty sender)."""
        self._deliver(dest, message_record(KIND_EXTERNAL, b"", dest.encode(), payload, self.tick))

    # ------------------------------------------------------------------ running
    def live(self) -> list[str]:
        """Names of live agents, in spawn order."""
        return list(self._live)

    def step(self) -> list[Event]:
        """Run one tick: deliver the inboxes, step whoever is due, route the sends."""
        mail, self._mail = self._mail, {}
        steps = []
        order = []
        for name, agent in self._live.items():
            records = mail.get(name, [])
            if agent.idle and not records:
                continue
            steps.append(
                pb.AgentStep(
                    sequence=agent.seq,
                    inbox=batch_buffer(records) if records else b"",
                    inbox_count=len(records),
                )
            )
            order.append(name)
        resp = self.pool.step_batch(pb.StepBatchRequest(tick=self.tick, steps=steps))
        events = []
        outgoing: list[tuple[str, str, bytes]] = []
        inferences: list[tuple[str, common_pb2.InferCall]] = []
        for name, result in zip(order, resp.results, strict=True):
            event = self._record(name, result)
            events.append(event)
            if event.fault:
                del self._live[name]
                continue
            # Like the orchestrator: the sends of a step that returned DONE still go out.
            outgoing.extend((name, dest, payload) for dest, payload in event.sends)
            if event.code == 2:
                del self._live[name]
                continue
            self._live[name].idle = event.code == 1
            inferences.extend((name, call) for call in result.infers)
        for sender, dest, payload in outgoing:
            self._route(sender, dest, payload)
        for requester, call in inferences:
            assert self.infer is not None, "an agent called infer but the world has no model"
            ok, out = self.infer(call.model, bytes(call.input))
            self._deliver(
                requester,
                message_record(
                    KIND_INFER_RESULT if ok else KIND_INFER_ERROR,
                    call.model.encode(),
                    requester.encode(),
                    out,
                    self.tick,
                    call.request_id,
                ),
            )
        self.tick += 1
        return events

    def run(self, max_ticks: int) -> int:
        """Step until nothing is due (every agent idle without mail) or max_ticks."""
        for _ in range(max_ticks):
            if not self._live or (all(a.idle for a in self._live.values()) and not self._mail):
                break
            self.step()
        return self.tick

    # ------------------------------------------------------------------ helpers
    def _record(self, name: str, result: pb.AgentStepResult) -> Event:
        fault = ""
        if result.HasField("fault") and result.fault.kind:
            fault = f"{common_pb2.FaultKind.Name(result.fault.kind)}: {result.fault.detail}"
        event = Event(
            self.tick,
            name,
            result.code,
            unpack_sends(result.sends),
            [(r.level, r.text) for r in result.logs],
            fault,
            result.fuel_used,
        )
        self.events.append(event)
        return event

    def _route(self, sender: str, dest: str, payload: bytes) -> None:
        record = message_record(KIND_AGENT, sender.encode(), dest.encode(), payload, self.tick)
        if dest in ("$subscribe", "$unsubscribe"):
            agent = self._live.get(sender)
            if agent is not None:
                topic = payload.decode()
                if dest == "$subscribe":
                    agent.topics.add(topic)
                else:
                    agent.topics.discard(topic)
        elif dest == "*":
            for name in self._live:
                if name != sender:
                    self._deliver(name, record)
        elif dest.startswith("#"):
            for name, agent in self._live.items():
                if dest[1:] in agent.topics and name != sender:
                    self._deliver(name, record)
        elif dest in self._live:
            self._deliver(dest, record)
        elif sender in self._live:
            self._deliver(
                sender,
                message_record(KIND_UNDELIVERABLE, b"", dest.encode(), b"unknown agent", self.tick),
            )

    def _deliver(self, dest: str, record: bytes) -> None:
        if dest in self._live:
            self._mail.setdefault(dest, []).append(record)

    # ------------------------------------------------------------------ views
    def sends(self) -> list[tuple[int, str, str, bytes]]:
        """Every send so far: (tick, sender, dest, payload)."""
        return [(e.tick, e.agent, d, p) for e in self.events for d, p in e.sends]

    def logs(self) -> list[tuple[int, str, int, str]]:
        """Every log line so far: (tick, agent, level, text)."""
        return [(e.tick, e.agent, lvl, t) for e in self.events for lvl, t in e.logs]

    def faults(self) -> list[tuple[int, str, str]]:
        """Every fault so far: (tick, agent, fault)."""
        return [(e.tick, e.agent, e.fault) for e in self.events if e.fault]
