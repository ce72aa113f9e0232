"""Stress-test user-flow review: the buffer quantiles' intervals and not-resolved flags, the management levers' host
area columns, and forced events naming areas that hold no parcel (notes, suggestions, validate)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from api.cli import main
from finance_engine.stress.buffer import BufferInputError, buffer_adequacy, buffer_needed_text, quantile_paths_needed
from models.portfolio import validate_frame
from tests.conftest import make_frame


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


# ---- 1. buffer quantiles: 95 % order-statistic intervals and the not-resolved flag -------------------------------
def test_buffer_quantile_intervals_are_the_order_statistics():
    """Shares 0.01 .. 1.00 once each (n = 100, independent paths): the p-quantile's interval is
    [x_(r), x_(s)] with r = B^-1(0.025), s = B^-1(0.975) + 1 of Binomial(100, p); for p = 0.99 s = 101 > n."""
    x = np.arange(1, 101) / 100.0
    ad = buffer_adequacy(x * 2.0, np.full(100, 2.0), 0.15)
    for p, k in ((0.95, 95), (0.99, 99)):
        r = int(stats.binom.ppf(0.025, 100, p))
        s = int(stats.binom.ppf(0.975, 100, p)) + 1
        assert getattr(ad, f"buffer_needed_{k}_ci95_low") == pytest.approx(r / 100.0)
        high = getattr(ad, f"buffer_needed_{k}_ci95_high")
        assert high == (pytest.approx(s / 100.0) if s <= 100 else math.inf)
        assert getattr(ad, f"buffer_needed_{k}_resolved") is (s <= 100)
    assert ad.buffer_needed_95_resolved and ad.buffer_needed_95_paths_needed is None
    # 1 - 0.99^n >= 0.975 from n = ln(0.025) / ln(0.99) = 367.04 on
    assert not ad.buffer_needed_99_resolved and ad.buffer_needed_99_paths_needed == 368
    assert ad.not_resolved == ["buffer_needed_99"]
    d = ad.as_dict()
    assert buffer_needed_text(d, 95, fmt=lambda v: f"{v:g}") == "0.95 [0.9, 1]"
    assert buffer_needed_text(d, 99, fmt=lambda v: f"{v:g}") == "not resolved: 0.99 [0.97, open]; needs >= 368 paths"


@pytest.mark.parametrize("p", [0.95, 0.99, 0.995])
def test_paths_needed_is_the_closed_form_and_resolves_the_quantile(p):
    """Without parameter sets the upper end is bounded once 1 - p^n >= 0.975: n >= ln(0.025) / ln(p); a sample
    of that many paths resolves the quantile, one path fewer does not."""
    n = math.ceil(math.log(0.025) / math.log(p))
    assert quantile_paths_needed(p) == n
    k = round(1000 * p) / 10
    name = f"buffer_needed_{k:g}"
    if name not in ("buffer_needed_95", "buffer_needed_99"):
        return
    for size, resolved in ((n, True), (n - 1, False)):
        share = (np.arange(size) + 1.0) / size
        ad = buffer_adequacy(share, np.ones(size), 0.1)
        assert getattr(ad, f"{name}_resolved") is resolved, size
        assert getattr(ad, f"{name}_paths_needed") == (None if resolved else n)
    with pytest.raises(BufferInputError, match="p must lie"):
        quantile_paths_needed(1.0)


def test_buffer_intervals_count_parameter_sets():
    """g sets of m identical paths: the indicator's set means are 0 or 1, so its design effect is exactly
    m g / (g - 1), and the interval's ranks move from n p by sqrt of it (rounded outwards)."""
    rng = np.random.default_rng(5)
    g, m, p = 200, 4, 0.95
    n = g * m
    share = np.repeat(rng.permutation(g) + 1.0, m) / g  # path order: each set's paths consecutive
    ad = buffer_adequacy(share, np.ones(n), 0.5, set_size=m)
    xs = np.sort(share)
    deff = m * g / (g - 1)
    c = n * p
    r0 = int(stats.binom.ppf(0.025, n, p))
    s0 = int(stats.binom.ppf(0.975, n, p)) + 1
    r, s = math.floor(c - (c - r0) * math.sqrt(deff)), math.ceil(c + (s0 - c) * math.sqrt(deff))
    assert ad.buffer_needed_95_ci95_low == xs[r - 1]
    assert ad.buffer_needed_95_ci95_high == (xs[s - 1] if s <= n else math.inf)
    independent = buffer_adequacy(share, np.ones(n), 0.5)
    assert ad.buffer_needed_95 == independent.buffer_needed_95  # the estimate does not depend on the sets
    assert ad.buffer_needed_95_ci95_high >= independent.buffer_needed_95_ci95_high
    # at the 99th percentile the widened upper rank lies beyond 800 paths: not resolved, and the paths that would
    # resolve it are whole sets, more than independent paths need (368) by about the design effect
    assert not ad.buffer_needed_99_resolved
    need = ad.buffer_needed_99_paths_needed
    assert need % m == 0 and 368 * deff * 0.8 < need < 368 * deff * 1.6


