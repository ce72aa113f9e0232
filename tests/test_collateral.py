"""Carbon-pledge collateral valuation: closed forms and bad terms."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from finance_engine.collateral import LoanTerms, LoanTermsError, balance_schedule, value_collateral
from finance_engine.issuance import IssuanceRisk
from finance_engine.price import PriceModelParams, load_price_model
from models.carbon import carbon_factors
from models.dynamics import SimulationSwitches
from models.growth import chapman_richards_volume
from models.portfolio import validate_frame
from tests.conftest import make_frame

CALM = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False,
                          background_mortality=False, perils=())


@pytest.fixture(scope="module")
def portfolio(params):
    return validate_frame(make_frame(30, seed=8, species=["chinese_fir", "masson_pine"]), params)


def _flat_prices(price=60.0):
    pms = load_price_model()
    calm = PriceModelParams(long_run_price_cny_per_tco2e=price, mean_reversion_per_year=0.5,
                            volatility_per_sqrt_year=0.0)
    return dataclasses.replace(pms, models={"cea": calm}, start_price_cny_per_tco2e=price)


def test_deterministic_value_equals_analytic_present_value(portfolio, params):
    terms = LoanTerms(amount_cny=100_000, term_years=5, interest_rate=0.04, discount_rate=0.05,
                      crediting_horizon_years=20)
    v = value_collateral(portfolio, params, terms, paths=64, seed=3, attribution=False, sensitivities=False,
                         price_model_set=_flat_prices(60.0), issuance_risk=IssuanceRisk.none(), switches=CALM)
    # analytic: stock on the yield curve, credits every 5 years = gain x (1 - baseline - leakage) x (1 - buffer)
    t = params.tables
    sc, site = portfolio.species_code, portfolio.site_code
    a = t.asymptote_m3_per_ha[sc, site]
    k, c = t.growth_rate_per_year[sc], t.growth_shape[sc]
    f = carbon_factors(params, sc, "bef")
    cr = params.file.crediting
    keep = (1 - cr.baseline_removal_fraction.value - cr.leakage_fraction.value) * (1 - cr.buffer_fraction.value)
    stock = lambda yrs: (f.tc_per_ha(chapman_richards_volume(portfolio.age_years + yrs, a, k, c))
                         * portfolio.area_ha).sum() * 44 / 12
    pv = 0.0
    for end in (5, 10, 15, 20):
        credits = (stock(end) - stock(end - 5)) * keep
        pv += credits * 60.0 / 1.05**end
    assert v.value_today["value_cny"] == pytest.approx(pv, rel=1e-9)
    assert v.value_today["mc_se_cny"] == pytest.approx(0.0, abs=1e-6 * pv)


def test_balance_schedules():
    base = dict(amount_cny=1000.0, term_years=4, interest_rate=0.05)
    assert list(balance_schedule(LoanTerms(**base, amortisation="bullet"))) == [1000, 1000, 1000, 1000, 0]
    assert list(balance_schedule(LoanTerms(**base, amortisation="linear"))) == [1000, 750, 500, 250, 0]
    b = balance_schedule(LoanTerms(**base, amortisation="annuity"))
    pay = 1000 * 0.05 / (1 - 1.05**-4)
    assert b[1] == pytest.approx(1000 * 1.05 - pay)
    assert b[-1] == 0


def test_full_model_outputs_are_consistent(portfolio, params):
    terms = LoanTerms(amount_cny=60_000, term_years=3, interest_rate=0.04, borrower_pd=0.02,
                      forest_right_mortgage_cny=20_000, crediting_horizon_years=15,
                      insurance={"agreed_price_cny_per_tco2e": 60.0})
    v = value_collateral(portfolio, params, terms, paths=256, seed=5, attribution=True, attribution_paths=128)
    vt = v.value_today
    assert vt["value_cny"] > 0 and vt["mc_se_cny"] > 0
    lo, hi = vt["ci95_cny"]
    assert lo < vt["value_cny"] < hi
    assert len(v.by_year) == 3
    assert (v.by_year.value_p05_cny <= v.by_year.value_p50_cny).all()
    assert (v.by_year.value_p50_cny <= v.by_year.value_p95_cny).all()
    # the largest safe loan is the target quantile of the worst value-to-balance ratio
    beta = balance_schedule(LoanTerms(**{**terms.model_dump(), "amount_cny": 1.0}))[:3]
    worst = (v.paths["value"][1:4] / beta[:, None]).min(axis=0)
    s = v.sizing
    # at the 1 % default the quantile lands on the 4 paths of 256 whose collateral an ice storm leaves
    # worthless: the largest safe loan is 0
    assert np.mean(worst <= 0) > terms.target_shortfall_probability and s["max_loan_cny"] == 0.0
    loose = terms.model_copy(update={"target_shortfall_probability": 0.05})
    s = value_collateral(portfolio, params, loose, paths=256, seed=5, attribution=False, sensitivities=False).sizing
    assert 0 < s["max_loan_cny"] < vt["value_cny"] * 2
    assert np.mean(worst < s["max_loan_cny"]) <= loose.target_shortfall_probability + 1 / 256
    assert v.credit["irb_capital_k"] > 0 and v.credit["firb_lgd_unsecured"] == pytest.approx(0.40)
    assert v.credit["firb_lgd_carbon_as_other_physical"] < 0.40
    sec = v.security
    assert sec["carbon_share_of_security"] == pytest.approx(vt["value_cny"] / (vt["value_cny"] + 20_000))
    d = v.drivers.set_index("driver")
    # common random numbers: without a peril or issuance risk the pledge is worth at least as much
    assert d.loc["without issuance risk", "value_effect_cny"] > 0
    # the parameters' two parts are separate drivers: growth curves (with the growth noise) and peril rates
    assert {"without growth uncertainty", "without peril-parameter uncertainty"} <= set(d.index)
    assert np.isfinite(d.loc["without peril-parameter uncertainty", ["value_effect_cny", "value_effect_mc_se_cny"]]).all()
    assert d.loc["without assigned insurance", "expected_shortfall_cny"] >= d.loc["full model", "expected_shortfall_cny"]
    sens = v.sensitivities.set_index("case")
    assert sens.loc["price -50%", "value_cny"] == pytest.approx(vt["value_cny"] * 0.5, rel=0.02)
    out = v.to_dict()
    assert out["provenance"]["seed"] == 5 and out["provenance"]["paths"] == 256
    assert out["provenance"]["parameter_sha256"] == params.sha256
    # every simulated figure carries its Monte Carlo error: means and probabilities a nested standard error
    # (parameter sets of 4 paths), quantiles an order-statistic interval that brackets them
    from finance_engine.mc_error import mean_se
    from finance_engine.simulation.summary import nested_moments

    for t in range(3):
        x = v.paths["value"][t + 1]
        assert v.by_year.value_mc_se_cny[t] == pytest.approx(nested_moments(x[:, None], 4, True)["mc_se"][0], rel=1e-12)
        for k in (5, 50, 95):
            assert v.by_year[f"value_p{k:02d}_ci95_low_cny"][t] <= v.by_year[f"value_p{k:02d}_cny"][t] \
                <= v.by_year[f"value_p{k:02d}_ci95_high_cny"][t]
    c = vt["credits_over_horizon_tco2e"]
    assert c["mc_se"] == pytest.approx(mean_se(v.paths["credits"].sum(axis=0), 4), rel=1e-12)
    for k in (10, 50, 90):
        assert c[f"p{k}_ci95"][0] <= c[f"p{k}"] <= c[f"p{k}_ci95"][1]
    r = v.risk
    for pct in (95, 99):
        lo, hi = r[f"collateral_var{pct}_ci95_cny"]
        assert lo <= r[f"collateral_var{pct}_cny"] <= hi
        # the 1 % tail lies wholly on the value's floor of 0 (the whole value lost): its error is that of the
        # count of paths on the floor, not the asymptotic formula's 0
        assert r[f"collateral_es{pct}_mc_se_cny"] > 0
    assert 0 <= r["p_value_below_balance_any_time_mc_se"] and 0 <= r["p_any_top_up_call_mc_se"]
    lo, hi = s["max_loan_ci95_cny"]
    assert lo <= s["max_loan_cny"] <= hi
    # driver effects are paired (common random numbers) differences: their errors are far below the level's
    assert 0 < d.loc["without issuance risk", "value_effect_mc_se_cny"] < vt["mc_se_cny"]
    assert (sens["change_mc_se_cny"] >= 0).all()


def test_tail_mean_error_matches_the_spread_of_repeated_samples():
    """The asymptotic error of the empirical lower tail mean (Brazauskas et al. 2008) against the spread of
    the estimator over 400 independent normal samples of 2,000."""
    from finance_engine.mc_error import tail_mean_se

    rng = np.random.default_rng(7)
    samples = rng.normal(size=(400, 2000))
    es = np.array([x[x <= np.quantile(x, 0.05)].mean() for x in samples])
    se = np.array([tail_mean_se(x, 0.05, upper=False) for x in samples])
    # the upper tail of -x is the lower tail of x: the same error
    assert tail_mean_se(-samples[0], 0.95) == pytest.approx(se[0], rel=1e-9)
    # 400 replicates estimate the spread to about 3.5 %
    assert es.std(ddof=1) == pytest.approx(se.mean(), rel=0.12)


@pytest.mark.parametrize("terms,parcels,msg", [
    (dict(amount_cny=-5, term_years=3, interest_rate=0.04), None, "amount_cny"),
    (dict(amount_cny=1e5, term_years=40, interest_rate=0.04, crediting_horizon_years=30), None, "beyond the crediting horizon"),
    (dict(amount_cny=1e5, term_years=3, interest_rate=0.04, pledge_rate=0.7, ltv_trigger=0.5), None, "below the pledge_rate"),
    (dict(amount_cny=1e5, term_years=3, interest_rate=0.04), ["NOPE-1"], "not in the portfolio"),
    (dict(amount_cny=1e5, term_years=3, interest_rate=0.04, guarantee_cny=-1), None, "guarantee_cny"),
])
def test_bad_terms_get_clear_errors(portfolio, params, terms, parcels, msg):
    with pytest.raises(LoanTermsError, match=msg):
        value_collateral(portfolio, params, terms, parcel_ids=parcels, paths=32, attribution=False,
                         sensitivities=False)


def test_price_scenario_and_loss_correlation(portfolio, params):
    base = dict(amount_cny=60_000, term_years=3, interest_rate=0.04, crediting_horizon_years=15)
    kw = dict(paths=256, seed=5, attribution=False, sensitivities=False)
    plain = value_collateral(portfolio, params, base, **kw)
    crash = value_collateral(portfolio, params, {**base, "price_scenario": "price_crash"}, **kw)
    assert crash.value_today["value_cny"] < plain.value_today["value_cny"]
    from scipy.stats import spearmanr

    def mean_rank_corr(v):
        dlogp = np.diff(np.log(v.paths["prices"]), axis=0)   # (H, N): price change during year y
        loss = v.paths["loss_tco2e"]                          # (H, N)
        return np.mean([spearmanr(dlogp[y], loss[y]).statistic for y in range(loss.shape[0]) if loss[y].std() > 0])

    corr = value_collateral(portfolio, params, {**base, "price_loss_correlation": -0.8}, **kw)
    assert mean_rank_corr(corr) < -0.4          # prices fall in the paths' bad loss years
    assert abs(mean_rank_corr(plain)) < 0.1     # and are independent of losses by default
    with pytest.raises(LoanTermsError, match="price_loss_correlation"):
        value_collateral(portfolio, params, {**base, "price_loss_correlation": 2.0}, **kw)


def test_sensitivities_equal_their_explicit_revaluations(portfolio, params):
    """Level cases scale the base money (prices, flows, fits and values are linear in the price level);
    volatility cases re-run the recursion on the base draws. Both equal a revaluation from scratch."""
    from finance_engine.collateral import _credit_view, _money, _price_paths

    pms = load_price_model()
    terms = LoanTerms(amount_cny=60_000, term_years=3, interest_rate=0.04, crediting_horizon_years=15,
                      price_scenario="price_crash")  # a scenario with a volatility of its own
    v = value_collateral(portfolio, params, terms, paths=256, seed=5, attribution=False)
    sens = v.sensitivities.set_index("case")
    ids = np.arange(256)
    credits = v.paths["credits"]
    # the stock the regressions used is not among the outputs: simulate it again (same seed and paths)
    from finance_engine.collateral import _simulate_physical, select_pledged

    stock = _simulate_physical(select_pledged(portfolio, params, None, None), params, 15, 256, 5,
                               SimulationSwitches(), 1, None).stock
    base = _money(credits, stock, v.paths["prices"], terms)
    assert np.array_equal(base.value_paths, v.paths["value"])
    for label, lf in (("price -50%", 0.5), ("price -30%", 0.7), ("price +30%", 1.3)):
        explicit = _money(credits, stock, v.paths["prices"] * lf, terms)
        assert sens.loc[label, "value_cny"] == pytest.approx(explicit.pv_total.mean(), rel=1e-12)
    haircut = pms.liquidity_haircut.draws(ids, 5)
    rf = (1 - haircut) * (1 - terms.liquidation_cost_fraction) * (1 + terms.discount_rate) ** -terms.liquidation_time_years
    own = pms.scenario("price_crash").volatility_per_sqrt_year
    for label, volf in (("volatility x0.5", 0.5), ("volatility x1.5", 1.5)):
        scen = dataclasses.replace(pms.scenario("price_crash"), volatility_per_sqrt_year=own * volf)
        pms_v = dataclasses.replace(pms, scenarios={**pms.scenarios, "price_crash": scen})
        p = _price_paths(pms_v, pms.model(terms.price_model), terms, ids, 15, 5)[0]
        explicit = _money(credits, stock, p, terms)
        below = _credit_view(explicit.value_paths, terms, rf)["below"].any(axis=0)
        assert sens.loc[label, "value_cny"] == pytest.approx(explicit.pv_total.mean(), rel=1e-12)
        assert sens.loc[label, "p_value_below_balance_any_time"] == pytest.approx(below.mean(), abs=1e-12)
        # the scenario's own volatility is what the case scales: the value moves
        assert sens.loc[label, "change_cny"] != 0.0


def test_calm_price_driver_follows_a_scenarios_curve(params):
    """'Without price volatility and jumps' runs the price at zero volatility, even a scenario's own."""
    from finance_engine.collateral import _price_paths

    pms = load_price_model()
    terms = LoanTerms(amount_cny=60_000, term_years=3, interest_rate=0.04, crediting_horizon_years=15,
                      price_scenario="price_crash")
    calm = dataclasses.replace(pms.model(terms.price_model), jump_intensity_per_year=0.0)
    p = _price_paths(pms, calm, terms, np.arange(64), 15, 5, None, (0.0,))[0]
    curve = pms.scenario("price_crash").path(pms.base_year, 15, 1)
    y0 = np.log(pms.start_price_cny_per_tco2e / curve[0])
    a = np.exp(-calm.mean_reversion_per_year)
    expected = curve * np.exp(y0 * a ** np.arange(16))  # the start's deviation decays onto the curve
    assert np.allclose(p, expected[:, None], rtol=1e-12)
    assert np.ptp(p, axis=1).max() == 0.0


