"""In-process API tests (TestClient) on SQLite and PostgreSQL: portfolios, validation errors, loans
and policies, simulations (at once and as jobs) against direct finance_engine runs, accounts,
models, scenarios, audit, pagination, idempotency, problem documents and request ids."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pandas as pd
import pytest

from finance_engine.accounts import carbon_accounts
from finance_engine.simulation import simulate
from models.parameters import load_parameters
from models.portfolio import validate_frame
from tests.api.conftest import csv_bytes, upload
from tests.conftest import make_frame

PROBLEM = "application/problem+json"


def assert_problem(r, status: int, kind: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    assert body["request_id"] == r.headers["x-request-id"]
    if kind:
        assert body["type"].endswith("/" + kind), body
    return body


def wait_job(client, headers, job_id, timeout=60.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        j = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if j["status"] in ("succeeded", "failed", "cancelled"):
            return j
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {j}")


@pytest.fixture(scope="module")
def params():
    return load_parameters("lishui")


# ---- portfolios -------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet", "xlsx", "geojson", "json"])
def test_upload_each_format_gives_the_same_portfolio(env, fmt):
    df = make_frame(30, seed=3)
    if fmt == "csv":
        data = df.to_csv(index=False).encode()
    elif fmt == "parquet":
        buf = io.BytesIO(); df.to_parquet(buf, index=False); data = buf.getvalue()
    elif fmt == "xlsx":
        buf = io.BytesIO(); df.to_excel(buf, index=False); data = buf.getvalue()
    elif fmt == "geojson":
        feats = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [r.longitude, r.latitude]},
                  "properties": {k: v for k, v in r._asdict().items() if k not in ("Index", "latitude", "longitude")}}
                 for r in df.itertuples()]
        data = json.dumps({"type": "FeatureCollection", "features": feats}, default=float).encode()
    else:
        data = df.to_json(orient="records").encode()
    pid = upload(env.client, env.h("bank"), data, filename=f"p.{fmt}", name=f"fmt-{fmt}")
    got = env.client.get(f"/v1/portfolios/{pid}?limit=500", headers=env.h("bank")).json()
    assert got["n_parcels"] == 30
    assert got["area_ha"] == pytest.approx(df["area_ha"].sum(), rel=1e-12)
    assert sorted(p["parcel_id"] for p in got["parcels"]["items"]) == sorted(df["parcel_id"])


def test_json_body_upload_and_every_bad_row_listed(env):
    df = make_frame(20, seed=4)
    bad = df.copy()
    bad["area_ha"] = bad["area_ha"].astype(object)
    bad.loc[2, "area_ha"] = -5
    bad.loc[5, "species_group"] = "baobab"
    bad.loc[9, "latitude"] = 80.0
    r = env.client.post("/v1/portfolios", headers=env.h("bank"),
                        json={"name": "bad", "parcels": json.loads(bad.to_json(orient="records"))})
    body = assert_problem(r, 422, "invalid-portfolio")
    got = {(e["row"], e["column"]) for e in body["errors"]}
    assert got == {(3, "area_ha"), (6, "species_group"), (10, "latitude")}
    assert all(set(e) >= {"row", "column", "value", "reason"} for e in body["errors"])
    ok = env.client.post("/v1/portfolios", headers=env.h("bank"),
                         json={"name": "good", "parcels": json.loads(df.to_json(orient="records"))})
    assert ok.status_code == 201 and ok.headers["location"] == f"/v1/portfolios/{ok.json()['id']}"


def test_upload_bad_inputs_are_problems_not_500(env):
    c, h = env.client, env.h("bank")
    assert_problem(c.post("/v1/portfolios", headers=h, files={"file": ("p.exe", b"MZ", "x")}), 415)
    assert_problem(c.post("/v1/portfolios", headers=h, files={"file": ("p.parquet", b"not parquet", "x")}), 422)
    assert_problem(c.post("/v1/portfolios", headers=h, files={"file": ("p.csv", b"", "text/csv")}), 422)
    assert_problem(c.post("/v1/portfolios", headers={**h, "content-type": "text/plain"}, content=b"x"), 415)
    # a body that is not JSON answers 422 naming the body, as FastAPI answers it on every other endpoint
    bad = assert_problem(c.post("/v1/portfolios", headers={**h, "content-type": "application/json"}, content=b"{nope"),
                         422, "validation-error")
    assert bad["errors"][0]["field"] == "body"
    assert_problem(c.post("/v1/portfolios", headers=h, json={"name": "x"}), 422, "validation-error")
    assert_problem(c.post("/v1/portfolios", headers=h, json={"name": "x", "parcels": [1, 2]}), 422)
    assert_problem(c.post("/v1/portfolios", headers={**h, "content-type": "multipart/form-data; boundary=zz"},
                          content=b"--zz\r\ngarbage"), 422)


def test_list_pagination_and_delete(env):
    c, h = env.client, env.h("insurer", "b")
    ids = [upload(c, h, csv_bytes(10, seed=i), name=f"page-{i}") for i in range(3)]
    first = c.get("/v1/portfolios?limit=2", headers=h).json()
    total = first["total"]
    assert total >= 4 and len(first["items"]) == 2 and first["next_offset"] == 2
    seen = [p["id"] for p in first["items"]]
    off = first["next_offset"]
    while off is not None:
        nxt = c.get(f"/v1/portfolios?limit=2&offset={off}", headers=h).json()
        seen += [p["id"] for p in nxt["items"]]
        off = nxt["next_offset"]
    assert len(seen) == total == len(set(seen)) and set(ids) <= set(seen)
    assert_problem(c.get("/v1/portfolios?limit=0", headers=h), 422)
    assert c.get("/v1/portfolios?limit=501", headers=h).json()["limit"] == 500  # lowered to the server's maximum
    assert c.delete(f"/v1/portfolios/{ids[0]}", headers=h).status_code == 204
    assert_problem(c.get(f"/v1/portfolios/{ids[0]}", headers=h), 404)
    assert c.get("/v1/portfolios", headers=h).json()["total"] == total - 1


# ---- loans and policies -----------------------------------------------------------------------------
def test_loans_and_policies_validated(env):
    c, pid = env.client, env.portfolios[("bank", "a")]
    h = env.h("bank")
    parcels = [p["parcel_id"] for p in c.get(f"/v1/portfolios/{pid}?limit=5", headers=h).json()["parcels"]["items"]]
    ok = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                json={"name": "L1", "terms": {"amount_cny": 5e6, "term_years": 5, "rate": 0.045, "parcel_ids": parcels}})
    assert ok.status_code == 201, ok.text
    loan = ok.json()
    assert loan["kind"] == "loan" and loan["terms"]["parcel_ids"] == parcels
    assert c.get(f"/v1/loans/{loan['id']}", headers=h).json() == loan
    assert c.get(f"/v1/portfolios/{pid}/loans", headers=h).json()["total"] == 1
    body = assert_problem(c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                                 json={"terms": {"amount_cny": 0, "term_years": 5, "rate": 0.04}}), 422)
    assert any("amount_cny" in e["field"] for e in body["errors"])
    body = assert_problem(c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={
        "terms": {"amount_cny": 1, "term_years": 5, "rate": 0.04, "parcel_ids": ["nope", parcels[0]]}}), 422)
    assert [e["value"] for e in body["errors"]] == ["nope"]
    ip, hi = env.portfolios[("insurer", "a")], env.h("insurer")
    pol = c.post(f"/v1/portfolios/{ip}/policies", headers=hi, json={"terms": {
        "sum_insured_cny": 1e7, "perils": ["fire", "typhoon"], "deductible_cny": 1e5, "limit_cny": 5e6}})
    assert pol.status_code == 201, pol.text
    assert_problem(c.post(f"/v1/portfolios/{ip}/policies", headers=hi, json={"terms": {
        "sum_insured_cny": 1e7, "perils": ["fire"], "limit_cny": 2e7}}), 422)
    assert_problem(c.post(f"/v1/portfolios/{ip}/policies", headers=hi, json={"terms": {
        "sum_insured_cny": 1e7, "perils": ["meteor"]}}), 422)
    # a policy id is not a loan
    assert_problem(c.get(f"/v1/loans/{pol.json()['id']}", headers=env.h("bureau")), 404)
    assert c.delete(f"/v1/policies/{pol.json()['id']}", headers=hi).status_code == 204


# ---- simulations ------------------------------------------------------------------------------------
def _direct(params, n=50, seed_frame=0, **kw):
    pf = validate_frame(make_frame(n, seed=seed_frame), params, source="p.csv")
    return simulate(pf, params, **kw)


def test_small_simulation_answered_at_once_equals_direct_run(env, params):
    c, h, pid = env.client, env.h("bank"), env.portfolios[("bank", "a")]
    req = {"portfolio_id": pid, "years": 4, "paths": 96, "seed": 11, "levels": ["portfolio", "county"]}
    r = c.post("/v1/simulations", headers=h, json=req)
    assert r.status_code == 201, r.text
    out = r.json()
    assert r.headers["location"] == f"/v1/simulations/{out['id']}"
    a = out["audit"]
    assert a["seed"] == 11 and a["parameter_sha256"] == params.sha256 and a["created_by"] == env.keys[("bank", "a")][4:16]
    assert a["request"]["paths"] == 96 and a["code_version"] and a["model_version"] and a["request_id"]
    direct = _direct(params, years=4, paths=96, seed=11, levels=("portfolio", "county"))
    rows = c.get(f"/v1/simulations/{out['id']}/summary?limit=500", headers=h).json()
    assert rows["total"] == len(direct.summary)
    got = pd.DataFrame(rows["items"]).sort_values(["level", "group", "metric", "year"]).reset_index(drop=True)
    exp = direct.summary.sort_values(["level", "group", "metric", "year"]).reset_index(drop=True)
    np.testing.assert_array_equal(got["mean"].to_numpy(float), exp["mean"].to_numpy(float))
    np.testing.assert_array_equal(got["p95"].to_numpy(float), exp["p95"].to_numpy(float))
    f = c.get(f"/v1/simulations/{out['id']}/summary?level=portfolio&metric=stock_tco2e&year=3", headers=h).json()
    assert f["total"] == 1 and f["items"][0]["year"] == 3
    # a page of rows carries the run's provenance, so rows kept on their own still say what made them
    assert f["provenance"]["seed"] == 11 and f["provenance"]["paths"] == 96
    assert f["provenance"]["parameter_sha256"] == params.sha256 and f["provenance"]["model_version"] == a["model_version"]
    assert c.get(f"/v1/simulations/{out['id']}", headers=h).json()["audit"] == out["audit"]


def test_large_simulation_is_a_job_with_progress_and_same_result(env, params):
    c, h, pid = env.client, env.h("bureau"), env.portfolios[("bureau", "a")]
    req = {"portfolio_id": pid, "years": 3, "paths": 160, "seed": 5, "levels": ["portfolio"], "mode": "job"}
    r = c.post("/v1/simulations", headers=h, json=req)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["status"] in ("queued", "running", "succeeded")
    j = wait_job(c, h, job["id"])
    assert j["status"] == "succeeded" and j["progress"] == 1.0 and j["error"] is None
    assert any("progress" in line for line in j["log"]) and j["attempts"] == 1
    res = c.get(f"/v1/jobs/{job['id']}/result", headers=h).json()
    assert res["job_id"] == job["id"] and res["id"] == j["result_id"]
    direct = _direct(params, years=3, paths=160, seed=5, levels=("portfolio",))
    exp = direct.horizon.sort_values(["metric"]).reset_index(drop=True)
    got = pd.DataFrame(res["horizon"]).sort_values(["metric"]).reset_index(drop=True)
    np.testing.assert_array_equal(got["mean"].to_numpy(float), exp["mean"].to_numpy(float))
    assert c.get("/v1/jobs?status=succeeded", headers=h).json()["total"] >= 1
    assert_problem(c.post(f"/v1/jobs/{job['id']}/cancel", headers=h), 409, "job-finished")


def test_cancel_a_queued_job_and_limits(env):
    c, h, pid = env.client, env.h("insurer"), env.portfolios[("insurer", "a")]
    runner = env.app.state.jobs
    # hold the worker busy-free: cancel immediately after submission; a queued job is cancelled at once,
    # a running one at its next chunk. Either way it ends cancelled and has no result.
    r = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 30, "paths": 20000, "seed": 1,
                                                   "mode": "job"})
    assert r.status_code == 202
    jid = r.json()["id"]
    cr = c.post(f"/v1/jobs/{jid}/cancel", headers=h)
    # 200: it was still queued and is cancelled now; 202: a worker runs it and stops at its next chunk
    assert cr.status_code in (200, 202) and cr.json()["cancel_requested"] is True
    assert (cr.status_code == 200) == (cr.json()["status"] == "cancelled")
    j = wait_job(c, h, jid)
    assert j["status"] == "cancelled" and j["result_id"] is None
    assert_problem(c.get(f"/v1/jobs/{jid}/result", headers=h), 409, "job-not-finished")
    assert runner is not None
    over = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 200, "paths": 10_000_000})
    assert_problem(over, 422, "limit-exceeded")
    bad = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "climate_pathway": "ice_age", "paths": 32,
                                                     "years": 1})
    assert_problem(bad, 422, "invalid-simulation")
    assert_problem(c.post("/v1/simulations", headers=h, json={"portfolio_id": "pf_nothere"}), 404)


def test_accounts_match_finance_engine(env, params):
    c, h, pid = env.client, env.h("bureau"), env.portfolios[("bureau", "a")]
    r = c.get(f"/v1/portfolios/{pid}/accounts?level=county&paths=64&seed=9", headers=h)
    assert r.status_code == 200, r.text
    pf = validate_frame(make_frame(50), params, source="p.csv")
    acc = carbon_accounts(pf, params, sink_paths=64, seed=9).level("county")
    got = pd.DataFrame(r.json()["rows"]["items"]).sort_values("county").reset_index(drop=True)
    assert list(got["county"]) == sorted(acc["county"])
    np.testing.assert_allclose(got["stock_bef_tco2e"], acc.sort_values("county")["stock_bef_tco2e"], rtol=0, atol=0)
    full = c.get(f"/v1/portfolios/{pid}/accounts?paths=64&seed=9&limit=500", headers=h).json()
    levels = pd.DataFrame(full["rows"]["items"]).groupby("level")["stock_bef_tco2e"].sum()
    # exact roll-up: every level sums to the portfolio total (integer kilograms underneath)
    for lv in ("province", "city", "county", "township", "village"):
        assert levels[lv] == pytest.approx(levels["portfolio"], rel=1e-12)


def test_accounts_runs_at_once_and_as_jobs_keep_the_engines_numbers(env, params):
    """POST /v1/accounts: small accounts answered at once (201), large ones (parcels x paths above
    CRE_SYNC_MAX_CELLS: the portfolio's GET answers 422 and points here) as a job (202), both stored with their
    provenance and the engine's numbers; rows paged by level; the job's result is the accounts' id."""
    c, h, pid = env.client, env.h("bureau"), env.portfolios[("bureau", "a")]
    pf = validate_frame(make_frame(50), params, source="p.csv")
    r = c.post("/v1/accounts", headers=h, json={"portfolio_id": pid, "paths": 64, "seed": 9})
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["kind"] == "accounts" and r.headers["location"] == f"/v1/accounts/{got['id']}"
    engine = carbon_accounts(pf, params, sink_paths=64, seed=9)
    assert got["result"]["tables"] == {"rows": len(engine.table)}  # every level, portfolio to village
    assert "rows" not in got["result"] and got["audit"]["seed"] == 9
    prov = got["result"]["provenance"]
    assert prov["seed"] == 9 and prov["paths"] == 64 and prov["parameter_sha256"] == params.sha256
    assert prov["portfolio"] == "p.csv"
    rows = c.get(f"/v1/accounts/{got['id']}/rows?level=county&limit=500", headers=h).json()
    acc = engine.level("county").sort_values("county")
    county = pd.DataFrame(rows["rows"]["items"]).sort_values("county").reset_index(drop=True)
    assert rows["sink_paths"] == 64 and rows["rows"]["total"] == len(acc)
    for col in ("stock_bef_tco2e", "expected_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr_mc_se"):
        np.testing.assert_array_equal(county[col].to_numpy(), acc[col].to_numpy())
    # the same numbers as the portfolio's own accounts in the request
    inline = c.get(f"/v1/portfolios/{pid}/accounts?level=county&paths=64&seed=9", headers=h).json()
    assert sorted(inline["rows"]["items"], key=lambda x: x["county"]) == county.to_dict("records")
    # above the synchronous limit: the request refuses and names the job; the job runs it
    big = env.app.state.settings.sync_max_cells // 50 + 1
    refused = c.get(f"/v1/portfolios/{pid}/accounts?paths={big}", headers=h)
    assert_problem(refused, 422, "sync-limit-exceeded")
    assert "POST /v1/accounts" in refused.json()["detail"]
    j = c.post("/v1/accounts", headers=h, json={"portfolio_id": pid, "paths": 64, "seed": 9, "mode": "job"})
    assert j.status_code == 202, j.text
    done = wait_job(c, h, j.json()["id"])
    assert done["status"] == "succeeded" and done["kind"] == "accounts", done
    stored = c.get(f"/v1/accounts/{done['result_id']}", headers=h).json()
    assert stored["job_id"] == j.json()["id"]
    assert {k: v for k, v in stored["result"]["provenance"].items() if k != "code_version"} == \
        {k: v for k, v in prov.items() if k != "code_version"}
    listed = c.get(f"/v1/accounts?portfolio_id={pid}", headers=h).json()["items"]
    assert {got["id"], stored["id"]} <= {x["id"] for x in listed}
    assert_problem(c.post("/v1/accounts", headers=h, json={"portfolio_id": pid, "paths": 0}), 422)
    assert_problem(c.post("/v1/accounts", headers=h, json={"portfolio_id": "pf_nothere"}), 404)
    assert_problem(c.get("/v1/accounts/ac_nothere/rows", headers=h), 404)


# ---- models, scenarios, audit -----------------------------------------------------------------------
def test_models_and_scenarios(env, params):
    c, h = env.client, env.h("admin")
    lst = c.get("/v1/models", headers=h).json()
    assert "lishui" in [m["id"] for m in lst["items"]]
    m = c.get("/v1/models/lishui", headers=h).json()
    import hashlib

    assert m["sha256"] == params.sha256 == hashlib.sha256(m["yaml"].encode()).hexdigest()
    assert m["references"] and m["parameters"]["region"] == "lishui"
    assert_problem(c.get("/v1/models/..%2Fetc", headers=h), 404)
    assert_problem(c.get("/v1/models/atlantis", headers=h), 404)
    sc = c.get("/v1/scenarios", headers=h).json()
    ids = [s["id"] for s in sc["items"]]
    assert "lishui.climate.warming" in ids
    w = c.get("/v1/scenarios/lishui.climate.warming", headers=h).json()
    assert w["content"]["hazard"]["fire"]["2100"] == 3.0 and w["source"] == "anderegg_2022"


def test_audit_lists_own_records_only(env):
    c = env.client
    # records of its own, whatever ran before (or whether anything did): each tenant's portfolio upload,
    # and a simulation of tenant a (other tests count tenant b's simulations)
    req = {"portfolio_id": env.portfolios[("bank", "a")], "years": 2, "paths": 32, "seed": 21, "levels": ["portfolio"]}
    r = c.post("/v1/simulations", headers=env.h("bank", "a"), json=req)
    assert r.status_code == 201, r.text
    a = c.get("/v1/audit?limit=500", headers=env.h("bank", "a")).json()
    b = c.get("/v1/audit?limit=500", headers=env.h("bank", "b")).json()
    ida, idb = {x["id"] for x in a["items"]}, {x["id"] for x in b["items"]}
    assert a["total"] >= 2 and b["total"] >= 1 and not ida & idb
    assert {x["key_id"] for x in a["items"]} == {env.keys[("bank", "a")][4:16]}
    assert any(x["action"] == "simulation.create" for x in a["items"])


# ---- protocol: problems, request ids, idempotency, limits ---------------------------------------------
def test_problem_documents_and_request_ids(env):
    c = env.client
    assert_problem(c.get("/v1/portfolios"), 401, "unauthenticated")
    assert_problem(c.get("/v1/portfolios", headers={"Authorization": "Bearer cre_000000000000_" + "x" * 43}), 401)
    assert_problem(c.get("/v1/nothing-here"), 404)
    assert_problem(c.put("/v1/portfolios", headers=env.h("bank")), 405)
    assert_problem(c.post("/v1/simulations", headers=env.h("bank"), content=b"[1,2"), 422, "validation-error")
    r = c.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert r.headers["x-request-id"] == "trace-123"
    r = c.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32


def test_idempotency_replays_and_rejects_a_different_body(env):
    c, h, pid = env.client, env.h("bank", "b"), env.portfolios[("bank", "b")]
    body = {"portfolio_id": pid, "years": 2, "paths": 32, "seed": 3}
    hk = {**h, "Idempotency-Key": "sim-abc-1"}
    r1 = c.post("/v1/simulations", headers=hk, json=body)
    r2 = c.post("/v1/simulations", headers=hk, json=body)
    assert r1.status_code == r2.status_code == 201
    assert r2.json() == r1.json() and r2.headers["idempotency-replayed"] == "true"
    assert r2.headers["location"] == r1.headers["location"]
    assert c.get("/v1/simulations", headers=h).json()["total"] == 1
    assert_problem(c.post("/v1/simulations", headers=hk, json={**body, "seed": 4}), 422, "idempotency-key-reused")
    # the same key belongs to another tenant independently
    other = c.post("/v1/simulations", headers={**env.h("bank", "a"), "Idempotency-Key": "sim-abc-1"},
                   json={**body, "portfolio_id": env.portfolios[("bank", "a")]})
    assert other.status_code == 201 and "idempotency-replayed" not in other.headers
    # multipart uploads replay too (the boundary differs between sends)
    hu = {**h, "Idempotency-Key": "upload-1"}
    u1 = c.post("/v1/portfolios", headers=hu, files={"file": ("p.csv", csv_bytes(5), "text/csv")}, data={"name": "i"})
    u2 = c.post("/v1/portfolios", headers=hu, files={"file": ("p.csv", csv_bytes(5), "text/csv")}, data={"name": "i"})
    assert u1.status_code == 201 and u2.json()["id"] == u1.json()["id"]


def test_concurrent_deletes_of_one_loan_answer_204_once_with_one_audit_record(env):
    """Four clients delete the same loan at once: one 204 and one ``loan.delete`` audit record; the others
    404 (the delete is conditional on the row), on SQLite and PostgreSQL alike."""
    from concurrent.futures import ThreadPoolExecutor

    c, h = env.client, env.h("bank")
    pid = env.portfolios[("bank", "a")]
    for _ in range(3):
        loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                      json={"name": "L", "terms": {"amount_cny": 1e5, "term_years": 3, "rate": 0.04}}).json()["id"]
        with ThreadPoolExecutor(4) as ex:
            codes = sorted(ex.map(lambda _: c.delete(f"/v1/loans/{loan}", headers=h).status_code, range(4)))
        assert codes == [204, 404, 404, 404], codes
        audit = c.get(f"/v1/audit?resource_id={loan}", headers=h).json()["items"]
        assert [a["action"] for a in audit].count("loan.delete") == 1, audit


