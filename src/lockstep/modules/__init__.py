"""Module manifests, Ed25519 signing and the registration policy (docs/modules.md, ADR-005).

Typical use::

    wasm = embed_manifest(wasm, Manifest("greeter", "1.0.0", capabilities=("log", "send")))
    wasm = sign(wasm, load_private_key("keys/0123456789abcdef.key"))
    verdict = verify(wasm, load_trusted_keys("trusted"), Policy())

``verify`` fails closed with a subclass of :class:`lockstep.errors.ModuleError` (tree in
:mod:`lockstep.modules._errors`); section layouts are in docs/modules.md.
"""

from __future__ import annotations

from lockstep.modules._errors import (
    AbiError,
    AbiVersionError,
    BadSignatureError,
    CapabilityError,
    ForeignImportError,
    KeyFileError,
    MalformedModuleError,
    ManifestError,
    ModifiedModuleError,
    ModuleTooLargeError,
    PolicyDeniedError,
    SignatureError,
    UndeclaredImportError,
    UnsignedModuleError,
    UntrustedKeyError,
)
from lockstep.modules._keys import (
    TrustedKeys,
    key_id,
    keygen,
    load_private_key,
    load_public_key,
    load_trusted_keys,
)
from lockstep.modules._manifest import (
    ABI_VERSION,
    CAPABILITIES,
    LIMIT_NAMES,
    MANIFEST_SECTION,
    SIGNATURE_SECTION,
    Manifest,
    embed_manifest,
    read_manifest,
)
from lockstep.modules._policy import DEFAULT_CAPABILITIES, DEFAULT_MAX_MODULE_SIZE, Policy
from lockstep.modules._signature import (
    SignatureBlock,
    module_hash,
    read_signature,
    sign,
    strip_signature,
)
from lockstep.modules._verify import (
    ABI_EXPORTS,
    ABI_IMPORTS,
    OPTIONAL_EXPORTS,
    SUPPORTED_ABI_MAJOR,
    VERDICT_UNSIGNED_DEV_MODE,
    VERDICT_VERIFIED,
    Verdict,
    check_abi,
    check_capabilities,
    verify,
    verify_signature,
)

__all__ = [
    "ABI_EXPORTS",
    "ABI_IMPORTS",
    "ABI_VERSION",
    "CAPABILITIES",
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MAX_MODULE_SIZE",
    "LIMIT_NAMES",
    "MANIFEST_SECTION",
    "OPTIONAL_EXPORTS",
    "SIGNATURE_SECTION",
    "SUPPORTED_ABI_MAJOR",
    "VERDICT_UNSIGNED_DEV_MODE",
    "VERDICT_VERIFIED",
    "AbiError",
    "AbiVersionError",
    "BadSignatureError",
    "CapabilityError",
    "ForeignImportError",
    "KeyFileError",
    "MalformedModuleError",
    "Manifest",
    "ManifestError",
    "ModifiedModuleError",
    "ModuleTooLargeError",
    "Policy",
    "PolicyDeniedError",
    "SignatureBlock",
    "SignatureError",
    "TrustedKeys",
    "UndeclaredImportError",
    "UnsignedModuleError",
    "UntrustedKeyError",
    "Verdict",
    "check_abi",
    "check_capabilities",
    "embed_manifest",
    "key_id",
    "keygen",
    "load_private_key",
    "load_public_key",
    "load_trusted_keys",
    "module_hash",
    "read_manifest",
    "read_signature",
    "sign",
    "strip_signature",
    "verify",
    "verify_signature",
]
