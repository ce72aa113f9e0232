"""Stand growth: Chapman-Richards stock volume for trees, a per-hectare carbon model for Moso bamboo.

Trees
-----
The yield curve is Chapman-Richards (Richards 1959; Pienaar & Turnbull 1973),
``V(t) = A (1 - exp(-k t))^c`` [m3/ha], with asymptote ``A`` by site class, rate ``k`` [1/yr] and
shape ``c``; its current annual increment peaks at ``t* = ln(c)/k``.

The simulator tracks the *relative maturity* ``u = (V/A)^(1/c) = 1 - exp(-k t_eff)`` rather than age.
One year of growth is then exact on the curve, ``1 - u' = (1 - u) exp(-k m)``, where ``m`` is the
year's growth multiplier (climate-year shock x parcel noise; ``m = 1`` reproduces the curve). A stand
that lost part of its volume simply sits at a lower ``u`` and regrows along the same curve (an
"effective age" model), so partial damage, full replacement and measured volumes off the curve are
all handled by one formula. A measured ``volume_m3_per_ha`` that differs from the curve at the stated
age rescales that parcel's asymptote (its productivity), within a factor of four either way.

Moso bamboo
-----------
Bamboo stands regenerate clonally, so they are modelled by stand carbon ``C`` [tC/ha] rather than
volume. Selective harvest of old culms holds a managed stand at a level ``M``; a younger or damaged
stand recovers toward it logistically at rate ``r``, ``L(C) = M / (1 + (M/C - 1) exp(-r m))``, and
every stand gains the management drift on top: ``C' = min(K, L(C) + g m)``. The managed level
rises by the management drift ``g`` per year (denser culm stands under intensive
management; Zhejiang NFI 2009-14, Xu et al. 2017) up to the biological ceiling ``K`` (Wang et al.).
Established stands therefore sink about ``g`` ≈ 0.54 tC/ha/yr, the published Zhejiang figure.

Background mortality
--------------------
Yield tables give the standing (surviving) volume of stands at each age, and the Zhejiang bamboo
figures are net changes of the standing stock, so the trees and culms that die every year are
already inside both: the stand follows its curve, and background mortality (the NFI's 枯损, a rate
of the stock) is a flux reported beside it, with gross growth the net change plus that flux, as in
the NFI's accounts (gross increment - mortality = net increment). Taking it off the stand again
would count it twice (CBM-CFS3 reads its net yield curves the same way). The perils' losses are not
in the curves: they are taken off the stand.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.parameters import ModelParameters

MEASURED_SCALE_BOUNDS = (0.25, 4.0)


def chapman_richards_volume(age_years, asymptote_m3_per_ha, rate_per_year, shape):
    """Yield-curve volume ``A (1 - exp(-k t))^c`` in m3/ha (ages below 0 give 0)."""
    t = np.maximum(np.asarray(age_years, dtype=np.float64), 0.0)
    return asymptote_m3_per_ha * (-np.expm1(-rate_per_year * t)) ** shape


def chapman_richards_increment(age_years, asymptote_m3_per_ha, rate_per_year, shape):
    """Current annual increment ``dV/dt`` (m3/ha/yr) of the yield curve."""
    t = np.maximum(np.asarray(age_years, dtype=np.float64), 0.0)
    e = np.exp(-rate_per_year * t)
    return asymptote_m3_per_ha * shape * rate_per_year * (1 - e) ** (shape - 1) * e


def relative_maturity(volume_m3_per_ha, asymptote_m3_per_ha, shape):
    """``u = (V/A)^(1/c)``, clipped to [0, 1)."""
    ratio = np.clip(np.asarray(volume_m3_per_ha, dtype=np.float64) / asymptote_m3_per_ha, 0.0, 1.0 - 1e-12)
    return ratio ** (1.0 / shape)


def grow_relative_maturity(u, rate_per_year, multiplier):
    """One year of tree growth in maturity space: ``1 - u' = (1 - u) exp(-k m)``."""
    return 1.0 - (1.0 - u) * np.exp(-rate_per_year * multiplier)


def bamboo_logistic_step(carbon_tc_per_ha, managed_tc_per_ha, rate_per_year, multiplier):
    """One year of bamboo recovery toward the managed level (exact logistic solution).

    A stand above its managed level declines toward it (harvest of the extra culms).
    """
    c = np.maximum(np.asarray(carbon_tc_per_ha, dtype=np.float64), 1e-9)
    m = managed_tc_per_ha
    return m / (1.0 + (m / c - 1.0) * np.exp(-rate_per_year * multiplier))


