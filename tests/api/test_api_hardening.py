"""Hardening of the service (SQLite; the PostgreSQL-specific cases are in test_api_text_limits):
secrets never kept for Idempotency-Key replays and idempotency records expiring, no portfolio name of
one tenant reaching another through a cache, jobs that cannot save their result failing (never hanging),
cancel semantics, parcel-level results, strict multipart layer fields, portfolio deletion with
instruments, audit records of job results, the cheap checks of a request run before a job is accepted,
problem documents naming the right field, schema bounds equal to the engine's, accounts within the
synchronous limit, the page maximum setting, library-only stress scenarios and the admin resources."""

from __future__ import annotations

import json
import types
from datetime import timedelta

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.db.models import ApiKey, IdempotencyRecord, Job, Tenant, utcnow
from api.security import create_key, create_tenant, parse_key
from finance_engine.simulation import simulate
from models.parameters import load_parameters
from models.portfolio import validate_frame
from tests.api.conftest import ApiEnv, csv_bytes, make_tenants, test_settings, upload
from tests.api.test_api_flows import assert_problem, wait_job
from tests.conftest import make_frame

TERMS = {"amount_cny": 100_000.0, "term_years": 3, "interest_rate": 0.04, "crediting_horizon_years": 5}


def _env(tmp_path_factory, start_jobs: bool = True, **settings) -> tuple[ApiEnv, TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.sqlite'}"
    app = create_app(test_settings(url, compute_workers=0, **settings), start_jobs=start_jobs)
    client = TestClient(app)
    client.__enter__()
    return ApiEnv(client=client, app=app, keys=make_tenants(app)), client


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One app (engine work in the server's threads) with tenants a and b of every role."""
    e, client = _env(tmp_path_factory)
    yield e
    client.__exit__(None, None, None)


@pytest.fixture
def fresh(tmp_path_factory):
    """A new app for a test that needs one of its own (settings of its own, or its first request)."""
    made = []

    def build(**kw) -> ApiEnv:
        e, client = _env(tmp_path_factory, **kw)
        made.append(client)
        return e

    yield build
    for c in made:
        c.__exit__(None, None, None)


def _audit_actions(env, role, resource_id, tenant="a") -> list[str]:
    r = env.client.get(f"/v1/audit?resource_id={resource_id}", headers=env.h(role, tenant))
    assert r.status_code == 200, r.text
    return [a["action"] for a in r.json()["items"]]


# ---- 1. idempotency: secrets are never stored; records expire -------------------------------------------
def test_a_new_api_key_is_never_stored_for_idempotency_nor_replayed(env):
    c, adm = env.client, env.h("admin")
    tid = c.get("/v1/admin/tenants?limit=500", headers=adm).json()["items"][0]["id"]
    hk = {**adm, "Idempotency-Key": "new-key-1"}
    r = c.post(f"/v1/admin/tenants/{tid}/keys", headers=hk, json={"label": "ops"})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["location"] == f"/v1/admin/keys/{r.json()['id']}"
    meta = c.get(r.headers["location"], headers=adm)
    assert meta.status_code == 200 and meta.json()["id"] == r.json()["id"] and "key" not in meta.json()
    with env.app.state.db.session() as s:  # what is at rest: a marker, not the answer
        tenant = s.get(Tenant, s.get(ApiKey, parse_key(env.keys[("admin", "a")])[0]).tenant_id)
        rec = s.get(IdempotencyRecord, (tenant.id, "new-key-1"))
        assert rec is not None and rec.status_code == 201
        assert key.encode() not in (rec.body or b"") and key[-43:].encode() not in (rec.body or b"")
        other_admin = create_key(s, tenant)[1]
    keys_before = c.get(f"/v1/admin/tenants/{tid}/keys?limit=500", headers=adm).json()["total"]
    # the same request again (another operator of the same admin tenant): not run twice, and no secret
    again = c.post(f"/v1/admin/tenants/{tid}/keys", headers={"Authorization": f"Bearer {other_admin}",
                                                             "Idempotency-Key": "new-key-1"}, json={"label": "ops"})
    body = assert_problem(again, 409, "idempotency-response-withheld")
    assert key not in again.text and body["resource"] == r.headers["location"]
    assert again.headers["location"] == r.headers["location"]
    assert c.get(f"/v1/admin/tenants/{tid}/keys?limit=500", headers=adm).json()["total"] == keys_before
    # after a revocation too
    assert c.post(f"/v1/admin/keys/{r.json()['id']}/revoke", headers=adm).status_code == 200
    again = c.post(f"/v1/admin/tenants/{tid}/keys", headers=hk, json={"label": "ops"})
    assert_problem(again, 409, "idempotency-response-withheld")
    assert key not in again.text


def test_idempotency_records_expire_after_the_ttl(fresh):
    e = fresh()
    c, h = e.client, e.h("bank")
    pid = upload(c, h, csv_bytes(5))
    with e.app.state.db.session() as s:  # a record from two days ago (before the app's first keyed request)
        s.add(IdempotencyRecord(tenant_id="ten_old", key="old", method_path="POST /v1/simulations",
                                body_sha256="0" * 64, status_code=201, headers={}, body=b"{}",
                                created_at=utcnow() - timedelta(hours=48)))
    body = {"portfolio_id": pid, "years": 1, "paths": 2, "seed": 1}
    hk = {**h, "Idempotency-Key": "sim-ttl"}
    assert c.post("/v1/simulations", headers=hk, json=body).status_code == 201
    with e.app.state.db.session() as s:
        assert s.get(IdempotencyRecord, ("ten_old", "old")) is None  # purged (default TTL 24 h)
        rec = s.scalar(select(IdempotencyRecord).where(IdempotencyRecord.key == "sim-ttl"))
        rec.created_at = utcnow() - timedelta(hours=25)
    # older than the TTL: the key starts afresh (a different body is a new request, not a 422)
    r = c.post("/v1/simulations", headers=hk, json={**body, "seed": 2})
    assert r.status_code == 201 and "idempotency-replayed" not in r.headers and r.json()["audit"]["seed"] == 2
    assert c.post("/v1/simulations", headers=hk, json={**body, "seed": 2}).headers["idempotency-replayed"] == "true"


# ---- 2. no tenant sees another's names through a cache --------------------------------------------------
def test_identical_data_of_two_tenants_keeps_each_tenants_own_name(env):
    c = env.client
    data = csv_bytes(20, seed=42)
    ha, hb = env.h("bureau", "a"), env.h("bureau", "b")
    pa = upload(c, ha, data, filename="LishuiRuralBank_confidential_book.csv")
    pb = upload(c, hb, data, filename="my_parcels.csv")
    for pid, h, own, other in ((pa, ha, "LishuiRuralBank_confidential_book.csv", "my_parcels.csv"),
                               (pb, hb, "my_parcels.csv", "LishuiRuralBank_confidential_book.csv")):
        acc = c.get(f"/v1/portfolios/{pid}/accounts?level=portfolio&paths=16", headers=h)
        assert acc.status_code == 200 and acc.json()["provenance"]["portfolio"] == own
        sim = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 2, "paths": 16})
        assert sim.status_code == 201 and sim.json()["provenance"]["portfolio"]["source"] == own
        qt = c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "cover": {"kind": "stock-loss"}, "paths": 32})
        assert qt.status_code == 201 and qt.json()["result"]["provenance"]["portfolio"]["source"] == own
        st = c.post("/v1/stress-tests", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 8, "mode": "auto",
                                                         "accounts": False, "footprints": False})
        assert st.status_code == 201 and st.json()["result"]["provenance"]["portfolio"] == own
        # the report and workbook a worker renders name the caller's file too, never the engine's hash label
        report = c.get(f"/v1/stress-tests/{st.json()['id']}/report", headers=h)
        assert report.status_code == 200 and own in report.text and "sha256:" not in _portfolio_line(report.text)
        book = c.get(f"/v1/stress-tests/{st.json()['id']}/workbook", headers=h)
        assert book.status_code == 200 and own.encode() in _xlsx_text(book.content)
        assert b"sha256:" not in _xlsx_text(book.content)
        for r in (acc, sim, qt, st, report):
            assert other not in r.text


