"""The pine wilt compiled kernels equal their plain-numpy definitions element by element."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from scipy import sparse

from models.perils._pine_wilt_kernels import (GRID_PER_UNIT, SLACK, _lowest_bit, cell_year, cell_year_tracked,
                                              hazard_threshold, hazard_threshold_grid, uniform_threshold)
from models.perils.base import StandState, YearContext
from models.perils.pine_wilt import CellTracking, PineWilt, SpreadDraws, _neighbour_bits, pressure_table
from models.portfolio import validate_frame
from models.rng import KeyedRandom, _to_unit, reference_grid
from tests.conftest import make_frame
from tests.test_peril_pine_wilt import pw_params

TWO53 = 2**53


def unit(m: np.ndarray) -> np.ndarray:
    """models.rng's uniform of the 53-bit integers m (hash z = m << 11)."""
    return _to_unit(np.asarray(m, dtype=np.uint64) << np.uint64(11))


# ---- integer thresholds ----------------------------------------------------------------------
def test_uniform_threshold_splits_the_uniforms_exactly():
    rng = np.random.default_rng(0)
    probs = [0.0, -0.5, 1.0, 1.5, 1e-300, 2.0**-54, 2.0**-53, 0.5, 1 - 2.0**-53, float("nan"), float("inf")]
    probs += list(rng.random(300))
    probs += list(rng.random(300).astype(np.float32).astype(float))  # the kernel's probabilities are float32
    probs += list(10.0 ** rng.uniform(-12, 0, 300))
    m_exact = np.concatenate([rng.integers(0, TWO53, 200), [0, 1, 2**52 - 1, 2**52, 2**52 + 1, TWO53 - 1]])
    probs += list(unit(m_exact))  # p equal to a uniform: that uniform is not below p
    probs += list(np.nextafter(unit(m_exact), 2.0))
    for p in probs:
        t = int(uniform_threshold(float(p)))
        assert 0 <= t <= TWO53
        m = np.arange(t - 3, t + 3)
        m = m[(m >= 0) & (m < TWO53)]
        np.testing.assert_array_equal(unit(m) < p, m < t, err_msg=f"p={p!r}")
    # the edges: no uniform is below 0; every uniform but the top one (which rounds to 1.0) is below 1
    assert int(uniform_threshold(0.0)) == 0 and int(uniform_threshold(float("nan"))) == 0
    assert int(uniform_threshold(1.0)) == TWO53 - 1 and unit(TWO53 - 1)[()] == 1.0
    assert int(uniform_threshold(1.5)) == TWO53


# ---- the cell process --------------------------------------------------------------------------
def _rate_cases(rng, n_paths):
    """(local, jump, intro) rates: the same on every path, or drawn per path as parameter sets do
    (``PineWilt.path_rates``: the file's rates times mean-one lognormals, float32)."""
    same = [(np.full(n_paths, lr, np.float32), np.full(n_paths, jr, np.float32), ir)
            for lr, jr, ir in ((2.3, 0.02, 2e-4), (0.3, 0.5, 0.01), (8.0, 0.0, 0.0))]
    drawn = ((2.3 * rng.lognormal(-0.36, 0.85, n_paths)).astype(np.float32),
             (0.3 * rng.lognormal(-0.17, 0.59, n_paths)).astype(np.float32), 2e-4)
    return same + [drawn]


