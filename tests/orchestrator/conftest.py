"""Real pool processes and in-process orchestrators over real gRPC."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.runner import prepare_module
from lockstep_orchestrator import OrchestratorConfig, create_server
from tests.conftest import ServiceProcess, start_service

AGENTS = Path(__file__).parent / "agents"


@pytest.fixture(scope="session")
def probe_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from lockstep.agents import build_agent

    out = tmp_path_factory.mktemp("agents") / "probe.wasm"
    return prepare_module(build_agent(AGENTS / "probe.c", out).read_bytes(), "probe", None)


@pytest.fixture(scope="session")
def pools(auth: tuple[Path, TokenStore]) -> Iterator[list[ServiceProcess]]:
    """Three pool processes shared by the orchestrator tests (each run resets them)."""
    started = [start_service("lockstep_wasm_pool", auth[0]) for _ in range(3)]
    yield started
    for svc in started:
        svc.stop()


OrchestratorFactory = Callable[..., opb_grpc.OrchestratorServiceStub]


@pytest.fixture
def orchestrator(
    pools: list[ServiceProcess], auth: tuple[Path, TokenStore]
) -> Iterator[OrchestratorFactory]:
    """Start an orchestrator over the first n pools; returns an admin stub."""
    servers = []
    channels = []

    def factory(n: int, **overrides: Any) -> opb_grpc.OrchestratorServiceStub:
        settings: dict[str, Any] = {"dev_mode": True, **overrides}
        config = OrchestratorConfig(pools=tuple(p.address for p in pools[:n]), **settings)
        bound = create_server("127.0.0.1:0", auth=auth[1], config=config)
        servers.append(bound)
        channel = AuthedChannel(bound.address, auth[1].token(Role.ADMIN))
        channels.append(channel)
        return opb_grpc.OrchestratorServiceStub(channel)

    yield factory
    for channel in channels:
        channel.close()
    for bound in servers:
        bound.stop(0)
