"""Fire peril: exact probabilities, loss given burn, shared fire weather, forced years, Lishui magnitudes."""

from __future__ import annotations

import numpy as np
import pytest

from models.dynamics import ForestSimulator, Modifiers, SimulationSwitches
from models.perils.fire import Fire
from models.rng import KeyedRandom
from tests.weather_support import (context, lishui_like_portfolio, run_losses, sourced, stand, uniform_portfolio,
                             with_params)


def fir_flammability(params):
    return params.species("chinese_fir").traits.flammability.value


def test_burn_probability_is_the_product_of_its_factors(params):
    pf = uniform_portfolio(params, 60, counties=["莲都区", "龙泉市"])
    fire = Fire(params.perils["fire"], params, pf)
    fp = params.perils["fire"]
    ctx = context(pf, 4, independent=True)  # weather factor at its mean 1
    expected = fp.base_burn_probability_per_year.value * fir_flammability(params) * 1.0  # basic protection
    np.testing.assert_allclose(fire.burn_probability(ctx), expected, rtol=1e-12)
    # drought, cascades, climate hazard (per path) and protection each multiply
    st = stand(4, pf, fire_multiplier=2.0)
    drought = np.array([True, False, True, False])
    ctx = context(pf, 4, independent=True, st=st, drought=drought, hazard={"fire": np.array([1.0, 1.0, 3.0, 3.0])})
    mult = np.where(drought, fp.drought_multiplier.value, 1.0) * np.array([1.0, 1.0, 3.0, 3.0]) * 2.0
    np.testing.assert_allclose(fire.burn_probability(ctx), np.broadcast_to(expected * mult[:, None], (4, 60)),
                               rtol=1e-6)
    for level, key in (("none", "none"), ("enhanced", "enhanced")):
        pf2 = uniform_portfolio(params, 10, fire_protection=level)
        f2 = Fire(params.perils["fire"], params, pf2)
        m = params.file.management["fire_protection"][key].value
        np.testing.assert_allclose(f2.burn_probability(context(pf2, 2, independent=True)), expected * m, rtol=1e-12)
    # young stands burn more easily; stands waiting for replanting cannot burn
    young = uniform_portfolio(params, 10, age=3)
    fy = Fire(params.perils["fire"], params, young)
    np.testing.assert_allclose(fy.burn_probability(context(young, 2, independent=True)),
                               expected * fp.young_burn_multiplier.value, rtol=1e-12)
    st = stand(2, young, age=-1.0)
    assert not fy.burn_probability(context(young, 2, independent=True, st=st)).any()


def test_step_burns_exactly_where_uniform_below_probability(params):
    pf = lishui_like_portfolio(params, 300)
    fire = Fire(params.perils["fire"], params, pf)
    st = stand(50, pf, fire_multiplier=2.0, year=3)
    st.weakened_until[:, 1::7] = 2  # closed last year
    st.weakened_until[:, 2::7] = -1
    st.weakened_until[:, 3::7] = 5  # open until year 5
    ctx = context(pf, 50, year=3, st=st, drought=np.arange(50) % 5 == 0, forced={"fire": [{"weather_factor": 40.0}]})
    pl = fire.step(ctx, None)
    u = ctx.rnd.parcel_uniform("fire.hazard", 3)
    p, q = np.nonzero(u < fire.burn_probability(ctx))
    assert len(pl) == p.size > 100
    np.testing.assert_array_equal(pl.path_pos, p)
    np.testing.assert_array_equal(pl.parcel_pos, q)
    # each fire its own event: running number within the path
    for path in np.unique(pl.path_pos)[:5]:
        np.testing.assert_array_equal(pl.event[pl.path_pos == path], np.arange((pl.path_pos == path).sum()))


