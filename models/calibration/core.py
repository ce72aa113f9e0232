"""Fit peril parameters to loss records and write an updated parameter file.

What is fitted and where it goes
--------------------------------
Fire (``perils.fire``):

* frequency: fires per county-year ``N_cy ~ Poisson(A_cy exp(b0 + x_cy' b))`` with the forest area
  ``A_cy`` (ha) as exposure and the exposure table's covariates ``x`` (fire weather); quasi-Poisson
  standard errors (times ``sqrt(Pearson dispersion)`` when it exceeds 1);
* burned area per fire: lognormal MLE; loss fraction per fire, per ``fuel_class``: its mean and
  variance (moment estimator; records at 0 or 1, such as total losses, count as they are).

  ``base_burn_probability_per_year``: the engine burns a parcel with probability
  ``b x F x A x M x W x D x K x h`` (:mod:`models.perils.fire`) and then a uniform share
  ``burned_area_fraction`` of it, so its expected burned share of the forest a year is
  ``b x E[D] x S x E[burned_area_fraction]`` (``E[W] = 1``; cascades ``K`` and the climate / scenario
  multiplier ``h`` taken as 1). The records' burned share is ``lambda_bar x E[area]``: the mean fire
  rate per ha-year over the observed county-years, ``lambda_bar = sum A exp(eta) / sum A``, times the
  mean area of a fire. Hence

      b = lambda_bar x E[area] / (E[burned_area_fraction] x E[D] x S),

  with ``E[D] = 1 + p_d (drought_multiplier - 1)`` (``p_d = min(1, perils.drought.annual_probability)``,
  the drought peril's probability in today's climate; 1 without an enabled drought peril) and ``S``
  the area-weighted mean over a portfolio standing for the recorded forest of the stand factors
  ``flammability x young_burn_multiplier (age < young_age_years) x fire_protection`` at its starting
  ages (``portfolio=``; without one ``S = 1``, said in the note). Its standard error is the delta
  method's from those of ``lambda_bar`` (years as clusters: the spread of the yearly rates, which
  holds the weather's year-to-year swings, over-dispersion and Poisson noise) and ``E[area]``.
  ``city_weather_log_sd`` / ``county_weather_log_sd`` = the standard deviation across years of the
  exposure-weighted yearly mean of the covariate part ``x'b`` of the log rate, and of its deviations
  within a year (the engine's weather factor is lognormal with mean 1 and these log-sds; every
  covariate is treated as weather), with standard errors (:func:`weather_log_sd_fit`). Left unchanged
  without covariates.
  ``loss_given_burn.<class>`` = the uniform range with the sample's mean and variance; where that
  range would leave [0, 1] it keeps the mean only (``[0, 2m]`` or ``[2m - 1, 1]``, a smaller
  variance), and the note says which (:meth:`models.calibration.fit.SeverityFit.uniform_range`).

Typhoon (``perils.typhoon``): ``annual_rate`` = distinct event dates per year (Poisson MLE);
``loss_given_hit`` = the uniform range as for fire's loss given burn.

Ice storm (``perils.ice_storm``): ``annual_probability`` = share of years with at least one event
(binomial MLE).

Regional event frequencies are only updated with at least ``min_events`` events in the record.

Every updated value gets ``source: calibration_records`` (a new key under ``references`` naming
every input -- the records and exposure files, the portfolio when one was given, the parameter file
started from -- each with its full SHA-256), ``confidence: derived`` and the fit statistics, with the
estimate's standard error, in ``note``. Values are only updated when the data hold at least
``min_records`` records for them. A parameter file is written only for data read from files
(:func:`models.calibration.load_loss_data`) that are still as they were read.
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
    """One parameter to change: its path in the YAML file, old and new value, the fit note and the
    standard error of each new number (``{"value": se}`` or ``{"low": se, "high": se}``)."""

    path: tuple[str, ...]
    old: dict[str, Any]
    new: dict[str, Any]
    note: str
    se: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"path": ".".join(self.path), "old": self.old, "new": self.new, "se": dict(self.se),
                "note": self.note}


@dataclass
class CalibrationResult:
    """All fits, their statistics and the parameter updates they imply.

    ``inputs``: ``(role, name, sha256)`` of every input the fits used (records, exposure, and the
    portfolio of the stand factor when one was given), from :attr:`LossData.inputs`.
    """

    source: str
    n_records: int
    years: tuple[int, int]
    fits: dict[str, Any] = field(default_factory=dict)
    updates: list[ParameterUpdate] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    inputs: tuple[tuple[str, str, str], ...] = ()

    def to_dict(self) -> dict:
        def conv(v):
            return v.to_dict() if hasattr(v, "to_dict") else v

        return {"source": self.source, "n_records": self.n_records, "years": list(self.years),
                "inputs": [{"role": r, "name": n, "sha256": h} for r, n, h in self.inputs],
                "fits": {k: conv(v) for k, v in self.fits.items()},
                "updates": [u.to_dict() for u in self.updates], "skipped": list(self.skipped)}


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def _sev_note(f: SeverityFit) -> str:
    ps = ", ".join(f"{k}={v:.4g} (se {f.se[k]:.2g})" for k, v in f.params.items())
    if f.distribution == "beta" and f.method == "moments":
        return (f"moment estimator on {f.n_obs} records ({f.n_zero} at 0, {f.n_one} at 1, counted as they are): "
                f"mean {f.mean:.4g} (se {f.se_mean:.2g}), variance {f.variance:.4g} (se {f.se_variance:.2g}); "
                f"beta with these moments {ps}; KS D={f.ks_statistic:.3f}, p={f.ks_pvalue:.3f} (all records)")
    extra = f" ({f.n_zero} at 0, {f.n_one} at 1, {f.n_clipped} clipped)" if f.distribution == "beta" else ""
    return (f"{f.distribution} MLE on {f.n_obs} records{extra}: {ps}; mean {f.mean:.4g} (se {f.se_mean:.2g}); "
            f"AIC {f.aic:.1f}; KS D={f.ks_statistic:.3f}, p={f.ks_pvalue:.3f}")


def _poisson_note(f: PoissonFit) -> str:
    covs = ", ".join(f"{c} {b:.4g} (se {s:.2g})" for c, b, s in zip(f.covariates, f.coef, f.se_coef)) or "none"
    se_txt = (f"standard errors quasi-Poisson (x sqrt(dispersion) = {f.se_scale:.3g})" if f.se_scale > 1
              else "standard errors Poisson (dispersion <= 1)")
    return (f"Poisson regression on {f.n_obs} county-years ({f.total_count} fires), exposure forest ha-years; "
            f"covariates: {covs}; deviance {f.deviance:.1f} (null {f.null_deviance:.1f}), D2 {f.d2:.3f}, "
            f"McFadden R2 {f.mcfadden_r2:.3f}, AIC {f.aic:.1f}, Pearson dispersion {f.pearson_dispersion:.2f}, "
            f"{se_txt}")


def _weather_variances(coef: np.ndarray, X: np.ndarray, year: np.ndarray, w: np.ndarray,
                       ) -> tuple[float, float, float, float]:
    """``(city2, county2, var(city2), var(county2))`` of ``eta = X coef`` (see :func:`weather_log_sds`)."""
    eta = X @ coef
    years, inv = np.unique(year, return_inverse=True)
    W, W2, W3 = (np.bincount(inv, weights=w**k) for k in (1, 2, 3))
    ym = np.bincount(inv, weights=w * eta) / W
    ny = years.size
    # within a year, E[sum w (eta - ym)^2] = s_k^2 tr(A) and Var = 2 s_k^4 tr(A^2), A = diag(w) - w w'/W
    tr_a = W - W2 / W
    tr_a2 = W2 - 2 * W3 / W + (W2 / W) ** 2
    if tr_a.sum() > 0:
        county2 = float(np.sum(w * (eta - ym[inv]) ** 2) / tr_a.sum())
        var_county2 = 2 * county2**2 * float(tr_a2.sum() / tr_a.sum() ** 2)
    else:
        county2 = var_county2 = 0.0
    if ny > 1:
        carry = float(np.mean(W2 / W**2))  # share of the county variance a yearly mean still carries
        s2 = float(np.var(ym, ddof=1))
        city2 = max(s2 - county2 * carry, 0.0)
        var_city2 = 2 * s2**2 / (ny - 1) + carry**2 * var_county2
    else:
        city2 = var_city2 = 0.0
    return city2, county2, var_city2, var_county2


def weather_log_sds(fit: PoissonFit, exposure: pd.DataFrame) -> tuple[float, float]:
    """City and county log-sds of the covariate part of the fitted log rate (see module docstring).

    A one-way random-effects (ANOVA) decomposition of ``eta = x'b`` over county-years, weighted by the
    forest area ``w``: the county variance from the weighted within-year squared deviations divided by
    their expectation per unit variance, ``sum_years (W - sum w^2 / W)`` (``W = sum w`` of the year;
    with equal weights the usual ``n - years``); the city variance from the variance of the yearly
    weighted means minus the county variance those means still carry (``s_k^2 sum w^2 / W^2``),
    floored at 0.
    """
    d = weather_log_sd_fit(fit, exposure)
    return d["city_weather_log_sd"], d["county_weather_log_sd"]


def weather_log_sd_fit(fit: PoissonFit, exposure: pd.DataFrame) -> dict[str, float]:
    """:func:`weather_log_sds` with standard errors.

    Each sd's error has two parts, added in quadrature: sampling (``Var(s^2) = 2 s^4 / dof`` for the
    normal log-weather the engine draws, with the weighted design's ``tr(A)^2 / tr(A^2)`` degrees of
    freedom for the county variance and ``years - 1`` for the yearly means), and the fitted
    coefficients' (delta method, with their quasi-Poisson covariance); ``se(s) = se(s^2) / (2 s)``
    (``sqrt(se(s^2))`` when ``s`` is floored at 0).
    """
    X = exposure[list(fit.covariates)].to_numpy(float)
    year = exposure["year"].to_numpy()
    w = exposure["forest_area_ha"].to_numpy(float)
    coef = np.asarray(fit.coef, dtype=float)
    city2, county2, v_city2, v_county2 = _weather_variances(coef, X, year, w)
    city, county = float(np.sqrt(city2)), float(np.sqrt(county2))

    def sd_se(s, var_s2):
        return float(np.sqrt(var_s2) / (2 * s)) if s > 0 else float(var_s2 ** 0.25)

    cov = (np.asarray(fit.cov, dtype=float)[1:, 1:] if fit.cov is not None
           else np.diag(np.asarray(fit.se_coef, dtype=float) ** 2))
    grad = np.zeros((2, coef.size))
    for j in range(coef.size):
        h = 1e-6 * max(abs(coef[j]), 1e-8)
        up, dn = coef.copy(), coef.copy()
        up[j] += h
        dn[j] -= h
        cu, ku = (np.sqrt(v) for v in _weather_variances(up, X, year, w)[:2])
        cd, kd = (np.sqrt(v) for v in _weather_variances(dn, X, year, w)[:2])
        grad[:, j] = ((cu - cd) / (2 * h), (ku - kd) / (2 * h))
    coef_var = np.einsum("ij,jk,ik->i", grad, cov, grad) if coef.size else np.zeros(2)
    se_city = float(np.hypot(sd_se(city, v_city2), np.sqrt(max(coef_var[0], 0.0))))
    se_county = float(np.hypot(sd_se(county, v_county2), np.sqrt(max(coef_var[1], 0.0))))
    return {"city_weather_log_sd": city, "se_city_weather_log_sd": se_city,
            "county_weather_log_sd": county, "se_county_weather_log_sd": se_county,
            "years": int(np.unique(year).size), "county_years": int(year.size)}


def drought_fire_factor(params: ModelParameters) -> tuple[float, str]:
    """``E[D]``: the mean of fire's drought multiplier in the engine, and how it was computed.

    The drought peril marks a year (a path, or a parcel in independent mode) with probability
    ``min(1, annual_probability x h)`` and fire multiplies its burn probability by
    ``drought_multiplier`` then (:mod:`models.perils.drought`, :mod:`models.perils.fire`); ``h`` (climate
    pathway x scenario x the parameter draw, mean 1) is taken as 1: the records are today's climate.
    """
    fp = params.perils["fire"]
    dm = float(fp.drought_multiplier.value)
    dp = params.perils.get("drought")
    if dp is None or not dp.enabled:
        return 1.0, "E[drought factor] = 1 (no enabled drought peril)"
    p = min(1.0, float(dp.annual_probability.value))
    e = 1.0 + p * (dm - 1.0)
    return e, (f"E[drought factor] = 1 + p_drought x (drought_multiplier - 1) = 1 + {p:.4g} x ({dm:.4g} - 1) = {e:.4g} "
               "(perils.drought.annual_probability, perils.fire.drought_multiplier; climate multiplier 1)")


def stand_fire_factor(params: ModelParameters, portfolio) -> tuple[float, str]:
    """``S``: the area-weighted mean over ``portfolio``'s parcels of the engine's stand factors of the
    burn probability, ``flammability x (young_burn_multiplier if age < young_age_years else 1) x
    fire_protection`` (at the portfolio's starting ages), and its description. 1 without a portfolio."""
    if portfolio is None:
        return 1.0, ("stand factor S = 1: no portfolio given, so flammability x young-stand x fire-protection "
                     "multipliers are taken to average 1 over the recorded forest")
    fp = params.perils["fire"]
    sp = np.asarray(portfolio.species_code, dtype=np.intp)
    prot = params.file.management["fire_protection"]
    from models.portfolio import MANAGEMENT_LEVELS

    prot_mult = np.array([prot[m].value for m in MANAGEMENT_LEVELS])
    young = np.asarray(portfolio.age_years, dtype=float) < fp.young_age_years.value
    factor = (params.tables.flammability[sp] * np.where(young, fp.young_burn_multiplier.value, 1.0)
              * prot_mult[np.asarray(portfolio.fire_protection_code, dtype=np.intp)])
    area = np.asarray(portfolio.area_ha, dtype=float)
    s = float(np.sum(area * factor) / np.sum(area))
    return s, (f"stand factor S = {s:.4g}: area-weighted mean of flammability x young-stand x fire-protection "
               f"multipliers over portfolio {portfolio.source} ({portfolio.n_parcels} parcels, "
               f"{area.sum():.6g} ha, starting ages)")


def _portfolio_sha256(portfolio) -> str:
    """SHA-256 of the portfolio's validated parcel table (CSV text): what the stand factor was computed on."""
    return hashlib.sha256(portfolio.frame.to_csv(index=False).encode("utf-8")).hexdigest()


def _rate_se_by_year(tab: pd.DataFrame, lam: float) -> tuple[float, int]:
    """Standard error of ``lam = sum n / sum A`` as an estimate of the long-run rate, with years as
    clusters (a ratio estimator's: ``sqrt(Y / (Y - 1) sum_y (n_y - lam A_y)^2) / sum A``)."""
    g = tab.groupby("year").agg(n=("n", "sum"), a=("forest_area_ha", "sum"))
    ny = len(g)
    if ny < 2:
        return float("nan"), ny
    r = g["n"].to_numpy(float) - lam * g["a"].to_numpy(float)
    return float(np.sqrt(ny / (ny - 1) * np.sum(r**2)) / g["a"].sum()), ny


def _range_update(path: tuple[str, ...], old, fit: SeverityFit) -> ParameterUpdate:
    lo, hi = fit.uniform_range()
    se_lo, se_hi = fit.uniform_range_se()
    return ParameterUpdate(path, {"low": old.low, "high": old.high}, {"low": _sig(lo), "high": _sig(hi)},
                           f"{fit.uniform_description()}; {_sev_note(fit)}", {"low": se_lo, "high": se_hi})


def calibrate(data: LossData, params: ModelParameters, *, min_records: int = 20, min_events: int = 5,
              default_fuel_class: str = "conifer", portfolio=None) -> CalibrationResult:
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
    portfolio : Portfolio, optional
        Parcels standing for the recorded forest: the fitted ``base_burn_probability_per_year`` is
        divided by their area-weighted mean stand factor (:func:`stand_fire_factor`), so that the
        engine burns this portfolio's forest at the records' rate. Without one the factor is 1 (said
        in the note).
    """
    rec, exp = data.records, data.exposure
    years = data.years
    n_years = len(years)
    inputs = tuple(data.inputs)
    if portfolio is not None:
        inputs += (("portfolio", str(portfolio.source), _portfolio_sha256(portfolio)),)
    res = CalibrationResult(source=data.source, n_records=len(rec), years=(int(years.min()), int(years.max())),
                            inputs=inputs)
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
        total_a = float(tab["forest_area_ha"].sum())
        lam = float(np.sum(pf.expected) / total_a)  # fires per ha-year, fitted (= observed: canonical link)
        # given the recorded weather: Var(sum mu) = scale^2 sum mu (the intercept's column spans 1)
        se_lam_model = pf.se_scale * float(np.sqrt(np.sum(pf.expected))) / total_a
        se_lam_year, ny_rate = _rate_se_by_year(tab, lam)
        if np.isfinite(se_lam_year):
            se_lam, lam_txt = se_lam_year, (f"se {se_lam_year:.3g} from the spread of the {ny_rate} yearly rates "
                                            f"(weather, over-dispersion and Poisson noise; given the recorded "
                                            f"weather, quasi-Poisson se {se_lam_model:.3g})")
        else:
            se_lam, lam_txt = se_lam_model, (f"se {se_lam_model:.3g} quasi-Poisson, given the recorded weather "
                                             "(one year: the year-to-year weather cannot be estimated)")
        if area.size >= min_records:
            af = fit_lognormal(area)
            res.fits["fire.area"] = af
            share = fp.burned_area_fraction.mean
            e_d, d_txt = drought_fire_factor(params)
            s_f, s_txt = stand_fire_factor(params, portfolio)
            b = lam * af.mean / (share * e_d * s_f)
            rel = float(np.hypot(se_lam / lam, af.se_mean / af.mean))
            se_b = b * rel
            res.fits["fire.base_burn_probability"] = {
                "value": b, "se": se_b, "rate_per_ha_year": lam, "se_rate": se_lam,
                "se_rate_given_weather": se_lam_model, "mean_fire_area_ha": af.mean, "se_mean_fire_area_ha": af.se_mean,
                "mean_burned_area_fraction": share, "drought_factor": e_d, "stand_factor": s_f,
                "burned_share_per_year": lam * af.mean}
            old = fp.base_burn_probability_per_year
            res.updates.append(ParameterUpdate(
                ("perils", "fire", "base_burn_probability_per_year"), {"value": old.value},
                {"value": _sig(b)},
                f"b = {_sig(b):.4g} (se {se_b:.2g}, delta method: relative se sqrt(({se_lam:.3g}/{lam:.4g})^2 + "
                f"({af.se_mean:.3g}/{af.mean:.4g})^2) = {rel:.3f}) = lambda x E[area] / (E[burned share] x "
                f"E[drought factor] x S) = {lam:.4g} fires/ha/yr x {af.mean:.4g} ha / ({share:.3g} x {e_d:.4g} x "
                f"{s_f:.4g}), so that the engine's expected burned share b x E[D] x S x E[burned share] equals the "
                f"records' {lam * af.mean:.3%} of the forest a year. Rate lambda {lam:.4g} {lam_txt}. {d_txt}. "
                f"{s_txt}. Cascade and climate multipliers taken as 1. Frequency: {_poisson_note(pf)}. "
                f"Area: {_sev_note(af)}", {"value": se_b}))
        else:
            res.skipped.append(f"fire: {area.size} records with area_ha, fewer than {min_records}; "
                               "base_burn_probability_per_year unchanged")
        if data.covariates:
            wf = weather_log_sd_fit(pf, tab)
            res.fits["fire.weather_log_sd"] = wf
            for name in ("city_weather_log_sd", "county_weather_log_sd"):
                v, se = wf[name], wf[f"se_{name}"]
                what = ("across years" if name.startswith("city") else "within years, across counties")
                res.updates.append(ParameterUpdate(
                    ("perils", "fire", name), {"value": getattr(fp, name).value}, {"value": _sig(v)},
                    f"sd of the covariate part of the fitted log fire rate ({what}): {v:.4g} (se {se:.2g}: "
                    f"sampling and the coefficients' quasi-Poisson errors). {_poisson_note(pf)}", {"value": se}))
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
            try:
                bf = fit_beta(x)
            except FitError as exc:
                raise CalibrationError(f"fire loss fractions of class {c}: {exc}") from exc
            res.fits[f"fire.loss_given_burn.{c}"] = bf
            res.updates.append(_range_update(("perils", "fire", "loss_given_burn", c), fp.loss_given_burn[c], bf))

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
            # quasi-Poisson: scaled by the yearly counts' dispersion when they vary more than a Poisson's
            dispersion = float(per_year.var(ddof=1) / rate) if rate > 0 and n_years > 1 else 1.0
            se_rate = float(np.sqrt(max(n_ev, 1)) / n_years * np.sqrt(max(dispersion, 1.0)))
            table = [(str(j), int(np.sum(per_year == j)), float(n_years * _pois(j, rate))) for j in range(3)]
            table.append((">=3", int(np.sum(per_year >= 3)), float(n_years * (1 - sum(_pois(j, rate) for j in range(3))))))
            res.fits["typhoon.frequency"] = {"events": n_ev, "years": n_years, "annual_rate": rate,
                                             "se": se_rate, "dispersion": dispersion,
                                             "observed_vs_expected_years": table}
            if n_ev >= min_events:
                res.updates.append(ParameterUpdate(
                    ("perils", "typhoon", "annual_rate"), {"value": p.annual_rate.value}, {"value": _sig(rate)},
                    f"Poisson MLE: {n_ev} events (distinct dates) in {n_years} years, se {se_rate:.3g} (yearly "
                    f"counts' dispersion {dispersion:.2f}; the error is scaled by its root above 1); "
                    f"years with 0/1/2/>=3 events observed {[t[1] for t in table]} vs expected "
                    f"{[round(t[2], 1) for t in table]}", {"value": se_rate}))
            x = r["loss_fraction"].dropna().to_numpy()
            if x.size >= min_records:
                try:
                    bf = fit_beta(x)
                except FitError as exc:
                    raise CalibrationError(f"typhoon loss fractions: {exc}") from exc
                res.fits["typhoon.loss_given_hit"] = bf
                res.updates.append(_range_update(("perils", "typhoon", "loss_given_hit"), p.loss_given_hit, bf))
            else:
                res.skipped.append(f"typhoon: {x.size} loss fractions, fewer than {min_records}")
            if n_ev < min_events:
                res.skipped.append(f"typhoon: {n_ev} events, fewer than {min_events}; annual_rate unchanged")
        else:
            k = int(np.sum(per_year > 0))
            prob = k / n_years
            se_prob = float(np.sqrt(max(prob * (1 - prob), 1e-12) / n_years))
            res.fits["ice_storm.frequency"] = {"years_with_event": k, "years": n_years, "annual_probability": prob,
                                               "se": se_prob}
            if n_ev >= min_events:
                res.updates.append(ParameterUpdate(
                    ("perils", "ice_storm", "annual_probability"), {"value": p.annual_probability.value},
                    {"value": _sig(prob)},
                    f"binomial MLE: {k} of {n_years} years with an ice storm, se {np.sqrt(prob * (1 - prob) / n_years):.3g}",
                    {"value": se_prob}))
            else:
                res.skipped.append(f"ice_storm: {n_ev} events, fewer than {min_events}; annual_probability unchanged")
    return res


def _pois(j: int, rate: float) -> float:
    from scipy.stats import poisson

    return float(poisson.pmf(j, rate))


# --------------------------------------------------------------------------------------------
# Write-back
# --------------------------------------------------------------------------------------------
def _file_sha256(path: Path, role: str) -> str:
    if not path.is_file():
        raise CalibrationError(f"{role} file {path} not found: the calibrated parameter file must name and hash "
                               "every input, so it is not written")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def input_provenance(result: CalibrationResult, records_path: str | Path,
                     exposure_path: str | Path | None = None) -> list[tuple[str, str, str]]:
    """``(role, file name, full SHA-256)`` of every input of ``result``, each file hashed now and checked
    against the hash taken when it was read; raises :class:`CalibrationError` when an input is unknown
    (data not read from files), missing, or changed since the fit."""
    read = {role: (name, sha) for role, name, sha in result.inputs}
    if "records" not in read or "exposure" not in read:
        raise CalibrationError("the calibration's records and exposure were not read from files "
                               "(models.calibration.load_loss_data), so the parameter file could not name and hash "
                               "them: refusing to write it")
    out = []
    for role, given in (("records", records_path), ("exposure", exposure_path)):
        path = Path(given if given is not None else read[role][0])
        sha = _file_sha256(path, role)
        if sha != read[role][1]:
            raise CalibrationError(f"{role} file {path}: its SHA-256 {sha} is not that of the {role} the fit read "
                                   f"({read[role][1]}): changed since, or another file")
        out.append((role, path.name, sha))
    out += [(role, name, sha) for role, name, sha in result.inputs if role not in ("records", "exposure")]
    return out


def updated_parameter_document(result: CalibrationResult, params: ModelParameters, records_path: str | Path,
                               exposure_path: str | Path | None = None) -> dict[str, Any]:
    """The parameter file as a mapping, with the fitted values in place and every input cited by name
    and full SHA-256 (``exposure_path`` defaults to the exposure file the data were read from)."""
    base = Path(params.path)
    doc = load_yaml(base.read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    prov = input_provenance(result, records_path, exposure_path)
    what = {"records": "loss records", "exposure": "exposure", "portfolio": "stand-factor portfolio"}
    # a portfolio is hashed as its validated table (as CSV), not as the file it was read from
    hashed = {"portfolio": "sha256 of its validated table as CSV"}
    cited = ", ".join(f"{what.get(role, role)} {name} ({hashed.get(role, 'sha256')} {sha})" for role, name, sha in prov)
    doc["references"][REFERENCE_KEY] = (
        f"{cited}; {result.n_records} records {result.years[0]}-{result.years[1]}, fitted by models.calibration "
        f"against {base.name} version {params.version} (sha256 {params.sha256})")
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
                         out_path: str | Path, exposure_path: str | Path | None = None) -> ModelParameters:
    """Write the updated parameter file and check it loads; returns the loaded set.

    Refuses (:class:`CalibrationError`) when an input cannot be named and hashed
    (:func:`input_provenance`). The file is written to a temporary name first and moved into place only
    once :func:`models.parameters.load_parameters` accepts it.
    """
    doc = updated_parameter_document(result, params, records_path, exposure_path)
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


__all__ = ["CalibrationResult", "ParameterUpdate", "calibrate", "drought_fire_factor", "input_provenance",
           "stand_fire_factor", "updated_parameter_document", "weather_log_sd_fit", "weather_log_sds",
           "write_parameter_file"]
