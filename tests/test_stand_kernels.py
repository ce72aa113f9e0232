"""The stand simulator's compiled passes against plain numpy compositions of models.growth/carbon."""

import numpy as np
import pytest

from models._stand_kernels import TreeGrowth, age_stands, apply_losses, clear_fell, grow_year
from models.carbon import CarbonFactors
from models.growth import bamboo_step, grow_relative_maturity
from models.rng import KeyedRandom

N_TREE, N_BAMBOO = 37, 11
N = N_TREE + N_BAMBOO


def _state(n_paths, seed=0, fang=False):
    rng = np.random.default_rng(seed)
    s = dict(
        carbon=np.concatenate([rng.uniform(0, 80, (n_paths, N_TREE)), rng.uniform(0, 40, (n_paths, N_BAMBOO))], 1),
        u=rng.uniform(0.0, 0.95, (n_paths, N_TREE)),
        age=rng.integers(-3, 60, (n_paths, N)).astype(np.float32),
        a_base=rng.uniform(100, 400, N_TREE),
        a_floor=rng.uniform(0, 150, N_TREE),
        k_base=rng.uniform(0.02, 0.08, N_TREE),
        species=rng.integers(0, 3, N_TREE).astype(np.intp),
        a_mult=rng.lognormal(0, 0.2, (n_paths, 3)),
        k_mult=rng.lognormal(0, 0.2, (n_paths, 3)),
        shape=rng.uniform(1.2, 3.0, N_TREE),
        slope=rng.uniform(0.2, 0.6, N_TREE),
        intercept=rng.uniform(5, 20, N_TREE) if fang else np.zeros(N_TREE),
        m_path=rng.uniform(0.7, 1.3, n_paths),
        managed=rng.uniform(30, 45, N_BAMBOO),
        ceiling=np.full(N_BAMBOO, 60.0),
        group=rng.integers(0, 6, N).astype(np.intp),
        weight=rng.uniform(1, 20, N),
        replanted=rng.random((n_paths, N_TREE)) < 0.2,
    )
    # the asymptote as TreeGrowth defines it: today's volume plus the drawn growth still to come; a stand
    # replanted during the run draws the bare site's whole curve
    floor = np.where(s["replanted"], 0.0, s["a_floor"])
    s["asym"] = floor + np.maximum(s["a_base"] - floor, 0.0) * s["a_mult"][:, s["species"]]
    s["rate"] = s["k_base"] * s["k_mult"][:, s["species"]]
    # tree carbon consistent with maturity (BEF), as the simulator keeps it
    if not fang:
        s["carbon"][:, :N_TREE] = s["slope"] * s["asym"] * s["u"] ** s["shape"]
    return s


def _tree(s, fang, keep=0.99):
    return TreeGrowth(s["a_base"], s["a_floor"], s["k_base"], s["species"], s["a_mult"], s["k_mult"], s["shape"],
                      s["slope"], s["intercept"], 10.0, fang)


def _run(s, rows, keys, fang=False, keep=0.99, dense=True, sums=True):
    """Apply grow_year to a copy of the state; return (state after, growth, mortality, stock, growth sums)."""
    s = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
    n_paths = s["carbon"].shape[0]
    growth, mort = (np.empty((n_paths, N)), np.empty((n_paths, N))) if dense else (np.empty((0, 0)),) * 2
    ss, gs = np.empty((n_paths, 6)), np.empty((n_paths, 6))
    hw = np.sqrt(3.0) * 0.1
    grow_year(s["carbon"], s["u"], s["age"], s["replanted"], _tree(s, fang, keep), rows, keys, 2 * hw, 1 - hw,
              s["m_path"], (s["managed"], s["ceiling"], 0.3, 0.54, 2.0), keep,
              (s["group"], s["weight"], ss, gs) if sums else None, (growth, mort) if dense else None)
    return s, growth, mort, ss, gs


