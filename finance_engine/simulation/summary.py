"""Summary statistics of per-path results, with both kinds of uncertainty reported apart.

Paths come in parameter sets of ``m`` consecutive paths that share one draw of the uncertain model
parameters (:attr:`models.dynamics.SimulationSwitches.parameter_set_size`). For a statistic ``X``,
a one-way random-effects analysis of variance over the ``G`` sets separates

* the **Monte Carlo standard error** of the mean, ``sqrt(s_b^2 / G)`` with ``s_b^2`` the variance of
  the set means -- it shrinks as paths are added;
* the **parameter (epistemic) standard deviation**, ``sqrt(max(0, (MSB - MSW) / m))`` -- the spread of
  the conditional mean ``E[X | parameters]`` across parameter draws, which more paths do not narrow
  but better data would (Searle, Casella & McCulloch 1992, *Variance Components*, ch. 3), with its own
  95 % interval ``parameter_sd_ci95_low`` .. ``parameter_sd_ci95_high`` (:func:`parameter_sd_interval`:
  the modified large-sample interval of the between-set variance component). With few sets the point
  estimate is noisy (250 sets of 4 paths put a portfolio's between 0 and 2.7 times its value at 20,000
  paths over eight seeds, in review), and where ``MSB <= MSW`` it is clipped at 0: that 0 means *not
  resolved* (the spread is below the Monte Carlo noise at these paths), never "no spread", and the reports
  and the dashboard read it so
  (:func:`finance_engine.reports.html.parameter_sd_resolved`); the interval's upper end then bounds it.

Quantiles are the empirical ones (``numpy.quantile``, linear interpolation), TVaR the mean beyond the
quantile on the adverse side: the upper tail for losses, the lower tail for stock, sink and credits. Each
comes with its Monte Carlo error: an order-statistic interval for a quantile, an asymptotic standard
error for a TVaR (:func:`tail_stats`).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd


def _q_label(q: float) -> str:
    return f"p{round(q * 100):02d}" if abs(q * 100 - round(q * 100)) < 1e-9 else f"p{q * 100:g}"


#: a tail mean's asymptotic standard error (:func:`tail_mean_and_se`) is reported in the engine's summaries only
#: for tails of at least this many paths (NaN below): over 150 repeated runs the spread of TVaR99 estimates was
#: 1.38-1.48 times the reported error with 2 tail paths (128 paths), 1.15-1.17 with 4-6, 1.10-1.16 with 11, and
#: 1.07-1.09 for TVaR95 with 20-52 (the engine review of numbers version 5). A tail wholly on an atom keeps its
#: count-based error (:func:`flat_tail_se`), which holds at 3 paths (tests/test_mc_error.py).
MIN_TAIL_PATHS_FOR_SE = 10


def is_upper_tail(metric: str) -> bool:
    """Losses are adverse when large; stock, sink and credits when small."""
    return "loss" in metric


#: the confidence of the parameter sd's interval (its columns are named ``parameter_sd_ci95_low`` / ``_high``)
PARAMETER_SD_CONFIDENCE = 0.95


@functools.lru_cache(maxsize=256)  # the same (sets, set size) for every metric, group and level of a run
def _mls_constants(n1: int, n2: int, confidence: float) -> tuple[float, ...]:
    """The constants of :func:`parameter_sd_interval` for ``n1`` (between) and ``n2`` (within) degrees of freedom."""
    from scipy import stats  # here, not at import (see order_statistic_ranks)

    a = (1.0 - confidence) / 2.0
    g1 = 1.0 - n1 / stats.chi2.ppf(1.0 - a, n1)     # MSB's lower confidence end is MSB (1 - G1)
    h1 = n1 / stats.chi2.ppf(a, n1) - 1.0           # ... its upper end MSB (1 + H1)
    g2 = 1.0 - n2 / stats.chi2.ppf(1.0 - a, n2)     # the same for MSW
    h2 = n2 / stats.chi2.ppf(a, n2) - 1.0
    f_hi = stats.f.ppf(1.0 - a, n1, n2)
    f_lo = stats.f.ppf(a, n1, n2)
    g12 = ((f_hi - 1.0) ** 2 - g1 * g1 * f_hi * f_hi - h2 * h2) / f_hi
    h12 = ((1.0 - f_lo) ** 2 - h1 * h1 * f_lo * f_lo - g2 * g2) / f_lo
    return g1, h1, g2, h2, g12, h12


def parameter_sd_interval(msb: np.ndarray, msw: np.ndarray, n_sets: int, set_size: int,
                          confidence: float = PARAMETER_SD_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval of the parameter sd ``sigma_b`` (same units as the figure) of a one-way random-effects
    model with ``n_sets`` sets of ``set_size`` paths.

    The between-set variance component ``sigma_b^2 = (E[MSB] - E[MSW]) / m`` gets the modified large-sample
    (MLS) interval of Ting, Burdick, Graybill, Jeyaratnam & Lu (1990, *J. Statist. Comput. Simul.* 35:135,
    for a difference of mean squares; Burdick & Graybill 1992, *Confidence Intervals on Variance Components*): with
    ``n1 = g - 1`` and ``n2 = g (m - 1)`` degrees of freedom, ``G_i = 1 - n_i / chi2_{1-a/2; n_i}``,
    ``H_i = n_i / chi2_{a/2; n_i} - 1``, ``F_hi = F_{1-a/2; n1, n2}``, ``F_lo = F_{a/2; n1, n2}``,

    ``L = s_b^2 - sqrt(G1^2 MSB^2 + H2^2 MSW^2 + G12 MSB MSW) / m``,
    ``U = s_b^2 + sqrt(H1^2 MSB^2 + G2^2 MSW^2 + H12 MSB MSW) / m``,

    ``G12 = ((F_hi - 1)^2 - G1^2 F_hi^2 - H2^2) / F_hi``, ``H12 = ((1 - F_lo)^2 - H1^2 F_lo^2 - G2^2) / F_lo``,
    ``s_b^2 = (MSB - MSW) / m``; each end is truncated at 0 and the sd's interval is their square root (a
    monotone map keeps the coverage). Exact where ``MSW`` is 0 (chi-square of MSB alone), near nominal for
    normal data otherwise (tests/test_summary_parameter_sd.py checks 93.5-96.5 % over a grid of set counts and
    variance ratios, and at least 95 % where the spread is 0); for skewed figures (losses) it is
    approximate. Where ``MSB <= MSW`` (point estimate clipped at 0, *not resolved*) the lower end is 0 and
    the upper end bounds the spread; that end is itself 0 where ``MSB`` is far below ``MSW`` (in the tests, fewer
    than 1 time in 25 when there is no spread).

    Parameters
    ----------
    msb, msw : ndarray
        Between- and within-set mean squares (the figure's units squared).
    n_sets, set_size : int
        Complete sets ``g >= 2`` and paths per set ``m >= 2``.

    Returns
    -------
    low, high : ndarray
        The interval's ends, in the figure's units (NaN where a mean square is NaN).
    """
    g1, h1, g2, h2, g12, h12 = _mls_constants(int(n_sets) - 1, int(n_sets) * (int(set_size) - 1), float(confidence))
    m = float(set_size)
    with np.errstate(invalid="ignore"):
        point = (msb - msw) / m
        cross = msb * msw
        low = point - np.sqrt(np.maximum(g1 * g1 * msb * msb + h2 * h2 * msw * msw + g12 * cross, 0.0)) / m
        high = point + np.sqrt(np.maximum(h1 * h1 * msb * msb + g2 * g2 * msw * msw + h12 * cross, 0.0)) / m
        return np.sqrt(np.maximum(low, 0.0)), np.sqrt(np.maximum(high, 0.0))


