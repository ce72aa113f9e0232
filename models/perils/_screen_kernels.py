"""Compiled (Numba) screens for the weather perils: hash, compare, and keep only the hits.

A weather peril decides each year, for every (path, parcel), whether a keyed uniform ``u`` lies
below a probability; hits are rare (fire) or confined to a few paths (storm years). numpy needs a
dense uniform array, a dense probability array, a comparison and ``np.nonzero``: many passes over
(n_paths x n_parcels) memory. The kernels here hash ``u = unit(mix(rows[i] ^ keys[j]))`` (the keyed
SplitMix64 of :mod:`models.rng`, bit for bit) one pair at a time, compare it with a bound and write
only the pairs that pass, in row-major order (the order of ``np.nonzero``).

Exactness: the kernels use only comparisons, products, sums and divisions, never a transcendental
function whose last bit could differ from numpy's (numpy's ``exp``/``log1p``/``expm1`` are SIMD code).
Where a probability needs ``exp`` or ``expm1`` the kernel screens with an upper bound (a relative
slack of 1e-9, far above any rounding difference) and the peril evaluates the exact probability with
numpy on the few candidates, so the decisions are those of the dense numpy code. The tests
(``tests/test_screen_kernels.py``) hold each kernel to a plain-numpy reference element by element.

Outputs start at a capacity the caller estimates and double when needed, so the cost follows the
number of hits, not the array size. Each screen's row loop is a pass of its own that stops before a row
whose hits would not fit, and its caller grows the outputs and resumes there: an output array rebound
inside the row loop, or a row taken as a view (``x = a[i]``), costs reference counting on every row
(some 35 ns, more than the hashing of a 47-parcel row), so the loops index ``a[i, j]`` and never
rebind their arrays.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from models._kernels import _mix, cascade_multiplier, keyed_unit, reserve_hits

#: relative slack of every screening bound (rounding differences are ~1e-16 relative)
BOUND_SLACK = 1.0 + 1e-9


@nb.njit(cache=True, nogil=True)
def _flag_buffers(n):
    """A flag row padded to whole 8-byte words (and its word view) and a position buffer."""
    nw = (n + 7) // 8
    flag = np.zeros(8 * nw, dtype=np.uint8)
    return flag, flag.view(np.uint64), np.empty(8 * nw + 1, dtype=np.int64)


@nb.njit(cache=True, nogil=True)
def _compress(flag, words, n, c, hj):
    """Positions of the ``c`` set flags of one row into ``hj``, in order; returns their number.

    Sparse rows skip empty 8-byte words; dense rows use a branch-free pass.
    """
    k = 0
    if 16 * c <= n:
        for w in range(words.size):
            if words[w] != 0:
                for j in range(8 * w, 8 * w + 8):
                    hj[k] = j
                    k += flag[j]
    else:
        for j in range(n):
            hj[k] = j
            k += flag[j]
    return k


@nb.njit(cache=True, nogil=True)
def _living(hj, c, age, carbon, s):
    """Keep the positions ``hj[:c]`` whose stand ``s`` is alive (``age >= 0`` and ``carbon > 0``),
    in order; returns their number. The stand arrays are read only at screened pairs."""
    m = 0
    for t in range(c):
        j = hj[t]
        if age[s, j] >= 0 and carbon[s, j] > 0:
            hj[m] = j
            m += 1
    return m


@nb.njit(cache=True, nogil=True)
def _append(oi, oj, ou, k, i, hj, c, r, keys, want_u):
    """Append row ``i``'s ``c`` hits ``hj[:c]``; with ``want_u`` their uniforms (hashed again)."""
    for t in range(c):
        j = hj[t]
        oi[k + t] = i
        oj[k + t] = j
        ou[k + t] = keyed_unit(r, keys[j]) if want_u else 0.0


# Each screen works row by row: one vectorised pass hashes the row and flags the pairs that pass,
# then the flags are compressed to positions and the row's hits appended (their uniforms hashed
# again: hits are few, or their uniforms are not needed). Output arrays start at the caller's
# ``capacity`` (an estimate; an np.empty array's memory is only committed where written) and
# double when a row does not fit.


