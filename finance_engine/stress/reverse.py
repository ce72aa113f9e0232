"""Reverse stress test: the smallest shock at which a metric crosses a threshold.

The shock is a single number ``m`` applied on top of a base scenario:

* ``("hazard", peril)`` / ``("severity", peril)``: the peril's frequency / severity multiplier ``m``
  (``m = 1`` is the base scenario);
* ``("price_drop", None)``: a persistent carbon-price fall of ``m`` (a fraction, 0.3 = -30 %) from year 1.

Every evaluation uses the **same seed** (common random numbers), so the metric is a deterministic
function of ``m`` -- monotone up to the coarse steps of path counts -- and a bracketing root search
(:func:`scipy.optimize.brentq`, which falls back to bisection steps where the function is flat or
stepped) finds the crossing. Price shocks reuse the engine run (only prices change).

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

    def as_dict(self) -> dict[str, Any]:
        return {"shock": list(self.shock), "metric": self.metric, "threshold": self.threshold,
                "multiplier": self.multiplier, "metric_at_base": self.metric_at_base,
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


def _metric_value(name: str, run: ScenarioRun, settings: StressSettings, bound, params, pms) -> float:
    if name == "collateral_coverage":
        inst = evaluate_instruments(bound, run, settings, pms=pms)
        return float(inst.portfolio["collateral_coverage"])
    if name == "insured_loss_over_capital":
        inst = evaluate_instruments(bound, run, settings, pms=pms)
        cap = bound.registry.insurer.capital_cny
        return float(inst.insurer["net_annual_loss_1_in_200_cny"] / cap)
    rev, gross = reversals_and_credits(run, params, settings.years)
    pool = params.file.crediting.buffer_fraction.value * gross
    if name == "buffer_use":
        return float(rev.mean() / pool.mean()) if pool.mean() > 0 else float("inf")
    return float((rev > pool).mean())


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

    def value(m: float) -> float:
        return _metric_value(metric, make(m), st, bound, params, pms)

    m, evals = find_threshold(value, threshold, float(lo), float(hi), xtol=xtol)
    at_base = dict(evals).get(float(lo))
    return ReverseResult((kind, peril), metric, float(threshold), m, at_base if at_base is not None else value(lo),
                         tuple(evals))


__all__ = ["METRICS", "ReverseResult", "ReverseStressError", "SHOCKS", "find_threshold", "reverse_stress_test"]
