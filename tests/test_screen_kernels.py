"""The weather perils' compiled screens compute exactly what their plain-numpy definitions compute.

Each kernel of :mod:`models.perils._screen_kernels` is compared element by element (pairs, their
order and their uniforms) with the dense numpy expression it replaces, and each peril's screened
``step`` with the dense definition of its hazard (uniform below probability, then living stands).
"""

import numpy as np
import pytest

from models.perils._screen_kernels import (
    BOUND_SLACK,
    drought_losses,
    fire_burns,
    group_sums,
    keyed_flags,
    keyed_hits,
    pair_order,
    storm_candidates,
)
from models.perils._weather import combine_losses, reference_combine_losses
from models.perils.drought import Drought
from models.perils.ice_storm import IceStorm
from models.perils.typhoon import Typhoon
from models.rng import reference_grid
from tests.weather_support import context, lishui_like_portfolio, stand

N_ROWS, N_COLS = 23, 517  # N_COLS not a multiple of 8: the padded flag words are exercised


def _keys(seed, n):
    return np.random.default_rng(seed).integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)


def _stand_arrays(seed, n_rows=N_ROWS, n_cols=N_COLS):
    rng = np.random.default_rng(seed)
    age = rng.integers(-3, 40, (n_rows, n_cols)).astype(np.float32)
    carbon = rng.gamma(2.0, 20.0, (n_rows, n_cols))
    carbon[rng.random((n_rows, n_cols)) < 0.1] = 0.0
    return age, carbon


def _assert_pairs(got, i, j, u=None):
    np.testing.assert_array_equal(got[0], i)
    np.testing.assert_array_equal(got[1], j)
    assert got[0].dtype == np.int64 and got[1].dtype == np.int64
    if u is not None:
        np.testing.assert_array_equal(got[2], u)


@pytest.mark.parametrize("per_parcel_drought", [False, True])
@pytest.mark.parametrize("level", [0.0, 0.003, 0.05, 0.9])
def test_fire_burns_equal_dense_numpy_probability(level, per_parcel_drought):
    rows, keys = _keys(0, N_ROWS), _keys(1, N_COLS)
    rng = np.random.default_rng(2)
    age, carbon = _stand_arrays(3)
    age[:, ::4] = np.float32(10.3)  # young_age 10.3 compares in float32, as numpy does with float32 ages
    static = level * rng.uniform(0.2, 1.0, N_COLS)
    county = rng.integers(0, 4, N_COLS)
    w = rng.lognormal(0.0, 0.8, (N_ROWS, 4))
    w[5] = 0.0  # a path without fire weather
    # cascade windows: a fifth of the pairs open this year (year 4), some just closed or not yet broken
    until = rng.choice(np.array([-1, 3, 4, 6], dtype=np.int16), (N_ROWS, N_COLS), p=[0.7, 0.1, 0.1, 0.1])
    fm = np.where(until >= 4, np.float32(2.0), np.float32(1.0))
    h = rng.uniform(0.5, 3.0, N_ROWS)
    dm, ym = 2.0, 1.5
    drought = rng.random((N_ROWS, N_COLS)) < 0.3 if per_parcel_drought else np.zeros((1, 1), dtype=bool)
    path_factor = h if per_parcel_drought else h * np.where(rng.random(N_ROWS) < 0.3, dm, 1.0)
    # the numpy definition (Fire._probability_at, dense)
    prob = np.where(age < 10.3, ym, 1.0)
    prob *= static[None, :]
    prob *= fm
    prob *= w[:, county]
    prob *= h[:, None] * np.where(drought, dm, 1.0) if per_parcel_drought else path_factor[:, None]
    prob[(age < 0) | (carbon <= 0)] = 0.0
    i, j = np.nonzero(reference_grid(rows, keys) < np.minimum(prob, 1.0))
    path_bound = w.max(axis=1) * (np.maximum(h * dm, h) if per_parcel_drought else path_factor)
    parcel_bound = static * ym * BOUND_SLACK
    got = fire_burns(rows, keys, path_bound, parcel_bound, until, 4, np.float32(2.0), age, carbon, w, county, static,
                     np.float32(10.3), ym, path_factor, drought, dm, per_parcel_drought, 8)
    _assert_pairs(got, i, j)
    assert level == 0.0 or i.size > 0


