"""The compiled kernels compute exactly what their plain numpy / SciPy definitions compute."""

import numpy as np
import scipy.sparse as sp

from models._kernels import keyed_uniform_pairs, sum_by_group
from models.rng import _grid, reference_grid


def test_keyed_uniform_grid_equals_numpy_reference():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 2**63, 37, dtype=np.int64).astype(np.uint64)
    keys = rng.integers(0, 2**63, 513, dtype=np.int64).astype(np.uint64)
    got = _grid(rows, keys)
    np.testing.assert_array_equal(got, reference_grid(rows, keys))
    assert got.min() > 0 and got.max() < 1


def test_keyed_uniform_pairs_equal_the_grid_entries():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 2**63, 9, dtype=np.int64).astype(np.uint64)
    keys = rng.integers(0, 2**63, 11, dtype=np.int64).astype(np.uint64)
    i, j = rng.integers(0, 9, 50), rng.integers(0, 11, 50)
    got = keyed_uniform_pairs(rows[i], keys[j], np.empty(50))
    np.testing.assert_array_equal(got, reference_grid(rows, keys)[i, j])


def test_sum_by_group_equals_sparse_indicator_product_bit_for_bit():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(17, 400)) * 10 ** rng.uniform(-3, 6, size=(17, 400))
    g = rng.integers(0, 23, 400).astype(np.intp)
    ind = sp.csr_matrix((np.ones(400), (np.arange(400), g)), shape=(400, 23))
    got = sum_by_group(x, g, 23, np.empty((17, 23)))
    np.testing.assert_array_equal(got, np.asarray(x @ ind))
    # each row's sums do not depend on the other rows
    np.testing.assert_array_equal(sum_by_group(x[5:6], g, 23, np.empty((1, 23)))[0], got[5])
    # sorted groups (runs), a single group, and groups that come back after others
    for g2 in (np.sort(g), np.zeros(400, dtype=np.intp), np.arange(400) % 3, np.repeat(np.arange(20), 20)[::-1].copy()):
        n2 = int(g2.max()) + 1
        ind2 = sp.csr_matrix((np.ones(400), (np.arange(400), g2)), shape=(400, n2))
        np.testing.assert_array_equal(sum_by_group(x, g2, n2, np.empty((17, n2))), np.asarray(x @ ind2))
    assert sum_by_group(np.empty((3, 0)), np.empty(0, np.intp), 2, np.full((3, 2), 7.0)).tolist() == [[0.0, 0.0]] * 3


def test_pine_wilt_cell_kernel_equals_numpy_definition(params):
    from models.perils.pine_wilt import PineWilt
    from models.portfolio import validate_frame
    from models.rng import KeyedRandom
    from tests.conftest import make_frame

    pf = validate_frame(make_frame(300, seed=4, species=["masson_pine", "mixed_conifer"]), params)
    peril = PineWilt(params.perils["pine_wilt"], params, pf)
    rnd = KeyedRandom(9, np.arange(64), pf.keys)
    rng = np.random.default_rng(0)
    for year in range(5):
        infected = rng.random((64, peril.grid.n_cells)) < 0.05
        # numpy definition: hazard from the current state, keyed uniforms, all cells at once
        prob = -np.expm1(-peril.cell_hazard(infected))
        u = rnd.keyed_uniform("pine_wilt.spread", year, peril.grid.keys)
        expected = infected | (u < prob)
        got = infected.copy()
        peril.advance_cells(got, year, rnd, None)
        assert np.array_equal(got, expected)


def test_row_hashes_equal_the_numpy_definition():
    from models.rng import KeyedRandom

    ids = np.array([0, 1, 2, 31, 32, 10**6, 2**40 + 7, 2**62 - 1], dtype=np.int64)
    rnd = KeyedRandom(2**63 + 5, ids, np.arange(3, dtype=np.uint64))
    for stream, year in (("fire.hazard", 0), ("growth.parcel_noise", 29), ("x", 199)):
        np.testing.assert_array_equal(rnd.stream_rows(stream, year), rnd.reference_rows(stream, year))
    # and the uniforms built on them are unchanged by the cache of the path ids
    np.testing.assert_array_equal(rnd.path_uniform("a", 1), rnd.path_uniform("a", 1))


def test_stream_bases_give_each_streams_own_rows():
    """A kernel hashing path id p's row of stream k from ``stream_bases`` gets ``stream_rows``' number."""
    from models.rng import KeyedRandom, _mix_int

    rnd = KeyedRandom(7, np.arange(100, 140), np.arange(25, dtype=np.uint64))
    streams = ["typhoon.damage.s0", "typhoon.damage.s1", "typhoon.damage.s2"]
    bases = rnd.stream_bases(streams, 4)
    for k, s in enumerate(streams):
        by_base = [_mix_int((int(p) * 0x9E3779B97F4A7C15 & (2**64 - 1)) ^ int(bases[k])) for p in range(100, 140)]
        np.testing.assert_array_equal(rnd.stream_rows(s, 4), np.array(by_base, dtype=np.uint64))
    assert rnd.stream_bases([], 4).shape == (0,)
    np.testing.assert_array_equal(rnd.path_ids_u64, np.arange(100, 140, dtype=np.uint64))


def test_the_largest_hash_gives_a_finite_normal():
    from models.rng import _to_unit, normal_from_uniform

    top = _to_unit(np.array([np.iinfo(np.uint64).max], dtype=np.uint64))
    assert top[0] == 1.0  # 53 random bits + half an ulp round up to 1 for the largest hash
    z = normal_from_uniform(np.array([top[0], 0.5, _to_unit(np.array([0], dtype=np.uint64))[0]]))
    assert np.isfinite(z).all() and z[1] == 0.0 and 8.0 < z[0] < 9.0 and -9.0 < z[2] < -8.0
