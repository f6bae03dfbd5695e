"""TLS across "hosts": each pool in a network namespace of its own, made by this test.

Namespace `hub` holds the orchestrator and the client; `poolN` one pool each, joined to the
hub by a veth pair with private addresses that exist only inside these namespaces (no
address is added to this machine's own namespace and no traffic leaves it). Everything
speaks mTLS with certificates from `lockstep certs`. A pingpong run across the hosts gives
the recorded digest chain (tests/golden/chains.json, the same as a local run); plaintext, a
certificate from another CA and no client certificate are refused. Skips, saying why, where
namespaces cannot be made (not root, no `ip`, no CAP_NET_ADMIN)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lockstep.auth import Role, write_token_file
from lockstep.supervisor._supervisor import make_signing_key
from lockstep.tls import issue, make_ca

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
LOCKSTEP = str(Path(PY).parent / "lockstep")
CHAINS = json.loads((ROOT / "tests" / "golden" / "chains.json").read_text())
POOLS = 2


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    if os.geteuid() != 0:
        return "making network namespaces needs root (CAP_NET_ADMIN)"
    probe = f"lsprobe{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Net:
    hub: str
    pools: list[str]
    pool_ips: list[str]

    def exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    hub = f"ls{tag}hub"
    pools = [f"ls{tag}p{i}" for i in range(POOLS)]
    made: list[str] = []
    try:
        for ns in (hub, *pools):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        ips = []
        for i, ns in enumerate(pools):
            # veth pair created inside the hub namespace, one end moved to the pool's.
            a, b = f"h{i}{tag}", f"p{i}{tag}"
            _ip("-n", hub, "link", "add", a, "type", "veth", "peer", "name", b)
            _ip("-n", hub, "link", "set", b, "netns", ns)
            _ip("-n", hub, "addr", "add", f"10.213.{i}.1/24", "dev", a)
            _ip("-n", ns, "addr", "add", f"10.213.{i}.2/24", "dev", b)
            _ip("-n", hub, "link", "set", a, "up")
            _ip("-n", ns, "link", "set", b, "up")
            ips.append(f"10.213.{i}.2")
        yield Net(hub, pools, ips)
    finally:
        for ns in made:
            _ip("netns", "del", ns, check=False)


@dataclass
class Material:
    dir: Path
    tokens: Path
    state: Path

    def tls_env(self, name: str, ca: str = "ca") -> dict[str, str]:
        base = self.dir / ca
        return {
            "LOCKSTEP_TLS_CERT": str(base / f"{name}.crt"),
            "LOCKSTEP_TLS_KEY": str(base / f"{name}.key"),
            "LOCKSTEP_TLS_CA": str(self.dir / "ca" / "ca.crt"),
        }


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory, net: Net) -> Material:
    root = tmp_path_factory.mktemp("tls")
    make_ca(root / "ca")
    for name in ("orchestrator", "client"):
        issue(root / "ca", root / "ca", name)
    for i, ip in enumerate(net.pool_ips):
        issue(root / "ca", root / "ca", f"pool-{i}", [ip])
    make_ca(root / "other", common_name="someone else's CA")
    issue(root / "other", root / "other", "client")
    state = root / "state"
    make_signing_key(state / "keys")
    write_token_file(root / "tokens.json")
    return Material(root, root / "tokens.json", state)


def _start(cmd: list[str], env: dict[str, str], ready: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [*cmd, "--ready-file", str(ready)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        )


def _await_ready(proc: subprocess.Popen[bytes], ready: Path, log: Path) -> str:
    # The ready file appears once the server is bound and serving; block on the process
    # with a short wait instead of polling sleeps.
    for _ in range(600):
        if ready.exists():
            return str(json.loads(ready.read_text())["address"])
        try:
            proc.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        break
    raise AssertionError(f"{log.stem} did not start: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def cluster(
    net: Net, material: Material, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("cluster")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pools = []
        for i, (ns, ip) in enumerate(zip(net.pools, net.pool_ips, strict=True)):
            ready, log = work / f"pool-{i}.ready", work / f"pool-{i}.log"
            proc = _start(
                [
                    *net.exec(ns),
                    PY,
                    "-m",
                    "lockstep_wasm_pool",
                    "--address",
                    f"{ip}:0",
                    "--auth-file",
                    str(material.tokens),
                ],
                {**material.tls_env(f"pool-{i}"), "LOCKSTEP_TLS_REQUIRED": "1"},
                ready,
                log,
            )
            procs.append(proc)
            pools.append((proc, ready, log))
        addresses = [_await_ready(*p) for p in pools]
        ready, log = work / "orchestrator.ready", work / "orchestrator.log"
        orch = _start(
            [
                *net.exec(net.hub),
                PY,
                "-m",
                "lockstep_orchestrator",
                "--address",
                "127.0.0.1:0",
                "--auth-file",
                str(material.tokens),
                "--pools",
                ",".join(addresses),
                "--trusted-keys",
                str(material.state / "keys" / "trusted"),
                "--data-dir",
                str(work / "orchestrator"),
            ],
            material.tls_env("orchestrator"),
            ready,
            log,
        )
        procs.append(orch)
        yield {
            "orchestrator": _await_ready(orch, ready, log),
            **{f"pool-{i}": a for i, a in enumerate(addresses)},
        }
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


PROBE = """
import json, sys
import grpc
from lockstep.dial import health_status
from lockstep.tls import TLSConfig
address, mode, ca, cert, key = sys.argv[1:6]
if mode == "plaintext":
    channel = grpc.insecure_channel(address)
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    try:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        print("SERVING")
    except grpc.RpcError as exc:
        print("REFUSED", exc.code().name)
