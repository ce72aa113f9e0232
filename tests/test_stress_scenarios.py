"""Stress scenarios: the library loads, bad files name the field, scenarios change exactly what they say."""

from __future__ import annotations

import numpy as np
import pytest

from finance_engine.stress.run import StressSettings, compare_runs, run_scenario, run_stress_test
from finance_engine.stress.scenarios import ScenarioError, load_scenario, scenario_library
from models.portfolio import validate_frame
from tests.conftest import make_frame

LIBRARY = {"baseline", "severe_fire_weather", "pine_wilt_epidemic", "ice_storm_2008", "super_typhoon",
           "carbon_price_crash", "transition_price_surge", "climate_trend_fire", "perfect_storm"}


def test_library_is_complete_and_hashed():
    names = set(scenario_library())
    assert LIBRARY <= names
    hashes = {load_scenario(n).sha256 for n in names}
    assert len(hashes) == len(names)
    assert load_scenario("baseline").is_baseline


def test_combination_merges_parts():
    ps = load_scenario("perfect_storm")
    perils = sorted(p for _, p, _ in ps.forced_events)
    assert perils == sorted(["fire", "drought", "ice_storm", "pine_wilt", "typhoon"])
    assert ps.price_scenario == "price_crash" and ps.climate_pathway == "warming"
    # the ice storm keeps its year (year 2 of the horizon -> 0-based 1)
    assert [y for y, p, _ in ps.forced_events if p == "ice_storm"] == [1]


