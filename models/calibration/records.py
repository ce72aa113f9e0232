"""Loss records and exposure tables: read, validate, and simulate (for examples and tests).

Records (CSV, one row per damaged county-event)
-----------------------------------------------
Required columns: ``date`` (ISO date), ``county``, ``peril`` (``fire``, ``typhoon``, ``ice_storm``;
other perils are reported as not fitted). Optional: ``area_ha`` (area burned or damaged, > 0),
``loss_fraction`` (share of the stock on that area lost, in [0, 1]) or ``stock_lost_tco2e`` with
``stock_tco2e`` (stock on that area before the event; the fraction is their ratio), ``fuel_class``
(fire only: the ``perils.fire.loss_given_burn`` class). Rows of a regional peril (typhoon, ice storm)
that share a date are one event.

Exposure (CSV, one row per county and year)
-------------------------------------------
Required: ``county``, ``year``, ``forest_area_ha`` (> 0). Every other column is a numeric
county-year covariate of the fire frequency (for example ``fire_weather_index``); covariates must
be in the exposure table because county-years without fires need them too. The exposure years are
the observation period of every peril.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from models._yaml import load_yaml

SPEC_PATH = Path(__file__).resolve().parent / "example_spec.yaml"
KNOWN_PERILS = ("fire", "typhoon", "ice_storm")


class CalibrationError(ValueError):
    """Bad calibration input: the message names the file, row and column."""


@dataclass(frozen=True)
class LossData:
    """Validated records and exposure.

    ``records`` has columns date, year, county, peril, area_ha, loss_fraction, fuel_class (NaN / ""
    where not given); ``exposure`` has county, year, forest_area_ha and the covariates.
    """

    records: pd.DataFrame
    exposure: pd.DataFrame
    covariates: tuple[str, ...]
    source: str = "<records>"
    #: ``(role, path, sha256 of the bytes read)`` of each input file (``records``, ``exposure``); empty
    #: for tables built in memory, which cannot be cited in a written parameter file
    inputs: tuple[tuple[str, str, str], ...] = ()

    @property
    def years(self) -> np.ndarray:
        return np.unique(self.exposure["year"].to_numpy())


def _read_csv(path: str | Path, what: str) -> tuple[pd.DataFrame, str]:
    """The table and the SHA-256 of exactly the bytes it was parsed from."""
    p = Path(path)
    if not p.is_file():
        raise CalibrationError(f"{what} file {p} not found")
    raw = p.read_bytes()
    try:
        return pd.read_csv(io.BytesIO(raw), encoding="utf-8-sig"), hashlib.sha256(raw).hexdigest()
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{p}: not a readable UTF-8 CSV file ({exc})") from exc


def _require(df: pd.DataFrame, cols: tuple[str, ...], where: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise CalibrationError(f"{where}: required column(s) {missing} missing; columns are {list(df.columns)}")


def _first_bad(mask: np.ndarray, where: str, col: str, values, reason: str) -> None:
    if mask.any():
        i = int(np.flatnonzero(mask)[0])
        value = values[i].item() if isinstance(values[i], np.generic) else values[i]
        raise CalibrationError(f"{where}, row {i + 1}, column {col!r} (value {value!r}): {reason}"
                               + (f" ({int(mask.sum()) - 1} more such row(s))" if mask.sum() > 1 else ""))


def validate_exposure(df: pd.DataFrame, where: str = "exposure") -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Check an exposure table; returns it (county, year, forest_area_ha, covariates...) and the
    covariate names."""
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    _require(df, ("county", "year", "forest_area_ha"), where)
    if len(df) == 0:
        raise CalibrationError(f"{where}: no rows")
    df["county"] = df["county"].astype(str).str.strip()
    year = pd.to_numeric(df["year"], errors="coerce").to_numpy(float)
    _first_bad(~np.isfinite(year) | (year != np.round(year)), where, "year", df["year"].to_numpy(), "not a whole year")
    df["year"] = year.astype(int)
    area = pd.to_numeric(df["forest_area_ha"], errors="coerce").to_numpy(float)
    _first_bad(~np.isfinite(area) | (area <= 0), where, "forest_area_ha", df["forest_area_ha"].to_numpy(),
               "must be a number > 0")
    df["forest_area_ha"] = area
    dup = df.duplicated(["county", "year"]).to_numpy()
    _first_bad(dup, where, "county", df["county"].to_numpy(), "duplicate county and year")
    covs = tuple(c for c in df.columns if c not in ("county", "year", "forest_area_ha"))
    for c in covs:
        v = pd.to_numeric(df[c], errors="coerce").to_numpy(float)
        _first_bad(~np.isfinite(v), where, c, df[c].to_numpy(), "covariates must be numbers")
        df[c] = v
    return df.sort_values(["year", "county"]).reset_index(drop=True), covs


