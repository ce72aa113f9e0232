"""Request and response models of the finance endpoints: collateral valuations, insurance quotes, layer
pricing and stress tests (pydantic v2; they make the OpenAPI document).

The collateral terms carry the engine's own fields (``finance_engine.loan_terms.LoanTerms``, through
:func:`api.schemas.engine_field`), so what the OpenAPI document admits the engine values; elsewhere
ranges are sanity bounds (so no request can ask for absurd work or overflow). The engine's own checks
run before a request is answered or queued (``api.finance``) and come back as 422 problems naming the
field.
"""

from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Le
from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.schemas import ID_PATTERN, Level, Peril, Strict, Text, engine_field
from finance_engine.loan_terms import AssignedInsurance, LoanTerms
from finance_engine.simulation.config import ALL_LEVELS

Mode = Literal["auto", "job"]
NAME = Field("", max_length=200, description="a label for reports")
MONEY = dict(ge=0, le=1e13)


# ---- collateral ---------------------------------------------------------------------------------
# The terms are the engine's own fields (api.schemas.engine_field: type, bounds and default from
# finance_engine.loan_terms.LoanTerms and AssignedInsurance), with an upper bound on money and ratios the
# engine leaves open (no request asks for absurd amounts) and a pattern on names.
_MONEY_CAP = Le(1e13)
_NAME = StringConstraints(max_length=40, pattern=r"^[a-z][a-z0-9_]*$")


class AssignedInsuranceIn(Strict):
    """A sink-loss policy assigned to the bank (its payouts go to the bank first)."""

    # the engine's default is every peril it knows; here null takes it (a list names at least one known peril)
    covered_perils: list[Peril] | None = Field(None, min_length=1)
    agreed_price_cny_per_tco2e: engine_field(AssignedInsurance, "agreed_price_cny_per_tco2e", Le(1e6), optional=False)
    annual_deductible_tco2e: engine_field(AssignedInsurance, "annual_deductible_tco2e", Le(1e12)) = None
    # null: unlimited (the engine's default, an infinite limit JSON cannot carry)
    annual_limit_cny: engine_field(AssignedInsurance, "annual_limit_cny", _MONEY_CAP) = None


def _term(name: str, *sanity, description: str | None = None):
    return engine_field(LoanTerms, name, *sanity, description=description)


class CollateralTerms(Strict):
    """Terms of a carbon-pledge loan (``finance_engine.loan_terms.LoanTerms``). With a ``loan_id``
    these override the registered loan's terms; without one, ``amount_cny``, ``term_years`` and
    ``interest_rate`` are required. Omitted fields take the engine's defaults (in each description).
    The types and bounds are the engine's own (so what this schema admits, the engine values); the
    cross-field rules are checked before any work: ``term_years`` <= ``crediting_horizon_years`` and
    ``ltv_trigger`` >= ``pledge_rate``."""

    amount_cny: _term("amount_cny", _MONEY_CAP) = None
    term_years: _term("term_years", description="whole years (at most the crediting horizon)") = None
    interest_rate: _term("interest_rate", description="annual, as a fraction") = None
    amortisation: _term("amortisation") = None
    discount_rate: _term("discount_rate") = None
    pledge_rate: _term("pledge_rate") = None
    ltv_trigger: _term("ltv_trigger", Le(10), description="LTV above which a top-up is called; at least "
                                                          "pledge_rate") = None
    liquidation_cost_fraction: _term("liquidation_cost_fraction") = None
    liquidation_time_years: _term("liquidation_time_years") = None
    forest_right_mortgage_cny: _term("forest_right_mortgage_cny", _MONEY_CAP) = None
    guarantee_cny: _term("guarantee_cny", _MONEY_CAP) = None
    borrower_pd: _term("borrower_pd", description="borrower's one-year probability of default") = None
    credit_type: _term("credit_type") = None
    price_model: _term("price_model", _NAME) = None
    price_scenario: _term("price_scenario", _NAME) = None
    price_loss_correlation: _term("price_loss_correlation") = None
    crediting_horizon_years: _term("crediting_horizon_years") = None
    crediting_start_year: _term("crediting_start_year") = None
    crediting_period_years: _term("crediting_period_years") = None
    target_shortfall_probability: _term("target_shortfall_probability") = None
    insurance: AssignedInsuranceIn | None = None


