"""Fixtures for the dashboard's browser tests: Debian's Chromium, the Node driver's packages, and a
real ``carbon-risk serve --demo`` process on a free loopback port with a fresh SQLite database.

The browser is driven by ``playwright-core`` (npm, pinned in ``package.json``/``package-lock.json``)
pointed at ``/usr/bin/chromium``; Playwright's own browser download is never used. ``.ci/run``
installs Chromium and the CJK fonts; without Chromium or Node the browser tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.api.pgcluster import free_port

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("CRE_CHROMIUM", "/usr/bin/chromium")
CLI = str(Path(sys.executable).parent / "carbon-risk")


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


class DemoServer:
    """``carbon-risk serve --demo`` on a free port with its own SQLite file."""

    def __init__(self, tmp: Path):
        self.tmp, self.port = tmp, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp / 'dashboard.sqlite'}",
                    "CRE_JOB_CHUNK_PATHS": "32", "CRE_RATE_PER_S": "1000", "CRE_RATE_BURST": "1000"}
        self.proc = None

    def start(self) -> "DemoServer":
        self.log_path = self.tmp / "server.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CLI, "serve", "--demo", "--port", str(self.port), "--log-level", "warning"],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp)
        t0 = time.time()
        while time.time() - t0 < 90:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    srv = DemoServer(tmp_path_factory.mktemp("dashboard-server")).start()
    try:
        yield srv
    finally:
        srv.stop()
