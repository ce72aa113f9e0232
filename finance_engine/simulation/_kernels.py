"""Compiled reductions of the engine (Numba), each with a fixed order of addition.

The order of every sum is fixed per path row (ascending parcel index within a row), so a row's
result never depends on which other rows share the arrays: that is what keeps results bit-identical
whatever the chunk size.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from models._kernels import switch_group


@nb.njit(cache=True, nogil=True)
def is_sorted_pairs(path_pos, parcel_pos):
    """True when the (path, parcel) pairs are in ascending lexicographic order."""
    for k in range(1, path_pos.size):
        a, b = path_pos[k - 1], path_pos[k]
        if a > b or (a == b and parcel_pos[k - 1] > parcel_pos[k]):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def sum_sparse_by_group(path_pos, parcel_pos, values, weight, group, out):
    """``out[path, group[parcel]] += values * weight[parcel]`` for each entry, in entry order.

    ``out`` (n_paths, n_groups) is zeroed first. Entries must be sorted by (path, parcel) for the
    per-row order of addition to be the ascending parcel order.
    """
    out[:, :] = 0.0
    for k in range(path_pos.size):
        q = parcel_pos[k]
        out[path_pos[k], group[q]] += values[k] * weight[q]
    return out


@nb.njit(cache=True, nogil=True)
def issuance_changes(carbon, weight, last_issue, project, change_sums, gain_sums):
    """Stock change since the last issuance, summed by project: all changes, and the gains only.

    ``change = carbon * weight - last_issue`` per (path, parcel), tCO2e; sums run in parcel order.
    The running sums of the current project stay in registers while its parcels are adjacent (one
    loan: all of them): the same additions in the same order, without a store and reload per parcel.
    """
    n_paths, n = carbon.shape
    change_sums[:, :] = 0.0
    gain_sums[:, :] = 0.0
    if n == 0:
        return
    for i in range(n_paths):
        cur = project[0]
        c_acc = 0.0
        g_acc = 0.0
        for j in range(n):
            p = project[j]
            if p != cur:
                c_acc, g_acc = switch_group(change_sums, gain_sums, i, cur, p, c_acc, g_acc)
                cur = p
            ch = carbon[i, j] * weight[j] - last_issue[i, j]
            c_acc += ch
            g_acc += ch if ch > 0.0 else 0.0
        change_sums[i, cur] = c_acc
        gain_sums[i, cur] = g_acc


@nb.njit(cache=True, nogil=True)
def issuance_shares(carbon, weight, last_issue, project, credit_share, buffer_share, cell, credit_cells,
                    buffer_cells, cum_credit, with_parcels):
    """Credits and buffer of each parcel (its share of its project's issuance), summed into cells.

    A parcel's credits are its gain since the last issuance times its project's credits per unit of
    gain (``credit_share[path, project]``); the same for the buffer. ``last_issue`` becomes this
    year's stock (tCO2e); ``cum_credit`` accumulates parcel credits when ``with_parcels``. Cell sums
    stay in registers while a cell's parcels are adjacent (as :func:`issuance_changes`).
    """
    n_paths, n = carbon.shape
    credit_cells[:, :] = 0.0
    buffer_cells[:, :] = 0.0
    if n == 0:
        return
    for i in range(n_paths):
        cur = cell[0]
        cr_acc = 0.0
        bu_acc = 0.0
        for j in range(n):
            c = cell[j]
            if c != cur:
                cr_acc, bu_acc = switch_group(credit_cells, buffer_cells, i, cur, c, cr_acc, bu_acc)
                cur = c
            stock = carbon[i, j] * weight[j]
            ch = stock - last_issue[i, j]
            gain = ch if ch > 0.0 else 0.0
            p = project[j]
            pc = gain * credit_share[i, p]
            cr_acc += pc
            bu_acc += gain * buffer_share[i, p]
            if with_parcels:
                cum_credit[i, j] += pc
            last_issue[i, j] = stock
        credit_cells[i, cur] = cr_acc
        buffer_cells[i, cur] = bu_acc
