"""Telemetry benchmarks: hash-chained audit records appended per second.

Each metric is compared with a raw SQLite baseline measured in the same run: the same
rows inserted with ``executemany`` into the same schema, one transaction per batch, WAL
and the same ``synchronous`` setting, but no hashing, no validation and no RPC. The
ratio is metric / baseline (the fraction of raw SQLite speed kept). Metrics:

- ``telemetry.append_records_per_s``: records/s through the service, a separate process
  reached over gRPC on loopback TCP with a service credential, batches of 1000 records
  of 100-byte payloads sent by ``lockstep.telemetry_client.TelemetryClient``.
- ``telemetry.store_append_records_per_s``: the same through ``Store.append`` in process
  (validation + encoding + chain hashing + insert), without gRPC.
- ``telemetry.verify_records_per_s``: chain verification (read + re-encode + re-hash).

``python bench/telemetry.py [--quick] [--json]``. Never run from the test suite.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # `python bench/telemetry.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import metric, standalone
from lockstep.auth import Role, write_token_file
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep.spawn import start_service
from lockstep.telemetry_client import TelemetryClient
from lockstep_telemetry import Store

BATCH = 1000
PAYLOAD = bytes(range(100))
GOAL = ">= 100k records/s"


def _metric(
    name: str, samples: list[float], baseline: str, base_samples: list[float], goal: str = GOAL
) -> dict[str, object]:
    m = metric(name, "records/s", samples, baseline, base_samples, "-", goal)
    for key in ("median", "p10", "p90", "baseline_median"):
        m[key] = round(m[key])  # type: ignore[call-overload]
    return m


def _records() -> list[pb.Record]:
    return [
        pb.Record(
            tick=i // 50,
            kind="agent.log" if i % 10 else "tick.digest",
            payload=PAYLOAD,
            content_type="application/octet-stream",
        )
        for i in range(BATCH)
    ]


def _rate(append: Callable[[], object], batches: int) -> float:
    t0 = time.perf_counter()
    for _ in range(batches):
        append()
    return batches * BATCH / (time.perf_counter() - t0)


@contextlib.contextmanager
def _raw_sqlite(path: Path) -> Iterator[Callable[[], object]]:
    """Baseline: same schema and pragmas, plain executemany, no hashing, no validation."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
        "tick INTEGER NOT NULL, kind TEXT NOT NULL, content_type TEXT NOT NULL, "
        "payload BLOB NOT NULL, hash BLOB NOT NULL)"
    )
    con.execute("CREATE INDEX records_by_run ON records(run_id)")
    # Rows built once, outside the timing; SQLite assigns seq (rowid): pure insert cost.
    rows = [
        ("bench", rec.tick, rec.kind, rec.content_type, rec.payload, bytes(32))
        for rec in _records()
    ]

    def append() -> None:
        con.execute("BEGIN IMMEDIATE")
        con.executemany(
            "INSERT INTO records(run_id, tick, kind, content_type, payload, "
            "hash) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        con.execute("COMMIT")

    try:
        yield append
    finally:
        con.close()


@contextlib.contextmanager
def _service(tmp: Path) -> Iterator[Callable[[], object]]:
    """The service as its own process, appended to over gRPC with a service token."""
    tokens = write_token_file(tmp / "tokens.json")
    with (
        start_service(
            "lockstep_telemetry", tmp / "tokens.json", "--db", str(tmp / "service.db")
        ) as svc,
        svc.channel(tokens, Role.SERVICE) as channel,
    ):
        client = TelemetryClient(channel, max_batch_records=BATCH)
        recs = _records()
        client.append("bench", recs)  # warm up the channel and the server
        yield lambda: client.append("bench", recs)


def run(quick: bool) -> list[dict[str, object]]:
    """Measure every metric; returns the metric dicts.

    Samples of the baseline and of each metric are interleaved, so a noisy neighbour on
    the machine (or a slow fsync) hits them alike.
    """
    batches, samples = (5, 5) if quick else (20, 9)
    base: list[float] = []
    service: list[float] = []
    store_rates: list[float] = []
    verify: list[float] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="lockstep-bench-telemetry-"))
        )
        raw = stack.enter_context(_raw_sqlite(tmp / "raw.db"))
        remote = stack.enter_context(_service(tmp))
        store = stack.enter_context(Store(tmp / "store.db"))
        recs = _records()
        for _ in range(samples):
            base.append(_rate(raw, batches))
            service.append(_rate(remote, batches))
            store_rates.append(_rate(lambda: store.append("bench", recs), batches))
        for _ in range(max(3, samples // 2)):
            t0 = time.perf_counter()
            res = store.verify()
            assert res.ok, res.reason
            verify.append(res.checked / (time.perf_counter() - t0))
    base_label = "raw SQLite executemany, same schema/WAL/synchronous=FULL, no hashing"
    return [
        _metric("telemetry.append_records_per_s", service, base_label, base),
        _metric("telemetry.store_append_records_per_s", store_rates, base_label, base),
        _metric("telemetry.verify_records_per_s", verify, base_label, base, goal="-"),
    ]


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
