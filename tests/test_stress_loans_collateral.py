"""A stress test's bank loans are valued as :func:`finance_engine.collateral.value_collateral` values the same loan.

The stress loop values each pledged unit with collateral.py's own helpers; after the collateral review (numbers
version 5) it had missed the review's fixes: a local credit's value at t regressed on the local price without its
spread factor, the forced sale haircut the cash already received, the simulated LGD divided by the schedule's
balance where top-up calls carried forward give each path its own, and the IRB maturity was the term. On the same
pledged parcels, terms, seed and paths the baseline's loan rows now agree with the valuation's figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from finance_engine.collateral import value_collateral
from finance_engine.loan_terms import effective_maturity_years
from finance_engine.stress.registry import bind_registry, parse_registry
from finance_engine.stress.run import StressSettings, evaluate_instruments, run_scenario
from finance_engine.stress.scenarios import load_scenario
from models.portfolio import validate_frame
from tests.conftest import make_frame

PATHS, SEED, HORIZON = 256, 11, 12
_BASE = {"interest_rate": 0.04, "borrower_pd": 0.02, "crediting_horizon_years": HORIZON}


@pytest.fixture(scope="module")
def pf(params):
    return validate_frame(make_frame(120, seed=7), params, source="stress-loans")


@pytest.fixture(scope="module")
def case(pf, params):
    ids = list(pf.parcel_id)
    reg = parse_registry({"loans": [
        # CCER, with a sink-loss policy assigned to the bank in its own terms (value_collateral counts its payouts)
        {"id": "ccer", "parcel_ids": ids[:30], "terms": {
            **_BASE, "amount_cny": 150_000, "term_years": 3,
            "insurance": {"agreed_price_cny_per_tco2e": 60, "annual_deductible_tco2e": 5.0,
                          "annual_limit_cny": 1000.0}}},
        # a local credit: the CEA price times a spread factor per path
        {"id": "puhui", "parcel_ids": ids[30:60], "terms": {
            **_BASE, "amount_cny": 150_000, "term_years": 4, "credit_type": "carbon_puhui"}},
        # a long local-credit loan: cash received into the supervised account, top-up calls carried forward
        {"id": "long", "parcel_ids": ids[60:100], "terms": {
            **_BASE, "amount_cny": 200_000, "term_years": 10, "credit_type": "tanpiao"}},
    ]})
    st = StressSettings(years=3, paths=PATHS, seed=SEED)
    bound = bind_registry(reg, pf, params)
    run = run_scenario(bound.portfolio, params, load_scenario("baseline"), st, horizon_years=HORIZON,
                       extra_levels=("project_id",))
    out = evaluate_instruments(bound, run, st)
    vals = {ln.id: value_collateral(pf, params, ln.terms, parcel_ids=ln.parcel_ids, paths=PATHS, seed=SEED,
                                    attribution=True, attribution_paths=PATHS, sensitivities=False,
                                    antithetic_prices=False, switches=st.switches)
            for ln in reg.loans}
    return reg, bound, st, run, out, vals


@pytest.mark.parametrize("loan", ["ccer", "puhui", "long"])
def test_a_stress_loan_agrees_with_value_collateral(case, loan):
    reg, _, _, _, out, vals = case
    row = out.loans.set_index("loan").loc[loan]
    v = vals[loan]
    T = int(row.term_years)
    full = v.drivers.set_index("driver").loc["full model"]  # the drivers' base run, at the valuation's paths
    rel = 1e-9
    assert row.collateral_value_cny == pytest.approx(v.value_today["value_cny"], rel=rel)
    assert row.collateral_value_mc_se_cny == pytest.approx(v.value_today["mc_se_cny"], rel=rel)
    assert row.p_value_below_balance_any_time == pytest.approx(v.risk["p_value_below_balance_any_time"], abs=1e-12)
    assert row.p_value_below_balance_any_time_mc_se == pytest.approx(
        v.risk["p_value_below_balance_any_time_mc_se"], rel=rel)
    # the stress row's shortfall is at a default in a year of the term; the drivers' is summed over the term
    assert row.expected_shortfall_at_default_cny * T == pytest.approx(full["expected_shortfall_cny"], rel=rel)
    assert row.expected_shortfall_at_default_mc_se_cny * T == pytest.approx(full["expected_shortfall_mc_se_cny"],
                                                                            rel=rel)
    assert row.simulated_lgd == pytest.approx(v.credit["simulated_lgd_forced_sale"], rel=rel)
    # the stress test's error is at least the valuation's (the regressions' jackknife) and the ratio's own
    assert row.simulated_lgd_mc_se >= v.credit["simulated_lgd_forced_sale_mc_se"] * (1 - 1e-12)
    assert row.maturity_years == pytest.approx(v.credit["maturity_years"], rel=rel)
    terms = next(ln.terms for ln in reg.loans if ln.id == loan)
    assert row.maturity_years == pytest.approx(effective_maturity_years(terms))
    assert row.capital_k == pytest.approx(v.credit["irb_capital_k"], rel=rel)
    assert row.firb_lgd == pytest.approx(v.credit["firb_lgd_carbon_as_other_physical"], rel=rel)


def test_the_cases_exercise_what_the_review_fixed(case):
    """The comparison above would not see the fixes if the loans did not need them: the long loan has cash in
    its supervised account and calls that lower its balance on some paths, the local credits a spread."""
    _, _, _, _, out, vals = case
    lp = out.loan_paths["long"]
    T = 10
    assert (lp["received"][1:T + 1] > 0).mean() > 0.3                      # cash already received
    assert (lp["balance_paths"] < lp["balance"][:T, None] - 1e-6).any()     # met calls carried forward
    # the IRB maturity is the schedule's effective maturity, not the term (an annuity's (T + 1) / 2, capped at 5)
    assert out.loans.set_index("loan").loc["puhui", "maturity_years"] < 4
    # the policy in the ccer loan's own terms (limited to 1,000 CNY a year) leaves a shortfall to compare
    assert vals["ccer"].terms["insurance"] is not None
    assert out.loans.set_index("loan").loc["ccer", "expected_shortfall_at_default_cny"] > 0


def test_a_price_floor_that_never_binds_changes_nothing(case):
    """A buy-back floor below every price leaves a local credit's valuation on its spread regression."""
    _, bound, st, run, out, _ = case
    floored = evaluate_instruments(bound, run, st, price_floor_cny_per_tco2e=1e-6)
    cols = ["collateral_value_cny", "p_value_below_balance_any_time", "expected_shortfall_at_default_cny",
            "simulated_lgd", "capital_k"]
    a = out.loans.set_index("loan")[cols]
    b = floored.loans.set_index("loan")[cols]
    assert np.allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=0)
    assert floored.budget["expected_annual_buyback_cost_cny"] == 0.0


def test_a_binding_floor_values_the_floored_local_price(case):
    """A floor that binds: the local credit's price is max(F P, floor), no longer F times the reference price,
    so its value at t regresses on the floored price; the value can only rise."""
    _, bound, st, run, out, _ = case
    floor = float(np.quantile(run.prices[:, 1:], 0.5))
    floored = evaluate_instruments(bound, run, st, price_floor_cny_per_tco2e=floor)
    a = out.loans.set_index("loan")
    b = floored.loans.set_index("loan")
    assert (b.collateral_value_cny >= a.collateral_value_cny).all()
    assert (b.loc[["puhui", "long"], "collateral_value_cny"] > a.loc[["puhui", "long"], "collateral_value_cny"]).all()
    for col in ("p_value_below_balance_any_time", "simulated_lgd"):
        assert np.isfinite(b[col]).all() and (b[col] >= 0).all()