def test_stress_cli_buffer_table_shows_intervals_and_not_resolved(capsys):
    code, out, err = _run(capsys, "stress", "-s", "ice_storm_2008", "--registry", "demo", "--buffer", "--paths", "96",
                          "--years", "5", "--format", "json")
    assert code == 0, err
    rows = json.loads(out)["buffer"]
    for row in rows:
        assert row["paths"] == 96 and row["set_size"] == 4
        # a 99th percentile of 96 paths: fewer than the 368 independent paths bounding it, so never resolved
        assert row["buffer_needed_99_resolved"] is False and row["buffer_needed_99_paths_needed"] >= 368
        assert row["buffer_needed_99_ci95_high"] is None  # an open end (inf) is null in the JSON
        for k in (95, 99):
            assert row[f"buffer_needed_{k}_ci95_low"] <= row[f"buffer_needed_{k}"]
    code, out, err = _run(capsys, "stress", "-s", "ice_storm_2008", "--registry", "demo", "--buffer", "--paths", "96",
                          "--years", "5")
    assert code == 0, err
    table = out.split("\nbuffer:\n")[1].split("\nnprt_scores:")[0]
    for row in rows:
        line = next(ln for ln in table.splitlines() if ln.startswith(row["scenario"] + " "))
        assert f"not resolved: " in line and f"needs >= {row['buffer_needed_99_paths_needed']:,} paths" in line
        assert "open]" in line and "±" in line
    assert "95 % order-statistic interval" in table


def test_stress_report_buffer_table_carries_the_intervals(tmp_path):
    import pandas as pd

    from finance_engine.reports.stress_report import render_stress_report
    from finance_engine.stress.run import StressSettings, run_stress_test
    from models.parameters import load_parameters

    params = load_parameters("lishui")
    pf = validate_frame(make_frame(30, seed=4), params)
    res = run_stress_test(pf, params, ["baseline"], settings=StressSettings(years=1, paths=8, seed=1))
    x = np.arange(1, 101) / 100.0
    ad = buffer_adequacy(x, np.ones(100), 0.15)
    html = render_stress_report(res, extra={"buffer": pd.DataFrame([{"scenario": "baseline", "years": 1,
                                                                      **ad.as_dict()}])})
    assert "not resolved: 0.99 [0.97, open]; needs &gt;= 368 paths" in html
    assert "0.95 [0.9" in html and "order-statistic interval" in html


