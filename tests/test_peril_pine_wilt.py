"""Pine wilt disease: mortality curve, spread speed, host limits, forced outbreaks, determinism."""

from __future__ import annotations


import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.dynamics import ForestSimulator, SimulationSwitches
from models.parameters.schema import Sourced
from models.perils.base import StandState, YearContext
from models.perils._weather import ForcedEventError
from models.perils.pine_wilt import KM_PER_DEGREE, PineWilt, SpreadDraws, build_grid
from models.portfolio import validate_frame
from models.rng import KeyedRandom

REF_LAT = 28.1


def frame(lat, lon, species, county="景宁畲族自治县", township="甲镇", elevation=300.0, pest_control="none",
          prefix="P") -> pd.DataFrame:
    n = len(lat)
    return pd.DataFrame({
        "parcel_id": [f"{prefix}{i:05d}" for i in range(n)],
        "province": "浙江省", "city": "丽水市",
        "county": county if not np.isscalar(county) else [county] * n,
        "township": township if not np.isscalar(township) else [township] * n,
        "village": "一村",
        "latitude": lat, "longitude": lon, "area_ha": 10.0,
        "species_group": species if not np.isscalar(species) else [species] * n,
        "age_years": 20, "site_class": "II",
        "elevation_m": elevation, "pest_control": pest_control,
    })


def pw_params(params, **values):
    """The Lishui pine wilt block with some values replaced (Sourced fields keep their labels)."""
    base = params.perils["pine_wilt"]
    upd = {}
    for k, v in values.items():
        cur = getattr(base, k)
        upd[k] = Sourced(value=float(v), source="domain_doc", confidence="assumption") if isinstance(cur, Sourced) else v
    return base.model_copy(update=upd)


QUIET = dict(introduction_rate_per_cell=0.0, long_distance_jump_rate=0.0)
#: spread-rate draws as the shipped file declares them (models.dynamics.spread_draws), for runs that set them
SPREAD = SpreadDraws(0.85, 0.59, 4)


def no_initial(params):
    ie = params.perils["pine_wilt"].initial_epidemic.model_copy(update={"counties": []})
    return {"initial_epidemic": ie}


def ctx_for(rnd, n, year, forced=None, independent=False, hazard=1.0, severity=1.0, carbon=50.0):
    p = rnd.n_paths
    stand = StandState(np.full((p, n), carbon), np.full((p, n), 20.0, np.float32),
                       np.full((p, n), -1, np.int16), year=year)
    return YearContext(year=year, calendar_year=2026 + year, rnd=rnd, stand=stand, drought=np.zeros(p, bool),
                       hazard_multiplier={"pine_wilt": hazard}, severity_multiplier={"pine_wilt": severity},
                       forced_events={"pine_wilt": forced} if forced else {}, independent=independent)


def dense_loss(pl, p, n):
    out = np.zeros((p, n))
    out[pl.path_pos, pl.parcel_pos] = pl.loss_fraction
    return out


# --------------------------------------------------------------------------------------------
def test_grid_neighbours_8_cells_within_reach():
    ij = np.array([[i, j] for i in range(5) for j in range(5)])
    g = build_grid(ij, 3.0, 0.0, 4.5)
    deg = np.asarray(g.neighbours.sum(axis=1)).ravel()
    centre = int(np.flatnonzero((g.ij == [2, 2]).all(axis=1))[0])
    corner = int(np.flatnonzero((g.ij == [0, 0]).all(axis=1))[0])
    assert deg[centre] == 8 and deg[corner] == 3
    assert g.neighbours.diagonal().sum() == 0
    # dilation by one cell adds the ring around the 5x5 block
    assert build_grid(ij, 3.0, 3.0, 4.5).n_cells == 25 + 4 * 5


def test_mortality_curve_matches_closed_form(params):
    # pure Masson pine (s0 = 1) and mixed conifer (s0 = 0.5); no control vs basic control
    lat = np.full(4, 28.0)
    lon = np.full(4, 119.5)
    species = ["masson_pine", "masson_pine", "mixed_conifer", "chinese_fir"]
    pf = validate_frame(frame(lat, lon, species, pest_control=["none", "basic", "none", "none"]), params)
    prm = pw_params(params, **QUIET, **no_initial(params))
    peril = PineWilt(prm, params, pf)
    rnd = KeyedRandom(3, np.arange(2), pf.keys)
    state = peril.init_state(2, rnd)
    state.years_infected[:] = 0  # every host parcel infected at the start of year 0
    m_u = prm.mortality_rate_uncontrolled.value
    m_c = prm.mortality_rate_controlled.value + prm.sanitation_removal_rate.value
    years = int(prm.outbreak_years.value)
    pid = list(pf.parcel_id)
    pos = {s: pid.index(f"P{i:05d}") for i, s in enumerate(["pine_none", "pine_basic", "mixed", "fir"])}
    severity = np.array([1.0, 1.5])  # path 1 under a 1.5x severity stress
    for y in range(years + 3):
        loss = dense_loss(peril.step(ctx_for(rnd, pf.n_parcels, y, severity=severity), state), 2, pf.n_parcels)
        active = y < years
        for path, sev in enumerate(severity):
            m = m_u * sev
            assert loss[path, pos["pine_none"]] == pytest.approx(m if active else 0.0)
            mc = prm.mortality_rate_controlled.value * sev + prm.sanitation_removal_rate.value
            assert loss[path, pos["pine_basic"]] == pytest.approx(mc if active else 0.0)
            left = (1 - m) ** y  # pines left before this year's loss
            share = 0.5 * left / (0.5 * left + 0.5)
            assert loss[path, pos["mixed"]] == pytest.approx(share * m if active else 0.0, rel=1e-6)
            assert loss[path, pos["fir"]] == 0.0
    # cumulative pine mortality: domain_parameters.md §4.2 "cumulative 50-90% in 5-10 yr" (uncontrolled)
    assert 0.5 <= 1 - (1 - m_u) ** 5 <= 0.9 and 0.5 <= 1 - (1 - m_u) ** 10 <= 0.9
    assert 0.03 <= prm.mortality_rate_controlled.value <= 0.10 and m_c < m_u
    host = list(peril.host_idx)
    assert state.pine_left[0, host.index(pos["pine_none"])] == pytest.approx((1 - m_u) ** years, rel=1e-5)


