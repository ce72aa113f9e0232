"""Quantile intervals of paths in parameter sets: widened by the design effect, so that they cover."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from finance_engine.mc_error import quantile_ci, quantiles_and_cis
from finance_engine.simulation.summary import quantile_design_effect, quantiles_with_ci


def _grouped(rng, g: int, m: int, between: float, within: float) -> np.ndarray:
    """``g`` sets of ``m`` paths sharing a set effect: x = b_set + e, normal."""
    return (rng.normal(0.0, between, g)[:, None] + rng.normal(0.0, within, (g, m))).reshape(-1)


@pytest.mark.parametrize("p", [0.5, 0.95])
def test_intervals_of_grouped_paths_cover_the_true_quantile(p):
    rng = np.random.default_rng(0)
    between, within, m = 1.0, 0.45, 4
    true_q = stats.norm.ppf(p, scale=np.hypot(between, within))
    hits = {1: 0, m: 0}
    reps = 400
    for _ in range(reps):
        x = _grouped(rng, 100, m, between, within)
        for size in hits:
            lo, hi = quantile_ci(x, p, set_size=size)
            hits[size] += lo <= true_q <= hi
    # counting the sets, the 95 % interval covers about 95 % of the time; as if the 400 paths were
    # independent it covers far less (the paths' correlation within a set is 0.83; the indicator's is
    # lower in the tail than at the median)
    assert hits[m] / reps >= 0.92
    assert hits[1] / reps <= 0.88 and hits[1] < hits[m] - 0.05 * reps


def test_design_effect_is_one_for_independent_paths_and_leaves_their_interval_unchanged():
    rng = np.random.default_rng(1)
    x = rng.normal(size=4000)
    deff = quantile_design_effect(x, np.quantile(x, 0.9), 0.9, 4)
    assert 0.8 < deff < 1.25
    assert quantile_design_effect(x, np.quantile(x, 0.9), 0.9, 1) is None
    # a design effect at or below 1 (independent or antithetic pairs) keeps the order-statistic interval
    lo, hi = quantile_ci(x, 0.9)
    y = np.repeat(x[:1000], 1)  # the same sample
    assert quantile_ci(y, 0.5, set_size=1) == quantile_ci(y, 0.5)
    assert lo < np.quantile(x, 0.9) < hi


def test_summary_columns_take_the_design_effect_column_by_column():
    rng = np.random.default_rng(2)
    grouped = _grouped(rng, 250, 4, 1.0, 0.3)
    independent = rng.normal(size=1000)
    x = np.column_stack([grouped, independent])  # (paths, 2 columns)
    out = quantiles_with_ci(x, (0.5,), set_size=4)
    for j, col in enumerate((grouped, independent)):
        assert [out["p50_ci_low"][j], out["p50_ci_high"][j]] == quantile_ci(col, 0.5, set_size=4)
    width = out["p50_ci_high"] - out["p50_ci_low"]
    plain = quantiles_with_ci(x, (0.5,))
    assert width[0] > 1.5 * (plain["p50_ci_high"][0] - plain["p50_ci_low"][0])
    assert plain["p50_ci_low"][1] == out["p50_ci_low"][1] or abs(width[1] / (plain["p50_ci_high"][1]
                                                                        - plain["p50_ci_low"][1]) - 1) < 0.2


def test_tail_mean_errors_of_grouped_paths_cover_the_true_tail_mean():
    from finance_engine.mc_error import tail_mean_se

    rng = np.random.default_rng(4)
    sigma = np.hypot(1.0, 0.45)
    true_tvar = sigma * stats.norm.pdf(stats.norm.ppf(0.95)) / 0.05  # E[X | X >= q95] of N(0, sigma^2)
    hits = {1: 0, 4: 0}
    reps = 400
    for _ in range(reps):
        x = _grouped(rng, 250, 4, 1.0, 0.45)
        k = int(np.ceil(x.size * 0.05))
        est = np.sort(x)[-k:].mean()
        for size in hits:
            hits[size] += abs(est - true_tvar) <= 1.96 * tail_mean_se(x, 0.95, upper=True, set_size=size)
    assert hits[4] / reps >= 0.90 and hits[1] < hits[4] - 0.05 * reps


def test_ties_at_the_quantile_are_no_design_effect():
    # zero-inflated losses of independent paths: the share at or below p05 = 0 is about 0.6, not 0.05, and
    # its variance is binomial for that share, so nothing widens the interval
    rng = np.random.default_rng(5)
    x = np.where(rng.random(4000) < 0.6, 0.0, rng.exponential(1.0, 4000))
    deff = float(quantile_design_effect(x, np.quantile(x, 0.05), 0.05, 4))
    assert 0.8 < deff < 1.25
    assert quantile_design_effect(np.zeros(400), 0.0, 0.5, 4) == 1.0  # every path at the quantile


def test_tail_errors_are_widened_whatever_the_shape():
    from finance_engine.simulation.summary import tail_stats

    rng = np.random.default_rng(6)
    x = _grouped(rng, 250, 4, 1.0, 0.3)
    one = tail_stats(x, (0.5,), (0.95,), np.array(True), set_size=4)["tvar95_se"]
    cube = tail_stats(x[:, None, None], (0.5,), (0.95,), np.array(True), set_size=4)["tvar95_se"]
    plain = tail_stats(x, (0.5,), (0.95,), np.array(True))["tvar95_se"]
    assert float(one) == float(cube.ravel()[0]) > 1.3 * float(plain)


def test_insurance_measures_count_groups_of_correlated_years():
    from finance_engine.insurance.risk_measures import pml, var_tvar_table

    rng = np.random.default_rng(7)
    # 500 "paths" of 4 years each sharing a path effect: annual losses, path-major
    x = np.exp(_grouped(rng, 500, 4, 0.8, 0.4))
    plain, grouped = pml(x, (10, 50)), pml(x, (10, 50), group_size=4)
    assert (grouped["loss"] == plain["loss"]).all()
    assert ((grouped["ci_high"] - grouped["ci_low"]) > (plain["ci_high"] - plain["ci_low"])).all()
    assert (grouped["rank_low"] <= plain["rank_low"]).all() and (grouped["rank_high"] >= plain["rank_high"]).all()
    t0, t1 = var_tvar_table(x, (0.95,)), var_tvar_table(x, (0.95,), group_size=4)
    assert t1["tvar"].iloc[0] == t0["tvar"].iloc[0] and t1["tvar_se"].iloc[0] > t0["tvar_se"].iloc[0]
    assert pml(x, (10,), group_size=1).equals(pml(x, (10,)))


@pytest.mark.parametrize("set_size", [1, 4, 20])
@pytest.mark.parametrize("method", ["linear", "higher"])
def test_quantiles_from_one_sort_equal_the_one_at_a_time_figures(set_size, method):
    rng = np.random.default_rng(11)
    x = np.repeat(rng.normal(size=500), 4)[:1999] + rng.normal(size=1999)  # sets of correlated paths
    ps = (0.01, 0.05, 0.5, 0.95)
    qs, cis = quantiles_and_cis(x, ps, set_size=set_size, method=method)
    for p, q, ci in zip(ps, qs, cis):
        assert q == np.quantile(x, p, method=method)
        assert ci == quantile_ci(x, p, set_size=set_size)


def test_set_means_by_strided_sums_equal_numpys_reduction():
    from finance_engine.simulation.summary import _design_effect

    rng = np.random.default_rng(5)
    for m in (2, 3, 4, 7, 8, 12, 16, 17):
        for values in (rng.random((4000, 3)), rng.random(4000), rng.random(4000) < 0.2):
            g = values.shape[0] // m
            by_numpy = values[:g * m].reshape(g, m, *values.shape[1:]).mean(axis=1).var(axis=0, ddof=1) / g
            assert np.array_equal(_design_effect(values[:g * m], m, np.ones(np.shape(by_numpy))), by_numpy)


@pytest.mark.parametrize("upper", [False, True])
def test_a_tail_on_an_atom_has_the_error_of_the_count_on_the_atom(upper):
    """A collateral value floored at 0 (expected shortfall of values) or a payout capped at its limit
    (TVaR of losses): the 1 % tail of 256 paths (3 values) often lies wholly on the atom, where the
    asymptotic formula gives 0. The reported error must match the estimate's spread over repeated samples."""
    from finance_engine.mc_error import tail_mean_se
    from finance_engine.simulation.summary import tail_stats

    rng = np.random.default_rng(3)
    n, level, reps, p_atom = 256, 0.01, 4000, 0.015
    k = 3

    def sample():
        x = 10.0 + rng.exponential(100.0, n)
        x[rng.random(n) < p_atom] = 0.0
        return -x + 1e4 if upper else x  # the atom at the top (a cap at 1e4) or at the bottom (0)

    est, reported = np.empty(reps), []
    for r in range(reps):
        x = sample()
        xs = np.sort(x)
        tail = xs[n - k:] if upper else xs[:k]
        est[r] = tail.mean()
        if np.all(tail == tail[0]):
            se = tail_mean_se(x, 1 - level if upper else level, upper=upper)
            assert se > 0  # not the asymptotic formula's 0
            reported.append(se)
            if r < 20:  # the engine's summaries give the same figure
                ts = tail_stats(x[:, None], (0.5,), (1 - level,), np.array(upper))  # the k = 3 values either way
                name = next(c for c in ts if c.endswith("_se"))
                assert ts[name][0] == pytest.approx(se, rel=1e-12)
    assert len(reported) > reps / 3  # the case is common: P(at least 3 of 256 on the atom) is about 0.5
    ratio = np.median(reported) / est.std()
    assert 0.8 < ratio < 1.25, ratio  # seeds 3-5: 1.005-1.015 (the asymptotic formula: 0)