# ---- 2. the conversion lever's host area ------------------------------------------------------------------------
def test_conversion_lever_reports_the_host_area_it_removes_and_leaves_the_landscape(params):
    """Masson pine (pine share 1) to mixed conifer-broadleaf (0.3): the treated stands stay pine wilt hosts, so
    the landscape the converted registry gives is the one the file holds (no host area moves between pest-control
    levels), while 0.7 of each treated host hectare of pine goes."""
    from finance_engine.stress.levers import ManagementAction, default_management_actions, management_levers
    from finance_engine.stress.run import StressSettings
    from models.demo import demo_portfolio_path
    from models.dynamics import SimulationSwitches
    from models.perils.pine_wilt import PineWilt
    from models.portfolio import load_portfolio

    pf = load_portfolio(demo_portfolio_path(), params)  # the region's registry, as in the city-wide test
    conv = next(a for a in default_management_actions(pf) if a.species_to)
    assert conv.species_to == "mixed_conifer_broadleaf" and "conifer-broadleaf" in conv.name
    changed, _ = conv.apply(pf, params)
    block = params.perils["pine_wilt"]
    before, after = PineWilt(block, params, pf), PineWilt(block, params, changed)
    # an independent account: the peril's own hosts, and the landscape each registry gives
    treated = conv.treated(pf)
    hosts = np.zeros(pf.n_parcels, dtype=bool)
    hosts[before.host_idx] = True
    share = {s: params.tables.pine_share[params.species_index[s]] for s in ("masson_pine", "mixed_conifer_broadleaf")}
    assert share["masson_pine"] == 1.0 and share["mixed_conifer_broadleaf"] == pytest.approx(0.3)
    host_area = float(pf.area_ha[treated & hosts].sum())
    np.testing.assert_array_equal(before.host_idx, after.host_idx)  # converted stands stay hosts
    np.testing.assert_allclose(after.as_landscape().host_area_by_level, before.as_landscape().host_area_by_level)
    assert conv.landscape(pf, params)[1] == 0.0

    sw = SimulationSwitches(perils=("pine_wilt",), parameter_uncertainty=False)
    st = StressSettings(years=2, paths=8, seed=2, switches=sw)
    pest = ManagementAction("enhanced pest control", species=("masson_pine",), pest_control="enhanced")
    out = management_levers(pf, params, [conv, pest], st).set_index("action")
    row = out.loc[conv.name]
    assert row["treated_area_ha"] == pytest.approx(float(pf.area_ha[treated].sum()))
    assert row["pine_host_area_treated_ha"] == pytest.approx(host_area)
    assert row["pine_host_area_removed_ha"] == pytest.approx(host_area * (1.0 - 0.3))
    assert row["landscape_host_area_changed_ha"] == 0.0
    # pest control on the same stands moves their host area in the landscape and removes no pine
    p = out.loc[pest.name]
    assert p["pine_host_area_treated_ha"] == pytest.approx(host_area) and p["pine_host_area_removed_ha"] == 0.0
    # (at most the treated host area the landscape holds below its altitude limit)
    assert 0 < p["landscape_host_area_changed_ha"] <= host_area + 1e-6


# ---- 3. forced events naming areas that hold no parcel --------------------------------------------------------
def _scenario(events):
    from finance_engine.stress.scenarios import load_scenario

    return dataclasses.replace(load_scenario("ice_storm_2008"), name="named", forced_events=tuple(events))