def _line_portfolio(params, n_cells, size_km):
    kx = KM_PER_DEGREE * np.cos(np.deg2rad(REF_LAT))
    i0, j0 = int(119.0 * kx // size_km), int(28.0 * KM_PER_DEGREE // size_km)
    lon = (i0 + np.arange(n_cells) + 0.5) * size_km / kx
    lat = np.full(n_cells, (j0 + 0.5) * size_km / KM_PER_DEGREE)
    county = ["起点县"] + ["其他县"] * (n_cells - 1)
    return validate_frame(frame(lat, lon, "masson_pine", county=county), params)


@pytest.mark.parametrize("rate,radius_cells,expected_cells_per_year", [
    (1.0, 1.2, 1 - np.exp(-1.0)),  # one neighbour each side: the front moves with prob 1-exp(-lambda)
    (60.0, 2.2, 2.0),  # near-certain transmission, reach of two cells: two cells a year
])
def test_front_speed_on_a_line_matches_kernel(params, rate, radius_cells, expected_cells_per_year):
    size = params.perils["pine_wilt"].cell_size_km.value
    n_cells, years, n_paths = 80, 20, 200
    pf = _line_portfolio(params, n_cells, size)
    # the portfolio's own landscape (the line alone), not the region's
    prm = pw_params(params, **QUIET, **no_initial(params), grid_buffer_km=0.0, local_transmission_rate=rate,
                    spread_radius_km=radius_cells * size, landscape=None)
    peril = PineWilt(prm, params, pf)
    assert peril.grid.n_cells == n_cells
    assert np.allclose(peril.infectivity, 1.0)  # pest_control none everywhere
    rnd = KeyedRandom(11, np.arange(n_paths), pf.keys)
    state = peril.init_state(n_paths, rnd)
    for y in range(years + 1):
        peril.step(ctx_for(rnd, pf.n_parcels, y, forced=[{"counties": ["起点县"]}] if y == 0 else None), state)
    x = peril.grid.ij[:, 0] - peril.grid.ij[:, 0].min()
    front = np.where(state.cell_infected, x[None, :], -1).max(axis=1)
    speed = front / years  # cells per year
    mean, se = speed.mean(), speed.std(ddof=1) / np.sqrt(n_paths)
    assert abs(mean - expected_cells_per_year) <= 4 * max(se, 1e-3)
    # in km/yr, the natural spread of domain_parameters.md §4.2 is 2-5 km/yr for the default kernel
    if rate == 1.0:
        q = 1 - np.exp(-params.perils["pine_wilt"].local_transmission_rate.value * 0.7)
        assert 2.0 <= q * size <= 5.0


def test_no_infection_above_altitude_or_on_non_pine(params):
    rng = np.random.default_rng(5)
    n = 400
    lat, lon = rng.uniform(27.9, 28.0, n), rng.uniform(119.5, 119.6, n)
    species = np.array(["masson_pine", "chinese_fir", "evergreen_broadleaf", "moso_bamboo"])[np.arange(n) % 4]
    elev = np.where(np.arange(n) % 8 < 4, 300.0, rng.uniform(1000.0, 1500.0, n))
    elev[(np.arange(n) % 8 == 4)] = 900.0  # half-way down the taper (limit 1000, taper 200)
    elev[(np.arange(n) % 16 == 0)] = 1000.0  # exactly at the limit
    pf = validate_frame(frame(lat, lon, species, elevation=elev), params)
    prm = pw_params(params, **QUIET, **no_initial(params))
    peril = PineWilt(prm, params, pf)
    n_paths = 64
    rnd = KeyedRandom(1, np.arange(n_paths), pf.keys)
    state = peril.init_state(n_paths, rnd)
    ever = np.zeros((n_paths, pf.n_parcels), bool)
    first = None
    for y in range(6):
        pl = peril.step(ctx_for(rnd, pf.n_parcels, y, forced=[{"counties": ["景宁"], "parcel_probability": 0.4}]), state)
        ever[pl.path_pos, pl.parcel_pos] = True
        if y == 0:
            first = ever.copy()
    sp = np.asarray(pf.frame["species_group"])
    el = pf.elevation_m
    pine_low = (sp == "masson_pine") & (el < 800)
    assert ever[:, pine_low].mean() > 0.5  # the disease does reach low pines
    assert not ever[:, sp != "masson_pine"].any()
    assert not ever[:, el >= 1000.0].any()
    # first-year infection rate: 0.4 below the taper, 0.4 * 0.5 at 900 m (closed form)
    taper = (sp == "masson_pine") & (el == 900.0)
    for mask, p in ((pine_low, 0.4), (taper, 0.2)):
        k = first[:, mask]
        assert abs(k.mean() - p) <= 4 * np.sqrt(p * (1 - p) / k.size)


def test_hazard_multiplier_scales_infection(params):
    rng = np.random.default_rng(2)
    n = 300
    pf = validate_frame(frame(rng.uniform(27.9, 28.0, n), rng.uniform(119.5, 119.6, n), "masson_pine"), params)
    prm = pw_params(params, **QUIET, **no_initial(params), parcel_infection_probability=0.1)
    peril = PineWilt(prm, params, pf)
    n_paths = 64
    rnd = KeyedRandom(9, np.arange(n_paths), pf.keys)
    state = peril.init_state(n_paths, rnd)
    state.cell_infected[:] = True
    hazard = np.where(np.arange(n_paths) % 2 == 0, 1.0, 2.5)
    pl = peril.step(ctx_for(rnd, pf.n_parcels, 0, hazard=hazard), state)
    hit = np.zeros((n_paths, pf.n_parcels), bool)
    hit[pl.path_pos, pl.parcel_pos] = True
    for sel, p in ((hazard == 1.0, 0.1), (hazard == 2.5, 0.25)):
        k = hit[sel]
        assert abs(k.mean() - p) <= 4 * np.sqrt(p * (1 - p) / k.size)


def test_forced_outbreak_starts_where_named(params):
    rng = np.random.default_rng(4)
    n = 300
    west = np.arange(n) < n // 2
    lon = np.where(west, rng.uniform(119.0, 119.1, n), rng.uniform(120.0, 120.1, n))  # ~100 km apart
    county = np.where(west, "莲都区", "龙泉市")
    township = np.where(rng.uniform(size=n) < 0.5, "甲镇", "乙乡")
    pf = validate_frame(frame(rng.uniform(28.0, 28.1, n), lon, "masson_pine", county=county, township=township), params)
    prm = pw_params(params, **QUIET, **no_initial(params), landscape=None)  # the portfolio's own cells and labels
    peril = PineWilt(prm, params, pf)
    rnd = KeyedRandom(2, np.arange(16), pf.keys)
    state = peril.init_state(16, rnd)
    assert not state.cell_infected.any()
    pl = peril.step(ctx_for(rnd, pf.n_parcels, 0, forced=[{"townships": ["龙泉市/乙乡"], "parcel_probability": 1.0}]),
                    state)
    fr = pf.frame
    named = ((fr["county"] == "龙泉市") & (fr["township"] == "乙乡")).to_numpy()
    hit = np.zeros((16, pf.n_parcels), bool)
    hit[pl.path_pos, pl.parcel_pos] = True
    assert hit[:, named].all() and not hit[:, west].any()
    west_cells = np.unique(peril.host_cell[west[peril.host_idx]])
    assert not state.cell_infected[:, west_cells].any()
    # other parcels sharing the newly infected cells: the ordinary rate (no control: multiplier 1)
    assert peril.n_hosts == pf.n_parcels  # all pines at 300 m: host positions are parcel positions
    in_cell = state.cell_infected[0, peril.host_cell]
    assert in_cell[named].all()
    others = hit[:, ~named & in_cell]
    p = prm.parcel_infection_probability.value
    assert abs(others.mean() - p) <= 4 * np.sqrt(p * (1 - p) / others.size)
    # bad events: clear errors naming the problem
    with pytest.raises(ForcedEventError, match="unknown key"):
        peril.forced_masks([{"county": ["龙泉市"]}])
    with pytest.raises(ForcedEventError, match="non-text"):
        peril.forced_masks([{"counties": [3]}])
    cells, prob = peril.forced_masks([{"counties": ["庆元县"]}])  # not in this portfolio: hits nothing
    assert not cells.any() and not prob.any()
    with pytest.raises(ForcedEventError, match="parcel_probability"):
        peril.forced_masks([{"counties": ["龙泉市"], "parcel_probability": 1.5}])
    with pytest.raises(ValueError, match="at least one"):
        peril.forced_masks([{}])
    # the masks of an event list are computed once and shared read-only; a bad list fails every time
    ev = [{"townships": ["龙泉市/乙乡"]}]
    c1, p1 = peril.forced_masks(ev)
    c2, p2 = peril.forced_masks([{"townships": ["龙泉市/乙乡"]}])
    assert np.array_equal(c1, c2) and np.array_equal(p1, p2) and c1[peril.host_cell[named]].all()
    with pytest.raises(ValueError, match="read-only"):
        p1[0] = 1.0
    for _ in range(2):
        with pytest.raises(ForcedEventError, match="unknown key"):
            peril.forced_masks([{"county": ["龙泉市"]}])


def _sim_portfolio(params, n=600, seed=8):
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(27.9, 28.2, n), rng.uniform(119.4, 119.8, n)
    county = np.where(lon < 119.5, "景宁畲族自治县", "云和县")
    species = rng.choice(["masson_pine", "mixed_conifer", "chinese_fir", "moso_bamboo"], n)
    return validate_frame(frame(lat, lon, species, county=county, elevation=rng.uniform(100, 1100, n),
                                pest_control=rng.choice(["none", "basic", "enhanced"], n)), params)


def test_draws_do_not_depend_on_path_blocking(params):
    pf = _sim_portfolio(params, n=300)
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("pine_wilt",)))

    def losses(path_ids, path):
        out = []
        rnd = KeyedRandom(42, np.asarray(path_ids), pf.keys)
        k = list(path_ids).index(path)
        for yo in sim.run(rnd, 12):
            (_, pl, lost), = yo.losses
            sel = pl.path_pos == k
            out.append((pl.parcel_pos[sel].tolist(), pl.loss_fraction[sel].tolist(), lost[sel].tolist()))
        return out

    a = losses(range(8), 5)
    b = losses(range(32), 5)
    c = losses(range(4, 12), 5)
    assert a == b == c
    assert sum(len(x[0]) for x in a) > 0  # the epidemic did something on this path


