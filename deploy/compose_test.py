#!/usr/bin/env python3
"""`python3 dev.py test-compose`: docker-compose.yml tried for real, as deploy/README.md says.

1. a Docker engine: installed (Debian's docker.io, root only) and started if needed;
2. a compose command: `docker compose`, else `docker-compose` (installed from Debian);
3. a base image: python:3.11-slim if it can be pulled, else lockstep/debian-base:bookworm,
   built once from Debian packages with debootstrap and `docker import`;
4. `lockstep deploy init` (tokens, signing key and trust; a throwaway CLI profile);
5. build (the host's CA bundle goes to deploy/build-ca/ for pip inside the build), up;
6. pingpong and oracle through the CLI against the stack, each replayed from the journal,
   and their digests compared with `lockstep run --local` of the same scenarios;
7. the dashboard shows each run's verified chain; every service's published metrics
   endpoint scraped and parsed;
8. down -v, whatever happened (--keep leaves the stack up for a look).

Host ports are free ones picked at start, so a stack of the user's own is not disturbed.
Options: --tls (the stack with deploy/compose.tls.yml: mTLS everywhere, the CLI too),
--keep, --no-build (reuse the images), --base-image IMAGE.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCKSTEP = str(BIN / "lockstep")
DEBIAN_BASE = "lockstep/debian-base:bookworm"
REGISTRY_BASE = "python:3.11-slim"
SCENARIOS = ("pingpong", "oracle")
PORTS = ("ORCHESTRATOR", "TELEMETRY", "INFERENCE", "POOL0", "POOL1", "DASHBOARD")
# Published metrics endpoints (LOCKSTEP_<NAME>_METRICS) and a family each must serve.
METRICS = {
    "ORCHESTRATOR": "lockstep_orchestrator_ticks",
    "TELEMETRY": "lockstep_telemetry_head_sequence",
    "INFERENCE": "lockstep_inference_cache_bytes",
    "POOL0": "lockstep_pool_instances",
    "POOL1": "lockstep_pool_instances",
    "DASHBOARD": "python_info",
}
POOLS = 2


def say(msg: str) -> None:
    print(f"[test-compose] {msg}", flush=True)


def run(
    cmd: list[str],
    check: bool = True,
    capture: bool = False,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(
        cmd,
        check=check,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env=env,
        stdout=subprocess.PIPE if capture else None,
    )


def ok(cmd: list[str], timeout: float = 30) -> bool:
    try:
        return (
            subprocess.run(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=timeout
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(
            f"test-compose: needs {' '.join(packages)}; install them (Debian: apt-get "
            "install) or run as root"
        )
    run(["apt-get", "install", "-y", "--no-install-recommends", *packages])


def ensure_engine() -> None:
    if ok(["docker", "info"]):
        return
    if not shutil.which("dockerd"):
        apt_install("docker.io")
    if ok(["docker", "info"]):  # the package's service may have started it
        return
    log = Path(tempfile.gettempdir()) / "lockstep-dockerd.log"
    say(f"starting dockerd in the background (log {log})")
    with open(log, "ab") as fh:
        subprocess.Popen(
            ["dockerd"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while not ok(["docker", "info"], timeout=5):
        if time.monotonic() > deadline:
            sys.exit(f"test-compose: dockerd did not come up; see {log}")
        time.sleep(0.5)


def compose_command() -> list[str]:
    if ok(["docker", "compose", "version"]):
        return ["docker", "compose"]
    if not shutil.which("docker-compose"):
        apt_install("docker-compose")
    return ["docker-compose"]


def debian_mirror() -> str:
    """The host's Debian archive (not security, not third-party repositories), else
    deb.debian.org; LOCKSTEP_DEBIAN_MIRROR overrides."""
    if os.environ.get("LOCKSTEP_DEBIAN_MIRROR"):
        return os.environ["LOCKSTEP_DEBIAN_MIRROR"]
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = path.read_text()
        except OSError:
            continue
        uris = []
        for stanza in text.split("\n\n"):  # deb822 .sources
            fields = dict(
                ln.split(":", 1)
                for ln in stanza.splitlines()
                if ":" in ln and not ln.startswith("#")
            )
            if "bookworm" in fields.get("Suites", "").split():
                uris += fields.get("URIs", "").split()
        for line in text.splitlines():  # one-line format
            words = line.split()
            if words[:1] == ["deb"] and "bookworm" in words:
                uris += [w for w in words if "://" in w]
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri
    return "http://deb.debian.org/debian"


def ensure_base_image(requested: str | None) -> str:
    if requested:
        return requested
    if ok(["docker", "image", "inspect", REGISTRY_BASE]) or ok(
        ["docker", "pull", REGISTRY_BASE], timeout=60
    ):
        return REGISTRY_BASE
    if ok(["docker", "image", "inspect", DEBIAN_BASE]):
        say(f"{REGISTRY_BASE} unreachable: using {DEBIAN_BASE}")
        return DEBIAN_BASE
    say(f"{REGISTRY_BASE} unreachable: building {DEBIAN_BASE} with debootstrap")
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    with tempfile.TemporaryDirectory(prefix="lockstep-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                debian_mirror(),
            ]
        )
        for junk in ("var/lib/apt/lists", "var/cache/apt/archives"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run_import = subprocess.run(
            ["docker", "import", "-c", "ENV LANG=C.UTF-8", "-", DEBIAN_BASE],
            stdin=tar.stdout,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or run_import.returncode != 0:
            sys.exit("test-compose: building the base image failed")
    return DEBIAN_BASE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def host_ca_bundle() -> None:
    """pip inside the builds trusts what the host trusts (TLS-intercepting networks)."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            shutil.copyfile(candidate, ROOT / "deploy" / "build-ca" / "host.pem")
            return