@nb.njit(cache=True, nogil=True)
def _fire_rows(i0, rows, keys, path_bound, parcel_bound, weakened_until, year, fire_weak, age, carbon, w_county,
               county_code, static_probability, young_age, young_multiplier, path_factor, drought, drought_multiplier,
               per_parcel_drought, oi, oj, k, flag, words, hj):
    """:func:`fire_burns`' rows from ``i0``; stops before a row whose candidates would not fit.
    Returns (the row to resume at, or ``rows.size``; the number of hits so far)."""
    n_rows, n = rows.size, keys.size
    for i in range(i0, n_rows):
        b = path_bound[i]
        if not b > 0.0:
            continue
        r = rows[i]
        c = 0
        for j in range(n):
            f = keyed_unit(r, keys[j]) < b * parcel_bound[j] * cascade_multiplier(weakened_until[i, j], year,
                                                                                   fire_weak)
            flag[j] = f
            c += f
        if c:
            if k + c > oi.size:
                return i, k
            c = _compress(flag, words, n, c, hj)
            m = 0
            for t in range(c):
                j = hj[t]
                a = age[i, j]
                prob = young_multiplier if a < young_age else 1.0
                prob = prob * static_probability[j]
                prob = prob * np.float64(cascade_multiplier(weakened_until[i, j], year, fire_weak))
                prob = prob * w_county[i, county_code[j]]
                if per_parcel_drought:
                    prob = prob * (path_factor[i] * (drought_multiplier if drought[i, j] else 1.0))
                else:
                    prob = prob * path_factor[i]
                if a < 0 or carbon[i, j] <= 0:
                    prob = 0.0
                if keyed_unit(r, keys[j]) < min(prob, 1.0):
                    oi[k + m] = i
                    oj[k + m] = j
                    m += 1
            k += m
    return n_rows, k


@nb.njit(cache=True, nogil=True)
def fire_burns(rows, keys, path_bound, parcel_bound, weakened_until, year, fire_weak, age, carbon, w_county,
               county_code, static_probability, young_age, young_multiplier, path_factor, drought, drought_multiplier,
               per_parcel_drought, capacity):
    """Burned pairs: ``u[i, j] < p[i, j]`` with the fire peril's exact burn probability.

    ``p = min(1, A x static[j] x K[i, j] x W[i, county[j]] x D)`` where ``A = young_multiplier`` when
    ``age[i, j] < young_age`` (``young_age`` already of the type numpy compares in) else 1, ``K`` the
    cascade multiplier (float32 ``fire_weak`` where ``weakened_until[i, j] >= year``, else 1), and
    ``D = path_factor[i]``, or with ``per_parcel_drought``
    ``path_factor[i] x (drought_multiplier if drought[i, j] else 1)``; ``p = 0`` when ``age < 0`` or
    ``carbon <= 0``. The products are taken in the order of ``Fire._probability_at`` (so the decisions
    are bit for bit the numpy ones). Pairs are first screened with
    ``path_bound[i] x parcel_bound[j] x K[i, j]`` (an upper bound of p); returns ``(i, j)`` row-major.
    """
    n = keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)  # unused: reserve_hits grows the three together
    flag, words, hj = _flag_buffers(n)
    i, k = 0, 0
    while True:
        i, k = _fire_rows(i, rows, keys, path_bound, parcel_bound, weakened_until, year, fire_weak, age, carbon,
                          w_county, county_code, static_probability, young_age, young_multiplier, path_factor,
                          drought, drought_multiplier, per_parcel_drought, oi, oj, k, flag, words, hj)
        if i >= rows.size:
            return oi[:k], oj[:k]
        oi, oj, ou = reserve_hits(oi, oj, ou, k, n)


@nb.njit(cache=True, nogil=True)
def _keyed_hit_rows(i0, rows, keys, row_threshold, col_threshold, col_mask, stand_row, age, carbon, want_u,
                    oi, oj, ou, k, flag, words, hj):
    """:func:`keyed_hits`' rows from ``i0``; stops before a row whose hits would not fit."""
    n_rows, n = rows.size, keys.size
    for i in range(i0, n_rows):
        t = row_threshold[i]
        s = stand_row[i]
        r = rows[i]
        c = 0
        for j in range(n):
            f = col_mask[j] & (keyed_unit(r, keys[j]) < t * col_threshold[j])
            flag[j] = f
            c += f
        if c:
            if k + c > oi.size:
                return i, k
            c = _compress(flag, words, n, c, hj)
            c = _living(hj, c, age, carbon, s)
            _append(oi, oj, ou, k, i, hj, c, r, keys, want_u)
            k += c
    return n_rows, k