def _portfolio_line(html: str) -> str:
    """The report's text around its portfolio entry."""
    i = html.find("portfolio")
    return html[i:i + 300] if i >= 0 else ""


def _xlsx_text(data: bytes) -> bytes:
    """The text of the workbook's XML parts (shared or inline strings)."""
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return b"".join(z.read(n) for n in z.namelist() if n.endswith(".xml"))


# ---- 3. jobs never hang; cancel ------------------------------------------------------------------------
def test_a_simulation_job_whose_result_cannot_be_saved_fails(env, monkeypatch):
    import api.jobs

    def disk_full(*a, **k):
        raise OSError("simulated storage failure: disk full")

    monkeypatch.setattr(api.jobs, "store_run", disk_full)
    c, h, pid = env.client, env.h("bank"), upload(env.client, env.h("bank"), csv_bytes(10))
    jid = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 2, "paths": 20,
                                                     "mode": "job"}).json()["id"]
    j = wait_job(c, h, jid, timeout=30)
    assert j["status"] == "failed" and j["result_id"] is None
    assert j["error"]["type"].endswith("/storage-error") and j["error"]["status"] == 500
    # what failed and where to look, never the exception's text (it may quote SQL and stored values)
    assert "disk full" not in j["error"]["detail"] and jid in j["error"]["detail"] and j["error"]["title"]
    assert_problem(c.post(f"/v1/jobs/{jid}/cancel", headers=h), 409, "job-finished")


def test_a_finance_job_whose_result_cannot_be_saved_fails(env, monkeypatch):
    import api.finance

    def disk_full(*a, **k):
        raise OSError("simulated storage failure: disk full")

    monkeypatch.setattr(api.finance, "store_result", disk_full)
    c, h = env.client, env.h("insurer")
    pid = upload(c, h, csv_bytes(10))
    jid = c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "cover": {"kind": "stock-loss"}, "paths": 32,
                                                "mode": "job"}).json()["id"]
    j = wait_job(c, h, jid, timeout=30)
    assert j["status"] == "failed" and j["error"]["type"].endswith("/storage-error"), j
    assert "disk full" not in j["error"]["detail"] and jid in j["error"]["detail"]


def test_a_worker_failure_outside_the_job_marks_it_failed(env, monkeypatch):
    from sqlalchemy.exc import OperationalError

    runner = env.app.state.jobs

    def claim_fails(job_id):  # the database write that claims the job fails
        raise OperationalError("UPDATE jobs ...", {}, Exception("simulated: database is locked"))

    c, h = env.client, env.h("bank")
    pid = upload(c, h, csv_bytes(5))
    monkeypatch.setattr(runner, "_claim", claim_fails)
    jid = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 4,
                                                     "mode": "job"}).json()["id"]
    j = wait_job(c, h, jid, timeout=30)
    assert j["status"] == "failed" and j["error"]["type"].endswith("/internal-error")


def test_cancel_is_idempotent_and_completes_for_orphaned_jobs(fresh):
    e = fresh(start_jobs=False)  # no worker: jobs stay queued, and a "running" one has no owner
    c, h = e.client, e.h("bureau")
    pid = upload(c, h, csv_bytes(5))
    sub = lambda: c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 4,  # noqa: E731
                                                            "mode": "job"}).json()["id"]
    queued, orphan = sub(), sub()
    r = c.post(f"/v1/jobs/{queued}/cancel", headers=h)  # queued: cancelled now, nothing left to do
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    r = c.post(f"/v1/jobs/{queued}/cancel", headers=h)  # again: its state, 200
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    with e.app.state.db.session() as s:  # its server died while it ran
        s.get(Job, orphan).status = "running"
    r = c.post(f"/v1/jobs/{orphan}/cancel", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert c.get(f"/v1/jobs/{orphan}", headers=h).json()["status"] == "cancelled"
    assert _audit_actions(e, "bureau", orphan).count("job.cancel") == 1


def test_a_restart_does_not_rerun_a_job_whose_cancel_was_asked_for(fresh):
    e = fresh(start_jobs=False)
    c, h = e.client, e.h("bureau")
    pid = upload(c, h, csv_bytes(5))
    sub = lambda: c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 4,  # noqa: E731
                                                            "mode": "job"}).json()["id"]
    rerun, stopped = sub(), sub()
    with e.app.state.db.session() as s:  # both were running when the server died; one was being cancelled
        for jid in (rerun, stopped):
            s.get(Job, jid).status = "running"
        s.get(Job, stopped).cancel_requested = True
    assert e.app.state.jobs.recover() == [rerun]
    assert c.get(f"/v1/jobs/{stopped}", headers=h).json()["status"] == "cancelled"
    assert c.get(f"/v1/jobs/{rerun}", headers=h).json()["status"] == "queued"


