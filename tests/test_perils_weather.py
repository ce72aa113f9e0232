"""Weather perils together: parameter blocks, climate pathways, cascades, block invariance, correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from models.dynamics import ForestSimulator, Modifiers, SimulationSwitches
from models.parameters import ParameterError, load_parameters, resolve_parameter_path
from models.perils import peril_classes
from models.rng import KeyedRandom
from tests.weather_support import lishui_like_portfolio, run_losses, uniform_portfolio

WEATHER = ("drought", "fire", "typhoon", "ice_storm")


def test_weather_perils_are_registered_in_order(params):
    classes = peril_classes()
    for name in WEATHER:
        assert name in classes and params.perils[name].enabled
    orders = [classes[n].order for n in WEATHER]
    assert orders == sorted(orders) and len(set(c.code for c in classes.values())) == len(classes)


def test_climate_pathways(params):
    climate = params.perils["climate"]
    cur, warm = climate.pathways["current"], climate.pathways["warming"]
    for peril in WEATHER:
        for year in (2026, 2050, 2100):
            assert cur.multiplier("hazard", peril, year) == 1.0
            assert cur.multiplier("severity", peril, year) == 1.0
    assert warm.source == "anderegg_2022"
    assert warm.multiplier("hazard", "fire", 2050) == pytest.approx(1.3, abs=0.05)
    assert 2.0 <= warm.multiplier("hazard", "fire", 2100) <= 4.0
    assert warm.multiplier("hazard", "drought", 2100) > 1.0


def test_warming_pathway_multiplies_fire_frequency_in_the_simulator(params):
    pf = uniform_portfolio(params, 200)
    counts = {}
    for pathway in ("current", "warming"):
        mods = Modifiers(climate_pathway=pathway, forced_events={0: {"fire": [{"weather_factor": 50.0}]}})
        sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("fire",)), modifiers=mods,
                              start_year=2100)
        out = next(sim.run(KeyedRandom(4, np.arange(300), pf.keys), 1))
        counts[pathway] = len(out.losses[0][1])
    m = params.perils["climate"].pathways["warming"].multiplier("hazard", "fire", 2100)
    ratio = counts["warming"] / counts["current"]
    assert abs(ratio - m) < 4 * m * np.sqrt(1 / counts["warming"] + 1 / counts["current"])


def test_severity_multiplier_is_capped_at_total_loss(params):
    pf = uniform_portfolio(params, 100, species="moso_bamboo", elevation_m=1200.0)
    mods = Modifiers(severity={"ice_storm": 50.0}, hazard={"ice_storm": 0.0},
                     forced_events={0: {"ice_storm": [{"severity": 1.0}]}})
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("ice_storm",)), modifiers=mods)
    df = run_losses(sim, KeyedRandom(1, np.arange(4), pf.keys), 1)
    assert len(df) > 0 and df.fraction.max() == 1.0 and df.stand_replacing.all()


def test_breakage_raises_fire_risk_through_cascades(params):
    pf = uniform_portfolio(params, 300, species="chinese_fir", elevation_m=900.0)
    cas = params.perils["cascades"]
    assert cas.breakage_perils == ["typhoon", "ice_storm"]
    mult = cas.fire_multiplier.value
    ratios = {}
    for cascades in (True, False):
        mods = Modifiers(hazard={"ice_storm": 0.0, "typhoon": 0.0},
                         forced_events={0: {"ice_storm": [{"severity": 1.2}]}, 1: {"fire": [{"weather_factor": 300.0}]}})
        sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("fire", "ice_storm"), cascades=cascades),
                              modifiers=mods)
        df = run_losses(sim, KeyedRandom(8, np.arange(200), pf.keys), 2)
        ice = df[(df.peril == "ice_storm") & (df.fraction >= cas.damage_threshold.value)]
        damaged = np.zeros((200, pf.n_parcels), dtype=bool)
        damaged[ice.path, ice.parcel] = True
        fire = df[(df.peril == "fire") & (df.year == 1)]
        burned = np.zeros_like(damaged)
        burned[fire.path, fire.parcel] = True
        n_d, n_u = damaged.sum(), (~damaged).sum()
        assert n_d > 1000 and n_u > 1000
        b_d, b_u = burned[damaged].sum(), burned[~damaged].sum()
        ratios[cascades] = (b_d / n_d) / (b_u / n_u), np.sqrt(1 / b_d + 1 / b_u)
    r, rel = ratios[True]
    assert abs(r - mult) < 4 * mult * rel
    r, rel = ratios[False]
    assert abs(r - 1.0) < 4 * rel


def test_a_breakage_opens_its_cascade_window_from_the_next_year(params, monkeypatch):
    """Pairs broken in year 1 are weakened in years 2 .. 1 + window, for every peril; a peril later in
    the storm's own year (pine wilt) still sees the stand as the year began."""
    from models.perils.ice_storm import IceStorm
    from models.perils.pine_wilt import PineWilt

    pf = uniform_portfolio(params, 200, species="masson_pine", elevation_m=900.0)
    cas = params.perils["cascades"]
    window = int(cas.years.value)
    seen, broken = {}, {}
    ice_step, pest_step = IceStorm.step, PineWilt.step

    def ice(self, ctx, state):
        pl = ice_step(self, ctx, state)
        hit = np.clip(pl.loss_fraction, 0.0, 1.0) >= cas.damage_threshold.value
        broken[ctx.year] = (pl.path_pos[hit], pl.parcel_pos[hit])
        return pl

    def pest(self, ctx, state):
        assert ctx.stand.year == ctx.year
        seen[ctx.year] = (ctx.stand.weakened(), ctx.stand.pest_multiplier_at())
        return pest_step(self, ctx, state)

    monkeypatch.setattr(IceStorm, "step", ice)
    monkeypatch.setattr(PineWilt, "step", pest)
    mods = Modifiers(hazard={"ice_storm": 0.0}, forced_events={1: {"ice_storm": [{"severity": 1.2}]}})
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("ice_storm", "pine_wilt")), modifiers=mods)
    n_paths = 20
    run_losses(sim, KeyedRandom(3, np.arange(n_paths), pf.keys), window + 3)
    expected = np.zeros((n_paths, pf.n_parcels), dtype=bool)
    expected[broken[1]] = True
    assert 0 < expected.sum() < expected.size and not any(broken[y][0].size for y in broken if y != 1)
    pest_weak = np.float32(cas.pest_multiplier.value)
    for year, (weak, mult) in seen.items():
        want = expected if 2 <= year <= 1 + window else np.zeros_like(expected)
        np.testing.assert_array_equal(weak, want, err_msg=f"year {year}")
        assert mult.dtype == np.float32
        np.testing.assert_array_equal(mult, np.where(want, pest_weak, np.float32(1.0)))
    assert sorted(seen) == list(range(window + 3))


