"""A zoo of agents that exercises every path of the pool, and a scenario driver over the
packed wire (docs/wire.md). Used to compare the protobuf and packed methods, and the
native core against the Python reference engine, byte for byte."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from lockstep import batch as wire
from tests.wasm_pool.conftest import GOOD, agent_wat, record

SEND_THEN = "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 16) (i32.const 5))) "

# Step of a busy agent: random bytes, logs (one not UTF-8), infer, sends of the random
# bytes and of the context buffer, refused calls of several kinds, and tick().
BUSY_STEP = (
    "(drop (call $random (i32.const 256) (i32.const 16))) "
    "(drop (call $log (i32.const 2) (i32.const 16) (i32.const 5))) "
    "(drop (call $log (i32.const 1) (i32.const 2048) (i32.const 4))) "
    "(drop (call $infer (i32.const 2100) (i32.const 2) (i32.const 16) (i32.const 5))) "
    "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 256) (i32.const 16))) "
    "(drop (call $send (i32.const 0) (i32.const 4) (local.get $ctx) "
    "  (i32.load (local.get $ctx)))) "
    "(drop (call $send (i32.const 2110) (i32.const 1) (i32.const 16) (i32.const 5))) "
    "(drop (call $send (i32.const 2111) (i32.const 5) (i32.const 16) (i32.const 0))) "
    "(drop (call $log (i32.const 9) (i32.const 0) (i32.const 0))) "
    "(drop (call $send (i32.const 0) (i32.const 70) (i32.const 0) (i32.const 0))) "
    "(drop (call $send (i32.const 2120) (i32.const 3) (i32.const 0) (i32.const 0))) "
    "(drop (call $infer (i32.const 2120) (i32.const 3) (i32.const 0) (i32.const 0))) "
    "(drop (call $random (i32.const 0) (i32.const -1))) "
    "(drop (call $random (i32.const 0) (i32.const 70000))) "
    "(i64.store (i32.const 300) (call $tick)) "
    "(drop (call $send (i32.const 0) (i32.const 4) (i32.const 300) (i32.const 8))) "
    "(global.set $count (i32.add (global.get $count) (i32.const 1))) "
    "(global.set $wide (i64.mul (global.get $wide) (i64.const 3))) "
    "(global.set $fl (f64.mul (global.get $fl) (f64.const 1.25))) "
    "(i32.const 0)"
)
BUSY_DATA = (
    '(data (i32.const 2048) "\\ff\\fe\\41\\c3") (data (i32.const 2100) "m1") '
    '(data (i32.const 2110) "*#news") (data (i32.const 2120) "b d")'
)
# Echo every delivered record back to "peer" (checks the delivered bytes).
ECHO_RECEIVE = (
    "(drop (call $send (i32.const 0) (i32.const 4) (local.get $msg) "
    "(i32.load (local.get $msg)))) "
    "(global.set $count (i32.add (global.get $count) (i32.const 1))) (i32.const 0)"
)
ECHO_BATCH = (
    "(drop (call $send (i32.const 0) (i32.const 4) (local.get $p) "
    "(i32.load (local.get $p)))) (i32.const 0)"
)
GROW_STEP = "(drop (memory.grow (i32.const 1))) (i32.const 0)"
STACK = "(func $rec (param i32) (result i32) (call $rec (i32.add (local.get 0) (i32.const 1))))"

# (name, wasm): agents that run for the whole scenario, then agents that fault.
LIVING: list[tuple[str, bytes]] = [
    ("good", GOOD),
    ("busy", agent_wat(step=BUSY_STEP, receive=ECHO_RECEIVE, extra=BUSY_DATA)),
    ("echo", agent_wat(step=SEND_THEN + "(i32.const 0)", receive=ECHO_RECEIVE)),
    (
        "batcher",
        agent_wat(step=SEND_THEN + "(i32.const 0)", receive="(i32.const -9)", batch=ECHO_BATCH),
    ),
    ("grower", agent_wat(step=GROW_STEP)),
    ("idler", agent_wat(step="(i32.const 1)")),
    ("odd", agent_wat(step="(i32.const 77)", shutdown="(i32.const 5)")),
    (
        "starter",
        agent_wat(
            extra="(func $start (drop (call $send (i32.const 0) (i32.const 4) "
            "(i32.const 16) (i32.const 5))) (drop (call $log (i32.const 0)"
            " (i32.const 16) (i32.const 5)))) (start $start)"
        ),
    ),
    ("shutter", agent_wat(shutdown=SEND_THEN + "(i32.const -4)")),
]
FAULTING: list[tuple[str, bytes]] = [
    ("unreachable", agent_wat(step=SEND_THEN + "unreachable")),
    ("div0", agent_wat(step="(i32.div_u (i32.const 1) (i32.const 0))")),
    ("oob", agent_wat(step="(i32.load (i32.const 70000))")),
    ("fuel", agent_wat(step=SEND_THEN + "(loop $l (br $l)) (i32.const 0)")),
    ("stack", agent_wat(step="(call $rec (i32.const 0))", extra=STACK)),
    ("growbig", agent_wat(step="(drop (memory.grow (i32.const 300))) (i32.const 0)")),
    (
        "badsend",
        agent_wat(step="(call $send (i32.const 65530) (i32.const 10) (i32.const 0) (i32.const 1))"),
    ),
    ("badlog", agent_wat(step="(call $log (i32.const 2) (i32.const -1) (i32.const 4))")),
    ("badrandom", agent_wat(step="(call $random (i32.const 65535) (i32.const 2))")),
    (
        "badinfer",
        agent_wat(
            step="(i32.wrap_i64 (call $infer (i32.const 0) (i32.const 4) "
            "(i32.const 65536) (i32.const 1)))"
        ),
    ),
    (
        "badpay",
        agent_wat(step="(call $send (i32.const 0) (i32.const 4) (i32.const 70000) (i32.const 1))"),
    ),
    ("badalloc", agent_wat(alloc="(i32.const 65530)")),
    ("negstep", agent_wat(step=SEND_THEN + "(i32.const -7)")),
    ("negrecv", agent_wat(receive="(i32.const -3)", step=SEND_THEN + "(i32.const 0)")),
    ("negbatch", agent_wat(batch="(i32.const -2)")),
    (
        "logthentrap",
        agent_wat(step="(drop (call $log (i32.const 3) (i32.const 16) (i32.const 5))) unreachable"),
    ),
    ("recvtrap", agent_wat(receive="unreachable")),
    ("done", agent_wat(step=SEND_THEN + "(i32.const 2)")),
]
# Faults at creation.
CREATE_FAULTING: list[tuple[str, bytes]] = [
    ("bigmem", agent_wat(memory="300")),
    ("neginit", agent_wat(init="(i32.const -1)")),
    ("starttrap", agent_wat(extra="(func $start unreachable) (start $start)")),
    ("startfuel", agent_wat(extra="(func $start (loop $l (br $l))) (start $start)")),
    (
        "startbad",
        agent_wat(
            extra="(func $start (drop (call $send (i32.const 65530) "
            "(i32.const 10) (i32.const 0) (i32.const 1)))) "
            "(start $start)"
        ),
    ),
    ("inittrap", agent_wat(init="(call $rec (i32.const 0))", extra=STACK)),
    ("initdone", agent_wat(init="(i32.const 2)")),
    ("initidle", agent_wat(init="(i32.const 1)")),
    (
        "rejected",
        agent_wat(
            imports='(import "wasi_snapshot_preview1" "fd_write" '
            "(func (param i32 i32 i32 i32) (result i32)))"
        ),
    ),
]
ALL = LIVING + FAULTING + CREATE_FAULTING


def inbox_for(seq: int, tick: int) -> tuple[bytes, int]:
    """Records (no batch header) for one agent at one tick: 0-3 messages of every kind."""
    n = (seq + tick) % 4
    recs = [
        record(
            struct.pack("<IQ", tick, seq) + bytes([i]) * i,
            sender=b"s%d" % i,
            dest=b"#t" if i == 2 else b"a",
            kind=i % 5,
            tick=tick - 1,
            corr=7 if i % 5 in (2, 3) else 0,
        )
        for i in range(n)
    ]
    return b"".join(recs), n


@dataclass
class Scenario:
    """Drives create / step / destroy batches through `run(kind, buf) -> results`."""

    run: Callable[[str, bytes], bytes]
    agents: list[tuple[str, bytes]] = field(default_factory=lambda: list(ALL))
    seed: int = 11
    log: list[bytes] = field(default_factory=list)
    live: list[int] = field(default_factory=list)

    def create(self, tick: int, hashes: dict[str, str]) -> None:
        specs = [
            wire.AgentSpec(
                seq=h,
                name=name,
                module_hash=hashes[name],
                args=b"args-%d" % h,
                fuel=0 if h % 3 else 2_000_000,
                logs=0 if h % 2 else 3,
            )
            for h, (name, _) in enumerate(self.agents, start=1)
        ]
        out = self.run("create", wire.pack_create(tick, self.seed, specs))
        self._note(out)

    def step(self, tick: int) -> None:
        boxes = [inbox_for(h, tick) for h in self.live]
        out = self.run(
            "step", wire.pack_step(tick, self.live, [b for b, _ in boxes], [n for _, n in boxes])
        )
        self._note(out)

    def destroy(self, tick: int, seqs: list[int], shutdown: bool) -> None:
        out = self.run("destroy", wire.pack_destroy(tick, seqs, shutdown))
        self.log.append(out)
        self.live = [h for h in self.live if h not in seqs]

    def _note(self, out: bytes) -> None:
        self.log.append(out)
        res = wire.parse_results(out)
        gone = {int(r["seq"]) for r in res.rows if r["fault_kind"] or r["code"] == 2}
        seen = [int(r["seq"]) for r in res.rows]
        live = set(self.live) | {h for h in seen if h not in gone}
        self.live = sorted(h for h in live if h not in gone)


def load_all(load: Callable[[bytes], str], agents: list[tuple[str, bytes]]) -> dict[str, str]:
    """Load every module; a rejected one is still named by its hash (its agents fault)."""
    from lockstep_wasm_pool import ModuleRejectedError

    out = {}
    for name, wasm in agents:
        try:
            out[name] = load(wasm)
        except ModuleRejectedError:
            out[name] = "sha256:" + hashlib.sha256(wasm).hexdigest()
    return out


def play(scn: Scenario, load: Callable[[bytes], str], ticks: int = 4) -> list[bytes]:
    """Create every agent, step a few ticks, destroy half with shutdown and the rest without."""
    scn.create(0, load_all(load, scn.agents))
    for tick in range(1, ticks + 1):
        scn.step(tick)
    half = scn.live[::2]
    scn.destroy(ticks + 1, half, True)
    scn.destroy(ticks + 1, list(scn.live), False)
    return scn.log
