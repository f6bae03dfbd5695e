"""Building the examples from source with both toolchains, and build failures."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import wasmtime
from typer.testing import CliRunner

import lockstep.cli._agent  # noqa: F401 - registers `lockstep agent` on the root app
from lockstep.agents import (
    DEFAULT_VERSION,
    AbiCheckError,
    AgentBuildError,
    CompileError,
    ToolchainMissingError,
    build_agent,
    example_sources,
    examples_dir,
)
from lockstep.cli._app import app
from lockstep.modules import (
    VERDICT_UNSIGNED_DEV_MODE,
    Manifest,
    Policy,
    read_manifest,
    verify,
)
from lockstep.wasmbin import remove_custom_sections
from tests.sdk.conftest import Built

pytestmark = pytest.mark.integration

EXAMPLES = [
    "gossip.c",
    "market.c",
    "oracle.c",
    "pingpong.c",
    "pingpong.ts",
    "trader.c",
    "villager.c",
    "wealth.c",
    "wealth.ts",
    "wealth_heavy.c",
]

I32, I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
ABI_EXPORTS: dict[str, tuple[list[wasmtime.ValType], list[wasmtime.ValType]] | None] = {
    "memory": None,
    "agent_alloc": ([I32], [I32]),
    "agent_init": ([], [I32]),
    "agent_step": ([I32], [I32]),
    "agent_receive": ([I32], [I32]),
    "agent_receive_batch": ([I32], [I32]),
    "agent_shutdown": ([], [I32]),
}
ABI_IMPORTS = {
    "send": ([I32] * 4, [I32]),
    "log": ([I32] * 3, [I32]),
    "tick": ([], [I64]),
    "random": ([I32] * 2, [I32]),
    "infer": ([I32] * 4, [I64]),
}


def test_every_example_is_found() -> None:
    assert sorted(p.name for p in example_sources()) == EXAMPLES
    assert all(p.parent.parent == examples_dir() for p in example_sources())


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_exports_exactly_the_abi_and_imports_only_lockstep_v1(
    built: Built, name: str
) -> None:
    module = wasmtime.Module(wasmtime.Engine(), built.wasm(name))
    exports = {e.name: e.type for e in module.exports}
    assert sorted(exports) == sorted(ABI_EXPORTS)
    assert isinstance(exports["memory"], wasmtime.MemoryType)
    for export, sig in ABI_EXPORTS.items():
        if sig is not None:
            ty = exports[export]
            assert isinstance(ty, wasmtime.FuncType), export
            assert (list(ty.params), list(ty.results)) == sig, export
    for imp in module.imports:
        assert imp.module == "lockstep_v1", f"{imp.module}.{imp.name}"
        ty = imp.type
        assert isinstance(ty, wasmtime.FuncType)
        assert imp.name is not None
        assert (list(ty.params), list(ty.results)) == ABI_IMPORTS[imp.name], imp.name


@pytest.mark.parametrize("name", ["pingpong.c", "pingpong.ts"])
def test_debug_builds_conform_too(built: Built, name: str) -> None:
    module = wasmtime.Module(wasmtime.Engine(), built.wasm(name, optimize=False))
    assert sorted(e.name for e in module.exports) == sorted(ABI_EXPORTS)
    assert {i.module for i in module.imports} == {"lockstep_v1"}


@pytest.mark.parametrize("name", ["pingpong.c", "pingpong.ts"])
def test_builds_are_reproducible_from_any_directory(
    built: Built, name: str, tmp_path: Path
) -> None:
    # The module hash identifies a module in journals: it must not depend on where the
    # checkout lives or where the output goes.
    copy = tmp_path / "elsewhere" / name
    copy.parent.mkdir()
    shutil.copyfile(built.sources[name], copy)
    again = build_agent(copy, tmp_path / "out" / "x.wasm", name=built.path(name).stem)
    assert again.read_bytes() == built.wasm(name)


def test_default_output_is_next_to_the_source(tmp_path: Path, built: Built) -> None:
    src = tmp_path / "agent.c"
    shutil.copyfile(built.sources["pingpong.c"], src)
    assert build_agent(src, name="pingpong") == tmp_path / "agent.wasm"
    assert (tmp_path / "agent.wasm").read_bytes() == built.wasm("pingpong.c")
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


# --------------------------------------------------------------------------- manifest
CAPABILITIES = {
    "gossip.c": ("log", "random", "send", "tick"),
    "market.c": ("log", "send"),
    "oracle.c": ("infer:*", "log", "send"),
    "pingpong.c": ("log", "send"),
    "pingpong.ts": ("log", "send"),
    "trader.c": ("log", "random", "send"),
    "villager.c": ("infer:*", "log", "send"),
    "wealth.c": ("log", "random", "send"),
    "wealth.ts": ("log", "random", "send"),
    "wealth_heavy.c": ("log", "random", "send"),
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_carry_a_least_privilege_manifest_and_register_in_dev_mode(
    built: Built, name: str
) -> None:
    wasm = built.wasm(name)
    manifest = read_manifest(wasm)
    assert manifest is not None
    assert manifest.name == built.path(name).stem
    assert (manifest.version, manifest.abi_version) == (DEFAULT_VERSION, "1.0")
    assert manifest.capabilities == CAPABILITIES[name]
    # The orchestrator's registration check, with its default grants, in dev mode.
    policy = Policy(
        allowed_capabilities=frozenset({"send", "log", "random", "tick", "infer:*"}), dev_mode=True
    )
    verdict = verify(wasm, policy=policy)
    assert verdict.verdict == VERDICT_UNSIGNED_DEV_MODE
    assert verdict.manifest == manifest


def test_manifest_name_version_or_whole_manifest_can_be_given(built: Built, tmp_path: Path) -> None:
    src = built.sources["pingpong.c"]
    wasm = build_agent(src, tmp_path / "a.wasm", name="pp", version="2.0.1").read_bytes()
    got = read_manifest(wasm)
    assert got is not None and (got.name, got.version) == ("pp", "2.0.1")
    mine = Manifest(
        name="custom",
        version="9",
        capabilities=("log", "send", "tick"),
        limits={"memory_pages": 16},
    )
    wasm = build_agent(src, tmp_path / "b.wasm", manifest=mine).read_bytes()
    assert read_manifest(wasm) == mine
    # Only the manifest section differs.
    assert remove_custom_sections(wasm, "lockstep.manifest") == remove_custom_sections(
        built.wasm("pingpong.c"), "lockstep.manifest"
    )


def test_odd_file_names_are_made_valid_manifest_names(built: Built, tmp_path: Path) -> None:
    src = tmp_path / "my agent (v2).c"
    shutil.copyfile(built.sources["pingpong.c"], src)
    manifest = read_manifest(build_agent(src, tmp_path / "x.wasm").read_bytes())
    assert manifest is not None and manifest.name == "my_agent__v2_"


def test_bad_manifest_version_is_a_build_error(built: Built, tmp_path: Path) -> None:
    with pytest.raises(AgentBuildError, match="version 'not ok' must be"):
        build_agent(built.sources["pingpong.c"], tmp_path / "x.wasm", version="not ok")
    assert not (tmp_path / "x.wasm").exists()


# --------------------------------------------------------------------------- failures
def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


C_PRELUDE = """
#define LOCKSTEP_DEFAULT_ALLOC
#define LOCKSTEP_DEFAULT_INIT
#define LOCKSTEP_DEFAULT_RECEIVE
#define LOCKSTEP_DEFAULT_SHUTDOWN
#include "lockstep.h"
"""


def test_c_syntax_error_names_file_line_and_problem(tmp_path: Path) -> None:
    src = write(tmp_path, "bad.c", C_PRELUDE + "int32_t agent_step(int32_t p) { return 0 }\n")
    out = tmp_path / "bad.wasm"
    with pytest.raises(CompileError) as info:
        build_agent(src, out)
    msg = str(info.value)
    assert msg.startswith(f"{src.resolve()}: zig cc failed:")
    assert "bad.c:7:" in msg and "expected ';'" in msg
    assert info.value.output in msg
    assert not out.exists()


def test_c_libc_call_is_an_undefined_symbol(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "libc.c",
        C_PRELUDE + "void *malloc(unsigned long);\n"
        "int32_t agent_step(int32_t p) { return malloc(8) != 0; }\n",
    )
    with pytest.raises(CompileError, match="undefined symbol: malloc"):
        build_agent(src, tmp_path / "x.wasm")


def test_c_undeclared_function_is_an_error(tmp_path: Path) -> None:
    src = write(
        tmp_path, "undecl.c", C_PRELUDE + 'int32_t agent_step(int32_t p) { return printf("hi"); }\n'
    )
    with pytest.raises(CompileError, match="printf"):
        build_agent(src, tmp_path / "x.wasm")


def test_c_missing_step_fails_the_abi_check(tmp_path: Path) -> None:
    src = write(tmp_path, "nostep.c", C_PRELUDE)
    with pytest.raises(AbiCheckError) as info:
        build_agent(src, tmp_path / "x.wasm")
    assert info.value.problems == ["missing export agent_step"]
    assert "missing export agent_step" in str(info.value)
    assert not (tmp_path / "x.wasm").exists()


def test_c_missing_init_without_the_default_macro(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "noinit.c",
        '#define LOCKSTEP_DEFAULT_ALLOC\n#include "lockstep.h"\n'
        "int32_t agent_step(int32_t p) { return 0; }\n"
        "int32_t agent_receive(int32_t p) { return 0; }\n"
        "int32_t agent_shutdown(void) { return 0; }\n",
    )
    with pytest.raises(AbiCheckError, match="missing export agent_init"):
        build_agent(src, tmp_path / "x.wasm")


AS_AGENT = """
import { Context, OK, IDLE, receiveBatch } from "@lockstep/sdk";
export { agent_alloc } from "@lockstep/sdk";
export function agent_init(): i32 { return OK; }
export function agent_step(p: i32): i32 { const c = Context.read(p); return STEP; }
export function agent_receive(p: i32): i32 { return OK; }
export function agent_receive_batch(p: i32): i32 { return receiveBatch(p, agent_receive); }
export function agent_shutdown(): i32 { return OK; }
"""


def test_as_type_error_names_the_problem(tmp_path: Path) -> None:
    src = write(tmp_path, "typo.ts", AS_AGENT.replace("STEP", "IDLEE"))
    with pytest.raises(CompileError) as info:
        build_agent(src, tmp_path / "x.wasm")
    assert "asc failed" in str(info.value)
    assert "Cannot find name 'IDLEE'" in str(info.value)


def test_as_math_random_is_refused_with_a_hint(tmp_path: Path) -> None:
    src = write(tmp_path, "rnd.ts", AS_AGENT.replace("STEP", "Math.random() > 0.5 ? IDLE : OK"))
    with pytest.raises(AbiCheckError) as info:
        build_agent(src, tmp_path / "x.wasm")
    assert info.value.problems == [
        "import env.seed is not allowed (Math.random in "
        "AssemblyScript; use randomU64()/randomBelow())"
    ]


def test_as_abort_goes_to_the_sdk_not_to_an_env_import(tmp_path: Path) -> None:
    src = write(
        tmp_path,
        "abort.ts",
        AS_AGENT.replace("STEP", 'c.tick > 3 ? IDLE : (abort("too early"), OK)'),
    )
    module = wasmtime.Module(wasmtime.Engine(), build_agent(src, tmp_path / "x.wasm").read_bytes())
    assert {f"{i.module}.{i.name}" for i in module.imports} == {"lockstep_v1.log"}


@pytest.mark.parametrize("name", ["agent.rs", "agent", "agent.wasm"])
def test_unsupported_source_types(tmp_path: Path, name: str) -> None:
    src = write(tmp_path, name, "")
    with pytest.raises(AgentBuildError, match="unsupported source type"):
        build_agent(src)


def test_missing_source(tmp_path: Path) -> None:
    with pytest.raises(AgentBuildError, match="no such source file"):
        build_agent(tmp_path / "nothere.c")


def test_missing_node_is_a_toolchain_error(
    tmp_path: Path, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run in there
    with pytest.raises(ToolchainMissingError, match="node is not on PATH"):
        build_agent(built.sources["pingpong.ts"], tmp_path / "x.wasm")


def test_missing_sdk_is_a_toolchain_error(
    tmp_path: Path, built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKSTEP_SDK_DIR", str(tmp_path / "nosdk"))
    with pytest.raises(ToolchainMissingError, match=r"lockstep\.h is missing"):
        build_agent(built.sources["pingpong.c"], tmp_path / "x.wasm")
    with pytest.raises(ToolchainMissingError, match=r"SDK .* is missing"):
        build_agent(built.sources["pingpong.ts"], tmp_path / "y.wasm")


# --------------------------------------------------------------------------- CLI
def test_cli_build_prints_path_size_and_sha256(tmp_path: Path, built: Built) -> None:
    out = tmp_path / "pp.wasm"
    result = CliRunner().invoke(
        app, ["agent", "build", str(built.sources["pingpong.c"]), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert result.output.split() == [
        str(out),
        f"{len(data):,}",
        "bytes",
        f"sha256:{hashlib.sha256(data).hexdigest()}",
    ]


def test_cli_build_all_writes_every_example(tmp_path: Path, built: Built) -> None:
    result = CliRunner().invoke(app, ["agent", "build", "--all", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "gossip.wasm",
        "market.wasm",
        "oracle.wasm",
        "pingpong-as.wasm",
        "pingpong.wasm",
        "trader.wasm",
        "villager.wasm",
        "wealth-as.wasm",
        "wealth.wasm",
        "wealth_heavy.wasm",
    ]
    assert (tmp_path / "pingpong-as.wasm").read_bytes() == built.wasm("pingpong.ts")
    assert len(result.output.splitlines()) == len(names)


def test_cli_errors_exit_2_with_the_reason(tmp_path: Path) -> None:
    src = write(tmp_path, "nostep.c", C_PRELUDE)
    result = CliRunner().invoke(app, ["agent", "build", str(src)])
    assert result.exit_code == 2
    assert "missing export agent_step" in result.output
    result = CliRunner().invoke(app, ["agent", "build"])
    assert result.exit_code == 2 and "give either SRC or --all" in result.output


def test_cli_build_names_the_manifest(tmp_path: Path, built: Built) -> None:
    out = tmp_path / "pp.wasm"
    result = CliRunner().invoke(
        app,
        [
            "agent",
            "build",
            str(built.sources["pingpong.ts"]),
            "-o",
            str(out),
            "--name",
            "ping.as",
            "--version",
            "1.2.3",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out.read_bytes())
    assert manifest is not None and (manifest.name, manifest.version) == ("ping.as", "1.2.3")
    result = CliRunner().invoke(app, ["agent", "build", "--all", "--name", "x"])
    assert result.exit_code == 2 and "--name names one module" in result.output


def test_the_docs_examples_build(tmp_path: Path) -> None:
    # docs/sdk.md's C and AssemblyScript agents, exactly as printed there.
    text = (examples_dir().parents[1] / "docs" / "sdk.md").read_text()
    for lang, suffix in (("c", ".c"), ("ts", ".ts")):
        start = text.index(f"```{lang}\n") + len(lang) + 4
        src = write(tmp_path, f"doc{suffix}", text[start : text.index("```", start)])
        wasm = build_agent(src, tmp_path / f"doc{suffix}.wasm").read_bytes()
        module = wasmtime.Module(wasmtime.Engine(), wasm)
        assert sorted(e.name for e in module.exports) == sorted(ABI_EXPORTS), lang
