"""Fixtures for the modules tests: real modules from wasmtime.wat2wasm, real Ed25519 keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lsmod_helpers import agent_wasm

from lockstep.modules import Manifest, embed_manifest, keygen, load_private_key, sign


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
