"""`lockstep module ...` through typer's CliRunner, plus one real subprocess."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import lockstep.cli._module  # noqa: F401 - registers `module` on the root app
from lockstep.cli import _app
from lockstep.cli._app import app
from lockstep.modules import (
    Policy,
    TrustedKeys,
    load_public_key,
    module_hash,
    read_manifest,
    read_signature,
    verify,
)

pytestmark = pytest.mark.e2e

runner = CliRunner()


def run(*args: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["module", *map(str, args)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Isolate the defaults (state dir, trusted keys) from the user's home."""
    return {"LOCKSTEP_HOME": str(tmp_path / "home"), "LOCKSTEP_TRUSTED_KEYS": ""}


@pytest.fixture
def keys(tmp_path: Path, env: dict[str, str]) -> tuple[str, Path, Path]:
    """(key id, private key path, trusted dir) made by `module keygen --trust`."""
    trusted = tmp_path / "trusted"
    code, out, err = run("keygen", tmp_path / "keys", "--trust", "--trusted-keys", trusted, env=env)
    assert code == 0, err
    kid = out.split()[2]
    assert (trusted / f"{kid}.pub").exists()
    return kid, tmp_path / "keys" / f"{kid}.key", trusted


@pytest.fixture
def wasm_file(tmp_path: Path, make_agent: Callable[..., bytes]) -> Path:
    path = tmp_path / "agent.wasm"
    path.write_bytes(make_agent("send", "log", "tick"))
    return path


def sign_args(wasm: Path, key: Path) -> list[str | Path]:
    return [
        "sign",
        wasm,
        "--key",
        key,
        "--name",
        "greeter",
        "--version",
        "1.0.0",
        "-c",
        "send",
        "-c",
        "log",
        "-c",
        "tick",
        "-l",
        "fuel_per_tick=5000",
    ]


def test_keygen_sign_verify_inspect(
    keys: tuple[str, Path, Path], wasm_file: Path, env: dict[str, str]
) -> None:
    kid, key, trusted = keys
    code, out, err = run(*sign_args(wasm_file, key), env=env)
    assert code == 0, err
    signed = wasm_file.read_bytes()
    assert out.startswith(f"signed greeter@1.0.0 {module_hash(signed)} key {kid}")
    assert verify(signed, TrustedKeys.of(load_public_key(trusted / f"{kid}.pub")))

    code, out, err = run("verify", wasm_file, "--trusted-keys", trusted, env=env)
    assert code == 0, err
    assert out.strip() == f"verified greeter@1.0.0 {module_hash(signed)} signer {kid}"

    code, out, _ = run("verify", wasm_file, "--trusted-keys", trusted, "--json", env=env)
    verdict = json.loads(out)
    assert verdict["ok"] is True and verdict["verdict"] == "verified"
    assert verdict["manifest"]["limits"] == {"fuel_per_tick": 5000}
    assert verdict["signer"] == kid

    code, out, _ = run("inspect", wasm_file, "--json", "--trusted-keys", trusted, env=env)
    assert code == 0
    report = json.loads(out)
    assert report["module_hash"] == module_hash(signed)
    assert report["manifest"]["name"] == "greeter"
    assert report["signature"] == {"key_id": kid, "status": "valid, key trusted"}
    assert [(i["module"], i["name"], i["abi"]) for i in report["imports"]] == [
        ("lockstep_v1", n, True) for n in ("send", "log", "tick")
    ]
    step = next(e for e in report["exports"] if e["name"] == "agent_step")
    assert step == {"name": "agent_step", "kind": "func", "index": 5, "type": "(i32) -> (i32)"}
    assert report["custom_sections"] == ["lockstep.manifest", "lockstep.signature"]

    code, out, _ = run("inspect", wasm_file, env=env)
    assert code == 0
    for word in ("greeter", "1.0.0", "lockstep_v1", "agent_step", kid, "not checked"):
        assert word in out


