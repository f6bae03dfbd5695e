"""The orchestrator's C helpers (native/kernel.c), built at first use with zig cc.

One call per phase of the tick over the packed buffers: delivery of the waiting mail, the
per-pool step requests, the results back in step order, the STEP block of the digest
input, the rows whose sends are routed, the routing of their sends (walking them, looking up
the names, the message records of the mail delivered), gathering segments, and the
per-agent checks. Where the C cannot be built (or
LOCKSTEP_ORCHESTRATOR_NATIVE=0), the kernel's numpy forms compute the same bytes (loudly:
they are slow); `gather`, `parse_sends` and `group_fnv` carry their fallback here.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger("lockstep.orchestrator.native")

SOURCE = Path(__file__).parent / "native" / "kernel.c"
I64 = npt.NDArray[np.int64]
RESULTS_HEAD = 16  # bytes of a results buffer's header (lockstep.batch, docs/wire.md)
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_P = ctypes.c_void_p


def _cache_dir() -> Path:
    base = os.environ.get("LOCKSTEP_NATIVE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(base or Path.home() / ".cache") / "lockstep" / "native"


def _build() -> ctypes.CDLL | None:
    if os.environ.get("LOCKSTEP_ORCHESTRATOR_NATIVE") == "0":
        log.warning(
            "orchestrator native helpers off (LOCKSTEP_ORCHESTRATOR_NATIVE=0): using the slow "
            "numpy fallback, same results"
        )
        return None
    try:
        tag = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
        out = _cache_dir() / f"kernel-{tag}.so"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".so")
            os.close(fd)
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "ziglang",
                    "cc",
                    "-O2",
                    "-shared",
                    "-fPIC",
                    "-o",
                    tmp,
                    str(SOURCE),
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            os.replace(tmp, out)
        lib = ctypes.CDLL(str(out))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning(
            "orchestrator native helpers unavailable (%s): using the slow numpy "
            "fallback, same results",
            exc,
        )
        return None
    lib.ls_gather.restype = ctypes.c_int64
    lib.ls_gather.argtypes = [_P, _P, _P, _P, ctypes.c_int64, _P]
    lib.ls_parse_sends.restype = ctypes.c_int64
    lib.ls_parse_sends.argtypes = [_P, ctypes.c_int64, _P, _P, _P, _P, _P, _P, _P, _P, _P]
    lib.ls_group_fnv.restype = None
    lib.ls_group_fnv.argtypes = [_P] * 5 + [ctypes.c_int64, _P]
    lib.ls_names_build.restype = None
    lib.ls_names_build.argtypes = [_P, _P, _P, ctypes.c_int64, _P, ctypes.c_int64]
    lib.ls_names_lookup.restype = None
    i64 = ctypes.c_int64
    lib.ls_names_lookup.argtypes = [_P, _P, _P, _P, i64, _P, _P, _P, i64, i64, _P]
    lib.ls_step_block.restype = i64
    lib.ls_step_block.argtypes = [i64] + [_P] * 12
    lib.ls_send_rows.restype = i64
    lib.ls_send_rows.argtypes = [i64] + [_P] * 5 + [i64] + [_P] * 7
    lib.ls_route.restype = i64
    lib.ls_route.argtypes = [_P, i64, *[_P] * 8, i64, i64, _P, _P, i64, i64, i64, _P, _P]
    lib.ls_route.argtypes += [i64, i64, i64] + [_P] * 18
    lib.ls_deliver_pack.restype = i64
    lib.ls_deliver_pack.argtypes = [i64] + [_P] * 5 + [i64, _P, i64, _P] + [i64] * 3 + [_P] * 15
    lib.ls_take_absorb.restype = None
    lib.ls_take_absorb.argtypes = [i64] + [_P] * 10 + [i64] + [_P] * 4 + [i64, i64, _P, _P]
    lib.ls_block_route.restype = i64
    block_route: list[Any] = [i64, _P, _P, i64] + [_P] * 16 + [i64, i64, _P, _P]
    lib.ls_block_route.argtypes = block_route + [i64] * 3 + [_P] * 3 + [i64] * 3 + [_P] * 4
    lib.ls_agent_checks.restype = i64
    lib.ls_agent_checks.argtypes = [_P, i64, _P, _P, _P, i64, _P, _P]
    return lib


_LIB = _build()
AVAILABLE = _LIB is not None


def _ptr(a: np.ndarray) -> int:
    """The address of an array's data (ctypes' ways are cheaper than numpy's dict)."""
    if a.nbytes:
        if a.flags.writeable:
            return ctypes.addressof(ctypes.c_char.from_buffer(a))  # type: ignore[arg-type]
        base: object = a.base
        if type(base) is bytes and a.nbytes == len(base):  # np.frombuffer of a whole bytes
            return int(ctypes.cast(base, ctypes.c_void_p).value or 0)  # type: ignore[arg-type]
        return int(a.ctypes.data)  # 1 us; __array_interface__ of a structured array: 13 us
    return int(a.__array_interface__["data"][0])


