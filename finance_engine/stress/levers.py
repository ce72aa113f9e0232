"""Policy and management levers under common random numbers.

Policy levers (on one scenario run of a portfolio with a registry; defaults in
``finance_engine/data/stress_defaults.yaml``):

* **pledge-rate cap** -- every loan is cut to at most ``cap x`` the collateral value: lower loan
  volume, lower bank expected loss and capital;
* **compulsory sink insurance** -- every pledged unit without a policy gets a stock-loss cover of all
  perils at today's price, limit = the loan amount, premium = (1 + loading) x its *baseline* expected
  payout, subsidised with the commercial-forest split; payouts are assigned to the bank first;
* **state buy-back (收储) floor** -- pledged credits can be sold to the state at a floor price; the
  bank's cash flows use ``max(price, floor)`` and the budget pays the difference.

Management levers (森林固碳增汇): a :class:`ManagementAction` changes management columns or the
species of selected parcels; the portfolio is re-simulated with the same seed (parcel draws are keyed
by parcel id, so the pairs are common random numbers) and the effect on the expected sink and on a
**risk-adjusted sink** (mean - k sd of the horizon sink, k from the data file; the 5 % quantile is
reported too) is divided into the action's cost. Species conversion keeps today's stock (the new
species starts from the pine's current volume; an underplanting conversion) and follows the new
species' growth and vulnerability from then on. Longer rotations cannot be assessed: the engine does
not harvest (every stand is held to the horizon), so there is no rotation to lengthen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from finance_engine.price import PriceModelSet, load_price_model
from finance_engine.simulation import simulate
from finance_engine.simulation.summary import nested_moments
from finance_engine.stress.buffer import load_stress_defaults
from finance_engine.stress.registry import BoundRegistry
from finance_engine.stress.run import ScenarioRun, StressSettings, evaluate_instruments
from models.dynamics import ForestSimulator
from models.parameters import SITE_CLASSES, ModelParameters
from models.portfolio import MANAGEMENT_LEVELS, Portfolio
from models.perils.pine_wilt import with_pest_control


class LeverError(ValueError):
    """Bad lever input; the message names the field."""


@dataclass(frozen=True)
class _Cover:
    """A compulsory cover (same fields the instrument evaluation reads from a policy)."""

    id: str
    unit: str
    covered_perils: tuple[str, ...]
    agreed_price_cny_per_tco2e: float
    annual_deductible_tco2e: float
    annual_limit_cny: float
    annual_premium_cny: float
    subsidy_scheme: str | None = None  # None: no subsidy (as finance_engine.stress.registry.PolicyEntry)


def _lever(name: str) -> float:
    return float(load_stress_defaults()["levers"][name]["value"])


def _row(lever: str, scenario: str, inst) -> dict[str, Any]:
    p, i, b = inst.portfolio, inst.insurer, inst.budget
    return {"lever": lever, "scenario": scenario, "loan_volume_cny": p.get("loan_volume_cny"),
            "collateral_coverage": p.get("collateral_coverage"),
            "share_of_lending_with_collateral_below_balance": p.get("share_of_lending_with_collateral_below_balance"),
            "bank_expected_loss_cny": p.get("bank_expected_loss_cny"), "bank_capital_cny": p.get("bank_capital_cny"),
            "insurer_expected_annual_loss_cny": i["expected_annual_gross_loss_cny"],
            "insurer_annual_premium_cny": i["annual_premium_cny"],
            "insurer_net_annual_loss_1_in_100_cny": i["net_annual_loss_1_in_100_cny"],
            "budget_expected_annual_cny": b["expected_annual_total_cny"], "budget_1_in_100_cny": b["total_1_in_100_cny"]}


def policy_levers(bound: BoundRegistry, base_run: ScenarioRun, runs: Sequence[ScenarioRun], settings: StressSettings, *,
                  pledge_rate_cap: float | None = None, floor_cny_per_tco2e: float | None = None,
                  loading: float | None = None, pms: PriceModelSet | None = None) -> pd.DataFrame:
    """Loan volume, bank, insurer and budget risk with each policy lever, for each run (scenario)."""
    pms = pms or load_price_model()
    cap = _lever("pledge_rate_cap") if pledge_rate_cap is None else float(pledge_rate_cap)
    floor = _lever("buyback_floor_cny_per_tco2e") if floor_cny_per_tco2e is None else float(floor_cny_per_tco2e)
    load = _lever("compulsory_insurance_loading") if loading is None else float(loading)
    if not 0 < cap <= 1:
        raise LeverError(f"pledge_rate_cap must lie in (0, 1], got {cap}")
    if floor < 0 or load < 0:
        raise LeverError("floor_cny_per_tco2e and loading must be >= 0")
    insured_units = set(bound.unit_of_policy.values())
    perils = tuple(base_run.result.provenance["perils"])
    covers = []
    for ln in bound.registry.loans:
        unit = bound.unit_of_loan[ln.id]
        if unit in insured_units:
            continue
        # a compulsory scheme is policy insurance: the lever subsidises it with the commercial-forest split (a
        # registry's own carbon policies name their scheme, none by default)
        covers.append(_Cover(f"compulsory:{ln.id}", unit, perils, pms.start_price_cny_per_tco2e, 0.0,
                             ln.terms.amount_cny, 0.0, subsidy_scheme="commercial_forest"))
    # premiums priced on the baseline
    if covers:
        base_inst = evaluate_instruments(bound, base_run, settings, pms=pms, extra_policies=covers)
        pay = base_inst.policies.set_index("policy")["expected_annual_payout_cny"]
        covers = [_Cover(**{**c.__dict__, "annual_premium_cny": float((1 + load) * pay[c.id])}) for c in covers]
    rows = []
    for run in [base_run, *[r for r in runs if r is not base_run]]:
        name = run.scenario.name
        rows.append(_row("none", name, evaluate_instruments(bound, run, settings, pms=pms)))
        rows.append(_row(f"pledge-rate cap {cap:.0%}", name,
                         evaluate_instruments(bound, run, settings, pms=pms, pledge_rate_cap=cap)))
        rows.append(_row("compulsory sink insurance", name,
                         evaluate_instruments(bound, run, settings, pms=pms, extra_policies=covers)))
        rows.append(_row(f"buy-back floor {floor:g} CNY/t", name,
                         evaluate_instruments(bound, run, settings, pms=pms, price_floor_cny_per_tco2e=floor)))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Management levers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ManagementAction:
    """A change of management on selected parcels.

    Parameters
    ----------
    name : str
    counties, species, parcel_ids : optional selectors (all must match; none given = every parcel)
    fire_protection, pest_control : {"none", "basic", "enhanced"}, optional
    species_to : str, optional
        New species group (e.g. ``mixed_conifer_broadleaf`` for pine conversion).
    rotation_extension_years : int, optional
        Lengthen the clear-fell rotation of the selected parcels that have one (``rotation_age_years``).
    cost_cny_per_ha_per_year : float
        Cost of the action per treated hectare and year (CNY).
    """

    name: str
    counties: tuple[str, ...] = ()
    species: tuple[str, ...] = ()
    parcel_ids: tuple[str, ...] = ()
    fire_protection: str | None = None
    pest_control: str | None = None
    species_to: str | None = None
    rotation_extension_years: int | None = None
    cost_cny_per_ha_per_year: float = 0.0

    def __post_init__(self) -> None:
        for f in ("fire_protection", "pest_control"):
            v = getattr(self, f)
            if v is not None and v not in MANAGEMENT_LEVELS:
                raise LeverError(f"{self.name}: {f} must be one of {MANAGEMENT_LEVELS}, got {v!r}")
        if not self.cost_cny_per_ha_per_year >= 0:
            raise LeverError(f"{self.name}: cost_cny_per_ha_per_year must be >= 0")
        if self.rotation_extension_years is not None and not 0 < self.rotation_extension_years <= 200:
            raise LeverError(f"{self.name}: rotation_extension_years must lie in (0, 200]")
        if (self.fire_protection is None and self.pest_control is None and self.species_to is None
                and self.rotation_extension_years is None):
            raise LeverError(f"{self.name}: the action changes nothing (set fire_protection, pest_control, "
                             "species_to or rotation_extension_years)")

    def mask(self, portfolio: Portfolio) -> np.ndarray:
        f = portfolio.frame
        m = np.ones(len(f), dtype=bool)
        if self.counties:
            m &= f["county"].isin(self.counties).to_numpy()
        if self.species:
            m &= f["species_group"].isin(self.species).to_numpy()
        if self.parcel_ids:
            m &= f["parcel_id"].isin(self.parcel_ids).to_numpy()
        return m

    def landscape(self, portfolio: Portfolio, params: ModelParameters) -> tuple[ModelParameters, float]:
        """Parameters for the changed portfolio's runs, and the region's host area whose pest control changed (ha):
        the host area the action moves between pest-control levels in the pine wilt landscape.

        Pine wilt spreads over the region's landscape, whose cells' infectivity follows the pest control
        of the region's pines. A ``pest_control`` action moves the treated parcels' host area in the
        landscape to the new level (:func:`models.perils.pine_wilt.with_pest_control`), so that it slows
        the spread between cells as well as the treated parcels' infection: all of it in the bureau's
        city-wide test (the portfolio is the region's registry), the portfolio's own share of its cells
        otherwise. Other actions run on ``params`` as they are, and move no host area: the landscape keeps
        each cell's host area by pest-control level, which sets the cell's infectivity, and a species
        conversion changes neither (a stand converted to ``mixed_conifer_broadleaf``, pine share 0.3, stays a
        host at its pest-control level: the landscape the converted registry would give is the one the file
        holds). The conversion's own effect, the treated stands' lower pine share, is in the parcels' runs
        (:func:`pine_host_change`).
        """
        if self.pest_control is None:
            return params, 0.0
        return with_pest_control(params, portfolio, self.treated(portfolio), self.pest_control,
                                 f"stress lever {self.name!r}")

    def treated(self, portfolio: Portfolio) -> np.ndarray:
        """The parcels the action changes: the selectors' (and, to lengthen rotations, those with one)."""
        m = self.mask(portfolio)
        if self.rotation_extension_years is not None:
            m &= np.isfinite(portfolio.rotation_age_years)
        return m

    def apply(self, portfolio: Portfolio, params: ModelParameters) -> tuple[Portfolio, float]:
        """The changed portfolio and the treated area (ha)."""
        m = self.treated(portfolio)
        if not m.any():
            raise LeverError(f"{self.name}: the selectors match no parcel"
                             + (" with a rotation age" if self.rotation_extension_years is not None else ""))
        frame = portfolio.frame.copy()
        if self.rotation_extension_years is not None:
            frame.loc[m, "rotation_age_years"] = frame.loc[m, "rotation_age_years"] + self.rotation_extension_years
        if self.fire_protection is not None:
            frame.loc[m, "fire_protection"] = self.fire_protection
        if self.pest_control is not None:
            frame.loc[m, "pest_control"] = self.pest_control
        if self.species_to is not None:
            if self.species_to not in params.species_index:
                raise LeverError(f"{self.name}: unknown species_to {self.species_to!r}")
            vol = ForestSimulator(params, portfolio).growth.initial_volume_m3_per_ha
            frame["volume_m3_per_ha"] = frame["volume_m3_per_ha"].astype(float)
            frame.loc[m, "volume_m3_per_ha"] = vol[m]  # keep today's stock: underplanting conversion
            frame.loc[m, "species_group"] = self.species_to
        cols = {c: frame[c].tolist() for c in frame.columns}
        cols["site_class"] = [SITE_CLASSES.index(s) for s in cols["site_class"]]
        return Portfolio.from_columns(cols, params, source=f"{portfolio.source} + {self.name}"), \
            float(portfolio.area_ha[m].sum())


def _pine_hosts(portfolio: Portfolio, params: ModelParameters) -> tuple[np.ndarray, np.ndarray]:
    """Per parcel: whether pine wilt counts it as a host (a tree species with a pine share above 0 below the
    altitude limit, as :class:`models.perils.pine_wilt.PineWilt` selects them; none when pine wilt is off), and its
    species' pine share."""
    t = params.tables
    sp = np.asarray(portfolio.species_code, dtype=np.intp)
    share = np.asarray(t.pine_share, dtype=float)[sp]
    block = params.perils.get("pine_wilt")
    if block is None or not block.enabled:
        return np.zeros(sp.size, dtype=bool), share
    limit, taper = block.altitude_limit_m.value, block.altitude_taper_m.value
    elev = np.asarray(portfolio.elevation_m, dtype=float)
    below = (limit - elev > 0) if taper > 0 else (elev < limit)
    return ~np.asarray(t.is_bamboo, dtype=bool)[sp] & (share > 0) & below, share


def pine_host_change(portfolio: Portfolio, changed: Portfolio, params: ModelParameters,
                     treated: np.ndarray) -> tuple[float, float]:
    """What an action does to the treated parcels' pine wilt hosts: the treated host area (ha, the parcels pine
    wilt counts as hosts before the action) and the pine-host area it removes (ha of pure pine: each treated
    parcel's area times the fall of its pine share, a host before or after; a conversion of Masson pine, share
    1, to mixed conifer-broadleaf, share 0.3, removes 0.7 of each host hectare)."""
    host0, share0 = _pine_hosts(portfolio, params)
    host1, share1 = _pine_hosts(changed, params)
    area = np.asarray(portfolio.area_ha, dtype=float)
    m = np.asarray(treated, dtype=bool)
    before = np.where(host0, share0, 0.0)
    after = np.where(host1, share1, 0.0)
    return float(area[m & host0].sum()), float((area * (before - after))[m].sum())


def management_levers(portfolio: Portfolio, params: ModelParameters, actions: Sequence[ManagementAction],
                      settings: StressSettings | None = None, *, scenario=None, workers: int = 1) -> pd.DataFrame:
    """Effect of each action on the horizon sink and its risk, and its cost per added tCO2e.

    Columns: action, treated_area_ha, pine_host_area_treated_ha (the treated area pine wilt counts as its
    hosts), pine_host_area_removed_ha (ha of pure pine the action removes from the treated parcels: their area
    times the fall of their pine share; :func:`pine_host_change`), landscape_host_area_changed_ha (the region's
    pine host area whose *pest control* the action changes in the pine wilt landscape, so that it also slows
    the spread between cells; 0 for a species conversion, which leaves the landscape as it is, and for fire
    protection; see :meth:`ManagementAction.landscape`), cost_cny, sink_mean_tco2e (baseline management and with the
    action), added_mean_sink_tco2e and its paired MC standard error, added_risk_adjusted_sink_tco2e
    (mean - k sd), added_p05_sink_tco2e, cost_per_added_tco2e (of the risk-adjusted sink; inf when
    nothing is added), rank (cheapest first).
    """
    st = settings or StressSettings()
    k = _lever("risk_adjusted_sd_multiple")
    mods = scenario.modifiers(st.start_year) if scenario is not None else None

    def sink(pf: Portfolio, run_params: ModelParameters) -> np.ndarray:
        res = simulate(pf, run_params, years=st.years, paths=st.paths, seed=st.seed, levels=("portfolio",),
                       switches=st.switches, modifiers=mods, start_year=st.start_year, workers=workers,
                       summarise=False)  # the portfolio's per-path sink only
        return res.paths_of("sink_tco2e").sum(axis=0)[:, 0]

    base = sink(portfolio, params)
    ra = lambda x: float(x.mean() - k * x.std(ddof=1))  # noqa: E731
    rows = []
    for a in actions:
        pf, area = a.apply(portfolio, params)
        run_params, landscape_area = a.landscape(portfolio, params)
        host_treated, host_removed = pine_host_change(portfolio, pf, params, a.treated(portfolio))
        x = sink(pf, run_params)
        d = x - base
        mom = nested_moments(d[:, None], st.switches.parameter_set_size, st.switches.draws_parameters,
                             st.switches.antithetic)  # the engine's antithetic pairs: the sd on pair means
        cost = a.cost_cny_per_ha_per_year * area * st.years
        added_ra = ra(x) - ra(base)
        rows.append({"action": a.name, "treated_area_ha": area, "pine_host_area_treated_ha": host_treated,
                     "pine_host_area_removed_ha": host_removed, "landscape_host_area_changed_ha": landscape_area,
                     "cost_cny": cost,
                     "sink_mean_baseline_tco2e": float(base.mean()), "sink_mean_tco2e": float(x.mean()),
                     "added_mean_sink_tco2e": float(d.mean()), "added_mean_sink_mc_se": float(mom["mc_se"][0]),
                     "sink_sd_baseline_tco2e": float(base.std(ddof=1)), "sink_sd_tco2e": float(x.std(ddof=1)),
                     "added_risk_adjusted_sink_tco2e": added_ra,
                     "added_p05_sink_tco2e": float(np.quantile(x, 0.05) - np.quantile(base, 0.05)),
                     "cost_per_added_tco2e": cost / added_ra if added_ra > 0 else float("inf")})
    df = pd.DataFrame(rows)
    if not df.empty:
        df["rank"] = df["cost_per_added_tco2e"].rank(method="first").astype(int)
        df = df.sort_values("rank").reset_index(drop=True)
    return df


def default_management_actions(portfolio: Portfolio | None = None) -> list[ManagementAction]:
    """The actions the bureau asks about first (costs from ``stress_defaults.yaml``, assumptions).

    A longer rotation (+10 years) is included when the portfolio has clear-fell rotations.
    """
    c = load_stress_defaults()["management_costs_cny_per_ha_per_year"]
    extra = []
    if portfolio is not None and np.isfinite(portfolio.rotation_age_years).any():
        extra.append(ManagementAction("rotations 10 years longer", rotation_extension_years=10,
                                      cost_cny_per_ha_per_year=float(c["longer_rotation"]["value"])))
    return extra + [
        ManagementAction("enhanced fire protection (all parcels)", fire_protection="enhanced",
                         cost_cny_per_ha_per_year=float(c["enhanced_fire_protection"]["value"])),
        ManagementAction("enhanced pest control on pines", species=("masson_pine", "other_pines"),
                         pest_control="enhanced", cost_cny_per_ha_per_year=float(c["enhanced_pest_control"]["value"])),
        ManagementAction("convert Masson pine to mixed conifer-broadleaf", species=("masson_pine",),
                         species_to="mixed_conifer_broadleaf",
                         cost_cny_per_ha_per_year=float(c["pine_conversion"]["value"])),
    ]


__all__ = ["LeverError", "ManagementAction", "default_management_actions", "management_levers", "pine_host_change",
           "policy_levers"]
