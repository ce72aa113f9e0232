"""Pydantic schema of a regional model parameter set.

The parameter file is data (YAML); this module says what a valid file looks like: every number has a
source and a confidence label, values lie in physical ranges, units are in the field names.
Peril blocks are validated by the peril modules themselves (see :mod:`models.perils`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Confidence = Literal["read", "derived", "memory", "assumption"]
SITE_CLASSES: tuple[str, ...] = ("I", "II", "III", "IV", "V")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sourced(_Strict):
    """A number with its source key and confidence label (finite: no parameter is NaN or infinite)."""

    value: float = Field(allow_inf_nan=False)
    source: str
    confidence: Confidence
    note: str | None = None


def _positive(v: Sourced, name: str) -> Sourced:
    if not v.value > 0:
        raise ValueError(f"{name} must be > 0, got {v.value}")
    return v


def _fraction(v: Sourced, name: str, *, closed_low: bool = True) -> Sourced:
    ok = (0.0 <= v.value <= 1.0) if closed_low else (0.0 < v.value <= 1.0)
    if not ok:
        raise ValueError(f"{name} must lie in [0, 1], got {v.value}")
    return v


class Fang(_Strict):
    """Fang's continuous biomass function ``B [Mg/ha] = a*V + b`` (total tree biomass)."""

    a: float = Field(gt=0, description="Mg d.m. per m3")
    b: float = Field(description="Mg d.m. per ha")
    source: str
    confidence: Confidence
    note: str | None = None


class TreeGrowth(_Strict):
    """Chapman-Richards yield curve ``V(t) = A (1 - exp(-k t))^c`` by site class."""

    source: str
    confidence: Confidence
    note: str | None = None
    rate_per_year: float = Field(gt=0, lt=1, description="k, 1/yr")
    shape: float = Field(ge=1, le=10, description="c, dimensionless")
    asymptote_m3_per_ha: dict[str, float]

    @field_validator("asymptote_m3_per_ha")
    @classmethod
    def _sites(cls, v: dict[str, float]) -> dict[str, float]:
        missing = [s for s in SITE_CLASSES if s not in v]
        if missing:
            raise ValueError(f"asymptote_m3_per_ha lacks site classes {missing}")
        extra = [s for s in v if s not in SITE_CLASSES]
        if extra:
            raise ValueError(f"unknown site classes {extra}; use {list(SITE_CLASSES)}")
        for s, a in v.items():
            if not 10 <= a <= 2000:
                raise ValueError(f"asymptote for site {s} = {a} m3/ha is outside 10-2000")
        ordered = [v[s] for s in SITE_CLASSES]
        if any(x < y for x, y in zip(ordered, ordered[1:])):
            raise ValueError("asymptote_m3_per_ha must not increase from site I to site V")
        return v


class BambooGrowth(_Strict):
    """Per-hectare Moso bamboo carbon model (see :mod:`models.growth`)."""

    source: str
    confidence: Confidence
    note: str | None = None
    managed_stock_tc_per_ha: dict[str, float]
    managed_stock_source: str
    ceiling_tc_per_ha: Sourced
    management_drift_tc_per_ha_yr: Sourced
    recovery_rate_per_year: Sourced
    establishment_stock_tc_per_ha: Sourced
    harvest_tc_per_ha_yr: Sourced

    @model_validator(mode="after")
    def _check(self) -> "BambooGrowth":
        missing = [s for s in SITE_CLASSES if s not in self.managed_stock_tc_per_ha]
        if missing:
            raise ValueError(f"managed_stock_tc_per_ha lacks site classes {missing}")
        ceiling = self.ceiling_tc_per_ha.value
        for s, m in self.managed_stock_tc_per_ha.items():
            if not 0 < m <= ceiling:
                raise ValueError(f"managed stock for site {s} = {m} tC/ha must lie in (0, ceiling={ceiling}]")
        _positive(self.recovery_rate_per_year, "recovery_rate_per_year")
        if self.management_drift_tc_per_ha_yr.value < 0:
            raise ValueError("management_drift_tc_per_ha_yr must be >= 0")
        _positive(self.establishment_stock_tc_per_ha, "establishment_stock_tc_per_ha")
        return self


class Traits(_Strict):
    """Relative vulnerabilities (1.0 = an average stand)."""

    flammability: Sourced
    ice_vulnerability: Sourced
    wind_vulnerability: Sourced

    @model_validator(mode="after")
    def _check(self) -> "Traits":
        for name in ("flammability", "ice_vulnerability", "wind_vulnerability"):
            v = getattr(self, name).value
            if not 0 <= v <= 10:
                raise ValueError(f"{name} = {v} is outside 0-10")
        return self


