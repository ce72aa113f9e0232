"""Fit peril parameters to loss records and write an updated parameter file.

What is fitted and where it goes
--------------------------------
Fire (``perils.fire``):

* frequency: fires per county-year ``N_cy ~ Poisson(A_cy exp(b0 + x_cy' b))`` with the forest area
  ``A_cy`` (ha) as exposure and the exposure table's covariates ``x`` (fire weather);
* burned area per fire: lognormal MLE; loss fraction per fire: beta MLE, per ``fuel_class``.

  ``base_burn_probability_per_year`` = ``lambda_bar x E[area] / E[burned_area_fraction]``: the mean
  fire rate per ha-year over the observed county-years, ``lambda_bar = sum A exp(eta) / sum A``, times
  the mean area of a fire, is the yearly burned share of the forest; the engine burns a parcel with
  probability ``b`` and then a uniform share ``burned_area_fraction`` of it, so ``b`` is that share
  divided by the mean of ``burned_area_fraction``. (The species and protection multipliers are taken
  to average 1 over the recorded forest.)
  ``city_weather_log_sd`` / ``county_weather_log_sd`` = the standard deviation across years of the
  exposure-weighted yearly mean of the covariate part ``x'b`` of the log rate, and of its deviations
  within a year (the engine's weather factor is lognormal with mean 1 and these log-sds; every
  covariate is treated as weather). Left unchanged without covariates.
  ``loss_given_burn.<class>`` = the uniform range with the fitted beta's mean and variance.

Typhoon (``perils.typhoon``): ``annual_rate`` = distinct event dates per year (Poisson MLE);
``loss_given_hit`` = the uniform range with the fitted beta's mean and variance.

Ice storm (``perils.ice_storm``): ``annual_probability`` = share of years with at least one event
(binomial MLE).

Regional event frequencies are only updated with at least ``min_events`` events in the record.

Every updated value gets ``source: calibration_records`` (a new key under ``references`` naming the
records file and its SHA-256), ``confidence: derived`` and the fit statistics in ``note``. Values are
only updated when the data hold at least ``min_records`` records for them.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from models.calibration.fit import FitError, PoissonFit, SeverityFit, fit_beta, fit_lognormal, fit_poisson
from models.calibration.records import KNOWN_PERILS, CalibrationError, LossData
from models.parameters import ModelParameters, ParameterError, load_parameters
from models._yaml import load_yaml

REFERENCE_KEY = "calibration_records"


@dataclass(frozen=True)
class ParameterUpdate:
    """One parameter to change: its path in the YAML file, old and new value, and the fit note."""

    path: tuple[str, ...]
    old: dict[str, Any]
    new: dict[str, Any]
    note: str

    def to_dict(self) -> dict:
        return {"path": ".".join(self.path), "old": self.old, "new": self.new, "note": self.note}


@dataclass
class CalibrationResult:
    """All fits, their statistics and the parameter updates they imply."""

    source: str
    n_records: int
    years: tuple[int, int]
    fits: dict[str, Any] = field(default_factory=dict)
    updates: list[ParameterUpdate] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        def conv(v):
            return v.to_dict() if hasattr(v, "to_dict") else v

        return {"source": self.source, "n_records": self.n_records, "years": list(self.years),
                "fits": {k: conv(v) for k, v in self.fits.items()},
                "updates": [u.to_dict() for u in self.updates], "skipped": list(self.skipped)}


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _sev_note(f: SeverityFit) -> str:
    ps = ", ".join(f"{k}={v:.4g} (se {f.se[k]:.2g})" for k, v in f.params.items())
    return (f"{f.distribution} MLE on {f.n_obs} records: {ps}; mean {f.mean:.4g}; AIC {f.aic:.1f}; "
            f"KS D={f.ks_statistic:.3f}, p={f.ks_pvalue:.3f}")


def _poisson_note(f: PoissonFit) -> str:
    covs = ", ".join(f"{c} {b:.4g} (se {s:.2g})" for c, b, s in zip(f.covariates, f.coef, f.se_coef)) or "none"
    return (f"Poisson regression on {f.n_obs} county-years ({f.total_count} fires), exposure forest ha-years; "
            f"covariates: {covs}; deviance {f.deviance:.1f} (null {f.null_deviance:.1f}), D2 {f.d2:.3f}, "
            f"McFadden R2 {f.mcfadden_r2:.3f}, AIC {f.aic:.1f}, Pearson dispersion {f.pearson_dispersion:.2f}")


def weather_log_sds(fit: PoissonFit, exposure: pd.DataFrame) -> tuple[float, float]:
    """City and county log-sds of the covariate part of the fitted log rate (see module docstring).

    A one-way random-effects (ANOVA) decomposition of ``eta = x'b`` over county-years: the county sd
    from the area-weighted within-year deviations, corrected for the year means estimated
    (``n / (n - years)``); the city sd from the variance of the yearly area-weighted means minus the
    county variance those means still carry (``s_k^2 sum w^2 / (sum w)^2``), floored at 0.
    """
    X = exposure[list(fit.covariates)].to_numpy(float)
    eta = X @ np.asarray(fit.coef)
    year = exposure["year"].to_numpy()
    w = exposure["forest_area_ha"].to_numpy(float)
    years, inv = np.unique(year, return_inverse=True)
    wsum = np.bincount(inv, weights=w)
    ym = np.bincount(inv, weights=w * eta) / wsum
    n, ny = eta.size, years.size
    if n > ny:
        dev = eta - ym[inv]
        county2 = float(np.sum(w * dev**2) / np.sum(w)) * n / (n - ny)
    else:
        county2 = 0.0
    if ny > 1:
        carry = float(np.mean(np.bincount(inv, weights=w**2) / wsum**2))
        city2 = max(float(np.var(ym, ddof=1)) - county2 * carry, 0.0)
    else:
        city2 = 0.0
    return float(np.sqrt(city2)), float(np.sqrt(county2))


def calibrate(data: LossData, params: ModelParameters, *, min_records: int = 20, min_events: int = 5,
              default_fuel_class: str = "conifer") -> CalibrationResult:
    """Fit every peril the records support and list the parameter updates.

    Parameters
    ----------
    data : LossData
        Validated records and exposure (:func:`models.calibration.load_loss_data`).
    params : ModelParameters
        The parameter set to update (its current values are the ``old`` of each update).
    min_records : int
        Fewest records a fit needs before it updates a parameter.
    min_events : int
        Fewest distinct events (dates) of a regional peril before its frequency is updated: a rare
        peril seen 0-4 times in the record is better left at its prior value.
    default_fuel_class : str
        ``loss_given_burn`` class of fire records without a ``fuel_class``.
    """
    rec, exp = data.records, data.exposure
    years = data.years
    n_years = len(years)
    res = CalibrationResult(source=data.source, n_records=len(rec), years=(int(years.min()), int(years.max())))
    for peril in sorted(set(rec["peril"]) - set(KNOWN_PERILS)):
        res.skipped.append(f"{peril}: no calibration for this peril ({int((rec['peril'] == peril).sum())} records)")
    perils = params.perils

    # ---- fire -----------------------------------------------------------------------------------
    fire = rec[rec["peril"] == "fire"]
    fp = perils.get("fire")
    if fp is None:
        if len(fire):
            res.skipped.append("fire: the parameter set has no fire block")
    elif len(fire) < min_records:
        res.skipped.append(f"fire: {len(fire)} records, fewer than {min_records}")
    else:
        counts = (fire.groupby(["county", "year"]).size().rename("n").reset_index())
        tab = exp.merge(counts, on=["county", "year"], how="left").fillna({"n": 0})
        X = tab[list(data.covariates)].to_numpy(float) if data.covariates else None
        try:
            pf = fit_poisson(tab["n"].to_numpy(), tab["forest_area_ha"].to_numpy(), X, data.covariates)
        except FitError as exc:
            raise CalibrationError(f"fire frequency: {exc}") from exc
        res.fits["fire.frequency"] = pf
        area = fire["area_ha"].dropna().to_numpy()
        lam = float(np.sum(pf.expected) / tab["forest_area_ha"].sum())  # fires per ha-year, fitted
        if area.size >= min_records:
            af = fit_lognormal(area)
            res.fits["fire.area"] = af
            share = fp.burned_area_fraction.mean
            b = lam * af.mean / share
            old = fp.base_burn_probability_per_year
            res.updates.append(ParameterUpdate(
                ("perils", "fire", "base_burn_probability_per_year"), {"value": old.value},
                {"value": _sig(b)},
                f"b = {lam:.4g} fires/ha/yr x {af.mean:.4g} ha mean fire area / {share:.3g} mean burned share "
                f"(burned {lam * af.mean:.3%} of forest a year). Frequency: {_poisson_note(pf)}. "
                f"Area: {_sev_note(af)}"))
        else:
            res.skipped.append(f"fire: {area.size} records with area_ha, fewer than {min_records}; "
                               "base_burn_probability_per_year unchanged")
        if data.covariates:
            city, county = weather_log_sds(pf, tab)
            for name, v in (("city_weather_log_sd", city), ("county_weather_log_sd", county)):
                res.updates.append(ParameterUpdate(
                    ("perils", "fire", name), {"value": getattr(fp, name).value}, {"value": _sig(v)},
                    f"sd of the covariate part of the fitted log fire rate ({'across years' if name.startswith('city') else 'within years, across counties'}). {_poisson_note(pf)}"))
        else:
            res.skipped.append("fire: no covariates in the exposure table; weather log-sds unchanged")
        cls = fire["fuel_class"].replace("", default_fuel_class)
        for c in sorted(cls.unique()):
            if c not in fp.loss_given_burn:
                raise CalibrationError(f"records: fuel_class {c!r} is not a class of perils.fire.loss_given_burn "
                                       f"({sorted(fp.loss_given_burn)})")
            x = fire.loc[cls == c, "loss_fraction"].dropna().to_numpy()
            if x.size < min_records:
                res.skipped.append(f"fire: {x.size} loss fractions for class {c}, fewer than {min_records}")
                continue
            bf = fit_beta(x)
            res.fits[f"fire.loss_given_burn.{c}"] = bf
            lo, hi = bf.uniform_range()
            old = fp.loss_given_burn[c]
            res.updates.append(ParameterUpdate(
                ("perils", "fire", "loss_given_burn", c), {"low": old.low, "high": old.high},
                {"low": _sig(lo), "high": _sig(hi)}, f"uniform with the fitted mean and variance; {_sev_note(bf)}"))

    # ---- typhoon and ice storm: regional events ---------------------------------------------------
    for peril in ("typhoon", "ice_storm"):
        r = rec[rec["peril"] == peril]
        p = perils.get(peril)
        if p is None:
            if len(r):
                res.skipped.append(f"{peril}: the parameter set has no {peril} block")
            continue
        events = r.drop_duplicates("date")
        per_year = events.groupby("year").size().reindex(years, fill_value=0).to_numpy()
        n_ev = int(per_year.sum())
        if peril == "typhoon":
            rate = n_ev / n_years
            table = [(str(j), int(np.sum(per_year == j)), float(n_years * _pois(j, rate))) for j in range(3)]
            table.append((">=3", int(np.sum(per_year >= 3)), float(n_years * (1 - sum(_pois(j, rate) for j in range(3))))))
            res.fits["typhoon.frequency"] = {"events": n_ev, "years": n_years, "annual_rate": rate,
                                             "se": float(np.sqrt(max(n_ev, 1)) / n_years),
                                             "observed_vs_expected_years": table}
            if n_ev >= min_events:
                res.updates.append(ParameterUpdate(
                    ("perils", "typhoon", "annual_rate"), {"value": p.annual_rate.value}, {"value": _sig(rate)},
                    f"Poisson MLE: {n_ev} events (distinct dates) in {n_years} years, se {np.sqrt(max(n_ev, 1)) / n_years:.3g}; "
                    f"years with 0/1/2/>=3 events observed {[t[1] for t in table]} vs expected "
                    f"{[round(t[2], 1) for t in table]}"))
            x = r["loss_fraction"].dropna().to_numpy()
            if x.size >= min_records:
                bf = fit_beta(x)
                res.fits["typhoon.loss_given_hit"] = bf
                lo, hi = bf.uniform_range()
                res.updates.append(ParameterUpdate(
                    ("perils", "typhoon", "loss_given_hit"), {"low": p.loss_given_hit.low, "high": p.loss_given_hit.high},
                    {"low": _sig(lo), "high": _sig(hi)}, f"uniform with the fitted mean and variance; {_sev_note(bf)}"))
            else:
                res.skipped.append(f"typhoon: {x.size} loss fractions, fewer than {min_records}")
            if n_ev < min_events:
                res.skipped.append(f"typhoon: {n_ev} events, fewer than {min_events}; annual_rate unchanged")
        else:
            k = int(np.sum(per_year > 0))
            prob = k / n_years
            res.fits["ice_storm.frequency"] = {"years_with_event": k, "years": n_years, "annual_probability": prob,
                                               "se": float(np.sqrt(max(prob * (1 - prob), 1e-12) / n_years))}
            if n_ev >= min_events:
                res.updates.append(ParameterUpdate(
                    ("perils", "ice_storm", "annual_probability"), {"value": p.annual_probability.value},
                    {"value": _sig(prob)},
                    f"binomial MLE: {k} of {n_years} years with an ice storm, se {np.sqrt(prob * (1 - prob) / n_years):.3g}"))
            else:
                res.skipped.append(f"ice_storm: {n_ev} events, fewer than {min_events}; annual_probability unchanged")
    return res


def _pois(j: int, rate: float) -> float:
    from scipy.stats import poisson

    return float(poisson.pmf(j, rate))


# --------------------------------------------------------------------------------------------
# Write-back
# --------------------------------------------------------------------------------------------
def updated_parameter_document(result: CalibrationResult, params: ModelParameters, records_path: str | Path,
                               ) -> dict[str, Any]:
    """The parameter file as a mapping, with the fitted values in place and the records cited."""
    base = Path(params.path)
    doc = load_yaml(base.read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    rp = Path(records_path)
    sha = hashlib.sha256(rp.read_bytes()).hexdigest() if rp.exists() else "unknown"
    doc["references"][REFERENCE_KEY] = (
        f"loss records {rp.name} (sha256 {sha[:16]}), {result.n_records} records {result.years[0]}-{result.years[1]}, "
        f"fitted by models.calibration against {base.name} version {params.version}")
    doc["version"] = f"{params.version}+calibrated"
    for u in result.updates:
        node = doc
        for key in u.path[:-1]:
            node = node[key]
        entry = dict(node[u.path[-1]])
        for k in ("value", "low", "high"):
            entry.pop(k, None)
        new = {**u.new, "source": REFERENCE_KEY, "confidence": "derived", "note": u.note}
        entry.pop("source", None), entry.pop("confidence", None), entry.pop("note", None)
        node[u.path[-1]] = {**new, **entry}
    return doc


def write_parameter_file(result: CalibrationResult, params: ModelParameters, records_path: str | Path,
                         out_path: str | Path) -> ModelParameters:
    """Write the updated parameter file and check it loads; returns the loaded set.

    The file is written to a temporary name first and moved into place only once
    :func:`models.parameters.load_parameters` accepts it.
    """
    doc = updated_parameter_document(result, params, records_path)
    text = ("# Parameter set updated by `carbon-risk calibrate` (models.calibration) from "
            f"{Path(records_path).name}.\n# Fitted values carry source `{REFERENCE_KEY}` and confidence `derived`; "
            "comments of the original file are not kept.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".yaml", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            loaded = load_parameters(tmp)
        except ParameterError as exc:
            raise CalibrationError(f"the calibrated parameter file does not validate: {exc}") from exc
        os.replace(tmp, out)
        loaded = load_parameters(out)  # path and hash of the final file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return loaded


__all__ = ["CalibrationResult", "ParameterUpdate", "calibrate", "updated_parameter_document", "weather_log_sds",
           "write_parameter_file"]
