"""Module registration fails closed: signature, manifest, ABI, capabilities, policy."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import wasmtime

from lockstep.modules import keygen
from lockstep.pb.orchestrator.v1 import orchestrator_pb2 as opb
from lockstep.runner import prepare_module
from lockstep.supervisor._supervisor import make_signing_key
from tests.orchestrator.conftest import OrchestratorFactory

pytestmark = pytest.mark.integration

INFER_WAT = """
(module
  (import "lockstep_v1" "infer" (func $infer (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "agent_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "agent_init") (result i32) (i32.const 0))
  (func (export "agent_step") (param i32) (result i32) (i32.const 0))
  (func (export "agent_receive") (param i32) (result i32) (i32.const 0))
  (func (export "agent_shutdown") (result i32) (i32.const 0)))
"""


def register(stub, wasm: bytes, name: str = "") -> opb.ModuleInfo:  # type: ignore[no-untyped-def]
    return stub.RegisterModule(opb.RegisterModuleRequest(wasm=wasm, name=name)).module


def refused(stub, wasm: bytes) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as info:
        register(stub, wasm)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return str(info.value.details())


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """(trusted public keys dir, private key)."""
    key = make_signing_key(tmp_path / "keys")
    return tmp_path / "keys" / "trusted", key


def test_signed_modules_are_verified_and_journalled(
    orchestrator: OrchestratorFactory, probe_wasm: bytes, keys: tuple[Path, Path]
) -> None:
    stub = orchestrator(1, dev_mode=False, trusted_keys=keys[0])
    signed = prepare_module(probe_wasm, "probe", keys[1])
    info = register(stub, signed, "probe")
    assert info.verdict == "verified" and info.signer == keys[1].stem
    assert info.name == "probe" and set(info.capabilities) == {"log", "random", "send"}
    assert [m.module_hash for m in stub.ListModules(opb.ListModulesRequest()).modules] == [
        info.module_hash
    ]
    # Re-signing gives the same module hash: the signature is not part of it.
    again = register(stub, prepare_module(probe_wasm, "probe", keys[1]))
    assert again.module_hash == info.module_hash


def test_registration_fails_closed(
    orchestrator: OrchestratorFactory, probe_wasm: bytes, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    stub = orchestrator(1, dev_mode=False, trusted_keys=keys[0])
    assert "unsigned module" in refused(stub, probe_wasm)
    other_kid = keygen(tmp_path / "other")
    untrusted = prepare_module(probe_wasm, "probe", tmp_path / "other" / f"{other_kid}.key")
    assert "untrusted" in refused(stub, untrusted).lower() or other_kid in refused(stub, untrusted)
    signed = bytearray(prepare_module(probe_wasm, "probe", keys[1]))
    signed[len(signed) // 3] ^= 0x01  # flip one bit inside the code
    assert "modif" in refused(stub, bytes(signed)).lower()
    assert refused(stub, b"\0asm\x01\0\0\0garbage")
    wrong_name = prepare_module(probe_wasm, "probe", keys[1])
    with pytest.raises(grpc.RpcError) as info:
        register(stub, wrong_name, "another")
    assert "names it 'probe'" in str(info.value.details())


def test_policy_decides_capabilities(
    orchestrator: OrchestratorFactory, keys: tuple[Path, Path]
) -> None:
    wasm = bytes(wasmtime.wat2wasm(INFER_WAT))
    no_infer = orchestrator(
        1,
        dev_mode=False,
        trusted_keys=keys[0],
        capabilities=frozenset({"send", "log", "random", "tick"}),
    )
    assert "infer" in refused(no_infer, prepare_module(wasm, "asker", keys[1]))
    default = orchestrator(1, dev_mode=False, trusted_keys=keys[0])
    assert register(default, prepare_module(wasm, "asker", keys[1])).capabilities == ["infer:*"]


def test_foreign_imports_are_named(
    orchestrator: OrchestratorFactory, keys: tuple[Path, Path]
) -> None:
    wasm = bytes(
        wasmtime.wat2wasm(
            INFER_WAT.replace(
                '(import "lockstep_v1" "infer" (func $infer (param i32 i32 i32 i32) (result i64)))',
                '(import "wasi_snapshot_preview1" "clock_time_get" '
                "(func (param i32 i64 i32) (result i32)))",
            )
        )
    )
    stub = orchestrator(1, dev_mode=False, trusted_keys=keys[0])
    assert "wasi_snapshot_preview1" in refused(stub, prepare_module(wasm, "clocky", keys[1]))