@nb.njit(cache=True, nogil=True)
def keyed_hits(rows, keys, row_threshold, col_threshold, col_mask, stand_row, age, carbon, want_u, capacity):
    """Living pairs with ``u[i, j] < row_threshold[i] * col_threshold[j]`` and ``col_mask[j]``.

    Living: ``age[s, j] >= 0`` and ``carbon[s, j] > 0`` where ``s = stand_row[i]`` (the stand's row
    of hash row ``i``). Returns ``(i, j, u)`` in row-major order (``u`` zeros unless ``want_u``).
    With ``col_threshold`` all ones the comparison is exactly ``u < row_threshold[i]``.
    """
    n = keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    flag, words, hj = _flag_buffers(n)
    i, k = 0, 0
    while True:
        i, k = _keyed_hit_rows(i, rows, keys, row_threshold, col_threshold, col_mask, stand_row, age, carbon,
                               want_u, oi, oj, ou, k, flag, words, hj)
        if i >= rows.size:
            return oi[:k], oj[:k], ou[:k]
        oi, oj, ou = reserve_hits(oi, oj, ou, k, n)


@nb.njit(cache=True, nogil=True)
def _keyed_flag_rows(i0, rows, keys, row_threshold, flags, oi, oj, ou, k, flag, words, hj):
    """:func:`keyed_flags`' rows from ``i0``; stops before a row whose hits would not fit."""
    n_rows, n = rows.size, keys.size
    for i in range(i0, n_rows):
        t = row_threshold[i]
        r = rows[i]
        c = 0
        for j in range(n):
            f = keyed_unit(r, keys[j]) < t
            flag[j] = f
            flags[i, j] = f
            c += f
        if c:
            if k + c > oi.size:
                return i, k
            c = _compress(flag, words, n, c, hj)
            _append(oi, oj, ou, k, i, hj, c, r, keys, False)
            k += c
    return n_rows, k


@nb.njit(cache=True, nogil=True)
def keyed_flags(rows, keys, row_threshold, flags, capacity):
    """``flags[i, j] = u[i, j] < row_threshold[i]`` (dense), and the hit pairs ``(i, j)`` row-major."""
    n = keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    flag, words, hj = _flag_buffers(n)
    i, k = 0, 0
    while True:
        i, k = _keyed_flag_rows(i, rows, keys, row_threshold, flags, oi, oj, ou, k, flag, words, hj)
        if i >= rows.size:
            return oi[:k], oj[:k]
        oi, oj, ou = reserve_hits(oi, oj, ou, k, n)


@nb.njit(cache=True, nogil=True)
def _storm_candidate_rows(i0, rows, keys, stand_row, track_km, intensity, along_km, coast_decay, track_width_km,
                          max_hit_probability, age, carbon, lo, hi, oi, oj, ou, k, flag, words, hj):
    """:func:`storm_candidates`' rows from ``i0``; stops before a row whose candidates would not fit."""
    n_rows, n = rows.size, keys.size
    for i in range(i0, n_rows):
        s = stand_row[i]
        r = rows[i]
        top = max_hit_probability * intensity[i] * BOUND_SLACK
        tr = track_km[i]
        # the polynomial at the nearest parcel: the same expressions as below, for that parcel
        z0 = (lo - tr) / track_width_km if tr < lo else ((hi - tr) / track_width_km if tr > hi else 0.0)
        x0 = 0.5 * z0 * z0
        p0 = 1.0 + x0 * (1.0 + x0 * (0.5 + x0 * (1.0 / 6.0)))
        c = 0
        for j in range(n):  # a cheap first screen: the track factor at the nearest parcel
            f = keyed_unit(r, keys[j]) * p0 < top * coast_decay[j]
            flag[j] = f
            c += f
        if c:
            if k + c > oi.size:
                return i, k
            c = _compress(flag, words, n, c, hj)
            c = _living(hj, c, age, carbon, s)
            m = 0
            for t in range(c):
                j = hj[t]
                z = (along_km[j] - tr) / track_width_km
                x = 0.5 * z * z
                u = keyed_unit(r, keys[j])
                if u * (1.0 + x * (1.0 + x * (0.5 + x * (1.0 / 6.0)))) < top * coast_decay[j]:
                    oi[k + m] = i
                    oj[k + m] = j
                    ou[k + m] = u
                    m += 1
            k += m
    return n_rows, k


