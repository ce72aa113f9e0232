"""Risk measures on a sample of annual losses: AAL, EP curves, PML, VaR, TVaR, survival function.

All functions take one loss per simulated year (``n`` i.i.d. years) and treat the sample as the
empirical distribution ``F_n``; the sorted sample is ``x_(1) <= ... <= x_(n)``.

AAL
    ``mean(x)``, standard error ``sd(x, ddof=1) / sqrt(n)``, normal (CLT) confidence interval
    ``mean +- z_{(1+c)/2} se`` (Oasis ALT/ALCT, peers.md §1).
Exceedance probability (EP) curve
    For each distinct loss value ``v``: ``EP(v) = S_n(v) = #{x_i > v} / n``, the probability that a
    year's loss *exceeds* ``v``, and return period ``1 / EP`` (``inf`` for the largest loss, which no
    simulated year exceeds). **OEP** uses the annual maximum event loss, **AEP** the annual aggregate
    (finance_practice.md §3).
Survival function
    ``S_n(t) = #{x_i > t} / n``.
VaR (quantile, PML)
    Lower quantile ``VaR_p = inf{x : F_n(x) >= p} = x_(ceil(n p))`` (numpy's ``inverted_cdf``). The PML
    at return period ``T`` is ``VaR_{1 - 1/T}`` of the OEP (annual max) or AEP (annual aggregate) sample.
One convention for curve and PML
    ``VaR_p = inf{x : S_n(x) <= 1 - p}``, so the PML at ``T`` is the smallest loss on the EP curve whose
    return period is at least ``T``: with ``x = 1..200`` both give 199 at 1-in-200 and 198 at 1-in-100.
    (The Oasis EPT convention ``EP = #{x_i >= v} / n``, "the k-th largest loss has EP k / n", would put
    200 at 1-in-200; it is the *upper* quantile, and would disagree with the VaR, TVaR and capital here,
    which all use the lower quantile; the engine's linear percentiles, 199.005 here, lie between.)
TVaR (expected shortfall)
    ``TVaR_p = 1/(1-p) int_p^1 VaR_u du``, exact for ``F_n``: with ``k = ceil(n p)``,
    ``TVaR_p = [ (k - n p) x_(k) + sum_{i > k} x_(i) ] / (n - n p)`` (Acerbi & Tasche 2002,
    *J. Banking Finance* 26:1487). Always ``>= VaR_p``; equals ``E[L | L >= VaR_p]`` for continuous F.
Quantile confidence interval (distribution-free, order statistics)
    The number of sample values below the true quantile ``xi_p`` is Binomial(n, p) for continuous F,
    so ``P(x_(r) <= xi_p <= x_(s)) >= B(s-1) - B(r-1)`` with ``B`` the Binomial(n, p) CDF; this bound
    holds for any F (atoms included). We take ``r = B^{-1}(alpha/2)`` and
    ``s = B^{-1}(1 - alpha/2) + 1`` (``B^{-1}(q)`` the smallest k with ``B(k) >= q``), so the coverage
    is at least ``1 - alpha`` (David & Nagaraja 2003, *Order Statistics*, §7.1; Conover 1999,
    *Practical Nonparametric Statistics*, §3.2). When ``r = 0`` the lower bound is 0 (losses are
    >= 0); when ``s > n`` the sample is too short and the upper bound is ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from finance_engine.mc_error import order_statistic_ci, tail_mean_se

from .defaults import load_insurance_defaults
from .tables import InsuranceInputError, as_loss_array, event_losses, annual_aggregate, annual_max_occurrence

__all__ = [
    "AALResult",
    "aal",
    "exceedance_curve",
    "ep_curves",
    "survival_function",
    "var",
    "tvar",
    "quantile_ci",
    "pml",
    "pml_table",
    "var_tvar_table",
]


@dataclass(frozen=True)
class AALResult:
    """Average annual loss with its Monte Carlo uncertainty (loss unit of the input).

    Attributes
    ----------
    mean, se, ci_low, ci_high : float
    confidence : float
    n_years : int
    """

    mean: float
    se: float
    ci_low: float
    ci_high: float
    confidence: float
    n_years: int


def _confidence(confidence: float | None) -> float:
    c = load_insurance_defaults().ci_confidence if confidence is None else float(confidence)
    if not 0 < c < 1:
        raise InsuranceInputError(f"confidence must be in (0, 1), got {confidence}")
    return c


def _level(p: float, name: str = "level") -> float:
    p = float(p)
    if not 0 < p < 1:
        raise InsuranceInputError(f"{name} must be in (0, 1), got {p}")
    return p


def aal(losses, confidence: float | None = None) -> AALResult:
    """Average annual loss, standard error and normal confidence interval of a sample of annual losses."""
    x = as_loss_array(losses, allow_negative=True)
    c = _confidence(confidence)
    n = x.size
    mean = float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    z = float(stats.norm.ppf(0.5 + c / 2))
    return AALResult(mean, se, mean - z * se, mean + z * se, c, n)


def exceedance_curve(losses) -> pd.DataFrame:
    """Empirical exceedance-probability curve of annual losses.

    Returns
    -------
    DataFrame
        One row per distinct loss value, largest first: ``loss``, ``exceedance_probability``
        (``#{x > loss} / n``, 0 for the largest) and ``return_period_years`` (``1 / exceedance_probability``,
        ``inf`` for the largest). The PML at ``T`` (:func:`pml`) is the smallest ``loss`` whose return
        period is ``>= T`` (module docstring).
    """
    x = np.sort(as_loss_array(losses, allow_negative=True))[::-1]
    n = x.size
    first = np.r_[True, x[1:] != x[:-1]]         # first occurrence of each value in descending order
    ep = np.flatnonzero(first) / n               # values before it are the ones strictly above
    with np.errstate(divide="ignore"):
        rp = 1.0 / ep
    return pd.DataFrame({"loss": x[first], "exceedance_probability": ep, "return_period_years": rp})


def ep_curves(elt: pd.DataFrame, n_years: int, **columns) -> dict[str, pd.DataFrame]:
    """OEP (annual max event) and AEP (annual aggregate) curves of an ELT, zero years included.

    Returns ``{"OEP": DataFrame, "AEP": DataFrame}`` as from :func:`exceedance_curve`.
    """
    ev = event_losses(elt, n_years, **columns)
    return {"OEP": exceedance_curve(annual_max_occurrence(ev)), "AEP": exceedance_curve(annual_aggregate(ev))}


def survival_function(losses, t) -> np.ndarray:
    """Empirical survival function ``S_n(t) = #{x > t} / n`` at the points ``t`` (array out)."""
    x = np.sort(as_loss_array(losses, allow_negative=True))
    t = np.asarray(t, dtype=np.float64)
    return (x.size - np.searchsorted(x, t, side="right")) / x.size


