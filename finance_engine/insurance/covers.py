"""Cover types on simulated portfolios: what a policy pays in each simulated year (and event).

Every function here turns simulated physical or price outcomes into **payouts in CNY** per simulated
year (``sim_year = path * years + year``, ``n_years = paths * years``), and where a cover has events,
into an event loss table of payouts that the layer maths (:mod:`.layers`) and the quote
(:mod:`.quote`) take as the insurer's gross loss table. Nothing here draws random numbers except the
index measurement error, which is keyed by (seed, stream, year, path id) through
:class:`models.rng.KeyedRandom`, so a payout is the same however the paths are split into blocks.

Stock-loss indemnity (林业碳汇损失保险)
-------------------------------------
The carbon stock destroyed by the covered perils (tCO2e, from the engine's event loss table at
portfolio level) is valued at the agreed price ``p`` (CNY/tCO2e): ground-up loss ``g_e = p L_e`` of
event ``e``. With deductible ``D`` (CNY; given in CNY, in tCO2e -> ``D p``, or as a fraction ``f`` of
the insured stock ``K`` -> ``f K p``), annual aggregate limit ``M`` (CNY) and participation ``s``::

    per-event deductible   X_y = sum_{e in y} max(g_e - D, 0)
    annual deductible      X_y = max(sum_{e in y} g_e - D, 0)
    payout                 P_y = s * min(X_y, M)

The event payouts given to the layer maths are shares of ``P_y``: ``s max(g_e - D, 0) min(X_y, M) / X_y``
(per-event deductible) or ``P_y g_e / G_y`` with ``G_y = sum g_e`` (annual deductible): pro rata to the
event's part of ``X_y``, so they add up to ``P_y`` exactly.

*Approximation.* The engine's event loss table has no order of events within a year, so an annual
deductible and an annual limit are not eroded chronologically (the first events filling the
deductible, the last ones cut by the limit) but spread over the year's events in proportion to their
size. The annual payout ``P_y`` (and so the pure premium, the AEP curve and annual-aggregate layers)
is exact; the **event** payouts are not: in a year that hits the limit, or whose deductible is eroded
by several events, the largest event's payout is understated (the limit's cut is shared by all
events, and the deductible taken partly from the largest), so the OEP curve and per-event
(occurrence) layer losses are understated in such years. With a per-event deductible and no annual
limit the event payouts are exact.

Sink index cover (碳汇指数保险)
------------------------------
The index is the insured area's measured sink of the year ``I_y`` (tCO2e): the true sink ``S_y``
plus a measurement error. ``S_y`` is the sink **before harvest**: the engine's ``sink_tco2e``
(stock at year end - stock at year start) plus its ``harvest_tco2e`` (clear-fell at the rotation age),
i.e. growth minus mortality minus peril losses, so that a planned harvest (no peril) never triggers a
payout (:func:`finance_engine.insurance.quote.quote` adds it back). With expected sink ``E``, trigger
fraction ``t`` (the trigger is ``T = t E``), price ``p``, participation ``s`` and limit ``M``::

    payout                 P_y  = s * min(p * max(T - I_y, 0), M)      (in proportion to the shortfall)
    perfect-index payout   P*_y = s * min(p * max(T - S_y, 0), M)      (the same terms on the true sink)
    true loss              L_y  = p * max(E - S_y, 0)

The **true loss** is the shortfall of the true sink below the expected sink at the agreed price: the
carbon the insured expected to sequester and did not. It splits in two (:mod:`.basis_risk`):

* **basis risk** ``P - P*``: what the index error alone adds or takes away; zero for a perfect index;
* **protection gap** ``L - P*``: the loss the contract leaves uncovered by design (the trigger's
  retention ``(1 - t) p E``, the limit, the participation), with or without index error.

With ``t = 1``, ``s = 1``, no error and ``M = inf`` the payout equals the true loss in every year. The
default limit is the value of the triggered sink ``p T`` (the sum insured of the published index
policies, e.g. Gaochun 2024 pays 35 CNY/t on the target sink; finance_practice.md §2.1);
``limit_cny = inf`` (``"unlimited"`` in the cover's dict and JSON) is no limit.

**Expected sink estimated from the sample.** Unless ``expected_sink_tco2e`` is given, ``E`` of each
policy year is the mean simulated true sink of that year over all paths, so the trigger itself carries
Monte Carlo error. The result's ``replicate`` recomputes every payout on a subset of whole paths with
``E`` re-estimated on that subset (the same keyed index errors), so that the quote's delete-a-group
jackknife errors include the trigger's estimation error (:mod:`.quote`). With ``E`` given the trigger is
a fixed contract term and subsets are plain slices.

Measurement error of the index (remote-sensing biomass inversion), ``Z`` standard normal keyed by
(seed, ``"insurance.sink_index_error"``, year, path id):

* ``normal``:    ``I_y = S_y + c |E| Z``  (additive, sd = CV x expected sink);
* ``lognormal``: ``I_y = S_y exp(sigma Z - sigma^2/2)``, ``sigma^2 = ln(1 + c^2)`` (mean-one factor, CV c).

Carbon price floor (碳汇价格保险)
-------------------------------
On a volume ``V_y`` of credits sold at the end of policy year ``y`` (a fixed volume, or the simulated
credits issued that year) at market price ``P_{y+1}`` (CNY/tCO2e, :func:`finance_engine.price.simulate_price_paths`
with the same path ids and seed as the physical run), strike ``k`` and limit ``M``::

    payout  = s * min(max(k - P_{y+1}, 0) V_y, M)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Mapping

import numpy as np
import pandas as pd

from models.rng import KeyedRandom

from .tables import EventLosses, InsuranceInputError, check_n_years

__all__ = [
    "KNOWN_PERILS",
    "CoverError",
    "Deductible",
    "StockLossCover",
    "SinkIndexCover",
    "PriceFloorCover",
    "CoverLosses",
    "stock_loss_losses",
    "sink_index_losses",
    "measured_sink_index",
    "price_floor_losses",
    "per_path_to_sim_years",
    "subset_losses",
    "cover_from_dict",
    "UNLIMITED",
]

KNOWN_PERILS: tuple[str, ...] = ("drought", "fire", "typhoon", "ice_storm", "pine_wilt")
INDEX_ERROR_STREAM = "insurance.sink_index_error"
#: how an infinite limit is written in a cover's dict (JSON has no infinity, and a null limit of a sink
#: index means its default limit, the value of the triggered sink)
UNLIMITED = "unlimited"
_NO_PARCELS = np.empty(0, np.uint64)


class CoverError(InsuranceInputError):
    """Invalid cover terms (the message names the field)."""


def _num(v, name: str, *, low: float | None = None, low_open: bool = False, high: float | None = None,
         allow_inf: bool = False) -> float:
    if isinstance(v, bool):
        raise CoverError(f"{name} must be a number, got {v!r}")
    if allow_inf and isinstance(v, str) and v.strip().lower() == UNLIMITED:
        return math.inf
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise CoverError(f"{name} must be a number, got {v!r}") from None
    if math.isnan(f) or (math.isinf(f) and not (allow_inf and f > 0)):
        raise CoverError(f"{name} must be finite{' (or inf / unlimited)' if allow_inf else ''}, got {v!r}")
    if low is not None and (f <= low if low_open else f < low):
        raise CoverError(f"{name} must be {'>' if low_open else '>='} {low}, got {v!r}")
    if high is not None and f > high:
        raise CoverError(f"{name} must be <= {high}, got {v!r}")
    return f


def _limit_out(v: float | None):
    """A limit as written in a cover's dict: ``"unlimited"`` for ``inf`` (round-trips through JSON)."""
    return UNLIMITED if v is not None and math.isinf(v) else v


