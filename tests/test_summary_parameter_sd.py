"""The parameter sd's 95 % interval (finance_engine.simulation.summary.parameter_sd_interval), held to a
closed-form one-way random-effects model: x = mu + b_set + e_path with b ~ N(0, sigma_b^2), e ~ N(0, sigma_w^2),
so the true parameter sd is sigma_b, and the streamed summaries give the same interval as the per-path ones."""

from __future__ import annotations

import numpy as np
import pytest

from finance_engine.simulation.summary import (moments_from_sums, nested_moments, parameter_sd_interval,
                                               summarise_moments, summarise_per_path)

REPLICATES = 4000  # coverage's standard error sqrt(0.95 * 0.05 / 4000) = 0.34 %: the band below is +-4.4 of it


def _random_effects(rng, sets: int, m: int, sigma_b: float, sigma_w: float, reps: int) -> np.ndarray:
    """(sets * m, reps): each column one replicate, paths in consecutive sets of m sharing b."""
    b = rng.normal(0.0, sigma_b, (sets, 1, reps))
    e = rng.normal(0.0, sigma_w, (sets, m, reps))
    return (10.0 + b + e).reshape(sets * m, reps)


@pytest.mark.parametrize("sets,m", [(5, 4), (10, 4), (50, 4), (250, 4), (20, 8), (100, 2)])
def test_the_interval_covers_the_true_parameter_sd_95_percent_of_the_time(sets, m):
    rng = np.random.default_rng(1000 * sets + m)
    for ratio in (0.05, 0.25, 1.0, 4.0):  # sigma_b^2 / sigma_w^2
        sigma_b = np.sqrt(ratio) * 3.0
        x = _random_effects(rng, sets, m, sigma_b, 3.0, REPLICATES)
        mo = nested_moments(x, m, True)
        lo, hi = mo["parameter_sd_ci95_low"], mo["parameter_sd_ci95_high"]
        assert (lo <= mo["parameter_sd"]).all() and (mo["parameter_sd"] <= hi).all()
        cover = np.mean((lo <= sigma_b) & (sigma_b <= hi))
        assert 0.935 <= cover <= 0.965, (sets, m, ratio, cover)
        # and neither end fails much more often than the other (2.5 % each)
        assert np.mean(sigma_b < lo) < 0.04 and np.mean(sigma_b > hi) < 0.04


def test_with_no_spread_the_interval_still_covers_and_bounds_an_unresolved_zero():
    """sigma_b = 0: about half the point estimates are clipped to 0 ("not resolved"); the interval then runs
    from 0 to an upper bound (0 itself where MSB is far below MSW), and it holds the truth at least 95 % of
    the time."""
    rng = np.random.default_rng(7)
    x = _random_effects(rng, 50, 4, 0.0, 2.0, REPLICATES)
    mo = nested_moments(x, 4, True)
    clipped = mo["parameter_sd"] == 0
    assert 0.35 < clipped.mean() < 0.65
    assert (mo["parameter_sd_ci95_low"][clipped] == 0).all()
    # the upper end is truncated at 0 only where MSB falls below MSW's lower F quantile: about 1 in 40 here
    assert np.mean(mo["parameter_sd_ci95_high"] == 0) < 0.04
    assert np.mean(mo["parameter_sd_ci95_low"] == 0) >= 0.95


def test_the_interval_is_exact_without_within_set_noise():
    """MSW = 0: (g - 1) MSB / (m sigma_b^2) is chi-square with g - 1 degrees of freedom, and the interval is
    that chi-square interval of sigma_b^2 = MSB / m."""
    from scipy import stats

    g, m = 12, 4
    msb = np.array([3.0, 7.5])
    lo, hi = parameter_sd_interval(msb, np.zeros(2), g, m)
    want_lo = np.sqrt((g - 1) * msb / m / stats.chi2.ppf(0.975, g - 1))
    want_hi = np.sqrt((g - 1) * msb / m / stats.chi2.ppf(0.025, g - 1))
    np.testing.assert_allclose(lo, want_lo, rtol=1e-12)
    np.testing.assert_allclose(hi, want_hi, rtol=1e-12)


def test_more_paths_narrow_the_interval():
    rng = np.random.default_rng(3)
    widths = []
    for sets in (25, 250, 2500):
        mo = nested_moments(_random_effects(rng, sets, 4, 1.0, 3.0, 200), 4, True)
        widths.append(np.median(mo["parameter_sd_ci95_high"] - mo["parameter_sd_ci95_low"]))
    assert widths[0] > 2.5 * widths[1] > 2.5 * 2.5 * widths[2] * 0.9


def test_no_interval_without_sets_or_without_parameter_uncertainty():
    x = np.random.default_rng(0).normal(size=(40, 3))
    one = nested_moments(x, 1, True)  # sets of one path: no split of the two kinds of uncertainty
    assert np.isnan(one["parameter_sd_ci95_low"]).all() and np.isnan(one["parameter_sd_ci95_high"]).all()
    few = nested_moments(x[:6], 4, True)  # one complete set
    assert np.isnan(few["parameter_sd_ci95_high"]).all()
    off = nested_moments(x, 4, False)  # nothing drawn: the parameter sd is 0, exactly
    assert (off["parameter_sd"] == 0).all()
    assert (off["parameter_sd_ci95_low"] == 0).all() and (off["parameter_sd_ci95_high"] == 0).all()


@pytest.mark.parametrize("n", [64, 66])  # 66: a short last set, kept in the mean, out of the decomposition
def test_streamed_sums_give_the_per_path_interval(n):
    """The fine levels' summaries come from streamed sums (moments_from_sums): the same interval."""
    rng = np.random.default_rng(n)
    m = 4
    x = _random_effects(rng, n // m + 1, m, 1.5, 2.0, 5)[:n]
    g = n // m
    full = x[: g * m]
    sums = np.stack([x.sum(axis=0), (x * x).sum(axis=0),
                     (full.reshape(g, m, -1).sum(axis=1) ** 2).sum(axis=0)])
    short = np.stack([x[g * m:].sum(axis=0), (x[g * m:] ** 2).sum(axis=0)]) if n > g * m else None
    got = moments_from_sums(sums, n, m, True, short)
    want = nested_moments(x, m, True)
    for k in ("parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, err_msg=k)


def test_the_engine_summaries_carry_the_interval():
    """Both summary tables (per-path and streamed) have the two columns, around the parameter sd."""
    rng = np.random.default_rng(5)
    x = _random_effects(rng, 32, 4, 1.0, 1.0, 6).reshape(128, 2, 3)  # paths, years, groups
    per_path = x.transpose(1, 0, 2)[None]  # (metrics, years, paths, groups)
    labels = np.array(["a", "b", "c"], dtype=object)
    df = summarise_per_path(per_path, ("sink_tco2e",), labels, "county", 2026, 4, True, (0.5,), (0.95,))
    assert {"parameter_sd_ci95_low", "parameter_sd_ci95_high"} <= set(df.columns)
    assert (df.parameter_sd_ci95_low <= df.parameter_sd).all() and (df.parameter_sd <= df.parameter_sd_ci95_high).all()
    g = 32
    sets = per_path.reshape(1, 2, g, 4, 3).sum(axis=3)
    sums = np.stack([per_path.sum(axis=2), (per_path ** 2).sum(axis=2), (sets ** 2).sum(axis=2)])
    streamed = summarise_moments(sums, 128, ("sink_tco2e",), labels, "county", 2026, 4, True)
    for k in ("parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high"):
        np.testing.assert_allclose(streamed[k], df[k], rtol=1e-9, err_msg=k)
