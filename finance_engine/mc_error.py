"""Monte Carlo error of figures computed from simulated paths.

Three kinds of figure, three kinds of error bar:

Means and probabilities (a probability is the mean of a 0/1 indicator)
    The standard error counts *parameter sets*, not paths: paths ``k m .. k m + m - 1`` share one draw of
    the uncertain parameters, the growth curves' and the perils' rates
    (:class:`models.dynamics.SimulationSwitches`), so their values are
    correlated and the error is ``sd(set means) / sqrt(g)`` over the ``g`` complete sets
    (:func:`finance_engine.simulation.summary.nested_moments`). With one path per set this is the usual
    ``sd / sqrt(n)``; for a probability ``p`` that is ``sqrt(p (1 - p) / (n - 1))``.
Quantiles (VaR, 1-in-N figures, percentiles, largest loan at a target probability)
    A distribution-free interval from order statistics: the number of sample values below the true
    ``p``-quantile is Binomial(n, p), so ``[x_(r), x_(s)]`` with ``r = B^{-1}(alpha/2)`` and
    ``s = B^{-1}(1 - alpha/2) + 1`` covers it with probability at least ``1 - alpha`` (David & Nagaraja
    2003, *Order Statistics*, §7.1; Conover 1999, *Practical Nonparametric Statistics*, §3.2). ``r = 0``
    gives an unbounded lower end (``-inf``; 0 for data that cannot be negative), ``s > n`` an unbounded
    upper end (``inf``): too few paths for that quantile.
    With paths in parameter sets the share of paths below a quantile varies more than a binomial share:
    the interval's ranks move away from ``n p`` by the square root of the quantile's design effect, the
    variance of that share counted over sets against the binomial one (Kish 1965; Woodruff 1952, *JASA*
    47:635; :func:`finance_engine.simulation.summary.quantile_design_effect`). Where the caller gives the
    set size (the engine's summaries, valuations, stress tests, when parameter uncertainty is on: without
    it the paths are independent and an estimated design effect would only add noise) the intervals do so.
Tail means (expected shortfall, TVaR)
    The asymptotic standard error of an empirical tail mean over a tail of mass ``a`` beyond the quantile
    ``q`` (``ES = E[X | X <= q]`` of values, or ``TVaR = E[X | X >= q]`` of losses):
    ``sqrt((Var(X | tail) + (1 - a) (q - ES)^2) / (n a))`` (Brazauskas, Jones, Puri & Zitikis 2008,
    *J. Statist. Plann. Inference* 138:3590, for the conditional tail expectation).
    The tail mean's error is widened by its own design effect, that of its influence values (the same
    references; :func:`finance_engine.simulation.summary.tail_design_effect`), where the caller gives the set
    size. A tail that lies wholly on an atom (values floored at 0, payouts capped at a limit) would get an
    error of 0 from that formula, which assumes a continuous distribution at the quantile; its error is
    that of the count of sample values on the atom instead
    (:func:`finance_engine.simulation.summary.flat_tail_se`).
"""

from __future__ import annotations

import math

import numpy as np

from finance_engine.simulation.summary import (flat_tail_se, nested_moments, order_statistic_ranks,
                                               quantile_design_effect, tail_design_effect, tail_mean_and_se,
                                               widened_ranks, widened_se)

#: two-sided confidence of the quantile intervals
CONFIDENCE = 0.95


def mean_se(per_path: np.ndarray, set_size: int = 1) -> float:
    """Standard error of the mean of a per-path figure (paths nested in parameter sets of ``set_size``)."""
    x = np.asarray(per_path, dtype=float).reshape(-1)
    return float(nested_moments(x[:, None], set_size, True)["mc_se"][0])


def linear_quantiles(x: np.ndarray, ps, overwrite: bool = False, n_valid: int | None = None) -> np.ndarray:
    """``numpy.quantile(x, ps, axis=-1)`` (method ``"linear"``) with the quantiles on the last axis,
    bit for bit for data without NaN: shape ``x.shape[:-1] + (len(ps),)`` (a scalar ``p`` counts as one).

    numpy partitions at every order statistic it needs and at the sample's ends at once, which costs
    several times as many single partitions; this takes them one at a time from the largest down, each
    on the part below the last, and an order statistic's successor as the smallest value above it.
    ``overwrite``: partition ``x`` in place instead of a copy. ``n_valid``: the quantiles of the
    ``n_valid`` smallest values of each row (the others ``+inf``, the paths a jackknife replicate leaves out).
    """
    ps = np.atleast_1d(np.asarray(ps, dtype=float))
    work = x if overwrite else np.array(x, copy=True)
    n = work.shape[-1] if n_valid is None else int(n_valid)
    virtual = (n - 1) * ps
    prev = np.minimum(np.floor(virtual), n - 1).astype(np.intp)
    at, above = {}, {}
    bound = work.shape[-1]
    for i in sorted({int(v) for v in prev}, reverse=True):
        seg = work[..., :bound]
        seg.partition(i, axis=-1)
        at[i] = seg[..., i].copy()  # a later partition of the part below may move it
        # the next order statistic: the smallest value above (the last pivot closes the part)
        above[i] = seg[..., i + 1:].min(axis=-1) if i + 1 < min(bound, n) else at[i]
        bound = i + 1
    a = np.stack([at[int(i)] for i in prev], axis=-1)
    b = np.stack([above[int(i)] for i in prev], axis=-1)
    # numpy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) from t = 0.5 on
    t = virtual - prev  # at the top a = b: numpy's other weight there makes no difference
    with np.errstate(invalid="ignore"):  # inf - inf: two infinite neighbours (an LTV of a path worth nothing)
        d = b - a
        out = np.where(t >= 0.5, b - d * (1 - t), a + d * t)
    # equal neighbours are the quantile exactly (a + 0 t for finite ones, as above; +inf for two infinite ones,
    # where the interpolation gives NaN), and a point strictly short of an infinite upper neighbour is infinite
    # (b - inf (1 - t) gives NaN from t = 0.5 on); finite data keep numpy's numbers bit for bit
    return np.where(a == b, a, np.where(np.isposinf(b) & (t > 0), b, out))


