"""Regional model parameter sets: load, validate, hash and tabulate.

A parameter set is a YAML file (``models/parameters/<region>.yaml``). Loading validates its schema,
ranges and units, checks every source is cited, and computes the SHA-256 of the file bytes that every
result reports. :class:`ModelParameters` also carries structure-of-arrays tables over species groups,
so the vectorised maths can index them with integer species codes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import ValidationError

from models.parameters.schema import SITE_CLASSES, ParameterFile, Species, Sourced
from models._yaml import load_yaml

PARAMETER_DIR = Path(__file__).resolve().parent
DEFAULT_REGION = "lishui"


class ParameterError(ValueError):
    """A parameter file is missing, unreadable or invalid. The message names the file and field."""


def available_regions() -> list[str]:
    """Region ids of the parameter files shipped with the package."""
    return sorted(p.stem for p in PARAMETER_DIR.glob("*.yaml"))


def resolve_parameter_path(region_or_path: str | Path = DEFAULT_REGION) -> Path:
    p = Path(region_or_path)
    if p.suffix.lower() in (".yaml", ".yml") or p.exists():
        return p
    candidate = PARAMETER_DIR / f"{region_or_path}.yaml"
    if not candidate.exists():
        raise ParameterError(
            f"no parameter set {str(region_or_path)!r}: not a file, and not one of {available_regions()}"
        )
    return candidate


def data_file_stamp(path: Path, region: str) -> tuple | None:
    """What a data file validated against a region's references depends on: the file (path, mtime, size), the
    region and its parameter file's mtime; a cache keyed by it reloads when either file changes on disk. None
    when a file cannot be read (the loader then reports it)."""
    try:
        return (str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size, region,
                resolve_parameter_path(region).stat().st_mtime_ns)
    except OSError:
        return None


def format_validation_error(path: Path | str, err: ValidationError, what: str = "parameter file",
                            strip_value_error: bool = False) -> str:
    """One line naming the file and the number of problems, then one line per field: ``loc: message``.

    Shared by every data-file loader (parameters, price model, credit defaults, scenarios).
    """
    lines = [f"{path}: invalid {what} ({err.error_count()} problem(s))"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        msg = e["msg"].replace("Value error, ", "") if strip_value_error else e["msg"]
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ModelParameters:
    """A validated parameter set with its hash and array tables.

    Attributes
    ----------
    file : ParameterFile
        The validated content.
    sha256 : str
        Hex SHA-256 of the file bytes, reported with every result.
    path : str
        Where it was read from.
    perils : dict
        Peril name -> validated peril parameter object (see :mod:`models.perils`).
    variant : str
        Empty for the file as read; else what was derived from it in memory (a stress lever's pine
        wilt landscape, say). Results record it next to the file's hash, and the engine's per-process
        set-up tells variants of one file apart by it.
    """

    file: ParameterFile
    sha256: str
    path: str
    perils: dict[str, Any] = field(default_factory=dict)
    variant: str = ""

    # ---- identity -------------------------------------------------------------------------
    @property
    def region(self) -> str:
        return self.file.region

    @property
    def version(self) -> str:
        return self.file.version

    def provenance(self) -> dict[str, str]:
        out = {"region": self.region, "parameter_version": self.version, "parameter_sha256": self.sha256}
        if self.variant:
            out["parameter_variant"] = self.variant
        return out

    # ---- species tables -----------------------------------------------------------------
    @cached_property
    def species_ids(self) -> tuple[str, ...]:
        return tuple(self.file.species)

    @cached_property
    def species_index(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.species_ids)}

    @cached_property
    def species_aliases(self) -> dict[str, str]:
        """Lower-cased id, Chinese name and aliases -> species id."""
        out: dict[str, str] = {}
        for sid, sp in self.file.species.items():
            for name in (sid, sp.name_zh, sp.name_en, *sp.aliases):
                out[name.strip().lower()] = sid
        return out

    def species(self, sid: str) -> Species:
        return self.file.species[sid]

    def _col(self, getter, default: float = np.nan) -> np.ndarray:
        vals = []
        for sp in self.file.species.values():
            try:
                v = getter(sp)
            except AttributeError:
                v = None
            vals.append(default if v is None else (v.value if isinstance(v, Sourced) else v))
        arr = np.asarray(vals, dtype=np.float64)
        arr.setflags(write=False)
        return arr

    @cached_property
    def tables(self) -> "SpeciesTables":
        return SpeciesTables.from_parameters(self)


@dataclass(frozen=True)
class SpeciesTables:
    """Structure-of-arrays view of the species parameters, indexed by species code."""

    is_bamboo: np.ndarray
    pine_share: np.ndarray
    max_age_years: np.ndarray
    wood_density_t_per_m3: np.ndarray
    bef: np.ndarray
    root_shoot_ratio: np.ndarray
    carbon_fraction: np.ndarray
    fang_a: np.ndarray
    fang_b: np.ndarray
    has_fang: np.ndarray
    growth_rate_per_year: np.ndarray
    growth_shape: np.ndarray
    asymptote_m3_per_ha: np.ndarray  # (species, site class)
    bamboo_managed_stock_tc_per_ha: np.ndarray  # (species, site class)
    flammability: np.ndarray
    ice_vulnerability: np.ndarray
    wind_vulnerability: np.ndarray

    @classmethod
    def from_parameters(cls, p: ModelParameters) -> "SpeciesTables":
        sp = list(p.file.species.values())
        n = len(sp)
        asym = np.full((n, len(SITE_CLASSES)), np.nan)
        bamboo = np.full((n, len(SITE_CLASSES)), np.nan)
        for i, s in enumerate(sp):
            if s.growth is not None:
                asym[i] = [s.growth.asymptote_m3_per_ha[c] for c in SITE_CLASSES]
            if s.bamboo is not None:
                bamboo[i] = [s.bamboo.managed_stock_tc_per_ha[c] for c in SITE_CLASSES]
        fields = dict(
            is_bamboo=np.array([s.kind == "bamboo" for s in sp]),
            pine_share=p._col(lambda s: s.pine_share),
            max_age_years=p._col(lambda s: s.max_age_years),
            wood_density_t_per_m3=p._col(lambda s: s.wood_density_t_per_m3),
            bef=p._col(lambda s: s.bef),
            root_shoot_ratio=p._col(lambda s: s.root_shoot_ratio),
            carbon_fraction=p._col(lambda s: s.carbon_fraction),
            fang_a=p._col(lambda s: s.fang.a if s.fang else None),
            fang_b=p._col(lambda s: s.fang.b if s.fang else None),
            has_fang=np.array([s.fang is not None for s in sp]),
            growth_rate_per_year=p._col(lambda s: s.growth.rate_per_year if s.growth else None),
            growth_shape=p._col(lambda s: s.growth.shape if s.growth else None),
            asymptote_m3_per_ha=asym,
            bamboo_managed_stock_tc_per_ha=bamboo,
            flammability=p._col(lambda s: s.traits.flammability),
            ice_vulnerability=p._col(lambda s: s.traits.ice_vulnerability),
            wind_vulnerability=p._col(lambda s: s.traits.wind_vulnerability),
        )
        for v in fields.values():
            v.setflags(write=False)
        return cls(**fields)


def load_parameters(region_or_path: str | Path = DEFAULT_REGION) -> ModelParameters:
    """Load and validate a parameter set.

    Parameters
    ----------
    region_or_path : str or Path
        A shipped region id (``"lishui"``) or the path of a YAML parameter file.

    Raises
    ------
    ParameterError
        With the file name and every invalid field.
    """
    path = resolve_parameter_path(region_or_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read parameter file ({exc.strerror})") from exc
    try:
        data = load_yaml(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParameterError(f"{path}: not a valid UTF-8 YAML file ({exc})") from exc
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: a parameter file must be a YAML mapping")
    try:
        pfile = ParameterFile.model_validate(data)
    except ValidationError as exc:
        raise ParameterError(format_validation_error(path, exc)) from exc
    from models.perils import attach_peril_data, validate_peril_parameters  # local: perils import parameters

    try:
        perils = validate_peril_parameters(pfile.perils, pfile)
    except ValidationError as exc:
        raise ParameterError(format_validation_error(path, exc)) from exc
    except ValueError as exc:
        raise ParameterError(f"{path}: invalid parameter file: {exc}") from exc
    try:  # data files the perils name (the pine wilt landscape), checked against their hashes
        perils = attach_peril_data(perils, path.parent)
    except ValueError as exc:
        raise ParameterError(f"{path}: {exc}") from exc
    return ModelParameters(file=pfile, sha256=hashlib.sha256(raw).hexdigest(), path=str(path), perils=perils)


__all__ = [
    "DEFAULT_REGION",
    "ModelParameters",
    "ParameterError",
    "SITE_CLASSES",
    "SpeciesTables",
    "available_regions",
    "data_file_stamp",
    "format_validation_error",
    "load_parameters",
]