@pytest.mark.parametrize("want_u", [True, False])
def test_keyed_hits_equal_dense_comparison_on_living_masked_pairs(want_u):
    rows, keys = _keys(3, 11), _keys(4, N_COLS)
    age, carbon = _stand_arrays(5)
    stand_row = np.array([0, 2, 3, 5, 7, 8, 13, 14, 17, 20, 22])
    rng = np.random.default_rng(6)
    thr = rng.uniform(0.0, 0.9, 11)
    col = rng.uniform(0.5, 1.0, N_COLS)
    mask = rng.random(N_COLS) < 0.7
    u = reference_grid(rows, keys)
    alive = (age[stand_row] >= 0) & (carbon[stand_row] > 0)
    i, j = np.nonzero((u < thr[:, None] * col[None, :]) & mask[None, :] & alive)
    got = keyed_hits(rows, keys, thr, col, mask, stand_row, age, carbon, want_u, 4)
    _assert_pairs(got, i, j, u[i, j] if want_u else np.zeros(i.size))


def test_keyed_flags_equal_dense_comparison():
    rows, keys = _keys(7, N_ROWS), _keys(8, N_COLS)
    thr = np.random.default_rng(9).uniform(0.0, 0.3, N_ROWS)
    dense = reference_grid(rows, keys) < thr[:, None]
    flags = np.empty((N_ROWS, N_COLS), dtype=bool)
    got = keyed_flags(rows, keys, thr, flags, 16)
    np.testing.assert_array_equal(flags, dense)
    _assert_pairs(got, *np.nonzero(dense))


@pytest.mark.parametrize("span_km", [200.0, 5.0])  # a city's parcels; one loan's, far from most tracks
def test_storm_candidates_hold_every_hit_and_only_living_pairs_below_the_bound(span_km):
    rows, keys = _keys(10, N_ROWS), _keys(11, N_COLS)
    age, carbon = _stand_arrays(12)
    rng = np.random.default_rng(13)
    stand_row = np.arange(N_ROWS)
    track, inten = rng.uniform(-150, 250, N_ROWS), rng.uniform(0.5, 1.5, N_ROWS)
    along, decay = 60.0 + rng.uniform(0, span_km, N_COLS), np.exp(-rng.uniform(50, 200, N_COLS) / 80.0)
    track[:3] = along.min(), along.max(), along.mean()  # tracks at the span's ends and inside it
    width, max_hit = 60.0, 0.5
    i, j, u = storm_candidates(rows, keys, stand_row, track, inten, along, decay, width, max_hit, age, carbon, 8)
    grid = reference_grid(rows, keys)
    np.testing.assert_array_equal(u, grid[i, j])
    # exactly the living pairs under the polynomial bound (the row's first pass drops none of them)
    x = 0.5 * ((along[None, :] - track[:, None]) / width) ** 2
    poly = 1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6.0)))
    top = max_hit * inten * BOUND_SLACK
    expected = (grid * poly < top[:, None] * decay[None, :]) & (age >= 0) & (carbon > 0)
    _assert_pairs((i, j), *np.nonzero(expected))
    z = (along[None, :] - track[:, None]) / width
    prob = np.minimum(max_hit * (inten[:, None] * decay[None, :] * np.exp(-0.5 * z * z)), 1.0)
    alive = (age >= 0) & (carbon > 0)
    hi, hj = np.nonzero((grid < prob) & alive)
    cand = np.zeros((N_ROWS, N_COLS), dtype=bool)
    cand[i, j] = True
    assert cand[hi, hj].all() and hi.size > 50  # every hit is a candidate
    assert alive[i, j].all()
    bound = max_hit * inten[:, None] * decay[None, :] * BOUND_SLACK
    assert (u < bound[i, j]).all()
    assert np.all(np.diff(i * N_COLS + j) > 0)  # row-major order
    assert i.size < 1.5 * hi.size  # a tight screen: few candidates are not hits