def test_single_peril_expected_loss_matches_analytic(tmp_path):
    """One peril of known annual probability: the expected loss in the pledge equals sum_i p_i x C_i."""
    import yaml

    from models.parameters import load_parameters

    src = Path(__file__).resolve().parent.parent / "models" / "parameters" / "lishui.yaml"
    raw = yaml.safe_load(src.read_text(encoding="utf-8"))
    fire = raw["perils"]["fire"]
    fire["base_burn_probability_per_year"]["value"] = 0.02
    fire["burned_area_fraction"].update(low=1.0, high=1.0)
    for cls in fire["loss_given_burn"].values():
        cls.update(low=1.0, high=1.0)          # a burn destroys the stand: loss = all its carbon
    p_file = tmp_path / "fire_only.yaml"
    p_file.write_text(yaml.safe_dump(raw, allow_unicode=True, sort_keys=False), encoding="utf-8")
    params = load_parameters(p_file)
    df = make_frame(30, seed=11, species=["chinese_fir", "masson_pine", "evergreen_broadleaf"])
    df["age_years"] = np.maximum(df["age_years"], 12)   # no young-stand factor
    pf = validate_frame(df, params)
    sw = SimulationSwitches(parameter_uncertainty=False, growth_shocks=False, parcel_noise=False,
                            background_mortality=False, independent=True, perils=("fire",))
    terms = LoanTerms(amount_cny=10_000, term_years=1, interest_rate=0.04, crediting_horizon_years=1)
    paths = 4000
    v = value_collateral(pf, params, terms, paths=paths, seed=21, attribution=False, sensitivities=False,
                         switches=sw)
    # analytic: p_i = base x flammability x protection (weather mean 1 in independent mode); the loss
    # falls after the year's growth, so it takes the carbon the stand has after one year
    from models.dynamics import ForestSimulator

    sim = ForestSimulator(params, pf, switches=sw)
    c1 = sim.initial_carbon_tc_per_ha() + sim.expected_annual_sink_tc_per_ha()
    loss_i = c1 * pf.area_ha * 44 / 12
    t = params.tables
    prot = np.array([params.file.management["fire_protection"][k].value for k in ("none", "basic", "enhanced")])
    p_i = 0.02 * t.flammability[pf.species_code] * prot[pf.fire_protection_code]
    expected = float((p_i * loss_i).sum())
    se = float(np.sqrt((p_i * (1 - p_i) * loss_i**2).sum() / paths))
    got = v.value_today["expected_stock_loss_during_term_tco2e"]["fire"]
    assert abs(got - expected) < 4 * se, (got, expected, se)


