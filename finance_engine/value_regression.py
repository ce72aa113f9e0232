"""The value of a loan's pledge at a year of its term, and how well the paths pin it down.

A lender at the end of year ``t`` sees the state of the pledge -- the stock, the carbon price and, with
issuance risk, the credits verified but not yet issued and whether the methodology has changed -- not
the path's future. The value at ``t`` of the cash flows still to come is their conditional expectation
given that state, estimated by a least-squares regression across paths (Longstaff & Schwartz, 2001,
"Valuing American options by simulation", RFS 14(1); the "American Monte Carlo" of bank exposure
engines such as ORE).

The regression is fitted on the paths it values, so its coefficients are as random as the paths: a
figure read from the values' tail (the largest safe loan, the chance the value falls below the
balance) moves with them, on top of the order statistics' own noise. On the demo's one-township loan
(10,000 paths, 12 seeds) the largest safe loan's spread across seeds was 3 times what its
order-statistic interval implied. :func:`conditional_value` therefore also returns the fit's
delete-a-group jackknife replicates: the paths fall into :data:`JACKKNIFE_GROUPS` groups of whole
parameter sets, and replicate ``k`` refits without group ``k`` (from the full fit's Gram matrix less
the group's, so a replicate costs a small solve and one prediction). A figure computed on replicate
``k``'s values over the paths outside group ``k`` gives :func:`jackknife_se`, a grouped jackknife
(batch) estimate with ``K - 1`` degrees of freedom, hence Student's t for its interval
(:func:`jackknife_t`); deleting a fixed share of the sample is what makes the jackknife work for
sample quantiles, where deleting one observation fails (Shao & Wu, 1989, "A general theory for
jackknife variance estimation", Ann. Statist. 17(3), for the delete-d jackknife). Over 16-60 seeds
the largest safe loan's jackknife error was 0.8-1.4 times its spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from finance_engine.mc_error import linear_quantiles

#: stock quantiles at which the value regression's spline may bend (:func:`value_basis`)
STOCK_KNOT_QUANTILES = (0.01, 0.05, 0.2, 0.5, 0.8, 0.95)
#: a knot is used only where at least this many paths lie on each side of it
MIN_PATHS_BEYOND_KNOT = 20
#: the paths on each side of the methodology change get fits of their own when the smaller side holds
#: at least this many; a smaller side shares the fit, shifted and tilted by terms of its own
MIN_PATHS_OWN_FIT = 200
#: groups of the delete-a-group jackknife (fewer when there are fewer parameter sets)
JACKKNIFE_GROUPS = 10
#: with fewer parameter sets than this no jackknife error is given (its t quantile would explode)
MIN_JACKKNIFE_GROUPS = 5
#: the Gram matrix's condition number beyond which a fit is taken from the SVD of the basis
MAX_CONDITION = 1e8


def _standardised(v: np.ndarray) -> np.ndarray:
    s = v.std()
    return (v - v.mean()) / s if s > 0 else np.zeros_like(v)


#: quantiles of the crediting position at which the basis may bend (:func:`value_basis`)
POSITION_KNOT_QUANTILES = (0.05, 0.2, 0.5)


def value_basis(stock: np.ndarray, price: np.ndarray, pending: np.ndarray | None = None,
                changed: np.ndarray | None = None, position: np.ndarray | None = None) -> np.ndarray:
    """The value regression's basis, shape (k, n_paths): ``1, a, b, b^2, a b`` and, for each knot
    ``c``, ``(a - c)+``, with ``a`` and ``b`` the standardised stock and price;
    with ``pending`` (tCO2e verified but not yet issued) that varies, ``p`` and ``p b`` (``p`` its
    standardised value); with ``changed`` (the methodology change has arrived) true on some paths and
    not others, ``m``, ``m a`` and ``m b`` (``m`` its indicator); with ``position`` (the crediting
    position after the last verification, ``models.carbon.CreditingRules.accrued_position``) that
    varies, ``c``, ``c b`` and hinges ``(c - k)+`` at its :data:`POSITION_KNOT_QUANTILES`.

    The stock enters as a piecewise-linear spline (knots at the stock's :data:`STOCK_KNOT_QUANTILES`,
    each kept where :data:`MIN_PATHS_BEYOND_KNOT` paths lie beyond it, so small runs get fewer) beside
    a stock-price product: the remaining value is about the credits still to come, a function of the
    stock that is not a parabola, times the price level. (Hinges times the price as well, which double
    the knots' columns, calibrated no better on the demo project.) The quadratic basis of
    numbers versions 1-4 could not bend so. On the demo's ``LS-LQ-P03`` (a 5-year loan, 30-year
    horizon, 8,192 paths) the 5 % of paths it valued lowest were worth 12-20 % more than it said
    (z = -5 to -9 against their realised flows) and the next 15 % 4-11 % less, and its 1 %-safe loan
    was 515,000 CNY where this basis, calibrated in every such band (|z| <= 1.3), gives 705,000 (with
    the issuance state).
    """
    return _basis(_state_rows(stock, pending, changed, position), price)


@dataclass(frozen=True)
class _StateRows:
    """The basis rows that do not involve the price (:func:`value_basis`), shared by the price cases
    of a valuation (its volatility sensitivities): the standardised stock ``a``, its hinges, and the
    pending credits ``p``, methodology indicator ``m`` and crediting position ``c`` where they enter
    (None where not), with the position's hinges."""

    a: np.ndarray
    hinges: list[np.ndarray]
    p: np.ndarray | None
    m: np.ndarray | None
    c: np.ndarray | None
    c_hinges: list[np.ndarray]


