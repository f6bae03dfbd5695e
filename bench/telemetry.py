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

import argparse
import contextlib
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lockstep.auth import Role, write_token_file
from lockstep.client import AuthedChannel, wait_serving
from lockstep.telemetry.v1 import telemetry_pb2 as pb
from lockstep.telemetry_client import TelemetryClient
from lockstep_telemetry import Store

BATCH = 1000
PAYLOAD = bytes(range(100))
GOAL = ">= 100k records/s"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _metric(name: str, samples: list[float], baseline: str, base_samples: list[float],
            goal: str = GOAL) -> dict[str, object]:
    median = statistics.median(samples)
    base = statistics.median(base_samples)
    return {"name": name, "unit": "records/s", "median": round(median),
            "p10": round(_pct(samples, 0.1)), "p90": round(_pct(samples, 0.9)),
            "baseline": baseline, "baseline_median": round(base),
            "ratio": round(median / base, 3) if base else None,
            "spec_target": "-", "goal": goal}


def _records() -> list[pb.Record]:
    return [pb.Record(tick=i // 50, kind="agent.log" if i % 10 else "tick.digest",
                      payload=PAYLOAD, content_type="application/octet-stream")
            for i in range(BATCH)]


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
    con.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY, run_id TEXT NOT NULL, "
                "tick INTEGER NOT NULL, kind TEXT NOT NULL, content_type TEXT NOT NULL, "
                "payload BLOB NOT NULL, hash BLOB NOT NULL)")
    con.execute("CREATE INDEX records_by_run ON records(run_id)")
    # Rows built once, outside the timing; SQLite assigns seq (rowid): pure insert cost.
    rows = [("bench", rec.tick, rec.kind, rec.content_type, rec.payload, bytes(32))
            for rec in _records()]

    def append() -> None:
        con.execute("BEGIN IMMEDIATE")
        con.executemany("INSERT INTO records(run_id, tick, kind, content_type, payload, "
                        "hash) VALUES (?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")

    try:
        yield append
    finally:
        con.close()


@contextlib.contextmanager
def _service(tmp: Path) -> Iterator[Callable[[], object]]:
    """The service as its own process, appended to over gRPC with a service token."""
    tokens = write_token_file(tmp / "tokens.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lockstep_telemetry", "--address", "127.0.0.1:0",
         "--auth-file", str(tmp / "tokens.json"), "--db", str(tmp / "service.db")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    found = threading.Event()
    address: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = re.search(r"serving on (\S+) \(pid", line)
            if match:
                address.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not found.wait(60) or not address:
            raise RuntimeError("telemetry service did not start")
        wait_serving(address[0])
        with AuthedChannel(address[0], tokens.token(Role.SERVICE)) as channel:
            client = TelemetryClient(channel, max_batch_records=BATCH)
            recs = _records()
            client.append("bench", recs)  # warm up the channel and the server
            yield lambda: client.append("bench", recs)
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(10)


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
        tmp = Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="lockstep-bench-telemetry-")))
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
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer batches and samples")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    metrics = run(args.quick)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{'metric':40} {'median':>9} {'p10':>9} {'p90':>9} {'base':>9} {'ratio':>7}  goal")
    for m in metrics:
        print(f"{m['name']!s:40} {m['median']!s:>9} {m['p10']!s:>9} {m['p90']!s:>9} "
              f"{m['baseline_median']!s:>9} {m['ratio']!s:>7}  {m['goal']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
