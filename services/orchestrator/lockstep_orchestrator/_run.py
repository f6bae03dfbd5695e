"""One run: the agent table, the tick clock, canonical scheduling and routing, digests.

Nothing here iterates an unordered container to decide anything: agents are kept in spawn
order, actions in arrival order (spawns of one tick in name order), messages are keyed by
(send tick, sender spawn sequence, send sequence).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lockstep.common.v1 import common_pb2 as cpb
from lockstep.errors import ConfigError
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.wasm_pool.v1 import wasm_pool_pb2 as ppb
from lockstep_orchestrator._inference import InferenceBridge, InferResult
from lockstep_orchestrator._journal import Journal
from lockstep_orchestrator._pools import PoolSet
from lockstep_orchestrator._wire import (
    KIND_AGENT,
    KIND_EXTERNAL,
    KIND_INFER_ERROR,
    KIND_INFER_RESULT,
    KIND_UNDELIVERABLE,
    RECORD_HEADER,
    SEND_HEADER,
    batch_buffer,
    i64,
    lp,
    message_record,
    u32,
    u64,
    valid_name,
)

log = logging.getLogger("lockstep.orchestrator")

S = opb.AgentState
# Plain ints: protobuf enum attribute lookups are slow on the routing hot path.
RUNNING = int(S.AGENT_STATE_RUNNING)
IDLE = int(S.AGENT_STATE_IDLE)
PAUSED = int(S.AGENT_STATE_PAUSED)
FAULTED = int(S.AGENT_STATE_FAULTED)
TERMINATED = int(S.AGENT_STATE_TERMINATED)
ZERO_DIGEST = bytes(32)
MAX_INBOX = 65536  # messages waiting for one agent; more are reported undeliverable

DEFAULT_LIMITS = cpb.Limits(
    fuel_per_step=10_000_000, max_memory_pages=256, max_messages_per_step=1024,
    max_message_bytes=65536, max_logs_per_step=64,
)


def merge_limits(*layers: cpb.Limits) -> cpb.Limits:
    """Later layers override earlier ones field by field; zero means "not set"."""
    out = cpb.Limits()
    for layer in layers:
        for fd in cpb.Limits.DESCRIPTOR.fields:
            value = getattr(layer, fd.name)
            if value:
                setattr(out, fd.name, value)
    return out


@dataclass
class Agent:
    """The orchestrator's view of one agent."""

    seq: int
    name: str
    module_hash: str
    priority: int
    limits: cpb.Limits
    args: bytes
    restart: opb.RestartPolicy
    topics: list[str]
    pool: int
    spawn_tick: int
    state: int = RUNNING
    inbox: list[tuple[tuple[int, int, int], bytes]] = field(default_factory=list)
    ready_since: int | None = None
    restart_at: int | None = None
    steps: int = 0
    sent: int = 0
    received: int = 0
    fuel: int = 0
    restarts: int = 0
    last_fault: cpb.Fault | None = None
    name_b: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        self.name_b = self.name.encode()

    def live(self) -> bool:
        """Has an instance in a pool (or will have one after a pending restart)."""
        state = self.state
        return state != TERMINATED and (state != FAULTED or self.restart_at is not None)

    def info(self) -> opb.AgentInfo:
        return opb.AgentInfo(
            name=self.name, sequence=self.seq, module_hash=self.module_hash,
            priority=self.priority, state=self.state,  # type: ignore[arg-type]
            pool=self.pool, steps=self.steps,
            messages_sent=self.sent, messages_received=self.received, fuel_used=self.fuel,
            restarts=self.restarts, last_fault=self.last_fault, spawn_tick=self.spawn_tick,
            inbox=len(self.inbox), topics=self.topics,
        )


class TickHasher:
    """Feeds the tick digest, and a per-agent hash of what concerns each agent (journalled
    so that a replay can name the first agent whose tick differs)."""

    def __init__(self, previous: bytes, tick: int) -> None:
        self._h = hashlib.sha256(previous)
        self._h.update(b"LSTK" + i64(tick))
        self._agents: dict[int, Any] = {}

    def update(self, data: bytes, seq: int | None = None) -> None:
        self._h.update(data)
        if seq is not None:
            if seq not in self._agents:
                self._agents[seq] = hashlib.sha256()
            self._agents[seq].update(data)

    def digest(self) -> bytes:
        return self._h.digest()

    def agent_digests(self) -> bytes:
        """u32 seq + first 8 bytes of SHA-256, for each agent touched, in seq order."""
        return b"".join(u32(seq) + self._agents[seq].digest()[:8] for seq in sorted(self._agents))


