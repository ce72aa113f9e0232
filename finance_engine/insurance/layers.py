"""Excess-of-loss layers priced on loss tables: occurrence and aggregate XoL, reinstatements, quota share.

Layer terms (finance_practice.md §3; GEMAct ``Layer``, peers.md §2)
-------------------------------------------------------------------
For attachment ``A`` (>= 0) and limit ``C`` (> 0, ``np.inf`` = unlimited) the layer loss of a loss
``x`` is ``l(x) = min(max(x - A, 0), C)``.

* **Occurrence basis** (per-event XoL, "xl"): each event's loss ``L_e`` passes through the layer,
  and the year's layer loss is ``Z_y = sum_{e in y} l(L_e)``. An optional annual aggregate
  deductible ``D`` and aggregate limit ``M`` then give the ceded annual loss
  ``X_y = min(max(Z_y - D, 0), M)``.
* **Aggregate basis** (annual aggregate XoL / stop loss): ``X_y = l(S_y)`` with ``S_y`` the year's
  total loss.
* A participation ``share`` in (0, 1] scales every ceded amount.

Outputs (:class:`LayerResult`), with ``N`` simulated years and ``X_y`` the annual ceded loss:

* pure premium ``E[X] = mean_y X_y`` (the expected layer loss per year; for aggregate basis it is
  the Monte Carlo estimate of ``int_A^{A+C} S(x) dx``), its Monte Carlo standard error and ``sd(X)``
  (``ddof=1``). The error is ``sd(X) / sqrt(N)`` for independent years; for the engine's own table, whose
  years come in blocks of ``B`` correlated years (a path's years, the paths of a parameter set:
  :attr:`EventLosses.years_per_block <finance_engine.insurance.tables.EventLosses>`), it is the sd of the
  ``N / B`` block means over ``sqrt(N / B)`` (:func:`~finance_engine.insurance.tables.block_mean_se`), and
  :meth:`LayerResult.mean_se` gives any other per-year figure's error (the probabilities') the same way;
* probability of attachment ``P(X_y > 0)``;
* probability of exhaustion: the share of years whose capacity is used up **and** the layer pays, so
  that ``P(exhaustion) <= P(attachment)`` always. With an annual aggregate limit (given, or ``(K+1) C``
  from K reinstatements) that is ``P(X_y >= M)`` (the year's recovery reaches the aggregate limit);
  without one it is ``P(some event of the year has L_e >= A + C and X_y > 0)`` (occurrence: an event
  uses up the per-event cover and the layer pays, i.e. an aggregate deductible does not absorb the whole
  year) or ``P(S_y >= A + C)`` (aggregate); 0 for an unlimited layer;
* expected number of events per year with ``L_e > A`` (occurrence basis; before any aggregate
  deductible or limit), or ``P(S_y > A)`` for the aggregate basis (a year enters a stop-loss layer at
  most once).

Reinstatements (GEMAct ``Layer(n_reinst, reinst_percentage)``; Sundt 1991, *ASTIN Bull.* 21(1); Antal
2009, *Quantitative methods in reinsurance*, §2.4)
-----------------------------------------------------------------------------------------------------
A per-event layer of cover ``C`` with ``K`` reinstatements has annual aggregate cover ``(K+1) C``.
Reinstatement ``k`` (k = 1..K) is paid pro rata to the amount of cover it restores (pro rata
capita, not pro rata temporis), at ``c_k`` times the upfront premium ``P``::

    ceded          X   = min(max(Z - D, 0), (K+1) C)
    slice k        Z_k = min(max(Z - D - (k-1) C, 0), C)        (the loss that uses up the k-th cover)
    reinstatement  R   = P * sum_k c_k Z_k / C

Setting the expected total premium equal to the expected ceded loss, ``P + E[R] = E[X]``, gives the
upfront pure premium (GEMAct ``costing``)::

    P = E[X] / (1 + sum_k c_k E[Z_k] / C)

:class:`LayerResult` reports ``expected_loss = E[X]`` (the full pure premium), ``upfront_premium = P``,
``expected_reinstatement_premium = E[R] = E[X] - P`` and, per simulated year, the reinstatement factor
``f_y = sum_k c_k Z_k,y / C`` (``annual_reinstatement_factor``): a year's reinstatement premium is
``R_y = P f_y`` for any upfront premium ``P`` (pure or loaded), which the cedant pays in its loss years
(:mod:`.reinsurance` counts it in the net loss). ``P = E[X] / (1 + mean(f))``.

The market rate on line is the upfront premium over the cover, ``P / (share x C)``
(:attr:`LayerResult.pure_rate_on_line` on the pure upfront premium); the multiple ``(P + E[R]) / E[X]``
uses the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .tables import EventLosses, InsuranceInputError, annual_aggregate, as_loss_array, block_mean_se, event_losses

__all__ = [
    "Reinstatements",
    "LayerResult",
    "layer_loss",
    "price_layer",
    "price_layer_events",
    "price_annual_layer",
    "occurrence_layer_annual",
    "quota_share",
]

Basis = Literal["occurrence", "aggregate"]


@dataclass(frozen=True)
class Reinstatements:
    """Reinstatement terms of a per-event layer.

    Attributes
    ----------
    count : int
        Number of reinstatements ``K`` (>= 0); the annual aggregate cover is ``(K+1) * limit``.
    premium_pct : tuple of float
        Reinstatement premium of each reinstatement as a fraction of the upfront premium
        (1.0 = 100 %), length ``K``. A scalar given to :meth:`of` is repeated.
    """

    count: int
    premium_pct: tuple[float, ...]

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)) or self.count < 0:
            raise InsuranceInputError(f"reinstatements.count must be an integer >= 0, got {self.count!r}")
        if len(self.premium_pct) != self.count:
            raise InsuranceInputError(
                f"reinstatements.premium_pct needs {self.count} value(s), got {len(self.premium_pct)}")
        for c in self.premium_pct:
            if not (math.isfinite(c) and c >= 0):
                raise InsuranceInputError(f"reinstatements.premium_pct must be finite and >= 0, got {c!r}")

    @classmethod
    def of(cls, spec) -> "Reinstatements":
        """Build from a :class:`Reinstatements`, or ``(count, pct)`` with ``pct`` a scalar or a sequence."""
        if isinstance(spec, Reinstatements):
            return spec
        try:
            count, pct = spec
        except (TypeError, ValueError):
            raise InsuranceInputError(
                f"reinstatements must be Reinstatements or (count, premium_pct), got {spec!r}") from None
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise InsuranceInputError(f"reinstatements count must be an integer, got {count!r}")
        if np.ndim(pct) == 0:
            pcts = (float(pct),) * int(count)
        else:
            pcts = tuple(float(c) for c in pct)
        return cls(int(count), pcts)


@dataclass(frozen=True)
class LayerResult:
    """Pure-premium statistics of a layer over ``n_years`` simulated years (loss unit of the input).

    Attributes
    ----------
    basis : {"occurrence", "aggregate"}
    attachment, limit : float
        Layer terms (``limit`` may be ``inf``).
    aggregate_deductible, aggregate_limit : float
        Annual aggregate terms of a per-event layer (0 and ``inf`` when absent; ``aggregate_limit`` is
        ``(K+1) * limit`` with K reinstatements).
    share : float
        Participation applied to every ceded amount.
    n_years : int
    expected_loss : float
        Pure premium: expected annual ceded loss ``E[X]``.
    expected_loss_se : float
        Monte Carlo standard error of ``expected_loss`` (``sd_annual_loss / sqrt(n_years)`` for independent
        years; from the block means for blocks of ``years_per_block`` years: module docstring).
    sd_annual_loss : float
        Standard deviation of the annual ceded loss (ddof=1; 0 when ``n_years == 1``).
    prob_attachment, prob_exhaustion : float
        See the module docstring.
    expected_events_in_layer : float
        Expected number of events per year entering the layer (see the module docstring).
    reinstatements : Reinstatements or None
    upfront_premium : float
        Upfront pure premium ``P`` (equals ``expected_loss`` without reinstatements).
    expected_reinstatement_premium : float
        ``E[R] = expected_loss - upfront_premium``.
    annual_loss : ndarray, shape (n_years,)
        The annual ceded losses ``X_y`` (for risk measures and capital; not part of equality).
    annual_reinstatement_factor : ndarray, shape (n_years,)
        ``f_y = sum_k c_k Z_k,y / limit``: the year's reinstatement premium is ``upfront premium x f_y``
        (zeros without paid reinstatements; not part of equality).
    annual_exhausted : ndarray of bool, shape (n_years,)
        Whether the year exhausts the layer (``prob_exhaustion`` is its mean; not part of equality).
    annual_events_in_layer : ndarray, shape (n_years,)
        Events of the year entering the layer (``expected_events_in_layer`` is its mean; not part of
        equality).
    years_per_block : int
        Consecutive simulated years forming one independent Monte Carlo block (1: independent years).
    """

    basis: str
    attachment: float
    limit: float
    aggregate_deductible: float
    aggregate_limit: float
    share: float
    n_years: int
    expected_loss: float
    expected_loss_se: float
    sd_annual_loss: float
    prob_attachment: float
    prob_exhaustion: float
    expected_events_in_layer: float
    reinstatements: Reinstatements | None
    upfront_premium: float
    expected_reinstatement_premium: float
    annual_loss: np.ndarray = field(repr=False, compare=False)
    annual_reinstatement_factor: np.ndarray | None = field(default=None, repr=False, compare=False)
    annual_exhausted: np.ndarray | None = field(default=None, repr=False, compare=False)
    annual_events_in_layer: np.ndarray | None = field(default=None, repr=False, compare=False)
    years_per_block: int = 1

    def __post_init__(self) -> None:
        if self.annual_reinstatement_factor is None:
            object.__setattr__(self, "annual_reinstatement_factor", np.zeros(np.shape(self.annual_loss)))

    @property
    def pure_rate_on_line(self) -> float:
        """Upfront pure premium / (share x limit): the market rate on line of the pure premium (nan if
        unlimited). Equals ``expected_loss / (share x limit)`` without paid reinstatements."""
        if not math.isfinite(self.limit):
            return float("nan")
        # divide in two steps: share x limit can underflow to 0 for a tiny (denormal) limit
        return self.upfront_premium / self.share / self.limit

    @property
    def independent_units(self) -> int:
        """The independent units the errors count: blocks of ``years_per_block`` years when there are two or
        more, else the years."""
        g = -(-self.n_years // max(self.years_per_block, 1))  # the last block may be short
        return g if self.years_per_block > 1 and g >= 2 else self.n_years

    def mean_se(self, per_year) -> float:
        """Monte Carlo standard error of the mean of a per-simulated-year figure of this layer's years (e.g.
        ``annual_loss > 0`` for ``prob_attachment``, ``annual_exhausted`` for ``prob_exhaustion``), counting
        blocks of ``years_per_block`` years (:func:`~finance_engine.insurance.tables.block_mean_se`)."""
        return block_mean_se(per_year, self.years_per_block)

    def expected_loss_ci(self, confidence: float = 0.95) -> tuple[float, float]:
        """Confidence interval of ``expected_loss``: Student's t over the independent units (the years, or
        the blocks of ``years_per_block`` years; the quote's intervals use t likewise), its lower end at least
        0 (a layer's loss is never negative, so neither is its mean: a symmetric interval of a rare layer's
        mean reached below 0)."""
        from scipy.stats import t as student_t

        if not 0 < confidence < 1:
            raise InsuranceInputError(f"confidence must be in (0, 1), got {confidence}")
        q = float(student_t.ppf(0.5 + confidence / 2, max(1, self.independent_units - 1)))
        return (max(0.0, self.expected_loss - q * self.expected_loss_se), self.expected_loss + q * self.expected_loss_se)


# ---------------------------------------------------------------------------------------------------
def _check_terms(attachment, limit, *, name_a: str = "attachment", name_l: str = "limit") -> tuple[float, float]:
    try:
        a, c = float(attachment), float(limit)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"{name_a} and {name_l} must be numbers, got {attachment!r}, {limit!r}") from None
    if not (math.isfinite(a) and a >= 0):
        raise InsuranceInputError(f"{name_a} must be finite and >= 0, got {attachment!r}")
    if math.isnan(c) or c <= 0:
        raise InsuranceInputError(f"{name_l} must be > 0 (np.inf for unlimited), got {limit!r}")
    return a, c


def layer_loss(x, attachment: float, limit: float) -> np.ndarray:
    """Elementwise layer loss ``min(max(x - attachment, 0), limit)`` (array in, float64 array out)."""
    a, c = _check_terms(attachment, limit)
    return np.minimum(np.maximum(np.asarray(x, dtype=np.float64) - a, 0.0), c)


def _summary(annual: np.ndarray, years_per_block: int = 1) -> tuple[float, float, float]:
    n = annual.size
    mean = float(annual.mean())
    sd = float(annual.std(ddof=1)) if n > 1 else 0.0
    se = block_mean_se(annual, years_per_block) if n > 1 else 0.0
    return mean, se, sd


def occurrence_layer_annual(events: EventLosses, attachment: float, limit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-event XoL summed per year.

    Returns
    -------
    z : ndarray, shape (n_years,)
        Annual sum of per-event layer losses ``Z_y`` (before aggregate terms and share).
    n_in_layer : ndarray of int, shape (n_years,)
        Number of events per year with loss > attachment.
    n_exhausting : ndarray of int, shape (n_years,)
        Number of events per year with loss >= attachment + limit (0 for an unlimited layer).
    """
    a, c = _check_terms(attachment, limit)
    per_event = np.minimum(np.maximum(events.loss - a, 0.0), c)
    z = annual_aggregate(events, per_event)
    n_in = np.bincount(events.year[events.loss > a], minlength=events.n_years)
    if math.isfinite(c):
        n_ex = np.bincount(events.year[events.loss >= a + c], minlength=events.n_years)
    else:
        n_ex = np.zeros(events.n_years, dtype=np.int64)
    return z, n_in, n_ex


