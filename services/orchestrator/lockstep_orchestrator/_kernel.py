"""The tick kernel: one run's world, its tick, and nothing about gRPC.

`Kernel.step_tick` is the driver of docs/determinism.md ("Ticks"): gather the tick's inputs
(control actions, inference results, restarts), step the pools through the `Pools` port,
route, and fold the tick's events into the digest and the journal once. A tick is a
transaction: it is computed on a fork of the world and committed whole (world, counters,
digest, journal records, the queue of actions it consumed). If anything fails, nothing is
committed, the actions stay queued, and the pools are marked as needing a rebuild (the run
manager rebuilds them by replay before the next tick).

The hot path (selection, ordering, delivery, routing of direct sends to live agents, the
digest input) is numpy columns plus one C call per phase over the packed pool buffers
(`_native`; each has its numpy form here, `_*_numpy`, used where the C cannot be built);
only rare events (control actions, faults, logs, inference, broadcast, topics,
undeliverable sends) take Python paths.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import trace

from lockstep.abi import KIND_EXTERNAL, KIND_UNDELIVERABLE, message_record, valid_name
from lockstep.batch import (
    RESULT_ROW,
    STEP_ROW,
    AgentSpec,
    Results,
    pack_create,
    pack_destroy,
    parse_results,
    result_rows,
)
from lockstep.errors import ServiceError
from lockstep.otel import tracing_on
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator import _native
from lockstep_orchestrator._events import (
    NOT_COMPARED,
    Action,
    AgentResult,
    Done,
    Event,
    ExternalMessage,
    Fault,
    InferRequest,
    InferResult,
    LogLine,
    Pause,
    Restart,
    Resume,
    RunStart,
    Spawn,
    Terminate,
    TickDigest,
    TickStats,
    Undeliverable,
    i64,
    journal_kind,
    u32,
)
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._inference import InferResult as BridgeResult
from lockstep_orchestrator._journal import Journal
from lockstep_orchestrator._ports import PoolFailureError, Pools
from lockstep_orchestrator._world import (
    FAULTED,
    IDLE,
    MAX_LOOKUP,
    NONE,
    PAUSED,
    RUNNING,
    TERMINATED,
    AgentMeta,
    Mail,
    World,
)

_tracer = trace.get_tracer("lockstep.orchestrator")
ZERO_DIGEST = bytes(32)
MAX_INBOX = 65536  # messages waiting for one agent; more sends are reported undeliverable
# Most bytes of mail delivered to one agent in one step (records plus the 8-byte batch
# header): the pools' max_inbox_bytes default. The rest waits for the agent's next step.
MAX_DELIVERY_BYTES = 16 * 1024 * 1024
AGENT_CHECKS_VERSION = 2

DEFAULT_LIMITS = cpb.Limits(
    fuel_per_step=10_000_000,
    max_memory_pages=256,
    max_messages_per_step=1024,
    max_message_bytes=65536,
    max_logs_per_step=64,
)
I64 = npt.NDArray[np.int64]
_STEP_HEAD = struct.Struct("<4sHHIIq")
_FIX_INBOX = np.dtype([("seq", "<u8"), ("lp", "<u4"), ("total", "<u4"), ("count", "<u4")])
_FIX_RESULT = np.dtype(
    [
        ("phase", "S4"),
        ("seq", "<u8"),
        ("code", "<i8"),
        ("fuel", "<u8"),
        ("send_count", "<u4"),
        ("sends_len", "<u4"),
    ]
)
_RECORD = np.dtype(
    [
        ("total", "<u4"),
        ("kind", "u1"),
        ("r", "u1"),
        ("slen", "<u2"),
        ("tick", "<i8"),
        ("corr", "<i8"),
        ("plen", "<u4"),
        ("dlen", "<u2"),
        ("r2", "<u2"),
    ]
)
_CHECK = np.dtype([("seq", "<u4"), ("check", "<u8")])
assert _FIX_INBOX.itemsize == 20 and _FIX_RESULT.itemsize == 36 and _RECORD.itemsize == 32


class TickFailedError(ServiceError):
    """A tick could not be completed; nothing of it was committed. `cause` says why."""

    def __init__(self, tick: int, cause: Exception) -> None:
        super().__init__(f"tick {tick} failed and was rolled back: {cause}")
        self.tick = tick
        self.cause = cause


class PoolProtocolError(ServiceError):
    """A pool answered with results that do not match the request."""


def merge_limits(*layers: cpb.Limits) -> cpb.Limits:
    """Later layers override earlier ones field by field; zero means "not set"."""
    out = cpb.Limits()
    for layer in layers:
        for fd in cpb.Limits.DESCRIPTOR.fields:
            value = getattr(layer, fd.name)
            if value:
                setattr(out, fd.name, value)
    return out


@dataclass(frozen=True)
class Committed:
    """Everything a reader needs, as of the last committed tick (never mutated)."""

    tick: int
    digest: bytes
    digests: list[bytes]  # shared, append-only: entries [0:tick] belong to this state
    world: World
    counters: opb.RunCounters
    agent_checks: bytes = b""


@dataclass
class _Due:
    """An inference request whose result is delivered at a later tick."""

    seq: int
    request_id: int
    model: str
    input: bytes
    handle: Any


class _Digest:
    """The tick's digest input, and which byte ranges belong to which agent."""

    def __init__(self, tick: int) -> None:
        self.chunks: list[bytes] = [b"LSTK" + i64(tick)]
        self.pos = 12
        self.seg_seq: list[I64] = []
        self.seg_start: list[I64] = []
        self.seg_len: list[I64] = []

    def add(self, data: bytes, seq: int = 0) -> None:
        if seq and data:
            self.seg_seq.append(np.array([seq], dtype=np.int64))
            self.seg_start.append(np.array([self.pos], dtype=np.int64))
            self.seg_len.append(np.array([len(data)], dtype=np.int64))
        self.chunks.append(data)
        self.pos += len(data)

    def add_block(self, data: bytes, seqs: I64, starts: I64, lens: I64) -> None:
        """A columnar block; starts are relative to the block."""
        self.seg_seq.append(seqs)
        self.seg_start.append(starts + self.pos)
        self.seg_len.append(lens)
        self.chunks.append(data)
        self.pos += len(data)

    def finish(self) -> tuple[bytes, I64, I64, I64]:
        """The digest input and its per-agent segments (sequence, start, length)."""
        data = b"".join(self.chunks)
        if self.seg_seq:
            seqs = np.concatenate(self.seg_seq)
            starts = np.concatenate(self.seg_start)
            lens = np.concatenate(self.seg_len)
        else:
            seqs = starts = lens = np.zeros(0, dtype=np.int64)
        return data, seqs, starts, lens


def agent_checks(data: bytes, seqs: I64, starts: I64, lens: I64, version: int) -> bytes:
    """Per-agent checks of one tick: for each agent with bytes in the digest input, in
    sequence order, u32 sequence + 8 bytes over the concatenation of its parts (version 1:
    the first 8 bytes of SHA-256; version 2: FNV-1a 64, little-endian)."""
    if not len(seqs):
        return b""
    if version == 2 and _native.AVAILABLE:
        return _native.agent_checks(data, seqs, starts, lens, int(seqs.max()))
    order = np.argsort(seqs, kind="stable")
    s, st, ln = seqs[order], starts[order], lens[order]
    bounds = np.flatnonzero(np.diff(s)) + 1
    group_end = np.append(bounds, len(s)).astype(np.int64)
    group_seq = s[np.append(0, bounds)]
    if version == 1:
        mv = memoryview(data)
        out = []
        lo = 0
        for g, hi in enumerate(group_end.tolist()):
            h = hashlib.sha256()
            for a, b in zip(st[lo:hi].tolist(), ln[lo:hi].tolist(), strict=True):
                h.update(mv[a : a + b])
            out.append(u32(int(group_seq[g])) + h.digest()[:8])
            lo = hi
        return b"".join(out)
    src = _native.Sources([data])
    checks = _native.group_fnv(src, np.zeros(len(s), dtype=np.int32), st, ln, group_end)
    rows = np.zeros(len(group_seq), dtype=_CHECK)
    rows["seq"] = group_seq
    rows["check"] = checks
    return rows.tobytes()