def _int64s(*sizes: int) -> tuple[list[I64], list[int]]:
    """Output arrays of these sizes carved from one allocation, with their addresses (one
    pointer conversion instead of one each)."""
    block = np.empty(max(sum(sizes), 1), dtype=np.int64)
    base = _ptr(block)
    views: list[I64] = []
    ptrs: list[int] = []
    o = 0
    for size in sizes:
        views.append(block[o : o + size])
        ptrs.append(base + 8 * o)
        o += size
    return views, ptrs


def _as_u8(buf: bytes | np.ndarray) -> npt.NDArray[np.uint8]:
    if isinstance(buf, np.ndarray):
        return buf.view(np.uint8) if buf.dtype != np.uint8 else buf
    return np.frombuffer(buf, dtype=np.uint8)


class Sources:
    """Several byte buffers addressed by index (kept alive while in use)."""

    def __init__(self, bufs: Sequence[bytes | np.ndarray]) -> None:
        self.arrays = [np.ascontiguousarray(_as_u8(b)) for b in bufs]
        self.arrays = [a if a.size else np.zeros(1, np.uint8) for a in self.arrays]
        self.ptrs = np.array([_ptr(a) for a in self.arrays], dtype=np.uint64)


def gather(sources: Sources, which: npt.NDArray[np.int32], starts: I64, lens: I64) -> bytes:
    """Concatenate sources[which[i]][starts[i]:starts[i]+lens[i]] in order."""
    n = len(starts)
    total = int(lens.sum()) if n else 0
    if total == 0:
        return b""
    which = np.ascontiguousarray(which, dtype=np.int32)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lens = np.ascontiguousarray(lens, dtype=np.int64)
    if _LIB is not None:
        out = bytearray(total)
        ob = (ctypes.c_char * total).from_buffer(out)
        _LIB.ls_gather(
            _ptr(sources.ptrs), _ptr(which), _ptr(starts), _ptr(lens), n, ctypes.addressof(ob)
        )
        del ob
        return bytes(out)
    # Fallback: per-byte index arithmetic on one concatenated buffer.
    bases = np.cumsum([0] + [a.size for a in sources.arrays])
    big = np.concatenate(sources.arrays)
    gstart = starts + bases[which]
    out_starts = np.cumsum(lens) - lens
    idx = np.arange(total, dtype=np.int64) + np.repeat(gstart - out_starts, lens)
    return bytes(big[idx].tobytes())


class SendsError(ValueError):
    """A pool's packed sends do not tile their row (row index in `row`)."""

    def __init__(self, row: int) -> None:
        super().__init__(f"packed sends of result row {row} do not tile")
        self.row = row


