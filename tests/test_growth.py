"""Stand growth against yield-table magnitudes and closed forms (domain_parameters.md section 2)."""

import numpy as np
import pytest

from models.dynamics import ForestSimulator, SimulationSwitches
from models.growth import (
    bamboo_logistic_step,
    bamboo_step,
    chapman_richards_increment,
    chapman_richards_volume,
    grow_relative_maturity,
    relative_maturity,
)
from models.portfolio import validate_frame
from models.rng import KeyedRandom
from tests.conftest import make_frame


def _growth(params, sid):
    g = params.species(sid).growth
    return g.asymptote_m3_per_ha, g.rate_per_year, g.shape


def test_chinese_fir_mai_at_rotation_in_published_range(params):
    a, k, c = _growth(params, "chinese_fir")
    # MAI at rotation 8-15 m3/ha/yr (good sites 15-20) for rotation 20-30 yr
    for site, lo, hi in (("II", 8, 15), ("I", 12, 20)):
        mai = chapman_richards_volume(25, a[site], k, c) / 25
        assert lo <= mai <= hi, (site, mai)
    # current annual increment peaks at ln(c)/k, between 10 and 15 years
    t_star = np.log(c) / k
    assert 10 <= t_star <= 15
    ages = np.arange(1, 60)
    assert ages[np.argmax(chapman_richards_increment(ages, a["II"], k, c))] == pytest.approx(t_star, abs=1)


def test_masson_pine_mai_in_published_range(params):
    a, k, c = _growth(params, "masson_pine")
    mai = chapman_richards_volume(30, a["II"], k, c) / 30
    assert 5 <= mai <= 10


def test_asymptotes_within_yield_table_ranges(params):
    a, _, _ = _growth(params, "chinese_fir")
    assert 380 <= a["I"] <= 450 and 250 <= a["II"] <= 330 and 150 <= a["III"] <= 220


def test_maturity_step_is_exact_on_the_curve():
    a, k, c = 300.0, 0.085, 2.6
    v10 = chapman_richards_volume(10, a, k, c)
    u = relative_maturity(v10, a, c)
    u11 = grow_relative_maturity(u, k, 1.0)
    assert a * u11**c == pytest.approx(chapman_richards_volume(11, a, k, c), rel=1e-12)


def test_bamboo_logistic_step_closed_form():
    # exact logistic solution toward the managed level
    c0, m, r = 10.0, 40.0, 0.35
    c1 = bamboo_logistic_step(np.array([c0]), m, r, 1.0)[0]
    assert c1 == pytest.approx(m / (1 + (m / c0 - 1) * np.exp(-r)))
    # a stand above its managed level declines toward it
    assert m < bamboo_logistic_step(np.array([50.0]), m, r, 1.0)[0] < 50.0
    # an established stand gains exactly the management drift
    assert bamboo_step(np.array([m]), m, 0.54, 77.5, r, 1.0)[0] == pytest.approx(m + 0.54)
    assert bamboo_step(np.array([77.0]), 77.0, 0.54, 77.5, r, 1.0)[0] == pytest.approx(77.5)


def test_established_moso_bamboo_sinks_about_half_a_tonne_carbon(params):
    # Zhejiang NFI 2009-14: +0.54-0.59 Mg C/ha/yr net culm stock (Xu et al. 2017)
    df = make_frame(20, species=["moso_bamboo"])
    df["age_years"] = 30
    pf = validate_frame(df, params)
    sim = ForestSimulator(params, pf)
    sink = sim.expected_annual_sink_tc_per_ha()
    assert np.all((0.5 <= sink) & (sink <= 0.6)), sink


def test_deterministic_simulation_follows_the_yield_curve(params):
    df = make_frame(30, species=["chinese_fir", "masson_pine", "oaks"])
    pf = validate_frame(df, params)
    sw = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False,
                            background_mortality=False, perils=())
    sim = ForestSimulator(params, pf, switches=sw)
    rnd = KeyedRandom(1, np.arange(2), pf.keys)
    outs = list(sim.run(rnd, 5))
    t = params.tables
    sc = pf.species_code
    a = t.asymptote_m3_per_ha[sc, pf.site_code]
    k, c = t.growth_rate_per_year[sc], t.growth_shape[sc]
    v = chapman_richards_volume(pf.age_years + 5, a, k, c)
    expected = sim.factors.tc_per_ha(v)
    np.testing.assert_allclose(outs[-1].carbon_end_tc_per_ha[0], expected, rtol=1e-10)
    np.testing.assert_array_equal(outs[-1].carbon_end_tc_per_ha[0], outs[-1].carbon_end_tc_per_ha[1])


