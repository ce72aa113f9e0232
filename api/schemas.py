"""Request and response models of the HTTP API (pydantic v2); they make the OpenAPI document.

(No ``from __future__ import annotations``: the annotations that carry an engine model's fields,
:func:`engine_field`, are built when the class is.)"""

import math
import re
import types
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from annotated_types import Le
from pydantic import (AfterValidator, AllowInfNan, BaseModel, ConfigDict, Field, ValidationInfo, field_validator,
                      model_validator)
from pydantic_core import PydanticUndefined

from finance_engine.loan_terms import LoanTerms as EngineLoanTerms
from finance_engine.simulation.config import ALL_LEVELS

#: the engine's account levels (``finance_engine.simulation.config.ALL_LEVELS``): simulations, AAL tables
Level = Literal[ALL_LEVELS]
AccountLevel = Literal["portfolio", "province", "city", "county", "township", "village"]
JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Peril = Literal["fire", "drought", "typhoon", "ice_storm", "pine_wilt"]
T = TypeVar("T")
ID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
CONTROL_REASON = "must not contain control characters (U+0000-U+001F, U+007F-U+009F)"


def no_control_chars(v: str | None) -> str | None:
    """Names and labels are printable text: NUL, newlines, tabs and other control characters are refused
    (PostgreSQL cannot store NUL in a text column; the others only garble reports and logs)."""
    if v is not None and CONTROL_CHARS.search(v):
        raise ValueError(CONTROL_REASON)
    return v