class CollateralRequest(Strict):
    """Value the pledged carbon of a loan (``finance_engine.collateral.value_collateral``)."""

    portfolio_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the loan's portfolio")
    loan_id: str | None = Field(None, pattern=ID_PATTERN, description="a registered loan (POST .../loans)")
    terms: CollateralTerms | None = None
    parcel_ids: list[str] | None = Field(None, min_length=1, max_length=1_000_000,
                                         description="pledged parcels (default: the loan's, else the portfolio)")
    project_id: str | None = Field(None, min_length=1, max_length=200, description="pledge one project's parcels")
    # 4,096 by default: below about 1,100 paths the 1 % tail figures (the largest safe loan, VaR99, ES99) get no
    # estimate of the value regression's error and are flagged not resolved; 4,096 paths take about 0.5 s
    paths: int = Field(4096, ge=32, le=1_000_000, description="Monte Carlo paths (the 1 % tail figures need about "
                                                            "1,100 to be resolved)")
    seed: int = Field(2026, ge=0, le=2**63 - 1)
    attribution: bool = Field(False, description="value drivers switched off in turn (about 9 more runs)")
    attribution_paths: int | None = Field(None, ge=32, le=1_000_000, description="paths of each attribution run "
                                                                                  "(default min(paths, 2000))")
    sensitivities: bool = True
    name: Text = NAME
    mode: Mode = "auto"

    @model_validator(mode="after")
    def _target(self) -> "CollateralRequest":
        if self.loan_id is None and self.portfolio_id is None:
            raise ValueError("give portfolio_id (with terms) or loan_id")
        if self.loan_id is None and self.terms is None:
            raise ValueError("give terms (amount_cny, term_years, interest_rate) or a registered loan_id")
        if self.parcel_ids is not None and self.project_id is not None:
            raise ValueError("give at most one of parcel_ids and project_id")
        return self


# ---- insurance ------------------------------------------------------------------------------------
class DeductibleIn(Strict):
    amount: float = Field(0.0, **MONEY)
    unit: Literal["cny", "tco2e", "stock_fraction"] = "cny"
    basis: Literal["annual", "event"] = "annual"


class CoverIn(Strict):
    """A cover (``finance_engine.insurance.covers``): fields apply per ``kind`` (others are refused)."""

    kind: Literal["stock-loss", "sink-index", "price-floor"] = "stock-loss"
    price_cny_per_tco2e: float | None = Field(None, gt=0, le=1e6, description="agreed price (stock-loss, sink-index; "
                                                                             "default: the price model's start price)")
    perils: list[Peril] | None = Field(None, min_length=1, description="stock-loss")
    deductible: DeductibleIn | None = Field(None, description="stock-loss")
    limit_cny: Annotated[float, Field(gt=0, le=1e15)] | Literal["unlimited"] | None = Field(
        None, description="annual limit in CNY, or \"unlimited\"; null/omitted: none for stock-loss and "
                                         "price-floor, the value of the triggered sink for sink-index")
    participation: float | None = Field(None, gt=0, le=1)
    trigger_fraction: float | None = Field(None, gt=0, le=2, description="sink-index")
    expected_sink_tco2e: float | None = Field(None, gt=0, le=1e12, description="sink-index")
    error: Literal["none", "normal", "lognormal"] | None = Field(None, description="sink-index")
    error_cv: float | None = Field(None, ge=0, le=5, description="sink-index")
    strike_cny_per_tco2e: float | None = Field(None, gt=0, le=1e6, description="price-floor (required)")
    volume_tco2e: float | None = Field(None, gt=0, le=1e12, description="price-floor")
    price_model: str | None = Field(None, max_length=40, pattern=r"^[a-z][a-z0-9_]*$", description="price-floor")


