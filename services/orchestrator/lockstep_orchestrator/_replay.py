"""Replay: re-execute a journalled run and compare its digest chain tick by tick.

The journal holds the run config, every control-plane action with its tick, every
inference result and each tick's digest (with a short check per agent touched). Replaying
enqueues each action before the tick it took effect at, serves inference results from the
journal (unless verifying them), and stops at the first tick whose digest differs, naming
the first agent whose part of the tick differs and the first differing journal event. The
records parse back into the kernel's own event types (`_events`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lockstep.abi import RECORD_HEADER
from lockstep.errors import DeterminismError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._events import (
    NOT_COMPARED,
    Action,
    InferResult,
    RunStart,
    TickDigest,
    parse_event,
)
from lockstep_orchestrator._inference import InferenceBridge
from lockstep_orchestrator._inference import InferResult as BridgeResult
from lockstep_orchestrator._kernel import Kernel, decode_checks

STACK_OVERFLOW = b'"kind":"FAULT_KIND_STACK_OVERFLOW"'  # in an agent.fault payload

__all__ = [
    "NOT_COMPARED",
    "JournalInference",
    "ParsedJournal",
    "divergence",
    "first_difference",
    "parse_journal",
    "reexecute_tick",
]


@dataclass
class ParsedJournal:
    """What a replay needs from a journal."""

    run_id: str
    config: opb.RunConfig
    actions: dict[int, list[Action]] = field(default_factory=dict)
    inference: dict[str, BridgeResult] = field(default_factory=dict)
    digests: dict[int, TickDigest] = field(default_factory=dict)
    events: dict[int, list[tuple[str, bytes]]] = field(default_factory=dict)

    @property
    def last_tick(self) -> int:
        return max(self.digests, default=0)

    def modules(self) -> set[str]:
        from lockstep_orchestrator._events import Spawn

        return {a.module for acts in self.actions.values() for a in acts if isinstance(a, Spawn)}


def parse_journal(entries: Iterable[tuple[int, str, bytes]]) -> ParsedJournal:
    """Parse (tick, kind, payload) records in journal order; DeterminismError when unusable."""
    parsed: ParsedJournal | None = None
    for tick, kind, raw in entries:
        event = parse_event(tick, kind, raw)
        if isinstance(event, RunStart):
            if parsed is not None:
                raise DeterminismError("journal holds more than one run")
            parsed = ParsedJournal(event.run_id, event.config)
            continue
        if parsed is None:
            raise DeterminismError(f"journal record {kind}@{tick} comes before run.start")
        if kind not in NOT_COMPARED:
            parsed.events.setdefault(tick, []).append((kind, raw))
        if isinstance(event, TickDigest):
            parsed.digests[tick] = event
        elif isinstance(event, Action):
            parsed.actions.setdefault(tick, []).append(event)
        elif isinstance(event, InferResult):
            parsed.inference[event.key] = BridgeResult(
                event.output, event.error, event.provider, event.model_version
            )
    if parsed is None:
        raise DeterminismError("journal has no run.start record")
    return parsed


class JournalInference(InferenceBridge):
    """Serves agents' inference calls from the journal instead of the inference service."""

    def __init__(self, results: dict[str, BridgeResult]) -> None:
        super().__init__(None)
        self._results = results

    def submit(self, key: str, model: str, data: bytes) -> Any:
        return self._results.get(key, BridgeResult(b"", f"replay: no journalled result for {key}"))


def reexecute_tick(kernel: Kernel, parsed: ParsedJournal, tick: int) -> None:
    """Enqueue the journal's control actions of `tick`, then execute that tick."""
    kernel.enqueue(list(parsed.actions.get(tick, [])))
    kernel.step_tick()


def first_difference(original: list[tuple[str, bytes]], replayed: list[tuple[str, bytes]]) -> str:
    """The first journal event at a tick that differs between two runs."""
    for i in range(max(len(original), len(replayed))):
        a = original[i] if i < len(original) else None
        b = replayed[i] if i < len(replayed) else None
        if a != b:

            def show(e: tuple[str, bytes] | None) -> str:
                return "nothing" if e is None else f"{e[0]} {e[1].decode(errors='replace')}"

            return f"journal had {show(a)}; replay produced {show(b)}"
    return "the events of the tick agree; the agents' messages, logs or fuel differ"


def divergence(kernel: Kernel, parsed: ParsedJournal, t: int) -> tuple[str, str]:
    """(first divergent agent's name or "", detail) after replaying tick t differently."""
    recorded = parsed.digests.get(t)
    original = decode_checks(recorded.agents) if recorded else {}
    version = recorded.agents_version if recorded else kernel.checks_version
    replayed = decode_checks(kernel.checks_of_last_tick(version))
    seqs = sorted(set(original) | set(replayed))
    first = next((s for s in seqs if original.get(s) != replayed.get(s)), None)
    w = kernel.world
    name = w.metas[first - 1].name if first is not None and first <= w.n else ""
    original_events = parsed.events.get(t, [])
    detail = first_difference(original_events, kernel.last_records)
    if any(
        kind == "agent.fault" and STACK_OVERFLOW in raw
        for kind, raw in [*original_events, *kernel.last_records]
    ):
        detail = (
            f"environment-dependent: a stack-overflow fault at this tick (wasmtime's "
            f"stack limit differs across wasmtime versions and platforms; "
            f"docs/determinism.md); {detail}"
        )
    return name, detail


def delivered_messages(
    trace: list[tuple[int, Any, Any, bytes]], names: list[str], lo: int, hi: int
) -> list[opb.DeliveredMessage]:
    """The kernel's trace of delivered records (Kernel.trace) as messages, ticks lo..hi
    (0 = unbounded); `names[seq - 1]` is agent seq's name."""
    out = []
    for tick, seqs, counts, records in trace:
        if (lo and tick < lo) or (hi and tick > hi):
            continue
        off = 0
        for seq, n in zip(seqs.tolist(), counts.tolist(), strict=True):
            for _ in range(n):
                (total, kind, _r, slen, send_tick, corr, plen, dlen, _r2) = (
                    RECORD_HEADER.unpack_from(records, off)
                )
                a = off + RECORD_HEADER.size
                out.append(
                    opb.DeliveredMessage(
                        tick=tick,
                        receiver=names[seq - 1],
                        sender=records[a : a + slen].decode("utf-8", "replace"),
                        kind=kind,
                        send_tick=send_tick,
                        destination=records[a + slen : a + slen + dlen].decode("utf-8", "replace"),
                        correlation=corr,
                        payload=records[a + slen + dlen : a + slen + dlen + plen],
                    )
                )
                off += total
    return out
