"""Fixtures shared by every test area: credentials and real service processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lockstep.auth import TokenStore, write_token_file
from lockstep.spawn import ServiceProcess, start_service

__all__ = ["ServiceProcess", "start_service"]


@pytest.fixture(scope="session")
def auth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TokenStore]:
    """A token file with one token per role, and its store."""
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    return path, write_token_file(path)


@pytest.fixture
def service_factory() -> Iterator[object]:
    """Start service processes that are stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def factory(module: str, auth_file: Path | None, *args: str, **kw: object) -> ServiceProcess:
        svc = start_service(module, auth_file, *args, **kw)  # type: ignore[arg-type]
        started.append(svc)
        return svc

    yield factory
    for svc in reversed(started):
        svc.stop()
