"""Reinsurance outputs of a layer and the insurer's 1-in-200 capital gross and net of reinsurance.

Quote measures (finance_practice.md §3)
----------------------------------------
* expected layer loss ``E[X]`` (pure premium, :func:`finance_engine.insurance.layers.price_layer`)
* rate on line ``ROL = premium / (share x limit)``
* multiple ``premium / E[X]`` (about 1.5-5x for cat layers)

Capital (Solvency II SCR / C-ROSS II: 1-year VaR 99.5 %)
---------------------------------------------------------
For an annual loss ``L`` the capital is the unexpected loss at the capital level ``q``::

    capital(L) = VaR_q(L) - E[L]

Gross: ``L = S`` (annual aggregate of the event losses). Net of the programme, with event losses
``L_e``:

1. quota share with cession ``c`` (optional): retained event loss ``(1 - c) L_e``;
2. per-event XoL ``(A, C)`` with optional annual aggregate terms/reinstatements (optional) on the
   retained event losses (the quota share inures to the benefit of the XoL);
3. net annual loss ``N = S - c S - X`` plus the fixed reinsurance premium, which shifts VaR and mean
   alike and so does not change the capital; it is reported as the cost of reinsurance
   ``premium - E[X]``. The quota share is taken at original terms (premium ceded pro rata, no
   commission modelled), so it has no cost of its own here.

VaR is the lower empirical quantile (:func:`finance_engine.insurance.risk_measures.var`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .defaults import load_insurance_defaults
from .layers import LayerResult, price_layer_events
from .risk_measures import _var_sorted
from .tables import EventLosses, InsuranceInputError, annual_aggregate, event_losses

__all__ = ["LayerQuote", "CapitalResult", "layer_quote", "insurer_capital"]


@dataclass(frozen=True)
class LayerQuote:
    """Market measures of a priced layer.

    Attributes
    ----------
    expected_loss : float
        Expected annual layer loss (pure premium).
    premium : float
        The (risk-loaded) reinsurance premium per year.
    rate_on_line : float
        ``premium / (share x limit)`` (nan for an unlimited layer).
    multiple : float
        ``premium / expected_loss`` (inf when the expected loss is 0).
    prob_attachment, prob_exhaustion : float
        From the layer pricing.
    """

    expected_loss: float
    premium: float
    rate_on_line: float
    multiple: float
    prob_attachment: float
    prob_exhaustion: float


def layer_quote(layer: LayerResult, premium: float) -> LayerQuote:
    """Rate on line and multiple of ``premium`` for a layer priced by :func:`price_layer`."""
    try:
        p = float(premium)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"premium must be a number, got {premium!r}") from None
    if not (math.isfinite(p) and p >= 0):
        raise InsuranceInputError(f"premium must be finite and >= 0, got {premium!r}")
    cap = layer.share * layer.limit
    rol = p / cap if math.isfinite(cap) else float("nan")
    mult = p / layer.expected_loss if layer.expected_loss > 0 else math.inf
    return LayerQuote(layer.expected_loss, p, rol, mult, layer.prob_attachment, layer.prob_exhaustion)


@dataclass(frozen=True)
class CapitalResult:
    """Insurer's capital gross and net of a reinsurance programme (loss unit, per year).

    Attributes
    ----------
    level : float
        Capital level ``q`` (0.995 = 1-in-200).
    gross_mean, gross_var, gross_capital : float
        ``E[S]``, ``VaR_q(S)``, ``VaR_q(S) - E[S]``.
    net_mean, net_var, net_capital : float
        The same for the net annual loss (before the reinsurance premium).
    ceded_xol_mean, ceded_qs_mean : float
        Expected annual loss ceded to the XoL layer and to the quota share.
    reinsurance_premium : float
        Premium paid for the XoL layer (0 if not given).
    cost_of_reinsurance : float
        ``reinsurance_premium - ceded_xol_mean``.
    capital_relief : float
        ``gross_capital - net_capital``.
    layer : LayerResult or None
        The XoL layer priced on the retained event losses.
    """

    level: float
    gross_mean: float
    gross_var: float
    gross_capital: float
    net_mean: float
    net_var: float
    net_capital: float
    ceded_xol_mean: float
    ceded_qs_mean: float
    reinsurance_premium: float
    cost_of_reinsurance: float
    capital_relief: float
    layer: LayerResult | None


def insurer_capital(elt: pd.DataFrame | EventLosses, n_years: int | None = None, *, attachment: float | None = None,
                    limit: float | None = None, reinstatements=None, aggregate_deductible: float = 0.0,
                    aggregate_limit: float = np.inf, share: float = 1.0, quota_share_cession: float = 0.0,
                    reinsurance_premium: float = 0.0, level: float | None = None,
                    **columns) -> CapitalResult:
    """Capital at ``level`` (default 0.995) gross and net of a quota share and/or a per-event XoL layer.

    Parameters
    ----------
    elt : DataFrame or EventLosses
        Event loss table (gross), or already validated events.
    n_years : int
        Number of simulated years (required with a DataFrame).
    attachment, limit : float, optional
        Per-event XoL layer on the retained (after quota share) event losses; omit both for none.
    reinstatements, aggregate_deductible, aggregate_limit, share
        As for :func:`finance_engine.insurance.layers.price_layer` (occurrence basis).
    quota_share_cession : float
        Ceded quota-share fraction in [0, 1] (applied first).
    reinsurance_premium : float
        Premium of the XoL layer (reported as cost; does not change capital).
    level : float, optional
        Capital level; default ``capital_level`` of the data file (0.995).
    """
    if isinstance(elt, EventLosses):
        ev = elt
    else:
        if n_years is None:
            raise InsuranceInputError("n_years is required with an ELT DataFrame")
        ev = event_losses(elt, n_years, **columns)
    q = float(load_insurance_defaults().capital_level if level is None else level)
    if not 0 < q < 1:
        raise InsuranceInputError(f"level must be in (0, 1), got {q}")
    c = float(quota_share_cession)
    if not 0 <= c <= 1:
        raise InsuranceInputError(f"quota_share_cession must be in [0, 1], got {quota_share_cession}")
    prem = float(reinsurance_premium)
    if not (math.isfinite(prem) and prem >= 0):
        raise InsuranceInputError(f"reinsurance_premium must be finite and >= 0, got {reinsurance_premium}")
    if (attachment is None) != (limit is None):
        raise InsuranceInputError("give both attachment and limit for an XoL layer, or neither")

    gross = annual_aggregate(ev)
    ceded_qs = c * gross
    layer = None
    ceded_xol = np.zeros_like(gross)
    if attachment is not None:
        retained = EventLosses(ev.year, (1.0 - c) * ev.loss, ev.n_years)
        layer = price_layer_events(retained, attachment, limit, "occurrence", reinstatements,
                                   aggregate_deductible=aggregate_deductible, aggregate_limit=aggregate_limit,
                                   share=share)
        ceded_xol = layer.annual_loss
    elif prem:
        raise InsuranceInputError("reinsurance_premium given without an XoL layer")
    net = gross - ceded_qs - ceded_xol

    def cap(x: np.ndarray) -> tuple[float, float, float]:
        m = float(x.mean())
        v = _var_sorted(np.sort(x), q)
        return m, v, v - m

    gm, gv, gc = cap(gross)
    nm, nv, nc = cap(net)
    xol_mean = float(ceded_xol.mean())
    return CapitalResult(q, gm, gv, gc, nm, nv, nc, xol_mean, float(ceded_qs.mean()), prem,
                         prem - xol_mean, gc - nc, layer)