def test_independent_mode_matches_marginal_infection_rate(params):
    pf = _sim_portfolio(params)
    # scattered foci that grow: the regime where contagion makes parcels move together
    prm = pw_params(params, introduction_rate_per_cell=0.001, long_distance_jump_rate=0.0, **no_initial(params))
    n_paths, years = 256, 10
    shares = {}
    for indep in (False, True):
        peril = PineWilt(prm, params, pf)
        rnd = KeyedRandom(5, np.arange(n_paths), pf.keys)
        state = peril.init_state(n_paths, rnd)
        for y in range(years):
            peril.step(ctx_for(rnd, pf.n_parcels, y, independent=indep), state)
        shares[indep] = (state.years_infected >= 0).mean(axis=1)  # infected share of hosts, per path
    sp, si = shares[False], shares[True]
    se = np.sqrt(2 * sp.var(ddof=1) / n_paths + si.var(ddof=1) / n_paths)  # spatial, shadow and independent error
    assert 0.02 < sp.mean() < 0.95
    assert abs(sp.mean() - si.mean()) <= 4 * se
    # contagion gone: far less co-movement of parcels across paths
    assert si.var() < sp.var() / 4


def test_the_independent_modes_shadow_draws_its_spread_rates(params):
    """The shadow epidemic behind independent mode's marginal infection probabilities runs its paths on
    their parameter sets' spread rates, as any run does: its marginal averages over them."""
    pf = _sim_portfolio(params)
    peril = PineWilt(pw_params(params, introduction_rate_per_cell=0.002), params, pf)
    peril.set_spread(SPREAD)
    n = peril.params.independent_shadow_paths
    srnd = KeyedRandom(5, np.arange(n), np.empty(0, dtype=np.uint64))
    flags = peril._initial_cells(srnd, "pine_wilt.shadow")
    rates = peril.path_rates(srnd)
    assert np.unique(rates[0]).size == n // SPREAD.parameter_set_size
    for y in range(6):
        expected = flags | (srnd.keyed_uniform("pine_wilt.shadow.spread", y, peril.grid.keys)
                            < -np.expm1(-peril.cell_hazard(flags, rates)))
        flags = expected
        assert np.array_equal(peril._shadow_marginal(5, y, None), expected.mean(axis=0)), y


