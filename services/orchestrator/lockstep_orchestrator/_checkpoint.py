"""Checkpoints: the orchestrator's run state plus every agent's full instance state.

A checkpoint is taken at a tick boundary. It holds the run (config, clock, digest chain,
counters, pending control actions, inference results due later) and every agent (table
entry, inbox, and for agents with a live instance the pool snapshot: linear memory and
every mutable global). Restoring it, into the same or a different number of pools, and
continuing gives the same digests as a run that never stopped.

Files: `<data_dir>/checkpoints/<id>.json` (run state) and `<id>.snap` (pool snapshots as
length-prefixed `AgentSnapshot` messages).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from lockstep.common.v1 import common_pb2 as cpb
from lockstep.errors import ConfigError
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.wasm_pool.v1 import wasm_pool_pb2 as ppb
from lockstep_orchestrator._inference import InferResult
from lockstep_orchestrator._run import FAULTED, TERMINATED, Agent, Run

FORMAT = 1
_LEN = struct.Struct("<I")


def _has_instance(agent: Agent) -> bool:
    return agent.state not in (TERMINATED, FAULTED)


def _agent_state(a: Agent) -> dict[str, Any]:
    return {
        "seq": a.seq, "name": a.name, "module_hash": a.module_hash, "priority": a.priority,
        "limits": a.limits.SerializeToString(deterministic=True).hex(), "args": a.args.hex(),
        "restart": a.restart.SerializeToString(deterministic=True).hex(), "topics": a.topics,
        "spawn_tick": a.spawn_tick, "state": a.state,
        "inbox": [[k[0], k[1], k[2], rec.hex()] for k, rec in a.inbox],
        "ready_since": a.ready_since, "restart_at": a.restart_at, "steps": a.steps,
        "sent": a.sent, "received": a.received, "fuel": a.fuel, "restarts": a.restarts,
        "last_fault": (a.last_fault.SerializeToString(deterministic=True).hex()
                       if a.last_fault is not None else None),
    }


def _agent_from(d: dict[str, Any], pool: int) -> Agent:
    agent = Agent(
        seq=d["seq"], name=d["name"], module_hash=d["module_hash"], priority=d["priority"],
        limits=cpb.Limits.FromString(bytes.fromhex(d["limits"])),
        args=bytes.fromhex(d["args"]),
        restart=opb.RestartPolicy.FromString(bytes.fromhex(d["restart"])),
        topics=list(d["topics"]), pool=pool, spawn_tick=d["spawn_tick"], state=d["state"],
        inbox=[((t, s, n), bytes.fromhex(rec)) for t, s, n, rec in d["inbox"]],
        ready_since=d["ready_since"], restart_at=d["restart_at"], steps=d["steps"],
        sent=d["sent"], received=d["received"], fuel=d["fuel"], restarts=d["restarts"],
    )
    if d["last_fault"] is not None:
        agent.last_fault = cpb.Fault.FromString(bytes.fromhex(d["last_fault"]))
    return agent


def _action_state(kind: str, payload: Any) -> dict[str, Any]:
    if kind == "spawn":
        spawn, module_hash = payload
        return {"kind": kind, "spawn": spawn.SerializeToString(deterministic=True).hex(),
                "module": module_hash}
    if kind == "message":
        return {"kind": kind, "to": payload[0], "payload": payload[1].hex()}
    return {"kind": kind, "name": payload}


def _action_from(d: dict[str, Any]) -> tuple[str, Any]:
    kind = d["kind"]
    if kind == "spawn":
        return kind, (opb.AgentSpawn.FromString(bytes.fromhex(d["spawn"])), d["module"])
    if kind == "message":
        return kind, (d["to"], bytes.fromhex(d["payload"]))
    return kind, d["name"]


def capture(run: Run, label: str) -> tuple[dict[str, Any], list[ppb.AgentSnapshot]]:
    """The run's state and its agents' snapshots (call at a tick boundary)."""
    due = {}
    for tick, items in sorted(run.infer_due().items()):
        due[str(tick)] = [
            {"seq": agent.seq, "call": call.SerializeToString(deterministic=True).hex(),
             "output": result.output.hex(), "error": result.error,
             "provider": result.provider, "model_version": result.model_version}
            for agent, call, result in items]
    state = {
        "format": FORMAT, "label": label, "run_id": run.run_id,
        "config": run.config.SerializeToString(deterministic=True).hex(), "tick": run.tick,
        "digests": [d.hex() for d in run.digests],
        "last_agent_digests": run.last_agent_digests.hex(),
        "counters": run.counters.SerializeToString(deterministic=True).hex(),
        "agents": [_agent_state(a) for a in run.by_seq],
        "pending": [_action_state(a.kind, a.payload) for a in run.pending],
        "infer_due": due,
    }
    by_pool: dict[int, list[int]] = {}
    for agent in run.by_seq:
        if _has_instance(agent):
            by_pool.setdefault(agent.pool, []).append(agent.seq)
    snapshots = [snap for pool, handles in sorted(by_pool.items())
                 for snap in run.pools.snapshot(pool, handles)]
    return state, snapshots


def save(directory: Path, checkpoint_id: str, state: dict[str, Any],
         snapshots: list[ppb.AgentSnapshot]) -> int:
    """Write the two files; returns their total size."""
    directory.mkdir(parents=True, exist_ok=True)
    data = json.dumps(state, sort_keys=True).encode()
    (directory / f"{checkpoint_id}.json").write_bytes(data)
    with (directory / f"{checkpoint_id}.snap").open("wb") as fh:
        size = 0
        for snap in snapshots:
            blob = snap.SerializeToString(deterministic=True)
            fh.write(_LEN.pack(len(blob)) + blob)
            size += _LEN.size + len(blob)
    return len(data) + size


def load(directory: Path, checkpoint_id: str) -> tuple[dict[str, Any], list[ppb.AgentSnapshot]]:
    if not checkpoint_id or "/" in checkpoint_id or checkpoint_id.startswith("."):
        raise ConfigError(f"bad checkpoint id {checkpoint_id!r}")
    try:
        state = json.loads((directory / f"{checkpoint_id}.json").read_bytes())
        blob = (directory / f"{checkpoint_id}.snap").read_bytes()
    except FileNotFoundError:
        raise KeyError(f"no checkpoint {checkpoint_id!r}") from None
    if state.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {checkpoint_id} has format {state.get('format')}, "
                          f"this orchestrator reads {FORMAT}")
    snapshots, off = [], 0
    while off < len(blob):
        (n,) = _LEN.unpack_from(blob, off)
        snapshots.append(ppb.AgentSnapshot.FromString(blob[off + _LEN.size:off + _LEN.size + n]))
        off += _LEN.size + n
    return state, snapshots


def restore_into(run: Run, state: dict[str, Any], snapshots: list[ppb.AgentSnapshot]) -> None:
    """Fill a fresh Run (made with the checkpoint's config) and recreate the instances.

    Agents are placed over the pools the orchestrator has now (placement never enters a
    digest), so a checkpoint restores into any number of pools."""
    run.tick = state["tick"]
    run.digests = [bytes.fromhex(d) for d in state["digests"]]
    run.digest = run.digests[-1] if run.digests else run.digest
    run.last_agent_digests = bytes.fromhex(state["last_agent_digests"])
    run.counters.CopyFrom(opb.RunCounters.FromString(bytes.fromhex(state["counters"])))
    npools = len(run.pools)
    for d in state["agents"]:
        agent = _agent_from(d, (d["seq"] - 1) % npools)
        run.agents[agent.name] = agent
        run.by_seq.append(agent)
    for d in state["pending"]:
        run.enqueue(*_action_from(d))
    for tick, items in state["infer_due"].items():
        run.restore_infer_due(int(tick), [
            (run.by_seq[i["seq"] - 1], cpb.InferCall.FromString(bytes.fromhex(i["call"])),
             InferResult(bytes.fromhex(i["output"]), i["error"], i["provider"],
                         i["model_version"])) for i in items])
    by_pool: dict[int, list[ppb.AgentSnapshot]] = {}
    for snap in snapshots:
        agent = run.by_seq[snap.spec.handle - 1]
        run.pools.ensure_module(agent.pool, agent.module_hash, run.module_bytes(agent.module_hash))
        by_pool.setdefault(agent.pool, []).append(snap)
    for pool, snaps in sorted(by_pool.items()):
        run.pools.restore(pool, snaps)
