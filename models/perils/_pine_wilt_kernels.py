"""Compiled yearly loops of the pine wilt peril (Numba), each equal to a plain-numpy definition.

:func:`cell_year_tracked` and :func:`cell_year` are one year of the landscape SI process (the numpy
definition is ``PineWilt.cell_hazard`` plus keyed uniforms), :func:`parcel_year` the parcel
infections and the pine mortality of one year (the numpy definition is ``PineWilt.reference_step``).
All give bit-identical results to their definitions; ``tests/test_pine_wilt_kernels.py`` checks
them element by element. The tracked kernel keeps each path's neighbour masks between years and is
the one runs use when no cell has more than 64 neighbours (with the shipped 3-km cells and 4.5-km
reach a cell has 8); :func:`cell_year` rebuilds the pressure from the flags every year and serves
larger neighbourhoods.

**Integer thresholds.** A keyed uniform is ``u(m) = (float64(m) + 0.5) * 2**-53`` with ``m = z >> 11``
the top 53 bits of the hash ``z``. ``m -> u(m)`` is non-decreasing: ``float64(m)`` is exact for
``m < 2**53``, adding 0.5 is a correctly rounded (hence monotone) operation, and the scaling by a power
of two is exact (no underflow or overflow). So for any probability ``p`` the set ``{m : u(m) < p}`` is
an initial segment ``[0, T)`` and ``u(m) < p`` holds exactly when ``m < T``.
:func:`uniform_threshold` finds that ``T`` (a guess from ``p * 2**53`` corrected by checking
``u(T - 1) < p <= u(T)`` with the same float expression), so the cell loop compares integers and
never converts a hash to float, with the same decisions as ``u < p``. A NaN or non-positive ``p``
gives ``T = 0`` (``u < p`` is then false for every ``u``), as does the float comparison.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from models._kernels import _mix, cascade_multiplier, keyed_unit, reserve_hits

_TO_UNIT = 2.0**-53
_TWO53 = 2**53
_SLOTS = 64  # direct-mapped cache of thresholds by local pressure, per path
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_SLOT_SHIFT = np.uint64(58)  # 64 - log2(_SLOTS)


@nb.njit(cache=True, nogil=True)
def _unit(m):
    """The keyed uniform of the 53-bit integer ``m`` (the float expression of models.rng)."""
    return (np.float64(m) + 0.5) * _TO_UNIT


@nb.njit(cache=True, nogil=True)
def uniform_threshold(p):
    """The integer ``T`` in [0, 2**53] with ``u(m) < p  <=>  m < T`` for every m in [0, 2**53).

    Parameters
    ----------
    p : float
        A probability (any float; NaN or p <= 0 give 0, p > 1 gives 2**53).

    Returns
    -------
    uint64
    """
    if not p > 0.0:
        return np.uint64(0)
    g = p * 9007199254740992.0 - 0.5  # p * 2**53 - 0.5, about the boundary
    if g <= 0.0:
        t = 0
    elif g >= 9007199254740992.0:
        t = _TWO53
    else:
        t = np.int64(np.ceil(g))
    while t > 0 and _unit(t - 1) >= p:
        t -= 1
    while t < _TWO53 and _unit(t) < p:
        t += 1
    return np.uint64(t)


@nb.njit(cache=True, nogil=True)
def _hazard_threshold(loc, jump, lr, ir):
    """Integer threshold of a cell with local pressure ``loc`` and long-distance term ``jump``.

    The hazard ``h = (lr * loc + jump) + ir`` (float32, in this order) and ``p = -expm1(-h)``: every
    kernel decides through this one expression, so they agree bit for bit.
    """
    return hazard_threshold((lr * loc + jump) + ir)


@nb.njit(cache=True, nogil=True)
def hazard_threshold(hz):
    """Integer threshold of the float32 hazard ``hz``: that of ``p = -expm1(-hz)``."""
    return uniform_threshold(np.float64(-np.expm1(-hz)))


@nb.njit(cache=True, nogil=True)
def _jump(emitted, jr, nc):
    """The long-distance term ``jr * emitted / n_cells`` (float32)."""
    return jr * emitted / nc


@nb.njit(cache=True, nogil=True, inline="always")
def _rates32(intro_rate, n_cells):
    """The introduction rate and the cell count as the float32 numbers the hazard is computed in
    (the local and long-distance rates come per path, already float32)."""
    return np.float32(intro_rate), np.float32(max(n_cells, 1))


@nb.njit(cache=True, nogil=True)
def _threshold_of(loc, lr, jump, ir, p, slot_gen, slot_bits, slot_thr):
    """Integer threshold of a cell with local pressure ``loc`` > 0 on path ``p`` (memoised per path)."""
    b = np.float32(loc).view(np.uint32)
    s = np.int64((np.uint64(b) * _GOLD) >> _SLOT_SHIFT)
    if slot_gen[s] == p and slot_bits[s] == b:
        return slot_thr[s]
    t = _hazard_threshold(loc, jump, lr, ir)
    slot_gen[s] = p
    slot_bits[s] = b
    slot_thr[s] = t
    return t


@nb.njit(cache=True, nogil=True)
def cell_year(infected, indptr, indices, data, t_indptr, t_indices, t_data, infectivity, local_rate, jump_rate,
              intro_rate, rows, keys):
    """One year of the pine wilt cell SI process, in place (see ``PineWilt.advance_cells``).

    ``(indptr, indices, data)`` is the CSR neighbour matrix with the source cell's infectivity
    folded in (row = source cell), ``(t_indptr, t_indices, t_data)`` its transpose (row = target
    cell) with ascending column indices. Arithmetic is float32, in the order of the numpy reference
    ``PineWilt.cell_hazard``: ``emitted`` and each cell's ``local`` pressure summed over the infected
    source cells in ascending order from 0, ``h = (local_rate * local + jump_rate * emitted / n) +
    intro``, ``p = -expm1(-h)``; a susceptible cell is infected when its keyed uniform is below ``p``.
    ``local_rate`` and ``jump_rate`` are float32 arrays of shape (n_paths,): each path's rates, which
    differ between parameter sets when the spread rates are drawn (``PineWilt.path_rates``).

    Per path, whichever is cheaper: while few cells are infected, their pressure is scattered to
    their neighbours (only touched entries are reset afterwards); once most are, each susceptible
    cell gathers from its infected neighbours (same terms, same order, so the same float32 sum) and
    infected cells are skipped; a path with every cell infected is left as it is. Each distinct
    pressure's probability becomes an integer threshold once per path (:func:`uniform_threshold`);
    the far cells share one. A decision is one hash and one integer comparison.
    """
    n_paths, n_cells = infected.shape
    local = np.zeros(n_cells, dtype=np.float32)
    thr = np.empty(n_cells, dtype=np.uint64)
    touched = np.empty(n_cells, dtype=np.int64)
    mark = np.full(n_cells, -1, dtype=np.int64)
    new = np.empty(n_cells, dtype=np.int64)
    slot_bits = np.zeros(_SLOTS, dtype=np.uint32)
    slot_thr = np.zeros(_SLOTS, dtype=np.uint64)
    slot_gen = np.full(_SLOTS, -1, dtype=np.int64)
    ir, nc = _rates32(intro_rate, n_cells)
    s11 = np.uint64(11)
    for p in range(n_paths):
        lr, jr = np.float32(local_rate[p]), np.float32(jump_rate[p])
        n_inf = 0
        for j in range(n_cells):
            n_inf += infected[p, j]
        if n_inf == n_cells:
            continue  # nothing left to infect
        r = rows[p]
        emitted = np.float32(0.0)
        if 2 * n_inf <= n_cells:
            # scatter from the infected cells
            n_touched = 0
            for j in range(n_cells):
                if infected[p, j]:
                    emitted += infectivity[j]
                    for k in range(indptr[j], indptr[j + 1]):
                        i = indices[k]
                        if mark[i] != p:
                            mark[i] = p
                            touched[n_touched] = i
                            n_touched += 1
                        local[i] += data[k]
            jump = _jump(emitted, jr, nc)
            # cells without infected neighbours share one hazard (lr * 0 + jump) + ir
            t_far = _hazard_threshold(np.float32(0.0), jump, lr, ir)
            thr[:] = t_far
            for t in range(n_touched):
                i = touched[t]
                if local[i] != 0.0 and not infected[p, i]:
                    thr[i] = _threshold_of(local[i], lr, jump, ir, p, slot_gen, slot_bits, slot_thr)
                local[i] = 0.0
            for i in range(n_cells):
                infected[p, i] = infected[p, i] | ((_mix(r ^ keys[i]) >> s11) < thr[i])
        else:
            # gather into the susceptible cells
            for j in range(n_cells):
                if infected[p, j]:
                    emitted += infectivity[j]
            jump = _jump(emitted, jr, nc)
            t_far = _hazard_threshold(np.float32(0.0), jump, lr, ir)
            n_new = 0
            for i in range(n_cells):
                if infected[p, i]:
                    continue
                loc = np.float32(0.0)
                for k in range(t_indptr[i], t_indptr[i + 1]):
                    if infected[p, t_indices[k]]:
                        loc += t_data[k]
                if loc == 0.0:
                    ti = t_far
                else:
                    ti = _threshold_of(loc, lr, jump, ir, p, slot_gen, slot_bits, slot_thr)
                if (_mix(r ^ keys[i]) >> s11) < ti:
                    new[n_new] = i
                    n_new += 1
            for t in range(n_new):
                infected[p, new[t]] = True
    return infected


@nb.njit(cache=True, nogil=True)
def record_infection_year(infected, year_of, year):
    """``year_of[p, i] = year`` where cell ``i`` of path ``p`` is infected and ``year_of`` is later
    (the landscape footprint; numpy: ``year_of[infected & (year_of > year)] = year``)."""
    n_paths, n_cells = infected.shape
    y = np.int16(year)
    for p in range(n_paths):
        for i in range(n_cells):
            if infected[p, i] and year_of[p, i] > y:
                year_of[p, i] = y
    return year_of


@nb.njit(cache=True, nogil=True)
def _parcel_year_rows(p0, years, pine_left, cell_infected, spatial, cell_possible, host_cell, host_idx, age,
                      weakened_until, year, pest_weak, hazard, pre, host_factor, forced_prob, has_forced, rows, keys,
                      mortality, sanitation, pine_share, severity, outbreak_years, out_p, out_g, out_l, n):
    """:func:`parcel_year`'s paths from ``p0``; stops before a path whose hosts might not fit (the
    outputs are never re-bound inside the loop: that would cost reference counting on every path).
    Returns (the path to resume at, or ``n_paths``; the number of losses so far)."""
    n_paths, n_hosts = years.shape
    for p in range(p0, n_paths):
        if n + n_hosts > out_p.size:  # room for every host of this path
            return p, n
        r = rows[p]
        hz = hazard[p]
        sv = severity[p]
        for q in range(n_hosts):
            yv = years[p, q]
            g = host_idx[q]
            if yv < 0:
                if spatial:
                    cand = cell_infected[p, host_cell[q]]
                else:
                    cand = cell_possible[q]
                if has_forced and forced_prob[q] > 0:
                    cand = True
                if cand and age[p, g] > 0:
                    factor = host_factor[q] * np.float64(cascade_multiplier(weakened_until[p, g], year, pest_weak)) * hz
                    pr = pre[q] * factor
                    if has_forced:
                        pf = forced_prob[q] * factor
                        if pf > pr or pf != pf:  # np.maximum, NaN included
                            pr = pf
                    u = keyed_unit(r, keys[g])
                    if u < pr and u < 1.0:
                        yv = 0
                        years[p, q] = 0
                        pine_left[p, q] = 1.0
            if yv >= 0 and yv < outbreak_years:
                m = mortality[q] * np.float64(cascade_multiplier(weakened_until[p, g], year, pest_weak)) * sv
                m = m + sanitation[q]
                if m > 1.0:
                    m = 1.0
                left = np.float64(pine_left[p, q])
                s0 = pine_share[q]
                pines = s0 * left
                whole = pines + (1.0 - s0)
                # a pure-pine stand with no pines left has nothing to lose (numpy's 0/0 = NaN,
                # which the reference drops as not > 0)
                share = pines / whole if whole > 0.0 else 0.0
                loss = share * m
                pine_left[p, q] = np.float32(left * (1.0 - m))
                years[p, q] = yv + 1
                if loss > 0:
                    out_p[n] = p
                    out_g[n] = g
                    out_l[n] = loss
                    n += 1
    return n_paths, n


@nb.njit(cache=True, nogil=True)
def parcel_year(years, pine_left, cell_infected, spatial, cell_possible, host_cell, host_idx, age,
                weakened_until, year, pest_weak, hazard, pre, host_factor, forced_prob, has_forced, rows, keys,
                mortality, sanitation, pine_share, severity, outbreak_years):
    """Parcel infections and pine mortality of one year, in place, in one pass over (path, host).

    Equal to ``PineWilt.reference_step`` (numpy): a susceptible host ``q`` of path ``p``
    with stand age > 0 is a candidate if its cell is infected (``spatial``; else if
    ``cell_possible[q]``) or a forced probability applies; its infection probability is
    ``pre[q] * f`` (``f = host_factor[q] * pest[p, g] * hazard[p]``, ``pest[p, g]`` the float32
    ``pest_weak`` where ``weakened_until[p, g] >= year`` and 1 elsewhere, ``pre`` = base probability,
    times the cell marginal in independent mode), raised to ``forced_prob[q] * f``; it is
    infected when its keyed uniform is below that and below 1. Then every host in its outbreak
    loses ``m`` times its pine carbon share and its years and surviving pines advance.

    Returns
    -------
    path_pos, parcel_pos : ndarray of int64
    loss : ndarray of float64
        The positive losses, in row-major (path, host) order.
    """
    n_paths, n_hosts = years.shape
    cap = max(1024, 2 * n_hosts)
    out_p = np.empty(cap, dtype=np.int64)
    out_g = np.empty(cap, dtype=np.int64)
    out_l = np.empty(cap, dtype=np.float64)
    p, n = 0, 0
    while True:
        p, n = _parcel_year_rows(p, years, pine_left, cell_infected, spatial, cell_possible, host_cell, host_idx,
                                 age, weakened_until, year, pest_weak, hazard, pre, host_factor, forced_prob,
                                 has_forced, rows, keys, mortality, sanitation, pine_share, severity, outbreak_years,
                                 out_p, out_g, out_l, n)
        if p >= n_paths:
            return out_p[:n].copy(), out_g[:n].copy(), out_l[:n].copy()
        out_p, out_g, out_l = reserve_hits(out_p, out_g, out_l, n, n_hosts)


# ---- the tracked cell year -------------------------------------------------------------------
_ROUND_32 = 2.0**-23  # twice float32's unit roundoff: recursive float32 sums err by < n u_32 S
_ROUND_64 = 2.0**-51  # four times float64's: the running float64 sum of the infected infectivities
#: relative room around a bracketing threshold (a few float32 ulps of expm1f)
SLACK = 2.0**-18


#: points of the hazard grid per unit of hazard (a power of two: grid points are exact in float32)
GRID_PER_UNIT = 256


@nb.njit(cache=True, nogil=True)
def hazard_threshold_grid(hz_max, slack=SLACK):
    """Bounding thresholds on a grid of hazards, for :func:`cell_footprint`.

    Returns ``(lo, hi)``, uint64 arrays over the hazards ``g_k = k / GRID_PER_UNIT`` up to past
    ``hz_max``: ``lo[k]`` is ``g_k``'s threshold lowered by ``slack`` and ``hi[k]`` raised by it.
    The threshold of any hazard in ``[g_k, g_(k+1)]`` lies in ``[lo[k], hi[k+1]]``: thresholds rise
    with the hazard (``uniform_threshold`` is monotone, and ``expm1``'s rounding is monotone up to
    a few float32 ulps, which the slack covers, as for the kernels' emitted-sum brackets).
    """
    n = np.int64(np.ceil(hz_max * GRID_PER_UNIT)) + 2
    lo = np.empty(n, dtype=np.uint64)
    hi = np.empty(n, dtype=np.uint64)
    for k in range(n):
        t = hazard_threshold(np.float32(k / GRID_PER_UNIT))
        lo[k] = _lower(t, slack)
        hi[k] = _upper(t, slack)
    return lo, hi


@nb.njit(cache=True, nogil=True)
def _local_threshold(loc, emitted, lr, jr, ir, nc):
    """Threshold of a cell with local pressure ``loc`` (0: no infected neighbour) given ``emitted``."""
    return _hazard_threshold(loc, _jump(emitted, jr, nc), lr, ir)


@nb.njit(cache=True, nogil=True)
def _mask_pressure(m, t_data, base, n_sources, bit):
    """Local pressure of a cell whose infected sources are the set bits of ``m``: their ``t_data``
    terms (from ``base``) added in ascending order, float32 -- the reference's sum exactly. A
    select, not a branch: adding +0.0 leaves a float32 sum unchanged."""
    loc = np.float32(0.0)
    zero32 = np.float32(0.0)
    for b in range(n_sources):
        loc += t_data[base + b] if m & bit[b] else zero32
    return loc


@nb.njit(cache=True, nogil=True)
def _f32_down(x):
    """The largest float32 not above ``x`` (x >= 0)."""
    y = np.float32(x)
    if np.float64(y) > x:
        y = np.nextafter(y, np.float32(-np.inf))
    return y


@nb.njit(cache=True, nogil=True)
def _f32_up(x):
    y = np.float32(x)
    if np.float64(y) < x:
        y = np.nextafter(y, np.float32(np.inf))
    return y


@nb.njit(cache=True, nogil=True)
def _lower(t, slack):
    """A threshold lowered by ``slack`` (relative): room for a non-monotone rounding of ``expm1``."""
    return np.uint64(np.float64(t) * (1.0 - slack))


@nb.njit(cache=True, nogil=True)
def _upper(t, slack):
    return np.uint64(min(np.float64(t) * (1.0 + slack) + 1.0, 9007199254740992.0))


@nb.njit(cache=True, nogil=True)
def _exact_path(inf_p, kn_p, m_p, t_indptr, t_data, bit, infectivity, lr, jr, ir, nc, r, keys):
    """One path-year decided exactly as the reference does (float32 emitted summed in cell order).

    ``kn_p`` holds the flags at the start of the year; ``inf_p`` is reset to them first.
    """
    n_cells = inf_p.size
    s11 = np.uint64(11)
    emitted = np.float32(0.0)
    for j in range(n_cells):
        inf_p[j] = kn_p[j]
        if kn_p[j]:
            emitted += infectivity[j]
    t_far = _local_threshold(np.float32(0.0), emitted, lr, jr, ir, nc)
    for i in range(n_cells):
        if kn_p[i]:
            continue
        m = m_p[i]
        ti = t_far
        if m != 0:
            loc = _mask_pressure(m, t_data, t_indptr[i], t_indptr[i + 1] - t_indptr[i], bit)
            if loc != 0.0:
                ti = _local_threshold(loc, emitted, lr, jr, ir, nc)
        if (_mix(r ^ keys[i]) >> s11) < ti:
            inf_p[i] = True



_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.uint64)
for _k in range(64):
    _DEBRUIJN_INDEX[((1 << _k) * 0x03F79D71B4CB0A89 % 2**64) >> 58] = _k
assert sorted(_DEBRUIJN_INDEX.tolist()) == list(range(64))


@nb.njit(cache=True, nogil=True)
def _lowest_bit(word):
    """Index of the lowest set bit of a non-zero uint64 (de Bruijn multiplication)."""
    low = word & (~word + np.uint64(1))
    return _DEBRUIJN_INDEX[(low * _DEBRUIJN) >> np.uint64(58)]


@nb.njit(cache=True, nogil=True)
def cell_year_tracked(infected, known, mask, emitted_sum, n_infected, indptr, indices, bit_value, t_indptr, t_data,
                      bit, pressure_index, pressures, infectivity, local_rate, jump_rate, intro_rate, rows, keys,
                      grid_lo, grid_hi, year_of, year, sync=True, slack=SLACK):
    """One year of the pine wilt cell SI process, in place: the same decisions as :func:`cell_year`.

    Instead of rebuilding every path's neighbour pressure each year, each path keeps state between
    years, updated only where a cell's flag changed:

    * ``known[p, j]``: the flag of cell ``j`` the state below was built from (a flag set or cleared
      from outside, such as a forced outbreak, is picked up at the next call);
    * ``mask[p, i]``: bit ``b`` is set when the ``b``-th source of cell ``i`` (in the transposed
      neighbour rows, ascending) is infected; ``bit_value[k]`` is the bit of CSR entry ``k``
      (source -> target) and ``bit[b] = 1 << b``;
    * ``emitted_sum[p]``, ``n_infected[p]``: a running float64 sum of the infected cells'
      infectivities, and their number.

    A cell's local pressure is its set bits' ``t_data`` summed in ascending order (float32): the
    reference's number exactly. With 8-bit masks (up to 8 neighbours, as the shipped 3-km cells have)
    the sums are tabulated once per landscape: ``pressures[pressure_index[256 i + m]]`` is that sum
    for cell ``i`` and mask ``m`` (``pressures`` the distinct values, ascending, ``pressures[0] =
    0``; see ``models.perils.pine_wilt.pressure_table``), and each path-year's thresholds are
    memoised by that index. Empty tables: the sum is taken from the mask, and thresholds are
    memoised by the pressure's bits in a small direct-mapped cache.

    Measured on one loan's 413-cell landscape (5,024 paths, 30 years) it takes about 110 ms against
    180 ms for :func:`cell_year` (140 ms before the table): the rebuild's branches on the flags
    mispredict at every edge of an infected patch, while here one vectorised pass decides the cells
    without infected neighbours and flags the rest. The long-distance term needs the float32 sum of the
    infected cells' infectivities in cell order, a chain of dependent additions per path-year; instead the kernel
    brackets it: the recursive float32 sum of ``n`` non-negative terms differs from their exact
    sum ``S`` by less than ``n u32 S`` (Higham, *Accuracy and Stability of Numerical Algorithms*,
    2002, eq. 4.4), and the running float64 sum from ``S`` by less than ``n u64 S``. The float32
    operations from it to the hazard are monotone, and ``uniform_threshold`` is monotone, so the
    reference threshold lies between the thresholds of the bracket's ends (widened by a few
    float32 ulps of ``expm1``). A cell whose hash falls outside the band is decided; when any
    falls inside (about once in 10^4 path-years), the path-year is redone exactly
    (:func:`_exact_path`).

    ``local_rate`` and ``jump_rate`` are per path, as in :func:`cell_year`.

    ``year_of`` (int16, shape (n_paths, n_cells); empty: not kept) gets ``year`` at each cell this
    call infects: the footprint's record, without a pass over the flags. ``sync=False`` skips the
    look for flags changed outside, which the caller then guarantees there were none since the
    last call (a footprint's years after the first).

    A cell with infected neighbours needs its own threshold, about 18 ns of ``expm1`` and
    ``uniform_threshold``; the shipped landscape's pressures take some 19,000 distinct values, so the
    memo rarely saves one. With ``grid_lo``/``grid_hi`` from :func:`hazard_threshold_grid` (empty:
    not used) the kernel first brackets the cell's hazard between two grid points and decides it
    from their thresholds, which settles all but about 3 in 10^4 such cells (the rest take the
    memoised threshold); about 15 % off the shipped landscape's cell year.
    """
    n_paths, n_cells = infected.shape
    tabulated = pressure_index.size > 0
    n_slots = max(_SLOTS, pressures.size)
    slot_key = np.zeros(n_slots, dtype=np.uint32)
    slot_lo = np.zeros(n_slots, dtype=np.uint64)
    slot_hi = np.zeros(n_slots, dtype=np.uint64)
    slot_gen = np.full(n_slots, -1, dtype=np.int64)
    new = np.empty(n_cells, dtype=np.int64)
    n_words = (n_cells + 7) // 8
    flag_words = np.zeros(n_words, dtype=np.uint64)
    flag = flag_words.view(np.uint8)  # its tail past n_cells stays 0
    ir, nc = _rates32(intro_rate, n_cells)
    s11 = np.uint64(11)
    scale = np.float32(GRID_PER_UNIT)
    record = year_of.size > 0
    y16 = np.int16(year)
    for p in range(n_paths):
        inf_p, kn_p, m_p = infected[p], known[p], mask[p]
        lr, jr = np.float32(local_rate[p]), np.float32(jump_rate[p])
        # ---- flags changed outside since the last call: bring the state up to date
        changed = False
        if sync:
            for j in range(n_cells):
                changed |= inf_p[j] != kn_p[j]
        if changed:
            cleared = False
            for j in range(n_cells):
                if inf_p[j] != kn_p[j]:
                    kn_p[j] = inf_p[j]
                    if inf_p[j]:
                        for k in range(indptr[j], indptr[j + 1]):
                            m_p[indices[k]] |= bit_value[k]
                        emitted_sum[p] += infectivity[j]
                        n_infected[p] += 1
                    else:
                        cleared = True
                        for k in range(indptr[j], indptr[j + 1]):
                            m_p[indices[k]] &= ~bit_value[k]
                        n_infected[p] -= 1
            if cleared:  # a sum with subtractions has no relative error bound: start it afresh
                s = 0.0
                for j in range(n_cells):
                    if kn_p[j]:
                        s += infectivity[j]
                emitted_sum[p] = s
        n_inf = n_infected[p]
        if n_inf == n_cells:
            continue  # nothing left to infect
        # ---- the bracket of the reference's float32 emitted sum
        s = emitted_sum[p]
        err = s * (n_inf * _ROUND_32 + n_cells * _ROUND_64)
        e_lo = _f32_down(max(s - err, 0.0))
        e_hi = _f32_up(s + err)
        exact = e_lo == e_hi
        t_lo = _local_threshold(np.float32(0.0), e_lo, lr, jr, ir, nc)
        t_hi = t_lo
        if not exact:
            t_lo = _lower(t_lo, slack)
            t_hi = _upper(_local_threshold(np.float32(0.0), e_hi, lr, jr, ir, nc), slack)
        r = rows[p]
        j_lo = _jump(e_lo, jr, nc)
        j_hi = _jump(e_hi, jr, nc)
        # ---- one vectorised pass: the decisions of the cells with no infected neighbour (one
        # threshold), and a flag byte per cell: 1 = susceptible with infected neighbours (decided
        # below), 2 = infected by this pass
        unsure = False
        for i in range(n_cells):
            x = inf_p[i]
            far = m_p[i] == 0
            h = _mix(r ^ keys[i]) >> s11
            hit = far & (h < t_lo)
            unsure |= far & (not x) & (h >= t_lo) & (h < t_hi)
            inf_p[i] = x | hit
            flag[i] = np.uint8(2 * (hit & (not x)) + ((not x) & (not far)))
        # ---- the flagged cells, eight flag bytes at a time: most words are zero, so there is no
        # branch per cell (one on the flags mispredicts at every edge of an infected patch)
        n_new = 0
        for w in range(n_words):
            word = flag_words[w]
            while word != 0:
                k = _lowest_bit(word)
                shift = k & np.uint64(56)  # the byte's first bit
                kind = (word >> shift) & np.uint64(0xFF)
                word &= ~(np.uint64(0xFF) << shift)
                i = 8 * w + np.int64(shift >> np.uint64(3))
                if kind == 2:
                    new[n_new] = i
                    n_new += 1
                    continue
                h = _mix(r ^ keys[i]) >> s11
                # the pressure and its memo slot: the tabulated index, else a hash of its bits
                if tabulated:
                    s_ = np.int64(pressure_index[256 * i + np.int64(m_p[i])])
                    loc = pressures[s_]
                    key = np.uint32(0)
                    if loc != 0.0 and grid_hi.size > 0:
                        # bounds from the hazard grid: the reference's hazard lies in [hz_lo, hz_hi],
                        # between grid points k and kh, and thresholds rise with the hazard
                        k = np.int64(((lr * loc + j_lo) + ir) * scale)
                        kh = np.int64(((lr * loc + j_hi) + ir) * scale) + 1
                        if kh < grid_hi.size:
                            if h < grid_lo[k]:
                                inf_p[i] = True
                                new[n_new] = i
                                n_new += 1
                                continue
                            if h >= grid_hi[kh]:
                                continue
                    fresh = slot_gen[s_] != p
                else:
                    loc = _mask_pressure(m_p[i], t_data, t_indptr[i], t_indptr[i + 1] - t_indptr[i], bit)
                    key = np.float32(loc).view(np.uint32)
                    s_ = np.int64((np.uint64(key) * _GOLD) >> _SLOT_SHIFT)
                    fresh = slot_gen[s_] != p or slot_key[s_] != key
                if loc == 0.0:
                    lo_i, hi_i = t_lo, t_hi
                else:
                    # thresholds memoised per path by pressure; the upper one only once a hash
                    # above the lower one asks for it (0: not computed yet)
                    if fresh:
                        slot_gen[s_] = p
                        slot_key[s_] = key
                        slot_lo[s_] = _local_threshold(loc, e_lo, lr, jr, ir, nc)
                        slot_hi[s_] = slot_lo[s_] if exact else np.uint64(0)
                    lo_i = slot_lo[s_]
                    if not exact:
                        lo_i = _lower(lo_i, slack)
                    hi_i = slot_hi[s_]
                    if h >= lo_i and hi_i == 0:
                        hi_i = _upper(_local_threshold(loc, e_hi, lr, jr, ir, nc), slack)
                        slot_hi[s_] = hi_i
                if h < lo_i:
                    inf_p[i] = True
                    new[n_new] = i
                    n_new += 1
                elif h < hi_i:
                    unsure = True
        if unsure:
            _exact_path(inf_p, kn_p, m_p, t_indptr, t_data, bit, infectivity, lr, jr, ir, nc, r, keys)
            n_new = 0
            for i in range(n_cells):
                if inf_p[i] and not kn_p[i]:
                    new[n_new] = i
                    n_new += 1
        # ---- this year's infections tell their neighbours (cell order: a deterministic sum)
        for t in range(n_new):
            j = new[t]
            if record:
                year_of[p, j] = y16
            kn_p[j] = True
            for k in range(indptr[j], indptr[j + 1]):
                m_p[indices[k]] |= bit_value[k]
            emitted_sum[p] += infectivity[j]
        n_infected[p] += n_new
    return infected
