"""Progress of finance jobs: an accounts job and a stress-test job report their engine chunks (job log lines
``progress k/n chunks``, ``progress`` and ``eta_s`` of ``GET /v1/jobs/{id}`` rising while they run) through
the compute pool's worker processes and with the tasks in the server's thread (``CRE_COMPUTE_WORKERS=0``);
their numbers equal the engine's without progress."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest

from api.compute import clean
from finance_engine.accounts import carbon_accounts
from finance_engine.stress.accounts import scenario_accounts
from finance_engine.stress.run import StressSettings, run_stress_test
from finance_engine.stress.scenarios import load_scenario
from models.parameters import load_parameters
from models.portfolio import validate_frame
from tests.api.conftest import csv_bytes, make_tenants, new_database, test_settings, upload
from tests.conftest import make_frame

CHUNK_RE = re.compile(r"progress (\d+)/(\d+) chunks$")


@pytest.fixture(scope="module")
def params():
    return load_parameters("lishui")


@pytest.fixture(scope="module")
def pf50(params):
    return validate_frame(make_frame(50, seed=3), params, source="p.csv")


@pytest.fixture(scope="module", params=["pool", "in-process"])
def app_env(request, tmp_path_factory):
    """An app on SQLite whose jobs write every progress report (32-path chunks); its compute pool has
    worker processes ("pool") or runs the tasks in the job thread ("in-process")."""
    from fastapi.testclient import TestClient

    import api.jobs
    from api.app import create_app

    mp = pytest.MonkeyPatch()
    mp.setattr(api.jobs, "PROGRESS_WRITE_INTERVAL_S", 0.0)
    url = new_database("sqlite", tmp_path_factory, request)
    workers = {"pool": 2, "in-process": 0}[request.param]
    app = create_app(test_settings(url, compute_workers=workers, job_chunk_paths=32))
    with TestClient(app) as client:
        keys = make_tenants(app)
        h = {"Authorization": f"Bearer {keys[('bureau', 'a')]}"}
        pid = upload(client, h, csv_bytes(50, seed=3))
        yield {"client": client, "h": h, "pid": pid, "mode": request.param}
    mp.undo()


def watch(client, h, job_id: str, timeout: float = 60.0) -> tuple[dict, list[float]]:
    """Poll the job until it ends: (its last state, the progress values seen while it ran)."""
    seen, t0 = [], time.time()
    while time.time() - t0 < timeout:
        j = client.get(f"/v1/jobs/{job_id}", headers=h).json()
        if j["status"] in ("succeeded", "failed", "cancelled"):
            return j, seen
        if j["status"] == "running":
            seen.append(j["progress"])
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish: {j}")


def chunk_lines(job: dict) -> list[tuple[int, int]]:
    return [(int(m[1]), int(m[2])) for line in job["log"] if (m := CHUNK_RE.search(line))]


def assert_rising(job: dict, seen: list[float], in_process: bool, total: int | None = None) -> None:
    chunks = chunk_lines(job)
    assert chunks, job["log"]
    done = [k for k, _ in chunks]
    assert done == sorted(done) and chunks[-1][0] == chunks[-1][1]  # rising to the last chunk
    assert any(0 < k < n for k, n in chunks), job["log"]  # through intermediate values
    if total is not None:
        assert {n for _, n in chunks} == {total}
    if in_process:  # every report is written: each chunk has its line
        assert sorted(set(done)) == list(range(total + 1))
    assert seen == sorted(seen) and job["progress"] == 1.0 and job["eta_s"] == 0.0
    if not in_process:  # the job's row is read while the worker runs
        assert any(0 < p < 1 for p in seen), seen


def test_accounts_job_reports_progress_and_keeps_the_numbers(app_env, params, pf50):
    c, h, pid = app_env["client"], app_env["h"], app_env["pid"]
    paths = 6400 if app_env["mode"] == "pool" else 640  # the pool's run lasts long enough to be watched
    r = c.post("/v1/accounts", headers=h, json={"portfolio_id": pid, "paths": paths, "seed": 9, "mode": "job"})
    assert r.status_code == 202, r.text
    job, seen = watch(c, h, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert_rising(job, seen, app_env["mode"] == "in-process", total=paths // 32)
    engine = carbon_accounts(pf50, params, sink_paths=paths, seed=9)  # no progress, the engine's own chunks
    for level in ("county", "village"):
        got = c.get(f"/v1/accounts/{job['result_id']}/rows?level={level}&limit=500", headers=h).json()
        want = clean(engine.to_dict(level))["rows"]
        key = lambda x: tuple(str(x[k]) for k in ("county", "township", "village") if k in x)  # noqa: E731
        assert sorted(got["rows"]["items"], key=key) == sorted(want, key=key)


def test_stress_job_reports_progress_across_its_runs_and_keeps_the_numbers(app_env, params, pf50):
    c, h, pid = app_env["client"], app_env["h"], app_env["pid"]
    paths = 1024 if app_env["mode"] == "pool" else 128
    body = {"portfolio_id": pid, "scenarios": ["severe_fire_weather"], "years": 3, "paths": paths, "seed": 5,
            "levels": ["portfolio", "county"], "name": "progress"}
    r = c.post("/v1/stress-tests", headers=h, json=body)
    assert r.status_code == 202, r.text
    job, seen = watch(c, h, r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    # the baseline and the scenario as one count, then the accounts scenario by scenario
    assert_rising(job, seen, app_env["mode"] == "in-process", total=2 * paths // 32)
    assert any(line.endswith("accounts 2/2 scenarios") for line in job["log"])
    assert any(line.endswith("scenario severe_fire_weather") for line in job["log"])  # the engine's own lines
    st = StressSettings(years=3, paths=paths, seed=5, levels=("portfolio", "county"))
    direct = clean(run_stress_test(pf50, params, [load_scenario("severe_fire_weather")], settings=st).to_dict())
    sid = job["result_id"]
    got = c.get(f"/v1/stress-tests/{sid}", headers=h).json()
    assert got["result"]["portfolio"] == direct["portfolio"]
    rows, off = [], 0
    while off is not None:
        p = c.get(f"/v1/stress-tests/{sid}/tables/horizon?limit=500&offset={off}", headers=h).json()
        rows, off = rows + p["items"], p["next_offset"]
    assert rows == direct["horizon"]
    tree = c.get(f"/v1/stress-tests/{sid}/accounts?scenario=baseline&format=tree", headers=h).json()["tree"]
    assert tree == clean(scenario_accounts(pf50, params, "baseline", st).tree())


def test_a_cancel_stops_a_reporting_job_and_frees_its_worker(app_env):
    """A running accounts job is cancelled at once, and its task stops at the engine's next chunk (its
    cancel flag): the pool's worker is free long before the run would have ended, and no result is kept.
    In-process the task, run by the job thread, sees the job's own cancel event the same way."""
    c, h, pid = app_env["client"], app_env["h"], app_env["pid"]
    pool = c.app.state.compute
    paths = 64_000 if app_env["mode"] == "pool" else 3200  # whole runs of about 40 s and 5 s
    r = c.post("/v1/accounts", headers=h, json={"portfolio_id": pid, "paths": paths, "seed": 2, "mode": "job"})
    jid = r.json()["id"]
    t0 = time.time()
    while c.get(f"/v1/jobs/{jid}", headers=h).json()["progress"] <= 0 and time.time() - t0 < 30:
        time.sleep(0.02)
    t_cancel = time.time()
    assert pool.busy == 1  # in-process: the job thread inside the task, which polls the job's own event
    assert c.post(f"/v1/jobs/{jid}/cancel", headers=h).status_code == 202
    job, _ = watch(c, h, jid)
    assert job["status"] == "cancelled" and job["result_id"] is None, job
    while pool.busy and time.time() - t_cancel < 10:  # the worker's task ends at its next chunk
        time.sleep(0.02)
    assert pool.busy == 0 and time.time() - t_cancel < 10
    last = c.get(f"/v1/jobs/{jid}", headers=h).json()
    assert last["status"] == "cancelled" and last["progress"] < 0.5, last