class LoadingIn(Strict):
    method: Literal["none", "sd", "wang", "ph", "coc"] | None = None
    parameter: float | None = Field(None, ge=0, le=100)
    expense_ratio: float | None = Field(None, ge=0, lt=1)
    profit_ratio: float | None = Field(None, ge=0, lt=1)
    fixed_costs_cny: float | None = Field(None, **MONEY)


class LayerIn(Strict):
    attachment_cny: float = Field(ge=0, le=1e15)
    limit_cny: float = Field(gt=0, le=1e15)
    basis: Literal["occurrence", "aggregate"] = "occurrence"
    reinstatements: int | None = Field(None, ge=0, le=20)
    reinstatement_pct: float = Field(1.0, ge=0, le=10)
    share: float = Field(1.0, gt=0, le=1)


class QuoteRequest(Strict):
    """Quote a policy on a portfolio (``finance_engine.insurance.quote``)."""

    portfolio_id: str | None = Field(None, pattern=ID_PATTERN, description="default: the policy's portfolio")
    policy_id: str | None = Field(None, pattern=ID_PATTERN, description="a registered policy (POST .../policies)")
    cover: CoverIn | None = Field(None, description="the cover (default with a policy_id: a stock-loss cover "
                                                    "built from the policy's perils, deductible and limit)")
    paths: int = Field(2000, ge=32, le=1_000_000)
    years: int = Field(1, ge=1, le=100, description="policy years simulated per path")
    seed: int = Field(2026, ge=0, le=2**63 - 1)
    loading: LoadingIn | None = None
    subsidy: str | None = Field(None, max_length=60, pattern=r"^[a-z][a-z0-9_]*$",
                                description="subsidy scheme (commercial_forest, public_welfare_forest, ...); null "
                                            "(default): none, carbon covers are not in the central forest-insurance "
                                            "subsidy")
    subsidised: bool | None = Field(None, description="rate band to check; null: subsidised when a budget pays part")
    layers: list[LayerIn] = Field(default_factory=list, max_length=10)
    quota_share: float = Field(0.0, ge=0, lt=1)
    account_level: Level | None = "county"
    crediting_start_year: int | None = Field(None, ge=1900, le=2200, description="a price floor on the simulated "
                                             "credits: the year the projects began (or begin) crediting (default: "
                                             "the run's first year)")
    crediting_period_years: int | None = Field(None, ge=1, le=100, description="a price floor on the simulated "
                                               "credits: the registered crediting period (default: the model's)")
    name: Text = NAME
    mode: Mode = "auto"

    @model_validator(mode="after")
    def _target(self) -> "QuoteRequest":
        if self.policy_id is None and self.portfolio_id is None:
            raise ValueError("give portfolio_id (with cover) or policy_id")
        if self.policy_id is None and self.cover is None:
            raise ValueError("give a cover or a registered policy_id")
        return self


class LayerPricingJSON(Strict):
    """Layer pricing with the loss table inline (``rows``); multipart uploads send it as ``file``."""

    rows: list[dict[str, Any]] = Field(max_length=5_000_000, description="event loss table: year, event_id, loss")
    # a layer's annual losses are arrays of n_years (8 bytes each, several of them): 1,000,000 simulated years is
    # far beyond a catastrophe model's usual 10,000-100,000, and a larger one held the server for seconds and
    # gigabytes (100,000,000 years: 0.8 GB an array); the CLI's price-layer prices larger tables locally
    n_years: int = Field(ge=1, le=1_000_000)
    attachment: float = Field(ge=0, le=1e18)
    limit: float | None = Field(None, gt=0, le=1e18, description="null: unlimited")
    basis: Literal["occurrence", "aggregate"] = "occurrence"
    reinstatements: int | None = Field(None, ge=0, le=20)
    reinstatement_pct: float = Field(1.0, ge=0, le=10)
    share: float = Field(1.0, gt=0, le=1)
    name: Text = NAME


