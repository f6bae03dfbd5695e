"""The orchestrator's native helpers (native/kernel.c) against their numpy fallbacks, on
random input: the same bytes and the same numbers, so a machine without a C compiler gets
the same digests (only slower)."""

from __future__ import annotations

import numpy as np
import pytest

from lockstep.pb.common.v1 import common_pb2 as cpb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator import _native
from lockstep_orchestrator._world import MAX_LOOKUP, AgentMeta, World

pytestmark = pytest.mark.unit


def test_the_native_helpers_are_built_here() -> None:
    assert _native.AVAILABLE, "zig cc should build native/kernel.c on this machine"


def world_of(names: list[bytes]) -> World:
    w = World()
    metas = [AgentMeta(n.decode(), "m", cpb.Limits(), b"", opb.RestartPolicy()) for n in names]
    w.add_agents(metas, [0] * len(names), [0] * len(names), 1)
    return w


def random_names(rng: np.random.Generator, k: int) -> list[bytes]:
    out: set[bytes] = set()
    while len(out) < k:
        size = int(rng.choice([1, 2, 5, 12, 64, 65, 100]))
        out.add(bytes(rng.integers(97, 100, size=size, dtype=np.uint8)))
    return sorted(out)


def test_name_lookup_matches_the_numpy_fallback() -> None:
    rng = np.random.default_rng(5)
    names = random_names(rng, 300)
    w = world_of(names)
    # Destinations: every name, prefixes and extensions of names, unknown names, empty.
    dests = [*names, *(n[:-1] for n in names), *(n + b"a" for n in names[:50]), b"", b"zz"]
    buf = np.frombuffer(b"".join(dests), dtype=np.uint8)
    lens = np.array([len(d) for d in dests], dtype=np.int64)
    offs = np.cumsum(lens) - lens
    native = w.lookup(buf, offs, lens)
    numpy = w.lookup_numpy(buf, offs, lens)
    assert native.tolist() == numpy.tolist()
    by_name = {n: i + 1 for i, n in enumerate(names)}
    want = [by_name.get(d, 0) if 0 < len(d) <= MAX_LOOKUP else 0 for d in dests]
    assert native.tolist() == want
    # A fork shares the table; new agents rebuild it.
    f = w.fork()
    f.add_agents([AgentMeta("late", "m", cpb.Limits(), b"", opb.RestartPolicy())], [0], [0], 2)
    late = np.frombuffer(b"late", dtype=np.uint8)
    one = np.array([0], dtype=np.int64)
    four = np.array([4], dtype=np.int64)
    assert f.lookup(late, one, four).tolist() == [len(names) + 1]
    assert w.lookup(late, one, four).tolist() == [0]


def test_gather_parse_and_checks_match_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    bufs = [bytes(rng.integers(0, 256, size=int(s), dtype=np.uint8)) for s in (50, 1, 300)]
    which = rng.integers(0, 3, size=40).astype(np.int32)
    sizes = np.array([len(bufs[i]) for i in which], dtype=np.int64)
    starts = (rng.random(40) * sizes).astype(np.int64)
    lens = ((sizes - starts) * rng.random(40)).astype(np.int64)
    group_end = np.array([3, 3, 10, 25, 40], dtype=np.int64)
    sends = b"".join(
        len(p).to_bytes(4, "little") + len(d).to_bytes(2, "little") + d + p
        for d, p in [(b"bob", b"hi"), (b"", b""), (b"alice", b"x" * 70)]
    )
    big = np.frombuffer(sends, dtype=np.uint8)
    plan = (np.array([0, 11], dtype=np.int64), np.array([11, len(sends) - 11], dtype=np.int64))
    counts = np.array([1, 2], dtype=np.int64)

    def everything() -> tuple[object, ...]:
        src = _native.Sources(bufs)
        return (
            _native.gather(src, which, starts, lens),
            _native.group_fnv(src, which, starts, lens, group_end).tolist(),
            [a.tolist() for a in _native.parse_sends(big, plan[0], plan[1], counts)],
        )

    fast = everything()
    with pytest.raises(_native.SendsError):
        _native.parse_sends(big, plan[0], plan[1] - 1, counts)
    monkeypatch.setattr(_native, "_LIB", None)
    assert everything() == fast
    with pytest.raises(_native.SendsError):
        _native.parse_sends(big, plan[0], plan[1] - 1, counts)


