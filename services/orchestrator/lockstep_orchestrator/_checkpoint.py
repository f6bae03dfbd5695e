"""Checkpoints: the kernel's committed state plus every agent's full instance state.

A checkpoint is taken at a tick boundary. It holds the run (config, clock, digest chain,
counters, queued control actions, inference results due later), the agent table (its
columns and each agent's metadata), the mail waiting for delivery, and for agents with a
live instance the pool snapshot (linear memory and every mutable global). Restoring it,
into the same or a different number of pools, and continuing gives the same digests as a
run that never stopped.

Files: `<data_dir>/checkpoints/<id>.json` (run state, format 2, with the SHA-256 and size
of the snapshot file) and `<id>.snap` (pool snapshots as length-prefixed `AgentSnapshot`
messages). Both are written atomically (a temporary file, fsync, rename; the `.snap` first,
so a checkpoint exists once its `.json` does), mode 0600 in a 0700 directory; a damaged
pair is refused on load (`CheckpointDamagedError`).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from lockstep.errors import InvalidRequestError, NotFoundError, PreconditionError, quote
from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as ppb
from lockstep_orchestrator._events import Action, journal_kind, parse_event
from lockstep_orchestrator._inference import InferResult
from lockstep_orchestrator._journal import Journal
from lockstep_orchestrator._kernel import Committed, Kernel, _Due
from lockstep_orchestrator._world import COLUMNS, FAULTED, TERMINATED, AgentMeta, Mail, World

FORMAT = 2
_LEN = struct.Struct("<I")
_SAVED_COLUMNS = [c for c in COLUMNS if c not in ("pool", "name_off", "name_len")]
_MAIL = ("target", "tick", "sseq", "nseq", "arrival", "off", "length")


class CheckpointNotFoundError(NotFoundError):
    """No checkpoint with that id."""


class CheckpointDamagedError(PreconditionError):
    """A checkpoint's files are unreadable, truncated or do not match each other."""


def _hex(msg: Any) -> str:
    return str(msg.SerializeToString(deterministic=True).hex())


def capture(kernel: Kernel) -> tuple[dict[str, Any], list[ppb.AgentSnapshot]]:
    """The committed state of a run and its instances' snapshots."""
    c = kernel.state
    w = c.world
    due = {
        str(tick): [
            {
                "seq": d.seq,
                "request_id": d.request_id,
                "model": d.model,
                "input": d.input.hex(),
                "output": r.output.hex(),
                "error": r.error,
                "provider": r.provider,
                "model_version": r.model_version,
            }
            for d, r in ((d, kernel.inference.result(d.handle)) for d in items)
        ]
        for tick, items in sorted(kernel.infer_due.items())
    }
    with kernel._queue:
        pending = list(kernel.pending)
    state = {
        "format": FORMAT,
        "run_id": kernel.run_id,
        "config": _hex(kernel.config),
        "tick": c.tick,
        "digests": [d.hex() for d in c.digests[: c.tick]],
        "agent_checks": c.agent_checks.hex(),
        "counters": _hex(c.counters),
        "columns": {name: getattr(w, name).tolist() for name in _SAVED_COLUMNS},
        "agents": [
            {
                "name": m.name,
                "module_hash": m.module,
                "limits": _hex(m.limits),
                "args": m.args.hex(),
                "restart": _hex(m.restart),
                "topics": list(m.topics),
                "last_fault": _hex(m.last_fault) if m.last_fault is not None else None,
            }
            for m in w.metas
        ],
        "mail": {
            **{f: getattr(w.mail, f).tolist() for f in _MAIL},
            "buf": w.mail.buf.hex(),
            "canonical": w.mail.canonical,
        },
        "arrival": w.arrival,
        "pending": [[journal_kind(a), Journal.payload(a).decode()] for a in pending],
        "infer_due": due,
    }
    by_pool: dict[int, list[int]] = {}
    for i in np.flatnonzero((w.state != TERMINATED) & (w.state != FAULTED)).tolist():
        by_pool.setdefault(int(w.pool[i]), []).append(i + 1)
    snapshots = [
        snap for pool, seqs in sorted(by_pool.items()) for snap in kernel.pools.snapshot(pool, seqs)
    ]
    return state, snapshots


def save(
    directory: Path, checkpoint_id: str, state: dict[str, Any], snapshots: list[ppb.AgentSnapshot]
) -> int:
    """Write the two files atomically (see the module); returns their total size."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)  # every agent's memory
    digest = hashlib.sha256()
    size = 0
    with _Atomic(directory / f"{checkpoint_id}.snap") as fh:
        for snap in snapshots:
            blob = snap.SerializeToString(deterministic=True)
            for part in (_LEN.pack(len(blob)), blob):
                fh.write(part)
                digest.update(part)
            size += _LEN.size + len(blob)
    data = json.dumps(
        {**state, "snap_sha256": digest.hexdigest(), "snap_bytes": size}, sort_keys=True
    ).encode()
    with _Atomic(directory / f"{checkpoint_id}.json") as fh:
        fh.write(data)
    fd = os.open(directory, os.O_RDONLY)
    try:  # the renames are durable too
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(data) + size


class _Atomic:
    """A file only the owner can read (mode 0600), written to `<path>.tmp`, fsynced and
    renamed over `path` when the block succeeds (removed when it fails)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")

    def __enter__(self) -> Any:
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.fh = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, kind: object, *_exc: object) -> None:
        try:
            if kind is None:
                self.fh.flush()
                os.fsync(self.fh.fileno())
        finally:
            self.fh.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _check_id(checkpoint_id: str) -> None:
    if (
        not checkpoint_id
        or len(checkpoint_id) > 128
        or "/" in checkpoint_id
        or checkpoint_id.startswith(".")
    ):
        raise InvalidRequestError(f"bad checkpoint id {quote(checkpoint_id)}")


