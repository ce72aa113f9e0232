"""``carbon-risk stress`` after the user-flow review: a parameter sd the paths do not resolve reads "not resolved"
as in the HTML report (it printed "param sd 0"), and the reverse stress root carries its Monte Carlo error."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from api.cli.commands.stress import _headline, _param_sd_text
from finance_engine.reports.html import fmt_parameter_sd
from finance_engine.stress.registry import bind_registry
from finance_engine.stress.reverse import ReverseResult, reverse_stress_test, root_error
from finance_engine.stress.run import StressSettings, evaluate_instruments, run_scenario
from finance_engine.stress.scenarios import load_scenario
from models.portfolio import validate_frame
from tests.conftest import make_frame
from tests.test_stress_run import _registry


# ---- finding 4: param sd "not resolved" -----------------------------------------------------------------
def _portfolio(psd_base, se_base, psd_scn, se_scn):
    return pd.DataFrame({
        "scenario": ["baseline", "ice"],
        "cumulative_loss_tco2e": [100.0, 900.0], "cumulative_loss_tco2e_mc_se": [se_base, se_scn],
        "cumulative_loss_tco2e_parameter_sd": [psd_base, psd_scn],
        "cumulative_loss_tco2e_diff": [0.0, 800.0], "cumulative_loss_tco2e_diff_mc_se": [0.0, 40.0],
        "cumulative_loss_tco2e_diff_parameter_sd": [0.0, 150.0],
        "bank_collateral_coverage": [1.5, 1.2], "bank_collateral_coverage_mc_se": [0.01, 0.02],
    })


@pytest.mark.parametrize("psd, se, text", [
    (0.0, 25.0, "not resolved"),        # clipped at 0 while the figure varies: the report's "not resolved"
    (math.nan, 25.0, "not resolved"),   # an unresolved sd the summaries leave as NaN (beside its interval)
    (0.0, 0.0, "0"),                    # an exact 0 (a figure that does not vary)
    (150.0, 25.0, "150"),
])
def test_param_sd_reads_as_the_report_reads_it(psd, se, text):
    assert _param_sd_text(psd, se) == text
    if not (isinstance(psd, float) and math.isnan(psd)):  # the report's own rule for the same cell
        assert fmt_parameter_sd(psd, se) == text


def test_headline_says_not_resolved_and_nothing_without_parameter_uncertainty():
    h = _headline(_portfolio(0.0, 25.0, math.nan, 50.0)).set_index("figure")
    assert h.loc["loss_tco2e", "baseline"] == "100 ± 25.00, param sd not resolved"
    assert h.loc["loss_tco2e", "ice"] == "900 ± 50.00, param sd not resolved"
    assert h.loc["loss_tco2e vs baseline", "baseline"] == "0 ± 0, param sd 0"      # the baseline against itself
    assert h.loc["loss_tco2e vs baseline", "ice"] == "800 ± 40.00, param sd 150"
    assert "param sd" not in h.loc["bank_collateral_coverage", "ice"]
    off = _headline(_portfolio(0.0, 25.0, 0.0, 50.0), parameter_uncertainty=False)
    assert not off.drop(columns="figure").apply(lambda c: c.str.contains("param sd")).to_numpy().any()


def test_headline_gives_each_param_sd_its_interval():
    """The portfolio table's <figure>_parameter_sd_ci95_low / _high follow the sd in brackets (as the accounts'
    terminal table shows them); a result without them, or with an end not computed, shows the sd alone."""
    pf = _portfolio(0.0, 25.0, 150.0, 50.0).assign(
        cumulative_loss_tco2e_parameter_sd_ci95_low=[0.0, 60.0],
        cumulative_loss_tco2e_parameter_sd_ci95_high=[80.0, math.nan],
        cumulative_loss_tco2e_diff_parameter_sd_ci95_low=[0.0, 90.5],
        cumulative_loss_tco2e_diff_parameter_sd_ci95_high=[0.0, 310.0])
    h = _headline(pf).set_index("figure")
    assert h.loc["loss_tco2e", "baseline"] == "100 ± 25.00, param sd not resolved [0, 80.00]"
    assert h.loc["loss_tco2e", "ice"] == "900 ± 50.00, param sd 150"  # the upper end not computed
    assert h.loc["loss_tco2e vs baseline", "baseline"] == "0 ± 0, param sd 0 [0, 0]"
    assert h.loc["loss_tco2e vs baseline", "ice"] == "800 ± 40.00, param sd 150 [90.50, 310]"
    off = _headline(pf, parameter_uncertainty=False)
    assert not off.drop(columns="figure").apply(lambda c: c.str.contains(r"param sd|\[", regex=True)).to_numpy().any()


def test_stress_cli_prints_not_resolved_and_its_footnote(tmp_path, capsys, monkeypatch):
    """End to end: the engine's clipped 0 (forced here for the baseline's loss) reads not resolved, with the
    report's footnote."""
    import finance_engine.stress.run as run_mod

    real = run_mod.run_stress_test

    def clipped(*a, **k):
        res = real(*a, **k)
        res.portfolio.loc[res.portfolio.scenario == "baseline", "cumulative_loss_tco2e_parameter_sd"] = 0.0
        return res

    monkeypatch.setattr(run_mod, "run_stress_test", clipped)
    pf = tmp_path / "p.csv"
    make_frame(40, seed=3).to_csv(pf, index=False)
    assert main(["stress", "-p", str(pf), "-s", "super_typhoon", "--years", "2", "--paths", "16"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("loss_tco2e "))
    assert "param sd not resolved" in line and "param sd 0 " not in line + " "
    assert "not resolved: a parameter sd whose variance-components estimate fell below zero" in out


# ---- finding 7: the reverse stress root's Monte Carlo error -------------------------------------------------
def test_root_error_is_the_metrics_error_over_its_slope():
    """A linear metric C (1 - m) with error s (1 - m): root 1 - 1/C, error s (1 - m*) / C (delta method)."""
    c, s = 2.5, 0.04

    def value(m):
        return c * (1 - m), s * (1 - m)

    root = 1 - 1 / c
    se, metric_se, slope, how = root_error(value, root, 0.0, 0.99)
    assert slope == pytest.approx(-c) and metric_se == pytest.approx(s * (1 - root))
    assert se == pytest.approx(s * (1 - root) / c) and how.startswith("delta method")
    # a metric flat around the root, or without an error, leaves the root without one (never a fake 0)
    assert root_error(lambda m: (1.0, 0.1), 0.5, 0.0, 1.0)[0] is None
    assert root_error(lambda m: (2 - m, None), 1.0, 0.0, 2.0)[0] is None


def test_reverse_price_drop_root_has_its_delta_method_error(params):
    pf = validate_frame(make_frame(120, seed=7), params, source="stress-run")
    reg = _registry(pf)
    st = StressSettings(years=3, paths=32, seed=2)
    bound = bind_registry(reg, pf, params)
    run = run_scenario(bound.portfolio, params, load_scenario("baseline"), st, horizon_years=6,
                       extra_levels=("project_id",))
    base = evaluate_instruments(bound, run, st).portfolio
    c0, se0 = base["collateral_coverage"], base["collateral_coverage_mc_se"]
    r = reverse_stress_test(pf, params, shock=("price_drop", None), metric="collateral_coverage", threshold=1.0,
                            registry=reg, settings=st, xtol=1e-7)
    # coverage and its error scale with (1 - d): at the root C = 1, so the error is se0 (1 - d*) / C0 = se0 / C0^2
    assert r.slope == pytest.approx(-c0, rel=1e-6)
    assert r.metric_mc_se_at_root == pytest.approx(se0 * (1 - r.multiplier), rel=1e-6)
    assert r.multiplier_mc_se == pytest.approx(se0 / c0 ** 2, rel=1e-5)
    lo, hi = r.multiplier_ci95
    assert lo < r.multiplier < hi and hi - lo == pytest.approx(2 * 1.96 * r.multiplier_mc_se)
    d = r.as_dict()
    assert d["multiplier_mc_se"] == r.multiplier_mc_se and d["error_method"].startswith("delta method")


def test_reverse_cli_prints_the_root_with_its_error(monkeypatch, capsys):
    import finance_engine.stress.reverse as rev

    def fake(*a, **k):
        return ReverseResult(("price_drop", None), "collateral_coverage", 1.0, 0.6391438, 2.7711872,
                             ((0.0, 2.77), (0.6391438, 1.0)), multiplier_mc_se=0.0061174,
                             metric_mc_se_at_root=0.01695, slope=-2.771, error_method="delta method: ...")

    monkeypatch.setattr(rev, "reverse_stress_test", fake)
    assert main(["stress", "reverse", "--shock", "price_drop", "--registry", "demo", "--paths", "8", "--years", "1"]) == 0
    out = capsys.readouterr().out
    assert "crosses 1 at price_drop = 0.6391 ± 0.0061 (95% CI 0.6272 - 0.6511)" in out, out
    assert "Monte Carlo standard error of the root: delta method" in out


def test_reverse_cli_says_when_the_root_has_no_error(monkeypatch, capsys):
    import finance_engine.stress.reverse as rev

    monkeypatch.setattr(rev, "reverse_stress_test", lambda *a, **k: ReverseResult(
        ("hazard", "fire"), "buffer_use", 1.0, 3.25, 0.4, ((1.0, 0.4), (3.25, 1.0)),
        error_method="no error: the metric is flat around the root (slope 0)"))
    assert main(["stress", "reverse", "--shock", "hazard:fire", "--metric", "buffer_use", "--paths", "8",
                 "--years", "1"]) == 0
    out = capsys.readouterr().out
    assert "= 3.25 (base value" in out and "the root has no Monte Carlo error: the metric is flat" in out