def price_layer_events(events: EventLosses, attachment: float, limit: float, basis: Basis = "occurrence",
                       reinstatements=None, *, aggregate_deductible: float = 0.0,
                       aggregate_limit: float = np.inf, share: float = 1.0) -> LayerResult:
    """:func:`price_layer` on already validated events (see :func:`finance_engine.insurance.tables.event_losses`)."""
    a, c = _check_terms(attachment, limit)
    d, m = _check_terms(aggregate_deductible, aggregate_limit, name_a="aggregate_deductible",
                        name_l="aggregate_limit")
    try:
        share = float(share)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"share must be a number in (0, 1], got {share!r}") from None
    if not 0 < share <= 1:
        raise InsuranceInputError(f"share must be in (0, 1], got {share}")
    if basis not in ("occurrence", "aggregate"):
        raise InsuranceInputError(f"basis must be 'occurrence' or 'aggregate', got {basis!r}")
    rein = Reinstatements.of(reinstatements) if reinstatements is not None else None

    if basis == "aggregate":
        if d != 0 or math.isfinite(m):
            raise InsuranceInputError("aggregate_deductible / aggregate_limit apply to occurrence basis only; "
                                      "for aggregate basis use attachment and limit")
        if rein is not None:
            raise InsuranceInputError("reinstatements apply to occurrence (per-event) layers only")
        total = annual_aggregate(events)
        x = np.minimum(np.maximum(total - a, 0.0), c)
        exhausted = total >= a + c if math.isfinite(c) else np.zeros(total.size, dtype=bool)
        n_in = (total > a).astype(np.float64)
    else:
        z, n_in, n_ex = occurrence_layer_annual(events, a, c)
        if rein is not None:
            if math.isfinite(m):
                raise InsuranceInputError("give either reinstatements or aggregate_limit, not both "
                                          "(K reinstatements set aggregate_limit = (K+1) * limit)")
            if not math.isfinite(c):
                raise InsuranceInputError("reinstatements need a finite limit")
            m = (rein.count + 1) * c
        x = np.minimum(np.maximum(z - d, 0.0), m)
        # exhausted: the year's recovery reaches the aggregate limit; without one, an event uses up the
        # per-event cover and the layer pays (an aggregate deductible may absorb such an event)
        exhausted = x >= m if math.isfinite(m) else (n_ex > 0) & (x > 0)
        n_in = n_in.astype(np.float64)

    mean, se, sd = _summary(x, events.years_per_block)
    upfront = mean
    factor = np.zeros(x.size)
    if rein is not None and rein.count > 0:
        zd = np.maximum(z - d, 0.0)
        # f_y = sum_k c_k min(max(Z - D - (k-1)C, 0), C) / C, k = 1..K, without a (n_years, K) temporary
        for kk, ck in enumerate(rein.premium_pct):
            if ck:
                factor += ck * np.minimum(np.maximum(zd - kk * c, 0.0), c)
        factor /= c
        upfront = mean / (1.0 + float(factor.mean()))
    return LayerResult(
        basis=basis, attachment=a, limit=c, aggregate_deductible=d, aggregate_limit=m, share=share,
        n_years=events.n_years, expected_loss=share * mean, expected_loss_se=share * se,
        sd_annual_loss=share * sd, prob_attachment=float((x > 0).mean()),
        prob_exhaustion=float(exhausted.mean()), expected_events_in_layer=float(n_in.mean()),
        reinstatements=rein, upfront_premium=share * upfront,
        expected_reinstatement_premium=share * (mean - upfront), annual_loss=share * x,
        annual_reinstatement_factor=factor, annual_exhausted=np.asarray(exhausted, dtype=bool),
        annual_events_in_layer=n_in, years_per_block=events.years_per_block,
    )


