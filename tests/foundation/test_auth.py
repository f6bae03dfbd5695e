"""Credentials: token files and server-side role checks over real gRPC."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from lockstep.auth import VIEWER, Role, TokenStore, write_token_file
from lockstep.dial import AuthedChannel
from lockstep.errors import ConfigError
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.pb.orchestrator.v1 import orchestrator_pb2_grpc as opb_grpc
from lockstep.server import build_server, parse_address, role_table
from lockstep_orchestrator import OrchestratorConfig, create_server


@pytest.mark.unit
def test_token_file_round_trip_and_permissions(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    store = write_token_file(path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = TokenStore.load(path)
    for role in Role:
        assert loaded.role_of(store.token(role)) is role
    assert loaded.role_of("not-a-token") is None


@pytest.mark.unit
@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "unreadable"),
        ("[]", "JSON object"),
        (json.dumps({"root": "x" * 20}), "unknown role 'root'"),
        (json.dumps({"admin": "short"}), ">= 16"),
    ],
)
def test_bad_token_files_are_config_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        TokenStore.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        TokenStore.load(tmp_path / "missing.json")


@pytest.mark.unit
@pytest.mark.parametrize("address", ["nohost", "host:port", ":80", "h:70000", "unix:"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ConfigError, match="bad address"):
        parse_address(address)


@pytest.mark.integration
def test_port_in_use_is_a_config_error() -> None:
    first = build_server("127.0.0.1:0", [], auth=None)
    try:
        with pytest.raises(ConfigError, match="cannot listen"):
            build_server(first.address, [], auth=None)
    finally:
        first.stop(0)


@pytest.mark.integration
def test_roles_are_enforced_server_side(auth: tuple[Path, TokenStore]) -> None:
    _path, store = auth
    config = OrchestratorConfig(pools=("127.0.0.1:1",), dev_mode=True)
    with create_server("127.0.0.1:0", auth=store, config=config) as bound:

        def status(token: str | None) -> grpc.StatusCode:
            with AuthedChannel(bound.address, token) as ch:
                stub = opb_grpc.OrchestratorServiceStub(ch)
                try:
                    stub.StartRun(opb.StartRunRequest(), timeout=10)
                except grpc.RpcError as exc:
                    return exc.code()
                return grpc.StatusCode.OK

        assert status(None) == grpc.StatusCode.UNAUTHENTICATED
        assert status("x" * 32) == grpc.StatusCode.UNAUTHENTICATED
        assert status(store.token(Role.VIEWER)) == grpc.StatusCode.PERMISSION_DENIED
        assert status(store.token(Role.SERVICE)) == grpc.StatusCode.PERMISSION_DENIED
        # Operators may start runs; StartRun then reaches the (absent) pool and says so.
        assert status(store.token(Role.OPERATOR)) == grpc.StatusCode.UNAVAILABLE
        with AuthedChannel(bound.address, store.token(Role.VIEWER)) as ch:
            stub = opb_grpc.OrchestratorServiceStub(ch)
            assert stub.GetStatus(opb.GetStatusRequest(), timeout=10).tick == 0


@pytest.mark.unit
def test_role_tables_come_from_the_service_descriptors() -> None:
    svc = opb.DESCRIPTOR.services_by_name["OrchestratorService"]
    roles = {m.name: VIEWER for m in svc.methods}
    table = role_table(svc, roles)
    assert set(table) == {f"/{svc.full_name}/{m.name}" for m in svc.methods}
    with pytest.raises(ConfigError, match="no roles for Step"):
        role_table(svc, {k: v for k, v in roles.items() if k != "Step"})
    with pytest.raises(ConfigError, match="not in the proto: Nope"):
        role_table(svc, {**roles, "Nope": VIEWER})
    # Every service's table covers exactly its proto's RPCs (role_table raised otherwise
    # when these modules were imported); tests/foundation/test_service_template.py checks
    # that each is derived from its descriptor.
    from lockstep_inference._kserve import KSERVE_ROLE_TABLE

    assert KSERVE_ROLE_TABLE
