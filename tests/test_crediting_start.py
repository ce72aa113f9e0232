"""A project that began crediting before the run: its crediting start year and registered period, from the
engine's override to a loan's terms, the CLI and the stress test's registry."""

import json

import numpy as np
import pytest

from finance_engine.collateral import (
    LoanTerms,
    LoanTermsError,
    _simulate_physical,
    crediting_position,
    select_pledged,
    value_collateral,
)
from finance_engine.loan_terms import check_crediting_terms, crediting_overrides
from models.dynamics import SimulationSwitches
from models.portfolio import validate_frame
from tests.conftest import make_frame

BASE = dict(amount_cny=100_000.0, term_years=3, interest_rate=0.04, crediting_horizon_years=20)


@pytest.fixture(scope="module")
def pledge(params):
    pf = validate_frame(make_frame(8, seed=5, species=["chinese_fir"]).assign(age_years=8, project_id="P"), params)
    return pf, select_pledged(pf, params, None, "P")


def test_a_loans_credits_follow_its_projects_crediting_start_and_period(params, pledge):
    """Crediting since 2019 for a registered 20 years (to the end of 2038), 5-year periods, valued from 2026:
    verifications at the ends of 2028, 2033 and 2038 (run years 3, 8 and 13), none after; the value regression's
    crediting position enters after the first of them."""
    _, pledged = pledge
    terms = LoanTerms(**BASE, crediting_start_year=2019, crediting_period_years=20)
    assert crediting_overrides(terms) == {"crediting_start_year": 2019, "crediting_period_years": 20}
    sw = SimulationSwitches(perils=())
    phys = _simulate_physical(pledged, params, 20, 64, 3, sw, 1, None, crediting=crediting_overrides(terms))
    issuing = np.flatnonzero((phys.credits > 0).any(axis=1)) + 1
    assert list(issuing) == [3, 8, 13]
    assert phys.provenance["crediting"]["years_credited_before_start"] == 7
    _, first = crediting_position(phys.stock, phys.stock0, None, phys.provenance)
    assert first == 3
    # the default: from the run's start, the file's 40 years
    plain = _simulate_physical(pledged, params, 20, 64, 3, sw, 1, None)
    assert list(np.flatnonzero((plain.credits > 0).any(axis=1)) + 1) == [5, 10, 15, 20]
    assert crediting_position(plain.stock, plain.stock0, None, plain.provenance)[1] == 5


def test_a_project_beginning_to_credit_later_is_credited_from_the_stock_at_its_start(params, pledge):
    """Crediting from 2028 (registration pending), valued from 2026 with 5-year periods: nothing before the start,
    verifications at the ends of 2032, 2037, ... (run years 7, 12, 17), the first crediting the change since the
    stock at the end of 2027 (run year 2), net of the buffer; the position enters after the start."""
    from models.carbon import CreditingRules

    _, pledged = pledge
    terms = LoanTerms(**BASE, crediting_start_year=2028)
    check_crediting_terms(terms, params)
    sw = SimulationSwitches(perils=())
    phys = _simulate_physical(pledged, params, 20, 64, 3, sw, 1, None, crediting=crediting_overrides(terms))
    assert phys.provenance["crediting"]["years_credited_before_start"] == -2
    assert list(np.flatnonzero((phys.credits > 0).any(axis=1)) + 1) == [7, 12, 17]
    rules = CreditingRules(**phys.provenance["crediting"])
    # closed form: stock at the end of run year 7 less that at the end of run year 2 (stock[y] ends year y+1),
    # with no baseline, leakage or earlier deficit, times (1 - buffer)
    gain = phys.stock[6] - phys.stock[1]
    assert (gain > 0).all()
    np.testing.assert_allclose(phys.credits[6], gain * (1 - rules.buffer_fraction), rtol=1e-9)
    position, first = crediting_position(phys.stock, phys.stock0, None, phys.provenance)
    assert first == 2
    assert (position[:3] == 0).all()                       # the start, and the two years before crediting begins
    np.testing.assert_allclose(position[3], phys.stock[2] - phys.stock[1])
    # a project crediting from the run's start credits the growth of those two years too
    plain = _simulate_physical(pledged, params, 20, 64, 3, sw, 1, None)
    assert plain.credits[4].sum() > 0 and phys.credits[:6].sum() == 0


