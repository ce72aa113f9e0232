"""Terms of a carbon-pledge loan (林业碳汇质押贷款) and their validation.

Kept apart from :mod:`finance_engine.collateral` (the valuation, which imports the simulation engine) so that
what only needs the terms -- the API's request schemas, the stress test's loan registry -- loads them without
the engine: the service starts about a second faster. :mod:`finance_engine.collateral` re-exports every name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.perils import check_peril_names

if TYPE_CHECKING:
    from finance_engine.price import PriceModelSet


class LoanTermsError(ValueError):
    """Invalid loan terms; the message names the field."""


class AssignedInsurance(BaseModel):
    """A sink-loss indemnity policy assigned to the bank: payouts go to the bank first."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    covered_perils: tuple[str, ...] = ("fire", "pine_wilt", "typhoon", "ice_storm", "drought")
    agreed_price_cny_per_tco2e: float = Field(gt=0, allow_inf_nan=False)
    annual_deductible_tco2e: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    annual_limit_cny: float = Field(default=float("inf"), gt=0, description="CNY a year; unlimited by default")

    @field_validator("covered_perils")
    @classmethod
    def _known_perils(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_peril_names(v)  # an unknown name would cover nothing, silently


class LoanTerms(BaseModel):
    """Terms of a carbon-pledge loan.

    Money in CNY, rates per year as fractions, times in years.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # every term is finite
    amount_cny: float = Field(gt=0, description="loan principal, CNY")
    term_years: int = Field(ge=1, le=40)
    interest_rate: float = Field(ge=0, lt=0.5)
    amortisation: Literal["bullet", "annuity", "linear"] = "annuity"
    # >= 0: a negative rate would weigh a credit 30 years out above one today; Chinese lending rates (LPR
    # 3-3.5 %) and the bank's cost of funds are positive
    discount_rate: float = Field(default=0.045, ge=0.0, lt=1.0, description="rate to discount credit cash flows "
                                 "(per year, >= 0)")
    pledge_rate: float = Field(default=0.6, gt=0, le=1.0, description="maximum LTV at origination (质押率)")
    ltv_trigger: float = Field(default=0.8, gt=0, description="LTV above which a top-up is called")
    liquidation_cost_fraction: float = Field(default=0.05, ge=0, lt=1)
    liquidation_time_years: float = Field(default=0.5, ge=0, le=5)
    forest_right_mortgage_cny: float = Field(default=0.0, ge=0)
    guarantee_cny: float = Field(default=0.0, ge=0)
    borrower_pd: float | None = Field(default=None, gt=0, lt=1)
    credit_type: Literal["ccer", "carbon_puhui", "tanpiao"] = "ccer"
    price_model: str = "cea"
    price_scenario: str | None = Field(default=None, description="NGFS-style scenario the prices fluctuate around "
                                       "(current_policies, delayed_transition, net_zero, price_crash); None: the "
                                       "mean-reverting model's own level")
    price_loss_correlation: float = Field(default=0.0, ge=-1, le=1, description="correlation of the price shock "
                                          "with the pledged forest's annual loss (stress scenarios)")
    crediting_horizon_years: int = Field(default=30, ge=1, le=100, description="years of credits valued; none is "
                                         "issued after the crediting period (the parameter file's, Lishui 40 "
                                         "years, or crediting_period_years)")
    crediting_start_year: int | None = Field(default=None, ge=1900, le=2200, description="calendar year the "
                                             "pledged project began (or begins) crediting (None: the valuation's "
                                             "first year); earlier: fewer years of its crediting period left and "
                                             "its verifications in their phase; later (a project being registered, "
                                             "at most 50 years on): nothing credited before it, its first "
                                             "verification counting from the stock then")
    crediting_period_years: int | None = Field(default=None, ge=1, le=100, description="the project's registered "
                                               "crediting period in years (None: the parameter file's; the MEE's "
                                               "2023 CCER rules allow forestry 20 to 40)")
    target_shortfall_probability: float = Field(default=0.01, gt=0, lt=0.5)
    insurance: AssignedInsurance | None = None

    @model_validator(mode="after")
    def _check(self) -> "LoanTerms":
        if self.term_years > self.crediting_horizon_years:
            raise ValueError(f"term_years={self.term_years} is beyond the crediting horizon "
                             f"({self.crediting_horizon_years} years)")
        if self.ltv_trigger < self.pledge_rate:
            raise ValueError(f"ltv_trigger={self.ltv_trigger} is below the pledge_rate={self.pledge_rate}: "
                             "a new loan would be called at once")
        return self


#: the loan terms that set the engine's crediting rules (``simulate(crediting=...)``)
CREDITING_TERMS = ("crediting_start_year", "crediting_period_years")


def crediting_overrides(terms: LoanTerms | dict) -> dict[str, int]:
    """The engine's crediting overrides (``simulate(crediting=...)``) the loan's terms set (a :class:`LoanTerms`
    or a dict of terms): its project's crediting start year and registered crediting period, where given."""
    get = terms.get if isinstance(terms, dict) else (lambda k: getattr(terms, k, None))
    return {k: get(k) for k in CREDITING_TERMS if get(k) is not None}


def check_crediting_terms(terms: LoanTerms | dict, params, start_year: int | None = None,
                          horizon_years: int | None = None) -> None:
    """Refuse a crediting start year or period the crediting rules of ``params`` (a
    :class:`~models.parameters.ModelParameters`) cannot take -- a start more than
    :data:`~models.carbon.MAX_YEARS_TO_CREDITING_START` years after the valuation's first year (``start_year``,
    default the engine's), a period that ended before it or is shorter than a monitoring period -- or, given the
    valuation's crediting horizon (``horizon_years``, else the terms' ``crediting_horizon_years`` where they have
    one), whose first verification falls after it (nothing would be credited: a value of 0) -- with a
    :class:`LoanTermsError` that starts with the term's name."""
    from models.carbon import CreditingRules
    from models.dynamics import DEFAULT_START_YEAR

    own = crediting_overrides(terms)
    if not own:
        return
    start = DEFAULT_START_YEAR if start_year is None else int(start_year)
    try:
        rules = CreditingRules.checked(params, start_year=start, **own)
    except ValueError as exc:  # "crediting_period_years: the crediting period ... ended before the run's start"
        raise LoanTermsError(str(exc)) from None
    if horizon_years is None:
        horizon_years = terms.get("crediting_horizon_years") if isinstance(terms, dict) else \
            getattr(terms, "crediting_horizon_years", None)
    first = rules.first_issuance_year()
    if horizon_years is not None and first is not None and first > int(horizon_years):
        name = "crediting_start_year" if "crediting_start_year" in own else next(iter(own))
        raise LoanTermsError(
            f"{name}: the first verification, at the end of {start + first - 1}, falls after the "
            f"{int(horizon_years)}-year crediting horizon ({start}-{start + int(horizon_years) - 1}): nothing would be "
            f"credited in the valuation; lengthen crediting_horizon_years or value the loan nearer its crediting start")


def balance_schedule(terms: LoanTerms) -> np.ndarray:
    """Outstanding balance at the end of years 0..term (CNY), shape (term+1,); 0 at maturity."""
    T, r, L = terms.term_years, terms.interest_rate, terms.amount_cny
    t = np.arange(T + 1, dtype=float)
    if terms.amortisation == "bullet":
        b = np.full(T + 1, L)
    elif terms.amortisation == "linear":
        b = L * (1 - t / T)
    elif r == 0:
        b = L * (1 - t / T)
    else:  # annuity: level payments A = L r / (1 - (1 + r)^-T)
        b = L * ((1 + r) ** T - (1 + r) ** t) / ((1 + r) ** T - 1)
    b[-1] = 0.0
    return b


def scheduled_payments(terms: LoanTerms) -> np.ndarray:
    """The borrower's contractual payments at the ends of years 1..term (CNY), shape (term,): the year's
    interest on the balance outstanding during it plus the principal repaid,
    ``CF_t = r B_{t-1} + (B_{t-1} - B_t)`` with ``B`` :func:`balance_schedule` (a bullet loan pays interest
    and the whole principal at maturity; an annuity its level payment)."""
    b = balance_schedule(terms)
    return terms.interest_rate * b[:-1] + (b[:-1] - b[1:])


def effective_maturity_years(terms: LoanTerms, floor_years: float = 1.0, cap_years: float = 5.0) -> float:
    """Effective maturity ``M = sum_t t CF_t / sum_t CF_t`` of the repayment schedule (years), clipped to
    ``[floor_years, cap_years]``: the Basel F-IRB/A-IRB definition for an instrument with a fixed cash-flow
    schedule (BCBS Basel Framework CRE32.46: ``CF_t`` the cash flows -- principal, interest and fees --
    contractually payable in period ``t``; floor 1 and cap 5 years, CRE32.47), with the payments of
    :func:`scheduled_payments` at the ends of years 1..term. An annuity's level payments give
    ``M = (term + 1) / 2`` (3 years for a 5-year annuity, where the term read as the maturity said 5); a
    5-year bullet at 4 % gives 4.67."""
    cf = scheduled_payments(terms)
    t = np.arange(1, cf.size + 1, dtype=float)
    m = float((t * cf).sum() / cf.sum()) if cf.sum() > 0 else float(terms.term_years)
    return float(min(max(m, floor_years), cap_years))


def check_loan_terms(terms: LoanTerms | dict, price_model_set: PriceModelSet | None = None) -> LoanTerms:
    """The loan terms validated, and the names they look up known (the price model and the price scenario in
    ``price_model_set``, default the shipped one; covered perils are checked by the schema), before any
    simulation. Raises :class:`LoanTermsError` naming the field (``price_scenario: unknown ...``)."""
    if not isinstance(terms, LoanTerms):
        try:
            terms = LoanTerms.model_validate(terms)
        except Exception as exc:  # pydantic.ValidationError -> one readable line per field
            raise LoanTermsError(_readable(exc)) from exc
    unknown = unknown_price_names(terms, price_model_set)
    if unknown:
        name, reason = unknown[0]
        raise LoanTermsError(f"{name}: {reason}")
    return terms


def unknown_price_names(terms: LoanTerms, price_model_set: PriceModelSet | None = None) -> list[tuple[str, str]]:
    """``(field, reason)`` for each name of the terms the price model set does not know (``price_model``,
    ``price_scenario``); empty when all are known."""
    if price_model_set is None:
        from finance_engine.price import load_price_model  # pandas and scipy: only when asked

        price_model_set = load_price_model()
    pms = price_model_set
    out = []
    for name, look_up in (("price_model", pms.model), ("price_scenario", pms.scenario)):
        value = getattr(terms, name)
        if value is not None:
            try:
                look_up(value)
            except ValueError as exc:  # PriceModelError
                out.append((name, str(exc)))
    return out


def _readable(exc: Exception) -> str:
    errs = getattr(exc, "errors", None)
    if callable(errs):
        parts = []
        for e in errs():
            loc = ".".join(str(x) for x in e.get("loc", ())) or "terms"
            msg = e.get("msg", "").replace("Value error, ", "")
            parts.append(f"{loc}: {msg}")
        return "; ".join(parts)
    return str(exc)


__all__ = ["CREDITING_TERMS", "AssignedInsurance", "LoanTerms", "LoanTermsError", "balance_schedule",
           "check_crediting_terms", "check_loan_terms", "crediting_overrides", "effective_maturity_years",
           "scheduled_payments", "unknown_price_names"]