def parse_sends(
    buf: np.ndarray, offs: I64, lens: I64, counts: I64
) -> tuple[I64, I64, I64, I64, I64, I64]:
    """(row, index, dest off, dest len, payload off, payload len) of every send, in row
    order then send order."""
    n = len(offs)
    m = int(counts.sum()) if n else 0
    outs, out_ptrs = _int64s(m, m, m, m, m, m)
    if m == 0:
        return outs[0], outs[1], outs[2], outs[3], outs[4], outs[5]
    offs = np.ascontiguousarray(offs, dtype=np.int64)
    lens = np.ascontiguousarray(lens, dtype=np.int64)
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    if _LIB is not None:
        got = _LIB.ls_parse_sends(_ptr(buf), n, _ptr(offs), _ptr(lens), _ptr(counts), *out_ptrs)
        if got < 0:
            raise SendsError(-got - 1)
        return outs[0], outs[1], outs[2], outs[3], outs[4], outs[5]
    raw = buf.tobytes()
    j = 0
    for r in range(n):
        pos, end = int(offs[r]), int(offs[r] + lens[r])
        for k in range(1, int(counts[r]) + 1):
            if pos + 6 > end:
                raise SendsError(r)
            pl = int.from_bytes(raw[pos : pos + 4], "little")
            dl = int.from_bytes(raw[pos + 4 : pos + 6], "little")
            if pos + 6 + dl + pl > end:
                raise SendsError(r)
            for o, v in zip(outs, (r, k, pos + 6, dl, pos + 6 + dl, pl), strict=True):
                o[j] = v
            j += 1
            pos += 6 + dl + pl
        if pos != end:
            raise SendsError(r)
    return outs[0], outs[1], outs[2], outs[3], outs[4], outs[5]


def group_fnv(
    sources: Sources, which: npt.NDArray[np.int32], starts: I64, lens: I64, group_end: I64
) -> npt.NDArray[np.uint64]:
    """FNV-1a 64 of each group's concatenated segments."""
    g = len(group_end)
    out = np.zeros(g, dtype=np.uint64)
    if g == 0:
        return out
    which = np.ascontiguousarray(which, dtype=np.int32)
    starts = np.ascontiguousarray(starts, dtype=np.int64)
    lens = np.ascontiguousarray(lens, dtype=np.int64)
    group_end = np.ascontiguousarray(group_end, dtype=np.int64)
    if _LIB is not None:
        _LIB.ls_group_fnv(
            _ptr(sources.ptrs), _ptr(which), _ptr(starts), _ptr(lens), _ptr(group_end), g, _ptr(out)
        )
        return out
    i = 0
    mask = (1 << 64) - 1
    for gi in range(g):
        h = FNV_OFFSET
        while i < group_end[gi]:
            a = sources.arrays[int(which[i])]
            for byte in a[int(starts[i]) : int(starts[i] + lens[i])].tobytes():
                h = ((h ^ byte) * FNV_PRIME) & mask
            i += 1
        out[gi] = h
    return out


def agent_checks(data: bytes, seqs: I64, starts: I64, lens: I64, maxseq: int) -> bytes:
    """The per-agent checks, version 2 (native only; see ls_agent_checks): u32 sequence +
    FNV-1a 64 of the agent's segments in digest order, per agent in sequence order."""
    assert _LIB is not None
    nseg = len(seqs)
    if not nseg:
        return b""
    cols = [np.ascontiguousarray(c, dtype=np.int64) for c in (seqs, starts, lens)]
    (_scratch,), (sp,) = _int64s(maxseq + 2 + 7 * nseg)
    out = bytearray(12 * nseg)
    got = _LIB.ls_agent_checks(
        data or b"\0",
        nseg,
        *[_ptr(c) for c in cols],
        maxseq,
        sp,
        ctypes.addressof(ctypes.c_char.from_buffer(out)),
    )
    if got < 0:
        raise ValueError("a digest segment's agent sequence is out of range")
    return bytes(out[: 12 * got])


@dataclass
class Routed:
    """What ls_route made of a tick's sends: per send (m) its sender, index, destination and
    payload offset/length, target and arrival number; the delivered mail's columns (k) and
    records; the general sends' indices (g); whether the inbox bound made every send
    general; the payload bytes of all sends."""

    sender: I64
    idx: I64
    doff: I64
    dlen: I64
    poff: I64
    plen: I64
    target: I64  # the live agent named (0: general)
    arrival: I64
    to: I64  # the delivered mail: target, sender, send index, arrival, record offset, length
    sseq: I64
    nseq: I64
    arrive: I64
    off: I64
    length: I64
    records: bytes
    general: I64
    exact: bool
    payload_bytes: int