def _state_rows(stock: np.ndarray, pending: np.ndarray | None, changed: np.ndarray | None,
                position: np.ndarray | None) -> _StateRows:
    a = _standardised(stock)
    n = a.size
    qs = [q for q in STOCK_KNOT_QUANTILES if min(q, 1.0 - q) * n >= MIN_PATHS_BEYOND_KNOT]
    knots = np.unique(linear_quantiles(a, qs)) if qs else np.empty(0)
    knots = knots[(knots > a.min()) & (knots < a.max())]  # a hinge at an end is 0 or the line itself
    hinges = [np.maximum(a - k, 0.0) for k in knots]
    p = _standardised(pending) if pending is not None and pending.std() > 0 else None
    m = changed.astype(float) if changed is not None and 0 < int(changed.sum()) < n else None
    c, c_hinges = None, []
    if position is not None and position.std() > 0:
        # the next verification credits the stock gained since the last one, less a carried deficit:
        # after the first verification the stock alone no longer tells it (a 9-year loan's values were
        # off by z = -12 to +15 in the bands of this position without it)
        c = _standardised(position)
        qs = [q for q in POSITION_KNOT_QUANTILES if min(q, 1.0 - q) * n >= MIN_PATHS_BEYOND_KNOT]
        for k in np.unique(linear_quantiles(c, qs)) if qs else ():
            if c.min() < k < c.max():
                c_hinges.append(np.maximum(c - k, 0.0))
    return _StateRows(a, hinges, p, m, c, c_hinges)


def _basis(state: _StateRows, price: np.ndarray) -> np.ndarray:
    """:func:`value_basis` from the state's rows and the price."""
    a, b = state.a, _standardised(price)
    rows = [np.ones(a.size), a, b, b * b, a * b, *state.hinges]
    if state.p is not None:
        rows += [state.p, state.p * b]
    if state.m is not None:
        rows += [state.m, state.m * a, state.m * b]
    if state.c is not None:
        rows += [state.c, state.c * b, *state.c_hinges]
    return np.array(rows)