def test_re_signing_is_stable_and_keeps_the_manifest(
    keys: tuple[str, Path, Path], wasm_file: Path, env: dict[str, str], tmp_path: Path
) -> None:
    _, key, _ = keys
    wasm_file.chmod(0o640)
    assert run(*sign_args(wasm_file, key), env=env)[0] == 0
    if sys.platform != "win32":
        assert stat.S_IMODE(wasm_file.stat().st_mode) == 0o640  # mode kept on rewrite
    first = wasm_file.read_bytes()
    out2 = tmp_path / "again.wasm"
    code, _, err = run("sign", wasm_file, "--key", key, "-o", out2, env=env)
    assert code == 0, err
    assert out2.read_bytes() == first  # same key, same manifest: same bytes
    # bump only the version: everything else is kept from the embedded manifest
    assert run("sign", wasm_file, "--key", key, "--version", "1.0.1", env=env)[0] == 0
    manifest = read_manifest(wasm_file.read_bytes())
    assert manifest is not None
    assert (manifest.name, manifest.version, manifest.capabilities) == (
        "greeter",
        "1.0.1",
        ("log", "send", "tick"),
    )
    assert dict(manifest.limits) == {"fuel_per_tick": 5000}


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_sign_from_manifest_file(
    keys: tuple[str, Path, Path],
    wasm_file: Path,
    env: dict[str, str],
    tmp_path: Path,
    suffix: str,
) -> None:
    _, key, trusted = keys
    path = tmp_path / f"manifest{suffix}"
    if suffix == ".toml":
        path.write_text(
            'name = "filed"\nversion = "2.0.0"\nabi_version = "1.0"\n'
            'capabilities = ["send", "log", "tick"]\n[limits]\nmemory_pages = 8\n'
        )
    else:
        path.write_text(
            json.dumps(
                {
                    "name": "filed",
                    "version": "2.0.0",
                    "capabilities": ["send", "log", "tick"],
                    "limits": {"memory_pages": 8},
                }
            )
        )
    # options win over the file
    code, _, err = run("sign", wasm_file, "--key", key, "-m", path, "--version", "2.0.1", env=env)
    assert code == 0, err
    code, out, _ = run("verify", wasm_file, "--trusted-keys", trusted, "--json", env=env)
    manifest = json.loads(out)["manifest"]
    assert (manifest["name"], manifest["version"], manifest["limits"]) == (
        "filed",
        "2.0.1",
        {"memory_pages": 8},
    )


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_verify_refusals_exit_1_with_one_line(
    keys: tuple[str, Path, Path], wasm_file: Path, env: dict[str, str], tmp_path: Path
) -> None:
    _, key, trusted = keys
    assert run(*sign_args(wasm_file, key), env=env)[0] == 0
    signed = wasm_file.read_bytes()

    tampered = tmp_path / "tampered.wasm"
    data = bytearray(signed)
    data[len(data) // 3] ^= 0x01
    tampered.write_bytes(bytes(data))
    code, _, err = run("verify", tampered, "--trusted-keys", trusted, env=env)
    assert code == 1
    assert one_line_error(err).startswith("error: refused: modified bytes")

    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("verify", wasm_file, "--trusted-keys", empty, env=env)
    assert code == 1 and "untrusted key" in one_line_error(err)

    code, out, _ = run("verify", wasm_file, "--trusted-keys", empty, "--json", env=env)
    assert code == 1
    assert json.loads(out)["error"] == "UntrustedKeyError"

    code, _, err = run("verify", wasm_file, "--trusted-keys", trusted, "--allow", "send", env=env)
    assert code == 1 and "capability 'log' is not granted" in one_line_error(err)

    code, _, err = run(
        "verify", wasm_file, "--trusted-keys", trusted, "--max-limit", "fuel_per_tick=100", env=env
    )
    assert code == 1 and "limit fuel_per_tick = 5000 is above" in one_line_error(err)

    code, _, err = run("verify", wasm_file, "--trusted-keys", trusted, "--max-size", "50", env=env)
    assert code == 1 and "above the policy's maximum 50" in one_line_error(err)

    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"\x00asm\x01\x00\x00\x00\x01\xff")
    code, _, err = run("verify", garbage, "--trusted-keys", trusted, env=env)
    assert code == 1 and "malformed wasm module" in one_line_error(err)
    code, _, err = run("inspect", garbage, env=env)
    assert code == 1 and "malformed wasm module" in one_line_error(err)


def test_dev_mode_and_unsigned(wasm_file: Path, env: dict[str, str], tmp_path: Path) -> None:
    code, out, err = run(
        "manifest", wasm_file, "--name", "dev", "--version", "0.1", "--auto-capabilities", env=env
    )
    assert code == 0, err
    assert read_signature(wasm_file.read_bytes()) is None
    trusted = tmp_path / "t"
    trusted.mkdir()
    code, _, err = run("verify", wasm_file, "--trusted-keys", trusted, env=env)
    assert code == 1 and "unsigned module" in one_line_error(err)
    code, out, err = run("verify", wasm_file, "--trusted-keys", trusted, "--dev-mode", env=env)
    assert code == 0
    assert out.startswith("unsigned-dev-mode dev@0.1 sha256:")
    assert "WARNING: DEV MODE" in err
    code, out, _ = run("inspect", wasm_file, env=env)
    assert "unsigned" in out


