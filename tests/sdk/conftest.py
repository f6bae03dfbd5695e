"""Build every example agent once per test session (C with zig cc, AssemblyScript with asc)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockstep.agents import build_agent, example_output_name, example_sources


class Built:
    """The session's example modules, looked up by source name (``"pingpong.ts"``)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.sources = {src.name: src for src in example_sources()}
        self._paths: dict[tuple[str, bool], Path] = {}

    def path(self, name: str, *, optimize: bool = True) -> Path:
        """The module built from example `name`, building it on first use."""
        key = (name, optimize)
        if key not in self._paths:
            src = self.sources[name]
            out = self.out_dir / ("release" if optimize else "debug") / example_output_name(src)
            # Named like `lockstep agent build --all` names them (pingpong, pingpong-as...).
            self._paths[key] = build_agent(src, out, optimize=optimize, name=out.stem)
        return self._paths[key]

    def wasm(self, name: str, *, optimize: bool = True) -> bytes:
        """The bytes of :meth:`path`."""
        return self.path(name, optimize=optimize).read_bytes()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """Example modules, each compiled at most once per session and build mode."""
    return Built(tmp_path_factory.mktemp("agents"))
