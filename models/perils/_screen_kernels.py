"""Compiled (Numba) screens for the weather perils: hash, compare, and keep only the hits.

A weather peril decides each year, for every (path, parcel), whether a keyed uniform ``u`` lies
below a probability; hits are rare (fire) or confined to a few paths (storm years). numpy needs a
dense uniform array, a dense probability array, a comparison and ``np.nonzero``: many passes over
(n_paths x n_parcels) memory. The kernels here hash ``u = unit(mix(rows[i] ^ keys[j]))`` (the keyed
SplitMix64 of :mod:`models.rng`, bit for bit) one pair at a time, compare it with a bound and write
only the pairs that pass, in row-major order (the order of ``np.nonzero``).

Exactness: the kernels use only comparisons, products and sums, never a transcendental function
whose last bit could differ from numpy's (numpy's ``exp``/``log1p``/``expm1`` are SIMD code). Where a
probability needs ``exp`` or ``expm1`` the kernel screens with an upper bound (a relative slack of
1e-9, far above any rounding difference) and the peril evaluates the exact probability with numpy on
the few candidates, so the decisions are those of the dense numpy code. The tests
(``tests/test_screen_kernels.py``) hold each kernel to a plain-numpy reference element by element.

Outputs start at a capacity the caller estimates and double when needed, so the cost follows the
number of hits, not the array size.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 2.0**-53
#: relative slack of every screening bound (rounding differences are ~1e-16 relative)
BOUND_SLACK = 1.0 + 1e-9


@nb.njit(cache=True, nogil=True)
def _unit(r, key):
    z = r ^ key
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    z = z ^ (z >> np.uint64(31))
    return (np.float64(z >> np.uint64(11)) + 0.5) * _TO_UNIT


@nb.njit(cache=True, nogil=True)
def _hash_row(r, keys, buf):
    """buf[j] = unit(mix(r ^ keys[j])) for one row (a loop the compiler vectorises)."""
    for j in range(keys.size):
        buf[j] = _unit(r, keys[j])


@nb.njit(cache=True, nogil=True)
def _compress(flag, hj):
    """Positions of the set flags of one row into ``hj`` (branch-free); returns their number."""
    c = 0
    for j in range(flag.size):
        hj[c] = j
        c += flag[j]
    return c


@nb.njit(cache=True, nogil=True)
def _reserve(oi, oj, ou, k, extra):
    """The output arrays with room for ``k + extra`` entries (doubling; the first ``k`` kept)."""
    if k + extra <= oi.size:
        return oi, oj, ou
    cap = max(2 * oi.size, k + extra)
    a = np.empty(cap, dtype=np.int64)
    a[:k] = oi[:k]
    b = np.empty(cap, dtype=np.int64)
    b[:k] = oj[:k]
    c = np.empty(cap, dtype=np.float64)
    c[:k] = ou[:k]
    return a, b, c


@nb.njit(cache=True, nogil=True)
def _append(oi, oj, ou, k, i, hj, buf, c):
    for t in range(c):
        oi[k + t] = i
        oj[k + t] = hj[t]
        ou[k + t] = buf[hj[t]]


# Each screen works row by row: hash the row into a buffer (vectorised), flag the pairs that pass
# (vectorised), then compress the flags and append the row's hits. Output arrays start at the
# caller's ``capacity`` (an estimate; memory of an np.empty array is only committed when written)
# and double when a row does not fit.


@nb.njit(cache=True, nogil=True)
def fire_candidates(rows, keys, path_bound, parcel_bound, fire_multiplier, capacity):
    """Pairs with ``u[i, j] < path_bound[i] * parcel_bound[j] * fire_multiplier[i, j]``.

    Returns ``(i, j, u)`` in row-major order. Used by the fire peril as a screen: the bound must be
    at least the burn probability, which is then evaluated exactly on the candidates.
    """
    n_rows, n = rows.size, keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    buf = np.empty(n, dtype=np.float64)
    flag = np.empty(n, dtype=np.uint8)
    hj = np.empty(n + 1, dtype=np.int64)
    k = 0
    for i in range(n_rows):
        b = path_bound[i]
        if not b > 0.0:
            continue
        _hash_row(rows[i], keys, buf)
        c = 0
        for j in range(n):
            f = buf[j] < b * parcel_bound[j] * fire_multiplier[i, j]
            flag[j] = f
            c += f
        if c:
            c = _compress(flag, hj)
            oi, oj, ou = _reserve(oi, oj, ou, k, c)
            _append(oi, oj, ou, k, i, hj, buf, c)
            k += c
    return oi[:k], oj[:k], ou[:k]


@nb.njit(cache=True, nogil=True)
def keyed_hits(rows, keys, row_threshold, col_threshold, col_mask, stand_row, age, carbon, alive_only, capacity):
    """Pairs with ``u[i, j] < row_threshold[i] * col_threshold[j]`` and ``col_mask[j]``.

    With ``alive_only`` also ``age[s, j] >= 0`` and ``carbon[s, j] > 0`` where ``s = stand_row[i]``
    (the stand's row of hash row ``i``). Returns ``(i, j, u)`` in row-major order. With
    ``col_threshold`` all ones the comparison is exactly ``u < row_threshold[i]``.
    """
    n_rows, n = rows.size, keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    buf = np.empty(n, dtype=np.float64)
    flag = np.empty(n, dtype=np.uint8)
    hj = np.empty(n + 1, dtype=np.int64)
    k = 0
    for i in range(n_rows):
        t = row_threshold[i]
        s = stand_row[i]
        _hash_row(rows[i], keys, buf)
        c = 0
        if alive_only:
            for j in range(n):
                f = col_mask[j] and age[s, j] >= 0 and carbon[s, j] > 0 and buf[j] < t * col_threshold[j]
                flag[j] = f
                c += f
        else:
            for j in range(n):
                f = col_mask[j] and buf[j] < t * col_threshold[j]
                flag[j] = f
                c += f
        if c:
            c = _compress(flag, hj)
            oi, oj, ou = _reserve(oi, oj, ou, k, c)
            _append(oi, oj, ou, k, i, hj, buf, c)
            k += c
    return oi[:k], oj[:k], ou[:k]


@nb.njit(cache=True, nogil=True)
def keyed_flags(rows, keys, row_threshold, flags, capacity):
    """``flags[i, j] = u[i, j] < row_threshold[i]`` (dense), and the hit pairs ``(i, j)`` row-major."""
    n_rows, n = rows.size, keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    buf = np.empty(n, dtype=np.float64)
    hj = np.empty(n + 1, dtype=np.int64)
    k = 0
    for i in range(n_rows):
        t = row_threshold[i]
        _hash_row(rows[i], keys, buf)
        c = 0
        for j in range(n):
            f = buf[j] < t
            flags[i, j] = f
            c += f
        if c:
            c = _compress(flags[i], hj)
            oi, oj, ou = _reserve(oi, oj, ou, k, c)
            _append(oi, oj, ou, k, i, hj, buf, c)
            k += c
    return oi[:k], oj[:k]


@nb.njit(cache=True, nogil=True)
def storm_candidates(rows, keys, stand_row, track_km, intensity, along_km, coast_decay, track_width_km,
                     max_hit_probability, age, carbon, capacity):
    """Living pairs whose uniform lies below an upper bound of a storm's hit probability.

    The hit probability of hash row ``i`` (storm track ``track_km[i]``, intensity ``intensity[i]``)
    at parcel ``j`` is ``min(1, max_hit x I_i x coast_decay_j x exp(-z^2 / 2))`` with
    ``z = (along_km[j] - track_km[i]) / track_width_km``. The screen keeps ``(i, j, u)`` when
    ``u`` is below that times :data:`BOUND_SLACK` (``exp`` here is libm's, numpy's may differ in the
    last bit, hence the slack); the caller evaluates the exact probability on the candidates.
    Only pairs with ``age[s, j] >= 0`` and ``carbon[s, j] > 0`` (``s = stand_row[i]``) are kept.
    """
    n_rows, n = rows.size, keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    buf = np.empty(n, dtype=np.float64)
    flag = np.empty(n, dtype=np.uint8)
    hj = np.empty(n + 1, dtype=np.int64)
    k = 0
    for i in range(n_rows):
        s = stand_row[i]
        top = max_hit_probability * intensity[i] * BOUND_SLACK
        tr = track_km[i]
        _hash_row(rows[i], keys, buf)
        c = 0
        for j in range(n):  # the track factor is at most 1: a cheap first screen
            f = age[s, j] >= 0 and carbon[s, j] > 0 and buf[j] < top * coast_decay[j]
            flag[j] = f
            c += f
        if c:
            c = _compress(flag, hj)
            m = 0
            for t in range(c):
                j = hj[t]
                z = (along_km[j] - tr) / track_width_km
                if buf[j] < top * coast_decay[j] * math.exp(-0.5 * z * z):
                    hj[m] = j
                    m += 1
            oi, oj, ou = _reserve(oi, oj, ou, k, m)
            _append(oi, oj, ou, k, i, hj, buf, m)
            k += m
    return oi[:k], oj[:k], ou[:k]


@nb.njit(cache=True, nogil=True)
def drought_rows(rows, sev_row, age, carbon, plantation, young_age, established_factor):
    """Pairs of the paths ``rows`` that a drought damages, with their share and severity.

    For each ``p = rows[i]`` and parcel ``j`` in order: alive = ``age >= 0`` and ``carbon > 0``;
    share = 1 for plantations with ``age <= young_age`` else ``established_factor``; the pair is kept
    when alive, ``share > 0`` and ``sev_row[i] > 0``. ``young_age`` must already have the type the
    numpy comparison ``age <= young_age`` uses. Returns ``(path, parcel, share, sev)``.
    """
    n = age.shape[1]
    cap = rows.size * n
    op = np.empty(cap, dtype=np.int64)
    oq = np.empty(cap, dtype=np.int64)
    osh = np.empty(cap, dtype=np.float64)
    osv = np.empty(cap, dtype=np.float64)
    k = 0
    for i in range(rows.size):
        p = rows[i]
        sv = sev_row[i]
        if not sv > 0:
            continue
        for j in range(n):
            a = age[p, j]
            share = 1.0 if (plantation[j] and a <= young_age) else established_factor
            op[k] = p
            oq[k] = j
            osh[k] = share
            osv[k] = sv
            k += a >= 0 and carbon[p, j] > 0 and share > 0
    return op[:k], oq[:k], osh[:k], osv[:k]


@nb.njit(cache=True, nogil=True)
def pair_order(path_pos, parcel_pos, fraction, n_paths, n_parcels):
    """Stable order by (path, parcel), then by fraction descending: ``np.lexsort((-fraction, pair))``.

    Two stable counting sorts (parcel, then path) and an insertion sort of each run of equal pairs
    (runs are short: a pair appears once per event). Returns the order and a flag per sorted
    position marking the first of each pair.
    """
    m = path_pos.size
    count = np.zeros(n_parcels + 1, dtype=np.int64)
    for k in range(m):
        count[parcel_pos[k] + 1] += 1
    for c in range(n_parcels):
        count[c + 1] += count[c]
    tmp = np.empty(m, dtype=np.int64)
    for k in range(m):
        q = parcel_pos[k]
        tmp[count[q]] = k
        count[q] += 1
    count = np.zeros(n_paths + 1, dtype=np.int64)
    for k in range(m):
        count[path_pos[k] + 1] += 1
    for c in range(n_paths):
        count[c + 1] += count[c]
    order = np.empty(m, dtype=np.int64)
    for t in range(m):
        k = tmp[t]
        p = path_pos[k]
        order[count[p]] = k
        count[p] += 1
    first = np.zeros(m, dtype=np.bool_)
    start = 0
    while start < m:
        end = start + 1
        p0, q0 = path_pos[order[start]], parcel_pos[order[start]]
        while end < m and path_pos[order[end]] == p0 and parcel_pos[order[end]] == q0:
            end += 1
        first[start] = True
        # stable insertion sort of order[start:end] by fraction, largest first
        for a in range(start + 1, end):
            x = order[a]
            fx = fraction[x]
            b = a - 1
            while b >= start and fraction[order[b]] < fx:
                order[b + 1] = order[b]
                b -= 1
            order[b + 1] = x
        start = end
    return order, first


@nb.njit(cache=True, nogil=True)
def group_sums(values, first, full_loss):
    """Per run of ``first`` (a True opens a run): the sum of ``values`` added in order from 0.0, and
    whether any ``full_loss`` in the run is set (the sums equal ``np.bincount(grp, weights=values)``)."""
    m = values.size
    n_groups = 0
    for k in range(m):
        if first[k]:
            n_groups += 1
    sums = np.zeros(n_groups, dtype=np.float64)
    anyf = np.zeros(n_groups, dtype=np.bool_)
    g = -1
    for k in range(m):
        if first[k]:
            g += 1
        sums[g] += values[k]
        if full_loss[k]:
            anyf[g] = True
    return sums, anyf
