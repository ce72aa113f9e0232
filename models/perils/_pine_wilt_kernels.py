"""Compiled yearly loops of the pine wilt peril (Numba), each equal to a plain-numpy definition.

:func:`cell_year` is one year of the landscape SI process (the numpy definition is
``PineWilt.cell_hazard`` plus keyed uniforms), :func:`parcel_year` the parcel infections and the
pine mortality of one year (the numpy definition is ``PineWilt.reference_step``). Both give
bit-identical results to their definitions; ``tests/test_pine_wilt_kernels.py`` checks them
element by element.

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

from models._kernels import _mix, keyed_unit

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
def _threshold_of(loc, lr, jump, ir, p, slot_gen, slot_bits, slot_thr):
    """Integer threshold of a cell with local pressure ``loc`` > 0 on path ``p`` (memoised per path)."""
    b = np.float32(loc).view(np.uint32)
    s = np.int64((np.uint64(b) * _GOLD) >> _SLOT_SHIFT)
    if slot_gen[s] == p and slot_bits[s] == b:
        return slot_thr[s]
    h = (lr * loc + jump) + ir
    t = uniform_threshold(np.float64(-np.expm1(-h)))
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
    lr = np.float32(local_rate)
    jr = np.float32(jump_rate)
    ir = np.float32(intro_rate)
    nc = np.float32(max(n_cells, 1))
    s11 = np.uint64(11)
    for p in range(n_paths):
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
            jump = jr * emitted / nc
            # cells without infected neighbours share one hazard (lr * 0 + jump) + ir
            t_far = uniform_threshold(np.float64(-np.expm1(-((lr * np.float32(0.0) + jump) + ir))))
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
            jump = jr * emitted / nc
            t_far = uniform_threshold(np.float64(-np.expm1(-((lr * np.float32(0.0) + jump) + ir))))
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
def parcel_year(years, pine_left, cell_infected, spatial, cell_possible, host_cell, host_idx, age, pest,
                hazard, pre, host_factor, forced_prob, has_forced, rows, keys, mortality, sanitation,
                pine_share, severity, outbreak_years):
    """Parcel infections and pine mortality of one year, in place, in one pass over (path, host).

    Equal to ``PineWilt.reference_step`` (numpy): a susceptible host ``q`` of path ``p``
    with stand age > 0 is a candidate if its cell is infected (``spatial``; else if
    ``cell_possible[q]``) or a forced probability applies; its infection probability is
    ``pre[q] * f`` (``f = host_factor[q] * pest[p, g] * hazard[p]``, ``pre`` = base probability,
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
    n = 0
    for p in range(n_paths):
        if cap - n < n_hosts:  # room for every host of this path (buffers are re-bound only here)
            cap = max(2 * cap, n + n_hosts)
            a = np.empty(cap, dtype=np.int64)
            a[:n] = out_p[:n]
            out_p = a
            b = np.empty(cap, dtype=np.int64)
            b[:n] = out_g[:n]
            out_g = b
            c = np.empty(cap, dtype=np.float64)
            c[:n] = out_l[:n]
            out_l = c
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
                    factor = host_factor[q] * np.float64(pest[p, g]) * hz
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
                m = mortality[q] * np.float64(pest[p, g]) * sv
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
    return out_p[:n].copy(), out_g[:n].copy(), out_l[:n].copy()
