"""Run stress scenarios against the baseline on common random numbers.

Every scenario is simulated with the *same seed* as the baseline. Every random draw of the engine and
of the price model is keyed by (seed, stream, year, path, parcel), so path ``j`` of a scenario sees
the same weather, fires and price shocks as path ``j`` of the baseline except where the scenario
changes them. The scenario's effect is then estimated from **paired per-path differences**
``d_j = X_j(scenario) - X_j(baseline)``: its mean and Monte Carlo standard error (paths grouped into
parameter sets, :func:`finance_engine.simulation.summary.nested_moments`) are reported next to the
scenario's own mean and standard error. Because the pairs share most of their noise, the difference's
standard error is far smaller than either run's; a scenario that changes nothing has a difference of
exactly zero on every path.

Money: carbon flows of year ``y`` are valued at the scenario's price at the end of that year
(``price[:, y + 1]``, CNY/tCO2e): stock value, credit value and loss value in CNY.

Instruments (when a registry is given, :mod:`finance_engine.stress.registry`): per loan the
collateral value paths (engine credits of the pledged unit x issuance risk x price, valued as in
:mod:`finance_engine.collateral`), the probability that the value falls below the balance, the
forced-sale shortfall, F-IRB LGD, expected loss and IRB capital; per policy the payouts of its
stock-loss cover; the insurer's annual loss against premiums, reinsurance (its quota share and its
stop-loss, whose premium is a cost) and capital; the public budgets' cash: premium subsidies and the
buy-back of pledged credits at a price floor. The insurer pays the claims, so they cost the budgets
nothing beyond the subsidies; the payouts the public share of the premiums funded are reported beside
the cost, as what the subsidies bought, and not added to it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from finance_engine.collateral import (_below_any_rate, _credit_view, _insurance_payout, _jackknife_figures, _money,
                                      _shortfall_mean, _simulated_lgd, _spread_factors, _with_jk,
                                      balance_schedule, crediting_position)
from finance_engine.credit import expected_loss, foundation_lgd_star, irb_capital_requirement
from finance_engine.insurance import SubsidyShares, layer_loss, split_premium
from finance_engine.insurance.risk_measures import var
from finance_engine.issuance import IssuanceRisk, load_issuance_risk
from finance_engine.loan_terms import crediting_overrides, effective_maturity_years
from finance_engine.mc_error import mean_se, quantile_ci
from finance_engine.price import PriceModelSet, load_price_model, simulate_price_paths, simulate_scenario_paths
from finance_engine.simulation import Progress, RunsProgress, simulate  # RunsProgress: re-exported
from finance_engine.simulation.engine import require_per_path
from finance_engine.simulation.result import (CARRIED_PROVENANCE, SimulationResult, carried_provenance, code_version,
                                              start_stock_of, switches_dict)
from finance_engine.simulation.summary import nested_moments, quantiles_with_ci
from finance_engine.stress.areas import forced_area_notes
from finance_engine.stress.registry import UNIT_PREFIX, BoundRegistry, Registry, RegistryError, bind_registry
from finance_engine.stress.scenarios import StressScenario, load_scenario
from finance_engine.value_regression import jackknife_groups
from models import MODEL_VERSION
from models.carbon import CreditingRules
from models.dynamics import DEFAULT_START_YEAR, ForestSimulator, SimulationSwitches
from models.parameters import ModelParameters
from models.portfolio import Portfolio

DEFAULT_LEVELS: tuple[str, ...] = ("portfolio", "county", "township")
REPORT_METRICS: tuple[str, ...] = ("stock_tco2e", "sink_tco2e", "credits_issued_tco2e", "loss_tco2e")
VALUE_METRICS: dict[str, str] = {"stock_value_cny": "stock_tco2e", "credits_value_cny": "credits_issued_tco2e",
                                 "loss_value_cny": "loss_tco2e"}
FOOTPRINT_PERILS: tuple[str, ...] = ("fire", "typhoon", "ice_storm")
#: the per-path values (MiB) a stress test may hold: its baseline's and one scenario's, every path of each of its
#: levels for the paired differences (the engine's own default budget, 768 MiB a run, would refuse the demo's
#: township level at 1,000 paths over a 30-year loan horizon, which needs about 540 MiB a run)
STRESS_PER_PATH_BUDGET_MIB = 4096
MAX_FOOTPRINT_PATHS = 512


@dataclass(frozen=True)
class StressSettings:
    """How the stress test runs (everything that defines its numbers)."""

    years: int = 10
    paths: int = 1000
    seed: int = 2026
    levels: tuple[str, ...] = DEFAULT_LEVELS
    start_year: int = DEFAULT_START_YEAR
    carbon_method: str = "bef"
    price_model: str = "cea"
    switches: SimulationSwitches = field(default_factory=SimulationSwitches)

    def __post_init__(self) -> None:
        if not 1 <= self.years <= 100:
            raise ValueError(f"years must lie in 1-100, got {self.years}")
        if self.paths < 8:
            raise ValueError(f"paths must be >= 8, got {self.paths}")


@dataclass
class ScenarioRun:
    """One scenario's engine result and its price paths (paths, horizon + 1) in CNY/tCO2e."""

    scenario: StressScenario
    result: SimulationResult
    prices: np.ndarray
    horizon_years: int


# ---------------------------------------------------------------------------------------------
# Prices and engine runs
# ---------------------------------------------------------------------------------------------
def scenario_prices(scenario: StressScenario, pms: PriceModelSet, paths: int, years: int, seed: int, *,
                    start_year: int = DEFAULT_START_YEAR, model: str = "cea") -> np.ndarray:
    """Price paths (paths, years + 1), CNY/tCO2e, on common random numbers across scenarios.

    The baseline is the stochastic price model ``model`` started at today's price; a named price
    scenario runs the same draws around its curve (:func:`finance_engine.price.simulate_scenario_paths`);
    shocks then multiply the price from their year on (or in their year only).
    """
    ids = np.arange(paths)
    pm = pms.model(scenario.price_model or model)
    p0 = pms.start_price(scenario.price_model or model)
    if scenario.price_scenario is None:
        p = simulate_price_paths(pm, ids, years, seed, start_price_cny_per_tco2e=p0)
    else:
        p = simulate_scenario_paths(pms.scenario(scenario.price_scenario), pm, ids, years, seed,
                                    base_year=start_year, start_price_cny_per_tco2e=p0)
    p = p[:, :: pm.steps_per_year] if pm.steps_per_year > 1 else p
    factor = np.ones(years + 1)
    for y, change, persistent in scenario.price_shocks:
        if y <= years:
            if persistent:
                factor[y:] *= 1.0 + change
            else:
                factor[y] *= 1.0 + change
    return p * factor[None, :]


