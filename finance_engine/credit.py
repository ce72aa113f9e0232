"""Bank credit maths: Basel IRB risk weights, F-IRB LGD with collateral, CRM exposure, expected loss.

Pure, vectorised functions (numpy broadcasting over loans, paths or scenarios); no simulation.
Fractions are decimals (PD 0.01 = 1 %, LGD 0.45 = 45 %, risk weight 0.9232 = 92.32 %); money in CNY.

Formulas (BCBS Basel Framework CRE31 / Basel II §272-273; BCBS 2005 "An Explanatory Note on the
Basel II IRB Risk Weight Functions"):

* corporate correlation ``R = 0.12 w + 0.24 (1 - w)``, ``w = (1 - e^{-50 PD}) / (1 - e^{-50})``; SME
  firm-size adjustment ``- 0.04 (1 - (S - 5) / 45)`` for annual sales S in EUR millions, S clamped to
  [5, 50] (no adjustment at S >= 50);
* retail "other" correlation ``R = 0.03 w + 0.16 (1 - w)`` with ``k = 35`` in place of 50;
* maturity adjustment ``b = (0.11852 - 0.05478 ln PD)^2``;
* ``K = LGD [Phi((Phi^-1(PD) + sqrt(R) Phi^-1(0.999)) / sqrt(1 - R)) - PD] (1 + (M - 2.5) b) / (1 - 1.5 b)``
  (retail: no maturity factor); ``RWA = 12.5 K EAD``. The Basel II 1.06 scaling factor is not applied
  (Basel III final CRE31 has ``RWA = K x 12.5 x EAD``); pass ``scaling_factor=1.06`` to reproduce Basel II RWA;
* conditional PD given the systematic factor Z (Z < 0 adverse):
  ``PD(Z) = Phi((Phi^-1(PD) - sqrt(R) Z) / sqrt(1 - R))``; at ``Z = -Phi^-1(0.999)`` this is the
  worst-case default rate inside K.

Collateral (CRE32 F-IRB LGD*, CRE22 comprehensive approach):

* ``E_S = min(C (1 - H_C), E (1 + H_E))``, ``E_U = E (1 + H_E) - E_S``,
  ``LGD* = (LGD_U E_U + LGD_S E_S) / (E (1 + H_E))``;
* ``E* = max(0, E (1 + H_e) - C (1 - H_c - H_fx))``;
* haircut scaling ``H = H_10 sqrt((N_R + T_M - 1) / 10)``.

Default regulatory parameters (PD floor, LGDs, haircuts, maturity bounds) are in
``finance_engine/data/credit_parameters.yaml`` with sources and confidence labels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from scipy.special import ndtr, ndtri
from models._yaml import load_yaml
from models.parameters import format_validation_error

DATA_DIR = Path(__file__).resolve().parent / "data"
CREDIT_PARAMETERS_PATH = DATA_DIR / "credit_parameters.yaml"

# Regulatory formula constants (CRE31.5-31.7, 31.15; Basel II §272-273, §328)
CONFIDENCE_LEVEL = 0.999
CORP_R_LOW, CORP_R_HIGH, CORP_K = 0.12, 0.24, 50.0
RETAIL_R_LOW, RETAIL_R_HIGH, RETAIL_K = 0.03, 0.16, 35.0
SME_MAX_ADJ, SME_S_LOW_EUR_M, SME_S_HIGH_EUR_M = 0.04, 5.0, 50.0
B_A, B_B = 0.11852, 0.05478
RWA_MULTIPLIER = 12.5


class CreditInputError(ValueError):
    """Invalid input to a credit function; the message names the argument and the reason."""


# =====================================================================================================
# Parameters
# =====================================================================================================
class _Sourced(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: float
    source: str
    confidence: Literal["read", "derived", "memory", "assumption"]
    note: str | None = None


class _CreditFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1]
    pd_floor: _Sourced
    lgd_senior_unsecured: _Sourced
    lgd_senior_unsecured_financial: _Sourced
    lgd_other_physical_collateral: _Sourced
    haircut_other_physical_collateral: _Sourced
    haircut_fx_mismatch: _Sourced
    min_holding_period_secured_lending_days: _Sourced
    foundation_maturity_years: _Sourced
    maturity_floor_years: _Sourced
    maturity_cap_years: _Sourced


@dataclass(frozen=True)
class CreditParameters:
    """Default regulatory parameters (see ``credit_parameters.yaml`` for sources)."""

    pd_floor: float
    lgd_senior_unsecured: float
    lgd_senior_unsecured_financial: float
    lgd_other_physical_collateral: float
    haircut_other_physical_collateral: float
    haircut_fx_mismatch: float
    min_holding_period_secured_lending_days: float
    foundation_maturity_years: float
    maturity_floor_years: float
    maturity_cap_years: float
    sha256: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        for name in ("pd_floor", "lgd_senior_unsecured", "lgd_senior_unsecured_financial",
                     "lgd_other_physical_collateral", "haircut_other_physical_collateral", "haircut_fx_mismatch"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise CreditInputError(f"{name} must lie in [0, 1), got {v}")
        if not 0 < self.maturity_floor_years <= self.foundation_maturity_years <= self.maturity_cap_years:
            raise CreditInputError("need 0 < maturity_floor_years <= foundation_maturity_years <= maturity_cap_years")
        if not self.min_holding_period_secured_lending_days >= 1:
            raise CreditInputError("min_holding_period_secured_lending_days must be >= 1")


def load_credit_parameters(path: str | Path | None = None, *, region: str = "lishui") -> CreditParameters:
    """Load and validate ``credit_parameters.yaml`` (sources must be keys of the region's references)."""
    from finance_engine.price import reference_keys  # same reference list as the price data

    p = Path(path) if path is not None else CREDIT_PARAMETERS_PATH
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CreditInputError(f"cannot read credit parameter file {p}: {e}") from None
    raw = load_yaml(data) or {}
    try:
        f = _CreditFile.model_validate(raw)
    except ValidationError as err:
        raise CreditInputError(format_validation_error(p, err, "credit parameter file")) from None
    missing = {v.source for v in f.__dict__.values() if isinstance(v, _Sourced)} - reference_keys(region)
    if missing:
        raise CreditInputError(f"{p}: sources not listed under `references` of {region}: {sorted(missing)}")
    vals = {k: v.value for k, v in f.__dict__.items() if isinstance(v, _Sourced)}
    try:
        return CreditParameters(**vals, sha256=hashlib.sha256(data).hexdigest(), path=str(p))
    except CreditInputError as e:
        raise CreditInputError(f"{p}: {e}") from None


@lru_cache(maxsize=1)
def credit_defaults() -> CreditParameters:
    """The shipped defaults (cached)."""
    return load_credit_parameters()


# =====================================================================================================
# Validation helpers
# =====================================================================================================
def _arr(x, name: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
         hi_open: bool = False) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(a)):
        raise CreditInputError(f"{name} must be finite")
    if lo is not None and (np.any(a <= lo) if lo_open else np.any(a < lo)):
        raise CreditInputError(f"{name} must be {'>' if lo_open else '>='} {lo}, got min {a.min()}")
    if hi is not None and (np.any(a >= hi) if hi_open else np.any(a > hi)):
        raise CreditInputError(f"{name} must be {'<' if hi_open else '<='} {hi}, got max {a.max()}")
    return a


