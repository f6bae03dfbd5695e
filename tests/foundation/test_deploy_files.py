"""docker-compose.yml and the Dockerfiles, checked statically (no Docker engine here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "wasm_pool", "inference", "telemetry")
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
    assert f"EXPOSE {port}" in text
    assert f'"lockstep.healthcheck", "127.0.0.1:{port}"' in text


@pytest.mark.unit
@pytest.mark.parametrize("service", SERVICES)
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


@pytest.mark.unit
def test_compose_runs_every_service_with_healthchecks() -> None:
    services = COMPOSE["services"]
    images = {name: svc["build"]["dockerfile"] for name, svc in services.items()}
    for name, path in images.items():
        assert (ROOT / path).is_file(), f"{name}: {path} missing"
        assert services[name]["build"]["context"] == "."
    built = {Path(p).parent.name for p in images.values()}
    assert built == set(SERVICES)
    for name, svc in services.items():
        service = Path(images[name]).parent.name
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
    targets = [*env["LOCKSTEP_POOL_ADDRESSES"].split(","), env["LOCKSTEP_TELEMETRY_ADDRESS"], env["LOCKSTEP_INFERENCE_ADDRESS"]]
    for target in targets:
        host, port = target.split(":")
        assert host in services, target
        service = Path(services[host]["build"]["dockerfile"]).parent.name
        assert port == listen_port(service), target
        assert orch["depends_on"][host] == {"condition": "service_healthy"}
    # Published on loopback only (design section 8).
    assert all(p.startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))
    assert COMPOSE["secrets"]["lockstep_tokens"]["file"] == "./deploy/tokens.json"