def run_scenario(portfolio: Portfolio, params: ModelParameters, scenario: StressScenario, settings: StressSettings,
                 *, horizon_years: int | None = None, extra_levels: Sequence[str] = (),
                 pms: PriceModelSet | None = None, workers: int = 1, chunk_paths: int | None = None,
                 loss_table_level: str | None = None, progress: Callable | None = None,
                 portfolio_override: Portfolio | None = None) -> ScenarioRun:
    """Simulate one scenario (engine + prices) with the settings' seed."""
    pms = pms or load_price_model()
    H = int(horizon_years or settings.years)
    levels = tuple(dict.fromkeys(("portfolio", *settings.levels, *extra_levels)))
    res = simulate(portfolio_override or portfolio, params, years=H, paths=settings.paths, seed=settings.seed,
                   scenario=scenario.name, levels=levels, carbon_method=settings.carbon_method,
                   switches=settings.switches, modifiers=scenario.modifiers(settings.start_year),
                   start_year=settings.start_year, loss_table_level=loss_table_level, workers=workers,
                   chunk_paths=chunk_paths, progress=progress, keep_paths=True,
                   # the stress reads per-path arrays only (compare_runs, the loans, the buffer): no summary tables
                   summarise=False, per_path_budget_mib=STRESS_PER_PATH_BUDGET_MIB / 2)
    prices = scenario_prices(scenario, pms, settings.paths, H, settings.seed, start_year=settings.start_year,
                             model=settings.price_model)
    return ScenarioRun(scenario, res, prices, H)


def metric_paths(run: ScenarioRun, level: str, years: int) -> dict[str, np.ndarray]:
    """Report metrics of a level as arrays (years, paths, groups), tCO2e and CNY."""
    res = run.result
    out = {}
    names = [*REPORT_METRICS, *(m for m in res.metrics if m.startswith("loss_") and m != "loss_tco2e")]
    for m in names:
        out[m] = res.paths_of(m, level)[:years]
    price = run.prices[:, 1:years + 1].T[:, :, None]  # (years, paths, 1)
    for m, src in VALUE_METRICS.items():
        out[m] = out[src] * price
    return out


# ---------------------------------------------------------------------------------------------
# Paired comparison
# ---------------------------------------------------------------------------------------------
#: the parameter sd's interval as :func:`nested_moments` names it (the tables' columns), and the columns of the
#: paired difference's
_PSD_CI = ("parameter_sd_ci95_low", "parameter_sd_ci95_high")
_DIFF_PSD_CI = ("diff_parameter_sd_ci95_low", "diff_parameter_sd_ci95_high")


def _moments(x: np.ndarray, sw: SimulationSwitches) -> dict[str, np.ndarray]:
    """Mean, MC standard error and parameter sd with its 95 % interval over the path axis (axis 1 of (years,
    paths, groups)); with antithetic pairs (the engine's paths ``2j, 2j+1``) the parameter sd is decomposed on
    the pair means, as the engine's summary does (:func:`nested_moments`)."""
    return nested_moments(np.moveaxis(x, 1, 0), sw.parameter_set_size, sw.draws_parameters, sw.antithetic)