@pytest.mark.parametrize("case", ["normal", "two_values_and_noise", "one_outlier", "collinear", "constant"])
def test_value_regression_equals_the_svd_fit_even_near_degeneracy(case):
    """The fast normal-equation fit and the SVD fit of the whole basis give the same values; near a
    degenerate basis (where squaring it would lose digits) the fit is the SVD one."""
    from finance_engine.collateral import _regress_conditional

    rng = np.random.default_rng(9)
    n = 5000
    x1, x2 = rng.lognormal(size=n), rng.lognormal(size=n)
    if case == "two_values_and_noise":
        x1 = np.where(rng.random(n) < 0.5, 1.0, 2.0) + 1e-8 * rng.random(n)
    elif case == "one_outlier":
        x1 = np.r_[np.ones(n - 1), 5.0]
    elif case == "collinear":
        x2 = x1 * (1 + 1e-7 * rng.random(n))
    elif case == "constant":
        x2 = np.ones(n)
    y = 3 * x1 + x2 + x1 * x2 + rng.random(n)

    def z(v):
        return (v - v.mean()) / v.std() if v.std() > 0 else np.zeros_like(v)

    a, b = z(x1), z(x2)
    basis = np.column_stack([np.ones(n), a, b, a * a, b * b, a * b])
    svd_fit = basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    assert np.max(np.abs(_regress_conditional(y, x1, x2) - svd_fit)) <= 1e-10 * np.max(np.abs(y))


