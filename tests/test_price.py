"""Carbon price model: closed forms, reproducibility, antithetics, correlation hook, scenarios, calibration."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from finance_engine.price import (
    LiquidityHaircut,
    LocalCreditSpread,
    PriceModelError,
    PriceModelParams,
    PriceScenario,
    calibrate_price_model,
    forced_sale_value,
    load_price_model,
    load_reference_prices,
    local_credit_price,
    reference_price_history,
    price_shocks,
    simulate_price_paths,
    simulate_price_paths_by_volatility,
    simulate_scenario_paths,
    simulate_scenario_paths_by_volatility,
    time_grid_years,
)
from finance_engine.price import PRICE_MODEL_PATH, _decay_and_variance


@pytest.fixture(scope="module")
def pm():
    return load_price_model()


def _closed_form(p: PriceModelParams, x0: float, t: float) -> tuple[float, float]:
    """E and Var of ln P_t, written out here from the OU + compound-Poisson formulas."""
    mu, k, s = math.log(p.long_run_price_cny_per_tco2e), p.mean_reversion_per_year, p.volatility_per_sqrt_year
    lam, m, sj = p.jump_intensity_per_year, p.jump_mean_log, p.jump_sd_log
    mean = mu + (x0 - mu) * math.exp(-k * t) + lam * m * (1 - math.exp(-k * t)) / k
    var = (s**2 + lam * (m**2 + sj**2)) * (1 - math.exp(-2 * k * t)) / (2 * k)
    return mean, var


# ---------------------------------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [1, 12])
@pytest.mark.parametrize("jumps", [False, True])
def test_log_price_mean_and_variance_match_closed_form(steps, jumps):
    p = PriceModelParams(75.0, 0.6, 0.30, 0.8 if jumps else 0.0, -0.15, 0.25, steps_per_year=steps)
    n, years, x0 = 40_000, 8, math.log(50.0)
    x = np.log(simulate_price_paths(p, np.arange(n), years, seed=11, start_price_cny_per_tco2e=50.0))
    for t in (1, 3, 8):
        xt = x[:, t * steps]
        mean, var = _closed_form(p, x0, t)
        se_mean = math.sqrt(var / n)
        assert abs(xt.mean() - mean) < 4 * se_mean, (t, xt.mean(), mean)
        d2 = (xt - xt.mean()) ** 2
        se_var = d2.std() / math.sqrt(n)
        assert abs(d2.mean() - var) < 4 * se_var, (t, d2.mean(), var)


def test_zero_volatility_no_jumps_follows_deterministic_curve():
    p = PriceModelParams(80.0, 0.4, 0.0, steps_per_year=4)
    out = simulate_price_paths(p, np.arange(5), 20, seed=3, start_price_cny_per_tco2e=40.0)
    t = time_grid_years(20, 4)
    expected = np.exp(math.log(80.0) + (math.log(40.0) - math.log(80.0)) * np.exp(-0.4 * t))
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-13, atol=0)
    # no mean reversion: constant
    flat = simulate_price_paths(PriceModelParams(80.0, 0.0, 0.0), np.arange(3), 5, seed=3, start_price_cny_per_tco2e=40.0)
    np.testing.assert_allclose(flat, 40.0, rtol=1e-14)


def test_random_walk_limit_variance():
    """kappa = 0: Var[ln P_t] = sigma^2 t."""
    p = PriceModelParams(60.0, 0.0, 0.3)
    x = np.log(simulate_price_paths(p, np.arange(40_000), 4, seed=5, start_price_cny_per_tco2e=60.0))[:, -1]
    d2 = (x - x.mean()) ** 2
    assert abs(d2.mean() - 0.09 * 4) < 4 * d2.std() / math.sqrt(x.size)


# ---------------------------------------------------------------------------------------------------
# reproducibility and antithetics
# ---------------------------------------------------------------------------------------------------
def _reference_paths(p: PriceModelParams, ids: np.ndarray, years: int, seed: int, p0: float, antithetic: bool,
                     f=None, rho: float = 0.0) -> np.ndarray:
    """The OU-jump paths with every draw made for every path (jump times and sizes too, used where a
    path has the jump): the definition the simulator's jump draws for the jumping paths alone must equal."""
    from scipy import stats

    from models.rng import KeyedRandom

    rnd = KeyedRandom(seed, ids // 2 if antithetic else ids, np.empty(0, dtype=np.uint64))
    odd = (ids % 2) == 1
    sign = np.where(odd, -1.0, 1.0) if antithetic else 1.0
    normal = lambda s, t: rnd.path_normal(s, t) * sign  # noqa: E731
    uniform = lambda s, t: np.where(odd, 1.0 - rnd.path_uniform(s, t), rnd.path_uniform(s, t)) if antithetic \
        else rnd.path_uniform(s, t)  # noqa: E731
    dt = 1.0 / p.steps_per_year
    k = p.mean_reversion_per_year
    a, v = _decay_and_variance(k, dt)
    sd = p.volatility_per_sqrt_year * math.sqrt(v)
    lam_dt = p.jump_intensity_per_year * dt
    k_max = int(stats.poisson.ppf(1.0 - 1e-15, lam_dt)) + 2
    cdf = stats.poisson.cdf(np.arange(k_max + 1), lam_dt)
    y = np.full(ids.size, math.log(p0) - p.mu_log)
    out = [y.copy()]
    for step in range(years * p.steps_per_year):
        y *= a
        z = normal("price.diffusion", step)
        if f is not None:
            z = rho * f[:, step] + math.sqrt(max(0.0, 1.0 - rho * rho)) * z
        y += sd * z
        counts = np.minimum(np.searchsorted(cdf, uniform("price.jump_count", step), side="left"), k_max)
        for i in range(int(counts.max(initial=0))):
            tau = uniform(f"price.jump_time.{i}", step)
            size = p.jump_mean_log + p.jump_sd_log * normal(f"price.jump_size.{i}", step)
            y += np.where(counts > i, size * np.exp(-k * dt * (1.0 - tau)), 0.0)
        out.append(y.copy())
    return np.exp(np.column_stack(out) + p.mu_log)


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("rho", [None, -0.4])
def test_jump_draws_for_the_jumping_paths_only_give_the_every_path_definition(antithetic, rho):
    p = PriceModelParams(75.0, 0.5, 0.3, 1.5, -0.1, 0.3, steps_per_year=2)  # several jumps a step
    ids = np.arange(5, 1205)
    f = None if rho is None else np.random.default_rng(3).standard_normal((ids.size, 20))
    got = simulate_price_paths(p, ids, 10, seed=9, start_price_cny_per_tco2e=60.0, antithetic=antithetic,
                               common_factor=f, factor_correlation=rho or 0.0)
    ref = _reference_paths(p, ids, 10, 9, 60.0, antithetic, f, rho or 0.0)
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("rho", [None, -0.4])
def test_paths_at_several_volatilities_equal_separate_runs_bit_for_bit(antithetic, rho):
    p = PriceModelParams(75.0, 0.5, 0.3, 1.5, -0.1, 0.3, steps_per_year=2)
    ids = np.arange(3, 803)
    f = None if rho is None else np.random.default_rng(4).standard_normal((ids.size, 20))
    kw = dict(start_price_cny_per_tco2e=60.0, antithetic=antithetic, common_factor=f, factor_correlation=rho or 0.0)
    factors = (1.0, 0.5, 1.5, 0.0)
    got = simulate_price_paths_by_volatility(p, ids, 10, 9, factors, **kw)
    for g, fac in zip(got, factors):
        one = simulate_price_paths(p.with_(volatility_per_sqrt_year=p.volatility_per_sqrt_year * fac), ids, 10, 9, **kw)
        assert np.array_equal(g, one)
    # and the base run is the every-draw definition (the recursion adds nothing of its own)
    assert np.array_equal(got[0], _reference_paths(p, ids, 10, 9, 60.0, antithetic, f, rho or 0.0))


def test_scenario_paths_at_several_volatilities_scale_the_scenarios_own_volatility(pm):
    own = PriceScenario("vol", "own volatility", "test", "assumption", (2025.0, 2060.0), (80.0, 120.0),
                        volatility_per_sqrt_year=0.45)
    p = pm.model("cea")
    ids = np.arange(500)
    got = simulate_scenario_paths_by_volatility(own, p, ids, 12, 5, (1.0, 0.5), base_year=2025.0,
                                                start_price_cny_per_tco2e=70.0)
    half = dataclasses.replace(own, volatility_per_sqrt_year=0.45 * 0.5)
    assert np.array_equal(got[0], simulate_scenario_paths(own, p, ids, 12, 5, base_year=2025.0,
                                                          start_price_cny_per_tco2e=70.0))
    assert np.array_equal(got[1], simulate_scenario_paths(half, p, ids, 12, 5, base_year=2025.0,
                                                          start_price_cny_per_tco2e=70.0))
    # the model's own volatility plays no part when the scenario sets one
    other = p.with_(volatility_per_sqrt_year=0.05)
    assert np.array_equal(got[0], simulate_scenario_paths(own, other, ids, 12, 5, base_year=2025.0,
                                                          start_price_cny_per_tco2e=70.0))


def test_price_shocks_without_diffusion_refuse_a_volatility():
    p = PriceModelParams(75.0, 0.5, 0.0, 0.3, -0.1, 0.3)
    shocks = price_shocks(p, np.arange(10), 5, 1, False, None, 0.0, diffusion=False)
    assert shocks.diffusion is None and shocks.n_steps == 5
    assert shocks.deviation(np.zeros(10), 0.0).shape == (10, 6)
    with pytest.raises(PriceModelError, match="no diffusion"):
        shocks.deviation(np.zeros(10), 0.2)
    with pytest.raises(PriceModelError, match="volatility_factors"):
        simulate_price_paths_by_volatility(p, np.arange(10), 5, 1, (), start_price_cny_per_tco2e=60.0)
    with pytest.raises(PriceModelError, match="volatility_factors"):
        simulate_price_paths_by_volatility(p, np.arange(10), 5, 1, (1.0, -1.0), start_price_cny_per_tco2e=60.0)
    # a factor that takes the volatility where a separate run would be refused is refused too
    with pytest.raises(PriceModelError, match="outside"):
        simulate_price_paths_by_volatility(p.with_(volatility_per_sqrt_year=4.0), np.arange(10), 5, 1, (1.0, 1.5),
                                           start_price_cny_per_tco2e=60.0)


def test_poisson_counts_equal_the_binary_search_at_any_intensity():
    from scipy import stats

    from finance_engine.price import _poisson_counts

    u = np.random.default_rng(2).random(20_000)
    u[:3] = [1.0, 1e-300, 0.5]
    for lam in (0.01, 0.3, 2.0, 40.0):
        k_max = int(stats.poisson.ppf(1.0 - 1e-15, lam)) + 2
        cdf = stats.poisson.cdf(np.arange(k_max + 1), lam)
        want = np.minimum(np.searchsorted(cdf, u, side="left"), k_max)
        np.testing.assert_array_equal(_poisson_counts(cdf, u, k_max), want)


@pytest.mark.parametrize("antithetic", [False, True])
def test_paths_identical_whatever_the_blocking(antithetic):
    p = PriceModelParams(75.0, 0.5, 0.3, 1.5, -0.1, 0.3, steps_per_year=2)
    ids = np.arange(200)
    full = simulate_price_paths(p, ids, 10, seed=42, start_price_cny_per_tco2e=60.0, antithetic=antithetic)
    blocks = np.vstack([simulate_price_paths(p, b, 10, seed=42, start_price_cny_per_tco2e=60.0, antithetic=antithetic)
                        for b in (ids[:37], ids[37:150], ids[150:])])
    assert np.array_equal(full, blocks)
    perm = np.random.default_rng(0).permutation(200)
    shuffled = simulate_price_paths(p, ids[perm], 10, seed=42, start_price_cny_per_tco2e=60.0, antithetic=antithetic)
    assert np.array_equal(shuffled, full[perm])
    other = simulate_price_paths(p, ids, 10, seed=43, start_price_cny_per_tco2e=60.0, antithetic=antithetic)
    assert not np.array_equal(other, full)


def test_antithetic_pairs_mirror_and_reduce_standard_error():
    p = PriceModelParams(75.0, 0.5, 0.3)
    n, years = 20_000, 5
    anti = simulate_price_paths(p, np.arange(n), years, seed=9, start_price_cny_per_tco2e=60.0, antithetic=True)
    # without jumps the log deviations of a pair are exact mirrors around the deterministic curve
    det = simulate_price_paths(p.with_(volatility_per_sqrt_year=0.0), np.arange(1), years, seed=9,
                               start_price_cny_per_tco2e=60.0)[0]
    np.testing.assert_allclose(np.log(anti[0::2]) + np.log(anti[1::2]), np.broadcast_to(2 * np.log(det), (n // 2, years + 1)), atol=1e-12)
    # SE of the mean price at the horizon: pair means (antithetic) vs independent paths, same path count
    plain = simulate_price_paths(p, np.arange(n), years, seed=9, start_price_cny_per_tco2e=60.0)
    se_plain = plain[:, -1].std(ddof=1) / math.sqrt(n)
    pair_mean = 0.5 * (anti[0::2, -1] + anti[1::2, -1])
    se_anti = pair_mean.std(ddof=1) / math.sqrt(n // 2)
    assert se_anti < 0.5 * se_plain
    # and both estimate the same expectation (lognormal mean from the closed form)
    mean, var = _closed_form(p.with_(jump_intensity_per_year=0.0), math.log(60.0), years)
    expected = math.exp(mean + var / 2)
    assert abs(pair_mean.mean() - expected) < 4 * se_anti
    assert abs(plain[:, -1].mean() - expected) < 4 * se_plain


def test_antithetic_with_jumps_is_still_unbiased():
    p = PriceModelParams(75.0, 0.5, 0.3, 1.0, -0.2, 0.3)
    x = np.log(simulate_price_paths(p, np.arange(40_000), 3, seed=21, start_price_cny_per_tco2e=60.0, antithetic=True))
    mean, _ = _closed_form(p, math.log(60.0), 3)
    pair = 0.5 * (x[0::2, -1] + x[1::2, -1])
    assert abs(pair.mean() - mean) < 4 * pair.std(ddof=1) / math.sqrt(pair.size)


# ---------------------------------------------------------------------------------------------------
# correlation hook
# ---------------------------------------------------------------------------------------------------
def _diffusion_shocks(price: np.ndarray, p: PriceModelParams) -> np.ndarray:
    """Recover z from an OU path without jumps: z = (y' - a y) / sd."""
    dt = 1 / p.steps_per_year
    a = math.exp(-p.mean_reversion_per_year * dt)
    sd = p.volatility_per_sqrt_year * math.sqrt((1 - a * a) / (2 * p.mean_reversion_per_year))
    y = np.log(price) - math.log(p.long_run_price_cny_per_tco2e)
    return (y[:, 1:] - a * y[:, :-1]) / sd


@pytest.mark.parametrize("rho", [0.6, -0.3])
def test_common_factor_correlation(rho):
    p = PriceModelParams(75.0, 0.5, 0.3)
    n, years = 20_000, 3
    f = np.random.default_rng(123).standard_normal((n, years))
    z = _diffusion_shocks(simulate_price_paths(p, np.arange(n), years, seed=4, start_price_cny_per_tco2e=60.0,
                                               common_factor=f, factor_correlation=rho), p)
    for t in range(years):
        r = np.corrcoef(z[:, t], f[:, t])[0, 1]
        assert abs(r - rho) < 4 * (1 - rho**2) / math.sqrt(n)
        assert abs(z[:, t].var() - 1) < 4 * math.sqrt(2 / n)


def test_common_factor_with_zero_correlation_changes_nothing():
    p = PriceModelParams(75.0, 0.5, 0.3, 0.5, 0.0, 0.2)
    f = np.random.default_rng(1).standard_normal((50, 4))
    a = simulate_price_paths(p, np.arange(50), 4, seed=2, start_price_cny_per_tco2e=60.0)
    b = simulate_price_paths(p, np.arange(50), 4, seed=2, start_price_cny_per_tco2e=60.0, common_factor=f,
                             factor_correlation=0.0)
    np.testing.assert_allclose(a, b, rtol=1e-14)


# ---------------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------------
def test_scenario_interpolation(pm):
    d = pm.scenario("delayed_transition")
    assert d.price_at(2028) == pytest.approx(60.0)
    assert d.price_at(2032) == pytest.approx(60.0 + (200.0 - 60.0) * 2 / 5)
    assert d.price_at(2037.5) == pytest.approx(250.0)
    assert d.price_at(2070) == pytest.approx(400.0)  # flat after the last anchor
    with pytest.raises(PriceModelError, match="starts in 2026"):
        d.price_at(2025)
    np.testing.assert_allclose(d.path(2026, 5), [60, 60, 60, 60, 60, 60 + 140 / 5])


def test_shipped_scenarios_have_the_documented_shapes(pm):
    assert set(pm.scenarios) >= {"current_policies", "delayed_transition", "net_zero", "price_crash"}
    cp = pm.scenario("current_policies").path(2026, 20)
    assert np.all((cp >= 40) & (cp <= 60))
    dt = pm.scenario("delayed_transition")
    assert np.allclose(dt.price_at(np.arange(2026, 2031)), dt.price_at(2026)) and dt.price_at(2040) >= 200
    nz = pm.scenario("net_zero")
    assert 130 <= nz.price_at(2030) <= 170 and np.all(np.diff(nz.path(2030, 20)) >= 0)
    cr = pm.scenario("price_crash")
    assert cr.price_at(2027) == pytest.approx(0.5 * cr.price_at(2026))
    assert cr.volatility_per_sqrt_year > pm.model("cea").volatility_per_sqrt_year
    for s in pm.scenarios.values():
        assert s.confidence in ("memory", "assumption") and s.source


def test_scenario_paths_stochastic_around_curve(pm):
    sc = pm.scenario("price_crash")
    p = pm.model("cea").with_(jump_intensity_per_year=0.0, volatility_per_sqrt_year=0.0)
    flat = PriceScenario(**{**sc.__dict__, "volatility_per_sqrt_year": 0.0})
    out = simulate_scenario_paths(flat, p, np.arange(4), 10, seed=1, base_year=2026)
    np.testing.assert_allclose(out, np.broadcast_to(sc.path(2026, 10), out.shape), rtol=1e-14)
    # with the scenario's own volatility: the median log price follows the curve, Var from sigma_scenario
    q = pm.model("cea").with_(jump_intensity_per_year=0.0)
    n = 20_000
    x = np.log(simulate_scenario_paths(sc, q, np.arange(n), 5, seed=8, base_year=2026))
    k, s = q.mean_reversion_per_year, sc.volatility_per_sqrt_year
    var = s**2 * (1 - math.exp(-2 * k * 5)) / (2 * k)
    assert abs(x[:, -1].mean() - math.log(sc.price_at(2031))) < 4 * math.sqrt(var / n)
    d2 = (x[:, -1] - x[:, -1].mean()) ** 2
    assert abs(d2.mean() - var) < 4 * d2.std() / math.sqrt(n)
    # with the model's jumps the log mean follows the documented jump drift (lambda m_J / k)(1 - e^{-kt})
    j = pm.model("cea")
    assert j.jump_intensity_per_year > 0 and j.jump_mean_log < 0
    xj = np.log(simulate_scenario_paths(sc, j, np.arange(n), 5, seed=8, base_year=2026)) - np.log(sc.path(2026, 5))
    drift = j.jump_intensity_per_year * j.jump_mean_log / k * (1 - math.exp(-k * 5))
    assert abs(xj[:, -1].mean() - drift) < 4 * xj[:, -1].std() / math.sqrt(n)
    assert drift < -0.05  # the default downside jumps: paths settle about 6 % below the anchors


# ---------------------------------------------------------------------------------------------------
# spreads and haircuts
# ---------------------------------------------------------------------------------------------------
def test_local_spread_distribution_and_blocking(pm):
    sp = pm.spreads["tanpiao"]
    ids = np.arange(40_000)
    f = sp.factors(ids, seed=5)
    lf = np.log(f)
    assert abs(lf.mean() - math.log(sp.median_factor)) < 4 * sp.log_sd / math.sqrt(ids.size)
    assert abs(lf.std() - sp.log_sd) < 4 * sp.log_sd / math.sqrt(2 * ids.size)
    assert np.array_equal(sp.factors(ids[100:200], seed=5), f[100:200])
    cea = np.full((ids.size, 3), 62.36)
    local = local_credit_price(cea, sp, ids, seed=5)
    np.testing.assert_allclose(local, np.repeat(62.36 * f[:, None], 3, axis=1))
    # against the CEA path the factors multiply (CEA 2025 average 62.36): Liandu 71.6, Sanming 10-15
    assert pm.spreads["carbon_puhui"].median_factor == pytest.approx(71.6 / 62.36, abs=0.01)
    assert pm.spreads["tanpiao"].median_factor == pytest.approx(12.5 / 62.36, abs=0.01)
    # each series starts at its own price: the pilot ETSs at their 2025 average, not the CEA's
    assert pm.start_price("pilot_ets") == pytest.approx(40.36) and pm.start_price("cea") == pm.start_price_cny_per_tco2e


def test_liquidity_haircut(pm):
    h = pm.liquidity_haircut
    assert (h.low, h.central, h.high) == (0.30, 0.40, 0.50)
    d = h.draws(np.arange(10_000), seed=2)
    assert d.min() >= 0.30 and d.max() <= 0.50 and abs(d.mean() - 0.40) < 4 * 0.2 / math.sqrt(12 * 10_000)
    np.testing.assert_allclose(forced_sale_value([100.0, 200.0], 0.4), [60.0, 120.0])
    with pytest.raises(PriceModelError, match="haircut_fraction"):
        forced_sale_value(100.0, 1.2)
    with pytest.raises(PriceModelError, match="low <= central <= high"):
        LiquidityHaircut(0.5, 0.6, 0.4)


# ---------------------------------------------------------------------------------------------------
# data files
# ---------------------------------------------------------------------------------------------------
def test_reference_prices_shipped():
    df = load_reference_prices()
    def get(series, date, kind):
        row = df[(df.series == series) & (df.date == pd.Timestamp(date)) & (df.kind == kind)]
        assert len(row) == 1, (series, date, kind)
        return float(row.price_cny_per_tco2e.iloc[0])
    assert get("CEA", "2021-07-16", "first_trade") == 52.78
    assert get("CEA", "2021-07-16", "open") == 48.0
    assert get("CEA", "2021-12-31", "close") == 54.22
    assert get("CEA", "2023-08-15", "record_high") == 70.07
    assert get("CEA", "2024-12-31", "close") == 97.49
    assert get("CEA", "2023-12-31", "close") == pytest.approx(97.49 / 1.2275, abs=0.005)
    assert get("CEA", "2025-07-01", "annual_average") == 62.36
    assert get("CCER", "2025-07-01", "annual_average") == 70.76
    assert get("LIANDU_ZLTH", "2024-12-31", "trade_average") == pytest.approx(190_000 / 2653, abs=0.05)
    assert get("FUJIAN_FFCER", "2020-12-31", "trade_average") == pytest.approx(20.74e6 / 1.4119e6, abs=0.05)
    assert set(df.confidence) <= {"read", "derived", "memory", "assumption"}
    hist = reference_price_history("CEA")
    assert hist.date.is_monotonic_increasing and hist.date.is_unique
    assert hist.price.iloc[0] == 52.78 and len(hist) == 8


def test_bad_parameters_give_clear_errors():
    with pytest.raises(PriceModelError, match="volatility_per_sqrt_year"):
        PriceModelParams(75.0, 0.5, -0.1)
    with pytest.raises(PriceModelError, match="mean_reversion_per_year"):
        PriceModelParams(75.0, -0.5, 0.3)
    with pytest.raises(PriceModelError, match="long_run_price"):
        PriceModelParams(0.0, 0.5, 0.3)
    with pytest.raises(PriceModelError, match="steps_per_year"):
        PriceModelParams(75.0, 0.5, 0.3, steps_per_year=0)
    with pytest.raises(PriceModelError, match="jump_sd_log"):
        PriceModelParams(75.0, 0.5, 0.3, 1.0, 0.0, -0.2)
    with pytest.raises(PriceModelError, match="finite"):
        PriceModelParams(float("nan"), 0.5, 0.3)
    p = PriceModelParams(75.0, 0.5, 0.3)
    with pytest.raises(PriceModelError, match="path_ids must be integers"):
        simulate_price_paths(p, np.array([0.5, 1.5]), 3, 1, start_price_cny_per_tco2e=60.0)
    with pytest.raises(PriceModelError, match=">= 0"):
        simulate_price_paths(p, np.array([-1, 2]), 3, 1, start_price_cny_per_tco2e=60.0)
    with pytest.raises(PriceModelError, match="start_price"):
        simulate_price_paths(p, np.arange(2), 3, 1, start_price_cny_per_tco2e=-5.0)
    with pytest.raises(PriceModelError, match="shape"):
        simulate_price_paths(p, np.arange(2), 3, 1, start_price_cny_per_tco2e=60.0, common_factor=np.zeros((2, 2)),
                             factor_correlation=0.5)
    with pytest.raises(PriceModelError, match="factor_correlation"):
        simulate_price_paths(p, np.arange(2), 3, 1, start_price_cny_per_tco2e=60.0, common_factor=np.zeros((2, 3)),
                             factor_correlation=1.5)
    with pytest.raises(PriceModelError, match="strictly increasing"):
        PriceScenario("x", "", "finance_doc", "assumption", (2030.0, 2026.0), (60.0, 80.0))
    with pytest.raises(PriceModelError, match="> 0"):
        PriceScenario("x", "", "finance_doc", "assumption", (2026.0, 2030.0), (60.0, -1.0))
    with pytest.raises(PriceModelError, match="median_factor"):
        LocalCreditSpread("x", 0.0, 0.2)


def test_bad_price_model_file_names_field(tmp_path):
    raw = yaml.safe_load(PRICE_MODEL_PATH.read_text(encoding="utf-8"))
    raw["models"]["cea"]["volatility_per_sqrt_year"]["value"] = -0.3
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PriceModelError, match=r"models\.cea.*volatility_per_sqrt_year"):
        load_price_model(bad)
    raw = yaml.safe_load(PRICE_MODEL_PATH.read_text(encoding="utf-8"))
    raw["scenarios"]["net_zero"]["source"] = "no_such_reference"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PriceModelError, match="no_such_reference"):
        load_price_model(bad)
    raw = yaml.safe_load(PRICE_MODEL_PATH.read_text(encoding="utf-8"))
    raw["scenarios"]["net_zero"]["confidence"] = "guess"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PriceModelError, match="scenarios.net_zero.confidence"):
        load_price_model(bad)


# ---------------------------------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------------------------------
def _frame(price: np.ndarray, steps_per_year: int) -> pd.DataFrame:
    seconds = np.round(np.arange(price.size) * 365.25 * 86400 / steps_per_year).astype("int64")
    return pd.DataFrame({"date": np.datetime64("1000-01-01", "s") + seconds.astype("timedelta64[s]"), "price": price})


def test_calibration_recovers_ou_parameters():
    true = PriceModelParams(70.0, 0.8, 0.35)
    path = simulate_price_paths(true, np.array([0]), 1500, seed=101, start_price_cny_per_tco2e=70.0)[0]
    _, rep = calibrate_price_model(_frame(path, 1), jumps=False)
    assert rep.method == "ou_exact_mle" and rep.converged
    truth = {"mu_log": math.log(70.0), "mean_reversion_per_year": 0.8, "volatility_per_sqrt_year": 0.35}
    for k, v in truth.items():
        se = rep.standard_errors[k]
        assert 0 < se < 0.2 * max(abs(v), 1.0), (k, se)
        assert abs(rep.estimates[k] - v) < 4 * se, (k, rep.estimates[k], v, se)
    # asymptotic SE of the AR(1) coefficient b = e^{-k}: sqrt((1 - b^2)/n), so se(k) ~ sqrt((1-b^2)/n)/b
    b = math.exp(-0.8)
    assert rep.standard_errors["mean_reversion_per_year"] == pytest.approx(math.sqrt((1 - b * b) / 1500) / b, rel=0.25)


def test_calibration_recovers_jump_parameters():
    true = PriceModelParams(70.0, 1.0, 0.3, 2.0, -0.05, 0.2, steps_per_year=52)
    path = simulate_price_paths(true, np.array([0]), 150, seed=7, start_price_cny_per_tco2e=70.0)[0]
    params, rep = calibrate_price_model(_frame(path, 52))
    assert rep.method == "ou_jump_mle" and rep.converged
    truth = {"mu_log": math.log(70.0), "mean_reversion_per_year": 1.0, "volatility_per_sqrt_year": 0.3,
             "jump_intensity_per_year": 2.0, "jump_mean_log": -0.05, "jump_sd_log": 0.2}
    for k, v in truth.items():
        se = rep.standard_errors[k]
        assert np.isfinite(se) and se < 0.25 * max(abs(v), 0.2), (k, se)
        assert abs(rep.estimates[k] - v) < 4 * se, (k, rep.estimates[k], v, se)
    assert params.jump_intensity_per_year == pytest.approx(rep.estimates["jump_intensity_per_year"])


def test_calibration_on_shipped_cea_points_reports_wide_uncertainty():
    hist = reference_price_history("CEA")
    params, rep = calibrate_price_model(hist)
    assert rep.method == "ou_exact_mle" and rep.n_observations == 8
    assert any("few points" in n for n in rep.notes) and any("without jumps" in n for n in rep.notes)
    assert params.jump_intensity_per_year == 0.0
    # honest uncertainty: kappa is essentially unidentified from 7 transitions
    se_k = rep.standard_errors["mean_reversion_per_year"]
    assert not np.isfinite(se_k) or se_k > 0.5 * rep.estimates["mean_reversion_per_year"]
    assert "few points" in rep.to_text()


def test_calibration_input_errors():
    with pytest.raises(PriceModelError, match="at least 4"):
        calibrate_price_model(pd.DataFrame({"date": ["2021-01-01", "2022-01-01"], "price": [50.0, 60.0]}))
    with pytest.raises(PriceModelError, match="duplicate dates"):
        calibrate_price_model(pd.DataFrame({"date": ["2021-01-01"] * 5, "price": [50.0] * 5}))
    with pytest.raises(PriceModelError, match="columns"):
        calibrate_price_model(pd.DataFrame({"when": ["2021-01-01"], "p": [1.0]}))
    with pytest.raises(PriceModelError, match="> 0"):
        calibrate_price_model(pd.DataFrame({"date": pd.date_range("2021-01-01", periods=5), "price": [1, 2, 0, 3, 4.0]}))
    with pytest.raises(PriceModelError, match="jump model"):
        calibrate_price_model(reference_price_history("CEA"), jumps=True)


def test_a_broken_price_file_names_the_file(tmp_path):
    p = tmp_path / "prices.yaml"
    p.write_text("models: {cea: [\n", encoding="utf-8")
    with pytest.raises(PriceModelError, match="prices.yaml"):
        load_price_model(p)