# A big tick's digest input (hundreds of kilobytes and up) is hashed on a second thread
# while the per-agent checks are computed: hashlib and the native checks both release the
# GIL, and the pools are idle while the kernel commits, so the two run on two cores
# (SHA-256 of 100,000 wealth agents' input ~5 ms). Below the threshold the hand-off would
# cost more than it saves.
PARALLEL_HASH_MIN = 256 * 1024
_hasher: ThreadPoolExecutor | None = None
_hasher_lock = threading.Lock()


def _sha256(previous: bytes, data: bytes) -> bytes:
    h = hashlib.sha256(previous)
    h.update(data)
    return h.digest()


def digest_and_checks(
    previous: bytes, data: bytes, seqs: I64, starts: I64, lens: I64, version: int
) -> tuple[bytes, bytes]:
    """The tick's digest (SHA-256 of the previous digest and the tick's input) and its
    per-agent checks, on two threads for a big input."""
    global _hasher
    if len(data) < PARALLEL_HASH_MIN or not _native.AVAILABLE:
        return _sha256(previous, data), agent_checks(data, seqs, starts, lens, version)
    with _hasher_lock:
        if _hasher is None:
            _hasher = ThreadPoolExecutor(1, thread_name_prefix="lockstep-digest")
        pending = _hasher.submit(_sha256, previous, data)
    checks = agent_checks(data, seqs, starts, lens, version)
    return pending.result(), checks


def decode_checks(blob: bytes) -> dict[int, bytes]:
    """u32 seq + 8 bytes per agent (either version)."""
    return {
        int.from_bytes(blob[i : i + 4], "little"): blob[i + 4 : i + 12]
        for i in range(0, len(blob), 12)
    }


@dataclass
class _Source:
    """Result rows whose sends are routed this tick (init, shutdown or step results)."""

    seq: I64
    res: Results
    rows: I64  # row indices into res


@dataclass
class _Tx:
    """One tick being computed."""

    t: int
    world: World
    counters: opb.RunCounters
    digest: _Digest
    journal: list[Event] = field(default_factory=list)
    host: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    host_parts: list[Mail] = field(default_factory=list)
    hseq: int = 0
    sources: list[_Source] = field(default_factory=list)
    infer_new: list[tuple[int, cpb.InferCall]] = field(default_factory=list)
    done: dict[int, list[int]] = field(default_factory=dict)
    # The step results' sends when routed with the step block: (buffer, routing).
    routed: tuple[npt.NDArray[np.uint8], _native.Routed] | None = None
    # Statistics only (tick.stats): never read by the tick's computation.
    started: float = 0.0  # perf_counter at the start
    started_unix: float = 0.0
    step_at: float = 0.0  # perf_counter when the step batches were sent
    spawned: int = 0
    sent: int = 0
    sent_bytes: int = 0
    pools_s: dict[int, float] = field(default_factory=dict)

    @classmethod
    def after(cls, t: int, world: World, counters: opb.RunCounters) -> _Tx:
        """Tick t, on a fork of the world and a copy of the counters tick t-1 left."""
        return cls(
            t,
            world.fork(),
            _copy_counters(counters),
            _Digest(t),
            started=time.perf_counter(),
            started_unix=time.time(),
        )

    def emit(self, event: Event) -> None:
        self.digest.add(event.digest(), event.agent)
        if event.KIND is not None:
            self.journal.append(event)

    def host_message(
        self,
        target: int,
        kind: int,
        sender: bytes,
        dest: bytes,
        corr: int,
        payload: bytes,
        send_tick: int,
    ) -> None:
        """Host-made messages sort before agents' (sender sequence 0); never dropped."""
        self.hseq += 1
        rec = message_record(kind, sender, dest, send_tick, corr, payload)
        self.host.append((target, send_tick, self.hseq, rec))

    def flush_host(self) -> None:
        """Turn queued host messages into mail (before delivery, and at the end)."""
        if not self.host:
            return
        w = self.world
        k = len(self.host)
        target = np.fromiter((h[0] for h in self.host), dtype=np.int64, count=k)
        recs = [h[3] for h in self.host]
        lens = np.fromiter((len(r) for r in recs), dtype=np.int64, count=k)
        part = Mail(
            target,
            np.fromiter((h[1] for h in self.host), dtype=np.int64, count=k),
            np.zeros(k, dtype=np.int64),
            np.fromiter((h[2] for h in self.host), dtype=np.int64, count=k),
            w.arrival + np.arange(k, dtype=np.int64),
            np.cumsum(lens) - lens,
            lens,
            b"".join(recs),
            canonical=False,
        )
        w.arrival += k
        np.add.at(w.inbox_n, target - 1, 1)
        np.add.at(w.inbox_bytes, target - 1, lens)
        self.host_parts.append(part)
        self.host = []


@dataclass
class _Batch:
    """A tick's step batches in flight, with what the rest of its step needs."""

    sel: I64  # agent indices in step order
    seqs: I64
    cnt: I64  # messages delivered to each
    blen: I64  # their record bytes
    rec_off: I64
    records: bytes  # the records delivered, back to back
    members: dict[int, I64]  # pool: the step positions of its rows
    wait: Callable[[], dict[int, bytes]]


@dataclass
class _Ahead:
    """The next tick, started before the last one committed: its transaction so far and
    its batches in flight (None: starting them failed with `error`)."""

    tx: _Tx
    batch: _Batch | None
    error: BaseException | None = None


