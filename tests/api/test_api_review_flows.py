"""Defects of the user-flow review: a valuation's memo after its portfolio is deleted, row filters that matched
nothing silently, the layer-pricing row named for the reported rule, a policy's limit named at its field."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import delete, func, select

from api.db.models import PortfolioRow
from tests.api.conftest import upload
from tests.api.test_api_flows import assert_problem
from tests.conftest import make_frame

TERMS = {"amount_cny": 200_000.0, "term_years": 3, "interest_rate": 0.045, "crediting_horizon_years": 10}


@pytest.fixture(scope="module")
def rv(two_tenants):
    """The conftest's app with tenants a and b of every role (SQLite and PostgreSQL)."""
    return two_tenants


def _retained(app, pid) -> bool:
    """Whether the deleted portfolio's data is kept (for a memo not rendered yet)."""
    from api.db.models import RetainedPortfolio

    with app.state.db.session() as s:
        return s.get(RetainedPortfolio, pid) is not None


def _value(c, h, pid, seed=3) -> dict:
    v = c.post("/v1/collateral-valuations", headers=h,
               json={"portfolio_id": pid, "terms": TERMS, "paths": 64, "seed": seed, "sensitivities": False})
    assert v.status_code == 201, v.text
    assert v.json()["reports"] == [f"/v1/collateral-valuations/{v.json()['id']}/memo"]
    return v.json()


def _delete_audit(c, h, pid) -> dict:
    recs = c.get(f"/v1/audit?action=portfolio.delete&resource_id={pid}", headers=h).json()["items"]
    assert len(recs) == 1, recs
    return recs[0]["detail"]