# ---- 4. parcel-level results ---------------------------------------------------------------------------
def test_parcel_level_results_are_paged_with_units_and_provenance(env):
    c, h = env.client, env.h("bank")
    df = make_frame(12, seed=5)
    pid = upload(c, h, df.to_csv(index=False).encode())
    r = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 3, "paths": 40, "seed": 8,
                                                   "levels": ["portfolio", "parcel"]})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    first = c.get(f"/v1/simulations/{sid}/parcels?limit=5", headers=h).json()
    assert first["total"] == 12 and len(first["items"]) == 5 and first["next_offset"] == 5
    assert first["provenance"]["seed"] == 8 and first["provenance"]["paths"] == 40
    assert first["units"]["stock_end_tco2e_mean"].startswith("tCO2e")
    rows = first["items"] + c.get(f"/v1/simulations/{sid}/parcels?offset=5&limit=50", headers=h).json()["items"]
    params = load_parameters("lishui")
    direct = simulate(validate_frame(df, params, source="x.csv"), params, years=3, paths=40, seed=8,
                      levels=("portfolio", "parcel"))
    got = pd.DataFrame(rows).set_index("parcel_id").sort_index()
    exp = direct.parcel_summary.set_index("parcel_id").sort_index()
    assert list(got.index) == list(exp.index)
    for col in exp.columns:
        assert got[col].tolist() == pytest.approx(exp[col].tolist(), rel=1e-12, abs=1e-9), col
    start = direct.initial_stock[direct.initial_stock["level"] == "parcel"].set_index("group")["stock_tco2e"]
    assert got["stock_tco2e"].tolist() == pytest.approx(start.loc[got.index].tolist(), rel=1e-12)
    one = c.get(f"/v1/simulations/{sid}/parcels?parcel_id={got.index[3]}", headers=h).json()
    assert one["total"] == 1 and one["items"][0]["parcel_id"] == got.index[3]
    assert_problem(c.get(f"/v1/simulations/{sid}/summary?level=parcel", headers=h), 422)
    plain = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 4}).json()["id"]
    assert_problem(c.get(f"/v1/simulations/{plain}/parcels", headers=h), 404)
    assert_problem(c.get(f"/v1/simulations/{sid}/parcels", headers=env.h("bank", "b")), 404)


# ---- 5. multipart layer pricing refuses unknown fields -------------------------------------------------
def test_layer_pricing_upload_names_unknown_form_fields(env):
    c, h = env.client, env.h("insurer")
    elt = pd.DataFrame({"year": [0, 1, 1], "event_id": [1, 2, 3], "loss": [5.0, 2.0, 9.0]}).to_csv(index=False)
    form = {"n_years": "4", "attachment": "1", "limt": "3"}  # a typo of "limit": must not price an unlimited layer
    r = c.post("/v1/layer-pricing", headers=h, files={"file": ("elt.csv", elt.encode(), "text/csv")}, data=form)
    body = assert_problem(r, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body/limt"]
    ok = c.post("/v1/layer-pricing", headers=h, files={"file": ("elt.csv", elt.encode(), "text/csv")},
                data={"n_years": "4", "attachment": "1", "limit": "3"})
    assert ok.status_code == 201 and ok.json()["result"]["limit"] == 3.0
    # an empty limit is not an absent one (it priced an unlimited layer)
    r = c.post("/v1/layer-pricing", headers=h, files={"file": ("elt.csv", elt.encode(), "text/csv")},
               data={"n_years": "4", "attachment": "1", "limit": ""})
    assert [e["field"] for e in assert_problem(r, 422, "validation-error")["errors"]] == ["body/limit"]


def test_portfolio_upload_names_unknown_form_fields(env):
    c, h = env.client, env.h("bank")
    r = c.post("/v1/portfolios", headers=h, files={"file": ("p.csv", csv_bytes(5), "text/csv")},
               data={"name": "typo", "regoin": "guangxi"})  # a typo of "region": must not upload as lishui
    assert [e["field"] for e in assert_problem(r, 422, "validation-error")["errors"]] == ["body/regoin"]
    assert all(p["name"] != "typo" for p in c.get("/v1/portfolios?limit=500", headers=h).json()["items"])


# ---- 7. deleting a portfolio with instruments ------------------------------------------------------------
def test_deleting_a_portfolio_with_instruments_needs_cascade_and_audits_each(env):
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(10))
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"name": "L", "terms": {"amount_cny": 1e5, "term_years": 3, "rate": 0.04}}).json()["id"]
    pol = c.post(f"/v1/portfolios/{pid}/policies", headers=h,
                 json={"name": "P", "terms": {"sum_insured_cny": 1e6, "perils": ["fire"]}}).json()["id"]
    cv = c.post("/v1/collateral-valuations", headers=h, json={"loan_id": loan, "paths": 32, "sensitivities": False,
                                                              "terms": {"crediting_horizon_years": 5}})
    assert cv.status_code == 201, cv.text
    body = assert_problem(c.delete(f"/v1/portfolios/{pid}", headers=h), 409, "portfolio-has-instruments")
    assert {i["id"] for i in body["instruments"]} == {loan, pol}
    assert c.get(f"/v1/loans/{loan}", headers=h).status_code == 200  # nothing was deleted
    assert c.delete(f"/v1/portfolios/{pid}?cascade=true", headers=h).status_code == 204
    assert_problem(c.get(f"/v1/loans/{loan}", headers=h), 404)
    assert_problem(c.get(f"/v1/policies/{pol}", headers=h), 404)
    assert _audit_actions(env, "bureau", loan)[0] == "loan.delete"
    assert _audit_actions(env, "bureau", pol)[0] == "policy.delete"
    assert _audit_actions(env, "bureau", pid)[0] == "portfolio.delete"
    assert c.get(f"/v1/collateral-valuations/{cv.json()['id']}", headers=h).status_code == 200  # results kept
    # without instruments a plain delete works
    assert c.delete(f"/v1/portfolios/{upload(c, h, csv_bytes(5))}", headers=h).status_code == 204