def price_layer(elt: pd.DataFrame, n_years: int, attachment: float, limit: float, basis: Basis = "occurrence",
                reinstatements=None, *, aggregate_deductible: float = 0.0, aggregate_limit: float = np.inf,
                share: float = 1.0, year_col: str | None = None, event_col: str | Sequence[str] = "event_id",
                loss_col: str | None = None, check_year_spread: bool = False) -> LayerResult:
    """Price an excess-of-loss layer on an event loss table.

    Parameters
    ----------
    elt : DataFrame
        Event loss table with columns ``year`` (0..n_years-1), ``event_id``, ``loss`` (>= 0); years
        without a row had no loss. Rows with the same (year, event id) are summed into one event.
    n_years : int
        Number of simulated years.
    attachment : float
        ``A`` >= 0 (per event for occurrence basis, on the annual total for aggregate basis).
    limit : float
        ``C`` > 0; ``np.inf`` for an unlimited layer.
    basis : {"occurrence", "aggregate"}
        Per-event XoL summed per year, or annual aggregate XoL (stop loss).
    reinstatements : Reinstatements or (count, premium_pct), optional
        Occurrence basis only; sets the annual aggregate limit to ``(count+1) * limit`` and splits the
        pure premium into upfront and expected reinstatement premium (module docstring).
    aggregate_deductible, aggregate_limit : float
        Annual aggregate deductible and limit on the summed per-event layer losses (occurrence basis).
    share : float
        Participation in (0, 1].
    year_col, event_col, loss_col : str
        Column names when the ELT uses others (e.g. ``"sim_year"``, ``("peril", "event")``,
        ``"loss_tco2e"``). ``year_col`` and ``loss_col`` None: ``year`` and ``loss``, or for the engine's own
        table (columns ``path`` and ``sim_year``) ``sim_year`` and ``loss_tco2e``
        (:func:`~finance_engine.insurance.tables.elt_columns`). A year column that cannot index ``n_years``
        simulated years (each path's own year, or event years all far below ``n_years``) is refused with
        :class:`~finance_engine.insurance.tables.YearIndexError`; the second only with ``check_year_spread``
        (a table a user brings: the CLI and the API ask for it; a hand-built table may put its events anywhere).
    check_year_spread : bool
        Refuse a table whose event years all lie far below ``n_years`` (``k`` event years in ``[0, M]``,
        ``M + 1 <= n_years / 2`` and ``((M + 1) / n_years) ** k < 1e-9``).

    Returns
    -------
    LayerResult

    Raises
    ------
    InsuranceInputError
        Naming the column or argument at fault.
    """
    events = event_losses(elt, n_years, year_col=year_col, event_col=event_col, loss_col=loss_col,
                          check_year_spread=check_year_spread)
    return price_layer_events(events, attachment, limit, basis, reinstatements,
                              aggregate_deductible=aggregate_deductible, aggregate_limit=aggregate_limit,
                              share=share)


