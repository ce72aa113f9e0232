"""The engine's compiled reductions equal their plain-numpy definitions bit for bit."""

import numpy as np
import pytest

from finance_engine.simulation._kernels import issuance_changes, issuance_shares


def _case(seed, n_paths=23, n=61, n_groups=4):
    rng = np.random.default_rng(seed)
    carbon = rng.uniform(0, 200, (n_paths, n)) * 10 ** rng.uniform(-3, 3, (n_paths, n))
    weight = rng.uniform(0.5, 40, n)
    last = carbon * weight[None, :] * rng.uniform(0.5, 1.5, (n_paths, n))  # gains and losses
    # groups in runs (adjacent parcels) and coming back after others, as a portfolio's projects may
    group = np.repeat(rng.integers(0, n_groups, 12), rng.integers(1, 9, 12))[:n]
    group = np.concatenate([group, rng.integers(0, n_groups, n - group.size)]).astype(np.intp)
    return rng, carbon, weight, last, group


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_issuance_changes_equal_sequential_sums_by_project(seed):
    _, carbon, weight, last, project = _case(seed)
    n_paths, n = carbon.shape
    change, gain = np.full((n_paths, 4), np.nan), np.full((n_paths, 4), np.nan)
    issuance_changes(carbon, weight, last, project, change, gain)
    ch = carbon * weight[None, :] - last
    rows = np.repeat(np.arange(n_paths), n).reshape(n_paths, n)
    cols = np.broadcast_to(project, (n_paths, n))
    want_change, want_gain = np.zeros((n_paths, 4)), np.zeros((n_paths, 4))
    np.add.at(want_change, (rows.ravel(), cols.ravel()), ch.ravel())  # in parcel order within a row
    pos = ch.ravel() > 0
    np.add.at(want_gain, (rows.ravel()[pos], cols.ravel()[pos]), ch.ravel()[pos])
    np.testing.assert_array_equal(change, want_change)
    np.testing.assert_array_equal(gain, want_gain)
    assert (gain > change).any() and (ch < 0).any()  # losses count in the change, not in the gains


@pytest.mark.parametrize("with_parcels", [True, False])
def test_issuance_shares_equal_sequential_sums_by_cell(with_parcels):
    rng, carbon, weight, last, project = _case(3)
    n_paths, n = carbon.shape
    cell = np.asarray((project * 3 + rng.integers(0, 2, n)) % 5, dtype=np.intp)  # cells cut across projects
    credit_share, buffer_share = rng.uniform(0, 1, (n_paths, 4)), rng.uniform(0, 0.3, (n_paths, 4))
    cum = rng.uniform(0, 5, (n_paths, n))
    got_last, got_cum = last.copy(), cum.copy()
    credit, buffer = np.full((n_paths, 5), np.nan), np.full((n_paths, 5), np.nan)
    issuance_shares(carbon, weight, got_last, project, credit_share, buffer_share, cell, credit, buffer, got_cum,
                    with_parcels)
    stock = carbon * weight[None, :]
    gain = np.maximum(stock - last, 0.0)
    pc = gain * credit_share[:, project]
    rows = np.repeat(np.arange(n_paths), n)
    cols = np.broadcast_to(cell, (n_paths, n)).ravel()
    want_credit, want_buffer = np.zeros((n_paths, 5)), np.zeros((n_paths, 5))
    np.add.at(want_credit, (rows, cols), pc.ravel())
    np.add.at(want_buffer, (rows, cols), (gain * buffer_share[:, project]).ravel())
    np.testing.assert_array_equal(credit, want_credit)
    np.testing.assert_array_equal(buffer, want_buffer)
    np.testing.assert_array_equal(got_last, stock)
    np.testing.assert_array_equal(got_cum, cum + pc if with_parcels else cum)
