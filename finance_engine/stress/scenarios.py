"""Stress scenarios as data: YAML files validated with pydantic, versioned and hashed into results.

A scenario file (``finance_engine/scenarios/<name>.yaml`` for the shipped library, or any path)::

    kind: stress_scenario
    schema_version: 1
    name: ice_storm_2008
    version: "2026.1"
    title: "2008-like ice storm in year 2"
    source: domain_doc              # a key of `references:` in the region parameter file
    confidence: assumption          # read / derived / memory / assumption
    includes: [severe_fire_weather] # other scenarios combined into this one (names or paths)
    climate_pathway: warming        # a pathway of perils.climate in the parameter file
    hazard:   {fire: 1.5}           # peril -> multiplier on the event frequency
    severity: {typhoon: {by_year: {3: 1.4}}}
    growth:   {2: 0.7}              # year -> growth multiplier (a drought year)
    forced_events:
      - {year: 2, peril: ice_storm, counties: [龙泉市, 庆元县], severity: 1.0}
    price:
      scenario: price_crash         # a named scenario of finance_engine/data/price_model.yaml
      shocks: [{year: 1, change: -0.5}]

Years are **years of the horizon counted from 1** (year 1 is the first simulated year, calendar year
``start_year``). A multiplier is a number, ``{by_year: {year: m}}`` (other years 1), ``{trend:
{calendar_year: m}}`` (linear between anchors, flat outside: a climate trend), or a mapping with
several of ``constant``, ``by_year`` and ``trend`` (they multiply). Forced events carry the keys the
peril module documents (:mod:`models.perils.ice_storm` etc.). Price shocks multiply the price from
their year on (``persistent: true``, default) or in that year only.

Combining (``includes``): multipliers multiply, growth multipliers multiply, forced events and price
shocks are concatenated; ``climate_pathway``, ``price.scenario`` and ``price.model`` may be set by at
most one part (or by several with the same value). Every problem raises :class:`ScenarioError`
naming the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from models.dynamics import DEFAULT_START_YEAR, Modifiers
from models.perils._weather import ForcedEventError, forced_number
from models._yaml import DataFileError, read_data_file
from models.parameters import format_validation_error

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "scenarios"
CONFIDENCE_LABELS = ("read", "derived", "memory", "assumption")
# forced-event keys of the pine wilt peril (models/perils/pine_wilt.py checks the same set)
_PINE_WILT_KEYS = {"counties": "county names", "townships": "township names (or county/township)",
                   "parcel_probability": "infection probability of host parcels in the named areas"}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the field."""


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MultiplierSpec(_Strict):
    """A multiplier: a constant, per-year values and/or a calendar-year trend (they multiply)."""

    constant: float = Field(default=1.0, ge=0, le=100)
    by_year: dict[int, float] = Field(default_factory=dict)
    trend: dict[int, float] = Field(default_factory=dict)

    @field_validator("by_year")
    @classmethod
    def _years(cls, v: dict[int, float]) -> dict[int, float]:
        for y, m in v.items():
            if not 1 <= y <= 200:
                raise ValueError(f"year {y} is outside 1-200 (years of the horizon count from 1)")
            if not (math.isfinite(m) and 0 <= m <= 100):
                raise ValueError(f"multiplier {m} for year {y} is outside 0-100")
        return v

    @field_validator("trend")
    @classmethod
    def _trend(cls, v: dict[int, float]) -> dict[int, float]:
        for y, m in v.items():
            if not 1900 <= y <= 2300:
                raise ValueError(f"trend anchor {y} is not a calendar year in 1900-2300")
            if not (math.isfinite(m) and 0 <= m <= 100):
                raise ValueError(f"trend multiplier {m} at {y} is outside 0-100")
        return v


class ForcedEventSpec(BaseModel):
    """One imposed event: ``year``, ``peril`` and the peril's own keys."""

    model_config = ConfigDict(extra="allow", frozen=True)
    year: int = Field(ge=1, le=200)
    peril: str


class PriceShock(_Strict):
    year: int = Field(ge=1, le=200)
    change: float = Field(gt=-1.0, le=10.0, description="relative change, -0.5 = -50 %")
    persistent: bool = True


class PriceSpec(_Strict):
    scenario: str | None = None
    model: str | None = None
    shocks: list[PriceShock] = Field(default_factory=list)