class Kernel:
    """One run: its committed state, its queue of control actions, its tick."""

    def __init__(
        self,
        config: opb.RunConfig,
        pools: Pools,
        module_bytes: Callable[[str], bytes],
        journal: Journal,
        inference: InferenceBridge,
        run_id: str = "",
        record_start: bool = True,
    ) -> None:
        self.config = config
        self.pools = pools
        self.module_bytes = module_bytes
        self.journal = journal
        self.inference = inference
        self.latency = max(1, config.inference_latency or 1)
        self.run_id = run_id or secrets.token_hex(8)
        self.state = Committed(0, ZERO_DIGEST, [], World(), opb.RunCounters())
        self.pending: list[Action] = []
        self.infer_due: dict[int, list[_Due]] = {}
        self.checks_version = AGENT_CHECKS_VERSION
        self.pools_dirty = False
        # tick: how many of the queued actions it applies, fixed when it is first computed
        # (a retry applies the same; a tick started ahead applies none).
        self._fixed: dict[int, int] = {}
        self._ahead: _Ahead | None = None  # the next tick, started before this one committed
        self._queue = threading.Lock()
        self._last: tuple[bytes, I64, I64, I64] | None = None  # last tick's digest input
        self.last_records: list[tuple[str, bytes]] = []  # last tick's compared records
        self.last_stats: TickStats | None = None  # the last committed tick's statistics
        # When a list: every tick appends (tick, receiving seqs, record counts, the packed
        # records delivered, in step order) -- the message trace of a replay.
        self.trace: list[tuple[int, I64, I64, bytes]] | None = None
        if record_start:
            journal.append(0, RunStart(self.run_id, config, self.latency, len(pools)))

    # ---- committed views ---------------------------------------------------------------
    @property
    def tick(self) -> int:
        return self.state.tick

    @property
    def digest(self) -> bytes:
        return self.state.digest

    @property
    def digests(self) -> list[bytes]:
        c = self.state
        return c.digests[: c.tick]

    @property
    def world(self) -> World:
        return self.state.world

    # ---- control plane ---------------------------------------------------------------
    def enqueue(self, actions: list[Action]) -> int:
        """Queue actions for the next tick boundary; returns the tick they take effect at:
        the first whose actions are not fixed yet (a tick being computed, or started ahead,
        has its own)."""
        with self._queue:
            self.pending.extend(actions)
            t = self.state.tick + 1
            while t in self._fixed:
                t += 1
            return t

    @property
    def ahead(self) -> bool:
        """The next tick's step batches are out (`step_tick(ahead=True)` started them);
        the next `step_tick` finishes that tick."""
        return self._ahead is not None

    def pending_spawn_names(self) -> set[str]:
        with self._queue:
            return {a.name for a in self.pending if isinstance(a, Spawn)}

    def pending_spawns(self) -> int:
        with self._queue:
            return sum(isinstance(a, Spawn) for a in self.pending)

    def idle(self) -> bool:
        """Nothing can change without outside input."""
        if self.pending or self.infer_due:
            return False
        w = self.state.world
        if not w.n:
            return True
        return not bool((w.ready_mask() | (w.restart_at >= 0)).any())

    # ---- the tick ------------------------------------------------------------------------
    def step_tick(self, ahead: bool = False) -> None:
        """Compute tick `tick + 1` completely, then commit it; on failure commit nothing.
        With `ahead` (the caller will ask for the tick after next), the next tick's step
        batches go out before this tick commits, where nothing but this tick decides them
        (`_start_ahead`), so the pools step while this process commits; the next call
        finishes that tick. With OpenTelemetry on, the tick is a span (its pool and
        inference batches child spans), and ticks never start ahead."""
        if not tracing_on():
            self._step_tick(ahead)
            return
        with _tracer.start_as_current_span(
            "tick",
            attributes={"lockstep.run_id": self.run_id, "lockstep.tick": self.state.tick + 1},
        ) as span:
            self._step_tick(False)
            st = self.last_stats
            if st is not None and span.is_recording():
                span.set_attributes(
                    {
                        "lockstep.steps": st.steps,
                        "lockstep.messages": st.messages,
                        "lockstep.faults": st.faults,
                        "lockstep.agents": st.agents,
                    }
                )

    def _step_tick(self, ahead: bool) -> None:
        if self.pools_dirty:
            self.abandon_ahead()
            raise TickFailedError(
                self.tick + 1,
                ServiceError("the pools no longer hold the committed state; rebuild them first"),
            )
        started, self._ahead = self._ahead, None
        t = self.state.tick + 1
        with self._queue:
            n = self._fixed.setdefault(t, len(self.pending))
            actions = self.pending[:n]
        due: list[_Due] = []
        following: _Ahead | None = None
        try:
            if started is not None:  # its inputs were this state's; its batches are out
                tx = started.tx
                if started.error is not None:
                    raise started.error
                if started.batch is not None:
                    self._step_end(tx, started.batch)
            else:
                tx = _Tx.after(t, self.state.world, self.state.counters)
                self._apply_actions(tx, actions)
                due = self._deliver_inference(tx)
                self._restart_due(tx)
                self._step(tx)
            self._route(tx)
            self._destroy_done(tx)
            if ahead:
                following = self._start_ahead(tx, n)
        except (PoolFailureError, PoolProtocolError, _native.SendsError) as exc:
            self.pools_dirty = True
            raise TickFailedError(t, exc) from exc
        except BaseException:
            self.pools_dirty = True
            raise
        try:
            self._commit(tx, n, due)
        except BaseException:
            if following is not None:
                self._ahead = following
                self.abandon_ahead()
            raise
        self._ahead = following

    def _start_ahead(self, tx: _Tx, n_actions: int) -> _Ahead | None:
        """Start tick t+1 on the world tick t leaves, before t commits, when only that world
        decides it: no action queued beyond tick t's, no inference result or restart due at
        t+1 (nor a call of tick t due then), and somebody to step; and where the pools have
        cores of their own (`Pools.overlaps`). Its actions are fixed at
        none: those queued from now on take effect at t+2, as `enqueue` says. Determinism:
        the batches are the bytes the serial order would send (the same world, inputs and
        order), so digests never depend on it."""
        t = tx.t + 1
        w = tx.world
        if t in self.infer_due or (tx.infer_new and self.latency == 1):
            return None
        if not self.pools.overlaps():
            return None
        if not w.ready_mask().any():
            return None  # nothing to overlap; an idle run must not hold its next tick
        if len(w.restarts_due(t)):
            return None
        with self._queue:
            if len(self.pending) != n_actions:
                return None
            self._fixed[t] = 0
        nxt = _Tx.after(t, w, tx.counters)
        try:
            return _Ahead(nxt, self._step_begin(nxt))
        except BaseException as exc:  # tick t is sound: t+1 fails when it is finished
            return _Ahead(nxt, None, exc)

    def abandon_ahead(self) -> None:
        """Drop a tick started ahead (the run is being replaced, or its previous tick did
        not commit): wait out its batches, and mark the pools for a rebuild, since they
        stepped a tick that is never committed."""
        started, self._ahead = self._ahead, None
        if started is None:
            return
        self.pools_dirty = True
        if started.batch is not None:
            with contextlib.suppress(Exception):
                started.batch.wait()

    def _commit(self, tx: _Tx, n_actions: int, due: list[_Due]) -> None:
        t = tx.t
        data, seqs, starts, lens = tx.digest.finish()
        digest, checks = digest_and_checks(
            self.state.digest, data, seqs, starts, lens, self.checks_version
        )
        self._last = (data, seqs, starts, lens)
        records: list[Event] = [*tx.journal, TickDigest(digest, checks, self.checks_version)]
        self.last_records = [
            (journal_kind(e), self.journal.payload(e))
            for e in tx.journal
            if journal_kind(e) not in NOT_COMPARED
        ]
        if due:
            self.infer_due.pop(t, None)
        for seq, call in tx.infer_new:
            handle = self.inference.submit(
                self._infer_key(seq, call.request_id), call.model, call.input
            )
            self.infer_due.setdefault(t + self.latency, []).append(
                _Due(seq, call.request_id, call.model, call.input, handle)
            )
        self.inference.flush()
        stats = self._stats(tx)
        records.append(stats)
        self.last_stats = stats
        chain = self.state.digests
        del chain[t - 1 :]
        chain.append(digest)
        self.state = Committed(t, digest, chain, tx.world, tx.counters, checks)
        with self._queue:
            del self.pending[:n_actions]
            self._fixed.pop(t, None)
        for event in records:
            self.journal.append(t, event)
        self.journal.tick_done()

    def _stats(self, tx: _Tx) -> TickStats:
        before, after = self.state.counters, tx.counters
        w = tx.world
        npools = len(self.pools)
        return TickStats(
            wall_ms=(time.perf_counter() - tx.started) * 1e3,
            steps=after.steps - before.steps,
            messages=after.messages - before.messages,
            sent=tx.sent,
            bytes=tx.sent_bytes,
            fuel=after.fuel_used - before.fuel_used,
            faults=after.faults - before.faults,
            undeliverable=after.undeliverable - before.undeliverable,
            restarts=after.restarts - before.restarts,
            spawned=tx.spawned,
            done=sum(len(v) for v in tx.done.values()),
            agents=int(w.live_mask().sum()) if w.n else 0,
            inference_in_flight=sum(len(v) for v in self.infer_due.values()),
            pools_ms=tuple(tx.pools_s.get(p, 0.0) * 1e3 for p in range(npools)),
            started=tx.started_unix,
            step_at_ms=(tx.step_at - tx.started) * 1e3 if tx.step_at else 0.0,
        )

    def checks_of_last_tick(self, version: int) -> bytes:
        """The last tick's per-agent checks in a given version (replay names the divergent
        agent of a journal written with either)."""
        if self._last is None:
            return b""
        return agent_checks(*self._last, version=version)

    # ---- control actions -----------------------------------------------------------------
    def _apply_actions(self, tx: _Tx, actions: list[Action]) -> None:
        w, t = tx.world, tx.t
        spawns = sorted((a for a in actions if isinstance(a, Spawn)), key=lambda a: a.name)
        if spawns:
            npools = len(self.pools)
            metas, prio, pools, events = [], [], [], []
            for i, sp in enumerate(spawns):
                seq = w.n + i + 1
                limits = merge_limits(DEFAULT_LIMITS, self.config.default_limits, sp.limits)
                ev = replace(sp, seq=seq, limits=limits)
                events.append(ev)
                metas.append(
                    AgentMeta(sp.name, sp.module, limits, sp.args, sp.restart, tuple(sp.topics))
                )
                prio.append(sp.priority)
                pools.append((seq - 1) % npools)
            w.add_agents(metas, prio, pools, t)
            tx.spawned = len(spawns)
            for ev in events:
                tx.emit(ev)
            self._create(tx, [ev.seq for ev in events])
        terminated: list[int] = []
        for action in actions:
            if isinstance(action, Spawn):
                continue
            if isinstance(action, ExternalMessage):
                tx.emit(action)
                dest = action.to.encode()
                for target in self._targets(w, action.to, 0):
                    tx.host_message(target, KIND_EXTERNAL, b"", dest, 0, action.payload, t - 1)
                continue
            assert isinstance(action, Pause | Resume | Terminate)
            known = w.by_name.get(action.name)
            if known is None:
                continue  # validated at request time; cannot happen
            seq = known
            tx.emit(replace(action, seq=seq))
            i = seq - 1
            st = int(w.state[i])
            if isinstance(action, Pause) and w.is_live(seq):
                w.state[i] = PAUSED
            elif isinstance(action, Resume) and st == PAUSED:
                w.state[i] = RUNNING
            elif isinstance(action, Terminate) and st != TERMINATED:
                w.state[i] = TERMINATED
                w.restart_at[i] = NONE
                if st != FAULTED:
                    terminated.append(seq)
        if terminated:
            requests: dict[int, list[int]] = {}
            for seq in terminated:
                requests.setdefault(int(w.pool[seq - 1]), []).append(seq)
            results = self.pools.destroy(
                {p: pack_destroy(t, hs, True) for p, hs in sorted(requests.items())}
            )
            found = self._by_seq(results, requests)
            for seq in terminated:
                res, row = found[seq]
                self._absorb_row(tx, res, row, b"shutdown", b"SHUT")
                w.state[seq - 1] = TERMINATED

    def _create(self, tx: _Tx, seqs: list[int]) -> None:
        w = tx.world
        requests: dict[int, list[AgentSpec]] = {}
        for seq in seqs:
            meta = w.metas[seq - 1]
            pool = int(w.pool[seq - 1])
            self.pools.ensure_module(pool, meta.module, self.module_bytes(meta.module))
            lim = meta.limits
            requests.setdefault(pool, []).append(
                AgentSpec(
                    seq,
                    meta.name,
                    meta.module,
                    meta.args,
                    lim.fuel_per_step,
                    lim.max_memory_pages,
                    lim.max_messages_per_step,
                    lim.max_message_bytes,
                    lim.max_logs_per_step,
                )
            )
        results = self.pools.create(
            {p: pack_create(tx.t, self.config.seed, specs) for p, specs in sorted(requests.items())}
        )
        found = self._by_seq(results, {p: [s.seq for s in specs] for p, specs in requests.items()})
        for seq in seqs:
            res, row = found[seq]
            w.state[seq - 1] = RUNNING
            self._absorb_row(tx, res, row, b"init", b"INIT")

    @staticmethod
    def _by_seq(
        results: dict[int, bytes], requested: dict[int, list[int]]
    ) -> dict[int, tuple[Results, int]]:
        out: dict[int, tuple[Results, int]] = {}
        for pool, seqs in requested.items():
            res = _parse(results.get(pool), pool)
            got = res.rows["seq"].astype(np.int64)
            if len(got) != len(seqs) or (got != np.asarray(seqs, dtype=np.int64)).any():
                raise PoolProtocolError(
                    f"pool {pool} answered for agents {got.tolist()[:8]}, asked for {seqs[:8]}"
                )
            for row, seq in enumerate(seqs):
                out[seq] = (res, row)
        return out

    def _absorb_row(self, tx: _Tx, res: Results, row: int, phase: bytes, marker: bytes) -> None:
        """Fold one (rare-path) result into the world and the tick's events."""
        for event in self._result_events(tx, res, row, phase, marker):
            tx.emit(event)
        seq = int(res.rows[row]["seq"])
        tx.sources.append(
            _Source(np.array([seq], dtype=np.int64), res, np.array([row], dtype=np.int64))
        )

    def _result_events(
        self, tx: _Tx, res: Results, row: int, phase: bytes, marker: bytes, count_fuel: bool = True
    ) -> list[Event]:
        """The events of one result (digest order), with their effect on the world."""
        w = tx.world
        r = res.rows[row]
        seq = int(r["seq"])
        i = seq - 1
        fuel = int(r["fuel"])
        if count_fuel:
            w.fuel[i] += fuel
            tx.counters.fuel_used += fuel
        events: list[Event] = [
            AgentResult(
                phase,
                seq,
                int(r["code"]),
                fuel,
                int(r["send_count"]),
                res.sends(row),
                int(r["refused"]),
                marker,
            )
        ]
        logs = res.logs(row)
        if logs:
            name = w.metas[i].name
            events += [LogLine(seq, x.level, x.text, name) for x in logs]
        infers = res.infers(row)
        events += [InferRequest(seq, c.request_id, c.model, c.input) for c in infers]
        fault = res.fault(row)
        meta = w.metas[i]
        if fault is not None:
            w.state[i] = FAULTED
            tx.counters.faults += 1
            policy = meta.restart
            restart_in = None
            restarts = int(w.restarts[i])
            if restarts < policy.max_restarts:
                wait = max(1, policy.backoff_ticks) * (
                    max(1, policy.backoff_multiplier) ** restarts
                )
                if policy.max_backoff_ticks:
                    wait = min(wait, policy.max_backoff_ticks)
                w.restart_at[i] = tx.t + wait
                restart_in = wait
            ev = Fault(meta.name, seq, fault.kind, fault.detail, fault.entry_point, restart_in)
            w.set_meta(seq, last_fault=ev.proto())
            events.append(ev)
            return events
        if phase == b"shutdown":
            return events
        code = int(r["code"])
        st = int(w.state[i])
        if code == 2:
            w.state[i] = TERMINATED
            events.append(Done(meta.name))
            tx.done.setdefault(int(w.pool[i]), []).append(seq)
        elif code == 1 and st == RUNNING:
            w.state[i] = IDLE
        elif code != 1 and st == IDLE:
            w.state[i] = RUNNING
        if int(w.state[i]) in (RUNNING, IDLE):
            for c in infers:
                tx.infer_new.append(
                    (
                        seq,
                        cpb.InferCall(
                            request_id=c.request_id,
                            model=c.model.decode("utf-8", "replace"),
                            input=c.input,
                        ),
                    )
                )
        return events

    # ---- inference and restarts ------------------------------------------------------------
    def _infer_key(self, seq: int, request_id: int) -> str:
        # The key seeds sampling when the input gives no seed: it must be the same on replay.
        return f"{self.config.seed}/{seq}/{request_id}"

    def _deliver_inference(self, tx: _Tx) -> list[_Due]:
        due = self.infer_due.get(tx.t, [])
        w = tx.world
        for d in sorted(due, key=lambda d: (d.seq, d.request_id)):
            # The barrier at t+L: block here only if the result is not back yet.
            result: BridgeResult = self.inference.result(d.handle)
            tx.counters.inferences += 1
            meta = w.metas[d.seq - 1]
            ev = InferResult(
                meta.name,
                d.seq,
                d.request_id,
                d.model,
                self._infer_key(d.seq, d.request_id),
                hashlib.sha256(d.input).hexdigest(),
                result.output,
                result.error,
                result.provider,
                result.model_version,
            )
            tx.emit(ev)
            if w.is_live(d.seq):
                tx.host_message(
                    d.seq,
                    ev.message_kind,
                    d.model.encode(),
                    meta.name_b,
                    d.request_id,
                    ev.payload,
                    tx.t - 1,
                )
        return due

    def _restart_due(self, tx: _Tx) -> None:
        w = tx.world
        due = w.restarts_due(tx.t)
        if not len(due):
            return
        seqs = (due + 1).tolist()
        for seq in seqs:
            i = seq - 1
            w.restart_at[i] = NONE
            w.restarts[i] += 1
            tx.counters.restarts += 1
            tx.emit(Restart(w.metas[i].name, seq, int(w.restarts[i])))
        self._create(tx, seqs)

    # ---- selection, delivery, steps -------------------------------------------------------
    def _select(self, tx: _Tx) -> I64:
        w, t = tx.world, tx.t
        cand = np.flatnonzero(w.ready_mask())
        if not len(cand):
            return cand.astype(np.int64)
        rs = w.ready_since[cand]
        rs = np.where(rs >= 0, rs, t)
        sel = cand[np.lexsort((cand, rs, -w.priority[cand]))]
        limit = self.config.max_steps_per_tick
        if limit and len(sel) > limit:
            rest = sel[limit:]
            w.ready_since[rest[w.ready_since[rest] < 0]] = t
            sel = sel[:limit]
        w.ready_since[sel] = NONE
        return sel.astype(np.int64)

    def _step(self, tx: _Tx) -> None:
        batch = self._step_begin(tx)
        if batch is not None:
            self._step_end(tx, batch)

    def _step_begin(self, tx: _Tx) -> _Batch | None:
        """Select, deliver and send the tick's step batches (None: nobody steps)."""
        w, t = tx.world, tx.t
        tx.flush_host()
        mail = Mail.concat([w.mail, *tx.host_parts])
        tx.host_parts = []
        sel = self._select(tx)
        n = len(sel)
        if not n:
            w.mail = mail
            tx.digest.add(b"STEP" + u32(0))
            return None
        # Delivery: the selected agents' mail in (step position, canonical key) order,
        # at most MAX_DELIVERY_BYTES per agent (the rest waits for its next step); then one
        # packed step request per pool, agents in step order.
        seqs = sel + 1
        if _native.AVAILABLE:
            d = _native.deliver_pack(
                None if mail.canonical else mail.canonical_order(),
                mail.target,
                mail.off,
                mail.length,
                mail.buf,
                sel,
                w.pool,
                len(self.pools),
                (w.inbox_n, w.inbox_bytes, w.received),
                MAX_DELIVERY_BYTES,
                t,
            )
            cnt, blen, rec_off, records, rest = d.cnt, d.blen, d.rec_off, d.records, d.rest
            requests, members, messages = d.requests, d.members, d.messages
        else:
            pos = np.full(w.n, -1, dtype=np.int64)
            pos[sel] = np.arange(n, dtype=np.int64)
            cnt, blen, records, rest = _deliver_numpy(mail, pos, n)
            w.inbox_n[sel] -= cnt
            w.inbox_bytes[sel] -= blen
            w.received[sel] += cnt
            messages = int(cnt.sum())
            rec_off = np.cumsum(blen) - blen
            requests, members = _pack_steps_numpy(seqs, w.pool[sel], cnt, blen, records, rec_off, t)
        w.mail = mail.take(rest) if len(rest) else Mail.empty()
        tx.counters.messages += messages
        if self.trace is not None and len(records):
            self.trace.append((t, seqs, cnt, records))
        tx.step_at = time.perf_counter()
        wait = self.pools.step_begin(requests)
        return _Batch(sel, seqs, cnt, blen, rec_off, records, members, wait)

    def _step_end(self, tx: _Tx, b: _Batch) -> None:
        """The step results: absorbed into the world, the STEP block, the sends routed."""
        w, t = tx.world, tx.t
        sel, seqs, cnt, blen, rec_off, records, members = (
            b.sel,
            b.seqs,
            b.cnt,
            b.blen,
            b.rec_off,
            b.records,
            b.members,
        )
        n = len(sel)
        responses = b.wait()
        tx.pools_s = dict(self.pools.last_seconds)
        # Results back in step order (columns), with the buffer each row lives in.
        asked = sorted(members)
        groups = [members[p] for p in asked]
        table = np.zeros(n, dtype=RESULT_ROW)
        if not _native.AVAILABLE:
            bufs = [_parse(responses.get(p), p) for p in asked]
            bad, which, local = _take_results_numpy(bufs, groups, seqs, table)
            if bad >= 0:
                raise PoolProtocolError(f"pool {asked[bad]}: step results do not match the request")
            special, fuel = _absorb_numpy(w, sel, table)
            taken = _native.Taken(which, local, special, fuel, 0, 0)
        else:  # the C checks the tiling of the rows' data as it copies them
            bufs = [_rows_of(responses.get(p), p) for p in asked]
            bad, taken = _native.take_absorb(
                [r.rows for r in bufs],
                groups,
                seqs,
                table,
                [len(r.buf) for r in bufs],
                sel,
                w.state,
                w.fuel,
                w.steps,
                RUNNING,
                IDLE,
            )
            if bad >= len(bufs):
                bad -= len(bufs)
                _parse(bufs[bad].buf, asked[bad])  # raises, saying where
                raise PoolProtocolError(f"pool {asked[bad]}: results do not tile")
            if bad >= 0:
                raise PoolProtocolError(f"pool {asked[bad]}: step results do not match the request")
        tx.counters.fuel_used += taken.fuel
        tx.counters.steps += n
        xbuf, xlens = self._special_rows(tx, taken, bufs)
        raw = [r.buf for r in bufs]
        seqs2 = np.concatenate([seqs, seqs])
        if _native.AVAILABLE and not tx.sources and len(raw) <= 64:
            # The step results are the tick's only routed rows: block and routing in one call.
            block, starts, lens, big, routed = _native.block_route(
                table,
                taken.which,
                raw,
                cnt,
                blen,
                records,
                rec_off,
                xbuf,
                xlens,
                taken,
                w.name_table(),
                (w.state, w.restart_at, w.inbox_n, w.inbox_bytes, w.sent),
                w.arrival,
                t,
                (MAX_INBOX, MAX_LOOKUP, TERMINATED, FAULTED),
            )
            tx.digest.add_block(block, seqs2, starts, lens)
            tx.routed = (big, routed)
            return
        if _native.AVAILABLE:
            block, starts, lens = _native.step_block(
                table, taken.which, raw, cnt, blen, records, rec_off, xbuf, xlens
            )
        else:
            block, starts, lens = _step_block_numpy(
                table, taken.which, raw, cnt, blen, records, rec_off, xbuf, xlens
            )
        tx.digest.add_block(block, seqs2, starts, lens)
        for res, idx in zip(bufs, groups, strict=True):  # row j of a pool: position idx[j]
            tx.sources.append(_Source(seqs[idx], res, np.arange(len(idx), dtype=np.int64)))

    def _special_rows(
        self, tx: _Tx, taken: _native.Taken, bufs: list[Results]
    ) -> tuple[bytes, I64]:
        """The events of the special step results (faults, done, logs, inference), in step
        order: their extra digest bytes back to back, and each row's share (0 for others)."""
        xlens = np.zeros(len(taken.which), dtype=np.int64)
        parts = []
        for j in taken.special.tolist():
            events = self._result_events(
                tx, bufs[taken.which[j]], int(taken.local[j]), b"step", b"", count_fuel=False
            )
            x = b"".join(e.digest() for e in events[1:])
            xlens[j] = len(x)
            parts.append(x)
            tx.journal.extend(e for e in events if e.KIND is not None)
        return b"".join(parts), xlens

    def _destroy_done(self, tx: _Tx) -> None:
        """Agents that returned done are destroyed in one batch per pool."""
        if tx.done:
            self.pools.destroy(
                {p: pack_destroy(tx.t, hs, False) for p, hs in sorted(tx.done.items())}
            )

    # ---- routing ---------------------------------------------------------------------------
    def _targets(self, w: World, dest: str, sender: int) -> list[int]:
        if dest == "*":
            live = w.live_mask()
            return [s for s in (np.flatnonzero(live) + 1).tolist() if s != sender]
        if dest.startswith("#"):
            topic = dest[1:]
            live = w.live_mask()
            return [
                s
                for s in (np.flatnonzero(live) + 1).tolist()
                if s != sender and topic in w.metas[s - 1].topics
            ]
        seq = w.by_name.get(dest)
        return [seq] if seq is not None and w.is_live(seq) else []

    def _route(self, tx: _Tx) -> None:
        """Deliver the tick's sends at t+1 in (sender sequence, send sequence) order."""
        w = tx.world
        parts: list[Mail] = [w.mail]
        if tx.routed is not None:  # routed with the step block (ls_block_route)
            big, routed = tx.routed
            parts.append(self._mail_of(tx, big, routed, repeated=False))
        srcs = [s for s in tx.sources if len(s.seq)]
        if srcs:
            # Sources that share a results buffer (every init of a spawn tick shares its
            # pool's create results) are read as one: each buffer is copied once.
            groups: dict[int, list[int]] = {}
            for i, src in enumerate(srcs):
                groups.setdefault(id(src.res), []).append(i)
            members = list(groups.values())
            bufs = [srcs[g[0]].res.buf for g in members]
            bases = np.cumsum([0] + [len(b) for b in bufs[:-1]]).astype(np.int64)
            big = np.frombuffer(b"".join(bufs), dtype=np.uint8)
            if _native.AVAILABLE:
                base_of = {id(srcs[g[0]].res): int(b) for g, b in zip(members, bases, strict=True)}
                sender, off, slen, count, repeated = _native.send_rows(
                    [src.seq for src in srcs],
                    [src.res.rows for src in srcs],
                    [src.rows for src in srcs],
                    [base_of[id(src.res)] for src in srcs],
                    w.sent,
                )
            else:
                sender, off, slen, count, repeated = _send_rows_numpy(w, srcs, members, bases)
            if len(sender):
                parts.append(self._route_sends(tx, big, sender, off, slen, count, repeated))
        tx.flush_host()
        w.mail = Mail.concat(parts + tx.host_parts)

    def _route_sends(
        self,
        tx: _Tx,
        big: npt.NDArray[np.uint8],
        sender_of_row: I64,
        off: I64,
        slen: I64,
        count: I64,
        repeated: bool,
    ) -> Mail:
        w, t = tx.world, tx.t
        if not _native.AVAILABLE:
            return self._route_sends_numpy(tx, big, sender_of_row, off, slen, count, repeated)
        r = _native.route(
            big,
            sender_of_row,
            off,
            slen,
            count,
            w.name_table(),
            w.name_len,
            w.state,
            w.restart_at,
            w.inbox_n,
            w.inbox_bytes,
            w.arrival,
            t,
            (MAX_INBOX, MAX_LOOKUP, TERMINATED, FAULTED),
        )
        return self._mail_of(tx, big, r, repeated)

    def _mail_of(
        self, tx: _Tx, big: npt.NDArray[np.uint8], r: _native.Routed, repeated: bool
    ) -> Mail:
        """The mail of routed sends: what the C delivered, then the general path's."""
        w, t = tx.world, tx.t
        m = len(r.sender)
        tx.sent += m
        tx.sent_bytes += r.payload_bytes
        w.arrival += m
        k = len(r.to)
        fast_mail = Mail(
            r.to,
            np.full(k, t, dtype=np.int64),
            r.sseq,
            r.nseq,
            r.arrive,
            r.off,
            r.length,
            r.records,
            canonical=not repeated,
        )
        slow = self._route_general(
            tx, big, r.general, r.sender, r.idx, r.doff, r.dlen, r.poff, r.plen, r.arrival
        )
        return fast_mail if slow is None else Mail.concat([fast_mail, slow])

    def _route_sends_numpy(
        self,
        tx: _Tx,
        big: npt.NDArray[np.uint8],
        sender_of_row: I64,
        off: I64,
        slen: I64,
        count: I64,
        repeated: bool,
    ) -> Mail:
        """`_native.route` in numpy (and the C helpers it can still use)."""
        w, t = tx.world, tx.t
        row, idx, doff, dlen, poff, plen = _native.parse_sends(big, off, slen, count)
        m = len(row)
        tx.sent += m
        tx.sent_bytes += int(plen.sum())
        sender = sender_of_row[row]
        target = w.lookup(big, doff, dlen)
        live = w.live_mask()
        fast = target > 0
        fast[fast] = live[target[fast] - 1]
        rec_len = 32 + w.name_len[sender - 1] + dlen + plen
        arrival = w.arrival + np.arange(m, dtype=np.int64)
        w.arrival += m
        general = np.flatnonzero(~fast)
        # Inbox bounds: if no inbox can fill up this tick, every direct send to a live agent
        # is delivered; otherwise the whole tick routes one send at a time, in order.
        fast_n = np.bincount(target[fast], minlength=w.n + 1)[1:]
        g = len(general)
        exact = bool(w.n) and int((w.inbox_n + fast_n).max()) + 2 * g >= MAX_INBOX
        if exact:
            fast[:] = False
            general = np.arange(m, dtype=np.int64)
        fi = np.flatnonzero(fast)
        k = len(fi)
        lens = rec_len[fi]
        hdr = np.zeros(k, dtype=_RECORD)
        hdr["total"] = lens
        hdr["slen"] = w.name_len[sender[fi] - 1]
        hdr["tick"] = t
        hdr["plen"] = plen[fi]
        hdr["dlen"] = dlen[fi]
        srcs = _native.Sources([hdr.tobytes(), w.names_buf, big])
        ar = np.arange(k, dtype=np.int64)
        seg_w = np.tile(np.array([0, 1, 2, 2], dtype=np.int32), k)
        seg_s = np.stack([ar * 32, w.name_off[sender[fi] - 1], doff[fi], poff[fi]], axis=1).ravel()
        seg_l = np.stack(
            [np.full(k, 32, np.int64), w.name_len[sender[fi] - 1], dlen[fi], plen[fi]], axis=1
        ).ravel()
        buf = _native.gather(srcs, seg_w, seg_s, seg_l)
        np.add.at(w.inbox_n, target[fi] - 1, 1)
        np.add.at(w.inbox_bytes, target[fi] - 1, lens)
        fast_mail = Mail(
            target[fi],
            np.full(k, t, dtype=np.int64),
            sender[fi],
            idx[fi],
            arrival[fi],
            np.cumsum(lens) - lens,
            lens,
            buf,
            canonical=not repeated,
        )
        slow = self._route_general(tx, big, general, sender, idx, doff, dlen, poff, plen, arrival)
        return fast_mail if slow is None else Mail.concat([fast_mail, slow])

    def _route_general(
        self,
        tx: _Tx,
        big: npt.NDArray[np.uint8],
        general: I64,
        sender: I64,
        idx: I64,
        doff: I64,
        dlen: I64,
        poff: I64,
        plen: I64,
        arrival: I64,
    ) -> Mail | None:
        """The sends `general` routed one at a time, in order: broadcast, topics,
        subscriptions, unknown or gone agents, full inboxes. Their mail, if any."""
        if not len(general):
            return None
        t = tx.t
        raw = big.tobytes()
        out: list[tuple[int, int, int, int, bytes]] = []
        for j in general.tolist():
            s = int(sender[j])
            d0, dl, p0, pl = int(doff[j]), int(dlen[j]), int(poff[j]), int(plen[j])
            self._route_one(
                tx, s, int(idx[j]), raw[d0 : d0 + dl], raw[p0 : p0 + pl], int(arrival[j]), out
            )
        if not out:
            return None
        q = len(out)
        recs = [o[4] for o in out]
        ql = np.fromiter((len(r) for r in recs), dtype=np.int64, count=q)
        slow = Mail(
            np.fromiter((o[0] for o in out), dtype=np.int64, count=q),
            np.full(q, t, dtype=np.int64),
            np.fromiter((o[1] for o in out), dtype=np.int64, count=q),
            np.fromiter((o[2] for o in out), dtype=np.int64, count=q),
            np.fromiter((o[3] for o in out), dtype=np.int64, count=q),
            np.cumsum(ql) - ql,
            ql,
            b"".join(recs),
            canonical=False,
        )
        return slow

    def _route_one(
        self,
        tx: _Tx,
        sender: int,
        n: int,
        dest_b: bytes,
        payload: bytes,
        arrival: int,
        out: list[tuple[int, int, int, int, bytes]],
    ) -> None:
        w, t = tx.world, tx.t
        dest = dest_b.decode("utf-8", "replace")
        meta = w.metas[sender - 1]
        if dest in ("$subscribe", "$unsubscribe"):
            topic = payload.decode("utf-8", "replace")
            if valid_name(topic):
                topics = set(meta.topics)
                (topics.add if dest == "$subscribe" else topics.discard)(topic)
                w.set_meta(sender, topics=tuple(sorted(topics)))
            return
        record = message_record(0, meta.name_b, dest_b, t, 0, payload)
        targets = self._targets(w, dest, sender)
        reason = ""
        if not targets and not dest.startswith(("*", "#")):
            known = w.by_name.get(dest)
            reason = (
                "unknown agent"
                if known is None
                else (
                    "agent "
                    + opb.AgentState.Name(int(w.state[known - 1]))
                    .removeprefix("AGENT_STATE_")
                    .lower()
                )
            )
        for target in targets:
            if int(w.inbox_n[target - 1]) >= MAX_INBOX:
                reason = f"inbox of {w.metas[target - 1].name} full"
            else:
                out.append((target, sender, n, arrival, record))
                w.inbox_n[target - 1] += 1
                w.inbox_bytes[target - 1] += len(record)
        if reason:
            tx.counters.undeliverable += 1
            tx.emit(Undeliverable(sender, n, reason))
            if w.is_live(sender):
                tx.host_message(sender, KIND_UNDELIVERABLE, b"", dest_b, 0, reason.encode(), t)

    # ---- reads -----------------------------------------------------------------------------
    def agent_info(self, seq: int, state: Committed | None = None) -> opb.AgentInfo:
        w = (state or self.state).world
        i = seq - 1
        m = w.metas[i]
        return opb.AgentInfo(
            name=m.name,
            sequence=seq,
            module_hash=m.module,
            priority=int(w.priority[i]),
            state=int(w.state[i]),  # type: ignore[arg-type]
            pool=int(w.pool[i]),
            steps=int(w.steps[i]),
            messages_sent=int(w.sent[i]),
            messages_received=int(w.received[i]),
            fuel_used=int(w.fuel[i]),
            restarts=int(w.restarts[i]),
            last_fault=m.last_fault,
            spawn_tick=int(w.spawn_tick[i]),
            inbox=int(w.inbox_n[i]),
            topics=list(m.topics),
        )

    def status(self, addresses: list[str]) -> opb.RunStatus:
        c = self.state
        counts = np.bincount(c.world.state.astype(np.int64)) if c.world.n else np.zeros(0)
        by_state = {
            opb.AgentState.Name(s).removeprefix("AGENT_STATE_").lower(): int(k)
            for s, k in enumerate(counts.tolist())
            if k
        }
        return opb.RunStatus(
            run_id=self.run_id,
            tick=c.tick,
            digest=c.digest,
            agents_by_state=by_state,
            counters=c.counters,
            config=self.config,
            pools=addresses,
            idle=self.idle(),
        )