@nb.njit(cache=True, nogil=True)
def storm_candidates(rows, keys, stand_row, track_km, intensity, along_km, coast_decay, track_width_km,
                     max_hit_probability, age, carbon, capacity):
    """Living pairs whose uniform lies below an upper bound of a storm's hit probability.

    The hit probability of hash row ``i`` (storm track ``track_km[i]``, intensity ``intensity[i]``)
    at parcel ``j`` is ``min(1, max_hit x I_i x coast_decay_j x exp(-x))`` with ``x = z^2 / 2`` and
    ``z = (along_km[j] - track_km[i]) / track_width_km``. The screen keeps ``(i, j, u)`` when ``u``
    is below ``max_hit x I_i x coast_decay_j / (1 + x + x^2/2 + x^3/6)`` (``exp(x)`` is at least
    that polynomial for x >= 0) times :data:`BOUND_SLACK`: no ``exp`` here, whose last bit could
    differ from numpy's; the caller evaluates the exact probability on the candidates. Only pairs
    with ``age[s, j] >= 0`` and ``carbon[s, j] > 0`` (``s = stand_row[i]``) are kept.

    A first pass over the row uses the polynomial at the parcels' nearest ``along_km`` to the track
    (0 when the track crosses their span): every operation from the distance to the product is
    monotone under rounding, so it is at most each parcel's own and the pass keeps every pair the
    exact screen keeps, while a track far from a compact portfolio (one loan's parcels) leaves few.
    """
    n = keys.size
    oi = np.empty(capacity, dtype=np.int64)
    oj = np.empty(capacity, dtype=np.int64)
    ou = np.empty(capacity, dtype=np.float64)
    flag, words, hj = _flag_buffers(n)
    lo = along_km.min() if n else 0.0
    hi = along_km.max() if n else 0.0
    i, k = 0, 0
    while True:
        i, k = _storm_candidate_rows(i, rows, keys, stand_row, track_km, intensity, along_km, coast_decay,
                                     track_width_km, max_hit_probability, age, carbon, lo, hi, oi, oj, ou, k,
                                     flag, words, hj)
        if i >= rows.size:
            return oi[:k], oj[:k], ou[:k]
        oi, oj, ou = reserve_hits(oi, oj, ou, k, n)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, nogil=True, inline="always")
def _row_hash(path_id, base):
    """``KeyedRandom``'s row hash of a path in a stream: ``mix(path_id * golden ^ base)`` (``keyed_rows``)."""
    return _mix((np.uint64(path_id) * _GOLDEN) ^ base)


@nb.njit(cache=True, nogil=True)
def storm_pairs(n_random, kmax):
    """(path, storm) of a year's random storms, storm by storm: storm ``k``'s rows are the paths with more
    than ``k`` storms, in path order (``np.flatnonzero(n_random > k)`` for ``k < kmax``, concatenated)."""
    total = 0
    for i in range(n_random.size):
        total += min(n_random[i], kmax)
    path = np.empty(total, dtype=np.int64)
    storm = np.empty(total, dtype=np.int64)
    t = 0
    for k in range(kmax):
        for i in range(n_random.size):
            if n_random[i] > k:
                path[t] = i
                storm[t] = k
                t += 1
    return path, storm


@nb.njit(cache=True, nogil=True)
def pair_rows(path_ids, path, storm, bases):
    """Row hash of path ``path[t]`` in stream ``storm[t]`` (bases from ``KeyedRandom.stream_bases``): the
    numbers of ``KeyedRandom.stream_rows(stream_k)[path]`` without a full row per stream."""
    out = np.empty(path.size, dtype=np.uint64)
    for t in range(path.size):
        out[t] = _row_hash(path_ids[path[t]], bases[storm[t]])
    return out


@nb.njit(cache=True, nogil=True)
def pair_uniforms(path_ids, path, base, keys, storm):
    """``keyed_uniform(stream, year, keys)[path, storm]`` (``base`` the stream's base hash) for the pairs only."""
    out = np.empty(path.size, dtype=np.float64)
    for t in range(path.size):
        out[t] = keyed_unit(_row_hash(path_ids[path[t]], base), keys[storm[t]])
    return out


