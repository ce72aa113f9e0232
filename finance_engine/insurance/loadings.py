"""Premium principles on an empirical sample of annual losses, and the gross-premium formula.

Principles (finance_practice.md §3; Wang 1996, *ASTIN Bull.* 26(1):71; Wang 2000, *J. Risk Ins.* 67(1):15;
Kaas et al. 2008, *Modern Actuarial Risk Theory*, ch. 5)
---------------------------------------------------------------------------------------------------
With ``L`` the annual loss, sample mean ``m`` and sample standard deviation ``s`` (ddof=1):

* expected value       ``P = (1 + theta) m``
* standard deviation   ``P = m + alpha s``
* variance             ``P = m + beta s^2``
* distortion           ``P = int_0^inf g(S(x)) dx`` with ``g`` increasing, ``g(0) = 0``, ``g(1) = 1``:
    - Wang transform       ``g(u) = Phi(Phi^{-1}(u) + lambda)``
    - proportional hazard  ``g(u) = u^{1/rho}`` (rho >= 1 loads)
* cost of capital      ``P = m + CoC (VaR_q(L) - m)``, ``q = 0.995`` (1-in-200) by default: the return
  on the capital held above the expected loss (Solvency II / C-ROSS II 1-year VaR 99.5 %). With
  ``measure="tvar"`` the capital is ``TVaR_q(L) - m`` instead (expected shortfall, as the Swiss
  Solvency Test's target capital, FINMA, ES 99 %): used for reinsurance layers, whose own VaR is 0
  whenever the layer attaches in fewer than ``1 - q`` of years, so that a VaR-based load would price a
  remote layer at its expected loss (multiple 1). VaR ignores everything beyond the quantile and is
  not subadditive; TVaR is coherent (Artzner, Delbaen, Eber & Heath 1999, *Math. Finance* 9(3):203;
  Acerbi & Tasche 2002, *J. Banking Finance* 26:1487). For a layer that attaches with probability
  ``p_a < 1 - q`` the TVaR capital is ``E[X] / (1 - q) - E[X]``, so the multiple is
  ``1 + CoC (1/(1 - q) - 1)`` = 12.9 at 6 % and q = 0.995: the upper end of observed cat-layer multiples
  for the remotest layers (Lane 2000, *ASTIN Bull.* 30(2):259).

Distortions are evaluated **exactly for the empirical distribution**: with the sorted sample
``x_(1) <= ... <= x_(n)``, ``S_n`` is a step function taking the value ``(n - i)/n`` on
``[x_(i), x_(i+1))``, so the Choquet integral is the weighted sum::

    P = sum_{i=1}^{n} x_(i) [ g((n - i + 1)/n) - g((n - i)/n) ]

which also holds for samples with negative values (e.g. net results). For ``g(u) = u`` the weights are
``1/n`` and ``P = m``.

Gross premium
-------------
``G = (E[L] + risk load + fixed costs) / (1 - variable expense ratio - profit ratio)``
(finance_practice.md §3). Chinese subsidised agricultural/forest insurance further multiplies the
base rate by an adjustment factor in [0.75, 1.25] (see :mod:`finance_engine.insurance.subsidy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from scipy import stats

from .defaults import load_insurance_defaults
from .risk_measures import _tvar_sorted, _var_sorted
from .tables import InsuranceInputError, as_loss_array

__all__ = [
    "PremiumResult",
    "GrossPremium",
    "distortion_premium",
    "expected_value_premium",
    "standard_deviation_premium",
    "variance_premium",
    "wang_transform_premium",
    "proportional_hazard_premium",
    "cost_of_capital_premium",
    "gross_premium",
]


@dataclass(frozen=True)
class PremiumResult:
    """A risk-loaded premium (loss unit of the sample, per year).

    Attributes
    ----------
    principle : str
    expected_loss : float
        Sample mean ``m``.
    risk_load : float
        ``premium - expected_loss``.
    premium : float
    parameters : Mapping[str, float | str]
        The principle's parameters (cost of capital: also ``capital`` and ``measure``).
    """

    principle: str
    expected_loss: float
    risk_load: float
    premium: float
    parameters: Mapping[str, float | str] = field(default_factory=dict)


def _result(principle: str, x: np.ndarray, premium: float, **params: float | str) -> PremiumResult:
    m = float(x.mean())
    return PremiumResult(principle, m, float(premium) - m, float(premium), dict(params))


def _nonneg(v, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"{name} must be a number, got {v!r}") from None
    if not (math.isfinite(f) and f >= 0):
        raise InsuranceInputError(f"{name} must be finite and >= 0, got {v!r}")
    return f


def distortion_premium(losses, g: Callable[[np.ndarray], np.ndarray]) -> float:
    """Choquet integral ``int g(S_n(x)) dx`` of the empirical distribution (exact; module docstring).

    ``g`` maps survival probabilities in [0, 1] to [0, 1], vectorised, increasing, g(0)=0, g(1)=1.
    """
    xs = np.sort(as_loss_array(losses, allow_negative=True))
    n = xs.size
    u = np.arange(n, -1, -1, dtype=np.float64) / n          # (n - i)/n for i = 0..n
    gu = np.asarray(g(u), dtype=np.float64)
    if gu.shape != u.shape or not np.all(np.isfinite(gu)):
        raise InsuranceInputError("distortion g must return finite values of the same shape as its input")
    if abs(gu[0] - 1.0) > 1e-12 or abs(gu[-1]) > 1e-12 or np.any(np.diff(gu) > 1e-12):
        raise InsuranceInputError("distortion g must be increasing with g(0) = 0 and g(1) = 1")
    w = gu[:-1] - gu[1:]                                     # g((n-i+1)/n) - g((n-i)/n), i = 1..n
    return float(np.dot(w, xs))


def expected_value_premium(losses, theta: float) -> PremiumResult:
    """``(1 + theta) E[L]``, ``theta`` >= 0."""
    x = as_loss_array(losses, allow_negative=True)
    t = _nonneg(theta, "theta")
    return _result("expected_value", x, (1 + t) * x.mean(), theta=t)


def standard_deviation_premium(losses, alpha: float) -> PremiumResult:
    """``E[L] + alpha sd(L)`` (sd with ddof=1)."""
    x = as_loss_array(losses, allow_negative=True)
    a = _nonneg(alpha, "alpha")
    sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return _result("standard_deviation", x, x.mean() + a * sd, alpha=a)


def variance_premium(losses, beta: float) -> PremiumResult:
    """``E[L] + beta Var(L)`` (``beta`` in 1/loss unit; Var with ddof=1)."""
    x = as_loss_array(losses, allow_negative=True)
    b = _nonneg(beta, "beta")
    v = float(x.var(ddof=1)) if x.size > 1 else 0.0
    return _result("variance", x, x.mean() + b * v, beta=b)


def wang_transform_premium(losses, lam: float) -> PremiumResult:
    """Wang transform ``S*(x) = Phi(Phi^{-1}(S(x)) + lam)``, premium ``int S*``; ``lam`` >= 0 loads."""
    x = as_loss_array(losses, allow_negative=True)
    try:
        lam = float(lam)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"lam must be a number, got {lam!r}") from None
    if not math.isfinite(lam):
        raise InsuranceInputError(f"lam must be finite, got {lam}")
    prem = distortion_premium(x, lambda u: stats.norm.cdf(stats.norm.ppf(u) + lam))
    return _result("wang", x, prem, lam=lam)


def proportional_hazard_premium(losses, rho: float) -> PremiumResult:
    """Proportional hazard ``S*(x) = S(x)^{1/rho}``, ``rho`` > 0 (``rho`` >= 1 loads)."""
    x = as_loss_array(losses, allow_negative=True)
    r = _nonneg(rho, "rho")
    if r == 0:
        raise InsuranceInputError("rho must be > 0")
    prem = distortion_premium(x, lambda u: np.power(u, 1.0 / r))
    return _result("proportional_hazard", x, prem, rho=r)


def cost_of_capital_premium(losses, coc_rate: float | None = None, level: float | None = None,
                            measure: str = "var") -> PremiumResult:
    """``E[L] + CoC (VaR_level(L) - E[L])``, or with ``measure="tvar"`` ``E[L] + CoC (TVaR_level(L) - E[L])``.

    Defaults: ``coc_rate`` 6 % and ``level`` 0.995 from ``insurance_defaults.yaml``. The capital
    ``VaR - E[L]`` is floored at 0 (``TVaR >= E[L]`` always). ``VaR`` is the lower empirical quantile and
    ``TVaR`` the exact tail mean of the empirical distribution (see risk_measures). The result's
    ``parameters`` carry ``capital`` and ``measure`` (``"var"`` or ``"tvar"``).
    """
    d = load_insurance_defaults()
    x = as_loss_array(losses, allow_negative=True)
    c = _nonneg(d.cost_of_capital_rate if coc_rate is None else coc_rate, "coc_rate")
    q = float(d.capital_level if level is None else level)
    if not 0 < q < 1:
        raise InsuranceInputError(f"level must be in (0, 1), got {q}")
    if measure not in ("var", "tvar"):
        raise InsuranceInputError(f"measure must be 'var' or 'tvar', got {measure!r}")
    m = float(x.mean())
    xs = np.sort(x)
    risk = _var_sorted(xs, q) if measure == "var" else _tvar_sorted(xs, q)
    capital = max(risk - m, 0.0)
    return _result("cost_of_capital", x, m + c * capital, coc_rate=c, level=q, capital=capital,
                   measure=measure)


@dataclass(frozen=True)
class GrossPremium:
    """Gross (office) premium and its parts, per year in the loss unit (CNY).

    ``gross = (expected_loss + risk_load + fixed_costs) / (1 - variable_expense_ratio - profit_ratio)``;
    ``variable_expenses = variable_expense_ratio * gross``, ``profit = profit_ratio * gross``.
    """

    expected_loss: float
    risk_load: float
    fixed_costs: float
    variable_expense_ratio: float
    profit_ratio: float
    gross: float
    variable_expenses: float
    profit: float

    @property
    def loss_ratio(self) -> float:
        """Expected loss / gross premium."""
        return self.expected_loss / self.gross if self.gross > 0 else float("nan")


def gross_premium(expected_loss: float, risk_load: float = 0.0, fixed_costs: float = 0.0,
                  variable_expense_ratio: float = 0.0, profit_ratio: float = 0.0) -> GrossPremium:
    """Gross premium ``(E[L] + risk load + fixed costs) / (1 - variable expense - profit)``.

    Parameters
    ----------
    expected_loss, risk_load, fixed_costs : float
        Per year, >= 0 (CNY).
    variable_expense_ratio, profit_ratio : float
        Fractions of the gross premium, >= 0, summing to < 1.
    """
    el = _nonneg(expected_loss, "expected_loss")
    rl = _nonneg(risk_load, "risk_load")
    fc = _nonneg(fixed_costs, "fixed_costs")
    ve = _nonneg(variable_expense_ratio, "variable_expense_ratio")
    pr = _nonneg(profit_ratio, "profit_ratio")
    if ve + pr >= 1:
        raise InsuranceInputError(f"variable_expense_ratio + profit_ratio must be < 1, got {ve + pr}")
    g = (el + rl + fc) / (1.0 - ve - pr)
    return GrossPremium(el, rl, fc, ve, pr, g, ve * g, pr * g)