class ScenarioFile(_Strict):
    kind: Literal["stress_scenario"] = "stress_scenario"
    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.\-]+$")
    version: str = Field(min_length=1)
    title: str = ""
    description: str = ""
    source: str = "domain_doc"
    confidence: str = "assumption"
    includes: list[str] = Field(default_factory=list)
    climate_pathway: str | None = None
    hazard: dict[str, float | MultiplierSpec] = Field(default_factory=dict)
    severity: dict[str, float | MultiplierSpec] = Field(default_factory=dict)
    growth: dict[int, float] = Field(default_factory=dict)
    forced_events: list[ForcedEventSpec] = Field(default_factory=list)
    price: PriceSpec = Field(default_factory=PriceSpec)

    @field_validator("confidence")
    @classmethod
    def _conf(cls, v: str) -> str:
        if v not in CONFIDENCE_LABELS:
            raise ValueError(f"must be one of {CONFIDENCE_LABELS}, got {v!r}")
        return v

    @field_validator("hazard", "severity", mode="before")
    @classmethod
    def _numbers(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for k, m in v.items():
                if isinstance(m, (int, float)) and not isinstance(m, bool) and not (math.isfinite(m) and 0 <= m <= 100):
                    raise ValueError(f"{k}: multiplier {m} is outside 0-100")
        return v

    @field_validator("growth")
    @classmethod
    def _growth(cls, v: dict[int, float]) -> dict[int, float]:
        for y, m in v.items():
            if not 1 <= y <= 200:
                raise ValueError(f"year {y} is outside 1-200 (years of the horizon count from 1)")
            if not (math.isfinite(m) and 0 <= m <= 5):
                raise ValueError(f"growth multiplier {m} for year {y} is outside 0-5")
        return v

    @model_validator(mode="after")
    def _peril_names(self) -> "ScenarioFile":
        known = _known_perils()
        for kind in ("hazard", "severity"):
            bad = [p for p in getattr(self, kind) if p not in known]
            if bad:
                raise ValueError(f"{kind}: unknown peril(s) {bad}; known: {sorted(known)}")
        return self


@lru_cache(maxsize=1)
def _known_perils() -> dict[str, dict[str, str]]:
    """Peril name -> the forced-event keys its module accepts."""
    import importlib

    from models.perils import peril_classes

    out = {}
    for name, cls in peril_classes().items():
        keys = getattr(importlib.import_module(cls.__module__), "FORCED_KEYS", None)
        out[name] = dict(keys) if keys is not None else (_PINE_WILT_KEYS if name == "pine_wilt" else {})
    return out


@lru_cache(maxsize=None)
def _forced_ranges(peril: str) -> dict[str, tuple]:
    """Each numeric forced-event key's range as the peril applies it (its module's ``FORCED_RANGES``:
    ``(low, high)`` with the low end open, or ``(low, high, low_open)``)."""
    import importlib

    from models.perils import peril_classes

    cls = peril_classes().get(peril)
    return dict(getattr(importlib.import_module(cls.__module__), "FORCED_RANGES", {})) if cls is not None else {}


# ---------------------------------------------------------------------------------------------
# Multipliers as picklable callables of the 0-based simulation year
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class YearMultiplier:
    """``m(y) = constant * by_year[y] * prod_k interp(start_year + y, trend_k)`` (``y`` 0-based).

    Picklable (worker processes receive it inside :class:`models.dynamics.Modifiers`).
    """

    constant: float = 1.0
    by_year: tuple[tuple[int, float], ...] = ()
    trends: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = ()
    start_year: int = DEFAULT_START_YEAR

    def __call__(self, y: int) -> float:
        m = self.constant
        for yy, v in self.by_year:
            if yy == y:
                m *= v
        for xs, vs in self.trends:
            m *= float(np.interp(self.start_year + y, xs, vs))
        return float(m)

    def times(self, other: "YearMultiplier") -> "YearMultiplier":
        by = dict(self.by_year)
        for y, v in other.by_year:
            by[y] = by.get(y, 1.0) * v
        return YearMultiplier(self.constant * other.constant, tuple(sorted(by.items())),
                              self.trends + other.trends, self.start_year)

    def describe(self) -> str:
        parts = []
        if self.constant != 1.0:
            parts.append(f"x{self.constant:g}")
        for y, v in self.by_year:
            parts.append(f"x{v:g} in year {y + 1}")
        for xs, vs in self.trends:
            parts.append("trend " + ", ".join(f"{int(x)}: x{v:g}" for x, v in zip(xs, vs)))
        return "; ".join(parts) or "x1"


def _multiplier(spec: float | MultiplierSpec, start_year: int) -> YearMultiplier:
    if isinstance(spec, (int, float)):
        return YearMultiplier(float(spec), (), (), start_year)
    by = tuple(sorted((int(y) - 1, float(v)) for y, v in spec.by_year.items()))
    trends = ()
    if spec.trend:
        ys = sorted(spec.trend)
        trends = ((tuple(float(y) for y in ys), tuple(float(spec.trend[y]) for y in ys)),)
    return YearMultiplier(float(spec.constant), by, trends, start_year)


# ---------------------------------------------------------------------------------------------
# Resolved scenarios
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StressScenario:
    """A validated scenario with its ``includes`` resolved.

    Attributes
    ----------
    name, version, title, description : str
    files : tuple of (path, sha256)
        Every file that went into it (itself first, then the included ones).
    sha256 : str
        Hash of the resolved content and of every file's bytes: recorded with each result.
    hazard, severity : dict peril -> YearMultiplier (start year applied at use)
    growth : dict 0-based year -> multiplier
    forced_events : tuple of (0-based year, peril, event dict)
    climate_pathway, price_scenario, price_model : str or None
    price_shocks : tuple of (1-based year, change, persistent)
    """

    name: str
    version: str
    title: str
    description: str
    source: str
    confidence: str
    files: tuple[tuple[str, str], ...]
    sha256: str
    hazard: dict[str, YearMultiplier] = field(default_factory=dict)
    severity: dict[str, YearMultiplier] = field(default_factory=dict)
    growth: dict[int, float] = field(default_factory=dict)
    forced_events: tuple[tuple[int, str, dict], ...] = ()
    climate_pathway: str | None = None
    price_scenario: str | None = None
    price_model: str | None = None
    price_shocks: tuple[tuple[int, float, bool], ...] = ()

    @property
    def is_baseline(self) -> bool:
        return (not self.hazard and not self.severity and not self.growth and not self.forced_events
                and self.climate_pathway is None and self.price_scenario is None and not self.price_shocks)

    def modifiers(self, start_year: int = DEFAULT_START_YEAR) -> Modifiers:
        """The engine's :class:`~models.dynamics.Modifiers` for this scenario."""
        def at(m: YearMultiplier) -> YearMultiplier:
            return YearMultiplier(m.constant, m.by_year, m.trends, int(start_year))

        forced: dict[int, dict[str, list[dict]]] = {}
        for y, peril, ev in self.forced_events:
            forced.setdefault(y, {}).setdefault(peril, []).append(dict(ev))
        return Modifiers(hazard={p: at(m) for p, m in self.hazard.items()},
                         severity={p: at(m) for p, m in self.severity.items()},
                         growth=dict(self.growth), forced_events=forced, climate_pathway=self.climate_pathway)

    def scaled(self, kind: str, peril: str, factor: float) -> "StressScenario":
        """The same scenario with one more multiplier (used by the reverse stress search)."""
        if kind not in ("hazard", "severity"):
            raise ScenarioError(f"kind must be hazard or severity, got {kind!r}")
        if peril not in _known_perils():
            raise ScenarioError(f"unknown peril {peril!r}; known: {sorted(_known_perils())}")
        cur = dict(getattr(self, kind))
        cur[peril] = cur.get(peril, YearMultiplier()).times(YearMultiplier(float(factor)))
        d = {**self.__dict__, kind: cur, "name": f"{self.name}*{kind}.{peril}x{factor:g}"}
        return StressScenario(**d)

    def with_price_shock(self, year: int, change: float, persistent: bool = True) -> "StressScenario":
        d = {**self.__dict__, "price_shocks": self.price_shocks + ((int(year), float(change), bool(persistent)),),
             "name": f"{self.name}+price{change:+g}"}
        return StressScenario(**d)

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary of what the scenario changes."""
        return {
            "name": self.name, "version": self.version, "title": self.title, "sha256": self.sha256,
            "source": self.source, "confidence": self.confidence,
            "hazard": {p: m.describe() for p, m in self.hazard.items()},
            "severity": {p: m.describe() for p, m in self.severity.items()},
            "growth": {y + 1: m for y, m in self.growth.items()},
            "forced_events": [{"year": y + 1, "peril": p, **ev} for y, p, ev in self.forced_events],
            "climate_pathway": self.climate_pathway, "price_scenario": self.price_scenario,
            "price_model": self.price_model,
            "price_shocks": [{"year": y, "change": c, "persistent": s} for y, c, s in self.price_shocks],
            "files": [{"path": p, "sha256": h} for p, h in self.files],
        }


def baseline_scenario() -> StressScenario:
    """Today's model with nothing changed (the file ``baseline.yaml`` resolves to the same)."""
    return load_scenario("baseline")


def scenario_library() -> list[str]:
    """Names of the shipped scenarios (files under ``finance_engine/scenarios``)."""
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


def _locate(ref: str, relative_to: Path | None) -> Path:
    """The file of a scenario reference: a bare name of the library is the library's file (a file of that name
    in the working folder does not replace it); a relative path of an include is relative to the including
    file first, then to the working folder."""
    p = Path(ref)
    is_file_name = p.suffix.lower() in (".yaml", ".yml", ".json") or len(p.parts) != 1
    lib = LIBRARY_DIR / f"{ref}.yaml"
    if not is_file_name and lib.exists():
        return lib
    if not p.is_absolute() and relative_to is not None and (relative_to / p).exists():
        return relative_to / p
    if is_file_name or p.exists():
        return p
    raise ScenarioError(f"unknown scenario {ref!r}: not a file and not in the library ({', '.join(scenario_library())})")


def read_scenario_file(path: str | Path) -> tuple[ScenarioFile, bytes]:
    """Parse and validate one file (no includes resolved). Raises :class:`ScenarioError`."""
    p = Path(path)
    try:
        raw, data = read_data_file(p, "scenario file")
    except DataFileError as exc:
        raise ScenarioError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{p}: a scenario file must be a mapping of field -> value")
    try:
        spec = ScenarioFile.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(format_validation_error(p, err, "scenario file", strip_value_error=True)) from None
    _check_semantics(p, spec)
    return spec, data


def _check_semantics(p: Path, spec: ScenarioFile) -> None:
    """Cross-checks against the perils, the parameter file and the price model (named fields)."""
    known = _known_perils()
    for i, ev in enumerate(spec.forced_events):
        where = f"{p}: forced_events.{i}"
        if ev.peril not in known:
            raise ScenarioError(f"{where}.peril: unknown peril {ev.peril!r}; known: {sorted(known)}")
        extra = dict(ev.model_extra or {})
        allowed = known[ev.peril]
        bad = [k for k in extra if k not in allowed]
        if bad:
            raise ScenarioError(f"{where}: key(s) {bad} not understood by peril {ev.peril!r}; "
                                f"allowed: {sorted(allowed)}")
        for k in ("counties", "townships"):
            if k in extra and (isinstance(extra[k], str) or not isinstance(extra[k], list) or not extra[k]
                               or not all(isinstance(x, str) and x.strip() for x in extra[k])):
                raise ScenarioError(f"{where}.{k}: must be a non-empty list of names")
        ranges = _forced_ranges(ev.peril)
        for k, v in extra.items():
            if k not in ("counties", "townships") and (isinstance(v, bool) or not isinstance(v, (int, float))
                                                        or not math.isfinite(v)):
                raise ScenarioError(f"{where}.{k}: must be a number, got {v!r}")
            if k in ranges:  # the peril's own range check, here rather than after a baseline run
                lo, hi, *rest = ranges[k]
                try:
                    forced_number(extra, k, ev.peril, None, lo, hi, lo_open=rest[0] if rest else True)
                except ForcedEventError as exc:
                    raise ScenarioError(f"{where}.{k}: {exc}") from None
        if ev.peril == "typhoon" and "track" not in extra:
            raise ScenarioError(f"{where}.track: a forced typhoon needs a track (km along the coast axis)")
        if ev.peril == "pine_wilt" and not (extra.get("counties") or extra.get("townships")):
            raise ScenarioError(f"{where}: a forced pine_wilt outbreak needs counties or townships")
    if spec.climate_pathway is not None:
        pathways = _climate_pathways()
        if spec.climate_pathway not in pathways:
            raise ScenarioError(f"{p}: climate_pathway: unknown pathway {spec.climate_pathway!r}; "
                                f"known: {sorted(pathways)}")
    if spec.price.scenario is not None or spec.price.model is not None:
        from finance_engine.price import load_price_model

        pms = load_price_model()
        if spec.price.scenario is not None and spec.price.scenario not in pms.scenarios:
            raise ScenarioError(f"{p}: price.scenario: unknown price scenario {spec.price.scenario!r}; "
                                f"known: {sorted(pms.scenarios)}")
        if spec.price.model is not None and spec.price.model not in pms.models:
            raise ScenarioError(f"{p}: price.model: unknown price model {spec.price.model!r}; known: {sorted(pms.models)}")
    if spec.source:
        from finance_engine.price import reference_keys

        if spec.source not in reference_keys():
            raise ScenarioError(f"{p}: source: {spec.source!r} is not a key of `references:` in the parameter file")


@lru_cache(maxsize=1)
def _climate_pathways() -> tuple[str, ...]:
    from models.dynamics import climate_pathways
    from models.parameters import load_parameters

    return climate_pathways(load_parameters("lishui"))


def load_scenario(ref: str | Path, *, _seen: tuple[str, ...] = (), _relative_to: Path | None = None) -> StressScenario:
    """Load a scenario by library name or path, resolving ``includes``.

    Raises
    ------
    ScenarioError
        Unreadable or invalid file (the message names the file and the field), unknown include, an
        include cycle, or two parts setting different climate pathways / price scenarios.
    """
    path = _locate(str(ref), _relative_to)
    key = str(path.resolve())
    if key in _seen:
        raise ScenarioError(f"{path}: includes form a cycle ({' -> '.join([*_seen, key])})")
    spec, data = read_scenario_file(path)
    parts: list[StressScenario] = []
    for i, inc in enumerate(spec.includes):
        try:
            parts.append(load_scenario(inc, _seen=(*_seen, key), _relative_to=path.parent))
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: includes.{i} ({inc}): {exc}") from None
    own = _own(spec, path, hashlib.sha256(data).hexdigest())
    out = own
    for part in parts:
        out = _combine(out, part, path)
    return out


def _own(spec: ScenarioFile, path: Path, file_hash: str) -> StressScenario:
    hazard = {p: _multiplier(m, DEFAULT_START_YEAR) for p, m in spec.hazard.items()}
    severity = {p: _multiplier(m, DEFAULT_START_YEAR) for p, m in spec.severity.items()}
    growth = {int(y) - 1: float(m) for y, m in spec.growth.items()}
    forced = tuple((ev.year - 1, ev.peril, dict(ev.model_extra or {})) for ev in spec.forced_events)
    shocks = tuple((s.year, s.change, s.persistent) for s in spec.price.shocks)
    s = StressScenario(name=spec.name, version=spec.version, title=spec.title or spec.name,
                       description=spec.description.strip(), source=spec.source, confidence=spec.confidence,
                       files=((str(path), file_hash),), sha256="", hazard=hazard, severity=severity,
                       growth=growth, forced_events=forced, climate_pathway=spec.climate_pathway,
                       price_scenario=spec.price.scenario, price_model=spec.price.model, price_shocks=shocks)
    return _rehash(s)


def _rehash(s: StressScenario) -> StressScenario:
    d = s.describe()
    d["sha256"] = None
    d["files"] = [f["sha256"] for f in d["files"]]  # file bytes, not where they are installed
    content = json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)
    d = {**s.__dict__, "sha256": hashlib.sha256(content.encode()).hexdigest()}
    return StressScenario(**d)


