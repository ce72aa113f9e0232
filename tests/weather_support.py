"""Helpers for the weather-peril tests: portfolios, synthetic stand states and year contexts."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tests.conftest import make_frame
from models.perils.base import StandState, YearContext
from models.portfolio import validate_frame
from models.rng import KeyedRandom

# Approximate county-seat coordinates (degrees) of Lishui's counties.
COUNTY_SEATS = {
    "莲都区": (28.45, 119.92),
    "龙泉市": (28.07, 119.14),
    "青田县": (28.14, 120.29),
    "云和县": (28.12, 119.57),
    "庆元县": (27.62, 119.06),
    "缙云县": (28.66, 120.09),
    "遂昌县": (28.59, 119.28),
    "松阳县": (28.45, 119.48),
    "景宁畲族自治县": (27.97, 119.63),
}


def uniform_portfolio(params, n: int, *, species: str = "chinese_fir", age: float = 30.0, elevation_m: float = 300.0,
                      counties=None, fire_protection: str = "basic", origin: str = "plantation", seed: int = 0):
    """A portfolio of ``n`` identical parcels (one species, age, elevation), spread over counties at their seats."""
    counties = counties or ["莲都区"]
    frame = make_frame(n, seed=seed, species=[species], counties=counties)
    frame["age_years"] = age
    frame["elevation_m"] = elevation_m
    frame["fire_protection"] = fire_protection
    frame["origin"] = origin
    frame["latitude"] = [COUNTY_SEATS[c][0] for c in frame["county"]]
    frame["longitude"] = [COUNTY_SEATS[c][1] for c in frame["county"]]
    return validate_frame(frame, params, source="test")


def lishui_like_portfolio(params, n: int, seed: int = 0):
    """Parcels over all nine counties with a Lishui-like species mix (memory, low confidence: conifers about
    half, broadleaf about a third, bamboo about a tenth; domain_parameters.md §3)."""
    rng = np.random.default_rng(seed)
    mix = {"chinese_fir": 0.30, "masson_pine": 0.15, "other_pines": 0.05, "mixed_conifer_broadleaf": 0.10,
           "evergreen_broadleaf": 0.20, "hard_broadleaf": 0.05, "oaks": 0.05, "moso_bamboo": 0.10}
    counties = list(COUNTY_SEATS)
    frame = make_frame(n, seed=seed, counties=counties)
    frame["species_group"] = rng.choice(list(mix), n, p=list(mix.values()))
    frame["latitude"] = [COUNTY_SEATS[c][0] for c in frame["county"]] + rng.uniform(-0.1, 0.1, n)
    frame["longitude"] = [COUNTY_SEATS[c][1] for c in frame["county"]] + rng.uniform(-0.1, 0.1, n)
    frame["elevation_m"] = rng.uniform(100, 1300, n)
    frame["age_years"] = rng.integers(5, 45, n)
    return validate_frame(frame, params, source="lishui_like")


def stand(n_paths: int, portfolio, *, carbon: float | np.ndarray = 40.0, age=None, fire_multiplier: float = 1.0,
          weakened: bool = True, year: int = 0):
    """A stand state; with ``weakened`` every pair is in a cascade window this ``year`` and burns with
    ``fire_multiplier`` (clear ``weakened_until`` where a pair should not be)."""
    n = portfolio.n_parcels
    a = portfolio.age_years if age is None else age
    return StandState(
        carbon_tc_per_ha=np.broadcast_to(np.asarray(carbon, dtype=float), (n_paths, n)).copy(),
        age_years=np.broadcast_to(np.asarray(a, dtype=np.float32), (n_paths, n)).copy(),
        weakened_until=np.full((n_paths, n), year if weakened else -1, dtype=np.int16), year=year,
        fire_weakened_multiplier=np.float32(fire_multiplier),
    )


def context(portfolio, n_paths: int, year: int = 0, *, seed: int = 1, st: StandState | None = None,
            drought=None, hazard=None, severity=None, forced=None, independent: bool = False,
            path_offset: int = 0) -> YearContext:
    rnd = KeyedRandom(seed, np.arange(path_offset, path_offset + n_paths), portfolio.keys)
    return YearContext(
        year=year, calendar_year=2026 + year, rnd=rnd, stand=st if st is not None else stand(n_paths, portfolio),
        drought=np.zeros(n_paths, dtype=bool) if drought is None else drought,
        hazard_multiplier=hazard or {}, severity_multiplier=severity or {}, forced_events=forced or {},
        independent=independent)


def with_params(peril_cls, params, portfolio, **updates):
    """A peril instance with some fields of its parameter block replaced (validated again)."""
    block = params.perils[peril_cls.name].model_dump()
    for k, v in updates.items():
        block[k] = v
    return peril_cls(peril_cls.Params.model_validate(block), params, portfolio)


def sourced(value: float) -> dict:
    return {"value": value, "source": "domain_doc", "confidence": "assumption"}


def run_losses(sim, rnd, years: int) -> pd.DataFrame:
    """Every peril loss of a simulator run as a table (year, peril, path_pos, parcel_pos, fraction, event, lost)."""
    rows = []
    for yo in sim.run(rnd, years):
        for name, pl, lost in yo.losses:
            if len(pl):
                rows.append(pd.DataFrame({"year": yo.year, "peril": name, "path": pl.path_pos, "parcel": pl.parcel_pos,
                                          "fraction": pl.loss_fraction, "event": pl.event, "lost_tc_per_ha": lost,
                                          "stand_replacing": pl.stand_replacing}))
    if not rows:
        return pd.DataFrame(columns=["year", "peril", "path", "parcel", "fraction", "event", "lost_tc_per_ha",
                                     "stand_replacing"])
    return pd.concat(rows, ignore_index=True)