def _reference_cells(infected, w_t, infectivity, lr, jr, ir, u):
    """numpy: pressure summed over infected sources in ascending order (CSR rows sorted), float32;
    ``lr`` and ``jr`` per path (float32 arrays)."""
    x = infected.astype(np.float32)
    local = np.asarray(w_t @ x.T).T
    emitted = np.cumsum(x * infectivity[None, :], axis=1, dtype=np.float32)[:, -1]  # in cell order
    h = lr[:, None] * local
    h += (jr * emitted / np.float32(max(infected.shape[1], 1)))[:, None]
    h += np.float32(ir)
    return infected | (u < -np.expm1(-h))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cell_year_equals_numpy_on_a_random_graph(seed):
    # a random symmetric graph with arbitrary positive weights (many distinct pressures, so the
    # per-path threshold cache collides), paths from nearly empty to full, both kernel branches
    rng = np.random.default_rng(seed)
    n_cells, n_paths = 300, 40
    a = sparse.random(n_cells, n_cells, density=0.03, random_state=seed, format="csr")
    a = ((a + a.T) > 0).astype(np.float32)
    a.setdiag(0)
    a.eliminate_zeros()
    infectivity = rng.uniform(0.05, 1.0, n_cells).astype(np.float32)
    infectivity[:5] = 0.0  # cells that emit nothing: touched, pressure 0
    w = (sparse.diags(infectivity) @ a).tocsr().astype(np.float32)
    w_t = w.T.tocsr()
    w_t.sort_indices()
    share = np.linspace(0.0, 1.0, n_paths)
    infected = rng.random((n_paths, n_cells)) < share[:, None]
    infected[-1] = True
    keys = rng.integers(0, 2**63, n_cells).astype(np.uint64)
    rows = rng.integers(0, 2**63, n_paths).astype(np.uint64)
    u = reference_grid(rows, keys)
    for lr, jr, ir in _rate_cases(rng, n_paths):
        expected = _reference_cells(infected, w_t, infectivity, lr, jr, ir, u)
        got = infected.copy()
        cell_year(got, w.indptr, w.indices, w.data, w_t.indptr, w_t.indices, w_t.data, infectivity, lr, jr, ir,
                  rows, keys)
        np.testing.assert_array_equal(got, expected)
        assert (got & ~infected).any()  # the test exercises new infections


@pytest.mark.parametrize("tracked", [True, False])
@pytest.mark.parametrize("drawn", [False, True])
def test_advance_cells_equals_cell_hazard_definition_through_an_epidemic(params, tracked, drawn):
    """The compiled year against its numpy definition, with the file's rates or each parameter set's
    drawn rates (``cell_hazard`` then needs the paths' rates: it refuses to guess)."""
    frame = make_frame(400, seed=7, species=["masson_pine", "mixed_conifer"])
    frame["pest_control"] = np.random.default_rng(7).choice(["none", "basic", "enhanced"], len(frame))
    pf = validate_frame(frame, params)
    prm = pw_params(params, introduction_rate_per_cell=0.01)
    peril = PineWilt(prm, params, pf)
    if drawn:
        peril.set_spread(SpreadDraws(0.85, 0.59, 4))
    rnd = KeyedRandom(11, np.arange(48), pf.keys)
    rates = peril.path_rates(rnd) if drawn else None
    if drawn:
        assert np.unique(rates[0]).size == 12  # 12 parameter sets
        with pytest.raises(ValueError, match="path_rates"):
            peril.cell_hazard(np.zeros((48, peril.grid.n_cells), dtype=bool))
    state = peril.init_state(48, rnd)
    infected = state.cell_infected
    # tracked: the state kept between years, as a run keeps it; else each year starts afresh
    assert state.cell_tracking is not None
    tracking = state.cell_tracking if tracked else None
    fractions = []
    for year in range(25):
        prob = -np.expm1(-peril.cell_hazard(infected, rates))
        u = rnd.keyed_uniform("pine_wilt.spread", year, peril.grid.keys)
        expected = infected | (u < prob)
        peril.advance_cells(infected, year, rnd, None, tracking=tracking)  # its rates from path_rates
        np.testing.assert_array_equal(infected, expected)
        fractions.append(infected.mean())
    assert fractions[0] < 0.5 < fractions[-1]  # from a few infected cells to most
    with pytest.raises(ValueError, match="cell tracking of shape"):
        peril.advance_cells(infected[:10], 0, rnd, None, tracking=state.cell_tracking)


def _random_graph(seed, n_cells, density):
    rng = np.random.default_rng(seed)
    a = sparse.random(n_cells, n_cells, density=density, random_state=seed, format="csr")
    a = ((a + a.T) > 0).astype(np.float32)
    a.setdiag(0)
    a.eliminate_zeros()
    infectivity = rng.uniform(0.05, 1.0, n_cells).astype(np.float32)
    infectivity[:5] = 0.0  # cells that emit nothing: neighbours with pressure 0
    w = (sparse.diags(infectivity) @ a).tocsr().astype(np.float32)
    w_t = w.T.tocsr()
    w_t.sort_indices()
    return w, w_t, infectivity


