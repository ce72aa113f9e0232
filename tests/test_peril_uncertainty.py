"""Epistemic uncertainty of the perils' frequencies and severities (the parameter file's ``peril_uncertainty``).

Each peril's hazard (and the severity of those that declare one) is multiplied by a mean-one lognormal
``exp(s z - s^2/2)`` drawn once per parameter set, so the variance analysis reports the spread it causes
as parameter uncertainty. The tests check the draws against the lognormal's closed-form moments, the
storm counts against the mixed Poisson's mean and variance, the engine's routing of each draw, and the
engine's variance split against its cause.
"""

import math

import numpy as np
import pytest
import yaml

from finance_engine.simulation import simulate
from models.dynamics import ForestSimulator, SimulationSwitches
from models.parameters import load_parameters
from models.perils import YearContext
from models.portfolio import validate_frame
from models.rng import KeyedRandom
from tests.conftest import make_frame
from tests.test_parameters import LISHUI

PERILS = {"fire", "typhoon", "ice_storm", "drought", "pine_wilt"}
SEVERITY_PERILS = {"ice_storm", "pine_wilt"}  # the others draw each event's damage from its range already


@pytest.fixture(scope="module")
def portfolio(params):
    return validate_frame(make_frame(12, seed=4, species=["chinese_fir", "masson_pine"]), params)


def _region(tmp_path, frequency_log_sd: dict[str, float], growth_cv: float | None = None):
    """The Lishui file with some perils' frequency log-sds (and optionally the growth CVs) changed."""
    raw = yaml.safe_load(LISHUI.read_text(encoding="utf-8"))
    for name, s in frequency_log_sd.items():
        raw["peril_uncertainty"][name]["frequency_log_sd"]["value"] = s
    if growth_cv is not None:
        raw["growth_uncertainty"]["asymptote_cv"]["value"] = growth_cv
        raw["growth_uncertainty"]["rate_cv"]["value"] = growth_cv
    p = tmp_path / f"region-{len(list(tmp_path.iterdir()))}.yaml"
    p.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_parameters(p)


def test_multipliers_are_mean_one_lognormals_drawn_once_per_parameter_set(params, portfolio):
    sim = ForestSimulator(params, portfolio, switches=SimulationSwitches(parameter_set_size=4))
    rnd = KeyedRandom(11, np.arange(80_000), portfolio.keys)
    f = sim.frequency_multipliers(rnd)
    g = sim.severity_multipliers(rnd)
    assert set(f) == PERILS and set(g) == SEVERITY_PERILS
    logs = {}
    draws = {**{("frequency", k): v for k, v in f.items()}, **{("severity", k): v for k, v in g.items()}}
    for (kind, name), m in draws.items():
        s = getattr(params.file.peril_uncertainty[name], f"{kind}_log_sd").value
        sets = m.reshape(-1, 4)
        assert (sets == sets[:, :1]).all()  # the paths of a parameter set share the draw
        x = sets[:, 0]  # 20,000 independent draws
        n = x.size
        # E[exp(s z - s^2/2)] = 1; its sd is sqrt(exp(s^2) - 1)
        assert abs(x.mean() - 1.0) < 4 * math.sqrt(math.expm1(s * s) / n)
        logs[kind, name] = np.log(x)
        assert abs(logs[kind, name].mean() + 0.5 * s * s) < 4 * s / math.sqrt(n)
        assert logs[kind, name].std(ddof=1) == pytest.approx(s, rel=4 * math.sqrt(0.5 / n))
    # the perils' draws are independent of one another, a peril's frequency of its severity too
    names = sorted(logs)
    r = np.corrcoef([logs[k] for k in names])
    assert np.abs(r[np.triu_indices(len(names), 1)]).max() < 4 / math.sqrt(20_000)
    # keyed by peril name: a run without some perils gives the others the same draws
    fewer = ForestSimulator(params, portfolio, switches=SimulationSwitches(perils=("pine_wilt", "fire")))
    f2, g2 = fewer.frequency_multipliers(rnd), fewer.severity_multipliers(rnd)
    assert set(f2) == {"fire", "pine_wilt"} and all(np.array_equal(f2[k], f[k]) for k in f2)
    assert set(g2) == {"pine_wilt"} and np.array_equal(g2["pine_wilt"], g["pine_wilt"])
    # and by the parameter set's id: the same draws for paths 400.. whatever the block they come in
    block = KeyedRandom(11, np.arange(400, 480), portfolio.keys)
    part, part_g = sim.frequency_multipliers(block), sim.severity_multipliers(block)
    assert all(np.array_equal(part[k], f[k][400:480]) for k in f)
    assert all(np.array_equal(part_g[k], g[k][400:480]) for k in g)
    off = ForestSimulator(params, portfolio, switches=SimulationSwitches(parameter_uncertainty=False))
    assert off.frequency_multipliers(rnd) == {} and off.severity_multipliers(rnd) == {}


