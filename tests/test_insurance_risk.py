"""Risk measures and premium principles on annual-loss samples: known samples and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from finance_engine.insurance import (InsuranceInputError, aal, cost_of_capital_premium, ep_curves,
                                      exceedance_curve, expected_value_premium, gross_premium, pml, pml_table,
                                      proportional_hazard_premium, quantile_ci, standard_deviation_premium,
                                      survival_function, tvar, var, var_tvar_table, variance_premium,
                                      wang_transform_premium)


# ---- AAL, EP curve, survival ----------------------------------------------------------------------
def test_aal_known_sample():
    r = aal([1.0, 2.0, 3.0, 4.0], confidence=0.95)
    se = math.sqrt(5 / 3) / 2              # sd (ddof=1) of 1..4 is sqrt(5/3)
    assert (r.mean, r.n_years) == (2.5, 4)
    assert r.se == pytest.approx(se)
    assert r.ci_low == pytest.approx(2.5 - 1.959964 * se, rel=1e-6)
    assert r.ci_high == pytest.approx(2.5 + 1.959964 * se, rel=1e-6)


def test_exceedance_curve_and_survival_on_known_sample():
    ep = exceedance_curve([0.0, 5.0, 10.0, 0.0, 5.0])
    assert list(ep["loss"]) == [10.0, 5.0, 0.0]
    # P(X > v): nothing exceeds 10, one year in five exceeds 5, three exceed 0
    np.testing.assert_allclose(ep["exceedance_probability"], [0.0, 0.2, 0.6])
    np.testing.assert_allclose(ep["return_period_years"], [math.inf, 5.0, 5 / 3])
    np.testing.assert_allclose(survival_function([0.0, 5.0, 10.0, 0.0, 5.0], [-1.0, 0.0, 4.9, 5.0, 10.0]),
                               [1.0, 0.6, 0.6, 0.2, 0.0])


def test_oep_and_aep_curves_of_an_elt():
    elt = pd.DataFrame({"year": [0, 0, 2, 3, 3, 3, 3, 4], "event_id": range(8),
                        "loss": [5.0, 30.0, 12.0, 8.0, 8.0, 8.0, 8.0, 20.0]})
    curves = ep_curves(elt, 5)
    assert list(curves["OEP"]["loss"]) == [30.0, 20.0, 12.0, 8.0, 0.0]
    assert list(curves["AEP"]["loss"]) == [35.0, 32.0, 20.0, 12.0, 0.0]
    np.testing.assert_allclose(curves["AEP"]["exceedance_probability"], [0.0, 0.2, 0.4, 0.6, 0.8])


def test_exceedance_curve_and_pml_agree_on_1_to_200():
    # one convention, the lower quantile VaR_p = x_(ceil(n p)) = inf{x : P(X > x) <= 1 - p}:
    # 1-in-200 = VaR_0.995 = x_(199) = 199, 1-in-100 = VaR_0.99 = x_(198) = 198
    x = np.random.default_rng(0).permutation(np.arange(1, 201, dtype=float))
    ep = exceedance_curve(x).set_index("loss")["return_period_years"]
    assert ep[199.0] == pytest.approx(200.0) and ep[198.0] == pytest.approx(100.0) and ep[200.0] == math.inf
    p = pml(x, [100, 200]).set_index("return_period_years")["loss"]
    assert (p[100.0], p[200.0]) == (198.0, 199.0)
    assert np.quantile(x, 0.995, method="inverted_cdf") == 199.0


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 60), elements=st.sampled_from([0.0, 1.0, 2.5, 7.0, 30.0])),
       st.sampled_from([1.5, 2.0, 3.0, 10.0, 50.0, 200.0]))
def test_pml_is_the_smallest_loss_on_the_curve_at_that_return_period(x, t):
    ep = exceedance_curve(x)
    want = ep.loc[ep["return_period_years"] >= t * (1 - 1e-12), "loss"].min()
    assert pml(x, [t])["loss"].iloc[0] == want


# ---- VaR, TVaR, PML -------------------------------------------------------------------------------
def test_var_and_tvar_on_1_to_100():
    x = np.arange(1, 101, dtype=float)
    assert var(x, 0.9) == 90.0
    assert var(x, 0.995) == 100.0
    assert tvar(x, 0.9) == pytest.approx(95.5)          # mean of 91..100
    assert tvar(x, 0.95) == pytest.approx(98.0)         # mean of 96..100
    assert tvar(x, 0.995) == pytest.approx(100.0)
    # between grid points: TVaR_0.905 = (0.5 * 91 + 92 + ... + 100) / 9.5
    assert tvar(x, 0.905) == pytest.approx((0.5 * 91 + sum(range(92, 101))) / 9.5)
    table = var_tvar_table(x)
    assert list(table["level"]) == [0.90, 0.95, 0.99, 0.995]
    assert (table["tvar"] >= table["var"]).all()


def test_tvar_of_exponential_closed_form():
    """For Exp(theta), VaR_p = -theta ln(1-p) and TVaR_p = VaR_p + theta."""
    theta, p = 3.0, 0.99
    x = np.random.default_rng(4).exponential(theta, 400_000)
    v = -theta * math.log(1 - p)
    assert var(x, p) == pytest.approx(v, rel=0.02)
    assert tvar(x, p) == pytest.approx(v + theta, rel=0.02)


def test_pml_on_known_sample():
    x = np.arange(1, 1001, dtype=float)[::-1]             # order must not matter
    t = pml(x)
    assert list(t["return_period_years"]) == [10, 20, 50, 100, 200, 250]
    assert list(t["loss"]) == [900.0, 950.0, 980.0, 990.0, 995.0, 996.0]
    assert (t["ci_low"] <= t["loss"]).all() and (t["loss"] <= t["ci_high"]).all()
    assert (t["n_years"] == 1000).all()


def test_median_ci_ranks_match_the_published_table():
    """Distribution-free 95 % CI of the median for n = 100 is (x_(40), x_(61)) (Conover 1999, Table A3)."""
    x = np.arange(1, 101, dtype=float)
    low, high, r, s = quantile_ci(x, 0.5, 0.95)
    assert (r, s) == (40, 61) and (low, high) == (40.0, 61.0)


def test_short_sample_gives_an_open_upper_bound():
    t = pml(np.arange(1, 51, dtype=float), return_periods=[200])
    assert math.isinf(t["ci_high"].iloc[0])
    assert t["loss"].iloc[0] == 50.0


def test_quantile_ci_coverage_by_simulation():
    """Coverage over repeated samples equals B(s-1) - B(r-1) (exact for a continuous F)."""
    n, p, reps = 400, 0.95, 600
    rng = np.random.default_rng(12)
    true_q = -math.log(1 - p)
    hits = 0
    for _ in range(reps):
        lo, hi, r, s = quantile_ci(rng.exponential(1.0, n), p, 0.9)
        hits += lo <= true_q <= hi
    nominal = stats.binom.cdf(s - 1, n, p) - stats.binom.cdf(r - 1, n, p)
    assert nominal >= 0.9
    assert abs(hits / reps - nominal) < 4 * math.sqrt(nominal * (1 - nominal) / reps)


def test_pml_table_has_oep_below_aep():
    rng = np.random.default_rng(5)
    counts = rng.poisson(1.5, 5000)
    year = np.repeat(np.arange(5000), counts)
    elt = pd.DataFrame({"year": year, "event_id": np.arange(year.size), "loss": rng.exponential(5.0, year.size)})
    t = pml_table(elt, 5000)
    oep = t[t["basis"] == "OEP"]["loss"].to_numpy()
    aep = t[t["basis"] == "AEP"]["loss"].to_numpy()
    assert (oep <= aep).all() and (oep < aep).any()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(1, 300), elements=st.floats(0, 1e6, allow_nan=False)),
       st.floats(0.5, 0.999))
def test_tvar_at_least_var_property(x, p):
    v, tv = var(x, p), tvar(x, p)
    assert tv >= v - 1e-9 * max(1.0, abs(v))
    assert tv <= x.max() + 1e-9 * max(1.0, x.max())
    assert v in x


# ---- premium principles ---------------------------------------------------------------------------
SAMPLE = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0])   # Bernoulli(0.3) loss of 1


def test_simple_principles_on_known_sample():
    x = np.array([2.0, 4.0, 6.0, 8.0])                 # mean 5, var (ddof=1) 20/3
    assert expected_value_premium(x, 0.2).premium == pytest.approx(6.0)
    assert standard_deviation_premium(x, 0.5).premium == pytest.approx(5 + 0.5 * math.sqrt(20 / 3))
    r = variance_premium(x, 0.1)
    assert r.premium == pytest.approx(5 + 2 / 3) and r.risk_load == pytest.approx(2 / 3)


def test_wang_transform_lambda_zero_is_the_mean_and_increasing():
    x = np.random.default_rng(8).lognormal(0.0, 1.0, 5000)
    assert wang_transform_premium(x, 0.0).premium == pytest.approx(x.mean(), rel=1e-12)
    prem = [wang_transform_premium(x, lam).premium for lam in (0.0, 0.1, 0.25, 0.5, 1.0)]
    assert np.all(np.diff(prem) > 0)


def test_wang_transform_closed_forms():
    # Bernoulli: S(x) = 0.3 on [0, 1), so the premium is Phi(Phi^-1(0.3) + lambda)
    assert wang_transform_premium(SAMPLE, 0.4).premium == pytest.approx(stats.norm.cdf(stats.norm.ppf(0.3) + 0.4))
    # Normal(mu, sigma): the Wang premium is mu + lambda sigma (Wang 2000)
    x = np.random.default_rng(9).normal(100.0, 15.0, 200_000)
    assert wang_transform_premium(x, 0.3).premium == pytest.approx(x.mean() + 0.3 * 15.0, abs=0.15)


def test_proportional_hazard_rho_one_is_the_mean_and_closed_forms():
    x = np.random.default_rng(10).exponential(4.0, 100_000)
    assert proportional_hazard_premium(x, 1.0).premium == pytest.approx(x.mean(), rel=1e-12)
    # Exp(theta): S^(1/rho) is the survival of Exp(rho theta), premium rho theta
    assert proportional_hazard_premium(x, 1.5).premium == pytest.approx(6.0, rel=0.02)
    assert proportional_hazard_premium(SAMPLE, 2.0).premium == pytest.approx(0.3 ** 0.5)


def test_cost_of_capital_on_known_sample():
    x = np.arange(1, 1001, dtype=float)
    r = cost_of_capital_premium(x, coc_rate=0.06)         # default level 0.995 from the data file
    assert r.parameters["capital"] == pytest.approx(995 - 500.5)
    assert r.premium == pytest.approx(500.5 + 0.06 * 494.5)
    assert cost_of_capital_premium(x).parameters["coc_rate"] == 0.06   # Solvency II CoC from the data file


def test_cost_of_capital_on_tvar_closed_forms():
    # 1..1000: TVaR_0.995 = mean of 996..1000 = 998
    x = np.arange(1, 1001, dtype=float)
    r = cost_of_capital_premium(x, 0.06, measure="tvar")
    assert r.parameters["capital"] == pytest.approx(998 - 500.5) and r.parameters["measure"] == "tvar"
    # a remote layer: 40 in 3 years of 1000, VaR_0.995 = 0 but TVaR_0.995 = 3 x 40 / 5 = 24
    remote = np.r_[np.zeros(997), np.full(3, 40.0)]
    assert cost_of_capital_premium(remote, 0.06).risk_load == 0.0
    t = cost_of_capital_premium(remote, 0.06, measure="tvar")
    assert t.premium == pytest.approx(0.12 + 0.06 * (24.0 - 0.12))
    # any layer attaching in fewer than 1 - q of years: multiple 1 + CoC (1 / (1 - q) - 1)
    assert t.premium / 0.12 == pytest.approx(1 + 0.06 * (1 / 0.005 - 1))
    # Exp(theta): TVaR_q = theta (1 - ln(1 - q))
    e = np.random.default_rng(11).exponential(10.0, 400_000)
    assert cost_of_capital_premium(e, 0.06, measure="tvar").premium == pytest.approx(
        10.0 + 0.06 * (-10.0 * math.log(0.005)), rel=0.01)
    with pytest.raises(InsuranceInputError, match="measure"):
        cost_of_capital_premium(x, 0.06, measure="es")


def test_gross_premium_formula():
    g = gross_premium(100.0, risk_load=20.0, fixed_costs=10.0, variable_expense_ratio=0.15, profit_ratio=0.05)
    assert g.gross == pytest.approx(130 / 0.8)
    assert g.variable_expenses + g.profit + 130.0 == pytest.approx(g.gross)
    assert g.loss_ratio == pytest.approx(100 / 162.5)
    with pytest.raises(InsuranceInputError, match="variable_expense_ratio"):
        gross_premium(1.0, variable_expense_ratio=0.7, profit_ratio=0.3)


def test_bad_samples_are_rejected():
    with pytest.raises(InsuranceInputError, match="empty"):
        aal([])
    with pytest.raises(InsuranceInputError, match="finite"):
        var([1.0, np.nan], 0.9)
    with pytest.raises(InsuranceInputError, match="level"):
        tvar([1.0, 2.0], 1.0)
    with pytest.raises(InsuranceInputError, match="return periods"):
        pml([1.0, 2.0], return_periods=[1.0])
    with pytest.raises(InsuranceInputError, match="rho"):
        proportional_hazard_premium([1.0], 0.0)


def test_var_interval_covers_and_tvar_error_matches_repeated_samples():
    """Over 300 exponential samples of 1,000 years: the VaR interval covers the true 99 % quantile at least
    at its 95 % confidence (order statistics give at least the nominal coverage), and the TVaR error matches
    the spread of the TVaR estimates."""
    rng = np.random.default_rng(11)
    true_var = -np.log(0.01)          # exponential(1): q_0.99 = ln 100, TVaR_0.99 = ln 100 + 1
    covered, tvars, ses = 0, [], []
    for _ in range(300):
        t = var_tvar_table(rng.exponential(size=1000), levels=(0.99,)).iloc[0]
        assert t.var_ci_low <= t["var"] <= t.var_ci_high
        covered += t.var_ci_low <= true_var <= t.var_ci_high
        tvars.append(t.tvar)
        ses.append(t.tvar_se)
    assert covered / 300 >= 0.92
    assert np.mean(tvars) == pytest.approx(true_var + 1, rel=0.03)
    assert np.std(tvars, ddof=1) == pytest.approx(np.mean(ses), rel=0.15)


def test_tvar_error_holds_when_most_years_pay_nothing():
    """Annual payouts are mostly zero, so the VaR often is 0 and values tie at it: the TVaR's error must
    still match the spread of repeated estimates (a tail taken as 'values >= VaR' would take in every zero)."""
    rng = np.random.default_rng(5)
    tvars, ses = [], []
    for _ in range(300):
        x = np.where(rng.random(2000) < 0.95, 0.0, rng.exponential(10_000.0, size=2000))
        t = var_tvar_table(x, levels=(0.90,)).iloc[0]
        assert t["var"] == 0.0
        tvars.append(t.tvar)
        ses.append(t.tvar_se)
    assert np.std(tvars, ddof=1) == pytest.approx(np.mean(ses), rel=0.15)
