"""One private local deployment for the API tests (port 0, stopped at the end)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockstep.api import Deployment


@pytest.fixture(scope="module")
def dep() -> Iterator[Deployment]:
    with Deployment.local(pools=1) as deployment:
        yield deployment