# ---- 8. job results are audited -------------------------------------------------------------------------
def test_results_made_by_jobs_have_their_create_audit_record(env):
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(10))
    sj = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 2, "paths": 20, "mode": "job"})
    qj = c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "cover": {"kind": "stock-loss"}, "paths": 32,
                                               "mode": "job"})
    for r, action in ((sj, "simulation.create"), (qj, "quote.create")):
        j = wait_job(c, h, r.json()["id"])
        assert j["status"] == "succeeded", j
        recs = c.get(f"/v1/audit?resource_id={j['result_id']}", headers=h).json()["items"]
        assert [a["action"] for a in recs] == [action]
        assert recs[0]["detail"]["job_id"] == j["id"] and recs[0]["key_id"] == env.keys[("bureau", "a")][4:16]
        assert recs[0]["request_id"] == r.headers["x-request-id"]


# ---- 9. the cheap checks run before a job is accepted ---------------------------------------------------
def test_jobs_are_refused_at_once_for_what_a_synchronous_request_would_refuse(env):
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(10))
    for mode in ("auto", "job"):
        r = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 4, "mode": mode,
                                                       "climate_pathway": "ice_age"})
        body = assert_problem(r, 422, "invalid-simulation")
        assert body["errors"][0]["field"] == "body/climate_pathway"
        r = c.post("/v1/collateral-valuations", headers=h, json={
            "portfolio_id": pid, "paths": 32, "mode": mode, "terms": {**TERMS, "term_years": 8}})
        body = assert_problem(r, 422, "invalid-loan-terms")
        assert body["errors"][0]["field"] == "body/terms/term_years"
        r = c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "cover": {"kind": "stock-loss"}, "paths": 32,
                                                  "mode": mode, "subsidy": "atlantis"})
        body = assert_problem(r, 422, "invalid-cover")
        assert body["errors"][0]["field"] == "body/subsidy"
    assert c.get("/v1/jobs?status=queued", headers=h).json()["total"] == 0
    assert c.get("/v1/jobs?status=failed", headers=h).json()["total"] == 0


# ---- 10. problems name the right field; the schema's bounds are the engine's ---------------------------
def test_problems_name_the_request_field(env):
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(10))

    def fields(r, status=422):
        body = assert_problem(r, status)
        assert body["errors"], body
        return [e["field"] for e in body["errors"]]

    cv = lambda terms, **kw: c.post("/v1/collateral-valuations", headers=h, json={  # noqa: E731
        "portfolio_id": pid, "paths": 32, "sensitivities": False, "terms": {**TERMS, **terms}, **kw})
    assert fields(cv({"borrower_pd": 1.0})) == ["body/terms/borrower_pd"]
    assert fields(cv({"price_model": "nope"})) == ["body/terms/price_model"]
    assert fields(cv({"price_scenario": "nope"})) == ["body/terms/price_scenario"]
    assert fields(cv({"pledge_rate": 0.8, "ltv_trigger": 0.5})) == ["body/terms/ltv_trigger"]
    assert fields(cv({}, parcel_ids=["nope"])) == ["body/parcel_ids"]
    assert fields(cv({}, project_id="nope")) == ["body/project_id"]
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"terms": {"amount_cny": 1e5, "term_years": 35, "rate": 0.04}}).json()["id"]  # beyond 30 years
    assert fields(c.post("/v1/collateral-valuations", headers=h, json={"loan_id": loan, "paths": 32})) == \
        ["loan/terms/term_years"]
    q = lambda **kw: c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "paths": 32, **kw})  # noqa: E731
    assert fields(q(cover={"kind": "stock-loss", "deductible": {"amount": 5, "unit": "stock_fraction"}})) == \
        ["body/cover/deductible/amount"]
    assert fields(q(cover={"kind": "stock-loss"}, loading={"method": "ph", "parameter": 0})) == \
        ["body/loading/parameter"]
    assert fields(q(cover={"kind": "price-floor", "strike_cny_per_tco2e": 50, "price_model": "nope"})) == \
        ["body/cover/price_model"]
    assert fields(q(cover={"kind": "stock-loss"}, layers=[{"attachment_cny": 0, "limit_cny": 1, "basis": "aggregate",
                                                           "reinstatements": 2}])) == ["body/layers/0/reinstatements"]
    s = lambda **kw: c.post("/v1/stress-tests", headers=h,  # noqa: E731
                            json={"portfolio_id": pid, "years": 1, "paths": 8, **kw})
    assert fields(s(registry={"loans": "x"})) == ["body/registry", "body/registry/loans"]
    assert "body/inline_scenarios/0/version" in fields(s(inline_scenarios=[{"name": "x", "hazard": {"fire": 2}}]))
    assert fields(s(scenarios=["baseline", "atlantis"])) == ["body/scenarios/1"]
    lp = c.post("/v1/layer-pricing", headers=env.h("insurer"), json={"rows": [{"year": 0, "event_id": 1, "loss": -1}],
                                                                     "n_years": 2, "attachment": 0})
    assert fields(lp) == ["body/rows"]
    # an unknown region is the request's mistake (422 naming it), not a missing resource
    up = c.post("/v1/portfolios", headers=h, files={"file": ("p.csv", csv_bytes(5), "text/csv")},
                data={"region": "atlantis"})
    assert fields(up) == ["body/region"]
    js = c.post("/v1/portfolios", headers=h, json={"name": "x", "region": "atlantis",
                                                   "parcels": json.loads(make_frame(3).to_json(orient="records"))})
    assert fields(js) == ["body/region"]


