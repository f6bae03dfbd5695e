"""Registration checks: signature, manifest, ABI shape, capabilities, policy."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from lockstep import abi, wasmbin
from lockstep.modules._errors import (
    AbiVersionError,
    BadSignatureError,
    ManifestError,
    ModifiedModuleError,
    ModuleTooLargeError,
    PolicyDeniedError,
    UndeclaredImportError,
    UnsignedModuleError,
    UntrustedKeyError,
)
from lockstep.modules._keys import TrustedKeys, load_trusted_keys
from lockstep.modules._manifest import SIGNATURE_SECTION, Manifest, read_manifest
from lockstep.modules._policy import Policy
from lockstep.modules._signature import SIGNING_CONTEXT, SignatureBlock, read_signature
from lockstep.wasmbin import FuncType

__all__ = [
    "ABI_EXPORTS",
    "ABI_IMPORTS",
    "ABI_MODULE",
    "OPTIONAL_EXPORTS",
    "SUPPORTED_ABI_MAJOR",
    "VERDICT_UNSIGNED_DEV_MODE",
    "VERDICT_VERIFIED",
    "Verdict",
    "check_abi",
    "check_capabilities",
    "verify",
    "verify_signature",
]

log = logging.getLogger("lockstep.modules")

SUPPORTED_ABI_MAJOR = 1
ABI_MODULE = abi.IMPORT_MODULE
VERDICT_VERIFIED = "verified"
VERDICT_UNSIGNED_DEV_MODE = "unsigned-dev-mode"

# The ABI's names, signatures and conformance check live once, in lockstep.abi.
ABI_IMPORTS: Mapping[str, FuncType] = abi.IMPORTS
ABI_EXPORTS: Mapping[str, FuncType] = abi.EXPORTS
OPTIONAL_EXPORTS: Mapping[str, FuncType] = abi.OPTIONAL_EXPORTS
check_abi = abi.check_abi


@dataclass(frozen=True)
class Verdict:
    """An accepted module. Refusals are exceptions, so holding a Verdict means accepted.

    Fields:
      verdict: ``"verified"`` or ``"unsigned-dev-mode"`` (what goes into the journal).
      module_hash: ``"sha256:<hex>"`` of the module without its signature section.
      manifest: the module's manifest.
      signer: key id of the signing key; ``""`` when unsigned (dev mode).
      size: module size in bytes, signature included.
      warnings: things an operator should see (dev mode acceptance).
    """

    verdict: str
    module_hash: str
    manifest: Manifest
    signer: str
    size: int
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``--json`` output and the journal)."""
        return {
            "verdict": self.verdict,
            "module_hash": self.module_hash,
            "manifest": self.manifest.to_dict(),
            "signer": self.signer,
            "size": self.size,
            "warnings": list(self.warnings),
        }


def _qualified(imp: wasmbin.Import) -> str:
    return f"{imp.module}.{imp.name}"


def check_capabilities(module: wasmbin.WasmModule, manifest: Manifest) -> None:
    """Refuse (:class:`UndeclaredImportError`) a module importing a ``lockstep_v1``
    function that no capability of its manifest covers. Call :func:`check_abi` first."""
    for imp in module.imports:
        if imp.module == ABI_MODULE and not abi.covers(manifest.capabilities, imp.name):
            needed = "infer:<model> or infer:*" if imp.name == "infer" else imp.name
            raise UndeclaredImportError(
                f"import {_qualified(imp)} is not covered by the manifest's capabilities "
                f"{list(manifest.capabilities)}: add {needed}"
            )


def _check_policy(manifest: Manifest, policy: Policy) -> None:
    for cap in manifest.capabilities:
        if not policy.grants(cap):
            raise PolicyDeniedError(
                f"capability {cap!r} is not granted by the policy "
                f"(allowed: {', '.join(sorted(policy.allowed_capabilities)) or 'none'})"
            )
    for name, value in manifest.limits.items():
        bound = policy.max_limits.get(name)
        if bound is not None and value > bound:
            raise PolicyDeniedError(f"limit {name} = {value} is above the policy's maximum {bound}")