def test_a_later_crediting_start_values_less_and_is_bounded(params, pledge):
    pf, _ = pledge
    kw = dict(project_id="P", paths=256, seed=4, attribution=False, sensitivities=False)
    now = value_collateral(pf, params, BASE, **kw)
    later = value_collateral(pf, params, {**BASE, "crediting_start_year": 2030}, **kw)
    assert later.terms["crediting_start_year"] == 2030
    a, b = now.value_today, later.value_today
    # four years of growth never credited and the first issuance four years later: less value, beyond the errors
    assert b["value_cny"] < a["value_cny"] - 4 * np.hypot(a["mc_se_cny"], b["mc_se_cny"])
    with pytest.raises(LoanTermsError, match=r"^crediting_start_year: the crediting start is 51 years after"):
        check_crediting_terms(LoanTerms(**BASE, crediting_start_year=2077), params)


def test_fewer_years_left_value_less(params, pledge):
    pf, _ = pledge
    kw = dict(project_id="P", paths=256, seed=4, attribution=False, sensitivities=False)
    full = value_collateral(pf, params, BASE, **kw)
    short = value_collateral(pf, params, {**BASE, "crediting_start_year": 2014, "crediting_period_years": 20}, **kw)
    assert short.terms["crediting_start_year"] == 2014
    a, b = full.value_today, short.value_today
    # 8 years of credits left (to 2033) against 20: far less value, beyond the errors
    assert b["value_cny"] < a["value_cny"] - 4 * np.hypot(a["mc_se_cny"], b["mc_se_cny"])
    assert b["credits_over_horizon_tco2e"]["mean"] < a["credits_over_horizon_tco2e"]["mean"]
    # the valuation records the rules it ran under, and the memo says them
    assert short.provenance["crediting"]["years_credited_before_start"] == 12
    from finance_engine.reports.collateral_memo import render_collateral_memo

    memo = render_collateral_memo(short)
    assert "every 5 years from 2014; the crediting period of 20 years ends with 2033" in memo


@pytest.mark.parametrize("bad,field", [({"crediting_start_year": 2080}, "crediting_start_year"),
                                       ({"crediting_start_year": 1980}, "crediting_start_year"),
                                       ({"crediting_period_years": 3}, "crediting_period_years")])
def test_bad_crediting_terms_are_refused_before_any_run_naming_the_term(params, pledge, bad, field):
    pf, _ = pledge
    with pytest.raises(LoanTermsError, match=f"^{field}: "):
        check_crediting_terms(LoanTerms(**BASE, **bad), params)
    with pytest.raises(LoanTermsError, match=f"^{field}: "):
        value_collateral(pf, params, {**BASE, **bad}, project_id="P", paths=64, attribution=False)


def test_the_stress_registry_takes_a_loan_with_its_own_crediting_rules():
    from finance_engine.stress.registry import LoanEntry

    LoanEntry(id="L1", project_id="P", terms=BASE)
    # valued under them on the stress run (tests/test_stress_loan_crediting.py); the rules check them at binding
    assert LoanEntry(id="L1", project_id="P", terms={**BASE, "crediting_start_year": 2020}) \
        .terms.crediting_start_year == 2020


