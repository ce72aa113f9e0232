"""The collateral value regression and its delete-a-group jackknife (finance_engine/value_regression.py)."""

import numpy as np
import pytest

from finance_engine.value_regression import (
    MIN_JACKKNIFE_GROUPS,
    conditional_value,
    conditional_values,
    fit,
    jackknife_groups,
    jackknife_se,
    value_basis,
)


def test_each_refit_is_the_least_squares_fit_without_its_group():
    rng = np.random.default_rng(3)
    n = 3000
    stock, price = rng.lognormal(size=n), rng.lognormal(size=n)
    y = 2 * stock + price * np.maximum(stock - 1, 0) + rng.normal(size=n)
    groups, k = jackknife_groups(np.arange(n), 4)
    basis = value_basis(stock, price)
    fitted, reps = fit(y, basis, groups, k)
    assert reps.shape == (k, n)
    for g in range(k):
        keep = groups != g
        coef = np.linalg.lstsq(basis[:, keep].T, y[keep], rcond=None)[0]
        np.testing.assert_allclose(reps[g], coef @ basis, rtol=0, atol=1e-9 * np.abs(y).max())
    # a degenerate basis (a constant price) falls back to the SVD fit, replicates too
    flat = value_basis(stock, np.ones(n))
    f2, r2 = fit(y, flat, groups, k)
    keep = groups != 0
    np.testing.assert_allclose(r2[0], np.linalg.lstsq(flat[:, keep].T, y[keep], rcond=None)[0] @ flat,
                               atol=1e-8 * np.abs(y).max())


def test_groups_are_whole_parameter_sets_dealt_in_turn():
    groups, k = jackknife_groups(np.arange(400), 4)
    assert k == 10
    sets = groups.reshape(-1, 4)
    assert (sets == sets[:, :1]).all()  # a set's paths stay together
    assert np.bincount(groups).tolist() == [40] * 10
    # ids that are not contiguous (a block of a run) still fill every group
    g2, k2 = jackknife_groups(np.r_[np.arange(0, 40), np.arange(4000, 4040)], 4)
    assert k2 == 10 and np.bincount(g2, minlength=10).min() > 0
    # too few sets for an error estimate
    assert jackknife_groups(np.arange(16), 4) == (None, 0)
    assert jackknife_groups(np.arange(4 * MIN_JACKKNIFE_GROUPS), 4)[1] == MIN_JACKKNIFE_GROUPS


def test_the_jackknife_error_of_a_mean_is_the_between_group_error():
    """For a mean over equal groups the delete-a-group jackknife is the batch-means error exactly:
    sd(group means) / sqrt(K); and it needs whole parameter sets: with strong set effects, groups
    that split the sets see less than the mean's real error."""
    rng = np.random.default_rng(5)
    n, m = 4000, 4
    x = np.repeat(rng.normal(size=n // m) * 3.0, m) + rng.normal(size=n)  # strong set effects
    groups, k = jackknife_groups(np.arange(n), m)
    reps = np.array([x[groups != g].mean() for g in range(k)])
    batch = np.array([x[groups == g].mean() for g in range(k)])
    assert jackknife_se(reps) == pytest.approx(batch.std(ddof=1) / np.sqrt(k), rel=1e-12)
    between_sets = x.reshape(-1, m).mean(axis=1).std(ddof=1) / np.sqrt(n // m)
    assert 0.6 < jackknife_se(reps) / between_sets < 1.6  # 9 degrees of freedom
    split = np.arange(n) % k  # paths of a set in different groups
    reps_split = np.array([x[split != g].mean() for g in range(k)])
    assert jackknife_se(reps_split) < 0.6 * jackknife_se(reps)
    assert np.isnan(jackknife_se(np.array([1.0])))


def test_the_state_a_lender_sees_separates_the_fits():
    """Paths past the methodology change get their own fit when both sides hold enough paths: the value
    there is a scaled copy, which indicator terms alone would not follow."""
    rng = np.random.default_rng(8)
    n = 4000
    stock, price = rng.lognormal(size=n), rng.lognormal(size=n)
    changed = rng.random(n) < 0.3
    truth = np.where(changed, 0.4, 1.0) * stock * price
    y = truth + rng.normal(size=n) * 0.1
    fitted, _ = conditional_value(y, stock, price, changed=changed)
    blind, _ = conditional_value(y, stock, price)

    def rms(f, side):
        return np.sqrt(((f[side] - truth[side]) ** 2).mean()) / truth[side].std()

    for side in (changed, ~changed):
        assert rms(fitted, side) < 0.15
        assert rms(blind, side) > 2 * rms(fitted, side)
    # pending credits enter the basis only where they vary
    assert value_basis(stock, price, pending=np.zeros(n)).shape[0] == value_basis(stock, price).shape[0]
    assert value_basis(stock, price, pending=rng.random(n)).shape[0] == value_basis(stock, price).shape[0] + 2


@pytest.mark.parametrize("n_changed", [0, 120, 900])
def test_price_cases_fitted_together_are_each_fitted_alone(n_changed):
    """A valuation's volatility sensitivities share the regression's state (the stock's spline, the
    methodology sides, the groups' order): each case is bit for bit what a fit of its own gives, with
    the methodology change on no paths, on too few for fits of their own, and on enough."""
    rng = np.random.default_rng(21)
    n = 2000
    stock, pending, position = rng.lognormal(size=n), rng.random(n), rng.normal(size=n)
    changed = np.zeros(n, dtype=bool)
    changed[rng.choice(n, n_changed, replace=False)] = True
    prices = [rng.lognormal(size=n) * f for f in (1.0, 0.7, 1.6)]
    ys = [p * stock + rng.normal(size=n) for p in prices]
    groups, k = jackknife_groups(np.arange(n), 4)
    together = conditional_values(ys, stock, prices, pending, changed, position, groups, k)
    sides = [changed, ~changed] if n_changed >= 200 else [np.ones(n, dtype=bool)]  # MIN_PATHS_OWN_FIT
    for y, price, (fitted, reps) in zip(ys, prices, together):
        # each case from its own basis and fit, one per side of the change where both sides are large
        alone, alone_reps = np.empty(n), np.empty((k, n))
        for side in sides:
            basis = value_basis(stock[side], price[side], pending[side], changed[side] if len(sides) == 1 else None,
                                position[side])
            alone[side], alone_reps[:, side] = fit(y[side], basis, groups[side], k)
        assert np.array_equal(fitted, alone) and np.array_equal(reps, alone_reps)
    assert [r is None for _, r in conditional_values(ys, stock, prices)] == [True] * 3
