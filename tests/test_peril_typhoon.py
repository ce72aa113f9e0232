"""Typhoon peril: coast model, Poisson storm counts, wind field, damage, independence, forced storms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson

from models.perils.typhoon import Typhoon, coast_coordinates
from tests.weather_support import COUNTY_SEATS, context, lishui_like_portfolio, uniform_portfolio


def test_coast_model_puts_qingtian_jinyun_jingning_closest(params):
    tp = params.perils["typhoon"]
    names = list(COUNTY_SEATS)
    lat = np.array([COUNTY_SEATS[c][0] for c in names])
    lon = np.array([COUNTY_SEATS[c][1] for c in names])
    inland, along = coast_coordinates(tp, lat, lon)
    d = dict(zip(names, inland))
    near = max(d["青田县"], d["缙云县"], d["景宁畲族自治县"])
    far = min(d["龙泉市"], d["庆元县"], d["遂昌县"])
    assert near < far
    assert min(d, key=d.get) == "青田县"
    assert 30 < d["青田县"] < 100 and 130 < d["龙泉市"] < 220  # km
    # the end points lie on the coast; a point 1 deg of latitude north-west of A is inland
    ends, s = coast_coordinates(tp, np.array([27.4, 28.9]), np.array([120.6, 121.6]))
    np.testing.assert_allclose(ends, 0.0, atol=1e-9)
    assert s[0] == pytest.approx(0.0) and s[1] > 150
    sea, _ = coast_coordinates(tp, np.array([27.4]), np.array([121.5]))
    assert sea[0] == 0.0


def test_storm_counts_are_poisson_with_climate_hazard(params):
    pf = uniform_portfolio(params, 5)
    ty = Typhoon(params.perils["typhoon"], params, pf)
    lam = params.perils["typhoon"].annual_rate.value
    assert 0.2 <= lam <= 0.5
    for h in (1.0, 2.0):
        counts = np.concatenate([ty.storm_counts(context(pf, 5000, year=y, hazard={"typhoon": h}))
                                 for y in range(4)])
        assert abs(counts.mean() - h * lam) < 4 * np.sqrt(h * lam / counts.size)
        p0 = poisson.pmf(0, h * lam)
        assert abs((counts == 0).mean() - p0) < 4 * np.sqrt(p0 * (1 - p0) / counts.size)


def test_hit_probability_falls_off_with_distance_from_coast_and_track(params):
    tp = params.perils["typhoon"]
    pf = uniform_portfolio(params, 200, counties=list(COUNTY_SEATS))
    ty = Typhoon(tp, params, pf)
    q = 0
    t, d = ty.along_km[q], ty.inland_km[q]
    ph = ty.hit_probability(np.array([t, t + tp.track_width_km.value]), np.array([1.0, 1.0]))[:, q]
    expected = tp.max_hit_probability.value * np.exp(-d / tp.inland_decay_km.value) * np.array([1, np.exp(-0.5)])
    np.testing.assert_allclose(ph, expected)
    # at the same track offset, parcels farther inland have lower probability
    ph_all = ty.hit_probability(ty.along_km, np.ones(pf.n_parcels)).diagonal()
    order = np.argsort(ty.inland_km)
    assert np.all(np.diff(ph_all[order]) <= 1e-15)


def test_damage_depends_on_species_height_and_elevation(params):
    tp = params.perils["typhoon"]
    losses = {}
    for sp, age, elev in (("chinese_fir", 30, 0.0), ("hard_broadleaf", 30, 0.0), ("chinese_fir", 5, 0.0),
                          ("chinese_fir", 30, 1000.0)):
        pf = uniform_portfolio(params, 300, species=sp, age=age, elevation_m=elev, counties=["青田县"])
        ty = Typhoon(tp, params, pf)
        # hazard 0: no random storms, only the forced one, so each hit is a single draw
        pl = ty.step(context(pf, 400, hazard={"typhoon": 0.0},
                             forced={"typhoon": [{"track": float(ty.along_km[0]), "intensity": 2.0}]}), None)
        assert len(pl) > 500
        v = (params.species(sp).traits.wind_vulnerability.value
             * np.clip(age / tp.full_height_age_years.value, tp.min_height_factor.value, 1.0)
             * (1 + tp.elevation_gain_per_km.value * elev / 1000))
        f = pl.loss_fraction
        assert abs(f.mean() - v * tp.loss_given_hit.mean) < 4 * f.std() / np.sqrt(f.size)
        assert f.min() >= tp.loss_given_hit.low * v - 1e-12 and f.max() <= tp.loss_given_hit.high * v + 1e-12
        losses[(sp, age, elev)] = f.mean()
    assert losses[("chinese_fir", 30, 0.0)] > losses[("hard_broadleaf", 30, 0.0)]
    assert losses[("chinese_fir", 30, 0.0)] > losses[("chinese_fir", 5, 0.0)]
    assert losses[("chinese_fir", 30, 1000.0)] > losses[("chinese_fir", 30, 0.0)]
    # the published range: 1-10 % loss in affected parcels for an average stand
    assert 0.01 <= tp.loss_given_hit.low and tp.loss_given_hit.high <= 0.10


def test_independent_mode_keeps_the_marginal_and_storms_correlate_losses(params):
    pf = lishui_like_portfolio(params, 300, seed=2)
    ty = Typhoon(params.perils["typhoon"], params, pf)
    n_paths, years = 1500, 8
    hits, loss = {}, {}
    for indep in (False, True):
        n_hit, city = [], []
        for y in range(years):
            pl = ty.step(context(pf, n_paths, year=y, independent=indep), None)
            n_hit.append(np.bincount(pl.path_pos, minlength=n_paths))
            city.append(np.bincount(pl.path_pos, weights=pl.loss_fraction, minlength=n_paths))
        hits[indep] = np.concatenate(n_hit).astype(float)
        loss[indep] = np.concatenate(city)
    # hits on a parcel are a thinned Poisson process: P(hit in a year) = 1 - exp(-lambda m_q) in both modes
    lam = params.perils["typhoon"].annual_rate.value
    expected = -np.expm1(-lam * ty.expected_hit_per_storm).sum()
    for indep in (False, True):
        assert abs(hits[indep].mean() - expected) < 4 * hits[indep].std() / np.sqrt(hits[indep].size)
    assert abs(loss[False].mean() - loss[True].mean()) < 4 * np.hypot(loss[False].std(), loss[True].std()) / np.sqrt(
        n_paths * years)
    assert loss[False].var() > 10 * loss[True].var()


def test_forced_storm_hits_near_track_more_and_validation(params):
    pf = uniform_portfolio(params, 400, counties=["青田县", "龙泉市"])
    ty = Typhoon(params.perils["typhoon"], params, pf)
    track = float(ty.along_km[(pf.frame["county"] == "青田县").to_numpy()][0])
    pl = ty.step(context(pf, 200, forced={"typhoon": [{"track": track, "intensity": 1.5}]}), None)
    county = pf.frame["county"].to_numpy()[pl.parcel_pos]
    assert (county == "青田县").sum() > 2 * (county == "龙泉市").sum()
    for bad, key in (({}, "track"), ({"track": 10.0, "speed": 3}, "speed"), ({"track": "x"}, "track"),
                     ({"track": 0.0, "intensity": -1.0}, "intensity")):
        with pytest.raises(ValueError, match=key):
            ty.step(context(pf, 2, forced={"typhoon": [bad]}), None)


def test_poisson_inverse_cdf_matches_scipy():
    from scipy.stats import poisson

    from models.perils.typhoon import poisson_inverse_cdf

    rng = np.random.default_rng(7)
    u = rng.random(200_000)
    lam = rng.uniform(0.0, 4.0, u.size)
    expected = np.minimum(poisson.ppf(u, lam), 20).astype(np.int64)
    np.testing.assert_array_equal(poisson_inverse_cdf(u, lam, 20), expected)


def test_poisson_kernel_equals_its_numpy_definition_at_the_edges():
    from models.perils.typhoon import poisson_inverse_cdf, reference_poisson_inverse_cdf

    rng = np.random.default_rng(8)
    u = rng.random(50_000)
    u[:6] = [0.0, 1.0, np.nextafter(1.0, 0.0), 5e-324, np.nan, 0.5]
    lam = rng.uniform(0.0, 12.0, u.size)
    lam[6:12] = [0.0, np.inf, np.nan, 1e-300, 700.0, 746.0]  # exp(-746) underflows to 0
    for k_max in (0, 1, 3, 20):
        with np.errstate(invalid="ignore"):  # inf x exp(-inf) = nan, in both
            expected = reference_poisson_inverse_cdf(u, lam, k_max)
        np.testing.assert_array_equal(poisson_inverse_cdf(u, lam, k_max), expected)
    # a scalar rate and a 2-D shape, as storm_counts and callers may pass them
    u2 = u[:600].reshape(20, 30)
    np.testing.assert_array_equal(poisson_inverse_cdf(u2, 0.35, 8), reference_poisson_inverse_cdf(u2, 0.35, 8))