@nb.njit(cache=True, nogil=True)
def storm_exponent(i, qq, along_km, track_km, track_width_km):
    """``-0.5 z^2`` with ``z = (along_km[qq] - track_km[i]) / track_width_km`` per candidate pair, the
    operations of ``Typhoon.hit_probability`` in its order (numpy's ``exp`` is then taken by the caller)."""
    out = np.empty(i.size, dtype=np.float64)
    for t in range(i.size):
        z = (along_km[qq[t]] - track_km[i[t]]) / track_width_km
        out[t] = -0.5 * z * z
    return out


@nb.njit(cache=True, nogil=True)
def storm_losses(i, qq, u, track_factor, intensity, coast_decay, max_hit_probability, stand_row, storm_of_row,
                 path_ids, damage_bases, keys, loss_low, loss_span, wind_vulnerability, elevation_factor, age,
                 full_height_age, min_height_factor, one, severity):
    """Hits among storm candidates and their losses, in candidate order.

    Candidate ``t`` (hash row ``i[t]``, parcel ``qq[t]``, hazard uniform ``u[t]``) is hit when ``u <
    min(max_hit x (I x decay) x track_factor, 1)`` (``Typhoon.hit_probability``; ``track_factor`` is
    numpy's ``exp(-0.5 z^2)``). A hit's loss is ``min((L x V) x sev, 1)`` with ``L = loss_low +
    loss_span x u'``, ``u'`` the keyed uniform of the path's row in its storm's damage stream (base hash
    ``damage_bases[storm_of_row[i]]``, path id ``path_ids[path]``) and the parcel's key, ``V = (wind x
    H) x E`` and ``H = clip(age / full_height_age, min_height_factor, one)`` in the age array's own type
    (``full_height_age``, ``min_height_factor`` and ``one`` come in that type, as numpy computes it).
    Returns ``(path, parcel, storm, loss)`` of the hits: the numbers of ``Typhoon.step``'s numpy definition.
    """
    m = i.size
    op = np.empty(m, dtype=np.int64)
    oq = np.empty(m, dtype=np.int64)
    ok = np.empty(m, dtype=np.int64)
    ol = np.empty(m, dtype=np.float64)
    n = 0
    for t in range(m):
        r = i[t]
        q = qq[t]
        w = intensity[r] * coast_decay[q] * track_factor[t]
        prob = max_hit_probability * w
        prob = 1.0 if prob > 1.0 else prob
        if not u[t] < prob:
            continue
        p = stand_row[r]
        k = storm_of_row[r]
        loss = loss_low + loss_span * keyed_unit(_row_hash(path_ids[p], damage_bases[k]), keys[q])
        h = age[p, q] / full_height_age
        h = min_height_factor if h < min_height_factor else h
        h = one if h > one else h
        v = wind_vulnerability[q] * np.float64(h) * elevation_factor[q]
        f = loss * v * severity[p]
        op[n] = p
        oq[n] = q
        ok[n] = k
        ol[n] = 1.0 if f > 1.0 else f
        n += 1
    return op[:n], oq[:n], ok[:n], ol[:n]