def _no_interval(shape: tuple, parameter_uncertainty: bool) -> dict[str, np.ndarray]:
    """The interval where there is none: 0 to 0 without parameter uncertainty (nothing is drawn), else NaN."""
    v = np.full(shape, np.nan) if parameter_uncertainty else np.zeros(shape)
    return {"parameter_sd_ci95_low": v, "parameter_sd_ci95_high": v.copy()}


def nested_moments(x: np.ndarray, set_size: int, parameter_uncertainty: bool,
                   antithetic: bool = False) -> dict[str, np.ndarray]:
    """Mean, sd, MC standard error and parameter sd along axis 0 of ``x`` (paths first).

    Sets are consecutive runs of ``set_size`` paths; a short last set is dropped from the variance
    decomposition but kept in the mean. The parameter sd comes with its 95 % interval
    (``parameter_sd_ci95_low``, ``parameter_sd_ci95_high``: :func:`parameter_sd_interval`; NaN with sets
    of one path or fewer than two sets; 0 to 0 without parameter uncertainty). The decomposition assumes the
    paths of a set are exchangeable. With ``antithetic`` (pairs of paths ``2j, 2j+1`` inside the sets,
    ``SimulationSwitches(antithetic=True)``, off by default and not offered by the CLI or API) they are not: a
    pair's mirrored shocks cancel in the set mean but not in the within-set mean square taken over single
    paths, which put the parameter sd at about half its value (428 against 896 in the engine audit). The
    parameter sd and its interval are then decomposed on the pair means (sets of ``m / 2`` pair means; NaN for
    sets of one pair, whose within-set spread is all antithetic); the mean, sd and MC standard error (from the
    set means) are the same either way. The interval is also approximate for a skewed set effect (84-89 %
    coverage for a zero-inflated loss whose set multiplier has a cv of 1).
    """
    n = x.shape[0]
    mean = x.mean(axis=0)
    sd = x.std(axis=0, ddof=1) if n > 1 else np.full(mean.shape, np.nan)
    m = max(int(set_size), 1)
    g = n // m
    if m == 1 or g < 2:
        se = sd / np.sqrt(n) if n > 1 else np.full(mean.shape, np.nan)
        psd = np.zeros(mean.shape) if not parameter_uncertainty else np.full(mean.shape, np.nan)
        return {"mean": mean, "sd": sd, "mc_se": se, "parameter_sd": psd,
                **_no_interval(np.shape(mean), parameter_uncertainty)}
    sets = x[: g * m].reshape(g, m, *x.shape[1:])
    set_means = sets.mean(axis=1)
    var_b = set_means.var(axis=0, ddof=1)
    se = np.sqrt(var_b / g)
    if parameter_uncertainty and antithetic:
        _check_antithetic(m)
        k = m // 2  # pair means per set
        if k < 2:  # one pair a set: no within-set spread that is not antithetic
            psd = np.full(mean.shape, np.nan)
            ci = _no_interval(np.shape(mean), True)
        else:
            pair_means = sets.reshape(g, k, 2, *x.shape[1:]).mean(axis=2)
            msw = pair_means.var(axis=1, ddof=1).mean(axis=0)
            msb = k * var_b
            psd = np.sqrt(np.maximum(0.0, (msb - msw) / k))
            low, high = parameter_sd_interval(msb, msw, g, k)
            ci = {"parameter_sd_ci95_low": low, "parameter_sd_ci95_high": high}
    elif parameter_uncertainty:
        msw = sets.var(axis=1, ddof=1).mean(axis=0)
        msb = m * var_b
        psd = np.sqrt(np.maximum(0.0, (msb - msw) / m))
        low, high = parameter_sd_interval(msb, msw, g, m)
        ci = {"parameter_sd_ci95_low": low, "parameter_sd_ci95_high": high}
    else:
        psd = np.zeros(mean.shape)
        ci = _no_interval(np.shape(mean), False)
    return {"mean": mean, "sd": sd, "mc_se": se, "parameter_sd": psd, **ci}