def _deliver_numpy(mail: Mail, pos: I64, n: int) -> tuple[I64, I64, bytes, I64]:
    """`_native.deliver` in numpy: per step position the count and bytes delivered, their
    records, and the rows left waiting."""
    mpos = pos[mail.target - 1] if len(mail) else np.zeros(0, dtype=np.int64)
    order = mail.canonical_order(mpos)
    order = order[mpos[order] >= 0]
    dpos = mpos[order]
    dlen = mail.length[order]
    if len(order):
        start_of = np.searchsorted(dpos, dpos)  # first row of each agent's run
        cum = np.cumsum(dlen)
        within = cum - (cum[start_of] - dlen[start_of])
        keep = (within + 8 <= MAX_DELIVERY_BYTES) | (order == order[start_of])
        if not keep.all():
            order, dpos, dlen = order[keep], dpos[keep], dlen[keep]
    delivered = np.zeros(len(mail), dtype=bool)
    delivered[order] = True
    cnt = np.bincount(dpos, minlength=n).astype(np.int64)
    blen = np.bincount(dpos, weights=dlen, minlength=n).astype(np.int64)
    src = _native.Sources([mail.buf])
    records = _native.gather(src, np.zeros(len(order), dtype=np.int32), mail.off[order], dlen)
    return cnt, blen, records, np.flatnonzero(~delivered)