def test_results_do_not_depend_on_how_paths_are_split(params):
    pf = lishui_like_portfolio(params, 150, seed=6)
    mods = Modifiers(hazard={"ice_storm": 20.0, "typhoon": 3.0, "drought": 4.0, "fire": 20.0})
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=WEATHER), modifiers=mods)
    whole = run_losses(sim, KeyedRandom(21, np.arange(12), pf.keys), 6)
    parts = []
    for ids in (np.arange(0, 5), np.arange(5, 12)):
        df = run_losses(sim, KeyedRandom(21, ids, pf.keys), 6)
        df["path"] = ids[df.path.to_numpy()]
        parts.append(df)
    split = pd.concat(parts).sort_values(["year", "peril", "path", "parcel"]).reset_index(drop=True)
    whole = whole.sort_values(["year", "peril", "path", "parcel"]).reset_index(drop=True)
    assert set(whole.peril) == set(WEATHER)
    pd.testing.assert_frame_equal(whole, split)


def test_city_loss_variance_far_above_independent_parcels(params):
    """All weather perils together: storms and fire weather make the annual city loss fat-tailed."""
    pf = lishui_like_portfolio(params, 300, seed=7)
    n_paths, years = 256, 15
    city = {}
    for indep in (False, True):
        sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=WEATHER, independent=indep,
                                                                      parameter_uncertainty=False))
        df = run_losses(sim, KeyedRandom(13, np.arange(n_paths), pf.keys), years)
        tot = np.zeros((years, n_paths))
        np.add.at(tot, (df.year.to_numpy(), df.path.to_numpy()), df.lost_tc_per_ha.to_numpy() * pf.area_ha[df.parcel])
        city[indep] = tot.ravel()
    a, b = city[False], city[True]
    assert abs(a.mean() - b.mean()) < 4 * np.hypot(a.std(), b.std()) / np.sqrt(a.size)
    assert a.var() > 10 * b.var()
    assert np.quantile(a, 0.995) > 3 * np.quantile(b, 0.995)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["perils"]["fire"]["fuel_class"].pop("oaks"), "fuel_class lacks species"),
    (lambda d: d["perils"]["fire"]["loss_given_burn"]["conifer"].update(low=0.9, high=0.2), "low <= high"),
    (lambda d: d["perils"]["typhoon"].update(annual_rate={"value": -1, "source": "domain_doc",
                                                          "confidence": "assumption"}), "annual_rate"),
    (lambda d: d["perils"]["ice_storm"].update(colour="blue"), "colour"),
    (lambda d: d["perils"]["drought"]["mortality"].update(high=1.5), "mortality"),
])
def test_bad_weather_parameters_are_rejected(tmp_path, edit, message):
    data = yaml.safe_load(resolve_parameter_path("lishui").read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ParameterError, match=message):
        load_parameters(path)
