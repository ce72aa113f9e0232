"""Compiled reductions of the engine (Numba), each with a fixed order of addition.

The order of every sum is fixed per path row (ascending parcel index within a row), so a row's
result never depends on which other rows share the arrays: that is what keeps results bit-identical
whatever the chunk size.
"""

from __future__ import annotations

import numba as nb
import numpy as np


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
