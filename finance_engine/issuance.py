"""Issuance risk: credits are issued only if verified, possibly late, under rules that can change.

Applied to the simulated issuance stream ``Q[path, year]`` (tCO2e issued at the end of a monitoring
period), path by path with keyed random numbers (streams ``issuance.*``), vectorised over paths:

* each issuance fails verification with probability ``f`` (its credits are lost);
* otherwise it is delayed by ``d`` years with probability ``p_delay`` (credits arrive later; a
  delay past the horizon loses them from the valuation);
* a methodology change arrives at rate ``m`` per year (first arrival time exponential); issuance
  after it is multiplied by ``factor``.

Parameters: ``finance_engine/data/issuance_risk.yaml`` (every figure an assumption, labelled so).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from models.rng import KeyedRandom
from models._yaml import read_data_file

ISSUANCE_PATH = Path(__file__).resolve().parent / "data" / "issuance_risk.yaml"
_NO_PARCELS = np.empty(0, np.uint64)


class _Sourced(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    value: float
    source: str
    confidence: Literal["read", "derived", "memory", "assumption"]
    note: str | None = None


class _IssuanceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: int
    verification_failure_probability: _Sourced
    delay_probability: _Sourced
    delay_years: _Sourced
    methodology_change_rate_per_year: _Sourced
    methodology_change_issuance_factor: _Sourced

    @model_validator(mode="after")
    def _check(self) -> "_IssuanceFile":
        d = self.delay_years.value
        if d != int(d):
            raise ValueError(f"delay_years must be a whole number of years, got {d}")
        IssuanceRisk(self.verification_failure_probability.value, self.delay_probability.value,
                     int(self.delay_years.value), self.methodology_change_rate_per_year.value,
                     self.methodology_change_issuance_factor.value)
        return self


@dataclass(frozen=True)
class IssuanceRisk:
    """Parameters of the issuance-risk model (see module docstring)."""

    verification_failure_probability: float = 0.0
    delay_probability: float = 0.0
    delay_years: int = 1
    methodology_change_rate_per_year: float = 0.0
    methodology_change_issuance_factor: float = 1.0
    sha256: str = ""

    def __post_init__(self) -> None:
        for name in ("verification_failure_probability", "delay_probability"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")
        if self.delay_years < 0 or self.delay_years > 10:
            raise ValueError(f"delay_years must lie in 0-10, got {self.delay_years}")
        if not 0 <= self.methodology_change_rate_per_year < 1:
            raise ValueError("methodology_change_rate_per_year must lie in [0, 1)")
        if not 0 <= self.methodology_change_issuance_factor <= 1:
            raise ValueError("methodology_change_issuance_factor must lie in [0, 1]")

    @classmethod
    def none(cls) -> "IssuanceRisk":
        """Every credit is issued on time (the switch-off for attribution)."""
        return cls()

    def apply(self, issued_tco2e: np.ndarray, path_ids: np.ndarray, seed: int) -> np.ndarray:
        """Realised issuance, shape (years, n_paths), from the simulated one (same shape)."""
        return self.realise(issued_tco2e, path_ids, seed).credits

    def realise(self, issued_tco2e: np.ndarray, path_ids: np.ndarray, seed: int) -> "RealisedIssuance":
        """Realised issuance and what a lender knows of it along the way (:class:`RealisedIssuance`)."""
        q = np.asarray(issued_tco2e, dtype=np.float64)
        years, n = q.shape
        if n != len(path_ids):
            raise ValueError("issued_tco2e must have one column per path id")
        rnd = KeyedRandom(int(seed), np.asarray(path_ids, dtype=np.int64), _NO_PARCELS)
        out = np.zeros_like(q)
        pending = np.zeros((years + 1, n))
        # methodology change: first arrival of a Poisson process, in years
        if self.methodology_change_rate_per_year > 0:
            u = rnd.path_uniform("issuance.methodology_change", 0)
            t_change = -np.log(u) / self.methodology_change_rate_per_year
        else:
            t_change = np.full(n, np.inf)
        for y in range(years):  # loop over years, vectorised over paths
            row = q[y]
            if not np.any(row):
                continue
            fail = rnd.path_uniform("issuance.verification", y) < self.verification_failure_probability
            delay = rnd.path_uniform("issuance.delay", y) < self.delay_probability
            amount = np.where(fail, 0.0, row)
            factor = np.where(y + 1 > t_change, self.methodology_change_issuance_factor, 1.0)
            amount = amount * factor
            on_time = ~delay
            out[y] += np.where(on_time, amount, 0.0)
            late = y + self.delay_years
            if late < years:
                held = np.where(delay, amount, 0.0)
                out[late] += held
                # verified at t = y + 1, issued at t = late + 1: pending at the ends of the years between
                pending[y + 1:late + 1] += held
        return RealisedIssuance(out, t_change, pending)


@dataclass(frozen=True)
class RealisedIssuance:
    """Realised issuance, and the state of issuance a lender can see at the end of each year.

    Attributes
    ----------
    credits : ndarray, shape (years, n_paths)
        tCO2e issued at the end of year ``y + 1`` (row ``y``).
    methodology_change_year : ndarray, shape (n_paths,)
        When the methodology change arrives (years from the start; inf: never). At the end of year
        ``t`` a lender knows whether it has (``methodology_change_year <= t``): issuance from then on is
        cut by the change's factor.
    pending_tco2e : ndarray, shape (years + 1, n_paths)
        Row ``t``: credits verified by the end of year ``t`` whose delayed issuance falls later within
        the horizon (known, not yet received).
    """

    credits: np.ndarray
    methodology_change_year: np.ndarray
    pending_tco2e: np.ndarray

    def changed_by(self, t: int) -> np.ndarray:
        """Whether the methodology change has arrived by the end of year ``t``, per path."""
        return self.methodology_change_year <= t


def load_issuance_risk(path: str | Path | None = None, *, region: str = "lishui") -> IssuanceRisk:
    """Load and validate the issuance-risk file (default: the shipped one). Every value needs a ``source``
    listed under ``references`` of the region's parameter file and a confidence label (read, derived,
    memory, assumption); ``delay_years`` is a whole number. Errors name the file and the field.

    The validated model is cached per process and reloaded when either file changes on disk (as the price
    model is: a valuation that loads it itself spent 15-20 ms parsing the two YAML files)."""
    from models.parameters import data_file_stamp

    p = Path(path) if path else ISSUANCE_PATH
    stamp = data_file_stamp(p, region)
    return _load_issuance_risk(p, region) if stamp is None else _load_issuance_risk_cached(stamp)  # (None: its error)


@lru_cache(maxsize=16)
def _load_issuance_risk_cached(stamp: tuple) -> IssuanceRisk:
    return _load_issuance_risk(Path(stamp[0]), stamp[3])


def _load_issuance_risk(p: Path, region: str) -> IssuanceRisk:
    from models.parameters import format_validation_error
    from finance_engine.price import reference_keys

    data, raw = read_data_file(p, "issuance-risk file")  # unreadable or bad YAML: DataFileError naming the file
    try:
        f = _IssuanceFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(p, exc, "issuance-risk file")) from None
    unknown = sorted({v["source"] for v in data.values() if isinstance(v, dict) and "source" in v}
                     - reference_keys(region))
    if unknown:
        raise ValueError(f"{p}: sources not listed under `references` of {region}: {unknown}")
    return IssuanceRisk(f.verification_failure_probability.value, f.delay_probability.value, int(f.delay_years.value),
                        f.methodology_change_rate_per_year.value, f.methodology_change_issuance_factor.value,
                        sha256=hashlib.sha256(raw).hexdigest())