def compare_runs(base: ScenarioRun, scen: ScenarioRun, levels: Sequence[str], years: int, start_year: int,
                 switches: SimulationSwitches) -> tuple[pd.DataFrame, pd.DataFrame]:
    """By-year and whole-horizon tables of scenario, baseline and paired difference.

    Columns: scenario, level, group, metric, [year, calendar_year], mean, mc_se, parameter_sd,
    parameter_sd_ci95_low, parameter_sd_ci95_high, p01, p05, p50, p95, p99 (quantiles of the scenario's value
    over paths), baseline_mean, diff_mean, diff_mc_se, diff_parameter_sd, diff_parameter_sd_ci95_low,
    diff_parameter_sd_ci95_high, diff_p05, diff_p95 (horizon only). ``mc_se`` is the Monte Carlo error of the
    mean (more paths narrow it), ``parameter_sd`` the spread from the uncertain growth and peril parameters
    (better data would narrow it); for the difference, how much the scenario's effect itself depends on them.
    Each parameter sd comes with its 95 % interval ``*_ci95_low`` .. ``*_ci95_high``
    (:func:`finance_engine.simulation.summary.parameter_sd_interval`, from the same mean squares: 0 to 0
    without parameter uncertainty, NaN with fewer than two sets of at least two paths); a clipped 0 (*not
    resolved*) has 0 as its lower end and the upper end bounds it. Each quantile ``q`` has its 95 %
    order-statistic interval ``q_ci_low`` .. ``q_ci_high``. Horizon: flows summed over the years, stock at
    the end.

    The by-year table carries the intervals too: their 4 columns add 14 % to its 28 (a stress workbook's cells,
    which the by-year sheet dominates, grow by about as much: 14 % on the demo portfolio's three levels), within
    the 20 % the workbook's size was allowed to grow for them.
    """
    qs = (0.01, 0.05, 0.50, 0.95, 0.99)
    qnames = ("p01", "p05", "p50", "p95", "p99")
    rows_y, rows_h = [], []
    for lv in levels:
        b = metric_paths(base, lv, years)
        s = metric_paths(scen, lv, years)
        labels = base.result.labels[lv]
        for m in s:
            xs, xb = s[m], b[m]
            d = xs - xb
            ms, mb, md = _moments(xs, switches), xb.mean(axis=1), _moments(d, switches)
            Y, G = ms["mean"].shape
            yy, gg = np.meshgrid(np.arange(Y), np.arange(G), indexing="ij")
            m_set = switches.correlated_set_size
            qy = quantiles_with_ci(np.moveaxis(xs, 1, 0), qs, labels=qnames, set_size=m_set)  # each (year, group)
            rows_y.append(pd.DataFrame({
                "scenario": scen.scenario.name, "level": lv, "group": labels[gg.ravel()], "metric": m,
                "year": yy.ravel() + 1, "calendar_year": start_year + yy.ravel(),
                "mean": ms["mean"].ravel(), "mc_se": ms["mc_se"].ravel(), "parameter_sd": ms["parameter_sd"].ravel(),
                **{k: ms[k].ravel() for k in _PSD_CI},
                **{k: v.ravel() for k, v in qy.items()},
                "baseline_mean": mb.ravel(),
                "diff_mean": md["mean"].ravel(), "diff_mc_se": md["mc_se"].ravel(),
                "diff_parameter_sd": md["parameter_sd"].ravel(),
                **{c: md[k].ravel() for c, k in zip(_DIFF_PSD_CI, _PSD_CI)}}))
            if m.startswith("stock"):
                hs, hb = xs[-1:], xb[-1:]
                name = m.replace("stock_", "stock_end_")
            else:
                hs, hb = xs.sum(axis=0, keepdims=True), xb.sum(axis=0, keepdims=True)
                name = f"cumulative_{m}"
            hd = hs - hb
            ms, md = _moments(hs, switches), _moments(hd, switches)
            rows_h.append(pd.DataFrame({
                "scenario": scen.scenario.name, "level": lv, "group": labels, "metric": name,
                "mean": ms["mean"][0], "mc_se": ms["mc_se"][0], "parameter_sd": ms["parameter_sd"][0],
                **{k: ms[k][0] for k in _PSD_CI},
                **quantiles_with_ci(hs[0], qs, labels=qnames, set_size=m_set),  # each (group,)
                "baseline_mean": hb.mean(axis=1)[0],
                "diff_mean": md["mean"][0], "diff_mc_se": md["mc_se"][0], "diff_parameter_sd": md["parameter_sd"][0],
                **{c: md[k][0] for c, k in zip(_DIFF_PSD_CI, _PSD_CI)},
                **quantiles_with_ci(hd[0], (0.05, 0.95), labels=("diff_p05", "diff_p95"), set_size=m_set)}))
    return pd.concat(rows_y, ignore_index=True), pd.concat(rows_h, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Instruments
# ---------------------------------------------------------------------------------------------
@dataclass
class InstrumentOutcome:
    """Loans, policies, insurer and budgets under one scenario (per-path arrays kept for levers)."""

    loans: pd.DataFrame
    policies: pd.DataFrame
    insurer: dict[str, Any]
    budget: dict[str, Any]
    portfolio: dict[str, Any]
    loan_paths: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    insurer_annual_gross: np.ndarray | None = field(default=None, repr=False)  # (years, paths)


def loan_crediting_rules(run: ScenarioRun, terms) -> CreditingRules | None:
    """A loan's own crediting rules on a stress run: the run's (its provenance's) with the loan's
    ``crediting_start_year`` / ``crediting_period_years`` (:meth:`~models.carbon.CreditingRules.with_overrides`);
    None when the loan sets neither (the run's credits are its own)."""
    own = crediting_overrides(terms)
    if not own:
        return None
    prov = run.result.provenance
    return CreditingRules(**prov["crediting"]).with_overrides(int(prov["start_year"]), **own)


def _unit_series(run: ScenarioRun, metric: str, unit: str) -> np.ndarray:
    labels = list(run.result.labels["project_id"])
    g = labels.index(UNIT_PREFIX + unit)
    return run.result.paths_of(metric, "project_id")[:, :, g]  # (H, paths)


def evaluate_instruments(bound: BoundRegistry, run: ScenarioRun, settings: StressSettings, *,
                         pms: PriceModelSet | None = None, issuance: IssuanceRisk | None = None,
                         pledge_rate_cap: float | None = None, price_floor_cny_per_tco2e: float | None = None,
                         extra_policies: Sequence = ()) -> InstrumentOutcome:
    """Loans, policies, the insurer and the public budgets under one scenario run.

    Parameters
    ----------
    pledge_rate_cap : float, optional
        A policy lever: each loan is cut to at most ``cap x`` today's collateral value under the
        baseline-free valuation of this run (loan volume falls, risk falls).
    price_floor_cny_per_tco2e : float, optional
        A state buy-back (收储) floor: pledged credits can always be sold to the state at this
        price, so the bank's cash flows use ``max(price, floor)``; the budget pays the difference
        on the credits it buys (reported as buy-back cost).
    extra_policies : sequence of PolicyEntry-like objects with a ``unit`` attribute
        Added covers (compulsory sink insurance lever).
    """
    pms = pms or load_price_model()
    iss = issuance or load_issuance_risk()
    reg: Registry = bound.registry
    n = settings.paths
    set_size = settings.switches.parameter_set_size
    q_set = settings.switches.correlated_set_size

    def se(per_path: np.ndarray) -> float:
        return mean_se(per_path, set_size)

    def tail(x: np.ndarray, level: float) -> tuple[float, list[float]]:
        """The ``level`` quantile (VaR) and its 95 % order-statistic interval (finance_engine.mc_error)."""
        if x.size == 0:
            return 0.0, [0.0, 0.0]
        return var(x, level), quantile_ci(x, level, set_size=q_set)

    ids = np.arange(n)
    seed = settings.seed
    years = settings.years
    groups = jackknife_groups(ids, q_set)  # the collateral regressions' jackknife (finance_engine.value_regression)
    H = run.horizon_years
    haircut = pms.liquidity_haircut.draws(ids, seed)
    perils = set(run.result.provenance["perils"])
    policies = [(p, bound.unit_of_policy[p.id]) for p in reg.policies] + [(p, p.unit) for p in extra_policies]
    payouts = []
    unit_payout: dict[str, np.ndarray] = {}
    for pol, unit in policies:
        loss = np.zeros((H, n))
        for peril in pol.covered_perils:
            if peril in perils:
                loss += _unit_series(run, f"loss_{peril}_tco2e", unit)
        pay = np.minimum(np.maximum(loss - pol.annual_deductible_tco2e, 0.0) * pol.agreed_price_cny_per_tco2e,
                         pol.annual_limit_cny)
        payouts.append(pay)
        unit_payout[unit] = unit_payout.get(unit, 0.0) + pay
    loan_rows, loan_paths = [], {}
    buyback = np.zeros((years, n))
    for ln in reg.loans:
        unit = bound.unit_of_loan[ln.id]
        terms = ln.terms
        Hl = min(terms.crediting_horizon_years, H)
        stock = _unit_series(run, "stock_tco2e", unit)[:Hl]
        stock0 = float(run.result.start_stock("project_id")[UNIT_PREFIX + unit])
        rules = loan_crediting_rules(run, terms)
        if rules is None:  # the run's rules: its own credits
            raw = _unit_series(run, "credits_issued_tco2e", unit)[:Hl]
            position_rules = run.result.provenance
        else:  # the loan's own crediting start or period: the unit's credits from its stock under them
            raw = rules.issue_from_stock(stock, stock0)[0]
            position_rules = {"crediting": dataclasses.asdict(rules)}  # as a run's provenance records its rules
        issued = iss.realise(raw, ids, seed)
        credits = issued.credits
        prices = run.prices[:, :Hl + 1].T.copy()
        # a local credit (碳普惠, 碳票) sells at the reference price times its spread factor F, drawn once per path
        # and known to the lender: the value at t is F times the regression on the reference price
        # (collateral._spread_regression), as value_collateral values it
        spread = _spread_factors(pms, terms, ids, seed)
        if spread is not None:
            prices = prices * spread[None, :]
        if price_floor_cny_per_tco2e is not None:
            floored = np.maximum(prices, price_floor_cny_per_tco2e)
            gap = (floored - prices)[1:years + 1]
            buyback += gap * credits[:years]
            if (floored > prices).any():
                # the floored price max(F P, floor) is no longer F times the reference price: the value at t is
                # regressed on the floored local price itself (the spread is not factored out); a floor below
                # every price changes nothing
                spread = None
            prices = floored
        money = _money(credits, stock, prices, terms, issued, groups,
                       crediting_position(stock, stock0, None, position_rules), spread)
        v0 = float(money.pv_total.mean())
        amount = terms.amount_cny
        if pledge_rate_cap is not None:
            amount = min(amount, pledge_rate_cap * max(v0, 0.0))
        if amount <= 0:
            loan_rows.append({"loan": ln.id, "unit": unit, "amount_cny": 0.0, "collateral_value_cny": v0})
            continue
        t2 = terms.model_copy(update={"amount_cny": amount})
        T = t2.term_years
        rf = (1 - haircut) * (1 - t2.liquidation_cost_fraction) * (1 + t2.discount_rate) ** -t2.liquidation_time_years
        # the bank's policies: the registry's on the pledged unit are assigned to it (their payouts go to the bank
        # first), and so is a policy in the loan's own terms (value_collateral's; not in the registry insurer's book)
        payout = unit_payout.get(unit)
        if terms.insurance is not None:
            own = _insurance_payout(SimpleNamespace(
                credits=credits, losses={p: _unit_series(run, f"loss_{p}_tco2e", unit)[:Hl]
                                         for p in terms.insurance.covered_perils if p in perils}), terms.insurance)
            payout = own if payout is None else payout + own
        # cash already received into the supervised account is recovered at par, only the credits still to come
        # are sold at the recovery factor; met top-up calls are carried forward on each path (collateral._credit_view)
        cv = _credit_view(money.value_paths, t2, rf, payout, money.received_paths)
        below_any = cv["below"].any(axis=0)
        mom = nested_moments(money.pv_total[:, None], settings.switches.parameter_set_size,
                             settings.switches.draws_parameters, settings.switches.antithetic)
        shortfall = cv["shortfall"]                       # (T, paths)
        # the simulated LGD and its error, as value_collateral (collateral._simulated_lgd: the paths' balances with
        # met top-up calls carried forward; the ratio's error or the regressions' jackknife, the larger)
        jk = _jackknife_figures(money, t2, rf, payout,
                                balance_schedule(t2.model_copy(update={"amount_cny": 1.0}))[:T],
                                (t2.target_shortfall_probability,))
        sim_lgd, sim_lgd_se = _simulated_lgd(cv, jk, set_size)
        # the shortfall at default in a year of the term: per replicate, collateral._shortfall_mean over the years
        short_sum = _shortfall_mean(t2, rf, payout, money.received_paths)

        def mean_short(values, keep, short_sum=short_sum, T=T):
            return short_sum(values, keep) / T
        capped = amount < terms.amount_cny  # cut to the pledge cap x its estimated value
        row = {"loan": ln.id, "unit": unit, "amount_cny": amount, "term_years": T,
               "collateral_value_cny": v0, "collateral_value_mc_se_cny": float(mom["mc_se"][0]),
               # a capped loan has coverage 1 / cap by construction
               "coverage": v0 / amount, "coverage_mc_se": 0.0 if capped else float(mom["mc_se"][0]) / amount,
               # the errors of figures read from the values at t include the regression's (its jackknife)
               "p_value_below_balance_any_time": float(below_any.mean()),
               "p_value_below_balance_any_time_mc_se": _with_jk(se(below_any), money, _below_any_rate(t2)),
               "expected_shortfall_at_default_cny": float(shortfall.mean()),
               "expected_shortfall_at_default_mc_se_cny": _with_jk(se(shortfall.mean(axis=0)), money, mean_short),
               "simulated_lgd": sim_lgd,
               "simulated_lgd_mc_se": sim_lgd_se}
        if t2.borrower_pd is not None:
            m = float(effective_maturity_years(t2))  # of the repayment schedule (BCBS CRE32.46-47), as value_collateral
            lgd = float(foundation_lgd_star(amount, max(v0, 0.0) + t2.forest_right_mortgage_cny).lgd)
            k = float(irb_capital_requirement(t2.borrower_pd, lgd, m))
            row.update({"pd": t2.borrower_pd, "firb_lgd": lgd, "maturity_years": m,
                        "expected_loss_cny": float(expected_loss(t2.borrower_pd, lgd, amount)),
                        "expected_loss_simulated_cny": t2.borrower_pd * sim_lgd * amount,
                        "capital_k": k, "capital_cny": k * amount})
        loan_rows.append(row)
        loan_paths[ln.id] = {"pv": money.pv_total, "below_any": below_any, "value": money.value_paths,
                             "balance": cv["balance"], "balance_paths": cv["balance_paths"], "received": money.received_paths,
                             "capped": capped}
    loans = pd.DataFrame(loan_rows)

    # ---- policies, insurer, budgets ------------------------------------------------------------
    pol_rows = []
    annual = np.zeros((years, n))
    public_payout = np.zeros((years, n))
    premium_total = 0.0
    subsidy_total: dict[str, float] = {}
    for (pol, unit), pay_h in zip(policies, payouts):
        pay = pay_h[:years]
        # no scheme: the insured pays the whole premium (no budget shares it)
        split = split_premium(pol.annual_premium_cny, pol.subsidy_scheme or SubsidyShares(0.0, 0.0, 0.0, 0.0, 1.0))
        annual += pay
        public_payout += split.public_share * pay
        premium_total += pol.annual_premium_cny
        for k, v in split.amounts.items():
            subsidy_total[k] = subsidy_total.get(k, 0.0) + v
        flat = pay.ravel()
        prem = pol.annual_premium_cny
        pay_se = se(pay.mean(axis=0))
        p100, p100_ci = tail(flat, 0.99)
        pol_rows.append({"policy": pol.id, "unit": unit, "annual_premium_cny": prem,
                         "expected_annual_payout_cny": float(flat.mean()),
                         "expected_annual_payout_mc_se_cny": pay_se,
                         "loss_ratio": float(flat.mean() / prem) if prem else np.nan,
                         "loss_ratio_mc_se": pay_se / prem if prem else np.nan,
                         "p_payout_above_premium": float((flat > prem).mean()),
                         "p_payout_above_premium_mc_se": se((pay > prem).mean(axis=0)),
                         "payout_1_in_100_cny": p100, "payout_1_in_100_ci95_low_cny": p100_ci[0],
                         "payout_1_in_100_ci95_high_cny": p100_ci[1],
                         "public_share": split.public_share})
    ins = reg.insurer
    qs = ins.quota_share_cession
    retained = (1 - qs) * annual
    recovery = layer_loss(retained, ins.stop_loss.attachment_cny, ins.stop_loss.limit_cny) \
        if ins.stop_loss is not None else np.zeros_like(retained)
    stop_loss_premium = ins.stop_loss.annual_premium_cny if ins.stop_loss is not None else 0.0
    # the net annual loss counts the reinsurance premium paid in the year, as the quote's net loss does
    # (finance_engine.insurance.reinsurance): the stop-loss's recoveries are bought
    net = retained - recovery + stop_loss_premium
    net_premium = premium_total * (1 - qs)
    result = net - net_premium  # annual underwriting loss (+) or gain (-), before expenses
    flat_g, flat_n = annual.ravel(), net.ravel()
    cum_result = result.sum(axis=0)
    gross_se = se(annual.mean(axis=0))
    worst_cumulative = np.cumsum(result, axis=0).max(axis=0)  # per path: the deepest cumulative underwriting loss
    exhausted = (worst_cumulative > ins.capital_cny if np.isfinite(ins.capital_cny) else np.zeros(n, dtype=bool))
    g100, g100_ci = tail(flat_g, 0.99)
    n100, n100_ci = tail(flat_n, 0.99)
    n200, n200_ci = tail(flat_n, 0.995)
    c100, c100_ci = tail(worst_cumulative, 0.99)
    insurer = {
        "policies": len(policies), "annual_premium_cny": premium_total,
        "expected_annual_gross_loss_cny": float(flat_g.mean()), "expected_annual_gross_loss_mc_se_cny": gross_se,
        "gross_loss_ratio": float(flat_g.mean() / premium_total) if premium_total else None,
        "gross_loss_ratio_mc_se": gross_se / premium_total if premium_total else None,
        "gross_annual_loss_1_in_100_cny": g100, "gross_annual_loss_1_in_100_ci95_low_cny": g100_ci[0],
        "gross_annual_loss_1_in_100_ci95_high_cny": g100_ci[1],
        "stop_loss_premium_cny": stop_loss_premium,
        "expected_annual_net_loss_cny": float(flat_n.mean()),
        "expected_annual_net_loss_mc_se_cny": se(net.mean(axis=0)),
        "net_annual_loss_1_in_100_cny": n100, "net_annual_loss_1_in_100_ci95_low_cny": n100_ci[0],
        "net_annual_loss_1_in_100_ci95_high_cny": n100_ci[1],
        "net_annual_loss_1_in_200_cny": n200, "net_annual_loss_1_in_200_ci95_low_cny": n200_ci[0],
        "net_annual_loss_1_in_200_ci95_high_cny": n200_ci[1],
        "expected_reinsurance_recovery_cny": float((qs * annual + recovery).mean()),
        "expected_reinsurance_recovery_mc_se_cny": se((qs * annual + recovery).mean(axis=0)),
        # the net loss (with the stop-loss premium) above the net premium: an underwriting loss in the year
        "p_annual_net_loss_above_net_premium": float((result > 0).mean()),
        "p_annual_net_loss_above_net_premium_mc_se": se((result > 0).mean(axis=0)),
        "capital_cny": ins.capital_cny,
        "p_capital_exhausted_over_horizon": float(exhausted.mean()),
        "p_capital_exhausted_over_horizon_mc_se": se(exhausted),
        "max_cumulative_underwriting_loss_1_in_100_cny": c100,
        "max_cumulative_underwriting_loss_1_in_100_ci95_low_cny": c100_ci[0],
        "max_cumulative_underwriting_loss_1_in_100_ci95_high_cny": c100_ci[1],
        "expected_cumulative_result_cny": float(-cum_result.mean()),
        "expected_cumulative_result_mc_se_cny": se(cum_result),
    }
    public_prem = sum(v for k, v in subsidy_total.items() if k != "insured")
    flat_pp = public_payout.ravel()
    bb = buyback.ravel()
    pp100, pp100_ci = tail(flat_pp, 0.99)
    bb100, bb100_ci = tail(bb, 0.99)
    budget = {
        "annual_premium_subsidy_cny": public_prem,
        "annual_premium_subsidy_by_budget_cny": {k: v for k, v in subsidy_total.items() if k != "insured"},
        "expected_annual_buyback_cost_cny": float(bb.mean()),
        "expected_annual_buyback_cost_mc_se_cny": se(buyback.mean(axis=0)),
        "buyback_cost_1_in_100_cny": bb100, "buyback_cost_1_in_100_ci95_low_cny": bb100_ci[0],
        "buyback_cost_1_in_100_ci95_high_cny": bb100_ci[1],
        # the budgets' cash: subsidies (fixed) and buy-back; the insurer pays the claims
        "expected_annual_total_cny": float(public_prem + bb.mean()),
        "expected_annual_total_mc_se_cny": se(buyback.mean(axis=0)),
        "total_1_in_100_cny": float(public_prem + bb100),
        "total_1_in_100_ci95_low_cny": public_prem + bb100_ci[0],
        "total_1_in_100_ci95_high_cny": public_prem + bb100_ci[1],
        # what the subsidies bought: the payouts in proportion to the public share of each premium (not a cost)
        "expected_annual_publicly_funded_payout_cny": float(flat_pp.mean()),
        "expected_annual_publicly_funded_payout_mc_se_cny": se(public_payout.mean(axis=0)),
        "publicly_funded_payout_1_in_100_cny": pp100, "publicly_funded_payout_1_in_100_ci95_low_cny": pp100_ci[0],
        "publicly_funded_payout_1_in_100_ci95_high_cny": pp100_ci[1],
        "note": "total = premium subsidies + buy-back cost (the insurer pays the claims); publicly funded payout "
                "= public share of each premium x its payouts, what the subsidies bought, not added to the total; "
                "mc_se: Monte Carlo standard error; ci95: order-statistic interval of a 1-in-N figure",
    }
    port: dict[str, Any] = {}
    if not loans.empty and "collateral_value_cny" in loans:
        active = loans[loans.amount_cny > 0]
        amt = float(active.amount_cny.sum())
        port = {"loans": int(len(active)), "loan_volume_cny": amt,
                "collateral_value_cny": float(active.collateral_value_cny.sum()),
                "collateral_coverage": float(active.collateral_value_cny.sum() / amt) if amt else None}
        if amt:
            # R = (F + C) / (A_free + cap C): a capped loan's amount moves with its own value estimate, so
            # (delta method) dR/dF = 1/A and dR/dC = (1 - cap R)/A; with every loan capped R = 1/cap, no error
            r_cov = port["collateral_coverage"]
            weight = {l: 1.0 - pledge_rate_cap * r_cov if loan_paths[l]["capped"] else 1.0 for l in active.loan}
            port["collateral_coverage_mc_se"] = (0.0 if all(loan_paths[l]["capped"] for l in active.loan) else
                                                 se(sum(weight[l] * loan_paths[l]["pv"] for l in active.loan)) / amt)
            below = sum(loan_paths[l]["below_any"] * a for l, a in zip(active.loan, active.amount_cny))
            port["share_of_lending_with_collateral_below_balance"] = float(np.mean(below) / amt)
            port["share_of_lending_with_collateral_below_balance_mc_se"] = se(below / amt)
            b100, b100_ci = tail(below / amt, 0.99)
            port["share_of_lending_with_collateral_below_balance_1_in_100"] = b100
            key = "share_of_lending_with_collateral_below_balance_1_in_100"
            port[f"{key}_ci95_low"], port[f"{key}_ci95_high"] = b100_ci
        if "expected_loss_cny" in active:
            port["bank_expected_loss_cny"] = float(active.expected_loss_cny.fillna(0).sum())
            port["bank_capital_cny"] = float(active.capital_cny.fillna(0).sum())
    return InstrumentOutcome(loans, pd.DataFrame(pol_rows), insurer, budget, port, loan_paths, annual)


def pledged_footprints(bound: BoundRegistry, params: ModelParameters, scenario: StressScenario,
                       settings: StressSettings, *, workers: int = 1) -> pd.DataFrame:
    """Share of the pledged stock inside one fire, typhoon or ice-storm footprint.

    The pledged parcels are simulated on their own with an event loss table per parcel (fire,
    typhoon and ice-storm draws are keyed by parcel, county and path, so the pledged parcels are hit
    exactly as in the full run; pine wilt, not used here, spreads over the region's landscape, the same
    in both). For each
    event the share of today's pledged stock in the parcels it hits is computed; reported per peril:
    the largest share, the 1-in-100 annual largest share, and P(an event covers > 10 %).
    """
    units = np.concatenate([bound.unit_parcels[u] for u in sorted(set(bound.unit_of_loan.values()))]) \
        if bound.unit_of_loan else np.empty(0, dtype=np.intp)
    if units.size == 0:
        return pd.DataFrame()
    mask = np.zeros(bound.portfolio.n_parcels, dtype=bool)
    mask[units] = True
    sub = bound.portfolio.subset(mask, params)
    sim = ForestSimulator(params, sub, carbon_method=settings.carbon_method)
    co2 = params.file.carbon.co2_per_c.value
    stock0 = pd.Series(sim.initial_carbon_tc_per_ha() * sub.area_ha * co2, index=sub.parcel_id)
    paths = min(settings.paths, MAX_FOOTPRINT_PATHS)
    res = simulate(sub, params, years=settings.years, paths=paths, seed=settings.seed, scenario=scenario.name,
                   levels=("portfolio",), switches=settings.switches, modifiers=scenario.modifiers(settings.start_year),
                   start_year=settings.start_year, loss_table_level="parcel", workers=workers, keep_paths=False)
    elt = res.elt
    elt = elt[elt.peril.astype(str).isin(FOOTPRINT_PERILS)]
    total = float(stock0.sum())
    rows = []
    for peril in FOOTPRINT_PERILS:
        e = elt[elt.peril.astype(str) == peril]
        if e.empty:
            rows.append({"scenario": scenario.name, "peril": peril, "events": 0, "max_share": 0.0,
                         "annual_max_share_1_in_100": 0.0, "p_event_over_10pct_per_year": 0.0, "paths": paths})
            continue
        share = stock0.reindex(e.group.to_numpy()).to_numpy() / total
        ev = pd.DataFrame({"sim_year": e.sim_year.to_numpy(), "event_id": e.event_id.to_numpy(), "share": share})
        per_event = ev.groupby(["sim_year", "event_id"], sort=False)["share"].sum()
        annual_max = np.zeros(paths * settings.years)
        mx = per_event.groupby(level=0).max()
        annual_max[mx.index.to_numpy()] = mx.to_numpy()
        rows.append({"scenario": scenario.name, "peril": peril, "events": int(per_event.size),
                     "max_share": float(per_event.max()),
                     "annual_max_share_1_in_100": var(annual_max, 0.99),
                     "p_event_over_10pct_per_year": float((annual_max > 0.10).mean()), "paths": paths})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# The whole stress test
# ---------------------------------------------------------------------------------------------
@dataclass
class StressResult:
    """Every table of a stress test, tidy, plus provenance.

    Attributes
    ----------
    scenarios : DataFrame
        One row per scenario: name, version, title, sha256, what it changes.
    by_year, horizon : DataFrame
        Scenario vs baseline by level, group, metric (and year); see :func:`compare_runs`.
    portfolio : DataFrame
        Per scenario: the portfolio's horizon figures and the instruments' headline numbers.
    loans, policies, insurer, budget, footprints : DataFrame
        Per scenario (empty without a registry).
    concentration : DataFrame
        Per scenario, the counties and townships with the largest extra loss (tCO2e and % of stock).
    """

    settings: StressSettings
    scenarios: pd.DataFrame
    by_year: pd.DataFrame
    horizon: pd.DataFrame
    portfolio: pd.DataFrame
    concentration: pd.DataFrame
    loans: pd.DataFrame
    policies: pd.DataFrame
    insurer: pd.DataFrame
    budget: pd.DataFrame
    footprints: pd.DataFrame
    provenance: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"scenarios": self.scenarios, "portfolio": self.portfolio, "horizon": self.horizon,
               "by_year": self.by_year, "concentration": self.concentration, "loans": self.loans,
               "policies": self.policies, "insurer": self.insurer, "budget": self.budget,
               "footprints": self.footprints}
        return {k: v for k, v in out.items() if v is not None and not v.empty}

    def level(self, level: str, metric: str = "cumulative_loss_tco2e") -> pd.DataFrame:
        h = self.horizon
        return h[(h.level == level) & (h.metric == metric)].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        return {"provenance": self.provenance, "notes": self.notes,
                **{k: _records(v) for k, v in self.tables().items()}}


