"""A real telemetry server (in-process, real gRPC on port 0, real SQLite file) per test."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel, wait_serving
from lockstep.pb.telemetry.v1 import telemetry_pb2 as pb
from lockstep.pb.telemetry.v1 import telemetry_pb2_grpc as pb_grpc
from lockstep.server import BoundServer
from lockstep.telemetry_client import TelemetryClient
from lockstep_telemetry import SERVICE_NAME, TelemetryConfig, TelemetryServicer, create_server


class Telemetry:
    """One telemetry server on a temp database, with channels for every role."""

    def __init__(
        self,
        db_path: Path,
        tokens: TokenStore,
        address: str = "127.0.0.1:0",
        metrics: bool = False,
        **config: Any,
    ) -> None:
        self.db_path = db_path
        self.tokens = tokens
        self.metrics = metrics
        self.config = TelemetryConfig(db_path=db_path, **config)
        self._channels: list[grpc.Channel] = []
        self.server: BoundServer | None = None
        self.start(address)

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    @property
    def servicer(self) -> TelemetryServicer:
        assert self.server is not None
        servicer = self.server.servicers[SERVICE_NAME]
        assert isinstance(servicer, TelemetryServicer)
        return servicer

    def start(self, address: str = "127.0.0.1:0", **changes: Any) -> BoundServer:
        if changes:
            self.config = dataclasses.replace(self.config, **changes)
        self.server = create_server(address, auth=self.tokens, config=self.config)
        if self.metrics:
            self.server.serve_metrics("127.0.0.1:0")
        wait_serving(self.server.address)
        return self.server

    def stop(self) -> None:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self.server is not None:
            self.server.stop(0)
            self.server = None

    def restart(self, **changes: Any) -> BoundServer:
        self.stop()
        return self.start(**changes)

    def channel(self, role: Role | None = Role.SERVICE) -> grpc.Channel:
        token = self.tokens.token(role) if role is not None else None
        channel = AuthedChannel(self.address, token)
        self._channels.append(channel)
        return channel

    def stub(self, role: Role | None = Role.SERVICE) -> pb_grpc.TelemetryServiceStub:
        return pb_grpc.TelemetryServiceStub(self.channel(role))

    def client(self, role: Role = Role.SERVICE, **kw: Any) -> TelemetryClient:
        return TelemetryClient(self.channel(role), **kw)


@pytest.fixture
def telemetry(tmp_path: Path, auth: tuple[Path, TokenStore]) -> Iterator[Telemetry]:
    env = Telemetry(tmp_path / "telemetry.db", auth[1], metrics=True)
    yield env
    env.stop()


def records(
    n: int, *, kind: str = "agent.log", start_tick: int = 0, payload: bytes = b"p"
) -> list[pb.Record]:
    """n records, one per tick, payload `payload` + index."""
    return [
        pb.Record(
            tick=start_tick + i,
            kind=kind,
            payload=payload + str(i).encode(),
            content_type="text/plain",
        )
        for i in range(n)
    ]
