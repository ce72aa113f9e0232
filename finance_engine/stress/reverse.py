"""Reverse stress test: the smallest shock at which a metric crosses a threshold.

The shock is a single number ``m`` applied on top of a base scenario:

* ``("hazard", peril)`` / ``("severity", peril)``: the peril's frequency / severity multiplier ``m``
  (``m = 1`` is the base scenario);
* ``("price_drop", None)``: a persistent carbon-price fall of ``m`` (a fraction, 0.3 = -30 %) from year 1.

Every evaluation uses the **same seed** (common random numbers), so the metric is a deterministic
function of ``m`` -- monotone up to the coarse steps of path counts -- and a bracketing root search
(:func:`scipy.optimize.brentq`, which falls back to bisection steps where the function is flat or
stepped) finds the crossing. Price shocks reuse the engine run (only prices change).

**Monte Carlo error of the root** (delta method). On a seed's paths the root ``m^`` solves
``M^(m^) = threshold`` for the estimated metric ``M^``; across seeds ``M^(m) - M(m)`` has the metric's Monte
Carlo standard error ``s(m)``, so to first order ``m^ - m = -(M^(m) - M(m)) / M'(m)`` and

``se(m^) = s(m^) / |M'(m^)|``,

with ``s(m^)`` the metric's own error at the root (each metric's, :func:`_metric_value`) and the slope a
central difference of the same run's metric over ``m^ +- h``, ``h = max(10 xtol, 2 % of the bracket)``
(two more evaluations; wide enough that a metric stepped by path counts is not read off one step). A slope of
0 (the metric flat around the root) leaves the root without an error (None). The error is the search's
Monte Carlo error, not the model's parameter uncertainty, and ignores the ``xtol`` tolerance (10^-3).

Metrics (functions of a run's instruments and buffer, see :data:`METRICS`):

* ``collateral_coverage``: portfolio collateral value / loan volume (crosses *below* a threshold, e.g. 1.0);
* ``insured_loss_over_capital``: the insurer's 1-in-200 net annual loss over its capital (crosses *above* 1.0);
* ``buffer_use``: mean reversals over the mean buffer pool (above 1.0: the buffer is exhausted on average);
* ``p_buffer_exhausted``: probability that reversals exceed the buffer (above a chosen probability).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy.optimize import brentq

from finance_engine.mc_error import mean_se
from finance_engine.price import load_price_model
from finance_engine.stress.buffer import reversals_and_credits
from finance_engine.stress.registry import Registry, bind_registry
from finance_engine.stress.run import (ScenarioRun, StressSettings, evaluate_instruments, run_scenario, scenario_prices,
                                       stress_horizon)
from finance_engine.stress.scenarios import StressScenario, load_scenario
from models.parameters import ModelParameters
from models.portfolio import Portfolio

SHOCKS = ("hazard", "severity", "price_drop")


class ReverseStressError(ValueError):
    """The search cannot run (bad arguments, or no crossing inside the bracket)."""


@dataclass(frozen=True)
class ReverseResult:
    """Where the metric crosses the threshold.

    ``multiplier`` is the smallest shock found (within ``xtol``) at which the metric is on the far
    side of ``threshold``; ``evaluations`` lists every (shock, metric) pair the search computed.
    """

    shock: tuple[str, str | None]
    metric: str
    threshold: float
    multiplier: float
    metric_at_base: float
    evaluations: tuple[tuple[float, float], ...] = field(default=())
    converged: bool = True
    #: the root's Monte Carlo standard error (delta method, module docstring); None where it has none
    multiplier_mc_se: float | None = None
    #: the metric's Monte Carlo standard error at the root, and its slope there (per unit of shock)
    metric_mc_se_at_root: float | None = None
    slope: float | None = None
    #: how the root's error was found, or why there is none
    error_method: str = ""

    @property
    def multiplier_ci95(self) -> tuple[float, float] | None:
        """The root +- 1.96 standard errors (normal approximation of the delta method)."""
        if self.multiplier_mc_se is None:
            return None
        return self.multiplier - 1.96 * self.multiplier_mc_se, self.multiplier + 1.96 * self.multiplier_mc_se

    def as_dict(self) -> dict[str, Any]:
        ci = self.multiplier_ci95
        return {"shock": list(self.shock), "metric": self.metric, "threshold": self.threshold,
                "multiplier": self.multiplier, "multiplier_mc_se": self.multiplier_mc_se,
                "multiplier_ci95": None if ci is None else list(ci),
                "metric_mc_se_at_root": self.metric_mc_se_at_root, "slope": self.slope,
                "error_method": self.error_method, "metric_at_base": self.metric_at_base,
                "evaluations": [list(e) for e in self.evaluations], "converged": self.converged}


def find_threshold(metric: Callable[[float], float], threshold: float, lo: float, hi: float, *,
                   xtol: float = 1e-3, max_evaluations: int = 60) -> tuple[float, list[tuple[float, float]]]:
    """Smallest ``m`` in ``[lo, hi]`` with ``metric(m)`` on the other side of ``threshold`` from ``metric(lo)``.

    Uses :func:`scipy.optimize.brentq` on ``metric(m) - threshold``; for a stepped metric the root is
    the step (to ``xtol``). Raises :class:`ReverseStressError` if the sign does not change on the bracket.
    """
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ReverseStressError(f"need a bracket lo < hi, got lo={lo}, hi={hi}")
    seen: dict[float, float] = {}

    def f(m: float) -> float:
        if m not in seen:
            if len(seen) >= max_evaluations:
                raise ReverseStressError(f"more than {max_evaluations} evaluations")
            seen[m] = float(metric(m))
        return seen[m] - threshold

    f_lo, f_hi = f(lo), f(hi)
    if f_lo == 0:
        return lo, sorted(seen.items())
    if np.sign(f_lo) == np.sign(f_hi):
        raise ReverseStressError(
            f"the metric does not cross {threshold:g} between {lo:g} ({f_lo + threshold:.6g}) and {hi:g} "
            f"({f_hi + threshold:.6g}); widen the bracket")
    root = brentq(f, lo, hi, xtol=xtol, maxiter=max_evaluations)
    # return the side of the crossing that is already past the threshold
    side = np.sign(f_hi)
    m = root if np.sign(f(root)) == side or f(root) == 0 else min(hi, root + xtol)
    return float(m), sorted(seen.items())


METRICS: dict[str, str] = {
    "collateral_coverage": "portfolio collateral value / loan volume",
    "insured_loss_over_capital": "insurer 1-in-200 net annual loss / capital",
    "buffer_use": "mean reversals / mean buffer pool",
    "p_buffer_exhausted": "P(reversals > buffer pool)",
}


def _metric_value(name: str, run: ScenarioRun, settings: StressSettings, bound, params, pms
                  ) -> tuple[float, float | None]:
    """The metric and its Monte Carlo standard error (None where it has none): the collateral coverage's own
    (:func:`~finance_engine.stress.run.evaluate_instruments`); the 1-in-200 loss's from its 95 % interval's
    half width / 1.96; the buffer's over parameter sets (a ratio of means by the delta method)."""
    if name == "collateral_coverage":
        inst = evaluate_instruments(bound, run, settings, pms=pms)
        return float(inst.portfolio["collateral_coverage"]), _finite_or_none(inst.portfolio.get("collateral_coverage_mc_se"))
    if name == "insured_loss_over_capital":
        inst = evaluate_instruments(bound, run, settings, pms=pms)
        cap = bound.registry.insurer.capital_cny
        lo, hi = (inst.insurer.get("net_annual_loss_1_in_200_ci95_low_cny"),
                  inst.insurer.get("net_annual_loss_1_in_200_ci95_high_cny"))
        se = (hi - lo) / (2 * 1.959964) / cap if _finite_or_none(lo) is not None and \
            _finite_or_none(hi) is not None else None
        return float(inst.insurer["net_annual_loss_1_in_200_cny"] / cap), se
    rev, gross = reversals_and_credits(run, params, settings.years)
    pool = params.file.crediting.buffer_fraction.value * gross
    k = settings.switches.parameter_set_size
    if name == "buffer_use":
        if not pool.mean() > 0:
            return float("inf"), None
        r = float(rev.mean() / pool.mean())
        return r, _finite_or_none(mean_se((rev - r * pool) / pool.mean(), k))
    hit = (rev > pool).astype(np.float64)
    return float(hit.mean()), _finite_or_none(mean_se(hit, k))


