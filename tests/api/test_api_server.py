"""Against a real server process (``carbon-risk serve`` on a free loopback port): a smoke path over
HTTP, and a restart in the middle of a job (``kill -9``) after which the job completes with the same
result as a direct finance_engine run with the same seed. SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from api.db import Database
from api.security import create_key, create_tenant
from finance_engine.simulation import simulate
from models.parameters import load_parameters
from models.portfolio import validate_frame
from tests.api.conftest import new_database
from tests.api.pgcluster import free_port
from tests.conftest import make_frame
from tests.server_process import ServeProcess



class Server(ServeProcess):
    """The server on a given database (SQLite file or PostgreSQL)."""

    def __init__(self, url: str, tmp: Path, log_level: str = "warning", **env):
        super().__init__(tmp, {"DATABASE_URL": url, **env}, log_level=log_level)


def make_key(url: str, role: str = "bureau") -> dict:
    db = Database(url)
    db.upgrade()
    with db.session() as s:
        key = create_key(s, create_tenant(s, f"{role}-{time.time_ns()}", role))[1]
    db.dispose()
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def db_url(backend, tmp_path_factory, request):
    return new_database(backend, tmp_path_factory, request)


def test_smoke_over_http(db_url, tmp_path):
    h = make_key(db_url)
    srv = Server(db_url, tmp_path, log_level="info").start()
    try:
        with httpx.Client(base_url=srv.base, headers=h, timeout=60) as c:
            assert c.get("/healthz").json()["status"] == "ok"
            assert c.get("/openapi.json").json()["info"]["title"]
            csv = make_frame(50).to_csv(index=False).encode()
            r = c.post("/v1/portfolios", files={"file": ("p.csv", csv, "text/csv")}, data={"name": "http"})
            assert r.status_code == 201, r.text
            pid = r.json()["id"]
            r = c.post("/v1/simulations", json={"portfolio_id": pid, "years": 3, "paths": 64, "seed": 2},
                       headers={"X-Request-ID": "smoke-1"})
            assert r.status_code == 201 and r.headers["x-request-id"] == "smoke-1"
            assert r.json()["audit"]["request_id"] == "smoke-1"
            r = c.get(f"/v1/simulations/{r.json()['id']}/summary", params={"level": "portfolio", "limit": 5})
            assert r.status_code == 200 and r.json()["total"] > 0
            r = c.get("/v1/jobs/job_missing")
            assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        log = srv.log_path.read_text()
    finally:
        srv.stop()
    # the request log carries the client's request id on the request's own line
    assert any("[smoke-1]" in line and "POST /v1/simulations -> 201" in line for line in log.splitlines()), log[-2000:]


def test_job_survives_kill_9_and_gives_the_same_result(db_url, tmp_path):
    h = make_key(db_url)
    frame = make_frame(400, seed=8)
    srv = Server(db_url, tmp_path).start()
    req = {"years": 8, "paths": 384, "seed": 77, "levels": ["portfolio", "county"], "mode": "job"}
    try:
        with httpx.Client(base_url=srv.base, headers=h, timeout=60) as c:
            pid = c.post("/v1/portfolios", files={"file": ("p.csv", frame.to_csv(index=False).encode(), "text/csv")}
                         ).json()["id"]
            r = c.post("/v1/simulations", json={**req, "portfolio_id": pid})
            assert r.status_code == 202, r.text
            jid = r.json()["id"]
            t0 = time.time()
            while time.time() - t0 < 60:
                j = c.get(f"/v1/jobs/{jid}").json()
                if j["status"] == "running" and 0 < j["progress"] < 1:
                    break
                assert j["status"] in ("queued", "running"), j
                time.sleep(0.05)
            else:
                raise AssertionError("job never showed progress")
        srv.kill9()
        srv = Server(db_url, tmp_path, CRE_JOB_CHUNK_PATHS=64).start()  # chunking differs: results must not
        with httpx.Client(base_url=srv.base, headers=h, timeout=60) as c:
            t0 = time.time()
            while time.time() - t0 < 90:
                j = c.get(f"/v1/jobs/{jid}").json()
                if j["status"] not in ("queued", "running"):
                    break
                time.sleep(0.1)
            assert j["status"] == "succeeded", j
            assert j["attempts"] == 2 and any("re-queued" in line for line in j["log"])
            res = c.get(f"/v1/jobs/{jid}/result").json()
    finally:
        srv.stop()
    params = load_parameters("lishui")
    direct = simulate(validate_frame(frame, params, source="p.csv"), params, years=8, paths=384, seed=77,
                      levels=("portfolio", "county"))
    got = pd.DataFrame(res["horizon"]).sort_values(["level", "group", "metric"]).reset_index(drop=True)
    exp = direct.horizon.sort_values(["level", "group", "metric"]).reset_index(drop=True)
    assert len(got) == len(exp)
    for col in ("mean", "mc_se", "p05", "p95", "tvar99"):
        np.testing.assert_array_equal(got[col].to_numpy(float), exp[col].to_numpy(float), err_msg=col)
