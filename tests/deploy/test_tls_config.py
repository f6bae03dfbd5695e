"""lockstep.tls and `lockstep certs` without namespaces: configuration rules, certificate
contents, and a TLS-only server on loopback refusing plaintext."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from lockstep.dial import health_status
from lockstep.errors import ConfigError
from lockstep.server import build_server
from lockstep.tls import TLSConfig, issue, make_ca

pytestmark = pytest.mark.unit


def test_config_rules() -> None:
    with pytest.raises(ConfigError, match="both a certificate and its key"):
        TLSConfig(cert=Path("a.crt"))
    with pytest.raises(ConfigError, match="client auth"):
        TLSConfig(ca=Path("ca.crt"), client_auth="maybe")
    with pytest.raises(ConfigError, match="required"):
        TLSConfig(required=True)
    assert TLSConfig.from_env({}) is None
    env = {"LOCKSTEP_TLS_CA": "/x/ca.crt", "LOCKSTEP_TLS_SERVER_NAME": "orchestrator"}
    config = TLSConfig.from_env(env)
    assert config is not None and config.dials_tls and not config.serves_tls
    assert config.channel_options() == [("grpc.ssl_target_name_override", "orchestrator")]


def test_lockstep_certs_makes_a_ca_and_service_certificates(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep.cli",
            "certs",
            str(tmp_path / "tls"),
            "--pools",
            "1",
            "--host",
            "lockstep.example",
            "--name",
            "pool-0=10.1.2.3,pool-0.pool",
            "--name",
            "client",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    tls = tmp_path / "tls"
    assert sorted(p.name for p in tls.iterdir()) == [
        "ca.crt",
        "ca.key",
        "client.crt",
        "client.key",
        "pool-0.crt",
        "pool-0.key",
    ]
    assert (tls / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (tls / "pool-0.key").stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate((tls / "pool-0.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {
        "pool-0",
        "localhost",
        "pool-0.pool",
        "lockstep.example",
    }
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(eku)
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)


def test_a_tls_server_refuses_plaintext_and_serves_mtls(tmp_path: Path) -> None:
    make_ca(tmp_path)
    issue(tmp_path, tmp_path, "svc")
    issue(tmp_path, tmp_path, "client")
    server_tls = TLSConfig(
        cert=tmp_path / "svc.crt", key=tmp_path / "svc.key", ca=tmp_path / "ca.crt"
    )
    with build_server("127.0.0.1:0", [], auth=None, tls=server_tls) as bound:
        client = TLSConfig(
            cert=tmp_path / "client.crt", key=tmp_path / "client.key", ca=tmp_path / "ca.crt"
        )
        assert health_status(bound.address, tls=client) == "SERVING"
        assert health_status(bound.address, tls=TLSConfig()) == "UNREACHABLE"  # plaintext
        assert health_status(bound.address, tls=TLSConfig(ca=tmp_path / "ca.crt")) == (
            "UNREACHABLE"
        )  # no client certificate


def test_a_service_that_requires_tls_will_not_start_without_it(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lockstep_telemetry",
            "--address",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--tls-required",
            "--db",
            str(tmp_path / "t.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "TLS is required" in out.stderr


def test_the_kubernetes_tls_probe_command_checks_a_tls_only_service(tmp_path: Path) -> None:
    """deploy/k8s-tls probes run `python -m lockstep.healthcheck 127.0.0.1:PORT` inside the
    container, whose environment names its own certificate: SERVING with it, not without."""
    make_ca(tmp_path)
    issue(tmp_path, tmp_path, "pool")
    server_tls = TLSConfig(
        cert=tmp_path / "pool.crt", key=tmp_path / "pool.key", ca=tmp_path / "ca.crt", required=True
    )
    with build_server("127.0.0.1:0", [], auth=None, tls=server_tls) as bound:
        probe = [sys.executable, "-m", "lockstep.healthcheck", bound.address]
        env = {
            "PATH": "/usr/bin:/bin",
            "LOCKSTEP_TLS_CA": str(tmp_path / "ca.crt"),
            "LOCKSTEP_TLS_CERT": str(tmp_path / "pool.crt"),
            "LOCKSTEP_TLS_KEY": str(tmp_path / "pool.key"),
            "LOCKSTEP_TLS_REQUIRED": "1",
        }
        ok = subprocess.run(probe, capture_output=True, text=True, timeout=60, env=env)
        assert ok.returncode == 0 and ok.stdout.strip() == "SERVING", ok.stderr
        plain = subprocess.run(
            probe, capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"}
        )
        assert plain.returncode == 1 and plain.stdout.strip() == "UNREACHABLE"
