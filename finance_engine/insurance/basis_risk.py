"""Basis risk of an index cover: how far its payouts stray from the loss they are meant to pay.

For simulated years ``i = 1..n`` with payout ``P_i`` and true loss ``L_i`` (both CNY, >= 0), and
``D_i = P_i - L_i`` (finance_practice.md §3, "Index basis risk")::

    correlation               corr(P, L)    (Pearson; nan if either is constant)
    P(loss, no payout)        #{L_i > tol, P_i <= tol} / n
    P(payout, no loss)        #{P_i > tol, L_i <= tol} / n
    RMSE                      sqrt(mean(D_i^2))
    mean difference           mean(D_i)     (> 0: the index pays more than the loss on average)
    quantiles of D            5, 25, 50, 75, 95 %
    P(loss, no payout | loss) the same as a share of the loss years

``tol`` (CNY, default 0) says what counts as "a loss" and "a payout".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .tables import InsuranceInputError, as_loss_array

__all__ = ["BasisRisk", "basis_risk"]

QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.50, 0.75, 0.95)


@dataclass(frozen=True)
class BasisRisk:
    """Basis-risk statistics (module docstring); money in CNY."""

    n_years: int
    correlation: float
    prob_loss_no_payout: float
    prob_payout_no_loss: float
    prob_loss: float
    prob_payout: float
    prob_no_payout_given_loss: float
    rmse_cny: float
    mean_difference_cny: float
    mean_payout_cny: float
    mean_true_loss_cny: float
    difference_quantiles_cny: dict[str, float]
    tolerance_cny: float

    def to_dict(self) -> dict:
        return asdict(self)


def basis_risk(payout_cny, true_loss_cny, tolerance_cny: float = 0.0) -> BasisRisk:
    """Basis risk of payouts against true losses, one value of each per simulated year.

    Parameters
    ----------
    payout_cny, true_loss_cny : array_like, shape (n,)
        Non-negative, same length.
    tolerance_cny : float
        Amounts at or below this are "no payout" / "no loss".

    Raises
    ------
    InsuranceInputError
        Different lengths, negative or non-finite values.
    """
    p = as_loss_array(payout_cny, "payout_cny")
    ll = as_loss_array(true_loss_cny, "true_loss_cny")
    if p.size != ll.size:
        raise InsuranceInputError(f"payout_cny and true_loss_cny differ in length: {p.size} vs {ll.size}")
    tol = float(tolerance_cny)
    if not (math.isfinite(tol) and tol >= 0):
        raise InsuranceInputError(f"tolerance_cny must be finite and >= 0, got {tolerance_cny!r}")
    n = p.size
    d = p - ll
    if n > 1 and p.std() > 0 and ll.std() > 0:
        corr = float(np.corrcoef(p, ll)[0, 1])
    else:
        corr = float("nan")
    loss, pay = ll > tol, p > tol
    q = np.quantile(d, QUANTILES)
    return BasisRisk(
        n_years=n, correlation=corr,
        prob_loss_no_payout=float((loss & ~pay).mean()), prob_payout_no_loss=float((pay & ~loss).mean()),
        prob_loss=float(loss.mean()), prob_payout=float(pay.mean()),
        prob_no_payout_given_loss=float((loss & ~pay).sum() / loss.sum()) if loss.any() else float("nan"),
        rmse_cny=float(np.sqrt(np.mean(d * d))), mean_difference_cny=float(d.mean()),
        mean_payout_cny=float(p.mean()), mean_true_loss_cny=float(ll.mean()),
        difference_quantiles_cny={f"p{int(round(100 * a)):02d}": float(v) for a, v in zip(QUANTILES, q)},
        tolerance_cny=tol,
    )
