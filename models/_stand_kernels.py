"""The stand simulator's yearly growth pass: compiled loops around numpy's SIMD ``exp``/``log``.

One year of growth needs, per (path, parcel), the parcel's keyed growth noise, an ``exp`` (the
Chapman-Richards step in relative-maturity space, or the bamboo logistic step) and for trees a
power ``u**c`` (volume from maturity). Scalar ``exp``/``pow`` cost 7-13 ns in compiled code, while
numpy's vectorised ``exp`` and ``log`` cost under 1 ns per element, so :func:`grow_year` works on
tiles of (path rows x parcel columns) small enough to stay in cache and alternates small compiled
passes (which do the branching, the keyed hashing and the group sums) with numpy's vectorised
transcendental functions:

1. :func:`_exponents` -- growth multiplier ``m`` (path shock x parcel noise, 0 for stands waiting
   for replanting) and the exponent ``-k m`` (tree rate or bamboo rate);
2. ``numpy.exp``;
3. :func:`_maturity` -- ``u' = 1 - (1 - u) exp(-k m)`` (formulas in :mod:`models.growth`);
4. ``numpy.log``, ``*= c``, ``numpy.exp`` -- ``u'**c`` as ``exp(c log u')``;
5. :func:`_finish` -- volume -> carbon (:mod:`models.carbon`), the bamboo step, background
   mortality's flux (reported, not taken off: the curves are net of it), and the weighted
   start-stock and gross-growth group sums.

The stands age after the year's perils (:func:`age_stands`), not in the growth pass: a peril sees the
age a stand had when the year began.

Steps 1, 3 and 5 are made of small passes over the rows of a tile, written so the compiler
vectorises them (zero-based loops over few arrays; see the note above :func:`_exponents`).

Every step is elementwise (numpy's SIMD ``exp``/``log`` give each element the same result
wherever it sits in the array), and group sums add each path row in ascending parcel order, so a
row's numbers do not depend on which other rows share the block or the chunk.
``tests/test_stand_kernels.py`` holds the pass to a plain-numpy composition of
:mod:`models.growth` and :mod:`models.carbon`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from models._kernels import keyed_unit, reserve_hits, switch_group

#: elements per tile. Each pass over a tile is a call that releases the GIL and takes it back, which
#: threads running chunks side by side contend for: 64k elements (scratch about 1.5 MB) give a loan's
#: 5,024-path chunk 4 tiles a year instead of 15, with no loss on one thread against 16k or 256k
#: (interleaved A/B; docs/performance.md)
TILE_ELEMENTS = 1 << 16


@nb.njit(cache=True, nogil=True, inline="always")
def _tree_carbon(v, slope, intercept, ramp, fang):
    """Carbon density (tC/ha) of volume ``v`` (m3/ha): ``slope*v`` (BEF) or Fang with its ramp."""
    if not fang:
        return v * slope
    if ramp > 0.0 and v < ramp:
        c = (slope * ramp + intercept) * (v / ramp)
    else:
        c = v * slope + intercept
    return c if c > 0.0 else 0.0


@dataclass(frozen=True)
class TreeGrowth:
    """Growth inputs of the tree parcels (the first ``n_tree`` parcels) for a block of paths.

    The asymptote of path ``i`` and parcel ``j`` is ``a_floor[j] + max(a_base[j] - a_floor[j], 0)
    a_mult[i, species[j]]`` (m3/ha): today's volume (``a_floor``, just above it) is observed, and the drawn
    mean-one multiplier scales the growth still to come, the curve's asymptote less today's volume. (Drawing
    the whole asymptote and raising a draw below today's volume to it censored the draws: a stand near its
    asymptote kept the draws above and lost the ones below, and its mean sink came out 2.9 times the curve's
    for a 60-year Chinese fir of site II. A young stand's asymptote is drawn almost as a whole, as before.)
    A stand replanted during the run (after a clear-fell or a stand-replacing loss: ``replanted[i, j]``)
    has nothing observed: its asymptote is ``a_base[j] a_mult[i, species[j]]``, the bare site's curve with
    the whole drawn multiplier. Its rate is ``k_base[j] k_mult[i, species[j]]`` (1/yr): the multipliers are
    drawn per path and species group, so the per-pair values are computed where they are used instead of
    being stored.
    """

    a_base: np.ndarray      # (n_tree,) m3/ha
    a_floor: np.ndarray     # (n_tree,) m3/ha
    k_base: np.ndarray      # (n_tree,) 1/yr
    species: np.ndarray     # (n_tree,) intp, column of a_mult / k_mult
    a_mult: np.ndarray      # (n_paths, n_species)
    k_mult: np.ndarray      # (n_paths, n_species)
    shape: np.ndarray       # (n_tree,) Chapman-Richards c
    slope: np.ndarray       # (n_tree,) tC per m3
    intercept: np.ndarray   # (n_tree,) tC/ha (Fang; 0 for BEF)
    ramp: float             # m3/ha (Fang)
    fang: bool

    def asymptote(self, replanted: np.ndarray | None = None) -> np.ndarray:
        """(n_paths, n_tree) asymptotes (m3/ha), as the kernels compute them; ``replanted`` (n_paths,
        n_tree) bool marks the stands replanted during the run (none when omitted)."""
        floor = self.a_floor[None, :] if replanted is None else np.where(replanted, 0.0, self.a_floor[None, :])
        gap = np.maximum(self.a_base[None, :] - floor, 0.0)
        return floor + gap * self.a_mult[:, self.species]


@nb.njit(cache=True, nogil=True, inline="always")
def _asym(i, j, a_base, a_floor, a_mult, species, replanted):
    """The path's Chapman-Richards asymptote (m3/ha): today's volume plus the drawn growth still to come,
    or the bare site's drawn curve once the stand was replanted (:class:`TreeGrowth`)."""
    f = 0.0 if replanted[i, j] else a_floor[j]
    g = a_base[j] - f
    return f + (g if g > 0.0 else 0.0) * a_mult[i, species[j]]


# The passes below loop over zero-based slices of one row (``for j in range(x.size)``), never
# over ``range(j0, j1)``: numba wraps negative indices, and an index the compiler cannot prove
# non-negative turns each access into a select that keeps the loop scalar (3-4x slower here).
# Each loop also touches few arrays: a loop that writes several arrays and reads many needs more
# run-time overlap checks than the compiler will emit. Each pass walks all the rows of a tile, so
# a portfolio of a few parcels (one loan: short rows, many of them) pays one call per tile.

@nb.njit(cache=True, nogil=True)
def _exponents(r0, r1, j0, j1, age, m_path, noise_rows, keys, noise_scale, noise_offset,
               k_base, k_mult, species, bamboo_rate, e, m_out):
    """``m`` and ``e = -k m`` on a tile: trees use ``k_base[j] k_mult[i, species[j]]``, bamboo ``bamboo_rate``.

    ``m`` is the path multiplier times the keyed parcel noise, 0 for a stand waiting for
    replanting (a select); bamboo keeps ``m`` in ``m_out`` for the management drift. The trees'
    look-up of their species' rate multiplier is a loop of its own (a gather in the hashing loop
    keeps it scalar).
    """
    jt = min(max(j0, k_base.size), j1)  # tree columns j0..jt-1, bamboo jt..j1-1
    n_tree, width = jt - j0, j1 - j0
    kb, sp, ks = k_base[j0:jt], species[j0:jt], keys[j0:j1]
    with_noise = noise_rows.size > 0
    for i in range(r0, r1):
        b = i - r0
        r = noise_rows[i] if with_noise else np.uint64(0)
        mp = m_path[i]
        out, ag = e[b, :width], age[i, j0:j1]
        for j in range(width):
            m = (keyed_unit(r, ks[j]) * noise_scale + noise_offset) * mp if with_noise else mp
            out[j] = 0.0 if ag[j] < 0.0 else m
        et, km = e[b, :n_tree], k_mult[i]
        for j in range(n_tree):
            et[j] = -((kb[j] * km[sp[j]]) * et[j])
        eb, mb = e[b, n_tree:width], m_out[b, n_tree:width]
        for j in range(width - n_tree):
            mb[j] = eb[j]
            eb[j] = -(bamboo_rate * eb[j])


@nb.njit(cache=True, nogil=True)
def _scale_columns(x, c):
    """``x[b, j] *= c[j]`` (the Chapman-Richards shape times ``log u``), row by row."""
    for b in range(x.shape[0]):
        xr = x[b]
        for j in range(xr.size):
            xr[j] *= c[j]


@nb.njit(cache=True, nogil=True)
def _maturity(r0, r1, j0, jt, u, e):
    """``u' = 1 - (1 - u) e`` for the tree parcels ``j0..jt-1`` of a tile, in place."""
    for i in range(r0, r1):
        ur, er = u[i, j0:jt], e[i - r0, :jt - j0]
        for j in range(ur.size):
            ur[j] = 1.0 - (1.0 - ur[j]) * er[j]


@nb.njit(cache=True, nogil=True)
def _grow_trees_wide(r0, r1, j0, jt, carbon, replanted, a_base, a_floor, a_mult, species, u_pow, c0, c1,
                     slope, intercept, ramp, fang, keep, with_mortality):
    """:func:`_grow_trees` on wide rows: each row's arrays taken as views (they vectorise best)."""
    n = jt - j0
    ab, af, sp = a_base[j0:jt], a_floor[j0:jt], species[j0:jt]
    sl, ic = slope[j0:jt], intercept[j0:jt]
    for i in range(r0, r1):
        b = i - r0
        g1, g2, up, am, rp = c1[b, :n], c0[b, :n], u_pow[b, :n], a_mult[i], replanted[i, j0:jt]
        for j in range(n):
            # the drawn asymptote: today's volume and the drawn growth to come, or a replant's whole curve
            f = 0.0 if rp[j] else af[j]
            g = ab[j] - f
            g1[j] = f + (g if g > 0.0 else 0.0) * am[sp[j]]  # (a gather)
        # the curve's carbon into g2 (the new stock), gross growth's end point into g1
        if fang and with_mortality:
            for j in range(n):
                v1 = g1[j] * up[j]
                c = _tree_carbon(v1, sl[j], ic[j], ramp, True)
                g2[j] = c
                g1[j] = c + (c - _tree_carbon(v1 * keep, sl[j], ic[j], ramp, True))
        else:
            for j in range(n):
                g2[j] = _tree_carbon(g1[j] * up[j], sl[j], ic[j], ramp, fang)
            if with_mortality:
                for j in range(n):
                    g1[j] = g2[j] + g2[j] * (1.0 - keep)  # BEF carbon is proportional to volume
            else:
                for j in range(n):
                    g1[j] = g2[j]
        cr = carbon[i, j0:jt]
        for j in range(n):  # new carbon in, start carbon out
            t = cr[j]
            cr[j] = g2[j]
            g2[j] = t


@nb.njit(cache=True, nogil=True)
def _grow_trees_narrow(r0, r1, j0, jt, carbon, replanted, a_base, a_floor, a_mult, species, u_pow, c0, c1,
                       slope, intercept, ramp, fang, keep, with_mortality):
    """:func:`_grow_trees_wide` for short rows (a loan's few parcels): the same arithmetic in the same
    order, indexing the tile's 2-D views instead of taking a view of each row, whose reference
    counting in this branching body costs more than a short row's arithmetic (45 ns a row); on
    wide rows the row views vectorise better (15 % faster on the 5,000-parcel demo).
    """
    n = jt - j0
    ab, af, sp = a_base[j0:jt], a_floor[j0:jt], species[j0:jt]
    sl, ic = slope[j0:jt], intercept[j0:jt]
    cr = carbon[:, j0:jt]
    for i in range(r0, r1):
        b = i - r0
        for j in range(n):
            # the drawn asymptote: today's volume and the drawn growth to come, or a replant's whole curve
            f = 0.0 if replanted[i, j0 + j] else af[j]
            g = ab[j] - f
            c1[b, j] = f + (g if g > 0.0 else 0.0) * a_mult[i, sp[j]]
        # the curve's carbon into c0 (the new stock), gross growth's end point into c1
        if fang and with_mortality:
            for j in range(n):
                v1 = c1[b, j] * u_pow[b, j]
                c = _tree_carbon(v1, sl[j], ic[j], ramp, True)
                c0[b, j] = c
                c1[b, j] = c + (c - _tree_carbon(v1 * keep, sl[j], ic[j], ramp, True))
        else:
            for j in range(n):
                c0[b, j] = _tree_carbon(c1[b, j] * u_pow[b, j], sl[j], ic[j], ramp, fang)
            if with_mortality:
                for j in range(n):
                    c1[b, j] = c0[b, j] + c0[b, j] * (1.0 - keep)  # BEF carbon is proportional to volume
            else:
                for j in range(n):
                    c1[b, j] = c0[b, j]
        for j in range(n):  # new carbon in, start carbon out
            t = cr[i, j]
            cr[i, j] = c0[b, j]
            c0[b, j] = t


#: tree columns below which a tile's rows take the indexed pass (:func:`_grow_trees_narrow`)
NARROW_ROW = 100


@nb.njit(cache=True, nogil=True)
def _grow_trees(r0, r1, j0, jt, carbon, replanted, a_base, a_floor, a_mult, species, u_pow, c0, c1,
                slope, intercept, ramp, fang, keep, with_mortality):
    """Trees of a tile: volume ``A u^c`` -> carbon (:mod:`models.carbon`), and background mortality's flux.

    On exit ``carbon`` holds the curve's carbon, ``c0`` the start carbon and ``c1`` the end point of
    gross growth: the curve's carbon plus the background mortality flux, the carbon of the share
    ``1 - keep`` of the volume that died during the year. The yield curves give standing (surviving)
    volume, so the mortality is already inside them: it is reported, not taken off the stand again
    (:mod:`models.growth`). Two passes with the same arithmetic, chosen by the row width.
    """
    if jt - j0 < NARROW_ROW:
        _grow_trees_narrow(r0, r1, j0, jt, carbon, replanted, a_base, a_floor, a_mult, species, u_pow, c0, c1,
                           slope, intercept, ramp, fang, keep, with_mortality)
    else:
        _grow_trees_wide(r0, r1, j0, jt, carbon, replanted, a_base, a_floor, a_mult, species, u_pow, c0, c1,
                         slope, intercept, ramp, fang, keep, with_mortality)


@nb.njit(cache=True, nogil=True)
def _grow_bamboo(r0, r1, j0, jt, j1, n_tree, carbon, age, c0, c1, managed_now, bamboo_ceiling, bamboo_drift,
                 establishment, keep, with_mortality):
    """Bamboo of a tile: logistic recovery toward the managed level plus the drift, capped.

    On entry ``c0`` holds ``exp(-rate m)`` and ``c1`` the multiplier ``m``; on exit they hold the
    start carbon and the end point of gross growth (the new carbon plus background mortality's flux,
    which the managed level and the drift, measured net, already include), and ``carbon`` the new carbon.
    """
    n, off = j1 - jt, jt - j0
    mn, cl = managed_now[jt - n_tree:j1 - n_tree], bamboo_ceiling[jt - n_tree:j1 - n_tree]
    for i in range(r0, r1):
        b = i - r0
        cr, ag, e, m = carbon[i, jt:j1], age[i, jt:j1], c0[b, off:off + n], c1[b, off:off + n]
        for j in range(n):
            start = cr[j]
            bc = start if start > establishment else establishment
            cc = bc if bc > 1e-9 else 1e-9
            mm = mn[j]
            grown = mm / (1.0 + (mm / cc - 1.0) * e[j])
            bc = grown + bamboo_drift * m[j]
            if bc > cl[j]:
                bc = cl[j]
            if ag[j] < 0.0:
                bc = 0.0
            e[j] = start
            m[j] = bc + bc * (1.0 - keep) if with_mortality else bc
            cr[j] = bc


@nb.njit(cache=True, nogil=True)
def age_stands(age):
    """Every stand ages a year, in place: ``age += 1`` (float32, numpy's numbers).

    The simulator calls it at the end of a year's perils, so growth and every peril of a year see
    the stand's age at the start of the year (the portfolio's age in year 0), and a clear-fell
    compares the age the stand has reached at the year's end with its rotation age.
    """
    one32 = np.float32(1.0)
    for i in range(age.shape[0]):
        ag = age[i]
        for j in range(ag.size):
            ag[j] += one32


@nb.njit(cache=True, nogil=True)
def _sums(r0, r1, j0, j1, c0, c1, group, weight, stock_sums, growth_sums):
    """``stock_sums[i, group[j]] += weight[j] c0``, ``growth_sums[...] += weight[j] (c1 - c0)`` in parcel order.

    The running sums of the current group stay in registers while its parcels are adjacent: the
    same additions in the same order, without a store and reload per parcel.
    """
    gr, wt = group[j0:j1], weight[j0:j1]
    n = j1 - j0
    if n == 0:
        return
    for i in range(r0, r1):
        b = i - r0
        s0, s1, ss, gs = c0[b, :n], c1[b, :n], stock_sums[i], growth_sums[i]
        cur = gr[0]
        s_acc = ss[cur]
        g_acc = gs[cur]
        for j in range(n):
            g = gr[j]
            if g != cur:
                s_acc, g_acc = switch_group(stock_sums, growth_sums, i, cur, g, s_acc, g_acc)
                cur = g
            s_acc += wt[j] * s0[j]
            g_acc += wt[j] * (s1[j] - s0[j])
        ss[cur] = s_acc
        gs[cur] = g_acc


@nb.njit(cache=True, nogil=True)
def _dense(r0, r1, j0, j1, c0, c1, carbon, growth_out, mortality_out):
    """Growth ``c1 - c0`` and background mortality ``c1 - carbon`` per pair."""
    n = j1 - j0
    for i in range(r0, r1):
        b = i - r0
        s0, s1, cr, go, mo = c0[b, :n], c1[b, :n], carbon[i, j0:j1], growth_out[i, j0:j1], mortality_out[i, j0:j1]
        for j in range(n):
            go[j] = s1[j] - s0[j]
            mo[j] = s1[j] - cr[j]


@nb.njit(cache=True, nogil=True)
def _finish(r0, r1, j0, j1, carbon, u, age, replanted, a_base, a_floor, a_mult, species, u_pow, e, m,
            slope, intercept, ramp, fang, managed_now, bamboo_ceiling, bamboo_drift, establishment, keep,
            with_mortality, group, weight, stock_sums, growth_sums, with_sums, growth_out, mortality_out, with_dense):
    """The new carbon, and sums or dense outputs.

    The start carbon ``c0`` and the end point of gross growth ``c1`` (new carbon plus background
    mortality's flux) of each pair are kept in ``e`` and ``m``, which are spent once the new carbon is
    known, for the sums and dense outputs.
    """
    nt = u.shape[1]
    jt = min(max(j0, nt), j1)  # tree columns j0..jt-1, bamboo jt..j1-1
    if jt > j0:
        _grow_trees(r0, r1, j0, jt, carbon, replanted, a_base, a_floor, a_mult, species, u_pow, e, m, slope,
                    intercept, ramp, fang, keep, with_mortality)
    if j1 > jt:
        _grow_bamboo(r0, r1, j0, jt, j1, nt, carbon, age, e, m, managed_now, bamboo_ceiling, bamboo_drift,
                     establishment, keep, with_mortality)
    if with_sums:
        _sums(r0, r1, j0, j1, e, m, group, weight, stock_sums, growth_sums)
    if with_dense:
        _dense(r0, r1, j0, j1, e, m, carbon, growth_out, mortality_out)


def grow_year(carbon, u, age, replanted, tree, noise_rows, keys, noise_scale, noise_offset, m_path, bamboo,
              keep, sums, dense):
    """One year of growth for a block of paths, in place, with background mortality's flux.

    The stand follows its yield curve (standing volume, net of the trees that die) or the bamboo
    model (net); gross growth is that net change plus background mortality, which is reported as a
    flux (``1 - keep`` of the end stock) and not taken off the stand a second time.

    Parameters
    ----------
    carbon : (n_paths, n_parcels) float64, tC/ha
        Stand carbon at the start of the year; left at its value at the end of the year.
    u : (n_paths, n_tree) float64
        Relative maturity of the tree parcels (the first ``n_tree`` parcels), in place.
    age : (n_paths, n_parcels) float32, years
        Stand age at the start of the year (negative while a destroyed stand waits for replanting: no
        growth); read only (the simulator ages the stands after the year's perils, :func:`age_stands`).
    replanted : (n_paths, n_tree) bool
        The tree stands replanted during the run (:class:`TreeGrowth`: their asymptote is the bare
        site's drawn curve); read only.
    tree : TreeGrowth
        Per-parcel curves and per-path parameter multipliers of the tree parcels.
    noise_rows : (n_paths,) uint64 or empty
        Keyed row hashes of the parcel-noise stream this year (empty: no parcel noise).
    keys : (n_parcels,) uint64
        Parcel keys. ``multiplier = (uniform * noise_scale + noise_offset) * m_path``.
    m_path : (n_paths,) float64
        Path-wide growth multiplier (climate-year shock x scenario growth factor).
    bamboo : tuple
        ``(managed_now, ceiling, rate, drift, establishment)``: this year's managed level and the
        ceiling of each bamboo parcel (tC/ha), recovery rate (1/yr), management drift (tC/ha/yr)
        and establishment stock (tC/ha).
    keep : float
        ``1 -`` the background mortality rate (1/yr): the flux is ``1 - keep`` of the end stock's
        volume; 1 reports none.
    sums : tuple or None
        ``(group, weight, stock_sums, growth_sums)``: ``stock_sums[i, group[j]] += weight[j] *
        carbon_start[i, j]`` and the same for gross growth, in ascending parcel order per row.
    dense : tuple or None
        ``(growth_out, mortality_out)``: gross growth and background mortality per pair (tC/ha).
    """
    n_paths, n = carbon.shape
    nt = u.shape[1]
    cols = min(n, TILE_ELEMENTS) if n else 1
    rows = max(1, TILE_ELEMENTS // max(n, 1))
    # scratch: each tile takes a C-contiguous (tile rows x tile columns) view from the front of a flat
    # buffer, so numpy's exp/log see one contiguous run (a narrow 2-D view costs a call per row: a
    # loan's tiles are hundreds of rows of 50 parcels)
    size = min(rows, n_paths) * cols
    e_buf, m_buf, pow_buf = np.empty(size), np.empty(size), np.empty(size)
    empty = np.empty((0, 0))
    group, weight, ss, gs = sums if sums is not None else (np.empty(0, np.intp), np.empty(0), empty, empty)
    go, mo = dense if dense is not None else (empty, empty)
    if sums is not None:
        ss[:] = 0.0
        gs[:] = 0.0
    managed_now, ceiling, b_rate, b_drift, establishment = bamboo
    with np.errstate(divide="ignore"):  # log(0) = -inf for destroyed stands: exp(c * -inf) = 0
        for r0 in range(0, n_paths, rows):
            r1 = min(n_paths, r0 + rows)
            for j0 in range(0, n, cols):
                j1 = min(n, j0 + cols)
                shape = (r1 - r0, j1 - j0)
                eb = e_buf[:shape[0] * shape[1]].reshape(shape)
                mb = m_buf[:shape[0] * shape[1]].reshape(shape)
                _exponents(r0, r1, j0, j1, age, m_path, noise_rows, keys, noise_scale, noise_offset,
                           tree.k_base, tree.k_mult, tree.species, b_rate, eb, mb)
                np.exp(eb, out=eb)
                jt = min(j1, nt)
                pt = pow_buf[:shape[0] * max(jt - j0, 0)].reshape(shape[0], max(jt - j0, 0))
                if jt > j0:
                    _maturity(r0, r1, j0, jt, u, eb)
                    np.log(u[r0:r1, j0:jt], out=pt)
                    _scale_columns(pt, tree.shape[j0:jt])
                    np.exp(pt, out=pt)
                _finish(r0, r1, j0, j1, carbon, u, age, replanted, tree.a_base, tree.a_floor, tree.a_mult,
                        tree.species, pt, eb, mb, tree.slope, tree.intercept, tree.ramp, tree.fang, managed_now,
                        ceiling, b_drift, establishment, keep, keep < 1.0, group, weight, ss, gs, sums is not None,
                        go, mo, dense is not None)


@nb.njit(cache=True, nogil=True, inline="always")
def _fang_volume(c, slope, intercept, ramp):
    """The volume (m3/ha) whose Fang carbon (:func:`_tree_carbon`, with its ramp) is ``c`` tC/ha.

    Fang's carbon is continuous and rises with the volume: ``ramp c / c_ramp`` below the carbon
    ``c_ramp = slope ramp + intercept`` of the ramp's end, ``(c - intercept) / slope`` above it. A
    carbon no volume gives (at most 0, or below a positive intercept when there is no ramp) gives 0.
    """
    if not c > 0.0:
        return 0.0
    if ramp > 0.0:
        c_ramp = slope * ramp + intercept
        if c < c_ramp:
            return ramp * (c / c_ramp)
    v = (c - intercept) / slope
    return v if v > 0.0 else 0.0


@nb.njit(cache=True, nogil=True)
def _apply_losses(carbon, u, age, replanted, a_base, a_floor, a_mult, species, shape, slope, intercept, ramp, fang,
                  path_pos, parcel_pos, keep, keep_pow, stand_replacing, replant_age, lost_out):
    nt = u.shape[1]
    for k in range(path_pos.size):
        i = path_pos[k]
        j = parcel_pos[k]
        before = carbon[i, j]
        if j < nt:
            if fang:
                # the peril's fraction is of the carbon: keep (1 - f) of it and fall back to the
                # maturity of the volume that holds it (Fang's intercept makes that share of the
                # volume smaller than 1 - f); a carbon below that of zero volume cannot be kept
                after = before * keep[k]
                at_zero = _tree_carbon(0.0, slope[j], intercept[j], ramp, True)
                if after <= at_zero:
                    after = at_zero
                    uu = 0.0
                else:
                    v = _fang_volume(after, slope[j], intercept[j], ramp)
                    uu = (v / _asym(i, j, a_base, a_floor, a_mult, species, replanted)) ** (1.0 / shape[j])
                    if uu > u[i, j]:  # rounding: a loss never raises the maturity
                        uu = u[i, j]
            else:
                uu = u[i, j] * keep_pow[k]
                after = before * keep[k]  # BEF carbon is proportional to volume
            if stand_replacing[k]:
                uu = 0.0
                after = _tree_carbon(0.0, slope[j], intercept[j], ramp, fang)
                replanted[i, j] = True
            u[i, j] = uu
        else:
            after = 0.0 if stand_replacing[k] else before * keep[k]
        if stand_replacing[k]:
            age[i, j] = replant_age
        carbon[i, j] = after
        lost_out[k] = before - after


@nb.njit(cache=True, nogil=True)
def _loss_shares(loss_fraction, keep, neg_fraction):
    """With ``f = clip(loss, 0, 1)`` (NaN stays NaN): ``keep = 1 - f`` and ``-f`` (which then takes
    numpy's ``log1p``). Exact operations, so these are numpy's numbers."""
    for k in range(loss_fraction.size):
        f = loss_fraction[k]
        f = 0.0 if f < 0.0 else (1.0 if f > 1.0 else f)
        keep[k] = 1.0 - f
        neg_fraction[k] = -f


@nb.njit(cache=True, nogil=True)
def _divide_by_shape(keep_pow, parcel_pos, shape):
    """``keep_pow /= shape[min(q, n_tree - 1)]``: the tree parcels' Chapman-Richards ``c`` (a bamboo
    row is divided by the last tree's, as numpy's gather did, and never used); an exact division."""
    last = shape.size - 1
    for k in range(keep_pow.size):
        q = parcel_pos[k]
        keep_pow[k] = keep_pow[k] / shape[q if q < last else last]


def apply_losses(carbon, u, age, replanted, tree, path_pos, parcel_pos, loss_fraction, stand_replacing, replant_age):
    """Apply one peril's sparse losses to the stand state, in place; return the carbon lost (tC/ha).

    A peril's ``f`` is the share of the parcel's current carbon it destroys
    (:class:`models.perils.base.PerilLosses`), so every stand keeps ``s = 1 - f`` of its carbon. A tree
    stand falls back in maturity to the volume that holds it: under BEF, whose carbon is proportional
    to volume, ``s`` of its volume, ``u -> u s^(1/c)`` (its volume ``A u^c`` becomes ``s`` times as
    large; ``s^(1/c)`` by numpy's vectorised ``exp(log1p(-f) / c)``); under Fang the volume whose
    carbon ``a V + b`` (with the ramp below ``ramp`` m3/ha) is ``s`` times the carbon before, ``u ->
    (V / A)^(1/c)`` -- with the intercept a smaller share of the volume than ``s``, and removing ``f``
    of the volume instead would take 10-15 % less carbon than the peril said (a carbon below that
    of zero volume, possible only without a ramp, stops there). A bamboo stand keeps ``s`` of its
    carbon. A stand-replacing loss then restarts the stand: age ``replant_age`` (the simulator passes
    minus the replanting delay, less the year the stands age at the end of this one), maturity 0
    (trees: the carbon of zero volume, and ``replanted`` set: the seedlings grow toward the bare site's
    drawn curve, :class:`TreeGrowth`), or no carbon (bamboo, which regrows from its rhizomes).
    """
    pp = np.ascontiguousarray(path_pos, dtype=np.int64)
    qq = np.ascontiguousarray(parcel_pos, dtype=np.int64)
    m = pp.size
    keep, keep_pow = np.empty(m), np.empty(m)
    nt = u.shape[1]
    # the exact steps compiled (clip, 1 - f, the division by c); numpy's own log1p and exp between them
    _loss_shares(np.ascontiguousarray(loss_fraction, dtype=np.float64), keep, keep_pow)
    with np.errstate(divide="ignore"):  # f = 1: log1p(-1) = -inf, keep_pow = 0
        np.log1p(keep_pow, out=keep_pow)
        if nt:
            _divide_by_shape(keep_pow, qq, np.ascontiguousarray(tree.shape[:nt], dtype=np.float64))
        np.exp(keep_pow, out=keep_pow)
    lost = np.empty(m)
    _apply_losses(carbon, u, age, replanted, tree.a_base, tree.a_floor, tree.a_mult, tree.species, tree.shape,
                  tree.slope, tree.intercept, tree.ramp, tree.fang, pp, qq, keep, keep_pow,
                  np.ascontiguousarray(stand_replacing, dtype=np.bool_), replant_age, lost)
    return lost


@nb.njit(cache=True, nogil=True)
def _clear_fell_rows(i0, age, rotation_age, carbon, u, replanted, carbon_at_zero, out_p, out_q, out_r, k):
    """:func:`clear_fell`'s rows from ``i0``; stops before a row whose due stands would not fit (the
    outputs are never re-bound, and rows are indexed, not viewed, inside the loop: either costs
    reference counting on every row). Returns (the row to resume at, or ``n_paths``; the count)."""
    n_paths = age.shape[0]
    n = rotation_age.size
    zero32 = np.float32(0.0)
    for i in range(i0, n_paths):
        c = 0
        for j in range(n):
            c += age[i, j] >= rotation_age[j]
        if c == 0:
            continue
        if k + c > out_p.size:
            return i, k
        for j in range(n):
            if age[i, j] >= rotation_age[j]:
                out_p[k] = i
                out_q[k] = j
                out_r[k] = carbon[i, j] - carbon_at_zero[j]
                carbon[i, j] = carbon_at_zero[j]
                u[i, j] = 0.0
                replanted[i, j] = True
                age[i, j] = zero32
                k += 1
    return n_paths, k


@nb.njit(cache=True, nogil=True)
def clear_fell(age, rotation_age, carbon, u, replanted, carbon_at_zero):
    """Clear-fell every tree stand at or past its rotation age and replant it at once, in place.

    Due pairs are ``np.nonzero(age[:, :n] >= rotation_age)`` (``n = rotation_age.size``; float32
    ``rotation_age`` is ``inf`` where a parcel is never clear-felled, compared in float32 as numpy
    does). Each due stand restarts: carbon ``carbon_at_zero[j]`` (the carbon of zero volume), maturity 0,
    age 0, ``replanted`` set (:class:`TreeGrowth`). Returns ``(path, parcel, removed)`` in row-major
    order, ``removed = carbon before - carbon_at_zero`` (tC/ha). Each row is first counted in a
    vectorised pass; only a row with a due stand is walked again, so no (paths x parcels) mask is built.
    """
    out_p = np.empty(64, dtype=np.int64)
    out_q = np.empty(64, dtype=np.int64)
    out_r = np.empty(64, dtype=np.float64)
    i, k = 0, 0
    while True:
        i, k = _clear_fell_rows(i, age, rotation_age, carbon, u, replanted, carbon_at_zero, out_p, out_q, out_r, k)
        if i >= age.shape[0]:
            return out_p[:k], out_q[:k], out_r[:k]
        out_p, out_q, out_r = reserve_hits(out_p, out_q, out_r, k, rotation_age.size)