def bamboo_step(carbon_tc_per_ha, managed_now_tc_per_ha, drift_tc_per_ha_yr, ceiling_tc_per_ha,
                rate_per_year, multiplier):
    """One year of Moso bamboo: logistic recovery toward today's managed level plus the drift.

    ``C' = min(K, logistic(C -> M_t) + g m)``: an established stand (``C = M_t``) gains ``g m``, a
    damaged one recovers at rate ``r`` on top.
    """
    grown = bamboo_logistic_step(carbon_tc_per_ha, managed_now_tc_per_ha, rate_per_year, multiplier)
    return np.minimum(grown + drift_tc_per_ha_yr * multiplier, ceiling_tc_per_ha)


def bamboo_carbon_at_age(age_years, managed_tc_per_ha, rate_per_year, establishment_tc_per_ha):
    """Stand carbon of a bamboo stand ``age_years`` after establishment (logistic in age)."""
    t = np.maximum(np.asarray(age_years, dtype=np.float64), 0.0)
    c0 = establishment_tc_per_ha
    return managed_tc_per_ha / (1.0 + (managed_tc_per_ha / c0 - 1.0) * np.exp(-rate_per_year * t))


#: ``rate x age`` from which a bamboo stand counts as established (its logistic from the establishment
#: stock is within e^-6 of any level): ten years at the default rate of 0.6
ESTABLISHED_RATE_AGE = 6.0


def measured_bamboo_level(measured_tc_per_ha, age_years, site_level_tc_per_ha, has_measurement, rate_per_year,
                          establishment_tc_per_ha, ceiling_tc_per_ha):
    """Managed level (tC/ha) of bamboo stands with a measured carbon, and which stands it was fitted for.

    An established stand (``rate x age >= ESTABLISHED_RATE_AGE``: ten years at the default rate) is
    managed at the level its logistic from the establishment stock ``c0`` passes through its
    measurement ``C``: ``C = M / (1 + (M/c0 - 1) e)`` with ``e = exp(-r age)``, so ``M = C (1 - e) /
    (1 - C e / c0)``, which for such stands is ``C`` within a few per cent -- an old stand measured below
    its site's level is a less productive stand (as a tree stand's measured volume sets its asymptote), not
    a damaged one to be credited a recovery. The level is kept within ``MEASURED_SCALE_BOUNDS`` of the
    site's and at most ``max(ceiling, C)`` (only a stand measured above the biological ceiling is managed
    above it); a measurement no level reaches at that age (``C e >= c0``) takes that upper bound, so the
    level grows continuously with ``C``. A younger stand's measurement says little about its level (at
    age 0 every level starts from ``c0``): it keeps its site's level and starts from ``C``.
    """
    c = np.asarray(measured_tc_per_ha, dtype=np.float64)
    site = np.asarray(site_level_tc_per_ha, dtype=np.float64)
    ra = rate_per_year * np.maximum(np.asarray(age_years, dtype=np.float64), 0.0)
    e = np.exp(-ra)
    fitted = has_measurement & (ra >= ESTABLISHED_RATE_AGE) & (site > 0)
    lo, hi = MEASURED_SCALE_BOUNDS
    upper = np.minimum(hi * site, np.maximum(ceiling_tc_per_ha, np.nan_to_num(c)))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        solved = np.maximum(c, 0.0) * -np.expm1(-ra) / (1.0 - c * e / establishment_tc_per_ha)
    solved = np.where(c * e < establishment_tc_per_ha, solved, np.inf)  # beyond every level: the upper bound
    level = np.where(fitted, np.clip(np.nan_to_num(solved, nan=np.inf), lo * site, upper), site)
    return level, fitted


@dataclass(frozen=True)
class GrowthInputs:
    """Per-parcel growth parameters resolved from species, site class and measurements.

    Arrays have one entry per parcel (canonical portfolio order). For bamboo parcels the tree fields
    are NaN-free placeholders (asymptote 1, rate 0) and vice versa.
    """

    is_bamboo: np.ndarray
    asymptote_m3_per_ha: np.ndarray
    rate_per_year: np.ndarray
    shape: np.ndarray
    initial_volume_m3_per_ha: np.ndarray
    bamboo_managed_tc_per_ha: np.ndarray
    bamboo_ceiling_tc_per_ha: float
    bamboo_drift_tc_per_ha_yr: float
    bamboo_rate_per_year: float
    initial_bamboo_tc_per_ha: np.ndarray
    measured_scale: np.ndarray