def _absorb_numpy(w: World, sel: I64, table: np.ndarray) -> tuple[I64, int]:
    """`_native.absorb` in numpy."""
    code = table["code"].astype(np.int64)
    fuel = table["fuel"].astype(np.int64)
    w.fuel[sel] += fuel
    w.steps[sel] += 1
    special = (
        (table["fault_kind"] != 0)
        | (code == 2)
        | (table["log_count"] != 0)
        | (table["infer_count"] != 0)
    )
    st = w.state[sel]
    normal = ~special
    w.state[sel[normal & (code == 1) & (st == RUNNING)]] = IDLE
    w.state[sel[normal & (code != 1) & (st == IDLE)]] = RUNNING
    return np.flatnonzero(special), int(fuel.sum())


def _send_rows_numpy(
    w: World, srcs: list[_Source], members: list[list[int]], bases: I64
) -> tuple[I64, I64, I64, I64, bool]:
    """`_native.send_rows` in numpy: the routed rows in canonical order (sender sequence,
    then the order the results were produced)."""
    seq = np.concatenate([srcs[i].seq for g in members for i in g])
    pos = np.concatenate([np.full(len(srcs[i].seq), i, dtype=np.int64) for g in members for i in g])
    sub = np.concatenate([np.arange(len(srcs[i].seq), dtype=np.int64) for g in members for i in g])
    picks = [np.concatenate([srcs[i].rows for i in g]) for g in members]
    tables = [srcs[g[0]].res.rows for g in members]

    def column(name: str) -> I64:
        # Field first, then the rows: indexing a structured array copies whole rows.
        return np.concatenate([t[name][k] for t, k in zip(tables, picks, strict=True)]).astype(
            np.int64
        )

    fk = column("fault_kind")
    count = column("send_count")
    off = column("off") + np.repeat(bases, [len(k) for k in picks])
    slen = column("sends_len")
    order = np.lexsort((sub, pos, seq))
    order = order[(fk[order] == 0) & (count[order] > 0)]
    np.add.at(w.sent, seq[order] - 1, count[order])
    repeated = bool((np.diff(seq[order]) == 0).any())
    return seq[order], off[order], slen[order], count[order], repeated


