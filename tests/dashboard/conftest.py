"""One real deployment (`lockstep up` on port 0, the dashboard included) running the
dashboard scenario, and one headless Chromium, shared by the dashboard tests.

The deployment runs tests/dashboard/scenario.toml to its end with a checkpoint at tick 10,
then a fork of that checkpoint that terminates `shouter` at tick 12: two runs, a parent
link, a divergence, logs with <script> in them, observations, an external message and two
inference results. The fork stays the orchestrator's current run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lockstep.api import Deployment, Run
from lockstep.scenario import Action
from lockstep.supervisor import SupervisorState

HERE = Path(__file__).resolve().parent
PAGE_SIZE = 3
RENDER_INTERVAL_MS = 200


@dataclass
class Env:
    """The shared deployment: its API handle, the two runs and the dashboard's URL."""

    dep: Deployment
    run: Run  # the original run (ended)
    fork: Run  # restored from run's tick-10 checkpoint; the current run
    checkpoint: Any
    url: str  # http://127.0.0.1:PORT (no trailing slash)
    address: str
    state: SupervisorState


@pytest.fixture(scope="session")
def env() -> Iterator[Env]:
    with pytest.MonkeyPatch.context() as mp:
        # Inherited by the supervisor and so by the dashboard it starts.
        mp.setenv("LOCKSTEP_DASHBOARD_PAGE_SIZE", str(PAGE_SIZE))
        mp.setenv("LOCKSTEP_DASHBOARD_RENDER_INTERVAL_MS", str(RENDER_INTERVAL_MS))
        dep = Deployment.local(pools=1)
    try:
        run = dep.start(HERE / "scenario.toml")
        run.run_until(10)
        cp = run.checkpoint("mid")
        run.finish()
        fork = run.fork(cp, [Action(tick=12, terminate=("shouter",))])
        fork.finish()
        assert dep.state_dir is not None
        state = SupervisorState.load(dep.state_dir)
        assert state is not None
        address = state.service("dashboard").address
        yield Env(dep, run, fork, cp, f"http://{address}", address, state)
    finally:
        dep.close()


def _find(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium through selenium; skipped where either is missing."""
    chromium = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver")
    if chromium is None or driver_path is None:
        pytest.skip(
            "headless browser tests need Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
        )
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--hide-scrollbars",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=opts, service=webdriver.ChromeService(executable_path=driver_path)
    )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot(browser: Any) -> Any:
    """shot(name): save the page as docs/figures/dashboard-NAME.png when
    LOCKSTEP_DASHBOARD_SCREENSHOTS names a directory (how the docs' figures are made)."""
    out = os.environ.get("LOCKSTEP_DASHBOARD_SCREENSHOTS")

    def shot(name: str) -> None:
        if not out:
            return
        height, chrome = browser.execute_script(
            "return [document.documentElement.scrollHeight, "
            "window.outerHeight - window.innerHeight]"
        )
        browser.set_window_size(1280, int(chrome) + max(500, min(int(height) + 10, 1600)))
        Path(out).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(out) / f"dashboard-{name}.png"))
        browser.set_window_size(1280, 1000)

    return shot