def test_drought_losses_equal_numpy_definition():
    age, carbon = _stand_arrays(14)
    rng = np.random.default_rng(15)
    plantation = rng.random(N_COLS) < 0.6
    rows = np.array([1, 4, 5, 9, 20])
    sev = np.array([1.0, 0.0, 2.5, 1.0, 60.0])  # a severity so high that losses are capped at 1
    young_age = np.float32(5.0)
    keys, damage_rows = _keys(16, N_COLS), _keys(17, rows.size)
    low, span = 0.01, 0.04
    pp, qq = np.repeat(rows, N_COLS), np.tile(np.arange(N_COLS), rows.size)
    i = np.repeat(np.arange(rows.size), N_COLS)
    a = age[pp, qq]
    share = np.where(plantation[qq] & (a <= 5.0), 1.0, 0.1)
    m = low + span * reference_grid(damage_rows, keys)[i, qq]
    loss = np.minimum(m * share * sev[i], 1.0)
    keep = (a >= 0) & (carbon[pp, qq] > 0) & (share > 0) & (sev[i] > 0) & (loss > 0)
    got = drought_losses(rows, sev, age, carbon, plantation, young_age, 0.1, damage_rows, keys, low, span, 0.5)
    _assert_pairs(got, pp[keep], qq[keep])
    np.testing.assert_array_equal(got[2], loss[keep])
    np.testing.assert_array_equal(got[3], loss[keep] >= 0.5)
    assert got[3].any() and not got[3].all() and (got[2] == 1.0).any()


def _loss_parts(seed, n_paths=40, n=300, n_parts=5, shuffle=False):
    rng = np.random.default_rng(seed)
    parts = []
    for k in range(n_parts):
        p, q = np.nonzero(rng.random((n_paths, n)) < 0.2)
        parts.append((p, q))
    pp = np.concatenate([x[0] for x in parts])
    qq = np.concatenate([x[1] for x in parts])
    f = rng.choice([0.0, 0.01, 0.05, 0.3, 0.5, 1.0], pp.size) * rng.choice([1.0, 0.5], pp.size)
    f[rng.random(pp.size) < 0.3] = 0.25  # many ties: their order is the input order
    ev = rng.integers(0, 6, pp.size)
    if shuffle:
        perm = rng.permutation(pp.size)
        pp, qq, f, ev = pp[perm], qq[perm], f[perm], ev[perm]
    return pp, qq, f, ev, n


@pytest.mark.parametrize("shuffle", [False, True])
def test_combine_losses_equals_lexsort_bincount_definition_bit_for_bit(shuffle):
    pp, qq, f, ev, n = _loss_parts(16, shuffle=shuffle)
    got = combine_losses(pp, qq, f, ev, n)
    want = reference_combine_losses(pp, qq, f, ev, n)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
    assert np.array_equal(got[2].view(np.uint64), want[2].view(np.uint64))  # the same bits, -0.0 included
    # dense paths (a segment longer than n_parcels / 4 out of order) take the counting sort
    pp, qq, f, ev, n = _loss_parts(17, n_paths=3, n=40, n_parts=4, shuffle=True)
    for g, w in zip(combine_losses(pp, qq, f, ev, n), reference_combine_losses(pp, qq, f, ev, n)):
        np.testing.assert_array_equal(g, w)


def test_pair_order_is_lexsort_and_group_sums_are_bincount():
    pp, qq, f, ev, n = _loss_parts(18, shuffle=True)
    order, first = pair_order(pp, qq, f, int(pp.max()) + 1, n)
    want = np.lexsort((-f, pp * n + qq))
    np.testing.assert_array_equal(order, want)
    key = (pp * n + qq)[want]
    np.testing.assert_array_equal(first, np.r_[True, key[1:] != key[:-1]])
    v = np.random.default_rng(19).normal(size=pp.size)
    sums, anyf = group_sums(v, first, f[order] >= 1.0)
    grp = np.cumsum(first) - 1
    np.testing.assert_array_equal(sums, np.bincount(grp, weights=v))
    np.testing.assert_array_equal(anyf, np.bincount(grp, weights=(f[order] >= 1.0).astype(float)) > 0)