else:
    tls = TLSConfig(ca=ca, cert=cert or None, key=key or None)
    print(health_status(address, timeout=5, tls=tls))
"""


def _probe(
    net: Net, address: str, mode: str, ca: Path, cert: Path | None = None, key: Path | None = None
) -> str:
    out = subprocess.run(
        [
            *net.exec(net.hub),
            PY,
            "-c",
            PROBE,
            address,
            mode,
            str(ca),
            str(cert or ""),
            str(key or ""),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_a_run_across_hosts_over_mtls_gives_the_local_digests(
    net: Net, material: Material, cluster: dict[str, str]
) -> None:
    token = json.loads(material.tokens.read_text())[Role.ADMIN.value]
    out = subprocess.run(
        [
            *net.exec(net.hub),
            LOCKSTEP,
            "run",
            str(ROOT / "examples/scenarios/pingpong.toml"),
            "--json",
            "--state-dir",
            str(material.state),
            "--address",
            cluster["orchestrator"],
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **material.tls_env("client")},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["digests"] == CHAINS["pingpong"]["digests"]
    assert summary["agents_by_state"]


def test_plaintext_and_foreign_certificates_are_refused(
    net: Net, material: Material, cluster: dict[str, str]
) -> None:
    ca = material.dir / "ca" / "ca.crt"
    good = material.dir / "ca"
    other = material.dir / "other"
    for name in ("pool-0", "pool-1", "orchestrator"):
        address = cluster[name]
        assert (
            _probe(net, address, "tls", ca, good / "client.crt", good / "client.key") == "SERVING"
        )
        assert _probe(net, address, "plaintext", ca).startswith("REFUSED"), name
        # A client certificate from another CA, and none at all: the handshake fails.
        assert (
            _probe(net, address, "tls", ca, other / "client.crt", other / "client.key")
            == "UNREACHABLE"
        ), name
        assert _probe(net, address, "tls", ca) == "UNREACHABLE", name
        # A client that trusts another CA does not accept the server either.
        assert (
            _probe(net, address, "tls", other / "ca.crt", good / "client.crt", good / "client.key")
            == "UNREACHABLE"
        ), name


def test_pools_are_not_reachable_from_this_namespace(cluster: dict[str, str]) -> None:
    # The private addresses live only inside the test's namespaces.
    routes = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True).stdout
    for i in range(POOLS):
        assert cluster[f"pool-{i}"].split(":")[0] not in routes
