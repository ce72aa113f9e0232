"""Basis risk of an index cover, and the protection gap its terms leave by design.

An index cover's payout ``P`` can fall short of the insured's true loss ``L`` for two different
reasons, which the quote reports apart (:mod:`.covers`, "Sink index cover"):

* **basis risk**: the index measures the insured quantity with error, so ``P`` differs from the
  **perfect-index payout** ``P*``, the same contract (trigger, limit, participation) applied to the
  true value. Compare ``P`` with ``P*``: :func:`basis_risk` (``reference = P*``). A perfect index
  has no basis risk (every statistic 0, the correlation 1); any index error adds some.
* **protection gap**: even a perfect index pays only what the contract promises: nothing below the
  trigger, at most the limit, the participation's share. ``L - P*`` is the loss uncovered by design:
  :func:`protection_gap`. Comparing ``P`` with ``L`` directly (as earlier versions did) mixes the two:
  a perfect index then shows most loss years "unpaid" (those below the trigger), and an index error
  that sometimes pays below the trigger can even *improve* the headline.

For simulated years ``i = 1..n`` with payout ``P_i`` and reference ``R_i`` (both CNY, >= 0; the
perfect-index payout for basis risk), and ``D_i = P_i - R_i`` (finance_practice.md §3, "Index basis
risk")::

    correlation               corr(P, L)    (Pearson; nan if either is constant)
    P(loss, no payout)        #{L_i > tol, P_i <= tol} / n
    P(payout, no loss)        #{P_i > tol, L_i <= tol} / n
    RMSE                      sqrt(mean(D_i^2))
    mean difference           mean(D_i)     (> 0: the index pays more than the loss on average)
    quantiles of D            5, 25, 50, 75, 95 %
    P(loss, no payout | loss) the same as a share of the loss years

``tol`` (CNY, default 0) says what counts as "a loss" and "a payout"; with the perfect-index payout
as reference a "loss" is a year in which the contract, measured without error, pays.

Protection gap (:func:`protection_gap`), with true loss ``L_i`` and perfect-index payout ``P*_i``::

    gap                        G_i = max(L_i - P*_i, 0)     (loss the contract leaves to the insured)
    mean gap, share            mean(G), mean(G) / mean(L)
    P(loss, no payout by design)   #{L_i > tol, P*_i <= tol} / n
    excess                     mean(max(P*_i - L_i, 0))     (> 0 only for a trigger above the expected sink)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .tables import InsuranceInputError, as_loss_array

__all__ = ["BasisRisk", "ProtectionGap", "basis_risk", "protection_gap"]

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
    """Basis risk of payouts against a reference, one value of each per simulated year.

    Parameters
    ----------
    payout_cny, true_loss_cny : array_like, shape (n,)
        Non-negative, same length: the payouts on the measured index and the reference they are meant
        to pay, for an index cover's basis risk the perfect-index payout (module docstring).
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


@dataclass(frozen=True)
class ProtectionGap:
    """The loss an index contract leaves uncovered by design (module docstring); money in CNY."""

    n_years: int
    mean_true_loss_cny: float
    mean_perfect_index_payout_cny: float
    mean_gap_cny: float
    gap_share_of_true_loss: float
    prob_loss_no_payout_by_design: float
    mean_excess_cny: float
    tolerance_cny: float

    def to_dict(self) -> dict:
        return asdict(self)


def protection_gap(perfect_payout_cny, true_loss_cny, tolerance_cny: float = 0.0) -> ProtectionGap:
    """The protection gap of a contract: true loss against its perfect-index payout, per simulated year.

    Parameters
    ----------
    perfect_payout_cny, true_loss_cny : array_like, shape (n,)
        Non-negative, same length.
    tolerance_cny : float
        Amounts at or below this are "no payout" / "no loss".
    """
    p = as_loss_array(perfect_payout_cny, "perfect_payout_cny")
    ll = as_loss_array(true_loss_cny, "true_loss_cny")
    if p.size != ll.size:
        raise InsuranceInputError(f"perfect_payout_cny and true_loss_cny differ in length: {p.size} vs {ll.size}")
    tol = float(tolerance_cny)
    if not (math.isfinite(tol) and tol >= 0):
        raise InsuranceInputError(f"tolerance_cny must be finite and >= 0, got {tolerance_cny!r}")
    gap = np.maximum(ll - p, 0.0)
    mean_loss = float(ll.mean())
    return ProtectionGap(
        n_years=p.size, mean_true_loss_cny=mean_loss, mean_perfect_index_payout_cny=float(p.mean()),
        mean_gap_cny=float(gap.mean()), gap_share_of_true_loss=float(gap.mean()) / mean_loss if mean_loss > 0 else math.nan,
        prob_loss_no_payout_by_design=float(((ll > tol) & (p <= tol)).mean()),
        mean_excess_cny=float(np.maximum(p - ll, 0.0).mean()), tolerance_cny=tol)