# ---- the perils' screened steps against their dense numpy definitions -------------------------------
def _weather_stand(pf, n_paths, seed=20):
    st = stand(n_paths, pf)
    rng = np.random.default_rng(seed)
    st.age_years[rng.random(st.age_years.shape) < 0.05] = -1.0
    st.carbon_tc_per_ha[rng.random(st.carbon_tc_per_ha.shape) < 0.05] = 0.0
    return st


def _alive(st):
    return (st.age_years >= 0) & (st.carbon_tc_per_ha > 0)


def test_typhoon_storm_hits_equal_dense_definition(params):
    pf = lishui_like_portfolio(params, 400)
    ty = Typhoon(params.perils["typhoon"], params, pf)
    st = _weather_stand(pf, 30)
    forced = {"typhoon": [{"track": 55.0}, {"track": 120.0, "intensity": 0.8}]}
    ctx = context(pf, 30, year=2, st=st, hazard={"typhoon": 4.0}, forced=forced)
    pl = ty.step(ctx, None)
    # dense definition: every storm's uniform below its hit probability on living stands, merged
    rnd, n_random = ctx.rnd, ty.storm_counts(ctx)
    kmax = int(n_random.max())
    assert kmax >= 2
    p = params.perils["typhoon"]
    tracks = p.landfall_km.draw(rnd.keyed_uniform("typhoon.track", 2, ty._storm_keys[:kmax]))
    inten = p.intensity.draw(rnd.keyed_uniform("typhoon.intensity", 2, ty._storm_keys[:kmax]))
    hit = np.zeros((30, pf.n_parcels), dtype=bool)
    # and each storm's losses on its hits (damage stream per storm), merged storm by storm in order
    parts = []
    storms = [(f"s{k}", ty.hit_probability(tracks[:, k], inten[:, k]) * (n_random > k)[:, None], k)
              for k in range(kmax)]
    storms += [(f"forced{j}", ty.hit_probability(np.array([ev["track"]]),
                                                 np.array([ev.get("intensity", p.intensity.high)])), n_random + j)
               for j, ev in enumerate(forced["typhoon"])]
    for name, prob, event in storms:
        h = (rnd.parcel_uniform(f"typhoon.hazard.{name}", 2) < prob) & _alive(st)
        hit |= h
        sp, sq = np.nonzero(h)
        loss = p.loss_given_hit.draw(rnd.parcel_uniform(f"typhoon.damage.{name}", 2)[sp, sq])
        frac = np.minimum(loss * ty.vulnerability(ctx, sp, sq), 1.0)  # severity 1
        parts.append((sp, sq, frac, np.broadcast_to(event, (30,))[sp]))
    hp, hq = np.nonzero(hit)
    assert hp.size > 200
    np.testing.assert_array_equal(pl.path_pos, hp)
    np.testing.assert_array_equal(pl.parcel_pos, hq)
    ep, eq, ef, ee = reference_combine_losses(*(np.concatenate(x) for x in zip(*parts)), pf.n_parcels)
    assert ep.size < sum(x[0].size for x in parts)  # some pairs are hit by two storms
    np.testing.assert_array_equal(pl.path_pos, ep)
    np.testing.assert_array_equal(pl.parcel_pos, eq)
    np.testing.assert_array_equal(pl.loss_fraction, ef)
    np.testing.assert_array_equal(pl.event, ee)


def test_typhoon_independent_hits_equal_dense_definition(params):
    pf = lishui_like_portfolio(params, 300)
    ty = Typhoon(params.perils["typhoon"], params, pf)
    st = _weather_stand(pf, 40)
    ctx = context(pf, 40, year=1, st=st, hazard={"typhoon": 3.0}, independent=True)
    pl = ty.step(ctx, None)
    lam = params.perils["typhoon"].annual_rate.value * 3.0
    prob = -np.expm1(-lam * ty.expected_hit_per_storm[None, :])
    hp, hq = np.nonzero((ctx.rnd.parcel_uniform("typhoon.hazard.parcel", 1) < prob) & _alive(st))
    assert hp.size > 100
    np.testing.assert_array_equal(pl.path_pos, hp)
    np.testing.assert_array_equal(pl.parcel_pos, hq)


