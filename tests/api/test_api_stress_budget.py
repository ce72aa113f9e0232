"""A stress test whose per-path values would not fit its budget is refused at the request (SQLite and PostgreSQL)."""

from tests.api.conftest import csv_bytes, upload
from tests.api.test_api_flows import assert_problem


def test_a_stress_test_beyond_its_per_path_budget_is_refused_before_a_job_is_accepted(env, monkeypatch):
    import finance_engine.stress.run as stress_run

    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(30, seed=6))
    jobs_before = c.get("/v1/jobs", headers=h).json()["total"]
    monkeypatch.setattr(stress_run, "STRESS_PER_PATH_BUDGET_MIB", 0.01)
    body = {"portfolio_id": pid, "scenarios": ["super_typhoon"], "years": 2, "paths": 512, "mode": "job",
            "levels": ["portfolio", "county", "township"]}
    problem = assert_problem(c.post("/v1/stress-tests", headers=h, json=body), 422)
    assert problem["errors"][0]["field"] == "body/paths" and problem["errors"][0]["value"] == 512
    assert "the stress test needs every path's values" in problem["detail"] and "Use at most" in problem["detail"]
    assert c.get("/v1/jobs", headers=h).json()["total"] == jobs_before  # no job accepted to fail
    monkeypatch.undo()
    ok = c.post("/v1/stress-tests", headers=h, json={**body, "paths": 16, "mode": "auto"})
    assert ok.status_code in (201, 202), ok.text