def _pack_steps_numpy(
    seqs: I64,
    pool_of: npt.NDArray[np.int32],
    cnt: I64,
    blen: I64,
    records: bytes,
    rec_off: I64,
    t: int,
) -> tuple[dict[int, bytes], dict[int, I64]]:
    """`_native.pack_steps` in numpy."""
    n = len(seqs)
    requests: dict[int, bytes] = {}
    members: dict[int, I64] = {}
    rsrc = _native.Sources([records])
    for p in np.unique(pool_of).tolist():
        idx = np.flatnonzero(pool_of == p)
        members[p] = idx
        rows = np.zeros(len(idx), dtype=STEP_ROW)
        rows["seq"] = seqs[idx]
        rows["len"] = blen[idx]
        rows["count"] = cnt[idx]
        base = _STEP_HEAD.size + len(idx) * STEP_ROW.itemsize
        lens = blen[idx]
        rows["off"] = base + np.cumsum(lens) - lens
        data = (
            records
            if len(idx) == n
            else _native.gather(rsrc, np.zeros(len(idx), dtype=np.int32), rec_off[idx], lens)
        )
        requests[p] = b"".join(
            (_STEP_HEAD.pack(b"LSSQ", 1, 0, len(idx), 0, t), rows.tobytes(), data)
        )
    return requests, members