def _run(capsys, *argv):
    from api.cli import main

    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_options_set_the_crediting_start_and_period(portfolio_csv, capsys):
    code, out, err = _run(capsys, "simulate", "-p", portfolio_csv, "--years", "8", "--paths", "32", "--level",
                          "portfolio", "--crediting-start-year", "2023", "--crediting-period-years", "10",
                          "--format", "json")
    assert code == 0, err
    d = json.loads(out)
    assert d["provenance"]["crediting"]["years_credited_before_start"] == 3
    credits = {row["calendar_year"]: row["mean"] for row in d["summary"]
               if row["metric"] == "credits_issued_tco2e" and row["level"] == "portfolio"}
    # 2023-2032: verifications at the ends of 2027 and 2032, none after the period
    assert [y for y, v in sorted(credits.items()) if v > 0] == [2027, 2032]
    code, out, err = _run(capsys, "simulate", "-p", portfolio_csv, "--years", "8", "--paths", "32", "--level",
                          "portfolio", "--crediting-start-year", "2028", "--format", "json")
    assert code == 0, err
    credits = {row["calendar_year"]: row["mean"] for row in json.loads(out)["summary"]
               if row["metric"] == "credits_issued_tco2e" and row["level"] == "portfolio"}
    assert [y for y, v in sorted(credits.items()) if v > 0] == [2032]   # from 2028: the end of 2032
    code, _, err = _run(capsys, "simulate", "-p", portfolio_csv, "--years", "8", "--paths", "32",
                        "--crediting-start-year", "2080")
    assert code == 2 and "--crediting-start-year" in err and "54 years after the run's start" in err
    code, out, err = _run(capsys, "collateral", "-p", portfolio_csv, "--amount", "100000", "--term", "3", "--rate",
                          "0.04", "--project", "PRJ-A", "--paths", "64", "--no-attribution",
                          "--crediting-start-year", "2021", "--format", "json")
    assert code == 0, err
    assert json.loads(out)["terms"]["crediting_start_year"] == 2021


def test_the_buffer_counts_no_reversal_before_a_later_crediting_start():
    """Crediting from run year 3: a loss before it (6 -> 3) is no reversal; at the first verification (end of year
    7) the stock 2 is 1 below the stock at the start (3), not 4 below the run's start stock (6)."""
    from types import SimpleNamespace

    import pandas as pd

    from finance_engine.stress.buffer import reversals_and_credits
    from models.carbon import CreditingRules

    rules = CreditingRules(monitoring_period_years=5, baseline_removal_fraction=0.0, leakage_fraction=0.0,
                           buffer_fraction=0.1, crediting_period_years=40, years_credited_before_start=-2)
    stock = np.array([5.0, 3.0, 12.0, 10.0, 14.0, 15.0, 2.0, 20.0])[:, None, None]      # (years, paths, projects)
    zeros = np.zeros_like(stock)

    class Result:
        per_path = {"project_id": None}
        labels = {"project_id": np.array(["P"])}
        provenance = {"crediting": {f: getattr(rules, f) for f in (
            "monitoring_period_years", "baseline_removal_fraction", "leakage_fraction", "buffer_fraction",
            "crediting_period_years", "years_credited_before_start")}}

        @staticmethod
        def paths_of(metric, level):
            return stock if metric == "stock_tco2e" else zeros

        @staticmethod
        def start_stock(level):
            return pd.Series([6.0], index=["P"])

    rev, gross = reversals_and_credits(SimpleNamespace(result=Result()), None, 8)
    assert rev.tolist() == [1.0] and gross.tolist() == [0.0]


def test_a_crediting_start_whose_first_verification_is_beyond_the_horizon_is_refused(params, pledge):
    """A start in 2071 valued over 30 years (2026-2055) credits nothing: its value was a silent 0 (an LTV of
    infinity, a call on every path); it is refused naming the term, as are the registry's loans."""
    from finance_engine.stress.registry import RegistryError, bind_registry, parse_registry

    pf, _ = pledge
    late = {**BASE, "crediting_horizon_years": 30, "crediting_start_year": 2071}
    with pytest.raises(LoanTermsError, match=r"^crediting_start_year: the first verification, at the end of 2075, "
                                             r"falls after the 30-year crediting horizon \(2026-2055\)"):
        check_crediting_terms(LoanTerms(**late), params)
    with pytest.raises(LoanTermsError, match="^crediting_start_year: the first verification"):
        value_collateral(pf, params, late, project_id="P", paths=64, attribution=False)
    # the last start whose first verification is inside the horizon: the end of 2055 (a start in 2051)
    check_crediting_terms(LoanTerms(**{**late, "crediting_start_year": 2051}), params)
    with pytest.raises(LoanTermsError):
        check_crediting_terms(LoanTerms(**{**late, "crediting_start_year": 2052}), params)
    reg = parse_registry({"loans": [{"id": "L", "project_id": "P", "terms": {**late, "term_years": 3}}]})
    with pytest.raises(RegistryError, match=r"^loans.0.terms.crediting_start_year: the first verification"):
        bind_registry(reg, pf, params)
