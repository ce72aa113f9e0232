"""Calibration: recover known parameters from simulated records; write-back; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from api.cli import main
from models.calibration import (
    CalibrationError,
    LossData,
    calibrate,
    example_spec,
    fit_beta,
    fit_lognormal,
    fit_poisson,
    simulate_records,
    validate_exposure,
    validate_records,
    weather_log_sds,
    write_parameter_file,
)
from models.calibration.fit import FitError
from models.parameters import load_parameters


def loss_data(records: pd.DataFrame, exposure: pd.DataFrame) -> LossData:
    exp, covs = validate_exposure(exposure)
    return LossData(validate_records(records, exp), exp, covs, source="<simulated>")


@pytest.fixture(scope="module")
def big_sample():
    spec = example_spec()
    spec = {**spec, "ice_storm": {**spec["ice_storm"], "annual_probability": 0.25}}
    rec, exp = simulate_records(np.random.default_rng(123), years=range(1900, 2020), spec=spec)
    return spec, loss_data(rec, exp)


def test_poisson_regression_recovers_coefficients_with_exposure_offset():
    rng = np.random.default_rng(7)
    n = 4000
    x = rng.normal(size=(n, 2))
    e = rng.uniform(1e3, 5e4, n)  # ha
    b0, b = np.log(2e-4), np.array([0.5, -0.3])
    y = rng.poisson(e * np.exp(b0 + x @ b))
    f = fit_poisson(y, e, x, ("u", "v"))
    assert abs(f.intercept - b0) <= 4 * f.se_intercept
    for est, se, true in zip(f.coef, f.se_coef, b):
        assert abs(est - true) <= 4 * se
    # correctly specified: Pearson dispersion near 1, deviance near its dof (chi-square, sd sqrt(2 dof))
    assert abs(f.pearson_dispersion - 1) < 0.1
    assert abs(f.deviance - (n - 3)) < 5 * np.sqrt(2 * (n - 3))
    assert f.aic == pytest.approx(2 * 3 - 2 * f.log_likelihood)
    assert 0 < f.d2 < 1 and 0 < f.mcfadden_r2 < 1
    assert sum(r[1] for r in f.count_table) == n
    assert sum(r[2] for r in f.count_table) == pytest.approx(n)
    # the canonical link with an intercept reproduces the total count exactly
    assert f.expected.sum() == pytest.approx(y.sum(), rel=1e-6)
    # intercept-only model: the rate is total count / total exposure
    f0 = fit_poisson(y, e)
    assert np.exp(f0.intercept) == pytest.approx(y.sum() / e.sum())


def test_severity_fits_recover_parameters():
    rng = np.random.default_rng(11)
    b = fit_beta(rng.beta(2.0, 5.0, 3000))
    assert abs(b.params["a"] - 2.0) <= 4 * b.se["a"] and abs(b.params["b"] - 5.0) <= 4 * b.se["b"]
    assert b.mean == pytest.approx(b.params["a"] / (b.params["a"] + b.params["b"]))
    assert b.ks_pvalue > 0.001
    ln = fit_lognormal(np.exp(1.5 + 0.8 * rng.standard_normal(3000)))
    assert abs(ln.params["mu"] - 1.5) <= 4 * ln.se["mu"] and abs(ln.params["sigma"] - 0.8) <= 4 * ln.se["sigma"]
    # KS rejects a clearly wrong model: uniform sizes are not lognormal
    bad = fit_lognormal(rng.uniform(1, 2, 3000))
    assert bad.ks_pvalue < 0.01
    lo, hi = fit_beta(rng.uniform(0.3, 0.7, 5000)).uniform_range()
    assert lo == pytest.approx(0.3, abs=0.02) and hi == pytest.approx(0.7, abs=0.02)
    with pytest.raises(FitError, match="at least"):
        fit_beta([0.1, 0.2])


def test_calibration_recovers_record_model(big_sample, params):
    spec, data = big_sample
    f = spec["fire"]
    res = calibrate(data, params)
    pf = res.fits["fire.frequency"]
    beta = f["fwi_log_rate_per_unit"]
    assert abs(pf.coef[0] - beta) <= 4 * pf.se_coef[0]
    sc, sk = f["city_weather_log_sd"], f["county_weather_log_sd"]
    true_b0 = np.log(f["mean_rate_per_ha_year"]) - 0.5 * (sc**2 + sk**2) - beta * f["fwi_mean"]
    assert abs(pf.intercept - true_b0) <= 4 * np.hypot(pf.se_intercept, f["fwi_mean"] * pf.se_coef[0])
    area = res.fits["fire.area"]
    true_mu = np.log(f["mean_area_ha"]) - 0.5 * f["area_log_sd"] ** 2
    assert abs(area.params["mu"] - true_mu) <= 4 * area.se["mu"]
    assert abs(area.params["sigma"] - f["area_log_sd"]) <= 4 * area.se["sigma"]
    lgb = res.fits["fire.loss_given_burn.conifer"]
    assert abs(lgb.params["a"] - f["loss_fraction_beta_a"]) <= 4 * lgb.se["a"]
    assert abs(lgb.params["b"] - f["loss_fraction_beta_b"]) <= 4 * lgb.se["b"]
    ups = {".".join(u.path): u.new for u in res.updates}
    # weather log-sds: 120 years and 9 counties; sampling sd of an sd is about s / sqrt(2 dof)
    ny = len(data.years)
    assert abs(ups["perils.fire.city_weather_log_sd"]["value"] - sc) <= 4 * sc / np.sqrt(2 * (ny - 1)) + 0.02
    assert abs(ups["perils.fire.county_weather_log_sd"]["value"] - sk) <= 4 * sk / np.sqrt(2 * ny * 8) + 0.01
    # base burn probability: mean rate x mean area / mean burned share; the mean rate's error is
    # dominated by the year-to-year weather (relative sd sqrt((exp(sc^2)-1)/years))
    b_true = f["mean_rate_per_ha_year"] * f["mean_area_ha"] / params.perils["fire"].burned_area_fraction.mean
    rel = np.sqrt((np.exp(sc**2) - 1) / ny + (np.exp(sk**2) - 1) / (ny * 9) + area.variance / area.mean**2 / area.n_obs)
    assert abs(ups["perils.fire.base_burn_probability_per_year"]["value"] / b_true - 1) <= 4 * rel
    # typhoon rate and ice-storm probability
    ty = res.fits["typhoon.frequency"]
    assert abs(ty["annual_rate"] - spec["typhoon"]["annual_rate"]) <= 4 * np.sqrt(spec["typhoon"]["annual_rate"] / ny)
    ice = res.fits["ice_storm.frequency"]
    p = spec["ice_storm"]["annual_probability"]
    assert abs(ice["annual_probability"] - p) <= 4 * np.sqrt(p * (1 - p) / ny)
    t = res.fits["typhoon.loss_given_hit"]
    assert abs(t.mean - spec["typhoon"]["loss_fraction_beta_a"] / (spec["typhoon"]["loss_fraction_beta_a"]
                                                                  + spec["typhoon"]["loss_fraction_beta_b"])) \
        <= 4 * np.sqrt(t.variance / t.n_obs)


def test_weather_sd_decomposition_closed_form():
    # eta = year effect + county effect, equal weights: sds recovered exactly from a balanced design
    years = np.repeat(np.arange(4), 3)
    a = np.array([-1.0, 0.0, 1.0, 2.0])[years]
    c = np.tile([-0.5, 0.0, 0.5], 4)
    from models.calibration.fit import PoissonFit

    fit = PoissonFit(0.0, (1.0,), ("x",), 0.0, (0.0,), 12, 1, 1.0, 0, 0, 0, 0, 0, 0, 0, 0, ())
    exp = pd.DataFrame({"year": years, "county": np.tile(list("abc"), 4), "forest_area_ha": 1.0, "x": a + c})
    city, county = weather_log_sds(fit, exp)
    county_true2 = np.sum(c**2) / 12 * 12 / (12 - 4)
    assert county == pytest.approx(np.sqrt(county_true2))
    assert city == pytest.approx(np.sqrt(np.var([-1, 0, 1, 2], ddof=1) - county_true2 / 3))


def test_write_back_loads_and_cites_records(tmp_path, params):
    rec, exp = simulate_records(np.random.default_rng(5))
    rp, ep = tmp_path / "r.csv", tmp_path / "e.csv"
    rec.to_csv(rp, index=False)
    exp.to_csv(ep, index=False)
    from models.calibration import load_loss_data

    res = calibrate(load_loss_data(rp, ep), params)
    out = tmp_path / "new.yaml"
    new = write_parameter_file(res, params, rp, out)
    assert new.sha256 != params.sha256 and new.version.endswith("+calibrated")
    b = new.perils["fire"].base_burn_probability_per_year
    assert b.source == "calibration_records" and b.confidence == "derived" and "Poisson" in b.note
    assert "r.csv" in new.file.references["calibration_records"]
    upd = {u.path for u in res.updates}
    assert ("perils", "fire", "loss_given_burn", "conifer") in upd
    lgb = new.perils["fire"].loss_given_burn["conifer"]
    assert lgb.confidence == "derived" and lgb.low < 0.5 < lgb.high
    # everything not fitted is unchanged
    assert new.perils["fire"].loss_given_burn["broadleaf"] == params.perils["fire"].loss_given_burn["broadleaf"]
    assert new.file.species == params.file.species
    assert new.perils.get("pine_wilt") == params.perils.get("pine_wilt")


def test_bad_inputs_name_the_problem(params):
    rec, exp = simulate_records(np.random.default_rng(1), years=range(2000, 2005))
    exp_v, _ = validate_exposure(exp)
    with pytest.raises(CalibrationError, match="forest_area_ha"):
        validate_exposure(exp.assign(forest_area_ha=-1.0))
    with pytest.raises(CalibrationError, match="row 1, column 'date'"):
        validate_records(rec.assign(date=["not a date"] + list(rec["date"][1:])), exp_v)
    with pytest.raises(CalibrationError, match="exposure years"):
        validate_records(rec.assign(date="1990-05-01"), exp_v)
    with pytest.raises(CalibrationError, match="loss_fraction"):
        validate_records(rec.assign(loss_fraction=1.5), exp_v)
    with pytest.raises(CalibrationError, match="required column"):
        validate_records(rec.drop(columns="peril"), exp_v)
    # an infinite area is bad input named where it is, not a failure of the fit; values print plainly
    with pytest.raises(CalibrationError, match=r"row 2, column 'area_ha' \(value inf\): must be a finite number > 0"):
        validate_records(rec.assign(area_ha=[1.0, np.inf] + [1.0] * (len(rec) - 2)), exp_v)
    with pytest.raises(CalibrationError, match=r"\(value -1.0\)"):
        validate_exposure(exp.assign(forest_area_ha=-1.0))


def test_cli_calibrate_example_roundtrip(tmp_path, capsys):
    assert main(["calibrate", "--make-example", str(tmp_path)]) == 0
    rp, ep = tmp_path / "example_records.csv", tmp_path / "example_exposure.csv"
    assert rp.exists() and ep.exists()
    capsys.readouterr()
    out = tmp_path / "new.yaml"
    code = main(["calibrate", str(rp), "--exposure", str(ep), "--parameters", "lishui", "-o", str(out),
                 "--format", "json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    assert d["output"] == str(out)
    paths = {u["path"] for u in d["updates"]}
    assert "perils.fire.base_burn_probability_per_year" in paths
    assert d["fits"]["fire.frequency"]["observed_vs_expected"]
    new = load_parameters(out)
    assert new.perils["fire"].base_burn_probability_per_year.source == "calibration_records"
    assert yaml.safe_load(Path(out).read_text(encoding="utf-8"))["references"]["calibration_records"]
    # the same example seed gives the same file
    assert main(["calibrate", "--make-example", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "example_records.csv").read_bytes() == rp.read_bytes()


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("date,county\n2020-01-01,莲都区\n", encoding="utf-8")
    exp = tmp_path / "e.csv"
    exp.write_text("county,year,forest_area_ha\n莲都区,2020,1000\n", encoding="utf-8")
    assert main(["calibrate", str(bad), "--exposure", str(exp)]) == 2
    err = capsys.readouterr().err.strip()
    assert "peril" in err and len(err.splitlines()) == 1
    assert main(["calibrate", str(bad)]) == 2
    assert "--exposure" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "missing.csv"), "--exposure", str(exp)]) == 2
