"""The loans and policies registered against a portfolio (input of the stress test).

A registry file (YAML or JSON)::

    loans:
      - id: LQ-bank-1
        project_id: LS-LQ-P03            # or parcel_ids: [LS-000001, ...]
        terms: {amount_cny: 1500000, term_years: 3, interest_rate: 0.0435, borrower_pd: 0.02,
                crediting_horizon_years: 10}          # fields of finance_engine.loan_terms.LoanTerms
    policies:
      - id: LQ-sink-1
        loan: LQ-bank-1                  # cover the loan's pledged parcels (or project_id / parcel_ids)
        covered_perils: [fire, ice_storm, typhoon, pine_wilt]
        agreed_price_cny_per_tco2e: 60
        annual_deductible_tco2e: 50
        annual_limit_cny: 500000
        annual_premium_cny: 9000
        subsidy_scheme: commercial_forest   # a scheme of insurance_defaults.yaml (default none: the insured pays)
    insurer:
      capital_cny: 2000000
      quota_share_cession: 0.3
      stop_loss: {attachment_cny: 600000, limit_cny: 2000000, annual_premium_cny: 90000}   # on the retained annual loss

Each loan or policy covers a *unit* of parcels (a project or a list of parcels). Units must not
overlap unless they are the same set (a parcel is pledged once); the stress run credits each unit
as one project, like :func:`finance_engine.collateral.select_pledged`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from finance_engine.loan_terms import LoanTerms
from models.parameters import SITE_CLASSES, ModelParameters
from models.perils import check_peril_names
from models.portfolio import Portfolio
from models._yaml import DataFileError, read_data_file

UNIT_PREFIX = "unit:"
DEMO_REGISTRY_PATH = Path(__file__).resolve().parent.parent / "data" / "stress_registry_demo.yaml"


def demo_registry_path() -> Path:
    """The example registry of loans and policies against the shipped demo portfolio."""
    return DEMO_REGISTRY_PATH


class RegistryError(ValueError):
    """An invalid registry; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoanEntry(_Strict):
    id: str = Field(min_length=1)
    project_id: str | None = None
    parcel_ids: list[str] | None = None
    terms: LoanTerms

    @model_validator(mode="after")
    def _one_target(self) -> "LoanEntry":
        if (self.project_id is None) == (self.parcel_ids is None):
            raise ValueError("give exactly one of project_id or parcel_ids")
        return self


