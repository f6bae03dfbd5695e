"""The service images leave out the analysis side of the shared package (pandas, pyarrow,
matplotlib: lockstep.api), and run the CLI at build time (`lockstep models prepare`): the
CLI must start, and its non-analysis commands work, without those packages."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

_BLOCKED = r"""
import builtins, sys
real = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] in ("pandas", "pyarrow", "matplotlib"):
        raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
    return real(name, *args, **kwargs)
builtins.__import__ = guarded
from lockstep.cli import main
sys.argv = ["lockstep", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["models", "--help"],
        ["logs", "--help"],
        ["ticks", "--help"],
        ["journal", "--help"],
    ],
)
def test_the_cli_starts_without_the_analysis_packages(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _BLOCKED, *args], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Usage" in out.stdout