def _perils(perils) -> tuple[str, ...]:
    if perils is None:
        return KNOWN_PERILS
    if isinstance(perils, str):
        perils = [p.strip() for p in perils.split(",") if p.strip()]
    out = tuple(dict.fromkeys(str(p) for p in perils))
    if not out:
        raise CoverError("perils: at least one covered peril is needed")
    bad = [p for p in out if p not in KNOWN_PERILS]
    if bad:
        raise CoverError(f"perils: unknown peril(s) {bad}; known: {list(KNOWN_PERILS)}")
    return out


@dataclass(frozen=True)
class Deductible:
    """A deductible: ``amount`` in ``unit`` applied per ``basis``.

    Attributes
    ----------
    amount : float
        >= 0. CNY, tCO2e, or a fraction of the insured stock (0.01 = 1 %), according to ``unit``.
    unit : {"cny", "tco2e", "stock_fraction"}
    basis : {"annual", "event"}
        Annual aggregate (on the year's total) or per event.
    """

    amount: float = 0.0
    unit: Literal["cny", "tco2e", "stock_fraction"] = "cny"
    basis: Literal["annual", "event"] = "annual"

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", _num(self.amount, "deductible.amount", low=0.0))
        if self.unit not in ("cny", "tco2e", "stock_fraction"):
            raise CoverError(f"deductible.unit must be cny, tco2e or stock_fraction, got {self.unit!r}")
        if self.unit == "stock_fraction" and self.amount > 1:
            raise CoverError(f"deductible.amount as a stock fraction must be <= 1, got {self.amount}")
        if self.basis not in ("annual", "event"):
            raise CoverError(f"deductible.basis must be annual or event, got {self.basis!r}")

    def in_cny(self, price_cny_per_tco2e: float, insured_stock_tco2e: float) -> float:
        """The deductible in CNY."""
        if self.unit == "cny":
            return self.amount
        if self.unit == "tco2e":
            return self.amount * price_cny_per_tco2e
        return self.amount * insured_stock_tco2e * price_cny_per_tco2e

    def to_dict(self) -> dict:
        return {"amount": self.amount, "unit": self.unit, "basis": self.basis}


