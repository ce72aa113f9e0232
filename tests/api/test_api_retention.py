"""Review of the data a deleted portfolio leaves behind for the memos of its valuations: kept only for a memo a
request can still render (not a job-sized valuation whose job stored none, not one this code no longer
reproduces), for at most ``CRE_RETAINED_DATA_DAYS``, purged when it expires (at a delete, a memo request, or
``carbon-risk admin retained purge``), and said by the delete's audit record; a valuation saved as its portfolio
is deleted keeps the data on SQLite too (the insert before the portfolio check); concurrent retentions of one
portfolio write one row; a stress test names a refused registered loan by its resource."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from api.db.models import AuditRecord, FinanceResult, PortfolioRow, ResultArtifact, RetainedPortfolio
from api.settings import Settings
from tests.api.conftest import upload
from tests.api.test_api_flows import assert_problem, wait_job
from tests.conftest import make_frame

TERMS = {"amount_cny": 200_000.0, "term_years": 3, "interest_rate": 0.045, "crediting_horizon_years": 10}


@pytest.fixture(scope="module")
def rt(two_tenants):
    """The conftest's app with tenants a and b of every role (SQLite and PostgreSQL)."""
    return two_tenants


@pytest.fixture
def settings_of(rt):
    """Change the app's settings for one test (restored after it)."""
    app = rt[0]
    before = app.state.settings

    def change(**kw):
        app.state.settings = before.with_(**kw)

    yield change
    app.state.settings = before


_seed = iter(range(100, 10_000))


def _portfolio(c, h, name="kept") -> str:
    return upload(c, h, make_frame(5, seed=next(_seed)).to_csv(index=False).encode(), name=name)


def _value(c, h, pid, **kw) -> dict:
    r = c.post("/v1/collateral-valuations", headers=h,
               json={"portfolio_id": pid, "terms": TERMS, "paths": 64, "seed": next(_seed), "sensitivities": False,
                     **kw})
    assert r.status_code in (201, 202), r.text
    return r.json()


def _kept(app, pid) -> RetainedPortfolio | None:
    with app.state.db.session() as s:
        return s.get(RetainedPortfolio, pid)


def _audit(c, h, action, pid) -> list[dict]:
    return [r["detail"] for r in c.get(f"/v1/audit?action={action}&resource_id={pid}", headers=h).json()["items"]]


def _delete(c, h, pid) -> dict:
    r = c.delete(f"/v1/portfolios/{pid}", headers=h)
    assert r.status_code == 204, r.text
    (rec,) = _audit(c, h, "portfolio.delete", pid)
    return rec


# ---- what is kept, for what, until when ----------------------------------------------------------------
def test_a_delete_says_what_it_keeps_and_until_when(rt):
    app, c, h = rt
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    before = datetime.now(timezone.utc)
    rec = _delete(c, h("bank"), pid)
    assert rec["data_kept_for"] == [v["id"]]
    until = datetime.fromisoformat(rec["data_kept_until"])
    days = app.state.settings.retained_data_days
    assert days == 30 and before + timedelta(days=days) <= until <= datetime.now(timezone.utc) + timedelta(days=days)
    assert _kept(app, pid).expires_at == until
    memo = c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank"))
    assert memo.status_code == 200, memo.text
    assert _kept(app, pid) is None
    assert [d["reason"] for d in _audit(c, h("bank"), "portfolio.data_dropped", pid)] == [
        "the memos it was kept for are rendered"]