def test_a_registered_loan_is_one_the_engine_can_value(env):
    """The registered loan's term and rate carry the engine's bounds: a loan the valuation would refuse is
    refused when it is registered (it was accepted, then every valuation of it answered 422)."""
    c, h = env.client, env.h("bank")
    pid = upload(c, h, csv_bytes(5))
    for terms, field in (({"term_years": 45}, "body/terms/term_years"), ({"term_years": 2.5}, "body/terms/term_years"),
                         ({"rate": 0.6}, "body/terms/rate")):
        body = {"amount_cny": 1e5, "term_years": 3, "rate": 0.04, **terms}
        r = c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={"name": "L", "terms": body})
        assert field in [e["field"] for e in assert_problem(r, 422)["errors"]], r.text
    ok = c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={"name": "L", "terms": {"amount_cny": 1e5,
                                                                                      "term_years": 40, "rate": 0.49}})
    assert ok.status_code == 201, ok.text


def test_collateral_schema_bounds_are_the_engines():
    """Every bound of the request schema's terms is at least as strict as the engine's LoanTerms, so what
    the OpenAPI document admits, the engine values (and the documented bounds are the real ones)."""
    from api.finance_schemas import CollateralTerms
    from finance_engine.collateral import LoanTerms

    eng = LoanTerms.model_json_schema()["properties"]
    api = CollateralTerms.model_json_schema()["properties"]

    def bounds(sch):
        sch = next((x for x in sch.get("anyOf", [sch]) if x.get("type") != "null"), sch)
        lo = (sch["exclusiveMinimum"], True) if "exclusiveMinimum" in sch else (sch.get("minimum"), False)
        hi = (sch["exclusiveMaximum"], True) if "exclusiveMaximum" in sch else (sch.get("maximum"), False)
        return lo, hi

    checked = 0
    for name, esch in eng.items():
        if name not in api:
            continue
        (elo, eloex), (ehi, ehiex) = bounds(esch)
        (alo, aloex), (ahi, ahiex) = bounds(api[name])
        if elo is not None:
            assert alo is not None and (alo > elo or (alo == elo and (aloex or not eloex))), (name, "low")
        if ehi is not None:
            assert ahi is not None and (ahi < ehi or (ahi == ehi and (ahiex or not ehiex))), (name, "high")
        checked += 1
    assert checked >= 15
    # the ones a client meets first, exactly as the engine has them
    assert bounds(api["borrower_pd"]) == ((0, True), (1, True))
    assert bounds(api["discount_rate"])[0] == (0, False)
    assert bounds(api["liquidation_time_years"])[1] == (5, False)
    assert bounds(api["target_shortfall_probability"]) == ((0, True), (0.5, True))
    assert bounds(api["pledge_rate"])[0] == (0, True) and bounds(api["ltv_trigger"])[0] == (0, True)


def _engine_type(field_info):
    """(type, constraints) of a pydantic field: its annotation without ``None`` and ``Annotated`` unwrapped."""
    from typing import Annotated, Union, get_args, get_origin

    ann, meta = field_info.annotation, list(field_info.metadata)
    if get_origin(ann) in (Union, types.UnionType) and type(None) in get_args(ann):
        rest = [a for a in get_args(ann) if a is not type(None)]
        ann = rest[0] if len(rest) == 1 else Union[tuple(rest)]
    if get_origin(ann) is Annotated:
        ann, *inner = get_args(ann)
        meta += inner
    return ann, meta


@pytest.mark.parametrize("api_model,engine_model,names", [
    ("api.finance_schemas.CollateralTerms", "finance_engine.collateral.LoanTerms", None),
    ("api.finance_schemas.AssignedInsuranceIn", "finance_engine.collateral.AssignedInsurance",
     {"agreed_price_cny_per_tco2e": "agreed_price_cny_per_tco2e", "annual_deductible_tco2e": "annual_deductible_tco2e",
      "annual_limit_cny": "annual_limit_cny"}),
    ("api.schemas.LoanTerms", "finance_engine.collateral.LoanTerms",  # a registered loan (api.finance.LOAN_TERMS)
     {"amount_cny": "amount_cny", "term_years": "term_years", "rate": "interest_rate",
      "crediting_start_year": "crediting_start_year", "crediting_period_years": "crediting_period_years"}),
])
def test_request_terms_carry_the_engines_fields(api_model, engine_model, names):
    """The request schemas' loan terms are the engine's fields (type and every constraint), not a copy that can
    drift: a bound changed in finance_engine.collateral changes the API with it (or this fails)."""
    import importlib

    from pydantic import AllowInfNan

    from api.finance import LOAN_TERMS

    def load(path):
        mod, _, name = path.rpartition(".")
        return getattr(importlib.import_module(mod), name)

    api, eng = load(api_model), load(engine_model)
    if names is None:  # the collateral terms: every engine term, under its own name
        assert set(api.model_fields) == set(eng.model_fields)
        names = {n: n for n in eng.model_fields if n != "insurance"}  # insurance: AssignedInsuranceIn, below
    if api_model == "api.schemas.LoanTerms":
        assert {eng_name: name for name, eng_name in names.items()} == LOAN_TERMS
    finite = eng.model_config.get("allow_inf_nan") is False
    for name, eng_name in names.items():
        a_type, a_meta = _engine_type(api.model_fields[name])
        e_type, e_meta = _engine_type(eng.model_fields[eng_name])
        assert a_type == e_type, name
        missing = [m for m in e_meta if m not in a_meta]
        assert not missing, (name, missing)
        if finite and e_type is float:
            assert AllowInfNan(False) in a_meta, name