class Species(_Strict):
    name_zh: str
    name_en: str
    scientific: str
    aliases: list[str] = Field(default_factory=list)
    kind: Literal["tree", "bamboo"]
    max_age_years: int = Field(gt=0, le=500)
    pine_share: float = Field(ge=0, le=1, description="share of pine hosts (pine wilt disease)")
    wood_density_t_per_m3: Sourced | None = None
    bef: Sourced | None = None
    root_shoot_ratio: Sourced | None = None
    carbon_fraction: Sourced
    fang: Fang | None = None
    growth: TreeGrowth | None = None
    bamboo: BambooGrowth | None = None
    traits: Traits

    @model_validator(mode="after")
    def _check(self) -> "Species":
        _fraction(self.carbon_fraction, "carbon_fraction", closed_low=False)
        if self.kind == "tree":
            for name in ("wood_density_t_per_m3", "bef", "root_shoot_ratio", "growth"):
                if getattr(self, name) is None:
                    raise ValueError(f"a tree species needs {name}")
            assert self.wood_density_t_per_m3 and self.bef and self.root_shoot_ratio
            if not 0.1 <= self.wood_density_t_per_m3.value <= 1.2:
                raise ValueError(f"wood_density_t_per_m3 = {self.wood_density_t_per_m3.value} is outside 0.1-1.2")
            if not 1.0 <= self.bef.value <= 5.0:
                raise ValueError(f"bef = {self.bef.value} is outside 1.0-5.0")
            if not 0.0 <= self.root_shoot_ratio.value <= 1.5:
                raise ValueError(f"root_shoot_ratio = {self.root_shoot_ratio.value} is outside 0-1.5")
        else:
            if self.bamboo is None:
                raise ValueError("a bamboo species needs a `bamboo` block")
        return self


class Crediting(_Strict):
    monitoring_period_years: Sourced
    baseline_removal_fraction: Sourced
    leakage_fraction: Sourced
    buffer_fraction: Sourced
    #: years from the run's start during which verifications issue credits (None: no end)
    crediting_period_years: Sourced | None = None

    @model_validator(mode="after")
    def _check(self) -> "Crediting":
        p = self.monitoring_period_years.value
        if p < 1 or p != int(p):
            raise ValueError(f"monitoring_period_years must be a whole number >= 1, got {p}")
        if self.crediting_period_years is not None:
            c = self.crediting_period_years.value
            if c < p or c != int(c):
                raise ValueError(f"crediting_period_years must be a whole number of years >= monitoring_period_years "
                                 f"({p:g}), got {c}")
        for name in ("baseline_removal_fraction", "leakage_fraction", "buffer_fraction"):
            v = getattr(self, name).value
            if not 0 <= v < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        return self


class GrowthUncertainty(_Strict):
    asymptote_cv: Sourced
    rate_cv: Sourced
    regional_shock_sd: Sourced
    regional_shock_autocorrelation: Sourced
    parcel_noise_sd: Sourced
    background_mortality_rate: Sourced

    @model_validator(mode="after")
    def _check(self) -> "GrowthUncertainty":
        for name in ("asymptote_cv", "rate_cv", "regional_shock_sd"):
            if not 0 <= getattr(self, name).value <= 1:
                raise ValueError(f"{name} must lie in [0, 1]")
        if not -1 < self.regional_shock_autocorrelation.value < 1:
            raise ValueError("regional_shock_autocorrelation must lie in (-1, 1)")
        # uniform noise with mean 1 and sd s stays positive only for s < 1/sqrt(3)
        if not 0 <= self.parcel_noise_sd.value < 0.57:
            raise ValueError("parcel_noise_sd must lie in [0, 0.57)")
        if not 0 <= self.background_mortality_rate.value < 0.2:
            raise ValueError("background_mortality_rate must lie in [0, 0.2)")
        return self


class PerilUncertainty(_Strict):
    """Epistemic uncertainty of one peril: the log-sds of mean-one lognormal multipliers of its
    hazard (``frequency_log_sd``) and, optionally, of its severity (``severity_log_sd``), drawn once
    per parameter set (see ``models.dynamics``). A peril with a landscape spread process (pine wilt)
    may also declare those of its local transmission and long-distance jump rates
    (``models.perils.pine_wilt.SpreadDraws``)."""

    frequency_log_sd: Sourced
    severity_log_sd: Sourced | None = None
    local_transmission_log_sd: Sourced | None = None
    long_distance_jump_log_sd: Sourced | None = None

    @model_validator(mode="after")
    def _check(self) -> "PerilUncertainty":
        for name in ("frequency_log_sd", "severity_log_sd", "local_transmission_log_sd",
                     "long_distance_jump_log_sd"):
            v = getattr(self, name)
            if v is not None and not 0 <= v.value <= MAX_LOG_SD:
                raise ValueError(f"{name} must lie in [0, {MAX_LOG_SD}], got {v.value}")
        return self


#: the largest log-sd a peril's frequency or severity may take (a 95 % interval spanning a factor of
#: about 360)
MAX_LOG_SD = 1.5
#: parameter-file sections under ``perils`` that are not perils of their own
NOT_PERILS = ("cascades", "climate")
#: perils with a landscape spread process, whose rates ``peril_uncertainty`` may draw
SPREAD_PERILS = ("pine_wilt",)


