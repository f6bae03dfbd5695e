"""Sign and verify the real example agents built with the SDK (zig cc, AssemblyScript)."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep import wasmbin
from lockstep.agents import ToolchainMissingError, build_agent, example_sources
from lockstep.modules import (
    MANIFEST_SECTION,
    Manifest,
    ModifiedModuleError,
    Policy,
    TrustedKeys,
    embed_manifest,
    module_hash,
    sign,
    strip_signature,
    verify,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("source", example_sources(), ids=lambda p: p.name)
def test_example_agent_signs_and_verifies(source: Path, tmp_path: Path) -> None:
    try:
        built = build_agent(source, tmp_path / "agent.wasm").read_bytes()
    except ToolchainMissingError as exc:
        pytest.skip(f"toolchain missing: {exc}")
    caps = tuple(
        sorted({"infer:*" if i.name == "infer" else i.name for i in wasmbin.parse_imports(built)})
    )
    key = Ed25519PrivateKey.generate()
    signed = sign(embed_manifest(built, Manifest(source.stem, "1.0.0", capabilities=caps)), key)
    policy = Policy(allowed_capabilities=frozenset({"send", "log", "random", "tick", "infer:*"}))
    verdict = verify(signed, TrustedKeys.of(key), policy)
    assert verdict.verdict == "verified"
    assert verdict.module_hash == module_hash(strip_signature(signed))
    # the toolchain's own custom sections survive untouched (the build's manifest is
    # replaced), and wasmtime still compiles it
    assert strip_signature(signed).startswith(
        wasmbin.remove_custom_sections(built, MANIFEST_SECTION)
    )
    wasmtime.Module(wasmtime.Engine(), signed)
    tampered = bytearray(signed)
    code = next(s for s in wasmbin.sections(signed) if s.id == wasmbin.SectionId.CODE)
    tampered[code.end - 2] ^= 0x01
    with pytest.raises(ModifiedModuleError):
        verify(bytes(tampered), TrustedKeys.of(key), policy)
