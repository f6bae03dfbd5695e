"""The world of a run: the agent table as numpy columns, and the mail waiting for delivery.

Row i of every column is the agent with spawn sequence i + 1. Hot data (state, priority,
counters, inbox sizes, placement) are numpy columns; what only the slow paths read (name,
module, limits, args, restart policy, topics, last fault) is one immutable `AgentMeta` per
agent. A tick works on a `fork()` and the run commits it whole, so the committed world is
never written while a tick runs: reads answer from it without waiting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator import _native

S = opb.AgentState
RUNNING = int(S.AGENT_STATE_RUNNING)
IDLE = int(S.AGENT_STATE_IDLE)
PAUSED = int(S.AGENT_STATE_PAUSED)
FAULTED = int(S.AGENT_STATE_FAULTED)
TERMINATED = int(S.AGENT_STATE_TERMINATED)

I64 = npt.NDArray[np.int64]
COLUMNS: dict[str, type] = {
    "state": np.int8,
    "priority": np.int64,
    "pool": np.int32,
    "ready_since": np.int64,
    "restart_at": np.int64,
    "spawn_tick": np.int64,
    "steps": np.int64,
    "sent": np.int64,
    "received": np.int64,
    "fuel": np.int64,
    "restarts": np.int64,
    "inbox_n": np.int64,
    "inbox_bytes": np.int64,
    "name_off": np.int64,
    "name_len": np.int64,
}
NONE = -1  # ready_since / restart_at "not set"
MAX_LOOKUP = 64  # longest destination name the columnar path looks up


@dataclass(frozen=True)
class AgentMeta:
    """What the slow paths need about one agent (replaced, never mutated)."""

    name: str
    module: str
    limits: cpb.Limits
    args: bytes
    restart: opb.RestartPolicy
    topics: tuple[str, ...] = ()
    last_fault: cpb.Fault | None = None
    name_b: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name_b", self.name.encode())


@dataclass(frozen=True)
class Mail:
    """Messages waiting for delivery: one row each, records back to back in `buf`. Canonical
    delivery order is (send tick, sender sequence, send sequence, arrival); `canonical`
    says the rows already are in that order."""

    target: I64
    tick: I64
    sseq: I64
    nseq: I64
    arrival: I64
    off: I64
    length: I64
    buf: bytes
    canonical: bool = True

    @staticmethod
    def empty() -> Mail:
        z = np.zeros(0, dtype=np.int64)
        return Mail(z, z, z, z, z, z, z, b"")

    def __len__(self) -> int:
        return len(self.target)

    @staticmethod
    def concat(parts: list[Mail]) -> Mail:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Mail.empty()
        if len(parts) == 1:
            return parts[0]
        bases = np.cumsum([0] + [len(p.buf) for p in parts[:-1]])
        cols = [
            np.concatenate([getattr(p, f) for p in parts])
            for f in ("target", "tick", "sseq", "nseq", "arrival")
        ]
        return Mail(
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            cols[4],
            off=np.concatenate([p.off + b for p, b in zip(parts, bases, strict=True)]),
            length=np.concatenate([p.length for p in parts]),
            buf=b"".join(p.buf for p in parts),
            canonical=False,
        )

    def take(self, rows: I64) -> Mail:
        """The given rows, same buffer."""
        return Mail(
            self.target[rows],
            self.tick[rows],
            self.sseq[rows],
            self.nseq[rows],
            self.arrival[rows],
            self.off[rows],
            self.length[rows],
            self.buf,
            self.canonical,
        )

    def canonical_order(self, first: I64 | None = None) -> I64:
        """Row order by (first key, canonical key): `first` groups rows (e.g. by position in
        the step order) and stays the primary key."""
        if self.canonical:
            if first is None:
                return np.arange(len(self), dtype=np.int64)
            return np.argsort(first, kind="stable")
        keys = [self.arrival, self.nseq, self.sseq, self.tick]
        if first is not None:
            keys.append(first)
        return np.lexsort(keys)


class World:
    """The agent table and mail of one run at one tick boundary."""

    def __init__(self) -> None:
        self.n = 0
        for name, dtype in COLUMNS.items():
            setattr(self, name, np.zeros(0, dtype=dtype))
        self.metas: list[AgentMeta] = []
        self.by_name: dict[str, int] = {}
        self.names_buf = b""
        self.mail = Mail.empty()
        self.arrival = 0  # the next message's arrival number
        self._name_index: dict[int, tuple[np.ndarray, I64]] = {}
        self._name_table: _native.NameTable | None = None
        self._own_metas = True
        self._own_names = True

    # numpy columns (declared for type checkers)
    state: npt.NDArray[np.int8]
    priority: I64
    pool: npt.NDArray[np.int32]
    ready_since: I64
    restart_at: I64
    spawn_tick: I64
    steps: I64
    sent: I64
    received: I64
    fuel: I64
    restarts: I64
    inbox_n: I64
    inbox_bytes: I64
    name_off: I64
    name_len: I64

    def fork(self) -> World:
        """A copy a tick may change; the original stays as it is."""
        w = World.__new__(World)
        w.n = self.n
        for name in COLUMNS:
            setattr(w, name, getattr(self, name).copy())
        w.metas = self.metas
        w.by_name = self.by_name
        w.names_buf = self.names_buf
        w.mail = self.mail
        w.arrival = self.arrival
        w._name_index = self._name_index
        w._name_table = self._name_table
        w._own_metas = False
        w._own_names = False
        return w

    # ---- changes (copy on write for the shared Python parts) -------------------------
    def set_meta(self, seq: int, **changes: object) -> None:
        if not self._own_metas:
            self.metas = list(self.metas)
            self._own_metas = True
        self.metas[seq - 1] = dataclasses.replace(self.metas[seq - 1], **changes)  # type: ignore[arg-type]

    def add_agents(
        self, metas: list[AgentMeta], priority: list[int], pool: list[int], tick: int
    ) -> None:
        """Append agents (RUNNING, spawned at `tick`), sequences n+1..n+k."""
        k = len(metas)
        if not k:
            return
        if not self._own_metas:
            self.metas = list(self.metas)
            self._own_metas = True
        if not self._own_names:
            self.by_name = dict(self.by_name)
            self._own_names = True
        for name, dtype in COLUMNS.items():
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(k, dtype=dtype)]))
        lo = self.n
        self.state[lo:] = RUNNING
        self.priority[lo:] = priority
        self.pool[lo:] = pool
        self.ready_since[lo:] = NONE
        self.restart_at[lo:] = NONE
        self.spawn_tick[lo:] = tick
        names = [m.name_b for m in metas]
        lens = np.fromiter((len(b) for b in names), dtype=np.int64, count=k)
        self.name_len[lo:] = lens
        self.name_off[lo:] = len(self.names_buf) + np.cumsum(lens) - lens
        self.names_buf = self.names_buf + b"".join(names)
        for i, meta in enumerate(metas):
            self.metas.append(meta)
            self.by_name[meta.name] = lo + i + 1
        self.n += k
        self._name_index = {}
        self._name_table = None

    # ---- queries ---------------------------------------------------------------------
    def live_mask(self) -> npt.NDArray[np.bool_]:
        """Has an instance in a pool, or will have after a pending restart."""
        st = self.state
        out: npt.NDArray[np.bool_] = (st != TERMINATED) & ((st != FAULTED) | (self.restart_at >= 0))
        return out

    def ready_mask(self) -> npt.NDArray[np.bool_]:
        """Would step at the next tick if selected: running, or idle with mail waiting."""
        st = self.state
        out: npt.NDArray[np.bool_] = (st == RUNNING) | ((st == IDLE) & (self.inbox_n > 0))
        return out

    def restarts_due(self, tick: int) -> I64:
        """The rows of the faulted agents whose restart backoff ends by `tick`."""
        return np.flatnonzero((self.restart_at >= 0) & (self.restart_at <= tick))

    def is_live(self, seq: int) -> bool:
        st = int(self.state[seq - 1])
        return st != TERMINATED and (st != FAULTED or int(self.restart_at[seq - 1]) >= 0)

    def name_index(self, width: int) -> tuple[np.ndarray, I64]:
        """Names of at most `width` bytes as sorted fixed-width keys, with their sequences."""
        got = self._name_index.get(width)
        if got is None:
            seqs = np.flatnonzero(self.name_len <= width).astype(np.int64) + 1
            keys = np.array([self.metas[s - 1].name_b for s in seqs.tolist()], dtype=f"S{width}")
            order = np.argsort(keys, kind="stable")
            got = (keys[order], seqs[order])
            self._name_index = dict(self._name_index)
            self._name_index[width] = got
        return got

    def lookup(self, buf: npt.NDArray[np.uint8], off: I64, length: I64) -> I64:
        """Sequence of the agent named by each buf[off:off+length] (0 when none; names of
        more than MAX_LOOKUP bytes are left to the general routing path)."""
        if _native.AVAILABLE:
            if not self.n:
                return np.zeros(len(off), dtype=np.int64)
            return self.name_table().lookup(buf, off, length, MAX_LOOKUP)
        return self.lookup_numpy(buf, off, length)

    def name_table(self) -> _native.NameTable:
        """The agents' names as the native hash table (built at first use after a spawn)."""
        if self._name_table is None:
            self._name_table = _native.NameTable(self.names_buf, self.name_off, self.name_len)
        return self._name_table

    def lookup_numpy(self, buf: npt.NDArray[np.uint8], off: I64, length: I64) -> I64:
        """`lookup` without the native helpers: sorted fixed-width keys and searchsorted."""
        m = len(off)
        out = np.zeros(m, dtype=np.int64)
        ok = (length > 0) & (length <= MAX_LOOKUP)
        if not m or not ok.any() or not self.n:
            return out
        width = int(length[ok].max())
        cols = np.arange(width, dtype=np.int64)
        mask = (cols[None, :] < length[:, None]) & ok[:, None]
        keys = np.zeros((m, width), dtype=np.uint8)
        keys[mask] = buf[(off[:, None] + cols[None, :])[mask]]
        kv = keys.view(f"S{width}").ravel()
        names, seqs = self.name_index(width)
        if not len(names):
            return out
        i = np.searchsorted(names, kv)
        np.minimum(i, len(names) - 1, out=i)
        hit = ok & (names[i] == kv)
        out[hit] = seqs[i[hit]]
        exact = out > 0
        exact[exact] = self.name_len[out[exact] - 1] == length[exact]
        out[~exact] = 0
        return out
