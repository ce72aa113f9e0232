"""A real ``carbon-risk serve`` process on a free loopback port, for tests that talk HTTP to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.pgcluster import free_port

CLI = str(Path(sys.executable).parent / "carbon-risk")
# small chunks so jobs report progress often; a rate limit the tests never hit
TEST_ENV = {"CRE_JOB_CHUNK_PATHS": "32", "CRE_RATE_PER_S": "1000", "CRE_RATE_BURST": "1000",
            "CRE_LANDSCAPE_WARM_PATHS": "64"}  # the compute workers warm a little of the landscape


class ServeProcess:
    """Start with :meth:`start` (waits for ``/readyz``), end with :meth:`stop` or :meth:`kill9`."""

    def __init__(self, tmp: Path, env: dict[str, object], args: tuple[str, ...] = (),
                 ready_timeout_s: float = 60.0, log_level: str = "warning"):
        self.tmp, self.port = tmp, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **TEST_ENV, **{k: str(v) for k, v in env.items()}}
        self.args = tuple(args)
        self.ready_timeout_s = ready_timeout_s
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None

    def start(self) -> "ServeProcess":
        self.log_path = self.tmp / f"server-{time.time_ns()}.log"
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([CLI, "serve", *self.args, "--port", str(self.port), "--log-level", self.log_level],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp)
        t0 = time.time()
        while time.time() - t0 < self.ready_timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()