def route(
    big: npt.NDArray[np.uint8],
    sender_of_row: I64,
    offs: I64,
    lens: I64,
    counts: I64,
    names: NameTable,
    name_len: I64,
    state: npt.NDArray[np.int8],
    restart_at: I64,
    inbox_n: I64,
    inbox_bytes: I64,
    arrival0: int,
    tick: int,
    limits: tuple[int, int, int, int],
) -> Routed:
    """Route the sends of the rows in one call (native only; see ls_route): updates inbox_n
    and inbox_bytes for the mail it delivers. limits: (max_inbox, max name length looked
    up, TERMINATED, FAULTED)."""
    assert _LIB is not None
    nrows, n = len(offs), len(state)
    rows = [np.ascontiguousarray(c, dtype=np.int64) for c in (sender_of_row, offs, lens, counts)]
    m = int(rows[3].sum()) if nrows else 0
    bound = 32 * m + (int(rows[2].sum()) if nrows else 0) + m * names.longest
    cols, ptrs = _int64s(*[m] * 15, n + 1, 5)
    rec = bytearray(max(bound, 1))
    max_inbox, max_len, terminated, faulted = limits
    got = _LIB.ls_route(
        _ptr(big),
        nrows,
        *[_ptr(c) for c in rows],
        *names.ptrs,
        len(names.slots),
        max_len,
        _ptr(state),
        _ptr(restart_at),
        terminated,
        faulted,
        n,
        _ptr(inbox_n),
        _ptr(inbox_bytes),
        arrival0,
        tick,
        max_inbox,
        ptrs[15],
        *ptrs[:15],
        ctypes.addressof(ctypes.c_char.from_buffer(rec)),
        ptrs[16],
    )
    if got < 0:
        raise SendsError(-got - 1)
    return _routed(cols[:15], cols[16], rec)


def _routed(cols: Sequence[I64], out: I64, rec: bytearray) -> Routed:
    """ls_route's 15 output columns and its out[5] as a Routed."""
    k, g, exact, payload, size = out.tolist()
    sender, idx, doff, dlen, poff, plen, target, arrival = cols[:8]
    to, sseq, nseq, arrive, off, length = (c[:k] for c in cols[8:14])
    return Routed(
        sender,
        idx,
        doff,
        dlen,
        poff,
        plen,
        target,
        arrival,
        to,
        sseq,
        nseq,
        arrive,
        off,
        length,
        bytes(rec[:size]),
        cols[14][:g],
        bool(exact),
        payload,
    )


class NameTable:
    """The agents' names as a hash table (native): sequence by name in one call per tick."""

    def __init__(self, names_buf: bytes, name_off: I64, name_len: I64) -> None:
        assert _LIB is not None
        n = len(name_off)
        cap = 16
        while cap < 2 * n:
            cap *= 2
        self.names = np.frombuffer(names_buf or b"\0", dtype=np.uint8)
        self.off = np.array(name_off, dtype=np.int64)
        self.len = np.array(name_len, dtype=np.int64)
        self.slots = np.empty(cap, dtype=np.int64)
        self.ptrs = [_ptr(self.names), _ptr(self.off), _ptr(self.len), _ptr(self.slots)]
        self.longest = int(self.len.max()) if n else 0
        _LIB.ls_names_build(*self.ptrs[:3], n, self.ptrs[3], cap)

    def lookup(self, buf: npt.NDArray[np.uint8], off: I64, length: I64, max_len: int) -> I64:
        m = len(off)
        out = np.empty(m, dtype=np.int64)
        if m:
            off = np.ascontiguousarray(off, dtype=np.int64)
            length = np.ascontiguousarray(length, dtype=np.int64)
            assert _LIB is not None
            _LIB.ls_names_lookup(
                *self.ptrs,
                len(self.slots),
                _ptr(buf),
                _ptr(off),
                _ptr(length),
                m,
                max_len,
                _ptr(out),
            )
        return out


