"""Ice storm peril: frequency, 2008-like damage, vulnerability, forced storms by county, correlation."""

from __future__ import annotations

import numpy as np
import pytest

from models.dynamics import ForestSimulator, Modifiers, SimulationSwitches
from models.perils.ice_storm import IceStorm
from models.rng import KeyedRandom
from tests.weather_support import context, lishui_like_portfolio, run_losses, uniform_portfolio


def test_storm_frequency_is_one_in_fifty(params):
    ip = params.perils["ice_storm"]
    assert ip.annual_probability.value == pytest.approx(1 / 50)
    pf = uniform_portfolio(params, 20)
    ice = IceStorm(ip, params, pf)
    n_paths, years = 5000, 20
    storm = np.concatenate([np.bincount(ice.step(context(pf, n_paths, year=y), None).path_pos, minlength=n_paths) > 0
                            for y in range(years)])
    # a storm year damages at least one of 20 parcels unless all 20 escape (0.15^20, negligible)
    p = ip.annual_probability.value
    assert abs(storm.mean() - p) < 4 * np.sqrt(p * (1 - p) / storm.size)


def test_2008_like_storm_removes_20_to_30_percent_in_hit_stands(params):
    """Validation target 5 (domain_parameters.md): 25-66 % of stems damaged, 20-30 % volume lost."""
    ip = params.perils["ice_storm"]
    # closed form for an average stand (V = 1: mixed conifer-broadleaf, 750 m, reference density)
    elev = ip.elevation_threshold_m.value + 100 * (1 - ip.elevation_low_factor.value) / ip.elevation_gain_per_100m.value
    pf = uniform_portfolio(params, 400, species="mixed_conifer_broadleaf", elevation_m=elev)
    ice = IceStorm(ip, params, pf)
    ctx = context(pf, 100, hazard={"ice_storm": 0.0}, forced={"ice_storm": [{"severity": 1.0}]})
    ctx.stand.carbon_tc_per_ha[:] = ip.density_reference_tc_per_ha.value
    pl = ice.step(ctx, None)
    hit_share = len(pl) / (100 * 400)
    h = ip.parcel_hit_probability.value
    assert abs(hit_share - h) < 4 * np.sqrt(h * (1 - h) / (100 * 400))
    f = pl.loss_fraction
    expected = ip.stem_damage.mean * ip.volume_loss_per_damaged_stem.value
    assert abs(f.mean() - expected) < 4 * f.std() / np.sqrt(f.size)
    stems = f / ip.volume_loss_per_damaged_stem.value
    assert 0.25 - 1e-9 <= stems.min() and stems.max() <= 0.66 + 1e-9
    # a Lishui-like mix of species, elevations and densities
    pf = lishui_like_portfolio(params, 2000, seed=4)
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("ice_storm",)),
                          modifiers=Modifiers(forced_events={0: {"ice_storm": [{"severity": 1.0}]}},
                                              hazard={"ice_storm": 0.0}))
    df = run_losses(sim, KeyedRandom(2, np.arange(16), pf.keys), 1)
    w = pf.area_ha[df.parcel] * (df.lost_tc_per_ha / df.fraction)  # carbon stock of the hit stands
    mean_loss = (df.fraction * w).sum() / w.sum()
    assert 0.20 <= mean_loss <= 0.30


def test_vulnerability_by_species_elevation_and_density(params):
    ip = params.perils["ice_storm"]
    means = {}
    for sp, elev, carbon in (("chinese_fir", 300.0, 40.0), ("hard_broadleaf", 300.0, 40.0),
                             ("chinese_fir", 1000.0, 40.0), ("chinese_fir", 300.0, 15.0)):
        pf = uniform_portfolio(params, 300, species=sp, elevation_m=elev)
        ice = IceStorm(ip, params, pf)
        ctx = context(pf, 60, hazard={"ice_storm": 0.0}, forced={"ice_storm": [{"severity": 0.5}]})
        ctx.stand.carbon_tc_per_ha[:] = carbon
        f = ice.step(ctx, None).loss_fraction
        # severity 0.5 keeps U x S x V below 1 here: E[loss] = E[U] S V x volume share (closed form)
        ef = min(ip.elevation_low_factor.value + ip.elevation_gain_per_100m.value
                 * max(elev - ip.elevation_threshold_m.value, 0) / 100, ip.elevation_max_factor.value)
        df = np.clip((carbon / ip.density_reference_tc_per_ha.value) ** ip.density_exponent.value,
                     ip.density_factor_min.value, ip.density_factor_max.value)
        v = params.species(sp).traits.ice_vulnerability.value * ef * df
        expected = ip.stem_damage.mean * 0.5 * v * ip.volume_loss_per_damaged_stem.value
        assert abs(f.mean() - expected) < 4 * f.std() / np.sqrt(f.size)
        means[(sp, elev, carbon)] = f.mean()
    assert means[("chinese_fir", 300.0, 40.0)] > means[("hard_broadleaf", 300.0, 40.0)]
    assert means[("chinese_fir", 1000.0, 40.0)] > means[("chinese_fir", 300.0, 40.0)]
    assert means[("chinese_fir", 300.0, 15.0)] < means[("chinese_fir", 300.0, 40.0)]


def test_forced_storm_hits_only_the_named_counties(params):
    counties = ["莲都区", "龙泉市", "庆元县", "遂昌县"]
    pf = uniform_portfolio(params, 400, counties=counties)
    mods = Modifiers(forced_events={1: {"ice_storm": [{"counties": ["龙泉市", "庆元县"], "severity": 1.0}]}},
                     hazard={"ice_storm": 0.0})
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("ice_storm",)), modifiers=mods)
    df = run_losses(sim, KeyedRandom(9, np.arange(20), pf.keys), 3)
    assert set(df.year) == {1}
    hit_counties = set(pf.frame["county"].to_numpy()[df.parcel])
    assert hit_counties == {"龙泉市", "庆元县"}
    named = pf.frame["county"].isin(["龙泉市", "庆元县"]).to_numpy()
    h = params.perils["ice_storm"].parcel_hit_probability.value
    n = named.sum() * 20
    assert abs(len(df) / n - h) < 4 * np.sqrt(h * (1 - h) / n)


def test_forced_ice_storm_validation(params):
    pf = uniform_portfolio(params, 5)
    ice = IceStorm(params.perils["ice_storm"], params, pf)
    for bad, key in (({"county": ["龙泉市"]}, "county"), ({"counties": "龙泉市"}, "counties"),
                     ({"counties": []}, "counties"), ({"severity": -1}, "severity"), ({"severity": True}, "severity")):
        with pytest.raises(ValueError, match=key):
            ice.step(context(pf, 2, forced={"ice_storm": [bad]}), None)


def test_city_wide_storm_correlates_losses(params):
    pf = lishui_like_portfolio(params, 200, seed=5)
    ice = IceStorm(params.perils["ice_storm"], params, pf)
    n_paths, years = 2000, 10
    city = {}
    for indep in (False, True):
        city[indep] = np.concatenate([
            np.bincount((pl := ice.step(context(pf, n_paths, year=y, independent=indep), None)).path_pos,
                        weights=pl.loss_fraction, minlength=n_paths) for y in range(years)])
    a, b = city[False], city[True]
    assert abs(a.mean() - b.mean()) < 4 * np.hypot(a.std(), b.std()) / np.sqrt(a.size)
    assert a.var() > 20 * b.var()