def test_step_with_drawn_weather_burns_exactly_where_uniform_below_probability(params, monkeypatch):
    """Without a forced year the step screens with a bound of each path's county weather and computes
    the exact factors only at the screened pairs: the same burns as the dense definition, and ndtri
    runs on far fewer numbers than paths x counties."""
    import models.perils.fire as fire_mod

    pf = lishui_like_portfolio(params, 400)
    fire = Fire(params.perils["fire"], params, pf)
    assert len(fire.county_labels) == 9
    calls = []
    real = fire_mod.ndtri
    monkeypatch.setattr(fire_mod, "ndtri", lambda u: (calls.append(np.size(u)), real(u))[1])
    n_paths = 200
    for year, hazard in ((3, 150.0), (4, np.linspace(1.0, 400.0, n_paths)), (5, 1.0)):
        st = stand(n_paths, pf, fire_multiplier=2.0, year=year)
        st.weakened_until[:, 1::3] = -1
        ctx = context(pf, n_paths, year=year, st=st, drought=np.arange(n_paths) % 4 == 0,
                      hazard={"fire": hazard})
        calls.clear()
        pl = fire.step(ctx, None)
        assert sum(calls) <= n_paths * 10  # once per path for the bound, at most once per path and county
        if np.isscalar(hazard) and hazard == 1.0:
            assert sum(calls) < n_paths * 9 / 4  # an ordinary year: far fewer than paths x counties
        u = ctx.rnd.parcel_uniform("fire.hazard", year)
        p, q = np.nonzero(u < fire.burn_probability(ctx))
        assert len(pl) == p.size > 5
        np.testing.assert_array_equal(pl.path_pos, p)
        np.testing.assert_array_equal(pl.parcel_pos, q)


def test_long_run_burn_rate_and_its_spread_match_the_weather_model(params):
    """E[W] = 1: the mean burn rate over many weather years equals b x flammability, and the variance
    of the yearly city rate is the closed form p^2 Var(W_bar) + binomial noise."""
    counties = ["莲都区", "龙泉市", "遂昌县"]
    pf = uniform_portfolio(params, 300, counties=counties)
    fire = with_params(Fire, params, pf, base_burn_probability_per_year=sourced(0.01))
    fp = params.perils["fire"]
    p = 0.01 * fir_flammability(params)
    n_paths, years = 2000, 10
    rates = np.concatenate([np.bincount(fire.step(context(pf, n_paths, year=y), None).path_pos, minlength=n_paths)
                            for y in range(years)]) / pf.n_parcels
    se = rates.std(ddof=1) / np.sqrt(rates.size)
    assert abs(rates.mean() - p) < 4 * se
    # W = city x county, lognormal with mean 1: Var(mean W over parcels) in closed form
    sc2, sk2 = fp.city_weather_log_sd.value ** 2, fp.county_weather_log_sd.value ** 2
    w = pf.frame["county"].value_counts(normalize=True).to_numpy()
    var_wbar = np.exp(sc2) * (1 + np.expm1(sk2) * (w ** 2).sum()) - 1
    e_w2 = np.exp(sc2 + sk2)
    var_expected = p * p * var_wbar + (p - p * p * e_w2) / pf.n_parcels
    dev = (rates - rates.mean()) ** 2
    se_var = dev.std(ddof=1) / np.sqrt(rates.size)
    assert abs(rates.var(ddof=1) - var_expected) < 4 * se_var
    # shared weather: the spread of yearly city rates is far above binomial noise
    assert rates.var() > 3 * p * (1 - p) / pf.n_parcels


def test_loss_given_burn_by_class_and_severity(params):
    fp = params.perils["fire"]
    area = fp.burned_area_fraction.mean
    cases = [("chinese_fir", 30.0, fp.loss_given_burn["conifer"]), ("evergreen_broadleaf", 30.0,
             fp.loss_given_burn["broadleaf"]), ("masson_pine", 4.0, fp.loss_given_burn["young"])]
    for species, age, lgb in cases:
        pf = uniform_portfolio(params, 400, species=species, age=age)
        fire = Fire(fp, params, pf)
        pl = fire.step(context(pf, 200, forced={"fire": [{"weather_factor": 1000.0}]}), None)
        assert len(pl) > 1000
        f = pl.loss_fraction
        assert abs(f.mean() - area * lgb.mean) < 4 * f.std() / np.sqrt(f.size)
        assert f.min() >= fp.burned_area_fraction.low * lgb.low - 1e-12
        assert f.max() <= fp.burned_area_fraction.high * lgb.high + 1e-12
        thr = params.file.regeneration.stand_replacing_loss_fraction.value
        np.testing.assert_array_equal(pl.stand_replacing, f >= thr)
    # severity x2 on conifer U(0.3, 0.7): E[min(1, 2c)] = 0.5 * 0.8 + 0.5 * 1 = 0.9 (closed form)
    pf = uniform_portfolio(params, 400)
    fire = Fire(fp, params, pf)
    pl = fire.step(context(pf, 200, forced={"fire": [{"weather_factor": 1000.0}]}, severity={"fire": 2.0}), None)
    f = pl.loss_fraction
    assert abs(f.mean() - area * 0.9) < 4 * f.std() / np.sqrt(f.size)