@dataclass(frozen=True)
class StockLossCover:
    """Stock-loss indemnity: destroyed carbon x agreed price, after deductible, up to a limit.

    Attributes
    ----------
    price_cny_per_tco2e : float
        Agreed price, > 0.
    perils : tuple of str
        Covered perils (default: all five).
    deductible : Deductible
    limit_cny : float
        Annual aggregate limit (inf: none).
    participation : float
        Insurer's share of the loss after deductible and limit, in (0, 1].
    """

    price_cny_per_tco2e: float
    perils: tuple[str, ...] = KNOWN_PERILS
    deductible: Deductible = field(default_factory=Deductible)
    limit_cny: float = math.inf
    participation: float = 1.0
    kind: str = field(default="stock-loss", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_cny_per_tco2e",
                           _num(self.price_cny_per_tco2e, "price_cny_per_tco2e", low=0.0, low_open=True))
        object.__setattr__(self, "perils", _perils(self.perils))
        if not isinstance(self.deductible, Deductible):
            raise CoverError("deductible must be a Deductible")
        object.__setattr__(self, "limit_cny", _num(self.limit_cny, "limit_cny", low=0.0, low_open=True,
                                                   allow_inf=True))
        object.__setattr__(self, "participation", _num(self.participation, "participation", low=0.0,
                                                       low_open=True, high=1.0))

    def sum_insured_cny(self, insured_stock_tco2e: float) -> float:
        """``participation x min(limit, stock x price)``: the most the policy can pay in a year."""
        return self.participation * min(self.limit_cny, insured_stock_tco2e * self.price_cny_per_tco2e)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "price_cny_per_tco2e": self.price_cny_per_tco2e, "perils": list(self.perils),
                "deductible": self.deductible.to_dict(), "limit_cny": _limit_out(self.limit_cny),
                "participation": self.participation}