def resolve_growth(params: ModelParameters, species_code: np.ndarray, site_code: np.ndarray,
                   age_years: np.ndarray, volume_m3_per_ha: np.ndarray,
                   bamboo_carbon_tc_per_ha: np.ndarray | None = None) -> GrowthInputs:
    """Per-parcel growth parameters and today's stock.

    Trees without a measured volume start on their site's yield curve at their age. With a measured
    volume, the asymptote is rescaled so the curve passes through the measurement (bounded to
    ``MEASURED_SCALE_BOUNDS``; a stand more than 4x off its yield table is treated as 4x). A measured
    bamboo stand is managed at the level whose logistic passes through its measurement at its age
    (:func:`measured_bamboo_level`); ``measured_scale`` holds either factor against the site's value.
    """
    t = params.tables
    sc = np.asarray(species_code, dtype=np.intp)
    site = np.asarray(site_code, dtype=np.intp)
    age = np.asarray(age_years, dtype=np.float64)
    is_bamboo = t.is_bamboo[sc]
    tree = ~is_bamboo
    asym = np.where(tree, np.nan_to_num(t.asymptote_m3_per_ha[sc, site], nan=1.0), 1.0)
    k = np.where(tree, np.nan_to_num(t.growth_rate_per_year[sc], nan=0.0), 0.0)
    c = np.where(tree, np.nan_to_num(t.growth_shape[sc], nan=1.0), 1.0)
    curve_v = np.where(tree, chapman_richards_volume(age, asym, k, c), 0.0)
    measured = np.asarray(volume_m3_per_ha, dtype=np.float64)
    has_meas = tree & np.isfinite(measured)
    scale = np.ones_like(asym)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw_scale = np.where(curve_v > 1e-9, measured / curve_v, np.nan)
    ok = has_meas & np.isfinite(raw_scale) & (measured > 0)
    scale[ok] = np.clip(raw_scale[ok], *MEASURED_SCALE_BOUNDS)
    asym = asym * scale
    init_v = np.where(has_meas, measured, curve_v)
    # a measured volume above the rescaled asymptote is capped just below it
    init_v = np.where(tree, np.minimum(init_v, asym * (1 - 1e-9)), 0.0)

    # bamboo
    bamboo_sp = next((s for s in params.file.species.values() if s.kind == "bamboo"), None)
    managed = np.where(is_bamboo, np.nan_to_num(t.bamboo_managed_stock_tc_per_ha[sc, site], nan=0.0), 0.0)
    if bamboo_sp is not None and bamboo_sp.bamboo is not None:
        b = bamboo_sp.bamboo
        ceiling = b.ceiling_tc_per_ha.value
        drift = b.management_drift_tc_per_ha_yr.value
        r = b.recovery_rate_per_year.value
        c0 = b.establishment_stock_tc_per_ha.value
    else:
        ceiling, drift, r, c0 = 1.0, 0.0, 0.0, 1.0
    init_b = np.where(is_bamboo, bamboo_carbon_at_age(age, np.maximum(managed, 1e-9), r, c0), 0.0)
    if bamboo_carbon_tc_per_ha is not None:
        mb = np.asarray(bamboo_carbon_tc_per_ha, dtype=np.float64)
        has_b = is_bamboo & np.isfinite(mb)
        # as a tree stand's measured volume sets its asymptote, a measured bamboo stand sets its managed
        # level (its productivity): an old stand measured below its site's level is managed there, not
        # "recovering" toward the site's level (which would credit a sink no stand shows)
        fitted_level, fitted = measured_bamboo_level(mb, age, managed, has_b, r, c0, ceiling)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(fitted, fitted_level / managed, scale)
        managed = fitted_level
        init_b = np.where(has_b, mb, init_b)
    return GrowthInputs(
        is_bamboo=is_bamboo, asymptote_m3_per_ha=asym, rate_per_year=k, shape=c,
        initial_volume_m3_per_ha=init_v, bamboo_managed_tc_per_ha=managed,
        bamboo_ceiling_tc_per_ha=ceiling, bamboo_drift_tc_per_ha_yr=drift, bamboo_rate_per_year=r,
        initial_bamboo_tc_per_ha=init_b, measured_scale=scale,
    )


def expected_volume_path(inputs: GrowthInputs, years: int) -> np.ndarray:
    """Deterministic (all multipliers 1, no losses) tree volume for ``years`` years, shape (years+1, parcels)."""
    out = np.empty((years + 1, inputs.asymptote_m3_per_ha.size))
    u = relative_maturity(inputs.initial_volume_m3_per_ha, inputs.asymptote_m3_per_ha, inputs.shape)
    out[0] = inputs.initial_volume_m3_per_ha
    for y in range(1, years + 1):
        u = grow_relative_maturity(u, inputs.rate_per_year, 1.0)
        out[y] = inputs.asymptote_m3_per_ha * u ** inputs.shape
    return np.where(inputs.is_bamboo[None, :], 0.0, out)