def stress_horizon(years: int, registry: Registry | None) -> int:
    """The years a stress test simulates: the reported ``years``, or the loans' crediting horizon when longer
    (their collateral is valued over it)."""
    if registry is not None and registry.loans:
        return max(int(years), max(ln.terms.crediting_horizon_years for ln in registry.loans))
    return int(years)


def timing_notes(scenario: StressScenario, years: int, horizon: int) -> list[str]:
    """What a scenario's timing leaves out: a forced event or a price shock after the run's last simulated year
    (``horizon``) changes nothing; a forced event after the reported ``years`` shows only in the loans'
    collateral. Known before the run (the CLI says it first)."""
    out = []
    for y0, peril, _ in scenario.forced_events:
        if y0 >= horizon:
            out.append(f"{scenario.name}: forced {peril} in year {y0 + 1} lies beyond the run's {horizon} simulated "
                       "years (hit nothing)")
        elif y0 >= years:
            out.append(f"{scenario.name}: forced {peril} in year {y0 + 1} lies beyond the {years} reported years "
                       f"(it shows only in the loans' collateral, simulated over {horizon} years)")
    for y1, _, _ in scenario.price_shocks:
        if y1 > horizon:
            out.append(f"{scenario.name}: the price shock in year {y1} lies beyond the run's {horizon} simulated "
                       "years (changed nothing)")
    return out


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
            for r in df.to_dict(orient="records")]


