"""The ``lockstep.signature`` section: layout, module hash and signing.

Layout of the section's content (after the custom section name), all fixed-size except
the key id, nothing after the signature:

    offset  size  field
    0       4     magic b"LSIG"
    4       1     layout version, 1
    5       1     algorithm, 1 = Ed25519
    6       1     K, length of the key id (16)
    7       K     key id, lower-case ASCII hex (first 16 hex of SHA-256(raw public key))
    7+K     32    SHA-256 of the module with every signature section removed
    39+K    64    Ed25519 signature of SIGNING_CONTEXT || that SHA-256

The digest is stored next to the signature so that a verifier can tell "the bytes were
modified after signing" (digest differs) from "the signature is wrong" (digest equal,
Ed25519 check fails). Ed25519 signatures are deterministic (RFC 8032), so signing the same
module with the same key twice gives the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lockstep import wasmbin
from lockstep.modules._errors import BadSignatureError, ManifestError
from lockstep.modules._keys import key_id
from lockstep.modules._manifest import SIGNATURE_SECTION, read_manifest

__all__ = [
    "SIGNATURE_ALGORITHM_ED25519",
    "SIGNATURE_LAYOUT_VERSION",
    "SIGNATURE_MAGIC",
    "SIGNING_CONTEXT",
    "SignatureBlock",
    "module_digest",
    "module_hash",
    "read_signature",
    "sign",
    "strip_signature",
]

SIGNATURE_MAGIC = b"LSIG"
SIGNATURE_LAYOUT_VERSION = 1
SIGNATURE_ALGORITHM_ED25519 = 1
SIGNING_CONTEXT = b"lockstep.module.v1\x00"
"""Prefix of the signed message: a signature made for anything else never verifies here."""

_DIGEST_LEN = 32
_SIG_LEN = 64


@dataclass(frozen=True, slots=True)
class SignatureBlock:
    """A decoded signature section."""

    key_id: str
    digest: bytes
    signature: bytes

    def encode(self) -> bytes:
        """The section content in the documented layout."""
        kid = self.key_id.encode("ascii")
        return b"".join(
            (
                SIGNATURE_MAGIC,
                bytes([SIGNATURE_LAYOUT_VERSION, SIGNATURE_ALGORITHM_ED25519, len(kid)]),
                kid,
                self.digest,
                self.signature,
            )
        )

    @classmethod
    def decode(cls, content: bytes) -> SignatureBlock:
        """Parse a section's content; :class:`BadSignatureError` if it is malformed."""
        if len(content) < 7 or content[:4] != SIGNATURE_MAGIC:
            raise BadSignatureError("bad signature: signature section has no LSIG header")
        if content[4] != SIGNATURE_LAYOUT_VERSION:
            raise BadSignatureError(
                f"bad signature: unsupported signature layout version {content[4]}"
            )
        if content[5] != SIGNATURE_ALGORITHM_ED25519:
            raise BadSignatureError(f"bad signature: unsupported algorithm {content[5]}")
        k = content[6]
        expected = 7 + k + _DIGEST_LEN + _SIG_LEN
        if len(content) != expected:
            raise BadSignatureError(
                f"bad signature: section is {len(content)} bytes, layout says {expected}"
            )
        raw_kid = content[7 : 7 + k]
        if not raw_kid or any(b not in b"0123456789abcdef" for b in raw_kid):
            raise BadSignatureError("bad signature: key id is not lower-case hex")
        return cls(
            key_id=raw_kid.decode("ascii"),
            digest=bytes(content[7 + k : 7 + k + _DIGEST_LEN]),
            signature=bytes(content[7 + k + _DIGEST_LEN :]),
        )


def strip_signature(wasm: bytes | bytearray | memoryview) -> bytes:
    """The module with every ``lockstep.signature`` section removed (what gets signed)."""
    return wasmbin.remove_custom_sections(wasm, SIGNATURE_SECTION)


def module_digest(wasm: bytes | bytearray | memoryview) -> bytes:
    """SHA-256 of the module with its signature section(s) removed."""
    return hashlib.sha256(strip_signature(wasm)).digest()


def module_hash(wasm: bytes | bytearray | memoryview) -> str:
    """``"sha256:<hex>"`` of the module without its signature section: the module's
    identity in the registry and the journal, the same before and after signing."""
    return "sha256:" + module_digest(wasm).hex()


def read_signature(wasm: bytes | bytearray | memoryview) -> SignatureBlock | None:
    """The module's signature block; None when unsigned. Two sections: BadSignatureError."""
    blocks = wasmbin.custom_sections(wasm, SIGNATURE_SECTION)
    if not blocks:
        return None
    if len(blocks) > 1:
        raise BadSignatureError(
            f"bad signature: {len(blocks)} {SIGNATURE_SECTION} sections (at most one allowed)"
        )
    return SignatureBlock.decode(blocks[0])


def sign(wasm: bytes | bytearray | memoryview, private_key: Ed25519PrivateKey) -> bytes:
    """The module signed with ``private_key``, replacing any previous signature.

    The module must already carry a valid manifest (see ``embed_manifest``); the signature
    section is appended last. Signing twice with the same key gives identical bytes.
    """
    stripped = strip_signature(wasm)
    if read_manifest(stripped) is None:
        raise ManifestError("missing manifest: embed a lockstep.manifest section before signing")
    digest = hashlib.sha256(stripped).digest()
    block = SignatureBlock(
        key_id=key_id(private_key),
        digest=digest,
        signature=private_key.sign(SIGNING_CONTEXT + digest),
    )
    return wasmbin.append_custom_section(stripped, SIGNATURE_SECTION, block.encode())
