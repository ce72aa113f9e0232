"""Fixtures for the dashboard's browser tests: Debian's Chromium, the Node driver's packages, and a
real ``carbon-risk serve --demo`` process on a free loopback port with a fresh SQLite database.

The browser is driven by ``playwright-core`` (npm, pinned in ``package.json``/``package-lock.json``)
pointed at ``/usr/bin/chromium``; Playwright's own browser download is never used. ``.ci/run``
installs Chromium and the CJK fonts; without Chromium or Node the browser tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.server_process import ServeProcess

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("CRE_CHROMIUM", "/usr/bin/chromium")


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium; .ci/run does this)"
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js/npm not installed (needed for playwright-core; apt-get install -y nodejs npm)"
    return None


@pytest.fixture(scope="session")
def browser_driver() -> Path:
    """The driver script, with ``playwright-core`` installed from the lock file (``npm ci``) if missing."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if not (HERE / "node_modules" / "playwright-core" / "package.json").exists():
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"npm ci in {HERE} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return HERE / "drive_dashboard.mjs"


def run_driver(cmd: list[str], timeout: float, label: str) -> dict:
    """Run a Node driver (``cmd``: ``node DRIVER.mjs ...``, run from this folder) and return the JSON document it
    prints last (what the page showed), printing its screenshots' paths; fail with the driver's log if it failed,
    printed nothing or reported an error."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE)
    assert r.returncode == 0, f"driver failed ({r.returncode}):\n{r.stderr[-3000:]}"
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines, f"driver printed nothing:\n{r.stderr[-3000:]}"
    shown = json.loads(lines[-1])
    for path in shown["screenshots"]:
        print(f"{label} screenshot: {path}")
    assert shown.get("error") is None, f"{shown['error']}\n--- driver log ---\n{r.stderr[-3000:]}"
    return shown


def DemoServer(tmp: Path) -> ServeProcess:
    """``carbon-risk serve --demo`` on a free port with its own SQLite file."""
    return ServeProcess(tmp, {"DATABASE_URL": f"sqlite:///{tmp / 'dashboard.sqlite'}"}, args=("--demo",),
                        ready_timeout_s=90)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    srv = DemoServer(tmp_path_factory.mktemp("dashboard-server")).start()
    try:
        yield srv
    finally:
        srv.stop()