def _resolve(s: str | StressScenario) -> StressScenario:
    return s if isinstance(s, StressScenario) else load_scenario(s)


def _portfolio_row(name: str, horizon: pd.DataFrame, inst: InstrumentOutcome | None) -> dict[str, Any]:
    h = horizon[(horizon.level == "portfolio") & (horizon.scenario == name)].set_index("metric")
    row: dict[str, Any] = {"scenario": name}
    for m in ("stock_end_tco2e", "cumulative_sink_tco2e", "cumulative_credits_issued_tco2e", "cumulative_loss_tco2e",
              "cumulative_loss_value_cny", "cumulative_credits_value_cny", "stock_end_value_cny"):
        if m in h.index:
            row[m] = float(h.at[m, "mean"])
            row[f"{m}_mc_se"] = float(h.at[m, "mc_se"])
            row[f"{m}_parameter_sd"] = float(h.at[m, "parameter_sd"])
            for k in _PSD_CI:
                row[f"{m}_{k}"] = float(h.at[m, k])
            row[f"{m}_diff"] = float(h.at[m, "diff_mean"])
            row[f"{m}_diff_mc_se"] = float(h.at[m, "diff_mc_se"])
            row[f"{m}_diff_parameter_sd"] = float(h.at[m, "diff_parameter_sd"])
            for k in _DIFF_PSD_CI:
                row[f"{m}_{k}"] = float(h.at[m, k])
    if inst is not None:
        row.update({f"bank_{k}" if not k.startswith("bank") else k: v for k, v in inst.portfolio.items()})
        for k in ("expected_annual_gross_loss_cny", "expected_annual_gross_loss_mc_se_cny", "gross_loss_ratio",
                  "gross_loss_ratio_mc_se", "net_annual_loss_1_in_100_cny", "net_annual_loss_1_in_100_ci95_low_cny",
                  "net_annual_loss_1_in_100_ci95_high_cny",
                  "p_capital_exhausted_over_horizon", "p_capital_exhausted_over_horizon_mc_se"):
            row[f"insurer_{k}"] = inst.insurer.get(k)
        for k in ("expected_annual_total_cny", "expected_annual_total_mc_se_cny", "total_1_in_100_cny",
                  "total_1_in_100_ci95_low_cny", "total_1_in_100_ci95_high_cny"):
            row[f"budget_{k}"] = inst.budget.get(k)
    return row