@dataclass(frozen=True)
class SinkIndexCover:
    """Parametric cover on the measured net sink (module docstring).

    Attributes
    ----------
    price_cny_per_tco2e : float
        Value of a tonne of shortfall, > 0.
    trigger_fraction : float
        Trigger as a fraction of the expected sink, in (0, 2].
    limit_cny : float, "unlimited" or None
        Annual limit; ``inf`` (or ``"unlimited"``): none; None: the value of the triggered sink
        ``price x trigger x expected sink`` (the default).
    expected_sink_tco2e : float or None
        Expected net sink per year; None: the model's mean sink of each policy year.
    error : {"none", "normal", "lognormal"}
        Measurement-error model of the index.
    error_cv : float
        CV of the error, >= 0 (ignored for ``none``).
    participation : float
        In (0, 1].
    """

    price_cny_per_tco2e: float
    trigger_fraction: float = 0.8
    limit_cny: float | None = None
    expected_sink_tco2e: float | None = None
    error: Literal["none", "normal", "lognormal"] = "none"
    error_cv: float = 0.0
    participation: float = 1.0
    kind: str = field(default="sink-index", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "price_cny_per_tco2e",
                           _num(self.price_cny_per_tco2e, "price_cny_per_tco2e", low=0.0, low_open=True))
        object.__setattr__(self, "trigger_fraction", _num(self.trigger_fraction, "trigger_fraction", low=0.0,
                                                          low_open=True, high=2.0))
        if self.limit_cny is not None:
            object.__setattr__(self, "limit_cny", _num(self.limit_cny, "limit_cny", low=0.0, low_open=True,
                                                       allow_inf=True))
        if self.expected_sink_tco2e is not None:
            object.__setattr__(self, "expected_sink_tco2e",
                               _num(self.expected_sink_tco2e, "expected_sink_tco2e", low=0.0, low_open=True))
        if self.error not in ("none", "normal", "lognormal"):
            raise CoverError(f"error must be none, normal or lognormal, got {self.error!r}")
        object.__setattr__(self, "error_cv", _num(self.error_cv, "error_cv", low=0.0, high=5.0))
        object.__setattr__(self, "participation", _num(self.participation, "participation", low=0.0,
                                                       low_open=True, high=1.0))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "price_cny_per_tco2e": self.price_cny_per_tco2e,
                "trigger_fraction": self.trigger_fraction, "limit_cny": _limit_out(self.limit_cny),
                "expected_sink_tco2e": self.expected_sink_tco2e, "error": self.error, "error_cv": self.error_cv,
                "participation": self.participation}


@dataclass(frozen=True)
class PriceFloorCover:
    """Carbon price floor on a volume of credits: pays ``(strike - price)+ x volume``.

    Attributes
    ----------
    strike_cny_per_tco2e : float
        > 0.
    volume_tco2e : float or None
        Fixed volume sold each policy year; None: the simulated credits issued that year.
    limit_cny : float
        Annual limit (inf: none).
    participation : float
    price_model : str
        Name of the model in ``finance_engine/data/price_model.yaml`` (``cea`` default).
    """

    strike_cny_per_tco2e: float
    volume_tco2e: float | None = None
    limit_cny: float = math.inf
    participation: float = 1.0
    price_model: str = "cea"
    kind: str = field(default="price-floor", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "strike_cny_per_tco2e",
                           _num(self.strike_cny_per_tco2e, "strike_cny_per_tco2e", low=0.0, low_open=True))
        if self.volume_tco2e is not None:
            object.__setattr__(self, "volume_tco2e", _num(self.volume_tco2e, "volume_tco2e", low=0.0,
                                                          low_open=True))
        object.__setattr__(self, "limit_cny", _num(self.limit_cny, "limit_cny", low=0.0, low_open=True,
                                                   allow_inf=True))
        object.__setattr__(self, "participation", _num(self.participation, "participation", low=0.0,
                                                       low_open=True, high=1.0))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "strike_cny_per_tco2e": self.strike_cny_per_tco2e,
                "volume_tco2e": self.volume_tco2e, "limit_cny": _limit_out(self.limit_cny),
                "participation": self.participation, "price_model": self.price_model}


