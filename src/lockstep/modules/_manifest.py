"""The module manifest: what a module is and what it asks for, kept in a custom section."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lockstep import wasmbin
from lockstep.modules._errors import ManifestError

__all__ = [
    "ABI_VERSION",
    "CAPABILITIES",
    "LIMIT_NAMES",
    "MANIFEST_SECTION",
    "MAX_MANIFEST_SIZE",
    "SIGNATURE_SECTION",
    "Manifest",
    "embed_manifest",
    "read_manifest",
]

MANIFEST_SECTION = "lockstep.manifest"
"""Name of the custom section holding the manifest as canonical UTF-8 JSON."""

SIGNATURE_SECTION = "lockstep.signature"
"""Name of the custom section holding the signature (layout in docs/modules.md)."""

MAX_MANIFEST_SIZE = 64 * 1024
"""Largest manifest section accepted, in bytes."""

ABI_VERSION = "1.0"
"""The agent ABI version this host implements (docs/abi.md)."""

CAPABILITIES = ("log", "random", "send", "tick")
"""Capabilities without an argument; ``infer:<model>`` and ``infer:*`` come on top."""

LIMIT_NAMES = (
    "fuel_per_tick",
    "infer_input_bytes",
    "infer_per_tick",
    "log_line_bytes",
    "logs_per_tick",
    "memory_pages",
    "payload_bytes",
    "random_bytes_per_call",
    "sends_per_tick",
)
"""Limits a manifest may request (docs/abi.md "Limits"); values are positive integers."""

_FIELDS = ("abi_version", "capabilities", "limits", "name", "version")
_NAME_RE = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
_VERSION_RE = re.compile(r"[A-Za-z0-9_.+-]{1,64}")
_ABI_RE = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")
_MAX_LIMIT = 2**63 - 1


def check_capability(cap: object) -> str:
    """``cap`` if it is a well-formed capability, else :class:`ManifestError`."""
    if not isinstance(cap, str):
        raise ManifestError(f"invalid manifest: capability {cap!r} is not a string")
    if cap in CAPABILITIES or cap == "infer:*":
        return cap
    if cap.startswith("infer:"):
        model = cap[len("infer:") :]
        if _NAME_RE.fullmatch(model):
            return cap
        raise ManifestError(
            f"invalid manifest: capability {cap!r}: model name must be 1-64 of [A-Za-z0-9_.:/-]"
        )
    raise ManifestError(
        f"invalid manifest: unknown capability {cap!r} "
        f"(known: {', '.join(CAPABILITIES)}, infer:<model>, infer:*)"
    )


@dataclass(frozen=True)
class Manifest:
    """Manifest of an agent module; constructing one validates it.

    Fields:
      name: module name, 1-64 characters of ``[A-Za-z0-9_.:/-]``.
      version: module version, 1-64 characters of ``[A-Za-z0-9_.+-]`` (semver advised).
      abi_version: ``"MAJOR.MINOR"`` of the agent ABI it targets; this host runs major 1.
      capabilities: host functions it may use (``send``, ``log``, ``random``, ``tick``,
        ``infer:<model>``, ``infer:*``); stored sorted, duplicates refused.
      limits: requested per-agent limits by name (see :data:`LIMIT_NAMES`), positive ints.

    Not hashable (``limits`` is a mapping); compare with ``==``.
    """

    name: str
    version: str
    abi_version: str = ABI_VERSION
    capabilities: tuple[str, ...] = ()
    limits: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.fullmatch(self.name):
            raise ManifestError(
                f"invalid manifest: name {self.name!r} must be 1-64 of [A-Za-z0-9_.:/-]"
            )
        if not isinstance(self.version, str) or not _VERSION_RE.fullmatch(self.version):
            raise ManifestError(
                f"invalid manifest: version {self.version!r} must be 1-64 of [A-Za-z0-9_.+-]"
            )
        if not isinstance(self.abi_version, str) or not _ABI_RE.fullmatch(self.abi_version):
            raise ManifestError(
                f'invalid manifest: abi_version {self.abi_version!r} must be "MAJOR.MINOR"'
            )
        if isinstance(self.capabilities, str) or not isinstance(self.capabilities, list | tuple):
            raise ManifestError("invalid manifest: capabilities must be a list of strings")
        caps: list[str] = []
        seen: set[str] = set()
        for cap in self.capabilities:
            checked = check_capability(cap)
            if checked in seen:
                raise ManifestError(f"invalid manifest: duplicate capability {checked!r}")
            seen.add(checked)
            caps.append(checked)
        if not isinstance(self.limits, Mapping):
            raise ManifestError("invalid manifest: limits must be a table of name = integer")
        limits: dict[str, int] = {}
        for key in sorted(self.limits, key=str):
            value = self.limits[key]
            if key not in LIMIT_NAMES:
                raise ManifestError(
                    f"invalid manifest: unknown limit {key!r} (known: {', '.join(LIMIT_NAMES)})"
                )
            # bool is an int subclass; true/false is never a meaningful limit
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_LIMIT:
                raise ManifestError(
                    f"invalid manifest: limit {key} = {value!r} must be a positive integer"
                )
            limits[key] = value
        object.__setattr__(self, "capabilities", tuple(sorted(caps)))
        object.__setattr__(self, "limits", MappingProxyType(limits))

    @property
    def abi_major(self) -> int:
        """Major part of ``abi_version``."""
        return int(self.abi_version.split(".")[0])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with every field."""
        return {
            "abi_version": self.abi_version,
            "capabilities": list(self.capabilities),
            "limits": dict(self.limits),
            "name": self.name,
            "version": self.version,
        }

    def to_json(self) -> bytes:
        """Canonical encoding: sorted keys, no whitespace, UTF-8 (so the bytes, and the
        module hash, depend only on the manifest's content)."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")

    @classmethod
    def from_dict(cls, data: object) -> Manifest:
        """Validate a decoded JSON/TOML object; unknown fields are refused (fail closed)."""
        if not isinstance(data, dict):
            raise ManifestError("invalid manifest: not a JSON object")
        unknown = sorted(set(data) - set(_FIELDS), key=str)
        if unknown:
            raise ManifestError(f"invalid manifest: unknown field {unknown[0]!r}")
        for required in ("name", "version", "abi_version"):
            if required not in data:
                raise ManifestError(f"invalid manifest: missing field {required!r}")
        return cls(
            name=data["name"],
            version=data["version"],
            abi_version=data["abi_version"],
            capabilities=data.get("capabilities", []),
            limits=data.get("limits", {}),
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        """Parse the manifest section's bytes (UTF-8 JSON; duplicate keys refused)."""
        if len(raw) > MAX_MANIFEST_SIZE:
            raise ManifestError(
                f"invalid manifest: {len(raw)} bytes, more than {MAX_MANIFEST_SIZE}"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ManifestError("invalid manifest: not valid UTF-8") from None
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates)
        except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
            raise ManifestError(f"invalid manifest: bad JSON: {exc}") from None
        except RecursionError:
            raise ManifestError("invalid manifest: JSON nested too deeply") from None
        return cls.from_dict(data)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two readers could otherwise disagree about which value counts.
            raise ManifestError(f"invalid manifest: duplicate key {key!r}")
        result[key] = value
    return result


def read_manifest(wasm: bytes | bytearray | memoryview) -> Manifest | None:
    """The module's manifest, None when it has no manifest section.

    Raises :class:`ManifestError` if the section is duplicated or invalid, and
    :class:`~lockstep.wasmbin.MalformedModuleError` if the module is malformed.
    """
    raws = wasmbin.custom_sections(wasm, MANIFEST_SECTION)
    if not raws:
        return None
    if len(raws) > 1:
        raise ManifestError(f"{len(raws)} {MANIFEST_SECTION} sections (exactly one allowed)")
    return Manifest.from_json(raws[0])


def embed_manifest(wasm: bytes | bytearray | memoryview, manifest: Manifest) -> bytes:
    """The module with ``manifest`` as its only manifest section, unsigned.

    Any signature section is dropped: it no longer matches the bytes, so keeping it would
    only produce a "modified" verdict; sign the result again.
    """
    stripped = wasmbin.remove_custom_sections(wasm, SIGNATURE_SECTION)
    return wasmbin.replace_custom_section(stripped, MANIFEST_SECTION, manifest.to_json())
