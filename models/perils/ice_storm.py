"""Snow-and-ice storm: a rare city-wide event breaking stems, worst in fir, bamboo and pines up high.

Hazard
------
A storm strikes the whole city in a year with probability ``p = annual_probability x h``
(``h = ctx.hazard("ice_storm")``; one uniform per path-year, stream ``"ice_storm.hazard"``; the
2008 storm is described as the worst in about 50 years, so ``annual_probability`` = 0.02). Its
severity relative to 2008 is ``S ~ U(event_severity)`` (stream ``"ice_storm.severity"``; S = 1 is a
2008-like storm). Within the storm each parcel is damaged with probability
``parcel_hit_probability`` (stream ``"ice_storm.hazard.parcel"``): sheltered stands escape.

Damage
------
For a damaged parcel

    stems damaged      D = min(1, U(stem_damage) x S x V_q)             (stream ``"ice_storm.damage"``)
    carbon lost        loss = min(1, D x volume_loss_per_damaged_stem x sev)
    V_q = ice_vulnerability_s x E(elevation) x R(density)
    E = elevation_low_factor below elevation_threshold_m, then + elevation_gain_per_100m per 100 m
        above it, at most elevation_max_factor
    R = clip((C / density_reference_tc_per_ha) ^ density_exponent, density_factor_min, density_factor_max)

with ``C`` the stand's current carbon density (tC/ha, the density proxy: dense, well-stocked stands
carry more rime) and ``sev = ctx.severity("ice_storm")``. Stem damage 25-66 % (Zhou et al. 2011;
iForest 10:406) and 42 % of a damaged stem's volume lost (broken tops and crowns) give 20-30 %
volume loss on average in stands hit by a 2008-like storm, the figure derived from 340 M m3 lost on
19.4 Mha (domain_parameters.md §4.3). Event index = storm number within the path-year (0 for the
random storm, 1, 2, ... for forced ones). Stands waiting for replanting (age < 0) lose nothing.

Independent mode
----------------
With ``ctx.independent`` there is no city-wide storm: each parcel has its own storm year with
probability ``p`` (stream ``"ice_storm.hazard.independent"``) and its own severity draw
(``"ice_storm.severity.parcel"``), then the same hit probability and damage. Marginals are unchanged.

Forced events
-------------
``ctx.forced_events["ice_storm"]`` is a list of dicts, each a storm imposed this year on every path:

* ``severity`` (float in (0, 5], default 1.0): S of the storm (1.0 = 2008-like);
* ``counties`` (list of county names, optional, default all): only parcels of these counties are
  exposed; parcels elsewhere are untouched. Names must match the portfolio's ``county`` column.

Example: ``{"counties": ["龙泉市", "庆元县"], "severity": 1.0}``. Unknown keys or bad values raise
:class:`ValueError` naming the key. A forced storm's damage, like a random one's, is also scaled by
``ctx.severity("ice_storm")``, which carries the parameter set's severity draw: a "2008-like" storm
does not know the volume it costs better than the model does.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import model_validator

from models.parameters.schema import Sourced
from models.perils import register
from models.perils._weather import (
    SourcedRange,
    capacity_estimate,
    check_range,
    check_value,
    combine_losses,
    county_codes,
    forced_counties,
    forced_events,
    forced_number,
    parcel_keys_u64,
    per_path,
    stand_replacing_threshold,
    stand_rows_hash,
)
from models.perils._screen_kernels import keyed_hits
from models.perils.base import Peril, PerilLosses, PerilParams, YearContext

FORCED_KEYS = {
    "severity": "storm severity S relative to 2008 (default 1.0)",
    "counties": "list of county names exposed to the storm (default: all)",
}
#: each numeric key's range (low, high], checked when a scenario is read and when the event is applied
FORCED_RANGES = {"severity": (0.0, 5.0)}


class IceStormParams(PerilParams):
    """``perils.ice_storm`` block."""

    annual_probability: Sourced
    event_severity: SourcedRange
    parcel_hit_probability: Sourced
    stem_damage: SourcedRange
    volume_loss_per_damaged_stem: Sourced
    elevation_threshold_m: Sourced
    elevation_low_factor: Sourced
    elevation_gain_per_100m: Sourced
    elevation_max_factor: Sourced
    density_reference_tc_per_ha: Sourced
    density_exponent: Sourced
    density_factor_min: Sourced
    density_factor_max: Sourced

    @model_validator(mode="after")
    def _check(self) -> "IceStormParams":
        check_value(self.annual_probability, "annual_probability", 0.0, 1.0)
        check_range(self.event_severity, "event_severity", 0.0, 5.0)
        check_value(self.parcel_hit_probability, "parcel_hit_probability", 0.0, 1.0)
        check_range(self.stem_damage, "stem_damage", 0.0, 1.0)
        check_value(self.volume_loss_per_damaged_stem, "volume_loss_per_damaged_stem", 0.0, 1.0)
        check_value(self.elevation_threshold_m, "elevation_threshold_m", -200.0, 6000.0)
        check_value(self.elevation_low_factor, "elevation_low_factor", 0.0, 10.0)
        check_value(self.elevation_gain_per_100m, "elevation_gain_per_100m", 0.0, 10.0)
        check_value(self.elevation_max_factor, "elevation_max_factor", 0.0, 10.0)
        if self.elevation_max_factor.value < self.elevation_low_factor.value:
            raise ValueError("elevation_max_factor must be >= elevation_low_factor")
        check_value(self.density_reference_tc_per_ha, "density_reference_tc_per_ha", 0.0, 1000.0, lo_open=True)
        check_value(self.density_exponent, "density_exponent", 0.0, 5.0)
        check_value(self.density_factor_min, "density_factor_min", 0.0, 10.0)
        check_value(self.density_factor_max, "density_factor_max", 0.0, 10.0)
        if self.density_factor_max.value < self.density_factor_min.value:
            raise ValueError("density_factor_max must be >= density_factor_min")
        return self


@register
class IceStorm(Peril):
    """Snow-and-ice storm (see the module docstring)."""

    name: ClassVar[str] = "ice_storm"
    code: ClassVar[int] = 14
    order: ClassVar[int] = 40
    Params: ClassVar[type[PerilParams]] = IceStormParams

    def __init__(self, params: IceStormParams, model, portfolio):
        super().__init__(params, model, portfolio)
        sp = np.asarray(portfolio.species_code, dtype=np.intp)
        elev = np.asarray(portfolio.elevation_m, dtype=float)
        above = np.maximum(elev - params.elevation_threshold_m.value, 0.0) / 100.0
        elev_factor = np.minimum(params.elevation_low_factor.value + params.elevation_gain_per_100m.value * above,
                                 params.elevation_max_factor.value)
        #: static vulnerability per parcel: species x elevation (the density factor is applied at run time)
        self.static_vulnerability = model.tables.ice_vulnerability[sp] * elev_factor
        self.county_code, self.county_labels, _ = county_codes(portfolio)
        self._ones = np.ones(self.county_code.size)
        self._all_parcels = np.ones(self.county_code.size, dtype=bool)
        self._threshold = stand_replacing_threshold(model)

    def density_factor(self, carbon_tc_per_ha: np.ndarray) -> np.ndarray:
        """``clip((max(carbon, 0) / reference) ** exponent, min, max)``, computed in one array (a city
        chunk's hits can be a million pairs: each temporary is 8 MB)."""
        p: IceStormParams = self.params
        r = np.maximum(carbon_tc_per_ha, 0.0)
        r /= p.density_reference_tc_per_ha.value
        np.power(r, p.density_exponent.value, out=r)
        return np.clip(r, p.density_factor_min.value, p.density_factor_max.value, out=r)

    def storm_probability(self, ctx: YearContext) -> np.ndarray:
        h = per_path(ctx.hazard(self.name), ctx.rnd.n_paths)
        return np.clip(self.params.annual_probability.value * h, 0.0, 1.0)

    def damage(self, ctx: YearContext, pp: np.ndarray, qq: np.ndarray, storm_severity: np.ndarray,
               stream: str) -> np.ndarray:
        """Carbon loss fraction of damaged pairs given the storm's severity S per pair."""
        p: IceStormParams = self.params
        # in place, in the order of min(min(draw(u) S v, 1) x volume_loss x sev, 1): the same numbers
        # with two hit-sized arrays alive instead of a dozen
        v = self.density_factor(ctx.stand.carbon_tc_per_ha[pp, qq])
        v *= self.static_vulnerability[qq]
        loss = p.stem_damage.draw(ctx.rnd.sparse_uniform(stream, ctx.year, pp, qq))
        loss *= storm_severity
        loss *= v
        np.minimum(loss, 1.0, out=loss)
        loss *= p.volume_loss_per_damaged_stem.value
        loss *= per_path(ctx.severity(self.name), ctx.rnd.n_paths)[pp]
        return np.minimum(loss, 1.0, out=loss)

    def _living_hits(self, ctx: YearContext, stream: str, rows: np.ndarray, threshold: np.ndarray,
                     exposed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Living pairs of the paths ``rows`` whose ``stream`` uniform lies below ``threshold`` (one
        per row), optionally only parcels marked ``exposed``. Equal to
        ``np.nonzero((parcel_uniform(stream)[rows] < threshold[:, None]) & exposed & alive[rows])``
        with ``alive = (age >= 0) & (carbon > 0)``, in one compiled pass without dense arrays."""
        mask = self._all_parcels if exposed is None else exposed
        threshold = np.ascontiguousarray(threshold, dtype=np.float64)
        cap = capacity_estimate(np.clip(threshold, 0.0, 1.0).sum() * np.count_nonzero(mask), rows.size * mask.size)
        i, qq, _ = keyed_hits(stand_rows_hash(ctx.rnd, stream, ctx.year, rows), parcel_keys_u64(ctx.rnd),
                              threshold, self._ones, mask, rows, ctx.stand.age_years, ctx.stand.carbon_tc_per_ha,
                              False, cap)
        return rows[i], qq

    def step(self, ctx: YearContext, state) -> PerilLosses:
        p: IceStormParams = self.params
        rnd = ctx.rnd
        n_paths, n = rnd.n_paths, rnd.n_parcels
        all_rows = np.arange(n_paths)
        hit_p = p.parcel_hit_probability.value
        prob = self.storm_probability(ctx)
        parts = []

        if ctx.independent:
            pp, qq = self._living_hits(ctx, "ice_storm.hazard.independent", all_rows, prob)
            if pp.size:
                s = p.event_severity.draw(rnd.sparse_uniform("ice_storm.severity.parcel", ctx.year, pp, qq))
                hit = rnd.sparse_uniform("ice_storm.hazard.parcel", ctx.year, pp, qq) < hit_p
                pp, qq, s = pp[hit], qq[hit], s[hit]
                parts.append((pp, qq, self.damage(ctx, pp, qq, s, "ice_storm.damage"), np.zeros(pp.size, np.int64)))
        else:
            rows = np.flatnonzero(rnd.path_uniform("ice_storm.hazard", ctx.year) < prob)
            if rows.size:
                s_path = p.event_severity.draw(rnd.path_uniform("ice_storm.severity", ctx.year))
                pp, qq = self._living_hits(ctx, "ice_storm.hazard.parcel", rows, np.full(rows.size, hit_p))
                parts.append((pp, qq, self.damage(ctx, pp, qq, s_path[pp], "ice_storm.damage"),
                              np.zeros(pp.size, np.int64)))
        for j, ev in enumerate(forced_events(ctx, self.name, FORCED_KEYS)):
            s = forced_number(ev, "severity", self.name, 1.0, *FORCED_RANGES["severity"])
            exposed = forced_counties(ev, self.name, self.county_labels, self.county_code)
            pp, qq = self._living_hits(ctx, f"ice_storm.hazard.forced{j}", all_rows, np.full(n_paths, hit_p),
                                       np.ascontiguousarray(exposed, dtype=bool))
            parts.append((pp, qq, self.damage(ctx, pp, qq, np.full(pp.size, s), f"ice_storm.damage.forced{j}"),
                          np.full(pp.size, j + 1, dtype=np.int64)))
        parts = [x for x in parts if x[0].size]
        if not parts:
            return PerilLosses.empty()
        if len(parts) == 1:  # one storm hits each pair once, in (path, parcel) order: nothing to merge
            pp, qq, f, e = parts[0]
        else:
            pp, qq, f, e = combine_losses(*(np.concatenate([x[i] for x in parts]) for i in range(4)), n)
        pos = f > 0
        pp, qq = pp[pos].astype(np.int64, copy=False), qq[pos].astype(np.int64, copy=False)
        return PerilLosses(pp, qq, f[pos], e[pos], f[pos] >= self._threshold)


__all__ = ["IceStorm", "IceStormParams"]