@dataclass(frozen=True)
class CoverLosses:
    """Payouts of a cover over ``n_years`` simulated years (CNY).

    Attributes
    ----------
    annual_payout_cny : ndarray, shape (n_years,)
        Payout per simulated year.
    events : EventLosses
        Payout per event (one event per paying year for covers without events), for the layer maths.
    event_peril : ndarray of str or None
        Peril of each event (stock-loss cover).
    true_loss_cny : ndarray or None, shape (n_years,)
        Index cover: the true loss (shortfall below the expected sink x price).
    index : Mapping[str, ndarray]
        Extra per-year arrays (measured and true sink, prices, volume) for reports and tests.
    perfect_index_payout_cny : ndarray or None, shape (n_years,)
        Index cover: the payout of the same contract on the true sink (no index error), the reference of
        the basis risk.
    replicate : callable or None
        ``replicate(keep)`` -> :class:`CoverLosses` of the simulated years where the boolean ``keep``
        (whole paths) is True, recomputed with every sample-estimated term re-estimated on them (the
        index cover's expected sink); None: a subset is a plain slice (:func:`subset_losses`).
    """

    annual_payout_cny: np.ndarray
    events: EventLosses
    event_peril: np.ndarray | None = None
    true_loss_cny: np.ndarray | None = None
    index: Mapping[str, np.ndarray] = field(default_factory=dict)
    perfect_index_payout_cny: np.ndarray | None = None
    replicate: Callable[[np.ndarray], "CoverLosses"] | None = field(default=None, repr=False, compare=False)

    @property
    def n_years(self) -> int:
        return int(self.annual_payout_cny.size)

    def payout_by_peril(self) -> dict[str, np.ndarray]:
        """Annual payout split by peril (stock-loss cover); the parts add up to the annual payout."""
        if self.event_peril is None:
            return {}
        out = {}
        for p in np.unique(self.event_peril):
            m = self.event_peril == p
            out[str(p)] = np.bincount(self.events.year[m], weights=self.events.loss[m], minlength=self.n_years)
        return out


def _annual_events(annual: np.ndarray) -> EventLosses:
    """One event per paying year (covers without events: OEP = AEP)."""
    yrs = np.flatnonzero(annual > 0)
    return EventLosses(yrs.astype(np.int64), annual[yrs].astype(np.float64), int(annual.size))


