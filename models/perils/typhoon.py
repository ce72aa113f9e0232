"""Typhoon wind: regional storms whose damage falls off inland and away from the track.

Coast model
-----------
Lishui is inland; the coast nearest to it (Wenzhou / Taizhou) is modelled as the straight line
through ``coast_point_a`` (27.4N, 120.6E) and ``coast_point_b`` (28.9N, 121.6E). Coordinates are
projected equirectangularly at the line's mean latitude (x = lon x 111.32 x cos(lat0) km,
y = lat x 110.57 km). For each parcel

* ``d_q`` = perpendicular distance inland from that line (km, 0 on the sea side), and
* ``t_q`` = position along the coast axis (km from point A, positive toward B).

With county-seat coordinates Qingtian comes out nearest (about 70 km inland), Jinyun, Jingning and
Liandu next (about 115 km), and Yunhe, Qingyuan, Songyang, Longquan and Suichang farthest (130-180 km).

Hazard
------
The number of damaging storms per path-year is Poisson with mean ``lambda x h``
(``annual_rate``, ``h = ctx.hazard("typhoon")``; stream ``"typhoon.count"``). Storm ``k`` crosses the
coast at ``s_k ~ U(landfall_km)`` along the coast axis and moves inland perpendicular to it, with an
intensity ``I_k ~ U(intensity)`` (streams ``"typhoon.track"`` and ``"typhoon.intensity"``, keyed by
path and storm number). Its wind field at parcel ``q`` is

    w_kq = I_k x exp(-d_q / inland_decay_km) x exp(-0.5 ((t_q - s_k) / track_width_km)^2),

and the parcel suffers windthrow with probability ``min(1, max_hit_probability x w_kq)`` (stream
``"typhoon.hazard.s<k>"``): damage is patchy, so only some parcels in the swath are hit.

Damage
------
Given a hit, the carbon lost is

    loss = min(1, L x V_q x sev),   L ~ U(loss_given_hit)   (stream ``"typhoon.damage.s<k>"``)
    V_q = wind_vulnerability_s x H(age) x E(elevation)
    H = clip(age / full_height_age_years, min_height_factor, 1)    (short young stands catch less wind)
    E = 1 + elevation_gain_per_km x elevation_m / 1000             (exposed ridges)

with ``sev = ctx.severity("typhoon")``. Defaults: 0.2-0.5 damaging events per year regionally and
1-10 % loss in affected parcels (domain_parameters.md §4.3, assumption; Lionrock 2016 blew down 7.7 %
of trees in one event). A parcel hit by two storms in one year keeps ``1 - prod(1 - loss_k)`` and the
event index of its larger loss; event index = storm number within the path-year.

Independent mode
----------------
With ``ctx.independent`` there are no shared storms: each parcel is hit with probability
``1 - exp(-lambda h m_q)``, where ``m_q = E_{s,I}[min(1, max_hit_probability x w)]`` is its expected
per-storm hit probability (computed once by quadrature over the uniform track and intensity), which is
the parcel's marginal probability of at least one hit under the shared-storm model. Loss given hit is
drawn as above.

Forced events
-------------
``ctx.forced_events["typhoon"]`` is a list of dicts, each one storm added to this year on every path:

* ``track`` (float, km, required): landfall position along the coast axis (0 = 27.4N 120.6E,
  positive toward 28.9N 121.6E; about 55 km passes over Qingtian, about 95 km over Jinyun);
* ``intensity`` (float in (0, 10], default the upper end of ``intensity``): the storm's ``I``.

Forced storms get event indices after the random storms of the year. Unknown keys or bad values raise
:class:`ValueError` naming the key.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from models._kernels import poisson_counts
from models.parameters.schema import Confidence, Sourced
from models.perils import register
from models.perils._weather import (
    SourcedRange,
    capacity_estimate,
    check_range,
    check_value,
    combine_losses,
    forced_events,
    forced_number,
    parcel_keys_u64,
    per_path,
    stand_replacing_threshold,
    stand_rows_hash,
)
from models.perils._screen_kernels import (BOUND_SLACK, keyed_hits, pair_rows, pair_uniforms, storm_candidates,
                                            storm_exponent, storm_losses, storm_pairs)
from models.perils.base import Peril, PerilLosses, PerilParams, YearContext
from models.rng import group_keys

FORCED_KEYS = {
    "track": "landfall position along the coast axis, km from 27.4N 120.6E toward 28.9N 121.6E",
    "intensity": "storm intensity I (default: upper end of the intensity range)",
}
#: each numeric key's range (low, high], checked when a scenario is read and when the event is applied
FORCED_RANGES = {"track": (-1e4, 1e4), "intensity": (0.0, 10.0)}
KM_PER_DEG_LAT = 110.57
KM_PER_DEG_LON_EQUATOR = 111.32
MAX_STORMS_PER_YEAR = 20


class CoastPoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    latitude: float
    longitude: float
    source: str
    confidence: Confidence
    note: str | None = None


def poisson_inverse_cdf(u: np.ndarray, lam: np.ndarray, k_max: int) -> np.ndarray:
    """Smallest k with P(N <= k) >= u for N ~ Poisson(lam), capped at ``k_max`` (vectorised).

    The CDF is accumulated term by term (pmf_k = pmf_{k-1} lam / k) in one compiled pass
    (:func:`models._kernels.poisson_counts`, equal to :func:`reference_poisson_inverse_cdf`); it is
    much faster than ``scipy.stats.poisson.ppf`` for the small rates of storms.
    """
    u = np.ascontiguousarray(u, dtype=np.float64)
    lam = np.ascontiguousarray(np.broadcast_to(np.asarray(lam, dtype=np.float64), u.shape)).ravel()
    pmf0 = np.exp(-lam)
    out = np.empty(u.size, dtype=np.int64)
    return poisson_counts(u.ravel(), pmf0, lam, int(k_max), out).reshape(u.shape)


def reference_poisson_inverse_cdf(u: np.ndarray, lam: np.ndarray, k_max: int) -> np.ndarray:
    """The numpy definition of :func:`poisson_inverse_cdf` (a loop over k only)."""
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), u.shape)
    pmf = np.exp(-lam)
    cdf = pmf.copy()
    n = np.zeros(u.shape, dtype=np.int64)
    for k in range(1, k_max + 1):
        below = cdf < u
        if not below.any():
            break
        n += below
        pmf = pmf * lam / k
        cdf = cdf + pmf
    return n


class TyphoonParams(PerilParams):
    """``perils.typhoon`` block."""

    annual_rate: Sourced
    coast_point_a: CoastPoint
    coast_point_b: CoastPoint
    landfall_km: SourcedRange
    intensity: SourcedRange
    inland_decay_km: Sourced
    track_width_km: Sourced
    max_hit_probability: Sourced
    loss_given_hit: SourcedRange
    full_height_age_years: Sourced
    min_height_factor: Sourced
    elevation_gain_per_km: Sourced

    @model_validator(mode="after")
    def _check(self) -> "TyphoonParams":
        check_value(self.annual_rate, "annual_rate", 0.0, 10.0)
        check_range(self.intensity, "intensity", 0.0, 10.0)
        check_value(self.inland_decay_km, "inland_decay_km", 0.0, 1e4, lo_open=True)
        check_value(self.track_width_km, "track_width_km", 0.0, 1e4, lo_open=True)
        check_value(self.max_hit_probability, "max_hit_probability", 0.0, 1.0)
        check_range(self.loss_given_hit, "loss_given_hit", 0.0, 1.0)
        check_value(self.full_height_age_years, "full_height_age_years", 0.0, 200.0, lo_open=True)
        check_value(self.min_height_factor, "min_height_factor", 0.0, 1.0)
        check_value(self.elevation_gain_per_km, "elevation_gain_per_km", 0.0, 10.0)
        if (self.coast_point_a.latitude, self.coast_point_a.longitude) == (
                self.coast_point_b.latitude, self.coast_point_b.longitude):
            raise ValueError("coast_point_a and coast_point_b must differ")
        return self


def coast_coordinates(params: TyphoonParams, latitude: np.ndarray, longitude: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Distance inland from the coast line and position along it, both in km.

    Returns
    -------
    inland_km : ndarray
        Perpendicular distance to the line A-B on the landward (west) side; 0 on the sea side.
    along_km : ndarray
        Coordinate along the coast axis, km from point A toward point B.
    """
    a, b = params.coast_point_a, params.coast_point_b
    kx = KM_PER_DEG_LON_EQUATOR * np.cos(np.radians(0.5 * (a.latitude + b.latitude)))
    dx, dy = (b.longitude - a.longitude) * kx, (b.latitude - a.latitude) * KM_PER_DEG_LAT
    norm = np.hypot(dx, dy)
    ex, ey = dx / norm, dy / norm  # unit vector along the coast
    px = (np.asarray(longitude, dtype=float) - a.longitude) * kx
    py = (np.asarray(latitude, dtype=float) - a.latitude) * KM_PER_DEG_LAT
    along = px * ex + py * ey
    # left of the A->B direction (A south-west of B) is inland: cross(e, p) > 0
    inland = ex * py - ey * px
    return np.maximum(inland, 0.0), along