def test_neighbour_bits_are_positions_in_the_transposed_rows():
    for seed, density in ((0, 0.02), (1, 0.05), (2, 0.15)):
        w, w_t, _ = _random_graph(seed, 200, density)
        degree = int(np.diff(w_t.indptr).max())
        got = _neighbour_bits(w, w_t)
        if degree > 64:
            assert got is None  # the general kernel takes over
            continue
        bit_value, bit = got
        assert bit.dtype.itemsize * 8 >= degree and (bit.dtype == np.uint8 or bit.dtype.itemsize * 4 < degree)
        source = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
        for k in range(w.nnz):
            i, j = w.indices[k], source[k]
            row = w_t.indices[w_t.indptr[i]:w_t.indptr[i + 1]]
            assert int(bit_value[k]) == 1 << int(np.flatnonzero(row == j)[0])
        np.testing.assert_array_equal(bit.astype(np.uint64), np.uint64(1) << np.arange(bit.size, dtype=np.uint64))
    assert _neighbour_bits(*_random_graph(3, 200, 0.5)[:2]) is None


def test_lowest_bit_of_every_single_bit_and_of_random_words():
    for k in range(64):
        assert int(_lowest_bit(np.uint64(1) << np.uint64(k))) == k
    rng = np.random.default_rng(0)
    for word in rng.integers(1, 2**63, 500, dtype=np.int64).astype(np.uint64) * np.uint64(3):
        w = int(word)
        if w:
            assert int(_lowest_bit(np.uint64(w))) == (w & -w).bit_length() - 1


def test_pressure_table_holds_each_masks_float32_sum_in_bit_order():
    for seed in (0, 1):
        w, w_t, _ = _random_graph(seed, 120, 0.01)
        bit_value, bit = _neighbour_bits(w, w_t)
        assert bit.dtype == np.uint8
        index, pressures = pressure_table(w_t, bit)
        assert index.size == 256 * 120 and pressures[0] == 0.0 and (np.diff(pressures) > 0).all()
        for i in range(120):
            terms = w_t.data[w_t.indptr[i]:w_t.indptr[i + 1]]
            for m in range(1 << terms.size):
                expected = np.float32(0.0)
                for b in range(terms.size):
                    if m >> b & 1:
                        expected = np.float32(expected + terms[b])
                assert pressures[index[256 * i + m]] == expected
    # wider masks: no table, the kernel sums from the mask
    w, w_t, _ = _random_graph(0, 250, 0.03)
    index, pressures = pressure_table(w_t, _neighbour_bits(w, w_t)[1])
    assert index.size == 0


def test_a_pressure_table_is_built_once_per_neighbour_matrix():
    """Every portfolio inside a landscape (each new loan, each driver of a valuation) tabulates the same
    matrix: the process builds its table once and shares it, read-only; another matrix gets its own."""
    from models.perils.pine_wilt import shared_pressure_table

    w, w_t, _ = _random_graph(3, 120, 0.01)
    bit = _neighbour_bits(w, w_t)[1]
    first = shared_pressure_table(w_t, bit)
    again = shared_pressure_table(w_t.copy(), bit.copy())  # equal arrays, other objects
    assert again[0] is first[0] and again[1] is first[1]
    assert not first[0].flags.writeable and not first[1].flags.writeable
    for a, b in zip(first, pressure_table(w_t, bit)):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    other = w_t.copy()
    other.data = other.data * np.float32(1.5)
    assert shared_pressure_table(other, bit)[1] is not first[1]


