"""Re-record the golden journal (only when the digest encoding changes on purpose).

    .venv/bin/python tests/golden/record.py

Builds the probe agent, runs tests.orchestrator.test_scheduling.faulty_run on real
pools with a real telemetry service, and writes probe.wasm and probe-run.jsonl here.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from lockstep.agents import build_agent  # noqa: E402
from lockstep.auth import Role, write_token_file  # noqa: E402
from lockstep.dial import AuthedChannel  # noqa: E402
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc  # noqa: E402
from lockstep.runner import prepare_module  # noqa: E402
from lockstep.telemetry_client import TelemetryClient  # noqa: E402
from lockstep_orchestrator import OrchestratorConfig, create_server  # noqa: E402
from tests.conftest import start_service  # noqa: E402
from tests.orchestrator.test_scheduling import faulty_run  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tokens = Path(tmp) / "tokens.json"
        store = write_token_file(tokens)
        wasm = prepare_module(
            build_agent(
                ROOT / "tests/orchestrator/agents/probe.c", Path(tmp) / "probe.wasm"
            ).read_bytes(),
            "probe",
            None,
        )
        (HERE / "probe.wasm").write_bytes(wasm)
        pools = [start_service("lockstep_wasm_pool", tokens) for _ in range(2)]
        telemetry = start_service("lockstep_telemetry", tokens, "--db", str(Path(tmp) / "t.db"))
        config = OrchestratorConfig(
            pools=tuple(p.address for p in pools), telemetry=telemetry.address, dev_mode=True
        )
        with (
            create_server("127.0.0.1:0", auth=store, config=config) as bound,
            AuthedChannel(bound.address, store.token(Role.ADMIN)) as ch,
        ):
            _d, status, _i = faulty_run(opb_grpc.OrchestratorServiceStub(ch), wasm)
        with AuthedChannel(telemetry.address, store.token(Role.VIEWER)) as ch:
            lines = [
                json.dumps(
                    {"tick": r.tick, "kind": r.kind, "payload": r.payload.decode()}, sort_keys=True
                )
                for r in TelemetryClient(ch).query(status.run_id)
            ]
        (HERE / "probe-run.jsonl").write_text("\n".join(lines) + "\n")
        for svc in [*pools, telemetry]:
            svc.stop()
    print(f"recorded {len(lines)} journal records of run {status.run_id}")


if __name__ == "__main__":
    main()
