"""Manifests, Ed25519 signing, registration policy: real keys, real wasm, no mocks."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep import wasmbin
from lockstep.errors import ConfigError, ModuleError
from lockstep.modules import (
    MANIFEST_SECTION,
    SIGNATURE_SECTION,
    AbiError,
    AbiVersionError,
    BadSignatureError,
    ForeignImportError,
    KeyFileError,
    MalformedModuleError,
    Manifest,
    ManifestError,
    ModifiedModuleError,
    ModuleTooLargeError,
    Policy,
    PolicyDeniedError,
    SignatureBlock,
    TrustedKeys,
    UndeclaredImportError,
    UnsignedModuleError,
    UntrustedKeyError,
    embed_manifest,
    key_id,
    keygen,
    load_private_key,
    load_public_key,
    load_trusted_keys,
    module_hash,
    read_manifest,
    read_signature,
    sign,
    strip_signature,
    verify,
)

pytestmark = pytest.mark.unit

KeyPair = tuple[str, Ed25519PrivateKey]


def with_manifest(wasm: bytes, **fields: object) -> bytes:
    base: dict[str, object] = {"name": "m", "version": "1", "capabilities": ("send", "log", "tick")}
    base.update(fields)
    return embed_manifest(wasm, Manifest(**base))  # type: ignore[arg-type]


def raw_manifest(wasm: bytes, raw: bytes) -> bytes:
    return wasmbin.replace_custom_section(wasm, MANIFEST_SECTION, raw)


# --------------------------------------------------------------------------- round trip


def test_sign_verify_round_trip(
    signed_wasm: bytes,
    plain_wasm: bytes,
    manifest: Manifest,
    key_pair: KeyPair,
    trusted_dir: Path,
) -> None:
    verdict = verify(signed_wasm, load_trusted_keys(trusted_dir))
    unsigned = embed_manifest(plain_wasm, manifest)
    assert verdict.verdict == "verified"
    assert verdict.signer == key_pair[0]
    assert verdict.manifest == manifest
    assert verdict.size == len(signed_wasm)
    assert verdict.warnings == ()
    assert verdict.module_hash == "sha256:" + hashlib.sha256(unsigned).hexdigest()
    assert verdict.module_hash == module_hash(unsigned) == module_hash(signed_wasm)
    assert strip_signature(signed_wasm) == unsigned
    assert verdict.to_dict()["manifest"]["capabilities"] == ["log", "send", "tick"]
    # the policy's directory is used when no keys are passed
    assert verify(signed_wasm, policy=Policy(trusted_keys_dir=trusted_dir)) == verdict
    # the signed module is still a valid module for wasmtime
    wasmtime.Module(wasmtime.Engine(), signed_wasm)


def test_signature_section_layout(signed_wasm: bytes, key_pair: KeyPair) -> None:
    content = wasmbin.custom_section(signed_wasm, SIGNATURE_SECTION)
    assert content is not None
    assert content[:7] == b"LSIG\x01\x01\x10"
    assert content[7:23] == key_pair[0].encode()
    assert content[23:55] == hashlib.sha256(strip_signature(signed_wasm)).digest()
    assert len(content) == 7 + 16 + 32 + 64
    # the signature is the last section
    assert wasmbin.sections(signed_wasm)[-1].name == SIGNATURE_SECTION
    # and it verifies with nothing but the documented recipe
    public = key_pair[1].public_key()
    public.verify(content[55:], b"lockstep.module.v1\x00" + content[23:55])


def test_re_signing_is_stable(signed_wasm: bytes, key_pair: KeyPair, tmp_path: Path) -> None:
    assert sign(signed_wasm, key_pair[1]) == signed_wasm
    assert sign(sign(signed_wasm, key_pair[1]), key_pair[1]) == signed_wasm
    other = load_private_key(tmp_path / "o" / f"{keygen(tmp_path / 'o')}.key")
    resigned = sign(signed_wasm, other)
    assert resigned != signed_wasm
    assert strip_signature(resigned) == strip_signature(signed_wasm)
    assert module_hash(resigned) == module_hash(signed_wasm)
    assert len(wasmbin.custom_sections(resigned, SIGNATURE_SECTION)) == 1


def test_key_id_is_sha256_prefix_of_raw_public_key(key_pair: KeyPair) -> None:
    raw = (
        key_pair[1]
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert key_pair[0] == hashlib.sha256(raw).hexdigest()[:16] == key_id(key_pair[1])


# --------------------------------------------------------------------------- tampering


def code_byte_offset(wasm: bytes) -> int:
    """Offset of the immediate of the first `i32.const 1024` in the code section."""
    code = next(s for s in wasmbin.sections(wasm) if s.id == wasmbin.SectionId.CODE)
    body = wasm[code.payload_offset : code.end]
    return code.payload_offset + body.index(bytes([0x41]) + wasmbin.encode_s32(1024)) + 1


def test_flipping_one_code_byte_is_modified_bytes(signed_wasm: bytes, trusted_dir: Path) -> None:
    tampered = bytearray(signed_wasm)
    tampered[code_byte_offset(signed_wasm)] ^= 0x01
    wasmtime.Module(wasmtime.Engine(), bytes(tampered))  # still valid wasm, just different
    with pytest.raises(ModifiedModuleError, match="modified bytes: module hash sha256:"):
        verify(bytes(tampered), load_trusted_keys(trusted_dir))


def test_every_single_byte_flip_is_refused(signed_wasm: bytes, trusted_dir: Path) -> None:
    trusted = load_trusted_keys(trusted_dir)
    for offset in range(len(signed_wasm)):
        tampered = bytearray(signed_wasm)
        tampered[offset] ^= 0x20
        with pytest.raises(ModuleError):
            verify(bytes(tampered), trusted)


def test_tampered_manifest_is_modified(signed_wasm: bytes, trusted_dir: Path) -> None:
    raw = wasmbin.custom_section(signed_wasm, MANIFEST_SECTION)
    assert raw is not None
    grown = raw.replace(b'"send"', b'"infer:*","send"')
    # rebuild with the original signature section kept
    sig = wasmbin.custom_section(signed_wasm, SIGNATURE_SECTION)
    assert sig is not None
    tampered = wasmbin.append_custom_section(
        raw_manifest(strip_signature(signed_wasm), grown), SIGNATURE_SECTION, sig
    )
    with pytest.raises(ModifiedModuleError):
        verify(tampered, load_trusted_keys(trusted_dir))


def test_added_section_after_signing_is_modified(signed_wasm: bytes, trusted_dir: Path) -> None:
    tampered = wasmbin.append_custom_section(signed_wasm, "extra", b"x")
    with pytest.raises(ModifiedModuleError):
        verify(tampered, load_trusted_keys(trusted_dir))


def replace_block(wasm: bytes, block: SignatureBlock) -> bytes:
    return wasmbin.replace_custom_section(wasm, SIGNATURE_SECTION, block.encode())


def test_bad_signature_bytes(signed_wasm: bytes, trusted_dir: Path) -> None:
    block = read_signature(signed_wasm)
    assert block is not None
    flipped = bytes([block.signature[0] ^ 1]) + block.signature[1:]
    tampered = replace_block(signed_wasm, SignatureBlock(block.key_id, block.digest, flipped))
    with pytest.raises(BadSignatureError, match="bad signature: Ed25519 signature does not"):
        verify(tampered, load_trusted_keys(trusted_dir))


def test_forged_key_id_with_another_key_is_bad_signature(
    signed_wasm: bytes, trusted_dir: Path
) -> None:
    block = read_signature(signed_wasm)
    assert block is not None
    forger = Ed25519PrivateKey.generate()
    forged = SignatureBlock(
        block.key_id, block.digest, forger.sign(b"lockstep.module.v1\x00" + block.digest)
    )
    with pytest.raises(BadSignatureError):
        verify(replace_block(signed_wasm, forged), load_trusted_keys(trusted_dir))


def test_signature_over_raw_digest_without_context_is_refused(
    signed_wasm: bytes, key_pair: KeyPair, trusted_dir: Path
) -> None:
    block = read_signature(signed_wasm)
    assert block is not None
    other_protocol = SignatureBlock(block.key_id, block.digest, key_pair[1].sign(block.digest))
    with pytest.raises(BadSignatureError):
        verify(replace_block(signed_wasm, other_protocol), load_trusted_keys(trusted_dir))


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "no LSIG header"),
        (b"XSIG\x01\x01\x10" + b"0" * 112, "no LSIG header"),
        (b"LSIG\x02\x01\x10" + b"0" * 112, "layout version 2"),
        (b"LSIG\x01\x02\x10" + b"0" * 112, "unsupported algorithm 2"),
        (b"LSIG\x01\x01\x10" + b"0" * 111, "layout says 119"),
        (b"LSIG\x01\x01\x10" + b"0" * 113, "layout says 119"),
        (b"LSIG\x01\x01\x10" + b"G" * 16 + b"0" * 96, "not lower-case hex"),
        (b"LSIG\x01\x01\x00" + b"0" * 96, "not lower-case hex"),
    ],
)
def test_malformed_signature_section(
    signed_wasm: bytes, trusted_dir: Path, content: bytes, words: str
) -> None:
    tampered = wasmbin.replace_custom_section(signed_wasm, SIGNATURE_SECTION, content)
    with pytest.raises(BadSignatureError, match=words):
        verify(tampered, load_trusted_keys(trusted_dir))


def test_two_signature_sections(signed_wasm: bytes, trusted_dir: Path) -> None:
    sig = wasmbin.custom_section(signed_wasm, SIGNATURE_SECTION)
    assert sig is not None
    doubled = wasmbin.append_custom_section(signed_wasm, SIGNATURE_SECTION, sig)
    with pytest.raises(BadSignatureError, match=r"2 lockstep\.signature sections"):
        verify(doubled, load_trusted_keys(trusted_dir))


# --------------------------------------------------------------------------- keys


def test_untrusted_key(signed_wasm: bytes, key_pair: KeyPair, tmp_path: Path) -> None:
    with pytest.raises(UntrustedKeyError, match=f"untrusted key: signed by key {key_pair[0]}"):
        verify(signed_wasm, TrustedKeys())
    other = keygen(tmp_path / "other")
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x.pub").write_bytes((tmp_path / "other" / f"{other}.pub").read_bytes())
    with pytest.raises(UntrustedKeyError):
        verify(signed_wasm, load_trusted_keys(tmp_path / "t"))
    with pytest.raises(UntrustedKeyError):  # no keys dir in the policy: trusts nobody
        verify(signed_wasm, policy=Policy())
    assert verify(signed_wasm, TrustedKeys.of(key_pair[1])).signer == key_pair[0]


def test_keygen_files(key_dir: Path, key_pair: KeyPair) -> None:
    kid = key_pair[0]
    assert len(kid) == 16 and set(kid) <= set("0123456789abcdef")
    private, public = key_dir / f"{kid}.key", key_dir / f"{kid}.pub"
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    if sys.platform != "win32":
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert key_id(load_public_key(public)) == kid
    second = keygen(key_dir)
    assert second != kid and len(list(key_dir.iterdir())) == 4


def test_keygen_never_overwrites(tmp_path: Path) -> None:
    kid = keygen(tmp_path)
    before = (tmp_path / f"{kid}.key").read_bytes()
    # an existing file in the way is an error, not an overwrite
    from lockstep.modules import _keys

    with pytest.raises(OSError):
        _keys._write_exclusive(tmp_path / f"{kid}.key", b"x", 0o600)
    assert (tmp_path / f"{kid}.key").read_bytes() == before


def test_keygen_unwritable_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(KeyFileError, match="cannot write key pair"):
        keygen(blocker / "keys")


def test_trusted_keys_directory(tmp_path: Path, key_dir: Path, key_pair: KeyPair) -> None:
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    pub = (key_dir / f"{key_pair[0]}.pub").read_bytes()
    (trusted / "alice.pub").write_bytes(pub)
    (trusted / "alice-copy.pub").write_bytes(pub)
    (trusted / "README.txt").write_text("ignored")
    (trusted / "sub.pub").mkdir()  # a directory with a .pub name is ignored
    openssh = (
        key_pair[1]
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    bob = Ed25519PrivateKey.generate()
    (trusted / "bob.pub").write_bytes(
        bob.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" bob@example\n"
    )
    keys = load_trusted_keys(trusted)
    assert sorted(keys) == sorted([key_pair[0], key_id(bob)])
    assert keys.source(key_pair[0]).endswith("alice-copy.pub")  # sorted order, first wins
    assert openssh.startswith(b"ssh-ed25519 ")


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("bad.pub", b"garbage", "not a usable PEM/OpenSSH key"),
        ("empty.pub", b"", "not a usable"),
        ("oops.key", b"whatever", "looks like a private key"),
        ("big.pub", b"x" * 20000, "larger than"),
    ],
)
def test_trusted_keys_bad_files(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(KeyFileError, match=words) as info:
        load_trusted_keys(tmp_path)
    assert isinstance(info.value, ConfigError)


def test_trusted_keys_rsa_refused(tmp_path: Path) -> None:
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    (tmp_path / "rsa.pub").write_bytes(
        rsa_pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(KeyFileError, match="not Ed25519"):
        load_trusted_keys(tmp_path)


def test_trusted_keys_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_trusted_keys(tmp_path / "nope")
    signed_anything = b"\x00asm\x01\x00\x00\x00"
    with pytest.raises(KeyFileError, match="does not exist"):
        verify(signed_anything, policy=Policy(trusted_keys_dir=tmp_path / "nope"))


def test_private_key_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot read private key"):
        load_private_key(tmp_path / "missing.key")
    (tmp_path / "pub.key").write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFileError, match="not a usable"):
        load_private_key(tmp_path / "pub.key")
    openssh = Ed25519PrivateKey.generate()
    (tmp_path / "ssh.key").write_bytes(
        openssh.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    assert key_id(load_private_key(tmp_path / "ssh.key")) == key_id(openssh)


def test_trusted_keys_mapping_checks_ids() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(KeyFileError, match="has key id"):
        TrustedKeys({"0000000000000000": key})


# --------------------------------------------------------------------------- manifest / ABI


def test_unsupported_abi_major(plain_wasm: bytes, key_pair: KeyPair) -> None:
    keys = TrustedKeys.of(key_pair[1])
    for abi in ("2.0", "0.9"):
        wasm = sign(with_manifest(plain_wasm, abi_version=abi), key_pair[1])
        with pytest.raises(AbiVersionError, match=f"unsupported ABI version {abi}"):
            verify(wasm, keys)
    # a newer minor of major 1 is accepted: imports are checked one by one anyway
    assert verify(sign(with_manifest(plain_wasm, abi_version="1.7"), key_pair[1]), keys)


def test_import_not_covered_by_capabilities(
    key_pair: KeyPair, make_agent: Callable[..., bytes]
) -> None:
    keys = TrustedKeys.of(key_pair[1])
    wasm = make_agent("send", "log", "random")
    signed = sign(with_manifest(wasm, capabilities=("send", "log")), key_pair[1])
    with pytest.raises(UndeclaredImportError, match=r"import lockstep_v1\.random is not covered"):
        verify(signed, keys)
    infer = make_agent("infer")
    signed = sign(with_manifest(infer, capabilities=("send",)), key_pair[1])
    with pytest.raises(UndeclaredImportError, match=r"add infer:<model> or infer:\*"):
        verify(signed, keys)
    granted = Policy(allowed_capabilities=frozenset({"infer:gpt2"}))
    signed = sign(with_manifest(infer, capabilities=("infer:gpt2",)), key_pair[1])
    assert verify(signed, keys, granted).manifest.capabilities == ("infer:gpt2",)
    # declaring more than the imports need is fine
    signed = sign(with_manifest(make_agent(), capabilities=("send", "log")), key_pair[1])
    assert verify(signed, keys).verdict == "verified"


def test_foreign_import_is_named(key_pair: KeyPair, make_agent: Callable[..., bytes]) -> None:
    wasi = (
        '(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))'
    )
    for line, named in [
        (wasi, "wasi_snapshot_preview1.clock_time_get (func)"),
        ('(import "env" "mem" (memory 1))', "env.mem (memory)"),
    ]:
        signed = sign(with_manifest(make_agent("send", line)), key_pair[1])
        with pytest.raises(
            ForeignImportError, match=re.escape(f"import {named} is outside lockstep_v1")
        ):
            verify(signed, TrustedKeys.of(key_pair[1]))


@pytest.mark.parametrize(
    ("imports", "exports", "words"),
    [
        (
            ['(import "lockstep_v1" "clock" (func (result i64)))'],
            None,
            r"lockstep_v1\.clock is not an ABI v1 function",
        ),
        (
            ['(import "lockstep_v1" "send" (func (param i32 i32) (result i32)))'],
            None,
            r"lockstep_v1\.send has signature \(i32, i32\) -> \(i32\), ABI v1 says",
        ),
        (['(import "lockstep_v1" "tick" (global i64))'], None, "must be a function"),
        ([], '(memory (export "memory") 1)', "missing export agent_alloc"),
        (
            [],
            '(func (export "agent_alloc") (param i32) (result i32) i32.const 0)',
            "missing export memory",
        ),
        ([], None, None),
    ],
)
def test_abi_shape(
    key_pair: KeyPair,
    imports: list[str],
    exports: str | None,
    words: str | None,
    make_agent: Callable[..., bytes],
    abi_exports: str,
) -> None:

    wasm = make_agent(*imports, exports=abi_exports if exports is None else exports)
    signed = sign(with_manifest(wasm), key_pair[1])
    if words is None:
        verify(signed, TrustedKeys.of(key_pair[1]))
        return
    with pytest.raises(AbiError, match=words):
        verify(signed, TrustedKeys.of(key_pair[1]))


def test_wrong_export_signatures(
    key_pair: KeyPair, make_agent: Callable[..., bytes], abi_exports: str
) -> None:

    keys = TrustedKeys.of(key_pair[1])
    bad_step = abi_exports.replace(
        '(func (export "agent_step") (param i32) (result i32) i32.const 0)',
        '(func (export "agent_step") (param i64) (result i32) i32.const 0)',
    )
    with pytest.raises(AbiError, match=r"export agent_step has signature \(i64\) -> \(i32\)"):
        verify(sign(with_manifest(make_agent(exports=bad_step)), key_pair[1]), keys)
    batch = '(func (export "agent_receive_batch") (result i32) i32.const 0)'
    with pytest.raises(AbiError, match="export agent_receive_batch has signature"):
        verify(sign(with_manifest(make_agent(extra=batch)), key_pair[1]), keys)
    good_batch = '(func (export "agent_receive_batch") (param i32) (result i32) i32.const 0)'
    assert verify(sign(with_manifest(make_agent(extra=good_batch)), key_pair[1]), keys)
    mem_func = abi_exports.replace(
        '(memory (export "memory") 1)', '(memory 1) (func (export "memory"))'
    )
    with pytest.raises(AbiError, match="export memory must be a memory"):
        verify(sign(with_manifest(make_agent(exports=mem_func)), key_pair[1]), keys)
    # a library module (no exports check) passes with the policy switch off
    lib = sign(with_manifest(make_agent(exports="")), key_pair[1])
    assert verify(lib, keys, Policy(check_exports=False))


def test_missing_or_invalid_manifest(plain_wasm: bytes, key_pair: KeyPair) -> None:
    keys = TrustedKeys.of(key_pair[1])

    def signed_raw(raw: bytes) -> bytes:
        # sign() insists on a valid manifest; build the signature by hand for bad ones
        from lockstep.modules._signature import SIGNING_CONTEXT

        body = raw_manifest(plain_wasm, raw)
        digest = hashlib.sha256(body).digest()
        block = SignatureBlock(key_pair[0], digest, key_pair[1].sign(SIGNING_CONTEXT + digest))
        return wasmbin.append_custom_section(body, SIGNATURE_SECTION, block.encode())

    with pytest.raises(ManifestError, match="missing manifest"):
        sign(plain_wasm, key_pair[1])
    good = Manifest("m", "1", capabilities=("send", "log", "tick")).to_dict()
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "bad JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[]", "not a JSON object"),
        (json.dumps({**good, "extra": 1}).encode(), "unknown field 'extra'"),
        (
            json.dumps({k: v for k, v in good.items() if k != "version"}).encode(),
            "missing field 'version'",
        ),
        (json.dumps({**good, "name": ""}).encode(), "name ''"),
        (json.dumps({**good, "name": "a b"}).encode(), "name 'a b'"),
        (json.dumps({**good, "abi_version": "1"}).encode(), "abi_version '1'"),
        (json.dumps({**good, "abi_version": 1.0}).encode(), "abi_version 1.0"),
        (json.dumps({**good, "capabilities": "send"}).encode(), "must be a list"),
        (json.dumps({**good, "capabilities": ["send", "send"]}).encode(), "duplicate capability"),
        (json.dumps({**good, "capabilities": ["fs"]}).encode(), "unknown capability 'fs'"),
        (json.dumps({**good, "capabilities": ["infer:"]}).encode(), "model name"),
        (json.dumps({**good, "capabilities": [3]}).encode(), "not a string"),
        (json.dumps({**good, "limits": {"cpu": 1}}).encode(), "unknown limit 'cpu'"),
        (json.dumps({**good, "limits": {"fuel_per_tick": 0}}).encode(), "positive integer"),
        (json.dumps({**good, "limits": {"fuel_per_tick": True}}).encode(), "positive integer"),
        (json.dumps({**good, "limits": []}).encode(), "limits must be a table"),
        (b'{"name":"a","name":"b","version":"1","abi_version":"1.0"}', "duplicate key 'name'"),
        (b"[" * 100000 + b"]" * 100000, "invalid manifest"),
        (b" " * 70000, "more than 65536"),
        (b'{"limits":{"fuel_per_tick":' + b"9" * 5000 + b"}}", "bad JSON"),
        (json.dumps({**good, "capabilities": ["send"] * 5000}).encode(), "duplicate capability"),
        (json.dumps({**good, "limits": {"fuel_per_tick": 2**63}}).encode(), "positive integer"),
        (json.dumps({**good, "limits": {"fuel_per_tick": 1.5}}).encode(), "positive integer"),
    ]
    for raw, words in cases:
        with pytest.raises(ManifestError, match=words):
            verify(signed_raw(raw), keys)
    # two manifest sections are refused even if both are valid
    doubled = wasmbin.append_custom_section(
        embed_manifest(plain_wasm, Manifest("m", "1")),
        MANIFEST_SECTION,
        Manifest("m", "2").to_json(),
    )
    with pytest.raises(ManifestError, match=r"2 lockstep\.manifest sections"):
        read_manifest(doubled)
    # signed module without a manifest section at all (dev mode so the signature is moot)
    with pytest.raises(ManifestError, match="missing manifest"):
        verify(plain_wasm, keys, Policy(dev_mode=True))


def test_manifest_canonical_json() -> None:
    a = Manifest(
        "x", "1.0.0", capabilities=("tick", "send"), limits={"memory_pages": 4, "fuel_per_tick": 9}
    )
    b = Manifest(
        "x", "1.0.0", capabilities=("send", "tick"), limits={"fuel_per_tick": 9, "memory_pages": 4}
    )
    assert a == b and a.to_json() == b.to_json()
    assert a.to_json() == (
        b'{"abi_version":"1.0","capabilities":["send","tick"],'
        b'"limits":{"fuel_per_tick":9,"memory_pages":4},"name":"x","version":"1.0.0"}'
    )
    assert Manifest.from_json(a.to_json()) == a
    assert a.abi_major == 1


def test_embed_manifest_replaces_and_drops_signature(signed_wasm: bytes) -> None:
    updated = embed_manifest(signed_wasm, Manifest("greeter", "1.3.0"))
    assert read_signature(updated) is None
    assert len(wasmbin.custom_sections(updated, MANIFEST_SECTION)) == 1
    manifest = read_manifest(updated)
    assert manifest is not None and manifest.version == "1.3.0"


# --------------------------------------------------------------------------- policy


def test_policy_not_granting_a_capability(
    key_pair: KeyPair, make_agent: Callable[..., bytes]
) -> None:
    keys = TrustedKeys.of(key_pair[1])
    wasm = make_agent("infer", "send")
    gpt2 = sign(with_manifest(wasm, capabilities=("infer:gpt2", "send")), key_pair[1])
    star = sign(with_manifest(wasm, capabilities=("infer:*", "send")), key_pair[1])
    with pytest.raises(PolicyDeniedError, match="capability 'infer:gpt2' is not granted"):
        verify(gpt2, keys)  # default policy: no inference
    only_gpt2 = Policy(allowed_capabilities=frozenset({"send", "infer:gpt2"}))
    assert verify(gpt2, keys, only_gpt2)
    with pytest.raises(PolicyDeniedError, match=r"capability 'infer:\*' is not granted"):
        verify(star, keys, only_gpt2)
    any_model = Policy(allowed_capabilities=frozenset({"send", "infer:*"}))
    assert verify(gpt2, keys, any_model) and verify(star, keys, any_model)
    no_send = Policy(allowed_capabilities=frozenset({"infer:*"}))
    with pytest.raises(PolicyDeniedError, match="capability 'send'"):
        verify(star, keys, no_send)
    nothing = Policy(allowed_capabilities=frozenset())
    with pytest.raises(PolicyDeniedError, match="allowed: none"):
        verify(star, keys, nothing)


def test_policy_limits(plain_wasm: bytes, key_pair: KeyPair) -> None:
    keys = TrustedKeys.of(key_pair[1])
    wasm = sign(with_manifest(plain_wasm, limits={"memory_pages": 512}), key_pair[1])
    assert verify(wasm, keys).manifest.limits == {"memory_pages": 512}
    capped = Policy(max_limits={"memory_pages": 256})
    with pytest.raises(PolicyDeniedError, match="limit memory_pages = 512 is above"):
        verify(wasm, keys, capped)
    assert verify(wasm, keys, Policy(max_limits={"memory_pages": 512}))


def test_policy_validation() -> None:
    with pytest.raises(ConfigError, match="unknown capability 'net'"):
        Policy(allowed_capabilities=frozenset({"net"}))
    with pytest.raises(ConfigError, match="max_module_size"):
        Policy(max_module_size=0)
    with pytest.raises(ConfigError, match="unknown limit"):
        Policy(max_limits={"nope": 1})
    with pytest.raises(ConfigError, match="must be > 0"):
        Policy(max_limits={"memory_pages": 0})
    with pytest.raises(ConfigError, match="set of strings"):
        Policy(allowed_capabilities="send")  # type: ignore[arg-type]


def test_module_too_large(signed_wasm: bytes, key_pair: KeyPair) -> None:
    with pytest.raises(ModuleTooLargeError, match=f"module is {len(signed_wasm)} bytes"):
        verify(signed_wasm, TrustedKeys.of(key_pair[1]), Policy(max_module_size=100))


# --------------------------------------------------------------------------- dev mode


def test_dev_mode_accepts_unsigned_loudly(
    plain_wasm: bytes, manifest: Manifest, caplog: pytest.LogCaptureFixture
) -> None:
    unsigned = embed_manifest(plain_wasm, manifest)
    with pytest.raises(UnsignedModuleError, match="unsigned module"):
        verify(unsigned, TrustedKeys())
    with caplog.at_level(logging.WARNING, logger="lockstep.modules"):
        verdict = verify(unsigned, TrustedKeys(), Policy(dev_mode=True))
    assert verdict.verdict == "unsigned-dev-mode"
    assert verdict.signer == ""
    assert verdict.module_hash == module_hash(unsigned)
    assert "UNSIGNED" in verdict.warnings[0]
    assert any(
        "DEV MODE" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records
    )


def test_dev_mode_still_verifies_signed_modules(signed_wasm: bytes, key_pair: KeyPair) -> None:
    dev = Policy(dev_mode=True)
    with pytest.raises(UntrustedKeyError):
        verify(signed_wasm, TrustedKeys(), dev)
    tampered = bytearray(signed_wasm)
    tampered[code_byte_offset(signed_wasm)] ^= 1
    with pytest.raises(ModifiedModuleError):
        verify(bytes(tampered), TrustedKeys.of(key_pair[1]), dev)
    assert verify(signed_wasm, TrustedKeys.of(key_pair[1]), dev).verdict == "verified"


def test_dev_mode_keeps_capability_checks(plain_wasm: bytes) -> None:
    unsigned = embed_manifest(plain_wasm, Manifest("m", "1", capabilities=("send",)))
    with pytest.raises(UndeclaredImportError):
        verify(unsigned, TrustedKeys(), Policy(dev_mode=True))


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "data", [b"", b"\x00asm", b"\x00asm\x02\x00\x00\x00", b"\x00asm\x01\x00\x00\x00\x01\x09"]
)
def test_malformed_wasm(data: bytes) -> None:
    with pytest.raises(MalformedModuleError):
        verify(data, TrustedKeys(), Policy(dev_mode=True))
    with pytest.raises(MalformedModuleError):
        sign(data, Ed25519PrivateKey.generate())
    with pytest.raises(MalformedModuleError):
        embed_manifest(data, Manifest("m", "1"))


def test_private_key_file_is_not_world_readable_even_with_umask(tmp_path: Path) -> None:
    if sys.platform == "win32":
        pytest.skip("POSIX modes")
    old = os.umask(0)
    try:
        kid = keygen(tmp_path / "k")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k" / f"{kid}.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o700