def _concentration(horizon: pd.DataFrame, initial_stock: pd.DataFrame, top: int = 5) -> pd.DataFrame:
    """The ``top`` counties and townships by extra loss over the baseline, per scenario."""
    rows = []
    for (scn, lv), g in horizon[horizon.level.isin(["county", "township"])].groupby(["scenario", "level"], sort=False):
        loss = g[g.metric == "cumulative_loss_tco2e"].set_index("group")
        stock = start_stock_of(initial_stock, lv)
        d = loss.assign(extra_loss_share_of_stock=loss.diff_mean / stock.reindex(loss.index))
        key = "mean" if scn == "baseline" else "diff_mean"  # the baseline: who loses most at all
        d = d.sort_values(key, ascending=False).head(top).reset_index()
        for rank, r in enumerate(d.itertuples(), start=1):
            rows.append({"scenario": scn, "level": lv, "rank": rank, "group": r.group,
                         "loss_tco2e": r.mean, "baseline_loss_tco2e": r.baseline_mean,
                         "extra_loss_tco2e": r.diff_mean, "extra_loss_mc_se": r.diff_mc_se,
                         "extra_loss_share_of_stock": r.extra_loss_share_of_stock})
    return pd.DataFrame(rows)


def check_loan_price_series(registry: Registry, settings: StressSettings) -> None:
    """A stress test values every loan on its own price path (the run's series, moved by each scenario), so a
    loan whose terms name another series or a price scenario would be valued on prices it did not ask for:
    refused, naming the loan's field (the collateral valuation of such a loan is :func:`value_collateral`'s)."""
    for i, ln in enumerate(registry.loans):
        t = ln.terms
        if t.price_model != settings.price_model:
            raise RegistryError(f"loans.{i}.terms.price_model: {t.price_model!r} is not the stress test's "
                                f"price series {settings.price_model!r}: a stress test values every loan on its "
                                f"own price path (run the test with that series, or value the loan alone)")
        if t.price_scenario is not None:
            raise RegistryError(f"loans.{i}.terms.price_scenario: {t.price_scenario!r}: a stress test moves "
                                f"prices by its scenarios, not by a loan's own price scenario")