def _floored_pd(pd, pd_floor: float | None) -> np.ndarray:
    p = _arr(pd, "pd", 0.0, 1.0)
    floor = credit_defaults().pd_floor if pd_floor is None else float(pd_floor)
    if not 0 <= floor < 1:
        raise CreditInputError(f"pd_floor must lie in [0, 1), got {floor}")
    return np.maximum(p, floor)


# =====================================================================================================
# IRB risk-weight functions
# =====================================================================================================
def _weight(pd: np.ndarray, k: float) -> np.ndarray:
    return -np.expm1(-k * pd) / -np.expm1(-k)


def corporate_correlation(pd, sales_eur_m=None) -> np.ndarray:
    """Asset correlation R for corporate exposures, with the optional SME firm-size adjustment.

    Parameters
    ----------
    pd : array
        PD (after any floor), in [0, 1].
    sales_eur_m : array, optional
        Annual sales of the consolidated group, EUR millions (>= 0; NaN = no adjustment). Clamped to
        [5, 50]: S <= 5 gives the full -0.04, S >= 50 none.
    """
    p = _arr(pd, "pd", 0.0, 1.0)
    w = _weight(p, CORP_K)
    r = CORP_R_LOW * w + CORP_R_HIGH * (1.0 - w)
    if sales_eur_m is None:
        return r
    s = np.asarray(sales_eur_m, dtype=float)
    if np.any(s[~np.isnan(s)] < 0) or np.any(np.isinf(s)):
        raise CreditInputError("sales_eur_m must be >= 0 and finite (NaN = not an SME)")
    sc = np.clip(np.where(np.isnan(s), SME_S_HIGH_EUR_M, s), SME_S_LOW_EUR_M, SME_S_HIGH_EUR_M)
    return r - SME_MAX_ADJ * (1.0 - (sc - SME_S_LOW_EUR_M) / (SME_S_HIGH_EUR_M - SME_S_LOW_EUR_M))


