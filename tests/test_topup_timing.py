"""Top-up calls are checked at the year's end on the balance left after that day's instalment.

A call had been sized on the balance outstanding during the year, as if the instalment due the same day were not
paid, and then the instalment was paid on top (review: a flat-price annuity called in year 1 at an LTV after the
instalment of 0.73, under the 0.8 trigger, and left at 0.41 rather than the pledge rate's 0.6). A deterministic
pledge -- one stand, every random part off, a price with no volatility nor jumps -- has its value at ``t`` equal to
today's accrued at the discount rate, so every call is computed here by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from finance_engine.collateral import LoanTerms, value_collateral
from finance_engine.issuance import IssuanceRisk
from finance_engine.loan_terms import balance_schedule
from finance_engine.price import load_price_model
from models.dynamics import SimulationSwitches
from models.portfolio import validate_frame

ROW = dict(parcel_id="T-1", province="浙江省", city="丽水市", county="龙泉市", township="龙泉市-合成镇15",
           village="合成镇15-村02", latitude=28.07, longitude=119.14, area_ha=10.0, species_group="chinese_fir",
           age_years=10, site_class="II", origin="plantation", elevation_m=300, project_id="P1")
CALM = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False, perils=(),
                          cascades=False)


@pytest.fixture(scope="module")
def flat(params):
    pf = validate_frame(pd.DataFrame([ROW]), params)
    pms = load_price_model()
    calm = pms.model("cea").with_(volatility_per_sqrt_year=0.0, jump_intensity_per_year=0.0)
    return pf, dataclasses.replace(pms, models={**pms.models, "cea": calm})


def _by_hand(v: np.ndarray, terms: LoanTerms):
    """Calls at the ends of years 1..T on the balance left after each instalment, carried forward."""
    b = balance_schedule(terms)
    scale, calls, sizes, during = 1.0, [], [], []
    for t in range(terms.term_years):
        during.append(b[t] * scale)
        left = b[t + 1] * scale
        call = left > 0 and left > terms.ltv_trigger * v[t]
        size = max(left - terms.pledge_rate * v[t], 0.0) if call else 0.0
        if call:
            assert (left - size) / v[t] == pytest.approx(terms.pledge_rate)   # the call restores the pledge rate
            scale *= (left - size) / left
        calls.append(call)
        sizes.append(size)
    return np.array(calls), np.array(sizes), np.array(during)


@pytest.mark.parametrize("amount,amortisation,any_call", [
    (100_000.0, "annuity", False),   # the review's loan: LTV 0.73 after the year-1 instalment, under the trigger
    (130_000.0, "annuity", True), (120_000.0, "linear", True), (90_000.0, "bullet", True)])
def test_calls_on_a_deterministic_pledge_are_those_computed_by_hand(params, flat, amount, amortisation, any_call):
    pf, pms = flat
    terms = LoanTerms(amount_cny=amount, term_years=3, interest_rate=0.05, amortisation=amortisation)
    cv = value_collateral(pf, params, terms, project_id="P1", paths=64, seed=1, attribution=False,
                          sensitivities=False, price_model_set=pms, issuance_risk=IssuanceRisk(), switches=CALM)
    v0 = cv.value_today["value_cny"]
    v = v0 * (1 + terms.discount_rate) ** np.arange(1, 4)       # deterministic: today's value accrued
    np.testing.assert_allclose(cv.by_year["value_mean_cny"], v, rtol=1e-9)
    calls, sizes, during = _by_hand(v, terms)
    assert calls.any() == any_call
    np.testing.assert_array_equal(cv.by_year["p_top_up_call"].to_numpy(), calls.astype(float))
    np.testing.assert_allclose(cv.by_year["expected_top_up_cny"], sizes, rtol=1e-9, atol=1e-6)
    # the year's own figures use the balance outstanding during it (a met call carried forward)
    np.testing.assert_allclose(cv.by_year["balance_mean_cny"], during, rtol=1e-9)
    assert not calls[-1]                                         # repaid at the term's end: no call