def mean_ses(per_path: np.ndarray, set_size: int = 1) -> np.ndarray:
    """:func:`mean_se` of each row of ``per_path`` (figures x paths) at once."""
    x = np.asarray(per_path, dtype=float)
    return nested_moments(np.ascontiguousarray(x.reshape(-1, x.shape[-1]).T), set_size, True)["mc_se"]


def order_statistic_ci(sorted_x: np.ndarray, p: float, confidence: float = CONFIDENCE,
                       x: np.ndarray | None = None, set_size: int = 1,
                       quantile: float | None = None) -> tuple[float, float, int, int]:
    """Distribution-free interval of the ``p``-quantile from an ascending 1-D sample (module docstring).

    Returns ``(low, high, r, s)``: ``x_(r)``, ``x_(s)`` and their 1-based ranks (an open lower end is 0 for
    a sample that is not negative). With the sample ``x`` in its own order, in groups of ``set_size``
    correlated values (paths of a parameter set; a path's years), the ranks are widened by the
    quantile's design effect, taken at ``quantile`` (``numpy.quantile(sorted_x, p)`` if not given).
    """
    n = sorted_x.size
    r, s = order_statistic_ranks(n, p, confidence)
    if x is not None and set_size > 1:
        q = np.quantile(sorted_x, p) if quantile is None else quantile
        deff = quantile_design_effect(x, q, p, set_size)
        if deff is not None:
            r, s = (int(v) for v in widened_ranks(n, p, r, s, deff))
    low = float(sorted_x[r - 1]) if r >= 1 else (0.0 if sorted_x[0] >= 0 else -math.inf)
    high = float(sorted_x[s - 1]) if s <= n else math.inf
    return low, high, r, s


def quantile_ci(x: np.ndarray, p: float, confidence: float = CONFIDENCE, set_size: int = 1) -> list[float]:
    """``[low, high]``: the order-statistic interval of the ``p``-quantile of a sample of paths (in path
    order), widened by its design effect when paths come in parameter sets of ``set_size``."""
    x = np.asarray(x, dtype=float).reshape(-1)
    xs = np.sort(x)
    if xs.size == 0:
        return [math.nan, math.nan]
    low, high, _, _ = order_statistic_ci(xs, p, confidence, x, set_size)
    return [low, high]


def quantiles_and_cis(x: np.ndarray, ps: tuple[float, ...], confidence: float = CONFIDENCE, set_size: int = 1,
                      method: str = "linear") -> tuple[list[float], list[list[float]]]:
    """The ``ps``-quantiles of a sample of paths (``numpy.quantile`` with ``method``) and their intervals.

    The same numbers as ``numpy.quantile(x, p, method=method)`` and :func:`quantile_ci` for each ``p``,
    from one sort of the sample: a valuation asks for several quantiles of the same paths.
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    if x.size == 0:
        return [math.nan] * len(ps), [[math.nan, math.nan] for _ in ps]
    xs = np.sort(x)
    qs = np.quantile(xs, ps, method=method)
    if set_size > 1:  # the intervals' design effects are taken at the linear quantiles
        with np.errstate(invalid="ignore"):  # inf - inf between infinite values (an LTV of a worthless pledge)
            linear = qs if method == "linear" else np.quantile(xs, ps)
    else:
        linear = [None] * len(ps)
    cis = [list(order_statistic_ci(xs, p, confidence, x, set_size, q)[:2]) for p, q in zip(ps, linear)]
    return [float(v) for v in qs], cis


def tail_mean_se(x: np.ndarray, level: float, upper: bool = True, set_size: int = 1) -> float:
    """Standard error of an empirical tail mean (module docstring; NaN when the tail has under two values).

    ``upper``: the mean of the largest ``ceil(n (1 - level))`` values (TVaR of losses); else of the smallest
    ``ceil(n level)`` (expected shortfall of values). The tail is a fixed count of sorted values, as the
    estimators use, not the values beyond the quantile: with ties at the quantile (annual payouts that are
    mostly zero) the latter would take in the whole tied mass and understate the error many times over.
    With paths in parameter sets of ``set_size`` (in path order) the error is widened by the tail mean's
    design effect (:func:`finance_engine.simulation.summary.tail_design_effect`).
    """
    x = np.asarray(x, dtype=float).reshape(-1)
    xs = np.sort(x)
    n = xs.size
    if n < 2:
        return math.nan
    if upper:
        k = max(1, math.ceil(n * (1.0 - level) - 1e-9))
        se, edge = tail_mean_and_se(xs[n - k:], xs[n - k], n)[1], xs[n - k]
    else:
        k = max(1, math.ceil(n * level - 1e-9))
        se, edge = tail_mean_and_se(xs[:k], xs[k - 1], n)[1], xs[k - 1]
    if k > 1:  # a tail wholly on an atom (a floor, a cap): the error of the count of values on it
        flat = float(flat_tail_se(xs, k, upper, x, set_size))
        if not math.isnan(flat):
            return flat
    return float(widened_se(se, tail_design_effect(x, edge, k / n, upper, set_size)))


__all__ = ["CONFIDENCE", "linear_quantiles", "mean_se", "mean_ses", "order_statistic_ci", "quantile_ci", "quantiles_and_cis",
           "tail_mean_se"]