def test_a_flat_tail_off_any_atom_keeps_the_asymptotic_error():
    from finance_engine.mc_error import tail_mean_se
    from finance_engine.simulation.summary import flat_tail_se, tail_mean_and_se

    x = np.random.default_rng(1).normal(size=1000)
    xs = np.sort(x)
    assert np.isnan(flat_tail_se(xs, 10, False)) and np.isnan(flat_tail_se(xs, 10, True))
    assert tail_mean_se(x, 0.01, upper=False) == pytest.approx(float(tail_mean_and_se(xs[:10], xs[9], 1000)[1]))
    # every value on the atom: nothing beyond it for the tail to take in, no spread to report
    assert flat_tail_se(np.zeros(100), 5, False) == 0.0


def test_linear_quantiles_are_numpys_bit_for_bit():
    """The partition-at-a-time quantiles equal ``numpy.quantile`` (method linear) exactly: the value
    regression's knots come from them, and its fits must not move by a last bit."""
    from finance_engine.mc_error import linear_quantiles

    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, 400))
        x = rng.normal(size=n) if trial % 3 else rng.integers(0, 5, n).astype(float)  # ties too
        ps = rng.random(int(rng.integers(1, 8)))
        ps[0] = (0.0, 1.0, ps[0])[trial % 3]
        assert np.array_equal(linear_quantiles(x, ps), np.quantile(x, ps)), (n, ps)
    for dtype in (np.float64, np.float32):  # the regression's replicates are float32
        x = rng.normal(size=(4, 3, 501)).astype(dtype)
        ps = (0.01, 0.05, 0.5, 0.95)
        assert np.array_equal(linear_quantiles(x, ps), np.moveaxis(np.quantile(x, ps, axis=-1), 0, -1))
    assert linear_quantiles(np.arange(5.0), 0.5).tolist() == [2.0]  # a scalar p counts as one
    before = x.copy()
    linear_quantiles(x, ps)
    assert np.array_equal(x, before)  # a copy unless told to overwrite