def _check_signature(
    stripped: bytes, block: SignatureBlock, trusted: Mapping[str, Ed25519PublicKey]
) -> None:
    key = trusted.get(block.key_id)
    if key is None:
        raise UntrustedKeyError(
            f"untrusted key: signed by key {block.key_id}, which is not among the "
            f"{len(trusted)} trusted key(s)"
        )
    digest = hashlib.sha256(stripped).digest()
    if digest != block.digest:
        raise ModifiedModuleError(
            f"modified bytes: module hash sha256:{digest.hex()} differs from the signed "
            f"hash sha256:{block.digest.hex()}"
        )
    try:
        key.verify(block.signature, SIGNING_CONTEXT + digest)
    except InvalidSignature:
        raise BadSignatureError(
            f"bad signature: Ed25519 signature does not verify with key {block.key_id}"
        ) from None


def verify_signature(
    wasm: bytes | bytearray | memoryview, trusted_keys: Mapping[str, Ed25519PublicKey]
) -> SignatureBlock:
    """Check only the signature (present, trusted key, unmodified, valid) and return it.

    For tools that show a module's state; registration must use :func:`verify`.
    """
    data = bytes(wasm)
    block = read_signature(data)
    if block is None:
        raise UnsignedModuleError(f"unsigned module: no {SIGNATURE_SECTION} section")
    _check_signature(wasmbin.remove_custom_sections(data, SIGNATURE_SECTION), block, trusted_keys)
    return block


def verify(
    wasm: bytes | bytearray | memoryview,
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    policy: Policy | None = None,
) -> Verdict:
    """Decide whether ``wasm`` may be registered; fail closed.

    ``trusted_keys`` defaults to the keys in ``policy.trusted_keys_dir`` (none if unset);
    ``policy`` defaults to ``Policy()``. Checks, in this order, and raises the
    :mod:`lockstep.modules` error of the first that fails: size, wasm framing, signature
    (present unless dev mode, trusted key, unmodified bytes, valid Ed25519), manifest,
    ABI major version, ABI imports/exports, imports covered by capabilities, capabilities
    and limits granted by the policy.
    """
    policy = policy if policy is not None else Policy()
    if len(wasm) > policy.max_module_size:
        raise ModuleTooLargeError(
            f"module is {len(wasm)} bytes, above the policy's maximum {policy.max_module_size}"
        )
    data = bytes(wasm)
    module = wasmbin.parse_module(data)  # framing first: nothing below reads garbage
    stripped = wasmbin.remove_custom_sections(data, SIGNATURE_SECTION)
    module_hash = "sha256:" + hashlib.sha256(stripped).hexdigest()

    block = read_signature(data)
    if trusted_keys is None:
        trusted_keys = (
            load_trusted_keys(policy.trusted_keys_dir)
            if policy.trusted_keys_dir is not None
            else TrustedKeys()
        )
    if block is not None:
        _check_signature(stripped, block, trusted_keys)
    elif not policy.dev_mode:
        raise UnsignedModuleError(
            f"unsigned module: no {SIGNATURE_SECTION} section (sign it with "
            "`lockstep module sign`, or enable dev mode to accept unsigned modules)"
        )

    manifest = read_manifest(data)
    if manifest is None:
        raise ManifestError("missing manifest: no lockstep.manifest section")
    if manifest.abi_major != SUPPORTED_ABI_MAJOR:
        raise AbiVersionError(
            f"unsupported ABI version {manifest.abi_version}: this host runs ABI major "
            f"{SUPPORTED_ABI_MAJOR}"
        )
    check_abi(module, exports=policy.check_exports)
    check_capabilities(module, manifest)
    _check_policy(manifest, policy)

    if block is None:
        message = (
            f"DEV MODE: accepting UNSIGNED module {manifest.name}@{manifest.version} "
            f"({module_hash}); its origin is not verified. Never use dev mode in production."
        )
        log.warning(message)
        return Verdict(VERDICT_UNSIGNED_DEV_MODE, module_hash, manifest, "", len(data), (message,))
    return Verdict(VERDICT_VERIFIED, module_hash, manifest, block.key_id, len(data))