def retail_other_correlation(pd) -> np.ndarray:
    """Asset correlation R for "other retail" exposures: between 0.03 and 0.16, k = 35."""
    p = _arr(pd, "pd", 0.0, 1.0)
    w = _weight(p, RETAIL_K)
    return RETAIL_R_LOW * w + RETAIL_R_HIGH * (1.0 - w)


def maturity_adjustment_b(pd) -> np.ndarray:
    """``b = (0.11852 - 0.05478 ln PD)^2`` (PD > 0)."""
    p = _arr(pd, "pd", 0.0, 1.0, lo_open=True)
    return (B_A - B_B * np.log(p)) ** 2


def conditional_pd(pd, correlation, z) -> np.ndarray:
    """PD conditional on the systematic factor Z (Vasicek one-factor model; Z < 0 is adverse).

    ``PD(Z) = Phi((Phi^-1(PD) - sqrt(R) Z) / sqrt(1 - R))``; broadcasts over its arguments.
    """
    p = _arr(pd, "pd", 0.0, 1.0)
    r = _arr(correlation, "correlation", 0.0, 1.0, hi_open=True)
    zz = _arr(z, "z")
    with np.errstate(divide="ignore", invalid="ignore"):
        return ndtr((ndtri(p) - np.sqrt(r) * zz) / np.sqrt(1.0 - r))


def _maturity(maturity_years, params: CreditParameters) -> np.ndarray:
    m = _arr(maturity_years, "maturity_years", 0.0, lo_open=True)
    return np.clip(m, params.maturity_floor_years, params.maturity_cap_years)