def test_a_loan_terms_error_names_one_field_whichever_path_meets_it(env, monkeypatch):
    """A LoanTerms error names the same request field from the pre-check (at once or before a job is
    accepted) and from the engine's own error in a run at once and in a job, with and without a registered
    loan: a term at the loan's value at ``loan/terms/...``, one the request overrides at ``body/terms/...``
    (one map, api.finance.collateral_fields)."""
    import api.finance as fin
    from finance_engine.collateral import check_loan_terms

    c, h = env.client, env.h("bank")
    pid = upload(c, h, csv_bytes(10))
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"terms": {"amount_cny": 1e5, "term_years": 6, "rate": 0.04}}).json()["id"]
    seeds = iter(range(100, 200))

    def fields(r):
        if r.status_code == 202:  # a job: its error
            job = wait_job(c, h, r.json()["id"])
            assert job["status"] == "failed", job
            assert job["error"]["type"].endswith("/invalid-loan-terms"), job["error"]
            return [e["field"] for e in job["error"]["errors"]]
        return [e["field"] for e in assert_problem(r, 422, "invalid-loan-terms")["errors"]]

    def post(mode, terms, **body):
        return c.post("/v1/collateral-valuations", headers=h, json={
            "paths": 32, "sensitivities": False, "mode": mode, "seed": next(seeds), "terms": terms, **body})

    cases = [  # (request, terms but the horizon, field)
        (dict(loan_id=loan), {}, "loan/terms/term_years"),
        (dict(loan_id=loan), {"term_years": 7}, "body/terms/term_years"),
        # an override repeating the loan's own value: the loan's (a job keeps only the merged terms)
        (dict(loan_id=loan), {"term_years": 6}, "loan/terms/term_years"),
        (dict(portfolio_id=pid), {**TERMS, "term_years": 6}, "body/terms/term_years"),
    ]
    # the pre-check: at once, and before a job is accepted -- a crediting horizon of 5 years
    for body, terms, field in cases:
        for mode in ("auto", "job"):
            assert fields(post(mode, {**terms, "crediting_horizon_years": 5}, **body)) == [field], (body, terms, mode)
    assert c.get("/v1/jobs?status=queued", headers=h).json()["total"] == 0
    # the engine's own error (as a later code version might refuse a term the pre-check let through): the task
    # (run in the server's threads here) refuses a term beyond a horizon of 2 years
    monkeypatch.setitem(fin.TASKS, "collateral",
                        lambda ref, req, **_: check_loan_terms({**req["terms"], "crediting_horizon_years": 2}))
    for body, terms, field in cases:
        for mode in ("auto", "job"):
            assert fields(post(mode, {**terms, "crediting_horizon_years": 10}, **body)) == [field], (body, terms, mode)
    # a rate, which the registry calls rate
    monkeypatch.setitem(fin.TASKS, "collateral",
                        lambda ref, req, **_: check_loan_terms({**req["terms"], "interest_rate": -1}))
    for mode in ("auto", "job"):
        assert fields(post(mode, None, loan_id=loan)) == ["loan/terms/rate"], mode
        assert fields(post(mode, {"interest_rate": 0.05}, loan_id=loan)) == ["body/terms/interest_rate"], mode


def test_the_pre_check_and_the_engines_error_name_the_same_fields():
    """check_collateral_inputs (every pydantic error, with its value) and the engine's LoanTermsError message
    (value_collateral's check, a job's or a run's failure) resolve through one map."""
    from types import SimpleNamespace

    from api.finance import PROBLEM_FIELDS, check_collateral_inputs, collateral_fields, loan_held_terms, problem_from
    from api.problems import ApiProblem
    from finance_engine.collateral import LoanTermsError, check_loan_terms

    pf = SimpleNamespace(n_parcels=10)
    base = {"amount_cny": 1e5, "term_years": 3, "interest_rate": 0.04}
    loan = {"amount_cny": 1e5, "term_years": 3, "rate": 0.04}
    for bad in ({"borrower_pd": 1.0}, {"term_years": 45}, {"crediting_horizon_years": 2},
                {"ltv_trigger": 0.5, "pledge_rate": 0.6}, {"insurance": {"agreed_price_cny_per_tco2e": -1}},
                {"insurance": {"agreed_price_cny_per_tco2e": 50, "covered_perils": ["flood"]}},
                {"price_model": "nope"}, {"price_scenario": "nope"}, {"interest_rate": 0.7}):
        for held in (None, loan):
            terms = {**base, **bad}
            with pytest.raises(ApiProblem) as pre:
                check_collateral_inputs(pf, terms, held, None, None)
            with pytest.raises(LoanTermsError) as eng:
                check_loan_terms(terms)
            want = [e["field"] for e in problem_from(eng.value, "invalid-loan-terms",
                                                     collateral_fields(loan_held_terms(terms, held))).errors]
            got = [e["field"] for e in pre.value.errors]
            assert got[:1] == want[:1] and set(want) <= set(got), (bad, held, got, want)
            assert all(f.startswith(("body/terms/", "loan/terms/")) for f in got), got
    assert PROBLEM_FIELDS["collateral"].resolve("term_years") == "body/terms/term_years"
    assert collateral_fields(["interest_rate"]).resolve("interest_rate") == "loan/terms/rate"
    # the horizon rule names the term: the loan's when it is the loan's
    with pytest.raises(ApiProblem) as pre:
        check_collateral_inputs(pf, {**base, "crediting_horizon_years": 2}, loan, None, None)
    assert [(e["field"], e.get("value")) for e in pre.value.errors] == [("loan/terms/term_years", None)]


# ---- 11. minor ------------------------------------------------------------------------------------------
def test_accounts_beyond_the_synchronous_limit_name_the_paths_that_fit(fresh):
    e = fresh(sync_max_cells=1000)
    c, h = e.client, e.h("bank")
    pid = upload(c, h, csv_bytes(20))
    body = assert_problem(c.get(f"/v1/portfolios/{pid}/accounts?paths=200", headers=h), 422, "sync-limit-exceeded")
    assert body["max_paths"] == 50 and body["errors"][0]["field"] == "query/paths"
    assert c.get(f"/v1/portfolios/{pid}/accounts?paths=50&level=portfolio", headers=h).status_code == 200