def _take_results_numpy(
    bufs: list[Results], groups: list[I64], seqs: I64, table: np.ndarray
) -> tuple[int, npt.NDArray[np.int32], I64]:
    """`_native.take_results` in numpy."""
    n = len(table)
    which = np.zeros(n, dtype=np.int32)
    local = np.zeros(n, dtype=np.int64)
    for b, (res, idx) in enumerate(zip(bufs, groups, strict=True)):
        if len(res) != len(idx) or (res.rows["seq"].astype(np.int64) != seqs[idx]).any():
            return b, which, local
        which[idx] = b
        local[idx] = np.arange(len(idx), dtype=np.int64)
        table[idx] = res.rows
    return -1, which, local


def _step_block_numpy(
    table: np.ndarray,
    which: npt.NDArray[np.int32],
    bufs: list[bytes],
    cnt: I64,
    blen: I64,
    records: bytes,
    rec_off: I64,
    xbuf: bytes,
    xlens: I64,
) -> tuple[bytes, I64, I64]:
    """`_native.step_block` in numpy (where the C helpers cannot be built)."""
    n = len(table)
    seqs = table["seq"].astype(np.int64)
    code = table["code"].astype(np.int64)
    fuel = table["fuel"].astype(np.int64)
    # Digest block: "STEP" u32 n; per agent u64 seq + lp(inbox batch); per agent result.
    fix_in = np.zeros(n, dtype=_FIX_INBOX)
    fix_in["seq"] = seqs
    has = cnt > 0
    fix_in["lp"] = np.where(has, blen + 8, 0)
    fix_in["total"] = blen + 8
    fix_in["count"] = cnt
    fix_res = np.zeros(n, dtype=_FIX_RESULT)
    fix_res["phase"] = b"step"
    fix_res["seq"] = seqs
    fix_res["code"] = code
    fix_res["fuel"] = fuel
    fix_res["send_count"] = table["send_count"]
    fix_res["sends_len"] = table["sends_len"]
    refused = np.ascontiguousarray(table["refused"].astype("<u4"))
    srcs = _native.Sources(
        [
            fix_in.tobytes(),
            records,
            fix_res.tobytes(),
            refused.tobytes(),
            xbuf,
            *bufs,
        ]
    )
    ar = np.arange(n, dtype=np.int64)
    in_w = np.stack([np.zeros(n, np.int32), np.ones(n, np.int32)], axis=1).ravel()
    in_s = np.stack([ar * 20, rec_off], axis=1).ravel()
    in_l = np.stack([np.where(has, 20, 12), blen], axis=1).ravel()
    sends_len = table["sends_len"].astype(np.int64)
    res_w = np.stack(
        [np.full(n, 2, np.int32), which + 5, np.full(n, 3, np.int32), np.full(n, 4, np.int32)],
        axis=1,
    ).ravel()
    res_s = np.stack(
        [ar * 36, table["off"].astype(np.int64), ar * 4, np.cumsum(xlens) - xlens], axis=1
    ).ravel()
    res_l = np.stack(
        [np.full(n, 36, np.int64), sends_len, np.full(n, 4, np.int64), xlens], axis=1
    ).ravel()
    all_w = np.concatenate([in_w, res_w])
    all_s = np.concatenate([in_s, res_s])
    all_l = np.concatenate([in_l, res_l])
    body = _native.gather(srcs, all_w, all_s, all_l)
    head = b"STEP" + u32(n)
    in_len = in_l.reshape(n, 2).sum(axis=1)
    res_len = res_l.reshape(n, 4).sum(axis=1)
    in_start = 8 + np.cumsum(in_len) - in_len
    res_start = 8 + int(in_len.sum()) + np.cumsum(res_len) - res_len
    return (
        head + body,
        np.concatenate([in_start, res_start]),
        np.concatenate([in_len, res_len]),
    )


def _rows_of(buf: bytes | None, pool: int) -> Results:
    """A results buffer's header and row table, checked; not the tiling of its data (the
    caller checks that: ls_take_results)."""
    if buf is None:
        raise PoolProtocolError(f"pool {pool} sent no results")
    try:
        return Results(result_rows(buf), buf)
    except ValueError as exc:
        raise PoolProtocolError(f"pool {pool}: {exc}") from None


def _parse(buf: bytes | None, pool: int) -> Results:
    if buf is None:
        raise PoolProtocolError(f"pool {pool} sent no results")
    try:
        return parse_results(buf)
    except ValueError as exc:
        raise PoolProtocolError(f"pool {pool}: {exc}") from None


def _copy_counters(c: opb.RunCounters) -> opb.RunCounters:
    out = opb.RunCounters()
    out.CopyFrom(c)
    return out
