"""What the dashboard reads, and from where: the orchestrator's and telemetry's viewer calls.

Every call carries the viewer token and a deadline; a service that is down or refuses
becomes a `SourceError` naming the service, which the pages show instead of crashing.
Snapshots that change every tick (status, agent table, run list) are kept for
`cache_ttl_s`, so however many browsers poll, the services see a bounded rate of calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import grpc

from lockstep.api._records import JournalRecord
from lockstep.dial import AuthedChannel
from lockstep.errors import ServiceError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.pb.telemetry.v1 import telemetry_pb2 as tpb
from lockstep.pb.telemetry.v1 import telemetry_pb2_grpc as tpb_grpc
from lockstep_dashboard._config import DashboardConfig

__all__ = ["Source", "SourceError"]

T = TypeVar("T")
CALL_TIMEOUT_S = 5.0
VERIFY_TIMEOUT_S = 60.0


class SourceError(ServiceError):
    """A service did not answer (down, refusing, too slow); `service` names which."""

    def __init__(self, service: str, what: str, code: str, detail: str) -> None:
        super().__init__(f"{service} {what} failed: {code}: {detail}")
        self.service = service
        self.status_name = code
        self.detail = detail


class _TTLCache:
    """A tiny time-to-live cache of call results, keyed by call name and arguments."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._items: dict[tuple[Any, ...], tuple[float, Any]] = {}

    def get(self, key: tuple[Any, ...], ttl: float | None, load: Callable[[], T]) -> T:
        now = time.monotonic()
        limit = self._ttl if ttl is None else ttl
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and now - hit[0] < limit:
            return hit[1]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            if len(self._items) > 4096:
                self._items.clear()
            self._items[key] = (time.monotonic(), value)
        return value


