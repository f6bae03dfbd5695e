"""The import graph, checked on the source: the foundation (lockstep's shared modules and
generated stubs) imports neither the tools (CLI, supervisor, runner, scenarios, the Python
API) nor any service; the tools reach services only through their public packages and
entry points, never their private modules; no installed package edits sys.path."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
TOOLS = (
    "lockstep.cli",
    "lockstep.supervisor",
    "lockstep.runner",
    "lockstep.api",
    "lockstep.scenario",
    "lockstep.spawn",
)
SERVICES = (
    "lockstep_orchestrator",
    "lockstep_wasm_pool",
    "lockstep_inference",
    "lockstep_telemetry",
    "lockstep_dashboard",
)
# The root package re-exports the Python API (`import lockstep; lockstep.Deployment`):
# the one sanctioned arrow from the package root to a tool.
FACADE = {("lockstep", "lockstep.api")}


def package_files() -> Iterator[tuple[str, Path]]:
    roots = [ROOT / "src"] + [p.parent for p in (ROOT / "services").glob("*/pyproject.toml")]
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(root)
            if rel.parts[0] in ("tests", "build", "native") or "_pb2" in path.name:
                continue
            parts = list(rel.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


MODULES = list(package_files())


def test_the_scan_sees_every_layer() -> None:
    names = {m for m, _ in MODULES}
    assert {
        "lockstep.abi",
        "lockstep.cli._run",
        "lockstep_orchestrator._kernel",
        "lockstep_dashboard._app",
    } <= names


def test_the_foundation_imports_no_tool_and_no_service() -> None:
    bad = [
        f"{m} -> {i}"
        for m, path in MODULES
        if m.startswith("lockstep") and not under(m, TOOLS) and not under(m, SERVICES)
        for i in imports(path)
        if (under(i, TOOLS) or under(i, SERVICES)) and (m, i) not in FACADE
    ]
    assert bad == []


def test_tools_use_only_public_service_modules() -> None:
    bad = [
        f"{m} -> {i}"
        for m, path in MODULES
        if under(m, TOOLS)
        for i in imports(path)
        if under(i, SERVICES)
        and any(part.startswith("_") and part != "__main__" for part in i.split(".")[1:])
    ]
    assert bad == []


def test_no_installed_package_edits_sys_path() -> None:
    bad = []
    for m, path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "path"
                and isinstance(node.value, ast.Name)
                and node.value.id == "sys"
            ):
                bad.append(f"{m}:{node.lineno}")
    assert bad == []


def test_generated_stubs_live_only_in_their_namespace() -> None:
    """Generated code is `lockstep.pb.*` and nothing else: no stub elsewhere, and the stubs
    import only protobuf, grpc and each other."""
    src = ROOT / "src"
    stubs = sorted(src.rglob("*_pb2*.py"))
    assert stubs, "no generated stubs found"
    assert [
        str(p.relative_to(src)) for p in stubs if "pb" not in p.relative_to(src).parts[1:2]
    ] == []
    bad = [
        f"{p.name} -> {i}"
        for p in stubs
        for i in imports(p)
        if i.startswith("lockstep") and not under(i, ("lockstep.pb",))
    ]
    assert bad == []