def run_stress_test(portfolio: Portfolio, params: ModelParameters, scenarios: Iterable[str | StressScenario], *,
                    registry: Registry | None = None, settings: StressSettings | None = None,
                    pms: PriceModelSet | None = None, workers: int = 1, chunk_paths: int | None = None,
                    footprints: bool = True, progress: Callable[[str], None] | None = None,
                    on_progress: Callable[[Progress], None] | None = None) -> StressResult:
    """Run each scenario against the baseline on common random numbers.

    Parameters
    ----------
    portfolio, params :
        Parcels and their parameter set.
    scenarios : iterable of names, paths or StressScenario
        The baseline is always run (first); naming it again adds its (zero-difference) row.
    registry : Registry, optional
        Loans and policies against the portfolio; their units are credited as projects.
    settings : StressSettings
        Horizon, paths, seed, account levels. The engine runs over ``max(years, crediting horizon of
        every loan)`` years so collateral values see the whole crediting stream; every other table
        covers ``years``.
    progress : callable, optional
        Called with a line of text as each run starts (the CLI prints them).
    on_progress : callable, optional
        Called with a :class:`~finance_engine.simulation.Progress` after each chunk of the scenario
        runs, counted across all of them (the baseline and one run per scenario, of equal size):
        ``chunks_done`` of ``runs x chunks of a run``, and the ETA of the whole. Observation only.
    """
    t0 = time.perf_counter()
    st = settings or StressSettings()
    pms = pms or load_price_model()
    iss = load_issuance_risk()
    say = progress or (lambda msg: None)
    wanted = [_resolve(s) for s in scenarios]
    base = load_scenario("baseline")
    if registry is not None:
        check_loan_price_series(registry, st)
    bound = bind_registry(registry, portfolio, params) if registry is not None and (registry.loans or registry.policies) else None
    run_pf = bound.portfolio if bound is not None else portfolio
    H = stress_horizon(st.years, registry)
    extra = ("project_id",) if bound is not None else ()
    # every path of every level is compared with the baseline's: refuse before any run what would not keep them
    require_per_path(run_pf, params, ("portfolio", *st.levels, *extra), H, st.paths, switches=st.switches,
                     per_path_budget_mib=STRESS_PER_PATH_BUDGET_MIB, runs=2, what="the stress test")
    notes: list[str] = []
    order = [base] + [s for s in wanted if s.sha256 != base.sha256 or s.name != base.name]
    runs = RunsProgress(on_progress, len(order))  # one engine run per entry (the baseline's is shared)
    say(f"baseline: {st.paths} paths x {H} years")
    base_run = run_scenario(run_pf, params, base, st, horizon_years=H, extra_levels=extra, pms=pms, workers=workers,
                            chunk_paths=chunk_paths, progress=runs.of(0))
    ys, hs, prow, loans, pols, insr, bud, fps, meta = [], [], [], [], [], [], [], [], []
    for k, s in enumerate(order):
        say(f"scenario {s.name}")
        run = base_run if s is base else run_scenario(run_pf, params, s, st, horizon_years=H, extra_levels=extra,
                                                      pms=pms, workers=workers, chunk_paths=chunk_paths,
                                                      progress=runs.of(k))
        by, hz = compare_runs(base_run, run, st.levels, st.years, st.start_year, st.switches)
        ys.append(by)
        hs.append(hz)
        inst = None
        if bound is not None:
            inst = evaluate_instruments(bound, run, st, pms=pms, issuance=iss)
            for df, out in ((inst.loans, loans), (inst.policies, pols)):
                if not df.empty:
                    out.append(df.assign(scenario=s.name))
            insr.append({"scenario": s.name, **inst.insurer})
            bud.append({"scenario": s.name, **{k: v for k, v in inst.budget.items() if not isinstance(v, dict)},
                        **{f"subsidy_{k}_cny": v for k, v in inst.budget["annual_premium_subsidy_by_budget_cny"].items()}})
            if footprints and registry.loans:
                fps.append(pledged_footprints(bound, params, s, st, workers=workers))
        prow.append(_portfolio_row(s.name, hz, inst))
        # the areas a forced event names that hold no parcel: a county the portfolio lacks, or a misspelt one
        notes += forced_area_notes(s, run_pf, params, H)
        notes += timing_notes(s, st.years, H)
        d = s.describe()
        meta.append({"scenario": s.name, "version": s.version, "title": s.title, "sha256": s.sha256,
                     "source": s.source, "confidence": s.confidence,
                     "changes": "; ".join(f"{k}: {v}" for k, v in d.items()
                                          if k in ("hazard", "severity", "growth", "forced_events", "climate_pathway",
                                                   "price_scenario", "price_shocks") and v)})
    by_year = pd.concat(ys, ignore_index=True)
    horizon = pd.concat(hs, ignore_index=True)
    prov = {
        "model_version": MODEL_VERSION, "code_version": code_version(),
        # not the climate pathway: a scenario may change it (the scenarios table says each one's)
        **carried_provenance(base_run.result.provenance,
                             tuple(k for k in CARRIED_PROVENANCE if k != "climate_pathway")),
        "seed": st.seed, "paths": st.paths, "years": st.years, "engine_horizon_years": H,
        "levels": list(st.levels), "price_model": st.price_model, "price_model_sha256": pms.sha256,
        "issuance_risk_sha256": iss.sha256, "portfolio": portfolio.source, "parcels": portfolio.n_parcels,
        "scenario_sha256": {m["scenario"]: m["sha256"] for m in meta},
        "method": "paired per-path differences on common random numbers (same seed for every scenario)",
        # what was drawn: without parameter uncertainty every parameter_sd column is 0 by construction,
        # which readers must tell from a clipped estimate
        "switches": switches_dict(st.switches),
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }
    return StressResult(
        settings=st, scenarios=pd.DataFrame(meta), by_year=by_year, horizon=horizon, portfolio=pd.DataFrame(prow),
        concentration=_concentration(horizon, base_run.result.initial_stock), loans=pd.concat(loans, ignore_index=True) if loans else pd.DataFrame(),
        policies=pd.concat(pols, ignore_index=True) if pols else pd.DataFrame(), insurer=pd.DataFrame(insr),
        budget=pd.DataFrame(bud), footprints=pd.concat(fps, ignore_index=True) if fps else pd.DataFrame(),
        provenance=prov, notes=notes)


__all__ = ["DEFAULT_LEVELS", "InstrumentOutcome", "RunsProgress", "ScenarioRun", "StressResult", "StressSettings", "compare_runs",
           "evaluate_instruments", "metric_paths", "pledged_footprints", "run_scenario", "run_stress_test",
           "scenario_prices", "stress_horizon", "timing_notes"]