def _var_sorted(xs: np.ndarray, p: float) -> float:
    n = xs.size
    k = max(1, math.ceil(n * p - 1e-9 * n * p))   # tolerance so that n*p = 99.5 exactly at p=0.995 is not 100
    return float(xs[min(k, n) - 1])


def var(losses, level: float) -> float:
    """Value at risk: the lower empirical quantile ``x_(ceil(n p))`` at ``level = p`` in (0, 1)."""
    p = _level(level)
    return _var_sorted(np.sort(as_loss_array(losses, allow_negative=True)), p)


def _tvar_sorted(xs: np.ndarray, p: float) -> float:
    n = xs.size
    np_ = n * p
    k = max(1, min(n, math.ceil(np_ - 1e-9 * np_)))
    w = max(k - np_, 0.0)                      # weight of x_(k) in the tail of mass n (1 - p) = (n - k) + w
    tail = float(xs[k:].sum()) + w * float(xs[k - 1])
    return tail / ((n - k) + w) if (n - k) + w > 0 else float(xs[k - 1])


def tvar(losses, level: float) -> float:
    """Tail value at risk (expected shortfall) at ``level = p``, exact for the empirical distribution."""
    p = _level(level)
    return _tvar_sorted(np.sort(as_loss_array(losses, allow_negative=True)), p)


def quantile_ci(losses, level: float, confidence: float | None = None) -> tuple[float, float, int, int]:
    """Distribution-free confidence interval of the ``level`` quantile (module docstring).

    Returns
    -------
    low, high : float
        ``x_(r)`` and ``x_(s)`` (0 when ``r = 0`` for non-negative data, ``inf`` when ``s > n``).
    r, s : int
        The 1-based order-statistic ranks used.
    """
    xs = np.sort(as_loss_array(losses, allow_negative=True))
    return order_statistic_ci(xs, _level(level), _confidence(confidence))