@register
class Typhoon(Peril):
    """Typhoon wind (see the module docstring)."""

    name: ClassVar[str] = "typhoon"
    code: ClassVar[int] = 13
    order: ClassVar[int] = 30
    Params: ClassVar[type[PerilParams]] = TyphoonParams

    def __init__(self, params: TyphoonParams, model, portfolio):
        super().__init__(params, model, portfolio)
        self.inland_km, self.along_km = coast_coordinates(params, portfolio.latitude, portfolio.longitude)
        sp = np.asarray(portfolio.species_code, dtype=np.intp)
        self._wind_vuln = model.tables.wind_vulnerability[sp]
        self._elev_factor = 1.0 + params.elevation_gain_per_km.value * np.maximum(portfolio.elevation_m, 0.0) / 1000.0
        self._wind_vuln_c = np.ascontiguousarray(self._wind_vuln, dtype=np.float64)
        self._elev_factor_c = np.ascontiguousarray(self._elev_factor, dtype=np.float64)
        self._coast_decay = np.ascontiguousarray(np.exp(-self.inland_km / params.inland_decay_km.value),
                                                 dtype=np.float64)
        self._along = np.ascontiguousarray(self.along_km, dtype=np.float64)
        self._coast_decay_sum = float(self._coast_decay.sum())
        self._all_parcels = np.ones(self.inland_km.size, dtype=bool)
        self._storm_keys = group_keys([f"storm:{k}" for k in range(MAX_STORMS_PER_YEAR)])
        self._expected_hit: np.ndarray | None = None
        self._threshold = stand_replacing_threshold(model)

    @property
    def expected_hit_per_storm(self) -> np.ndarray:
        """Per-parcel mean hit probability of one storm (independent mode); computed on first use."""
        if self._expected_hit is None:
            self._expected_hit = self._expected_hit_per_storm()
        return self._expected_hit

    # ------------------------------------------------------------------------------------------
    def hit_probability(self, track_km: np.ndarray, intensity: np.ndarray) -> np.ndarray:
        """Hit probability of every parcel for storms (track, intensity), shape (n_storms, n_parcels)."""
        p: TyphoonParams = self.params
        z = (self.along_km[None, :] - np.asarray(track_km, float)[:, None]) / p.track_width_km.value
        w = np.asarray(intensity, float)[:, None] * self._coast_decay[None, :] * np.exp(-0.5 * z * z)
        return np.minimum(p.max_hit_probability.value * w, 1.0)

    def _expected_hit_per_storm(self, n_track: int = 400, n_int: int = 16) -> np.ndarray:
        """m_q = E[min(1, max_hit_probability x w)] over uniform track and intensity (midpoint rule)."""
        p: TyphoonParams = self.params
        s = p.landfall_km.draw((np.arange(n_track) + 0.5) / n_track)
        i = p.intensity.draw((np.arange(n_int) + 0.5) / n_int)
        ss, ii = np.repeat(s, n_int), np.tile(i, n_track)
        out = np.zeros(self.inland_km.size)
        # batches of quadrature points sized so a batch holds about 4 M values: bounded memory for
        # city-scale portfolios (the result does not depend on the batch size beyond rounding)
        step = max(1, 4_000_000 // max(self.inland_km.size, 1))
        for lo in range(0, ss.size, step):
            out += self.hit_probability(ss[lo:lo + step], ii[lo:lo + step]).sum(axis=0)
        return out / ss.size

    def vulnerability(self, ctx: YearContext, pp: np.ndarray, qq: np.ndarray) -> np.ndarray:
        p: TyphoonParams = self.params
        age = ctx.stand.age_years[pp, qq]
        height = np.clip(age / p.full_height_age_years.value, p.min_height_factor.value, 1.0)
        return self._wind_vuln[qq] * height * self._elev_factor[qq]

    def storm_counts(self, ctx: YearContext) -> np.ndarray:
        """Number of random damaging storms per path this year."""
        lam = self.params.annual_rate.value * per_path(ctx.hazard(self.name), ctx.rnd.n_paths)
        u = ctx.rnd.path_uniform("typhoon.count", ctx.year)
        return poisson_inverse_cdf(u, lam, MAX_STORMS_PER_YEAR)

    def _damage(self, ctx, pp, qq, u: np.ndarray) -> np.ndarray:
        """Loss fraction of hit pairs ``(pp, qq)`` given their damage uniforms ``u``."""
        sev = per_path(ctx.severity(self.name), ctx.rnd.n_paths)[pp]
        loss = self.params.loss_given_hit.draw(u)
        return np.minimum(loss * self.vulnerability(ctx, pp, qq) * sev, 1.0)

    def _storm_losses(self, ctx: YearContext, hashes: np.ndarray, stand_row: np.ndarray, track_km: np.ndarray,
                      intensity: np.ndarray, storm_of_row: np.ndarray, damage_streams: list[str]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Living pairs hit by storms and their losses, one storm per hash row.

        Row ``i`` is path position ``stand_row[i]`` under storm ``storm_of_row[i]`` (track
        ``track_km[i]``, intensity ``intensity[i]``), its hazard uniforms hashed from ``hashes[i]`` and
        its damage uniforms drawn from ``damage_streams[storm_of_row[i]]``. Returns ``(path, parcel,
        storm, loss)`` row-major. Equal to ``np.nonzero(u < hit_probability(...))`` on living stands
        with :meth:`_damage`'s losses, without dense arrays: a compiled screen with an upper bound,
        numpy's ``exp`` of the track term on the candidates (as :meth:`hit_probability`), then one
        compiled pass for the exact test and the losses.
        """
        p: TyphoonParams = self.params
        rnd = ctx.rnd
        track_km = np.ascontiguousarray(track_km, dtype=np.float64)
        intensity = np.ascontiguousarray(intensity, dtype=np.float64)
        width = float(p.track_width_km.value)
        i, qq, u = storm_candidates(hashes, parcel_keys_u64(rnd), stand_row, track_km, intensity, self._along,
                                    self._coast_decay, width, float(p.max_hit_probability.value),
                                    ctx.stand.age_years, ctx.stand.carbon_tc_per_ha,
                                    capacity_estimate(np.minimum(p.max_hit_probability.value * intensity, 1.0).sum()
                                                      * self._coast_decay_sum, hashes.size * self.along_km.size))
        if i.size == 0:
            return i, qq, i, np.empty(0)
        track_factor = np.exp(storm_exponent(i, qq, self._along, track_km, width))
        age = ctx.stand.age_years
        as_age = age.dtype.type  # numpy divides and clips the ages in their own type
        return storm_losses(i, qq, u, track_factor, intensity, self._coast_decay, float(p.max_hit_probability.value),
                            np.ascontiguousarray(stand_row, dtype=np.int64),
                            np.ascontiguousarray(storm_of_row, dtype=np.int64),
                            rnd.path_ids_u64, rnd.stream_bases(damage_streams, ctx.year), parcel_keys_u64(rnd),
                            float(p.loss_given_hit.low), float(p.loss_given_hit.high - p.loss_given_hit.low),
                            self._wind_vuln_c, self._elev_factor_c, age, as_age(p.full_height_age_years.value),
                            as_age(p.min_height_factor.value), as_age(1.0),
                            np.ascontiguousarray(per_path(ctx.severity(self.name), rnd.n_paths)))

    def step(self, ctx: YearContext, state) -> PerilLosses:
        p: TyphoonParams = self.params
        rnd = ctx.rnd
        n_paths, n = rnd.n_paths, rnd.n_parcels
        all_rows = np.arange(n_paths)
        # the year's losses, one part per storm with hits (random storms in order, then forced ones)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        n_storms_hit = 0

        if ctx.independent:
            lam = p.annual_rate.value * per_path(ctx.hazard(self.name), n_paths)
            m = self.expected_hit_per_storm
            # 1 - exp(-x) <= x: screen with lam x m, then the exact probability on the candidates
            pp, qq, u = keyed_hits(stand_rows_hash(rnd, "typhoon.hazard.parcel", ctx.year), parcel_keys_u64(rnd),
                                   np.ascontiguousarray(lam), m * BOUND_SLACK, self._all_parcels, all_rows,
                                   ctx.stand.age_years, ctx.stand.carbon_tc_per_ha, True,
                                   capacity_estimate(lam.sum() * m.sum(), n_paths * n))
            hit = u < -np.expm1(-lam[pp] * m[qq])
            pp, qq = pp[hit], qq[hit]
            if pp.size:
                u = rnd.sparse_uniform("typhoon.damage.parcel", ctx.year, pp, qq)
                parts.append((pp, qq, self._damage(ctx, pp, qq, u), np.zeros(pp.size, dtype=np.int64)))
                n_storms_hit = 1
            n_random = np.zeros(n_paths, dtype=np.int64)
        else:
            n_random = self.storm_counts(ctx)
            if n_random.any():
                kmax = int(n_random.max())
                # every random storm of the year in one screen: storm k's rows (the paths with more than
                # k storms) follow storm k-1's, so the hits come out storm by storm, each row-major, as
                # one screen per storm would give them, in a few calls instead of a few per storm. Each
                # (path, storm) pair's track, intensity and hazard row are hashed for that pair only:
                # the numbers of the (paths x storms) grids at the pair
                path, storm = storm_pairs(n_random, kmax)
                ids = rnd.path_ids_u64
                keys = self._storm_keys
                track_base, inten_base = rnd.stream_bases(["typhoon.track", "typhoon.intensity"], ctx.year)
                tracks = p.landfall_km.draw(pair_uniforms(ids, path, track_base, keys, storm))
                inten = p.intensity.draw(pair_uniforms(ids, path, inten_base, keys, storm))
                hashes = pair_rows(ids, path, storm,
                                   rnd.stream_bases([f"typhoon.hazard.s{k}" for k in range(kmax)], ctx.year))
                pp, qq, k_of, f = self._storm_losses(ctx, hashes, path, tracks, inten, storm,
                                                     [f"typhoon.damage.s{k}" for k in range(kmax)])
                if pp.size:
                    parts.append((pp, qq, f, k_of))
                    # the hits come storm by storm: count the storms where the storm index changes
                    # (no sort of a year's hits, which can be a million pairs in a city chunk)
                    n_storms_hit = 1 + int(np.count_nonzero(k_of[1:] != k_of[:-1]))
        forced = forced_events(ctx, self.name, FORCED_KEYS, required=("track",))
        for j, ev in enumerate(forced):
            track = forced_number(ev, "track", self.name, None, *FORCED_RANGES["track"])
            inten = forced_number(ev, "intensity", self.name, p.intensity.high, *FORCED_RANGES["intensity"])
            pp, qq, _, f = self._storm_losses(ctx, stand_rows_hash(rnd, f"typhoon.hazard.forced{j}", ctx.year),
                                              all_rows, np.full(n_paths, track), np.full(n_paths, inten),
                                              np.zeros(n_paths, dtype=np.int64), [f"typhoon.damage.forced{j}"])
            if pp.size:
                parts.append((pp, qq, f, n_random[pp] + j))
                n_storms_hit += 1
        if not parts:
            return PerilLosses.empty()
        pp, qq, f, e = (np.concatenate(x) for x in zip(*parts))
        if n_storms_hit > 1:  # one storm hits each pair once already
            pp, qq, f, e = combine_losses(pp, qq, f, e, n)
        pos = f > 0
        return PerilLosses(pp[pos], qq[pos], f[pos], e[pos], f[pos] >= self._threshold)


__all__ = ["Typhoon", "TyphoonParams", "coast_coordinates"]