def _coefficients(gram: np.ndarray, rhs: np.ndarray, basis: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients from the normal equations, or from the SVD of ``basis`` (rows:
    regressors) when the Gram matrix's condition number exceeds :data:`MAX_CONDITION`."""
    eig = np.linalg.eigvalsh(gram)  # ascending
    if eig[0] > eig[-1] / MAX_CONDITION:
        return np.linalg.solve(gram, rhs)
    return np.linalg.lstsq(basis.T, y, rcond=None)[0]


def group_layout(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """The paths in group order (stable) and each group's bounds in it, shape (n_groups + 1,): what
    :func:`fit` needs of the groups, computed once for the fits of several targets on the same paths."""
    order = np.argsort(groups, kind="stable")
    return order, np.searchsorted(groups[order], np.arange(n_groups + 1))


def fit(y: np.ndarray, basis: np.ndarray, groups: np.ndarray | None = None, n_groups: int = 0,
        layout: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Fitted values of the least-squares regression of ``y`` on the rows of ``basis``, and with
    ``groups`` (a group 0 .. n_groups-1 per path, or their :func:`group_layout`) the fitted values of
    every path under each delete-a-group refit, shape (n_groups, n_paths).

    Solved through the normal equations (the k x k Gram matrix) at a fraction of the cost of an SVD
    of the whole basis; on a valuation's paths the fitted values agree with that fit to about 1e-13
    of their scale. Squaring the basis squares its condition number, so a basis near degeneracy (a
    stock that takes two values but for tiny noise, a stock and a price collinear to 1e-7) would lose
    digits: there the fit falls back to the SVD of the whole basis (``numpy.linalg.lstsq``,
    minimum-norm where it is singular), and such a refit to the pseudo-inverse of its Gram matrix.
    A refit is the full fit's Gram matrix and right-hand side less its group's (one batched solve
    for all groups); it keeps the full sample's basis (knots and standardisation).
    """
    gram = basis @ basis.T
    rhs = basis @ y
    coef = _coefficients(gram, rhs, basis, y)
    fitted = coef @ basis
    if layout is None:
        if groups is None:
            return fitted, None
        layout = group_layout(groups, n_groups)
    order, bounds = layout
    n_groups = bounds.size - 1
    b_sorted, y_sorted = basis[:, order], y[order]
    parts = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
    grams = gram - np.stack([b_sorted[:, p] @ b_sorted[:, p].T for p in parts])
    rhss = rhs - np.stack([b_sorted[:, p] @ y_sorted[p] for p in parts])
    eig = np.linalg.eigvalsh(grams)  # (n_groups, k), ascending
    ok = eig[:, 0] > eig[:, -1] / MAX_CONDITION
    coefs = np.empty((n_groups, coef.size))
    if ok.any():
        coefs[ok] = np.linalg.solve(grams[ok], rhss[ok][..., None])[..., 0]
    for k in np.flatnonzero(~ok):
        # a degenerate refit: the minimum-norm solution of its normal equations (the pseudo-inverse of
        # the small Gram matrix; an error estimate does not need the SVD of the whole basis's accuracy)
        coefs[k] = np.linalg.pinv(grams[k], rcond=1e-12, hermitian=True) @ rhss[k]
    return fitted, coefs @ basis  # every refit's prediction in one product


def conditional_value(y: np.ndarray, stock: np.ndarray, price: np.ndarray, pending: np.ndarray | None = None,
                      changed: np.ndarray | None = None, position: np.ndarray | None = None,
                      groups: np.ndarray | None = None, n_groups: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """E[y | the state at t] by least squares on :func:`value_basis`: the fitted values, and their
    delete-a-group replicates with ``groups`` (see :func:`fit`).

    The state is what a lender sees at the end of year ``t``: the pledged stock, the price, after the
    first verification the crediting position the next one starts from (``position``) and, with
    issuance risk, the credits verified but not yet issued (``pending``) and whether the methodology
    change has arrived (``changed``), which cuts every later issuance. Where both sides of the change
    hold :data:`MIN_PATHS_OWN_FIT` paths each side gets a fit of its own (the cut scales the whole
    value, which one basis with a few indicator terms would not follow); otherwise the indicator
    terms of :func:`value_basis` carry it.
    """
    return conditional_values([y], stock, [price], pending, changed, position, groups, n_groups)[0]


def conditional_values(ys: list[np.ndarray], stock: np.ndarray, prices: list[np.ndarray],
                       pending: np.ndarray | None = None, changed: np.ndarray | None = None,
                       position: np.ndarray | None = None, groups: np.ndarray | None = None,
                       n_groups: int = 0) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """:func:`conditional_value` of several price cases on the same paths and state (a valuation and
    its volatility sensitivities: targets ``ys[i]`` and prices ``prices[i]``), each exactly as alone;
    what does not involve the price (the stock's spline, the other state terms, the side of the
    methodology change, the jackknife groups' order) is computed once."""
    n = stock.size
    n_changed = -1 if changed is None else int(changed.sum())
    if changed is None or min(n_changed, n - n_changed) < MIN_PATHS_OWN_FIT:
        state = _state_rows(stock, pending, changed, position)
        layout = None if groups is None else group_layout(groups, n_groups)
        return [fit(y, _basis(state, price), layout=layout) for y, price in zip(ys, prices)]
    out = [(np.empty(n), None if groups is None else np.empty((n_groups, n))) for _ in ys]
    for side in (changed, ~changed):
        state = _state_rows(stock[side], None if pending is None else pending[side], None,
                            None if position is None else position[side])
        layout = None if groups is None else group_layout(groups[side], n_groups)
        for y, price, (fitted, reps) in zip(ys, prices, out):
            f, r = fit(y[side], _basis(state, price[side]), layout=layout)
            fitted[side] = f
            if reps is not None:
                reps[:, side] = r
    return out


def jackknife_groups(path_ids: np.ndarray, set_size: int,
                     n_groups: int = JACKKNIFE_GROUPS) -> tuple[np.ndarray | None, int]:
    """Each path's jackknife group (whole parameter sets, dealt round-robin in the order of their
    ids) and the number of groups: ``n_groups``, or the number of sets when there are fewer; ``(None,
    0)`` below :data:`MIN_JACKKNIFE_GROUPS` sets (too few for an error estimate). A function of the
    path ids, so a run's groups do not depend on its chunks."""
    sets = np.asarray(path_ids, dtype=np.int64) // max(int(set_size), 1)
    distinct, rank = np.unique(sets, return_inverse=True)
    k = int(min(n_groups, distinct.size))
    if k < MIN_JACKKNIFE_GROUPS:
        return None, 0
    return (rank % k).astype(np.int64), k


def jackknife_se(replicates: np.ndarray) -> np.ndarray:
    """Delete-a-group jackknife standard error from a figure's replicates (axis 0, one per group):
    ``sqrt((K - 1) / K sum_k (theta_k - mean)^2)``; NaN with fewer than two groups."""
    r = np.asarray(replicates, dtype=float)
    k = r.shape[0]
    if k < 2:
        return np.full(r.shape[1:], np.nan)
    with np.errstate(invalid="ignore"):
        return np.sqrt((k - 1) / k * ((r - r.mean(axis=0)) ** 2).sum(axis=0))


def jackknife_t(n_groups: int, confidence: float = 0.95) -> float:
    """Student's t quantile for an interval from a jackknife error with ``n_groups - 1`` degrees of freedom."""
    return float(stats.t.ppf(0.5 + confidence / 2, max(n_groups - 1, 1)))


__all__ = ["JACKKNIFE_GROUPS", "MIN_JACKKNIFE_GROUPS", "STOCK_KNOT_QUANTILES", "conditional_value", "conditional_values",
           "fit", "group_layout", "jackknife_groups", "jackknife_se", "jackknife_t", "value_basis"]
