"""Replay: re-execute a journalled run and compare its digest chain tick by tick.

The journal holds the run config, every control-plane action with its tick, every
inference result and each tick's digest (with a short hash per agent touched). Replaying
enqueues each action before the tick it took effect at, serves inference results from the
journal (unless verifying them), and stops at the first tick whose digest differs, naming
the first agent whose part of the tick differs and the first differing journal event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lockstep.common.v1 import common_pb2 as cpb
from lockstep.errors import DeterminismError
from lockstep.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep_orchestrator._inference import InferenceBridge, InferResult
from lockstep_orchestrator._run import Run

# Journal kinds that describe the run rather than its behaviour; not compared.
NOT_COMPARED = {"tick.digest", "run.start", "module.register", "run.checkpoint",
                "run.restore", "run.recover"}


@dataclass
class ParsedJournal:
    """What a replay needs from a journal."""

    run_id: str
    config: opb.RunConfig
    actions: dict[int, list[tuple[str, Any]]] = field(default_factory=dict)
    inference: dict[str, InferResult] = field(default_factory=dict)
    digests: dict[int, tuple[bytes, bytes]] = field(default_factory=dict)
    events: dict[int, list[tuple[str, bytes]]] = field(default_factory=dict)

    @property
    def last_tick(self) -> int:
        return max(self.digests, default=0)


def parse_journal(entries: Iterable[tuple[int, str, bytes]]) -> ParsedJournal:
    """Parse (tick, kind, payload) records in journal order; DeterminismError when unusable."""
    parsed: ParsedJournal | None = None
    for tick, kind, raw in entries:
        try:
            body: dict[str, Any] = json.loads(raw)
        except ValueError:
            raise DeterminismError(f"journal record {kind}@{tick} is not JSON") from None
        if kind == "run.start":
            if parsed is not None:
                raise DeterminismError("journal holds more than one run")
            parsed = ParsedJournal(str(body["run_id"]),
                                   opb.RunConfig.FromString(bytes.fromhex(body["config"])))
            continue
        if parsed is None:
            raise DeterminismError(f"journal record {kind}@{tick} comes before run.start")
        if kind not in NOT_COMPARED:
            parsed.events.setdefault(tick, []).append((kind, raw))
        if kind == "tick.digest":
            parsed.digests[tick] = (bytes.fromhex(body["digest"]),
                                    bytes.fromhex(body.get("agents", "")))
        elif kind == "control.spawn":
            spawn = opb.AgentSpawn(
                name=body["name"], module=body["module"], priority=body["priority"],
                args=bytes.fromhex(body["args"]), topics=body["topics"],
                restart=opb.RestartPolicy(**body["restart"]),
                limits=cpb.Limits(**body["limits"]),
            )
            parsed.actions.setdefault(tick, []).append(("spawn", (spawn, body["module"])))
        elif kind in ("control.pause", "control.resume", "control.terminate"):
            parsed.actions.setdefault(tick, []).append((kind.split(".")[1], body["name"]))
        elif kind == "control.message":
            parsed.actions.setdefault(tick, []).append(
                ("message", (body["to"], bytes.fromhex(body["payload"]))))
        elif kind == "infer.result":
            parsed.inference[body["key"]] = InferResult(
                bytes.fromhex(body["output"]) if not body["error"] else b"", body["error"],
                body.get("provider", ""), body.get("model_version", ""))
    if parsed is None:
        raise DeterminismError("journal has no run.start record")
    return parsed


class JournalInference(InferenceBridge):
    """Serves agents' inference calls from the journal instead of the inference service."""

    def __init__(self, results: dict[str, InferResult]) -> None:
        super().__init__(None)
        self._results = results

    def submit(self, key: str, model: str, data: bytes) -> Any:
        return self._results.get(key, InferResult(b"", f"replay: no journalled result for {key}"))


def reexecute_tick(run: Run, parsed: ParsedJournal, tick: int) -> None:
    """Enqueue the journal's control actions of `tick`, then execute that tick."""
    for kind, payload in parsed.actions.get(tick, []):
        run.enqueue(kind, payload)
    run.step_tick()


def agent_hashes(blob: bytes) -> dict[int, bytes]:
    """Decode a tick.digest record's per-agent field: u32 seq + 8 hash bytes each."""
    return {int.from_bytes(blob[i:i + 4], "little"): blob[i + 4:i + 12]
            for i in range(0, len(blob), 12)}


def first_difference(original: list[tuple[str, bytes]], replayed: list[tuple[str, bytes]]
                     ) -> str:
    """The first journal event at a tick that differs between two runs."""
    for i in range(max(len(original), len(replayed))):
        a = original[i] if i < len(original) else None
        b = replayed[i] if i < len(replayed) else None
        if a != b:
            def show(e: tuple[str, bytes] | None) -> str:
                return "nothing" if e is None else f"{e[0]} {e[1].decode(errors='replace')}"
            return f"journal had {show(a)}; replay produced {show(b)}"
    return "the events of the tick agree; the agents' messages, logs or fuel differ"