@pytest.mark.parametrize("independent", [False, True])
def test_ice_storm_hits_equal_dense_definition(params, independent):
    pf = lishui_like_portfolio(params, 300)
    ice = IceStorm(params.perils["ice_storm"], params, pf)
    st = _weather_stand(pf, 40)
    forced = {"ice_storm": [{"counties": ["龙泉市", "遂昌县"], "severity": 1.0}]}
    ctx = context(pf, 40, year=4, st=st, hazard={"ice_storm": 10.0}, forced=forced, independent=independent)
    pl = ice.step(ctx, None)
    rnd, hit_p = ctx.rnd, params.perils["ice_storm"].parcel_hit_probability.value
    prob = ice.storm_probability(ctx)
    if independent:
        storm = rnd.parcel_uniform("ice_storm.hazard.independent", 4) < prob[:, None]
        hit = storm & (rnd.parcel_uniform("ice_storm.hazard.parcel", 4) < hit_p)
    else:
        storm = (rnd.path_uniform("ice_storm.hazard", 4) < prob)[:, None]
        hit = storm & (rnd.parcel_uniform("ice_storm.hazard.parcel", 4) < hit_p)
    exposed = np.isin(pf.frame["county"].to_numpy(str), ["龙泉市", "遂昌县"])
    hit |= (rnd.parcel_uniform("ice_storm.hazard.forced0", 4) < hit_p) & exposed[None, :]
    hp, hq = np.nonzero(hit & _alive(st))
    assert hp.size > 500
    np.testing.assert_array_equal(pl.path_pos, hp)
    np.testing.assert_array_equal(pl.parcel_pos, hq)


def test_ice_storm_losses_of_one_storm_equal_the_plain_numpy_expression(params):
    # one storm a year, no forced event: the step skips the merge and computes the damage in place;
    # the losses must be the plain expression's, bit for bit
    pf = lishui_like_portfolio(params, 300)
    ice = IceStorm(params.perils["ice_storm"], params, pf)
    st = _weather_stand(pf, 40)
    ctx = context(pf, 40, year=4, st=st, hazard={"ice_storm": 10.0})
    pl = ice.step(ctx, None)
    p, rnd = params.perils["ice_storm"], ctx.rnd
    storm = rnd.path_uniform("ice_storm.hazard", 4) < ice.storm_probability(ctx)
    hit = storm[:, None] & (rnd.parcel_uniform("ice_storm.hazard.parcel", 4) < p.parcel_hit_probability.value)
    hp, hq = np.nonzero(hit & _alive(st))
    assert hp.size > 500
    s_path = p.event_severity.draw(rnd.path_uniform("ice_storm.severity", 4))
    r = np.maximum(st.carbon_tc_per_ha[hp, hq], 0.0) / p.density_reference_tc_per_ha.value
    density = np.clip(r ** p.density_exponent.value, p.density_factor_min.value, p.density_factor_max.value)
    v = ice.static_vulnerability[hq] * density
    stems = np.minimum(p.stem_damage.draw(rnd.parcel_uniform("ice_storm.damage", 4)[hp, hq]) * s_path[hp] * v, 1.0)
    loss = np.minimum(stems * p.volume_loss_per_damaged_stem.value * 1.0, 1.0)
    np.testing.assert_array_equal(pl.path_pos, hp)
    np.testing.assert_array_equal(pl.parcel_pos, hq)
    np.testing.assert_array_equal(pl.loss_fraction, loss)


