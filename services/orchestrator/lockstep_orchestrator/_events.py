"""The one event vocabulary of a run.

Every control action, fault, restart, completion, log line, inference request and result,
undeliverable notice and tick digest is a typed value. Each knows:

- `digest()`: its bytes in the tick digest input (docs/determinism.md, "Digest encoding");
  empty for events that do not enter the digest;
- `agent`: the spawn sequence the bytes are attributed to (per-agent checks), 0 for none;
- `KIND` and `journal()`: its journal record (None for events that are not journalled),
  and `from_journal()` parses it back. The journal payload is canonical JSON (sorted keys,
  no spaces), so a replay compares records byte for byte.

The tick driver folds a tick's events into the digest and the journal once, in order;
replay, checkpoints and recovery parse the same types back.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lockstep.errors import DeterminismError
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.records import TICK_STATS_FIELDS

_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")

LIMIT_FIELDS = tuple(fd.name for fd in cpb.Limits.DESCRIPTOR.fields)
RESTART_FIELDS = ("max_restarts", "backoff_ticks", "backoff_multiplier", "max_backoff_ticks")


def u32(n: int) -> bytes:
    return _U32.pack(n)


def u64(n: int) -> bytes:
    return _U64.pack(n)


def i64(n: int) -> bytes:
    return _I64.pack(n)


def lp(data: bytes) -> bytes:
    """Length-prefixed bytes: u32 length then the bytes."""
    return _U32.pack(len(data)) + data


def canonical_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


class Event:
    """Base of every event."""

    KIND: ClassVar[str | None] = None

    @property
    def agent(self) -> int:
        return 0

    def digest(self) -> bytes:
        return b""

    def journal(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> Event:
        raise NotImplementedError


# ------------------------------------------------------------------ control actions
class Action(Event):
    """A control-plane action: queued by a request, applied at a tick boundary."""


@dataclass(frozen=True)
class Spawn(Action):
    """A new agent. `seq` and the resolved `limits` are set when it is applied."""

    KIND: ClassVar[str | None] = "control.spawn"
    name: str
    module: str
    priority: int = 0
    args: bytes = b""
    topics: tuple[str, ...] = ()
    restart: opb.RestartPolicy = field(default_factory=opb.RestartPolicy)
    limits: cpb.Limits = field(default_factory=cpb.Limits)
    seq: int = 0

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return (
            b"SPWN"
            + u64(self.seq)
            + lp(self.name.encode())
            + lp(self.module.encode())
            + i64(self.priority)
            + lp(self.limits.SerializeToString(deterministic=True))
            + lp(self.args)
            + lp(",".join(self.topics).encode())
        )

    def journal(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "name": self.name,
            "module": self.module,
            "priority": self.priority,
            "args": self.args.hex(),
            "topics": list(self.topics),
            "restart": {f: getattr(self.restart, f) for f in RESTART_FIELDS},
            "limits": {f: getattr(self.limits, f) for f in LIMIT_FIELDS},
        }

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> Spawn:
        return cls(
            name=body["name"],
            module=body["module"],
            priority=body["priority"],
            args=bytes.fromhex(body["args"]),
            topics=tuple(body["topics"]),
            restart=opb.RestartPolicy(**body["restart"]),
            limits=cpb.Limits(**body["limits"]),
            seq=body.get("seq", 0),
        )

    @classmethod
    def from_request(cls, spawn: opb.AgentSpawn, module_hash: str) -> Spawn:
        restart = opb.RestartPolicy()
        restart.CopyFrom(spawn.restart)
        limits = cpb.Limits()
        limits.CopyFrom(spawn.limits)
        return cls(
            name=spawn.name,
            module=module_hash,
            priority=spawn.priority,
            args=bytes(spawn.args),
            topics=tuple(sorted(set(spawn.topics))),
            restart=restart,
            limits=limits,
        )


@dataclass(frozen=True)
class _Lifecycle(Action):
    name: str
    seq: int = 0
    VERB: ClassVar[bytes] = b""

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return self.VERB + u64(self.seq)

    def journal(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> Event:
        return cls(name=body["name"])


@dataclass(frozen=True)
class Pause(_Lifecycle):
    KIND: ClassVar[str | None] = "control.pause"
    VERB: ClassVar[bytes] = b"pause"


@dataclass(frozen=True)
class Resume(_Lifecycle):
    KIND: ClassVar[str | None] = "control.resume"
    VERB: ClassVar[bytes] = b"resume"


@dataclass(frozen=True)
class Terminate(_Lifecycle):
    KIND: ClassVar[str | None] = "control.terminate"
    VERB: ClassVar[bytes] = b"terminate"


@dataclass(frozen=True)
class ExternalMessage(Action):
    """A message from outside: to an agent name, "*" (every live agent) or "#topic"."""

    KIND: ClassVar[str | None] = "control.message"
    to: str
    payload: bytes

    def digest(self) -> bytes:
        return b"EXT " + lp(self.to.encode()) + lp(self.payload)

    def journal(self) -> dict[str, Any]:
        return {"to": self.to, "payload": self.payload.hex()}

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> ExternalMessage:
        return cls(to=body["to"], payload=bytes.fromhex(body["payload"]))


# ------------------------------------------------------------------ agent results
@dataclass(frozen=True)
class LogLine(Event):
    """A line an agent logged (level 5: an observation, docs/abi.md), journalled so that it
    can be read back (`lockstep.api`, `Run.logs`)."""

    KIND: ClassVar[str | None] = "agent.log"
    seq: int
    level: int
    text: bytes  # UTF-8, as the pool delivers it
    name: str = ""

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return b"LOG " + i64(self.level) + lp(self.text)

    def journal(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "level": self.level,
            "text": self.text.decode("utf-8", "replace"),
        }

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> LogLine:
        return cls(
            seq=0,
            level=int(body["level"]),
            text=str(body["text"]).encode(),
            name=str(body["agent"]),
        )


@dataclass(frozen=True)
class InferRequest(Event):
    seq: int
    request_id: int
    model: bytes
    input: bytes

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return b"INFR" + i64(self.request_id) + lp(self.model) + lp(self.input)


@dataclass(frozen=True)
class AgentResult(Event):
    """One entry point sequence's result: phase is init, step or shutdown; `marker` is the
    INIT/SHUT prefix of spawn, restart and terminate results (empty for steps)."""

    phase: bytes
    seq: int
    code: int
    fuel: int
    send_count: int
    sends: bytes
    refused: int
    marker: bytes = b""

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return (
            self.marker
            + self.phase
            + u64(self.seq)
            + i64(self.code)
            + u64(self.fuel)
            + u32(self.send_count)
            + lp(self.sends)
            + u32(self.refused)
        )


@dataclass(frozen=True)
class Fault(Event):
    """An agent faulted (trap, fuel, memory, ABI...). `restart_in` is the backoff in ticks
    when the restart policy re-creates it, None when it stays faulted."""

    KIND: ClassVar[str | None] = "agent.fault"
    name: str
    seq: int
    kind: int
    detail: str
    entry_point: str
    restart_in: int | None = None

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return b"FALT" + u32(self.kind) + lp(self.detail.encode()) + lp(self.entry_point.encode())

    def journal(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": cpb.FaultKind.Name(self.kind),
            "detail": self.detail,
            "entry_point": self.entry_point,
            "restart_in_ticks": self.restart_in,
        }

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> Fault:
        return cls(
            name=body["name"],
            seq=0,
            kind=cpb.FaultKind.Value(body["kind"]),
            detail=body["detail"],
            entry_point=body["entry_point"],
            restart_in=body["restart_in_ticks"],
        )

    def proto(self) -> cpb.Fault:
        return cpb.Fault(
            kind=self.kind,  # type: ignore[arg-type]
            detail=self.detail,
            entry_point=self.entry_point,
        )


@dataclass(frozen=True)
class Done(Event):
    """An agent returned 2 (done): terminated, its instance destroyed in the tick's batch."""

    KIND: ClassVar[str | None] = "agent.done"
    name: str

    def journal(self) -> dict[str, Any]:
        return {"name": self.name}

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> Done:
        return cls(name=body["name"])