class PolicyEntry(_Strict):
    id: str = Field(min_length=1)
    loan: str | None = None
    project_id: str | None = None
    parcel_ids: list[str] | None = None
    covered_perils: tuple[str, ...] = ("fire", "pine_wilt", "typhoon", "ice_storm", "drought")
    agreed_price_cny_per_tco2e: float = Field(gt=0, allow_inf_nan=False)
    annual_deductible_tco2e: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    annual_limit_cny: float = Field(default=float("inf"), gt=0)
    annual_premium_cny: float = Field(ge=0, allow_inf_nan=False)
    # None: no subsidy, the insured pays the premium (carbon covers are not in the central forest-insurance
    # subsidy, which is for replanting-cost policy forest insurance: finance_engine.insurance's default too)
    subsidy_scheme: str | None = None

    @field_validator("covered_perils")
    @classmethod
    def _known_perils(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_peril_names(v)  # an unknown name would cover nothing, silently

    @field_validator("subsidy_scheme")
    @classmethod
    def _known_scheme(cls, v: str | None) -> str | None:
        from finance_engine.insurance.subsidy import subsidy_shares

        if v is None:
            return v
        subsidy_shares(v)  # the scheme the premium will be split by (InsuranceInputError, a ValueError, if unknown)
        return v

    @model_validator(mode="after")
    def _one_target(self) -> "PolicyEntry":
        if sum(x is not None for x in (self.loan, self.project_id, self.parcel_ids)) != 1:
            raise ValueError("give exactly one of loan, project_id or parcel_ids")
        return self


class StopLoss(_Strict):
    """An annual-aggregate stop-loss on the insurer's retained loss, bought at ``annual_premium_cny``."""

    attachment_cny: float = Field(ge=0, allow_inf_nan=False)
    limit_cny: float = Field(gt=0)
    #: what the insurer pays for the cover each year (CNY): a contract term, as the policies' premiums are
    annual_premium_cny: float = Field(ge=0, allow_inf_nan=False)


class InsurerEntry(_Strict):
    capital_cny: float = Field(default=float("inf"), gt=0)
    quota_share_cession: float = Field(default=0.0, ge=0, le=1)
    stop_loss: StopLoss | None = None


class Registry(_Strict):
    loans: list[LoanEntry] = Field(default_factory=list)
    policies: list[PolicyEntry] = Field(default_factory=list)
    insurer: InsurerEntry = Field(default_factory=InsurerEntry)

    @model_validator(mode="after")
    def _ids(self) -> "Registry":
        for kind, items in (("loans", self.loans), ("policies", self.policies)):
            ids = [x.id for x in items]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise ValueError(f"{kind}: duplicate id(s) {dup}")
        loans = {x.id for x in self.loans}
        for i, p in enumerate(self.policies):
            if p.loan is not None and p.loan not in loans:
                raise ValueError(f"policies.{i}.loan: no loan with id {p.loan!r}")
        return self


def read_registry(path: str | Path) -> Registry:
    """Read and validate a registry file. Raises :class:`RegistryError` naming the field."""
    p = Path(path)
    try:
        raw, _ = read_data_file(p, "registry file")
    except DataFileError as exc:
        raise RegistryError(str(exc)) from None
    return parse_registry(raw or {}, str(p))


def parse_registry(raw: dict[str, Any], source: str = "<registry>") -> Registry:
    if not isinstance(raw, dict):
        raise RegistryError(f"{source}: a registry must be a mapping with loans, policies, insurer")
    try:
        return Registry.model_validate(raw)
    except ValidationError as err:
        lines = [f"{source}: invalid registry ({err.error_count()} problem(s))"]
        for e in err.errors():
            loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
            lines.append(f"  {loc}: {e['msg'].replace('Value error, ', '')}")
        raise RegistryError("\n".join(lines)) from None


@dataclass(frozen=True)
class BoundRegistry:
    """A registry matched to a portfolio.

    ``portfolio`` is the run portfolio: the parcels of each unit carry ``project_id = "unit:<name>"``
    (other parcels keep theirs). ``unit_of_loan`` / ``unit_of_policy`` give each instrument's unit and
    ``unit_parcels`` the canonical positions of each unit's parcels.
    """

    registry: Registry
    portfolio: Portfolio
    unit_of_loan: dict[str, str]
    unit_of_policy: dict[str, str]
    unit_parcels: dict[str, np.ndarray]

    @property
    def units(self) -> list[str]:
        return sorted(self.unit_parcels)


def check_loan_crediting(where: str, terms: LoanTerms, params: ModelParameters) -> None:
    """A loan's own crediting start or period, valued on the stress run's stock paths
    (``finance_engine.stress.run.loan_crediting_rules``): the rules must take them, and the parameter file must
    have no baseline or leakage share (with one, a unit's credits depend on its parcels' gains, which the run's
    per-unit stock does not tell: :meth:`models.carbon.CreditingRules.issue_from_stock`)."""
    from finance_engine.loan_terms import LoanTermsError, check_crediting_terms, crediting_overrides

    own = crediting_overrides(terms)
    if not own:
        return
    try:
        check_crediting_terms(terms, params)
    except LoanTermsError as exc:
        raise RegistryError(f"{where}.{exc}") from None
    c = params.file.crediting
    if c.baseline_removal_fraction.value or c.leakage_fraction.value:
        raise RegistryError(f"{where}.{next(iter(own))}: a loan's own crediting rules are valued from its unit's stock, "
                            f"which needs a parameter file without baseline and leakage shares (this one has "
                            f"{c.baseline_removal_fraction.value} and {c.leakage_fraction.value}); value the loan "
                            f"on its own (a collateral valuation)")


def bind_registry(registry: Registry, portfolio: Portfolio, params: ModelParameters) -> BoundRegistry:
    """Resolve each instrument's parcels and relabel the units as projects of the run portfolio."""
    ids = portfolio.parcel_id
    pos = {pid: i for i, pid in enumerate(ids)}
    projects = portfolio.frame["project_id"].to_numpy(str)

    def parcels_of(where: str, project_id: str | None, parcel_ids: list[str] | None) -> np.ndarray:
        if project_id is not None:
            idx = np.flatnonzero(projects == project_id)
            if idx.size == 0:
                raise RegistryError(f"{where}.project_id: project {project_id!r} has no parcels in the portfolio")
            return idx
        unknown = [p for p in parcel_ids if p not in pos]
        if unknown or not parcel_ids:
            raise RegistryError(f"{where}.parcel_ids: " + (f"parcels not in the portfolio: {unknown[:10]}"
                                                           if unknown else "empty list"))
        return np.unique([pos[p] for p in parcel_ids])

    sets: dict[tuple[int, ...], str] = {}
    unit_of_loan, unit_of_policy = {}, {}

    def unit_for(where: str, name: str, idx: np.ndarray) -> str:
        key = tuple(int(i) for i in idx)
        if key not in sets:
            sets[key] = name
        return sets[key]

    for i, ln in enumerate(registry.loans):
        unit_of_loan[ln.id] = unit_for(f"loans.{i}", ln.id, parcels_of(f"loans.{i}", ln.project_id, ln.parcel_ids))
        check_loan_crediting(f"loans.{i}.terms", ln.terms, params)
    for i, pol in enumerate(registry.policies):
        if pol.loan is not None:
            unit_of_policy[pol.id] = unit_of_loan[pol.loan]
        else:
            unit_of_policy[pol.id] = unit_for(f"policies.{i}", pol.id,
                                              parcels_of(f"policies.{i}", pol.project_id, pol.parcel_ids))
    owner = np.full(portfolio.n_parcels, "", dtype=object)
    unit_parcels = {}
    for key, name in sets.items():
        idx = np.asarray(key, dtype=np.intp)
        clash = owner[idx][owner[idx] != ""]
        if clash.size:
            raise RegistryError(f"units {name!r} and {clash[0]!r} share parcels without being the same set "
                                "(a parcel can be pledged or insured in one unit only)")
        owner[idx] = name
        unit_parcels[name] = idx
    frame = portfolio.frame.copy()
    mask = owner != ""
    frame.loc[mask, "project_id"] = [UNIT_PREFIX + str(u) for u in owner[mask]]
    cols = {c: frame[c].tolist() for c in frame.columns}
    cols["site_class"] = [SITE_CLASSES.index(s) for s in cols["site_class"]]
    run_pf = Portfolio.from_columns(cols, params, source=portfolio.source)
    return BoundRegistry(registry, run_pf, unit_of_loan, unit_of_policy, unit_parcels)


__all__ = ["DEMO_REGISTRY_PATH", "demo_registry_path", "BoundRegistry", "InsurerEntry", "LoanEntry", "PolicyEntry", "Registry", "RegistryError", "StopLoss",
           "UNIT_PREFIX", "bind_registry", "parse_registry", "read_registry"]