def test_hazard_grid_bounds_the_threshold_of_every_hazard_between_its_points():
    # the tracked kernel decides a near cell from lo[k] and hi[k + 1] when its hazard lies in
    # [g_k, g_(k+1)]: every threshold there must lie between them (dense float32 hazards, the grid
    # points themselves and their float32 neighbours included)
    lo, hi = hazard_threshold_grid(20.0)
    assert lo.size == hi.size == 20 * GRID_PER_UNIT + 2 and (lo <= hi).all()
    assert (np.diff(lo.astype(np.float64)) >= 0).all() and (np.diff(hi.astype(np.float64)) >= 0).all()
    rng = np.random.default_rng(0)
    points = np.arange(lo.size - 1, dtype=np.float32) / np.float32(GRID_PER_UNIT)
    hz = np.concatenate([rng.random(200_000).astype(np.float32) * np.float32(20.0),
                         rng.random(20_000).astype(np.float32) * np.float32(0.05), points,
                         np.nextafter(points, np.float32(np.inf)), np.nextafter(points[1:], np.float32(0))])
    k = (hz * np.float32(GRID_PER_UNIT)).astype(np.int64)  # floor, as the kernel takes it
    t = np.array([int(hazard_threshold(np.float32(h))) for h in hz[::7]], dtype=np.uint64)
    assert (lo[k[::7]] <= t).all() and (t < hi[k[::7] + 1]).all()


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("slack", [SLACK, 0.5])
@pytest.mark.parametrize("density, mask_type", [(0.005, np.uint8), (0.03, np.uint32), (0.08, np.uint64)])
def test_tracked_cell_year_equals_numpy_through_years_and_outside_changes(seed, slack, density, mask_type):
    # the tracked kernel keeps masks and a running emitted sum between years; flags set and cleared
    # from outside between years (forced outbreaks; tests) must be picked up. slack=0.5 widens the
    # bracket so that nearly every path-year takes the exact fallback, which must agree too. With
    # 8-bit masks the kernel reads tabulated pressures, with wider ones it sums from the mask.
    rng = np.random.default_rng(seed)
    n_cells, n_paths = 250, 32
    w, w_t, infectivity = _random_graph(seed, n_cells, density)
    bit_value, bit = _neighbour_bits(w, w_t)
    assert bit.dtype == mask_type  # up to 8, 17-32 and 33-64 neighbours
    table = pressure_table(w_t, bit)
    assert (table[0].size > 0) == (mask_type == np.uint8)
    keys = rng.integers(0, 2**63, n_cells).astype(np.uint64)
    infected = rng.random((n_paths, n_cells)) < np.linspace(0.0, 0.9, n_paths)[:, None]
    infected[-1] = True
    tracking = CellTracking.empty(n_paths, n_cells, bit.dtype)
    no_grid = (np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.uint64))
    for lr, jr, ir in _rate_cases(rng, n_paths):
        # near cells decided from the hazard grid's bounds (with tabulated pressures), or from
        # each threshold: the same decisions either way. The grid covers the median path's rates:
        # hazards beyond it (paths with higher drawn rates) take their exact thresholds
        hz_max = (float(np.median(lr)) * float(table[1].max())
                  + float(np.median(jr)) * float(infectivity.sum()) / n_cells * 1.01 + ir)
        for year in range(6):
            grid = hazard_threshold_grid(hz_max, slack) if year % 2 == 0 else no_grid
            rows = rng.integers(0, 2**63, n_paths).astype(np.uint64)
            expected = _reference_cells(infected, w_t, infectivity, lr, jr, ir, reference_grid(rows, keys))
            got = infected.copy()
            cell_year_tracked(got, tracking.known, tracking.mask, tracking.emitted_sum, tracking.n_infected, w.indptr,
                              w.indices, bit_value, w_t.indptr, w_t.data, bit, *table, infectivity, lr, jr, ir, rows,
                              keys, *grid, np.empty((0, 0), dtype=np.int16), year, True, slack)
            np.testing.assert_array_equal(got, expected)
            infected = got
            # outside changes: some flags set, some cleared (the SI process never clears one)
            infected[rng.random(infected.shape) < 0.02] = True
            infected[rng.random(infected.shape) < 0.02] = False
    assert tracking.n_infected.tolist() == tracking.known.sum(axis=1).tolist()


def test_advance_cells_uses_the_general_kernel_above_64_neighbours(params):
    # 1-km cells reaching 5 km: about 80 neighbours, more than a 64-bit mask holds
    pf = validate_frame(make_frame(200, seed=5, species=["masson_pine"]), params)
    peril = PineWilt(pw_params(params, cell_size_km=1.0, spread_radius_km=5.0, introduction_rate_per_cell=0.01),
                     params, pf)
    assert peril._bits is None
    rnd = KeyedRandom(2, np.arange(16), pf.keys)
    state = peril.init_state(16, rnd)
    assert state.cell_tracking is None
    infected = state.cell_infected
    infected |= np.random.default_rng(0).random(infected.shape) < 0.05
    for year in range(3):
        expected = infected | (rnd.keyed_uniform("pine_wilt.spread", year, peril.grid.keys)
                               < -np.expm1(-peril.cell_hazard(infected)))
        peril.advance_cells(infected, year, rnd, None)
        np.testing.assert_array_equal(infected, expected)


# ---- the parcel pass -----------------------------------------------------------------------------
def _stand(rng, n_paths, n, year):
    """A random stand: a fifth of the pairs in a cascade window this year, some windows just closed."""
    age = rng.uniform(-3, 40, (n_paths, n)).astype(np.float32)
    until = rng.choice(np.array([-1, year - 1, year, year + 2], dtype=np.int16), (n_paths, n), p=[0.7, 0.1, 0.1, 0.1])
    return StandState(rng.uniform(10, 80, (n_paths, n)), age, until, year=year,
                      pest_weakened_multiplier=np.float32(2.0))