def test_storm_counts_are_the_mixed_poisson_the_file_declares(tmp_path, portfolio):
    s = 1.0
    p = _region(tmp_path, {"typhoon": s})
    pf = validate_frame(make_frame(12, seed=4, species=["chinese_fir", "masson_pine"]), p)
    sim = ForestSimulator(p, pf, switches=SimulationSwitches(perils=("typhoon",), parameter_set_size=1))
    typhoon = sim.perils[0]
    lam = typhoon.params.annual_rate.value
    n_paths = 200_000
    rnd = KeyedRandom(5, np.arange(n_paths), pf.keys)

    def counts(hazard):
        ctx = YearContext(year=0, calendar_year=2026, rnd=rnd, stand=None, drought=np.zeros(n_paths, dtype=bool),
                          hazard_multiplier=hazard)
        return typhoon.storm_counts(ctx).astype(float)

    mixed = counts(sim.frequency_multipliers(rnd))
    plain = counts({})
    # N | M ~ Poisson(lam M), E[M] = 1, Var[M] = e^{s^2} - 1:  E N = lam, Var N = lam + lam^2 (e^{s^2} - 1)
    var_mixed = lam + lam * lam * math.expm1(s * s)
    assert abs(mixed.mean() - lam) < 4 * math.sqrt(var_mixed / n_paths)
    assert mixed.var(ddof=1) == pytest.approx(var_mixed, rel=0.06)
    assert plain.var(ddof=1) == pytest.approx(lam, rel=0.03)  # without it: Poisson, variance = mean


def test_a_perils_frequency_uncertainty_is_reported_as_parameter_uncertainty(tmp_path):
    sw = SimulationSwitches(perils=("typhoon",), growth_shocks=False, parcel_noise=False)
    out = {}
    for s in (0.0, 1.0):
        p = _region(tmp_path, {"typhoon": s}, growth_cv=0.0)  # nothing else is uncertain
        pf = validate_frame(make_frame(30, seed=8, species=["chinese_fir", "masson_pine"]), p)
        r = simulate(pf, p, years=10, paths=2048, seed=3, switches=sw)
        h = r.horizon[(r.horizon.level == "portfolio")].set_index("metric").loc["cumulative_loss_typhoon_tco2e"]
        out[s] = h
    known, unknown = out[0.0], out[1.0]
    # a known rate: the sets differ only by sampling, so the parameter sd estimate is near zero (under
    # the null, msb / msw ~ F(511, 1536): 4 of its sds keep the estimate under about 0.27 sd; seeds 3-5
    # gave 0.06, 0 and 0.17)
    assert known["parameter_sd"] < 0.3 * known["sd"]
    # an uncertain rate: the loss is about proportional to the storms, so the sets' means spread by about
    # mean x sqrt(e - 1) = 1.31 mean; the estimate from 512 sets of a heavy-tailed multiplier is loose
    ratio = unknown["parameter_sd"] / unknown["mean"]
    assert 0.6 * math.sqrt(math.e - 1) < ratio < 1.6 * math.sqrt(math.e - 1)  # seeds 3-5: 0.83-1.24
    # the mean is not shifted by the mean-one multiplier beyond sampling error
    assert abs(unknown["mean"] - known["mean"]) < 4 * math.hypot(unknown["mc_se"], known["mc_se"])


def test_the_engine_multiplies_each_perils_hazard_and_leaves_its_severity(params, portfolio, monkeypatch):
    from models.perils import peril_classes
    from models.perils._weather import per_path

    n_paths = 64
    seen: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for cls in peril_classes().values():
        def step(self, ctx, state, _real=cls.step):
            if ctx.year == 1:
                seen[self.name] = (per_path(ctx.hazard(self.name), n_paths), per_path(ctx.severity(self.name), n_paths))
            return _real(self, ctx, state)

        monkeypatch.setattr(cls, "step", step)

    def year_one(switches):
        seen.clear()
        sim = ForestSimulator(params, portfolio, switches=switches)
        rnd = KeyedRandom(7, np.arange(n_paths), portfolio.keys)
        for _ in sim.run(rnd, 2):
            pass
        return dict(seen), (sim.frequency_multipliers(rnd), sim.severity_multipliers(rnd))

    drawn, (f, g) = year_one(SimulationSwitches())
    known, none = year_one(SimulationSwitches(peril_parameter_uncertainty=False))
    assert set(drawn) == PERILS and none == ({}, {})
    for name in PERILS:
        hazard, severity = drawn[name]
        np.testing.assert_array_equal(hazard, known[name][0] * f[name])  # climate x scenario x the set's draw
        assert np.ptp(hazard) > 0  # it varies across parameter sets
        if name in SEVERITY_PERILS:
            np.testing.assert_array_equal(severity, known[name][1] * g[name])
            assert np.ptp(severity) > 0
        else:
            np.testing.assert_array_equal(severity, known[name][1])
    # the growth parameters' sub-switch leaves the perils' draws alone, and the other way round
    growth_off = ForestSimulator(params, portfolio, switches=SimulationSwitches(growth_parameter_uncertainty=False))
    rnd = KeyedRandom(7, np.arange(n_paths), portfolio.keys)
    assert all(np.array_equal(growth_off.frequency_multipliers(rnd)[k], f[k]) for k in PERILS)