def price_annual_layer(annual_losses, attachment: float, limit: float, *, share: float = 1.0) -> LayerResult:
    """Aggregate-basis (stop-loss) layer on a sample of annual losses, one value per simulated year.

    For engine outputs that are already annual (e.g. a year loss table column or per-path annual
    losses). Same outputs as :func:`price_layer` with ``basis="aggregate"``.
    """
    arr = as_loss_array(annual_losses, "annual_losses")
    n = arr.size
    events = EventLosses(np.arange(n, dtype=np.int64), arr, n)
    return price_layer_events(events, attachment, limit, "aggregate", share=share)


def quota_share(losses, cession: float) -> tuple[np.ndarray, np.ndarray]:
    """Split losses (per event or per year: the split is linear) into ceded and retained parts.

    Parameters
    ----------
    losses : array_like
        Losses >= 0.
    cession : float
        Ceded fraction ``q`` in [0, 1].

    Returns
    -------
    ceded, retained : ndarray
        ``q * losses`` and ``(1 - q) * losses``; they add up to ``losses``.
    """
    try:
        q = float(cession)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"cession must be a number in [0, 1], got {cession!r}") from None
    if not 0 <= q <= 1:
        raise InsuranceInputError(f"cession must be in [0, 1], got {cession}")
    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or not np.isfinite(x).all() or (x < 0).any():
        raise InsuranceInputError("losses must be a 1-d array of finite values >= 0")
    ceded = q * x
    return ceded, x - ceded