# ---- 1. the memo of a valuation whose portfolio was deleted ------------------------------------------------
def test_memo_of_a_valuation_is_rendered_after_its_portfolio_is_deleted(rv):
    app, c, h = rv
    pid = upload(c, h("bank"), make_frame(5, seed=11).to_csv(index=False).encode(), name="to delete")
    v = _value(c, h("bank"), pid)
    assert c.delete(f"/v1/portfolios/{pid}", headers=h("bank")).status_code == 204
    # the portfolio is gone for every purpose ...
    assert_problem(c.get(f"/v1/portfolios/{pid}", headers=h("bank")), 404)
    assert pid not in {p["id"] for p in c.get("/v1/portfolios?limit=500", headers=h("bank")).json()["items"]}
    assert_problem(c.post("/v1/collateral-valuations", headers=h("bank"),
                          json={"portfolio_id": pid, "terms": TERMS, "paths": 64}), 404)
    # ... but its data is kept for the valuation whose memo is not rendered yet (another tenant sees nothing)
    assert_problem(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank", "b")), 404)
    # concurrent first requests share one run and all get the memo
    with ThreadPoolExecutor(3) as ex:
        got = list(ex.map(lambda _: c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")), range(3)))
    assert [r.status_code for r in got] == [200] * 3, [r.text[:300] for r in got]
    assert got[0].headers["content-type"].startswith("text/html") and b"Collateral memo" in got[0].content
    assert got[1].content == got[0].content == got[2].content
    # the delete said what it kept the data for; the memo is stored, so the kept data is released, and the memo
    # still answers (from the store)
    assert _delete_audit(c, h("bank"), pid)["data_kept_for"] == [v["id"]]
    assert not _retained(app, pid)
    again = c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank"))
    assert again.status_code == 200 and again.content == got[0].content
    # the result itself is unchanged
    assert c.get(f"/v1/collateral-valuations/{v['id']}", headers=h("bank")).json() == v


def test_deleting_a_portfolio_whose_memos_are_rendered_keeps_no_data(rv):
    app, c, h = rv
    pid = upload(c, h("bank"), make_frame(5, seed=12).to_csv(index=False).encode(), name="memo first")
    v = _value(c, h("bank"), pid, seed=4)
    memo = c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank"))
    assert memo.status_code == 200
    assert c.delete(f"/v1/portfolios/{pid}", headers=h("bank")).status_code == 204
    assert _delete_audit(c, h("bank"), pid)["data_kept_for"] == []
    assert not _retained(app, pid)
    assert c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")).content == memo.content


def test_a_portfolio_deleted_while_its_valuation_is_saved_keeps_the_data_for_its_memo(rv):
    app, c, h = rv
    pid = upload(c, h("bank"), make_frame(5, seed=13).to_csv(index=False).encode(), name="raced")
    pool = app.state.compute
    real = pool.run

    async def run_then_delete(fn, *a, **kw):  # the delete commits after the valuation ran, before it is saved
        out = await real(fn, *a, **kw)
        with app.state.db.session() as s:
            s.execute(delete(PortfolioRow).where(PortfolioRow.id == pid))
        return out

    pool.run = run_then_delete
    try:
        v = _value(c, h("bank"), pid, seed=5)
    finally:
        pool.run = real
    assert_problem(c.get(f"/v1/portfolios/{pid}", headers=h("bank")), 404)
    memo = c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank"))
    assert memo.status_code == 200, memo.text
    assert not _retained(app, pid)  # released with the memo


# ---- 2. row filters ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_id(rv):
    app, c, h = rv
    pid = upload(c, h("bank"), make_frame(20, seed=14).to_csv(index=False).encode(), name="filters")
    r = c.post("/v1/simulations", headers=h("bank"),
               json={"portfolio_id": pid, "years": 3, "paths": 32, "seed": 2, "levels": ["portfolio", "county"]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _filter_error(r, field: str) -> dict:
    body = assert_problem(r, 422, "validation-error")
    (e,) = body["errors"]
    assert e["field"] == field, body
    return e


def test_summary_filters_refuse_values_no_row_has(rv, run_id):
    app, c, h = rv
    url = f"/v1/simulations/{run_id}/summary"
    ok = c.get(f"{url}?level=county&metric=stock_tco2e&limit=500", headers=h("bank")).json()
    assert ok["total"] > 0 and {r["metric"] for r in ok["items"]} == {"stock_tco2e"}
    counties = sorted({r["group"] for r in ok["items"]})
    # a horizon figure is not a yearly metric: 422 naming query/metric, listing the yearly ones, saying where it is
    e = _filter_error(c.get(f"{url}?level=county&metric=stock_end_tco2e", headers=h("bank")), "query/metric")
    assert "stock_tco2e" in e["allowed"] and "stock_end_tco2e" not in e["allowed"]
    assert "horizon" in e["reason"] and "stock_tco2e" in e["reason"]
    e = _filter_error(c.get(f"{url}?metric=nope", headers=h("bank")), "query/metric")
    assert e["value"] == "nope" and e["allowed_count"] == len(e["allowed"])
    # a level the run has not: its levels
    e = _filter_error(c.get(f"{url}?level=village", headers=h("bank")), "query/level")
    assert e["allowed"] == ["county", "portfolio"]
    # a group the level has not: the level's groups
    e = _filter_error(c.get(f"{url}?level=county&group=Nowhere", headers=h("bank")), "query/group")
    assert e["allowed"] == counties
    one = c.get(f"{url}?level=county&group={counties[0]}&metric=stock_tco2e", headers=h("bank")).json()
    assert one["total"] == 3 and {r["group"] for r in one["items"]} == {counties[0]}


def test_summary_year_is_the_0_based_index_and_calendar_year_a_filter_of_its_own(rv, run_id):
    app, c, h = rv
    url = f"/v1/simulations/{run_id}/summary?level=portfolio&metric=stock_tco2e"
    e = _filter_error(c.get(f"{url}&year=2030", headers=h("bank")), "query/year")
    assert "0-based year index" in e["reason"] and "year 0 .. 2" in e["reason"]
    assert "calendar years 2026 .. 2028" in e["reason"] and (e["min"], e["max"]) == (0, 2)
    e = _filter_error(c.get(f"{url}&year=2027", headers=h("bank")), "query/year")
    assert "calendar_year=2027" in e["reason"] and "year=1" in e["reason"]
    _filter_error(c.get(f"{url}&year=-1", headers=h("bank")), "query/year")
    y = c.get(f"{url}&year=2", headers=h("bank")).json()
    assert y["total"] == 1 and y["items"][0]["year"] == 2 and y["items"][0]["calendar_year"] == 2028
    cy = c.get(f"{url}&calendar_year=2027", headers=h("bank")).json()
    assert cy["total"] == 1 and (cy["items"][0]["year"], cy["items"][0]["calendar_year"]) == (1, 2027)
    e = _filter_error(c.get(f"{url}&calendar_year=2040", headers=h("bank")), "query/calendar_year")
    assert (e["min"], e["max"]) == (2026, 2028)


def test_stress_table_filters_refuse_values_no_row_has(rv):
    app, c, h = rv
    pid = upload(c, h("bureau"), make_frame(8, seed=15).to_csv(index=False).encode(), name="stress")
    r = c.post("/v1/stress-tests", headers=h("bureau"),
               json={"portfolio_id": pid, "scenarios": ["carbon_price_crash"], "years": 2, "paths": 16, "seed": 8,
                     "mode": "auto", "accounts": False, "footprints": False})
    assert r.status_code == 201, r.text
    url = f"/v1/stress-tests/{r.json()['id']}/tables"
    rows = c.get(f"{url}/horizon?limit=500", headers=h("bureau")).json()["items"]
    metrics, scenarios = sorted({x["metric"] for x in rows}), sorted({x["scenario"] for x in rows})
    ok = c.get(f"{url}/horizon?metric={metrics[0]}&scenario={scenarios[-1]}", headers=h("bureau")).json()
    assert ok["total"] > 0
    e = _filter_error(c.get(f"{url}/horizon?metric=nope", headers=h("bureau")), "query/metric")
    assert e["allowed"] == metrics and "nope" in e["reason"]
    e = _filter_error(c.get(f"{url}/horizon?scenario=nope", headers=h("bureau")), "query/scenario")
    assert e["allowed"] == scenarios
    e = _filter_error(c.get(f"{url}/horizon?level=nope", headers=h("bureau")), "query/level")
    assert e["allowed"] == sorted({x["level"] for x in rows})


# ---- 3. the layer-pricing row of the reported rule ---------------------------------------------------------
def test_layer_table_names_the_row_of_the_rule_the_engine_reported(rv):
    app, c, h = rv
    table = "year,event_id,loss\n0,1,100\n1,2,-5\n2,3,abc\n"  # -5 breaks ">= 0", but "abc" is the reported rule
    r = c.post("/v1/layer-pricing", headers=h("insurer"), files={"file": ("elt.csv", table.encode(), "text/csv")},
               data={"n_years": "10", "attachment": "0"})
    body = assert_problem(r, 422, "invalid-loss-table")
    e = body["errors"][0]
    assert "must be numeric" in e["reason"], body
    assert (e["field"], e["row"], e["column"], e["value"]) == ("body/file", 3, "loss", "abc"), body
    assert body["detail"].endswith("first at row 3")
    rows = [{"year": 0, "event_id": 1, "loss": 100}, {"year": 1, "event_id": 2, "loss": -5},
            {"year": 2, "event_id": 3, "loss": "abc"}]
    r = c.post("/v1/layer-pricing", headers=h("insurer"), json={"rows": rows, "n_years": 10, "attachment": 0})
    e = assert_problem(r, 422, "invalid-loss-table")["errors"][0]
    assert (e["field"], e["row"], e["column"], e["value"]) == ("body/rows", 3, "loss", "abc"), e
    # a gap is the missing rule's row (value null), not an earlier negative
    table = "year,event_id,loss\n0,1,-1\n1,2,\n"
    body = assert_problem(c.post("/v1/layer-pricing", headers=h("insurer"), data={"n_years": "10", "attachment": "0"},
                                 files={"file": ("elt.csv", table.encode(), "text/csv")}), 422, "invalid-loss-table")
    assert "missing" in body["errors"][0]["reason"], body
    assert (body["errors"][0]["row"], body["errors"][0]["value"]) == (2, None), body


# ---- 4. a policy's limit above its sum insured names the field ---------------------------------------------
@pytest.mark.parametrize("terms,field", [
    ({"limit_cny": 2e6}, "body/terms/limit_cny"),
    ({"deductible_cny": 6e5, "limit_cny": 5e5}, "body/terms/limit_cny"),
    ({"deductible_cny": 1e6}, "body/terms/deductible_cny"),
])
def test_policy_amount_bounds_name_their_field(rv, terms, field):
    app, c, h = rv
    pid = upload(c, h("insurer"), make_frame(5, seed=16).to_csv(index=False).encode(), name="policies")
    r = c.post(f"/v1/portfolios/{pid}/policies", headers=h("insurer"),
               json={"terms": {"sum_insured_cny": 1e6, "perils": ["fire"], **terms}})
    body = assert_problem(r, 422)
    assert [e["field"] for e in body["errors"]] == [field], json.dumps(body)
    ok = c.post(f"/v1/portfolios/{pid}/policies", headers=h("insurer"),
                json={"terms": {"sum_insured_cny": 1e6, "perils": ["fire"], "deductible_cny": 1e4, "limit_cny": 1e6}})
    assert ok.status_code == 201, ok.text