def test_the_page_maximum_is_the_servers_setting(fresh):
    e = fresh(page_max=10)
    c, h = e.client, e.h("bank")
    pids = [upload(c, h, csv_bytes(3, seed=k)) for k in range(12)]
    # a larger limit (the dashboard asks for 500) is lowered to the maximum, and the page says so
    page = c.get("/v1/portfolios?limit=500", headers=h).json()
    assert page["limit"] == 10 and len(page["items"]) == 10 and page["next_offset"] == 10 and page["total"] == 12
    assert c.get("/v1/portfolios?limit=10&offset=10", headers=h).json()["items"][-1]["id"] in pids
    assert c.get("/v1/portfolios", headers=h).json()["limit"] == 10  # the default, lowered to the maximum
    limit = next(p for p in e.app.openapi()["paths"]["/v1/portfolios"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["default"] == 10 and "maximum, 10" in limit["description"]


def test_stress_scenarios_are_library_names_never_server_paths(env, tmp_path, monkeypatch):
    from finance_engine.stress.scenarios import LIBRARY_DIR

    # the server's working directory holds a readable scenario file and a folder with library-like names
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text((LIBRARY_DIR / "severe_fire_weather.yaml").read_text(), encoding="utf-8")
    (tmp_path / "secrets_dir").mkdir()
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(5))
    answers = []
    for name in ("mine", "secrets_dir", "no_such_thing"):
        r = c.post("/v1/stress-tests", headers=h, json={"portfolio_id": pid, "scenarios": [name], "years": 1,
                                                        "paths": 8, "mode": "auto", "accounts": False})
        body = assert_problem(r, 422, "invalid-scenario")
        assert body["errors"][0]["field"] == "body/scenarios/0"
        answers.append(body["detail"].replace(name, "NAME"))
    assert len(set(answers)) == 1  # a file, a folder and nothing at all look the same: nothing to probe
    assert str(tmp_path) not in "".join(answers)


def test_admin_tenant_and_key_resources(env):
    c, adm = env.client, env.h("admin")
    r = c.post("/v1/admin/tenants", headers=adm, json={"name": "Qingyuan Bank", "role": "bank"})
    assert r.status_code == 201 and r.headers["location"] == f"/v1/admin/tenants/{r.json()['id']}"
    got = c.get(r.headers["location"], headers=adm)
    assert got.status_code == 200 and got.json() == r.json()
    assert_problem(c.get("/v1/admin/tenants/ten_nope", headers=adm), 404)
    assert_problem(c.get(r.headers["location"], headers=env.h("bank")), 403)
    k = c.post(f"{r.headers['location']}/keys", headers=adm, json={"label": "first"})
    assert k.status_code == 201 and c.get(k.headers["location"], headers=adm).json()["label"] == "first"
    assert_problem(c.get("/v1/admin/keys/000000000000", headers=adm), 404)


def test_the_service_starts_without_loading_the_valuation_engine():
    """The request schemas need only the loan terms (``finance_engine.loan_terms``): the service's app loads
    without the collateral valuation (about a second of imports, paid by the first valuation instead), and
    ``finance_engine.collateral`` still exports the terms it re-exports."""
    import subprocess
    import sys

    code = ("import sys, api.app; import finance_engine.loan_terms as t; "
            "print('finance_engine.collateral' in sys.modules); "
            "import finance_engine.collateral as c; print(c.LoanTerms is t.LoanTerms and c.LoanTermsError is "
            "t.LoanTermsError and c.check_loan_terms is t.check_loan_terms)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"], out


def test_a_write_is_committed_before_its_answer_and_a_failed_commit_is_no_success(fresh, monkeypatch):
    """The request's session commits before the response is sent (``Depends(db_session, scope="function")``):
    a commit that fails answers 500 -- not a 201 for a loan that was never stored, which the idempotency store
    would then replay for a day -- and the same request with the same key succeeds once the database does;
    a key revoked by one request is refused by the next."""
    from sqlalchemy.orm import Session as OrmSession

    e = fresh()
    c, h = e.client, e.h("bank")
    pid = upload(c, h)
    real_commit, failing = OrmSession.commit, {"on": False}

    def commit(self):
        if failing["on"] and any(isinstance(o, Instrument) for o in self.new):
            raise RuntimeError("disk full")
        return real_commit(self)
    monkeypatch.setattr(OrmSession, "commit", commit)
    body = {"name": "L", "terms": {"amount_cny": 1e5, "term_years": 3, "rate": 0.04}}
    hk = {**h, "Idempotency-Key": "loan-commit-1"}
    failing["on"] = True
    r = c.post(f"/v1/portfolios/{pid}/loans", headers=hk, json=body)
    assert_problem(r, 500)
    assert c.get("/v1/loans", headers=h).json()["total"] == 0
    failing["on"] = False
    again = c.post(f"/v1/portfolios/{pid}/loans", headers=hk, json=body)
    assert again.status_code == 201 and "Idempotency-Replayed" not in again.headers, again.text
    assert c.get(f"/v1/loans/{again.json()['id']}", headers=h).status_code == 200
    # revocation: effective for the next request
    admin = e.h("admin")
    tenant = next(t for t in c.get("/v1/admin/tenants", headers=admin).json()["items"] if t["name"] == "bank-a")
    made = c.post(f"/v1/admin/tenants/{tenant['id']}/keys", headers=admin, json={})
    assert made.status_code == 201, made.text
    key2 = {"Authorization": f"Bearer {made.json()['key']}"}
    assert c.get("/v1/loans", headers=key2).status_code == 200
    assert c.post(f"/v1/admin/keys/{made.json()['id']}/revoke", headers=admin).status_code == 200
    assert_problem(c.get("/v1/loans", headers=key2), 401)


@pytest.mark.parametrize("text,reason", [
    ("[" * 50_000 + "]" * 50_000, "too long"),                      # crashed the C loader (segfault)
    ("a: " + "[" * 40 + "]" * 40, "levels deep"),
    ("a0: &a0 [x, x]\n" + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8)),
     "aliases"),                                                      # 7 levels: 10^7 values once expanded
    ("v: [" + ", ".join(["1"] * 20_001) + "]", "values"),
])
def test_inline_yaml_scenarios_are_bounded_before_they_are_built(env, text, reason):
    """An inline scenario's YAML text is checked on the parser's events before anything is built: length,
    depth, node count and no anchors/aliases. Each bomb is a 422 naming the scenario, at once."""
    import time

    from models._yaml import load_untrusted_yaml

    with pytest.raises(ValueError, match=reason if reason != "too long" else "characters long"):
        load_untrusted_yaml(text)
    assert load_untrusted_yaml("name: x\nhazard: {fire: 2}") == {"name": "x", "hazard": {"fire": 2}}
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(5))
    t0 = time.perf_counter()
    r = c.post("/v1/stress-tests", headers=h, json={"portfolio_id": pid, "inline_scenarios": [text], "years": 1,
                                                    "paths": 8})
    assert time.perf_counter() - t0 < 5
    body = assert_problem(r, 422)
    assert "inline_scenarios" in r.text and body["errors"][0]["field"].startswith("body/inline_scenarios/0"), body