def test_parameter_block_targets(params):
    p = params.perils["pine_wilt"]
    assert p.altitude_limit_m.value == 1000.0 and p.altitude_limit_m.confidence == "read"
    control = params.file.management["pest_control"]["basic"].value
    assert 0.02 <= p.parcel_infection_probability.value * control <= 0.05  # §4.2: 2-5 %/yr, epidemic county
    assert 0.10 <= p.mortality_rate_uncontrolled.value <= 0.30


# ---- the landscape footprint ----------------------------------------------------------------------
def test_footprint_is_the_year_by_year_epidemic(params):
    """footprint <= y gives, bit for bit, the flags the year-by-year cell process has after year y."""
    pf = _sim_portfolio(params, n=300)
    prm = pw_params(params, introduction_rate_per_cell=0.002)
    peril = PineWilt(prm, params, pf)
    rnd = KeyedRandom(11, np.arange(64, 128), pf.keys)
    fp = peril.compute_footprint(rnd, 15)
    assert fp.dtype == np.int16 and fp.shape == (64, peril.grid.n_cells)
    flags = peril._initial_cells(rnd)
    assert np.array_equal(flags, fp < 0) and flags.any()
    tracking = peril._new_tracking(64)
    for y in range(15):
        peril.advance_cells(flags, y, rnd, None, tracking=tracking)
        assert np.array_equal(flags, fp <= y), y
    assert (fp > 0).any()
    short = peril.compute_footprint(rnd, 3)  # a shorter horizon: the same years, later ones never
    assert np.array_equal(short, np.where(fp < 3, fp, 32767)) and (short == 32767).any()


@pytest.mark.parametrize("drawn", [False, True])
def test_shared_footprint_gives_the_stepped_run(params, monkeypatch, drawn):
    """A block that reads the shared footprint loses exactly what a block stepping its own cells
    does, also when a forced outbreak makes the epidemic its own in year 4 (with the spread rates
    drawn per parameter set too: the stepped years take the paths' rates); blocks are cached and a
    second portfolio on the same landscape reads them without simulating the cells again."""
    import models.perils.pine_wilt as pw

    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(pw, "_FOOTPRINT_BYTES", 0)
    pf = _sim_portfolio(params, n=300)
    prm = pw_params(params, introduction_rate_per_cell=0.002)
    years = 9
    for forced_year in (None, 4):
        runs = []
        for horizon in (None, years):
            peril = PineWilt(prm, params, pf)
            peril.set_spread(SPREAD if drawn else None)
            rnd = KeyedRandom(3, np.arange(32, 96), pf.keys)
            state = peril.init_state(64, rnd, years=horizon)
            assert (state.cell_infected is None) == (horizon is not None)
            out = []
            for y in range(years):
                forced = [{"counties": ["云和县"]}] if y == forced_year else None
                pl = peril.step(ctx_for(rnd, pf.n_parcels, y, forced=forced), state)
                out.append(dense_loss(pl, 64, pf.n_parcels))
            runs.append((np.stack(out), state.years_infected.copy(), state.pine_left.copy()))
        for a, b in zip(*runs):
            assert np.array_equal(a, b)
        assert runs[0][0].sum() > 0
    # the second portfolio's run reads the cached blocks: no cell process is simulated again
    calls = []
    monkeypatch.setattr(PineWilt, "compute_footprint", lambda self, rnd, years: calls.append(1))
    peril = PineWilt(prm, params, pf.subset(pf.parcel_id[:200], params))
    peril.set_spread(SPREAD if drawn else None)
    assert peril._grid_token == PineWilt(prm, params, pf)._grid_token  # the region's landscape: one epidemic
    rnd = KeyedRandom(3, np.arange(32, 96), peril.portfolio.keys)
    state = peril.init_state(64, rnd, years=years)
    peril.step(ctx_for(rnd, peril.portfolio.n_parcels, 0), state)
    assert not calls
    # a longer horizon than the blocks hold: simulated, not read (paths not in whole blocks: test_footprint_cache_keeps_the_longer_horizon_and_skips_odd_paths)
    state = peril.init_state(64, rnd, years=years + 1)
    with pytest.raises(TypeError):  # the stub returns None
        peril.step(ctx_for(rnd, peril.portfolio.n_parcels, 0), state)
    assert len(calls) == 1


# ---- the region's landscape ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(params):
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    return load_portfolio(demo_portfolio_path(), params)