def stock_loss_losses(elt: pd.DataFrame, n_years: int, cover: StockLossCover, insured_stock_tco2e: float, *,
                      year_col: str = "sim_year", event_col: str = "event_id", loss_col: str = "loss_tco2e",
                      peril_col: str = "peril") -> CoverLosses:
    """Payouts of a stock-loss indemnity on the engine's event loss table (module docstring).

    Parameters
    ----------
    elt : DataFrame
        Event loss table at portfolio level: ``sim_year`` (0..n_years-1), ``event_id``, ``peril``,
        ``loss_tco2e`` (rows of the same (sim_year, event_id) are summed).
    n_years : int
        Simulated years (paths x years).
    cover : StockLossCover
    insured_stock_tco2e : float
        Insured carbon stock at inception (for a deductible given as a stock fraction and the sum insured).

    Returns
    -------
    CoverLosses
    """
    n_years = check_n_years(n_years)
    stock = _num(insured_stock_tco2e, "insured_stock_tco2e", low=0.0)
    if not isinstance(elt, pd.DataFrame):
        raise InsuranceInputError(f"elt must be a pandas DataFrame, got {type(elt).__name__}")
    missing = [c for c in (year_col, event_col, loss_col, peril_col) if c not in elt.columns]
    if missing:
        raise InsuranceInputError(f"elt is missing required column(s) {missing}; it has {list(elt.columns)}")
    sub = elt.loc[elt[peril_col].astype(str).isin(cover.perils), [year_col, event_col, peril_col, loss_col]]
    if len(sub):
        yr = sub[year_col].to_numpy()
        if yr.min() < 0 or yr.max() >= n_years:
            raise InsuranceInputError(f"column {year_col!r} must lie in [0, n_years={n_years})")
        if (sub[loss_col].to_numpy() < 0).any():
            raise InsuranceInputError(f"column {loss_col!r} must be >= 0")
    g = (sub.assign(_p=sub[peril_col].astype(str))
         .groupby([year_col, event_col], sort=True, observed=True)
         .agg(loss=(loss_col, "sum"), peril=("_p", "first")))
    year = g.index.get_level_values(0).to_numpy().astype(np.int64)
    gross = g["loss"].to_numpy(dtype=np.float64) * cover.price_cny_per_tco2e
    perils = g["peril"].to_numpy().astype(str)
    d = cover.deductible.in_cny(cover.price_cny_per_tco2e, stock)
    s, m = cover.participation, cover.limit_cny
    if cover.deductible.basis == "event":
        x_e = np.maximum(gross - d, 0.0)
        x_y = np.bincount(year, weights=x_e, minlength=n_years)
    else:
        g_y = np.bincount(year, weights=gross, minlength=n_years)
        x_y = np.maximum(g_y - d, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            x_e = np.where(g_y[year] > 0, gross * x_y[year] / np.where(g_y[year] > 0, g_y[year], 1.0), 0.0)
    pay_y = s * np.minimum(x_y, m)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(x_y > 0, pay_y / np.where(x_y > 0, x_y, 1.0), 0.0)
    pay_e = x_e * scale[year]
    keep = pay_e > 0
    events = EventLosses(year[keep], pay_e[keep], n_years)
    ground_up = np.bincount(year, weights=gross, minlength=n_years)
    return CoverLosses(pay_y, events, perils[keep], None, {"ground_up_cny": ground_up})


def per_path_to_sim_years(arr: np.ndarray) -> np.ndarray:
    """(years, paths) -> (paths * years,) in ``sim_year = path * years + year`` order."""
    a = np.asarray(arr, dtype=np.float64)
    if a.ndim != 2:
        raise InsuranceInputError(f"expected a (years, paths) array, got shape {a.shape}")
    return np.ascontiguousarray(a.T).ravel()


def _index_error_draws(seed: int, path_ids: np.ndarray, years: int) -> np.ndarray:
    """Standard normal ``Z`` (years, paths) of the index error, keyed by (seed, stream, year, path id)."""
    rnd = KeyedRandom(int(seed), np.asarray(path_ids, dtype=np.int64), _NO_PARCELS)
    return np.stack([rnd.path_normal(INDEX_ERROR_STREAM, y) for y in range(years)])


def _apply_index_error(s: np.ndarray, e: np.ndarray, error: str, error_cv: float, z: np.ndarray | None) -> np.ndarray:
    if error == "none" or error_cv == 0:
        return s.copy()
    if error == "normal":
        return s + error_cv * np.abs(np.asarray(e, dtype=np.float64).reshape(-1, 1)) * z
    if error == "lognormal":
        sig = math.sqrt(math.log1p(error_cv * error_cv))
        return s * np.exp(sig * z - 0.5 * sig * sig)
    raise CoverError(f"error must be none, normal or lognormal, got {error!r}")


def measured_sink_index(true_sink_tco2e: np.ndarray, expected_sink_tco2e: np.ndarray, error: str, error_cv: float,
                        seed: int, path_ids) -> np.ndarray:
    """The measured index ``I`` (years, paths) from the true sink with keyed measurement error.

    ``Z`` for path ``j`` and year ``y`` is ``KeyedRandom(seed, ids).path_normal(INDEX_ERROR_STREAM, y)``;
    see the module docstring for the two error models.
    """
    s = np.asarray(true_sink_tco2e, dtype=np.float64)
    if error == "none" or error_cv == 0:
        return s.copy()
    ids = np.asarray(path_ids, dtype=np.int64)
    if s.ndim != 2 or s.shape[1] != ids.size:
        raise InsuranceInputError(f"true sink must be (years, paths) with paths = {ids.size}, got {s.shape}")
    if error not in ("normal", "lognormal"):
        raise CoverError(f"error must be none, normal or lognormal, got {error!r}")
    return _apply_index_error(s, expected_sink_tco2e, error, error_cv, _index_error_draws(seed, ids, s.shape[0]))


def _model_expected_sink(s: np.ndarray) -> np.ndarray:
    e = s.mean(axis=1)
    if (e <= 0).any():
        raise CoverError("the model's expected sink is <= 0 in some policy year: give expected_sink_tco2e")
    return e


def _sink_index_from(s: np.ndarray, e: np.ndarray, z: np.ndarray | None, cover: "SinkIndexCover",
                     replicate=None) -> CoverLosses:
    """Payouts on true sink ``s`` (years, paths) with expected sink ``e`` (years,) and error draws ``z``."""
    years = s.shape[0]
    trig = cover.trigger_fraction * e
    measured = _apply_index_error(s, e, cover.error, cover.error_cv, z)
    p, part = cover.price_cny_per_tco2e, cover.participation
    limit = np.full(years, p) * trig if cover.limit_cny is None else np.full(years, cover.limit_cny)
    pay = part * np.minimum(p * np.maximum(trig[:, None] - measured, 0.0), limit[:, None])
    perfect = part * np.minimum(p * np.maximum(trig[:, None] - s, 0.0), limit[:, None])
    true_loss = p * np.maximum(e[:, None] - s, 0.0)
    annual = per_path_to_sim_years(pay)
    ones = np.ones_like(s)
    return CoverLosses(annual, _annual_events(annual), None, per_path_to_sim_years(true_loss), {
        "true_sink_tco2e": per_path_to_sim_years(s),
        "measured_sink_tco2e": per_path_to_sim_years(measured),
        "expected_sink_tco2e": per_path_to_sim_years(e[:, None] * ones),
        "trigger_tco2e": per_path_to_sim_years(trig[:, None] * ones),
        "limit_cny": per_path_to_sim_years(limit[:, None] * ones),
    }, per_path_to_sim_years(perfect), replicate)


def sink_index_losses(true_sink_tco2e: np.ndarray, cover: SinkIndexCover, *, seed: int = 0,
                      path_ids=None) -> CoverLosses:
    """Payouts, perfect-index payouts and true losses of a sink index cover.

    Parameters
    ----------
    true_sink_tco2e : ndarray, shape (years, paths)
        Simulated sink of the insured area before harvest per policy year and path (tCO2e/yr; module
        docstring).
    cover : SinkIndexCover
    seed : int
        Seed of the keyed measurement error.
    path_ids : array of int, optional
        Global path ids of the columns (default ``0..paths-1``).

    Returns
    -------
    CoverLosses
        ``annual_payout_cny``, ``true_loss_cny``, ``perfect_index_payout_cny`` and ``index`` arrays
        ``true_sink_tco2e``, ``measured_sink_tco2e``, ``expected_sink_tco2e``, ``trigger_tco2e``,
        ``limit_cny`` (per simulated year). Without ``cover.expected_sink_tco2e`` the result's
        ``replicate`` re-estimates the expected sink on a subset of paths (module docstring).
    """
    s = np.asarray(true_sink_tco2e, dtype=np.float64)
    if s.ndim != 2 or s.size == 0:
        raise InsuranceInputError(f"true_sink_tco2e must be a non-empty (years, paths) array, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise InsuranceInputError("true_sink_tco2e must be finite")
    years, paths = s.shape
    ids = np.arange(paths, dtype=np.int64) if path_ids is None else np.asarray(path_ids, dtype=np.int64)
    if ids.shape != (paths,):
        raise InsuranceInputError(f"path_ids must have one id per path ({paths}), got shape {ids.shape}")
    z = _index_error_draws(seed, ids, years) if cover.error != "none" and cover.error_cv > 0 else None
    if cover.expected_sink_tco2e is not None:
        return _sink_index_from(s, np.full(years, cover.expected_sink_tco2e), z, cover)

    def replicate(keep: np.ndarray) -> CoverLosses:
        """The cover on the kept whole paths, with the expected sink re-estimated on them."""
        kp = _kept_paths(keep, paths, years)
        sk = s[:, kp]
        return _sink_index_from(sk, _model_expected_sink(sk), None if z is None else z[:, kp], cover)

    return _sink_index_from(s, _model_expected_sink(s), z, cover, replicate)


def _kept_paths(keep: np.ndarray, paths: int, years: int) -> np.ndarray:
    k = np.asarray(keep, dtype=bool)
    if k.shape != (paths * years,):
        raise InsuranceInputError(f"keep must have one flag per simulated year ({paths * years}), got {k.shape}")
    kp = k.reshape(paths, years)
    if not (kp == kp[:, :1]).all():
        raise InsuranceInputError("keep must keep or drop whole paths (all of a path's years)")
    return kp[:, 0]


def subset_losses(losses: CoverLosses, keep: np.ndarray) -> CoverLosses:
    """The payouts of the simulated years where ``keep`` is True, years renumbered in order.

    ``losses.replicate(keep)`` when the cover re-estimates sample-based terms (the index cover's expected
    sink), else a plain slice of every per-year array and of the events of the kept years.
    """
    keep = np.asarray(keep, dtype=bool)
    if losses.replicate is not None:
        return losses.replicate(keep)
    if keep.shape != (losses.n_years,):
        raise InsuranceInputError(f"keep must have one flag per simulated year ({losses.n_years}), got {keep.shape}")
    new_year = np.cumsum(keep) - 1
    ev = losses.events
    m = keep[ev.year]
    events = EventLosses(new_year[ev.year[m]].astype(np.int64), ev.loss[m], int(keep.sum()))

    def cut(a):
        return None if a is None else np.asarray(a)[keep]

    return CoverLosses(losses.annual_payout_cny[keep], events,
                       None if losses.event_peril is None else losses.event_peril[m], cut(losses.true_loss_cny),
                       {k: np.asarray(v)[keep] for k, v in losses.index.items()}, cut(losses.perfect_index_payout_cny))


def price_floor_losses(prices_cny_per_tco2e: np.ndarray, volume_tco2e, cover: PriceFloorCover, *,
                       steps_per_year: int = 1) -> CoverLosses:
    """Payouts of a price floor.

    Parameters
    ----------
    prices_cny_per_tco2e : ndarray, shape (paths, years * steps_per_year + 1)
        Price paths as from :func:`finance_engine.price.simulate_price_paths` (column 0 = today).
    volume_tco2e : float or ndarray (years, paths)
        Credits sold at the end of each policy year.
    cover : PriceFloorCover
    steps_per_year : int
        Price steps per year of the price model (its ``steps_per_year``): the payout is on each policy
        year's end price, columns ``steps_per_year, 2 steps_per_year, ...``.
    """
    pr = np.asarray(prices_cny_per_tco2e, dtype=np.float64)
    if isinstance(steps_per_year, bool) or not isinstance(steps_per_year, (int, np.integer)) or steps_per_year < 1:
        raise InsuranceInputError(f"steps_per_year must be an integer >= 1, got {steps_per_year!r}")
    if pr.ndim != 2 or pr.shape[1] < 2 or (pr.shape[1] - 1) % steps_per_year:
        raise InsuranceInputError(f"prices must be (paths, years x steps_per_year + 1) with years >= 1 and "
                                  f"steps_per_year = {steps_per_year}, got shape {pr.shape}")
    pr = pr[:, ::steps_per_year]
    paths, years = pr.shape[0], pr.shape[1] - 1
    vol = np.broadcast_to(np.asarray(volume_tco2e, dtype=np.float64), (years, paths)) \
        if np.ndim(volume_tco2e) == 0 else np.asarray(volume_tco2e, dtype=np.float64)
    if vol.shape != (years, paths):
        raise InsuranceInputError(f"volume_tco2e must be a scalar or (years={years}, paths={paths}), got {vol.shape}")
    if not np.isfinite(vol).all() or (vol < 0).any():
        raise InsuranceInputError("volume_tco2e must be finite and >= 0")
    short = np.maximum(cover.strike_cny_per_tco2e - pr[:, 1:].T, 0.0)       # (years, paths)
    pay = cover.participation * np.minimum(short * vol, cover.limit_cny)
    annual = per_path_to_sim_years(pay)
    return CoverLosses(annual, _annual_events(annual), None, None, {
        "price_cny_per_tco2e": per_path_to_sim_years(pr[:, 1:].T), "volume_tco2e": per_path_to_sim_years(vol)})


def cover_from_dict(d: Mapping) -> StockLossCover | SinkIndexCover | PriceFloorCover:
    """Rebuild a cover from its ``to_dict`` form (JSON round trip).

    ``limit_cny``: a number, ``"unlimited"`` (no limit, how ``to_dict`` writes ``inf``), or null/absent:
    no limit for a stock-loss cover or a price floor, but the **default limit** (the value of the triggered
    sink) for a sink index. ``cover_from_dict(c.to_dict()) == c`` for every cover, through JSON too.
    """
    d = dict(d)
    kind = d.pop("kind", None)
    if kind == "stock-loss":
        ded = Deductible(**d.pop("deductible", {}))
        d["limit_cny"] = math.inf if d.get("limit_cny") is None else d["limit_cny"]
        return StockLossCover(deductible=ded, perils=tuple(d.pop("perils")), **d)
    if kind == "sink-index":
        return SinkIndexCover(**d)
    if kind == "price-floor":
        d["limit_cny"] = math.inf if d.get("limit_cny") is None else d["limit_cny"]
        return PriceFloorCover(**d)
    raise CoverError(f"unknown cover kind {kind!r}; known: stock-loss, sink-index, price-floor")

