"""A synthetic but plausible Lishui (丽水) forest portfolio for demonstrations and tests.

:func:`generate_demo_portfolio` spreads ``n_parcels`` sub-compartments (小班) over the nine real
county-level divisions of Lishui (莲都区, 龙泉市, 青田县, 云和县, 庆元县, 缙云县, 遂昌县, 松阳县,
景宁畲族自治县), weighted by forest area (Longquan largest), with a species mix, age structure, site
classes, elevations, management levels and origins taken from ``models/data/demo_lishui.yaml``. Every
number there carries its source and confidence label; most are assumptions, and the county seat
coordinates are approximate (about 0.01 degree). The parcels are **not real**.

Naming scheme (synthetic, marked by 合成 "synthetic")
--------------------------------------------------
* ``parcel_id``: ``LS-000001``, ``LS-000002``, ... (six digits, more if ``n_parcels`` needs them).
* ``county``: the real county name; ``province`` 浙江省, ``city`` 丽水市.
* ``township``: ``<county>-合成镇NN`` (``NN`` = 01-16): 8 compass sectors x 2 distance rings around the
  county seat, so that a township is a geographic cluster, e.g. ``龙泉市-合成镇03``.
* ``village``: ``合成镇NN-村MM`` (``MM`` = 01-06): 3 sub-sectors x 2 sub-rings inside the township.
* ``project_id``: ``LS-<county code>-PNN`` for parcels enrolled in a (synthetic) carbon project; a few
  townships per county host one, and part of their parcels join it. Empty otherwise.

About 15 % of the tree parcels carry a measured ``volume_m3_per_ha`` (the yield curve at the parcel's
age and site times a lognormal plot error) and about 15 % of the bamboo parcels a measured
``bamboo_carbon_tc_per_ha``; the others leave these empty, so the engine derives them.

Determinism: the output is a pure function of ``(n_parcels, seed, params, settings)``; all draws come
from one ``numpy.random.default_rng(seed)`` in a fixed order, so the same arguments always give the
identical table (and, through :func:`write_demo_csv`, the identical file). Everything is vectorised
over parcels (200,000 parcels take well under a second).

The shipped file ``models/data/demo_portfolio.csv`` is ``generate_demo_portfolio(5000, 2026)``
written by :func:`write_demo_csv`; regenerate it with ``python -m models.demo``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from models.growth import bamboo_carbon_at_age, chapman_richards_volume
from models.parameters import SITE_CLASSES, ModelParameters, load_parameters
from models.portfolio import MANAGEMENT_LEVELS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from models._yaml import load_yaml

DATA_DIR = Path(__file__).resolve().parent / "data"
DEMO_SETTINGS_PATH = DATA_DIR / "demo_lishui.yaml"
DEMO_PORTFOLIO_PATH = DATA_DIR / "demo_portfolio.csv"
DEMO_N_PARCELS = 5000
DEMO_SEED = 2026
COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
N_SECTORS, N_RINGS, N_SUBSECTORS, N_SUBRINGS = 8, 2, 3, 2
TOWNSHIPS_PER_COUNTY = N_SECTORS * N_RINGS
VILLAGES_PER_TOWNSHIP = N_SUBSECTORS * N_SUBRINGS
KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON_EQUATOR = 111.32
CLIP_SD = 2.2
MIN_MEASURED_AGE_YEARS = 5


class DemoSettingsError(ValueError):
    """The demo settings file is missing a field or has an inconsistent value."""


def _value(x: Any) -> float:
    return float(x["value"]) if isinstance(x, dict) else float(x)


@dataclass(frozen=True)
class DemoSettings:
    """Settings of the synthetic portfolio, as arrays (see ``models/data/demo_lishui.yaml``).

    County arrays are in file order; species arrays in file order with ids ``species_ids``.
    """

    version: str
    province: str
    city: str
    county_names: tuple[str, ...]
    county_codes: tuple[str, ...]
    seat_lat: np.ndarray  # degrees N
    seat_lon: np.ndarray  # degrees E
    spread_km: np.ndarray  # sd of the normal scatter around the seat
    forest_weight: np.ndarray  # forest area share (sums to 1)
    elevation_median_m: np.ndarray
    elevation_log_sd: float
    elevation_min_m: float
    elevation_max_m: float
    species_ids: tuple[str, ...]
    species_share: np.ndarray
    species_age_scheme: np.ndarray  # index into age tables
    species_plantation_share: np.ndarray
    species_elevation_factor: np.ndarray
    age_lower: np.ndarray  # (scheme, class) years
    age_upper: np.ndarray  # (scheme, class) years, inclusive
    age_cum_share: np.ndarray  # (scheme, class)
    site_cum_share: np.ndarray  # over SITE_CLASSES
    area_median_ha: float
    area_log_sd: float
    area_min_ha: float
    area_max_ha: float
    fire_cum_share: np.ndarray  # over MANAGEMENT_LEVELS
    pest_pine_cum_share: np.ndarray
    pest_other_cum_share: np.ndarray
    volume_share: float
    bamboo_carbon_share: float
    measured_log_sd: float
    project_townships_per_county: int
    project_join_share: float


def _cum(shares: list[float], what: str) -> np.ndarray:
    a = np.asarray(shares, dtype=np.float64)
    if np.any(a < 0) or not math.isclose(a.sum(), 1.0, abs_tol=1e-6):
        raise DemoSettingsError(f"{what}: shares must be non-negative and sum to 1 (got {a.sum():g})")
    c = np.cumsum(a)
    c[-1] = 1.0
    return c


def load_demo_settings(path: str | Path = DEMO_SETTINGS_PATH) -> DemoSettings:
    """Read and check the demo settings YAML file."""
    p = Path(path)
    try:
        d = load_yaml(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DemoSettingsError(f"{p}: cannot read demo settings ({exc})") from exc
    try:
        counties = d["counties"]
        names = tuple(counties)
        c = [counties[k] for k in names]
        forest = np.array([float(x["forest_ha"]) for x in c])
        land = np.array([float(x["land_km2"]) for x in c])
        spread = _value(d["spread_km_per_sqrt_km2"]) * np.sqrt(land)
        species = d["species"]
        sp_ids = tuple(species)
        schemes = d["age_schemes"]
        scheme_names = list(schemes)
        lower = np.array([schemes[s]["lower"] for s in scheme_names], dtype=np.float64)
        upper = np.array([schemes[s]["upper"] for s in scheme_names], dtype=np.float64)
        if np.any(upper < lower):
            raise DemoSettingsError(f"{p}: age_schemes: an upper bound lies below its lower bound")
        age_cum = np.stack([_cum(schemes[s]["share"], f"age_schemes.{s}") for s in scheme_names])
        mg = d["management"]
        meas = d["measured"]
        return DemoSettings(
            version=str(d["version"]),
            province=str(d["province"]),
            city=str(d["city"]),
            county_names=names,
            county_codes=tuple(str(x["code"]) for x in c),
            seat_lat=np.array([float(x["seat_lat"]) for x in c]),
            seat_lon=np.array([float(x["seat_lon"]) for x in c]),
            spread_km=spread,
            forest_weight=forest / forest.sum(),
            elevation_median_m=np.array([float(x["elevation_median_m"]) for x in c]),
            elevation_log_sd=_value(d["elevation"]["log_sd"]),
            elevation_min_m=float(d["elevation"]["min_m"]),
            elevation_max_m=float(d["elevation"]["max_m"]),
            species_ids=sp_ids,
            species_share=_cum([species[s]["share"] for s in sp_ids], "species shares"),
            species_age_scheme=np.array([scheme_names.index(species[s]["ages"]) for s in sp_ids]),
            species_plantation_share=np.array([float(species[s]["plantation"]) for s in sp_ids]),
            species_elevation_factor=np.array([float(species[s]["elevation_factor"]) for s in sp_ids]),
            age_lower=lower,
            age_upper=upper,
            age_cum_share=age_cum,
            site_cum_share=_cum([d["site_class_share"][s] for s in SITE_CLASSES], "site_class_share"),
            area_median_ha=_value(d["area"]["median_ha"]),
            area_log_sd=_value(d["area"]["log_sd"]),
            area_min_ha=float(d["area"]["min_ha"]),
            area_max_ha=float(d["area"]["max_ha"]),
            fire_cum_share=_cum([mg["fire_protection"][m] for m in MANAGEMENT_LEVELS], "fire_protection"),
            pest_pine_cum_share=_cum([mg["pest_control_pine"][m] for m in MANAGEMENT_LEVELS], "pest_control_pine"),
            pest_other_cum_share=_cum([mg["pest_control_other"][m] for m in MANAGEMENT_LEVELS],
                                      "pest_control_other"),
            volume_share=_value(meas["volume_share"]),
            bamboo_carbon_share=_value(meas["bamboo_carbon_share"]),
            measured_log_sd=_value(meas["log_sd"]),
            project_townships_per_county=int(_value(d["projects"]["townships_per_county"])),
            project_join_share=_value(d["projects"]["join_share"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DemoSettingsError):
            raise
        raise DemoSettingsError(f"{p}: bad or missing demo setting: {exc!r}") from exc


def _pick(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index for uniforms ``u`` given cumulative shares (1-D, or one row per draw)."""
    if cum.ndim == 1:
        return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)
    return np.minimum((u[:, None] >= cum).sum(axis=1), cum.shape[1] - 1)


