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
   mortality, ageing, cascade multipliers, and the weighted start-stock and growth group sums.

Every step is elementwise (numpy's SIMD ``exp``/``log`` give each element the same result
wherever it sits in the array), and group sums add each path row in ascending parcel order, so a
row's numbers do not depend on which other rows share the block or the chunk.
``tests/test_growth_kernel.py`` holds the pass to a plain-numpy composition of
:mod:`models.growth` and :mod:`models.carbon`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from models._kernels import keyed_unit

#: elements per tile (the tile's state and scratch buffers, ~0.5 MB, stay in the L2 cache)
TILE_ELEMENTS = 1 << 14


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

    The asymptote of path ``i`` and parcel ``j`` is ``max(a_base[j] a_mult[i, species[j]],
    a_floor[j])`` (m3/ha; the floor keeps a drawn asymptote above today's measured volume) and its
    rate ``k_base[j] k_mult[i, species[j]]`` (1/yr): the multipliers are drawn per path and species
    group, so the per-pair values are computed where they are used instead of being stored.
    """

    a_base: np.ndarray      # (n_tree,) m3/ha
    a_floor: np.ndarray     # (n_tree,) m3/ha
    k_base: np.ndarray      # (n_tree,) 1/yr
    species: np.ndarray     # (n_tree,) intp, column of a_mult / k_mult
    a_mult: np.ndarray      # (n_paths, n_species)
    k_mult: np.ndarray      # (n_paths, n_species)
    shape: np.ndarray       # (n_tree,) Chapman-Richards c
    keep_pow: np.ndarray    # (n_tree,) keep ** (1/c): maturity kept by background mortality
    slope: np.ndarray       # (n_tree,) tC per m3
    intercept: np.ndarray   # (n_tree,) tC/ha (Fang; 0 for BEF)
    ramp: float             # m3/ha (Fang)
    fang: bool

    def asymptote(self) -> np.ndarray:
        """(n_paths, n_tree) asymptotes (m3/ha), as the kernels compute them."""
        return np.maximum(self.a_base[None, :] * self.a_mult[:, self.species], self.a_floor[None, :])


@nb.njit(cache=True, nogil=True, inline="always")
def _asym(i, j, a_base, a_floor, a_mult, species):
    """The path's Chapman-Richards asymptote (m3/ha): drawn multiplier, never below today's volume."""
    a = a_base[j] * a_mult[i, species[j]]
    return a if a >= a_floor[j] else a_floor[j]


@nb.njit(cache=True, nogil=True)
def _exponents(r0, r1, j0, j1, age, m_path, noise_rows, keys, noise_scale, noise_offset,
               k_base, k_mult, species, bamboo_rate, e, m_out):
    """``m`` and ``e = -k m`` on a tile: trees use ``k_base[j] k_mult[i, species[j]]``, bamboo ``bamboo_rate``."""
    nt = k_base.size
    with_noise = noise_rows.size > 0
    for i in range(r0, r1):
        b = i - r0
        mp = m_path[i]
        r = noise_rows[i] if with_noise else np.uint64(0)
        for j in range(j0, j1):
            if age[i, j] < 0.0:
                m = 0.0  # a destroyed stand waiting for replanting does not grow
            elif with_noise:
                m = (keyed_unit(r, keys[j]) * noise_scale + noise_offset) * mp
            else:
                m = mp
            if j < nt:
                e[b, j - j0] = -((k_base[j] * k_mult[i, species[j]]) * m)
            else:
                m_out[b, j - j0] = m  # the bamboo drift needs the multiplier itself
                e[b, j - j0] = -(bamboo_rate * m)


@nb.njit(cache=True, nogil=True)
def _maturity(r0, r1, j0, jt, u, e):
    """``u' = 1 - (1 - u) e`` for the tree parcels ``j0..jt-1`` of a tile, in place."""
    for i in range(r0, r1):
        b = i - r0
        for j in range(j0, jt):
            u[i, j] = 1.0 - (1.0 - u[i, j]) * e[b, j - j0]


@nb.njit(cache=True, nogil=True)
def _finish(r0, r1, j0, j1, carbon, u, age, a_base, a_floor, a_mult, species, u_pow, e, m, keep_pow,
            slope, intercept, ramp, fang, managed_now, bamboo_ceiling, bamboo_drift, establishment, keep,
            with_mortality, cascade_until, year, fire_value, pest_value, fire_mult, pest_mult, with_cascades,
            group, weight, stock_sums, growth_sums, with_sums, growth_out, mortality_out, with_dense):
    nt = u.shape[1]
    one32 = np.float32(1.0)
    for i in range(r0, r1):
        b = i - r0
        for j in range(j0, j1):
            c0 = carbon[i, j]
            a = age[i, j]
            if j < nt:
                v1 = _asym(i, j, a_base, a_floor, a_mult, species) * u_pow[b, j - j0]
                c1 = _tree_carbon(v1, slope[j], intercept[j], ramp, fang)
                c2 = c1
                if with_mortality:
                    # mortality keeps a share `keep` of the volume: u -> u keep^(1/c), V -> V keep
                    u[i, j] *= keep_pow[j]
                    c2 = _tree_carbon(v1 * keep, slope[j], intercept[j], ramp, fang) if fang else c1 * keep
            else:
                k = j - nt
                # bamboo: logistic recovery toward the managed level plus the drift, capped
                bc = c0 if c0 > establishment else establishment
                cc = bc if bc > 1e-9 else 1e-9
                mm = managed_now[k]
                grown = mm / (1.0 + (mm / cc - 1.0) * e[b, j - j0])
                bc = grown + bamboo_drift * m[b, j - j0]
                if bc > bamboo_ceiling[k]:
                    bc = bamboo_ceiling[k]
                if a < 0.0:
                    bc = 0.0
                c1 = bc
                c2 = c1 * keep if with_mortality else c1
            carbon[i, j] = c2
            age[i, j] = a + one32
            # multipliers start at 1; only pairs that ever cascaded (until >= 0) need rewriting
            if with_cascades and cascade_until[i, j] >= 0:
                if cascade_until[i, j] >= year:
                    fire_mult[i, j] = fire_value
                    pest_mult[i, j] = pest_value
                else:
                    fire_mult[i, j] = one32
                    pest_mult[i, j] = one32
            if with_sums:
                g = group[j]
                stock_sums[i, g] += weight[j] * c0
                growth_sums[i, g] += weight[j] * (c1 - c0)
            if with_dense:
                growth_out[i, j] = c1 - c0
                mortality_out[i, j] = c1 - c2


def grow_year(carbon, u, age, tree, noise_rows, keys, noise_scale, noise_offset, m_path, bamboo,
              keep, cascades, year, sums, dense):
    """One year of growth and background mortality for a block of paths, in place.

    Parameters
    ----------
    carbon : (n_paths, n_parcels) float64, tC/ha
        Stand carbon at the start of the year; left at its value after growth and mortality.
    u : (n_paths, n_tree) float64
        Relative maturity of the tree parcels (the first ``n_tree`` parcels), in place.
    age : (n_paths, n_parcels) float32, years
        Stand age (negative while a destroyed stand waits for replanting: no growth); +1.
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
        Share of the stock kept by background mortality (``1 - rate``); 1 for none.
    cascades : tuple or None
        ``(cascade_until, fire_value, pest_value, fire_mult, pest_mult)``: pairs with
        ``cascade_until >= year`` get the fire and pest multipliers.
    sums : tuple or None
        ``(group, weight, stock_sums, growth_sums)``: ``stock_sums[i, group[j]] += weight[j] *
        carbon_start[i, j]`` and the same for growth, in ascending parcel order per row.
    dense : tuple or None
        ``(growth_out, mortality_out)``: growth and background mortality per pair (tC/ha).
    """
    n_paths, n = carbon.shape
    nt = u.shape[1]
    cols = min(n, TILE_ELEMENTS) if n else 1
    rows = max(1, TILE_ELEMENTS // max(n, 1))
    e = np.empty((min(rows, n_paths), cols))
    m = np.empty_like(e)
    u_pow = np.empty_like(e)
    f32 = np.empty((0, 0), dtype=np.float32)
    cu, fv, pv, fm, pm = cascades if cascades is not None else (np.empty((0, 0), np.int16), np.float32(1),
                                                                 np.float32(1), f32, f32)
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
                eb, mb, pb = e[:r1 - r0, :j1 - j0], m[:r1 - r0, :j1 - j0], u_pow[:r1 - r0, :j1 - j0]
                _exponents(r0, r1, j0, j1, age, m_path, noise_rows, keys, noise_scale, noise_offset,
                           tree.k_base, tree.k_mult, tree.species, b_rate, eb, mb)
                np.exp(eb, out=eb)
                jt = min(j1, nt)
                if jt > j0:
                    _maturity(r0, r1, j0, jt, u, eb)
                    pt = pb[:, :jt - j0]
                    np.log(u[r0:r1, j0:jt], out=pt)
                    pt *= tree.shape[j0:jt]
                    np.exp(pt, out=pt)
                _finish(r0, r1, j0, j1, carbon, u, age, tree.a_base, tree.a_floor, tree.a_mult, tree.species, pb,
                        eb, mb, tree.keep_pow, tree.slope, tree.intercept, tree.ramp, tree.fang, managed_now,
                        ceiling, b_drift, establishment, keep, keep < 1.0, cu, year, fv, pv, fm, pm,
                        cascades is not None, group, weight, ss, gs, sums is not None, go, mo, dense is not None)


@nb.njit(cache=True, nogil=True)
def _apply_losses(carbon, u, age, a_base, a_floor, a_mult, species, shape, slope, intercept, ramp, fang,
                  path_pos, parcel_pos, keep, keep_pow, stand_replacing, replant_age, lost_out):
    nt = u.shape[1]
    for k in range(path_pos.size):
        i = path_pos[k]
        j = parcel_pos[k]
        before = carbon[i, j]
        if j < nt:
            uu = u[i, j] * keep_pow[k]
            if fang:
                v = _asym(i, j, a_base, a_floor, a_mult, species) * uu ** shape[j]
                after = _tree_carbon(v, slope[j], intercept[j], ramp, fang)
            else:
                after = before * keep[k]  # BEF carbon is proportional to volume
            if stand_replacing[k]:
                uu = 0.0
                after = _tree_carbon(0.0, slope[j], intercept[j], ramp, fang)
            u[i, j] = uu
        else:
            after = 0.0 if stand_replacing[k] else before * keep[k]
        if stand_replacing[k]:
            age[i, j] = replant_age
        carbon[i, j] = after
        lost_out[k] = before - after


def apply_losses(carbon, u, age, tree, path_pos, parcel_pos, loss_fraction, stand_replacing, replant_age):
    """Apply one peril's sparse losses to the stand state, in place; return the carbon lost (tC/ha).

    A tree stand keeping a share ``s = 1 - f`` of its volume falls back in maturity,
    ``u -> u s^(1/c)`` (so its volume ``A u^c`` becomes ``s`` times as large; Fang carbon is
    recomputed from it, BEF carbon scales by ``s``); a bamboo stand keeps ``s`` of its carbon. A
    stand-replacing loss then restarts the stand: age ``replant_age`` (minus the replanting delay),
    maturity 0 (trees: the carbon of zero volume), or no carbon (bamboo, which regrows from its
    rhizomes). ``s^(1/c)`` is computed by numpy's vectorised ``exp(log1p(-f) / c)``.
    """
    pp = np.ascontiguousarray(path_pos, dtype=np.int64)
    qq = np.ascontiguousarray(parcel_pos, dtype=np.int64)
    f = np.clip(np.asarray(loss_fraction, dtype=np.float64), 0.0, 1.0)
    keep = 1.0 - f
    nt = u.shape[1]
    with np.errstate(divide="ignore"):  # f = 1: log1p(-1) = -inf, keep_pow = 0
        keep_pow = np.log1p(-f)
        keep_pow /= tree.shape[np.minimum(qq, max(nt - 1, 0))] if nt else 1.0
        np.exp(keep_pow, out=keep_pow)
    lost = np.empty(pp.size)
    _apply_losses(carbon, u, age, tree.a_base, tree.a_floor, tree.a_mult, tree.species, tree.shape, tree.slope,
                  tree.intercept, tree.ramp, tree.fang, pp, qq, keep, keep_pow,
                  np.ascontiguousarray(stand_replacing, dtype=np.bool_), replant_age, lost)
    return lost
