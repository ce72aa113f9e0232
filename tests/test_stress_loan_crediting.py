"""A stress test values each loan under its own crediting start and period (it credited every project under the
parameter file's rules, and refused a registry loan with its own): the loan's credits come from its unit's stock on
the scenario's run (``CreditingRules.issue_from_stock``), which without baseline and leakage shares is exactly what
the engine issues."""

from __future__ import annotations

import numpy as np
import pytest

from finance_engine.simulation import simulate
from finance_engine.stress.registry import RegistryError, bind_registry, parse_registry
from finance_engine.stress.run import StressSettings, evaluate_instruments, loan_crediting_rules, run_scenario
from finance_engine.stress.scenarios import load_scenario
from models.carbon import CreditingRules
from models.portfolio import validate_frame
from tests.conftest import make_frame


@pytest.fixture(scope="module")
def pf(params):
    return validate_frame(make_frame(60, seed=11).assign(project_id=lambda d: np.where(np.arange(len(d)) < 30, "P",
                                                                                         "Q")), params, source="cred")


@pytest.mark.parametrize("crediting", [None, {"crediting_start_year": 2019, "crediting_period_years": 20},
                                       {"crediting_start_year": 2029}])
def test_credits_from_a_units_stock_are_the_engines(pf, params, crediting):
    """The engine's project credits, path by path, from the project's stock and its start stock alone."""
    res = simulate(pf, params, years=25, paths=32, seed=4, levels=("portfolio", "project_id"), crediting=crediting)
    rules = CreditingRules(**res.provenance["crediting"])
    stock = res.paths_of("stock_tco2e", "project_id")
    credits = res.paths_of("credits_issued_tco2e", "project_id")
    start = res.start_stock("project_id")
    for g, label in enumerate(res.labels["project_id"]):
        issued, _ = rules.issue_from_stock(stock[:, :, g], float(start[label]))
        np.testing.assert_allclose(issued, credits[:, :, g], rtol=1e-9, atol=1e-6)
        assert (issued > 0).any()


def test_a_baseline_share_is_refused(params):
    rules = CreditingRules(monitoring_period_years=5, baseline_removal_fraction=0.1, leakage_fraction=0.0,
                           buffer_fraction=0.15, crediting_period_years=40)
    with pytest.raises(ValueError, match="baseline_removal_fraction and leakage_fraction 0"):
        rules.issue_from_stock(np.ones((3, 2)), 0.0)


def _registry(pf, **own):
    ids = list(pf.parcel_id)
    terms = {"amount_cny": 60000, "term_years": 3, "interest_rate": 0.04, "crediting_horizon_years": 20}
    return parse_registry({"loans": [{"id": "A", "parcel_ids": ids[:30], "terms": {**terms, **own}}]})


def test_a_stress_loan_is_valued_under_its_own_crediting_rules(pf, params):
    """Crediting since 2014 for 20 years (to the end of 2033): 8 years of credits in the 20-year horizon, against 20
    under the file's rules: less value, beyond the errors; the rules are the run's with the loan's start and period."""
    st = StressSettings(years=3, paths=64, seed=5, levels=("portfolio",))
    own = _registry(pf, crediting_start_year=2014, crediting_period_years=20)
    plain = _registry(pf)
    bound_own, bound_plain = bind_registry(own, pf, params), bind_registry(plain, pf, params)
    run = run_scenario(bound_own.portfolio, params, load_scenario("baseline"), st, horizon_years=20,
                       extra_levels=("project_id",))
    rules = loan_crediting_rules(run, own.loans[0].terms)
    assert (rules.years_credited_before_start, rules.crediting_period_years) == (12, 20)
    assert loan_crediting_rules(run, plain.loans[0].terms) is None
    a = evaluate_instruments(bound_plain, run, st).loans.iloc[0]
    b = evaluate_instruments(bound_own, run, st).loans.iloc[0]
    assert b.collateral_value_cny < a.collateral_value_cny - 4 * np.hypot(a.collateral_value_mc_se_cny,
                                                                         b.collateral_value_mc_se_cny)


def test_a_registry_loans_crediting_rules_are_checked_at_binding(pf, params):
    with pytest.raises(RegistryError, match=r"^loans.0.terms.crediting_start_year: the crediting start is 54 years"):
        bind_registry(_registry(pf, crediting_start_year=2080), pf, params)
    with pytest.raises(RegistryError, match=r"^loans.0.terms.crediting_start_year: the crediting period .* ended"):
        bind_registry(_registry(pf, crediting_start_year=1990, crediting_period_years=20), pf, params)