def test_measured_volume_rescales_productivity(params):
    df = make_frame(1, species=["chinese_fir"])
    df["age_years"] = 20
    df["site_class"] = "II"
    df["volume_m3_per_ha"] = 100.0
    pf = validate_frame(df, params)
    sim = ForestSimulator(params, pf)
    assert sim.growth.initial_volume_m3_per_ha[0] == pytest.approx(100.0)
    a, k, c = _growth(params, "chinese_fir")
    curve = chapman_richards_volume(20, a["II"], k, c)
    assert sim.growth.measured_scale[0] == pytest.approx(100.0 / curve)


def test_growth_uncertainty_levels_are_mean_one(params):
    # the three multiplicative noise levels have mean 1: averaged over many paths, year-1 growth is
    # close to the deterministic increment
    df = make_frame(50, species=["chinese_fir"])
    pf = validate_frame(df, params)
    full = ForestSimulator(params, pf, switches=SimulationSwitches(background_mortality=False, perils=()))
    det = ForestSimulator(params, pf, switches=SimulationSwitches(
        parameter_uncertainty=False, growth_shocks=False, parcel_noise=False, background_mortality=False, perils=()))
    rnd = KeyedRandom(3, np.arange(4000), pf.keys)
    g_full = next(full.run(rnd, 1)).growth_tc_per_ha.sum(axis=1)
    g_det = next(det.run(KeyedRandom(3, np.arange(1), pf.keys), 1)).growth_tc_per_ha.sum()
    se = g_full.std() / np.sqrt(g_full.size)
    # parameter draws are shared by sets of 4 paths; allow for that with a wider band
    assert abs(g_full.mean() - g_det) < 4 * se * 2


def test_clear_fell_at_rotation_age(params):
    from finance_engine.simulation import simulate

    df = make_frame(3, species=["chinese_fir"])
    df["age_years"] = 20
    df["site_class"] = "II"
    df["rotation_age_years"] = [25, 30, None]
    pf = validate_frame(df, params)
    sw = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False,
                            background_mortality=False, perils=())
    sim = ForestSimulator(params, pf, switches=sw)
    outs = list(sim.run(KeyedRandom(1, np.arange(1), pf.keys), 12))
    a, k, c = _growth(params, "chinese_fir")
    f = sim.factors.tc_per_ha
    # the parcel with rotation 25 is felled at the end of year index 4 (age 25) and replanted
    hp, hq, hv = outs[4].harvest
    felled = pf.frame.parcel_id.iloc[hq].tolist()
    assert felled == [pf.frame.parcel_id[pf.frame.rotation_age_years == 25].iloc[0]]
    assert hv[0] == pytest.approx(f(np.array([chapman_richards_volume(25, a["II"], k, c)]))[0], rel=1e-9)
    q = hq[0]
    assert outs[4].carbon_end_tc_per_ha[0, q] == 0.0
    assert outs[5].carbon_end_tc_per_ha[0, q] == pytest.approx(f(np.array([chapman_richards_volume(1, a["II"], k, c)]))[0])
    # the engine reports the harvest and keeps the stock identity
    r = simulate(pf, params, years=12, paths=32, seed=1, switches=sw)
    h = r.paths_of("harvest_tco2e")[:, :, 0]
    assert np.count_nonzero(h[:, 0]) == 2 and h[4, 0] > 0 and h[9, 0] > 0   # felled at age 25 and age 30
    # a longer rotation keeps more carbon standing on average
    short = df.assign(rotation_age_years=25)
    long_ = df.assign(rotation_age_years=40)
    means = [simulate(validate_frame(d, params), params, years=40, paths=32, seed=1, switches=sw)
             .paths_of("stock_tco2e")[..., 0].mean() for d in (short, long_)]
    assert means[1] > means[0]


def test_rotation_is_for_trees_only(params):
    from models.portfolio import PortfolioError

    df = make_frame(4, species=["moso_bamboo"])
    df["rotation_age_years"] = 5
    with pytest.raises(PortfolioError, match="rotation_age_years applies to trees only"):
        validate_frame(df, params)