def _reference(s, rnd, year=3, fang=False, keep=0.99):
    """The same year in plain numpy (models.growth / models.carbon functions)."""
    hw = np.sqrt(3.0) * 0.1
    u_noise = rnd.parcel_uniform("growth.parcel_noise", year)
    mult = (u_noise * (2 * hw) + (1 - hw)) * s["m_path"][:, None]
    mult[s["age"] < 0] = 0.0
    tf = CarbonFactors(s["slope"], s["intercept"], 10.0, "fang" if fang else "bef")
    c0 = s["carbon"]
    u1 = grow_relative_maturity(s["u"], s["rate"], mult[:, :N_TREE])
    v1 = s["asym"] * u1 ** s["shape"]
    c1 = np.empty_like(c0)
    c1[:, :N_TREE] = tf.tc_per_ha(v1)
    b = np.maximum(c0[:, N_TREE:], 2.0)
    b = bamboo_step(b, s["managed"][None, :], 0.54, s["ceiling"][None, :], 0.3, mult[:, N_TREE:])
    b[s["age"][:, N_TREE:] < 0] = 0.0
    c1[:, N_TREE:] = b
    # the stand keeps the curve's (net) carbon; background mortality is a flux on top of it: the
    # carbon of the share 1 - keep of the end volume, and gross growth is the net change plus it
    flux = c1 * (1 - keep)
    if fang:
        flux[:, :N_TREE] = tf.tc_per_ha(v1) - tf.tc_per_ha(v1 * keep)
    # the growth pass reads the age (a waiting stand does not grow) and leaves it: the simulator ages
    # the stands after the year's perils (age_stands), which see the age at the start of the year
    return dict(c1=c1 + flux, c2=c1, u2=u1, age=s["age"])


