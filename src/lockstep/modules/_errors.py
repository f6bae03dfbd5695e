"""Why a module was refused. Every class is a :class:`lockstep.errors.ModuleError`.

ModuleError
├── MalformedModuleError     not a well-formed wasm binary (lockstep.wasmbin)
├── ModuleTooLargeError      above the policy's max_module_size
├── ManifestError            manifest section missing, duplicated or invalid
├── AbiVersionError          manifest targets an ABI major version this host lacks
├── AbiError                 a lockstep_v1 import or a required export has the wrong shape
├── SignatureError           the module is not acceptably signed
│   ├── UnsignedModuleError  no signature section (and not in dev mode)
│   ├── UntrustedKeyError    signed by a key that is not in the trusted keys
│   ├── ModifiedModuleError  bytes changed after signing (hash differs from the signed one)
│   └── BadSignatureError    malformed signature section or Ed25519 check failed
└── CapabilityError          capabilities do not allow what the module does
    ├── UndeclaredImportError  an import the manifest's capabilities do not cover
    ├── ForeignImportError     an import outside lockstep_v1 (WASI, env...)
    └── PolicyDeniedError      a capability or limit the operator's policy does not grant

ConfigError
└── KeyFileError             a key file or trusted-keys directory cannot be used
"""

from __future__ import annotations

from lockstep.errors import ConfigError, ModuleError
from lockstep.wasmbin import MalformedModuleError

__all__ = [
    "AbiError",
    "AbiVersionError",
    "BadSignatureError",
    "CapabilityError",
    "ForeignImportError",
    "KeyFileError",
    "MalformedModuleError",
    "ManifestError",
    "ModifiedModuleError",
    "ModuleTooLargeError",
    "PolicyDeniedError",
    "SignatureError",
    "UndeclaredImportError",
    "UnsignedModuleError",
    "UntrustedKeyError",
]


class ModuleTooLargeError(ModuleError):
    """The module is larger than the policy allows."""


class ManifestError(ModuleError):
    """The ``lockstep.manifest`` section is missing, duplicated or invalid."""


class AbiVersionError(ModuleError):
    """The manifest's ABI major version is not supported by this host."""


class AbiError(ModuleError):
    """A ``lockstep_v1`` import or a required export does not match ABI v1."""


class SignatureError(ModuleError):
    """The module is not acceptably signed."""


class UnsignedModuleError(SignatureError):
    """No ``lockstep.signature`` section and the policy is not in dev mode."""


class UntrustedKeyError(SignatureError):
    """The signing key id is not among the trusted keys."""


class ModifiedModuleError(SignatureError):
    """The module's bytes differ from the ones that were signed."""


class BadSignatureError(SignatureError):
    """The signature section is malformed, or the Ed25519 signature does not verify."""


class CapabilityError(ModuleError):
    """The capabilities do not allow what the module does."""


class UndeclaredImportError(CapabilityError):
    """The module imports a host function its manifest's capabilities do not cover."""


class ForeignImportError(CapabilityError):
    """The module imports something outside ``lockstep_v1``."""


class PolicyDeniedError(CapabilityError):
    """The manifest requests a capability or limit the operator's policy does not grant."""


class KeyFileError(ConfigError):
    """A key file or the trusted-keys directory is missing, unreadable or not Ed25519."""
