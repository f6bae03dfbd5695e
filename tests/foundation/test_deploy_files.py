"""docker-compose.yml and the Dockerfiles, checked statically. The real thing, with a Docker
engine, is `python3 dev.py test-compose` (deploy/compose_test.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "wasm_pool", "inference", "telemetry")  # the gRPC services
DASHBOARD = "dashboard"  # HTTP, the viewer token only (docs/dashboard.md)
IMAGES = (*SERVICES, DASHBOARD)
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def dockerfile(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


def listen_port(service: str) -> str:
    match = re.search(r"LOCKSTEP_LISTEN=0\.0\.0\.0:(\d+)", dockerfile(service))
    assert match, f"{service}: Dockerfile sets no LOCKSTEP_LISTEN"
    return match.group(1)


@pytest.mark.unit
@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_installs_only_its_own_service(service: str) -> None:
    text = dockerfile(service)
    copied = re.findall(r"^COPY (.+)$", text, re.M)
    service_dirs = {m for line in copied for m in re.findall(r"services/(\w+)", line)}
    assert service_dirs == {service}
    installs = [ln for ln in text.splitlines() if "pip install" in ln and "./" in ln]
    assert installs and all(f"./services/{service}" in ln for ln in installs)
    for other in set(SERVICES) - {service}:
        assert f"services/{other}" not in text
    assert re.search(rf'ENTRYPOINT \["python", "-m", "lockstep_{service}"\]', text)
    port = listen_port(service)
    assert re.search(rf"^EXPOSE {port}\b", text, re.M)
    assert f'"lockstep.healthcheck", "127.0.0.1:{port}"' in text


@pytest.mark.unit
@pytest.mark.parametrize("service", IMAGES)
def test_dockerfile_is_slim_and_builds_anywhere(service: str) -> None:
    text = dockerfile(service)
    # Any Debian-based image with python3-venv (a debootstrap-built one where no registry
    # is reachable), a build stage whose pip trusts an optional CA bundle, a final stage
    # with the virtual environment only, running as the fixed unprivileged user.
    assert re.search(r"^ARG BASE_IMAGE=", text, re.M)
    stages = re.findall(r"^FROM (.+)$", text, re.M)
    assert stages == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]
    build, final = text.split("\nFROM ${BASE_IMAGE}\n")
    assert 'ARG CA_BUNDLE=""' in build and "COPY deploy/build-ca/ /tmp/build-ca/" in build
    assert "pip install" not in final and "CA_BUNDLE" not in final
    assert "COPY --from=build /opt/lockstep /opt/lockstep" in final
    assert "USER lockstep" in final and "10001" in final
    # Service images leave out the analysis-only dependencies of the shared package (the
    # dashboard reads journal records with lockstep.api, which needs pandas).
    assert (
        'ARG CLIENT_ONLY="pyarrow matplotlib"'
        if service == DASHBOARD
        else 'ARG CLIENT_ONLY="pandas pyarrow matplotlib"'
    ) in build
    if service == "inference":
        assert "ARG ONNXRUNTIME=onnxruntime\n" in build  # CPU image unless asked
        assert "rm -rf /tmp/model-sources" in build
        assert "LOCKSTEP_INFERENCE_PROVIDER=cpu" in final
    if service == "wasm_pool":
        assert "services/wasm_pool/native/build.py" in build  # the native core, when there


@pytest.mark.unit
def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = [
        ln
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "src",
        "services",
        "deploy/build-ca",
    }
    for service in IMAGES:
        for line in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile(service), re.M):
            for src in line.split():
                assert src.split("/")[0] in {a.split("/")[0] for a in allowed}, src


@pytest.mark.unit
@pytest.mark.parametrize("service", IMAGES)
def test_service_packages_keep_their_dependencies_apart(service: str) -> None:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    deps = " ".join(project["project"]["dependencies"]).lower()
    assert "lockstep" in deps
    if service != "inference":
        assert "onnxruntime" not in deps
    if service != "wasm_pool":
        assert "wasmtime" not in deps
    if service != "telemetry":
        assert "sqlite-utils" not in deps


def compose_dockerfiles() -> dict[str, str]:
    """Service name -> its Dockerfile; services that only name an image get the Dockerfile of
    the service that builds that image."""
    services = COMPOSE["services"]
    by_image = {
        svc["image"]: svc["build"]["dockerfile"] for svc in services.values() if "build" in svc
    }
    return {
        name: svc["build"]["dockerfile"] if "build" in svc else by_image[svc["image"]]
        for name, svc in services.items()
    }


@pytest.mark.unit
def test_compose_runs_every_service_with_healthchecks() -> None:
    services = COMPOSE["services"]
    images = compose_dockerfiles()
    for name, path in images.items():
        assert (ROOT / path).is_file(), f"{name}: {path} missing"
    builders = [svc for svc in services.values() if "build" in svc]
    assert all(svc["build"]["context"] == "." for svc in builders)
    # One image per Dockerfile: every pool runs the image pool-0 builds.
    assert sorted(Path(svc["build"]["dockerfile"]).parent.name for svc in builders) == sorted(
        IMAGES
    )
    built = {Path(p).parent.name for p in images.values()}
    assert built == set(IMAGES)
    pools = [n for n in services if n.startswith("pool-")]
    assert len(pools) >= 2 and len({services[n]["image"] for n in pools}) == 1
    for name, svc in services.items():
        service = Path(images[name]).parent.name
        if service == DASHBOARD:  # test_compose_dashboard_holds_only_the_viewer_token
            continue
        test = svc["healthcheck"]["test"]
        assert test[:4] == ["CMD", "python", "-m", "lockstep.healthcheck"]
        assert test[4] == f"127.0.0.1:{listen_port(service)}"
        assert "lockstep_tokens" in svc["secrets"]
        assert svc["environment"]["LOCKSTEP_AUTH_FILE"] == "/run/secrets/lockstep_tokens"


@pytest.mark.unit
def test_compose_orchestrator_points_at_defined_healthy_services() -> None:
    services = COMPOSE["services"]
    orch = services["orchestrator"]
    env = orch["environment"]
    targets = [
        *env["LOCKSTEP_POOL_ADDRESSES"].split(","),
        env["LOCKSTEP_TELEMETRY_ADDRESS"],
        env["LOCKSTEP_INFERENCE_ADDRESS"],
    ]
    for target in targets:
        host, port = target.split(":")
        assert host in services, target
        service = Path(compose_dockerfiles()[host]).parent.name
        assert port == listen_port(service), target
        assert orch["depends_on"][host] == {"condition": "service_healthy"}
    # Published on loopback only (design section 8), every service, and the metrics.
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    for name, svc in services.items():
        if name == DASHBOARD:
            continue
        port = listen_port(Path(compose_dockerfiles()[name]).parent.name)
        assert any(p.endswith(f":{port}") for p in svc["ports"]), name
    for name, svc in services.items():  # and its Prometheus endpoint (container port 9090)
        assert any(p.endswith(":9090") for p in svc["ports"]), name
    published = [p.rsplit(":", 1)[0] for s in services.values() for p in s["ports"]]
    assert len(published) == len(set(published))  # no host port twice
    assert COMPOSE["secrets"]["lockstep_tokens"]["file"] == "./deploy/secrets/tokens.json"
    # The key `lockstep deploy init` makes is the one the orchestrator trusts.
    assert env["LOCKSTEP_TRUSTED_KEYS"] == "/etc/lockstep/trusted"
    assert "./deploy/keys/trusted:/etc/lockstep/trusted:ro" in orch["volumes"]


@pytest.mark.unit
def test_compose_tls_overlay_gives_every_service_its_certificate() -> None:
    overlay = yaml.safe_load((ROOT / "deploy" / "compose.tls.yml").read_text())
    assert set(overlay["services"]) == set(COMPOSE["services"])
    for name, svc in overlay["services"].items():
        env = svc["environment"]
        # The dashboard only dials the services (its own HTTP port stays on loopback).
        assert env.get("LOCKSTEP_TLS_REQUIRED") == (None if name == DASHBOARD else "1")
        assert env["LOCKSTEP_TLS_CA"] == "/run/secrets/tls_ca"
        for var, suffix in (("LOCKSTEP_TLS_CERT", "crt"), ("LOCKSTEP_TLS_KEY", "key")):
            secret = env[var].removeprefix("/run/secrets/")
            assert secret in svc["secrets"]
            # Paths are relative to the project directory (the first compose file's).
            assert overlay["secrets"][secret]["file"] == f"./deploy/secrets/tls/{name}.{suffix}"
        assert ("lockstep_tokens" in svc["secrets"]) == (name != DASHBOARD)


@pytest.mark.unit
def test_compose_dashboard_holds_only_the_viewer_token() -> None:
    services = COMPOSE["services"]
    svc = services[DASHBOARD]
    assert svc["secrets"] == ["lockstep_viewer_token"]
    assert COMPOSE["secrets"]["lockstep_viewer_token"]["file"] == "./deploy/secrets/viewer.token"
    env = svc["environment"]
    assert "LOCKSTEP_AUTH_FILE" not in env
    assert env["LOCKSTEP_DASHBOARD_TOKEN_FILE"] == "/run/secrets/lockstep_viewer_token"
    for var, target in (
        ("LOCKSTEP_ORCHESTRATOR_ADDRESS", "orchestrator"),
        ("LOCKSTEP_TELEMETRY_ADDRESS", "telemetry"),
    ):
        host, port = env[var].split(":")
        assert host == target and port == listen_port(target)
        assert svc["depends_on"][host] == {"condition": "service_healthy"}
    text = dockerfile(DASHBOARD)
    assert "LOCKSTEP_DASHBOARD_LISTEN=0.0.0.0:8780" in text and "EXPOSE 8780 9090" in text
    assert 'ENTRYPOINT ["python", "-m", "lockstep_dashboard"]' in text
    assert "http://127.0.0.1:8780/healthz" in text
    assert "http://127.0.0.1:8780/healthz" in " ".join(svc["healthcheck"]["test"])
    assert any(p.startswith("127.0.0.1:") and p.endswith(":8780") for p in svc["ports"])
