"""XoL layers on loss tables: closed forms for compound Poisson, hand-computed tables, validation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from finance_engine.insurance import (InsuranceInputError, Reinstatements, event_losses, layer_loss,
                                      price_annual_layer, price_layer, quota_share, year_loss_table)


def compound_poisson_elt(rng: np.random.Generator, n_years: int, lam: float, severity) -> pd.DataFrame:
    """ELT of a compound Poisson process: N_y ~ Poisson(lam) events per year, i.i.d. severities."""
    counts = rng.poisson(lam, n_years)
    year = np.repeat(np.arange(n_years), counts)
    return pd.DataFrame({"year": year, "event_id": np.arange(year.size), "loss": severity(rng, year.size)})


def exp_layer_mean(lam, theta, a, c):
    """E[annual occurrence-layer loss] for Exp(theta) severities: lam theta (e^{-A/theta} - e^{-(A+C)/theta})."""
    return lam * theta * (math.exp(-a / theta) - math.exp(-(a + c) / theta))


def lognormal_lev(mu, sigma, u):
    """Limited expected value E[min(X, u)] of LogNormal(mu, sigma)."""
    if u <= 0:
        return 0.0
    if math.isinf(u):
        return math.exp(mu + sigma ** 2 / 2)
    z = (math.log(u) - mu) / sigma
    return math.exp(mu + sigma ** 2 / 2) * stats.norm.cdf(z - sigma) + u * stats.norm.sf(z)


# ---- closed forms ---------------------------------------------------------------------------------
LAM, THETA, A, C = 2.0, 10.0, 15.0, 20.0
N_YEARS = 40_000


@pytest.fixture(scope="module")
def exp_elt():
    rng = np.random.default_rng(20261123)
    return compound_poisson_elt(rng, N_YEARS, LAM, lambda r, n: r.exponential(THETA, n))


def test_occurrence_layer_matches_exponential_closed_form(exp_elt):
    r = price_layer(exp_elt, N_YEARS, A, C)
    exact = exp_layer_mean(LAM, THETA, A, C)
    assert abs(r.expected_loss - exact) < 4 * r.expected_loss_se
    assert r.expected_loss_se == pytest.approx(r.sd_annual_loss / math.sqrt(N_YEARS))
    # events above A form a Poisson process of rate lam e^{-A/theta}
    rate_in = LAM * math.exp(-A / THETA)
    assert abs(r.expected_events_in_layer - rate_in) < 4 * math.sqrt(rate_in / N_YEARS)
    p_att = 1 - math.exp(-rate_in)
    assert abs(r.prob_attachment - p_att) < 4 * math.sqrt(p_att * (1 - p_att) / N_YEARS)
    p_ex = 1 - math.exp(-LAM * math.exp(-(A + C) / THETA))
    assert abs(r.prob_exhaustion - p_ex) < 4 * math.sqrt(p_ex * (1 - p_ex) / N_YEARS)
    # variance of a compound Poisson sum: lam E[l(X)^2]
    second = integrate.quad(lambda x: min(max(x - A, 0), C) ** 2 * math.exp(-x / THETA) / THETA, A, 200)[0]
    assert r.sd_annual_loss == pytest.approx(math.sqrt(LAM * second), rel=0.03)


def test_unlimited_layer_from_zero_is_the_aal(exp_elt):
    r = price_layer(exp_elt, N_YEARS, 0.0, np.inf)
    assert r.expected_loss == pytest.approx(exp_elt["loss"].sum() / N_YEARS, rel=1e-12)
    assert abs(r.expected_loss - LAM * THETA) < 4 * r.expected_loss_se
    assert r.prob_exhaustion == 0.0
    assert math.isnan(r.pure_rate_on_line)


def test_aggregate_layer_matches_compound_poisson_exponential(exp_elt):
    """Stop loss on S = sum of Poisson(lam) Exp(theta): P(S > x) = sum_k Pois(k) Gamma(k, theta).sf(x)."""
    a, c = 25.0, 20.0
    ks = np.arange(1, 60)
    pk = stats.poisson.pmf(ks, LAM)

    def sf(x):
        return float(np.dot(pk, stats.gamma.sf(x, ks, scale=THETA)))

    exact = integrate.quad(sf, a, a + c)[0]
    r = price_layer(exp_elt, N_YEARS, a, c, basis="aggregate")
    assert abs(r.expected_loss - exact) < 4 * r.expected_loss_se
    assert abs(r.prob_attachment - sf(a)) < 4 * math.sqrt(sf(a) * (1 - sf(a)) / N_YEARS)
    assert abs(r.prob_exhaustion - sf(a + c)) < 4 * math.sqrt(sf(a + c) * (1 - sf(a + c)) / N_YEARS)
    assert r.expected_events_in_layer == r.prob_attachment


def test_occurrence_layer_matches_lognormal_limited_expected_value():
    mu, sigma, lam, a, c, n = 1.0, 1.0, 3.0, 5.0, 10.0, 40_000
    rng = np.random.default_rng(7)
    elt = compound_poisson_elt(rng, n, lam, lambda r, k: r.lognormal(mu, sigma, k))
    exact = lam * (lognormal_lev(mu, sigma, a + c) - lognormal_lev(mu, sigma, a))
    r = price_layer(elt, n, a, c)
    assert abs(r.expected_loss - exact) < 4 * r.expected_loss_se


def test_standard_error_matches_spread_across_seeds():
    """The reported standard error is the sd of the estimate over independent seeds."""
    n, reps = 2_000, 80
    est, ses = [], []
    for seed in range(reps):
        rng = np.random.default_rng([99, seed])
        elt = compound_poisson_elt(rng, n, LAM, lambda r, k: r.exponential(THETA, k))
        r = price_layer(elt, n, A, C)
        est.append(r.expected_loss)
        ses.append(r.expected_loss_se)
    ratio = np.std(est, ddof=1) / np.mean(ses)
    # the sd of 80 estimates is itself uncertain by about 1/sqrt(2*79) = 8 %
    assert 0.75 < ratio < 1.25
    exact = exp_layer_mean(LAM, THETA, A, C)
    assert abs(np.mean(est) - exact) < 4 * np.mean(ses) / math.sqrt(reps)


# ---- hand-computed small tables -------------------------------------------------------------------
@pytest.fixture
def small_elt():
    # year 0: 5 and 30; year 1: none; year 2: 12; year 3: four events of 8; year 4: 20
    return pd.DataFrame({
        "year": [0, 0, 2, 3, 3, 3, 3, 4],
        "event_id": [1, 2, 3, 4, 5, 6, 7, 8],
        "loss": [5.0, 30.0, 12.0, 8.0, 8.0, 8.0, 8.0, 20.0],
    })


def test_small_table_occurrence(small_elt):
    # A = 10, C = 15: per-year layer losses 15 (30 exhausts), 0, 2, 0 (all 8 < 10), 10
    r = price_layer(small_elt, 5, 10.0, 15.0)
    np.testing.assert_allclose(r.annual_loss, [15, 0, 2, 0, 10])
    assert r.expected_loss == pytest.approx(5.4)
    assert r.sd_annual_loss == pytest.approx(math.sqrt(183.2 / 4))
    assert r.expected_loss_se == pytest.approx(math.sqrt(183.2 / 4) / math.sqrt(5))
    assert r.prob_attachment == pytest.approx(3 / 5)
    assert r.prob_exhaustion == pytest.approx(1 / 5)
    assert r.expected_events_in_layer == pytest.approx(3 / 5)
    assert r.pure_rate_on_line == pytest.approx(5.4 / 15)
    # the mean's interval: Student's t over 5 years (2.776), never below 0
    half = stats.t.ppf(0.975, 4) * math.sqrt(183.2 / 4) / math.sqrt(5)
    assert r.expected_loss_ci() == pytest.approx((max(0.0, 5.4 - half), 5.4 + half))
    assert r.expected_loss_ci()[0] == 0.0 and 5.4 - half < 0


def test_small_table_aggregate_differs_on_the_many_event_year(small_elt):
    # annual totals 35, 0, 12, 32, 20 -> layer 15, 0, 2, 15, 10
    r = price_layer(small_elt, 5, 10.0, 15.0, basis="aggregate")
    np.testing.assert_allclose(r.annual_loss, [15, 0, 2, 15, 10])
    assert r.expected_loss == pytest.approx(8.4)
    assert r.prob_attachment == pytest.approx(4 / 5)
    assert r.prob_exhaustion == pytest.approx(2 / 5)
    occ = price_layer(small_elt, 5, 10.0, 15.0)
    assert occ.annual_loss[3] == 0.0 and r.annual_loss[3] == 15.0


def test_aggregate_terms_on_per_event_layer(small_elt):
    # Z = 15, 0, 2, 0, 10; D = 5 -> 10, 0, 0, 0, 5; M = 8 -> 8, 0, 0, 0, 5
    r = price_layer(small_elt, 5, 10.0, 15.0, aggregate_deductible=5.0, aggregate_limit=8.0)
    np.testing.assert_allclose(r.annual_loss, [8, 0, 0, 0, 5])
    assert r.prob_attachment == pytest.approx(2 / 5)
    assert r.prob_exhaustion == pytest.approx(1 / 5)
    assert r.expected_events_in_layer == pytest.approx(3 / 5)


def test_share_scales_the_layer(small_elt):
    full = price_layer(small_elt, 5, 10.0, 15.0)
    half = price_layer(small_elt, 5, 10.0, 15.0, share=0.5)
    assert half.expected_loss == pytest.approx(full.expected_loss / 2)
    assert half.expected_loss_se == pytest.approx(full.expected_loss_se / 2)
    assert half.prob_attachment == full.prob_attachment
    assert half.pure_rate_on_line == pytest.approx(full.pure_rate_on_line)


def test_empty_table_and_all_below_attachment():
    empty = pd.DataFrame({"year": pd.Series([], dtype="int64"), "event_id": pd.Series([], dtype="int64"),
                          "loss": pd.Series([], dtype="float64")})
    r = price_layer(empty, 10, 0.0, 5.0)
    assert (r.expected_loss, r.expected_loss_se, r.prob_attachment, r.prob_exhaustion) == (0, 0, 0, 0)
    assert r.annual_loss.shape == (10,)
    low = pd.DataFrame({"year": [0, 1, 1], "event_id": [0, 1, 2], "loss": [1.0, 2.0, 3.0]})
    for basis in ("occurrence", "aggregate"):
        r = price_layer(low, 4, 10.0, 5.0, basis=basis)
        assert r.expected_loss == 0 and r.prob_attachment == 0 and r.expected_events_in_layer == 0


def test_reinstatements_gemact_formula():
    # A = 0, C = 10, one reinstatement at 100 %: Z = 0, 5, 10, 25 -> ceded 0, 5, 10, 20 (agg cover 20)
    elt = pd.DataFrame({"year": [1, 2, 3, 3, 3], "event_id": [0, 1, 2, 3, 4], "loss": [5.0, 10.0, 10.0, 10.0, 5.0]})
    r = price_layer(elt, 4, 0.0, 10.0, reinstatements=(1, 1.0))
    assert r.aggregate_limit == 20.0
    assert r.expected_loss == pytest.approx(8.75)
    # first slice min(Z, 10) = 0, 5, 10, 10 -> mean 6.25; P = 8.75 / (1 + 1.0 * 6.25 / 10)
    assert r.upfront_premium == pytest.approx(8.75 / 1.625)
    assert r.upfront_premium + r.expected_reinstatement_premium == pytest.approx(8.75)
    # the reinstatement premium of each year, per unit of upfront premium: slice / C
    np.testing.assert_allclose(r.annual_reinstatement_factor, [0.0, 0.5, 1.0, 1.0])
    assert r.pure_rate_on_line == pytest.approx(8.75 / 1.625 / 10)
    assert r.prob_exhaustion == pytest.approx(1 / 4)
    free = price_layer(elt, 4, 0.0, 10.0, reinstatements=Reinstatements(1, (0.0,)))
    assert free.upfront_premium == pytest.approx(8.75) and free.expected_reinstatement_premium == 0
    # two reinstatements at 100 % and 50 %: cover 30, ceded 0, 5, 10, 25 -> 10;
    # slices: min(Z,10) mean 6.25; min(max(Z-10,0),10) = 0,0,0,10 -> 2.5
    two = price_layer(elt, 4, 0.0, 10.0, reinstatements=(2, [1.0, 0.5]))
    assert two.expected_loss == pytest.approx(10.0)
    assert two.upfront_premium == pytest.approx(10.0 / (1 + (6.25 + 0.5 * 2.5) / 10))


def test_duplicate_rows_of_one_event_are_summed():
    # two rows of the same event in year 0 (e.g. two counties): 6 + 6 = 12 -> 2 above A = 10
    elt = pd.DataFrame({"year": [0, 0, 1], "event_id": [7, 7, 7], "loss": [6.0, 6.0, 6.0]})
    assert price_layer(elt, 2, 10.0, 5.0).expected_loss == pytest.approx(1.0)
    # with peril as part of the id they are different events and do not reach the layer
    elt["peril"] = ["fire", "typhoon", "fire"]
    r = price_layer(elt, 2, 10.0, 5.0, event_col=["peril", "event_id"])
    assert r.expected_loss == 0.0


def test_year_loss_table_includes_zero_years(small_elt):
    ylt = year_loss_table(small_elt, 6)
    assert list(ylt["year"]) == [0, 1, 2, 3, 4, 5]
    np.testing.assert_allclose(ylt["aggregate_loss"], [35, 0, 12, 32, 20, 0])
    np.testing.assert_allclose(ylt["max_occurrence_loss"], [30, 0, 12, 8, 20, 0])
    assert list(ylt["n_events"]) == [2, 0, 1, 4, 1, 0]


def test_engine_style_columns():
    elt = pd.DataFrame({"sim_year": [0, 3, 3], "event": [1, 1, 2], "loss_tco2e": [4.0, 6.0, 9.0]})
    r = price_layer(elt, 4, 5.0, np.inf, year_col="sim_year", event_col="event", loss_col="loss_tco2e")
    assert r.expected_loss == pytest.approx((1 + 4) / 4)


def test_price_annual_layer_on_array():
    r = price_annual_layer(np.array([0.0, 12.0, 35.0, 20.0]), 10.0, 15.0)
    np.testing.assert_allclose(r.annual_loss, [0, 2, 15, 10])
    assert r.basis == "aggregate" and r.prob_exhaustion == pytest.approx(1 / 4)


def test_layer_loss_and_quota_share():
    np.testing.assert_allclose(layer_loss([0, 5, 12, 100], 5, 10), [0, 0, 7, 10])
    ceded, kept = quota_share([10.0, 0.0, 3.0], 0.3)
    np.testing.assert_allclose(ceded, [3.0, 0.0, 0.9])
    np.testing.assert_allclose(ceded + kept, [10.0, 0.0, 3.0])
    with pytest.raises(InsuranceInputError, match="cession"):
        quota_share([1.0], 1.5)


# ---- validation -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.drop(columns="loss"), "missing required column"),
    (lambda d: d.assign(loss=["a", "b", "c"]), "'loss' must be numeric"),
    (lambda d: d.assign(loss=[1.0, np.nan, 2.0]), "'loss' has 1 missing"),
    (lambda d: d.assign(loss=[1.0, -1.0, 2.0]), "'loss' must be >= 0"),
    (lambda d: d.assign(loss=[1.0, np.inf, 2.0]), "'loss' must be finite"),
    (lambda d: d.assign(year=[0, 1, 5]), r"'year' must lie in \[0, n_years=5\)"),
    (lambda d: d.assign(year=[0, -1, 2]), "'year' must lie in"),
    (lambda d: d.assign(year=[0.5, 1.0, 2.0]), "'year' must hold integer"),
    (lambda d: d.assign(year=[True, False, True]), "'year' must be numeric"),
])
def test_bad_tables_are_rejected(mutate, match):
    elt = pd.DataFrame({"year": [0, 1, 2], "event_id": [0, 1, 2], "loss": [1.0, 2.0, 3.0]})
    with pytest.raises(InsuranceInputError, match=match):
        price_layer(mutate(elt), 5, 0.0, 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(attachment=-1.0, limit=1.0), "attachment"),
    (dict(attachment=0.0, limit=0.0), "limit"),
    (dict(attachment=0.0, limit=np.nan), "limit"),
    (dict(attachment=0.0, limit=1.0, basis="annual"), "basis"),
    (dict(attachment=0.0, limit=1.0, share=0.0), "share"),
    (dict(attachment=0.0, limit=1.0, basis="aggregate", reinstatements=(1, 1.0)), "occurrence"),
    (dict(attachment=0.0, limit=1.0, reinstatements=(1, 1.0), aggregate_limit=5.0), "not both"),
    (dict(attachment=0.0, limit=np.inf, reinstatements=(1, 1.0)), "finite limit"),
    (dict(attachment=0.0, limit=1.0, reinstatements=(2, [1.0])), "premium_pct"),
    (dict(attachment=0.0, limit=1.0, aggregate_deductible=-2.0), "aggregate_deductible"),
])
def test_bad_terms_are_rejected(kwargs, match):
    elt = pd.DataFrame({"year": [0, 1], "event_id": [0, 1], "loss": [1.0, 2.0]})
    with pytest.raises(InsuranceInputError, match=match):
        price_layer(elt, 3, **kwargs)


def test_bad_n_years_and_error_is_value_error():
    elt = pd.DataFrame({"year": [0], "event_id": [0], "loss": [1.0]})
    with pytest.raises(ValueError, match="n_years"):
        price_layer(elt, 0, 0.0, 1.0)
    with pytest.raises(InsuranceInputError, match="n_years"):
        event_losses(elt, 2.5)


def test_large_unsorted_table_prices_exactly():
    # speed is measured by `carbon-risk bench --cases price_layer`, not asserted here
    rng = np.random.default_rng(3)
    n_rows, n_years = 200_000, 40_000
    elt = pd.DataFrame({"year": rng.integers(0, n_years, n_rows), "event_id": np.arange(n_rows),
                        "loss": rng.exponential(10.0, n_rows)})
    r = price_layer(elt, n_years, 20.0, 30.0)              # unsorted rows: includes the sort
    assert r.expected_loss == pytest.approx(layer_loss(elt["loss"], 20.0, 30.0).sum() / n_years, rel=1e-9)


def test_rate_on_line_of_a_denormal_limit_is_finite():
    """share x limit underflows to 0 for a limit of 5e-324: the rate must not divide by zero."""
    elt = pd.DataFrame({"year": [0, 1, 2], "event_id": [0, 1, 2], "loss": [1.0, 0.0, 3.0]})
    r = price_layer(elt, 3, 0.5, 5e-324, share=0.5)
    assert math.isfinite(r.pure_rate_on_line) and 0.0 <= r.pure_rate_on_line <= 1.0


# ---- exhaustion is counted only in years the layer pays ----------------------------------------------
def test_exhaustion_with_an_aggregate_deductible_needs_the_layer_to_pay(small_elt):
    # A = 10, C = 15: Z = 15 (the 30 event uses up the per-event cover), 0, 2, 0, 10. An aggregate
    # deductible of 20 absorbs every year: nothing attaches, so nothing can be exhausted (the event of
    # 30 did reach A + C, which was counted as an exhaustion before)
    r = price_layer(small_elt, 5, 10.0, 15.0, aggregate_deductible=20.0)
    np.testing.assert_allclose(r.annual_loss, 0.0)
    assert r.prob_attachment == 0.0 and r.prob_exhaustion == 0.0
    # deductible 12: year 0 pays 3 (and had the exhausting event), year 4 pays nothing
    r = price_layer(small_elt, 5, 10.0, 15.0, aggregate_deductible=12.0)
    np.testing.assert_allclose(r.annual_loss, [3, 0, 0, 0, 0])
    assert r.prob_attachment == pytest.approx(1 / 5) and r.prob_exhaustion == pytest.approx(1 / 5)
    np.testing.assert_array_equal(r.annual_exhausted, [True, False, False, False, False])
    # with an aggregate limit, exhaustion is the year's recovery reaching it
    r = price_layer(small_elt, 5, 10.0, 15.0, aggregate_deductible=12.0, aggregate_limit=3.0)
    np.testing.assert_array_equal(r.annual_exhausted, r.annual_loss >= 3.0)


@pytest.mark.parametrize("kw", [{}, {"aggregate_deductible": 15.0}, {"aggregate_deductible": 40.0},
                                {"aggregate_limit": 25.0}, {"aggregate_deductible": 10.0, "aggregate_limit": 25.0},
                                {"reinstatements": (1, 1.0)}, {"basis": "aggregate"}])
def test_exhaustion_never_exceeds_attachment(exp_elt, kw):
    r = price_layer(exp_elt, N_YEARS, A, C, **kw)
    assert r.prob_exhaustion <= r.prob_attachment
    assert not (r.annual_exhausted & (r.annual_loss <= 0)).any()          # year by year
    assert r.prob_exhaustion == pytest.approx(r.annual_exhausted.mean())
    assert r.expected_events_in_layer == pytest.approx(r.annual_events_in_layer.mean())