@pytest.mark.parametrize("independent", [False, True])
def test_drought_pairs_and_flags_equal_dense_definition(params, independent):
    pf = lishui_like_portfolio(params, 300)
    dr = Drought(params.perils["drought"], params, pf)
    st = _weather_stand(pf, 60)
    st.age_years[:, ::3] = 3.0  # young plantations
    ctx = context(pf, 60, year=5, st=st, hazard={"drought": 8.0}, independent=independent)
    pl = dr.step(ctx, None)
    prob = dr.drought_probability(ctx)
    if independent:
        dry = ctx.rnd.parcel_uniform("drought.hazard.parcel", 5) < prob[:, None]
        np.testing.assert_array_equal(ctx.drought, dry)
    else:
        dry = np.broadcast_to((ctx.rnd.path_uniform("drought.hazard", 5) < prob)[:, None], st.age_years.shape)
        np.testing.assert_array_equal(ctx.drought, dry[:, 0])
    hp, hq = np.nonzero(dry & _alive(st))  # every living stand loses something (established factor > 0)
    assert hp.size > 1000
    np.testing.assert_array_equal(pl.path_pos, hp)
    np.testing.assert_array_equal(pl.parcel_pos, hq)
    young = ~np.asarray(pf.is_natural)[hq] & (st.age_years[hp, hq] <= 5)
    assert (pl.loss_fraction[young] >= params.perils["drought"].mortality.low).all()
    # and the losses: share x mortality (its own damage stream), capped at 1 (severity 1 here)
    p = params.perils["drought"]
    share = np.where(young, 1.0, p.established_stand_factor.value)
    m = p.mortality.draw(ctx.rnd.parcel_uniform("drought.damage", 5)[hp, hq])
    np.testing.assert_array_equal(pl.loss_fraction, np.minimum(m * share * 1.0, 1.0))
    np.testing.assert_array_equal(pl.stand_replacing, pl.loss_fraction >= dr._threshold)


def test_a_pair_hit_once_keeps_its_loss_bit_for_bit():
    """-expm1(log1p(-f)) != f for this f: a single hit must not take the round trip, or a pair's loss
    would depend on whether another path of the same block was hit twice."""
    f_single = float.fromhex("0x1.fa61c2bbb6aacp-4")
    assert -np.expm1(np.log1p(-f_single)) != f_single
    pp = np.array([0, 1, 1], dtype=np.int64)
    qq = np.array([3, 2, 2], dtype=np.int64)
    f = np.array([f_single, 0.2, 0.5])
    ev = np.array([0, 0, 1], dtype=np.int64)
    for fn in (combine_losses, reference_combine_losses):
        gp, gq, gf, ge = fn(pp, qq, f, ev, 5)
        np.testing.assert_array_equal(gp, [0, 1])
        assert gf[0] == f_single  # hit once: exactly its loss
        assert gf[1] == pytest.approx(1 - 0.8 * 0.5, rel=1e-15) and ge[1] == 1  # merged; the larger loss's event


def test_storm_pairs_and_their_hashes_equal_the_per_storm_grids():
    """A year's (path, storm) pairs, their hazard rows and their track uniforms, hashed pair by pair, are
    the numbers of the per-storm path lists and the (paths x storms) grids at those pairs."""
    from models.perils._screen_kernels import pair_rows, pair_uniforms, storm_pairs
    from models.rng import KeyedRandom, group_keys

    rng = np.random.default_rng(4)
    ids = np.sort(rng.choice(100_000, 700, replace=False)).astype(np.int64)
    rnd = KeyedRandom(77, ids, np.arange(3, dtype=np.uint64))
    n_random = rng.poisson(0.8, ids.size).astype(np.int64)
    storm_keys = group_keys([f"storm:{k}" for k in range(8)])
    for kmax in (1, 3, int(n_random.max())):
        rows = [np.flatnonzero(n_random > k) for k in range(kmax)]
        path, storm = storm_pairs(n_random, kmax)
        np.testing.assert_array_equal(path, np.concatenate(rows))
        np.testing.assert_array_equal(storm, np.repeat(np.arange(kmax), [r.size for r in rows]))
        streams = [f"typhoon.hazard.s{k}" for k in range(kmax)]
        want = np.concatenate([rnd.stream_rows(s, 5)[r] for s, r in zip(streams, rows)])
        np.testing.assert_array_equal(pair_rows(rnd.path_ids_u64, path, storm, rnd.stream_bases(streams, 5)), want)
        grid = rnd.keyed_uniform("typhoon.track", 5, storm_keys[:kmax])
        base = rnd.stream_bases(["typhoon.track"], 5)[0]
        np.testing.assert_array_equal(pair_uniforms(rnd.path_ids_u64, path, base, storm_keys, storm),
                                      grid[path, storm])
    empty = storm_pairs(np.zeros(5, dtype=np.int64), 0)
    assert empty[0].size == 0 and empty[1].size == 0
