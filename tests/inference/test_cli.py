"""`lockstep models ...` against an in-process server."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import lockstep.cli._models  # noqa: F401 - registers `models` on the app
from lockstep.auth import Role
from lockstep.cli._app import app
from tests.inference.conftest import Server, needs_llm, needs_real_models

pytestmark = pytest.mark.e2e


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def opts(server: Server, role: Role) -> list[str]:
    return ["--address", server.address, "--token", server.store.token(role)]


def test_list_load_generate_unload(server: Server) -> None:
    code, out = run("models", "load", "tiny_lm", *opts(server, Role.ADMIN))
    assert code == 0 and "loaded tiny_lm sha256:" in out
    code, out = run("models", "list", *opts(server, Role.VIEWER))
    assert code == 0 and "tiny_lm" in out and "corrupt" in out
    code, out = run(
        "models",
        "generate",
        "tiny_lm",
        "ab",
        "--seed",
        "3",
        "--max-tokens",
        "5",
        *opts(server, Role.OPERATOR),
    )
    assert code == 0 and out.startswith("ab")
    code2, out2 = run(
        "models",
        "generate",
        "tiny_lm",
        "ab",
        "--seed",
        "3",
        "--max-tokens",
        "5",
        "--stream",
        *opts(server, Role.OPERATOR),
    )
    assert code2 == 0 and out2.splitlines()[0] == out.splitlines()[0][2:]
    code, out = run("models", "generate", "tiny_lm", "zz", *opts(server, Role.OPERATOR))
    assert code == 2 and "INVALID_ARGUMENT" in out
    code, out = run("models", "unload", "tiny_lm", *opts(server, Role.OPERATOR))
    assert code == 2 and "PERMISSION_DENIED" in out
    code, out = run("models", "unload", "tiny_lm", *opts(server, Role.ADMIN))
    assert code == 0 and "unloaded" in out


@needs_real_models
def test_prepare(tmp_path: Path) -> None:
    code, out = run("models", "prepare", "--repository", str(tmp_path), "--model", "charlm")
    assert code == 0, out
    assert (tmp_path / "charlm" / "model.onnx").is_file()
    assert not (tmp_path / "minilm").exists()


@needs_llm
def test_generate_smollm2(server: Server) -> None:
    code, out = run(
        "models",
        "generate",
        "smollm2",
        "What is the capital of France?",
        "--seed",
        "1",
        "--max-tokens",
        "12",
        "--temperature",
        "0",
        *opts(server, Role.OPERATOR),
    )
    assert code == 0, out
    assert out.splitlines()[0] == "The capital of France is Paris."
