"""Calibration: recover known parameters from simulated records; write-back; CLI."""

from __future__ import annotations

import hashlib
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
    drought_fire_factor,
    example_spec,
    fit_beta,
    fit_lognormal,
    fit_poisson,
    load_loss_data,
    simulate_records,
    stand_fire_factor,
    validate_exposure,
    validate_records,
    weather_log_sds,
    write_parameter_file,
)
from models.calibration.fit import FitError
from models.parameters import load_parameters
from models.perils.drought import Drought
from models.perils.fire import Fire
from tests.weather_support import context, lishui_like_portfolio, stand


def loss_data(records: pd.DataFrame, exposure: pd.DataFrame) -> LossData:
    exp, covs = validate_exposure(exposure)
    return LossData(validate_records(records, exp), exp, covs, source="<simulated>")


@pytest.fixture(scope="module")
def big_sample():
    spec = example_spec()
    spec = {**spec, "ice_storm": {**spec["ice_storm"], "annual_probability": 0.25}}
    rec, exp = simulate_records(np.random.default_rng(123), years=range(1900, 2020), spec=spec)
    return spec, loss_data(rec, exp)


def written_data(tmp_path, records: pd.DataFrame, exposure: pd.DataFrame, name: str = "r") -> tuple[LossData, Path, Path]:
    rp, ep = tmp_path / f"{name}.csv", tmp_path / f"{name}_exposure.csv"
    records.to_csv(rp, index=False)
    exposure.to_csv(ep, index=False)
    return load_loss_data(rp, ep), rp, ep


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
    for method in ("moments", "mle"):
        b = fit_beta(rng.beta(2.0, 5.0, 3000), method=method)
        assert abs(b.params["a"] - 2.0) <= 4 * b.se["a"] and abs(b.params["b"] - 5.0) <= 4 * b.se["b"]
        assert b.mean == pytest.approx(b.params["a"] / (b.params["a"] + b.params["b"]))
        assert abs(b.mean - 2 / 7) <= 4 * b.se_mean and abs(b.variance - 10 / (49 * 8)) <= 4 * b.se_variance
        assert b.ks_pvalue > 0.001
    ln = fit_lognormal(np.exp(1.5 + 0.8 * rng.standard_normal(3000)))
    assert abs(ln.params["mu"] - 1.5) <= 4 * ln.se["mu"] and abs(ln.params["sigma"] - 0.8) <= 4 * ln.se["sigma"]
    # KS rejects a clearly wrong model: uniform sizes are not lognormal
    bad = fit_lognormal(rng.uniform(1, 2, 3000))
    assert bad.ks_pvalue < 0.01
    u = fit_beta(rng.uniform(0.3, 0.7, 5000))
    (lo, hi), (se_lo, se_hi) = u.uniform_range(), u.uniform_range_se()
    assert abs(lo - 0.3) <= 4 * se_lo and abs(hi - 0.7) <= 4 * se_hi
    assert ln.se_mean > 0 and abs(ln.mean - np.exp(1.5 + 0.32)) <= 4 * ln.se_mean
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
    a, b = f["loss_fraction_beta_a"], f["loss_fraction_beta_b"]
    assert abs(lgb.params["a"] - a) <= 4 * lgb.se["a"]
    assert abs(lgb.params["b"] - b) <= 4 * lgb.se["b"]
    assert abs(lgb.mean - a / (a + b)) <= 4 * lgb.se_mean
    assert abs(lgb.variance - a * b / ((a + b) ** 2 * (a + b + 1))) <= 4 * lgb.se_variance
    ups = {".".join(u.path): u for u in res.updates}
    assert all(u.se for u in res.updates)  # every estimate reports its standard error
    # weather log-sds and the base burn probability against their reported standard errors
    for name, truth in (("city_weather_log_sd", f["city_weather_log_sd"]),
                        ("county_weather_log_sd", f["county_weather_log_sd"])):
        u = ups[f"perils.fire.{name}"]
        assert abs(u.new["value"] - truth) <= 4 * u.se["value"], name
    # the long-run b that burns the records' share: rate x mean area / (burned share x E[drought factor])
    e_d, _ = drought_fire_factor(params)
    assert e_d == pytest.approx(1 + params.perils["drought"].annual_probability.value
                                * (params.perils["fire"].drought_multiplier.value - 1))
    b_true = (f["mean_rate_per_ha_year"] * f["mean_area_ha"]
              / (params.perils["fire"].burned_area_fraction.mean * e_d))
    u = ups["perils.fire.base_burn_probability_per_year"]
    assert abs(u.new["value"] - b_true) <= 4 * u.se["value"]
    assert f"se {u.se['value']:.2g}" in u.note
    # typhoon rate and ice-storm probability
    ty = res.fits["typhoon.frequency"]
    assert abs(ty["annual_rate"] - spec["typhoon"]["annual_rate"]) <= 4 * ty["se"]
    ice = res.fits["ice_storm.frequency"]
    assert abs(ice["annual_probability"] - spec["ice_storm"]["annual_probability"]) <= 4 * ice["se"]
    t = res.fits["typhoon.loss_given_hit"]
    ta, tb = spec["typhoon"]["loss_fraction_beta_a"], spec["typhoon"]["loss_fraction_beta_b"]
    assert abs(t.mean - ta / (ta + tb)) <= 4 * t.se_mean