@dataclass
class _Action:
    kind: str  # spawn | pause | resume | terminate | message
    payload: Any


class Run:
    """Mutable state of one run. Callers serialise access (one tick at a time)."""

    def __init__(self, config: opb.RunConfig, pools: PoolSet,
                 module_bytes: Callable[[str], bytes], journal: Journal,
                 inference: InferenceBridge, run_id: str = "") -> None:
        self.config = config
        self.pools = pools
        self.module_bytes = module_bytes
        self.journal = journal
        self.inference = inference
        self.latency = max(1, config.inference_latency or 1)
        self.tick = 0
        self.digest = ZERO_DIGEST
        self.digests: list[bytes] = []
        self.last_agent_digests = b""
        self.agents: dict[str, Agent] = {}
        self.by_seq: list[Agent] = []
        self.pending: list[_Action] = []
        self._pending_names: set[str] = set()
        self.counters = opb.RunCounters()
        # The run id names the run in the journal; it never enters a digest or an agent.
        self.run_id = run_id or secrets.token_hex(8)
        self._infer_due: dict[int, list[tuple[Agent, cpb.InferCall, Any]]] = {}
        journal.record("run.start", 0, {
            "run_id": self.run_id, "seed": config.seed,
            "max_steps_per_tick": config.max_steps_per_tick, "inference_latency": self.latency,
            "label": config.label, "pools": len(pools),
            "config": config.SerializeToString(deterministic=True).hex(),
        })

    # ---- control plane: queued now, applied at the next tick boundary ----------------

    def enqueue(self, kind: str, payload: Any) -> int:
        if kind == "spawn":
            self._pending_names.add(payload[0].name)
        self.pending.append(_Action(kind, payload))
        return self.tick + 1

    def validate_spawn(self, spawn: opb.AgentSpawn, module_hash: str) -> None:
        if not valid_name(spawn.name):
            raise ConfigError(f"bad agent name {spawn.name!r}: use [A-Za-z0-9_.:/-], 1..64 bytes")
        if spawn.name in self.agents or spawn.name in self._pending_names:
            raise ConfigError(f"agent {spawn.name!r} already exists in this run")
        for topic in spawn.topics:
            if not valid_name(topic):
                raise ConfigError(f"bad topic {topic!r} for agent {spawn.name!r}")
        if len(spawn.args) > 65536:
            raise ConfigError(f"args of {spawn.name!r} exceed 65536 bytes")

    def agent(self, name: str) -> Agent:
        try:
            return self.agents[name]
        except KeyError:
            raise KeyError(f"no agent named {name!r}") from None

    # ---- the tick ---------------------------------------------------------------------

    def step_tick(self) -> None:
        """Execute tick `self.tick + 1` completely."""
        t = self.tick + 1
        h = TickHasher(self.digest, t)
        sends: list[tuple[Agent, ppb.AgentStepResult]] = []
        host_seq = [0]

        def host_message(target: Agent, kind: int, sender: bytes, dest: bytes, corr: int,
                         payload: bytes, send_tick: int) -> None:
            # Host-made messages sort before agents' (sender sequence 0). They are bounded
            # by what agents and operators do, so MAX_INBOX does not apply: never dropped.
            host_seq[0] += 1
            target.inbox.append(((send_tick, 0, host_seq[0]),
                                 message_record(kind, sender, dest, send_tick, corr, payload)))

        self._apply_actions(t, h, sends, host_message)
        self._deliver_inference(t, h, host_message)
        self._restart_due(t, h, sends)

        stepped = self._select(t)
        h.update(b"STEP" + u32(len(stepped)))
        if stepped:
            requests: dict[int, ppb.StepBatchRequest] = {}
            for agent in stepped:
                agent.inbox.sort(key=lambda item: item[0])
                records = [rec for _k, rec in agent.inbox]
                inbox = batch_buffer(records) if records else b""
                h.update(u64(agent.seq) + lp(inbox), agent.seq)
                agent.received += len(records)
                self.counters.messages += len(records)
                agent.inbox = []
                agent.ready_since = None
                req = requests.setdefault(agent.pool, ppb.StepBatchRequest(tick=t))
                req.steps.add(handle=agent.seq, inbox=inbox, inbox_count=len(records))
            responses = self.pools.step(requests)
            by_handle = {r.handle: r for resp in responses.values() for r in resp.results}
            for agent in stepped:
                res = by_handle[agent.seq]
                agent.steps += 1
                self.counters.steps += 1
                self._absorb(agent, res, t, h, "step")
                sends.append((agent, res))
        self._route(t, h, sends, host_message)
        self.inference.flush()
        self.digest = h.digest()
        self.last_agent_digests = h.agent_digests()
        self.digests.append(self.digest)
        self.tick = t
        self.journal.record("tick.digest", t, {"digest": self.digest.hex(),
                                               "agents": self.last_agent_digests.hex()})
        self.journal.tick_done()

    def _apply_actions(self, t: int, h: Any, sends: list[tuple[Agent, ppb.AgentStepResult]],
                       host_message: Callable[..., None]) -> None:
        actions, self.pending = self.pending, []
        self._pending_names = set()
        spawns = sorted((a.payload for a in actions if a.kind == "spawn"),
                        key=lambda p: p[0].name)
        creates: dict[int, ppb.CreateAgentsRequest] = {}
        new_agents: list[Agent] = []
        for spawn, module_hash in spawns:
            seq = len(self.by_seq) + 1
            agent = Agent(
                seq=seq, name=spawn.name, module_hash=module_hash, priority=spawn.priority,
                limits=merge_limits(DEFAULT_LIMITS, self.config.default_limits, spawn.limits),
                args=spawn.args, restart=spawn.restart, topics=sorted(set(spawn.topics)),
                pool=(seq - 1) % len(self.pools), spawn_tick=t,
            )
            self.agents[agent.name] = agent
            self.by_seq.append(agent)
            new_agents.append(agent)
            h.update(b"SPWN" + u64(seq) + lp(agent.name_b) + lp(module_hash.encode())
                     + i64(agent.priority) + lp(agent.limits.SerializeToString(deterministic=True))
                     + lp(agent.args) + lp(",".join(agent.topics).encode()), seq)
            self.journal.record("control.spawn", t, {
                "seq": seq, "name": agent.name, "module": module_hash,
                "priority": agent.priority, "args": agent.args.hex(), "topics": agent.topics,
                "restart": {"max_restarts": spawn.restart.max_restarts,
                            "backoff_ticks": spawn.restart.backoff_ticks,
                            "backoff_multiplier": spawn.restart.backoff_multiplier,
                            "max_backoff_ticks": spawn.restart.max_backoff_ticks},
                "limits": {fd.name: getattr(agent.limits, fd.name)
                           for fd in cpb.Limits.DESCRIPTOR.fields},
            })
            self._add_create(creates, agent)
        if creates:
            self._create(t, h, creates, new_agents, sends)
        destroys: dict[int, ppb.DestroyAgentsRequest] = {}
        terminated: list[Agent] = []
        for action in actions:
            if action.kind == "spawn":
                continue
            if action.kind == "message":
                to, payload = action.payload
                h.update(b"EXT " + lp(to.encode()) + lp(payload))
                self.journal.record("control.message", t, {"to": to, "payload": payload.hex()})
                for target in self._targets(to, None):
                    host_message(target, KIND_EXTERNAL, b"", to.encode(), 0, payload, t - 1)
                continue
            subject = self.agents.get(action.payload)
            if subject is None:
                continue  # validated at request time; cannot happen
            h.update(action.kind.encode() + u64(subject.seq), subject.seq)
            self.journal.record(f"control.{action.kind}", t, {"name": subject.name})
            if action.kind == "pause" and subject.live():
                subject.state = PAUSED
            elif action.kind == "resume" and subject.state == PAUSED:
                subject.state = RUNNING
            elif action.kind == "terminate" and subject.state != TERMINATED:
                has_instance = subject.state != FAULTED
                subject.state = TERMINATED
                subject.restart_at = None
                if has_instance:
                    req = destroys.setdefault(subject.pool, ppb.DestroyAgentsRequest(
                        tick=t, call_shutdown=True))
                    req.handles.append(subject.seq)
                    terminated.append(subject)
        if destroys:
            results = self.pools.destroy(destroys)
            by_handle = {r.handle: r for resp in results.values() for r in resp.results}
            for agent in terminated:
                res = by_handle.get(agent.seq)
                if res is not None:
                    h.update(b"SHUT", agent.seq)
                    self._absorb(agent, res, t, h, "shutdown")
                    sends.append((agent, res))
                    agent.state = TERMINATED

    def _add_create(self, creates: dict[int, ppb.CreateAgentsRequest], agent: Agent) -> None:
        self.pools.ensure_module(agent.pool, agent.module_hash,
                                 self.module_bytes(agent.module_hash))
        req = creates.setdefault(agent.pool, ppb.CreateAgentsRequest(tick=self.tick + 1,
                                                                     seed=self.config.seed))
        req.agents.add(handle=agent.seq, name=agent.name, module_hash=agent.module_hash,
                       limits=agent.limits, args=agent.args)

    def _create(self, t: int, h: Any, creates: dict[int, ppb.CreateAgentsRequest],
                agents: list[Agent], sends: list[tuple[Agent, ppb.AgentStepResult]]) -> None:
        results = self.pools.create(creates)
        by_handle = {r.handle: r for resp in results.values() for r in resp.results}
        for agent in agents:
            res = by_handle[agent.seq]
            h.update(b"INIT", agent.seq)
            agent.state = RUNNING
            self._absorb(agent, res, t, h, "init")
            sends.append((agent, res))

    def _restart_due(self, t: int, h: Any, sends: list[tuple[Agent, ppb.AgentStepResult]]
                     ) -> None:
        due = [a for a in self.by_seq if a.restart_at is not None and a.restart_at <= t]
        if not due:
            return
        creates: dict[int, ppb.CreateAgentsRequest] = {}
        for agent in due:
            agent.restart_at = None
            agent.restarts += 1
            self.counters.restarts += 1
            h.update(b"RSTR" + u64(agent.seq), agent.seq)
            self.journal.record("agent.restart", t, {"name": agent.name, "n": agent.restarts})
            self._add_create(creates, agent)
        self._create(t, h, creates, due, sends)

    def _select(self, t: int) -> list[Agent]:
        ready = [a for a in self.by_seq
                 if a.state == RUNNING
                 or (a.state == IDLE and a.inbox)]
        # Agents deferred by max_steps_per_tick keep their place (FIFO) within a priority.
        ready.sort(key=lambda a: (-a.priority, a.ready_since if a.ready_since is not None else t,
                                  a.seq))
        limit = self.config.max_steps_per_tick
        if limit and len(ready) > limit:
            for agent in ready[limit:]:
                if agent.ready_since is None:
                    agent.ready_since = t
            ready = ready[:limit]
        return ready

    def _absorb(self, agent: Agent, res: ppb.AgentStepResult, t: int, h: Any, phase: str) -> None:
        """Fold one pool result into the agent's state and the digest."""
        agent.fuel += res.fuel_used
        self.counters.fuel_used += res.fuel_used
        seq = agent.seq
        h.update(phase.encode() + u64(seq) + i64(res.code) + u64(res.fuel_used)
                 + u32(res.send_count) + lp(res.sends) + u32(res.refused_calls), seq)
        for rec in res.logs:
            h.update(b"LOG " + i64(rec.level) + lp(rec.text.encode()), seq)
        for call in res.infers:
            h.update(b"INFR" + i64(call.request_id) + lp(call.model.encode()) + lp(call.input),
                     seq)
        if res.fault.kind:
            h.update(b"FALT" + u32(res.fault.kind) + lp(res.fault.detail.encode())
                     + lp(res.fault.entry_point.encode()), seq)
            self._fault(agent, res.fault, t)
            return
        if phase == "shutdown":
            return
        if res.code == 2:
            agent.state = TERMINATED
            self.journal.record("agent.done", t, {"name": agent.name})
            self.pools.destroy({agent.pool: ppb.DestroyAgentsRequest(
                tick=t, handles=[agent.seq], call_shutdown=False)})
        elif res.code == 1 and agent.state == RUNNING:
            agent.state = IDLE
        elif res.code != 1 and agent.state == IDLE:
            agent.state = RUNNING
        if agent.state in (RUNNING, IDLE):
            for call in res.infers:
                self._submit_inference(agent, call, t)

    def _fault(self, agent: Agent, fault: cpb.Fault, t: int) -> None:
        agent.state = FAULTED
        agent.last_fault = fault
        self.counters.faults += 1
        policy = agent.restart
        restart_in = None
        if agent.restarts < policy.max_restarts:
            wait = max(1, policy.backoff_ticks) * (max(1, policy.backoff_multiplier)
                                                   ** agent.restarts)
            if policy.max_backoff_ticks:
                wait = min(wait, policy.max_backoff_ticks)
            agent.restart_at = t + wait
            restart_in = wait
        self.journal.record("agent.fault", t, {
            "name": agent.name, "kind": cpb.FaultKind.Name(fault.kind), "detail": fault.detail,
            "entry_point": fault.entry_point, "restart_in_ticks": restart_in,
        })

    def _targets(self, dest: str, sender: Agent | None) -> list[Agent]:
        if dest == "*":
            return [a for a in self.by_seq if a.live() and a is not sender]
        if dest.startswith("#"):
            topic = dest[1:]
            return [a for a in self.by_seq if topic in a.topics and a.live() and a is not sender]
        agent = self.agents.get(dest)
        return [agent] if agent is not None and agent.live() else []

    def _route(self, t: int, h: Any, sends: list[tuple[Agent, ppb.AgentStepResult]],
               host_message: Callable[..., None]) -> None:
        """Deliver the tick's sends at t+1 in (sender spawn sequence, send sequence) order."""
        sends.sort(key=lambda item: item[0].seq)
        # Hot path: a send to a live agent by name. Anything else (broadcast, topics,
        # subscriptions, unknown names, full inboxes) takes the general path below.
        live = {a.name_b: a for a in self.by_seq if a.live()}
        header = RECORD_HEADER.pack
        for sender, res in sends:
            count = res.send_count
            if res.fault.kind or not count:
                continue
            sender.sent += count
            name_b, sseq = sender.name_b, sender.seq
            base = RECORD_HEADER.size + len(name_b)
            packed = res.sends
            off = 0
            for n in range(1, count + 1):
                plen, dlen = SEND_HEADER.unpack_from(packed, off)
                off += SEND_HEADER.size
                dest_b = packed[off:off + dlen]
                off += dlen
                payload = packed[off:off + plen]
                off += plen
                target = live.get(dest_b)
                if target is not None and len(target.inbox) < MAX_INBOX:
                    target.inbox.append(((t, sseq, n), b"".join((
                        header(base + dlen + plen, KIND_AGENT, 0, len(name_b), t, 0, plen,
                               dlen, 0), name_b, dest_b, payload))))
                else:
                    self._route_general(t, h, sender, n, dest_b, payload, host_message)
            if off != len(packed):
                raise ValueError(f"packed sends of {sender.name}: {len(packed) - off} "
                                 "trailing bytes")

    def _route_general(self, t: int, h: Any, sender: Agent, n: int, dest_b: bytes,
                       payload: bytes, host_message: Callable[..., None]) -> None:
        dest = dest_b.decode("utf-8", "replace")
        if dest in ("$subscribe", "$unsubscribe"):
            topic = payload.decode("utf-8", "replace")
            if valid_name(topic):
                topics = set(sender.topics)
                (topics.add if dest == "$subscribe" else topics.discard)(topic)
                sender.topics = sorted(topics)
            return
        record = message_record(KIND_AGENT, sender.name_b, dest_b, t, 0, payload)
        targets = self._targets(dest, sender)
        reason = ""
        if not targets and not dest.startswith(("*", "#")):
            known = self.agents.get(dest)
            reason = "unknown agent" if known is None else (
                "agent " + S.Name(known.state).removeprefix("AGENT_STATE_").lower())
        for target in targets:
            if len(target.inbox) >= MAX_INBOX:
                reason = f"inbox of {target.name} full"
            else:
                target.inbox.append(((t, sender.seq, n), record))
        if reason:
            self.counters.undeliverable += 1
            h.update(b"UNDL" + u64(sender.seq) + u32(n) + lp(reason.encode()), sender.seq)
            if sender.live():
                host_message(sender, KIND_UNDELIVERABLE, b"", dest_b, 0, reason.encode(), t)

    # ---- inference ----------------------------------------------------------------------

    def _infer_key(self, agent: Agent, call: cpb.InferCall) -> str:
        # The key seeds sampling when the input gives no seed: it must be the same on replay.
        return f"{self.config.seed}/{agent.seq}/{call.request_id}"

    def _submit_inference(self, agent: Agent, call: cpb.InferCall, t: int) -> None:
        fut = self.inference.submit(self._infer_key(agent, call), call.model, call.input)
        self._infer_due.setdefault(t + self.latency, []).append((agent, call, fut))

    def _deliver_inference(self, t: int, h: Any, host_message: Callable[..., None]) -> None:
        due = self._infer_due.pop(t, [])
        for agent, call, fut in sorted(due, key=lambda d: (d[0].seq, d[1].request_id)):
            # The barrier at t+L: block here only if the result is not back yet.
            result = self.inference.result(fut)
            self.counters.inferences += 1
            kind = KIND_INFER_RESULT if result.error == "" else KIND_INFER_ERROR
            payload = result.output if result.error == "" else result.error.encode()
            h.update(b"IRES" + u64(agent.seq) + i64(call.request_id) + u32(kind) + lp(payload),
                     agent.seq)
            self.journal.record("infer.result", t, {
                "agent": agent.name, "request_id": call.request_id, "model": call.model,
                "key": self._infer_key(agent, call),
                "input_sha256": hashlib.sha256(call.input).hexdigest(),
                "output": payload.hex(), "error": result.error, "provider": result.provider,
                "model_version": result.model_version,
            })
            if agent.live():
                host_message(agent, kind, call.model.encode(), agent.name_b, call.request_id,
                             payload, t - 1)

    # ---- checkpoints --------------------------------------------------------------------

    def infer_due(self) -> dict[int, list[tuple[Agent, cpb.InferCall, InferResult]]]:
        """Inference results still to be delivered, waiting for any still in flight."""
        self.inference.flush()
        return {tick: [(agent, call, self.inference.result(handle))
                       for agent, call, handle in items]
                for tick, items in self._infer_due.items()}

    def take_infer_due(self, other: Run, from_tick: int) -> None:
        """Adopt `other`'s in-flight inference requests due at `from_tick` or later (same
        agents by spawn sequence): used when a run is rebuilt after a pool failure."""
        for tick, items in other._infer_due.items():
            if tick >= from_tick:
                self._infer_due[tick] = [(self.by_seq[a.seq - 1], call, handle)
                                         for a, call, handle in items]

    def restore_infer_due(self, tick: int,
                          items: list[tuple[Agent, cpb.InferCall, InferResult]]) -> None:
        self._infer_due[tick] = list(items)

    # ---- queries ------------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing can change without outside input."""
        if self.pending or self._infer_due:
            return False
        for a in self.by_seq:
            if a.state == RUNNING or a.restart_at is not None:
                return False
            if a.state == IDLE and a.inbox:
                return False
        return True

    def status(self) -> opb.RunStatus:
        counts: dict[int, int] = {}
        for a in self.by_seq:
            counts[a.state] = counts.get(a.state, 0) + 1
        by_state = {S.Name(state).removeprefix("AGENT_STATE_").lower(): n
                    for state, n in sorted(counts.items())}
        return opb.RunStatus(
            run_id=self.run_id, tick=self.tick, digest=self.digest, agents_by_state=by_state,
            counters=self.counters, config=self.config, pools=self.pools.addresses,
            idle=self.idle(),
        )
