"""Collateral valuation of carbon-pledge loans (林业碳汇质押贷款) for banks.

Banks value a pledge today as "expected sink x reference price x pledge rate". This module tells a
credit officer what the pledged carbon is worth now, how that value can move over the loan's life,
and how much it is safe to lend.

Method
------
1. **Physical paths.** The pledged parcels (a list of ids, or a ``project_id``) are simulated with the
   Monte Carlo engine as one crediting unit over the crediting horizon ``H`` (>= the loan term):
   growth, every peril and the crediting rules give the credits ``Q[y, p]`` issued at the end of year
   ``y`` on path ``p``, and the pledged stock ``S[y, p]``.
2. **Issuance risk** (:mod:`finance_engine.issuance`) turns ``Q`` into realised issuance.
3. **Price paths** ``P[t, p]`` (CNY/tCO2e, :mod:`finance_engine.price`, the same path ids) times the
   local-credit spread give the cash flow ``CF[y, p] = Q[y, p] P[y+1, p]`` at ``t = y + 1``.
4. **Value today** ``V_0 = E[sum_y CF_y (1 + r)^-(y+1)]`` with its Monte Carlo standard error (paths in
   parameter sets, see :mod:`finance_engine.simulation.summary`).
5. **Value at year t of the term** = proceeds already received into the supervised account (accrued
   at ``r``) + the conditional expectation of the remaining discounted cash flows given the state at
   ``t``. The conditional expectation is a least-squares regression across paths on the state at ``t``
   (:mod:`finance_engine.value_regression`): a piecewise-linear spline in the pledged stock times 1
   and the price, the price's square, and with issuance risk the credits pending issuance and whether
   the methodology has changed -- the regression approach of Longstaff & Schwartz (2001) used for
   exposure simulation in bank risk engines (ORE's "American Monte Carlo"). The figures read from
   these values carry the regression's own sampling error too (a delete-a-group jackknife).
6. **Credit view.** The loan balance ``b_t`` follows its amortisation. LTV ``b_t / V_t``;
   the probability that ``V_t < b_t`` per year and at any time; top-up calls when LTV exceeds the
   trigger (a call restores LTV to the pledge rate); the largest loan whose shortfall probability is
   at most ``target`` (``L* = q_target(min_t V_t / beta_t)``, ``beta_t`` the balance per unit of
   loan); with a borrower PD, Basel foundation-IRB ``LGD*`` with carbon as "other physical
   collateral" (CRE32: LGD_S 25 %, haircut 40 %), EL = PD x LGD x EAD and IRB capital (Vasicek K, RWA),
   next to the simulated loss given default on a forced sale.
7. **What drives value down**: each driver (price volatility, each peril, issuance, growth
   uncertainty) switched off in turn under common random numbers; the value of an assigned sink-loss
   policy (its payouts go to the bank first); sensitivities to the price level and volatility.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from finance_engine._credit_kernels import replicate_credit_sums
from finance_engine.credit import expected_loss, foundation_lgd_star, irb_capital_requirement, irb_rwa
from finance_engine.issuance import IssuanceRisk, RealisedIssuance, load_issuance_risk
from finance_engine.loan_terms import (  # re-exported: the terms are part of this module's interface
    AssignedInsurance,
    LoanTerms,
    LoanTermsError,
    balance_schedule,
    check_crediting_terms,
    check_loan_terms,
    crediting_overrides,
    effective_maturity_years,
    unknown_price_names,
)
from finance_engine.mc_error import linear_quantiles, mean_se, mean_ses, quantiles_and_cis, tail_mean_se
from finance_engine.price import (
    PriceModelParams,
    PriceModelSet,
    load_price_model,
    simulate_price_paths_by_volatility,
    simulate_scenario_paths_by_volatility,
)
from finance_engine.simulation import Progress, RunsProgress, balanced_chunk_paths, simulate, useful_threads
from finance_engine.simulation.result import carried_provenance, code_version
from finance_engine.simulation.summary import nested_moments
from finance_engine.value_regression import (
    JACKKNIFE_GROUPS,
    conditional_values,
    jackknife_groups,
    jackknife_se,
    jackknife_t,
)
from models import MODEL_VERSION
from models.carbon import CreditingRules
from models.dynamics import SimulationSwitches
from models.parameters import ModelParameters
from models.perils import peril_classes
from models.portfolio import Portfolio

PLEDGE_PROJECT = "__pledge__"
#: the fewest paths a valuation (and each driver's run) takes
MIN_PATHS = 32
#: what the collateral VaR and ES measure
VAR_BASIS = ("today's value less the 5 % (1 %) quantile of the end-of-term value discounted to today at the "
             "discount rate (ES: less the mean below it): both in today's money")
CREDIT_ENHANCEMENT_THRESHOLD = 0.20  # carbon below 20 % of the exposure is a credit enhancement only


@dataclass
class CollateralValuation:
    """Everything a credit officer needs about one pledge. Money in CNY, carbon in tCO2e.

    ``by_year`` row ``t`` compares the collateral value at the *end* of loan year ``t`` with the
    balance outstanding *during* that year (before the year-end instalment): the exposure the bank
    has if the borrower defaults in year ``t``.
    """

    provenance: dict[str, Any]
    terms: dict[str, Any]
    value_today: dict[str, Any]
    by_year: pd.DataFrame
    risk: dict[str, Any]
    sizing: dict[str, Any]
    credit: dict[str, Any] | None
    security: dict[str, Any]
    drivers: pd.DataFrame | None
    sensitivities: pd.DataFrame | None
    paths: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provenance": self.provenance, "terms": self.terms, "value_today": self.value_today,
            "by_year": self.by_year.to_dict(orient="records"), "risk": self.risk, "sizing": self.sizing,
            "credit": self.credit, "security": self.security,
            "drivers": None if self.drivers is None else self.drivers.to_dict(orient="records"),
            "sensitivities": None if self.sensitivities is None else self.sensitivities.to_dict(orient="records"),
        }


@dataclass(frozen=True)
class _Physical:
    credits: np.ndarray      # (H, N) simulated issuance, tCO2e
    stock: np.ndarray        # (H, N) pledged stock at year end, tCO2e
    losses: dict[str, np.ndarray]  # peril -> (H, N) tCO2e
    stock0: float
    provenance: dict[str, Any]


def select_pledged(portfolio: Portfolio, params: ModelParameters, parcel_ids=None,
                   project_id: str | None = None) -> Portfolio:
    """The pledged parcels as a portfolio of their own, credited as one project: every parcel of
    ``project_id``, or the ``parcel_ids`` listed (not both), or with neither the whole portfolio."""
    if parcel_ids is not None and project_id is not None:
        raise LoanTermsError("give parcel_ids or project_id, not both (neither: the whole portfolio is pledged)")
    if parcel_ids is None and project_id is None:
        mask = np.ones(portfolio.n_parcels, dtype=bool)
    elif project_id is not None:
        mask = (portfolio.frame["project_id"] == project_id).to_numpy()
        if not mask.any():
            raise LoanTermsError(f"project_id {project_id!r} has no parcels in the portfolio")
    else:
        ids = [str(x) for x in parcel_ids]
        if not ids:
            raise LoanTermsError("parcel_ids is empty")
        unknown = sorted(set(ids) - set(portfolio.parcel_id))
        if unknown:
            raise LoanTermsError(f"parcels not in the portfolio: {unknown[:20]}"
                                 + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
        mask = np.isin(portfolio.parcel_id, np.asarray(ids, dtype=object))
    return portfolio.select(mask, project_id=PLEDGE_PROJECT)


def _simulate_physical(pledged: Portfolio, params: ModelParameters, years: int, paths: int, seed: int,
                       switches: SimulationSwitches, workers: int, chunk_paths: int | None,
                       scheduler: str | None = None, progress: Callable[[Progress], None] | None = None,
                       cancel: Callable[[], bool] | None = None, crediting: dict[str, int] | None = None) -> _Physical:
    """The pledged parcels' engine run: credits, stock and losses per path (``crediting``: the loan's overrides of
    the crediting rules, :func:`~finance_engine.loan_terms.crediting_overrides`)."""
    if chunk_paths is None:
        if scheduler is None:  # a small loan runs faster as one chunk on one thread than on two
            workers = useful_threads(paths, pledged.n_parcels, workers)
        chunk_paths = balanced_chunk_paths(paths, pledged.n_parcels, workers)
    # a pledge is small and the officer waits: threads in this process by default, no worker start-up
    # (or the warm pool's processes a long-lived caller asks for)
    res = simulate(pledged, params, years=years, paths=paths, seed=seed, levels=("portfolio",),
                   switches=switches, workers=workers, chunk_paths=chunk_paths, scenario="collateral",
                   summarise=False, scheduler=(scheduler or "threads") if workers > 1 else None, progress=progress,
                   cancel=cancel, crediting=crediting)
    credits = res.paths_of("credits_issued_tco2e")[..., 0]
    stock = res.paths_of("stock_tco2e")[..., 0]
    losses = {m[5:-6]: res.paths_of(m)[..., 0] for m in res.metrics
              if m.startswith("loss_") and m != "loss_tco2e"}
    stock0 = float(res.start_stock("portfolio").iloc[0])
    return _Physical(credits, stock, losses, stock0, res.provenance)


def loss_factor(phys: "_Physical", path_ids: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """A standard-normal factor per (path, year) that ranks the pledged forest's annual loss.

    Normal scores ``Phi^-1((rank - 1/2) / n)`` of the rank of each path's loss within its year: a high
    factor is a high loss. Fed to the price model with a negative correlation, prices fall in bad loss
    years. Ties (most path-years lose nothing) are broken at random by keyed uniforms (stream
    ``collateral.loss_factor.tie``, keyed by path id and year, so a path's place among its ties does not
    depend on the chunks or the order of the paths): every score ``Phi^-1((i - 1/2) / n)`` is used once,
    so in each year the factor is the normal's quantiles (mean 0, variance 1 up to O(log n / n)) and the
    price shock ``rho f + sqrt(1 - rho^2) e`` stays standard normal. (Ties at their mid-rank had given
    the 79 % of path-years with no loss one score: the factor's variance was 0.49 and at ``rho = -0.9``
    the price shock's sd fell from 1 to 0.82.) Returns shape (N, H), as the price model's
    ``common_factor`` expects; ``path_ids`` default ``0..N-1``.
    """
    from scipy.special import ndtri

    from models.rng import KeyedRandom

    loss = sum(phys.losses.values()) if phys.losses else np.zeros_like(phys.credits)  # (H, N)
    H, n = loss.shape
    ids = np.arange(n, dtype=np.int64) if path_ids is None else np.asarray(path_ids, dtype=np.int64)
    rnd = KeyedRandom(int(seed), ids, np.empty(0, np.uint64))
    scores = ndtri((np.arange(n) + 0.5) / n)
    out = np.empty((n, H))
    for y in range(H):
        order = np.lexsort((rnd.path_uniform("collateral.loss_factor.tie", y), loss[y]))  # by loss, then the tie key
        out[order, y] = scores
    return out


def _spread_factors(pms: PriceModelSet, terms: "LoanTerms", ids: np.ndarray, seed: int) -> np.ndarray | None:
    """The local credit's spread factor ``F`` per path (:class:`~finance_engine.price.LocalCreditSpread`), or
    None for CCER (valued on the reference price itself)."""
    return pms.spreads[terms.credit_type].factors(ids, seed) if terms.credit_type != "ccer" else None


def _running_volatility(pms: PriceModelSet, model: PriceModelParams, terms: "LoanTerms") -> float:
    """The volatility the price runs at: the scenario's own, if it sets one, else the model's (1/sqrt(year))."""
    if terms.price_scenario:
        own = pms.scenario(terms.price_scenario).volatility_per_sqrt_year
        if own is not None:
            return float(own)
    return model.volatility_per_sqrt_year


def _mean_holding_factor(pms: PriceModelSet, model: PriceModelParams, terms: "LoanTerms", years: int,
                         volatility_factor: float, jumps: bool = True) -> np.ndarray:
    """What a price case's paths are multiplied by so that its mean price ``E[P_t]`` at every time of the
    grid is the base case's: the case runs at ``volatility_factor`` times the running volatility, with the
    model's jumps or (``jumps=False``) none. The log-OU level is a median, so scaling the volatility or
    dropping the jumps moves the mean: ``E[P_t] = P_med(t) exp(c(t))`` with ``c`` the log of the mean of
    ``exp`` of the deviation's random part (:func:`finance_engine.price.deviation_log_mean_exp`).
    Returns ``exp(c_base(t) - c_case(t))``, shape (years * steps_per_year + 1,)."""
    from finance_engine.price import deviation_log_mean_exp

    sigma = _running_volatility(pms, model, terms)
    base = deviation_log_mean_exp(model, years, sigma)
    case = deviation_log_mean_exp(model if jumps else dataclasses.replace(model, jump_intensity_per_year=0.0),
                                  years, sigma * volatility_factor)
    return np.exp(base - case)


def _price_paths(pms: PriceModelSet, model: PriceModelParams, terms: "LoanTerms", ids: np.ndarray, years: int,
                 seed: int, factor: np.ndarray | None = None,
                 volatility_factors: tuple[float, ...] = (1.0,), antithetic: bool = False,
                 mean_shift: list[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Price paths (years+1, N) in CNY/tCO2e for the loan's credit type, scenario and correlation.

    One array per entry of ``volatility_factors``, each at that multiple of the volatility the price
    runs at (the scenario's own, if it sets one, else the model's), from one set of draws; ``antithetic``:
    paths ``2k`` and ``2k+1`` take opposite price shocks (:mod:`finance_engine.price`). ``mean_shift``:
    per entry, a factor per time (:func:`_mean_holding_factor`) the paths are multiplied by, or None.
    """
    kw = dict(common_factor=factor, factor_correlation=terms.price_loss_correlation if factor is not None else 0.0,
              antithetic=antithetic)
    if terms.price_scenario:
        out = simulate_scenario_paths_by_volatility(pms.scenario(terms.price_scenario), model, ids, years, seed,
                                                    volatility_factors, base_year=pms.base_year,
                                                    start_price_cny_per_tco2e=pms.start_price(terms.price_model), **kw)
    else:
        out = simulate_price_paths_by_volatility(model, ids, years, seed, volatility_factors,
                                                 start_price_cny_per_tco2e=pms.start_price(terms.price_model), **kw)
    shifts = mean_shift or [None] * len(out)
    out = [p if m is None else p * m[None, :] for p, m in zip(out, shifts)]
    spread = _spread_factors(pms, terms, ids, seed)
    return [p.T if spread is None else p.T * spread[None, :] for p in out]


@dataclass(frozen=True)
class _Money:
    value_paths: np.ndarray     # (T+1, N) collateral value at end of year t (t = 0..T)
    pv_total: np.ndarray        # (N,) realised PV at t=0 of the whole stream
    cash_flows: np.ndarray      # (H, N) CNY at t = y+1
    prices: np.ndarray          # (H+1, N) CNY/tCO2e
    # (T+1, N) what each path's flows turn out to be worth at t (received + the realised remaining): its
    # mean is the values' mean, and its spread gives that mean's error (the fitted values vary less)
    realised_paths: np.ndarray
    # (K, T+1, N) float32: the values under the regressions' delete-a-group refits (groups of ``groups``), or None
    value_replicates: np.ndarray | None = None
    groups: np.ndarray | None = None
    # (T+1, N) the proceeds already received into the supervised account by the end of year t, accrued to t
    # (CNY; part of the value at t, cash: a forced sale does not haircut it)
    received_paths: np.ndarray | None = None


def _money(phys_credits: np.ndarray, phys_stock: np.ndarray, prices: np.ndarray, terms: LoanTerms,
           issuance: RealisedIssuance | None = None, groups: tuple[np.ndarray | None, int] | None = None,
           position: tuple[np.ndarray, int] | None = None, spread: np.ndarray | None = None) -> _Money:
    """Cash flows, their present value and the collateral's value at the end of each year of the term.

    The value at ``t`` is the proceeds received up to ``t``, accrued to ``t``, plus the expected value
    at ``t`` of the flows still to come, discounted to ``t``: their regression on the state at ``t``
    (the year's stock and price and, given ``issuance`` -- whose ``credits`` are ``phys_credits`` --
    the credits pending issuance and whether the methodology change has arrived; Longstaff-Schwartz
    style, :func:`finance_engine.value_regression.conditional_value`), floored at 0. Both parts are
    ``(1 + r)^t`` times sums of the flows' present values at 0: running sums from each end give every
    year's. With ``groups`` (each path's jackknife group and their number,
    :func:`~finance_engine.value_regression.jackknife_groups`) the values under each delete-a-group
    refit come too. ``position``: the crediting position at each year end (shape (H+1, N),
    ``CreditingRules.accrued_position``) and the run year of the first verification, after which it
    tells more than the stock (at the first verification itself it is a function of the stock: a
    deficit from the start). ``spread``: a local credit's spread factor ``F`` per path (shape (N,); the
    prices are the reference price times ``F``, :func:`_price_paths`), drawn once per path and known to
    the lender: the value at ``t`` is ``F`` times the regression of the flows over ``F`` (the reference
    price's flows) on the state with the reference price (:func:`_spread_regression`).
    """
    return _money_cases(phys_credits, phys_stock, [prices], terms, issuance, groups, position, spread)[0]


@dataclass
class _CaseFlows:
    """One price case's flows in :func:`_money_cases`: present values at 0 and what is filled year by year."""

    prices: np.ndarray         # (H+1, N)
    cash_flows: np.ndarray     # (H, N)
    pv_total: np.ndarray       # (N,)
    received_pv: np.ndarray    # (T+1, N): row t, the flows at 1..t
    remaining_pv: np.ndarray   # (T+1, N): row t, the flows at t+1..H
    values: np.ndarray         # (T+1, N)
    realised: np.ndarray       # (T+1, N)
    replicates: np.ndarray | None  # (K, T+1, N) float32
    received: np.ndarray | None = None  # (T+1, N): the proceeds received by t, accrued to t


def _money_cases(phys_credits: np.ndarray, phys_stock: np.ndarray, price_cases: list[np.ndarray], terms: LoanTerms,
                 issuance: RealisedIssuance | None = None, groups: tuple[np.ndarray | None, int] | None = None,
                 position: tuple[np.ndarray, int] | None = None, spread: np.ndarray | None = None) -> list[_Money]:
    """:func:`_money` of several price cases on the same paths (a valuation and its volatility
    sensitivities), each exactly as alone; the regressions share what does not involve the price
    (:func:`finance_engine.value_regression.conditional_values`)."""
    H, N = phys_credits.shape
    T = terms.term_years
    r = terms.discount_rate
    g, n_groups = groups if groups is not None else (None, 0)
    discount = ((1 + r) ** -np.arange(1, H + 1, dtype=float))[:, None]
    cases = []
    for prices in price_cases:
        cf = phys_credits * prices[1:]
        pv_flows = cf * discount
        pv_total = pv_flows.sum(axis=0)
        # running sums by rows (numpy's cumsum down the path axis is several times slower)
        received_pv = np.empty((T + 1, N))
        remaining_pv = np.zeros((T + 1, N))
        received_pv[0] = 0.0
        for t in range(1, T + 1):
            np.add(received_pv[t - 1], pv_flows[t - 1], out=received_pv[t])
        acc = np.zeros(N)
        for s in range(H - 1, 0, -1):
            acc += pv_flows[s]
            if s <= T:
                remaining_pv[s] = acc
        c = _CaseFlows(prices, cf, pv_total, received_pv, remaining_pv, np.empty((T + 1, N)), np.empty((T + 1, N)),
                       None)
        c.values[0] = pv_total.mean()  # everyone agrees on today's value: the state is known
        c.realised[0] = pv_total
        c.received = np.zeros((T + 1, N))
        if g is not None:
            # float32: an error estimate needs no more, and it halves the memory (K x (T+1) x N values)
            c.replicates = np.empty((n_groups, T + 1, N), dtype=np.float32)
            for k in range(n_groups):
                c.replicates[k, 0] = pv_total[g != k].mean()
        cases.append(c)
    for t in range(1, T + 1):
        grow = (1 + r) ** t
        received = [grow * c.received_pv[t] for c in cases]
        remaining = [grow * c.remaining_pv[t] for c in cases]
        if t < H:
            state = ({} if issuance is None else
                     {"pending": issuance.pending_tco2e[t], "changed": issuance.changed_by(t)})
            if position is not None and t > position[1]:
                state["position"] = position[0][t]
            if spread is None:
                fits = conditional_values(remaining, phys_stock[t - 1], [c.prices[t] for c in cases], **state,
                                          groups=g, n_groups=n_groups)
            else:
                fits = _spread_regression(remaining, phys_stock[t - 1], [c.prices[t] for c in cases], spread, state,
                                          g, n_groups)
        else:
            fits = [(rem, None if g is None else np.broadcast_to(rem, (n_groups, N))) for rem in remaining]
        for c, rec, rem, (cond, cond_reps) in zip(cases, received, remaining, fits):
            c.received[t] = rec
            c.realised[t] = rec + rem
            c.values[t] = rec + np.maximum(cond, 0.0)
            if c.replicates is not None:
                if cond_reps.flags.writeable:  # the refits' own array: no (K, N) temporaries
                    np.maximum(cond_reps, 0.0, out=cond_reps)
                    cond_reps += rec
                    c.replicates[:, t] = cond_reps
                else:
                    c.replicates[:, t] = rec + np.maximum(cond_reps, 0.0)
    return [_Money(c.values, c.pv_total, c.cash_flows, c.prices, c.realised, c.replicates, g, c.received)
            for c in cases]


def _spread_regression(remaining: list[np.ndarray], stock: np.ndarray, prices: list[np.ndarray], spread: np.ndarray,
                       state: dict, g: np.ndarray | None, n_groups: int) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """The value regression of a local credit whose price is the reference price times a factor ``F``
    per path (``spread``), fixed over the path and independent of everything else: the flows still to
    come are ``F`` times the reference price's flows ``X``, so ``E[F X | state, F] = F E[X | state]``,
    with the state's price the reference price. Each case's fit of ``X`` on that state times ``F``, and
    its replicates likewise. (Regressing the local flows on the local price alone left ``F`` out of the
    state: the fitted values were biased +213,000 CNY in the lowest third of ``F`` and -256,000 in the
    highest, z = 31 and -20, on a 4-year 碳普惠 loan of the demo's LS-LQ-P03, 8,192 paths.)"""
    fits = conditional_values([rem / spread for rem in remaining], stock, [p / spread for p in prices], **state,
                              groups=g, n_groups=n_groups)
    out = []
    for cond, reps in fits:
        if reps is not None:
            reps *= spread  # the refits' own array
        out.append((cond * spread, reps))
    return out


def _insurance_payout(phys: _Physical, ins: AssignedInsurance) -> np.ndarray:
    covered = [p for p in ins.covered_perils if p in phys.losses]
    if not covered:
        return np.zeros_like(phys.credits)
    loss = sum(phys.losses[p] for p in covered)
    pay = np.maximum(loss - ins.annual_deductible_tco2e, 0.0) * ins.agreed_price_cny_per_tco2e
    return np.minimum(pay, ins.annual_limit_cny)


def _credit_view(values: np.ndarray, terms: LoanTerms, recovery_factor: np.ndarray,
                 insurance_payout: np.ndarray | None = None, received: np.ndarray | None = None) -> dict[str, Any]:
    """Balance, LTV, shortfall and top-up calls over the term, per year and path.

    Top-up calls (:func:`_carried_balances`): a call at the end of year ``t`` that the borrower meets is a
    prepayment that restores the LTV to the pledge rate and re-amortises the rest over the same term, so
    the path's later balances are the schedule's times the fraction left; the figures of later years
    (LTV, calls, value below the balance, the shortfall) use the path's balance. A call the borrower does
    not meet is a default: the year's shortfall on a forced sale (on the balance before the call) is
    what the bank then loses. An assigned policy's payouts (CNY, per year) go to the bank first:
    received up to year ``t``, capped at the balance, they are added to what the bank recovers; they do
    not change the pledge's market value. ``received``: the proceeds already in the supervised account
    at each year end (``_Money.received_paths``, shape (T+1, N)), recovered at par (see
    :func:`_forced_sale_shortfall`); None: none (all of the value is sold).
    """
    b = balance_schedule(terms)
    T = terms.term_years
    v = values[1:T + 1]           # end of years 1..T
    bal, calls, call_size = _carried_balances(v, terms)  # balance outstanding during year t (before the instalment)
    below = v < bal
    ltv = np.where(v > 0, bal / np.maximum(v, 1e-300), np.inf)
    shortfall = _forced_sale_shortfall(v, terms, recovery_factor, _received_payouts(insurance_payout, terms),
                                       None if received is None else received[1:T + 1], bal)
    return {"balance": b, "balance_paths": bal, "below": below, "ltv": ltv, "calls": calls, "call_size": call_size,
            "shortfall": shortfall}


def _carried_balances(v: np.ndarray, terms: LoanTerms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each path's balance outstanding during years 1..T with its met top-up calls carried forward, the
    calls and their sizes (CNY), for the values ``v`` at the ends of years 1..T (shape (..., T, N): the
    paths', or each regression replicate's).

    The balance outstanding during year ``t`` is ``s B_{t-1}`` (the schedule's ``B``, ``s`` the fraction of the
    principal left after earlier calls, 1 at first): what a default in the year leaves owed, and the balance
    the year's LTV, value-below-balance and forced-sale shortfall use. The call is checked at the year's end
    on a borrower who pays that day's instalment: where the balance left after it, ``A_t = s B_t``, exceeds
    ``ltv_trigger`` times the value (or the value is 0 with a balance left), of ``A_t - pledge_rate V_t``: the
    prepayment that brings the LTV after the instalment back to the pledge rate. (The balance before the
    instalment had sized the calls as if the day's instalment were not paid, then had it paid on top: on the
    README's 1.5 M CNY, 3-year project loan the expected top-ups were 1,091,619 CNY where 612,702 restore the
    pledge rate, and a flat-price annuity called in year 1 at an LTV after the instalment of 0.73, under the
    0.8 trigger, left the LTV at 0.41, not the pledge rate's 0.6; review.) A loan repaid at the year's end (the
    term's last year) has no call. A met call is a prepayment of principal that re-amortises the rest over the
    same term: ``s <- s (A_t - call) / A_t``, so the same deficiency is not called again every year. (Before
    that, every year used the schedule's balance: on a flat-price pledge whose value fell once, a 5-year
    bullet loan was called in 2 years for 747,644 CNY where one call of 394,192 restores it.) A loop over the
    term's years, vectorised over the paths (and replicates); the compiled
    :func:`finance_engine._credit_kernels.replicate_credit_sums` does the same arithmetic in the same order."""
    sched = balance_schedule(terms)[:terms.term_years + 1]
    trigger, pledge = float(terms.ltv_trigger), float(terms.pledge_rate)
    scale = np.ones(v.shape[:-2] + v.shape[-1:])
    bal = np.empty(v.shape)
    calls = np.empty(v.shape, dtype=bool)
    size = np.empty(v.shape)
    for t in range(terms.term_years):
        vt = v[..., t, :]
        bt = sched[t] * scale           # outstanding during the year
        at = sched[t + 1] * scale       # left after the instalment at its end
        c = (at > 0) & ((vt <= 0) | (at > trigger * vt))
        st = np.where(c, np.maximum(at - pledge * vt, 0.0), 0.0)
        bal[..., t, :], calls[..., t, :], size[..., t, :] = bt, c, st
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(c, scale * ((at - st) / np.where(c, at, 1.0)), scale)
    return bal, calls, size


def _received_payouts(insurance_payout: np.ndarray | None, terms: LoanTerms) -> np.ndarray | None:
    """An assigned policy's payouts received by the end of each year of the term, capped at the balance
    outstanding (T, N); None without a policy. (The scheduled balance: a path's balance is at most it, and
    a payout above the balance leaves no shortfall either way.)"""
    if insurance_payout is None:
        return None
    T = terms.term_years
    return np.minimum(np.cumsum(insurance_payout[:T], axis=0), balance_schedule(terms)[:T][:, None])


def _forced_sale_shortfall(v: np.ndarray, terms: LoanTerms, recovery_factor: np.ndarray,
                           received: np.ndarray | None, cash: np.ndarray | None = None,
                           balance: np.ndarray | None = None) -> np.ndarray:
    """Loss given default at each year end of the term on a forced sale, after other security and the policy's
    payouts received (:func:`_received_payouts`): ``v`` the values at the ends of years 1..T, shape
    (..., T, N) (the paths', or each regression replicate's).

    The value at ``t`` includes ``cash`` (the proceeds already received into the supervised account,
    (T, N), the same for every replicate): cash is recovered at par, and only the credits still to come are
    sold, at the recovery factor (liquidity haircut, liquidation cost, the sale's delay):
    ``recovery = cash + recovery_factor (v - cash) + mortgage + guarantee (+ payouts)``. (The haircut had
    been applied to the cash too, 33-60 % of the value from year 5 of a 10-year loan: its forced-sale LGD
    was 20.2 % where 15.5 % is right.) ``balance``: each path's balance (:func:`_carried_balances`, shape
    of ``v``); default the schedule's."""
    bal = balance_schedule(terms)[:terms.term_years][:, None] if balance is None else balance
    if cash is None:
        recovery = v * recovery_factor
    else:
        recovery = cash + (v - cash) * recovery_factor
    recovery = recovery + terms.forest_right_mortgage_cny + terms.guarantee_cny
    if received is not None:
        recovery = recovery + received
    return np.maximum(bal - recovery, 0.0)


def crediting_position(stock: np.ndarray, stock0: float | np.ndarray, params: ModelParameters | None,
                       provenance: dict[str, Any] | None = None) -> tuple[np.ndarray, int]:
    """A crediting unit's position at each year end (``CreditingRules.accrued_position``, under the
    crediting rules the engine run recorded in its provenance, else the parameter file's) and the year
    after which it adds to the stock: the first verification (``CreditingRules.first_issuance_year``; past the
    horizon when none falls in the crediting period), or a later crediting start (the run year it ends: the
    position then counts from that year's stock, which the stock at ``t`` alone does not tell). For
    ``_money``."""
    rules = (CreditingRules(**provenance["crediting"]) if provenance and "crediting" in provenance
             else CreditingRules.from_parameters(params))
    first = rules.first_issuance_year()
    first = np.shape(stock)[0] + 1 if first is None else first
    if rules.years_credited_before_start < 0:
        first = min(first, -rules.years_credited_before_start)
    return rules.accrued_position(stock, stock0), first


def _crediting_position(params: ModelParameters, phys: _Physical) -> tuple[np.ndarray, int]:
    return crediting_position(phys.stock, phys.stock0, params, phys.provenance)


def _below_any_rate(terms: LoanTerms, scale: float = 1.0):
    """``stat(values, keep)`` for :func:`_replicate_se`: per replicate, the share of its kept paths
    whose value (times ``scale``, a price-level case) falls below the balance (with the met top-up calls
    carried forward, :func:`_carried_balances`) at some year of the term."""
    T = terms.term_years

    def stat(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        v = values[:, 1:T + 1].astype(float)
        if scale != 1.0:
            v *= scale
        bal, _, _ = _carried_balances(v, terms)
        below = (v < bal).any(axis=1)       # (K, N)
        return (below & keep).sum(axis=1) / keep.sum(axis=1)
    return stat


def _shortfall_mean(terms: LoanTerms, recovery_factor: np.ndarray, insurance_payout: np.ndarray | None = None,
                    cash: np.ndarray | None = None):
    """``stat(values, keep)`` for :func:`_replicate_se`: per replicate, the mean over its kept paths of the
    shortfall summed over the term's years (:func:`_credit_view`'s, on the replicate's values; ``cash`` the
    proceeds received, ``_Money.received_paths``)."""
    T = terms.term_years
    received = _received_payouts(insurance_payout, terms)
    cash_t = None if cash is None else cash[1:T + 1]

    def stat(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        v = values[:, 1:T + 1].astype(float)
        bal, _, _ = _carried_balances(v, terms)
        s = _forced_sale_shortfall(v, terms, recovery_factor, received, cash_t, bal).sum(axis=1)  # (K, N)
        return (s * keep).sum(axis=1) / keep.sum(axis=1)
    return stat


#: a quantile's jackknife error is used where each replicate has at least this many paths beyond it
MIN_TAIL_PATHS_FOR_JACKKNIFE = 10
#: the replicates' value quantiles are taken on float32 copies of about this many values at a time
REPLICATE_BATCH_VALUES = 4_000_000


def _kept_quantiles(x: np.ndarray, n_keep: np.ndarray, ps) -> np.ndarray:
    """Linear quantiles ``ps`` along the last axis of ``x`` (K, ..., N) over each replicate's kept
    paths, the others set to ``+inf`` (so for every ``j < n_keep[k]`` the ``j``-th smallest of a row of
    replicate ``k`` is its kept paths' ``j``-th): :func:`~finance_engine.mc_error.linear_quantiles` of
    the replicates that keep as many paths at once. ``x``'s order is not kept (it may be partitioned in
    place). Shape (K, ..., len(ps))."""
    out = np.empty(x.shape[:-1] + (len(ps),))
    for n in np.unique(n_keep):
        rows = np.flatnonzero(n_keep == n)
        whole = rows.size == x.shape[0]
        out[rows] = linear_quantiles(x if whole else x[rows], ps, overwrite=True, n_valid=int(n))
    return out


def _jackknife_figures(money: _Money, terms: LoanTerms, recovery_factor: np.ndarray, payout: np.ndarray | None,
                       beta: np.ndarray, sizing_targets: tuple[float, ...]) -> dict[str, Any] | None:
    """The figures read from the values at t, on each of the regressions' delete-a-group replicates
    (the refit without group ``k``, over the paths outside it), with their jackknife standard errors
    (:func:`finance_engine.value_regression.jackknife_se`): ``{"se": {figure: se}, "t": Student's t,
    "groups": K}``. None without replicates. A quantile's error is NaN (not used) where a replicate
    has fewer than :data:`MIN_TAIL_PATHS_FOR_JACKKNIFE` paths beyond it: the jackknife of a sample's
    extreme is no error estimate."""
    reps, g = money.value_replicates, money.groups
    if reps is None:
        return None
    n_groups = reps.shape[0]
    T = terms.term_years
    n_keep = g.size - np.bincount(g, minlength=n_groups)[:n_groups]  # each replicate's paths
    b = balance_schedule(terms)
    cum_payout = (np.zeros((0, 0)) if payout is None
                  else np.ascontiguousarray(np.minimum(np.cumsum(payout[:T], axis=0), b[:T][:, None])))
    v0 = reps[:, 0, 0].astype(float)
    cash = (np.zeros((0, 0)) if money.received_paths is None
            else np.ascontiguousarray(money.received_paths[1:T + 1], dtype=float))
    # one compiled pass over the replicates' values: the counts and sums of their credit views
    by_year, by_rep = np.empty((3, n_groups, T)), np.empty((7, n_groups))
    ratio = np.empty((n_groups, g.size))
    replicate_credit_sums(reps, g, np.ascontiguousarray(b[:T + 1], dtype=float), float(terms.ltv_trigger),
                          float(terms.pledge_rate), np.ascontiguousarray(recovery_factor, dtype=float),
                          float(terms.forest_right_mortgage_cny), float(terms.guarantee_cny), cum_payout,
                          np.ascontiguousarray(beta, dtype=float), v0 * terms.pledge_rate, by_year, by_rep, ratio,
                          cash)
    per_path = 1.0 / n_keep
    with np.errstate(divide="ignore", invalid="ignore"):
        sim_lgd = np.where(by_rep[6] > 0, by_rep[4] / np.where(by_rep[6] > 0, by_rep[6], 1.0), 0.0)
    figs: dict[str, np.ndarray] = {
        "p_below": by_year[0] * per_path[:, None], "p_call": by_year[1] * per_path[:, None],
        "top_up": by_year[2] * per_path[:, None],
        "p_below_any": by_rep[0] * per_path, "p_any_call": by_rep[1] * per_path, "n_calls": by_rep[2] * per_path,
        "top_up_size": by_rep[3] * per_path,
        "sim_lgd": sim_lgd,
        "p_shortfall_practice": by_rep[5] * per_path,
    }
    # the quantiles: one partition of a batch of replicates and years at a time (float32 copies of about
    # REPLICATE_BATCH_VALUES values), the paths of a replicate's group at +inf
    value_ps = (0.01, 0.05, 0.50, 0.95)
    vq = np.empty((n_groups, T, len(value_ps)))
    ltv_q = np.empty((n_groups, T, 1))
    es = np.empty((n_groups, 2))                                                # ES95, ES99
    step = max(1, int(REPLICATE_BATCH_VALUES // max(T * g.size, 1)))
    for k0 in range(0, n_groups, step):
        ks = np.arange(k0, min(k0 + step, n_groups))
        dropped = (g[None, :] == ks[:, None])[:, None, :]
        rv = reps[ks, 1:T + 1]
        values = np.where(dropped, np.float32(np.inf), rv)
        vq[ks] = _kept_quantiles(values, n_keep[ks], value_ps)                  # (batch, T, 4)
        # the LTV as reported: each path's balance (its met top-up calls carried forward, on the replicate's
        # values) over its value, the dropped group's paths at +inf
        bal = _carried_balances(rv.astype(float), terms)[0]
        with np.errstate(divide="ignore"):
            ltv = np.where(rv > 0, bal / np.where(rv > 0, rv, 1.0), np.inf)
        ltv_q[ks] = _kept_quantiles(np.where(dropped, np.inf, ltv), n_keep[ks], (0.95,))
    # the tail means over each replicate's kept paths in path order (a float32 sum's rounding depends on it);
    # VaR and ES measure the end-of-term value discounted to today (_end_of_term_risk)
    end_v = reps[:, T]
    disc = (1 + terms.discount_rate) ** -T
    for k in range(n_groups):
        kept_end = end_v[k][g != k]
        es[k] = [v0[k] - kept_end[kept_end <= vq[k, -1, i]].mean() * disc for i in (1, 0)]
    max_loan = _kept_quantiles(ratio, n_keep, sizing_targets)                  # (K, len(targets))
    figs["value_q"] = vq[:, :, 1:]                                              # (K, T, 3): p05, p50, p95
    # the LTV's 95th percentile over the paths' own ratios (with top-up calls carried forward the balance differs
    # by path: the schedule over the value's 5th percentile is another figure)
    figs["ltv_p95"] = ltv_q[:, :, 0]
    figs["var95"], figs["var99"] = v0 - vq[:, -1, 1] * disc, v0 - vq[:, -1, 0] * disc
    figs["es95"], figs["es99"] = es[:, 0], es[:, 1]
    for i in range(len(sizing_targets)):
        figs[f"max_loan_{i}"] = max_loan[:, i]
    se = {name: jackknife_se(x) for name, x in figs.items()}
    few = n_keep.min()
    thin = {"var95": 0.05, "es95": 0.05, "var99": 0.01, "es99": 0.01,
            **{f"max_loan_{i}": q for i, q in enumerate(sizing_targets)}}
    for name, p in thin.items():  # an extreme order statistic's jackknife is no error estimate
        if few * p < MIN_TAIL_PATHS_FOR_JACKKNIFE:
            se[name] = np.full(np.shape(se[name]), np.nan)
    if few * 0.05 < MIN_TAIL_PATHS_FOR_JACKKNIFE:
        se["value_q"][:, [0, 2]] = np.nan
        se["ltv_p95"][:] = np.nan
    return {"se": se, "t": jackknife_t(n_groups), "groups": n_groups}


def _jk_se(jk: dict | None, name: str, index=()) -> float | None:
    if jk is None:
        return None
    v = float(jk["se"][name][index])
    return v if np.isfinite(v) else None


def _larger_error(se: float, jackknife: float | None) -> float:
    """An error estimate no smaller than the regression's jackknife error, where there is one (a NaN
    stays NaN: a figure with no error estimate does not get one from the jackknife)."""
    if jackknife is None or not np.isfinite(se):
        return se
    return float(max(se, jackknife))


def _simulated_lgd(cv: dict[str, Any], jk: dict | None, set_size: int) -> tuple[float, float]:
    """The simulated forced-sale LGD of :func:`_credit_view`'s ``cv`` -- the shortfalls over the exposures at
    default, both summed over the term's years and the paths (each path's balance, its met top-up calls carried
    forward) -- and its error: the ratio's by the delta method over the paths (sets of ``set_size`` share a
    draw), or the regressions' jackknife error (``jk``, :func:`_jackknife_figures`) where that is larger."""
    shortfall, bal = cv["shortfall"], cv["balance_paths"]
    n = shortfall.shape[-1]
    bal_sum = float(bal.sum())
    if bal_sum <= 0:
        return 0.0, 0.0
    lgd = float(shortfall.sum() / bal_sum)
    terms = (shortfall.sum(axis=0) - lgd * bal.sum(axis=0)) / (bal_sum / n)
    return lgd, _at_least(mean_se(terms, set_size), jk, "sim_lgd")


def _at_least(se: float, jk: dict | None, name: str, index=()) -> float:
    """:func:`_larger_error` with the jackknife error of figure ``name`` of :func:`_jackknife_figures`."""
    return _larger_error(se, _jk_se(jk, name, index))


def _widen(estimate: float, ci: list[float], jk: dict | None, name: str, index=(),
           low: float = -np.inf, high: float = np.inf) -> list[float]:
    """An interval widened, where it is narrower, to ``estimate -+ t se`` of the figure's regression
    jackknife (the order statistics' interval takes the values as given; the jackknife also sees the
    regression's coefficients move with the paths), within the figure's possible range [low, high]."""
    j = _jk_se(jk, name, index)
    if j is None:
        return list(ci)
    half = jk["t"] * j
    return [float(max(min(ci[0], estimate - half), low)), float(min(max(ci[1], estimate + half), high))]


def _replicate_se(money: _Money, stat, other: _Money | None = None) -> float | None:
    """Jackknife error of a figure over the regressions' delete-a-group replicates: ``stat(values,
    keep)`` takes the replicates' values (K, T+1, N; float32) and which paths each keeps (K, N: those
    outside its group) and returns the figure per replicate (K,); with ``other`` (a run on the same
    paths and groups) the error is the paired difference's. None without replicates."""
    if money.value_replicates is None or (other is not None and other.value_replicates is None):
        return None
    keep = money.groups[None, :] != np.arange(money.value_replicates.shape[0])[:, None]
    x = np.asarray(stat(money.value_replicates, keep), dtype=float)
    if other is not None:
        x = x - np.asarray(stat(other.value_replicates, keep), dtype=float)
    se = float(jackknife_se(x))
    return se if np.isfinite(se) else None


def _with_jk(se: float, money: _Money, stat) -> float:
    """:func:`_larger_error` with the jackknife error of ``stat`` (:func:`_replicate_se`)."""
    return _larger_error(se, _replicate_se(money, stat))


def _widen_columns(out: pd.DataFrame, est_col: str, lo_col: str, hi_col: str, half: np.ndarray) -> None:
    """:func:`_widen` of a table's intervals, row by row at once: ``[lo, hi]`` widened to ``est -+ half``
    where that is wider, within [0, inf); a NaN ``half`` (no jackknife error) leaves the row alone, and
    an infinite estimate (a worthless pledge's LTV) keeps its interval."""
    ok = np.isfinite(half)
    h = np.where(ok, half, 0.0)
    est = out[est_col].to_numpy()
    with np.errstate(invalid="ignore"):
        out[lo_col] = np.where(ok, np.maximum(np.minimum(out[lo_col].to_numpy(), est - h), 0.0), out[lo_col])
        out[hi_col] = np.where(ok, np.maximum(out[hi_col].to_numpy(), est + h), out[hi_col])


def _with_regression_error(by_year: pd.DataFrame, jk: dict | None) -> pd.DataFrame:
    """The by-year table with its value quantiles' and LTV's intervals and its probabilities' errors
    widened by the regression's jackknife (:func:`_widen`, :func:`_at_least`), column by column."""
    if jk is None:
        return by_year
    out = by_year.copy()
    half = jk["t"] * jk["se"]["value_q"]                                     # (T, 3); NaN: no jackknife error
    for j, k in enumerate((5, 50, 95)):
        _widen_columns(out, f"value_p{k:02d}_cny", f"value_p{k:02d}_ci95_low_cny", f"value_p{k:02d}_ci95_high_cny",
                       half[:, j])
    _widen_columns(out, "ltv_p95", "ltv_p95_ci95_low", "ltv_p95_ci95_high", jk["t"] * jk["se"]["ltv_p95"])
    for col, name in (("p_value_below_balance_mc_se", "p_below"), ("p_top_up_call_mc_se", "p_call"),
                      ("expected_top_up_mc_se_cny", "top_up")):
        j = jk["se"][name]
        se = out[col].to_numpy()
        out[col] = np.where(np.isfinite(j) & np.isfinite(se), np.maximum(se, np.where(np.isfinite(j), j, 0.0)), se)
    return out


def _widen_risk(risk: dict[str, Any], jk: dict | None) -> None:
    """The any-time probabilities' and the calls' errors, at least their regression jackknife errors."""
    for key, name in (("p_value_below_balance_any_time_mc_se", "p_below_any"), ("p_any_top_up_call_mc_se", "p_any_call"),
                      ("expected_number_of_top_up_calls_mc_se", "n_calls"),
                      ("expected_top_up_size_mc_se_cny", "top_up_size")):
        risk[key] = _at_least(risk[key], jk, name)


def _zero_one_bounds(probabilities: dict[str, float], n_eff: int) -> dict[str, list[float]]:
    """A 95 % interval for each probability estimated as exactly 0 or 1, whose standard error is then 0 and
    says nothing: the rule of three, ``[0, 3 / n]`` (or ``[1 - 3 / n, 1]``), ``n`` the independent units
    (parameter sets: the paths of a set share their draws), the exact one-sided binomial bound
    ``1 - 0.05^(1/n)`` to within ``O(1/n^2)`` (Hanley & Lippman-Hand 1983, JAMA 249(13)). Empty where every
    probability lies strictly between."""
    bound = min(3.0 / n_eff, 1.0)
    out = {}
    for name, p in probabilities.items():
        if p == 0.0:
            out[name] = [0.0, bound]
        elif p == 1.0:
            out[name] = [1.0 - bound, 1.0]
    return out


#: the figures read from the value's tail whose regression error needs enough paths beyond the quantile
_TAIL_FIGURES = {"var95": ("risk", "collateral_var95_cny", 0.05), "es95": ("risk", "collateral_es95_cny", 0.05),
                 "var99": ("risk", "collateral_var99_cny", 0.01), "es99": ("risk", "collateral_es99_cny", 0.01)}


def _flag_unresolved(risk: dict, sizing: dict, jk: dict | None, paths: int, q: float,
                     targets: tuple[float, ...]) -> None:
    """Name the tail figures whose regression (jackknife) error could not be estimated at this number of
    paths (``risk["not_resolved"]``, ``sizing["not_resolved"]``, ``sizing["max_loan_resolved"]``), with the
    paths that would resolve them (``*_paths_needed``).

    Their intervals are then the order statistics' alone, which take the regression's values as given and
    are too narrow: at 1,000 paths the 1 % largest safe loan's interval covered its target in 83 % of
    seeds, and ES99's error was 0.89 of its spread. The figures are reported, flagged as not resolved, and
    the CLI and the memo say so."""
    groups = jk["groups"] if jk is not None else JACKKNIFE_GROUPS

    def needed(p: float) -> int:
        # each replicate keeps about (K - 1) / K of the paths and needs MIN_TAIL_PATHS_FOR_JACKKNIFE beyond p
        return int(np.ceil(MIN_TAIL_PATHS_FOR_JACKKNIFE / p * groups / max(groups - 1, 1)))

    def missing(name: str) -> bool:
        return jk is None or _jk_se(jk, name) is None

    risk_out = [field for name, (_, field, _) in _TAIL_FIGURES.items() if missing(name)]
    size_out = []
    if missing("max_loan_0"):
        size_out.append("max_loan_cny")
    size_out += [f"max_loan_by_target_cny.{t:g}" for i, t in enumerate(targets) if missing(f"max_loan_{i + 1}")]
    risk["not_resolved"] = risk_out
    risk["not_resolved_paths_needed"] = (max(needed(p) for name, (_, f, p) in _TAIL_FIGURES.items() if f in risk_out)
                                         if risk_out and jk is not None else None)
    sizing["max_loan_resolved"] = "max_loan_cny" not in size_out
    sizing["not_resolved"] = size_out
    sizing["max_loan_paths_needed"] = needed(q) if "max_loan_cny" in size_out and jk is not None else None
    thin = [q] * ("max_loan_cny" in size_out) + [t for i, t in enumerate(targets) if missing(f"max_loan_{i + 1}")]
    sizing["not_resolved_paths_needed"] = needed(min(thin)) if thin and jk is not None else None
    note = None
    if jk is None and (risk_out or size_out):
        note = ("fewer than 5 parameter sets: the value regression's own error is not estimated; the tail figures' "
                "intervals are the order statistics' alone and too narrow")
    elif risk_out or size_out:
        note = (f"too few paths beyond the quantile for the value regression's own error at {paths:,} paths: "
                "these figures' intervals are the order statistics' alone and too narrow (unresolved)")
    risk["not_resolved_note"] = note
    sizing["not_resolved_note"] = note


def value_collateral(portfolio: Portfolio, params: ModelParameters, terms: LoanTerms | dict, *,
                     parcel_ids=None, project_id: str | None = None, paths: int = 10_000, seed: int = 2026,
                     attribution: bool = True, attribution_paths: int | None = 2000,
                     sensitivities: bool = True, price_model_set: PriceModelSet | None = None,
                     issuance_risk: IssuanceRisk | None = None, switches: SimulationSwitches | None = None,
                     workers: int = 1, chunk_paths: int | None = None, scheduler: str | None = None,
                     progress: Callable[[Progress], None] | None = None,
                     antithetic_prices: bool | None = None,
                     cancel: Callable[[], bool] | None = None) -> CollateralValuation:
    """Value the pledged carbon of a loan and its risk over the term.

    Parameters
    ----------
    portfolio, params :
        The portfolio holding the pledged parcels and its parameter set.
    terms : LoanTerms or dict
    parcel_ids, project_id :
        Which parcels are pledged (default: the whole portfolio).
    paths, seed :
        Monte Carlo paths and seed.
    attribution : bool
        Also switch each value driver off in turn (common random numbers) on ``attribution_paths``.
    sensitivities : bool
        Price level and volatility sensitivities (price-only reruns, cheap).
    workers, chunk_paths :
        Threads that run the engine's chunks of ``chunk_paths`` paths (default: one chunk per thread
        within a memory bound, see :func:`~finance_engine.simulation.balanced_chunk_paths`; without
        ``chunk_paths`` or ``scheduler``, a loan too small to gain from threads runs on one,
        :func:`~finance_engine.simulation.useful_threads`). Results do not depend on either.
    scheduler : {None, "threads", "warm"}
        Where the chunks run when ``workers > 1``: threads of this process (None, the default: no
        start-up), or the engine's warm worker processes (``"warm"``: a fifth faster for a loan, since
        threads contend for the GIL, once the first warm run has started them; for a long-lived
        process valuing loan after loan, :mod:`finance_engine.simulation.warm_pool`; a script needs
        the ``if __name__ == "__main__":`` guard). Results do not depend on it.
    antithetic_prices : bool, optional
        Antithetic price paths: paths ``2k`` and ``2k+1`` take opposite price shocks (a variance reduction:
        on the demo's largest pledge the value's Monte Carlo error is 8-12 % smaller, a fifth less variance,
        and the price draws halve). Each pair lies in one parameter set, whose means the errors are computed
        from, so the errors stay honest; the quantile and tail errors and the regressions' jackknife count
        pairs at least. Default (None): on when ``switches.parameter_set_size`` is even (pairs nest in sets);
        True with an odd set size is refused. Results depend on it (a path is not the same path with and
        without it); the provenance records it.
    progress : callable, optional
        Called with the :class:`~finance_engine.simulation.Progress` of the valuation's engine runs as one
        (the valuation's and, with ``attribution``, each driver's rerun, weighted by their paths:
        :class:`~finance_engine.simulation.RunsProgress`). It may raise
        :class:`~finance_engine.simulation.SimulationCancelled` to stop the valuation. Results do not
        depend on it.
    cancel : callable, optional
        Polled while the engine runs (between simulated years, as :func:`~finance_engine.simulation.simulate`
        does): True stops the valuation with ``SimulationCancelled``, within its current engine run.

    Raises
    ------
    LoanTermsError
        Bad terms (negative amounts, a term beyond the horizon, parcels not in the portfolio, an LTV
        trigger below the pledge rate).
    """
    pms = price_model_set or load_price_model()
    terms = check_loan_terms(terms, pms)
    if isinstance(paths, bool) or not isinstance(paths, (int, np.integer)) or paths < MIN_PATHS:
        raise LoanTermsError(f"paths must be an integer >= {MIN_PATHS}, got {paths!r}")
    if attribution_paths is not None and (isinstance(attribution_paths, bool)
                                          or not isinstance(attribution_paths, (int, np.integer))
                                          or attribution_paths < MIN_PATHS):
        raise LoanTermsError(f"attribution_paths must be an integer >= {MIN_PATHS} (or None: as many as paths), "
                             f"got {attribution_paths!r}")
    iss = issuance_risk or load_issuance_risk()
    pledged = select_pledged(portfolio, params, parcel_ids, project_id)
    check_crediting_terms(terms, params)
    H = terms.crediting_horizon_years
    base_sw = switches or SimulationSwitches()
    if scheduler not in (None, "threads", "warm"):
        raise LoanTermsError(f"scheduler must be None, 'threads' or 'warm', got {scheduler!r}")
    even_sets = base_sw.parameter_set_size % 2 == 0
    if antithetic_prices and not even_sets:
        raise LoanTermsError(f"antithetic price paths need an even parameter_set_size (each pair in one set), got "
                             f"{base_sw.parameter_set_size}")
    anti = even_sets if antithetic_prices is None else bool(antithetic_prices)
    # paths whose errors move together: a parameter set's, or at least an antithetic pair
    corr_size = max(base_sw.correlated_set_size, 2 if anti else 1)
    n_attr = min(paths, attribution_paths or paths)
    # the engine runs: the valuation's, then the drivers' (one per peril -- known after the first run --,
    # growth and peril-parameter uncertainty, and the base at fewer paths if the drivers use fewer)
    runs = RunsProgress(progress, weights=[paths] + ([n_attr] * (len(peril_classes()) + 2 + (n_attr != paths))
                                                     if attribution else []))
    ids = np.arange(paths)
    pmodel = pms.model(terms.price_model)
    # the volatility sensitivities' prices come from the base paths' draws (one draw, three recursions), each
    # case's mean price held at the base's (risk, not drift: _mean_holding_factor)
    vol_cases = {"volatility x0.5": 0.5, "volatility x1.5": 1.5} if sensitivities else {}
    price_args = (pms, pmodel, terms, ids, H, seed)
    shifts = [None] + [_mean_holding_factor(pms, pmodel, terms, H, f) for f in vol_cases.values()]
    phys = _simulate_physical(pledged, params, H, paths, seed, base_sw, workers, chunk_paths, scheduler, runs.of(0),
                              cancel, crediting_overrides(terms))
    # (drawing the prices on a thread beside the engine was measured twice and gained nothing: its two threads
    # already take both cores; docs/performance.md)
    factor = loss_factor(phys, ids, seed) if terms.price_loss_correlation else None
    prices, *vol_prices = _price_paths(*price_args, factor, (1.0, *vol_cases.values()), anti, shifts)
    if attribution:
        runs.plan([paths] + [n_attr] * (len(phys.losses) + 2 + (n_attr != paths)))
    issued = iss.realise(phys.credits, ids, seed)
    realised = issued.credits
    payout = _insurance_payout(phys, terms.insurance) if terms.insurance else None
    # the regressions' jackknife groups: whole parameter sets (the paths of a set share their draws), whole pairs
    groups = jackknife_groups(ids, corr_size)
    position = _crediting_position(params, phys)
    # the valuation and its volatility sensitivities on the same paths: their regressions share the state
    spread = _spread_factors(pms, terms, ids, seed)
    money, *vol_money = _money_cases(realised, phys.stock, [prices, *vol_prices], terms, issued, groups, position,
                                     spread)
    haircut = pms.liquidity_haircut.draws(ids, seed)
    recovery_factor = (1 - haircut) * (1 - terms.liquidation_cost_fraction) * \
        (1 + terms.discount_rate) ** -terms.liquidation_time_years
    cv = _credit_view(money.value_paths, terms, recovery_factor, payout, money.received_paths)
    set_size = base_sw.parameter_set_size
    q_set = corr_size  # the quantile and tail errors count sets that share a draw (and antithetic pairs)
    # with antithetic price pairs in the sets the parameter sd is split on the pair means (the mirrored price shocks
    # cancel in a set's mean, not in the spread of its single paths: split on those it came out biased low)
    mom = nested_moments(money.pv_total[:, None], set_size, base_sw.draws_parameters, antithetic=anti)
    v0 = float(mom["mean"][0])
    T = terms.term_years

    appraisal_price = float(pms.start_price(terms.price_model)
                            * (pms.spreads[terms.credit_type].median_factor if terms.credit_type != "ccer" else 1.0))
    total_credits = realised.sum(axis=0)
    credit_ps = (0.10, 0.50, 0.90)
    credit_qs, credit_cis = quantiles_and_cis(total_credits, credit_ps, set_size=q_set)
    value_today = {
        "value_cny": v0,
        "mc_se_cny": float(mom["mc_se"][0]),
        # None when no parameter is drawn (uncertainty off, or both its parts): not a clipped estimate of 0
        "parameter_sd_cny": float(mom["parameter_sd"][0]) if base_sw.draws_parameters else None,
        # its 95 % interval from the same moments (None with the sd; 0 is its lower end where the sd is clipped at 0)
        "parameter_sd_ci95_low_cny": float(mom["parameter_sd_ci95_low"][0]) if base_sw.draws_parameters else None,
        "parameter_sd_ci95_high_cny": float(mom["parameter_sd_ci95_high"][0]) if base_sw.draws_parameters else None,
        "ci95_cny": [v0 - 1.96 * float(mom["mc_se"][0]), v0 + 1.96 * float(mom["mc_se"][0])],
        "pledged_parcels": pledged.n_parcels,
        "pledged_area_ha": float(pledged.area_ha.sum()),
        "stock_today_tco2e": phys.stock0,
        "credits_over_horizon_tco2e": {"mean": float(total_credits.mean()),
                                       "mc_se": mean_se(total_credits, set_size),
                                       **{f"p{round(100 * q)}": v for q, v in zip(credit_ps, credit_qs)},
                                       **{f"p{round(100 * q)}_ci95": ci for q, ci in zip(credit_ps, credit_cis)}},
        "credits_during_term_tco2e": float(realised[:T].sum(axis=0).mean()),
        "expected_stock_loss_during_term_tco2e": {k: float(v[:T].sum(axis=0).mean()) for k, v in phys.losses.items()},
        "issuance_realisation_ratio": float(realised.sum() / phys.credits.sum()) if phys.credits.sum() > 0 else None,
        "price_today_cny_per_tco2e": float(prices[0].mean()),
        "mean_price_over_horizon_cny_per_tco2e": float(prices[1:].mean()),
        "liquidity_haircut_mean": float(haircut.mean()),
        # practice: expected sink x today's price of the credit sold (the series' start price times the local
        # spread's median; it had always used the CEA's 60 CNY/t)
        "appraisal_price_cny_per_tco2e": appraisal_price,
        "appraisal_practice_cny": float(phys.credits.sum(axis=0).mean() * appraisal_price),
        "value_over_practice_appraisal": (v0 / float(phys.credits.sum(axis=0).mean() * appraisal_price)
                                          if phys.credits.sum() > 0 else None),
    }
    # ---- by year of the term ------------------------------------------------------------------
    vals = money.value_paths[1:T + 1]
    beta = balance_schedule(terms.model_copy(update={"amount_cny": 1.0}))[:T]
    q = terms.target_shortfall_probability
    targets = (0.005, 0.01, 0.02, 0.05, 0.10)
    jk = _jackknife_figures(money, terms, recovery_factor, payout, beta, (q, *targets))
    any_below = cv["below"].any(axis=0)
    n_calls = cv["calls"].sum(axis=0)
    top_up_size = cv["call_size"].sum(axis=0)
    # the means' errors in one pass: by year the outcomes' value (the fitted values vary less than the
    # paths' outcomes: their mean's error is the outcomes'), below-balance, calls and top-ups; then the
    # term's figures
    ses = mean_ses(np.concatenate([money.realised_paths[1:T + 1], cv["below"], cv["calls"], cv["call_size"],
                                   np.stack([any_below, n_calls > 0, n_calls, top_up_size])]), set_size)
    year_se, term_se = ses[:4 * T].reshape(4, T), ses[4 * T:]
    rows = []
    for t in range(1, T + 1):
        v = vals[t - 1]
        # one sort of the year's values and one of its LTVs for all their quantiles and intervals
        vq, vci = quantiles_and_cis(v, (0.05, 0.50, 0.95), set_size=q_set)
        lq, lci = quantiles_and_cis(cv["ltv"][t - 1], (0.50, 0.95), set_size=q_set, method="higher")
        rows.append({
            "year": t, "balance_cny": float(cv["balance"][t - 1]),
            "balance_mean_cny": float(cv["balance_paths"][t - 1].mean()),
            "value_mean_cny": float(v.mean()), "value_mc_se_cny": float(year_se[0, t - 1]),
            "value_p05_cny": vq[0], "value_p50_cny": vq[1], "value_p95_cny": vq[2],
            **{f"value_p{k:02d}_ci95_{end}_cny": b for k, ci in zip((5, 50, 95), vci)
               for end, b in zip(("low", "high"), ci)},
            "ltv_p50": lq[0], "ltv_p95": lq[1],
            **{f"ltv_p95_ci95_{end}": b for end, b in zip(("low", "high"), lci[1])},
            "p_value_below_balance": float(cv["below"][t - 1].mean()),
            "p_value_below_balance_mc_se": float(year_se[1, t - 1]),
            "p_top_up_call": float(cv["calls"][t - 1].mean()),
            "p_top_up_call_mc_se": float(year_se[2, t - 1]),
            "expected_top_up_cny": float(cv["call_size"][t - 1].mean()),
            "expected_top_up_mc_se_cny": float(year_se[3, t - 1]),
        })
    by_year = _with_regression_error(pd.DataFrame(rows), jk)
    # VaR and ES in today's money: the end-of-term value discounted to today at the discount rate, against
    # today's value (comparing year-T money with today's gave a riskless pledge a negative VaR95, -355,469 CNY)
    disc_T = (1 + terms.discount_rate) ** -T
    end_v = vals[-1] * disc_T
    risk = {
        "p_value_below_balance_any_time": float(any_below.mean()),
        "p_value_below_balance_any_time_mc_se": float(term_se[0]),
        "p_any_top_up_call": float((n_calls > 0).mean()),
        "p_any_top_up_call_mc_se": float(term_se[1]),
        "expected_number_of_top_up_calls": float(n_calls.mean()),
        "expected_number_of_top_up_calls_mc_se": float(term_se[2]),
        "expected_top_up_size_cny": float(top_up_size.mean()),
        "expected_top_up_size_mc_se_cny": float(term_se[3]),
        "mean_call_size_given_call_cny": float(cv["call_size"][cv["calls"]].mean()) if cv["calls"].any() else 0.0,
        "value_horizon_year": T,
        "ltv_at_origination": float(terms.amount_cny / v0) if v0 > 0 else float("inf"),
        "collateral_var_basis": VAR_BASIS,
    }
    _widen_risk(risk, jk)
    end_q, end_ci = quantiles_and_cis(end_v, (0.05, 0.01), set_size=q_set)
    for (pct, tail_p), qv, (lo, hi) in zip(((95, 0.05), (99, 0.01)), end_q, end_ci):
        # VaR: today's value less the tail quantile of the end-of-term value discounted to today; its interval
        # is the quantile's order-statistic interval mirrored; ES: the tail mean's asymptotic error
        # (both widened by the regression's jackknife error, _widen)
        var = float(v0 - qv)
        risk[f"collateral_var{pct}_cny"] = var
        risk[f"collateral_var{pct}_ci95_cny"] = _widen(var, [v0 - hi, v0 - lo], jk, f"var{pct}", high=v0)
        risk[f"collateral_es{pct}_cny"] = float(v0 - end_v[end_v <= qv].mean())
        risk[f"collateral_es{pct}_mc_se_cny"] = _at_least(
            tail_mean_se(end_v, tail_p, upper=False, set_size=q_set), jk, f"es{pct}")
    # ---- sizing: the largest loan with shortfall probability <= target -------------------------
    with np.errstate(divide="ignore"):
        ratio = np.where(beta[:, None] > 0, vals / beta[:, None], np.inf).min(axis=0)
    # the largest loan is a quantile of the paths' value-to-balance ratio: its order-statistic interval,
    # widened to the regression's jackknife interval where that is wider
    ratio_q, ratio_ci = quantiles_and_cis(ratio, (q, *targets), set_size=q_set)
    ratio_ci = [_widen(est, ci, jk, f"max_loan_{i}", low=0.0) for i, (est, ci) in enumerate(zip(ratio_q, ratio_ci))]
    max_loan = ratio_q[0]
    sizing = {
        "target_shortfall_probability": q,
        "max_loan_by_target_cny": {f"{t:g}": max(v, 0.0) for t, v in zip(targets, ratio_q[1:])},
        "max_loan_by_target_ci95_cny": {f"{t:g}": [max(b, 0.0) for b in ci] for t, ci in zip(targets, ratio_ci[1:])},
        "max_loan_cny": max(max_loan, 0.0),
        "max_loan_ci95_cny": [max(b, 0.0) for b in ratio_ci[0]],
        "max_loan_mc_se_cny": _jk_se(jk, "max_loan_0"),
        "implied_haircut": float(1 - max_loan / v0) if v0 > 0 else None,
        "practice_loan_cny": float(v0 * terms.pledge_rate),
        "p_shortfall_at_practice_loan": float((ratio < v0 * terms.pledge_rate).mean()),
        "p_shortfall_at_practice_loan_mc_se": _at_least(mean_se(ratio < v0 * terms.pledge_rate, set_size), jk,
                                                        "p_shortfall_practice"),
        "requested_loan_within_limit": bool(terms.amount_cny <= max_loan),
        "requested_ltv_exceeds_pledge_rate": bool(terms.amount_cny > terms.pledge_rate * v0),
    }
    _flag_unresolved(risk, sizing, jk, paths, q, targets)
    n_eff = max(paths // max(int(set_size), 1), 1)
    risk["zero_one_bounds_95"] = _zero_one_bounds(
        {"p_value_below_balance_any_time": risk["p_value_below_balance_any_time"],
         "p_any_top_up_call": risk["p_any_top_up_call"],
         **{f"p_value_below_balance_year_{t}": p for t, p in zip(by_year["year"], by_year["p_value_below_balance"])},
         **{f"p_top_up_call_year_{t}": p for t, p in zip(by_year["year"], by_year["p_top_up_call"])}}, n_eff)
    sizing["zero_one_bounds_95"] = _zero_one_bounds(
        {"p_shortfall_at_practice_loan": sizing["p_shortfall_at_practice_loan"]}, n_eff)
    # ---- security mix and credit metrics -----------------------------------------------------
    other = terms.forest_right_mortgage_cny + terms.guarantee_cny
    total_security = v0 + other
    carbon_cover = v0 / terms.amount_cny
    security = {
        "carbon_value_cny": v0, "forest_right_mortgage_cny": terms.forest_right_mortgage_cny,
        "guarantee_cny": terms.guarantee_cny,
        "carbon_share_of_security": float(v0 / total_security) if total_security > 0 else 0.0,
        "carbon_cover_of_exposure": float(carbon_cover),
        "unsecured_cny": float(max(terms.amount_cny - total_security, 0.0)),
        "credit_enhancement_only": bool(carbon_cover < CREDIT_ENHANCEMENT_THRESHOLD),
    }
    credit = None
    if terms.borrower_pd is not None:
        ead = terms.amount_cny
        m = float(effective_maturity_years(terms))
        lgd_secured = foundation_lgd_star(ead, v0 + terms.forest_right_mortgage_cny).lgd
        lgd_unsecured = foundation_lgd_star(ead, 0.0).lgd
        # the loss on a forced sale over the exposure at default, both summed over the term's years and paths
        # (the paths' balances, with met top-up calls carried forward)
        sim_lgd, sim_lgd_se = _simulated_lgd(cv, jk, set_size)
        credit = {
            "pd": terms.borrower_pd, "ead_cny": ead, "maturity_years": m,
            "firb_lgd_carbon_as_other_physical": float(lgd_secured),
            "firb_lgd_unsecured": float(lgd_unsecured),
            "simulated_lgd_forced_sale": sim_lgd,
            "simulated_lgd_forced_sale_mc_se": sim_lgd_se,
            "expected_loss_cny": float(expected_loss(terms.borrower_pd, lgd_secured, ead)),
            "expected_loss_unsecured_cny": float(expected_loss(terms.borrower_pd, lgd_unsecured, ead)),
            "irb_capital_k": float(irb_capital_requirement(terms.borrower_pd, lgd_secured, m)),
            "rwa_cny": float(irb_rwa(terms.borrower_pd, lgd_secured, ead, m)),
            "rwa_unsecured_cny": float(irb_rwa(terms.borrower_pd, lgd_unsecured, ead, m)),
            "note": ("Carbon credits are not Basel-eligible financial collateral; F-IRB treats them at best as "
                     "'other physical collateral' (LGD_S 25 %, haircut 40 %) and only with a liquid market and a "
                     "public price. The unsecured figures show the conservative treatment."),
        }
    # ---- drivers (common random numbers) and sensitivities ------------------------------------
    drivers = None
    if attribution:
        drivers = _attribution(pledged, params, terms, pms, iss, seed, n_attr, workers, chunk_paths, phys, paths,
                               base_sw, scheduler, runs, anti, corr_size, cancel)
    sens = None
    if sensitivities:
        rows = []
        # shifting the start and the long-run level of the log-price model by ln(lf) shifts every path
        # by ln(lf): prices and cash flows scale by lf, and so do the regressions' fits (their targets
        # scale, their standardised regressors do not) and every value: no re-draw, no refit
        cases = [(label, money.value_paths * lf, money.pv_total * lf, money, lf)
                 for label, lf in (("price -50%", 0.5), ("price -30%", 0.7), ("price +30%", 1.3))]
        for label, mm in zip(vol_cases, vol_money):
            cases.append((label, mm.value_paths, mm.pv_total, mm, 1.0))
        below = [_credit_view(value_paths, terms, recovery_factor, payout, mm.received_paths * lf)["below"].any(axis=0)
                 for _, value_paths, _, mm, lf in cases]
        # the errors of the cases' changes and below-balance probabilities in one pass
        ses = mean_ses(np.stack([pv_total - money.pv_total for _, _, pv_total, _, _ in cases] + below), set_size)
        for i, ((label, _, pv_total, mm, lf), below_s) in enumerate(zip(cases, below)):
            # the probability's error includes the regression's (its jackknife; a price-level case's
            # replicates are the base's scaled)
            rows.append({"case": label, "value_cny": float(pv_total.mean()),
                         "change_cny": float(pv_total.mean() - v0),
                         "change_mc_se_cny": float(ses[i]),
                         "p_value_below_balance_any_time": float(below_s.mean()),
                         "p_value_below_balance_any_time_mc_se": _with_jk(float(ses[len(cases) + i]), mm,
                                                                          _below_any_rate(terms, lf))})
        sens = pd.DataFrame(rows)
    provenance = {
        "model_version": MODEL_VERSION, "code_version": code_version(),
        **carried_provenance(phys.provenance),
        "seed": seed, "paths": paths, "horizon_years": H, "antithetic_prices": anti,
        "price_model_sha256": pms.sha256, "issuance_risk_sha256": iss.sha256,
        "method": ("engine paths + issuance risk + OU-jump prices; value at t by least-squares regression on the "
                   "state at t (stock spline x price, pending credits, methodology regime)"),
    }
    return CollateralValuation(
        provenance=provenance, terms=terms.model_dump(mode="json"), value_today=value_today, by_year=by_year,
        risk=risk, sizing=sizing, credit=credit, security=security, drivers=drivers, sensitivities=sens,
        paths={"value": money.value_paths, "balance": cv["balance"], "balance_paths": cv["balance_paths"],
               "received": money.received_paths, "prices": prices, "credits": realised,
               "loss_tco2e": sum(phys.losses.values()) if phys.losses else np.zeros_like(realised)},
    )


def _attribution(pledged, params, terms, pms, iss, seed, n, workers, chunk_paths, base_phys, base_paths, base_sw,
                 scheduler=None, runs: RunsProgress | None = None, antithetic: bool = False, corr_size: int = 1,
                 cancel: Callable[[], bool] | None = None):
    """Value and shortfall probability with each driver switched off in turn, on common random numbers
    (``runs``: the valuation's progress, whose runs 1.. are this function's engine runs in turn;
    ``antithetic``: the valuation's price pairs; ``corr_size``: the paths whose errors move together)."""
    runs = runs or RunsProgress(None)
    run_no = iter(range(1, 1_000))
    ids = np.arange(n)
    H = terms.crediting_horizon_years
    pmodel = pms.model(terms.price_model)

    spread = _spread_factors(pms, terms, ids, seed)
    haircut = pms.liquidity_haircut.draws(ids, seed)
    rf = (1 - haircut) * (1 - terms.liquidation_cost_fraction) * (1 + terms.discount_rate) ** -terms.liquidation_time_years

    set_size = base_sw.parameter_set_size
    groups = jackknife_groups(ids, corr_size)
    below_rate = _below_any_rate(terms)

    def evaluate(phys, price_paths, issuance, insured=True):
        """Per path: value today, whether value falls below the balance at any time, total shortfall;
        and the money (with its regression replicates)."""
        issued = issuance.realise(phys.credits, ids, seed)
        payout = _insurance_payout(phys, terms.insurance) if (terms.insurance and insured) else None
        mm = _money(issued.credits, phys.stock, price_paths, terms, issued, groups, _crediting_position(params, phys),
                    spread)
        cvs = _credit_view(mm.value_paths, terms, rf, payout, mm.received_paths)
        return (mm.pv_total, cvs["below"].any(axis=0).astype(float), cvs["shortfall"].sum(axis=0), mm,
                _shortfall_mean(terms, rf, payout, mm.received_paths))

    def row(driver, per_path, base_per_path=None):
        """Means, and for a driver switched off the effects with the error of the paired difference (the
        shortfall probability's at least its regressions' jackknife error: each arm refits its own; the expected
        shortfall's at least its own, as it is read from the fitted values)."""
        v, b, s, mm, shortfall_stat = per_path
        out = {"driver": driver, "value_cny": float(v.mean()), "p_value_below_balance_any_time": float(b.mean()),
               "expected_shortfall_cny": float(s.mean()),
               "expected_shortfall_mc_se_cny": _larger_error(mean_se(s, set_size), _replicate_se(mm, shortfall_stat))}
        if base_per_path is not None:
            out.update({"value_effect_cny": float(v.mean() - base_per_path[0].mean()),
                        "value_effect_mc_se_cny": mean_se(v - base_per_path[0], set_size),
                        "shortfall_effect": float(b.mean() - base_per_path[1].mean()),
                        "shortfall_effect_mc_se": _larger_error(mean_se(b - base_per_path[1], set_size),
                                                                _replicate_se(mm, below_rate, base_per_path[3]))})
        return out

    if n == base_paths:
        base = base_phys
    else:
        base = _simulate_physical(pledged, params, H, n, seed, base_sw, workers, chunk_paths, scheduler,
                                  runs.of(next(run_no)), cancel, crediting_overrides(terms))
    # the price-loss correlation's factor ranks the losses of the drivers' own base run (at fewer paths than
    # the valuation's it had been dropped: the drivers' prices ignored the correlation)
    factor = loss_factor(base, ids, seed) if terms.price_loss_correlation else None

    def prices(model, volatility_factor=1.0, mean_shift=None):
        return _price_paths(pms, model, terms, ids, H, seed, factor, (volatility_factor,), antithetic,
                            [mean_shift])[0]

    base_prices = prices(pmodel)
    base_pp = evaluate(base, base_prices, iss)
    rows = [{**row("full model", base_pp), "value_effect_cny": 0.0, "value_effect_mc_se_cny": 0.0,
             "shortfall_effect": 0.0, "shortfall_effect_mc_se": 0.0}]
    # no jumps, and the volatility the price runs at (a scenario's own, if it sets one) scaled to 0, at the base
    # case's mean price path E[P_t] (the log-OU level is a median: without the shocks' lognormal mean and
    # the jumps' drift the calm path had a lower mean, and the driver showed drift, not risk)
    calm = dataclasses.replace(pmodel, jump_intensity_per_year=0.0)
    cases = [("price volatility and jumps", None,
              prices(calm, 0.0, _mean_holding_factor(pms, pmodel, terms, H, 0.0, jumps=False)), iss)]
    for peril in base_phys.losses:
        cases.append((peril, base_sw.without(peril), base_prices, iss))
    cases.append(("issuance risk", None, base_prices, IssuanceRisk.none()))
    cases.append(("growth uncertainty", dataclasses.replace(base_sw, growth_parameter_uncertainty=False,
                                                            growth_shocks=False, parcel_noise=False), base_prices, iss))
    cases.append(("peril-parameter uncertainty", dataclasses.replace(base_sw, peril_parameter_uncertainty=False), base_prices, iss))
    for label, sw, pp, issuance in cases:
        phys = base if sw is None else _simulate_physical(pledged, params, H, n, seed, sw, workers, chunk_paths,
                                                          scheduler, runs.of(next(run_no)), cancel,
                                                          crediting_overrides(terms))
        # value_effect > 0: the driver costs this much value; the errors are those of the paired (CRN) differences
        rows.append(row(f"without {label}", evaluate(phys, pp, issuance), base_pp))
    if terms.insurance is not None:
        rows.append(row("without assigned insurance", evaluate(base, base_prices, iss, insured=False), base_pp))
    df = pd.DataFrame(rows)
    df["paths"] = n
    return df


__all__ = ["AssignedInsurance", "CollateralValuation", "LoanTerms", "LoanTermsError", "balance_schedule",
           "check_loan_terms", "select_pledged", "unknown_price_names", "value_collateral"]
