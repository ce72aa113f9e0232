"""A collateral request with the pledged project's crediting start year and period (SQLite and PostgreSQL)."""

from tests.api.conftest import csv_bytes, upload
from tests.api.test_api_flows import assert_problem
from tests.conftest import make_frame

TERMS = {"amount_cny": 100_000.0, "term_years": 3, "interest_rate": 0.04, "crediting_horizon_years": 10}


def test_a_valuation_takes_the_projects_crediting_start_and_refuses_one_it_cannot(env):
    c, h = env.client, env.h("bank")
    pid = upload(c, h, csv_bytes(10))
    cv = lambda terms: c.post("/v1/collateral-valuations", headers=h, json={  # noqa: E731
        "portfolio_id": pid, "paths": 64, "sensitivities": False, "terms": {**TERMS, **terms}})
    ok = cv({"crediting_start_year": 2019, "crediting_period_years": 20})
    assert ok.status_code == 201, ok.text
    body = ok.json()
    assert body["result"]["terms"]["crediting_start_year"] == 2019
    assert body["result"]["terms"]["crediting_period_years"] == 20
    # refused before any work, at the term, with the value given: a start more than 50 years after the
    # valuation's first year, one whose first verification falls after the crediting horizon, a period that ended
    # before it, and one shorter than a monitoring period
    for bad, field in (({"crediting_start_year": 2081}, "crediting_start_year"),
                       ({"crediting_start_year": 2071}, "crediting_start_year"),
                       ({"crediting_start_year": 1980}, "crediting_start_year"),
                       ({"crediting_period_years": 3}, "crediting_period_years")):
        problem = assert_problem(cv(bad), 422)
        assert [(e["field"], e.get("value")) for e in problem["errors"]] == \
            [(f"body/terms/{field}", next(iter(bad.values())))], problem
    # out of the schema's bounds: pydantic's own refusal
    problem = assert_problem(cv({"crediting_start_year": 1800}), 422)
    assert problem["errors"][0]["field"].endswith("crediting_start_year"), problem


def test_a_simulation_takes_the_crediting_start_and_keeps_the_identity_of_a_request_without_it(env):
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, csv_bytes(8, seed=3))
    run = lambda **kw: c.post("/v1/simulations", headers=h, json={  # noqa: E731
        "portfolio_id": pid, "years": 8, "paths": 32, "levels": ["portfolio"], **kw})
    r = run(crediting_start_year=2023, crediting_period_years=10)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["provenance"]["crediting"]["years_credited_before_start"] == 3
    assert out["provenance"]["crediting"]["crediting_period_years"] == 10
    assert out["audit"]["request"]["crediting_start_year"] == 2023
    # a request that does not set them records neither (its identity is what it was before they existed)
    plain = run()
    assert plain.status_code == 201, plain.text
    assert "crediting_start_year" not in plain.json()["audit"]["request"]
    assert plain.json()["provenance"]["crediting"]["years_credited_before_start"] == 0
    problem = assert_problem(run(crediting_start_year=2081), 422)
    assert [(e["field"], e["value"]) for e in problem["errors"]] == [("body/crediting_start_year", 2081)]
    problem = assert_problem(run(crediting_period_years=2), 422)
    assert [e["field"] for e in problem["errors"]] == ["body/crediting_period_years"]


def test_a_memo_rerun_reproduces_a_valuation_stored_before_fields_were_added():
    """The memo's re-run is checked against the stored result on the stored result's own fields: a field a
    later version adds (a new term at its default, a parameter sd's interval) does not make it a conflict;
    a changed number or a missing figure does."""
    from api.routes.collateral import _reproduces

    stored = {"terms": {"amount_cny": 1e5}, "value_today": {"value_cny": 5.0, "parameter_sd_cny": 1.0},
              "by_year": [{"year": 1, "ltv_p95": 0.5}]}
    again = {"terms": {"amount_cny": 1e5, "crediting_start_year": None},
             "value_today": {"value_cny": 5.0, "parameter_sd_cny": 1.0, "parameter_sd_ci95_low_cny": 0.5},
             "by_year": [{"year": 1, "ltv_p95": 0.5, "ltv_p95_ci95_low": 0.4}]}
    assert _reproduces(stored, again)
    assert not _reproduces(stored, {**again, "value_today": {"value_cny": 5.5, "parameter_sd_cny": 1.0}})
    assert not _reproduces(stored, {**again, "by_year": []})
    assert not _reproduces(stored, {k: v for k, v in again.items() if k != "terms"})


def test_a_price_floor_quote_takes_the_projects_crediting_start(env):
    c, h = env.client, env.h("insurer")
    pid = upload(c, h, make_frame(8, seed=4).assign(project_id="P").to_csv(index=False).encode())  # credited
    q = lambda **kw: c.post("/v1/quotes", headers=h, json={  # noqa: E731
        "portfolio_id": pid, "paths": 32, "years": 2, "cover": {"kind": "price-floor", "strike_cny_per_tco2e": 60},
        **kw})
    ok = q(crediting_start_year=2023)
    assert ok.status_code == 201, ok.text
    assert ok.json()["result"]["provenance"]["crediting"]["years_credited_before_start"] == 3
    problem = assert_problem(q(crediting_start_year=2081), 422)
    assert [(e["field"], e["value"]) for e in problem["errors"]] == [("body/crediting_start_year", 2081)]
    # a cover the crediting rules cannot change refuses them, naming the field (they were accepted and ignored)
    for cover in ({"kind": "stock-loss"}, {"kind": "price-floor", "strike_cny_per_tco2e": 60, "volume_tco2e": 1e3}):
        problem = assert_problem(q(crediting_start_year=2023, cover=cover), 422, "invalid-cover")
        assert [(e["field"], e["value"]) for e in problem["errors"]] == [("body/crediting_start_year", 2023)]