def test_capability_checks_at_sign_time(
    keys: tuple[str, Path, Path],
    tmp_path: Path,
    env: dict[str, str],
    make_agent: Callable[..., bytes],
) -> None:
    _, key, trusted = keys
    path = tmp_path / "inf.wasm"
    path.write_bytes(make_agent("send", "infer"))
    before = path.read_bytes()
    code, _, err = run(
        "sign", path, "--key", key, "--name", "i", "--version", "1", "-c", "send", env=env
    )
    assert code == 1 and "lockstep_v1.infer is not covered" in one_line_error(err)
    assert path.read_bytes() == before  # nothing written on failure
    code, _, err = run(
        "sign", path, "--key", key, "--name", "i", "--version", "1", "--auto-capabilities", env=env
    )
    assert code == 1 and "infer:<model>" in err
    code, _, err = run(
        "sign",
        path,
        "--key",
        key,
        "--name",
        "i",
        "--version",
        "1",
        "--auto-capabilities",
        "-c",
        "infer:gpt2",
        env=env,
    )
    assert code == 0, err
    manifest = read_manifest(path.read_bytes())
    assert manifest is not None and manifest.capabilities == ("infer:gpt2", "send")
    code, _, err = run("verify", path, "--trusted-keys", trusted, env=env)
    assert code == 1 and "'infer:gpt2' is not granted" in err
    code, out, _ = run(
        "verify", path, "--trusted-keys", trusted, "--allow", "send", "--allow", "infer:*", env=env
    )
    assert code == 0 and out.startswith("verified")
    wasi = '(import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))'
    path.write_bytes(make_agent("send", wasi))
    code, _, err = run(
        "sign", path, "--key", key, "--name", "w", "--version", "1", "-c", "send", env=env
    )
    assert code == 1 and "wasi_snapshot_preview1.random_get" in err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["sign", "{wasm}", "--key", "{tmp}/nokey.key", "--name", "a", "--version", "1"],
            "cannot read private key",
        ),
        (
            ["sign", "{tmp}/absent.wasm", "--key", "{key}", "--name", "a", "--version", "1"],
            "cannot read module",
        ),
        (["sign", "{wasm}", "--key", "{key}", "--name", "a"], "the manifest needs a version"),
        (
            ["sign", "{wasm}", "--key", "{key}", "--name", "a", "--version", "1", "-l", "x"],
            "bad --limit 'x'",
        ),
        (
            ["sign", "{wasm}", "--key", "{key}", "-m", "{tmp}/absent.toml"],
            "cannot read manifest file",
        ),
        (["verify", "{wasm}", "--trusted-keys", "{tmp}/absent"], "does not exist"),
        (
            ["verify", "{wasm}", "--trusted-keys", "{trusted}", "--allow", "net"],
            "unknown capability 'net'",
        ),
        (["inspect", "{tmp}/absent.wasm"], "cannot read module"),
    ],
)
def test_usage_errors_exit_2(
    keys: tuple[str, Path, Path],
    wasm_file: Path,
    env: dict[str, str],
    tmp_path: Path,
    args: list[str],
    words: str,
) -> None:
    _, key, trusted = keys
    filled = [a.format(wasm=wasm_file, tmp=tmp_path, key=key, trusted=trusted) for a in args]
    code, _, err = run(*filled, env=env)
    assert code == 2
    assert words in one_line_error(err)


def test_bad_manifest_file_and_bad_field(
    keys: tuple[str, Path, Path], wasm_file: Path, env: dict[str, str], tmp_path: Path
) -> None:
    _, key, _ = keys
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    code, _, err = run("sign", wasm_file, "--key", key, "-m", bad, env=env)
    assert code == 2 and "not valid JSON/TOML" in one_line_error(err)
    code, _, err = run(
        "sign", wasm_file, "--key", key, "--name", "bad name", "--version", "1", env=env
    )
    assert code == 1 and "name 'bad name'" in one_line_error(err)


def test_default_directories(wasm_file: Path, env: dict[str, str], tmp_path: Path) -> None:
    home = Path(env["LOCKSTEP_HOME"])
    code, out, err = run("keygen", "--trust", env=env)
    assert code == 0, err
    kid = out.split()[2]
    assert (home / "keys" / "signing" / f"{kid}.key").exists()
    assert (home / "keys" / "trusted" / f"{kid}.pub").exists()
    key = home / "keys" / "signing" / f"{kid}.key"
    assert (
        run(
            "sign",
            wasm_file,
            "--key",
            key,
            "--name",
            "d",
            "--version",
            "1",
            "--auto-capabilities",
            env=env,
        )[0]
        == 0
    )
    code, out, _ = run("verify", wasm_file, env=env)  # <state dir>/keys/trusted
    assert code == 0 and out.startswith("verified d@1")
    other = tmp_path / "other-trust"
    other.mkdir()
    code, _, err = run("verify", wasm_file, env={**env, "LOCKSTEP_TRUSTED_KEYS": str(other)})
    assert code == 1 and "untrusted key" in err
    assert verify(wasm_file.read_bytes(), policy=Policy(trusted_keys_dir=home / "keys" / "trusted"))


def test_verify_in_a_real_process(
    keys: tuple[str, Path, Path], wasm_file: Path, env: dict[str, str]
) -> None:
    _, key, trusted = keys
    assert run(*sign_args(wasm_file, key), env=env)[0] == 0
    data = bytearray(wasm_file.read_bytes())
    data[-1] ^= 0xFF  # inside the signature bytes
    wasm_file.write_bytes(bytes(data))
    # The real entry point once `_module` is wired into it; until then import it here.
    if "_module" in _app._COMMAND_MODULES:
        command = [sys.executable, "-m", "lockstep.cli"]
    else:
        launcher = "import lockstep.cli._module; from lockstep.cli._app import app; app()"
        command = [sys.executable, "-c", launcher]
    proc = subprocess.run(
        [
            *command,
            "module",
            "verify",
            str(wasm_file),
            "--trusted-keys",
            str(trusted),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"error: refused: bad signature: Ed25519 signature does not verify with key {keys[0]}"
    ]
