"""Build Lockstep agents from source: C (zig cc + sdk/c/lockstep.h) and AssemblyScript
(asc + sdk/assemblyscript), checked against agent ABI v1 (docs/abi.md).

    >>> from lockstep.agents import build_agent
    >>> build_agent(Path("examples/agents/pingpong/pingpong.c"), Path("build/pingpong.wasm"))

See docs/sdk.md for writing agents and the examples under examples/agents/.
"""

from __future__ import annotations

from pathlib import Path

from lockstep.agents._abi import (
    ABI_EXPORTS,
    ABI_IMPORTS,
    IMPORT_MODULE,
    OPTIONAL_EXPORTS,
    REQUIRED_EXPORTS,
    abi_problems,
)
from lockstep.agents._build import (
    C_STACK_SIZE,
    DEFAULT_VERSION,
    SOURCE_SUFFIXES,
    build_agent,
    c_command,
    default_manifest,
    example_output_name,
    example_sources,
    examples_dir,
    sdk_dir,
)
from lockstep.agents._errors import (
    AbiCheckError,
    AgentBuildError,
    CompileError,
    ToolchainMissingError,
)

__all__ = [
    "ABI_EXPORTS",
    "ABI_IMPORTS",
    "C_STACK_SIZE",
    "DEFAULT_VERSION",
    "IMPORT_MODULE",
    "OPTIONAL_EXPORTS",
    "REQUIRED_EXPORTS",
    "SOURCE_SUFFIXES",
    "AbiCheckError",
    "AgentBuildError",
    "CompileError",
    "ToolchainMissingError",
    "abi_problems",
    "build_agent",
    "build_examples",
    "c_command",
    "default_manifest",
    "example_output_name",
    "example_sources",
    "examples_dir",
    "sdk_dir",
]


def build_examples(out_dir: Path, *, optimize: bool = True) -> list[Path]:
    """Build every example agent into ``out_dir`` (see :func:`example_output_name`).

    Each module's manifest is named after its file (``pingpong``, ``pingpong-as``...).
    Returns the module paths in :func:`example_sources` order; the first failure raises.
    """
    paths = []
    for src in example_sources():
        out = out_dir / example_output_name(src)
        paths.append(build_agent(src, out, optimize=optimize, name=out.stem))
    return paths