def load_state(directory: Path, checkpoint_id: str) -> dict[str, Any]:
    """A checkpoint's run state (its `.json`), without reading the snapshots."""
    _check_id(checkpoint_id)
    try:
        raw = (directory / f"{checkpoint_id}.json").read_bytes()
    except FileNotFoundError:
        raise CheckpointNotFoundError(f"no checkpoint {quote(checkpoint_id)}") from None
    try:
        state = json.loads(raw)
    except ValueError:
        raise CheckpointDamagedError(f"checkpoint {checkpoint_id}: its .json is not JSON") from None
    if not isinstance(state, dict):
        raise CheckpointDamagedError(f"checkpoint {checkpoint_id}: its .json is not an object")
    if state.get("format") != FORMAT:
        raise PreconditionError(
            f"checkpoint {checkpoint_id} has format {state.get('format')}, "
            f"this orchestrator reads {FORMAT}"
        )
    return state


def load_snapshots(
    directory: Path, checkpoint_id: str, state: dict[str, Any]
) -> list[ppb.AgentSnapshot]:
    """The instances' snapshots of a checkpoint whose state is `state`, checked against the
    size and SHA-256 the state names (checkpoints written before those were kept: unchecked)."""
    try:
        blob = (directory / f"{checkpoint_id}.snap").read_bytes()
    except FileNotFoundError:
        raise CheckpointDamagedError(f"checkpoint {checkpoint_id}: its .snap is missing") from None
    want = state.get("snap_sha256")
    if want is not None and (
        len(blob) != state.get("snap_bytes") or hashlib.sha256(blob).hexdigest() != want
    ):
        raise CheckpointDamagedError(
            f"checkpoint {checkpoint_id}: its .snap does not match its .json "
            f"({len(blob)} bytes, {state.get('snap_bytes')} expected)"
        )
    snapshots, off = [], 0
    try:
        while off < len(blob):
            (n,) = _LEN.unpack_from(blob, off)
            end = off + _LEN.size + n
            if end > len(blob):
                raise CheckpointDamagedError(f"checkpoint {checkpoint_id}: its .snap is truncated")
            snapshots.append(ppb.AgentSnapshot.FromString(blob[off + _LEN.size : end]))
            off = end
    except (struct.error, DecodeError):
        raise CheckpointDamagedError(f"checkpoint {checkpoint_id}: its .snap is garbled") from None
    return snapshots


def load(directory: Path, checkpoint_id: str) -> tuple[dict[str, Any], list[ppb.AgentSnapshot]]:
    state = load_state(directory, checkpoint_id)
    return state, load_snapshots(directory, checkpoint_id, state)


def modules_of(state: dict[str, Any]) -> set[str]:
    return {a["module_hash"] for a in state["agents"]}


def restore_into(kernel: Kernel, state: dict[str, Any], snapshots: list[ppb.AgentSnapshot]) -> None:
    """Fill a fresh kernel (made with the checkpoint's config) and recreate the instances.

    Agents are placed over the pools the orchestrator has now (placement never enters a
    digest), so a checkpoint restores into any number of pools."""
    npools = len(kernel.pools)
    w = World()
    cols = state["columns"]
    metas = [
        AgentMeta(
            a["name"],
            a["module_hash"],
            cpb.Limits.FromString(bytes.fromhex(a["limits"])),
            bytes.fromhex(a["args"]),
            opb.RestartPolicy.FromString(bytes.fromhex(a["restart"])),
            tuple(a["topics"]),
            cpb.Fault.FromString(bytes.fromhex(a["last_fault"]))
            if a["last_fault"] is not None
            else None,
        )
        for a in state["agents"]
    ]
    n = len(metas)
    w.add_agents(metas, cols["priority"], [i % npools for i in range(n)], 0)
    for name in _SAVED_COLUMNS:
        getattr(w, name)[:] = np.asarray(cols[name], dtype=COLUMNS[name])
    m = state["mail"]
    cols = [np.asarray(m[f], dtype=np.int64) for f in _MAIL]
    w.mail = Mail(
        cols[0],
        cols[1],
        cols[2],
        cols[3],
        cols[4],
        cols[5],
        cols[6],
        buf=bytes.fromhex(m["buf"]),
        canonical=bool(m["canonical"]),
    )
    w.arrival = int(state["arrival"])
    digests = [bytes.fromhex(d) for d in state["digests"]]
    tick = int(state["tick"])
    kernel.state = Committed(
        tick,
        digests[-1] if digests else bytes(32),
        digests,
        w,
        opb.RunCounters.FromString(bytes.fromhex(state["counters"])),
        bytes.fromhex(state["agent_checks"]),
    )
    actions = []
    for kind, body in state["pending"]:
        event = parse_event(tick, kind, body.encode())
        assert isinstance(event, Action)
        actions.append(event)
    kernel.enqueue(actions)
    for t, items in state["infer_due"].items():
        kernel.infer_due[int(t)] = [
            _Due(
                i["seq"],
                i["request_id"],
                i["model"],
                bytes.fromhex(i["input"]),
                InferResult(
                    bytes.fromhex(i["output"]), i["error"], i["provider"], i["model_version"]
                ),
            )
            for i in items
        ]
    by_pool: dict[int, list[ppb.AgentSnapshot]] = {}
    for snap in snapshots:
        seq = snap.spec.sequence
        pool = int(w.pool[seq - 1])
        module = w.metas[seq - 1].module
        kernel.pools.ensure_module(pool, module, kernel.module_bytes(module))
        by_pool.setdefault(pool, []).append(snap)
    for pool, snaps in sorted(by_pool.items()):
        kernel.pools.restore(pool, snaps)