def step_block(
    rows: np.ndarray,
    which: npt.NDArray[np.int32],
    bufs: Sequence[bytes],
    cnt: I64,
    blen: I64,
    records: bytes,
    rec_off: I64,
    xbuf: bytes,
    xlen: I64,
) -> tuple[bytes, I64, I64]:
    """The step block of the digest input (native only; the kernel keeps the numpy form):
    the bytes, and where each agent's inbox part (first n) and result part (next n) are."""
    assert _LIB is not None
    n = len(rows)
    rows = np.ascontiguousarray(rows)
    src = Sources(bufs)
    which = np.ascontiguousarray(which, dtype=np.int32)
    cnt = np.ascontiguousarray(cnt, dtype=np.int64)
    blen = np.ascontiguousarray(blen, dtype=np.int64)
    rec_off = np.ascontiguousarray(rec_off, dtype=np.int64)
    xlen = np.ascontiguousarray(xlen, dtype=np.int64)
    args = [n, _ptr(rows), _ptr(which), _ptr(src.ptrs), _ptr(cnt), _ptr(blen), records or b"\0"]
    args += [_ptr(rec_off), xbuf or b"\0", _ptr(xlen)]
    size = _LIB.ls_step_block(*args, None, None, None)
    out = bytearray(size)
    (starts, lens), ptrs = _int64s(2 * n, 2 * n)
    wrote = _LIB.ls_step_block(*args, ctypes.addressof(ctypes.c_char.from_buffer(out)), *ptrs)
    assert wrote == size
    return bytes(out), starts, lens


@dataclass
class Delivered:
    """What ls_deliver_pack did: per step position the messages and bytes delivered, their
    records in step order, the mail rows left waiting, and the step request of each pool
    with agents to step with the step positions of its agents."""

    cnt: I64
    blen: I64
    rec_off: I64  # where each position's records start in `records`
    records: bytes
    rest: I64
    requests: dict[int, bytes]
    members: dict[int, I64]
    messages: int


def deliver_pack(
    order: I64 | None,
    target: I64,
    off: I64,
    length: I64,
    buf: bytes,
    sel: I64,
    pool: npt.NDArray[np.int32],
    npools: int,
    inbox: tuple[I64, I64, I64],
    max_bytes: int,
    tick: int,
) -> Delivered:
    """Deliver the waiting mail to the agents `sel` (rows, in step order) and pack the
    step requests, in one call (native only; see ls_deliver_pack). inbox: the world's
    inbox_n, inbox_bytes and received columns, updated."""
    assert _LIB is not None
    m, n, nseq = len(target), len(sel), len(pool)
    mm = max(m, 1)
    (cnt, blen, rest, req_off, req_len, members, start, info, scratch), ptrs = _int64s(
        n, n, mm, npools, npools, max(n, 1), npools + 1, 3, nseq + 5 * n + 1 + 2 * m + npools
    )
    records = bytearray(max(len(buf), 1))
    delivered = bytearray(mm)
    out = np.empty(24 * npools + 24 * n + len(buf), dtype=np.uint8)
    inbox_n, inbox_bytes, received = inbox
    _LIB.ls_deliver_pack(
        m,
        None if order is None else _ptr(np.ascontiguousarray(order, dtype=np.int64)),
        *[_ptr(np.ascontiguousarray(c, dtype=np.int64)) for c in (target, off, length)],
        buf or b"\0",
        n,
        _ptr(np.ascontiguousarray(sel, dtype=np.int64)),
        nseq,
        _ptr(pool),
        npools,
        max_bytes,
        tick,
        _ptr(inbox_n),
        _ptr(inbox_bytes),
        _ptr(received),
        ptrs[8],
        ptrs[0],
        ptrs[1],
        ptrs[2],
        ctypes.addressof(ctypes.c_char.from_buffer(records)),
        ctypes.addressof(ctypes.c_char.from_buffer(delivered)),
        _ptr(out),
        *ptrs[3:8],
    )
    messages, size, n_rest = info.tolist()
    at = nseq + 2 * n + 1 + 2 * m + n  # ls_deliver_pack's rec_off in its scratch
    rec_off = scratch[at : at + n]
    raw = out.data
    requests: dict[int, bytes] = {}
    groups: dict[int, I64] = {}
    for p in req_len.nonzero()[0].tolist():
        o, ln = int(req_off[p]), int(req_len[p])
        requests[p] = bytes(raw[o : o + ln])
        groups[p] = members[start[p] : start[p + 1]]
    return Delivered(
        cnt, blen, rec_off, bytes(records[:size]), rest[:n_rest], requests, groups, messages
    )