def test_the_retention_period_is_a_setting_and_0_keeps_nothing(rt, settings_of):
    assert Settings.from_env({}).retained_data_days == 30
    assert Settings.from_env({"CRE_RETAINED_DATA_DAYS": "7"}).retained_data_days == 7
    assert Settings.from_env({"CRE_RETAINED_DATA_DAYS": "-1"}).retained_data_days == 0
    with pytest.raises(ValueError, match="CRE_RETAINED_DATA_DAYS"):
        Settings.from_env({"CRE_RETAINED_DATA_DAYS": "soon"})
    app, c, h = rt
    settings_of(retained_data_days=0)
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    rec = _delete(c, h("bank"), pid)
    assert rec["data_kept_for"] == [] and rec["data_kept_until"] is None
    assert _kept(app, pid) is None
    assert_problem(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")), 404, "not-found")


def test_a_job_sized_valuation_whose_job_stored_no_memo_keeps_no_data(rt, settings_of):
    """Its memo is never rendered in a request (409 memo-not-rendered): nothing may be kept for it."""
    app, c, h = rt
    pid = _portfolio(c, h("bank"))
    job = _value(c, h("bank"), pid, mode="job")  # 5 parcels x 64 paths x 10 years = 3,200 cells
    done = wait_job(c, h("bank"), job["id"])
    assert done["status"] == "succeeded", done
    vid = done["result_id"] if "result_id" in done else done["result"]["id"]
    with app.state.db.session() as s:  # a job made before jobs rendered memos: none stored
        s.delete(s.get(ResultArtifact, (vid, "memo.html")))
    settings_of(sync_max_cells=1_000)  # and over what a request re-runs
    rec = _delete(c, h("bank"), pid)
    assert rec["data_kept_for"] == [] and rec["data_kept_until"] is None
    assert _kept(app, pid) is None
    # the memo answers what docs/api.md says of such a valuation, portfolio or not: 409 memo-not-rendered
    assert_problem(c.get(f"/v1/collateral-valuations/{vid}/memo", headers=h("bank")), 409, "memo-not-rendered")


def _tamper(app, vid):
    """The stored valuation as a code version that this one no longer reproduces would have stored it."""
    with app.state.db.session() as s:
        row = s.get(FinanceResult, vid)
        row.result = {**row.result, "a_figure_this_code_no_longer_gives": 1.0}


def test_a_valuation_this_code_no_longer_reproduces_keeps_no_data(rt):
    app, c, h = rt
    # deleted first: the 409 drops the data kept for it
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    assert _delete(c, h("bank"), pid)["data_kept_for"] == [v["id"]]
    _tamper(app, v["id"])
    assert_problem(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")), 409, "conflict")
    assert _kept(app, pid) is None
    (dropped,) = _audit(c, h("bank"), "portfolio.data_dropped", pid)
    assert "does not reproduce" in dropped["reason"]
    assert_problem(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")), 404, "not-found")
    # refused first: a later delete keeps nothing for it
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    _tamper(app, v["id"])
    assert_problem(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")), 409, "conflict")
    rec = _delete(c, h("bank"), pid)
    assert rec["data_kept_for"] == [] and _kept(app, pid) is None


def test_retained_data_expires_and_is_purged(rt):
    app, c, h = rt
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    other = _portfolio(c, h("bank"))
    w = _value(c, h("bank"), other)
    _delete(c, h("bank"), pid)
    _delete(c, h("bank"), other)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    with app.state.db.session() as s:
        s.execute(update(RetainedPortfolio).where(RetainedPortfolio.id.in_([pid, other])).values(expires_at=past))
    # a memo request purges what expired (every tenant's, each audited in its own tenant) and answers 404
    assert_problem(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")), 404, "not-found")
    assert _kept(app, pid) is None and _kept(app, other) is None
    for p in (pid, other):
        (rec,) = _audit(c, h("bank"), "portfolio.data_dropped", p)
        assert rec["reason"].startswith("expired on ")
    assert_problem(c.get(f"/v1/collateral-valuations/{w['id']}/memo", headers=h("bank")), 404, "not-found")
    # a delete purges too: another tenant's expired data goes with any portfolio delete
    third = _portfolio(c, h("bank", "b"))
    _value(c, h("bank", "b"), third)
    _delete(c, h("bank", "b"), third)
    with app.state.db.session() as s:
        s.execute(update(RetainedPortfolio).where(RetainedPortfolio.id == third).values(expires_at=past))
    _delete(c, h("bank"), _portfolio(c, h("bank")))
    assert _kept(app, third) is None
    (rec,) = _audit(c, h("bank", "b"), "portfolio.data_dropped", third)
    # the server's own doing in tenant a's request: tenant b's record carries no request id of tenant a's
    with app.state.db.session() as s:
        rids = s.scalars(select(AuditRecord.request_id).where(AuditRecord.action == "portfolio.data_dropped",
                                                               AuditRecord.resource_id == third)).all()
    assert rids == ["-"]


def test_expired_data_is_not_used_before_it_is_purged(rt):
    app, c, h = rt
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    _delete(c, h("bank"), pid)
    from api.routes._finance import portfolio_of
    from api.security import Principal

    with app.state.db.session() as s:
        kept = s.get(RetainedPortfolio, pid)
        kept.expires_at = datetime.now(timezone.utc) - timedelta(seconds=1)
    with app.state.db.session() as s:
        row = s.get(FinanceResult, v["id"])
        who = Principal(tenant_id=row.tenant_id, tenant_name="bank-a", role="bank", key_id=row.created_by)
        with pytest.raises(Exception) as exc:
            portfolio_of(s, who, row)
    assert getattr(exc.value, "status", None) == 404


def test_admin_purges_retained_data(rt, capsys):
    from api.cli import main

    app, c, h = rt
    url = app.state.settings.database_url
    pid = _portfolio(c, h("bank"))
    _value(c, h("bank"), pid)
    _delete(c, h("bank"), pid)
    assert main(["admin", "retained", "list", "--format", "json", "--database-url", url]) == 0
    assert pid in capsys.readouterr().out
    # nothing expired: the default purge keeps it
    assert main(["admin", "retained", "purge", "--database-url", url]) == 0
    assert _kept(app, pid) is not None
    capsys.readouterr()
    # named: purged now, whatever its expiry (a tenant asked for its data to go)
    assert main(["admin", "retained", "purge", pid, "--database-url", url]) == 0
    assert pid in capsys.readouterr().out
    assert _kept(app, pid) is None
    (rec,) = _audit(c, h("bank"), "portfolio.data_dropped", pid)
    assert rec["reason"] == "purged by an administrator"
    # expired ones go with the default purge
    pid = _portfolio(c, h("bank"))
    _value(c, h("bank"), pid)
    _delete(c, h("bank"), pid)
    with app.state.db.session() as s:
        s.execute(update(RetainedPortfolio).where(RetainedPortfolio.id == pid)
                  .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
    assert main(["admin", "retained", "purge", "--database-url", url]) == 0
    assert _kept(app, pid) is None


# ---- a delete racing the valuation's save ---------------------------------------------------------------
@pytest.mark.parametrize("where", ["before-insert", "after-insert"])
def test_a_delete_committing_while_a_valuation_is_saved_keeps_its_data(rt, monkeypatch, where):
    """The delete runs inside the save, next to the result's INSERT (before it: between the old code's portfolio
    check and its insert; after it). On SQLite the old check (FOR SHARE, ignored, no BEGIN before a SELECT) let a
    delete commit between the two: the valuation was stored, its data dropped, its memo 404."""
    import api.routes._finance as fin

    app, c, h = rt
    pid = _portfolio(c, h("bank"), name="raced")
    real = fin.store_result
    deleting: dict = {}

    def delete_in_a_thread():
        t = threading.Thread(target=lambda: deleting.setdefault(
            "r", c.delete(f"/v1/portfolios/{pid}", headers=h("bank"))))
        t.start()
        t.join(timeout=2)  # it commits at once, or waits for a lock this save holds (then after its commit)
        deleting["t"] = t

    def store(s, **kw):
        if kw.get("pf") is None or kw["pf"].id != pid:
            return real(s, **kw)
        if where == "before-insert":
            delete_in_a_thread()
        row = real(s, **kw)
        if where == "after-insert":
            delete_in_a_thread()
        return row

    monkeypatch.setattr(fin, "store_result", store)
    v = _value(c, h("bank"), pid)
    monkeypatch.setattr(fin, "store_result", real)
    deleting["t"].join(timeout=60)
    assert deleting["r"].status_code == 204, deleting["r"].text
    assert_problem(c.get(f"/v1/portfolios/{pid}", headers=h("bank")), 404)
    kept = _kept(app, pid)
    assert kept is not None and kept.expires_at > datetime.now(timezone.utc)
    # said by the delete's record, or (it committed first) by the save's
    said = _audit(c, h("bank"), "portfolio.delete", pid)[0]["data_kept_for"] + [
        x for d in _audit(c, h("bank"), "portfolio.data_kept", pid) for x in d["data_kept_for"]]
    assert v["id"] in said
    memo = c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank"))
    assert memo.status_code == 200, memo.text
    assert _kept(app, pid) is None


# ---- concurrent retentions of one portfolio -------------------------------------------------------------
def _retain(app, s, pf):
    from api.services import retain_portfolio_data

    st = app.state.settings
    return retain_portfolio_data(s, pf, sync_max=st.sync_max_cells, days=st.retained_data_days)


def _copy(app, pf: PortfolioRow, expires_at):
    with app.state.db.session() as s:
        s.add(RetainedPortfolio(id=pf.id, tenant_id=pf.tenant_id, source=pf.source, region=pf.region,
                                data_sha256=pf.data_sha256, data_parquet=pf.data_parquet,
                                deleted_at=datetime.now(timezone.utc), expires_at=expires_at))


def test_a_retention_committed_by_another_transaction_meanwhile_is_no_error(rt):
    """Two saves needing the data both found no retained row, then both inserted it: the second was a 500 that
    lost its computed result. The other transaction commits the row right after this one looked for it."""
    app, c, h = rt
    pid = _portfolio(c, h("bank"))
    v = _value(c, h("bank"), pid)
    with app.state.db.session() as s:
        pf = s.get(PortfolioRow, pid)
    first = datetime.now(timezone.utc) + timedelta(days=3)
    with app.state.db.session() as s:
        real_get = s.get

        def get(entity, ident, **kw):
            found = real_get(entity, ident, **kw)
            if entity is RetainedPortfolio and found is None and _kept(app, pid) is None:
                _copy(app, pf, first)  # committed by a concurrent save between the look and the insert
            return found

        s.get = get
        kept_for, until = _retain(app, s, pf)
    assert kept_for == [v["id"]]
    kept = _kept(app, pid)
    assert kept is not None and until is not None and abs(kept.expires_at - until) < timedelta(seconds=1)


def test_concurrent_retentions_write_one_row(rt):
    app, c, h = rt
    pid = _portfolio(c, h("bank"))
    _value(c, h("bank"), pid)
    with app.state.db.session() as s:
        pf = s.get(PortfolioRow, pid)
    # already kept (committed): the retention keeps the first expiry
    first = datetime.now(timezone.utc) + timedelta(days=2)
    _copy(app, pf, first)
    with app.state.db.session() as s:
        assert abs(_retain(app, s, pf)[1] - first) < timedelta(seconds=1)
    with app.state.db.session() as s:
        s.delete(s.get(RetainedPortfolio, pid))
    # kept by a transaction not committed yet: the other waits for it, then keeps its row
    errors: list = []
    with app.state.db.session() as a:
        _retain(app, a, pf)

        def other():
            try:
                with app.state.db.session() as b:
                    _retain(app, b, pf)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(timeout=1)  # (it waits for this transaction's lock, or has not reached its insert yet)
    t.join(timeout=60)
    assert not t.is_alive() and errors == []
    with app.state.db.session() as s:
        assert s.scalar(select(RetainedPortfolio.id).where(RetainedPortfolio.id == pid)) == pid


# ---- a stress test's refused registered loan -------------------------------------------------------------
def test_a_refused_registered_loan_is_named_by_its_resource(rt):
    app, c, h = rt
    pid = upload(c, h("bureau"), make_frame(12, seed=61).assign(project_id="P").to_csv(index=False).encode())
    late = c.post(f"/v1/portfolios/{pid}/loans", headers=h("bureau"), json={
        "terms": {"amount_cny": 1e5, "term_years": 2, "rate": 0.05, "crediting_start_year": 2081}})
    assert late.status_code == 201, late.text
    late_id = late.json()["id"]
    parcels = [p["parcel_id"] for p in c.get(f"/v1/portfolios/{pid}?limit=3", headers=h("bureau"))
               .json()["parcels"]["items"]]
    own = {"id": "own", "parcel_ids": parcels, "terms": {"amount_cny": 1e5, "term_years": 2, "interest_rate": 0.05}}

    def stress(loans):
        return c.post("/v1/stress-tests", headers=h("bureau"), json={
            "portfolio_id": pid, "scenarios": ["carbon_price_crash"], "years": 2, "paths": 16, "seed": 8,
            "mode": "auto", "use_registered_loans": True, "accounts": False, "footprints": False,
            "registry": {"loans": loans}})

    # the body has one loan (index 0); the registered loan is the merged list's index 1, which the body has not
    problem = assert_problem(stress([own]), 422, "invalid-stress-test")
    assert [(e["field"], e["value"]) for e in problem["errors"]] == [
        (f"loan/{late_id}/terms/crediting_start_year", 2081)]
    assert late_id in problem["detail"] and "crediting_start_year" in problem["detail"]
    assert "registry.loans.1" not in problem["detail"]
    # the body's own loan is still named at its place in the body
    bad_own = {**own, "terms": {**own["terms"], "crediting_start_year": 2081}}
    problem = assert_problem(stress([bad_own]), 422, "invalid-stress-test")
    assert [e["field"] for e in problem["errors"]] == ["body/registry/loans/0/terms"]