def test_quasi_poisson_standard_errors_follow_the_replication_spread():
    """Gamma-mixed (over-dispersed) counts: the reported errors, scaled by sqrt(Pearson dispersion), match
    the spread of the estimates over replications (the Poisson errors were 40 % too small)."""
    rng = np.random.default_rng(17)
    n, reps, shape = 300, 400, 1.5
    e = rng.uniform(1e3, 5e4, n)
    est, se, disp = [], [], []
    for _ in range(reps):
        y = rng.poisson(e * 1e-4 * rng.gamma(shape, 1 / shape, n))
        fit = fit_poisson(y, e)
        est.append(fit.intercept)
        se.append(fit.se_intercept)
        disp.append(fit.pearson_dispersion)
        assert fit.se_scale == pytest.approx(np.sqrt(max(1.0, fit.pearson_dispersion)))
    assert np.mean(disp) > 2
    sd = np.std(est, ddof=1)
    # relative sampling error of an sd from `reps` replications: 1 / sqrt(2 (reps - 1))
    assert abs(np.mean(se) / sd - 1) <= 4 / np.sqrt(2 * (reps - 1))


def test_the_typhoon_rate_error_widens_for_clustered_years(big_sample, params):
    """Typhoon events that come in clustered years (more year-to-year spread than a Poisson's) get the
    quasi-Poisson error: the Poisson error times the root of the yearly counts' dispersion."""
    spec, data = big_sample
    rec = data.records
    ty = rec[rec["peril"] == "typhoon"]
    # the same events, their years moved so they bunch into every tenth year
    years = sorted(data.exposure["year"].unique())
    bunched = ty.copy()
    event = bunched.groupby("date", sort=True).ngroup().to_numpy()  # an event's records share its date
    bunched["year"] = [years[10 * (k % (len(years) // 10))] for k in event]
    bunched["date"] = pd.to_datetime(bunched["year"].astype(str) + "-01-01") + pd.to_timedelta(event % 365, unit="D")
    plain = calibrate(data, params).fits["typhoon.frequency"]
    moved = pd.concat([rec[rec["peril"] != "typhoon"], bunched], ignore_index=True)
    clustered = calibrate(LossData(moved, data.exposure, data.covariates, source="<moved>"), params).fits[
        "typhoon.frequency"]
    assert clustered["events"] == plain["events"] and clustered["dispersion"] > 1.5
    poisson_se = np.sqrt(clustered["events"]) / clustered["years"]
    assert clustered["se"] == pytest.approx(poisson_se * np.sqrt(clustered["dispersion"]), rel=1e-12)


def test_uniform_range_keeps_the_fitted_mean_of_skewed_losses(tmp_path, params):
    """beta(0.8, 6) losses: mean -/+ sqrt(3 var) would start below 0; the range is [0, 2 mean], which keeps
    the mean (the clipped range (0, m + sqrt(3 v)) had a mean 35 % too high) and says the variance drops."""
    rng = np.random.default_rng(3)
    f = fit_beta(rng.beta(0.8, 6.0, 4000))
    lo, hi = f.uniform_range()
    assert lo == 0.0 and (lo + hi) / 2 == pytest.approx(f.mean, rel=1e-12)
    assert abs(f.mean - 0.8 / 6.8) <= 4 * f.se_mean
    assert (hi - lo) ** 2 / 12 < f.variance
    text = f.uniform_description()
    assert "keeps the fitted mean" in text and "[0, 2 x mean]" in text and "below the fitted" in text
    # the mirror case: losses near 1 use [2 mean - 1, 1]
    g = fit_beta(1 - rng.beta(0.8, 6.0, 4000))
    lo, hi = g.uniform_range()
    assert hi == 1.0 and (lo + hi) / 2 == pytest.approx(g.mean, rel=1e-12)
    # and the parameter written: the range's mean is the records' mean, the note says what is kept
    rec, exp = simulate_records(np.random.default_rng(5))
    fire = rec["peril"] == "fire"
    rec.loc[fire, "loss_fraction"] = np.round(rng.beta(0.8, 6.0, int(fire.sum())), 6)
    rec = rec.drop(columns=["stock_lost_tco2e", "stock_tco2e"])
    data, rp, _ = written_data(tmp_path, rec, exp)
    res = calibrate(data, params)
    u = next(u for u in res.updates if u.path[-1] == "conifer")
    m = data.records.loc[data.records["peril"] == "fire", "loss_fraction"].mean()
    assert u.new["low"] == 0.0 and (u.new["low"] + u.new["high"]) / 2 == pytest.approx(m, rel=1e-3)
    assert "keeps the fitted mean" in u.note
    lgb = write_parameter_file(res, params, rp, tmp_path / "new.yaml").perils["fire"].loss_given_burn["conifer"]
    assert lgb.mean == pytest.approx(m, rel=1e-3)


def test_total_losses_enter_the_moments_and_are_counted_in_the_note(tmp_path, params):
    """200 losses from U(0.3, 0.7) and 5 total losses (fraction 1): the engine's uniform range has the
    sample's mean and variance (the clipped beta MLE gave 0.548 / 0.206 for 0.515 / 0.135)."""
    rng = np.random.default_rng(8)
    x = np.concatenate([rng.uniform(0.3, 0.7, 200), np.ones(5)])
    f = fit_beta(x)
    assert f.mean == pytest.approx(x.mean(), rel=1e-12) and f.variance == pytest.approx(x.var(ddof=1), rel=1e-12)
    assert (f.n_zero, f.n_one, f.n_clipped) == (0, 5, 0)
    lo, hi = f.uniform_range()
    assert (lo + hi) / 2 == pytest.approx(x.mean()) and (hi - lo) ** 2 / 12 == pytest.approx(x.var(ddof=1))
    assert f.se_mean == pytest.approx(x.std(ddof=1) / np.sqrt(x.size))
    # through the calibration: the note counts the records at 0 and at 1
    rec, exp = simulate_records(np.random.default_rng(5))
    fire = np.flatnonzero((rec["peril"] == "fire").to_numpy())
    rec = rec.drop(columns=["stock_lost_tco2e", "stock_tco2e"])
    rec.loc[fire[:5], "loss_fraction"] = 1.0
    rec.loc[fire[5:7], "loss_fraction"] = 0.0
    data, _, _ = written_data(tmp_path, rec, exp)
    res = calibrate(data, params)
    u = next(u for u in res.updates if u.path[-1] == "conifer")
    y = data.records.loc[data.records["peril"] == "fire", "loss_fraction"].to_numpy()
    assert "2 at 0, 5 at 1" in u.note
    assert (u.new["low"] + u.new["high"]) / 2 == pytest.approx(y.mean(), rel=1e-3)
    assert (u.new["high"] - u.new["low"]) ** 2 / 12 == pytest.approx(y.var(ddof=1), rel=2e-3)


def test_engine_burns_the_records_share_with_the_fitted_file(tmp_path, params):
    """The fitted b is divided by E[drought factor] and the portfolio's mean stand factor: simulating the
    engine's drought and fire perils on that portfolio with the written file burns the records' share of the
    forest a year (fitted rate x mean fire area), within Monte Carlo error."""
    rec, exp = simulate_records(np.random.default_rng(21))
    data, rp, _ = written_data(tmp_path, rec, exp)
    pf = lishui_like_portfolio(params, 2000)
    res = calibrate(data, params, portfolio=pf)
    fb = res.fits["fire.base_burn_probability"]
    target = fb["burned_share_per_year"]
    e_d, _ = drought_fire_factor(params)
    s_f, _ = stand_fire_factor(params, pf)
    assert fb["drought_factor"] == e_d and fb["stand_factor"] == s_f
    assert s_f != 1.0 and "stand factor S" in res.updates[0].note and "E[drought factor]" in res.updates[0].note
    assert ("portfolio", "lishui_like") == res.inputs[-1][:2]
    new = write_parameter_file(res, params, rp, tmp_path / "cal.yaml")
    fp = new.perils["fire"]
    assert "stand-factor portfolio lishui_like" in new.file.references["calibration_records"]
    fire, drought = Fire(fp, new, pf), Drought(new.perils["drought"], new, pf)
    n_paths, years = 4000, 10
    area = pf.area_ha
    burned = []
    for year in range(years):
        ctx = context(pf, n_paths, year=year, seed=9, st=stand(n_paths, pf, weakened=False))
        drought.step(ctx, None)  # sets ctx.drought, as the simulator does before fire
        pl = fire.step(ctx, None)
        burned.append(np.bincount(pl.path_pos, weights=area[pl.parcel_pos], minlength=n_paths))
    share = np.concatenate(burned) / area.sum() * fp.burned_area_fraction.mean
    mc_se = share.std(ddof=1) / np.sqrt(share.size)
    assert abs(share.mean() - target) <= 4 * mc_se
    # the test can tell: without the two divisions the engine would burn e_d x s_f times the records' share
    assert abs(target * e_d * s_f - target) > 8 * mc_se


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

    res = calibrate(load_loss_data(rp, ep), params)
    out = tmp_path / "new.yaml"
    new = write_parameter_file(res, params, rp, out)
    assert new.sha256 != params.sha256 and new.version.endswith("+calibrated")
    b = new.perils["fire"].base_burn_probability_per_year
    assert b.source == "calibration_records" and b.confidence == "derived" and "Poisson" in b.note
    ref = new.file.references["calibration_records"]
    # every input named with its full SHA-256: records, exposure and the parameter file started from
    for path in (rp, ep):
        assert f"{path.name} (sha256 {hashlib.sha256(path.read_bytes()).hexdigest()})" in ref
    assert params.sha256 in ref and "unknown" not in ref
    upd = {u.path for u in res.updates}
    assert ("perils", "fire", "loss_given_burn", "conifer") in upd
    lgb = new.perils["fire"].loss_given_burn["conifer"]
    assert lgb.confidence == "derived" and lgb.low < 0.5 < lgb.high
    # everything not fitted is unchanged
    assert new.perils["fire"].loss_given_burn["broadleaf"] == params.perils["fire"].loss_given_burn["broadleaf"]
    assert new.file.species == params.file.species
    assert new.perils.get("pine_wilt") == params.perils.get("pine_wilt")


def test_write_back_refuses_inputs_it_cannot_name_and_hash(tmp_path, params):
    rec, exp = simulate_records(np.random.default_rng(5))
    out = tmp_path / "new.yaml"
    # tables built in memory: no file to cite
    with pytest.raises(CalibrationError, match="not read from files"):
        write_parameter_file(calibrate(loss_data(rec, exp), params), params, tmp_path / "r.csv", out)
    data, rp, ep = written_data(tmp_path, rec, exp)
    res = calibrate(data, params)
    # an exposure file changed since it was read
    ep.write_text(ep.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="exposure file .*changed since"):
        write_parameter_file(res, params, rp, out)
    # another records file than the one fitted
    other = tmp_path / "other.csv"
    rec.head(50).to_csv(other, index=False)
    with pytest.raises(CalibrationError, match="records file .*not that of the records the fit read"):
        write_parameter_file(res, params, other, out, exposure_path=tmp_path / "r_exposure.csv")
    # a records file that is gone
    data, rp, ep = written_data(tmp_path, rec, exp, name="s")
    res = calibrate(data, params)
    rp.unlink()
    with pytest.raises(CalibrationError, match="records file .* not found"):
        write_parameter_file(res, params, rp, out)
    assert not out.exists()


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
    assert all(u["se"] for u in d["updates"])
    assert {i["role"] for i in d["inputs"]} == {"records", "exposure"}
    assert d["fits"]["fire.frequency"]["observed_vs_expected"]
    new = load_parameters(out)
    assert new.perils["fire"].base_burn_probability_per_year.source == "calibration_records"
    assert yaml.safe_load(Path(out).read_text(encoding="utf-8"))["references"]["calibration_records"]
    # the same example seed gives the same file
    assert main(["calibrate", "--make-example", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "example_records.csv").read_bytes() == rp.read_bytes()
    # --portfolio: the fire rate is divided by the parcels' mean stand factor, and the file cites them
    capsys.readouterr()
    out_p = tmp_path / "with_pf.yaml"
    assert main(["calibrate", str(rp), "--exposure", str(ep), "--portfolio", "demo", "-o", str(out_p),
                 "--format", "json"]) == 0, capsys.readouterr().err
    dp = json.loads(capsys.readouterr().out)
    assert {i["role"] for i in dp["inputs"]} == {"records", "exposure", "portfolio"}
    b = {u["path"]: u["new"] for u in d["updates"]}["perils.fire.base_burn_probability_per_year"]
    bp = {u["path"]: u["new"] for u in dp["updates"]}["perils.fire.base_burn_probability_per_year"]
    assert bp != b
    assert "demo_portfolio.csv" in yaml.safe_load(out_p.read_text(encoding="utf-8"))["references"]["calibration_records"]


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


# ---- stand factor, standard errors: checks that pin the formulas -----------------------------------
def test_stand_factor_mixed_protection_and_young_boundary_matches_engine(params):
    """S on six parcels with all three fire-protection levels and one stand exactly at young_age_years:
    the area-weighted mean of flammability x young x protection (the engine's rule: young when
    age < young_age_years, so the boundary stand is not young), by hand and from the engine's own
    per-parcel burn probability divided by b."""
    from tests.conftest import make_frame
    from models.portfolio import validate_frame

    fp = params.perils["fire"]
    young_age, young_mult = fp.young_age_years.value, fp.young_burn_multiplier.value
    prot = {k: v.value for k, v in params.file.management["fire_protection"].items()}
    assert len(set(prot.values())) == 3 and young_mult != 1.0  # the test can tell the factors apart
    rows = [  # species, age, protection, area
        ("chinese_fir", 3.0, "none", 10.0),
        ("masson_pine", young_age, "enhanced", 30.0),  # exactly at the boundary: not young
        ("evergreen_broadleaf", 25.0, "basic", 20.0),
        ("moso_bamboo", young_age - 1.0, "enhanced", 15.0),
        ("chinese_fir", 40.0, "none", 5.0),
        ("masson_pine", young_age + 1.0, "basic", 8.0),
    ]
    frame = make_frame(len(rows), seed=4, species=["chinese_fir"])
    frame["species_group"] = [r[0] for r in rows]
    frame["age_years"] = [r[1] for r in rows]
    frame["fire_protection"] = [r[2] for r in rows]
    frame["area_ha"] = [r[3] for r in rows]
    pf = validate_frame(frame, params, source="mixed")
    # the portfolio orders trees before bamboo: take the rows in its order
    order = [int(pid[1:]) for pid in pf.frame["parcel_id"]]
    rows = [rows[i] for i in order]
    assert list(pf.age_years) == [r[1] for r in rows] and list(pf.area_ha) == [r[3] for r in rows]

    flam = {s: params.file.species[s].traits.flammability.value for s in {r[0] for r in rows}}
    factors = np.array([flam[s] * (young_mult if age < young_age else 1.0) * prot[m] for s, age, m, _ in rows])
    area = np.array([r[3] for r in rows])
    s_hand = float(np.sum(area * factors) / area.sum())
    s_f, txt = stand_fire_factor(params, pf)
    assert s_f == pytest.approx(s_hand, rel=1e-12)
    assert "stand factor S" in txt
    # the engine: burn probability per parcel (no weather, drought, cascades or climate) over b
    fire = Fire(fp, params, pf)
    ctx = context(pf, 1, st=stand(1, pf, weakened=False), independent=True)
    engine = fire.burn_probability(ctx)[0] / fp.base_burn_probability_per_year.value
    assert engine == pytest.approx(factors, rel=1e-6)
    assert s_f == pytest.approx(float(np.sum(area * engine) / area.sum()), rel=1e-6)
    # the alternatives differ by far more than the tolerance: without protection, or with age <= young
    no_prot = np.array([flam[s] * (young_mult if age < young_age else 1.0) for s, age, _, _ in rows])
    le = np.array([flam[s] * (young_mult if age <= young_age else 1.0) * prot[m] for s, age, m, _ in rows])
    for alt in (no_prot, le):
        assert abs(np.sum(area * alt) / area.sum() - s_hand) > 0.01 * s_hand


def test_moment_beta_a_b_standard_errors_match_replication_spread():
    """The moment fit's se of a and b against the spread of a and b over 500 samples of 1000 from a
    skewed beta and its mirror (the delta method's Jacobian: a sign error in any of its terms moves one
    of the four ratios by at least 1.5x). Replication error of an sd from 500 samples ~3 %."""
    reps, n = 500, 1000
    rng = np.random.default_rng(2024)
    for a_true, b_true in ((0.3, 5.0), (5.0, 0.3)):
        est, se = [], []
        for _ in range(reps):
            f = fit_beta(rng.beta(a_true, b_true, n))
            est.append((f.params["a"], f.params["b"]))
            se.append((f.se["a"], f.se["b"]))
        ratio = np.mean(se, axis=0) / np.std(est, axis=0, ddof=1)
        assert np.all((ratio > 0.8) & (ratio < 1.25)), (a_true, b_true, ratio)


def test_uniform_range_end_standard_errors_match_replication_spread():
    """The uniform range's ends m -/+ sqrt(3 v) of skewed beta(3, 7) losses (not cut at 0 or 1): their
    reported standard errors against the ends' spread over 400 samples of 1000. The mean-variance
    covariance matters here (a sign error in it moves both ratios by more than 1.25x)."""
    reps, n = 400, 1000
    rng = np.random.default_rng(77)
    ends, se = [], []
    for _ in range(reps):
        f = fit_beta(rng.beta(3.0, 7.0, n))
        lo, hi = f.uniform_range()
        assert 0.0 < lo and hi < 1.0
        ends.append((lo, hi))
        se.append(f.uniform_range_se())
    ratio = np.mean(se, axis=0) / np.std(ends, axis=0, ddof=1)
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


def test_rate_error_with_years_as_clusters_closed_form():
    """Three years, two counties of 100 ha: yearly counts 3, 1, 4 (8 fires on 600 ha-years), so
    lam = 8/600, yearly residuals n_y - lam A_y = 1/3, -5/3, 4/3 (squares summing to 14/3) and
    se = sqrt(3/2 x 14/3) / 600 = sqrt(7) / 600."""
    from models.calibration.core import _rate_se_by_year

    tab = pd.DataFrame({"year": [2000, 2000, 2001, 2001, 2002, 2002], "county": list("ababab"),
                        "forest_area_ha": 100.0, "n": [1.0, 2.0, 0.0, 1.0, 4.0, 0.0]})
    se, ny = _rate_se_by_year(tab, 8 / 600)
    assert ny == 3 and se == pytest.approx(np.sqrt(7) / 600, rel=1e-12)
    # two years: the factor Y / (Y - 1) = 2; counts 2, 0 on 50 ha each -> lam = 0.02, residuals +-1
    two = pd.DataFrame({"year": [1, 2], "forest_area_ha": 50.0, "n": [2.0, 0.0]})
    assert _rate_se_by_year(two, 0.02)[0] == pytest.approx(np.sqrt(2 * 2) / 100, rel=1e-12)
    assert np.isnan(_rate_se_by_year(two.iloc[:1], 0.04)[0])