@pytest.mark.parametrize("independent", [False, True])
def test_step_equals_reference_step(params, independent):
    frame = make_frame(300, seed=3, species=["masson_pine", "mixed_conifer", "chinese_fir"])
    frame["pest_control"] = np.random.default_rng(3).choice(["none", "basic", "enhanced"], len(frame))
    pf = validate_frame(frame, params)
    peril = PineWilt(params.perils["pine_wilt"], params, pf)
    n_paths = 64
    rnd = KeyedRandom(5, np.arange(n_paths), pf.keys)
    rng = np.random.default_rng(1)
    state = peril.init_state(n_paths, rnd)
    outbreak = peril.outbreak_years
    state.years_infected[:] = rng.integers(-1, outbreak + 1, state.years_infected.shape).astype(np.int16)
    state.years_infected[rng.random(state.years_infected.shape) < 0.5] = -1
    state.pine_left[:] = rng.uniform(0.2, 1.0, state.pine_left.shape).astype(np.float32)
    state.cell_infected |= rng.random(state.cell_infected.shape) < 0.3
    county = str(pf.frame["county"].iloc[0])
    township = str(pf.frame["township"].iloc[0])
    forced = {1: [{"counties": [county]}], 2: [{"townships": [township], "parcel_probability": 0.9}]}
    ref = copy.deepcopy(state)
    n_losses = 0
    for year in range(4):
        stand = _stand(rng, n_paths, pf.n_parcels, year)
        ctx = YearContext(year=year, calendar_year=2026 + year, rnd=rnd, stand=stand, drought=np.zeros(n_paths, bool),
                          hazard_multiplier={"pine_wilt": np.linspace(0.5, 30.0, n_paths)},
                          severity_multiplier={"pine_wilt": np.linspace(0.5, 6.0, n_paths)},
                          forced_events={"pine_wilt": forced[year]} if year in forced else {},
                          independent=independent)
        a = peril.reference_step(ctx, ref)
        b = peril.step(ctx, state)
        for f in ("path_pos", "parcel_pos", "loss_fraction", "event", "stand_replacing"):
            x, y = getattr(a, f), getattr(b, f)
            assert x.dtype == y.dtype, f
            np.testing.assert_array_equal(x, y, err_msg=f)
        for f in ("cell_infected", "years_infected", "pine_left"):
            np.testing.assert_array_equal(getattr(ref, f), getattr(state, f), err_msg=f)
        n_losses += len(a)
    # non-trivial: many losses (more than the kernel's first output buffer), capped mortality included
    assert n_losses > 2 * 1024 and (a.loss_fraction > 0).all()


def test_a_pure_pine_stand_with_no_pines_left_loses_nothing_more():
    """s = s0 L / (s0 L + 1 - s0) is 0/0 for s0 = 1, L = 0: the kernel records no loss (the numpy
    reference's NaN, which is not > 0) and still advances the outbreak year."""
    from models.perils._pine_wilt_kernels import parcel_year

    years = np.array([[1, 1]], dtype=np.int16)  # both hosts in year 1 of their outbreak
    pine_left = np.array([[0.0, 0.5]], dtype=np.float32)  # the first has no pines left
    one = np.ones((1, 2), dtype=np.float32)
    pp, gq, loss = parcel_year(
        years, pine_left, np.zeros((0, 0), dtype=bool), False, np.zeros(2, dtype=bool), np.zeros(2, np.int64),
        np.arange(2, dtype=np.int64), one, np.full((1, 2), -1, np.int16), 0, np.float32(2.0), np.ones(1),
        np.zeros(2), np.ones(2), np.zeros(0), False, np.zeros(1, np.uint64), np.zeros(2, np.uint64), np.full(2, 0.4),
        np.zeros(2), np.ones(2), np.ones(1), 5)
    np.testing.assert_array_equal(gq, [1])  # only the stand with pines loses carbon
    assert loss[0] == pytest.approx(0.4)  # a pure-pine stand: its whole carbon is pine, m = 0.4 of it
    np.testing.assert_array_equal(years, [[2, 2]])
    assert pine_left[0, 0] == 0.0 and pine_left[0, 1] == pytest.approx(0.3)
