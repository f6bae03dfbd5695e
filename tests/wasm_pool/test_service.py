"""The gRPC service: roles, status codes, and restore into a fresh pool process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from lockstep.auth import Role, TokenStore
from lockstep.dial import AuthedChannel, wait_serving
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2 as pb
from lockstep.pb.wasm_pool.v1 import wasm_pool_pb2_grpc as pb_grpc
from lockstep_wasm_pool import WasmPoolConfig, create_server
from tests.conftest import ServiceProcess
from tests.wasm_pool.conftest import GOOD, batch, record, spec
from tests.wasm_pool.test_snapshot import CHATTY

pytestmark = pytest.mark.integration

Auth = tuple[Path, TokenStore]


@pytest.fixture
def server(auth: Auth) -> Iterator[str]:
    bound = create_server(
        "127.0.0.1:0", auth=auth[1], config=WasmPoolConfig(max_module_bytes=1 << 20)
    )
    try:
        wait_serving(bound.address)
        yield bound.address
    finally:
        bound.stop(grace=0)


def stub(
    address: str,
    store: TokenStore | None,
    role: Role | None = Role.SERVICE,
) -> pb_grpc.WasmPoolServiceStub:
    token = store.token(role) if store is not None and role is not None else None
    return pb_grpc.WasmPoolServiceStub(AuthedChannel(address, token))


def test_roles(server: str, auth: Auth) -> None:
    store = auth[1]
    for allowed in (Role.SERVICE, Role.ADMIN):
        assert stub(server, store, allowed).GetPoolInfo(pb.GetPoolInfoRequest()).wasmtime_version
    cases: list[tuple[Role | None, grpc.StatusCode]] = [
        (None, grpc.StatusCode.UNAUTHENTICATED),
        (Role.VIEWER, grpc.StatusCode.PERMISSION_DENIED),
        (Role.OPERATOR, grpc.StatusCode.PERMISSION_DENIED),
    ]
    for role, code in cases:
        s = stub(server, store, role)
        with pytest.raises(grpc.RpcError) as info:
            s.GetPoolInfo(pb.GetPoolInfoRequest())
        assert info.value.code() == code
        with pytest.raises(grpc.RpcError) as info:
            s.LoadModule(pb.LoadModuleRequest(wasm=GOOD))
        assert info.value.code() == code
        with pytest.raises(grpc.RpcError) as info:
            list(s.Snapshot(pb.SnapshotRequest()))
        assert info.value.code() == code


def test_status_codes(server: str, auth: Auth) -> None:
    s = stub(server, auth[1])
    with pytest.raises(grpc.RpcError) as info:
        s.LoadModule(pb.LoadModuleRequest(wasm=b"\x00asm\x01\x00\x00\x00\x01"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid wasm module" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        s.LoadModule(pb.LoadModuleRequest(wasm=bytes(2 << 20)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "above the pool limit" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        s.StepBatch(pb.StepBatchRequest(tick=1, steps=[pb.AgentStep(sequence=9)]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    digest = s.LoadModule(pb.LoadModuleRequest(wasm=GOOD)).module_hash
    s.CreateAgents(pb.CreateAgentsRequest(agents=[spec(1, "a", digest)]))
    with pytest.raises(grpc.RpcError) as info:
        s.CreateAgents(pb.CreateAgentsRequest(agents=[spec(1, "a", digest)]))
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as info:
        s.StepBatch(
            pb.StepBatchRequest(steps=[pb.AgentStep(sequence=1, inbox=b"xx", inbox_count=1)])
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        list(s.Snapshot(pb.SnapshotRequest(sequences=[5])))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert s.GetPoolInfo(pb.GetPoolInfoRequest()).agents == 1
    assert s.Reset(pb.ResetRequest()).dropped == 1
    assert s.DestroyAgents(pb.DestroyAgentsRequest()).results == []


def ticks(s: pb_grpc.WasmPoolServiceStub, first: int, last: int) -> list[bytes]:
    out = []
    for tick in range(first, last):
        inbox = batch(record(tick.to_bytes(4, "little")))
        steps = [pb.AgentStep(sequence=h, inbox=inbox, inbox_count=1) for h in (1, 2)]
        out.append(
            s.StepBatch(pb.StepBatchRequest(tick=tick, steps=steps)).SerializeToString(
                deterministic=True
            )
        )
    return out


def test_snapshot_restore_into_fresh_process(
    server: str, auth: Auth, service_factory: Callable[..., ServiceProcess]
) -> None:
    a = stub(server, auth[1])
    digest = a.LoadModule(pb.LoadModuleRequest(wasm=CHATTY)).module_hash
    a.CreateAgents(
        pb.CreateAgentsRequest(seed=11, agents=[spec(1, "a", digest), spec(2, "b", digest)])
    )
    ticks(a, 1, 4)
    snaps = list(a.Snapshot(pb.SnapshotRequest()))
    assert [s.spec.sequence for s in snaps] == [1, 2]
    want = ticks(a, 4, 7)
    want_hashes = [s.state_hash for s in a.Snapshot(pb.SnapshotRequest())]

    proc = service_factory("lockstep_wasm_pool", auth[0])
    b = stub(proc.address, auth[1])
    assert b.LoadModule(pb.LoadModuleRequest(wasm=CHATTY)).module_hash == digest
    assert list(b.Restore(iter(snaps)).sequences) == [1, 2]
    assert ticks(b, 4, 7) == want
    assert [s.state_hash for s in b.Snapshot(pb.SnapshotRequest())] == want_hashes


def test_bad_config_fails_at_start(auth: Auth) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep_wasm_pool",
            "--address",
            "127.0.0.1:0",
            "--auth-file",
            str(auth[0]),
            "--max-memory-pages",
            "lots",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "bad value 'lots' for max_memory_pages" in proc.stderr


def test_packed_wire_over_grpc(server: str, auth: Auth) -> None:
    from lockstep import batch as wire

    s = stub(server, auth[1])
    digest = s.LoadModule(pb.LoadModuleRequest(wasm=GOOD)).module_hash
    out = s.CreateAgents(
        pb.CreateAgentsRequest(
            batch=wire.pack_create(
                0, 3, [wire.AgentSpec(1, "a", digest), wire.AgentSpec(2, "b", digest)]
            )
        )
    ).batch
    assert list(wire.parse_results(out).rows["seq"]) == [1, 2]
    step = wire.pack_step(1, [1, 2], [record(b"hi"), b""], [1, 0])
    res = wire.parse_results(s.StepBatch(pb.StepBatchRequest(batch=step)).batch)
    assert [res.fault(i) for i in range(2)] == [None, None]
    for bad in (step[:30], b"LSSQ\x02\x00" + step[6:], step + b"x"):
        with pytest.raises(grpc.RpcError) as info:
            s.StepBatch(pb.StepBatchRequest(batch=bad))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "at byte" in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        s.CreateAgents(pb.CreateAgentsRequest(batch=b"LSCQ"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        s.DestroyAgents(pb.DestroyAgentsRequest(batch=b"LSDQ\x01\x00\x04\x00"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert s.GetPoolInfo(pb.GetPoolInfoRequest()).agents == 2  # still up, unchanged
    out = s.DestroyAgents(pb.DestroyAgentsRequest(batch=wire.pack_destroy(2, [1, 2], True)))
    assert len(wire.parse_results(out.batch)) == 2