def validate_records(df: pd.DataFrame, exposure: pd.DataFrame, where: str = "records") -> pd.DataFrame:
    """Check a loss-record table against the exposure table; returns the normalised records."""
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    _require(df, ("date", "county", "peril"), where)
    out = pd.DataFrame(index=df.index)
    dates = pd.to_datetime(df["date"], errors="coerce", format="mixed")
    _first_bad(dates.isna().to_numpy(), where, "date", df["date"].to_numpy(), "not a date (use YYYY-MM-DD)")
    out["date"] = dates.dt.strftime("%Y-%m-%d")
    out["year"] = dates.dt.year.astype(int)
    out["county"] = df["county"].astype(str).str.strip()
    out["peril"] = df["peril"].astype(str).str.strip().str.lower()
    n = len(df)
    if "area_ha" in df.columns:
        a = pd.to_numeric(df["area_ha"], errors="coerce").to_numpy(float)
        given = df["area_ha"].notna().to_numpy()
        _first_bad(given & ~((a > 0) & np.isfinite(a)), where, "area_ha", df["area_ha"].to_numpy(),
                   "must be a finite number > 0")
        out["area_ha"] = np.where(given, a, np.nan)
    else:
        out["area_ha"] = np.nan
    frac = np.full(n, np.nan)
    if "loss_fraction" in df.columns:
        f = pd.to_numeric(df["loss_fraction"], errors="coerce").to_numpy(float)
        given = df["loss_fraction"].notna().to_numpy()
        _first_bad(given & ~((f >= 0) & (f <= 1)), where, "loss_fraction", df["loss_fraction"].to_numpy(),
                   "must be a number in [0, 1]")
        frac = np.where(given, f, frac)
    if "stock_lost_tco2e" in df.columns:
        if "stock_tco2e" not in df.columns:
            raise CalibrationError(f"{where}: column 'stock_lost_tco2e' needs 'stock_tco2e' (the stock on the "
                                   "damaged area before the event) to give a loss fraction")
        lost = pd.to_numeric(df["stock_lost_tco2e"], errors="coerce").to_numpy(float)
        stock = pd.to_numeric(df["stock_tco2e"], errors="coerce").to_numpy(float)
        use = np.isnan(frac) & df["stock_lost_tco2e"].notna().to_numpy()
        _first_bad(use & ~((stock > 0) & np.isfinite(stock)), where, "stock_tco2e", df["stock_tco2e"].to_numpy(),
                   "must be a finite number > 0")
        _first_bad(use & ~((lost >= 0) & (lost <= stock)), where, "stock_lost_tco2e",
                   df["stock_lost_tco2e"].to_numpy(), "must lie between 0 and stock_tco2e")
        frac = np.where(use, lost / np.where(stock > 0, stock, 1.0), frac)
    out["loss_fraction"] = frac
    out["fuel_class"] = (df["fuel_class"].fillna("").astype(str).str.strip() if "fuel_class" in df.columns else "")
    years = set(exposure["year"].tolist())
    _first_bad(~out["year"].isin(years).to_numpy(), where, "date", df["date"].to_numpy(),
               f"year outside the exposure years {min(years)}-{max(years)}")
    fire = (out["peril"] == "fire").to_numpy()
    known_cy = set(zip(exposure["county"], exposure["year"]))
    in_exp = np.array([(c, y) in known_cy for c, y in zip(out["county"], out["year"])], dtype=bool)
    _first_bad(fire & ~in_exp, where, "county", out["county"].to_numpy(), "county and year not in the exposure table")
    return out.reset_index(drop=True)