class Regeneration(_Strict):
    replanting_delay_years: Sourced
    stand_replacing_loss_fraction: Sourced

    @model_validator(mode="after")
    def _check(self) -> "Regeneration":
        d = self.replanting_delay_years.value
        if d < 0 or d != int(d) or d > 20:
            raise ValueError(f"replanting_delay_years must be a whole number in [0, 20], got {d}")
        _fraction(self.stand_replacing_loss_fraction, "stand_replacing_loss_fraction", closed_low=False)
        return self


class CarbonConstants(_Strict):
    co2_per_c: Sourced
    fang_carbon_fraction: Sourced
    fang_min_volume_m3_per_ha: Sourced

    @model_validator(mode="after")
    def _check(self) -> "CarbonConstants":
        # 44/12 is exact; a file may round it, but not by more than a rounding of the ratio would
        if not 3.6 <= self.co2_per_c.value <= 3.7:
            raise ValueError(f"co2_per_c must be the CO2/C molar mass ratio 44/12 = 3.667, got {self.co2_per_c.value}")
        # dry biomass is 40-55 % carbon (IPCC 2006 Vol. 4 Table 4.3: 0.43-0.55 by tissue and biome)
        if not 0.3 <= self.fang_carbon_fraction.value <= 0.6:
            raise ValueError(f"fang_carbon_fraction must lie in [0.3, 0.6] (carbon share of dry biomass), "
                             f"got {self.fang_carbon_fraction.value}")
        if self.fang_min_volume_m3_per_ha.value < 0:
            raise ValueError(f"fang_min_volume_m3_per_ha must be >= 0, got {self.fang_min_volume_m3_per_ha.value}")
        return self


class ParameterFile(_Strict):
    """The whole parameter file, as written on disk."""

    schema_version: Literal[1]
    region: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str
    version: str = Field(min_length=1)
    description: str = ""
    references: dict[str, str]
    carbon: CarbonConstants
    crediting: Crediting
    growth_uncertainty: GrowthUncertainty
    peril_uncertainty: dict[str, PerilUncertainty] = Field(default_factory=dict)
    regeneration: Regeneration
    species: dict[str, Species]
    site_classes: list[str]
    management: dict[str, dict[str, Sourced]]
    perils: dict[str, dict[str, Any] | None] = Field(default_factory=dict)

    @field_validator("perils", "peril_uncertainty", mode="before")
    @classmethod
    def _perils_default(cls, v: Any) -> Any:
        return {} if v is None else v

    @model_validator(mode="after")
    def _check(self) -> "ParameterFile":
        if tuple(self.site_classes) != SITE_CLASSES:
            raise ValueError(f"site_classes must be {list(SITE_CLASSES)}")
        for kind, levels in self.management.items():
            for level, mult in levels.items():
                # multipliers on a hazard (burn probability, infection probability, infectivity)
                if mult.value < 0:
                    raise ValueError(f"management.{kind}.{level} is a multiplier on a hazard and must be >= 0, "
                                     f"got {mult.value}")
        for sid in self.species:
            if not sid.replace("_", "").isalnum() or sid.lower() != sid:
                raise ValueError(f"species id {sid!r} must be snake_case")
        # every cited source must exist
        missing: set[str] = set()

        def visit(obj: Any) -> None:
            if isinstance(obj, BaseModel):
                src = getattr(obj, "source", None)
                if isinstance(src, str) and src not in self.references:
                    missing.add(src)
                for f in type(obj).model_fields:
                    visit(getattr(obj, f))
            elif isinstance(obj, dict):
                if isinstance(obj.get("source"), str) and obj["source"] not in self.references:
                    missing.add(obj["source"])
                for v in obj.values():
                    visit(v)
            elif isinstance(obj, list):
                for v in obj:
                    visit(v)

        visit(self)
        if missing:
            raise ValueError(f"sources not listed under `references`: {sorted(missing)}")
        # aliases must be unambiguous
        seen: dict[str, str] = {}
        for sid, sp in self.species.items():
            for name in [sid, sp.name_zh, *sp.aliases]:
                key = name.strip().lower()
                if key in seen and seen[key] != sid:
                    raise ValueError(f"alias {name!r} names both {seen[key]} and {sid}")
                seen[key] = sid
        unknown = sorted(set(self.peril_uncertainty) - (set(self.perils) - set(NOT_PERILS)))
        if unknown:
            raise ValueError(f"peril_uncertainty names perils the file does not define under `perils`: {unknown}")
        for name, pu in self.peril_uncertainty.items():
            for field_name in ("local_transmission_log_sd", "long_distance_jump_log_sd"):
                if getattr(pu, field_name) is not None and name not in SPREAD_PERILS:
                    raise ValueError(f"peril_uncertainty.{name}.{field_name}: only a peril with a landscape spread "
                                     f"process ({', '.join(SPREAD_PERILS)}) has spread rates to draw")
        for lever in ("fire_protection", "pest_control"):
            if lever not in self.management:
                raise ValueError(f"management.{lever} is required")
            for level in ("none", "basic", "enhanced"):
                if level not in self.management[lever]:
                    raise ValueError(f"management.{lever}.{level} is required")
        return self
