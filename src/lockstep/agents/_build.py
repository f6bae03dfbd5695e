"""Build agent sources (.c with zig cc, .ts with AssemblyScript's asc) into ABI v1 modules.

Both toolchains are pinned (ziglang in the root pyproject's dev extra, assemblyscript in
sdk/assemblyscript/package-lock.json) and run with flags that make the output depend
only on the source: no debug info (it would embed absolute paths), no build id. So the
same source builds to the same bytes, hence the same module hash, on any checkout.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from lockstep import abi
from lockstep.agents._abi import abi_problems
from lockstep.agents._errors import (
    AbiCheckError,
    AgentBuildError,
    CompileError,
    ToolchainMissingError,
)
from lockstep.checkout import require_checkout
from lockstep.errors import ModuleError
from lockstep.modules import Manifest, embed_manifest

__all__ = [
    "C_STACK_SIZE",
    "DEFAULT_VERSION",
    "SOURCE_SUFFIXES",
    "build_agent",
    "c_command",
    "default_manifest",
    "example_output_name",
    "example_sources",
    "examples_dir",
    "sdk_dir",
]

#: Source suffixes build_agent understands.
SOURCE_SUFFIXES = (".c", ".ts")

#: Shadow stack of C agents. Small on purpose: the stack is part of linear memory and so
#: of every snapshot; zig's default of 1 MiB would make each agent 17 pages at least.
C_STACK_SIZE = 64 * 1024

#: Manifest version of a build that names none.
DEFAULT_VERSION = "0.1.0"

#: Longest a single compiler run may take.
_TIMEOUT_S = 300.0


def sdk_dir() -> Path:
    """The SDK directory (holding c/lockstep.h and assemblyscript/).

    $LOCKSTEP_SDK_DIR if set, else ``sdk/`` of the source checkout (lockstep.checkout).
    """
    env = os.environ.get("LOCKSTEP_SDK_DIR")
    return Path(env) if env else require_checkout("sdk")


def examples_dir() -> Path:
    """``examples/agents/`` of the source checkout (lockstep.checkout)."""
    return require_checkout("examples/agents")


def example_sources() -> list[Path]:
    """Every example agent source (``examples/agents/*/*.c|*.ts``), sorted by path.

    Files starting with ``_`` are shared code included by other sources, not agents.
    """
    root = examples_dir()
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.glob("*/*")
        if p.suffix in SOURCE_SUFFIXES and p.is_file() and not p.name.startswith("_")
    )


def example_output_name(source: Path) -> str:
    """File name of an example's module: ``pingpong.wasm`` (C), ``pingpong-as.wasm`` (TS)."""
    return f"{source.stem}-as.wasm" if source.suffix == ".ts" else f"{source.stem}.wasm"