def _write(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("body, field", [
    ("name: x\nversion: '1'\nhazard: {firee: 2.0}\n", "hazard"),
    ("name: x\nversion: '1'\nhazard: {fire: -1}\n", "hazard"),
    ("name: x\nversion: '1'\ngrowth: {0: 0.5}\n", "growth"),
    ("name: x\nversion: '1'\nforced_events: [{year: 2, peril: ice_storm, countys: [a]}]\n", "forced_events.0"),
    ("name: x\nversion: '1'\nforced_events: [{year: 0, peril: ice_storm}]\n", "forced_events.0.year"),
    ("name: x\nversion: '1'\nforced_events: [{year: 1, peril: typhoon}]\n", "forced_events.0.track"),
    # each numeric key in the range the peril applies, refused when the file is read (not after a baseline run)
    ("name: x\nversion: '1'\nforced_events: [{year: 2, peril: ice_storm, severity: -1}]\n",
     "forced_events.0.severity: forced_events['ice_storm']: key 'severity' = -1.0 must lie in (0.0, 5.0]"),
    ("name: x\nversion: '1'\nforced_events: [{year: 2, peril: typhoon, track: 5, intensity: 11}]\n",
     "forced_events.0.intensity"),
    ("name: x\nversion: '1'\nforced_events: [{year: 2, peril: pine_wilt, counties: [a], parcel_probability: 1.5}]\n",
     "forced_events.0.parcel_probability: forced_events['pine_wilt']: key 'parcel_probability' = 1.5 must lie in "
     "[0.0, 1.0]"),
    ("name: x\nversion: '1'\nforced_events: [{year: 2, peril: drought, severity: 0}]\n", "forced_events.0.severity"),
    ("name: x\nversion: '1'\nforced_events: [{year: 2, peril: fire, weather_factor: 2e4}]\n",
     "forced_events.0.weather_factor"),
    ("name: x\nversion: '1'\nprice: {scenario: moon}\n", "price.scenario"),
    ("name: x\nversion: '1'\nclimate_pathway: hot\n", "climate_pathway"),
    ("name: x\nversion: '1'\nconfidence: sure\n", "confidence"),
    ("name: x\nbogus: 1\nversion: '1'\n", "bogus"),
    ("version: '1'\n", "name"),
])
def test_bad_files_name_the_field_and_the_file(tmp_path, body, field):
    p = _write(tmp_path, body)
    with pytest.raises(ScenarioError) as e:
        load_scenario(p)
    msg = str(e.value)
    assert str(p) in msg and field in msg


def test_conflicting_combination_and_cycles(tmp_path):
    a = _write(tmp_path, "name: a\nversion: '1'\nprice: {scenario: net_zero}\nincludes: [carbon_price_crash]\n", "a.yaml")
    with pytest.raises(ScenarioError, match="price.scenario"):
        load_scenario(a)
    _write(tmp_path, "name: b\nversion: '1'\nincludes: [c.yaml]\n", "b.yaml")
    _write(tmp_path, "name: c\nversion: '1'\nincludes: [b.yaml]\n", "c.yaml")
    with pytest.raises(ScenarioError, match="cycle"):
        load_scenario(tmp_path / "b.yaml")


@pytest.fixture(scope="module")
def pf(params):
    return validate_frame(make_frame(150, seed=3), params, source="stress")


def test_baseline_vs_baseline_difference_is_exactly_zero(pf, params):
    st = StressSettings(years=3, paths=32, seed=11, levels=("portfolio", "county"))
    base = load_scenario("baseline")
    a = run_scenario(pf, params, base, st)
    b = run_scenario(pf, params, base, st)
    by, hz = compare_runs(a, b, st.levels, st.years, st.start_year, st.switches)
    assert (by.diff_mean == 0).all() and (by.diff_mc_se == 0).all()
    assert (hz.diff_mean == 0).all()


def test_forced_ice_storm_hits_only_the_named_counties(pf, params):
    # no cascades: a damaged stand would otherwise burn more easily later (still only in the named county)
    from dataclasses import replace

    st = StressSettings(years=3, paths=32, seed=5, levels=("portfolio", "county"))
    st = replace(st, switches=replace(st.switches, cascades=False))
    base = run_scenario(pf, params, load_scenario("baseline"), st)
    ice = run_scenario(pf, params, load_scenario("ice_storm_2008"), st)  # Longquan, Qingyuan, Suichang, Jingning
    labels = list(base.result.labels["county"])
    hit = [i for i, g in enumerate(labels) if g.endswith(("龙泉市", "遂昌县"))]
    other = [i for i, g in enumerate(labels) if g.endswith("莲都区")]
    assert hit and other
    for m in ("loss_ice_storm_tco2e", "stock_tco2e", "loss_tco2e"):
        b, s = base.result.paths_of(m, "county"), ice.result.paths_of(m, "county")
        # parcels elsewhere: identical on every path and year
        np.testing.assert_array_equal(b[:, :, other], s[:, :, other])
    b, s = base.result.paths_of("loss_ice_storm_tco2e", "county"), ice.result.paths_of("loss_ice_storm_tco2e", "county")
    np.testing.assert_array_equal(b[0], s[0])                 # year 1: nothing yet
    extra = (s[1] - b[1])[:, hit]
    assert (extra >= 0).all() and (extra.sum(axis=0) > 0).all()  # year 2: the storm hits both named counties


def test_events_beyond_the_run_are_noted(pf, params, tmp_path):
    """A forced event or price shock after the run's last year changes nothing: the result says so."""
    p = _write(tmp_path, "name: late\nversion: '1'\nforced_events: [{year: 5, peril: ice_storm, severity: 1.0}]\n"
                         "price: {shocks: [{year: 9, change: -0.5}]}\n")
    res = run_stress_test(pf, params, [str(p)], settings=StressSettings(years=3, paths=16, seed=1))
    assert "late: forced ice_storm in year 5 lies beyond the run's 3 simulated years (hit nothing)" in res.notes
    assert "late: the price shock in year 9 lies beyond the run's 3 simulated years (changed nothing)" in res.notes
    h = res.horizon[res.horizon.scenario == "late"]
    assert (h.diff_mean == 0).all()


def test_library_names_are_the_librarys_whatever_the_working_folder_holds(tmp_path, monkeypatch):
    """A bare library name, and a library file's include, resolve to the library even where the working folder
    holds a file of that name; a relative include resolves next to the including file first."""
    lib = load_scenario("ice_storm_2008")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ice_storm_2008").write_text("name: impostor\nversion: '1'\nhazard: {fire: 9}\n", encoding="utf-8")
    (tmp_path / "baseline").mkdir()
    assert load_scenario("ice_storm_2008").sha256 == lib.sha256
    assert load_scenario("baseline").is_baseline
    assert load_scenario("perfect_storm").name == "perfect_storm"  # a library file with includes
    sub = tmp_path / "mine"
    sub.mkdir()
    (sub / "part.yaml").write_text("name: part\nversion: '1'\nhazard: {fire: 2}\n", encoding="utf-8")
    (tmp_path / "part.yaml").write_text("name: other\nversion: '1'\nhazard: {fire: 5}\n", encoding="utf-8")
    (sub / "top.yaml").write_text("name: top\nversion: '1'\nincludes: [part.yaml]\n", encoding="utf-8")
    top = load_scenario(sub / "top.yaml")
    assert top.describe()["hazard"] == load_scenario(sub / "part.yaml").describe()["hazard"]
