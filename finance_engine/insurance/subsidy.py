"""Premium subsidy split for Chinese policy forest insurance, and the regulatory rate-adjustment band.

Subsidy rules (finance_practice.md §2.2; data in ``finance_engine/data/insurance_defaults.yaml``)
-------------------------------------------------------------------------------------------------
* public-welfare forest: the central budget pays **50 %** of the premium if local budgets (province,
  city, county) pay at least **40 %** together (the owner pays <= 10 %) [read];
* commercial forest: the central budget pays **30 %** if the province pays at least **25 %** [read];
* published commercial example, Hebei chestnut 2015: central 30 / provincial 25 / city 15 /
  county 10 / farmer 20 % [read].

A split assigns each payer in ``central, provincial, city, county, insured`` a fraction of the gross
premium; the fractions sum to 1 and the amounts sum to the gross premium exactly (the insured's
amount is the remainder).

Rate-adjustment band (银保监规〔2023〕4号, 农业保险精算规定(试行))
----------------------------------------------------------------
The rate charged = base pure-loss rate with expense load x an adjustment factor, which must lie in
**[0.75, 1.25]** for subsidised agricultural (incl. forest) insurance and **[0.5, 1.5]** for other
products [read]. :func:`check_rate_adjustment` returns the factor and whether it is inside the band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from .defaults import BUDGETS, load_insurance_defaults
from .tables import InsuranceInputError

__all__ = [
    "SubsidyShares",
    "SubsidySplit",
    "RateBandCheck",
    "subsidy_shares",
    "split_premium",
    "check_central_eligibility",
    "check_rate_adjustment",
]


@dataclass(frozen=True)
class SubsidyShares:
    """Fractions of the gross premium paid by each budget and the insured (sum to 1).

    Attributes
    ----------
    central, provincial, city, county, insured : float
    rule : str or None
        Name of the central-subsidy rule the scheme relies on (``public_welfare_forest`` /
        ``commercial_forest``), or None.
    """

    central: float
    provincial: float
    city: float
    county: float
    insured: float
    rule: str | None = None

    def __post_init__(self) -> None:
        for b in BUDGETS:
            v = getattr(self, b)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1):
                raise InsuranceInputError(f"subsidy share {b!r} must be in [0, 1], got {v!r}")
        total = sum(getattr(self, b) for b in BUDGETS)
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise InsuranceInputError(f"subsidy shares must sum to 1, got {total}")

    def as_dict(self) -> dict[str, float]:
        return {b: getattr(self, b) for b in BUDGETS}


@dataclass(frozen=True)
class SubsidySplit:
    """Premium amounts per payer (CNY); ``sum(amounts) == gross_premium``."""

    gross_premium: float
    shares: SubsidyShares
    amounts: Mapping[str, float]

    @property
    def public_share(self) -> float:
        """Fraction paid by budgets (all but the insured)."""
        return 1.0 - self.shares.insured


def subsidy_shares(scheme: str = "commercial_forest", **overrides: float) -> SubsidyShares:
    """Shares of a named scheme from the data file, optionally overriding some payers.

    Parameters
    ----------
    scheme : str
        ``public_welfare_forest``, ``commercial_forest`` or ``hebei_chestnut_2015``.
    **overrides : float
        New fractions for payers (``central=``, ``provincial=``, ...); the result must still sum to 1.
    """
    d = load_insurance_defaults()
    if scheme not in d.subsidy_schemes:
        raise InsuranceInputError(f"unknown subsidy scheme {scheme!r}; known: {sorted(d.subsidy_schemes)}")
    bad = [k for k in overrides if k not in BUDGETS]
    if bad:
        raise InsuranceInputError(f"unknown payer(s) {bad}; payers are {BUDGETS}")
    vals = {**d.subsidy_schemes[scheme], **{k: float(v) for k, v in overrides.items()}}
    return SubsidyShares(**vals, rule=d.scheme_rules.get(scheme))


def split_premium(gross_premium_cny: float, shares: SubsidyShares | str = "commercial_forest") -> SubsidySplit:
    """Split a gross premium (CNY) between the budgets and the insured.

    The insured's amount is computed as the remainder so that the amounts add up to the gross
    premium exactly.
    """
    try:
        g = float(gross_premium_cny)
    except (TypeError, ValueError):
        raise InsuranceInputError(f"gross_premium_cny must be a number, got {gross_premium_cny!r}") from None
    if not (math.isfinite(g) and g >= 0):
        raise InsuranceInputError(f"gross_premium_cny must be finite and >= 0, got {gross_premium_cny!r}")
    sh = subsidy_shares(shares) if isinstance(shares, str) else shares
    amounts = {b: g * getattr(sh, b) for b in BUDGETS[:-1]}
    amounts["insured"] = g - sum(amounts.values())
    return SubsidySplit(g, sh, amounts)


def check_central_eligibility(shares: SubsidyShares, rule: str | None = None) -> bool:
    """Whether the local budgets pay enough for the central share of ``rule``.

    ``rule`` defaults to ``shares.rule``. Returns True when the central budget pays nothing, or when
    the central share does not exceed the rule's central share **and** the named local budgets together
    pay at least the rule's minimum.

    The rules are those of the central premium subsidy of policy forest insurance on the replanting
    cost (finance_practice.md §2.2); carbon covers are not known to qualify (the quote's default is no
    subsidy, :data:`finance_engine.insurance.quote.NO_CENTRAL_SUBSIDY_NOTE`).
    """
    name = rule or shares.rule
    if name is None:
        raise InsuranceInputError("no central-subsidy rule given and the shares name none")
    rules = load_insurance_defaults().central_subsidy_rules
    if name not in rules:
        raise InsuranceInputError(f"unknown central-subsidy rule {name!r}; known: {sorted(rules)}")
    r = rules[name]
    if shares.central <= 1e-12:
        return True
    local = sum(getattr(shares, b) for b in r.local_budgets)
    return shares.central <= r.central_share + 1e-12 and local >= r.min_local_share - 1e-12


@dataclass(frozen=True)
class RateBandCheck:
    """Rate-adjustment factor against the regulatory band."""

    rate: float
    base_rate: float
    factor: float
    band: tuple[float, float]
    within_band: bool


def check_rate_adjustment(rate: float, base_rate: float, *, subsidised: bool = True) -> RateBandCheck:
    """Check ``rate / base_rate`` against [0.75, 1.25] (subsidised) or [0.5, 1.5] (other).

    Parameters
    ----------
    rate : float
        The rate charged (premium / sum insured), > 0.
    base_rate : float
        The base pure-loss rate with expense load, > 0.
    subsidised : bool
        Whether the product receives a premium subsidy.
    """
    for name, v in (("rate", rate), ("base_rate", base_rate)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise InsuranceInputError(f"{name} must be finite and > 0, got {v!r}")
    d = load_insurance_defaults()
    band = d.subsidised_rate_band if subsidised else d.unsubsidised_rate_band
    f = float(rate) / float(base_rate)
    return RateBandCheck(float(rate), float(base_rate), f, band, band[0] - 1e-12 <= f <= band[1] + 1e-12)