def pml(losses, return_periods: Sequence[float] | None = None, confidence: float | None = None,
        group_size: int = 1) -> pd.DataFrame:
    """Probable maximum loss at return periods, with distribution-free confidence intervals.

    Parameters
    ----------
    losses : array_like
        Annual losses (annual max event for OEP-PML, annual aggregate for AEP-PML).
    return_periods : sequence of float, optional
        Years (> 1); default from ``insurance_defaults.yaml`` (10, 20, 50, 100, 200, 250).
    confidence : float, optional
        Two-sided confidence of the interval (default 0.95 from the data file).
    group_size : int
        Consecutive years that are correlated (a simulated path's years, and the paths of a parameter
        set): the intervals are widened by the quantile's design effect over such groups
        (:func:`finance_engine.mc_error.order_statistic_ci`). 1: independent years.

    Returns
    -------
    DataFrame
        ``return_period_years``, ``non_exceedance_probability`` (``1 - 1/T``), ``loss`` (VaR),
        ``ci_low``, ``ci_high``, ``rank_low``, ``rank_high`` (1-based order statistics), ``n_years``.
    """
    x = as_loss_array(losses, allow_negative=True)
    xs = np.sort(x)
    rps = load_insurance_defaults().return_periods_years if return_periods is None else tuple(return_periods)
    c = _confidence(confidence)
    rows = []
    for t in rps:
        t = float(t)
        if not t > 1:
            raise InsuranceInputError(f"return periods must be > 1 year, got {t}")
        p = 1.0 - 1.0 / t
        lo, hi, r, s = order_statistic_ci(xs, p, c, x, group_size)
        rows.append((t, p, _var_sorted(xs, p), lo, hi, r, s, xs.size))
    return pd.DataFrame(rows, columns=["return_period_years", "non_exceedance_probability", "loss", "ci_low",
                                       "ci_high", "rank_low", "rank_high", "n_years"])


def pml_table(elt: pd.DataFrame, n_years: int, return_periods: Sequence[float] | None = None,
              confidence: float | None = None, **columns) -> pd.DataFrame:
    """OEP and AEP PML of an ELT at return periods: :func:`pml` rows with a ``basis`` column."""
    ev = event_losses(elt, n_years, **columns)
    oep = pml(annual_max_occurrence(ev), return_periods, confidence).assign(basis="OEP")
    aep = pml(annual_aggregate(ev), return_periods, confidence).assign(basis="AEP")
    out = pd.concat([oep, aep], ignore_index=True)
    return out[["basis", *[c for c in out.columns if c != "basis"]]]


def var_tvar_table(losses, levels: Sequence[float] | None = None, group_size: int = 1) -> pd.DataFrame:
    """VaR and TVaR at ``levels`` (default 0.90, 0.95, 0.99, 0.995 from the data file), with their errors.

    Returns a DataFrame with ``level``, ``var``, ``var_ci_low``, ``var_ci_high`` (the distribution-free
    interval at the data file's confidence), ``tvar`` and ``tvar_se`` (the tail mean's asymptotic standard
    error, :func:`finance_engine.mc_error.tail_mean_se`); both widened by their design effect over
    ``group_size`` consecutive correlated years (see :func:`pml`). As in the engine's summaries
    (:func:`finance_engine.simulation.summary.tail_stats`), ``tvar_se`` is NaN for a tail of fewer than
    ``MIN_TAIL_PATHS_FOR_SE`` (10) years (``ceil(n (1 - level))``), where the asymptotic error understates the
    spread, unless the tail lies wholly on an atom (payouts capped at a limit), whose error is that of the count
    of values on it (:func:`~finance_engine.simulation.summary.flat_tail_se`).
    """
    from finance_engine.simulation.summary import MIN_TAIL_PATHS_FOR_SE, flat_tail_se

    x = as_loss_array(losses, allow_negative=True)
    xs = np.sort(x)
    lv = load_insurance_defaults().var_levels if levels is None else tuple(levels)
    c = _confidence(None)
    rows = []
    for p in (_level(q, "levels") for q in lv):
        lo, hi, _, _ = order_statistic_ci(xs, p, c, x, group_size)
        k = max(1, math.ceil(x.size * (1.0 - p) - 1e-9))
        se = tail_mean_se(x, p, upper=True, set_size=group_size)
        flat = float(flat_tail_se(xs, k, True, x, group_size)) if k > 1 else math.nan
        if math.isfinite(flat):  # a tail on an atom: the count's error, however few
            se = flat
        elif k < MIN_TAIL_PATHS_FOR_SE:
            se = math.nan
        rows.append((p, _var_sorted(xs, p), lo, hi, _tvar_sorted(xs, p), se))
    return pd.DataFrame(rows, columns=["level", "var", "var_ci_low", "var_ci_high", "tvar", "tvar_se"])