@dataclass(frozen=True)
class Restart(Event):
    """A faulted agent is re-created (its init result follows)."""

    KIND: ClassVar[str | None] = "agent.restart"
    name: str
    seq: int
    n: int

    @property
    def agent(self) -> int:
        return self.seq

    def digest(self) -> bytes:
        return b"RSTR" + u64(self.seq)

    def journal(self) -> dict[str, Any]:
        return {"name": self.name, "n": self.n}

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> Restart:
        return cls(name=body["name"], seq=0, n=body["n"])


@dataclass(frozen=True)
class InferResult(Event):
    """An inference result delivered at its tick (kind 2 result, 3 error)."""

    KIND: ClassVar[str | None] = "infer.result"
    name: str
    seq: int
    request_id: int
    model: str
    key: str
    input_sha256: str
    output: bytes
    error: str
    provider: str = ""
    model_version: str = ""

    @property
    def agent(self) -> int:
        return self.seq

    @property
    def message_kind(self) -> int:
        return 2 if self.error == "" else 3

    @property
    def payload(self) -> bytes:
        return self.output if self.error == "" else self.error.encode()

    def digest(self) -> bytes:
        return (
            b"IRES"
            + u64(self.seq)
            + i64(self.request_id)
            + u32(self.message_kind)
            + lp(self.payload)
        )

    def journal(self) -> dict[str, Any]:
        return {
            "agent": self.name,
            "request_id": self.request_id,
            "model": self.model,
            "key": self.key,
            "input_sha256": self.input_sha256,
            "output": self.payload.hex(),
            "error": self.error,
            "provider": self.provider,
            "model_version": self.model_version,
        }

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> InferResult:
        return cls(
            name=body["agent"],
            seq=0,
            request_id=body["request_id"],
            model=body["model"],
            key=body["key"],
            input_sha256=body["input_sha256"],
            output=bytes.fromhex(body["output"]) if not body["error"] else b"",
            error=body["error"],
            provider=body.get("provider", ""),
            model_version=body.get("model_version", ""),
        )


