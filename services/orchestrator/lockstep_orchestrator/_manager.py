"""The run manager: owns the current run (a `Kernel`) and everything that replaces or
rebuilds it — start, ticks with recovery, replay, checkpoint and restore — without gRPC.

Locks: ticks and run replacement are serialised by `_tick_lock`; control requests are
validated against the last committed tick and queued without waiting for a running tick;
reads (status, list, inspect, digests) take no lock at all and answer from the last
committed tick.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lockstep import faults as _faults
from lockstep.abi import valid_name
from lockstep.errors import (
    AlreadyExistsError,
    CapacityError,
    DeterminismError,
    InvalidRequestError,
    LockstepError,
    NotFoundError,
    PreconditionError,
    ServiceError,
    quote,
)
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as ppb
from lockstep_orchestrator._autosave import CHECKPOINT_DIR, CheckpointWriter, persisted
from lockstep_orchestrator._checkpoint import (
    capture,
    load,
    load_snapshots,
    load_state,
    modules_of,
    restore_into,
    save,
)
from lockstep_orchestrator._events import (
    ExternalMessage,
    Note,
    Pause,
    Resume,
    Spawn,
    Terminate,
)
from lockstep_orchestrator._faults import FaultyPools
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._journal import Journal, JournalRecord, Sink, read_wal
from lockstep_orchestrator._kernel import (
    DEFAULT_LIMITS,
    MAX_DELIVERY_BYTES,
    Kernel,
    TickFailedError,
    merge_limits,
)
from lockstep_orchestrator._ports import PoolFailureError, Pools
from lockstep_orchestrator._replay import (
    JournalInference,
    ParsedJournal,
    delivered_messages,
    divergence,
    parse_journal,
    reexecute_tick,
)
from lockstep_orchestrator._world import FAULTED, TERMINATED

TRACE_BATCH = 10_000  # traced messages per progress message, at most (bounded messages)

log = logging.getLogger("lockstep.orchestrator")

MAX_PAYLOAD = 65536
MAX_ARGS = 65536
# A pool that is gone, timed out, or answers for agents it no longer holds (it restarted).
_RETRYABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "NOT_FOUND"})


@dataclass(frozen=True)
class Caps:
    """Operator caps on what a client or scenario may ask for; each is refused when it is
    requested (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for agents), never mid-tick."""

    max_fuel_per_step: int = 1_000_000_000  # fuel_per_step of a run default or a spawn
    max_agents_per_run: int = 1_000_000  # agents ever spawned in one run
    max_inference_latency: int = 1_000  # RunConfig.inference_latency, in ticks
    max_label_bytes: int = 256  # run and checkpoint labels


@dataclass(frozen=True)
class AutoCheckpoints:
    """Automatic checkpoints that bound recovery: every `every` ticks (0 = off) the
    committed state and every live instance's snapshot are kept in memory (the last
    `keep`), and a failed pool is rebuilt from the latest one and caught up by replaying
    only the ticks after it. With a data dir they are also written there (the last `keep`
    of the run, on a background thread: `_autosave`), and an orchestrator restarted after a
    crash resumes the run from the latest one (`RunManager.resume`). One is taken when the
    tick after it is asked for (a run that stops at a multiple of `every` never pays for
    it), and skipped (with a warning) while the run's instances are estimated to take more
    than `max_bytes`. They cost at most `max_share` of the run's time: one estimated to take
    s seconds (the instances' size at the speeds the last one was captured and written)
    waits until s / max_share seconds have passed since the last one or the run's start (at
    1,000 instances of 128 KiB one takes about half a second, longer than 100 ticks of such
    a run)."""

    every: int = 100
    keep: int = 2
    max_bytes: int = 128 * 1024 * 1024
    max_share: float = 0.05


@dataclass
class _Base:
    """A state the pools can be rebuilt from (then by replay): a restored checkpoint, or
    an automatic one."""

    tick: int
    state: dict[str, Any]
    snapshots: list[ppb.AgentSnapshot]
    digest: bytes = b""


RUN_FILE = "current-run.json"  # in the data dir: the run to resume after a crash
WAL_DIR = "wal"  # in the data dir: journal records acknowledged but not yet in telemetry
_BYTES_PER_AGENT = 128 * 1024  # the size estimate of an instance before one is measured
_CAPTURE_BYTES_PER_S = 500e6  # snapshot speed before one is measured (here: ~480 MB/s)


class RunManager:
    """The one current run of an orchestrator."""

    def __init__(
        self,
        pools: Pools,
        module_bytes: Callable[[str], bytes],
        known_modules: Callable[[], set[str]],
        sink: Sink | None,
        inference: InferenceBridge,
        recovery_s: float = 60.0,
        data_dir: Path | None = None,
        caps: Caps | None = None,
        auto: AutoCheckpoints | None = None,
    ) -> None:
        # Fault points (docs/faults.md) only when LOCKSTEP_FAULTS names a plan.
        self.faults = _faults.injector("orchestrator")
        self.pools: Pools = pools if self.faults is None else FaultyPools(pools, self.faults)
        self.caps = caps or Caps()
        self.auto = auto or AutoCheckpoints()
        self._auto: list[_Base] = []  # the current run's automatic checkpoints, oldest first
        self._agent_bytes = _BYTES_PER_AGENT
        self._auto_warned = False
        self._auto_since = 0.0  # the last automatic checkpoint or the run's start (monotonic)
        self._auto_rate = _CAPTURE_BYTES_PER_S  # instance bytes captured per second, measured
        self.writer = CheckpointWriter()  # automatic checkpoints to the data dir (_autosave)
        self._resumable = False  # the current run is named resumable in the data dir
        self.resumed: dict[str, Any] = {}  # the last resume's `run.resume` record
        self.recoveries = 0  # pool rebuilds that completed (all runs)
        self.replayed_ticks = 0  # ticks re-executed by them
        self.module_bytes = module_bytes
        self.known_modules = known_modules
        self.sink = sink
        self.inference = inference
        self.recovery_s = recovery_s
        self.data_dir = data_dir
        self._tick_lock = threading.RLock()
        self._control = threading.Lock()
        self._base: _Base | None = None
        self.on_commit: Callable[[Kernel], None] | None = None  # after each committed tick
        self.kernel = self._new_kernel(opb.RunConfig())

    def _new_kernel(
        self, config: opb.RunConfig, inference: InferenceBridge | None = None
    ) -> Kernel:
        return Kernel(
            config, self.pools, self.module_bytes, self._journal(), inference or self.inference
        )

    def _journal(self) -> Journal:
        wal = self.data_dir / WAL_DIR if self.data_dir is not None else None
        return Journal(self.sink, wal_dir=wal)

    def close(self, spill_dir: Path, timeout: float) -> None:
        """A clean shutdown: ship the journal; nothing is left to resume, unless the
        shutdown is the supervisor's death (services stop when it dies, docs/architecture.md):
        then the run stays resumable by the next `lockstep up`."""
        with self._tick_lock:
            self.kernel.abandon_ahead()  # never committed: not in the journal either
            self.kernel.journal.close(spill_dir, timeout)
            if not _supervisor_gone():
                self.forget()
                self._resumable = False
                self._purge_auto()  # nothing is left to resume
            self.writer.close()

    def _check_pools(self) -> None:
        for i, lim in enumerate(self.pools.limits()):
            if lim.max_inbox_bytes < MAX_DELIVERY_BYTES:
                raise PreconditionError(
                    f"pool {self.pools.addresses[i]} accepts inboxes of {lim.max_inbox_bytes} "
                    f"bytes; the orchestrator delivers up to {MAX_DELIVERY_BYTES}"
                )

    # ---- run control -----------------------------------------------------------------
    def check_config(self, config: opb.RunConfig) -> None:
        """Refuse a run config above the operator's caps."""
        caps = self.caps
        if len(config.label.encode()) > caps.max_label_bytes:
            raise InvalidRequestError(
                f"run label {quote(config.label)} is longer than {caps.max_label_bytes} bytes"
            )
        if config.inference_latency > caps.max_inference_latency:
            raise InvalidRequestError(
                f"inference_latency {config.inference_latency} is above the cap of "
                f"{caps.max_inference_latency} ticks (--max-inference-latency)"
            )
        fuel = config.default_limits.fuel_per_step
        if fuel > caps.max_fuel_per_step:
            raise InvalidRequestError(
                f"default fuel_per_step {fuel} is above the cap of {caps.max_fuel_per_step} "
                f"(--max-fuel-per-step)"
            )

    def start(self, config: opb.RunConfig) -> opb.RunStatus:
        self.check_config(config)
        with self._tick_lock:
            self.kernel.abandon_ahead()
            self.kernel.journal.flush()
            self.pools.reset()
            self._check_pools()
            self._base = None
            self._auto = []
            self._auto_warned = False
            self._auto_since = time.monotonic()
            self.kernel = self._new_kernel(config)
            self.kernel.journal.flush()  # run.start is durable before StartRun answers
            self._remember(resumable=True)
            self._purge_auto()
            return self.status()

    def _remember(self, resumable: bool) -> None:
        """Name the current run in the data dir, so that an orchestrator restarted after a
        crash resumes it (`resume`); removed at a clean shutdown (`forget`)."""
        if self.data_dir is None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.data_dir / RUN_FILE
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"run_id": self.kernel.run_id, "resumable": resumable}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._resumable = resumable

    def _auto_dir(self) -> Path | None:
        """Where the current run's automatic checkpoints are written (None: in memory only,
        without a data dir or for a run that is not resumable)."""
        if self.data_dir is None or not self._resumable:
            return None
        return self.data_dir / CHECKPOINT_DIR

    def _purge_auto(self) -> None:
        """The current run replaced another: remove the others' automatic checkpoints."""
        if self.data_dir is not None:
            keep = self.kernel.run_id if self._resumable else None
            self.writer.purge(self.data_dir / CHECKPOINT_DIR, keep)

    def wait_checkpoints(self) -> None:
        """Until the automatic checkpoints taken so far are on disk (tests, shutdown)."""
        self.writer.wait()

    def interrupted_run(self) -> str:
        """The run an orchestrator that died was running ("" if none, or not resumable)."""
        if self.data_dir is None:
            return ""
        try:
            info = json.loads((self.data_dir / RUN_FILE).read_text())
        except (OSError, ValueError):
            return ""
        return str(info.get("run_id", "")) if info.get("resumable") else ""

    def forget(self) -> None:
        if self.data_dir is not None:
            (self.data_dir / RUN_FILE).unlink(missing_ok=True)

    def resume(self, entries: list[tuple[int, str, bytes]]) -> opb.RunStatus:
        """Make a journalled run the current run again, under its own id, after the
        orchestrator died: restore the latest checkpoint of the run in the data dir whose
        tick and digest chain match the journal (automatic or explicit; a damaged one, or
        one that does not restore or replay, is skipped for the one before), or start from
        tick 1 when there is none; re-execute the ticks after it into fresh instances,
        checking every digest, and continue its journal (records already durable are not
        sent again). In-flight inference requests are submitted again (results are keyed and
        seeded); control actions queued but not yet applied when it died are lost."""
        entries, unsent = self._drain_wal(entries)
        parsed = parse_journal(entries)
        missing = sorted(parsed.modules() - self.known_modules())
        if missing:
            raise PreconditionError(f"register these modules before resuming: {', '.join(missing)}")
        if any(kind == "run.restore" for _t, kind, _p in entries):
            raise PreconditionError(
                "a restored run is not replayable from its own journal: "
                "restore its checkpoint instead"
            )
        with self._tick_lock:
            self.kernel.abandon_ahead()
            began = time.monotonic()
            self.pools.wait_all_serving(self.recovery_s or 10.0)
            last = parsed.last_tick
            k: Kernel | None = None
            base: _Base | None = None
            checkpoint_id = ""
            for checkpoint_id, base in self._resume_bases(parsed):
                try:
                    k = self._reexecute(parsed, base)
                    break
                except Exception as exc:  # whatever it is, an older one or tick 1 may do
                    log.warning(
                        "resume: checkpoint %s (tick %d) not usable (%s); trying an older one "
                        "or tick 1",
                        checkpoint_id,
                        base.tick,
                        exc,
                    )
            if k is None:
                checkpoint_id, base = "", None
                k = self._reexecute(parsed, None)
            first = base.tick if base is not None else 0
            journal = self._journal()
            journal.run_id = parsed.run_id
            journal.adopt(
                [JournalRecord(parsed.run_id, t, kind, payload) for t, kind, payload in entries],
                unsent,
            )
            k.journal = journal
            k.inference = self.inference
            for items in k.infer_due.values():
                for d in items:
                    d.handle = self.inference.submit(
                        k._infer_key(d.seq, d.request_id), d.model, d.input
                    )
            self.inference.flush()
            self.resumed = {
                "tick": last,
                "from_tick": first,
                "replayed_ticks": last - first,
                "checkpoint": checkpoint_id,
            }
            k.journal.append(last + 1, Note("run.resume", self.resumed))
            k.journal.flush()  # with what the write-ahead file held
            log.info(
                "resume: run %s from %s: %d ticks replayed (%d..%d) in %.2f s",
                parsed.run_id,
                f"checkpoint {checkpoint_id} (tick {first})" if base else "tick 1",
                last - first,
                first + 1,
                last,
                time.monotonic() - began,
            )
            self._base = None
            self._auto = [base] if base is not None else []
            self._auto_since = began  # the time budget counts the resume as run time
            self.kernel = k
            self._remember(resumable=True)
            self._purge_auto()
            return self.status()

    def _resume_bases(self, parsed: ParsedJournal) -> Iterator[tuple[str, _Base]]:
        """The checkpoints in the data dir that a resume of `parsed` may start from, latest
        first: of that run, at a journalled tick, with the journal's digest chain up to it,
        files intact (loaded one at a time, as they are asked for)."""
        if self.data_dir is None:
            return
        directory = self.data_dir / CHECKPOINT_DIR
        for tick, checkpoint_id in persisted(directory, parsed.run_id):
            if tick > parsed.last_tick:  # taken after the journal's last durable tick
                continue
            try:
                state = load_state(directory, checkpoint_id)
                want = [parsed.digests[t].digest_bytes.hex() for t in range(1, tick + 1)]
                if state.get("run_id") != parsed.run_id or state.get("tick") != tick:
                    raise PreconditionError("it is of another run or tick")
                if state.get("digests") != want:
                    raise PreconditionError("its digest chain differs from the journal's")
                snapshots = load_snapshots(directory, checkpoint_id, state)
            except (LockstepError, OSError, KeyError, TypeError, ValueError) as exc:
                log.warning("resume: checkpoint %s skipped: %s", checkpoint_id, exc)
                continue
            digest = bytes.fromhex(want[-1]) if want else b""
            yield checkpoint_id, _Base(tick, state, snapshots, digest)

    def _reexecute(self, parsed: ParsedJournal, base: _Base | None) -> Kernel:
        """A kernel holding `parsed`'s run at its last journalled tick, on freshly reset
        pools: `base` restored (or tick 1), then the journal's later ticks re-executed, each
        digest checked."""
        self.pools.forget_modules()
        self.pools.reset()
        self._check_pools()
        k = Kernel(
            parsed.config,
            self.pools,
            self.module_bytes,
            Journal(None),
            JournalInference(parsed.inference),
            run_id=parsed.run_id,
            record_start=False,
        )
        first = 1
        if base is not None:
            restore_into(k, base.state, base.snapshots)
            with k._queue:  # the journal's actions are enqueued tick by tick below
                k.pending.clear()
            first = base.tick + 1
        for t in range(first, parsed.last_tick + 1):
            try:
                reexecute_tick(k, parsed, t)
            except TickFailedError as exc:
                raise _status(exc) from None
            recorded = parsed.digests.get(t)
            if recorded is None or k.digest != recorded.digest_bytes:
                raise DeterminismError(f"resume: replay diverged at tick {t}")
        return k

    def _drain_wal(
        self, entries: list[tuple[int, str, bytes]]
    ) -> tuple[list[tuple[int, str, bytes]], int]:
        """The run's journal: telemetry's records, then those of the write-ahead file that
        telemetry does not hold (acknowledged before the crash, not shipped); and how many
        of those there are."""
        if self.data_dir is None or not entries:
            return entries, 0
        run_id = str(json.loads(entries[0][2]).get("run_id", ""))
        wal = read_wal(self.data_dir / WAL_DIR, run_id) if run_id else {}
        more = []
        i = len(entries)
        while i in wal:
            more.append(wal[i])
            i += 1
        if wal and not more and max(wal) >= len(entries):
            raise DeterminismError(
                f"resume: the write-ahead file of run {run_id} starts at record {min(wal)}, "
                f"telemetry holds {len(entries)}: records are missing"
            )
        if more:
            log.info("resume: %d journal records drained from the write-ahead file", len(more))
        return [*entries, *more], len(more)

    def note(self, kind: str, body: dict[str, Any]) -> None:
        """A record about the run (module registration) at the next tick."""
        k = self.kernel
        k.journal.append(k.tick + 1, Note(kind, body))
        k.journal.durable()  # before the registration is acknowledged

    # ---- control plane (validated now, applied at the next tick boundary) -------------
    def spawn(self, spawns: list[tuple[opb.AgentSpawn, str]]) -> int:
        with self._control:
            k = self.kernel
            w = k.world
            pending = k.pending_spawn_names()
            limits = self.pools.limits()
            cap_pages = min(lim.max_memory_pages_cap for lim in limits)
            max_args = min(MAX_ARGS, *(lim.max_args_bytes for lim in limits))
            names: set[str] = set()
            actions = []
            for spawn, module_hash in spawns:
                name = spawn.name
                if not valid_name(name):
                    raise InvalidRequestError(
                        f"bad agent name {quote(name)}: use [A-Za-z0-9_.:/-], 1..64 bytes"
                    )
                if name in w.by_name or name in pending:
                    raise AlreadyExistsError(f"agent {name!r} already exists in this run")
                if name in names:
                    raise AlreadyExistsError(f"agent {name!r} appears twice in the request")
                names.add(name)
                for topic in spawn.topics:
                    if not valid_name(topic):
                        raise InvalidRequestError(
                            f"bad topic {quote(topic)} for agent {name!r}: use "
                            f"[A-Za-z0-9_.:/-], 1..64 bytes"
                        )
                if len(spawn.args) > max_args:
                    raise InvalidRequestError(f"args of {name!r} exceed {max_args} bytes")
                merged = merge_limits(DEFAULT_LIMITS, k.config.default_limits, spawn.limits)
                if merged.max_memory_pages > cap_pages:
                    raise InvalidRequestError(
                        f"agent {name!r}: max_memory_pages {merged.max_memory_pages} is above "
                        f"the pools' cap of {cap_pages}"
                    )
                if merged.fuel_per_step > self.caps.max_fuel_per_step:
                    raise InvalidRequestError(
                        f"agent {name!r}: fuel_per_step {merged.fuel_per_step} is above the "
                        f"cap of {self.caps.max_fuel_per_step} (--max-fuel-per-step)"
                    )
                actions.append(Spawn.from_request(spawn, module_hash))
            self._check_capacity(k, len(actions))
            return k.enqueue(list(actions))

    def _check_capacity(self, k: Kernel, new: int) -> None:
        """Every pool can hold its agents once the queued spawns are applied."""
        w = k.world
        total = w.n + k.pending_spawns() + new
        if total > self.caps.max_agents_per_run:
            raise CapacityError(
                f"a run holds at most {self.caps.max_agents_per_run} agents "
                f"(--max-agents-per-run); this spawn would make {total}"
            )
        npools = len(self.pools)
        live = (w.state != TERMINATED) & ((w.state != FAULTED) | (w.restart_at >= 0))
        held = np.bincount(w.pool[live], minlength=npools)
        first = w.n + k.pending_spawns()
        seqs = np.arange(w.n + 1, first + new + 1)  # queued spawns and these
        held = held + np.bincount((seqs - 1) % npools, minlength=npools)
        for i, lim in enumerate(self.pools.limits()):
            if held[i] > lim.max_agents:
                raise CapacityError(
                    f"pool {self.pools.addresses[i]} holds at most {lim.max_agents} agents; "
                    f"this spawn would place {int(held[i])} there"
                )

    def _seq(self, name: str) -> int:
        seq = self.kernel.world.by_name.get(name)
        if seq is None:
            raise NotFoundError(f"no agent named {quote(name)}")
        return seq

    def lifecycle(self, verb: str, names: list[str]) -> tuple[int, list[int]]:
        cls = {"pause": Pause, "resume": Resume, "terminate": Terminate}[verb]
        with self._control:
            seqs = [self._seq(n) for n in names]
            return self.kernel.enqueue([cls(name=n) for n in names]), seqs

    def send(self, messages: list[opb.ExternalMessage]) -> int:
        with self._control:
            for msg in messages:
                if len(msg.payload) > MAX_PAYLOAD:
                    raise InvalidRequestError(
                        f"message to {quote(msg.to)} exceeds {MAX_PAYLOAD} bytes"
                    )
                if msg.to != "*" and not msg.to.startswith("#"):
                    self._seq(msg.to)
            return self.kernel.enqueue([ExternalMessage(m.to, bytes(m.payload)) for m in messages])

    # ---- ticks -------------------------------------------------------------------------
    def tick_once(self, ahead: bool = False) -> None:
        """Run the next tick. When a pool fails (gone, timed out, restarted), rebuild the
        pools and retry the tick, with bounded backoff, until `recovery_s` after the first
        failure; a failure during the rebuild itself (the pool dies again) is retried the
        same way. Past the deadline the tick fails UNAVAILABLE with what went wrong last,
        and the run stays as it was after its last committed tick: a later call rebuilds
        the pools and goes on. `ahead`: the caller asks for the next tick right after this
        one, so the kernel may start it before this one commits (`Kernel.step_tick`); not
        where an automatic checkpoint is due after this tick, since it captures the pools.
        A loop that stops early calls `settle`."""
        with self._tick_lock:
            k = self.kernel
            if not k.pools_dirty and not k.ahead:  # before the tick, so a run that stops
                self._auto_checkpoint(k)  # here never pays
            every = self.auto.every
            ahead = ahead and not (every and (k.tick + 1) % every == 0)
            deadline: float | None = None
            attempts = 0
            delay = 0.05
            while True:
                rebuilding = k.pools_dirty
                try:
                    if k.pools_dirty:
                        remaining = (
                            self.recovery_s if deadline is None else deadline - time.monotonic()
                        )
                        self._rebuild(k, max(remaining, 1.0) if self.recovery_s else 10.0, attempts)
                    rebuilding = False
                    k.step_tick(ahead)
                    break
                except (TickFailedError, PoolFailureError, ServiceError) as exc:
                    if (
                        not self.recovery_s
                        or not _recoverable(exc, rebuilding)
                        or _supervisor_gone()  # its pools are stopping too: no use waiting
                    ):
                        raise _failed(k, exc) from None
                    attempts += 1
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.recovery_s
                    k.pools_dirty = True
                    if now >= deadline:
                        raise TickFailedError(
                            k.tick + 1,
                            ServiceError(  # UNAVAILABLE
                                f"pool recovery gave up after {self.recovery_s:g} s and "
                                f"{attempts} attempts (pool_recovery_s); last error: "
                                f"{_cause(exc)}; the run is intact at tick {k.tick}: retry once "
                                f"the pools serve"
                            ),
                        ) from None
                    log.warning(
                        "%s %d failed (%s): rebuilding the pools (attempt %d)",
                        "rebuild for tick" if rebuilding else "tick",
                        k.tick + 1,
                        _cause(exc),
                        attempts,
                    )
                    if attempts > 1:  # the first retry is immediate: the pool may be back
                        time.sleep(min(delay, max(0.0, deadline - now)))
                        delay = min(delay * 2, 2.0)
            if self.on_commit is not None:
                self.on_commit(k)

    def _auto_checkpoint(self, k: Kernel) -> None:
        """Keep an automatic checkpoint of the last committed tick (see AutoCheckpoints),
        taken when the next tick is asked for. Never part of the journal or the digests; a
        failure only puts it off."""
        every = self.auto.every
        if (
            not every
            or not k.tick
            or k.tick % every
            or (self._auto and self._auto[-1].tick == k.tick)
        ):
            return
        live = int(k.world.live_mask().sum()) if k.world.n else 0
        if live * self._agent_bytes > self.auto.max_bytes:
            if not self._auto_warned:
                log.warning(
                    "automatic checkpoints skipped from tick %d: %d instances of "
                    "about %d bytes exceed %d bytes (a failed pool is rebuilt by "
                    "replay from the last one)",
                    k.tick,
                    live,
                    self._agent_bytes,
                    self.auto.max_bytes,
                )
                self._auto_warned = True
            return
        began = time.monotonic()
        directory = self._auto_dir()
        # Seconds it takes: the capture, and the write (on the writer's thread) if any.
        speed = 1 / self._auto_rate + (1 / self.writer.bytes_per_s if directory else 0.0)
        estimate = live * self._agent_bytes * speed
        if estimate > (began - self._auto_since) * self.auto.max_share:
            return  # too soon after the last one (or the run's start) for what it costs
        try:  # waits for inference results in flight: the next tick needs them anyway
            # (with inference_latency 1; with more it waits earlier than it would)
            state, snapshots = capture(k)
        except ServiceError as exc:  # a pool failed: the tick rebuilds it; the next in K
            log.warning("automatic checkpoint at tick %d failed (%s)", k.tick, exc)
            return
        self._auto_since = time.monotonic()
        if snapshots:
            size = sum(len(sn.memory) for sn in snapshots)
            self._auto_rate = size / max(self._auto_since - began, 1e-6)
            self._agent_bytes = max(1, size // len(snapshots))
            log.debug(
                "automatic checkpoint of tick %d captured: %d instances, %d bytes in %.3f s",
                k.tick,
                len(snapshots),
                size,
                self._auto_since - began,
            )
        self._auto.append(_Base(k.tick, state, snapshots, k.digest))
        del self._auto[: -max(1, self.auto.keep)]
        if directory is not None:  # in the background (a tick never waits for the disk)
            self.writer.save(directory, k.run_id, k.tick, state, snapshots, self.auto.keep)

    def _rebuild(self, k: Kernel, wait_s: float = 10.0, failures: int = 0) -> None:
        """Put the pools back into the committed state of `k`: wait for them, reset, restore
        the latest checkpoint (automatic or restored) and re-execute only the committed
        ticks after it into fresh instances, checking every digest. The kernel's own state
        is untouched: the failed tick was never committed. `failures`: how many failures
        this recovery went through (journalled with `run.recover`)."""
        self.pools.wait_all_serving(wait_s)
        self.pools.forget_modules()
        self.pools.reset()
        if self.faults is not None:
            self.faults.at("recovery", k.tick + 1)
        parsed = parse_journal([(r.tick, r.kind, r.payload) for r in k.journal.records])
        fresh = Kernel(
            parsed.config,
            self.pools,
            self.module_bytes,
            Journal(None),
            JournalInference(parsed.inference),
            run_id=k.run_id,
            record_start=False,
        )
        base = max(
            (b for b in [self._base, *self._auto] if b is not None and b.tick <= k.tick),
            key=lambda b: b.tick,
            default=None,
        )
        first = 1
        if base is not None:
            if base.tick and base.digest != k.digests[base.tick - 1]:
                raise DeterminismError(
                    f"pool rebuild: the checkpoint of tick {base.tick} is not of this run"
                )
            restore_into(fresh, base.state, base.snapshots)
            with fresh._queue:
                fresh.pending.clear()
            first = base.tick + 1
        log.info(
            "rebuilding the pools from tick %d: replaying ticks %d..%d", first - 1, first, k.tick
        )
        for t in range(first, k.tick + 1):
            reexecute_tick(fresh, parsed, t)
            if fresh.digest != k.digests[t - 1]:
                raise DeterminismError(f"pool rebuild: replay diverged at tick {t}")
        k.pools_dirty = False
        self.recoveries += 1
        self.replayed_ticks += k.tick - first + 1
        k.journal.append(
            k.tick + 1,
            Note(
                "run.recover",
                {
                    "replayed_ticks": k.tick - first + 1,
                    "from_tick": first - 1,
                    "failures": failures,
                },
            ),
        )

    def settle(self) -> None:
        """Finish the tick started ahead, if any: a loop that stopped early (its client
        went away), or an operation that needs the pools at the committed tick."""
        with self._tick_lock:
            if self.kernel.ahead:
                self.tick_once()

    def step(self, ticks: int) -> opb.RunStatus:
        for i in range(ticks):
            self.tick_once(ahead=i + 1 < ticks)
        self.kernel.journal.flush()
        return self.status()

    # ---- replay ------------------------------------------------------------------------
    def replay(
        self,
        parsed: ParsedJournal,
        verify_inference: bool,
        every: int,
        trace: tuple[int, int] | None = None,
    ) -> Iterator[opb.ReplayProgress]:
        """Re-execute a journal as a new run, comparing every tick. With `trace` (ticks
        from, to; 0 = unbounded) the progress messages also carry the messages delivered
        at those ticks."""
        pending: list[opb.DeliveredMessage] = []
        missing = sorted(parsed.modules() - self.known_modules())
        if missing:
            raise PreconditionError(
                f"register these modules before replaying: {', '.join(missing)}"
            )
        with self._tick_lock:
            self.kernel.abandon_ahead()
            self.kernel.journal.flush()
            self.pools.reset()
            bridge = self.inference if verify_inference else JournalInference(parsed.inference)
            self._base = None
            self._auto = []
            self.kernel = self._new_kernel(parsed.config, bridge)
            self._remember(resumable=False)
            self._purge_auto()
        total = parsed.last_tick
        for t in range(1, total + 1):
            with self._tick_lock:
                k = self.kernel
                if k.pools_dirty:
                    self._rebuild(k)
                if trace is not None and k.trace is None:
                    k.trace = []
                try:
                    reexecute_tick(k, parsed, t)
                except TickFailedError as exc:
                    raise _status(exc) from None
                if trace is not None and k.trace:
                    names = [m.name for m in k.world.metas]
                    pending += delivered_messages(k.trace, names, *trace)
                    k.trace.clear()
                expected = parsed.digests.get(t)
                if (
                    expected is None
                    or k.digest != expected.digest_bytes
                    or k.last_records != parsed.events.get(t, [])
                ):
                    k.journal.flush()
                    name, detail = divergence(k, parsed, t)
                    yield opb.ReplayProgress(
                        tick=t,
                        total_ticks=total,
                        done=True,
                        ok=False,
                        divergent_tick=t,
                        divergent_agent=name,
                        replay_run_id=k.run_id,
                        detail=detail,
                    )
                    return
            while len(pending) > TRACE_BATCH:  # bounded progress messages
                yield opb.ReplayProgress(
                    tick=t,
                    total_ticks=total,
                    ok=True,
                    replay_run_id=self.kernel.run_id,
                    messages=pending[:TRACE_BATCH],
                )
                del pending[:TRACE_BATCH]
            if t % every == 0:
                yield opb.ReplayProgress(
                    tick=t,
                    total_ticks=total,
                    ok=True,
                    replay_run_id=self.kernel.run_id,
                    messages=pending,
                )
                pending = []
        with self._tick_lock:
            self.kernel.journal.flush()
            yield opb.ReplayProgress(
                tick=total,
                total_ticks=total,
                done=True,
                ok=True,
                replay_run_id=self.kernel.run_id,
                detail=f"{total} tick digests identical",
                messages=pending,
            )

    # ---- checkpoints -----------------------------------------------------------------
    def _checkpoint_dir(self) -> Path:
        if self.data_dir is None:
            raise PreconditionError("checkpoints need a data directory (--data-dir)")
        return self.data_dir / CHECKPOINT_DIR

    def checkpoint(self, label: str) -> opb.CheckpointInfo:
        if len(label.encode()) > self.caps.max_label_bytes:
            raise InvalidRequestError(
                f"checkpoint label {quote(label)} is longer than {self.caps.max_label_bytes} bytes"
            )
        with self._tick_lock:
            directory = self._checkpoint_dir()
            try:  # the tick a running loop started ahead, as if it waited for it
                self.settle()
            except ServiceError as exc:  # the run stays at its last commit: captured below
                log.warning("the tick in flight before checkpoint %r failed: %s", label, exc)
            k = self.kernel
            if k.pools_dirty:
                self._rebuild(k)
            k.journal.flush()
            state, snapshots = capture(k)
            state["label"] = label
            checkpoint_id = f"{k.run_id}-t{k.tick}"
            size = save(directory, checkpoint_id, state, snapshots)
            k.journal.append(
                k.tick,
                Note(
                    "run.checkpoint",
                    {"id": checkpoint_id, "label": label, "agents": len(snapshots)},
                ),
            )
            return opb.CheckpointInfo(id=checkpoint_id, tick=k.tick, digest=k.digest, size=size)

    def restore(self, checkpoint_id: str) -> opb.RunStatus:
        with self._tick_lock:
            state, snapshots = load(self._checkpoint_dir(), checkpoint_id)
            self.kernel.abandon_ahead()
            missing = sorted(modules_of(state) - self.known_modules())
            if missing:
                raise PreconditionError(
                    f"register these modules before restoring: {', '.join(missing)}"
                )
            self.kernel.journal.flush()
            self.pools.reset()
            config = opb.RunConfig.FromString(bytes.fromhex(state["config"]))
            k = self._new_kernel(config)
            restore_into(k, state, snapshots)
            k.journal.append(
                k.tick,
                Note(
                    "run.restore",
                    {
                        "checkpoint": checkpoint_id,
                        "from_run": state["run_id"],
                        "digest": k.digest.hex(),
                    },
                ),
            )
            self._base = _Base(k.tick, state, snapshots, k.digest)
            self._auto = []
            self.kernel = k
            self._remember(resumable=False)
            self._purge_auto()
            return self.status()

    # ---- reads (no lock: the last committed tick) -------------------------------------
    def status(self) -> opb.RunStatus:
        return self.kernel.status(self.pools.addresses)

    def agents(self, states: set[int]) -> list[opb.AgentInfo]:
        k = self.kernel
        c = k.state
        w = c.world
        seqs = np.arange(1, w.n + 1)
        if states:
            seqs = seqs[np.isin(w.state, list(states))]
        return [k.agent_info(int(s), c) for s in seqs.tolist()]

    def agent(self, name: str) -> opb.AgentInfo:
        k = self.kernel
        c = k.state
        seq = c.world.by_name.get(name)
        if seq is None:
            raise NotFoundError(f"no agent named {quote(name)}")
        return k.agent_info(seq, c)

    def digests(self, first: int, last: int) -> list[cpb.TickDigest]:
        c = self.kernel.state
        first = max(1, first or 1)
        last = min(c.tick, last or c.tick)
        return [cpb.TickDigest(tick=t, digest=c.digests[t - 1]) for t in range(first, last + 1)]


def _supervisor_gone() -> bool:
    """This process was started by `lockstep up` (LOCKSTEP_SUPERVISOR_PID) and that
    supervisor is no longer its parent."""
    raw = os.environ.get("LOCKSTEP_SUPERVISOR_PID", "")
    return raw.isdigit() and os.getppid() != int(raw)


def _retryable(exc: TickFailedError) -> bool:
    cause = exc.cause
    return isinstance(cause, PoolFailureError) and cause.status.name in _RETRYABLE


def _recoverable(exc: Exception, rebuilding: bool) -> bool:
    """A failure that rebuilding the pools may cure: a pool gone, timed out or restarted,
    during the tick or during a rebuild (where a pool not serving yet is a ServiceError)."""
    if isinstance(exc, TickFailedError):
        return _retryable(exc)
    if not rebuilding:
        return False
    if isinstance(exc, PoolFailureError):
        return exc.status.name in _RETRYABLE
    return type(exc) is ServiceError


def _cause(exc: Exception) -> Exception:
    return exc.cause if isinstance(exc, TickFailedError) else exc


def _failed(k: Kernel, exc: Exception) -> Exception:
    """The error of a tick that is not retried (a refusal, no recovery configured)."""
    if isinstance(exc, TickFailedError):
        return _status(exc)
    if isinstance(exc, PoolFailureError):  # during a rebuild: the tick never ran
        return _status(TickFailedError(k.tick + 1, exc))
    return exc


def _status(exc: TickFailedError) -> TickFailedError:
    """The tick's status: UNAVAILABLE when a pool is gone or timed out, ABORTED when a
    pool refused (nothing was committed either way; a retry rebuilds the pools first)."""
    exc.code = "UNAVAILABLE" if _retryable(exc) else "ABORTED"  # type: ignore[misc]
    return exc