@nb.njit(cache=True, nogil=True)
def drought_losses(rows, sev_row, age, carbon, plantation, young_age, established_factor, damage_rows, keys,
                   mortality_low, mortality_span, replacing_threshold):
    """Losses of the pairs of the paths ``rows`` that a drought damages.

    For each ``p = rows[i]`` and parcel ``j`` in order: alive = ``age >= 0`` and ``carbon > 0``;
    share ``s`` = 1 for plantations with ``age <= young_age`` else ``established_factor``; mortality
    ``m = mortality_low + mortality_span * u`` with ``u`` the keyed uniform of ``damage_rows[i]`` and
    ``keys[j]`` (``SourcedRange.draw``); loss ``min((m * s) * sev_row[i], 1)`` (numpy's ``minimum``:
    a NaN stays NaN). A pair is kept when alive, ``s > 0``, ``sev_row[i] > 0`` and its loss is
    positive. ``young_age`` must already have the type the numpy comparison ``age <= young_age``
    uses. Returns ``(path, parcel, loss, loss >= replacing_threshold)``: the numbers of
    ``Drought.step``'s numpy definition (tests/test_screen_kernels.py) in one pass.
    """
    n = age.shape[1]
    cap = rows.size * n
    op = np.empty(cap, dtype=np.int64)
    oq = np.empty(cap, dtype=np.int64)
    ol = np.empty(cap, dtype=np.float64)
    k = 0
    for i in range(rows.size):
        p = rows[i]
        sv = sev_row[i]
        if not sv > 0:
            continue
        r = damage_rows[i]
        for j in range(n):
            a = age[p, j]
            share = 1.0 if (plantation[j] and a <= young_age) else established_factor
            m = mortality_low + mortality_span * keyed_unit(r, keys[j])
            loss = m * share * sv
            loss = 1.0 if loss > 1.0 else loss
            op[k] = p
            oq[k] = j
            ol[k] = loss
            k += a >= 0 and carbon[p, j] > 0 and share > 0 and loss > 0
    return op[:k], oq[:k], ol[:k], ol[:k] >= replacing_threshold


@nb.njit(cache=True, nogil=True)
def _pair_sort(path_pos, parcel_pos, n_paths, n_parcels):
    """Stable order by (path, parcel): a counting sort by path, then each path's segment stably
    by parcel (left alone when already ascending, the usual case for one event per path)."""
    m = path_pos.size
    start = np.zeros(n_paths + 1, dtype=np.int64)
    for k in range(m):
        start[path_pos[k] + 1] += 1
    for c in range(n_paths):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(m, dtype=np.int64)
    seg_q = np.empty(m, dtype=np.int64)
    for k in range(m):
        p = path_pos[k]
        order[fill[p]] = k
        seg_q[fill[p]] = parcel_pos[k]
        fill[p] += 1
    count = np.zeros(0, dtype=np.int64)
    tmp_o = np.empty(0, dtype=np.int64)
    for p in range(n_paths):
        a, b = start[p], start[p + 1]
        ascending = True
        for k in range(a + 1, b):
            if seg_q[k] < seg_q[k - 1]:
                ascending = False
                break
        if ascending:
            continue
        if 4 * (b - a) >= n_parcels:  # dense segment: counting sort by parcel
            if count.size == 0:
                count = np.zeros(n_parcels + 1, dtype=np.int64)
                tmp_o = np.empty(m, dtype=np.int64)
            count[:] = 0
            for k in range(a, b):
                count[seg_q[k] + 1] += 1
            for c in range(n_parcels):
                count[c + 1] += count[c]
            for k in range(a, b):
                q = seg_q[k]
                tmp_o[a + count[q]] = order[k]
                count[q] += 1
            for k in range(a, b):
                order[k] = tmp_o[k]
                seg_q[k] = parcel_pos[order[k]]
        else:
            sub = np.argsort(seg_q[a:b], kind="mergesort")
            o = order[a:b][sub]
            order[a:b] = o
            for k in range(a, b):
                seg_q[k] = parcel_pos[order[k]]
    return order, seg_q, start


@nb.njit(cache=True, nogil=True)
def pair_order(path_pos, parcel_pos, fraction, n_paths, n_parcels):
    """Stable order by (path, parcel), then by fraction descending: ``np.lexsort((-fraction, pair))``.

    A stable sort by pair (:func:`_pair_sort`), then each run of equal pairs (short: a pair
    appears once per event) insertion-sorted by fraction, largest first, ties in input order.
    Returns the order and a flag per sorted position marking the first of each pair.
    """
    m = path_pos.size
    order, seg_q, seg_start = _pair_sort(path_pos, parcel_pos, n_paths, n_parcels)
    first = np.zeros(m, dtype=np.bool_)
    for p in range(n_paths):
        a, b = seg_start[p], seg_start[p + 1]
        k = a
        while k < b:
            first[k] = True
            end = k + 1
            while end < b and seg_q[end] == seg_q[k]:
                end += 1
            # stable insertion sort of order[k:end] by fraction, largest first
            for t in range(k + 1, end):
                x = order[t]
                fx = fraction[x]
                u = t - 1
                while u >= k and fraction[order[u]] < fx:
                    order[u + 1] = order[u]
                    u -= 1
                order[u + 1] = x
            k = end
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
