"""Record encoding v1 and the chain, checked against an independent reference reading of
docs/telemetry.md (the "verify in 20 lines" recipe) and a pinned golden vector."""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from pathlib import Path

import pytest

from lockstep_telemetry import GENESIS, Store, chain_hash, encode_record
from tests.telemetry.conftest import records


def reference_verify(db_path: Path) -> bytes:
    """The recipe from docs/telemetry.md, written without the service's code."""

    def lp(b: bytes) -> bytes:
        return struct.pack("<I", len(b)) + b

    h = bytes(32)
    con = sqlite3.connect(db_path)
    expected = 1
    for seq, run_id, tick, kind, ctype, payload, stored in con.execute(
        "SELECT seq, run_id, tick, kind, content_type, payload, hash FROM records ORDER BY seq"
    ):
        assert seq == expected, f"gap at {expected}"
        rec = (
            struct.pack("<BQq", 1, seq, tick)
            + lp(run_id.encode())
            + lp(kind.encode())
            + lp(ctype.encode())
            + lp(payload)
        )
        h = hashlib.sha256(h + rec).digest()
        assert h == stored, f"record {seq} altered"
        expected += 1
    con.close()
    return h


@pytest.mark.unit
def test_golden_vector() -> None:
    rec = encode_record(1, "run-1", 7, "tick.digest", "application/octet-stream", b"\x00\x01")
    assert rec.hex() == (
        "01"
        "0100000000000000"
        "0700000000000000"
        "05000000"
        + b"run-1".hex()
        + "0b000000"
        + b"tick.digest".hex()
        + "18000000"
        + b"application/octet-stream".hex()
        + "02000000"
        "0001"
    )
    h1 = chain_hash(GENESIS, rec)
    assert h1 == hashlib.sha256(bytes(32) + rec).digest()
    # Pinned (also in docs/telemetry.md): changing the encoding needs a new record format.
    assert h1.hex() == "b0faaa0e521d36565319514e0738463a838549d7e71a4fef515e48f3359b177b"


@pytest.mark.unit
def test_store_chain_matches_reference(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    with Store(db) as store:
        store.append("run-a", records(5))
        store.append("run-b", records(3, kind="control.spawn", start_tick=10))
        out = store.append("run-a", records(2, payload=b""))
        assert (out.first_seq, out.count, out.head_seq) == (9, 2, 10)
        head = store.head()
        res = store.verify()
        assert res.ok and res.checked == 10 and res.hash == head[1]
    assert reference_verify(db) == head[1]


@pytest.mark.unit
def test_unicode_and_empty_fields(tmp_path: Path) -> None:
    from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb

    db = tmp_path / "t.db"
    with Store(db) as store:
        store.append("run-", [pb.Record(tick=0, kind="agent.log", payload=b"", content_type="")])
        store.append(
            "r",
            [
                pb.Record(
                    tick=2**62,
                    kind="agent.log",
                    payload="héllo ✓".encode(),
                    content_type="text/plain",
                )
            ],
        )
        assert store.verify().ok
        head = store.head()[1]
    assert reference_verify(db) == head


DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


@pytest.mark.unit
def test_docs_recipe_and_golden_vector_are_accurate(tmp_path: Path) -> None:
    """The verification code and the golden bytes printed in docs/telemetry.md work."""
    import re

    text = DOC.read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    namespace: dict[str, object] = {}
    exec(code, namespace)
    db = tmp_path / "t.db"
    with Store(db) as store:
        store.append("run-1", records(20))
        head = store.head()[1]
    assert namespace["verify"](str(db)) == head  # type: ignore[operator]
    golden = "".join(re.findall(r"```\n(01 01.*?)```", text, re.S)[0].split())
    assert (
        golden
        == encode_record(
            1, "run-1", 7, "tick.digest", "application/octet-stream", b"\x00\x01"
        ).hex()
    )