def _labels(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(numbers.astype(str), width)).astype(object)


def generate_demo_portfolio(n_parcels: int = DEMO_N_PARCELS, seed: int = DEMO_SEED,
                            params: ModelParameters | None = None,
                            settings: DemoSettings | None = None) -> pd.DataFrame:
    """A synthetic Lishui portfolio table with the columns of :mod:`models.portfolio`.

    Parameters
    ----------
    n_parcels : int
        Number of parcels (>= 1).
    seed : int
        Seed of the ``numpy.random.default_rng`` that makes every draw.
    params : ModelParameters, optional
        Species tables (growth curves for measured volumes, maximum ages, pine shares). Default: lishui.
    settings : DemoSettings, optional
        Default: ``models/data/demo_lishui.yaml``.

    Returns
    -------
    pandas.DataFrame
        One row per parcel, columns exactly ``REQUIRED_COLUMNS + OPTIONAL_COLUMNS``. Units:
        degrees, ha, years, m, m3/ha, tC/ha.
    """
    n = int(n_parcels)
    if n < 1:
        raise ValueError(f"n_parcels must be at least 1 (got {n_parcels!r})")
    params = params if params is not None else load_parameters("lishui")
    s = settings if settings is not None else load_demo_settings()
    unknown = [sid for sid in s.species_ids if sid not in params.species_index]
    if unknown:
        raise DemoSettingsError(f"demo species {unknown} are not in parameter set {params.region!r}")
    rng = np.random.default_rng(seed)
    t = params.tables
    n_county = len(s.county_names)

    # --- where: county, position, township, village ------------------------------------------
    county = _pick(np.cumsum(s.forest_weight), rng.random(n))
    z = np.clip(rng.standard_normal((2, n)), -CLIP_SD, CLIP_SD)
    sd_km = s.spread_km[county]
    dy_km, dx_km = z[0] * sd_km, z[1] * sd_km
    seat_lat = s.seat_lat[county]
    lat = seat_lat + dy_km / KM_PER_DEG_LAT
    lon = s.seat_lon[county] + dx_km / (KM_PER_DEG_LON_EQUATOR * np.cos(np.radians(seat_lat)))
    frac = (np.arctan2(dy_km, dx_km) + np.pi) / (2 * np.pi) * N_SECTORS  # [0, 8]
    sector = np.minimum(frac.astype(np.int64), N_SECTORS - 1)
    subsector = np.minimum(((frac - sector) * N_SUBSECTORS).astype(np.int64), N_SUBSECTORS - 1)
    r = np.hypot(dx_km, dy_km) / sd_km  # Rayleigh: quartiles 0.758, 1.177 (median), 1.665
    ring = (r >= 1.177).astype(np.int64)
    subring = np.where(ring == 0, r >= 0.758, r >= 1.665).astype(np.int64)
    township = ring * N_SECTORS + sector  # 0..15
    village = subring * N_SUBSECTORS + subsector  # 0..5

    # --- what: species, age, site, origin, elevation, area ------------------------------------
    sp_local = _pick(s.species_share, rng.random(n))
    sp_code = np.array([params.species_index[x] for x in s.species_ids])[sp_local]
    scheme = s.species_age_scheme[sp_local]
    age_class = _pick(s.age_cum_share[scheme], rng.random(n))
    lo, hi = s.age_lower[scheme, age_class], s.age_upper[scheme, age_class]
    age = np.minimum(lo + np.floor(rng.random(n) * (hi - lo + 1)), t.max_age_years[sp_code])
    site = _pick(s.site_cum_share, rng.random(n))
    natural = rng.random(n) >= s.species_plantation_share[sp_local]
    elev = (s.elevation_median_m[county] * s.species_elevation_factor[sp_local]
            * np.exp(s.elevation_log_sd * rng.standard_normal(n)))
    elev = np.round(np.clip(elev, s.elevation_min_m, s.elevation_max_m))
    area = s.area_median_ha * np.exp(s.area_log_sd * rng.standard_normal(n))
    area = np.round(np.clip(area, s.area_min_ha, s.area_max_ha), 2)

    # --- management ----------------------------------------------------------------------------
    fire = _pick(s.fire_cum_share, rng.random(n))
    u_pest = rng.random(n)
    has_pine = t.pine_share[sp_code] > 0
    pest = np.where(has_pine, _pick(s.pest_pine_cum_share, u_pest), _pick(s.pest_other_cum_share, u_pest))

    # --- measured stock for a minority ---------------------------------------------------------
    is_bamboo = t.is_bamboo[sp_code]
    u_meas = rng.random(n)
    noise = np.exp(s.measured_log_sd * rng.standard_normal(n) - 0.5 * s.measured_log_sd ** 2)
    tree_meas = ~is_bamboo & (u_meas < s.volume_share) & (age >= MIN_MEASURED_AGE_YEARS)
    curve = chapman_richards_volume(age, np.nan_to_num(t.asymptote_m3_per_ha[sp_code, site], nan=0.0),
                                    np.nan_to_num(t.growth_rate_per_year[sp_code], nan=0.0),
                                    np.nan_to_num(t.growth_shape[sp_code], nan=1.0))
    volume = np.where(tree_meas, np.round(curve * noise, 1), np.nan)
    bamboo_meas = is_bamboo & (u_meas < s.bamboo_carbon_share)
    bsp = next((x for x in params.file.species.values() if x.kind == "bamboo"), None)
    if bsp is not None and bsp.bamboo is not None and bamboo_meas.any():
        b = bsp.bamboo
        managed = np.nan_to_num(t.bamboo_managed_stock_tc_per_ha[sp_code, site], nan=1.0)
        bc = bamboo_carbon_at_age(age, managed, b.recovery_rate_per_year.value, b.establishment_stock_tc_per_ha.value)
        bamboo_c = np.where(bamboo_meas, np.round(bc * noise, 2), np.nan)
    else:
        bamboo_c = np.full(n, np.nan)

    # --- carbon projects: clusters of townships ------------------------------------------------
    host = np.zeros((n_county, TOWNSHIPS_PER_COUNTY), dtype=bool)
    k = min(s.project_townships_per_county, TOWNSHIPS_PER_COUNTY)
    for ci in range(n_county):  # nine counties: a small fixed loop
        host[ci, rng.permutation(TOWNSHIPS_PER_COUNTY)[:k]] = True
    project_no = np.cumsum(host, axis=1) * host  # 1..k within the county, 0 if no project
    project_label = np.array([[f"LS-{code}-P{j:02d}" if j else "" for j in row]
                              for code, row in zip(s.county_codes, project_no)], dtype=object)
    joins = rng.random(n) < s.project_join_share
    project = np.where(host[county, township] & joins, project_label[county, township], "")

    # --- labels ---------------------------------------------------------------------------------
    town_labels = np.array([[f"{c}-合成镇{j + 1:02d}" for j in range(TOWNSHIPS_PER_COUNTY)]
                            for c in s.county_names], dtype=object)
    village_labels = np.array([[f"合成镇{j + 1:02d}-村{v + 1:02d}" for v in range(VILLAGES_PER_TOWNSHIP)]
                               for j in range(TOWNSHIPS_PER_COUNTY)], dtype=object)
    width = max(6, len(str(n)))
    out = {
        "parcel_id": _labels("LS-", np.arange(1, n + 1), width),
        "province": s.province,
        "city": s.city,
        "county": np.array(s.county_names, dtype=object)[county],
        "township": town_labels[county, township],
        "village": village_labels[township, village],
        "latitude": np.round(lat, 5),
        "longitude": np.round(lon, 5),
        "area_ha": area,
        "species_group": np.array(params.species_ids, dtype=object)[sp_code],
        "age_years": age.astype(np.int64),
        "site_class": np.array(SITE_CLASSES, dtype=object)[site],
        "volume_m3_per_ha": volume,
        "bamboo_carbon_tc_per_ha": bamboo_c,
        "origin": np.where(natural, "natural", "plantation").astype(object),
        "elevation_m": elev,
        "fire_protection": np.array(MANAGEMENT_LEVELS, dtype=object)[fire],
        "pest_control": np.array(MANAGEMENT_LEVELS, dtype=object)[pest],
        "project_id": project.astype(object),
    }
    return pd.DataFrame(out, columns=list(COLUMNS))


def write_demo_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a portfolio table as UTF-8 CSV (no BOM, ``\\n`` line ends), byte-reproducibly."""
    p = Path(path)
    frame.to_csv(p, index=False, encoding="utf-8", lineterminator="\n")
    return p


def demo_portfolio_path() -> Path:
    """The shipped 5,000-parcel demo portfolio (``generate_demo_portfolio(5000, 2026)``)."""
    if not DEMO_PORTFOLIO_PATH.exists():
        raise FileNotFoundError(f"the demo portfolio {DEMO_PORTFOLIO_PATH} is missing; "
                                "regenerate it with `python -m models.demo`")
    return DEMO_PORTFOLIO_PATH


def main() -> None:  # pragma: no cover - maintenance entry point
    """Regenerate the shipped demo file: ``python -m models.demo``."""
    write_demo_csv(generate_demo_portfolio(DEMO_N_PARCELS, DEMO_SEED), DEMO_PORTFOLIO_PATH)
    print(DEMO_PORTFOLIO_PATH)


if __name__ == "__main__":  # pragma: no cover
    main()