@dataclass
class Taken:
    """The step results in step order (ls_take_absorb) and what folding them found."""

    which: npt.NDArray[np.int32]
    local: I64
    special: I64
    fuel: int
    sends: int  # sends of the rows that did not fault
    sends_bytes: int  # the sends' bytes of all rows


def take_absorb(
    tables: Sequence[np.ndarray],
    groups: Sequence[I64],
    seqs: I64,
    table: np.ndarray,
    buf_sizes: Sequence[int] | None,
    sel: I64,
    state: npt.NDArray[np.int8],
    fuel: I64,
    steps: I64,
    running: int,
    idle: int,
) -> tuple[int, Taken]:
    """The pools' step results (the row tables of their buffers, of buf_sizes bytes) in step
    order into `table`, checked against the request and the tiling of their data (not the
    tiling with buf_sizes None), then folded into the world's columns, in one call (native
    only; see ls_take_absorb): (-1, or the first pool b whose rows do not match, or the
    number of pools + b for the first whose data do not tile; the rows taken and folded,
    nothing folded on a mismatch)."""
    assert _LIB is not None
    n = len(table)
    ptrs = np.array([_ptr(t) if len(t) else 0 for t in tables], dtype=np.uint64)
    sizes = [len(g) for g in groups]
    hi = np.cumsum(sizes, dtype=np.int64)
    members = np.concatenate(groups).astype(np.int64) if len(groups) > 1 else groups[0]
    ints = np.array([*sizes, *(hi - sizes).tolist(), *(buf_sizes or ())], dtype=np.int64)
    b = len(tables)
    which = np.zeros(n, dtype=np.int32)
    (local, special, out), (local_p, special_p, out_p) = _int64s(n, n, 5)
    base = _ptr(ints)
    _LIB.ls_take_absorb(
        b,
        _ptr(ptrs),
        base,
        _ptr(np.ascontiguousarray(members, dtype=np.int64)),
        base + 8 * b,
        _ptr(hi),
        _ptr(seqs),
        _ptr(table),
        _ptr(which),
        local_p,
        None if buf_sizes is None else base + 16 * b,
        RESULTS_HEAD,
        _ptr(sel),
        _ptr(state),
        _ptr(fuel),
        _ptr(steps),
        running,
        idle,
        special_p,
        out_p,
    )
    bad, k, used, sends, sends_bytes = out.tolist()
    return bad, Taken(which, local, special[:k], used, sends, sends_bytes)


