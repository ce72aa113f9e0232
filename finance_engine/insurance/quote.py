"""Quote a forest-carbon policy (and its reinsurance) on the Monte Carlo engine: one typed result.

Steps of :func:`quote`
----------------------
1. **Simulate** the portfolio with the engine (``years`` policy years, ``paths`` paths) at portfolio
   level and at the account level asked (county by default), keeping the portfolio event loss table.
2. **Cover payouts** per simulated year (and event) from :mod:`.covers`: stock-loss indemnity on the
   ELT, sink index on the simulated net sink, price floor on price paths with the same path ids.
3. **Price** (:func:`quote_losses`, engine-free, so an insurer's own payout table can be priced too):

   * pure premium ``E[P]`` per year with its Monte Carlo standard error: over independent units, a
     path's mean over its years (a path's years are correlated), and with the engine's nested parameter
     sets the between-set standard error, which also carries parameter uncertainty; ``sd/sqrt(n)``
     only for a payout table without ``paths_years`` (independent years);
   * risk load by the standard-deviation principle, Wang transform, proportional hazard or cost of
     capital on the 1-in-200 capital measure (TVaR 99.5 %, below) (:mod:`.loadings`);
   * gross premium ``G = (E[P] + risk load + fixed costs) / (1 - expense ratio - profit ratio)``;
   * rate on sum insured ``G / SI``, premium per mu (1 ha = 15 mu), per ha and per tCO2e insured,
     expected loss ratio ``E[P] / G``;
   * Monte Carlo errors of the risk load, risk-loaded premium, gross premium, rate, premiums per
     mu/ha/tCO2e and loss ratio (``*_mc_se*``; 95 % CIs ``estimate +- t_{K-1} se`` for the risk-loaded
     and gross premium) by a delete-a-group jackknife: the simulated years fall into
     ``K = 10`` groups of whole parameter sets (each set's paths with all their years; whole paths
     without sets; single years for a payout table without ``paths_years``), every figure is recomputed
     without each group in turn, and ``se = sqrt((K-1)/K sum_k (theta_k - mean)^2)``
     (:func:`finance_engine.value_regression.jackknife_groups`, :func:`~finance_engine.value_regression.jackknife_se`;
     the delete-d jackknife is consistent for quantile-based figures such as the cost-of-capital load,
     Shao & Wu 1989, *Ann. Statist.* 17(3):1176). No jackknife error (null) with fewer than 5 groups.
     The sum insured and the area are taken as given;
   * the subsidy split between central, provincial, city, county budgets and the insured
     (:mod:`.subsidy`; none by default, :data:`NO_CENTRAL_SUBSIDY_NOTE`), and the rate-adjustment check: the charged rate over the base pure-loss rate
     with expense load ``E[P] / (1 - expense ratio) / SI`` must lie in [0.75, 1.25] for subsidised
     products (银保监规〔2023〕4号);
   * risk outputs: AAL, OEP and AEP curves, PML at 10-250 yr with distribution-free CIs, VaR/TVaR;
   * reinsurance: a quota share (ceded first), per-event XoL layers on the retained event payouts,
     then annual-aggregate layers on what the per-event layers leave: expected layer loss (standard
     error over paths and parameter sets as the pure premium's), the technical reinsurance premium
     (the same risk-load principle applied to the layer's own annual loss, no expenses; jackknife
     standard error), rate on line ``upfront premium / (share x limit)`` (market convention; the
     upfront premium is the expected total premium over ``1 + E[f]``, f the reinstatement factor of
     :mod:`.layers`), multiple ``expected total premium / E[X]``, probabilities of attachment and
     exhaustion, and the insurer's 1-in-200 capital ``VaR_99.5 - mean`` gross and net of the programme;
     the net annual loss is the retained loss plus the reinsurance premiums paid in the year, every
     layer's (loaded) upfront premium and its reinstatement premiums ``upfront x f_y`` in loss years
     (:mod:`.reinsurance`).

     **Loading (one capital measure).** Under cost of capital the policy and every layer are loaded on
     the capital measure of ``insurance_defaults.yaml`` (``loadings.capital_measure``, default TVaR:
     ``TVaR_99.5 - E[X]`` of the annual loss), named in the quote (``premium.capital_measure``,
     ``loading_parameters.measure``). With VaR a cover or layer that pays in fewer than 0.5 % of years
     has a VaR of 0 and is priced at its expected loss, however large its tail, and a 100 % stop loss on
     the policy would cost more than the policy's own risk-loaded premium for the same risk. TVaR
     (expected shortfall, the Swiss Solvency Test's capital measure) is coherent and sees the losses
     beyond the quantile (Artzner et al. 1999; Acerbi & Tasche 2002; :mod:`.loadings`). The insurer's
     solvency capital in the ``capital`` block stays VaR 99.5 % (C-ROSS II / Solvency II). The other
     principles (sd, Wang, PH) are applied to the annual loss as they stand. Each layer row names its
     ``loading_method`` and ``loading_parameters`` (with the capital and its error under cost of capital).
   * Monte Carlo errors of the probabilities (``risk.prob_payout``, each layer's attachment, exhaustion
     and expected events in layer) as means over units; of the capital relief, the cost of reinsurance
     and the capitals of the loads by the jackknife, each replicate recomputing the whole programme
     (paired: gross and net on the same replicate); of the subsidy amounts as shares of the gross
     premium's. A sink index whose expected sink is estimated from the run re-estimates it in every
     replicate (:func:`.covers.subset_losses`), and the errors of its means are jackknife errors too.
   * index covers: ``basis_risk`` against the perfect-index payout (index error only) and its
     ``protection_gap`` against the true loss (:mod:`.basis_risk`).
4. **Provenance**: model version, code version, parameter SHA-256, seed, paths, years, the hash of
   ``insurance_defaults.yaml`` and of the price-model file when prices are used.

Money is CNY per policy year; carbon tCO2e.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from finance_engine.mc_error import mean_se, quantile_ci
from finance_engine.simulation.summary import nested_moments
from finance_engine.value_regression import jackknife_groups, jackknife_se, jackknife_t
from models.dynamics import mc_block_paths, recorded_set_size

from .basis_risk import basis_risk, protection_gap
from .covers import (CoverLosses, PriceFloorCover, SinkIndexCover, StockLossCover, cover_from_dict,
                     per_path_to_sim_years, price_floor_losses, sink_index_losses, stock_loss_losses, subset_losses,
                     CoverError)
from .defaults import DEFAULTS_PATH, load_insurance_defaults
from .layers import EventLosses, LayerResult, price_annual_layer, price_layer_events
from .loadings import (GrossPremium, PremiumResult, cost_of_capital_premium, gross_premium, proportional_hazard_premium,
                       standard_deviation_premium, wang_transform_premium)
from .reinsurance import layer_quote
from .risk_measures import _var_sorted, aal, pml, var_tvar_table
from scipy import stats
from .subsidy import SubsidyShares, check_central_eligibility, check_rate_adjustment, split_premium, subsidy_shares
from .tables import InsuranceInputError, annual_max_occurrence

__all__ = ["MU_PER_HA", "Loading", "LayerSpec", "Quote", "quote", "quote_losses", "risk_loaded_premium", "crediting_applies",
           "nothing_paid_note",
           "layer_premium", "default_loading", "capital_measure_text", "NO_CENTRAL_SUBSIDY_NOTE"]

#: Unit conversion: 1 hectare = 15 mu (亩).
MU_PER_HA = 15.0
LoadingMethod = Literal["none", "sd", "wang", "ph", "coc"]
_PARAM_NAME = {"sd": "alpha", "wang": "lambda", "ph": "rho", "coc": "coc_rate", "none": None}


def _quote_defaults() -> Mapping[str, Any]:
    q = load_insurance_defaults().raw.get("quote")
    if not isinstance(q, Mapping):
        raise InsuranceInputError(f"{DEFAULTS_PATH}: missing `quote` block")
    return {k: v["value"] for k, v in q.items()}


@dataclass(frozen=True)
class Loading:
    """How the pure premium becomes a gross premium.

    Attributes
    ----------
    method : {"none", "sd", "wang", "ph", "coc"}
        Risk-load principle: none, standard deviation ``alpha``, Wang transform ``lambda``,
        proportional hazard ``rho``, cost of capital ``coc_rate`` on the data file's capital measure
        (``TVaR_99.5 - mean``), for the policy and its reinsurance layers alike.
    parameter : float
        The principle's parameter.
    expense_ratio, profit_ratio : float
        Fractions of the gross premium.
    fixed_costs_cny : float
        Fixed costs per year.
    """

    method: LoadingMethod
    parameter: float
    expense_ratio: float
    profit_ratio: float
    fixed_costs_cny: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in _PARAM_NAME:
            raise InsuranceInputError(f"loading.method must be one of {list(_PARAM_NAME)}, got {self.method!r}")
        for name in ("parameter", "expense_ratio", "profit_ratio", "fixed_costs_cny"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InsuranceInputError(f"loading.{name} must be a finite number >= 0, got {v!r}")
        if self.method == "ph" and self.parameter <= 0:
            raise InsuranceInputError("loading.parameter (rho) must be > 0")
        if self.expense_ratio + self.profit_ratio >= 1:
            raise InsuranceInputError("loading.expense_ratio + loading.profit_ratio must be < 1")

    def to_dict(self) -> dict:
        return {"method": self.method, "parameter_name": _PARAM_NAME[self.method], "parameter": self.parameter,
                "expense_ratio": self.expense_ratio, "profit_ratio": self.profit_ratio,
                "fixed_costs_cny": self.fixed_costs_cny}


def default_loading(method: LoadingMethod | None = None, parameter: float | None = None, *,
                    expense_ratio: float | None = None, profit_ratio: float | None = None,
                    fixed_costs_cny: float = 0.0) -> Loading:
    """A :class:`Loading` with every missing value from ``insurance_defaults.yaml`` (``quote`` block)."""
    q = _quote_defaults()
    m = method or q["loading_method"]
    if parameter is None:
        parameter = {"sd": q["sd_alpha"], "wang": q["wang_lambda"], "ph": q["ph_rho"],
                     "coc": load_insurance_defaults().cost_of_capital_rate, "none": 0.0}.get(m, 0.0)
    return Loading(m, float(parameter), float(q["expense_ratio"] if expense_ratio is None else expense_ratio),
                   float(q["profit_ratio"] if profit_ratio is None else profit_ratio), float(fixed_costs_cny))


def risk_loaded_premium(annual_losses, loading: Loading, level: float | None = None) -> PremiumResult:
    """The risk-loaded (technical) premium of a sample of annual losses under ``loading.method``.

    Cost of capital is charged on the capital measure of ``insurance_defaults.yaml``
    (``loadings.capital_measure``, TVaR: ``TVaR_level - mean``) at ``level`` (default
    ``risk_measures.capital_level``, 0.995), the same for a policy and a reinsurance layer."""
    x = np.asarray(annual_losses, dtype=np.float64)
    if loading.method == "sd":
        return standard_deviation_premium(x, loading.parameter)
    if loading.method == "wang":
        return wang_transform_premium(x, loading.parameter)
    if loading.method == "ph":
        return proportional_hazard_premium(x, loading.parameter)
    if loading.method == "coc":
        return cost_of_capital_premium(x, loading.parameter, level, measure=load_insurance_defaults().capital_measure)
    m = float(x.mean())
    return PremiumResult("none", m, 0.0, m, {})


def layer_premium(annual_losses, loading: Loading, level: float | None = None) -> PremiumResult:
    """The technical premium of a reinsurance layer's annual losses: :func:`risk_loaded_premium` (one
    capital measure for the policy and its layers, module docstring "Loading")."""
    return risk_loaded_premium(annual_losses, loading, level)


@dataclass(frozen=True)
class LayerSpec:
    """A reinsurance layer on the insurer's gross payouts (CNY).

    Attributes
    ----------
    attachment_cny, limit_cny : float
        ``A`` >= 0 and ``C`` > 0 (per event for ``occurrence``, on the year's total for ``aggregate``).
    basis : {"occurrence", "aggregate"}
    reinstatements : int or None
        Occurrence basis: None = no annual aggregate limit (every event can use the full limit);
        K >= 0 = K paid reinstatements, annual cover ``(K + 1) x limit``.
    reinstatement_pct : float
        Premium of each reinstatement as a fraction of the upfront premium.
    share : float
        Reinsurer's participation in (0, 1].
    """

    attachment_cny: float
    limit_cny: float
    basis: Literal["occurrence", "aggregate"] = "occurrence"
    reinstatements: int | None = None
    reinstatement_pct: float = 1.0
    share: float = 1.0

    def __post_init__(self) -> None:
        for name in ("attachment_cny", "limit_cny"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                raise InsuranceInputError(f"layer.{name} must be a number, got {v!r}")
        if not (math.isfinite(self.attachment_cny) and self.attachment_cny >= 0):
            raise InsuranceInputError(f"layer.attachment_cny must be finite and >= 0, got {self.attachment_cny}")
        if not self.limit_cny > 0:
            raise InsuranceInputError(f"layer.limit_cny must be > 0, got {self.limit_cny}")
        if self.basis not in ("occurrence", "aggregate"):
            raise InsuranceInputError(f"layer.basis must be occurrence or aggregate, got {self.basis!r}")
        if isinstance(self.share, bool) or not isinstance(self.share, (int, float)) or not 0 < self.share <= 1:
            raise InsuranceInputError(f"layer.share must be a number in (0, 1], got {self.share!r}")
        if (isinstance(self.reinstatement_pct, bool) or not isinstance(self.reinstatement_pct, (int, float))
                or not (math.isfinite(self.reinstatement_pct) and self.reinstatement_pct >= 0)):
            raise InsuranceInputError(f"layer.reinstatement_pct must be a finite number >= 0, "
                                      f"got {self.reinstatement_pct!r}")
        if self.reinstatements is not None:
            if self.basis == "aggregate":
                raise InsuranceInputError("layer.reinstatements apply to occurrence layers only")
            if not isinstance(self.reinstatements, int) or self.reinstatements < 0:
                raise InsuranceInputError(f"layer.reinstatements must be an integer >= 0, got {self.reinstatements!r}")

    @property
    def name(self) -> str:
        return f"{self.limit_cny:,.0f} xs {self.attachment_cny:,.0f} ({self.basis})"

    def to_dict(self) -> dict:
        return {"attachment_cny": self.attachment_cny, "limit_cny": self.limit_cny, "basis": self.basis,
                "reinstatements": self.reinstatements, "reinstatement_pct": self.reinstatement_pct,
                "share": self.share}


@dataclass
class Quote:
    """One priced policy: JSON-ready parts plus the samples behind them (not serialised).

    Attributes
    ----------
    provenance : dict
        Model and code version, parameter SHA-256, seed, paths, years, defaults and price-model hashes.
    cover, loading : dict
        The terms quoted.
    exposure : dict
        Area (ha, mu), insured tonnes, sum insured (CNY); where the run estimates them
        (``estimated_from_run``: a sink index's expected sink and its limit, the value of the triggered
        sink; a price floor's simulated volume) with their jackknife errors ``insured_tco2e_mc_se`` and
        ``sum_insured_mc_se_cny`` (None where they are fixed terms).
    premium : dict
        Pure premium with MC standard error and CI, risk load, expenses, profit, gross premium, rate on
        sum insured, per mu / ha / tCO2e, expected loss ratio.
    subsidy, rate_band : dict
    risk : dict
        ``aal``, ``var_tvar`` (records), ``pml`` (records, OEP and AEP), ``ep_curve`` (records on a grid
        of return periods), ``prob_payout``.
    aal_by_peril, aal_by_level : list of dict
    layers : list of dict
    capital : dict or None
    basis_risk : dict or None
    samples : dict of ndarray
        ``annual_payout_cny`` etc. (for notebooks; not part of the JSON).
    """

    provenance: dict[str, Any]
    cover: dict[str, Any]
    loading: dict[str, Any]
    exposure: dict[str, Any]
    premium: dict[str, Any]
    subsidy: dict[str, Any]
    rate_band: dict[str, Any]
    risk: dict[str, Any]
    aal_by_peril: list[dict[str, Any]]
    aal_by_level: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    capital: dict[str, Any] | None
    basis_risk: dict[str, Any] | None
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    _FIELDS = ("provenance", "cover", "loading", "exposure", "premium", "subsidy", "rate_band", "risk",
               "aal_by_peril", "aal_by_level", "layers", "capital", "basis_risk")

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._FIELDS}

    def to_json(self, **kw) -> str:
        """JSON text; non-finite numbers become null."""
        return json.dumps(_clean(self.to_dict()), ensure_ascii=False, allow_nan=False, **kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Quote":
        missing = [k for k in cls._FIELDS if k not in d]
        if missing:
            raise InsuranceInputError(f"quote is missing field(s) {missing}")
        return cls(**{k: d[k] for k in cls._FIELDS})

    def cover_terms(self):
        """The cover as a typed object (:func:`finance_engine.insurance.covers.cover_from_dict`)."""
        return cover_from_dict(self.cover)

    def frame(self, part: str) -> pd.DataFrame:
        """A list-of-records part (``aal_by_peril``, ``layers``, ``risk.pml`` ...) as a DataFrame."""
        obj: Any = self
        for key in part.split("."):
            obj = obj[key] if isinstance(obj, Mapping) else getattr(obj, key)
        return pd.DataFrame(obj)


def _clean(o: Any) -> Any:
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, (np.floating,)):
        return _clean(float(o))
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, Mapping):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return _clean(df.to_dict(orient="records"))


def _file_sha256(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _ep_grid(n_years: int, return_periods: Sequence[float]) -> np.ndarray:
    grid = np.geomspace(1.0 + 1e-9, max(float(n_years), 2.0), 48)
    return np.unique(np.round(np.r_[grid, [t for t in return_periods if t <= n_years]], 6))


class _Design:
    """How the simulated years hang together, for their Monte Carlo errors.

    Simulated years are path-major (``sim_year = path * years + year``); a path's years are correlated
    and so are the paths of a parameter set. Means take their standard error over path means (between
    parameter sets when ``set_size > 1``); other figures a delete-a-group jackknife over groups of whole
    parameter sets (whole paths when ``set_size == 1``; single years without ``paths_years``). ``antithetic``:
    the paths come in antithetic pairs ``2j, 2j+1`` inside the sets (the engine's ``antithetic`` switch): the
    parameter sd is then decomposed on the pair means (:func:`nested_moments`); without parameter sets the pairs
    are the independent units (``block`` 2: a jackknife deleting single paths split them, overstating the errors
    by the pairs' negative correlation), and there is no parameter sd.
    """

    def __init__(self, n: int, paths_years: tuple[int, int] | None, set_size: int, antithetic: bool = False):
        self.n = int(n)
        self.paths_years = paths_years
        self.set_size = max(int(set_size), 1) if paths_years is not None else 1
        self.antithetic = bool(antithetic) and self.set_size > 1 and self.set_size % 2 == 0
        # the independent units' paths: a parameter set, else an antithetic pair, else a path
        # (models.dynamics.SimulationSwitches.mc_block_size)
        self.block = mc_block_paths(self.set_size, bool(antithetic) and paths_years is not None)
        if paths_years is not None:
            p, y = (int(v) for v in paths_years)
            if p * y != n:
                raise InsuranceInputError(f"paths_years {paths_years} does not match {n} simulated years")
            self.paths, self.years = p, y
        else:
            self.paths, self.years = self.n, 1
        g, k = jackknife_groups(np.arange(self.paths), self.block)
        self.n_groups = k
        if g is None:
            self.keep = None
        else:
            year_group = np.repeat(g, self.years)
            self.keep = [year_group != j for j in range(k)]

    def describe(self) -> str:
        unit = ("parameter sets" if self.set_size > 1 else "antithetic pairs of paths" if self.block > 1
                else "paths" if self.paths_years is not None else "years")
        text = f"means and probabilities: sd of {unit} / sqrt(count), 95 % CI with Student's t"
        if self.keep is None:
            return text + "; other figures: too few groups for a jackknife error"
        return (text + f"; other figures: delete-a-group jackknife over {self.n_groups} groups of whole {unit}, "
                f"95 % CI with Student's t ({self.n_groups - 1} df)")

    @property
    def t(self) -> float | None:
        """Student's t for a 95 % interval from a jackknife error (None without one)."""
        return jackknife_t(self.n_groups) if self.keep is not None else None

    @property
    def mean_t(self) -> float | None:
        """Student's t for a 95 % interval of a mean from its error over ``units`` independent units (years
        without ``paths_years``, else complete parameter sets or paths): ``units - 1`` degrees of freedom."""
        units = self.n if self.paths_years is None else self.paths // self.block
        return float(stats.t.ppf(0.975, units - 1)) if units >= 2 else None

    def mean_se(self, x: np.ndarray) -> tuple[float, float | None]:
        """Standard error of ``mean(x)`` and the parameter sd (None unless paths come in sets).

        The error is :func:`finance_engine.mc_error.mean_se` of the independent units: the years without
        ``paths_years``, else the path means in sets of ``set_size``. Kept apart on purpose: a single
        independent year gives 0 (as :func:`~finance_engine.insurance.risk_measures.aal`'s error and the
        quote's ``sd_annual_payout_cny``), a single path NaN (unknown); and the parameter sd comes too."""
        se, psd, _ = self.mean_se_and_parameter_sd(x)
        return se, psd

    def mean_se_and_parameter_sd(self, x: np.ndarray
                                 ) -> tuple[float, float | None, tuple[float | None, float | None]]:
        """:meth:`mean_se` and the parameter sd's 95 % interval ``(low, high)`` from the same
        :func:`~finance_engine.simulation.summary.nested_moments` of the path means (its
        ``parameter_sd_ci95_low`` / ``_high``): ``(None, None)`` where the parameter sd is None, an end None
        where it is not finite."""
        x = np.asarray(x, dtype=np.float64)
        if self.paths_years is None:
            return (mean_se(x) if x.size > 1 else 0.0), None, (None, None)
        pm = x.reshape(self.paths, self.years).mean(axis=1)
        se = mean_se(pm, self.block)
        psd, ci = None, (None, None)
        if self.set_size > 1:
            mo = nested_moments(pm[:, None], self.set_size, True, self.antithetic)
            sd = float(mo["parameter_sd"][0])
            psd = sd if math.isfinite(sd) else None
            if psd is not None:
                ci = tuple(_se(mo[k][0]) for k in ("parameter_sd_ci95_low", "parameter_sd_ci95_high"))
        return (se if math.isfinite(se) else math.nan), psd, ci   # one path: unknown



def _se(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


_MEASURE_NAME = {"tvar": "TVaR (expected shortfall)", "var": "VaR"}


def capital_measure_text(level: float | None = None, measure: str | None = None) -> str:
    """The cost-of-capital load's capital measure in words, e.g. ``TVaR (expected shortfall) 99.5 % - mean``."""
    d = load_insurance_defaults()
    q = d.capital_level if level is None else float(level)
    m = d.capital_measure if measure is None else measure
    return f"{_MEASURE_NAME[m]} {100 * q:g} % - mean"


# ---- the figures of one sample (the whole run, or a jackknife replicate) -----------------------------
@dataclass
class _Placed:
    """One layer of the programme on one sample: its loss statistics and technical premium."""

    spec: LayerSpec
    lay: LayerResult
    prem: PremiumResult
    upfront: float
    rate_on_line: float
    multiple: float


@dataclass
class _Programme:
    placed: list[_Placed]
    ceded: np.ndarray
    paid: np.ndarray
    net: np.ndarray


def _check_layers(layers: Sequence[LayerSpec], quota_share: float) -> float:
    """The quota share as a float, after checking it and that distinct layers do not overlap.

    Placements of the **same** layer (same basis, attachment and limit; a layer split between
    reinsurers) may share it as long as their shares add up to at most 1."""
    c = float(quota_share)
    if not 0 <= c < 1:
        raise InsuranceInputError(f"quota_share must be in [0, 1), got {quota_share}")
    for basis in ("occurrence", "aggregate"):
        same: dict[tuple[float, float], list[LayerSpec]] = {}
        for s in layers:
            if s.basis == basis:
                same.setdefault((s.attachment_cny, s.limit_cny), []).append(s)
        for placements in same.values():
            total = sum(s.share for s in placements)
            if len(placements) > 1 and total > 1 + 1e-9:
                raise InsuranceInputError(f"layers overlap: the placements of {placements[0].name} have shares "
                                          f"adding up to {total:g} > 1")
        ls = sorted(same, key=lambda k: k[0])
        for a, b in zip(ls, ls[1:]):
            if a[0] + a[1] > b[0] + 1e-9:
                raise InsuranceInputError(f"layers overlap: {same[a][0].name} and {same[b][0].name}")
    return c


def _programme(events: EventLosses, annual: np.ndarray, layers: Sequence[LayerSpec], c: float, loading: Loading,
               level: float) -> _Programme:
    """The reinsurance programme on one sample: quota share first, per-event layers on the retained
    events, then annual-aggregate layers on what the per-event layers leave."""
    retained = EventLosses(events.year, (1.0 - c) * events.loss, events.n_years, events.years_per_block)
    ceded, paid, occ = c * annual, np.zeros_like(annual), np.zeros_like(annual)
    tech = Loading(loading.method, loading.parameter, 0.0, 0.0)
    placed = []
    for spec in sorted(layers, key=lambda s: (s.basis != "occurrence", s.attachment_cny)):
        if spec.basis == "occurrence":
            rein = (spec.reinstatements, spec.reinstatement_pct) if spec.reinstatements is not None else None
            lay = price_layer_events(retained, spec.attachment_cny, spec.limit_cny, "occurrence", rein,
                                     share=spec.share)
            occ = occ + lay.annual_loss
        else:   # inures after the quota share and the per-event layers
            lay = price_annual_layer(np.maximum((1.0 - c) * annual - occ, 0.0), spec.attachment_cny,
                                     spec.limit_cny, share=spec.share)
        pr = layer_premium(lay.annual_loss, tech, level)
        lq = layer_quote(lay, pr.premium)
        placed.append(_Placed(spec, lay, pr, lq.upfront_premium, lq.rate_on_line, lq.multiple))
        ceded = ceded + lay.annual_loss
        paid = paid + lq.upfront_premium * (1.0 + lay.annual_reinstatement_factor)
    return _Programme(placed, ceded, paid, annual - ceded + paid)


def _capital_scalars(annual: np.ndarray, prog: _Programme, level: float) -> dict[str, float]:
    gm, nm = float(annual.mean()), float(prog.net.mean())
    gv, nv = _var_sorted(np.sort(annual), level), _var_sorted(np.sort(prog.net), level)
    prem_total = float(sum(p.prem.premium for p in prog.placed))
    xol_mean = float(sum(p.lay.expected_loss for p in prog.placed))
    return {"gm": gm, "nm": nm, "gv": gv, "nv": nv, "relief": (gv - gm) - (nv - nm), "prem_total": prem_total,
            "xol_mean": xol_mean, "cost": prem_total - xol_mean}


def _premium_of(x: np.ndarray, loading: Loading) -> tuple[PremiumResult, GrossPremium]:
    pr = risk_loaded_premium(x, loading)
    return pr, gross_premium(float(x.mean()), max(pr.risk_load, 0.0), loading.fixed_costs_cny,
                             loading.expense_ratio, loading.profit_ratio)


def _index_arrays(losses: CoverLosses) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(payout, perfect-index payout, true loss) of an index cover, else None."""
    if losses.true_loss_cny is None:
        return None
    perfect = losses.perfect_index_payout_cny
    return losses.annual_payout_cny, (losses.true_loss_cny if perfect is None else perfect), losses.true_loss_cny


def _basis_scalars(arrs, tol: float) -> dict[str, float]:
    pay, perfect, true = arrs
    br = basis_risk(pay, perfect, tol)
    gap = protection_gap(perfect, true, tol)
    return {"corr": br.correlation, "rmse": br.rmse_cny, "mean_diff": br.mean_difference_cny,
            "p_miss": br.prob_loss_no_payout, "p_extra": br.prob_payout_no_loss, "p_miss_given": br.prob_no_payout_given_loss,
            "gap": gap.mean_gap_cny, "gap_share": gap.gap_share_of_true_loss,
            "p_gap": gap.prob_loss_no_payout_by_design, "perfect": gap.mean_perfect_index_payout_cny,
            "true": gap.mean_true_loss_cny, "excess": gap.mean_excess_cny}


def _sample_figures(losses: CoverLosses, loading: Loading, layers: Sequence[LayerSpec], c: float, level: float,
                    tol: float, exposure: Callable[[CoverLosses], tuple[float, float]] | None = None
                    ) -> dict[str, float]:
    """Every scalar figure the quote gives a jackknife error, on one sample (a replicate); with ``exposure``
    (the sum insured and insured tonnes estimated from the sample), the rates on the sample's own."""
    x = losses.annual_payout_cny
    pr, g = _premium_of(x, loading)
    out = {"pure": float(x.mean()), "risk_load": g.risk_load, "risk_loaded": g.expected_loss + g.risk_load,
           "gross": g.gross, "loss_ratio": g.loss_ratio, "capital": pr.parameters.get("capital", math.nan),
           "prob_payout": float((x > 0).mean())}
    if exposure is not None:
        s, e = exposure(losses)
        out.update({"sum_insured": s, "insured": e, "pure_rate": float(x.mean()) / s if s > 0 else math.nan,
                    "gross_rate": g.gross / s if s > 0 else math.nan,
                    "gross_per_tco2e": g.gross / e if e > 0 else math.nan})
    arrs = _index_arrays(losses)
    if arrs is not None:
        out.update({f"br_{k}": v for k, v in _basis_scalars(arrs, tol).items()})
    if layers or c:
        prog = _programme(losses.events, x, layers, c, loading, level)
        for i, p in enumerate(prog.placed):
            out.update({f"L{i}_prem": p.prem.premium, f"L{i}_upfront": p.upfront, f"L{i}_rol": p.rate_on_line,
                        f"L{i}_mult": p.multiple if math.isfinite(p.multiple) else math.nan,
                        f"L{i}_el": p.lay.expected_loss, f"L{i}_attach": p.lay.prob_attachment,
                        f"L{i}_exhaust": p.lay.prob_exhaustion, f"L{i}_events": p.lay.expected_events_in_layer,
                        f"L{i}_capital": p.prem.parameters.get("capital", math.nan)})
        cs = _capital_scalars(x, prog, level)
        out.update({"relief": cs["relief"], "cost": cs["cost"]})
    return out


def _layer_record(p: _Placed, loading: Loading, err: Mapping[str, float | None], i: int,
                  design: _Design, reestimated: bool) -> dict[str, Any]:
    lay, spec = p.lay, p.spec

    def mean_err(key: str, per_year: np.ndarray) -> float | None:
        """A mean's error: over units (path means / parameter sets), or the jackknife when the cover
        re-estimates sample-based terms (the expected sink) in each replicate."""
        return err.get(key) if reestimated else _se(design.mean_se(per_year)[0])

    method = loading.method + (f" on {capital_measure_text(p.prem.parameters.get('level'), p.prem.parameters.get('measure'))}"
                               if loading.method == "coc" else "")
    params = dict(p.prem.parameters)
    if loading.method == "coc":
        params["capital_mc_se_cny"] = err.get(f"L{i}_capital")
    return {
        "layer": spec.name, **spec.to_dict(),
        "aggregate_limit_cny": lay.aggregate_limit,
        "expected_layer_loss_cny": lay.expected_loss, "expected_layer_loss_se_cny": mean_err(f"L{i}_el", lay.annual_loss),
        "expected_layer_loss_iid_se_cny": lay.expected_loss_se,
        "sd_layer_loss_cny": lay.sd_annual_loss,
        "reinsurance_premium_cny": p.prem.premium, "reinsurance_premium_mc_se_cny": err.get(f"L{i}_prem"),
        "upfront_premium_cny": p.upfront, "upfront_premium_mc_se_cny": err.get(f"L{i}_upfront"),
        "rate_on_line": p.rate_on_line, "rate_on_line_mc_se": err.get(f"L{i}_rol"),
        "multiple": p.multiple, "multiple_mc_se": err.get(f"L{i}_mult"),
        "loading_method": method, "loading_parameters": params,
        "prob_attachment": lay.prob_attachment,
        "prob_attachment_mc_se": mean_err(f"L{i}_attach", (lay.annual_loss > 0).astype(np.float64)),
        "prob_exhaustion": lay.prob_exhaustion,
        "prob_exhaustion_mc_se": mean_err(f"L{i}_exhaust", lay.annual_exhausted.astype(np.float64)),
        "expected_events_in_layer": lay.expected_events_in_layer,
        "expected_events_in_layer_mc_se": mean_err(f"L{i}_events", lay.annual_events_in_layer),
    }


def _reinsurance(events: EventLosses, annual: np.ndarray, layers: Sequence[LayerSpec], c: float,
                 loading: Loading, group: int, level: float, design: _Design, err: Mapping[str, float | None],
                 reestimated: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if not layers and c == 0:
        return [], None
    prog = _programme(events, annual, layers, c, loading, level)
    rows = [_layer_record(p, loading, err, i, design, reestimated) for i, p in enumerate(prog.placed)]
    cs = _capital_scalars(annual, prog, level)
    gm, nm, gv, nv = cs["gm"], cs["nm"], cs["gv"], cs["nv"]
    g_ci, n_ci = quantile_ci(annual, level, set_size=group), quantile_ci(prog.net, level, set_size=group)
    upfront_total = float(sum(p.upfront for p in prog.placed))
    capital = {
        "level": level, "measure": f"VaR {100 * level:g} % - mean (C-ROSS II / Solvency II solvency capital)",
        "gross_mean_cny": gm, "gross_var_cny": gv, "gross_var_ci95_cny": g_ci,
        "gross_capital_cny": gv - gm, "net_mean_cny": nm, "net_var_cny": nv, "net_var_ci95_cny": n_ci,
        "net_capital_cny": nv - nm,
        "net_loss_definition": ("gross payout - quota share - XoL recoveries + reinsurance premiums paid in "
                                "the year (every layer's upfront premium, and its reinstatement premiums in "
                                "loss years); capital = VaR - mean"),
        # the quantile dominates the capital's error: its interval less the mean
        "gross_capital_ci95_cny": [b - gm for b in g_ci], "net_capital_ci95_cny": [b - nm for b in n_ci],
        "capital_relief_cny": cs["relief"], "capital_relief_mc_se_cny": err.get("relief"),
        "quota_share_cession": c,
        "ceded_quota_share_mean_cny": float((c * annual).mean()), "ceded_xol_mean_cny": cs["xol_mean"],
        "reinsurance_premium_cny": cs["prem_total"], "upfront_premium_cny": upfront_total,
        "expected_reinstatement_premium_cny": cs["prem_total"] - upfront_total,
        "cost_of_reinsurance_cny": cs["cost"], "cost_of_reinsurance_mc_se_cny": err.get("cost"),
        "mc_error_method": ("capital relief and cost of reinsurance: the delete-a-group jackknife of the premiums "
                            "(paired: gross and net from the same replicate, common random numbers)"),
    }
    return _clean(rows), _clean(capital)


#: a note on the subsidy split of the quote (finance_practice.md §2.1, §2.2)
NO_CENTRAL_SUBSIDY_NOTE = (
    "No premium subsidy by default: the central forest-insurance premium subsidy (central 30 % commercial / "
    "50 % public-welfare forest, finance_practice.md §2.2) is for policy forest insurance whose sum insured is "
    "the replanting cost; the carbon covers priced here (stock loss at a carbon price, sink index, price floor) "
    "are not in it, and the published carbon-sink policies were paid by their insured, mostly district "
    "governments and state forest farms, from local budgets (§2.1). Give a scheme to split the premium.")
CENTRAL_SCHEME_NOTE = (
    "The scheme's central share assumes the cover qualifies for the central forest-insurance premium subsidy, "
    "which is for replanting-cost policy forest insurance (finance_practice.md §2.2); no carbon-sink policy is "
    "known to have received it (§2.1).")


def quote_losses(losses: CoverLosses, *, sum_insured_cny: float, area_ha: float, insured_tco2e: float,
                 loading: Loading | None = None, subsidy: str | SubsidyShares | None = None,
                 subsidised: bool | None = None, layers: Sequence[LayerSpec] = (), quota_share: float = 0.0,
                 cover: Mapping[str, Any] | None = None, provenance: Mapping[str, Any] | None = None,
                 parameter_set_size: int = 1, paths_years: tuple[int, int] | None = None,
                 antithetic: bool = False, return_periods: Sequence[float] | None = None,
                 aal_by_peril: list[dict] | None = None, aal_by_level: list[dict] | None = None,
                 true_loss_tolerance_cny: float = 0.0,
                 exposure: Callable[[CoverLosses], tuple[float, float]] | None = None) -> Quote:
    """Price a cover from its simulated payouts (engine-free; see the module docstring).

    Parameters
    ----------
    losses : CoverLosses
        Payouts per simulated year and event (:mod:`.covers`). With ``losses.replicate`` (an index cover
        whose expected sink is estimated from the sample) every jackknife replicate recomputes the
        payouts with it, and the errors of the means are jackknife errors too.
    sum_insured_cny : float
        > 0; the denominator of the rate.
    area_ha : float
        Insured area (> 0), for the premium per ha and per mu.
    insured_tco2e : float
        Insured tonnes (stock, expected sink or credit volume), for the premium per tCO2e.
    loading : Loading, optional
        Default: :func:`default_loading`.
    subsidy : str or SubsidyShares or None
        Subsidy scheme of ``insurance_defaults.yaml`` (``commercial_forest``, ``public_welfare_forest``,
        ...), explicit shares, or None (the default: no subsidy, the insured pays all; carbon covers are
        not in the central forest-insurance subsidy, see :data:`NO_CENTRAL_SUBSIDY_NOTE`).
    subsidised : bool or None
        Which regulatory rate-adjustment band applies; None (default): subsidised when some budget pays
        part of the premium.
    layers, quota_share :
        Reinsurance programme.
    parameter_set_size, paths_years :
        With ``paths_years = (paths, years)`` (simulated years path-major) the standard errors of the
        pure premium and the layer losses are taken over path means, between parameter sets when paths
        share parameter draws in sets of ``parameter_set_size``; the jackknife errors of the other
        premium figures delete whole sets (whole paths when ``parameter_set_size`` is 1); and the PML,
        VaR and TVaR errors count groups of ``parameter_set_size x years`` simulated years (a set's
        paths, each path's years) by their design effect. Without ``paths_years`` the years are taken
        as independent.
    antithetic : bool
        The paths come in antithetic pairs inside the parameter sets (the engine's ``antithetic`` switch): the
        parameter sd is decomposed on the pair means.
    true_loss_tolerance_cny : float
        Index covers: amounts at or below this count as no loss / no payout in the basis risk.
    exposure : callable, optional
        ``exposure(losses)`` -> (sum insured CNY, insured tCO2e) of a sample of ``losses``, when they are
        estimated from the simulation (a sink index's expected sink, a price floor's simulated volume): the
        rates (pure, gross, per tCO2e) then take their errors from the jackknife of the ratios, each
        replicate on its own sum insured, instead of dividing the premium's error by a fixed one (which
        overstated it up to 2x when premium and sum insured move together).
    """
    d = load_insurance_defaults()
    loading = loading or default_loading()
    si = float(sum_insured_cny)
    if not (math.isfinite(si) and si > 0):
        raise InsuranceInputError(f"sum_insured_cny must be finite and > 0, got {sum_insured_cny!r}")
    if not (math.isfinite(float(area_ha)) and area_ha > 0):
        raise InsuranceInputError(f"area_ha must be finite and > 0, got {area_ha!r}")
    c = _check_layers(tuple(layers), quota_share)
    tol = float(true_loss_tolerance_cny)
    annual = losses.annual_payout_cny
    n = annual.size
    a = aal(annual)
    level = d.capital_level
    # simulated years are path-major (sim_year = path * years + year): a path's years, and the paths of a
    # parameter set, are correlated; means take their error over path means (between sets), the other
    # figures a jackknife over whole sets, and the quantile and tail errors count such groups
    design = _Design(n, paths_years, parameter_set_size, antithetic)
    group = paths_years[1] * design.block if paths_years is not None else 1
    reestimated = losses.replicate is not None and design.keep is not None
    if losses.replicate is not None and paths_years is None:
        raise InsuranceInputError("a cover that re-estimates terms on the sample needs paths_years")

    # ---- jackknife: every scalar figure on each replicate (whole groups of parameter sets / paths left out)
    err: dict[str, float | None] = {}
    if design.keep is not None:
        def replicate_figures(k) -> dict[str, float]:
            try:
                return _sample_figures(subset_losses(losses, k), loading, tuple(layers), c, level, tol, exposure)
            except CoverError:  # a replicate whose sample-based terms cannot be estimated (an expected sink <= 0
                return {}      # without some groups): the figures get no jackknife error, the quote still prices
        reps = [replicate_figures(k) for k in design.keep]
        keys = list(next((r for r in reps if r), {}))
        if keys:
            ses = jackknife_se(np.array([[r.get(k, math.nan) for k in keys] for r in reps], dtype=np.float64))
            err = {k: _se(v) for k, v in zip(keys, ses)}

    def mean_err(key: str, per_year: np.ndarray) -> float | None:
        return err.get(key) if reestimated else _se(design.mean_se(per_year)[0])

    prem, gp = _premium_of(annual, loading)
    se_units, psd, (psd_low, psd_high) = design.mean_se_and_parameter_sd(annual)
    se = err.get("pure") if reestimated else se_units
    t_mean = design.t if reestimated else design.mean_t
    t = design.t
    mu = float(area_ha) * MU_PER_HA

    def ci(v, e, tq=t):
        return [v - tq * e, v + tq * e] if e is not None and tq is not None and math.isfinite(e) else None

    def scaled(e, dv):
        return e / dv if e is not None else None

    # the rates' errors: of the ratios when the sum insured is estimated from the same paths (exposure)
    ratio_errors = exposure is not None and "pure_rate" in err

    g_se = err.get("gross")
    params = dict(prem.parameters)
    if loading.method == "coc":
        params["capital_mc_se_cny"] = err.get("capital")
    premium = {
        "pure_premium_cny": a.mean, "pure_premium_mc_se_cny": se,
        "pure_premium_ci95_cny": ci(a.mean, se, t_mean),
        "pure_premium_iid_se_cny": a.se, "parameter_sd_cny": psd,
        # its 95 % interval (None with the sd; 0 is its lower end where the sd is clipped at 0)
        "parameter_sd_ci95_low_cny": psd_low, "parameter_sd_ci95_high_cny": psd_high,
        "sd_annual_payout_cny": float(annual.std(ddof=1)) if n > 1 else 0.0,
        "risk_load_cny": gp.risk_load, "risk_load_mc_se_cny": err.get("risk_load"),
        "risk_loaded_premium_cny": a.mean + gp.risk_load, "risk_loaded_premium_mc_se_cny": err.get("risk_loaded"),
        "risk_loaded_premium_ci95_cny": ci(a.mean + gp.risk_load, err.get("risk_loaded")),
        "fixed_costs_cny": gp.fixed_costs, "expenses_cny": gp.variable_expenses, "profit_cny": gp.profit,
        "gross_premium_cny": gp.gross, "gross_premium_mc_se_cny": g_se, "gross_premium_ci95_cny": ci(gp.gross, g_se),
        "sum_insured_cny": si,
        "pure_rate": a.mean / si, "pure_rate_mc_se": err.get("pure_rate") if ratio_errors else scaled(se, si),
        "rate_on_sum_insured": gp.gross / si,
        "rate_on_sum_insured_mc_se": err.get("gross_rate") if ratio_errors else scaled(g_se, si),
        "premium_per_mu_cny": gp.gross / mu, "premium_per_mu_mc_se_cny": scaled(g_se, mu),
        "premium_per_ha_cny": gp.gross / float(area_ha), "premium_per_ha_mc_se_cny": scaled(g_se, float(area_ha)),
        "premium_per_tco2e_cny": gp.gross / insured_tco2e if insured_tco2e > 0 else None,
        "premium_per_tco2e_mc_se_cny": (err.get("gross_per_tco2e") if ratio_errors else scaled(g_se, insured_tco2e))
        if insured_tco2e > 0 else None,
        "expected_loss_ratio": gp.loss_ratio, "expected_loss_ratio_mc_se": err.get("loss_ratio"),
        "loading_parameters": params,
        "capital_measure": capital_measure_text(level) if loading.method == "coc" else None,
        "mc_error_method": design.describe() + (
            "; the expected sink (the trigger) is re-estimated in every replicate, so the means' errors are "
            "jackknife errors too" if reestimated else ""),
    }
    # ---- subsidy and rate band ------------------------------------------------------------------
    if subsidy is None:
        shares = SubsidyShares(0.0, 0.0, 0.0, 0.0, 1.0)
    else:
        shares = subsidy_shares(subsidy) if isinstance(subsidy, str) else subsidy
    if subsidised is None:
        subsidised = shares.insured < 1.0 - 1e-12
    split = split_premium(gp.gross, shares)
    sub = {"scheme": subsidy if isinstance(subsidy, str) else ("none" if subsidy is None else "custom"),
           "shares": shares.as_dict(), "amounts_cny": dict(split.amounts),
           "amounts_mc_se_cny": {b: None if g_se is None else g_se * v for b, v in shares.as_dict().items()},
           "public_share": split.public_share,
           "central_rule": shares.rule,
           "central_eligible": check_central_eligibility(shares) if shares.rule else None,
           "note": NO_CENTRAL_SUBSIDY_NOTE if subsidy is None else (CENTRAL_SCHEME_NOTE if shares.central > 0 else None)}
    base_rate = a.mean / (1.0 - loading.expense_ratio) / si
    if base_rate > 0 and gp.gross > 0:
        rb = check_rate_adjustment(gp.gross / si, base_rate, subsidised=subsidised)
        band = {"rate": rb.rate, "base_rate": rb.base_rate, "factor": rb.factor, "band": list(rb.band),
                "within_band": rb.within_band, "subsidised": subsidised,
                "rate_at_band_top": rb.base_rate * rb.band[1]}
    else:
        band = {"rate": gp.gross / si, "base_rate": base_rate, "factor": None, "band": None, "within_band": None,
                "subsidised": subsidised, "rate_at_band_top": None}
    # ---- risk ---------------------------------------------------------------------------------
    rps = tuple(d.return_periods_years if return_periods is None else return_periods)
    occ = annual_max_occurrence(losses.events)
    pml_df = pd.concat([pml(occ, rps, group_size=group).assign(basis="OEP"),
                        pml(annual, rps, group_size=group).assign(basis="AEP")], ignore_index=True)
    grid = _ep_grid(n, rps)
    so, sa = np.sort(occ), np.sort(annual)
    ep = pd.DataFrame({"return_period_years": grid, "exceedance_probability": 1.0 / grid,
                       "oep_cny": [_var_sorted(so, 1 - 1 / tt) for tt in grid],
                       "aep_cny": [_var_sorted(sa, 1 - 1 / tt) for tt in grid]})
    aal_ci = ci(a.mean, se, t_mean)
    risk = {"aal": {"mean_cny": a.mean, "se_cny": se, "ci_low_cny": aal_ci[0] if aal_ci else None,
                    "ci_high_cny": aal_ci[1] if aal_ci else None, "n_years": n},
            "prob_payout": float((annual > 0).mean()),
            "prob_payout_mc_se": mean_err("prob_payout", (annual > 0).astype(np.float64)),
            "var_tvar": _records(var_tvar_table(annual, group_size=group)),
            "pml": _records(pml_df[["basis", *[col for col in pml_df.columns if col != "basis"]]]),
            "ep_curve": _records(ep),
            # a cover that pays nothing in any simulated year says why (its figures are all 0)
            "no_payout_note": (nothing_paid_note(cover or {}, n, paths_years, aal_by_peril or [])
                               if not (annual > 0).any() else None)}
    # ---- reinsurance ------------------------------------------------------------------------------
    layer_rows, capital = _reinsurance(losses.events, annual, tuple(layers), c, loading, group, level, design, err,
                                       reestimated)
    br = None
    arrs = _index_arrays(losses)
    if arrs is not None:
        br = _basis_risk_block(losses, arrs, tol, err, design, reestimated)
    samples = {"annual_payout_cny": annual, "max_event_payout_cny": occ}
    if losses.true_loss_cny is not None:
        samples["true_loss_cny"] = losses.true_loss_cny
    if losses.perfect_index_payout_cny is not None:
        samples["perfect_index_payout_cny"] = losses.perfect_index_payout_cny
    samples.update({k: np.asarray(v) for k, v in losses.index.items()})
    # an exposure estimated from the run (a sink index's expected sink, a price floor's simulated volume) has
    # a jackknife error, as the rates do; a fixed one (today's stock, a given volume or expected sink) none
    estimated = exposure is not None
    exposure = {"area_ha": float(area_ha), "area_mu": mu, "insured_tco2e": float(insured_tco2e),
                "insured_tco2e_mc_se": err.get("insured") if estimated else None,
                "sum_insured_cny": si, "sum_insured_mc_se_cny": err.get("sum_insured") if estimated else None,
                "sum_insured_per_mu_cny": si / mu, "estimated_from_run": estimated}
    return Quote(provenance=_clean(dict(provenance or {})), cover=_clean(dict(cover or {})),
                 loading=loading.to_dict(), exposure=exposure, premium=_clean(premium), subsidy=_clean(sub),
                 rate_band=_clean(band), risk=_clean(risk), aal_by_peril=_clean(list(aal_by_peril or [])),
                 aal_by_level=_clean(list(aal_by_level or [])), layers=layer_rows, capital=capital,
                 basis_risk=br, samples=samples)


def _basis_risk_block(losses: CoverLosses, arrs, tol: float, err: Mapping[str, float | None], design: _Design,
                      reestimated: bool) -> dict[str, Any]:
    """Basis risk against the perfect-index payout, and the protection gap, with Monte Carlo errors."""
    pay, perfect, true = arrs
    br = basis_risk(pay, perfect, tol).to_dict()
    # basis_risk's reference here is the perfect-index payout, not the true loss: its fields say so (the true
    # loss is the protection gap's)
    br["prob_perfect_index_pays"] = br.pop("prob_loss")
    br["mean_perfect_index_payout_cny"] = br.pop("mean_true_loss_cny")
    gap = protection_gap(perfect, true, tol).to_dict()

    def mean_err(key: str, per_year: np.ndarray) -> float | None:
        return err.get(f"br_{key}") if reestimated else _se(design.mean_se(per_year)[0])

    d = pay - perfect
    rmse = br["rmse_cny"]
    if reestimated:
        rmse_se = err.get("br_rmse")
    else:   # delta method: se(sqrt(m)) = se(m) / (2 sqrt(m)), m = mean(D^2); 0 when the index is perfect
        m_se = _se(design.mean_se(d * d)[0])
        rmse_se = (m_se / (2.0 * rmse) if rmse > 0 else 0.0) if m_se is not None else None
    miss = ((perfect > tol) & (pay <= tol)).astype(np.float64)
    extra = ((pay > tol) & (perfect <= tol)).astype(np.float64)
    gap_y = np.maximum(true - perfect, 0.0)
    by_design = ((true > tol) & (perfect <= tol)).astype(np.float64)
    out = {
        "reference": "perfect-index payout: the contract's trigger, limit and participation on the true sink",
        "definition": ("basis risk = payout on the measured index - perfect-index payout, per policy year (index "
                       "error only: zero for a perfect index); 'loss' = a year in which the perfect index pays. "
                       "protection_gap = true loss - perfect-index payout, the loss the contract leaves uncovered "
                       "by design (trigger retention, limit, participation); true loss = agreed price x "
                       "max(expected sink - true sink, 0); the sink is before harvest"),
        **br,
        "correlation_mc_se": err.get("br_corr"),
        "prob_loss_no_payout_mc_se": mean_err("p_miss", miss),
        "prob_payout_no_loss_mc_se": mean_err("p_extra", extra),
        "prob_no_payout_given_loss_mc_se": err.get("br_p_miss_given"),
        "rmse_mc_se_cny": rmse_se,
        "mean_difference_mc_se_cny": mean_err("mean_diff", d),
        "protection_gap": {
            **gap,
            "mean_true_loss_mc_se_cny": mean_err("true", true),
            "mean_perfect_index_payout_mc_se_cny": mean_err("perfect", perfect),
            "mean_gap_mc_se_cny": mean_err("gap", gap_y),
            "gap_share_of_true_loss_mc_se": err.get("br_gap_share"),
            "prob_loss_no_payout_by_design_mc_se": mean_err("p_gap", by_design),
        },
    }
    if "true_sink_tco2e" in losses.index and "measured_sink_tco2e" in losses.index:
        out["index_error_sd_tco2e"] = float(np.std(losses.index["measured_sink_tco2e"] - losses.index["true_sink_tco2e"]))
    return _clean(out)


# =====================================================================================================
# On the engine
# =====================================================================================================
def _aal_row(x: np.ndarray, price: float, design: _Design, **labels) -> dict[str, Any]:
    m = float(np.mean(x))
    se, _ = design.mean_se(x)
    return {**labels, "aal_tco2e": m, "aal_se_tco2e": se, "aal_cny": m * price, "aal_se_cny": se * price}


def nothing_paid_note(cover: Mapping[str, Any], n_years: int, paths_years: tuple[int, int] | None,
                      aal_by_peril: Sequence[Mapping[str, Any]]) -> str:
    """Why a quote's expected loss is 0: the cover (``Quote.cover``) paid nothing in any of its ``n_years``
    simulated years, said plainly with the likely cause -- a deductible above every year's covered loss, no
    covered loss at all, a limit or participation of 0, a trigger or strike never reached (``risk.no_payout_note``,
    which the CLI, the slip and the dashboard show)."""
    where = (f" ({paths_years[0]:,} paths x {paths_years[1]} year(s))" if paths_years is not None else "")
    head = (f"the cover pays nothing in any of the {n_years:,} simulated policy years{where}: its expected loss, "
            f"and with it the pure premium and the risk load, is 0")
    kind = cover.get("kind")
    if kind is None:  # no terms to tell the cause by (quote_losses without a cover)
        return head
    if kind != "stock-loss":
        return head + " (the trigger or strike is never reached); change the terms or run more paths"
    if cover.get("limit_cny") == 0 or cover.get("participation") == 0:
        return head + " (its limit or participation is 0)"
    covered = [r for r in aal_by_peril if r.get("covered")]
    ground_up = sum(float(r.get("aal_cny") or 0.0) for r in covered)
    names = ", ".join(str(r["peril"]) for r in covered) or "the covered perils"
    d = cover.get("deductible") or {}
    if ground_up > 0 and d.get("amount"):
        unit = {"stock_fraction": "of the insured stock", "tco2e": "tCO2e", "cny": "CNY"}.get(d.get("unit"), "")
        amount = (f"{100 * d['amount']:g}% {unit}" if d.get("unit") == "stock_fraction"
                  else f"{d['amount']:,.0f} {unit}")
        return (head + f": the {d.get('basis', 'annual')} deductible ({amount}) exceeds every simulated year's "
                f"covered loss ({names}: ground-up expected loss {ground_up:,.0f} CNY a year); lower the deductible, "
                "cover more perils or run more paths")
    if ground_up == 0:
        return head + f": {names} destroyed no insured stock in any simulated year; cover more perils or run more paths"
    return head


def crediting_applies(cover) -> bool:
    """Whether the crediting rules change what ``cover`` pays: only a price floor on the simulated credits issued
    (:class:`~finance_engine.insurance.covers.PriceFloorCover` without ``volume_tco2e``); a stock-loss or sink-index
    cover pays on the stock and the sink, a price floor on a fixed volume on the price alone."""
    return isinstance(cover, PriceFloorCover) and cover.volume_tco2e is None


def _kind(cover) -> str:
    if isinstance(cover, PriceFloorCover):
        return "price floor on a fixed volume_tco2e"
    return "sink-index cover" if isinstance(cover, SinkIndexCover) else "stock-loss cover"


def quote(cover: StockLossCover | SinkIndexCover | PriceFloorCover, portfolio, params, *, paths: int = 2000,
          years: int = 1, seed: int = 2026, loading: Loading | None = None,
          subsidy: str | SubsidyShares | None = None, subsidised: bool | None = None,
          layers: Sequence[LayerSpec] = (), quota_share: float = 0.0, account_level: str | None = "county",
          price_model_set=None, switches=None, workers: int = 1, chunk_paths: int | None = None,
          simulation=None, progress=None, crediting: dict | None = None) -> Quote:
    """Quote ``cover`` on ``portfolio``: simulate, compute payouts, price (module docstring).

    Parameters
    ----------
    cover : StockLossCover, SinkIndexCover or PriceFloorCover
    portfolio, params : the insured parcels and their parameter set.
    paths, years, seed : Monte Carlo paths, policy years per path (1: a one-year policy), seed.
    loading, subsidy, subsidised, layers, quota_share : see :func:`quote_losses`.
    account_level : str or None
        Level for the AAL by account (``county``, ``township``, ``project_id`` ...).
    price_model_set : PriceModelSet, optional
        For the price floor (default: the shipped price model).
    switches : models.dynamics.SimulationSwitches, optional
    simulation : SimulationResult, optional
        A run to reuse (must have kept per-path values at portfolio level, and the ELT for stock-loss).
    progress : callable, optional
        Called with the run's :class:`~finance_engine.simulation.Progress` after each chunk (observation
        only; not called when ``simulation`` is given).
    crediting : dict, optional
        The engine's crediting overrides (``crediting_start_year``, ``crediting_period_years``: a project that
        began crediting before the run verifies in its phase; one beginning later verifies first a monitoring
        period after its start), for a price floor on the simulated credits;
        not with ``simulation`` (whose run recorded its own rules).

    Raises
    ------
    InsuranceInputError
        Bad terms (naming the field).
    """
    from finance_engine.simulation import simulate
    from finance_engine.simulation.result import carried_provenance, code_version
    from models import MODEL_VERSION

    if isinstance(paths, bool) or not isinstance(paths, (int, np.integer)) or paths < 2:
        raise InsuranceInputError(f"paths must be an integer >= 2, got {paths!r}")
    if isinstance(years, bool) or not isinstance(years, (int, np.integer)) or not 1 <= years <= 100:
        raise InsuranceInputError(f"years must be an integer in [1, 100], got {years!r}")
    if not isinstance(cover, (StockLossCover, SinkIndexCover, PriceFloorCover)):
        raise CoverError(f"cover must be a StockLossCover, SinkIndexCover or PriceFloorCover, got {type(cover).__name__}")
    # the names the quote looks up, before the simulation (a misspelt one failed after it)
    if isinstance(subsidy, str):
        subsidy_shares(subsidy)
    price_model = None
    if isinstance(cover, PriceFloorCover):
        from finance_engine.price import load_price_model

        pms = price_model_set or load_price_model()
        try:
            price_model = pms.model(cover.price_model)
        except ValueError as exc:
            raise CoverError(f"price_model: {exc}") from None
    levels = ("portfolio",) + ((account_level,) if account_level and account_level != "portfolio" else ())
    if crediting:
        if simulation is not None:
            raise InsuranceInputError("crediting: give it to the simulation the quote reuses, not with it")
        if not crediting_applies(cover):
            raise InsuranceInputError(f"crediting: {', '.join(k for k in crediting)} only apply to a price floor on "
                                      f"the simulated credits (no volume_tco2e); a {_kind(cover)} cannot use them")
        from models.carbon import CreditingRules
        from models.dynamics import DEFAULT_START_YEAR

        try:  # refused before the run, naming the rule
            CreditingRules.checked(params, start_year=DEFAULT_START_YEAR, **crediting)
        except ValueError as exc:
            raise InsuranceInputError(str(exc)) from None
    res = simulation
    if res is None:
        from finance_engine.simulation.engine import require_per_path

        try:  # the quote reads every path of its levels (an account level beyond the per-path budget has none)
            require_per_path(portfolio, params, levels, years, paths, switches=switches, what="the quote")
        except ValueError as exc:
            raise InsuranceInputError(str(exc)) from None
        res = simulate(portfolio, params, years=years, paths=paths, seed=seed, levels=levels,
                       loss_table_level="portfolio" if isinstance(cover, StockLossCover) else None,
                       switches=switches, workers=workers, chunk_paths=chunk_paths, scenario="insurance quote",
                       progress=progress, crediting=crediting, summarise=False)  # the quote reads per-path values only
    why = res.provenance.get("levels_without_quantiles", {}).get(account_level) if account_level else None
    if why is not None and account_level not in res.per_path:
        # a reused run that asked for the level but summarised it from streamed moments (over its per-path budget,
        # or of too many groups): no AAL by account can be priced from it; refused rather than silently left out
        raise InsuranceInputError(
            f"account_level: the simulation kept no per-path values at the {account_level} level ({why}; it was "
            "summarised from streamed moments only): use fewer paths, a coarser account_level or a larger "
            "per_path_budget_mib, or account_level=None")
    paths, years, seed = res.provenance["paths"], res.provenance["years"], res.provenance["seed"]
    n = paths * years
    stock0 = float(res.start_stock("portfolio").iloc[0])
    area = float(res.provenance["portfolio"]["area_ha"])
    prov = {"model_version": MODEL_VERSION, "code_version": code_version(),
            **carried_provenance(res.provenance),
            "seed": seed, "paths": paths, "years": years, "portfolio": res.provenance["portfolio"],
            "insurance_defaults_sha256": _file_sha256(DEFAULTS_PATH),
            "method": "engine paths -> cover payouts per simulated year -> premium principles on the annual payouts"}
    set_size = recorded_set_size(res.provenance["switches"])
    antithetic = bool(res.provenance["switches"].get("antithetic", False))  # the engine's pairs 2j, 2j+1
    design = _Design(n, (paths, years), set_size, antithetic)
    # ground-up AAL by peril (tCO2e destroyed) and by account level
    unit_price = getattr(cover, "price_cny_per_tco2e", None) or cover.strike_cny_per_tco2e
    covered = cover.perils if isinstance(cover, StockLossCover) else None

    def is_covered(peril: str) -> bool:
        """A stock-loss cover pays for its perils, a sink index for a shortfall from any of them; a price floor
        pays on the price alone (no peril's loss triggers it)."""
        if isinstance(cover, PriceFloorCover):
            return False
        return covered is None or peril in covered

    by_peril = []
    for m in res.metrics:
        if m.startswith("loss_") and m != "loss_tco2e":
            peril = m[5:-6]
            by_peril.append(_aal_row(per_path_to_sim_years(res.paths_of(m)[..., 0]), unit_price, design, peril=peril,
                                     covered=is_covered(peril)))
    by_level = []
    if account_level and account_level in res.per_path and account_level != "portfolio":
        names = [f"loss_{p}_tco2e" for p in (covered or [m[5:-6] for m in res.metrics
                                                        if m.startswith("loss_") and m != "loss_tco2e"])]
        names = [m for m in names if m in res.metrics]
        arr = sum(res.paths_of(m, account_level) for m in names)
        stock_lv = res.initial_stock.query("level == @account_level").set_index("group").stock_tco2e
        for g, lab in enumerate(res.labels[account_level]):
            row = _aal_row(per_path_to_sim_years(arr[..., g]), unit_price, design, level=account_level,
                           group=str(lab))
            row["stock_tco2e"] = float(stock_lv.get(lab, float("nan")))
            by_level.append(row)

    if isinstance(cover, StockLossCover):
        if res.elt is None:
            raise InsuranceInputError("the simulation has no event loss table: run it with loss_table_level='portfolio'")
        losses = stock_loss_losses(res.elt, n, cover, stock0)
        si = cover.sum_insured_cny(stock0)
        insured = stock0
        exposure = None  # today's stock: known, not simulated
        pay_peril = losses.payout_by_peril()
        for row in by_peril:
            x = pay_peril.get(row["peril"])
            row["payout_aal_cny"] = float(x.mean()) if x is not None else 0.0
            row["payout_aal_se_cny"] = design.mean_se(x)[0] if x is not None else 0.0
    elif isinstance(cover, SinkIndexCover):
        # the sink before harvest: a clear-fell at the rotation age is no peril, so the index adds it back
        sink = res.paths_of("sink_tco2e")[..., 0] + res.paths_of("harvest_tco2e")[..., 0]
        losses = sink_index_losses(sink, cover, seed=seed, path_ids=np.arange(paths))

        def index_exposure(sample: CoverLosses) -> tuple[float, float]:
            """The sum insured (the value of the triggered sink, or the limit) and the insured tonnes (the
            expected sink) of a sample: estimated from it unless the cover fixes the expected sink."""
            e_s = float(np.mean(sample.index["expected_sink_tco2e"]))
            s_s = float(np.mean(sample.index["limit_cny"])) * cover.participation
            if not math.isfinite(s_s):
                s_s = cover.participation * cover.price_cny_per_tco2e * cover.trigger_fraction * e_s
            return s_s, e_s
        si, insured = index_exposure(losses)
        exposure = index_exposure if cover.expected_sink_tco2e is None else None
    else:
        from finance_engine.price import simulate_price_paths

        prices = simulate_price_paths(price_model, np.arange(paths), years, seed,
                                      start_price_cny_per_tco2e=pms.start_price(cover.price_model))
        vol = cover.volume_tco2e if cover.volume_tco2e is not None else res.paths_of("credits_issued_tco2e")[..., 0]
        # a model with several steps a year: the credits are sold at each policy year's end price
        losses = price_floor_losses(prices, vol, cover, steps_per_year=price_model.steps_per_year)
        def floor_exposure(sample: CoverLosses) -> tuple[float, float]:
            """The sum insured and the insured tonnes (the mean volume) of a sample of the floor's years."""
            v_s = float(np.mean(sample.index["volume_tco2e"]))
            return cover.participation * min(cover.limit_cny, cover.strike_cny_per_tco2e * v_s), v_s
        si, insured = floor_exposure(losses)
        if insured <= 0:
            raise CoverError("volume_tco2e: the simulated credits issued are 0 in the policy years (crediting "
                             "issues later); give a fixed volume_tco2e or more years")
        # a simulated volume is estimated from the paths, as the premium is: the rates' errors see both
        exposure = floor_exposure if cover.volume_tco2e is None else None
        prov["price_model_sha256"] = pms.sha256
        prov["price_model"] = cover.price_model
    return quote_losses(losses, sum_insured_cny=si, area_ha=area, insured_tco2e=insured, loading=loading,
                        subsidy=subsidy, subsidised=subsidised, layers=layers, quota_share=quota_share,
                        cover=cover.to_dict(), provenance=prov, parameter_set_size=set_size,
                        paths_years=(paths, years), antithetic=antithetic, aal_by_peril=by_peril, aal_by_level=by_level, exposure=exposure)