@dataclass(frozen=True)
class Undeliverable(Event):
    """A send that reached nobody; the sender gets a kind-4 notice at the next tick."""

    sender: int
    index: int
    reason: str

    @property
    def agent(self) -> int:
        return self.sender

    def digest(self) -> bytes:
        return b"UNDL" + u64(self.sender) + u32(self.index) + lp(self.reason.encode())


# ------------------------------------------------------------------ run records
@dataclass(frozen=True)
class TickDigest(Event):
    """The end of a tick: d_t and the per-agent checks (see docs/determinism.md)."""

    KIND: ClassVar[str | None] = "tick.digest"
    digest_bytes: bytes
    agents: bytes
    agents_version: int = 2

    def journal(self) -> dict[str, Any]:
        body: dict[str, Any] = {"digest": self.digest_bytes.hex(), "agents": self.agents.hex()}
        if self.agents_version != 1:
            body["agents_v"] = self.agents_version
        return body

    def journal_json(self) -> bytes:
        """canonical_json(self.journal()) without the JSON encoder scanning the checks (12
        bytes per agent, hex) character by character: the same bytes."""
        version = b"" if self.agents_version == 1 else b',"agents_v":%d' % self.agents_version
        return b"".join(
            (
                b'{"agents":"',
                self.agents.hex().encode(),
                b'"',
                version,
                b',"digest":"',
                self.digest_bytes.hex().encode(),
                b'"}',
            )
        )

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> TickDigest:
        return cls(
            bytes.fromhex(body["digest"]),
            bytes.fromhex(body.get("agents", "")),
            int(body.get("agents_v", 1)),
        )