def _finite_or_none(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def root_error(value: Callable[[float], tuple[float, float | None]], m: float, lo: float, hi: float,
               xtol: float = 1e-3) -> tuple[float | None, float | None, float | None, str]:
    """(root's standard error, the metric's error at the root, the slope, how) by the delta method (module
    docstring): ``value(m)`` -> (metric, its Monte Carlo error)."""
    h = max(10 * xtol, 0.02 * (hi - lo))
    a, b = max(lo, m - h), min(hi, m + h)
    if not b > a:
        return None, None, None, "no error: the bracket is too narrow for a slope"
    _, se = value(m)
    slope = (value(b)[0] - value(a)[0]) / (b - a)
    how = (f"delta method: the metric's Monte Carlo error at the root over the absolute slope, a central "
           f"difference over [{a:.4g}, {b:.4g}] on the same paths")
    if se is None:
        return None, None, slope, "no error: the metric has no Monte Carlo error at the root"
    if not (np.isfinite(slope) and slope != 0):
        return None, se, slope, "no error: the metric is flat around the root (slope 0)"
    return se / abs(slope), se, slope, how


def reverse_stress_test(portfolio: Portfolio, params: ModelParameters, *, shock: tuple[str, str | None],
                        metric: str, threshold: float, lo: float | None = None, hi: float | None = None,
                        base: str | StressScenario = "baseline", registry: Registry | None = None,
                        settings: StressSettings | None = None, xtol: float = 1e-3, workers: int = 1) -> ReverseResult:
    """Find the smallest shock at which ``metric`` crosses ``threshold`` (see the module docstring)."""
    kind, peril = shock
    if kind not in SHOCKS:
        raise ReverseStressError(f"shock kind must be one of {SHOCKS}, got {kind!r}")
    if metric not in METRICS:
        raise ReverseStressError(f"unknown metric {metric!r}; known: {sorted(METRICS)}")
    if metric in ("collateral_coverage", "insured_loss_over_capital"):
        if registry is None or (metric == "collateral_coverage" and not registry.loans) or \
                (metric == "insured_loss_over_capital" and not registry.policies):
            raise ReverseStressError(f"metric {metric!r} needs a registry with "
                                     f"{'loans' if metric == 'collateral_coverage' else 'policies'}")
    st = settings or StressSettings()
    pms = load_price_model()
    scn = base if isinstance(base, StressScenario) else load_scenario(base)
    bound = bind_registry(registry, portfolio, params) if registry is not None else None
    run_pf = bound.portfolio if bound is not None else portfolio
    H = stress_horizon(st.years, registry)
    levels = ("project_id",)
    if kind == "price_drop":
        lo = 0.0 if lo is None else lo
        hi = 0.99 if hi is None else hi
        phys = run_scenario(run_pf, params, scn, st, horizon_years=H, extra_levels=levels, pms=pms, workers=workers)

        def make(m: float) -> ScenarioRun:
            s = scn.with_price_shock(1, -float(m)) if m > 0 else scn
            return ScenarioRun(s, phys.result, scenario_prices(s, pms, st.paths, H, st.seed,
                                                              start_year=st.start_year, model=st.price_model), H)
    else:
        if peril is None:
            raise ReverseStressError(f"a {kind} shock needs a peril")
        lo = 1.0 if lo is None else lo
        hi = 10.0 if hi is None else hi

        def make(m: float) -> ScenarioRun:
            return run_scenario(run_pf, params, scn.scaled(kind, peril, m), st, horizon_years=H,
                                extra_levels=levels, pms=pms, workers=workers)

    cache: dict[float, tuple[float, float | None]] = {}

    def value_se(m: float) -> tuple[float, float | None]:
        m = float(m)
        if m not in cache:
            cache[m] = _metric_value(metric, make(m), st, bound, params, pms)
        return cache[m]

    def value(m: float) -> float:
        return value_se(m)[0]

    m, evals = find_threshold(value, threshold, float(lo), float(hi), xtol=xtol)
    at_base = dict(evals).get(float(lo))
    base_value = at_base if at_base is not None else value(lo)
    m_se, metric_se, slope, how = root_error(value_se, m, float(lo), float(hi), xtol)
    return ReverseResult((kind, peril), metric, float(threshold), m, base_value, tuple(evals),
                         multiplier_mc_se=m_se, metric_mc_se_at_root=metric_se, slope=slope, error_method=how)


__all__ = ["METRICS", "ReverseResult", "ReverseStressError", "SHOCKS", "find_threshold", "reverse_stress_test",
           "root_error"]