def test_forced_fire_year_only_in_named_counties_and_validation(params):
    pf = uniform_portfolio(params, 90, counties=["莲都区", "龙泉市", "庆元县"])
    fire = Fire(params.perils["fire"], params, pf)
    base = fire.burn_probability(context(pf, 3, independent=True))
    forced = fire.burn_probability(context(pf, 3, independent=True,
                                           forced={"fire": [{"weather_factor": 3.0, "counties": ["龙泉市"]}]}))
    inside = (pf.frame["county"] == "龙泉市").to_numpy()
    np.testing.assert_allclose(forced[:, inside], 3.0 * base[:, inside])
    np.testing.assert_allclose(forced[:, ~inside], base[:, ~inside])
    for bad, key in (({"weather": 3.0}, "weather"), ({}, "weather_factor"), ({"weather_factor": -1.0}, "weather_factor"),
                     ({"weather_factor": "high"}, "weather_factor"), ({"weather_factor": 2.0, "counties": "龙泉市"},
                                                                     "counties")):
        with pytest.raises(ValueError, match=key):
            fire.step(context(pf, 2, forced={"fire": [bad]}), None)


def test_bad_fire_years_hit_many_parcels_at_once(params):
    """City-wide annual burned count: variance with shared weather far above the independent runs."""
    pf = lishui_like_portfolio(params, 400)
    fire = with_params(Fire, params, pf, base_burn_probability_per_year=sourced(0.02))
    counts = {}
    for indep in (False, True):
        c = [np.bincount(fire.step(context(pf, 1000, year=y, independent=indep), None).path_pos, minlength=1000)
             for y in range(6)]
        counts[indep] = np.concatenate(c).astype(float)
    mean_c, mean_i = counts[False].mean(), counts[True].mean()
    se = np.hypot(counts[False].std() / np.sqrt(6000), counts[True].std() / np.sqrt(6000))
    assert abs(mean_c - mean_i) < 4 * se  # same marginal probability
    # independent parcels: variance = sum p(1-p) <= mean; shared weather: var(W) = exp(s_c^2) - 1 on top
    assert counts[True].var() < 1.1 * mean_i
    assert counts[False].var() > 4 * counts[True].var()


def test_lishui_defaults_give_published_burned_fraction(params):
    """Zhejiang: burned forest about 0.01-0.12 % of area per year (domain_parameters.md §4.1, §Validation 4)."""
    pf = lishui_like_portfolio(params, 1500, seed=3)
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("drought", "fire")))
    n_paths, years = 64, 30
    df = run_losses(sim, KeyedRandom(11, np.arange(n_paths), pf.keys), years)
    fires = df[df.peril == "fire"]
    area = pf.area_ha
    # burned area share: the fire model's burned-area draw is the first factor of the loss; use its mean
    burned_share = len(fires) and (area[fires.parcel].sum() * params.perils["fire"].burned_area_fraction.mean
                                   / (area.sum() * n_paths * years))
    assert 1e-4 <= burned_share <= 1.2e-3
    # and the carbon lost to fire in a decade is well under 1 % of stock
    c0 = sim.initial_carbon_tc_per_ha()
    lost = (fires.lost_tc_per_ha.to_numpy() * area[fires.parcel]).sum() / n_paths
    assert lost / years * 10 < 0.01 * (c0 * area).sum()


def test_fire_regrowth_after_stand_replacing_burn(params):
    pf = uniform_portfolio(params, 50, age=4)  # young: loss 0.8-1.0 of burned area, often stand-replacing
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("fire",)),
                          modifiers=Modifiers(forced_events={0: {"fire": [{"weather_factor": 2000.0}]}}))
    outs = list(sim.run(KeyedRandom(5, np.arange(8), pf.keys), 2))
    _, pl, lost = outs[0].losses[0]
    assert pl.stand_replacing.any()
    pp, qq = pl.path_pos[pl.stand_replacing], pl.parcel_pos[pl.stand_replacing]
    # a replaced stand loses its whole stock and does not grow while it waits to be replanted
    np.testing.assert_allclose(lost[pl.stand_replacing], outs[0].carbon_start_tc_per_ha[pp, qq]
                               + outs[0].growth_tc_per_ha[pp, qq] - outs[0].mortality_tc_per_ha[pp, qq], rtol=1e-9)
    assert np.all(outs[1].carbon_end_tc_per_ha[pp, qq] == 0.0)
