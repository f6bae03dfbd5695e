"""TLS and mutual TLS for every Lockstep service and client.

A process is configured once, from flags or the environment (``LOCKSTEP_TLS_CERT``,
``LOCKSTEP_TLS_KEY``, ``LOCKSTEP_TLS_CA``, ``LOCKSTEP_TLS_CLIENT_AUTH``,
``LOCKSTEP_TLS_SERVER_NAME``, ``LOCKSTEP_TLS_REQUIRED``). Then:

* ``lockstep.server.build_server`` listens with TLS only when a certificate is configured
  (plaintext connections are refused) and, with a CA, requires a client certificate
  signed by it (mTLS) unless ``client_auth`` says otherwise;
* ``lockstep.dial.open_channel`` (so every channel a service or the CLI opens) connects
  with TLS when a CA is configured, presenting the certificate as its client identity.

``make_ca`` / ``issue`` create a private CA and per-service certificates (``lockstep certs``):
ECDSA P-256, both server and client authentication, names ``localhost``, ``127.0.0.1``,
``::1`` plus the service name and any extra host names or IP addresses.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lockstep.errors import ConfigError

__all__ = [
    "CLIENT_AUTH_MODES",
    "DEFAULT_NAMES",
    "TLSConfig",
    "issue",
    "make_ca",
    "process_tls",
    "set_process_tls",
]

CLIENT_AUTH_MODES = ("require", "none")
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
_ENV = (
    "LOCKSTEP_TLS_CERT",
    "LOCKSTEP_TLS_KEY",
    "LOCKSTEP_TLS_CA",
    "LOCKSTEP_TLS_CLIENT_AUTH",
    "LOCKSTEP_TLS_SERVER_NAME",
    "LOCKSTEP_TLS_REQUIRED",
)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"TLS {what} {path} is unreadable: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class TLSConfig:
    """One process's TLS material.

    cert/key: this process's certificate (PEM) and private key: its server identity and,
    on channels it opens, its client identity. ca: the CA bundle that peers must chain to;
    with it a server requires client certificates (``client_auth="require"``) and a client
    verifies servers against it (without it, the system roots). server_name: the name a
    client expects in server certificates instead of the host it dials.
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    client_auth: str = "require"
    server_name: str | None = None
    required: bool = False

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("TLS needs both a certificate and its key (--tls-cert, --tls-key)")
        if self.client_auth not in CLIENT_AUTH_MODES:
            raise ConfigError(
                f"TLS client auth must be one of {CLIENT_AUTH_MODES}, got {self.client_auth!r}"
            )
        if self.required and self.cert is None and self.ca is None:
            raise ConfigError(
                "TLS is required (LOCKSTEP_TLS_REQUIRED=1 / --tls-required) but "
                "no certificate or CA is configured"
            )

    @property
    def serves_tls(self) -> bool:
        return self.cert is not None

    @property
    def dials_tls(self) -> bool:
        return self.ca is not None or self.cert is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TLSConfig | None:
        """The configuration named by ``LOCKSTEP_TLS_*``, or None when none is set."""
        env = os.environ if environ is None else environ

        def path(name: str) -> Path | None:
            value = env.get(name, "")
            return Path(value) if value else None

        config = cls(
            cert=path("LOCKSTEP_TLS_CERT"),
            key=path("LOCKSTEP_TLS_KEY"),
            ca=path("LOCKSTEP_TLS_CA"),
            client_auth=env.get("LOCKSTEP_TLS_CLIENT_AUTH", "") or "require",
            server_name=env.get("LOCKSTEP_TLS_SERVER_NAME") or None,
            required=env.get("LOCKSTEP_TLS_REQUIRED") == "1",
        )
        return config if (config.dials_tls or config.required) else None

    def server_credentials(self) -> grpc.ServerCredentials:
        cert, key = _read(self.cert, "certificate"), _read(self.key, "key")
        if cert is None or key is None:
            raise ConfigError("a TLS server needs a certificate and a key")
        ca = _read(self.ca, "CA")
        return grpc.ssl_server_credentials(
            [(key, cert)],
            root_certificates=ca,
            require_client_auth=ca is not None and self.client_auth == "require",
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "CA"),
            private_key=_read(self.key, "key"),
            certificate_chain=_read(self.cert, "certificate"),
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


_process: TLSConfig | None = None
_process_set = False
_env_cache: tuple[tuple[str, ...], TLSConfig | None] | None = None


def set_process_tls(config: TLSConfig | None) -> None:
    """Fix this process's TLS configuration (services call it once from their flags)."""
    global _process, _process_set
    _process, _process_set = config, True


def process_tls() -> TLSConfig | None:
    """What servers and channels use when given no explicit configuration: the one set by
    ``set_process_tls``, else the environment's."""
    global _env_cache
    if _process_set:
        return _process
    key = tuple(os.environ.get(name, "") for name in _ENV)
    if _env_cache is None or _env_cache[0] != key:
        _env_cache = (key, TLSConfig.from_env())
    return _env_cache[1]


# --- certificates -----------------------------------------------------------------------

_VALID_DAYS = 825


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lockstep"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write_private(path: Path, key: ec.EllipticCurvePrivateKey, mode: int) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    path.chmod(mode)


def _write_public(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


def make_ca(
    directory: Path, common_name: str = "Lockstep local CA", days: int = 3650
) -> tuple[Path, Path]:
    """A new CA in `directory`: ca.crt (public) and ca.key (0600). Returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(directory / "ca.key", key, 0o600)
    _write_public(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    return directory / "ca.crt", directory / "ca.key"


def _alt_names(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    seen: set[str] = set()
    for raw in names:
        name = raw.strip()
        if not name or name in seen:
            continue
        seen.add(name)
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def issue(
    ca_dir: Path,
    out_dir: Path,
    name: str,
    hosts: Iterable[str] = (),
    key_mode: int = 0o600,
    days: int = _VALID_DAYS,
) -> tuple[Path, Path]:
    """A certificate for `name` signed by the CA in `ca_dir`: out_dir/NAME.crt and NAME.key.

    Valid for server and client authentication, for `name`, DEFAULT_NAMES and `hosts`
    (DNS names or IP addresses). `key_mode` 0o644 suits a key handed to a container as a
    secret file inside an owner-only directory."""
    try:
        ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no usable CA in {ca_dir} (ca.crt, ca.key): {exc}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{ca_dir / 'ca.key'} is not an EC key")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                key_cert_sign=False,
                crl_sign=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(_alt_names([name, *DEFAULT_NAMES, *hosts])), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(out_dir / f"{name}.key", key, key_mode)
    _write_public(out_dir / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
    return out_dir / f"{name}.crt", out_dir / f"{name}.key"