@dataclass(frozen=True)
class TickStats(Event):
    """What a committed tick cost and did: wall time, steps, messages, fuel, faults ...

    Journalled after the tick's digest record; never part of the digest and never compared
    by replay (wall time differs run after run). Fields as in docs/telemetry.md."""

    KIND: ClassVar[str | None] = "tick.stats"
    wall_ms: float
    steps: int = 0
    messages: int = 0
    sent: int = 0
    bytes: int = 0
    fuel: int = 0
    faults: int = 0
    undeliverable: int = 0
    restarts: int = 0
    spawned: int = 0
    done: int = 0
    agents: int = 0
    inference_in_flight: int = 0
    pools_ms: tuple[float, ...] = ()
    started: float = 0.0  # Unix time (seconds) the tick started
    step_at_ms: float = 0.0  # when the pools' step batches were sent, from `started`

    def journal(self) -> dict[str, Any]:
        body: dict[str, Any] = {f: getattr(self, f) for f in TICK_STATS_FIELDS}
        body["wall_ms"] = round(self.wall_ms, 4)
        body["pools_ms"] = [round(x, 4) for x in self.pools_ms]
        body["started"] = round(self.started, 6)
        body["step_at_ms"] = round(self.step_at_ms, 4)
        return body

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> TickStats:
        return cls(
            **{f: body[f] for f in TICK_STATS_FIELDS if f in body and f != "pools_ms"},
            pools_ms=tuple(body.get("pools_ms", ())),
        )


@dataclass(frozen=True)
class RunStart(Event):
    KIND: ClassVar[str | None] = "run.start"
    run_id: str
    config: opb.RunConfig
    latency: int
    pools: int

    def journal(self) -> dict[str, Any]:
        c = self.config
        return {
            "run_id": self.run_id,
            "seed": c.seed,
            "max_steps_per_tick": c.max_steps_per_tick,
            "inference_latency": self.latency,
            "label": c.label,
            "pools": self.pools,
            "config": c.SerializeToString(deterministic=True).hex(),
        }

    @classmethod
    def from_journal(cls, tick: int, body: dict[str, Any]) -> RunStart:
        return cls(
            str(body["run_id"]),
            opb.RunConfig.FromString(bytes.fromhex(body["config"])),
            int(body.get("inference_latency", 1)),
            int(body.get("pools", 0)),
        )


@dataclass(frozen=True)
class Note(Event):
    """A record about the run rather than its behaviour (module.register, run.checkpoint,
    run.restore, run.recover): journalled, never compared by replay."""

    kind: str
    body: dict[str, Any]

    def journal(self) -> dict[str, Any]:
        return self.body


KINDS: dict[str, type[Event]] = {
    cls.KIND: cls  # type: ignore[misc]
    for cls in (
        Spawn,
        Pause,
        Resume,
        Terminate,
        ExternalMessage,
        Fault,
        Done,
        Restart,
        InferResult,
        TickDigest,
        TickStats,
        RunStart,
        LogLine,
    )
}
NOTE_KINDS = frozenset(
    {"module.register", "run.checkpoint", "run.restore", "run.recover", "run.resume"}
)
# Journal kinds that describe the run rather than its behaviour (tick.stats: wall time and
# counts, not deterministic), or (agent.log) whose bytes the tick digest already covers and
# which journals written before log lines were journalled lack: replay does not compare
# them record by record.
NOT_COMPARED = NOTE_KINDS | {"tick.digest", "tick.stats", "run.start", "agent.log"}


def journal_kind(event: Event) -> str:
    return event.kind if isinstance(event, Note) else str(event.KIND)


def parse_event(tick: int, kind: str, raw: bytes) -> Event:
    """One journal record back as its event; DeterminismError when it cannot be read."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise DeterminismError(f"journal record {kind}@{tick} is not JSON") from None
    if kind in NOTE_KINDS:
        return Note(kind, body)
    cls = KINDS.get(kind)
    if cls is None:
        return Note(kind, body)
    try:
        return cls.from_journal(tick, body)
    except (KeyError, TypeError, ValueError) as exc:
        raise DeterminismError(f"journal record {kind}@{tick} is malformed: {exc}") from None


def digest_of(events: Iterable[Event]) -> bytes:
    return b"".join(e.digest() for e in events)