def load_loss_data(records_path: str | Path, exposure_path: str | Path) -> LossData:
    """Read and validate a records CSV and an exposure CSV; each file's SHA-256 (of the bytes read) is
    kept in ``inputs`` for the provenance of a written parameter file."""
    exp_raw, exp_sha = _read_csv(exposure_path, "exposure")
    exp_df, covs = validate_exposure(exp_raw, str(exposure_path))
    rec_raw, rec_sha = _read_csv(records_path, "records")
    rec = validate_records(rec_raw, exp_df, str(records_path))
    return LossData(rec, exp_df, covs, source=str(records_path),
                    inputs=(("records", str(records_path), rec_sha), ("exposure", str(exposure_path), exp_sha)))


# --------------------------------------------------------------------------------------------
# Simulated records (the example file and the recovery tests)
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def example_spec() -> dict:
    """The record model of ``example_spec.yaml`` as plain numbers (``{section: {name: value}}``)."""
    raw = load_yaml(SPEC_PATH.read_text(encoding="utf-8"))

    def val(v):
        return v["value"] if isinstance(v, dict) and "value" in v else v

    out = {k: ({kk: val(vv) for kk, vv in v.items()} if isinstance(v, dict) else v) for k, v in raw.items()}
    out["forest_area_ha"] = dict(raw["forest_area_ha"]["values"])
    out["stock_tco2e_per_ha"] = val(raw["stock_tco2e_per_ha"])
    return out