def test_a_loan_runs_the_citys_epidemic(params, demo):
    """A loan's parcels lose to pine wilt exactly what they lose in the city-wide run on the same
    draws: both run on the region's landscape (until numbers version 3 a one-township loan ran on
    its own 115 cells, which the Jingning foci never reached: a quarter of the city run's loss)."""
    proj = demo.frame["project_id"].value_counts().index[0]
    loan = demo.subset(demo.parcel_id[demo.frame["project_id"].to_numpy() == proj], params)
    prm = params.perils["pine_wilt"]
    city_peril, loan_peril = PineWilt(prm, params, demo), PineWilt(prm, params, loan)
    assert loan_peril.grid.n_cells == city_peril.grid.n_cells == prm.landscape_data.n_cells
    assert loan_peril._grid_token == city_peril._grid_token and loan_peril.hosts_outside_landscape == 0
    assert loan_peril.initial_cells.any()  # the Jingning foci, whether or not the loan holds parcels there
    assert np.array_equal(loan_peril.initial_cells, city_peril.initial_cells)
    years, n_paths = 12, 32
    pos = np.flatnonzero(np.isin(demo.parcel_id, loan.parcel_id))
    assert np.array_equal(demo.parcel_id[pos], loan.parcel_id)  # the same canonical order
    lost = {}
    for name, peril, pf in (("city", city_peril, demo), ("loan", loan_peril, loan)):
        rnd = KeyedRandom(17, np.arange(n_paths), pf.keys)
        state = peril.init_state(n_paths, rnd, years=years)
        out = [dense_loss(peril.step(ctx_for(rnd, pf.n_parcels, y), state), n_paths, pf.n_parcels)
               for y in range(years)]
        lost[name] = np.stack(out)
    assert np.array_equal(lost["city"][:, :, pos], lost["loan"])
    assert lost["loan"].sum() > 0


def test_landscape_labels_place_foci_and_outbreaks(params):
    """The initial epidemic and forced outbreaks fall on the region's cells by their labels, also
    for a portfolio with no parcel in the named county; hosts beyond the landscape extend it."""
    land = params.perils["pine_wilt"].landscape_data
    jingning = (land.county == "景宁畲族自治县") & (land.host_area_ha > 0)
    assert jingning.sum() > 0
    rng = np.random.default_rng(3)
    inside = validate_frame(frame(rng.uniform(28.05, 28.1, 20), rng.uniform(119.1, 119.15, 20), "masson_pine",
                                  county="龙泉市"), params)
    peril = PineWilt(params.perils["pine_wilt"], params, inside)
    assert peril.hosts_outside_landscape == 0
    assert peril.initial_cells.sum() == jingning.sum()
    assert np.array_equal(peril.initial_cells[peril._land_pos], jingning)
    cells, prob = peril.forced_masks([{"counties": ["景宁畲族自治县"]}])
    assert cells.sum() == jingning.sum() and not prob.any()  # cells infected; none of this portfolio's parcels
    town = land.township[jingning][0]
    cells_t, _ = peril.forced_masks([{"townships": [f"景宁畲族自治县/{town}"]}])
    assert 0 < cells_t.sum() <= cells.sum() and not (cells_t & ~cells).any()
    # a pine stand 150 km east of Lishui: the landscape is kept and extended around it
    far = validate_frame(frame(np.array([28.05, 29.5]), np.array([119.1, 121.0]), "masson_pine", county="龙泉市"),
                         params)
    ext = PineWilt(params.perils["pine_wilt"], params, far)
    assert ext.hosts_outside_landscape == 1
    assert ext.grid.n_cells > land.n_cells and _rows_in_all(land.ij, ext.grid.ij)
    assert ext._grid_token != peril._grid_token


def _rows_in_all(a, b):
    return {tuple(x) for x in a} <= {tuple(x) for x in b}