def test_a_collateral_job_reports_progress_over_its_drivers_and_keeps_the_numbers(app_env, params, pf50):
    """A collateral valuation run as a job reports the valuation's run and its drivers' reruns as one count
    (``progress k/n chunks`` rising to the end) and stores the engine's own numbers."""
    from finance_engine.collateral import value_collateral

    c, h, pid = app_env["client"], app_env["h"], app_env["pid"]
    terms = {"amount_cny": 200_000, "term_years": 3, "interest_rate": 0.04, "crediting_horizon_years": 8}
    paths = 16_384 if app_env["mode"] == "pool" else 512  # the pool's job lasts long enough to be watched
    body = {"portfolio_id": pid, "terms": terms, "paths": paths, "seed": 4, "attribution": True,
            "attribution_paths": paths // 2, "mode": "job"}
    r = c.post("/v1/collateral-valuations", headers=h, json=body)
    assert r.status_code == 202, r.text
    job, seen = watch(c, h, r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    chunks = chunk_lines(job)
    assert chunks and chunks[-1][0] == chunks[-1][1] and [k for k, _ in chunks] == sorted(k for k, _ in chunks)
    assert any(0 < k < n for k, n in chunks), job["log"]  # the drivers' reruns step it
    got = c.get(f"/v1/collateral-valuations/{job['result_id']}", headers=h).json()["result"]
    want = clean(value_collateral(pf50, params, terms, paths=paths, seed=4, attribution=True,
                                  attribution_paths=paths // 2).to_dict())
    assert got["value_today"] == want["value_today"] and got["drivers"] == want["drivers"]
    assert got["by_year"] == want["by_year"] and got["sizing"] == want["sizing"]