def simulate_records(rng: np.random.Generator, years: range | list[int] = range(2000, 2020),
                     spec: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Synthetic loss records and exposure drawn from a known record model.

    Fire counts per county-year are Poisson with mean ``area x rate x W``, where the weather factor
    ``W = exp(s_c Z_year - s_c^2/2) exp(s_k Z_county,year - s_k^2/2)`` (mean 1) is carried entirely by
    the ``fire_weather_index`` covariate of the exposure table,
    ``FWI = fwi_mean + (s_c Z_year + s_k Z_cy) / fwi_log_rate_per_unit``. Fire areas are lognormal,
    loss fractions beta. Typhoons arrive as a Poisson process (each leaves records in 1 to
    ``counties_hit_max`` counties on one date), ice storms with a yearly probability.

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness.
    years : sequence of int
    spec : dict, optional
        The record model (default :func:`example_spec`).

    Returns
    -------
    records, exposure : DataFrame
    """
    s = spec or example_spec()
    years = list(years)
    counties = list(s["forest_area_ha"])
    area = np.array([s["forest_area_ha"][c] for c in counties], float)
    f = s["fire"]
    ny, nc = len(years), len(counties)
    sc, sk = f["city_weather_log_sd"], f["county_weather_log_sd"]
    zy = rng.standard_normal(ny)[:, None]
    zc = rng.standard_normal((ny, nc))
    logw = sc * zy + sk * zc
    rate = f["mean_rate_per_ha_year"] * np.exp(logw - 0.5 * (sc**2 + sk**2))
    counts = rng.poisson(area[None, :] * rate)
    fwi = f["fwi_mean"] + logw / f["fwi_log_rate_per_unit"]
    exposure = pd.DataFrame({
        "county": np.tile(counties, ny), "year": np.repeat(years, nc),
        "forest_area_ha": np.tile(area, ny), "fire_weather_index": np.round(fwi.ravel(), 6),
    })
    stock = s["stock_tco2e_per_ha"]
    rows: list[pd.DataFrame] = []
    # fires: one record per fire
    yi, ci = np.nonzero(counts)
    reps = counts[yi, ci]
    fy = np.repeat(np.asarray(years)[yi], reps)
    fc = np.repeat(np.asarray(counties, dtype=object)[ci], reps)
    n_f = int(reps.sum())
    mu = np.log(f["mean_area_ha"]) - 0.5 * f["area_log_sd"] ** 2
    rows.append(_event_rows(rng, fy, fc, "fire", np.exp(mu + f["area_log_sd"] * rng.standard_normal(n_f)),
                            rng.beta(f["loss_fraction_beta_a"], f["loss_fraction_beta_b"], n_f), stock, "conifer"))
    # typhoons: Poisson events, each on one date in several counties
    t = s["typhoon"]
    n_t = rng.poisson(t["annual_rate"], ny)
    for peril, n_ev, spec_p in (("typhoon", n_t, t),
                                ("ice_storm", (rng.uniform(size=ny) < s["ice_storm"]["annual_probability"]).astype(int),
                                 s["ice_storm"])):
        ev_year = np.repeat(np.asarray(years), n_ev)
        k_max = int(spec_p.get("counties_hit_max", nc))
        n_hit = rng.integers(1, k_max + 1, ev_year.size)
        ey, ec, edate = [], [], []
        day = rng.integers(0, 365, ev_year.size)
        for e, (y, k) in enumerate(zip(ev_year, n_hit)):  # loop over events (a handful a year)
            hit = rng.choice(nc, size=int(k), replace=False)
            ey += [y] * int(k)
            ec += [counties[h] for h in hit]
            edate += [day[e]] * int(k)
        m = len(ey)
        df = _event_rows(rng, np.asarray(ey, int), np.asarray(ec, dtype=object), peril,
                         rng.exponential(spec_p["damaged_area_ha_mean"], m),
                         rng.beta(spec_p["loss_fraction_beta_a"], spec_p["loss_fraction_beta_b"], m), stock, "",
                         day=np.asarray(edate, int))
        rows.append(df)
    records = pd.concat(rows, ignore_index=True).sort_values(["date", "peril", "county"], kind="mergesort")
    return records.reset_index(drop=True), exposure


def _event_rows(rng, year, county, peril, area, frac, stock_per_ha, fuel_class, day=None) -> pd.DataFrame:
    n = len(year)
    if day is None:
        day = rng.integers(0, 365, n)
    dates = pd.to_datetime(pd.Series(np.asarray(year, int)).astype(str) + "-01-01") + pd.to_timedelta(day, unit="D")
    area = np.round(area, 3)
    stock_area = np.round(area * stock_per_ha, 3)
    return pd.DataFrame({
        "date": dates.dt.strftime("%Y-%m-%d").to_numpy(), "county": county, "peril": peril, "area_ha": area,
        "loss_fraction": np.round(frac, 6), "stock_lost_tco2e": np.round(frac * stock_area, 3),
        "stock_tco2e": stock_area, "fuel_class": fuel_class,
    })


def write_example(directory: str | Path, seed: int = 20260101) -> tuple[Path, Path]:
    """Write ``example_records.csv`` and ``example_exposure.csv`` (simulated with ``seed``)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rec, exp = simulate_records(np.random.default_rng(seed))
    rp, ep = d / "example_records.csv", d / "example_exposure.csv"
    rec.to_csv(rp, index=False)
    exp.to_csv(ep, index=False)
    return rp, ep


__all__ = ["CalibrationError", "KNOWN_PERILS", "LossData", "example_spec", "load_loss_data", "simulate_records",
           "validate_exposure", "validate_records", "write_example"]