def test_landscape_file_is_checked(params, tmp_path):
    import hashlib

    from models.parameters import ParameterError, load_parameters
    from models.perils.pine_wilt_landscape import LandscapeError, parse_landscape, read_landscape

    ref = params.perils["pine_wilt"].landscape
    shipped = Path(params.path).parent / ref.file
    data = shipped.read_bytes()
    assert hashlib.sha256(data).hexdigest() == ref.sha256
    head = "ix,iy,county,township,host_area_none_ha,host_area_basic_ha,host_area_enhanced_ha\n"
    good = head + "3,4,景宁畲族自治县,甲镇,10,30,0\n3,5,,,0,0,0\n"
    land = parse_landscape(good.encode(), "x.csv")
    assert land.n_cells == 2 and land.county[0] == "景宁畲族自治县" and land.host_area_ha.tolist() == [40.0, 0.0]
    # infectivity: the hosts' mean pest-control multiplier, the background where there are none
    inf = land.infectivity(np.array([1.0, 0.7, 0.4]), 0.7)
    assert inf.dtype == np.float32 and inf.tolist() == pytest.approx([(10 + 30 * 0.7) / 40, 0.7])
    for bad, where in ((good.replace("3,5,", "3,4,"), "row 3, fields ix/iy: cell (3, 4) repeats row 2"),
                       (good.replace(",30,", ",nan,"), "row 2, field host_area_basic_ha"),
                       (good.replace("3,5,", "3,x,"), "row 3, field iy"),
                       (good.replace(",10,", ",-1,"), "row 2, field host_area_none_ha"),
                       (good.replace("enhanced_ha", "enhanced"), "missing column")):
        with pytest.raises(LandscapeError, match=f"x.csv: .*{re.escape(where)}"):
            parse_landscape(bad.encode(), "x.csv")
    # a landscape whose content does not match the hash the parameter file names is refused
    changed = tmp_path / ref.file
    changed.write_bytes(data.replace(b"\n3881,1020,,,0.0000", b"\n3881,1020,,,1.0000", 1))
    assert changed.read_bytes() != data
    with pytest.raises(LandscapeError, match="SHA-256"):
        read_landscape(changed, ref.sha256)
    text = Path(params.path).read_text(encoding="utf-8")
    (tmp_path / "region.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ParameterError, match=f"region.yaml: perils.pine_wilt: .*{ref.file}: SHA-256"):
        load_parameters(tmp_path / "region.yaml")  # found next to the copy, and refused
    changed.unlink()  # a copied parameter file finds the shipped landscape by name
    assert load_parameters(tmp_path / "region.yaml").perils["pine_wilt"].landscape_data.n_cells == land_cells(params)


def land_cells(params):
    return params.perils["pine_wilt"].landscape_data.n_cells


def test_shipped_landscape_is_the_demo_registrys(params, tmp_path):
    """`carbon-risk landscape` rebuilds the shipped landscape from the shipped registry byte for byte."""
    from click.testing import CliRunner

    from api.cli import cli

    out = tmp_path / "landscape.csv"
    res = CliRunner().invoke(cli, ["landscape", "-o", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    ref = params.perils["pine_wilt"].landscape
    assert out.read_bytes() == (Path(params.path).parent / ref.file).read_bytes()
    assert f'"sha256": "{ref.sha256}"' in res.output


def test_warm_footprint_serves_the_first_loan(params, demo, monkeypatch):
    """A service's workers simulate the landscape ahead (warm_footprint); a loan's run then reads it."""
    import models.perils.pine_wilt as pw
    from api.compute import WARM_SEED, WARM_YEARS
    from api.settings import Settings

    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(pw, "_FOOTPRINT_BYTES", 0)
    # what a compute worker of a warm pool does when it starts (tests/server_process.py runs real ones)
    from models.dynamics import spread_draws

    # with the spread draws of the default switches, those of the service's valuations
    assert pw.warm_footprint(params, WARM_SEED, 96, WARM_YEARS, block_paths=64,
                             spread=spread_draws(params, SimulationSwitches())) == 96 * land_cells(params) * 2
    land = params.perils["pine_wilt"].landscape_data
    assert pw._FOOTPRINT_BYTES == 96 * land.n_cells * 2 and len(pw._FOOTPRINTS) == 3
    calls = []
    monkeypatch.setattr(PineWilt, "compute_footprint", lambda self, rnd, years: calls.append(1))
    loan = demo.subset(demo.parcel_id[:40], params)
    peril = next(p for p in ForestSimulator(params, loan).perils if p.name == "pine_wilt")  # as a valuation has it
    assert peril.spread is not None
    rnd = KeyedRandom(WARM_SEED, np.arange(32, 96), loan.keys)
    state = peril.init_state(64, rnd, years=30)
    peril.step(ctx_for(rnd, loan.n_parcels, 0), state)
    assert not calls and state.host_cell_year.shape == (64, peril._host_cells.size)
    assert Settings.from_env({}).landscape_warm_paths == 10_000
    assert Settings.from_env({"CRE_LANDSCAPE_WARM_PATHS": "0"}).landscape_warm_paths == 0


def test_landscape_command_refuses_a_registry_without_pines(params, tmp_path):
    from click.testing import CliRunner

    from api.cli import cli

    reg = tmp_path / "firs.csv"
    frame(np.full(5, 28.0), np.linspace(119.4, 119.5, 5), "chinese_fir").to_csv(reg, index=False)
    res = CliRunner().invoke(cli, ["landscape", str(reg), "-o", str(tmp_path / "x.csv")])
    assert res.exit_code == 2 and "no pine host parcels" in res.output and not (tmp_path / "x.csv").exists()
    res = CliRunner().invoke(cli, ["landscape", str(reg), "-o", str(tmp_path / "no" / "x.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_landscape_follows_the_parameter_file(params, tmp_path, demo):
    """Pest-control multipliers apply when a run starts (no rebuild); a value the landscape was built with
    must match the block; a block naming a landscape that was never read refuses to run."""
    from models.parameters import ParameterError, load_parameters

    text = Path(params.path).read_text(encoding="utf-8")
    edited = text.replace("grid_buffer_km: {value: 10.0", "grid_buffer_km: {value: 6.0", 1)
    assert edited != text
    (tmp_path / "buffer.yaml").write_text(edited, encoding="utf-8")
    with pytest.raises(ParameterError, match="landscape.grid_buffer_km = 10.0 differs .* rebuild the landscape"):
        load_parameters(tmp_path / "buffer.yaml")
    edited = text.replace("altitude_limit_m: {value: 1000.0", "altitude_limit_m: {value: 1200.0", 1)
    assert edited != text
    (tmp_path / "altitude.yaml").write_text(edited, encoding="utf-8")
    with pytest.raises(ParameterError, match="landscape.altitude_limit_m = 1000.0 differs"):
        load_parameters(tmp_path / "altitude.yaml")
    # a stronger basic control: the same landscape file, lower infectivity wherever basic control is
    prm = params.perils["pine_wilt"]
    land = prm.landscape_data
    edited = text.replace("    basic: {value: 0.7, source: domain_doc, confidence: assumption}",
                          "    basic: {value: 0.5, source: domain_doc, confidence: assumption}", 1)
    assert edited != text
    (tmp_path / "control.yaml").write_text(edited, encoding="utf-8")
    strong = load_parameters(tmp_path / "control.yaml")
    before = PineWilt(prm, params, demo)
    after = PineWilt(strong.perils["pine_wilt"], strong, demo)
    assert np.array_equal(after.infectivity[after._land_pos], land.infectivity([1.0, 0.5, 0.4], 0.5))
    basic = land.host_area_by_level[:, 1] > 0
    gone = (land.host_area_ha == 0)  # background cells: background_pest_control is basic
    lower = after.infectivity[after._land_pos] < before.infectivity[before._land_pos]
    assert lower[basic].all() and lower[gone].all() and basic.any()
    assert after._grid_token != before._grid_token  # another epidemic: not read from the other's footprint
    # validated without reading its file, or copied to name another file: no silent fallback, no other cells
    bare = type(prm).model_validate(prm.model_dump())
    other = prm.model_copy(update={"landscape": prm.landscape.model_copy(update={"sha256": "0" * 64})})
    for block in (bare, other):
        with pytest.raises(ValueError, match="names a file that was not read"):
            PineWilt(block, params, demo)


def test_footprint_cache_keeps_the_longer_horizon_and_skips_odd_paths(params, monkeypatch):
    import models.perils.pine_wilt as pw

    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(pw, "_FOOTPRINT_BYTES", 0)
    peril = PineWilt.for_landscape(params.perils["pine_wilt"], params)
    none = np.empty(0, dtype=np.int64)
    peril.footprint(KeyedRandom(5, np.arange(64), none.astype(np.uint64)), 12, none)
    assert {v[0] for v in pw._FOOTPRINTS.values()} == {12} and len(pw._FOOTPRINTS) == 2
    # a run over more paths (one block new) and a shorter horizon recomputes, but keeps the 12-year blocks
    peril.footprint(KeyedRandom(5, np.arange(96), none.astype(np.uint64)), 6, none)
    years = {k[2]: v[0] for k, v in pw._FOOTPRINTS.items()}
    assert years == {0: 12, 32: 12, 64: 6}
    assert not next(iter(pw._FOOTPRINTS.values()))[1].flags.writeable
    # paths that are not whole blocks are computed, equal to the cached ones, and not kept
    odd = peril.footprint(KeyedRandom(5, np.array([3, 4, 40]), none.astype(np.uint64)), 12)
    full = peril.footprint(KeyedRandom(5, np.arange(64), none.astype(np.uint64)), 12)
    assert np.array_equal(odd, full[[3, 4, 40]]) and len(pw._FOOTPRINTS) == 3


def test_runs_record_hosts_outside_the_landscape(params, tmp_path):
    from click.testing import CliRunner

    from api.cli import cli
    from finance_engine.simulation import simulate

    far = validate_frame(frame(np.array([28.05, 29.5]), np.array([119.1, 121.0]), "masson_pine", county="龙泉市"),
                         params)
    res = simulate(far, params, years=2, paths=32, seed=1)
    assert res.run_info["pine_wilt_hosts_outside_landscape"] == 1
    inside = far.subset(far.parcel_id[:1], params)
    assert simulate(inside, params, years=2, paths=32, seed=1).run_info["pine_wilt_hosts_outside_landscape"] == 0
    path = tmp_path / "far.csv"
    far.to_frame().to_csv(path, index=False)
    out = CliRunner().invoke(cli, ["simulate", "--portfolio", str(path), "--years", "2", "--paths", "32"])
    assert out.exit_code == 0, out.output
    assert "1 pine parcel(s) lie outside the region's pine wilt landscape; their cells are simulated" in out.output
    assert res.provenance["model_notes"] == {"pine_wilt_hosts_outside_landscape": 1}
    # results built on the engine carry the note, and the CLI shows it (a valuation here)
    from finance_engine.collateral import value_collateral

    terms = {"amount_cny": 100_000, "term_years": 2, "interest_rate": 0.05, "crediting_horizon_years": 3}
    v = value_collateral(far, params, terms, paths=64, seed=1, attribution=False, sensitivities=False)
    assert v.provenance["model_notes"] == {"pine_wilt_hosts_outside_landscape": 1}
    out = CliRunner().invoke(cli, ["collateral", "--portfolio", str(path), "--amount", "100000", "--term", "2",
                                   "--rate", "0.05", "--paths", "64", "--no-attribution", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert "1 pine parcel(s) lie outside the region's pine wilt landscape" in out.output


def test_portfolios_inside_the_landscape_share_its_grid(params, demo):
    """Every pledge inside the region's landscape runs on the same grid, built once per process (read-only)
    and equal to the grid built for it; a portfolio with a host beyond the landscape gets its own."""
    from models.perils.pine_wilt import shared_landscape_grid

    def grid_of(pf):
        return next(p for p in ForestSimulator(params, pf).perils if p.name == "pine_wilt").grid

    a, b = grid_of(demo.subset(demo.parcel_id[:40], params)), grid_of(demo.subset(demo.parcel_id[40:90], params))
    assert a is b and not a.ij.flags.writeable and not a.neighbours.indices.flags.writeable
    block = params.perils["pine_wilt"]
    built = build_grid(np.empty((0, 2), dtype=np.int64), block.cell_size_km.value, block.grid_buffer_km.value,
                       block.spread_radius_km.value, fixed_ij=block.landscape_data.ij)
    for x, y in ((a.ij, built.ij), (a.centre_km, built.centre_km), (a.keys, built.keys)):
        assert np.array_equal(x, y) and x.dtype == y.dtype
    assert (a.neighbours != built.neighbours).nnz == 0
    assert shared_landscape_grid(block.landscape_data, block.landscape.sha256, block.cell_size_km.value,
                                 block.grid_buffer_km.value, 2 * block.spread_radius_km.value) is not a
    far = validate_frame(frame(np.array([28.05, 29.5]), np.array([119.1, 121.0]), "masson_pine", county="龙泉市"),
                         params)
    own = grid_of(far)
    assert own is not a and own.n_cells > a.n_cells


def test_a_failed_warm_up_leaves_the_compute_worker_usable(monkeypatch, caplog):
    """Warming only saves time: a worker whose landscape simulation fails logs it and serves on."""
    import api.compute as compute
    import models.perils.pine_wilt as pw

    def fail(*args, **kwargs):
        raise MemoryError("no room for the footprint")

    monkeypatch.setattr(pw, "warm_footprint", fail)
    monkeypatch.setattr(compute, "_W", {"portfolios": compute.OrderedDict()})
    monkeypatch.setattr("models.perils.footprint_store._writes", True)  # a worker turns writes off
    monkeypatch.setattr("finance_engine._workers.exit_with_parent", lambda: None)
    with caplog.at_level("ERROR", logger="carbon_risk.compute"):
        compute._init_worker(64)
    assert "could not simulate the lishui pine wilt landscape ahead" in caplog.text
    assert "lishui" in compute._W["params"] and "pms" in compute._W


@pytest.mark.parametrize("drawn", [False, True])
def test_hosts_beyond_the_landscape_do_not_change_the_regions_epidemic(params, demo, monkeypatch, drawn):
    """An extended grid's landscape cells follow the region's own process, so a parcel inside the landscape
    loses the same whether or not the run also holds pines beyond it; stepped and footprint runs agree. With
    the spread rates drawn, the region's process driving the extended grid takes the same draws."""
    import models.perils.pine_wilt as pw

    monkeypatch.setattr(pw, "_FOOTPRINTS", pw.OrderedDict())
    monkeypatch.setattr(pw, "_FOOTPRINT_BYTES", 0)
    inside = demo.subset(demo.parcel_id[demo.frame["project_id"].to_numpy() == demo.frame["project_id"].value_counts()
                                        .index[0]], params)
    far_frame = frame(np.array([29.5, 29.52]), np.array([121.0, 121.02]), "masson_pine", county="龙泉市", prefix="F")
    both_frame = pd.concat([inside.to_frame(), far_frame], ignore_index=True)
    both = validate_frame(both_frame, params)
    prm = params.perils["pine_wilt"]
    p_in, p_both = PineWilt(prm, params, inside), PineWilt(prm, params, both)
    region = PineWilt.for_landscape(prm, params)
    for peril in (p_in, p_both, region):
        peril.set_spread(SPREAD if drawn else None)
    assert p_both._region.spread == (SPREAD if drawn else None)
    assert p_both.hosts_outside_landscape == 2 and p_both.grid.n_cells > region.grid.n_cells
    assert p_in._grid_token == region._grid_token != p_both._grid_token
    years, n_paths = 12, 64
    rnd = KeyedRandom(21, np.arange(n_paths), both.keys)
    fp = p_both.compute_footprint(rnd, years)
    assert np.array_equal(fp[:, p_both._land_pos], region.compute_footprint(rnd, years))
    assert (fp[:, np.setdiff1d(np.arange(p_both.grid.n_cells), p_both._land_pos)] < 32767).any()  # the extension lives
    # the inside parcels lose the same in both runs, and a stepped run of the extended grid matches its footprint run
    pos = np.flatnonzero(np.isin(both.parcel_id, inside.parcel_id))
    assert np.array_equal(both.parcel_id[pos], inside.parcel_id)
    lost = {}
    for name, peril, pf, horizon in (("inside", p_in, inside, years), ("both", p_both, both, years),
                                      ("both stepped", p_both, both, None)):
        r = KeyedRandom(21, np.arange(n_paths), pf.keys)
        state = peril.init_state(n_paths, r, years=horizon)
        lost[name] = np.stack([dense_loss(peril.step(ctx_for(r, pf.n_parcels, y), state), n_paths, pf.n_parcels)
                               for y in range(years)])
    assert np.array_equal(lost["both"][:, :, pos], lost["inside"]) and lost["inside"].sum() > 0
    assert np.array_equal(lost["both"], lost["both stepped"])


def test_pest_control_action_changes_the_regions_landscape(params, demo):
    """A pest-control action on the region's registry gives the landscape the changed registry would
    give (byte for byte), slows the region's epidemic, and keeps the parameter file's hash; on a
    smaller portfolio it moves that portfolio's share only."""
    from finance_engine.stress.levers import ManagementAction
    from models.perils.pine_wilt import with_pest_control
    from models.perils.pine_wilt_landscape import landscape_csv

    action = ManagementAction("enhanced pest control on every pine", pest_control="enhanced")
    changed, area_registry = action.apply(demo, params)
    run_params, moved = action.landscape(demo, params)
    block = params.perils["pine_wilt"]
    rebuilt = PineWilt(block.model_copy(update={"landscape": None}), params, changed).as_landscape()
    got = run_params.perils["pine_wilt"].landscape_data
    assert landscape_csv(got) == landscape_csv(rebuilt)
    before = block.landscape_data.host_area_by_level.sum(axis=0)
    assert moved == pytest.approx(before[0] + before[1], rel=1e-9)  # all host area not enhanced before
    assert got.host_area_by_level[:, :2].sum() == pytest.approx(0.0, abs=1e-6)
    assert run_params.sha256 == params.sha256 and run_params.perils["fire"] is params.perils["fire"]
    ref = run_params.perils["pine_wilt"].landscape
    assert ref.sha256 != block.landscape.sha256 and "stress lever" in ref.note
    # results record the variant (and the engine's per-process set-up tells it from the file's)
    assert ref.sha256 in run_params.variant and params.variant == ""
    assert run_params.provenance()["parameter_variant"] == run_params.variant
    assert "parameter_variant" not in params.provenance()
    # the region's epidemic is slower. On the same draws the SI process is monotone in the hazards
    # (lower infectivity: every cell's hazard is lower given the same infected cells), so no cell is
    # infected earlier, and many later
    rnd = KeyedRandom(3, np.arange(64), np.empty(0, dtype=np.uint64))
    fp0 = PineWilt.for_landscape(block, params).compute_footprint(rnd, 10)
    fp1 = PineWilt.for_landscape(run_params.perils["pine_wilt"], params).compute_footprint(rnd, 10)
    assert (fp1 >= fp0).all() and (fp1 <= 9).mean() < (fp0 <= 9).mean() - 0.03
    # a loan's parcels move only their own host area (at most what each cell holds at each level)
    loan = demo.subset(demo.parcel_id[:40], params)
    _, moved_loan = with_pest_control(params, loan, np.ones(loan.n_parcels, dtype=bool), "enhanced", "test")
    hosts = PineWilt(block, params, loan)
    not_enhanced = loan.pest_control_code[hosts.host_idx] != 2
    assert 0 < moved_loan <= loan.area_ha[hosts.host_idx][not_enhanced].sum() + 1e-9
    # nothing to move: the same parameters
    none_params, none_moved = with_pest_control(params, loan, np.zeros(loan.n_parcels, dtype=bool), "enhanced", "t")
    assert none_params is params and none_moved == 0.0
    # fire protection does not touch pine wilt's landscape
    fire = ManagementAction("fire", fire_protection="enhanced")
    assert fire.landscape(demo, params) == (params, 0.0)