class Source:
    """Read-only access to one deployment (orchestrator + telemetry) with a viewer token."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self._ochannel = AuthedChannel(config.orchestrator, config.token)
        self._tchannel = AuthedChannel(config.telemetry, config.token)
        self._orch: Any = opb_grpc.OrchestratorServiceStub(self._ochannel)
        self._tel: Any = tpb_grpc.TelemetryServiceStub(self._tchannel)
        self._cache = _TTLCache(config.cache_ttl_s)
        # Records of finished ticks never change: the run.start of each run is kept.
        self._starts: dict[str, list[JournalRecord]] = {}

    def close(self) -> None:
        self._ochannel.close()
        self._tchannel.close()

    # ---- calls ------------------------------------------------------------------------

    def _call(self, service: str, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except grpc.RpcError as exc:
            raise SourceError(service, what, exc.code().name, str(exc.details())) from None

    def _orchestrator(self, what: str, request: Any, ttl: float | None = None) -> Any:
        method = getattr(self._orch, what)
        key = ("orchestrator", what, request.SerializeToString(deterministic=True))
        return self._cache.get(
            key,
            ttl,
            lambda: self._call(
                "orchestrator", what, lambda: method(request, timeout=CALL_TIMEOUT_S)
            ),
        )

    # ---- orchestrator -----------------------------------------------------------------

    def status(self) -> opb.RunStatus:
        """The current run's status (cached for cache_ttl_s)."""
        return self._orchestrator("GetStatus", opb.GetStatusRequest())  # type: ignore[no-any-return]

    def agents(self) -> list[opb.AgentInfo]:
        """The current run's agent table (cached for cache_ttl_s)."""
        resp = self._orchestrator("ListAgents", opb.ListAgentsRequest())
        return list(resp.agents)

    def agent(self, name: str) -> opb.AgentInfo:
        """One agent of the current run."""
        return self._orchestrator("GetAgent", opb.GetAgentRequest(name=name))  # type: ignore[no-any-return]

    def digests(self, from_tick: int, to_tick: int) -> dict[int, str]:
        """{tick: digest hex} of the current run from the orchestrator's own chain."""
        resp = self._orchestrator(
            "GetDigests", opb.GetDigestsRequest(from_tick=from_tick, to_tick=to_tick)
        )
        return {int(d.tick): bytes(d.digest).hex() for d in resp.digests}

    def current_run_id(self) -> str | None:
        """The orchestrator's current run, or None when it does not answer."""
        try:
            return str(self.status().run_id)
        except SourceError:
            return None

    # ---- telemetry --------------------------------------------------------------------

    def runs(self) -> list[tpb.RunSummary]:
        """Every journalled run's summary, in order of first record (cached)."""
        key = ("telemetry", "ListRuns")
        resp = self._cache.get(
            key,
            None,
            lambda: self._call(
                "telemetry",
                "ListRuns",
                lambda: self._tel.ListRuns(tpb.ListRunsRequest(), timeout=CALL_TIMEOUT_S),
            ),
        )
        return list(resp.runs)

    def run(self, run_id: str) -> tpb.RunSummary | None:
        """One run's summary, or None if telemetry has no record of it."""
        return next((r for r in self.runs() if r.run_id == run_id), None)

    def records(
        self,
        run_id: str,
        *,
        kinds: Sequence[str] = (),
        from_tick: int | None = None,
        to_tick: int | None = None,
        from_sequence: int = 0,
        to_sequence: int = 0,
        limit: int,
    ) -> list[JournalRecord]:
        """At most `limit` records (limit >= 1: a page never reads a whole run)."""
        if limit < 1:
            raise ValueError("records() needs a limit >= 1")
        return list(
            self.iter_records(
                run_id,
                kinds=kinds,
                from_tick=from_tick,
                to_tick=to_tick,
                from_sequence=from_sequence,
                to_sequence=to_sequence,
                limit=limit,
            )
        )

    def iter_records(
        self,
        run_id: str,
        *,
        kinds: Sequence[str] = (),
        from_tick: int | None = None,
        to_tick: int | None = None,
        from_sequence: int = 0,
        to_sequence: int = 0,
        limit: int,
    ) -> Iterator[JournalRecord]:
        """The same, streamed (the service sends batches of at most 1000 records)."""
        req = tpb.QueryRecordsRequest(
            run_id=run_id,
            kinds=list(kinds),
            from_sequence=from_sequence,
            to_sequence=to_sequence,
            limit=max(1, limit),
        )
        if from_tick is not None:
            req.from_tick = max(0, from_tick)
        if to_tick is not None:
            req.to_tick = max(0, to_tick)
        if from_tick is not None and to_tick is not None and from_tick > to_tick:
            return
        try:
            for batch in self._tel.QueryRecords(req, timeout=CALL_TIMEOUT_S * 4):
                for rec in batch.records:
                    yield JournalRecord.from_stored(rec)
        except grpc.RpcError as exc:
            raise SourceError(
                "telemetry", "QueryRecords", exc.code().name, str(exc.details())
            ) from None

    def start_records(self, run_id: str) -> list[JournalRecord]:
        """A run's `run.start` and (for a restored run) `run.restore` records, kept."""
        if run_id in self._starts:
            return self._starts[run_id]
        recs = self.records(run_id, kinds=["run.start", "run.restore"], limit=2)
        summary = self.run(run_id)
        # A restored run's run.restore is shipped with its first tick, together with the
        # rest of that batch: once more than one record is stored, the pair is complete.
        if len(recs) == 2 or (summary is not None and summary.record_count > 1):
            if len(self._starts) > 10_000:
                self._starts.clear()
            self._starts[run_id] = recs
        return recs

    def verify(self, from_sequence: int, to_sequence: int) -> tpb.VerifyChainResponse:
        """VerifyChain over a sequence range (cached a few seconds: it reads the range)."""
        key = ("telemetry", "VerifyChain", from_sequence, to_sequence)
        req = tpb.VerifyChainRequest(from_sequence=from_sequence, to_sequence=to_sequence)
        resp: tpb.VerifyChainResponse = self._cache.get(
            key,
            max(self.config.cache_ttl_s, 5.0),
            lambda: self._call(
                "telemetry",
                "VerifyChain",
                lambda: self._tel.VerifyChain(req, timeout=VERIFY_TIMEOUT_S),
            ),
        )
        return resp
