"""Loader of ``finance_engine/data/insurance_defaults.yaml`` (risk-measure grid, loadings, subsidy rules).

Every number in the file carries a ``source`` (a key of ``references:`` in the region parameter file
``models/parameters/lishui.yaml``) and a ``confidence`` label (read / derived / memory / assumption).
The loader checks both and returns a frozen :class:`InsuranceDefaults`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping


from models.parameters import resolve_parameter_path

from .tables import InsuranceInputError
from models._yaml import load_yaml

__all__ = ["DEFAULTS_PATH", "BUDGETS", "InsuranceDefaults", "CentralSubsidyRule", "load_insurance_defaults"]

DEFAULTS_PATH = Path(__file__).resolve().parents[1] / "data" / "insurance_defaults.yaml"
CONFIDENCE_LABELS: tuple[str, ...] = ("read", "derived", "memory", "assumption")
#: Payers of a subsidised premium, in reporting order.
BUDGETS: tuple[str, ...] = ("central", "provincial", "city", "county", "insured")


class InsuranceDefaultsError(InsuranceInputError):
    """The insurance defaults file is malformed (names the file and field)."""


@dataclass(frozen=True)
class CentralSubsidyRule:
    """Central budget pays ``central_share`` only if ``local_budgets`` together pay >= ``min_local_share``."""

    name: str
    central_share: float
    min_local_share: float
    local_budgets: tuple[str, ...]


@dataclass(frozen=True)
class InsuranceDefaults:
    """Validated content of ``insurance_defaults.yaml`` (fractions, years)."""

    return_periods_years: tuple[float, ...]
    var_levels: tuple[float, ...]
    ci_confidence: float
    capital_level: float
    cost_of_capital_rate: float
    capital_measure: str
    wang_lambda_range: tuple[float, float]
    ph_rho_range: tuple[float, float]
    sd_alpha_range: tuple[float, float]
    variable_expense_ratio_cap: float
    subsidised_rate_band: tuple[float, float]
    unsubsidised_rate_band: tuple[float, float]
    central_subsidy_rules: Mapping[str, CentralSubsidyRule]
    subsidy_schemes: Mapping[str, Mapping[str, float]]
    scheme_rules: Mapping[str, str]
    path: str
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)


def _item(raw: Mapping, where: str, refs: set[str], p: Path) -> Any:
    if not isinstance(raw, Mapping) or "value" not in raw:
        raise InsuranceDefaultsError(f"{p}: {where}: needs value, source and confidence")
    if raw.get("source") not in refs:
        raise InsuranceDefaultsError(f"{p}: {where}: source {raw.get('source')!r} is not under `references`")
    if raw.get("confidence") not in CONFIDENCE_LABELS:
        raise InsuranceDefaultsError(f"{p}: {where}: confidence must be one of {CONFIDENCE_LABELS}")
    return raw["value"]


def _fraction(v: Any, where: str, p: Path) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise InsuranceDefaultsError(f"{p}: {where}: not a number: {v!r}") from None
    if not 0 <= f <= 1:
        raise InsuranceDefaultsError(f"{p}: {where}: must be in [0, 1], got {f}")
    return f


def _pair(v: Any, where: str, p: Path) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2 or not float(v[0]) <= float(v[1]):
        raise InsuranceDefaultsError(f"{p}: {where}: needs [low, high] with low <= high, got {v!r}")
    return float(v[0]), float(v[1])


@lru_cache(maxsize=8)
def _load(path: str, region: str) -> InsuranceDefaults:
    p = Path(path)
    try:
        raw = load_yaml(p.read_text(encoding="utf-8")) or {}
    except OSError as e:
        raise InsuranceDefaultsError(f"cannot read insurance defaults {p}: {e}") from None
    with open(resolve_parameter_path(region), encoding="utf-8") as fh:
        refs = set((load_yaml(fh) or {}).get("references", {}))
    try:
        return _build(raw, refs, p)
    except (KeyError, TypeError, AttributeError) as e:
        raise InsuranceDefaultsError(f"{p}: missing or malformed field ({type(e).__name__}: {e})") from None


def _build(raw: Mapping[str, Any], refs: set[str], p: Path) -> InsuranceDefaults:
    rm, ld, ra = raw["risk_measures"], raw["loadings"], raw["rate_adjustment"]
    rules_raw, schemes_raw = raw["central_subsidy_rules"], raw["subsidy_schemes"]

    measure = _item(ld["capital_measure"], "loadings.capital_measure", refs, p)
    if measure not in ("var", "tvar"):
        raise InsuranceDefaultsError(f"{p}: loadings.capital_measure must be var or tvar, got {measure!r}")
    rps = tuple(float(t) for t in _item(rm["return_periods_years"], "risk_measures.return_periods_years", refs, p))
    if not rps or any(not t > 1 for t in rps):
        raise InsuranceDefaultsError(f"{p}: risk_measures.return_periods_years must be > 1")
    levels = tuple(float(q) for q in _item(rm["var_levels"], "risk_measures.var_levels", refs, p))
    if any(not 0 < q < 1 for q in levels):
        raise InsuranceDefaultsError(f"{p}: risk_measures.var_levels must be in (0, 1)")

    rules: dict[str, CentralSubsidyRule] = {}
    for name, r in rules_raw.items():
        w = f"central_subsidy_rules.{name}"
        local = tuple(r.get("local_budgets", ()))
        bad = [b for b in local if b not in BUDGETS[1:4]]
        if not local or bad:
            raise InsuranceDefaultsError(f"{p}: {w}.local_budgets must name provincial/city/county, got {local}")
        rules[name] = CentralSubsidyRule(
            name, _fraction(_item(r["central_share"], w + ".central_share", refs, p), w, p),
            _fraction(_item(r["min_local_share"], w + ".min_local_share", refs, p), w, p), local)

    schemes: dict[str, dict[str, float]] = {}
    scheme_rules: dict[str, str] = {}
    for name, s in schemes_raw.items():
        w = f"subsidy_schemes.{name}"
        shares = s.get("shares", {})
        if set(shares) != set(BUDGETS):
            raise InsuranceDefaultsError(f"{p}: {w}.shares must name exactly {BUDGETS}, got {sorted(shares)}")
        vals = {b: _fraction(_item(shares[b], f"{w}.shares.{b}", refs, p), f"{w}.shares.{b}", p) for b in BUDGETS}
        if not math.isclose(sum(vals.values()), 1.0, abs_tol=1e-9):
            raise InsuranceDefaultsError(f"{p}: {w}: shares sum to {sum(vals.values())}, not 1")
        if s.get("rule") is not None and s["rule"] not in rules:
            raise InsuranceDefaultsError(f"{p}: {w}.rule {s['rule']!r} is not a central_subsidy_rules entry")
        schemes[name] = vals
        if s.get("rule") is not None:
            scheme_rules[name] = s["rule"]

    return InsuranceDefaults(
        return_periods_years=rps,
        var_levels=levels,
        ci_confidence=_fraction(_item(rm["ci_confidence"], "risk_measures.ci_confidence", refs, p), "ci", p),
        capital_level=_fraction(_item(rm["capital_level"], "risk_measures.capital_level", refs, p), "capital", p),
        cost_of_capital_rate=_fraction(_item(ld["cost_of_capital_rate"], "loadings.cost_of_capital_rate", refs, p),
                                       "loadings.cost_of_capital_rate", p),
        capital_measure=str(measure),
        wang_lambda_range=_pair(_item(ld["wang_lambda_range"], "loadings.wang_lambda_range", refs, p), "wang", p),
        ph_rho_range=_pair(_item(ld["ph_rho_range"], "loadings.ph_rho_range", refs, p), "ph", p),
        sd_alpha_range=_pair(_item(ld["sd_alpha_range"], "loadings.sd_alpha_range", refs, p), "sd", p),
        variable_expense_ratio_cap=_fraction(_item(ld["variable_expense_ratio_cap"],
                                                   "loadings.variable_expense_ratio_cap", refs, p), "cap", p),
        subsidised_rate_band=_pair(_item(ra["subsidised_band"], "rate_adjustment.subsidised_band", refs, p),
                                   "rate_adjustment.subsidised_band", p),
        unsubsidised_rate_band=_pair(_item(ra["unsubsidised_band"], "rate_adjustment.unsubsidised_band", refs, p),
                                     "rate_adjustment.unsubsidised_band", p),
        central_subsidy_rules=rules,
        subsidy_schemes=schemes,
        scheme_rules=scheme_rules,
        path=str(p),
        raw=raw,
    )


def load_insurance_defaults(path: str | Path | None = None, *, region: str = "lishui") -> InsuranceDefaults:
    """Load and validate the insurance defaults (default: the shipped file); cached per path."""
    return _load(str(Path(path) if path is not None else DEFAULTS_PATH), region)
