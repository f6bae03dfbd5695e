"""What each page shows: the calls on the services and the rows they become.

Every function takes the `Source` and the page's query parameters and returns the
template's context. Nothing here renders HTML (the templates do, with autoescaping), and
nothing reads more than one page, one tick window or `max_scan` records.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lockstep.api._records import spawned_names
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.telemetry.v1 import telemetry_pb2 as tpb
from lockstep_dashboard._charts import flow_figure, timeline_figure
from lockstep_dashboard._compare import compare_runs
from lockstep_dashboard._journal import (
    ALL_STATS,
    flow_edges,
    inference_row,
    log_row,
    run_info,
    stats_row,
    text_of_hex,
    touched_ticks,
)
from lockstep_dashboard._source import Source, SourceError

__all__ = [
    "KINDS",
    "NotFound",
    "agent_page",
    "agents_page",
    "checkpoints_page",
    "compare_page",
    "digests_page",
    "flow_page",
    "inference_page",
    "journal_page",
    "live_update",
    "run_list",
    "run_page",
]

# Journal kinds offered by the journal browser's filter.
KINDS = (
    "run.start",
    "run.restore",
    "run.checkpoint",
    "module.register",
    "control.spawn",
    "control.pause",
    "control.resume",
    "control.terminate",
    "control.message",
    "agent.log",
    "agent.fault",
    "agent.done",
    "agent.restart",
    "infer.result",
    "tick.digest",
    "tick.stats",
)
AGENT_SORTS = (
    "sequence",
    "name",
    "state",
    "module",
    "priority",
    "pool",
    "steps",
    "fuel",
    "sent",
    "received",
    "inbox",
    "faults",
    "restarts",
    "spawn_tick",
)
DEFAULT_TIMELINE_TICKS = 500
DEFAULT_FLOW_TICKS = 20
MAX_FLOW_TICKS = 200
DEFAULT_AGENT_TICKS = 100
HISTORY_ROWS = 20  # rows of an agent's tick history and observations shown
HISTORY_TICKS = 50  # the last ticks of an agent's window whose per-agent digests are read


class NotFound(Exception):  # noqa: N818 - an HTTP 404, not an error of the program
    """The run, agent or page asked for does not exist."""


@dataclass(frozen=True)
class Pager:
    """Page `page` (from 1) of `total` rows, `size` per page."""

    page: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def start(self) -> int:
        return (self.page - 1) * self.size

    def slice(self, rows: list[Any]) -> list[Any]:
        return rows[self.start : self.start + self.size]


def _pager(page: int, size: int, total: int) -> Pager:
    pages = max(1, -(-total // size))
    return Pager(min(max(1, page), pages), size, total)


def _state_name(value: int) -> str:
    return str(opb.AgentState.Name(value)).removeprefix("AGENT_STATE_").lower()


def _window(
    last: int, from_tick: int | None, to_tick: int | None, default: int, widest: int
) -> tuple[int, int]:
    """A tick range within 0..last at most `widest` wide; by default the last `default`."""
    hi = last if to_tick is None else max(0, min(to_tick, last))
    lo = max(0, hi - default + 1) if from_tick is None else max(0, min(from_tick, hi))
    if hi - lo + 1 > widest:
        lo = hi - widest + 1
    return lo, hi


# ---- the run list -------------------------------------------------------------------------


def _live_agents(status: opb.RunStatus) -> int:
    return sum(n for state, n in status.agents_by_state.items() if state != "terminated")


def run_list(src: Source, q: str = "", status: str = "", page: int = 1) -> dict[str, Any]:
    """Every journalled run, newest first: status, label, seed, config hash, ticks,
    agents, pools, parent; filtered by `q` (run id or label) and `status`."""
    runs = list(reversed(src.runs()))
    current: opb.RunStatus | None
    error = None
    try:
        current = src.status()
    except SourceError as exc:
        current, error = None, str(exc)
    rows = []
    for summary in runs:
        info = run_info(summary.run_id, src.start_records(summary.run_id))
        is_current = current is not None and current.run_id == summary.run_id
        state = (
            ("idle" if current is not None and current.idle else "running")
            if is_current
            else "ended"
        )
        if status and state != status:
            continue
        if (
            q
            and q.lower() not in summary.run_id.lower()
            and q.lower() not in (info.label or "").lower()
        ):
            continue
        rows.append({"summary": summary, "info": info, "state": state, "current": is_current})
    pager = _pager(page, src.config.page_size, len(rows))
    shown = pager.slice(rows)
    for row in shown:
        summary = row["summary"]
        if row["current"] and current is not None:
            row["agents"] = _live_agents(current)
            row["ticks"] = int(current.tick)
        else:
            last = src.records(
                summary.run_id, kinds=["tick.stats"], from_tick=int(summary.max_tick), limit=1
            )
            row["agents"] = stats_row(last[0])["agents"] if last else None
            row["ticks"] = int(summary.max_tick)
    return {
        "rows": shown,
        "pager": pager,
        "q": q,
        "status": status,
        "error": error,
        "all_runs": [r.run_id for r in runs],
    }


# ---- one run ---------------------------------------------------------------------------


def _summary(src: Source, run_id: str) -> tuple[tpb.RunSummary, Any, opb.RunStatus | None]:
    summary = src.run(run_id)
    if summary is None:
        raise NotFound(f"telemetry has no run {run_id!r}")
    info = run_info(run_id, src.start_records(run_id))
    try:
        status = src.status()
    except SourceError:
        status = None
    return summary, info, (status if status is not None and status.run_id == run_id else None)


def _run_context(src: Source, run_id: str) -> dict[str, Any]:
    summary, info, status = _summary(src, run_id)
    last_tick = int(status.tick) if status is not None else int(summary.max_tick)
    return {
        "run_id": run_id,
        "summary": summary,
        "info": info,
        "status": status,
        "live": status is not None,
        "last_tick": last_tick,
        "render_interval_ms": src.config.render_interval_ms,
    }


def run_page(
    src: Source, run_id: str, from_tick: int | None = None, to_tick: int | None = None
) -> dict[str, Any]:
    """Compact summary, then the tick timeline charts from `tick.stats`."""
    ctx = _run_context(src, run_id)
    lo, hi = _window(
        ctx["last_tick"], from_tick, to_tick, DEFAULT_TIMELINE_TICKS, src.config.max_ticks
    )
    rows = [
        stats_row(r)
        for r in src.records(
            run_id, kinds=["tick.stats"], from_tick=lo, to_tick=hi, limit=(hi - lo + 1) * 2 + 4
        )
    ]
    last = rows[-1] if rows else None
    totals = {
        name: (
            sum(r[name] for r in rows if r[name] is not None)
            if any(r[name] is not None for r in rows)
            else None
        )
        for name in ("steps", "messages", "fuel", "faults", "undeliverable")
    }
    ctx.update(
        {
            "from_tick": lo,
            "to_tick": hi,
            "stats": rows,
            "last_stats": last,
            "totals": totals,
            "stat_fields": ALL_STATS,
            "figure": timeline_figure(rows) if rows else None,
        }
    )
    return ctx


def live_update(src: Source, run_id: str, after: int) -> dict[str, Any]:
    """What a live run page redraws: status and the `tick.stats` rows after tick `after`."""
    try:
        status = src.status()
    except SourceError as exc:
        return {"current": False, "error": str(exc), "rows": []}
    current = status.run_id == run_id
    summary = src.run(run_id)
    top = int(status.tick) if current else int(summary.max_tick) if summary else after
    lo = max(after + 1, top - src.config.max_ticks + 1)
    rows = (
        [
            stats_row(r)
            for r in src.records(
                run_id, kinds=["tick.stats"], from_tick=lo, limit=src.config.max_ticks * 2
            )
        ]
        if lo <= top
        else []
    )
    out: dict[str, Any] = {"current": current, "rows": rows, "error": None}
    if current:
        out.update(
            {
                "tick": int(status.tick),
                "digest": bytes(status.digest).hex(),
                "idle": bool(status.idle),
                "agents": _live_agents(status),
                "agents_by_state": dict(sorted(status.agents_by_state.items())),
                "counters": {
                    fd.name: int(getattr(status.counters, fd.name))
                    for fd in opb.RunCounters.DESCRIPTOR.fields
                },
            }
        )
    return out


# ---- agents ----------------------------------------------------------------------------


def _fault_counts(src: Source, run_id: str) -> tuple[Counter[str], bool]:
    recs = src.records(run_id, kinds=["agent.fault"], limit=src.config.max_scan)
    return (
        Counter(str(r.payload.get("name", r.payload.get("agent", ""))) for r in recs),
        len(recs) >= src.config.max_scan,
    )


def _journal_agents(src: Source, run_id: str) -> tuple[list[dict[str, Any]], bool]:
    """The agent table of a run that is not current, from its journal (bounded)."""
    limit = src.config.max_scan
    spawns = src.records(run_id, kinds=["control.spawn"], limit=limit)
    ends = src.records(
        run_id, kinds=["agent.done", "control.terminate", "agent.restart"], limit=limit
    )
    done = {str(r.payload.get("name", "")) for r in ends if r.kind == "agent.done"}
    terminated = {
        str(n)
        for r in ends
        if r.kind == "control.terminate"
        for n in r.payload.get("names", [r.payload.get("name", "")])
    }
    restarts = Counter(str(r.payload.get("name", "")) for r in ends if r.kind == "agent.restart")
    names = spawned_names(spawns)
    rows = []
    for r in spawns:
        p = r.payload
        name = names.get(int(p.get("seq", -1)), str(p.get("name", "")))
        state = "done" if name in done else "terminated" if name in terminated else None
        rows.append(
            {
                "name": name,
                "sequence": p.get("seq"),
                "state": state,
                "module": str(p.get("module", "")),
                "priority": p.get("priority", 0),
                "pool": None,
                "steps": None,
                "fuel": None,
                "sent": None,
                "received": None,
                "inbox": None,
                "restarts": restarts.get(name, 0),
                "spawn_tick": r.tick,
                "last_fault": "",
                "args": text_of_hex(p.get("args"), 400),
            }
        )
    return rows, len(spawns) >= limit or len(ends) >= limit


def _live_rows(agents: list[opb.AgentInfo]) -> list[dict[str, Any]]:
    return [
        {
            "name": a.name,
            "sequence": int(a.sequence),
            "state": _state_name(a.state),
            "module": a.module_hash,
            "priority": int(a.priority),
            "pool": int(a.pool),
            "steps": int(a.steps),
            "fuel": int(a.fuel_used),
            "sent": int(a.messages_sent),
            "received": int(a.messages_received),
            "inbox": int(a.inbox),
            "restarts": int(a.restarts),
            "spawn_tick": int(a.spawn_tick),
            "last_fault": (a.last_fault.detail if a.HasField("last_fault") else ""),
        }
        for a in agents
    ]


def agents_page(
    src: Source, run_id: str, q: str = "", sort: str = "sequence", order: str = "asc", page: int = 1
) -> dict[str, Any]:
    """The agent table: live from the orchestrator for the current run, else from the
    journal; searchable by name, sortable by any column, paginated."""
    ctx = _run_context(src, run_id)
    if ctx["live"]:
        rows, truncated = _live_rows(src.agents()), False
    else:
        rows, truncated = _journal_agents(src, run_id)
    faults, faults_truncated = _fault_counts(src, run_id)
    for row in rows:
        row["faults"] = faults.get(row["name"], 0)
    if q:
        rows = [r for r in rows if q.lower() in r["name"].lower()]
    sort = sort if sort in AGENT_SORTS else "sequence"
    rows.sort(
        key=lambda r: (r[sort] is None, r[sort] if r[sort] is not None else 0, r["sequence"] or 0),
        reverse=(order == "desc"),
    )
    pager = _pager(page, src.config.page_size, len(rows))
    ctx.update(
        {
            "rows": pager.slice(rows),
            "pager": pager,
            "q": q,
            "sort": sort,
            "order": "desc" if order == "desc" else "asc",
            "sorts": AGENT_SORTS,
            "truncated": truncated or faults_truncated,
        }
    )
    return ctx


def agent_page(
    src: Source,
    run_id: str,
    name: str,
    from_tick: int | None = None,
    to_tick: int | None = None,
    page: int = 1,
) -> dict[str, Any]:
    """One agent: its row, the ticks it was touched in (with its per-agent digest), and
    its logs and observations, over a tick window."""
    ctx = _run_context(src, run_id)
    agent: dict[str, Any] | None = None
    if ctx["live"]:
        agent = next((r for r in _live_rows(src.agents()) if r["name"] == name), None)
    if agent is None:
        rows, _ = _journal_agents(src, run_id)
        agent = next((r for r in rows if r["name"] == name), None)
    if agent is None:
        raise NotFound(f"run {run_id} has no agent {name!r}")
    spawned = next((r for r in _journal_agents(src, run_id)[0] if r["name"] == name), {})
    agent = {
        **agent,
        "faults": _fault_counts(src, run_id)[0].get(name, 0),
        "args": spawned.get("args", ""),
    }
    lo, hi = _window(
        ctx["last_tick"], from_tick, to_tick, DEFAULT_AGENT_TICKS, src.config.max_ticks
    )
    seq = int(agent["sequence"]) if agent["sequence"] is not None else -1
    # tick.digest records grow with the agents touched: read only the ticks shown.
    dlo = max(lo, hi - HISTORY_TICKS + 1)
    digests = src.records(
        run_id, kinds=["tick.digest"], from_tick=dlo, to_tick=hi, limit=(hi - dlo + 1) * 4 + 16
    )
    history = touched_ticks(digests, seq)
    scanned = 0
    logs = []
    faults = []
    for r in src.iter_records(
        run_id,
        kinds=["agent.log", "agent.fault"],
        from_tick=lo,
        to_tick=hi,
        limit=src.config.max_scan,
    ):
        scanned += 1
        if r.kind == "agent.log" and r.payload.get("agent") == name:
            logs.append(log_row(r))
        elif r.kind == "agent.fault" and r.payload.get("name", r.payload.get("agent")) == name:
            faults.append(r)
    per_tick = Counter(row.tick for row in logs)
    pager = _pager(page, src.config.page_size, len(logs))
    observations = [row for row in logs if row.observation is not None]
    ctx.update(
        {
            "agent": agent,
            "from_tick": lo,
            "to_tick": hi,
            "history": [(t, d, per_tick.get(t, 0)) for t, d in history][-HISTORY_ROWS:],
            "touched": len(history),
            "history_from": dlo,
            "logs": pager.slice(logs),
            "pager": pager,
            "observations": observations[-HISTORY_ROWS:],
            "faults": faults,
            "truncated": scanned >= src.config.max_scan,
        }
    )
    return ctx


# ---- message flow ------------------------------------------------------------------------


def flow_page(
    src: Source,
    run_id: str,
    from_tick: int | None = None,
    to_tick: int | None = None,
    page: int = 1,
) -> dict[str, Any]:
    """Traffic over a small tick range: the journalled edges (external messages,
    inference requests and results) and the per-tick message totals of `tick.stats`."""
    ctx = _run_context(src, run_id)
    lo, hi = _window(
        ctx["last_tick"],
        from_tick,
        to_tick,
        DEFAULT_FLOW_TICKS,
        min(MAX_FLOW_TICKS, src.config.max_ticks),
    )
    latency = ctx["info"].inference_latency
    # Inference results of requests made in the range arrive up to `latency` ticks later.
    extra = latency or 0
    recs = src.records(
        run_id,
        kinds=["control.message", "infer.result"],
        from_tick=lo,
        to_tick=hi + extra,
        limit=src.config.max_scan,
    )
    edges = [e for e in flow_edges(recs, latency) if e.last_tick >= lo and e.first_tick <= hi]
    stats = [
        stats_row(r)
        for r in src.records(
            run_id, kinds=["tick.stats"], from_tick=lo, to_tick=hi, limit=(hi - lo + 1) * 2 + 4
        )
    ]
    totals = {
        k: (
            sum(r[k] for r in stats if r[k] is not None)
            if any(r[k] is not None for r in stats)
            else None
        )
        for k in ("sent", "messages", "bytes", "undeliverable")
    }
    pager = _pager(page, src.config.page_size, len(edges))
    top: list[dict[str, Any]] = []
    if ctx["live"]:
        live = _live_rows(src.agents())
        top = sorted(live, key=lambda r: (-(r["sent"] + r["received"]), r["sequence"]))[:10]
    ctx.update(
        {
            "from_tick": lo,
            "to_tick": hi,
            "edges": pager.slice(edges),
            "pager": pager,
            "stats": stats,
            "totals": totals,
            "top": top,
            "figure": flow_figure(stats) if stats else None,
            "max_flow_ticks": MAX_FLOW_TICKS,
            "truncated": len(recs) >= src.config.max_scan,
        }
    )
    return ctx


# ---- digests, journal, inference, checkpoints --------------------------------------------


def _verify(src: Source, first: int, last: int) -> dict[str, Any]:
    if first < 1 or last < first:
        return {"ok": None, "reason": "no records", "checked": 0, "from": first, "to": last}
    resp = src.verify(first, last)
    return {
        "ok": bool(resp.ok),
        "reason": resp.reason,
        "checked": int(resp.records_checked),
        "from": int(resp.from_sequence),
        "to": int(resp.to_sequence),
        "first_bad": int(resp.first_bad_sequence),
        "fault": tpb.ChainFault.Name(resp.fault),
        "hash": bytes(resp.hash).hex(),
    }


def digests_page(src: Source, run_id: str, from_tick: int | None = None) -> dict[str, Any]:
    """A page of the run's tick digests, each checked against the orchestrator's chain
    when the run is current, and the telemetry hash chain over the run's records."""
    ctx = _run_context(src, run_id)
    size = src.config.page_size
    lo = max(0, from_tick if from_tick is not None else ctx["last_tick"] - size + 1)
    recs = src.records(run_id, kinds=["tick.digest"], from_tick=lo, limit=size)
    rows: list[dict[str, Any]] = []
    orch: dict[int, str] = {}
    if ctx["live"] and recs:
        try:
            orch = src.digests(recs[0].tick, recs[-1].tick)
        except SourceError:
            orch = {}
    for r in recs:
        digest = str(r.payload.get("digest", ""))
        blob = str(r.payload.get("agents", ""))
        rows.append(
            {
                "tick": r.tick,
                "digest": digest,
                "sequence": r.sequence,
                "agents": len(blob) // 24,
                "hash": r.hash,
                "orchestrator": (None if r.tick not in orch else orch[r.tick] == digest),
            }
        )
    summary = ctx["summary"]
    ctx.update(
        {
            "rows": rows,
            "from_tick": lo,
            "page_size": size,
            "chain": _verify(src, int(summary.first_sequence), int(summary.last_sequence)),
            "next_tick": rows[-1]["tick"] + 1 if len(rows) == size else None,
            "prev_tick": max(0, lo - size) if lo > 0 else None,
        }
    )
    return ctx


