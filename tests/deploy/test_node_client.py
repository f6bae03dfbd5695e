"""The Node.js client example in docs/clients.md, run as written against a real
orchestrator (over a real pool process). @grpc/grpc-js and @grpc/proto-loader come from
npm into a cache directory (LOCKSTEP_NODE_CACHE, default ~/.cache/lockstep/node-client);
the test skips, saying why, without node or when npm cannot install them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep.auth import Role, TokenStore
from lockstep_orchestrator import OrchestratorConfig, create_server
from tests.conftest import start_service

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("@grpc/grpc-js@1", "@grpc/proto-loader@0.7")


def example() -> str:
    text = (ROOT / "docs" / "clients.md").read_text()
    match = re.search(r"<!-- node-client-example -->\n```js\n(.*?)```", text, re.S)
    assert match, "docs/clients.md has no marked Node.js example"
    return match.group(1)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node / npm not installed")
    cache = Path(
        os.environ.get("LOCKSTEP_NODE_CACHE") or Path.home() / ".cache" / "lockstep" / "node-client"
    )
    modules = cache / "node_modules"
    if not all((modules / p.rsplit("@", 1)[0] / "package.json").is_file() for p in PACKAGES):
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--no-save",
                    "--prefix",
                    str(cache),
                    *PACKAGES,
                ],
                capture_output=True,
                text=True,
                timeout=240,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm install timed out (registry unreachable?)")
        if done.returncode != 0:
            pytest.skip(
                f"npm could not install {' '.join(PACKAGES)}: "
                f"{done.stderr.strip().splitlines()[-1:]}"
            )
    return modules


@pytest.fixture
def orchestrator(auth: tuple[Path, TokenStore]) -> Iterator[str]:
    pool = start_service("lockstep_wasm_pool", auth[0])
    try:
        bound = create_server(
            "127.0.0.1:0", auth=auth[1], config=OrchestratorConfig(pools=(pool.address,))
        )
        try:
            yield bound.address
        finally:
            bound.stop(0)
    finally:
        pool.stop()


def test_the_documented_node_client_works(
    node_modules: Path, orchestrator: str, auth: tuple[Path, TokenStore], tmp_path: Path
) -> None:
    script = tmp_path / "client.js"
    script.write_text(example())
    env = {
        **os.environ,
        "NODE_PATH": str(node_modules),
        "LOCKSTEP_ADDRESS": orchestrator,
        "LOCKSTEP_TOKEN": auth[1].token(Role.VIEWER),
        "LOCKSTEP_PROTO_DIR": str(ROOT / "proto"),
    }
    for name in ("LOCKSTEP_TLS_CA", "LOCKSTEP_TLS_CERT", "LOCKSTEP_TLS_KEY"):
        env.pop(name, None)
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply == {
        "tick": "0",
        "run_id": reply["run_id"],
        "modules": 0,
        "without_token": "UNAUTHENTICATED",
    }