def _one(a: str | None, b: str | None, what: str, path: Path) -> str | None:
    if a is not None and b is not None and a != b:
        raise ScenarioError(f"{path}: {what}: the combined scenarios set different values ({a!r} and {b!r})")
    return a if a is not None else b


def _combine(a: StressScenario, b: StressScenario, path: Path) -> StressScenario:
    """``a`` with ``b`` layered on top (the name, version and text of ``a`` are kept)."""
    def mult(x: dict, y: dict) -> dict:
        out = dict(x)
        for p, m in y.items():
            out[p] = out[p].times(m) if p in out else m
        return out

    growth = dict(a.growth)
    for y, m in b.growth.items():
        growth[y] = growth.get(y, 1.0) * m
    s = StressScenario(
        name=a.name, version=a.version, title=a.title, description=a.description, source=a.source,
        confidence=a.confidence, files=a.files + b.files, sha256="", hazard=mult(a.hazard, b.hazard),
        severity=mult(a.severity, b.severity), growth=growth, forced_events=a.forced_events + b.forced_events,
        climate_pathway=_one(a.climate_pathway, b.climate_pathway, "climate_pathway", path),
        price_scenario=_one(a.price_scenario, b.price_scenario, "price.scenario", path),
        price_model=_one(a.price_model, b.price_model, "price.model", path),
        price_shocks=a.price_shocks + b.price_shocks)
    return _rehash(s)


__all__ = ["LIBRARY_DIR", "ScenarioError", "ScenarioFile", "StressScenario", "YearMultiplier", "baseline_scenario",
           "load_scenario", "read_scenario_file", "scenario_library"]
