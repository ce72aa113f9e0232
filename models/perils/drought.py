"""Regional drought years: mortality in young plantations, and a flag that raises fire risk.

Model
-----
A severe regional drought (the 2022 Yangtze-basin drought is the recent example) strikes the whole
city in a year with probability

    p_d = annual_probability x h,

where ``h = ctx.hazard("drought")`` is the climate-pathway x scenario x parameter-set hazard multiplier (capped so
that p_d <= 1). One uniform per path (stream ``"drought.hazard"``) decides it, so every parcel of a
path shares the drought year: that is the declared spatial correlation. In a drought year the
peril

* sets ``ctx.drought[path] = True``; the fire peril (which runs later: ``order`` 10 < fire's 20)
  multiplies burn probabilities by its ``drought_multiplier`` that year;
* kills a share of the stand's carbon,

      loss = m x s x sev,   m ~ U(mortality.low, mortality.high)   (stream ``"drought.damage"``)

  with ``s = 1`` for young plantations (``0 <= age <= young_age_years``, origin plantation) and
  ``s = established_stand_factor`` for every other living stand; ``sev`` is
  ``ctx.severity("drought")`` times the forced event's ``severity``; the loss is capped at 1.
  Stands waiting for replanting (age < 0) lose nothing. Background mortality is the simulator's job.

Defaults (parameter file, ``perils.drought``): a severe drought about 1 year in 20; 1-5 % mortality in
young plantations (domain_parameters.md §4.3, assumption).

Independent mode
----------------
With ``ctx.independent`` each parcel draws its own drought year (stream ``"drought.hazard.parcel"``)
with the same probability ``p_d``, and ``ctx.drought`` becomes a boolean array of shape
(n_paths, n_parcels) instead of (n_paths,): consumers must broadcast it (``d[:, None]`` when 1-D).

Forced events
-------------
``ctx.forced_events["drought"]`` is a list of dicts, each a drought imposed this year on every path:

* ``severity`` (float in (0, 20], default 1.0): multiplies the mortality of this drought.

A forced drought sets ``ctx.drought`` for every path (in independent mode, for every parcel). Several
forced droughts in one year use the largest severity. Unknown keys raise :class:`ValueError`.
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
    forced_events,
    forced_number,
    parcel_keys_u64,
    per_path,
    stand_replacing_threshold,
    stand_rows_hash,
)
from models.perils._screen_kernels import drought_losses, keyed_flags
from models.perils.base import Peril, PerilLosses, PerilParams, YearContext

FORCED_KEYS = {"severity": "mortality multiplier of the imposed drought, default 1.0"}
#: each numeric key's range (low, high], checked when a scenario is read and when the event is applied
FORCED_RANGES = {"severity": (0.0, 20.0)}


class DroughtParams(PerilParams):
    """``perils.drought`` block."""

    annual_probability: Sourced
    mortality: SourcedRange
    young_age_years: Sourced
    established_stand_factor: Sourced

    @model_validator(mode="after")
    def _check(self) -> "DroughtParams":
        check_value(self.annual_probability, "annual_probability", 0.0, 1.0)
        check_range(self.mortality, "mortality", 0.0, 1.0)
        check_value(self.young_age_years, "young_age_years", 0.0, 100.0)
        check_value(self.established_stand_factor, "established_stand_factor", 0.0, 1.0)
        return self


@register
class Drought(Peril):
    """Regional drought years (see the module docstring)."""

    name: ClassVar[str] = "drought"
    code: ClassVar[int] = 11
    order: ClassVar[int] = 10
    Params: ClassVar[type[PerilParams]] = DroughtParams

    def __init__(self, params: DroughtParams, model, portfolio):
        super().__init__(params, model, portfolio)
        self._plantation = np.ascontiguousarray(~np.asarray(portfolio.is_natural, dtype=bool))
        self._threshold = stand_replacing_threshold(model)

    def drought_probability(self, ctx: YearContext) -> np.ndarray:
        """Probability of a drought year for each path this year, shape (n_paths,)."""
        h = per_path(ctx.hazard(self.name), ctx.rnd.n_paths)
        return np.clip(self.params.annual_probability.value * h, 0.0, 1.0)

    def step(self, ctx: YearContext, state) -> PerilLosses:
        p: DroughtParams = self.params
        n_paths, n = ctx.rnd.n_paths, ctx.rnd.n_parcels
        prob = self.drought_probability(ctx)
        forced = forced_events(ctx, self.name, FORCED_KEYS)
        forced_sev = max((forced_number(ev, "severity", self.name, 1.0, *FORCED_RANGES["severity"]) for ev in forced), default=0.0)
        sev_path = per_path(ctx.severity(self.name), n_paths)
        age_all, carbon_all = ctx.stand.age_years, ctx.stand.carbon_tc_per_ha

        if ctx.independent:
            # one compiled pass: the dense drought flags (fire reads them) and the hit pairs
            hit = np.empty((n_paths, n), dtype=bool)
            pp, qq = keyed_flags(stand_rows_hash(ctx.rnd, "drought.hazard.parcel", ctx.year), parcel_keys_u64(ctx.rnd),
                                 np.ascontiguousarray(prob, dtype=np.float64), hit,
                                 capacity_estimate(np.clip(prob, 0.0, 1.0).sum() * n, n_paths * n))
            if forced:
                pp, qq = np.divmod(np.arange(n_paths * n), n)
                sev_pair = np.maximum(np.where(hit[pp, qq], 1.0, 0.0), forced_sev)
                hit[:] = True
            else:
                sev_pair = np.ones(pp.size)
            ctx.drought = hit
            sev_pair = sev_pair * sev_path[pp]
            if pp.size == 0:
                return PerilLosses.empty()
            age = age_all[pp, qq]
            alive = (age >= 0) & (carbon_all[pp, qq] > 0)
            young = self._plantation[qq] & (age <= p.young_age_years.value)
            share = np.where(young, 1.0, p.established_stand_factor.value)
            keep = alive & (share > 0) & (sev_pair > 0)
            pp, qq, share, sev_pair = pp[keep], qq[keep], share[keep], sev_pair[keep]
            if pp.size == 0:
                return PerilLosses.empty()
            m = p.mortality.draw(ctx.rnd.sparse_uniform("drought.damage", ctx.year, pp, qq))
            frac = np.minimum(m * share * sev_pair, 1.0)
            pos = frac > 0
            pp, qq, frac = pp[pos], qq[pos], frac[pos]
            return PerilLosses(pp.astype(np.int64, copy=False), qq.astype(np.int64, copy=False), frac,
                               np.zeros(pp.size, dtype=np.int64), frac >= self._threshold)
        # one regional drought per path
        dry = ctx.rnd.path_uniform("drought.hazard", ctx.year) < prob
        sev = np.where(dry, 1.0, 0.0)
        if forced:
            dry[:] = True
            sev = np.maximum(sev, forced_sev)
        ctx.drought |= dry
        sev = sev * sev_path
        rows = np.flatnonzero(dry)
        if rows.size == 0:
            return PerilLosses.empty()
        # share, mortality draw, loss and the alive test per pair of the dry paths in one compiled
        # pass; ``age <= young_age_years`` compares in the type numpy would use (float32 for float32
        # ages); the damage uniforms are those of ``sparse_uniform("drought.damage", ...)``
        young_age = p.young_age_years.value
        young_age = np.result_type(age_all.dtype, young_age).type(young_age)
        mortality = p.mortality
        pp, qq, frac, replacing = drought_losses(
            rows, np.ascontiguousarray(sev[rows]), age_all, carbon_all, self._plantation, young_age,
            float(p.established_stand_factor.value), stand_rows_hash(ctx.rnd, "drought.damage", ctx.year, rows),
            parcel_keys_u64(ctx.rnd), float(mortality.low), float(mortality.high - mortality.low),
            float(self._threshold))
        if pp.size == 0:
            return PerilLosses.empty()
        return PerilLosses(pp, qq, frac, np.zeros(pp.size, dtype=np.int64), replacing)


__all__ = ["Drought", "DroughtParams"]