@pytest.mark.parametrize("path", ["/v1/portfolios", "/v1/simulations", "/v1/layer-pricing", "/v1/stress-tests"])
def test_a_deeply_nested_json_body_is_a_422_naming_the_body(env, path):
    """JSON nested beyond the parser's recursion (the routes that parse their own body and those FastAPI
    parses) answers 422 ``validation-error`` naming ``body``, never a 500 or a bare 400."""
    r = env.client.post(path, headers={**env.h("bureau"), "Content-Type": "application/json"},
                        content=b"[" * 100_000 + b"]" * 100_000)
    body = assert_problem(r, 422, "validation-error")
    assert body["errors"] == [{"field": "body", "reason": "the body's JSON nests too deeply to be read"}], body


def test_a_body_without_a_valid_key_is_refused_before_it_is_read(fresh):
    """A request to /v1/ that sends a body is authenticated first: without a key, or with an unknown one, it
    is 401 without reading the body (a body far over the size limit gets 401, not 413, and the server never
    reads the chunks of a streamed one); with a key the body is read and limited as before."""
    e = fresh(max_body_bytes=20_000)
    c = e.client
    read = {"chunks": 0}

    def stream():
        for _ in range(50):
            read["chunks"] += 1
            yield b"x" * 10_000
    for headers in ({}, {"Authorization": "Bearer cre_nothing_here"}):
        r = c.post("/v1/portfolios", headers={**headers, "Content-Type": "application/json"}, content=stream())
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert read["chunks"] <= 2, read  # at most what the client had sent before the answer
    big = c.post("/v1/portfolios", headers={**e.h("bank"), "Content-Type": "application/json"},
                 content=b"x" * 30_000)
    assert_problem(big, 413)
    ok = c.post("/v1/simulations", headers=e.h("bank"), json={"portfolio_id": "pf_nope", "years": 1, "paths": 8})
    assert_problem(ok, 404)  # the key checked before the body is the app's caller too


def test_a_request_path_cannot_forge_a_log_line(env, caplog):
    """The access log escapes control characters of the (percent-decoded) path."""
    import logging

    with caplog.at_level(logging.INFO, logger="carbon_risk"):
        env.client.get("/v1/x%0aFAKE%20200", headers=env.h("bank"))
    lines = [r.getMessage() for r in caplog.records if "FAKE" in r.getMessage()]
    assert lines and all("\n" not in m and "\\n" in m for m in lines), lines


def test_jobs_run_in_turn_by_tenant():
    """The job queue hands out one job per tenant in turn, each tenant's in the order they came."""
    import queue as queue_mod

    from api.jobs import FairQueue

    q = FairQueue()
    for i in range(4):
        q.put(f"bank-{i}", "bank")
    q.put("bureau-0", "bureau")
    q.put("insurer-0", "insurer")
    q.put("bureau-1", "bureau")
    assert len(q) == 7
    assert [q.get(0) for _ in range(7)] == ["bank-0", "bureau-0", "insurer-0", "bank-1", "bureau-1", "bank-2",
                                            "bank-3"]
    with pytest.raises(queue_mod.Empty):
        q.get(0.01)


def test_a_tenant_may_have_only_so_many_jobs_queued_or_running(fresh):
    """One job more than ``max_active_jobs_per_tenant`` is a 429 ``too-many-jobs`` (with Retry-After), stored
    nowhere; another tenant is not affected; a cancelled job frees its place."""
    e = fresh(start_jobs=False, max_active_jobs_per_tenant=2)
    c = e.client
    body = lambda pid: {"portfolio_id": pid, "years": 1, "paths": 8, "mode": "job"}  # noqa: E731
    pa, pb = upload(c, e.h("bank")), upload(c, e.h("bank", "b"))
    jobs = [c.post("/v1/simulations", headers=e.h("bank"), json=body(pa)) for _ in range(2)]
    assert [r.status_code for r in jobs] == [202, 202]
    over = c.post("/v1/simulations", headers=e.h("bank"), json=body(pa))
    p = assert_problem(over, 429, "too-many-jobs")
    assert over.headers["Retry-After"] and p["limit"] == 2 and p["active_jobs"] == 2
    assert c.get("/v1/jobs", headers=e.h("bank")).json()["total"] == 2
    assert c.post("/v1/simulations", headers=e.h("bank", "b"), json=body(pb)).status_code == 202
    assert c.post(f"/v1/jobs/{jobs[0].json()['id']}/cancel", headers=e.h("bank")).status_code == 200
    assert c.post("/v1/simulations", headers=e.h("bank"), json=body(pa)).status_code == 202


def test_a_memo_that_cannot_be_rendered_does_not_lose_the_valuation_of_its_job(fresh, monkeypatch):
    """A collateral job renders its memo after the valuation; a rendering failure (a report bug) keeps the
    valuation (the job succeeds, its log says the memo was not rendered) instead of failing the job as bad
    loan terms."""
    import finance_engine.reports.collateral_memo as memo_mod

    def broken(*a, **k):
        raise ValueError("Axis limits cannot be NaN or Inf")
    monkeypatch.setattr(memo_mod, "render_collateral_memo", broken)
    e = fresh()
    c, h = e.client, e.h("bank")
    pid = upload(c, h, csv_bytes(5))
    r = c.post("/v1/collateral-valuations", headers=h, json={"portfolio_id": pid, "terms": TERMS, "paths": 32,
                                                            "sensitivities": False, "mode": "job"})
    assert r.status_code == 202, r.text
    job = wait_job(c, h, r.json()["id"])
    assert job["status"] == "succeeded", job
    assert any("memo could not be rendered" in line for line in job["log"]), job["log"]
    assert c.get(f"/v1/collateral-valuations/{job['result_id']}", headers=h).status_code == 200