def test_concurrent_deletes_of_one_portfolio_answer_204_once(env):
    """Concurrent deletes of one portfolio (with a loan, cascading): one 204 with one ``portfolio.delete`` and
    one ``loan.delete`` audit record, the others 404."""
    from concurrent.futures import ThreadPoolExecutor

    c, h = env.client, env.h("bank")
    pid = upload(c, h, csv_bytes(5))
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"name": "L", "terms": {"amount_cny": 1e5, "term_years": 3, "rate": 0.04}}).json()["id"]
    with ThreadPoolExecutor(4) as ex:
        codes = sorted(ex.map(lambda _: c.delete(f"/v1/portfolios/{pid}?cascade=true", headers=h).status_code,
                              range(4)))
    assert codes == [204, 404, 404, 404], codes
    for rid, action in ((pid, "portfolio.delete"), (loan, "loan.delete")):
        audit = c.get(f"/v1/audit?resource_id={rid}", headers=h).json()["items"]
        assert [a["action"] for a in audit].count(action) == 1, audit


def test_a_report_stored_by_another_writer_first_is_kept_not_a_failure(env, monkeypatch):
    """Two server processes rendering the same report at once: the second ``put_artifact`` finds the row taken
    (an IntegrityError at its insert), keeps the first writer's copy and leaves its own transaction usable."""
    from api.db.models import FinanceResult, ResultArtifact
    from api.finance import put_artifact

    c, h = env.client, env.h("insurer")
    pid = env.portfolios[("insurer", "a")]
    qid = c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "paths": 32, "years": 1,
                                                 "cover": {"kind": "stock-loss", "price_cny_per_tco2e": 60}}).json()["id"]
    db = env.app.state.db
    with db.session() as s:  # the first writer
        put_artifact(s, qid, "race.html", "text/html", b"first")
    with db.session() as s:  # the second: its check missed the first writer's row (it committed in between)
        real_get = s.get
        monkeypatch.setattr(s, "get", lambda model, key, *a, **k: None if model is ResultArtifact else
                            real_get(model, key, *a, **k))
        put_artifact(s, qid, "race.html", "text/html", b"second")
        assert real_get(FinanceResult, qid) is not None  # the transaction goes on
    with db.session() as s:
        assert s.get(ResultArtifact, (qid, "race.html")).content == b"first"
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):  # not the race (a result that does not exist): an error, not a success
        with db.session() as s:
            put_artifact(s, "qt_does_not_exist", "race.html", "text/html", b"x")
