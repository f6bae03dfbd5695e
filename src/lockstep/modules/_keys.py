"""Ed25519 signing keys: generation, key ids, key files and the trusted-keys directory."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lockstep.modules._errors import KeyFileError

__all__ = [
    "PRIVATE_KEY_SUFFIX",
    "PUBLIC_KEY_SUFFIX",
    "TrustedKeys",
    "key_id",
    "keygen",
    "load_private_key",
    "load_public_key",
    "load_trusted_keys",
]

PRIVATE_KEY_SUFFIX = ".key"
"""``<key id>.key``: PKCS#8 PEM private key, mode 0600."""

PUBLIC_KEY_SUFFIX = ".pub"
"""``<key id>.pub``: SubjectPublicKeyInfo PEM public key (what operators trust)."""

_MAX_KEY_FILE = 16 * 1024


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite an existing key; the mode is applied at creation so the
    # private key is never readable by others, not even briefly.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def keygen(directory: Path | str) -> str:
    """Generate an Ed25519 key pair in ``directory`` (created 0700 if missing).

    Writes ``<id>.key`` (private, PKCS#8 PEM, mode 0600) and ``<id>.pub`` (public,
    SubjectPublicKeyInfo PEM) and returns the key id. Never overwrites a file.
    """
    directory = Path(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        kid = key_id(private)
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        _write_exclusive(directory / f"{kid}{PRIVATE_KEY_SUFFIX}", private_pem, 0o600)
        _write_exclusive(directory / f"{kid}{PUBLIC_KEY_SUFFIX}", public_pem, 0o644)
    except OSError as exc:
        raise KeyFileError(f"cannot write key pair in {directory}: {exc.strerror or exc}") from None
    return kid


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{what} {path} is larger than {_MAX_KEY_FILE} bytes")
    return data


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PKCS#8 PEM or OpenSSH file."""
    path = Path(path)
    data = _read(path, "private key")
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            key: object = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"private key {path} is not a usable PEM/OpenSSH key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"private key {path} is a {type(key).__name__}, not Ed25519")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM (SubjectPublicKeyInfo) or ``ssh-ed25519`` file."""
    path = Path(path)
    data = _read(path, "public key")
    try:
        if data.lstrip().startswith(b"ssh-"):
            key: object = serialization.load_ssh_public_key(data.strip())
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError(f"public key {path} is not a usable PEM/OpenSSH key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"public key {path} is a {type(key).__name__}, not Ed25519")
    return key


class TrustedKeys(Mapping[str, Ed25519PublicKey]):
    """Public keys trusted to sign modules, by key id (read-only mapping).

    ``sources`` tells where each key came from, for messages.
    """

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey] | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._sources: dict[str, str] = {}
        for kid in sorted(keys or {}):
            key = (keys or {})[kid]
            if key_id(key) != kid:
                raise KeyFileError(f"key registered as {kid!r} has key id {key_id(key)!r}")
            self._keys[kid] = key
            self._sources[kid] = (sources or {}).get(kid, "")

    @classmethod
    def of(cls, *keys: Ed25519PublicKey | Ed25519PrivateKey) -> TrustedKeys:
        """Trust exactly these keys (private keys stand for their public halves)."""
        pubs = [k.public_key() if isinstance(k, Ed25519PrivateKey) else k for k in keys]
        return cls({key_id(k): k for k in pubs})

    def source(self, kid: str) -> str:
        """Where the key came from (a file path), or ``""``."""
        return self._sources.get(kid, "")

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustedKeys({sorted(self._keys)})"


def load_trusted_keys(directory: Path | str) -> TrustedKeys:
    """Every ``*.pub`` file in ``directory`` (not recursive), by key id.

    The key id is computed from each key, never taken from the file name. Fails with
    :class:`KeyFileError` on a missing directory or any unusable ``.pub`` file, so a
    typo shows at start-up instead of as "untrusted key" later. ``.key`` files found
    there are refused: a trusted-keys directory must not hold private keys.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise KeyFileError(f"trusted keys directory {directory} does not exist")
    keys: dict[str, Ed25519PublicKey] = {}
    sources: dict[str, str] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise KeyFileError(f"cannot list {directory}: {exc.strerror or exc}") from None
    for path in entries:
        if path.suffix == PRIVATE_KEY_SUFFIX and path.is_file():
            raise KeyFileError(
                f"{path} looks like a private key; keep private keys out of the trusted "
                "keys directory"
            )
        if path.suffix != PUBLIC_KEY_SUFFIX or not path.is_file():
            continue
        key = load_public_key(path)
        kid = key_id(key)
        if kid in keys:
            continue  # the same key twice under two names: harmless
        keys[kid] = key
        sources[kid] = str(path)
    return TrustedKeys(keys, sources)