def _run(cmd: list[str], cwd: Path | None, source: Path, tool: str) -> None:
    try:
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolchainMissingError(f"{tool}: cannot run {cmd[0]}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise CompileError(source, tool, f"timed out after {_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        output = "\n".join(s for s in (proc.stderr.strip(), proc.stdout.strip()) if s)
        raise CompileError(source, tool, output or f"exit status {proc.returncode}")


# ------------------------------------------------------------------------------ C
def c_command(source: Path, output: Path, *, optimize: bool = True) -> list[str]:
    """The zig cc command line that builds a C agent (useful to reproduce by hand)."""
    return [
        sys.executable,
        "-m",
        "ziglang",
        "cc",
        "--target=wasm32-freestanding",
        "-O2" if optimize else "-O0",
        "-g0",  # no DWARF: it would embed absolute paths and change the module hash
        # zig cc turns on UBSan in unoptimised builds; its handlers live in a runtime
        # that agents lack, so make undefined behaviour trap (an agent fault) instead.
        *(() if optimize else ("-fsanitize-trap=undefined",)),
        "-nostdlib",
        "-ffreestanding",
        "-Wl,--no-entry",
        f"-Wl,-z,stack-size={C_STACK_SIZE}",
        "-I",
        str(sdk_dir() / "c"),
        "-o",
        str(output),
        str(source),
    ]


def _build_c(source: Path, output: Path, optimize: bool) -> None:
    if importlib.util.find_spec("ziglang") is None:
        raise ToolchainMissingError(
            "C agents are built with zig from the PyPI package ziglang, which is not "
            "installed: pip install ziglang==0.17.1 (or pip install -e '.[dev]')"
        )
    header = sdk_dir() / "c" / "lockstep.h"
    if not header.is_file():
        raise ToolchainMissingError(
            f"the C SDK header {header} is missing (set LOCKSTEP_SDK_DIR to the sdk/ directory)"
        )
    _run(c_command(source, output, optimize=optimize), None, source, "zig cc")


# ------------------------------------------------------------------------------ TS
def _asc(source: Path) -> tuple[str, Path, Path]:
    """(node, asc.js, SDK package dir), running `npm ci` once if node_modules is missing."""
    node = shutil.which("node")
    if node is None:
        raise ToolchainMissingError("AssemblyScript agents need Node.js >= 20: node is not on PATH")
    package = sdk_dir() / "assemblyscript"
    if not (package / "package-lock.json").is_file():
        raise ToolchainMissingError(
            f"the AssemblyScript SDK {package} is missing "
            "(set LOCKSTEP_SDK_DIR to the sdk/ directory)"
        )
    asc = package / "node_modules" / "assemblyscript" / "bin" / "asc.js"
    if not asc.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise ToolchainMissingError(
                f"{asc} is missing and npm is not on PATH to install it: run `npm ci` in {package}"
            )
        try:
            _run([npm, "ci", "--no-audit", "--no-fund"], package, source, "npm ci")
        except CompileError as exc:
            raise ToolchainMissingError(
                f"cannot install the AssemblyScript compiler with "
                f"`npm ci` in {package}:\n{exc.output}"
            ) from None
        if not asc.is_file():
            raise ToolchainMissingError(f"`npm ci` in {package} did not install {asc}")
    return node, asc, package


def _build_ts(source: Path, output: Path, optimize: bool) -> None:
    node, asc, package = _asc(source)
    with tempfile.TemporaryDirectory(prefix="lockstep-asc-") as tmp:
        # asc resolves `import ... from "@lockstep/sdk"` through --path directories laid
        # out like node_modules; a copy keeps that working without installing the SDK
        # into every agent's own node_modules (and without symlinks, for Windows).
        pkg = Path(tmp) / "@lockstep" / "sdk"
        pkg.mkdir(parents=True)
        for name in ("index.ts", "package.json"):
            shutil.copyfile(package / name, pkg / name)
        cmd = [
            node,
            str(asc),
            str(source),
            "--config",
            str(package / "asconfig.json"),
            "--target",
            "release" if optimize else "debug",
            "--path",
            tmp,
            "--outFile",
            str(output),
            "--noColors",
        ]
        _run(cmd, None, source, "asc")


# ------------------------------------------------------------------------------ API
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.:/-]")


def default_manifest(wasm: bytes, name: str, version: str = DEFAULT_VERSION) -> Manifest:
    """The manifest a build embeds unless given one (docs/modules.md).

    Capabilities are exactly the ``lockstep_v1`` functions the module imports (least
    privilege); importing ``infer`` asks for ``infer:*``, since the models an agent asks
    for are only known at run time. Name characters outside ``[A-Za-z0-9_.:/-]`` become
    ``_``.
    """
    clean = _NAME_BAD.sub("_", name)[:64] or "agent"
    return Manifest(name=clean, version=version, capabilities=abi.capabilities_for(wasm))


def build_agent(
    source: Path,
    output: Path | None = None,
    *,
    optimize: bool = True,
    name: str | None = None,
    version: str | None = None,
    manifest: Manifest | None = None,
) -> Path:
    """Build an agent source into a wasm module and return the module's path.

    ``source`` is a C file (built with zig cc against sdk/c/lockstep.h) or an
    AssemblyScript file (built with asc and the @lockstep/sdk package). ``output``
    defaults to the source path with the suffix ``.wasm``; it is replaced atomically,
    and only after the module passed the ABI v1 check. ``optimize=False`` builds
    without optimisation (and, for AssemblyScript, with debug names).

    The module carries a manifest section (unsigned: sign it with `lockstep module
    sign`, or register it in dev mode): ``manifest`` if given, else
    :func:`default_manifest` with ``name`` (default: the source's stem) and ``version``
    (default :data:`DEFAULT_VERSION`).

    Raises :class:`AgentBuildError` for an unknown suffix, a missing source or a bad
    manifest name/version, :class:`ToolchainMissingError`, :class:`CompileError` (with
    the compiler's diagnostics) or :class:`AbiCheckError` (naming every violation).
    """
    source = Path(source)
    if source.suffix not in SOURCE_SUFFIXES:
        raise AgentBuildError(
            f"{source}: unsupported source type {source.suffix or '(none)'!r}; "
            "expected .c (C) or .ts (AssemblyScript)"
        )
    if not source.is_file():
        raise AgentBuildError(f"{source}: no such source file")
    source = source.resolve()
    output = Path(output) if output is not None else source.with_suffix(".wasm")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lockstep-build-") as tmp:
        built = Path(tmp) / "agent.wasm"
        if source.suffix == ".c":
            _build_c(source, built, optimize)
        else:
            _build_ts(source, built, optimize)
        if not built.is_file():
            raise CompileError(source, "build", "the compiler reported success but wrote no module")
        wasm = built.read_bytes()
    problems = abi_problems(wasm)
    if problems:
        raise AbiCheckError(source, problems)
    try:
        if manifest is None:
            manifest = default_manifest(wasm, name or source.stem, version or DEFAULT_VERSION)
        wasm = embed_manifest(wasm, manifest)
    except ModuleError as exc:
        raise AgentBuildError(f"{source}: {exc}") from None
    partial = output.with_name(f"{output.name}.{os.getpid()}.tmp")
    partial.write_bytes(wasm)
    partial.replace(output)
    return output
