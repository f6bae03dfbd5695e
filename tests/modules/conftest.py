"""Fixtures for the modules tests: real modules from wasmtime.wat2wasm, real Ed25519 keys."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep.modules import Manifest, embed_manifest, keygen, load_private_key, sign

EXPORTS = """
  (memory (export "memory") 1)
  (func (export "agent_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "agent_init") (result i32) i32.const 0)
  (func (export "agent_step") (param i32) (result i32) i32.const 0)
  (func (export "agent_receive") (param i32) (result i32) i32.const 0)
  (func (export "agent_shutdown") (result i32) i32.const 0)
"""

IMPORTS = {
    "send": '(import "lockstep_v1" "send" (func (param i32 i32 i32 i32) (result i32)))',
    "log": '(import "lockstep_v1" "log" (func (param i32 i32 i32) (result i32)))',
    "tick": '(import "lockstep_v1" "tick" (func (result i64)))',
    "random": '(import "lockstep_v1" "random" (func (param i32 i32) (result i32)))',
    "infer": '(import "lockstep_v1" "infer" (func (param i32 i32 i32 i32) (result i64)))',
}


def agent_wasm(*imports: str, extra: str = "", exports: str = EXPORTS) -> bytes:
    """An ABI v1 agent importing the named lockstep_v1 functions (or raw import lines)."""
    lines = [IMPORTS.get(i, i) for i in imports]
    return bytes(wasmtime.wat2wasm(f"(module {' '.join(lines)} {exports} {extra})"))


@pytest.fixture
def make_agent() -> Callable[..., bytes]:
    """`agent_wasm` for tests (fixtures, so test files import nothing from here)."""
    return agent_wasm


@pytest.fixture
def abi_exports() -> str:
    """The WAT of the required ABI v1 exports."""
    return EXPORTS


@pytest.fixture
def plain_wasm() -> bytes:
    return agent_wasm("send", "log", "tick")


@pytest.fixture
def manifest() -> Manifest:
    return Manifest("greeter", "1.2.0", capabilities=("send", "log", "tick"))


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def key_pair(key_dir: Path) -> tuple[str, Ed25519PrivateKey]:
    kid = keygen(key_dir)
    return kid, load_private_key(key_dir / f"{kid}.key")


@pytest.fixture
def trusted_dir(tmp_path: Path, key_dir: Path, key_pair: tuple[str, Ed25519PrivateKey]) -> Path:
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    kid = key_pair[0]
    (trusted / f"{kid}.pub").write_bytes((key_dir / f"{kid}.pub").read_bytes())
    return trusted


@pytest.fixture
def signed_wasm(
    plain_wasm: bytes, manifest: Manifest, key_pair: tuple[str, Ed25519PrivateKey]
) -> bytes:
    return sign(embed_manifest(plain_wasm, manifest), key_pair[1])
