#!/usr/bin/env python3
"""Build the native stepping core (lockstep_core.c) with zig cc from the `ziglang` package.

    python services/wasm_pool/native/build.py [--force]

Output: services/wasm_pool/lockstep_wasm_pool/_lockstep_core.so plus a stamp file
(gitignored). Rebuilt when the C source, the build flags, the zig version or the wasmtime
version change. The library leaves the wasmtime symbols undefined: the loader
(lockstep_wasm_pool/_core.py) makes the libwasmtime that wasmtime-py already loaded
globally visible first, so both use the same copy. Exit status 0 on success or when
up to date, 1 when the build failed (the pool then falls back to the Python engine).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "lockstep_core.c"
PACKAGE = HERE.parent / "lockstep_wasm_pool"
OUTPUT = PACKAGE / "_lockstep_core.so"
STAMP = PACKAGE / "_lockstep_core.stamp"
FLAGS = [
    "-shared",
    "-fPIC",
    "-O2",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-fno-strict-aliasing",
    "-target",
    "x86_64-linux-gnu.2.28",
]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def stamp_text() -> str:
    """What the built library depends on (compared with the stamp file)."""
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join(FLAGS).encode())
    h.update(f"|zig {_version('ziglang')}|wasmtime {_version('wasmtime')}".encode())
    return h.hexdigest()


def up_to_date() -> bool:
    return OUTPUT.is_file() and STAMP.is_file() and STAMP.read_text() == stamp_text()


def build(force: bool = False) -> bool:
    """Build if needed; True when the library is there and current."""
    if not force and up_to_date():
        return True
    tmp = OUTPUT.with_suffix(".tmp.so")
    cmd = [sys.executable, "-m", "ziglang", "cc", *FLAGS, "-o", str(tmp), str(SOURCE)]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(
            f"native core build failed (the pool will use the Python engine):\n"
            f"{proc.stdout}{proc.stderr}",
            file=sys.stderr,
        )
        tmp.unlink(missing_ok=True)
        return False
    tmp.replace(OUTPUT)
    STAMP.write_text(stamp_text())
    return True


if __name__ == "__main__":
    sys.exit(0 if build(force="--force" in sys.argv[1:]) else 1)