def test_linear_quantiles_of_the_smallest_values_of_each_row():
    """``n_valid``: the quantiles of the values below the ``+inf`` padding (a jackknife replicate's
    kept paths), the top quantile included."""
    from finance_engine.mc_error import linear_quantiles

    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 200))
    padded = np.where(rng.random((3, 200)) < 0.1, np.inf, x)
    ps = (0.0, 0.01, 0.5, 0.95, 1.0)
    for row in range(3):
        kept = padded[row][np.isfinite(padded[row])]
        assert np.array_equal(linear_quantiles(padded[row], ps, n_valid=kept.size), np.quantile(kept, ps))
    one = np.array([np.inf, 3.0, np.inf])
    assert linear_quantiles(one, ps, n_valid=1).tolist() == [3.0] * len(ps)


def test_a_quantile_between_two_infinite_values_is_infinite_without_a_warning():
    """An LTV is +inf on a path worth nothing: a quantile that falls between two such paths, or short of one,
    is +inf (numpy's interpolation gives NaN and warns "invalid value encountered in subtract"); finite ones
    are unchanged."""
    import warnings

    from finance_engine.mc_error import linear_quantiles

    x = np.array([0.5, 0.7, np.inf, np.inf, np.inf, 0.2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = linear_quantiles(x, (0.1, 0.5, 0.95))
        padded = linear_quantiles(np.append(x, [np.inf] * 3), (0.5, 0.95), n_valid=6)
    assert got[0] == np.quantile(x[np.isfinite(x)].tolist() + [np.inf] * 3, 0.1) and np.isinf(got[1:]).all()
    assert np.isinf(padded).all()


def test_mean_ses_is_mean_se_of_each_row():
    from finance_engine.mc_error import mean_se, mean_ses

    rng = np.random.default_rng(13)
    rows = np.vstack([rng.normal(size=(3, 1000)) + rng.normal(size=(3, 250)).repeat(4, axis=1),
                      rng.random((1, 1000)) < 0.1])
    for set_size in (1, 4):
        np.testing.assert_allclose(mean_ses(rows, set_size), [mean_se(r, set_size) for r in rows], rtol=1e-12)