@pytest.mark.parametrize("fang", [False, True])
def test_grow_year_matches_the_numpy_composition_of_the_growth_and_carbon_models(fang):
    n_paths = 9
    s = _state(n_paths, fang=fang)
    keys = np.arange(1, N + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    rnd = KeyedRandom(5, np.arange(n_paths), keys)
    rows = rnd.stream_rows("growth.parcel_noise", 3)
    after, growth, mort, ss, gs = _run(s, rows, keys, fang=fang)
    ref = _reference(s, rnd, fang=fang)
    # compiled/SIMD exp and pow may differ from numpy's in the last bit
    np.testing.assert_allclose(after["carbon"], ref["c2"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(after["u"], ref["u2"], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(after["age"], ref["age"])
    np.testing.assert_allclose(growth, ref["c1"] - s["carbon"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(mort, ref["c1"] - ref["c2"], rtol=1e-9, atol=1e-10)
    # group sums of the weighted start stock and growth
    exp_ss = np.zeros((n_paths, 6))
    exp_gs = np.zeros((n_paths, 6))
    np.add.at(exp_ss, (slice(None), s["group"]), s["carbon"] * s["weight"])
    np.add.at(exp_gs, (slice(None), s["group"]), (ref["c1"] - s["carbon"]) * s["weight"])
    np.testing.assert_allclose(ss, exp_ss, rtol=1e-12)
    np.testing.assert_allclose(gs, exp_gs, rtol=1e-9, atol=1e-9)
    # waiting stands do not grow; a destroyed tree stand (u = 0) stays at zero volume
    waiting = s["age"][:, :N_TREE] < 0
    np.testing.assert_allclose(after["u"][waiting], s["u"][waiting], rtol=1e-12)


def test_each_path_row_is_independent_of_the_block_it_is_computed_in():
    """Bit-identical rows whatever the number of rows computed together (chunk-size independence)."""
    n_paths = 700  # several blocks of rows
    s = _state(n_paths, seed=3)
    keys = np.arange(1, N + 1, dtype=np.uint64) * np.uint64(0xBF58476D1CE4E5B9)
    rnd = KeyedRandom(9, np.arange(n_paths), keys)
    whole = _run(s, rnd.stream_rows("growth.parcel_noise", 3), keys, dense=False)
    for lo, hi in [(0, 1), (13, 77), (650, 700)]:
        part_state = {k: (v[lo:hi] if isinstance(v, np.ndarray) and v.ndim == 2 else v) for k, v in s.items()}
        part_state["m_path"] = s["m_path"][lo:hi]
        sub = KeyedRandom(9, np.arange(lo, hi), keys)
        part = _run(part_state, sub.stream_rows("growth.parcel_noise", 3), keys, dense=False)
        for a, b in zip(whole, part):
            if isinstance(a, dict):
                for k in ("carbon", "u", "age"):
                    np.testing.assert_array_equal(a[k][lo:hi], b[k])
            elif a.size:
                np.testing.assert_array_equal(a[lo:hi], b)


@pytest.mark.parametrize("fang", [False, True])
def test_apply_losses_takes_the_stated_share_of_the_carbon_and_restarts_destroyed_stands(fang):
    """A peril's fraction is of the carbon (PerilLosses): every stand keeps 1 - f of its carbon, under BEF
    and Fang alike. The tree stand falls back to the maturity whose volume holds that carbon: under BEF
    the share 1 - f of the volume, u (1 - f)^(1/c); under Fang the volume that inverts a V + b (with the
    ramp below 10 m3/ha here), a larger share of the volume lost. A stand-replacing loss restarts it."""
    s = _state(6, seed=4, fang=fang)
    s["replanted"][4, 9] = s["replanted"][5, 20] = True  # partial losses on replants: the bare site's curve
    s["asym"] = _tree(s, fang).asymptote(s["replanted"])
    tf = CarbonFactors(s["slope"], s["intercept"], 10.0, "fang" if fang else "bef")
    if fang:
        s["u"][4, 9] = 0.02  # a stand on the ramp: volume below 10 m3/ha
    s["carbon"][:, :N_TREE] = tf.tc_per_ha(s["asym"] * s["u"] ** s["shape"])
    pp = np.array([0, 0, 1, 2, 3, 5, 5, 4, 4], dtype=np.int64)
    qq = np.array([0, N_TREE + 1, 4, 7, N_TREE + 2, 3, 20, 9, 11], dtype=np.int64)
    f = np.array([0.25, 0.5, 1.0, 0.9, 0.95, -0.1, 1.3, 0.4, 0.97])  # out-of-range fractions are clipped
    rep = np.array([False, False, False, True, True, False, False, False, False])
    carbon, u, age, replanted = s["carbon"].copy(), s["u"].copy(), s["age"].copy(), s["replanted"].copy()
    lost = apply_losses(carbon, u, age, replanted, _tree(s, fang), pp, qq, f, rep, np.float32(-3.0))
    keep = 1 - np.clip(f, 0, 1)
    before = s["carbon"][pp, qq]
    vol_before = s["asym"] * s["u"] ** s["shape"]
    for k, (i, j) in enumerate(zip(pp, qq)):
        if j < N_TREE:
            one = CarbonFactors(s["slope"][j:j + 1], s["intercept"][j:j + 1], 10.0, tf.method)
            if rep[k]:
                assert u[i, j] == 0.0 and replanted[i, j]
                assert carbon[i, j] == float(one.tc_per_ha(np.zeros(1))[0])
                continue
            # the stated share of the carbon is lost
            assert carbon[i, j] == pytest.approx(before[k] * keep[k], rel=1e-14, abs=1e-15)
            # and the stand's maturity holds the volume of that carbon
            vol = s["asym"][i, j] * u[i, j] ** s["shape"][j]
            assert float(one.tc_per_ha(np.array([vol]))[0]) == pytest.approx(carbon[i, j], rel=1e-12, abs=1e-12)
            if not fang:
                assert u[i, j] == pytest.approx(s["u"][i, j] * keep[k] ** (1 / s["shape"][j]), rel=1e-13, abs=1e-15)
            elif keep[k] > 0:  # Fang, closed form: V' = ramp C'/C_ramp on the ramp, (C' - b)/a above it
                a, b = s["slope"][j], s["intercept"][j]
                c_new = before[k] * keep[k]
                c_ramp = a * 10.0 + b
                v_exp = 10.0 * c_new / c_ramp if c_new < c_ramp else (c_new - b) / a
                assert vol == pytest.approx(v_exp, rel=1e-12)
                # the intercept: the share of the volume kept is below the share of the carbon kept
                # (on the ramp carbon is proportional to volume: the same share)
                if vol_before[i, j] > 10.0 and keep[k] < 1.0:
                    assert vol / vol_before[i, j] < keep[k]
                else:
                    assert vol / vol_before[i, j] == pytest.approx(keep[k], rel=1e-12)
        else:
            assert carbon[i, j] == (0.0 if rep[k] else before[k] * keep[k])
        assert age[i, j] == (-3.0 if rep[k] else s["age"][i, j])
    np.testing.assert_allclose(lost, before - carbon[pp, qq], rtol=0, atol=0)
    untouched = np.ones(carbon.shape, bool)
    untouched[pp, qq] = False
    np.testing.assert_array_equal(carbon[untouched], s["carbon"][untouched])
    # a stand-replacing loss marks a tree stand replanted; nothing else changes the mark
    want = s["replanted"].copy()
    want[pp[rep & (qq < N_TREE)], qq[rep & (qq < N_TREE)]] = True
    np.testing.assert_array_equal(replanted, want)


def test_fang_loss_without_a_ramp_stops_at_the_carbon_of_zero_volume():
    """Without the ramp Fang's carbon of zero volume is its intercept: a loss cannot go below it."""
    s = _state(2, seed=8, fang=True)
    s["u"][:] = 0.5
    tree = TreeGrowth(s["a_base"], s["a_floor"], s["k_base"], s["species"], s["a_mult"], s["k_mult"], s["shape"],
                      s["slope"], s["intercept"], 0.0, True)
    tf = CarbonFactors(s["slope"], s["intercept"], 0.0, "fang")
    carbon = np.concatenate([tf.tc_per_ha(s["asym"] * s["u"] ** s["shape"]), s["carbon"][:, N_TREE:]], 1)
    u, age = s["u"].copy(), s["age"].copy()
    pp, qq = np.array([0, 1], dtype=np.int64), np.array([2, 5], dtype=np.int64)
    before = carbon[pp, qq].copy()
    lost = apply_losses(carbon, u, age, s["replanted"], tree, pp, qq, np.array([0.2, 0.999]), np.zeros(2, bool),
                        np.float32(-3))
    assert lost[0] == pytest.approx(0.2 * before[0], rel=1e-14)
    assert carbon[1, 5] == s["intercept"][5] and u[1, 5] == 0.0 and lost[1] == before[1] - s["intercept"][5]


def test_age_stands_adds_a_year_to_every_stand():
    age = np.random.default_rng(1).integers(-4, 90, (7, 13)).astype(np.float32)
    want = age + np.float32(1.0)
    age_stands(age)
    np.testing.assert_array_equal(age, want)


def test_tiling_does_not_change_any_number(monkeypatch):
    """Tiles of a few parcels (column tiles, one row each) give the numbers of whole-row tiles."""
    import models._stand_kernels as ks

    s = _state(40, seed=6)
    keys = np.arange(1, N + 1, dtype=np.uint64) * np.uint64(0x94D049BB133111EB)
    rows = KeyedRandom(2, np.arange(40), keys).stream_rows("growth.parcel_noise", 3)
    whole = _run(s, rows, keys)
    monkeypatch.setattr(ks, "TILE_ELEMENTS", 16)  # 16 columns per tile: N = 48 parcels span three tiles
    tiled = _run(s, rows, keys)
    for a, b in zip(whole, tiled):
        if isinstance(a, dict):
            for k in ("carbon", "u", "age"):
                np.testing.assert_array_equal(a[k], b[k])
        else:
            np.testing.assert_array_equal(a, b)


def test_clear_fell_equals_the_numpy_mask_and_restarts_the_due_stands():
    """Tree pairs at or past the rotation age (float32 compare; inf or NaN: never) are felled in
    np.nonzero's order, also past the kernel's first output buffer: removed = carbon - carbon at zero
    volume, then carbon at zero volume, maturity 0, age 0. Bamboo columns after the trees are ignored."""
    rng = np.random.default_rng(11)
    n_paths, n_tree, n_bamboo = 300, 40, 5
    rot = np.where(rng.random(n_tree) < 0.6, rng.uniform(20, 40, n_tree), np.inf)
    rot[3] = np.nan
    rot[7] = 30.0
    age = rng.uniform(-3, 45, (n_paths, n_tree + n_bamboo)).astype(np.float32)
    age[::2, 7] = np.float32(30.0)  # exactly at the rotation age: due
    age[:, n_tree:] = 1000.0  # bamboo: never clear-felled
    carbon = rng.uniform(0, 90, (n_paths, n_tree + n_bamboo))
    u = rng.uniform(0, 1, (n_paths, n_tree))
    at_zero = rng.uniform(0, 3, n_tree)  # Fang carbon of zero volume may be above 0
    threshold = rot.astype(np.float32)
    # the numpy definition
    idx = np.flatnonzero(np.isfinite(rot))
    hp, hk = np.nonzero(age[:, idx] >= threshold[idx][None, :])
    hq = idx[hk]
    want_age, want_c, want_u = age.copy(), carbon.copy(), u.copy()
    removed = want_c[hp, hq].copy()
    want_u[hp, hq] = 0.0
    want_c[hp, hq] = at_zero[hq]
    removed -= want_c[hp, hq]
    want_age[hp, hq] = 0.0
    replanted = rng.random((n_paths, n_tree)) < 0.1
    want_replanted = replanted.copy()
    want_replanted[hp, hq] = True
    got = clear_fell(age, threshold, carbon, u, replanted, at_zero)
    assert got[0].dtype == got[1].dtype == np.int64 and hp.size > 64 and (hq == 7).sum() >= n_paths // 2
    for g, w in zip(got, (hp, hq, removed)):
        np.testing.assert_array_equal(g, w)
    for g, w in ((age, want_age), (carbon, want_c), (u, want_u), (replanted, want_replanted)):
        np.testing.assert_array_equal(g, w)
    none = clear_fell(np.zeros((4, n_tree + n_bamboo), np.float32), threshold, carbon[:4], u[:4], replanted[:4],
                      at_zero)
    assert all(a.size == 0 for a in none)


@pytest.mark.parametrize("fang", [False, True])
@pytest.mark.parametrize("with_mortality", [False, True])
@pytest.mark.parametrize("width,j0", [(1, 0), (47, 0), (150, 0), (40, 25)])
def test_narrow_and_wide_tree_passes_give_the_same_numbers(fang, with_mortality, width, j0):
    """The indexed pass for short rows and the row-view pass for wide ones: bit for bit the same."""
    from models._stand_kernels import _grow_trees_narrow, _grow_trees_wide

    rng = np.random.default_rng(width + j0)
    n_paths, n = 300, j0 + width + 3
    r0, r1, jt = 20, 280, j0 + width
    base = dict(carbon=rng.uniform(0, 80, (n_paths, n)),
                u_pow=rng.uniform(0, 1, (r1 - r0, width)), c0=np.zeros((r1 - r0, width)),
                c1=np.zeros((r1 - r0, width)))
    const = (rng.random((n_paths, n)) < 0.3, rng.uniform(100, 400, n), rng.uniform(0, 150, n),
             rng.lognormal(0, 0.2, (n_paths, 3)), rng.integers(0, 3, n).astype(np.intp))
    tail = (rng.uniform(0.2, 0.6, n), rng.uniform(5, 20, n) if fang else np.zeros(n),
            10.0, fang, 0.99, with_mortality)
    out = []
    for f in (_grow_trees_narrow, _grow_trees_wide):
        s = {k: v.copy() for k, v in base.items()}
        f(r0, r1, j0, jt, s["carbon"], *const, s["u_pow"], s["c0"], s["c1"], *tail)
        out.append(s)
    for k in base:
        assert np.array_equal(out[0][k], out[1][k]), k