def test_a_loan_too_small_for_threads_runs_as_one_chunk_on_one_with_the_same_numbers(portfolio, params, monkeypatch):
    import finance_engine.collateral as col
    import finance_engine.simulation.engine as engine
    from finance_engine.simulation import useful_threads

    # threads pay from a crossover of about 120,000 parcel-paths a thread; the bound is 150,000 a thread
    assert useful_threads(10_000, 47, 2) == 2 and useful_threads(5_000, 47, 2) == 1
    assert useful_threads(1_000, 200_000, 2) == 2 and useful_threads(10_000, 47, 1) == 1
    assert useful_threads(10**6, 1, 8) == 6 and useful_threads(1, 0, 4) == 1
    runs = []
    real = col.simulate

    def observe(*a, **k):
        runs.append((k["workers"], k["scheduler"], k["chunk_paths"]))
        return real(*a, **k)

    monkeypatch.setattr(col, "simulate", observe)
    terms = dict(amount_cny=200_000, term_years=3, interest_rate=0.045)
    small = value_collateral(portfolio, params, terms, paths=256, seed=8, workers=2)
    assert runs[-1] == (1, None, 256)  # 256 paths x 30 parcels: one chunk, this thread
    monkeypatch.setattr(engine, "MIN_PARCEL_PATHS_PER_THREAD", 256)
    threaded = value_collateral(portfolio, params, terms, paths=256, seed=8, workers=2)
    assert runs[-1] == (2, "threads", 128)
    explicit = value_collateral(portfolio, params, terms, paths=256, seed=8, workers=2, chunk_paths=64)
    assert runs[-1] == (2, "threads", 64)  # a caller's chunks are its own choice
    assert small.to_dict() == threaded.to_dict() == explicit.to_dict()
