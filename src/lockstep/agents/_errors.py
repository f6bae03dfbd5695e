"""Errors of the agent build.

LockstepError
└── AgentBuildError          a source could not be built into an agent module
    ├── ToolchainMissingError  zig (PyPI ziglang), node, npm or asc is not available
    ├── CompileError           the compiler rejected the source; carries its output
    └── AbiCheckError          the build produced a module that breaks agent ABI v1
"""

from __future__ import annotations

from pathlib import Path

from lockstep.errors import LockstepError

__all__ = ["AbiCheckError", "AgentBuildError", "CompileError", "ToolchainMissingError"]

# Compiler output quoted in an error message; the rest stays in CompileError.output.
_MAX_LINES = 40


class AgentBuildError(LockstepError):
    """A source file could not be built into an agent module."""


class ToolchainMissingError(AgentBuildError):
    """A tool the build needs is not installed (the message says how to install it)."""


class CompileError(AgentBuildError):
    """The compiler rejected the source.

    ``output`` is the compiler's own diagnostics (stderr and stdout), unabridged; the
    message starts with the source path and includes those diagnostics.
    """

    def __init__(self, source: Path, tool: str, output: str) -> None:
        self.source = source
        self.tool = tool
        self.output = output.strip()
        lines = self.output.splitlines()
        shown = "\n".join(lines[:_MAX_LINES])
        if len(lines) > _MAX_LINES:
            shown += f"\n... ({len(lines) - _MAX_LINES} more lines)"
        super().__init__(f"{source}: {tool} failed:\n{shown}")


class AbiCheckError(AgentBuildError):
    """The module was built but breaks ABI v1 (a missing export, a foreign import...).

    ``problems`` lists every violation found, one line each.
    """

    def __init__(self, source: Path, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            f"{source}: the built module breaks agent ABI v1: " + "; ".join(self.problems)
        )
