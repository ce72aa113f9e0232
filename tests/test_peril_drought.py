"""Drought peril: frequency, mortality in young plantations, the flag read by fire, forced droughts."""

from __future__ import annotations

import numpy as np
import pytest

from models.dynamics import ForestSimulator, Modifiers, SimulationSwitches
from models.perils.drought import Drought
from models.perils.fire import Fire
from models.rng import KeyedRandom
from tests.weather_support import context, stand, uniform_portfolio


def test_drought_years_come_at_the_parameter_rate_and_raise_the_fire_flag(params):
    pf = uniform_portfolio(params, 20, age=3)
    dr = Drought(params.perils["drought"], params, pf)
    p = params.perils["drought"].annual_probability.value
    flags = []
    for y in range(20):
        ctx = context(pf, 2000, year=y)
        pl = dr.step(ctx, None)
        flags.append(ctx.drought.copy())
        # every (living) parcel of a drought path loses carbon, no parcel elsewhere
        np.testing.assert_array_equal(np.unique(pl.path_pos), np.flatnonzero(ctx.drought))
    flags = np.concatenate(flags)
    assert abs(flags.mean() - p) < 4 * np.sqrt(p * (1 - p) / flags.size)
    # climate / scenario hazard multiplies the frequency
    ctx = context(pf, 4000, hazard={"drought": 3.0})
    dr.step(ctx, None)
    assert abs(ctx.drought.mean() - 3 * p) < 4 * np.sqrt(3 * p * (1 - 3 * p) / 4000)


def test_mortality_mainly_in_young_plantations(params):
    dp = params.perils["drought"]
    cases = [(3, "plantation", 1.0), (30, "plantation", dp.established_stand_factor.value),
             (3, "natural", dp.established_stand_factor.value)]
    for age, origin, share in cases:
        pf = uniform_portfolio(params, 200, age=age, origin=origin)
        dr = Drought(dp, params, pf)
        pl = dr.step(context(pf, 50, forced={"drought": [{}]}), None)
        assert len(pl) == 50 * 200
        f = pl.loss_fraction
        assert abs(f.mean() - share * dp.mortality.mean) < 4 * f.std() / np.sqrt(f.size)
        assert f.min() >= share * dp.mortality.low - 1e-15 and f.max() <= share * dp.mortality.high + 1e-15
    # 1-5 % in young plantations (domain_parameters.md §4.3)
    assert 0.01 <= dp.mortality.low and dp.mortality.high <= 0.05
    # severity (climate x scenario, and the forced event's own) multiplies the mortality
    pf = uniform_portfolio(params, 200, age=3)
    dr = Drought(dp, params, pf)
    base = dr.step(context(pf, 10, forced={"drought": [{}]}), None).loss_fraction
    worse = dr.step(context(pf, 10, forced={"drought": [{"severity": 2.0}]}, severity={"drought": 1.5}),
                    None).loss_fraction
    np.testing.assert_allclose(worse, 3.0 * base)
    # stands waiting for replanting lose nothing
    pl = dr.step(context(pf, 10, forced={"drought": [{}]}, st=stand(10, pf, age=-1.0)), None)
    assert len(pl) == 0


def test_independent_mode_draws_drought_per_parcel_with_same_marginal(params):
    pf = uniform_portfolio(params, 100, age=3)
    dr = Drought(params.perils["drought"], params, pf)
    p = params.perils["drought"].annual_probability.value
    ctx = context(pf, 400, independent=True)
    pl = dr.step(ctx, None)
    assert ctx.drought.shape == (400, 100)
    assert abs(ctx.drought.mean() - p) < 4 * np.sqrt(p * (1 - p) / ctx.drought.size)
    assert len(pl) == ctx.drought.sum()
    # fire reads the per-parcel flag
    fire = Fire(params.perils["fire"], params, pf)
    prob = fire.burn_probability(ctx)
    dm = params.perils["fire"].drought_multiplier.value
    np.testing.assert_allclose(prob[ctx.drought], dm * prob[~ctx.drought][0])


def test_drought_runs_before_fire_and_raises_its_probability(params):
    assert Drought.order < Fire.order
    pf = uniform_portfolio(params, 30)
    sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("fire", "drought")))
    assert sim.peril_names == ["drought", "fire"]
    fire = Fire(params.perils["fire"], params, pf)
    dr = Drought(params.perils["drought"], params, pf)
    ctx = context(pf, 3, independent=False)
    before = fire.burn_probability(ctx)
    ctx.forced_events = {"drought": [{}]}
    dr.step(ctx, None)
    assert ctx.drought.all()
    after = fire.burn_probability(ctx)
    np.testing.assert_allclose(after, params.perils["fire"].drought_multiplier.value * before)
    # through the simulator: a forced drought year doubles the fire count (fire forced high to count)
    counts = []
    for forced in ({}, {"drought": [{}]}):
        mods = Modifiers(forced_events={0: {"fire": [{"weather_factor": 1000.0}], **forced}})
        sim = ForestSimulator(params, pf, switches=SimulationSwitches(perils=("fire", "drought")), modifiers=mods)
        out = next(sim.run(KeyedRandom(3, np.arange(400), pf.keys), 1))
        counts.append(sum(len(pl) for name, pl, _ in out.losses if name == "fire"))
    # without forcing a share p_d of paths is in drought: E[count ratio] = dm / (1 + p_d (dm - 1))
    dm = params.perils["fire"].drought_multiplier.value
    pd_ = params.perils["drought"].annual_probability.value
    ratio = dm / (1 + pd_ * (dm - 1))
    se = ratio * np.sqrt(1 / counts[0] + 1 / counts[1] + pd_ * (1 - pd_) / 400)
    assert abs(counts[1] / counts[0] - ratio) < 4 * se


def test_forced_drought_validation(params):
    pf = uniform_portfolio(params, 5)
    dr = Drought(params.perils["drought"], params, pf)
    for bad, key in (({"sev": 1.0}, "sev"), ({"severity": 0.0}, "severity"), ({"severity": "x"}, "severity")):
        with pytest.raises(ValueError, match=key):
            dr.step(context(pf, 2, forced={"drought": [bad]}), None)