def test_forced_area_notes_tell_a_missing_county_from_a_misspelt_one(params):
    from finance_engine.stress.areas import forced_area_notes, scenario_area_warnings

    pf = validate_frame(make_frame(40, seed=3, counties=["莲都区", "龙泉市"]), params)
    s = _scenario([(0, "ice_storm", {"counties": ["龙泉"], "severity": 1.0}),       # misspelt: exact names only
                   (0, "ice_storm", {"counties": ["庆元县"], "severity": 1.0}),      # in the region, not the portfolio
                   (0, "pine_wilt", {"counties": ["龙泉"]}),                          # pine wilt: a prefix matches
                   (1, "pine_wilt", {"counties": ["庆元县"]}),
                   (1, "fire", {"counties": ["龙泉市"]}),                             # fine
                   (9, "ice_storm", {"counties": ["龙泉"], "severity": 1.0})])       # beyond the horizon
    notes = forced_area_notes(s, pf, params, horizon=3)
    assert len(notes) == 3, notes
    assert notes[0].startswith("named: forced ice_storm in year 1: county '龙泉' (did you mean '龙泉市'?) is not in "
                               "the model's region, so it hit nothing")
    assert "庆元县" in notes[1] and "hold no parcel of this portfolio" in notes[1] and "hit nothing here" in notes[1]
    assert "forced pine_wilt in year 2" in notes[2] and "庆元县" in notes[2] and "spreading" in notes[2]
    # validate checks the region alone: the misspelling (twice), not the county the portfolio lacks
    warnings = scenario_area_warnings(s, params)
    assert len(warnings) == 2 and all("'龙泉' (did you mean '龙泉市'?)" in w for w in warnings)
    assert warnings[0].startswith("forced_events.0 (ice_storm, year 1)")


def test_a_misspelt_county_reaches_the_result_the_table_and_the_report(tmp_path, capsys, params):
    from finance_engine.reports.stress_report import render_stress_report
    from finance_engine.stress.run import StressSettings, run_stress_test

    pf = validate_frame(make_frame(30, seed=4), params)
    s = _scenario([(0, "ice_storm", {"counties": ["龙泉"], "severity": 1.0})])
    res = run_stress_test(pf, params, [s], settings=StressSettings(years=1, paths=8, seed=1))
    said = [n for n in res.notes if "'龙泉'" in n]
    assert len(said) == 1 and "did you mean '龙泉市'?" in said[0]
    assert said[0] in res.to_dict()["notes"]
    # the event hit nothing: zero effect on every path
    assert res.portfolio.set_index("scenario").at["named", "cumulative_loss_tco2e_diff"] == 0.0
    assert "did you mean &#39;龙泉市&#39;?" in render_stress_report(res)

    scn = tmp_path / "typo.yaml"
    scn.write_text("name: typo_ice\nversion: '1'\nforced_events:\n  - {year: 1, peril: ice_storm, counties: [龙泉], "
                   "severity: 1.0}\n", encoding="utf-8")
    csv = tmp_path / "p.csv"
    make_frame(30, seed=4).to_csv(csv, index=False)
    code, out, err = _run(capsys, "stress", "-p", csv, "-s", scn, "--years", "1", "--paths", "8")
    assert code == 0, err
    notes = out.split("\nNotes:\n")[1]
    assert "typo_ice: forced ice_storm in year 1: county '龙泉' (did you mean '龙泉市'?)" in notes
    assert sum("'龙泉'" in ln for ln in err.splitlines()) == 1  # warned once before the run
    code, out, err = _run(capsys, "stress", "-p", csv, "-s", scn, "--years", "1", "--paths", "8", "--format", "json")
    assert code == 0 and any("did you mean '龙泉市'?" in n for n in json.loads(out)["notes"])

    # validate: still valid (exit 0), with the warning on stderr, or under "warnings" in JSON
    code, out, err = _run(capsys, "validate", scn, "--kind", "scenario")
    assert code == 0 and "OK, scenario typo_ice" in out
    assert "warning:" in err and "county '龙泉' (did you mean '龙泉市'?) is not in the model's region" in err
    code, out, err = _run(capsys, "validate", scn, "--kind", "scenario", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["valid"] and len(d["warnings"]) == 1 and "'龙泉市'" in d["warnings"][0]
    good = tmp_path / "good.yaml"
    good.write_text("name: good_ice\nversion: '1'\nforced_events:\n  - {year: 1, peril: ice_storm, counties: [庆元县], "
                    "severity: 1.0}\n", encoding="utf-8")
    code, out, err = _run(capsys, "validate", good, "--kind", "scenario", "--format", "json")
    assert code == 0 and json.loads(out)["warnings"] == []