#: a name or label: printable text (no control characters)
Text = Annotated[str, AfterValidator(no_control_chars)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def engine_field(model: type[BaseModel], name: str, *sanity: Any, description: str | None = None,
                 optional: bool = True) -> Any:
    """The type of a request field that carries field ``name`` of the engine's pydantic ``model`` as the
    engine has it: its type and constraints (``model.model_fields[name]``: bounds, finiteness), so the
    request schema admits only what the engine values and cannot drift from it, and the OpenAPI document
    shows the engine's bounds. ``sanity``: constraints the API adds (annotated-types or pydantic
    metadata: upper bounds so no request asks for absurd amounts, name patterns). ``description``
    (default: the engine's) gets the engine's default appended. ``optional``: also ``None`` (the
    engine's default; give the field ``= None``)."""
    f = model.model_fields[name]
    base = f.annotation
    if get_origin(base) in (Union, types.UnionType) and type(None) in get_args(base):  # X | None -> X
        base = Union[tuple(a for a in get_args(base) if a is not type(None))]
    meta = list(f.metadata)
    if (model.model_config.get("allow_inf_nan") is False and base is float
            and not any(isinstance(m, AllowInfNan) for m in meta)):
        meta.append(AllowInfNan(False))  # the model admits only finite numbers
    typ = Annotated[(base, *meta, *sanity)] if meta or sanity else base
    text = description if description is not None else f.description
    d = f.default
    if d is not PydanticUndefined and d is not None and isinstance(d, (str, int, float)) and \
            not (isinstance(d, float) and not math.isfinite(d)):
        text = f"{text} (default {d})" if text else f"default {d}"
    return Annotated[typ | None if optional else typ, Field(description=text)]


class Page(BaseModel, Generic[T]):
    """One page of a list: ``items``, the ``total`` count, and the offset of the next page (or null).

    Pages of a result's rows also carry the result's ``provenance`` (model version, parameter hash, seed,
    paths...), so a client that keeps only the rows keeps what made them.
    """

    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None
    provenance: dict[str, Any] | None = None
    units: dict[str, str] | None = None


# ---- portfolios ---------------------------------------------------------------------------------
#: a region (a model id, GET /v1/models): the JSON upload's ``region`` and the multipart form's
REGION_PATTERN = r"^[a-z][a-z0-9_]{0,59}$"
DEFAULT_REGION = "lishui"


class PortfolioJSON(Strict):
    """A portfolio sent as JSON: parcel records (the columns of docs/portfolio format) or a GeoJSON
    FeatureCollection."""

    name: Text = Field(min_length=1, max_length=200)
    region: str = Field(DEFAULT_REGION, pattern=REGION_PATTERN)
    parcels: list[dict[str, Any]] | None = Field(None, max_length=1_000_000)
    geojson: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "PortfolioJSON":
        if (self.parcels is None) == (self.geojson is None):
            raise ValueError("give exactly one of 'parcels' (a list of records) or 'geojson' (a FeatureCollection)")
        return self


class PortfolioOut(BaseModel):
    id: str
    name: str
    source: str
    region: str
    parameter_sha256: str
    n_parcels: int
    area_ha: float
    data_sha256: str
    summary: dict[str, Any]
    created_by: str
    created_at: datetime


class PortfolioDetail(PortfolioOut):
    parcels: Page[dict[str, Any]]


# ---- loans and policies -------------------------------------------------------------------------
class LoanTerms(Strict):
    """A loan secured on (part of) a portfolio's forest carbon."""

    # the collateral engine's own fields (finance_engine.loan_terms.LoanTerms): a registered loan must be one it
    # can value (api.finance.LOAN_TERMS: the engine's names of these terms)
    amount_cny: engine_field(EngineLoanTerms, "amount_cny", Le(1e12), description="principal, CNY", optional=False)
    term_years: engine_field(EngineLoanTerms, "term_years", description="whole years", optional=False)
    rate: engine_field(EngineLoanTerms, "interest_rate", description="annual interest rate, as a fraction "
                                                                     "(0.045 = 4.5 %)", optional=False)
    parcel_ids: list[str] | None = Field(None, max_length=1_000_000,
                                         description="pledged parcels (default: the whole portfolio)")
    borrower: Text | None = Field(None, max_length=200)
    currency: Literal["CNY"] = "CNY"
    # the pledged project's crediting (finance_engine.loan_terms.LoanTerms): a valuation of the loan takes them
    crediting_start_year: engine_field(EngineLoanTerms, "crediting_start_year") = None
    crediting_period_years: engine_field(EngineLoanTerms, "crediting_period_years") = None


class PolicyTerms(Strict):
    """An insurance policy on a portfolio's forest carbon."""

    sum_insured_cny: float = Field(gt=0, le=1e13)
    perils: list[Peril] = Field(min_length=1, description="covered perils")
    deductible_cny: float = Field(0.0, ge=0)
    limit_cny: float | None = Field(None, gt=0, description="largest payment (default: the sum insured)")
    term_years: float = Field(1.0, gt=0, le=50)
    parcel_ids: list[str] | None = Field(None, max_length=1_000_000,
                                         description="insured parcels (default: the whole portfolio)")
    currency: Literal["CNY"] = "CNY"

    @field_validator("perils")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("perils must not repeat")
        return v

    # the bounds between the amounts, each checked on the field it names (body/terms/<field>), against the fields
    # declared before it that are valid (a bad sum insured is named on its own)
    @field_validator("deductible_cny")
    @classmethod
    def _deductible_below_sum_insured(cls, v: float, info: ValidationInfo) -> float:
        si = info.data.get("sum_insured_cny")
        if si is not None and v >= si:  # the limit is at most the sum insured: no limit can lie above it
            raise ValueError(f"deductible_cny must be below sum_insured_cny ({si:g}), the largest limit")
        return v

    @field_validator("limit_cny")
    @classmethod
    def _limit_within_sum_insured(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is None:  # the sum insured
            return v
        si, ded = info.data.get("sum_insured_cny"), info.data.get("deductible_cny")
        if si is not None and v > si:
            raise ValueError(f"limit_cny must not exceed sum_insured_cny ({si:g})")
        if ded is not None and ded >= v:
            raise ValueError(f"limit_cny must be above deductible_cny ({ded:g})")
        return v


class LoanCreate(Strict):
    name: Text = Field("", max_length=200)
    terms: LoanTerms


class PolicyCreate(Strict):
    name: Text = Field("", max_length=200)
    terms: PolicyTerms


class InstrumentOut(BaseModel):
    id: str
    portfolio_id: str
    kind: Literal["loan", "policy"]
    name: str
    terms: dict[str, Any]
    created_by: str
    created_at: datetime


# ---- simulations --------------------------------------------------------------------------------
class SimulationRequest(Strict):
    """A Monte Carlo run of a stored portfolio (see finance_engine.simulation.simulate)."""

    portfolio_id: str = Field(pattern=ID_PATTERN)
    years: int = Field(30, ge=1, le=200)
    paths: int = Field(1000, ge=1, le=10_000_000)
    seed: int = Field(2026, ge=0, le=2**63 - 1)
    levels: list[Level] = Field(default_factory=lambda: ["portfolio", "county"], min_length=1, max_length=9)
    carbon_method: Literal["bef", "fang"] = "bef"
    scenario: str = Field("baseline", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 ._:-]+$",
                          description="a label recorded with the result")
    climate_pathway: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,39}$",
                                        description="a climate pathway of the model (default: the model's)")
    perils: list[Peril] | None = Field(None, description="perils to simulate (default: all; [] for none)")
    loss_table_level: Level | None = None
    crediting_start_year: int | None = Field(None, ge=1900, le=2200, description="calendar year the projects began "
                                             "(or begin) crediting (default: the run's first year); earlier: fewer "
                                             "years of the crediting period left, verifications in their phase; "
                                             "later (at most 50 years on): nothing credited before it, the first "
                                             "verification counting from the stock then")
    crediting_period_years: int | None = Field(None, ge=1, le=100, description="registered crediting period "
                                               "(default: the model's; Lishui 40 years)")
    mode: Literal["auto", "job"] = Field("auto", description="auto: small runs answered at once, large ones "
                                                             "as a job; job: always a job")