# ---- stress ---------------------------------------------------------------------------------------
# the engine's levels but parcel, on purpose: a stress test tabulates every group of a level for each scenario
StressLevel = Literal[tuple(lv for lv in ALL_LEVELS if lv != "parcel")]


class StressRequest(Strict):
    """A stress test (``finance_engine.stress.run.run_stress_test``): each scenario against the
    baseline on common random numbers."""

    portfolio_id: str = Field(pattern=ID_PATTERN)
    scenarios: list[Annotated[str, Field(pattern=r"^[a-z0-9_]{1,80}$")]] = Field(
        default_factory=list, max_length=20, description="library scenario names (GET /v1/scenarios, ids "
                                                         "stress.<name>); nothing else is looked up")
    inline_scenarios: list[dict[str, Any] | str] = Field(default_factory=list, max_length=10,
                                                         description="scenario documents (JSON objects or YAML "
                                                                     "text) in the library's format")
    years: int = Field(10, ge=1, le=100)
    paths: int = Field(500, ge=8, le=1_000_000)
    seed: int = Field(2026, ge=0, le=2**63 - 1)
    levels: list[StressLevel] = Field(default_factory=lambda: ["portfolio", "county", "township"], min_length=1,
                                      max_length=8)
    registry: dict[str, Any] | None = Field(None, description="loans, policies and insurer in the engine's "
                                                              "registry format (as carbon-risk stress --registry)")
    use_registered_loans: bool = Field(False, description="add the loans registered against the portfolio")
    accounts: bool = Field(True, description="also compute each scenario's five-level accounts")
    footprints: bool = True
    name: Text = NAME
    mode: Mode = Field("job", description="job (default) or auto: small tests answered at once")


# ---- results --------------------------------------------------------------------------------------
class FinanceAudit(BaseModel):
    request: dict[str, Any]
    request_sha256: str
    model_version: str
    code_version: str
    region: str | None
    parameter_sha256: str | None
    portfolio_sha256: str | None
    seed: int | None
    created_by: str
    request_id: str
    created_at: datetime


class AccountsRequest(Strict):
    """Five-level carbon accounts of a stored portfolio (``finance_engine.accounts.carbon_accounts``) kept as a
    result: today's stock by both methods, the potential sink, and the expected first-year sink and loss with
    their Monte Carlo errors and parameter sds, at the portfolio, province, city, county, township and village
    levels. Up to ``CRE_SYNC_MAX_CELLS`` parcels x paths the answer comes at once (201); a larger run, or
    ``mode: job``, becomes a job (202): the city's accounts with as many paths as its errors need."""

    portfolio_id: str = Field(pattern=ID_PATTERN)
    paths: int | None = Field(None, ge=1, le=1_000_000,
                              description="Monte Carlo paths of the one-year sink run (default CRE_ACCOUNTS_PATHS)")
    seed: int = Field(20260101, ge=0, le=2**63 - 1, description="seed of the sink run (the accounts' default)")
    mode: Mode = Field("auto", description="auto (default: small runs answered at once) or job")


class FinanceResultOut(BaseModel):
    id: str
    kind: Literal["collateral", "quote", "layer", "stress_test", "accounts"]
    portfolio_id: str | None
    instrument_id: str | None
    job_id: str | None
    audit: FinanceAudit
    result: dict[str, Any]
    reports: list[str] = Field(description="report downloads of this result (paths)")


__all__ = ["AccountsRequest", "CollateralRequest", "CollateralTerms", "CoverIn", "FinanceAudit", "FinanceResultOut", "LayerIn",
           "LayerPricingJSON", "LoadingIn", "QuoteRequest", "StressRequest"]