def _matches_agent(payload: dict[str, Any], agent: str) -> bool:
    if agent in (payload.get("agent"), payload.get("name"), payload.get("to")):
        return True
    names = payload.get("names")
    return isinstance(names, list) and agent in names


def journal_page(
    src: Source,
    run_id: str,
    kinds: list[str],
    agent: str = "",
    from_tick: int | None = None,
    to_tick: int | None = None,
    after: int = 0,
) -> dict[str, Any]:
    """A page of journal records after sequence `after`, filtered by kind, tick range and
    agent (the agent filter reads at most max_scan records per page), with the hash chain
    verified over the page's sequence range."""
    ctx = _run_context(src, run_id)
    kinds = [k for k in kinds if k in KINDS]
    size = src.config.page_size
    rows: list[dict[str, Any]] = []
    scanned = 0
    last_seen = after
    for r in src.iter_records(
        run_id,
        kinds=kinds,
        from_tick=from_tick,
        to_tick=to_tick,
        from_sequence=after + 1,
        limit=src.config.max_scan if agent else size,
    ):
        scanned += 1
        last_seen = r.sequence
        if agent and not _matches_agent(r.payload, agent):
            continue
        text = json.dumps(r.payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        rows.append({"record": r, "payload": text if len(text) <= 600 else text[:600] + "…"})
        if len(rows) >= size:
            break
    more = len(rows) >= size or (bool(agent) and scanned >= src.config.max_scan)
    chain = _verify(src, rows[0]["record"].sequence, rows[-1]["record"].sequence) if rows else None
    ctx.update(
        {
            "rows": rows,
            "kinds": kinds,
            "all_kinds": KINDS,
            "agent": agent,
            "from_tick": from_tick,
            "to_tick": to_tick,
            "after": after,
            "next_after": last_seen if more else None,
            "chain": chain,
            "scanned": scanned,
        }
    )
    return ctx


def inference_page(src: Source, run_id: str, after: int = 0) -> dict[str, Any]:
    """A page of the run's journalled inference results."""
    ctx = _run_context(src, run_id)
    size = src.config.page_size
    recs = src.records(run_id, kinds=["infer.result"], from_sequence=after + 1, limit=size)
    rows = [inference_row(r, ctx["info"].inference_latency) for r in recs]
    ctx.update(
        {
            "rows": rows,
            "after": after,
            "next_after": recs[-1].sequence if len(recs) == size else None,
        }
    )
    return ctx


def checkpoints_page(src: Source, run_id: str) -> dict[str, Any]:
    """The run's checkpoints (`run.checkpoint`), the runs restored from them, and the
    checkpoint this run was itself restored from."""
    ctx = _run_context(src, run_id)
    limit = src.config.max_scan
    points = src.records(run_id, kinds=["run.checkpoint"], limit=limit)
    restores = src.records("", kinds=["run.restore"], limit=limit)
    children: dict[str, list[tuple[str, int]]] = {}
    for r in restores:
        if r.payload.get("from_run") == run_id:
            children.setdefault(str(r.payload.get("checkpoint", "")), []).append((r.run_id, r.tick))
    rows = [
        {
            "tick": r.tick,
            "id": str(r.payload.get("id", "")),
            "label": str(r.payload.get("label", "")),
            "agents": r.payload.get("agents"),
            "sequence": r.sequence,
            "forks": children.get(str(r.payload.get("id", "")), []),
        }
        for r in points
    ]
    ctx.update({"rows": rows})
    return ctx


def compare_page(src: Source, a: str, b: str) -> dict[str, Any]:
    """Two runs side by side: the first divergent tick and agents, and digests around it."""
    runs = [r.run_id for r in reversed(src.runs())]
    if a and not b:
        info = run_info(a, src.start_records(a)) if src.run(a) else None
        if info is not None and info.parent is not None:
            b = info.parent[0]
    ctx: dict[str, Any] = {"a": a, "b": b, "all_runs": runs, "result": None}
    if a and b:
        for run_id in (a, b):
            if src.run(run_id) is None:
                raise NotFound(f"telemetry has no run {run_id!r}")
        ctx["result"] = compare_runs(src, a, b)
    return ctx