class Audit(BaseModel):
    request: dict[str, Any]
    request_sha256: str
    model_version: str
    code_version: str
    region: str
    parameter_sha256: str
    portfolio_sha256: str
    seed: int
    created_by: str
    request_id: str
    created_at: datetime


class SimulationOut(BaseModel):
    id: str
    portfolio_id: str
    job_id: str | None
    audit: Audit
    provenance: dict[str, Any]
    metrics: list[str]
    initial_stock: list[dict[str, Any]]
    horizon: list[dict[str, Any]]
    summary_rows: int
    event_loss_table_rows: int | None
    run_info: dict[str, Any]


# ---- jobs ---------------------------------------------------------------------------------------
class JobOut(BaseModel):
    id: str
    kind: str
    status: JobStatus
    request: dict[str, Any]
    progress: float = Field(description="fraction done, 0-1")
    eta_s: float | None = Field(description="estimated seconds left (null until the first chunk)")
    log: list[str]
    error: dict[str, Any] | None
    result_id: str | None
    attempts: int
    cancel_requested: bool
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


# ---- models, scenarios, audit ---------------------------------------------------------------------
class ModelOut(BaseModel):
    id: str
    name: str
    version: str
    sha256: str
    description: str


class ModelDetail(ModelOut):
    model_version: str
    references: dict[str, str]
    parameters: dict[str, Any]
    yaml: str


class ScenarioOut(BaseModel):
    id: str
    kind: Literal["climate_pathway", "stress"]
    model: str | None
    version: str | None = Field(None, description="the scenario file's version (pathways: the parameter file's)")
    description: str
    source: str | None
    confidence: str | None
    sha256: str


class ScenarioDetail(ScenarioOut):
    content: dict[str, Any]


class AuditOut(BaseModel):
    id: int
    key_id: str
    action: str
    resource_type: str
    resource_id: str
    detail: dict[str, Any]
    request_id: str
    at: datetime


class AccountsOut(BaseModel):
    portfolio_id: str
    level: AccountLevel | None
    sink_paths: int
    seed: int
    provenance: dict[str, Any]
    units: dict[str, str]
    rows: Page[dict[str, Any]]


# ---- admin --------------------------------------------------------------------------------------
class TenantCreate(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
    role: Literal["bank", "insurer", "bureau", "admin"]


class TenantOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime


class KeyCreate(Strict):
    expires_days: float | None = Field(None, gt=0, le=3650)
    label: Text = Field("", max_length=100)


class KeyOut(BaseModel):
    id: str
    tenant_id: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="the API key; shown once, never again")


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
