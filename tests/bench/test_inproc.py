"""bench.inproc, the kernel's in-process A/B tool: it runs, reports CPU time per tick and the
final digest, and the digest is the same with the kernel's C helpers and without them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def inproc(*args: str, native: str = "1") -> str:
    env = {**os.environ, "LOCKSTEP_ORCHESTRATOR_NATIVE": native}
    out = subprocess.run(
        [sys.executable, "-m", "bench.inproc", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_it_reports_cpu_per_tick_and_the_same_digest_either_way() -> None:
    args = ("--model", "wealth", "--agents", "40", "--ticks", "20", "--pools", "2")
    line = inproc(*args)
    m = re.search(r"([0-9.]+) ms CPU per tick, digest ([0-9a-f]{16})", line)
    assert m, line
    assert m.group(2) in inproc(*args, native="0")


def test_the_starting_wealth_is_a_different_run() -> None:
    args = ("--model", "wealth", "--agents", "40", "--ticks", "20")
    digest = re.compile(r"digest ([0-9a-f]{16})")
    poor, rich = (digest.search(inproc(*args, "--wealth", w)) for w in ("1", "10"))
    assert poor and rich and poor.group(1) != rich.group(1)


@pytest.mark.parametrize("bad", [("--agents", "1"), ("--wealth", "-1")])
def test_bad_sizes_are_refused(bad: tuple[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.inproc", *bad],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "need --agents >= 2" in out.stderr