def cli_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    out = run([LOCKSTEP, *args, "--json"], capture=True, env=env, timeout=900).stdout
    return dict(json.loads(out))


def scrape_metrics(ports: dict[str, int]) -> bool:
    """Every service's published Prometheus endpoint parses and has its own metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    for name, family in METRICS.items():
        url = f"http://127.0.0.1:{ports[name]}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                names = {f.name for f in text_string_to_metric_families(resp.read().decode())}
        except OSError as exc:
            say(f"{name}: metrics at {url} unreachable: {exc}")
            return False
        if family not in names or "process_cpu_seconds" not in names:
            say(f"{name}: {url} lacks {family} or the process metrics")
            return False
    say(f"metrics scraped and parsed from {len(METRICS)} published endpoints")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="dev.py test-compose",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument("--no-build", action="store_true", help="reuse the built images")
    parser.add_argument("--base-image", help="base image instead of the detected one")
    parser.add_argument("--tls", action="store_true", help="with deploy/compose.tls.yml (mTLS)")
    args = parser.parse_args()

    ensure_engine()
    compose = compose_command()
    base = ensure_base_image(args.base_image)
    tmp = Path(tempfile.mkdtemp(prefix="lockstep-compose-test-"))
    ports = {name: free_port() for name in PORTS}
    metrics_ports = {name: free_port() for name in METRICS}
    env = {
        **os.environ,
        "LOCKSTEP_BASE_IMAGE": base,
        "LOCKSTEP_PROFILES": str(tmp / "p.toml"),
        **{f"LOCKSTEP_{name}_PORT": str(port) for name, port in ports.items()},
        **{f"LOCKSTEP_{name}_METRICS": str(port) for name, port in metrics_ports.items()},
    }
    project = ["-p", f"lockstep-test-{os.getpid()}", "-f", "docker-compose.yml"]
    if args.tls:
        project += ["-f", "deploy/compose.tls.yml"]
    run(
        [
            LOCKSTEP,
            "deploy",
            "init",
            "--profile",
            "compose-test",
            "--orchestrator",
            f"127.0.0.1:{ports['ORCHESTRATOR']}",
            "--telemetry",
            f"127.0.0.1:{ports['TELEMETRY']}",
            "--inference",
            f"127.0.0.1:{ports['INFERENCE']}",
            *(["--tls"] if args.tls else []),
        ],
        env=env,
    )
    failed = True
    try:
        if not args.no_build:
            host_ca_bundle()
            run([*compose, *project, "build"], env=env)
        run([*compose, *project, "up", "-d"], env=env)
        sys.path.insert(0, str(ROOT / "src"))
        from lockstep.dial import health_status, wait_serving
        from lockstep.tls import TLSConfig

        tls = None
        if args.tls:
            certs = ROOT / "deploy" / "secrets" / "tls"
            tls = TLSConfig(
                ca=certs / "ca.crt", cert=certs / "client.crt", key=certs / "client.key"
            )
        for name in ("ORCHESTRATOR", "TELEMETRY", "INFERENCE", "POOL0", "POOL1"):
            wait_serving(f"127.0.0.1:{ports[name]}", timeout=180, tls=tls)
        say("every service SERVING on its published loopback port")
        if tls is not None:
            plain = health_status(f"127.0.0.1:{ports['ORCHESTRATOR']}")
            if plain != "UNREACHABLE":
                say(f"a plaintext client got {plain} from the TLS stack")
                return 1
            say("plaintext refused by the TLS stack")
        remote = ["--profile", "compose-test"]
        results: dict[str, tuple[str, str]] = {}
        results_ids: dict[str, str] = {}
        for name in SCENARIOS:
            path = f"examples/scenarios/{name}.toml"
            stack = cli_json([*remote, "run", path], env)
            run([LOCKSTEP, *remote, "replay", str(stack["run_id"])], env=env, timeout=900)
            local = cli_json(["run", "--local", "--pools", str(POOLS), path], env)
            results[name] = (stack["digest"], local["digest"])
            results_ids[name] = str(stack["run_id"])
            if stack["digests"] != local["digests"]:
                say(f"{name}: DIGESTS DIFFER: compose {stack['digest']} local {local['digest']}")
                return 1
            say(
                f"{name}: compose run, its replay and the local run agree "
                f"({len(list(stack['digests']))} tick digests, final {stack['digest']})"
            )
        from lockstep.supervisor._dashboard import wait_http

        wait_http(f"127.0.0.1:{ports['DASHBOARD']}", timeout=180)
        for name in SCENARIOS:
            url = f"http://127.0.0.1:{ports['DASHBOARD']}/runs/{results_ids[name]}/digests"
            with urllib.request.urlopen(url, timeout=30) as resp:
                page = resp.read().decode()
            if "hash chain verified" not in page:
                say(f"dashboard: {url} does not show the verified chain")
                return 1
        say("dashboard shows every run with its chain verified")
        if not scrape_metrics(metrics_ports):
            return 1
        failed = False
        say("PASSED: " + ", ".join(f"{n} {d[0][:16]}..." for n, d in results.items()))
        return 0
    finally:
        if failed:
            run([*compose, *project, "ps"], check=False, env=env)
            run([*compose, *project, "logs", "--tail", "40"], check=False, env=env)
        if not args.keep:
            run([*compose, *project, "down", "-v", "--remove-orphans"], check=False, env=env)
        else:
            say(
                f"left running: {' '.join([*compose, *project])} down -v  to stop; profile "
                f"compose-test in {tmp / 'p.toml'}"
            )
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