def test_a_registered_loan_holds_its_projects_crediting_start(env):
    c, h = env.client, env.h("bank")
    pid = upload(c, h, csv_bytes(10))
    reg = lambda **kw: c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={  # noqa: E731
        "terms": {"amount_cny": 1e5, "term_years": 3, "rate": 0.04, **kw}})
    r = reg(crediting_start_year=2019, crediting_period_years=20)
    assert r.status_code == 201, r.text
    loan = r.json()["id"]
    cv = c.post("/v1/collateral-valuations", headers=h, json={"loan_id": loan, "paths": 64, "sensitivities": False,
                                                             "terms": {"crediting_horizon_years": 10}})
    assert cv.status_code == 201, cv.text
    terms = cv.json()["result"]["terms"]
    assert (terms["crediting_start_year"], terms["crediting_period_years"]) == (2019, 20)
    # the request's terms override the loan's; a loan's value the rules refuse is named as the loan's
    over = c.post("/v1/collateral-valuations", headers=h, json={
        "loan_id": loan, "paths": 64, "sensitivities": False,
        "terms": {"crediting_horizon_years": 10, "crediting_start_year": 2024}})
    assert over.status_code == 201 and over.json()["result"]["terms"]["crediting_start_year"] == 2024
    late = reg(crediting_start_year=2081).json()["id"]
    problem = assert_problem(c.post("/v1/collateral-valuations", headers=h, json={"loan_id": late, "paths": 64}), 422)
    assert [(e["field"], e["value"]) for e in problem["errors"]] == [("loan/terms/crediting_start_year", 2081)]


def test_a_stress_test_values_registered_loans_under_their_crediting_rules(env):
    """A registered loan's crediting start and period go with it into a stress test (they were noted and ignored);
    one the crediting rules refuse is a 422 at the request, before any job."""
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, make_frame(12, seed=6).assign(project_id="P").to_csv(index=False).encode())
    stress = lambda: c.post("/v1/stress-tests", headers=h, json={  # noqa: E731
        "portfolio_id": pid, "scenarios": ["carbon_price_crash"], "years": 2, "paths": 16, "seed": 8, "mode": "auto",
        "use_registered_loans": True, "accounts": False, "footprints": False})
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={
        "terms": {"amount_cny": 1e5, "term_years": 2, "rate": 0.05, "crediting_start_year": 2019,
                  "crediting_period_years": 20}})
    assert loan.status_code == 201, loan.text
    r = stress()
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["audit"]["request"]["api_notes"] == []
    terms = body["audit"]["request"]["registry"]["loans"][0]["terms"]
    assert (terms["crediting_start_year"], terms["crediting_period_years"]) == (2019, 20)
    assert body["result"]["loans"][0]["collateral_value_cny"] > 0
    late = c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={
        "terms": {"amount_cny": 1e5, "term_years": 2, "rate": 0.05, "crediting_start_year": 2081}})
    assert late.status_code == 201, late.text
    problem = assert_problem(stress(), 422, "invalid-stress-test")
    # a registered loan is not in the body: named by its resource (as a valuation names a registered loan's terms)
    late_id = late.json()["id"]
    assert [(e["field"], e["value"]) for e in problem["errors"]] == [
        (f"loan/{late_id}/terms/crediting_start_year", 2081)]
    assert f"loan {late_id}" in problem["detail"] and "crediting_start_year" in problem["detail"]


def test_a_registered_loan_whose_parcels_are_gone_is_named_by_its_resource(env):
    """The registered loans follow the body's own in the stress request: one whose parcels the portfolio no longer
    has is named at ``loan/<id>/parcel_ids``, not at an index of a list the body does not have."""
    from api.db.models import Instrument

    c, h = env.client, env.h("bureau")
    pid = upload(c, h, make_frame(6, seed=8).to_csv(index=False).encode())
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h, json={
        "terms": {"amount_cny": 1e5, "term_years": 2, "rate": 0.05, "parcel_ids": ["T00000"]}}).json()["id"]
    with env.app.state.db.session() as s:  # as if the parcel had left the portfolio since
        row = s.get(Instrument, loan)
        row.terms = {**row.terms, "parcel_ids": ["GONE-1"]}
    r = c.post("/v1/stress-tests", headers=h, json={
        "portfolio_id": pid, "scenarios": ["carbon_price_crash"], "years": 2, "paths": 16, "mode": "auto",
        "use_registered_loans": True, "accounts": False, "footprints": False})
    problem = assert_problem(r, 422, "invalid-stress-test")
    assert problem["errors"][0]["field"] == f"loan/{loan}/parcel_ids" and "GONE-1" in problem["detail"]
