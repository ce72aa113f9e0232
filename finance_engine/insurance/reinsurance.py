"""Reinsurance outputs of a layer and the insurer's 1-in-200 capital gross and net of reinsurance.

Quote measures (finance_practice.md §3)
----------------------------------------
* expected layer loss ``E[X]`` (pure premium, :func:`finance_engine.insurance.layers.price_layer`)
* rate on line ``ROL = upfront premium / (share x limit)``: the market convention, the premium paid at
  inception for the cover; with paid reinstatements the upfront premium is ``premium / (1 + E[f])``
  (:mod:`.layers`), less than the expected total premium
* multiple ``premium / E[X]`` on the expected *total* premium, upfront plus expected reinstatement
  premiums (about 1.5-5x for cat layers)

Capital (Solvency II SCR / C-ROSS II: 1-year VaR 99.5 %)
---------------------------------------------------------
For an annual loss ``L`` the capital is the unexpected loss at the capital level ``q``::

    capital(L) = VaR_q(L) - E[L]

Gross: ``L = S`` (annual aggregate of the event losses). Net of the programme, with event losses
``L_e``:

1. quota share with cession ``c`` (optional): retained event loss ``(1 - c) L_e``;
2. per-event XoL ``(A, C)`` with optional annual aggregate terms/reinstatements (optional) on the
   retained event losses (the quota share inures to the benefit of the XoL);
3. the net annual loss is what the cedant pays in the year: the retained loss plus every reinsurance
   premium paid in that year::

       N_y = S_y - c S_y - X_y + P (1 + f_y),      f_y = sum_k c_k Z_k,y / C

   with ``P`` the upfront premium of the XoL layer (share included) and ``P f_y`` the reinstatement
   premiums due in year ``y``, pro rata to the cover reinstated (:mod:`.layers`). The reinstatement
   premiums are paid in loss years, so they raise the net VaR by more than the mean; the fixed upfront
   premium shifts VaR and mean alike. Net capital ``= VaR_q(N) - E[N]``; ``E[N] = E[S] - c E[S] - E[X] +
   premium``, so ``net_mean`` carries the cost of reinsurance ``premium - E[X]``. The quota share is
   taken at original terms (premium ceded pro rata, no commission modelled), so it has no cost of its
   own in this loss view. :func:`finance_engine.insurance.quote.quote_losses` uses the same convention
   for a programme of several layers (each layer's loaded upfront premium and reinstatement premiums).

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
        The (risk-loaded) reinsurance premium per year: expected total, upfront plus expected
        reinstatement premiums.
    rate_on_line : float
        ``upfront_premium / (share x limit)`` (nan for an unlimited layer).
    multiple : float
        ``premium / expected_loss`` on the total (inf when the expected loss is 0).
    prob_attachment, prob_exhaustion : float
        From the layer pricing.
    upfront_premium : float
        ``premium / (1 + E[f])``: the part paid at inception (``premium`` without paid reinstatements).
    """

    expected_loss: float
    premium: float
    rate_on_line: float
    multiple: float
    prob_attachment: float
    prob_exhaustion: float
    upfront_premium: float = math.nan


def _upfront_share(layer: LayerResult) -> float:
    """Upfront premium / expected total premium of a layer: ``1 / (1 + E[f])`` (1 without reinstatements)."""
    f = layer.annual_reinstatement_factor
    return 1.0 / (1.0 + float(f.mean())) if f is not None and f.size else 1.0


def layer_quote(layer: LayerResult, premium: float) -> LayerQuote:
    """Rate on line (on the upfront part) and multiple (on the total) of ``premium``, the expected total
    premium of a layer priced by :func:`price_layer`."""
    try:
        p = float(premium)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"premium must be a number, got {premium!r}") from None
    if not (math.isfinite(p) and p >= 0):
        raise InsuranceInputError(f"premium must be finite and >= 0, got {premium!r}")
    upfront = p * _upfront_share(layer)
    rol = upfront / layer.share / layer.limit if math.isfinite(layer.limit) else float("nan")
    mult = p / layer.expected_loss if layer.expected_loss > 0 else math.inf
    return LayerQuote(layer.expected_loss, p, rol, mult, layer.prob_attachment, layer.prob_exhaustion, upfront)


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
        The same for the net annual loss, retained loss plus the reinsurance premiums paid in the year
        (upfront and reinstatement; module docstring).
    ceded_xol_mean, ceded_qs_mean : float
        Expected annual loss ceded to the XoL layer and to the quota share.
    reinsurance_premium : float
        Expected total premium of the XoL layer (upfront + expected reinstatement premiums; 0 without one).
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
    upfront_premium: float = 0.0
    expected_reinstatement_premium: float = 0.0


def insurer_capital(elt: pd.DataFrame | EventLosses, n_years: int | None = None, *, attachment: float | None = None,
                    limit: float | None = None, reinstatements=None, aggregate_deductible: float = 0.0,
                    aggregate_limit: float = np.inf, share: float = 1.0, quota_share_cession: float = 0.0,
                    reinsurance_premium: float | None = None, level: float | None = None,
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
    reinsurance_premium : float, optional
        Expected total annual premium of the XoL layer, upfront plus expected reinstatement premiums
        (the ``reinsurance_premium_cny`` of a quote's layer). Its upfront part ``premium / (1 + E[f])``
        is paid every year and the reinstatement premiums ``upfront x f_y`` in loss years, all counted
        in the net loss (module docstring). Default: the layer's pure premium ``E[X]`` (upfront part the
        pure upfront premium of :func:`~finance_engine.insurance.layers.price_layer`).
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
    if reinsurance_premium is not None:
        try:
            prem = float(reinsurance_premium)
        except (TypeError, ValueError):
            raise InsuranceInputError(f"reinsurance_premium must be a number, got {reinsurance_premium!r}") from None
        if not (math.isfinite(prem) and prem >= 0):
            raise InsuranceInputError(f"reinsurance_premium must be finite and >= 0, got {reinsurance_premium}")
    if (attachment is None) != (limit is None):
        raise InsuranceInputError("give both attachment and limit for an XoL layer, or neither")

    gross = annual_aggregate(ev)
    ceded_qs = c * gross
    layer = None
    ceded_xol = np.zeros_like(gross)
    paid = np.zeros_like(gross)
    upfront = 0.0
    if attachment is not None:
        retained = EventLosses(ev.year, (1.0 - c) * ev.loss, ev.n_years, ev.years_per_block)
        layer = price_layer_events(retained, attachment, limit, "occurrence", reinstatements,
                                   aggregate_deductible=aggregate_deductible, aggregate_limit=aggregate_limit,
                                   share=share)
        ceded_xol = layer.annual_loss
        if reinsurance_premium is None:
            prem = layer.expected_loss
        upfront = prem * _upfront_share(layer)
        paid = upfront * (1.0 + layer.annual_reinstatement_factor)
    elif reinsurance_premium:
        raise InsuranceInputError("reinsurance_premium given without an XoL layer")
    else:
        prem = 0.0
    net = gross - ceded_qs - ceded_xol + paid

    def cap(x: np.ndarray) -> tuple[float, float, float]:
        m = float(x.mean())
        v = _var_sorted(np.sort(x), q)
        return m, v, v - m

    gm, gv, gc = cap(gross)
    nm, nv, nc = cap(net)
    xol_mean = float(ceded_xol.mean())
    return CapitalResult(q, gm, gv, gc, nm, nv, nc, xol_mean, float(ceded_qs.mean()), prem,
                         prem - xol_mean, gc - nc, layer, upfront, prem - upfront)