def test_checks_of_many_agents_match_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of 0..5 segments of 0..40 bytes: the four-lane native hash, its tail, and the
    byte-at-a-time fallback agree."""
    rng = np.random.default_rng(3)
    data = bytes(rng.integers(0, 256, size=4000, dtype=np.uint8))
    per_group = rng.integers(0, 6, size=203)
    k = int(per_group.sum())
    starts = rng.integers(0, 3960, size=k).astype(np.int64)
    lens = rng.integers(0, 41, size=k).astype(np.int64)
    which = np.zeros(k, dtype=np.int32)
    group_end = np.cumsum(per_group).astype(np.int64)
    fast = _native.group_fnv(_native.Sources([data]), which, starts, lens, group_end).tolist()
    monkeypatch.setattr(_native, "_LIB", None)
    assert (
        _native.group_fnv(_native.Sources([data]), which, starts, lens, group_end).tolist() == fast
    )


def test_step_requests_are_the_packed_layout() -> None:
    """ls_deliver_pack against lockstep.batch.pack_step (the reference packer), per pool:
    each stepped agent's waiting mail in row order, the rest left waiting, the inbox
    columns moved; the rows then come back in step order through ls_take_absorb, or the
    mismatch is named."""
    from lockstep.batch import RESULT_ROW, Result, pack_results, pack_step, result_rows
    from lockstep_orchestrator._world import IDLE, RUNNING

    rng = np.random.default_rng(11)
    n, npools, nseq = 50, 3, 200
    seqs = rng.permutation(nseq)[:n].astype(np.int64) + 1
    pool = rng.integers(0, npools, size=nseq).astype(np.int32)
    pool[pool == 1] = 2  # pool 1 has no agent to step
    pool_of = pool[seqs - 1]
    stepped = set(seqs.tolist())
    # The mail: 0-2 rows for each stepped agent and for some others, in random order.
    targets = [int(q) for q in seqs for _ in range(int(rng.integers(0, 3)))]
    targets += [int(q) for q in rng.integers(1, nseq + 1, size=30) if int(q) not in stepped]
    rng.shuffle(targets)
    target = np.array(targets, dtype=np.int64)
    length = rng.integers(1, 80, size=len(target)).astype(np.int64)
    off = np.cumsum(length) - length
    buf = bytes(rng.integers(0, 256, size=int(length.sum()), dtype=np.uint8))
    inbox_n = np.bincount(target, minlength=nseq + 1)[1:].astype(np.int64)
    inbox_bytes = np.bincount(target, weights=length, minlength=nseq + 1)[1:].astype(np.int64)
    received = np.zeros(nseq, dtype=np.int64)
    before = inbox_n.copy()
    d = _native.deliver_pack(
        None,
        target,
        off,
        length,
        buf,
        seqs - 1,
        pool,
        npools,
        (inbox_n, inbox_bytes, received),
        1 << 20,
        42,
    )
    assert sorted(d.requests) == [0, 2]
    mine = {int(q): [r for r in range(len(target)) if target[r] == q] for q in seqs}
    for p, idx in d.members.items():
        assert idx.tolist() == np.flatnonzero(pool_of == p).tolist()
        inboxes = [
            b"".join(buf[off[r] : off[r] + length[r]] for r in mine[int(seqs[i])]) for i in idx
        ]
        counts = [len(mine[int(seqs[i])]) for i in idx]
        assert d.requests[p] == pack_step(42, seqs[idx].astype(np.uint64), inboxes, counts)
    assert d.cnt.tolist() == [len(mine[int(q)]) for q in seqs] and d.messages == sum(d.cnt)
    assert d.rec_off.tolist() == (np.cumsum(d.blen) - d.blen).tolist()
    assert d.records == b"".join(
        buf[off[r] : off[r] + length[r]] for q in seqs for r in mine[int(q)]
    )
    assert d.rest.tolist() == [r for r in range(len(target)) if int(target[r]) not in stepped]
    assert (
        inbox_n[seqs - 1].tolist() == [0] * n
        and received[seqs - 1].tolist() == before[seqs - 1].tolist()
    )
    assert inbox_n.sum() == len(d.rest) and inbox_bytes.sum() == length[d.rest].sum()
    groups = d.members
    # The pools' answers (packed by the reference packer), taken back in step order and
    # folded into the world in one call; a mismatch is named and nothing is folded.
    bufs = [
        pack_results([Result(seq=int(q), fuel=int(q) * 10) for q in seqs[groups[p]]])
        for p in sorted(groups)
    ]
    order = [groups[p] for p in sorted(groups)]
    world = world_of([f"a{i}".encode() for i in range(200)])

    def take(tables: list[np.ndarray], sizes: list[int]) -> tuple[int, object, np.ndarray, World]:
        table = np.zeros(n, dtype=RESULT_ROW)
        w = world.fork()
        bad, taken = _native.take_absorb(
            tables, order, seqs, table, sizes, seqs - 1, w.state, w.fuel, w.steps, RUNNING, IDLE
        )
        return bad, taken, table, w

    tables = [result_rows(b) for b in bufs]
    sizes = [len(b) for b in bufs]
    bad, taken, table, w = take(tables, sizes)
    assert bad == -1 and isinstance(taken, _native.Taken)
    assert table["fuel"].tolist() == (seqs * 10).tolist()
    assert taken.which.tolist() == [0 if p == 0 else 1 for p in pool_of.tolist()]
    assert all(
        order[b][j] == i for i, (b, j) in enumerate(zip(taken.which, taken.local, strict=True))
    )
    assert taken.fuel == int((seqs * 10).sum()) and (taken.sends, taken.sends_bytes) == (0, 0)
    assert w.fuel[seqs - 1].tolist() == (seqs * 10).tolist()
    assert set(w.steps[seqs - 1].tolist()) == {1} and int(w.steps.sum()) == n
    other = tables[1].copy()
    other["seq"][0] += 1  # a pool answering for another agent
    for bad_tables, bad_sizes, want in (
        ([tables[0], other], sizes, 1),
        ([tables[0], tables[1][1:]], sizes, 1),  # a row short
        (tables, [sizes[0], sizes[1] + 1], 2 + 1),  # data not tiling its buffer
    ):
        bad, _taken, _table, w = take(bad_tables, bad_sizes)
        assert bad == want and not w.steps.any()


def test_per_agent_checks_in_one_call_match_the_sorted_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ls_agent_checks (counting sort by sequence, then the hash) against the kernel's
    argsort form: segments of agents in any order, several per agent, empty ones; an
    out-of-range sequence is refused."""
    from lockstep_orchestrator import _kernel

    rng = np.random.default_rng(21)
    data = bytes(rng.integers(0, 256, size=5000, dtype=np.uint8))
    for k, maxseq in ((1, 1), (7, 3), (500, 60), (3000, 2500)):
        seqs = rng.integers(1, maxseq + 1, size=k).astype(np.int64)
        starts = rng.integers(0, 4950, size=k).astype(np.int64)
        lens = rng.integers(0, 50, size=k).astype(np.int64)
        fast = _kernel.agent_checks(data, seqs, starts, lens, 2)
        assert len(fast) == 12 * len(set(seqs.tolist()))
        with monkeypatch.context() as m:
            m.setattr(_native, "AVAILABLE", False)
            assert _kernel.agent_checks(data, seqs, starts, lens, 2) == fast
    assert _kernel.agent_checks(data, seqs[:0], starts[:0], lens[:0], 2) == b""
    with pytest.raises(ValueError, match="out of range"):
        _native.agent_checks(data, np.array([0], dtype=np.int64), starts[:1], lens[:1], 5)