def block_route(
    table: np.ndarray,
    which: npt.NDArray[np.int32],
    bufs: Sequence[bytes],
    cnt: I64,
    blen: I64,
    records: bytes,
    rec_off: I64,
    xbuf: bytes,
    xlen: I64,
    taken: Taken,
    names: NameTable,
    world: tuple[npt.NDArray[np.int8], I64, I64, I64, I64],
    arrival0: int,
    tick: int,
    limits: tuple[int, int, int, int],
) -> tuple[bytes, I64, I64, npt.NDArray[np.uint8], Routed]:
    """The step block of the digest input and the routing of the step results' sends, for
    a tick whose only routed rows are its step results (native only; see ls_block_route).
    world: (state, restart_at, inbox_n, inbox_bytes, sent), the last three updated. Returns
    the block, its segments (starts, lengths: each agent's inbox part, then its result
    part), the buffer the sends' offsets refer to, and the routing."""
    assert _LIB is not None
    n = len(table)
    state, restart_at, inbox_n, inbox_bytes, sent = world
    nseq = len(state)
    src = Sources(bufs)
    sizes = np.array([len(x) for x in bufs], dtype=np.int64)
    size = 8 + 52 * n + 8 * int(np.count_nonzero(cnt)) + len(records) + taken.sends_bytes
    size += len(xbuf)
    m = taken.sends
    bound = 32 * m + taken.sends_bytes + m * names.longest
    cols, ptrs = _int64s(4 * n, *[m] * 15, nseq + 1 + 4 * n, 5)
    block = bytearray(size)
    big = np.empty(int(sizes.sum()) if len(bufs) > 1 else 1, dtype=np.uint8)
    bigout = ctypes.c_void_p()
    rec = bytearray(max(bound, 1))
    route_cols = np.array(ptrs[1:16], dtype=np.uint64)
    max_inbox, max_len, terminated, faulted = limits
    got = _LIB.ls_block_route(
        n,
        _ptr(table),
        _ptr(which),
        len(bufs),
        _ptr(src.ptrs),
        _ptr(sizes),
        _ptr(cnt),
        _ptr(blen),
        records or b"\0",
        _ptr(rec_off),
        xbuf or b"\0",
        _ptr(xlen),
        ctypes.addressof(ctypes.c_char.from_buffer(block)),
        ptrs[0],
        _ptr(big),
        ctypes.addressof(bigout),
        *names.ptrs,
        len(names.slots),
        max_len,
        _ptr(state),
        _ptr(restart_at),
        terminated,
        faulted,
        nseq,
        _ptr(inbox_n),
        _ptr(inbox_bytes),
        _ptr(sent),
        arrival0,
        tick,
        max_inbox,
        ptrs[16],
        _ptr(route_cols),
        ctypes.addressof(ctypes.c_char.from_buffer(rec)),
        ptrs[17],
    )
    if got < 0:
        raise SendsError(-got - 1)
    seg = cols[0]
    routed = _routed(cols[1:16], cols[17], rec)
    which_buf = big if len(bufs) > 1 else src.arrays[0]
    return bytes(block), seg[: 2 * n], seg[2 * n :], which_buf, routed


def send_rows(
    seqs: Sequence[I64],
    tables: Sequence[np.ndarray],
    rows: Sequence[I64],
    bases: Sequence[int],
    sent: I64,
) -> tuple[I64, I64, I64, I64, bool]:
    """The rows whose sends are routed, in canonical order (native only; see ls_send_rows):
    sender, sends offset (into the concatenated buffers), length and count; adds the counts
    to `sent`. Also whether a sender has more than one row."""
    assert _LIB is not None
    nseq = len(sent)
    keep = [np.ascontiguousarray(a, dtype=np.int64) for a in seqs]
    keep += [np.ascontiguousarray(a, dtype=np.int64) for a in rows]
    tabs = [np.ascontiguousarray(t) for t in tables]
    nsrc = len(tabs)
    ptrs = np.array(
        [_ptr(a) if a.nbytes else 0 for a in keep] + [_ptr(t) if t.nbytes else 0 for t in tabs],
        dtype=np.uint64,
    )
    base = _ptr(ptrs)
    k = np.array([len(a) for a in keep[:nsrc]], dtype=np.int64)
    m = int(k.sum())
    (sender, off, slen, count, _scratch, repeated), out = _int64s(m, m, m, m, nseq + 1, 1)
    b = np.asarray(bases, dtype=np.int64)
    got = _LIB.ls_send_rows(
        nsrc,
        base,
        base + 16 * nsrc,
        base + 8 * nsrc,
        _ptr(k),
        _ptr(b),
        nseq,
        out[4],
        *out[:4],
        _ptr(sent),
        out[5],
    )
    return sender[:got], off[:got], slen[:got], count[:got], bool(repeated[0])