def irb_capital_requirement(pd, lgd, maturity_years=None, *, asset_class: Literal["corporate", "retail_other"] = "corporate",
                            sales_eur_m=None, pd_floor: float | None = None,
                            confidence_level: float = CONFIDENCE_LEVEL) -> np.ndarray:
    """Capital requirement K per unit of EAD (IRB, non-defaulted exposures).

    Parameters
    ----------
    pd : array
        One-year PD in [0, 1]; floored at ``pd_floor`` (default: the shipped 0.05 %; pass 0.0003 to
        reproduce Basel II). PD = 1 (defaulted) gives K = 0 under F-IRB (LGD is all expected loss).
    lgd : array
        In [0, 1].
    maturity_years : array, optional
        Effective maturity M, clipped to [1, 5] years (CRE32.47); default the F-IRB 2.5 years.
        Ignored for ``retail_other``.
    asset_class : "corporate" or "retail_other"
    sales_eur_m : array, optional
        For the corporate SME firm-size adjustment (see :func:`corporate_correlation`).
    confidence_level : float
        0.999 in the regulation; other values for economic-capital sensitivities.

    Returns
    -------
    ndarray
        K (fraction of EAD), broadcast over the inputs.
    """
    prm = credit_defaults()
    p = _floored_pd(pd, pd_floor)
    l = _arr(lgd, "lgd", 0.0, 1.0)
    if not 0.5 < confidence_level < 1:
        raise CreditInputError(f"confidence_level must lie in (0.5, 1), got {confidence_level}")
    if asset_class == "corporate":
        r = corporate_correlation(p, sales_eur_m)
    elif asset_class == "retail_other":
        if sales_eur_m is not None:
            raise CreditInputError("sales_eur_m applies to corporate exposures only")
        r = retail_other_correlation(p)
    else:
        raise CreditInputError(f"asset_class must be 'corporate' or 'retail_other', got {asset_class!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        wcdr = ndtr((ndtri(p) + np.sqrt(r) * ndtri(confidence_level)) / np.sqrt(1.0 - r))
        k = l * (wcdr - p)
        if asset_class == "corporate":
            m = _maturity(prm.foundation_maturity_years if maturity_years is None else maturity_years, prm)
            b = (B_A - B_B * np.log(p)) ** 2
            k = k * (1.0 + (m - 2.5) * b) / (1.0 - 1.5 * b)
    k = np.where(p >= 1.0, 0.0, np.where(p <= 0.0, 0.0, k))
    return np.maximum(k, 0.0)


def irb_risk_weight(pd, lgd, maturity_years=None, *, scaling_factor: float = 1.0, **kwargs) -> np.ndarray:
    """Risk weight ``12.5 K`` (x ``scaling_factor``) as a fraction (0.9232 = 92.32 %). Args as
    :func:`irb_capital_requirement`."""
    if not 0 < scaling_factor <= 2:
        raise CreditInputError(f"scaling_factor must lie in (0, 2], got {scaling_factor}")
    return RWA_MULTIPLIER * scaling_factor * irb_capital_requirement(pd, lgd, maturity_years, **kwargs)


def irb_rwa(pd, lgd, ead_cny, maturity_years=None, **kwargs) -> np.ndarray:
    """Risk-weighted assets ``RWA = 12.5 K EAD`` in CNY. Args as :func:`irb_risk_weight`."""
    ead = _arr(ead_cny, "ead_cny", 0.0)
    return irb_risk_weight(pd, lgd, maturity_years, **kwargs) * ead


def expected_loss(pd, lgd, ead_cny) -> np.ndarray:
    """``EL = PD x LGD x EAD`` (CNY), broadcast."""
    return _arr(pd, "pd", 0.0, 1.0) * _arr(lgd, "lgd", 0.0, 1.0) * _arr(ead_cny, "ead_cny", 0.0)


# =====================================================================================================
# Collateral
# =====================================================================================================
@dataclass(frozen=True)
class LgdStar:
    """F-IRB effective LGD with its secured/unsecured split.

    Attributes
    ----------
    lgd : ndarray
        LGD* (fraction).
    secured_exposure_cny, unsecured_exposure_cny : ndarray
        ``E_S`` and ``E_U`` (CNY); they sum to ``E (1 + H_E)``.
    """

    lgd: np.ndarray
    secured_exposure_cny: np.ndarray
    unsecured_exposure_cny: np.ndarray


def foundation_lgd_star(exposure_cny, collateral_value_cny, *, lgd_unsecured: float | None = None,
                        lgd_secured: float | None = None, haircut_collateral: float | None = None,
                        haircut_exposure=0.0) -> LgdStar:
    """F-IRB effective LGD of an exposure secured by (non-financial) collateral (Basel III final, CRE32).

    Parameters
    ----------
    exposure_cny : array
        E >= 0 (CNY). Where E = 0, LGD* is reported as ``lgd_unsecured`` (nothing is at risk).
    collateral_value_cny : array
        C >= 0, current value of the collateral (CNY), e.g. simulated pledged carbon value.
    lgd_unsecured, lgd_secured, haircut_collateral : float, optional
        Defaults: 40 % senior unsecured, 25 % "other physical collateral", H_C = 40 %.
    haircut_exposure : array
        H_E >= 0 (0 for a loan).
    """
    prm = credit_defaults()
    lu = prm.lgd_senior_unsecured if lgd_unsecured is None else lgd_unsecured
    ls = prm.lgd_other_physical_collateral if lgd_secured is None else lgd_secured
    hc = prm.haircut_other_physical_collateral if haircut_collateral is None else haircut_collateral
    lu = _arr(lu, "lgd_unsecured", 0.0, 1.0)
    ls = _arr(ls, "lgd_secured", 0.0, 1.0)
    hc = _arr(hc, "haircut_collateral", 0.0, 1.0)
    he = _arr(haircut_exposure, "haircut_exposure", 0.0)
    e = _arr(exposure_cny, "exposure_cny", 0.0)
    c = _arr(collateral_value_cny, "collateral_value_cny", 0.0)
    gross = e * (1.0 + he)
    es = np.minimum(c * (1.0 - hc), gross)
    eu = gross - es
    with np.errstate(divide="ignore", invalid="ignore"):
        lgd = np.where(gross > 0, (lu * eu + ls * es) / gross, lu)
    return LgdStar(lgd=np.asarray(lgd, dtype=float), secured_exposure_cny=es, unsecured_exposure_cny=eu)


def exposure_after_crm(exposure_cny, collateral_value_cny, *, haircut_collateral, haircut_exposure=0.0,
                       haircut_fx=0.0) -> np.ndarray:
    """Comprehensive-approach exposure ``E* = max(0, E (1 + H_e) - C (1 - H_c - H_fx))`` (CRE22), CNY.

    ``haircut_fx``: 0 without a currency mismatch, else ``credit_defaults().haircut_fx_mismatch`` (8 %).
    """
    e = _arr(exposure_cny, "exposure_cny", 0.0)
    c = _arr(collateral_value_cny, "collateral_value_cny", 0.0)
    he = _arr(haircut_exposure, "haircut_exposure", 0.0)
    hc = _arr(haircut_collateral, "haircut_collateral", 0.0, 1.0)
    hfx = _arr(haircut_fx, "haircut_fx", 0.0, 1.0)
    return np.maximum(0.0, e * (1.0 + he) - c * np.maximum(0.0, 1.0 - hc - hfx))


def scale_haircut(haircut_10d, remargining_days=1, holding_period_days=None) -> np.ndarray:
    """Scale a 10-business-day haircut: ``H = H_10 sqrt((N_R + T_M - 1) / 10)`` (CRE22).

    Parameters
    ----------
    haircut_10d : array
        H_10 >= 0.
    remargining_days : array
        N_R >= 1, business days between remargining / revaluation (1 = daily).
    holding_period_days : array, optional
        T_M >= 1, minimum holding period; default 20 (secured lending).
    """
    h = _arr(haircut_10d, "haircut_10d", 0.0)
    nr = _arr(remargining_days, "remargining_days", 1.0)
    tm = credit_defaults().min_holding_period_secured_lending_days if holding_period_days is None else holding_period_days
    tm = _arr(tm, "holding_period_days", 1.0)
    return h * np.sqrt((nr + tm - 1.0) / 10.0)


__all__ = [
    "CONFIDENCE_LEVEL", "CreditInputError", "CreditParameters", "LgdStar", "conditional_pd", "corporate_correlation",
    "credit_defaults", "expected_loss", "exposure_after_crm", "foundation_lgd_star", "irb_capital_requirement",
    "irb_risk_weight", "irb_rwa", "load_credit_parameters", "maturity_adjustment_b", "retail_other_correlation",
    "scale_haircut",
]