def test_absorbing_step_results_matches_the_fallback() -> None:
    """ls_take_absorb's folding against the numpy form: fuel, steps, the plain rows' state
    moves and the special rows (faulted, done, logged, inference), on random rows and
    states."""
    from lockstep.batch import RESULT_ROW
    from lockstep_orchestrator import _kernel
    from lockstep_orchestrator._world import IDLE, PAUSED, RUNNING

    rng = np.random.default_rng(17)
    names = [f"a{i}".encode() for i in range(300)]
    n = 120
    sel = rng.permutation(300)[:n].astype(np.int64)
    rows = np.zeros(n, dtype=RESULT_ROW)
    rows["seq"] = sel + 1
    rows["code"] = rng.choice([0, 1, 2, 5], size=n, p=[0.4, 0.4, 0.1, 0.1])
    rows["fuel"] = rng.integers(0, 10**9, size=n)
    rows["fault_kind"] = rng.choice([0, 0, 0, 3], size=n)
    rows["log_count"] = rng.choice([0, 0, 0, 2], size=n)
    rows["infer_count"] = rng.choice([0, 0, 0, 0, 1], size=n)
    worlds = [world_of(names), world_of(names)]
    states = rng.choice([RUNNING, IDLE, PAUSED], size=300).astype(np.int8)
    for w in worlds:
        w.state[:] = states
        w.fuel[:] = 5
    table = np.zeros(n, dtype=RESULT_ROW)
    w = worlds[0]
    bad, taken = _native.take_absorb(
        [rows],
        [np.arange(n, dtype=np.int64)],
        sel + 1,
        table,
        None,
        sel,
        w.state,
        w.fuel,
        w.steps,
        RUNNING,
        IDLE,
    )
    special2, fuel2 = _kernel._absorb_numpy(worlds[1], sel, rows)
    assert bad == -1
    assert taken.special.tolist() == special2.tolist() and taken.fuel == fuel2
    assert 0 < len(taken.special) < n
    for col in ("state", "fuel", "steps"):
        assert getattr(worlds[0], col).tolist() == getattr(worlds[1], col).tolist(), col
