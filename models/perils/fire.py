"""Forest fire: per-parcel burn probability with a shared fire-weather year, and loss given burn.

Hazard
------
The probability that parcel ``q`` burns in year ``t`` on path ``i`` is

    p_iq = min(1, b x F_s(q) x A(age) x M_q x W_i,c(q) x D_i x K_iq x h_i)

* ``b``: base annual burn probability (``base_burn_probability_per_year``; default 2e-4/yr, range
  5e-5 to 1.2e-3, derived from Zhejiang statistics, domain_parameters.md §4.1).
* ``F_s``: species flammability (``species.<id>.traits.flammability``).
* ``A``: ``young_burn_multiplier`` for stands younger than ``young_age_years``, else 1.
* ``M_q``: fire-protection multiplier ``management.fire_protection.<none|basic|enhanced>`` selected by
  ``portfolio.fire_protection_code``.
* ``W``: the fire-weather year factor, shared by every parcel of a county and largely by the whole
  city: ``W = exp(s_c Z_i - s_c^2/2) x exp(s_k Z_ik - s_k^2/2)`` with ``Z_i`` one standard normal per
  path-year (stream ``"fire.weather"``) and ``Z_ik`` one per path-year-county (stream
  ``"fire.weather.county"``, keyed by county name). ``E[W] = 1``, so ``b`` stays the long-run mean;
  ``s_c = city_weather_log_sd`` and ``s_k = county_weather_log_sd`` make bad fire years hit many
  parcels at once. No temporal correlation is assumed (none is declared in the parameters).
* ``D``: ``drought_multiplier`` when the drought peril marked the path (``ctx.drought``), else 1.
* ``K``: ``ctx.stand.fire_multiplier_at`` (cascades: dead fuel after wind or ice breakage).
* ``h``: ``ctx.hazard("fire")`` (climate pathway x scenario x the parameter set's frequency multiplier).

A uniform per (path, parcel) (stream ``"fire.hazard"``) below ``p`` means the parcel burns. Stands
waiting for replanting (age < 0) or without carbon cannot burn.

Damage
------
Each burned parcel is its own event (event index: running number within the path-year). Given a
burn, with two independent uniforms from the damage streams,

    burned area share  a ~ U(burned_area_fraction)                (stream ``"fire.damage.area"``)
    carbon loss given burn  c ~ U(loss_given_burn[class])          (stream ``"fire.damage.carbon"``)
    loss fraction  = min(1, a x min(1, c x sev)),  sev = ctx.severity("fire")

where ``class`` is ``young`` for stands younger than ``young_age_years`` and otherwise the species'
``fuel_class`` (conifer / mixed / broadleaf / bamboo). Defaults: conifer 0.3-0.7, broadleaf 0.2-0.4,
young 0.8-1.0 (domain_parameters.md §4.1, assumption). A loss of at least
``regeneration.stand_replacing_loss_fraction`` is stand-replacing: the simulator restarts the stand
from age 0 after the replanting delay.

Independent mode
----------------
With ``ctx.independent`` the weather factor is replaced by its mean ``E[W] = 1`` (each parcel keeps
its own hazard draw with the same marginal probability, apart from the cap at 1), and the drought
flag is read per parcel when the drought peril provides one (see :mod:`models.perils.drought`).

Forced events
-------------
``ctx.forced_events["fire"]`` is a list of dicts, each a severe fire-weather year:

* ``weather_factor`` (float in (0, 10000], required): replaces the drawn weather factor ``W`` of the
  affected parcels this year (``3.0`` is a severe year: three times the base probabilities);
* ``counties`` (list of county names, optional, default all): only these counties' parcels.

With several forced events, each parcel takes the largest factor among those that cover it.
Unknown keys or bad values raise :class:`ValueError` naming the key.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import model_validator
from scipy.special import ndtri

from models.parameters.schema import Sourced
from models.perils import register
from models.perils._screen_kernels import BOUND_SLACK, fire_burns
from models.perils._weather import (
    SourcedRange,
    capacity_estimate,
    check_range,
    check_value,
    county_codes,
    forced_counties,
    forced_events,
    forced_number,
    parcel_keys_u64,
    per_path,
    running_event_index,
    stand_replacing_threshold,
)
from models.perils.base import Peril, PerilLosses, PerilParams, YearContext
from models.portfolio import MANAGEMENT_LEVELS

FORCED_KEYS = {
    "weather_factor": "fire-weather factor replacing the drawn one, e.g. 3.0 for a severe year",
    "counties": "list of county names the factor applies to (default: all)",
}
#: each numeric key's range (low, high], checked when a scenario is read and when the event is applied
FORCED_RANGES = {"weather_factor": (0.0, 1e4)}


class FireParams(PerilParams):
    """``perils.fire`` block."""

    base_burn_probability_per_year: Sourced
    city_weather_log_sd: Sourced
    county_weather_log_sd: Sourced
    drought_multiplier: Sourced
    young_age_years: Sourced
    young_burn_multiplier: Sourced
    burned_area_fraction: SourcedRange
    loss_given_burn: dict[str, SourcedRange]
    fuel_class: dict[str, str]

    @model_validator(mode="after")
    def _check(self) -> "FireParams":
        check_value(self.base_burn_probability_per_year, "base_burn_probability_per_year", 0.0, 0.5)
        check_value(self.city_weather_log_sd, "city_weather_log_sd", 0.0, 3.0)
        check_value(self.county_weather_log_sd, "county_weather_log_sd", 0.0, 3.0)
        check_value(self.drought_multiplier, "drought_multiplier", 0.0, 20.0)
        check_value(self.young_age_years, "young_age_years", 0.0, 100.0)
        check_value(self.young_burn_multiplier, "young_burn_multiplier", 0.0, 20.0)
        check_range(self.burned_area_fraction, "burned_area_fraction", 0.0, 1.0)
        if "young" not in self.loss_given_burn:
            raise ValueError("loss_given_burn needs a `young` class (stands younger than young_age_years)")
        for k, r in self.loss_given_burn.items():
            check_range(r, f"loss_given_burn.{k}", 0.0, 1.0)
        unknown = sorted({c for c in self.fuel_class.values() if c not in self.loss_given_burn})
        if unknown:
            raise ValueError(f"fuel_class uses classes {unknown} that loss_given_burn does not define")
        return self


@register
class Fire(Peril):
    """Forest fire (see the module docstring)."""

    name: ClassVar[str] = "fire"
    code: ClassVar[int] = 12
    order: ClassVar[int] = 20
    Params: ClassVar[type[PerilParams]] = FireParams

    @classmethod
    def validate_params(cls, raw: dict[str, Any], model_file: Any) -> PerilParams:
        p = cls.Params.model_validate(raw)
        missing = [s for s in model_file.species if s not in p.fuel_class]
        if missing:
            raise ValueError(f"fire.fuel_class lacks species {missing}")
        extra = [s for s in p.fuel_class if s not in model_file.species]
        if extra:
            raise ValueError(f"fire.fuel_class names unknown species {extra}")
        return p

    def __init__(self, params: FireParams, model, portfolio):
        super().__init__(params, model, portfolio)
        tables = model.tables
        sp = np.asarray(portfolio.species_code, dtype=np.intp)
        prot = model.file.management["fire_protection"]
        prot_mult = np.array([prot[m].value for m in MANAGEMENT_LEVELS])
        #: static part of the burn probability per parcel: b x F_s x M_q  (1/yr)
        self.static_probability = (params.base_burn_probability_per_year.value * tables.flammability[sp]
                                   * prot_mult[np.asarray(portfolio.fire_protection_code, dtype=np.intp)])
        # upper bound of b x F x A x M per parcel (screening in :meth:`step`)
        self._parcel_bound = np.ascontiguousarray(
            self.static_probability * max(1.0, params.young_burn_multiplier.value) * BOUND_SLACK, dtype=np.float64)
        self._parcel_bound_sum = float(self._parcel_bound.sum())
        self._static = np.ascontiguousarray(self.static_probability, dtype=np.float64)
        self.county_code, self.county_labels, self._county_keys = county_codes(portfolio)
        self._county_code = np.ascontiguousarray(self.county_code, dtype=np.int64)
        classes = sorted(params.loss_given_burn)
        self._class_low = np.array([params.loss_given_burn[c].low for c in classes])
        self._class_span = np.array([params.loss_given_burn[c].high - params.loss_given_burn[c].low for c in classes])
        self._young_class = classes.index("young")
        self._parcel_class = np.array([classes.index(params.fuel_class[model.species_ids[s]]) for s in sp],
                                      dtype=np.intp)
        self._threshold = stand_replacing_threshold(model)

    # ------------------------------------------------------------------------------------------
    def county_weather(self, ctx: YearContext) -> np.ndarray:
        """Fire-weather factor W per (path, county) this year, shape (n_paths, n_counties).

        Ones in independent mode (apart from forced events); forced events replace the factor of the
        counties they cover.
        """
        p: FireParams = self.params
        n_paths, n_c = ctx.rnd.n_paths, len(self.county_labels)
        if ctx.independent:
            w = np.ones((n_paths, n_c))
        else:
            city = self._city_weather(ctx)
            if p.county_weather_log_sd.value > 0:
                w = self._weather_at(ctx.rnd.keyed_uniform("fire.weather.county", ctx.year, self._county_keys),
                                     city[:, None])
            else:
                w = np.repeat(city[:, None], n_c, axis=1)
        forced = forced_events(ctx, self.name, FORCED_KEYS, required=("weather_factor",))
        if forced:
            fw = np.zeros(n_c)
            covered = np.zeros(n_c, dtype=bool)
            one_per_county = np.arange(n_c)
            for ev in forced:
                f = forced_number(ev, "weather_factor", self.name, None, *FORCED_RANGES["weather_factor"])
                m = forced_counties(ev, self.name, self.county_labels, one_per_county)
                fw = np.where(m, np.maximum(fw, f), fw)
                covered |= m
            w = np.where(covered[None, :], fw[None, :], w)
        return w

    def _path_factor(self, ctx: YearContext) -> np.ndarray:
        """Climate/scenario hazard x drought multiplier: (n_paths, 1), or (n_paths, n_parcels) when
        the drought flag is per parcel (independent mode)."""
        h = per_path(ctx.hazard(self.name), ctx.rnd.n_paths)
        d = np.asarray(ctx.drought, dtype=bool)
        dm = self.params.drought_multiplier.value
        if d.ndim == 2:
            return h[:, None] * np.where(d, dm, 1.0)
        return (h * np.where(d, dm, 1.0))[:, None]

    def _probability_at(self, ctx: YearContext, w_county: np.ndarray, factor: np.ndarray,
                        pp: np.ndarray, qq: np.ndarray) -> np.ndarray:
        """Exact burn probability at pairs; ``factor`` is the (n_paths, 1) or (n_paths, n_parcels)
        array of :meth:`_path_factor`, or already its values at the pairs (1-D)."""
        p: FireParams = self.params
        age = ctx.stand.age_years[pp, qq]
        prob = np.where(age < p.young_age_years.value, p.young_burn_multiplier.value, 1.0)
        prob *= self.static_probability[qq]
        prob *= ctx.stand.fire_multiplier_at(pp, qq)
        prob *= w_county[pp, self.county_code[qq]]
        if factor.ndim == 1:
            prob *= factor
        else:
            prob *= factor[pp, qq] if factor.shape[1] > 1 else factor[pp, 0]
        prob[(age < 0) | (ctx.stand.carbon_tc_per_ha[pp, qq] <= 0)] = 0.0
        return np.minimum(prob, 1.0)

    def burn_probability(self, ctx: YearContext) -> np.ndarray:
        """Annual burn probability per (path, parcel) this year, shape (n_paths, n_parcels).

        Dense, for inspection and tests; :meth:`step` evaluates it only where it can matter.
        """
        n_paths, n = ctx.rnd.n_paths, ctx.rnd.n_parcels
        pp, qq = np.divmod(np.arange(n_paths * n), n)
        return self._probability_at(ctx, self.county_weather(ctx), self._path_factor(ctx), pp, qq).reshape(n_paths, n)

    def loss_given_burn(self, ctx: YearContext, pp: np.ndarray, qq: np.ndarray) -> np.ndarray:
        """Carbon loss fraction of burned pairs (before the stand-replacing rule)."""
        p: FireParams = self.params
        young = ctx.stand.age_years[pp, qq] < p.young_age_years.value
        cls = np.where(young, self._young_class, self._parcel_class[qq])
        area = p.burned_area_fraction.draw(ctx.rnd.sparse_uniform("fire.damage.area", ctx.year, pp, qq))
        c = self._class_low[cls] + self._class_span[cls] * ctx.rnd.sparse_uniform("fire.damage.carbon", ctx.year,
                                                                                  pp, qq)
        sev = per_path(ctx.severity(self.name), ctx.rnd.n_paths)[pp]
        return np.minimum(area * np.minimum(c * sev, 1.0), 1.0)

    def _weather_bound(self, ctx: YearContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """An upper bound of each path's county weather factors, without the factors themselves.

        Returns ``(w_bound, u_county, city)``: ``w_bound`` (n_paths, n_counties) holds, in every
        county (so column 0 is the path's bound), the factor of the path's largest county uniform raised by ``BOUND_SLACK`` (``W`` is
        increasing in the uniform; the slack covers last-bit rounding of ``ndtri`` and ``exp``),
        ``u_county`` the county uniforms and ``city`` the city factor, from which
        :meth:`_weather_at` gives any county's exact factor -- so ``ndtri`` runs once per path
        and once per screened pair instead of once per path and county.
        """
        city = self._city_weather(ctx)
        u = ctx.rnd.keyed_uniform("fire.weather.county", ctx.year, self._county_keys)
        u_max = u[:, 0].copy()
        for c in range(1, u.shape[1]):  # column by column: a reduction along the short rows is 6x slower
            np.maximum(u_max, u[:, c], out=u_max)
        top = self._weather_at(u_max, city) * BOUND_SLACK
        return np.repeat(top[:, None], u.shape[1], axis=1), u, city

    def _city_weather(self, ctx: YearContext) -> np.ndarray:
        """The city-wide fire-weather factor of each path, ``exp(s_c Z - s_c^2/2)``."""
        sc = self.params.city_weather_log_sd.value
        return np.exp(sc * ctx.rnd.path_normal("fire.weather", ctx.year) - 0.5 * sc * sc)

    def _weather_at(self, u: np.ndarray, city: np.ndarray) -> np.ndarray:
        """County weather factors of county uniforms ``u`` on paths with city factors ``city``
        (broadcast against ``u``): the one expression :meth:`county_weather` and the screened step
        share, so both give the same factors bit for bit."""
        sk = self.params.county_weather_log_sd.value
        return np.exp(sk * ndtri(u) - 0.5 * sk * sk) * city

    def step(self, ctx: YearContext, state) -> PerilLosses:
        p: FireParams = self.params
        # several counties, drawn weather, no forced year: screen with a bound of the weather and
        # compute the exact factors only at the screened pairs (below); otherwise every factor
        lazy = (len(self.county_labels) > 1 and not ctx.independent and p.county_weather_log_sd.value > 0
                and not forced_events(ctx, self.name, FORCED_KEYS, required=("weather_factor",)))
        if lazy:
            w_county, u_county, city = self._weather_bound(ctx)
        else:
            w_county = np.ascontiguousarray(self.county_weather(ctx), dtype=np.float64)
        n_paths = ctx.rnd.n_paths
        h = per_path(ctx.hazard(self.name), n_paths)
        d = np.asarray(ctx.drought, dtype=bool)
        dm = p.drought_multiplier.value
        per_parcel = d.ndim == 2
        if per_parcel:  # drought flags per parcel (independent mode): never build the dense factor
            path_factor, factor_bound = h, np.maximum(h * dm, h)
        else:
            path_factor = h * np.where(d, dm, 1.0)
            factor_bound, d = path_factor, np.zeros((1, 1), dtype=bool)
        # One compiled pass: hash the hazard uniform of each (path, parcel), screen it with an upper
        # bound of p, evaluate p exactly (the products of :meth:`_probability_at`, in its order) on
        # the candidates and keep the burned pairs: the decisions of ``u < burn_probability(ctx)``
        # without the dense uniform or probability arrays.
        path_bound = (w_county[:, 0] if lazy else w_county.max(axis=1, initial=0.0)) * factor_bound
        age = ctx.stand.age_years
        young_age = p.young_age_years.value
        young_age = np.result_type(age.dtype, young_age).type(young_age)
        cap = capacity_estimate(path_bound.sum() * self._parcel_bound_sum, n_paths * ctx.rnd.n_parcels)
        pp, qq = fire_burns(ctx.rnd._rows("fire.hazard", ctx.year), parcel_keys_u64(ctx.rnd), path_bound,
                            self._parcel_bound, ctx.stand.weakened_until, ctx.stand.year,
                            np.float32(ctx.stand.fire_weakened_multiplier), age, ctx.stand.carbon_tc_per_ha, w_county,
                            self._county_code, self._static, young_age, float(p.young_burn_multiplier.value),
                            np.ascontiguousarray(path_factor, dtype=np.float64), d, float(dm), per_parcel, cap)
        if lazy and pp.size:
            # the pairs that burn under the bound: decide them with their county's exact factor, as the
            # kernel would have (Fire._probability_at is its numpy definition, product for product)
            n_c = w_county.shape[1]
            cell = np.unique(pp * n_c + self.county_code[qq])  # each (path, county) once
            cp, cc = np.divmod(cell, n_c)
            w_county[cp, cc] = self._weather_at(np.ascontiguousarray(u_county[cp, cc]), city[cp])
            prob = self._probability_at(ctx, w_county, self._path_factor(ctx), pp, qq)
            burn = ctx.rnd.sparse_uniform("fire.hazard", ctx.year, pp, qq) < prob
            pp, qq = pp[burn], qq[burn]
        if pp.size == 0:
            return PerilLosses.empty()
        frac = self.loss_given_burn(ctx, pp, qq)
        pos = frac > 0
        pp, qq, frac = pp[pos], qq[pos], frac[pos]
        return PerilLosses(pp, qq, frac, running_event_index(pp), frac >= self._threshold)


__all__ = ["Fire", "FireParams"]