def _check_antithetic(set_size: int) -> None:
    if set_size % 2:
        raise ValueError(f"antithetic pairs need an even parameter set size, got {set_size}")


@functools.lru_cache(maxsize=256)  # the same few (paths, quantile) pairs for every metric, group and level
def order_statistic_ranks(n: int, p: float, confidence: float) -> tuple[int, int]:
    """1-based ranks ``(r, s)`` of the distribution-free interval ``[x_(r), x_(s)]`` of the ``p``-quantile.

    ``r = B^{-1}(alpha/2)``, ``s = B^{-1}(1 - alpha/2) + 1`` with ``B`` the Binomial(n, p) CDF: coverage at
    least ``confidence`` (David & Nagaraja 2003, *Order Statistics*, §7.1). ``r = 0`` or ``s > n``: that end
    of the interval is unbounded.
    """
    from scipy import stats  # here, not at import: scipy.stats adds about 30 MB to every engine process

    alpha = 1.0 - confidence
    return int(stats.binom.ppf(alpha / 2, n, p)), int(stats.binom.ppf(1 - alpha / 2, n, p)) + 1


def order_statistic_bounds(sorted_x: np.ndarray, p: float, confidence: float,
                           deff: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``x_(r)`` and ``x_(s)`` of :func:`order_statistic_ranks` along axis 0 of an ascending sample.

    An end the sample cannot support is unbounded: ``inf`` above; below, ``-inf``, or 0 for a column
    whose smallest value is not negative. ``deff`` (one per column, see :func:`quantile_design_effect`)
    widens the ranks' distances from ``n p`` by ``sqrt(deff)`` where it exceeds 1.
    """
    n = sorted_x.shape[0]
    r, s = order_statistic_ranks(n, p, confidence)
    if deff is not None and np.any(np.asarray(deff) > 1.0):
        return _widened_bounds(sorted_x, p, r, s, np.asarray(deff, dtype=float))
    low = sorted_x[r - 1] if r >= 1 else np.where(sorted_x[0] >= 0, 0.0, -np.inf)
    high = sorted_x[s - 1] if s <= n else np.full(np.shape(sorted_x[0]), np.inf)
    return low, high


def widened_ranks(n: int, p: float, r: int, s: int, deff) -> tuple[np.ndarray, np.ndarray]:
    """The ranks ``(r, s)`` of :func:`order_statistic_ranks` with their distances from ``n p`` times
    ``sqrt(deff)`` where the design effect exceeds 1 (rounded outwards): 0 or ``n + 1`` and beyond
    mean an unbounded end."""
    w = np.sqrt(np.maximum(np.asarray(deff, dtype=float), 1.0))
    c = n * p
    rw = np.where(w > 1.0, np.floor(c - (c - r) * w), r).astype(np.int64)
    sw = np.where(w > 1.0, np.ceil(c + (s - c) * w), s).astype(np.int64)
    return rw, sw


def _widened_bounds(sorted_x: np.ndarray, p: float, r: int, s: int, deff: np.ndarray):
    n = sorted_x.shape[0]
    flat = sorted_x.reshape(n, -1)
    k = flat.shape[1]
    rw, sw = widened_ranks(n, p, r, s, np.broadcast_to(deff, sorted_x.shape[1:]).reshape(k))
    cols = np.arange(k)
    low = np.where(rw >= 1, flat[np.clip(rw - 1, 0, n - 1), cols], np.where(flat[0] >= 0, 0.0, -np.inf))
    high = np.where(sw <= n, flat[np.clip(sw - 1, 0, n - 1), cols], np.inf)
    shape = sorted_x.shape[1:]
    return low.reshape(shape), high.reshape(shape)


def quantile_design_effect(x: np.ndarray, q: np.ndarray, p: float, set_size: int) -> np.ndarray | None:
    """Kish's design effect of a quantile's indicator ``1{x <= q}`` with paths in parameter sets.

    Paths ``k m .. k m + m - 1`` share a draw of the uncertain parameters, so the share of paths at or
    below a quantile varies more than a binomial share of independent paths: its variance is that of
    the set means over the ``g`` complete sets, over ``g`` (:func:`nested_moments`). The ratio of that to
    the binomial ``s (1 - s) / (g m)`` of the same share ``s`` (``p``, or more where values tie at the
    quantile, as zero losses do) is the design effect (Kish 1965, *Survey Sampling*, §8.2); a quantile's
    interval follows the interval of the distribution function at it (Woodruff 1952, *JASA* 47:635),
    so its order-statistic ranks move from ``n p`` by ``sqrt(deff)`` times their distance
    (:func:`order_statistic_bounds`). Returns None with sets of one path or fewer than two sets; 1 where
    the share is 0 or 1; values below 1 (antithetic pairs within sets) leave the interval as it is.
    """
    m = max(int(set_size), 1)
    g = x.shape[0] // m
    if m == 1 or g < 2 or not 0.0 < p < 1.0:
        return None
    below = x[: g * m] <= q
    s = below.mean(axis=0)
    return _design_effect(below, m, s * (1.0 - s) / (g * m))


def tail_design_effect(x: np.ndarray, edge: np.ndarray, a: float, upper: bool, set_size: int) -> np.ndarray | None:
    """Design effect of a tail mean's estimate with paths in parameter sets (see :func:`quantile_design_effect`).

    The tail mean over a tail of mass ``a`` beyond ``edge`` is the mean of ``psi = edge + (x - edge) 1{tail} / a``
    (its influence values; their variance over ``n`` is :func:`tail_mean_and_se`'s asymptotic one). Returns the
    variance of ``psi``'s mean counted over sets against that of independent paths (None with sets of one path
    or fewer than two sets).
    """
    m = max(int(set_size), 1)
    g = x.shape[0] // m
    if m == 1 or g < 2 or not a > 0:
        return None
    dev = x[: g * m] - edge
    psi = np.where(dev >= 0 if upper else dev <= 0, dev, 0.0) / a
    return _design_effect(psi, m, psi.var(axis=0, ddof=1) / (g * m))


def _design_effect(values: np.ndarray, m: int, var_iid: np.ndarray) -> np.ndarray:
    """The variance of the mean of ``values`` (complete sets of ``m`` along axis 0) counted over the
    sets, as :func:`nested_moments` counts it, against ``var_iid``, its variance for independent
    values; 1 where that is 0."""
    g = values.shape[0] // m
    if m < 8:
        # a few strided adds: numpy's reduction over a short inner axis pays per set (3x slower); the same
        # sums in the same order (numpy adds fewer than eight values one after another; from eight on it
        # sums pairwise, in another order, so longer sets keep its reduction)
        sums = values[0:g * m:m].astype(np.float64)
        for j in range(1, m):
            sums += values[j:g * m:m]
        set_means = sums / m
    else:
        set_means = values.reshape(g, m, *values.shape[1:]).mean(axis=1)
    var_sets = set_means.var(axis=0, ddof=1) / g
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var_iid > 0, var_sets / var_iid, 1.0)


def widened_se(se: np.ndarray, deff: np.ndarray | None) -> np.ndarray:
    """A standard error times the square root of its design effect where that exceeds 1."""
    return se if deff is None else se * np.sqrt(np.maximum(deff, 1.0))


def tail_mean_and_se(tail: np.ndarray, edge: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``tail`` (the tail's values along axis 0, out of ``n``) and its asymptotic standard error.

    ``sqrt((Var(X | tail) + (1 - a) (edge - mean)^2) / (n a))`` with ``a`` the tail's share of the sample
    and ``edge`` the quantile where it starts (Brazauskas, Jones, Puri & Zitikis 2008, *J. Statist. Plann.
    Inference* 138:3590); NaN for a tail of one value.
    """
    k = tail.shape[0]
    mean = tail.mean(axis=0)
    if k < 2:
        return mean, np.full(np.shape(mean), np.nan)
    a = k / n
    return mean, np.sqrt((tail.var(axis=0, ddof=1) + (1 - a) * (edge - mean) ** 2) / (n * a))


def flat_tail_se(s: np.ndarray, k: int, upper: bool, x: np.ndarray | None = None, set_size: int = 1) -> np.ndarray:
    """Standard error of a tail mean whose ``k`` tail values are all equal; NaN where they are not.

    A tail that lies wholly on an atom of the distribution -- values floored at 0 (a collateral made
    worthless), payouts capped at a limit -- gives :func:`tail_mean_and_se` a standard error of 0: the
    asymptotic formula assumes a continuous distribution at the quantile. Yet the estimate moves with the
    number ``M`` of sample values on the atom: while ``M >= k`` it is the atom's value ``t``; with fewer it
    takes in ``k - M`` values from beyond the atom. This error is that of ``M``: binomial with the observed
    share ``m / n`` (times the design effect of the atom's indicator with paths in parameter sets of
    ``set_size``, given the unsorted ``x``), the values beyond the atom the sample's own next ones:
    ``Var = sum_{M < k} P(M) (sum_{j < k - M} (y_j - t) / k)^2``.

    Parameters
    ----------
    s : ndarray, shape (n, ...)
        The values sorted along axis 0 (ascending).
    k : int
        The tail's count of values: the ``k`` smallest, or the ``k`` largest with ``upper``.
    """
    from scipy.stats import binom

    n = s.shape[0]
    d = s[::-1] if upper else s  # the tail's side first
    flat_shape = d.shape[1:]
    d2 = d.reshape(n, -1)
    t = d2[0]
    out = np.full(t.shape, np.nan)
    if k < 1:
        return out.reshape(flat_shape)
    cols = np.flatnonzero(d2[k - 1] == t)
    if cols.size == 0:
        return out.reshape(flat_shape)
    dc, tc = d2[:, cols], t[cols]
    m = (dc == tc).sum(axis=0)  # values on the atom (at least k)
    j = np.arange(k)[:, None]
    idx = m[None, :] + j
    nxt = np.take_along_axis(dc, np.minimum(idx, n - 1), axis=0)
    gap = np.where(idx < n, nxt - tc, 0.0)  # no value beyond the atom: nothing for the tail to take in
    c = np.cumsum(gap, axis=0)  # c[r - 1]: the first r gaps
    counts = np.arange(k)[:, None]
    pmf = binom.pmf(counts, n, m / n)  # P(M = 0 .. k - 1)
    var = (pmf * (c[::-1] / k) ** 2).sum(axis=0)
    if x is not None and set_size > 1:
        xm = x.reshape(n, -1)[:, cols]
        g = n // set_size
        if g >= 2:
            on_atom = (xm[: g * set_size] == tc).astype(np.float64)
            share = on_atom.mean(axis=0)
            deff = _design_effect(on_atom, set_size, share * (1.0 - share) / (g * set_size))
            var = var * np.maximum(deff, 1.0)
    out[cols] = np.sqrt(var)
    return out.reshape(flat_shape)


def quantiles_with_ci(x: np.ndarray, quantiles: tuple[float, ...], confidence: float = 0.95,
                      labels: tuple[str, ...] | None = None,
                      sorted_x: np.ndarray | None = None, set_size: int = 1) -> dict[str, np.ndarray]:
    """Quantiles along axis 0 (``numpy.quantile``) with their order-statistic intervals.

    Returns ``pNN`` (or the given ``labels``), ``pNN_ci_low`` and ``pNN_ci_high`` for each quantile; an end
    the sample cannot support is ``-inf`` (0 for data that are not negative) or ``inf``. With paths in
    parameter sets of ``set_size`` (in path order along axis 0) the intervals are widened by the
    quantile's design effect (:func:`quantile_design_effect`).
    """
    s = np.sort(x, axis=0) if sorted_x is None else sorted_x
    out: dict[str, np.ndarray] = {}
    for i, (q, v) in enumerate(zip(quantiles, np.quantile(x, quantiles, axis=0))):
        label = labels[i] if labels is not None else _q_label(q)
        out[label] = v
        deff = quantile_design_effect(x, v, q, set_size)
        out[f"{label}_ci_low"], out[f"{label}_ci_high"] = order_statistic_bounds(s, q, confidence, deff)
    return out


def tail_stats(x: np.ndarray, quantiles: tuple[float, ...], tail_levels: tuple[float, ...],
               upper: np.ndarray, confidence: float = 0.95, set_size: int = 1) -> dict[str, np.ndarray]:
    """Quantiles and TVaR along axis 0, each with its Monte Carlo error.

    ``upper`` (broadcastable bool) marks upper-tail metrics. Each quantile ``pNN`` comes with the
    distribution-free order-statistic interval ``pNN_ci_low`` .. ``pNN_ci_high`` at ``confidence``
    (:func:`finance_engine.mc_error.order_statistic_ci`: ``-inf`` / ``inf`` where the paths are too few
    for that end), widened by the design effect of paths in parameter sets of ``set_size``
    (:func:`quantile_design_effect`); each ``tvarNN`` with the asymptotic standard error ``tvarNN_se`` of
    a tail mean (:func:`finance_engine.mc_error.tail_mean_se`), widened likewise by its design effect
    (:func:`tail_design_effect`), or, for a tail wholly on an atom, :func:`flat_tail_se`. The asymptotic
    error is NaN for a tail of fewer than ``MIN_TAIL_PATHS_FOR_SE`` paths, where it understates the spread
    (TVaR99 of fewer than 1,000 paths).
    """
    s = np.sort(x, axis=0)
    n = x.shape[0]
    out = quantiles_with_ci(x, quantiles, confidence, sorted_x=s, set_size=set_size)
    for t in tail_levels:
        k = max(1, int(np.ceil(n * (1 - t))))
        name = f"tvar{round(t * 100):02d}"
        hi, hi_se = tail_mean_and_se(s[n - k:], s[n - k], n)
        lo, lo_se = tail_mean_and_se(s[:k], s[k - 1], n)
        hi_se = widened_se(hi_se, tail_design_effect(x, s[n - k], k / n, True, set_size))
        lo_se = widened_se(lo_se, tail_design_effect(x, s[k - 1], k / n, False, set_size))
        if k < MIN_TAIL_PATHS_FOR_SE:  # too few tail paths for the asymptotic error (MIN_TAIL_PATHS_FOR_SE)
            hi_se = np.full(np.shape(hi_se), np.nan)
            lo_se = np.full(np.shape(lo_se), np.nan)
        if k > 1:  # a tail wholly on an atom: the error of the count of values on it, for the side used
            # (a loss's lower tail is mostly zeros: its atom would cost a count's error for nothing)
            if np.any(upper):
                hi_flat = flat_tail_se(s, k, True, x, set_size)
                hi_se = np.where(np.isnan(hi_flat), hi_se, hi_flat)
            if not np.all(upper):
                lo_flat = flat_tail_se(s, k, False, x, set_size)
                lo_se = np.where(np.isnan(lo_flat), lo_se, lo_flat)
        out[name] = np.where(upper, hi, lo)
        out[f"{name}_se"] = np.where(upper, hi_se, lo_se)
    return out


def _engine_moments(mo: dict[str, np.ndarray], n_paths: int, set_size: int,
                    parameter_uncertainty: bool) -> dict[str, np.ndarray]:
    """The engine's summaries report no Monte Carlo error (NaN) for a run of fewer than two complete parameter
    sets whose paths share drawn parameters: the error of the set means cannot be estimated from one set, and
    that of independent paths would leave out the shared draws (it understates)."""
    m = max(int(set_size), 1)
    if parameter_uncertainty and m > 1 and n_paths // m < 2:
        mo = {**mo, "mc_se": np.full(np.shape(mo["mc_se"]), np.nan)}
    return mo


def summarise_per_path(per_path: np.ndarray, metrics: tuple[str, ...], labels: np.ndarray, level: str,
                       start_year: int, set_size: int, parameter_uncertainty: bool,
                       quantiles: tuple[float, ...], tail_levels: tuple[float, ...],
                       antithetic: bool = False) -> pd.DataFrame:
    """Tidy summary of a (metrics, years, paths, groups) array: one row per metric, year and group
    (``antithetic``: paths in antithetic pairs, :func:`nested_moments`)."""
    n_metrics, years, n_paths, n_groups = per_path.shape
    # one metric at a time: the sorts and deviations are temporaries of one metric's size, not the
    # whole array's (per-path arrays of a many-path run are the largest thing a run holds)
    columns: dict[str, np.ndarray] = {}
    for i, m in enumerate(metrics):
        x = np.moveaxis(per_path[i], 1, 0)  # (paths, years, groups)
        one = {**_engine_moments(nested_moments(x, set_size, parameter_uncertainty, antithetic), n_paths, set_size,
                                 parameter_uncertainty),
               **tail_stats(x, quantiles, tail_levels, np.array(is_upper_tail(m)),
                            set_size=set_size if parameter_uncertainty else 1)}
        for k, v in one.items():
            columns.setdefault(k, np.empty((n_metrics, years, n_groups)))[i] = v
    idx_m, idx_y, idx_g = np.meshgrid(np.arange(n_metrics), np.arange(years), np.arange(n_groups), indexing="ij")
    df = pd.DataFrame({
        "level": level,
        "group": labels[idx_g.ravel()],
        "metric": np.asarray(metrics, dtype=object)[idx_m.ravel()],
        "year": idx_y.ravel(),
        "calendar_year": idx_y.ravel() + start_year,
    })
    for k, v in columns.items():
        df[k] = v.ravel()
    return df


def moments_from_sums(sums: np.ndarray, n_paths: int, set_size: int, parameter_uncertainty: bool,
                      short_set: np.ndarray | None = None,
                      pair_squares: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Mean, sd, MC standard error and parameter sd from streamed moment sums: :func:`nested_moments`'s numbers.

    ``sums`` is (3, ...): the sum, the sum of squares, and the sum of squared set sums over complete
    parameter sets (the engine tracks sets whatever their size, those straddling path blocks included:
    :func:`finance_engine.simulation.chunk.reduce_block_moments`; a cell given NaN there falls back to
    independent paths); ``short_set`` (2, ...) the sum and sum of squares of the short last set, if any.
    Fewer than two complete sets whose paths share drawn parameters: no error (NaN, as the engine's
    per-path summaries). With ``g`` complete sets of ``m`` paths the set means' variance is
    ``(Q/m^2 - S^2/(g m^2)) / (g - 1)`` (``S`` the complete sets' sum, ``Q`` their squared set sums), the
    standard error its square root over ``g``, and the within-set mean square ``(S2 - Q/m) / (g (m - 1))``,
    as in the one-way random-effects decomposition of :func:`nested_moments`.

    ``pair_squares`` (...): with antithetic pairs inside the sets, the sum over the complete sets' pairs of the
    squared pair sum ``P`` (:func:`finance_engine.simulation.chunk._pair_square_sums`); the parameter sd is then
    decomposed on the ``k = m / 2`` pair means of each set, as :func:`nested_moments` with ``antithetic``: their
    within-set mean square is ``(P/4 - Q/(2m)) / (g (k - 1))`` (NaN for sets of one pair).
    """
    s1, s2, q = sums[0], sums[1], sums[2]
    n = n_paths
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0) * (n / max(n - 1, 1))
    sd = np.sqrt(var) if n > 1 else np.full(mean.shape, np.nan)
    m = max(int(set_size), 1)
    g = n // m
    iid_se = sd / np.sqrt(n) if n > 1 else np.full(mean.shape, np.nan)
    iid_psd = np.full(mean.shape, np.nan) if parameter_uncertainty else np.zeros(mean.shape)
    no_ci = _no_interval(np.shape(mean), parameter_uncertainty)
    if m == 1 or g < 2:
        return _engine_moments({"mean": mean, "sd": sd, "mc_se": iid_se, "parameter_sd": iid_psd, **no_ci}, n, m,
                               parameter_uncertainty)
    c1, c2 = (s1, s2) if short_set is None else (s1 - short_set[0], s2 - short_set[1])
    with np.errstate(invalid="ignore"):
        var_b = np.maximum((q / (m * m) - c1 * c1 / (g * m * m)) / (g - 1), 0.0)
        se = np.sqrt(var_b / g)
        if parameter_uncertainty and pair_squares is not None:
            _check_antithetic(m)
            k = m // 2
            if k < 2:  # one pair a set: no within-set spread that is not antithetic
                psd = np.full(mean.shape, np.nan)
                low, high = np.full(mean.shape, np.nan), np.full(mean.shape, np.nan)
            else:
                msw = np.maximum(pair_squares / 4.0 - q / (2.0 * m), 0.0) / (g * (k - 1))
                psd = np.sqrt(np.maximum(0.0, (k * var_b - msw) / k))
                low, high = parameter_sd_interval(k * var_b, msw, g, k)
        elif parameter_uncertainty:
            msw = np.maximum(c2 - q / m, 0.0) / (g * (m - 1))
            psd = np.sqrt(np.maximum(0.0, (m * var_b - msw) / m))
            low, high = parameter_sd_interval(m * var_b, msw, g, m)
        else:
            psd = np.zeros(mean.shape)
            low, high = no_ci["parameter_sd_ci95_low"], no_ci["parameter_sd_ci95_high"]
    # cells whose sets were not tracked (NaN set sums) keep the independent-path figures, each cell on its own
    # (no interval: independent paths say nothing of the parameters' spread)
    untracked = np.isnan(q)
    return {"mean": mean, "sd": sd, "mc_se": np.where(untracked, iid_se, se),
            "parameter_sd": np.where(untracked, iid_psd, psd),
            "parameter_sd_ci95_low": np.where(untracked, no_ci["parameter_sd_ci95_low"], low),
            "parameter_sd_ci95_high": np.where(untracked, no_ci["parameter_sd_ci95_high"], high)}


def summarise_moments(sums: np.ndarray, n_paths: int, metrics: tuple[str, ...], labels: np.ndarray, level: str,
                      start_year: int, set_size: int = 1, parameter_uncertainty: bool = True,
                      short_set: np.ndarray | None = None, pair_squares: np.ndarray | None = None) -> pd.DataFrame:
    """Mean, standard error and parameter sd (with its 95 % interval) from (3, metrics, years, groups) streamed sums.

    Used for the levels a run does not keep per path -- more than ``MAX_GROUPS_FOR_QUANTILES`` groups, or
    per-path values beyond the run's memory budget (:func:`finance_engine.simulation.chunk.plan_per_path`) --
    where keeping every path would cost memory in proportion to groups x paths (no quantiles there). The
    error counts parameter sets, not paths, as :func:`nested_moments` does (:func:`moments_from_sums`; with
    antithetic pairs, ``pair_squares``).
    """
    mo = moments_from_sums(sums, n_paths, set_size, parameter_uncertainty, short_set, pair_squares)
    mean = mo["mean"]
    n_metrics, years, n_groups = mean.shape
    idx_m, idx_y, idx_g = np.meshgrid(np.arange(n_metrics), np.arange(years), np.arange(n_groups), indexing="ij")
    return pd.DataFrame({
        "level": level,
        "group": labels[idx_g.ravel()],
        "metric": np.asarray(metrics, dtype=object)[idx_m.ravel()],
        "year": idx_y.ravel(),
        "calendar_year": idx_y.ravel() + start_year,
        "mean": mean.ravel(),
        "sd": mo["sd"].ravel(),
        "mc_se": mo["mc_se"].ravel(),
        "parameter_sd": mo["parameter_sd"].ravel(),
        "parameter_sd_ci95_low": mo["parameter_sd_ci95_low"].ravel(),
        "parameter_sd_ci95_high": mo["parameter_sd_ci95_high"].ravel(),
    })


def horizon_per_path(per_path: np.ndarray, metrics: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Whole-horizon values per path: flows summed over years, the stock at the end.

    Returns an array (metrics, 1, paths, groups) and the metric names (``cumulative_...``). A one-year run's
    horizon values are its yearly values: ``per_path`` itself is returned (no copy; the per-path budget counts
    no horizon array for it, :func:`finance_engine.simulation.chunk.summary_transient_bytes`).
    """
    if per_path.shape[1] == 1:
        return per_path, horizon_metric_names(metrics)
    out = np.empty((len(metrics), 1, *per_path.shape[2:]))
    for i, m in enumerate(metrics):
        out[i, 0] = per_path[i, -1] if m == "stock_tco2e" else per_path[i].sum(axis=0)
    return out, horizon_metric_names(metrics)


def horizon_metric_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The whole-horizon names of yearly metrics: ``stock_end_tco2e`` and ``cumulative_<flow>``."""
    return tuple("stock_end_tco2e" if m == "stock_tco2e" else f"cumulative_{m}" for m in metrics)
