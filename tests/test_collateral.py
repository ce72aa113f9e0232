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
    # nothing drawn: no parameter sd at all (None), not an estimate of 0, and no interval of it
    assert v.value_today["parameter_sd_cny"] is None
    assert v.value_today["parameter_sd_ci95_low_cny"] is None and v.value_today["parameter_sd_ci95_high_cny"] is None
    # the yield curves are net of background mortality: reporting it leaves the credits, and so the value, as they are
    mort = value_collateral(portfolio, params, terms, paths=64, seed=3, attribution=False, sensitivities=False,
                            price_model_set=_flat_prices(60.0), issuance_risk=IssuanceRisk.none(),
                            switches=dataclasses.replace(CALM, background_mortality=True))
    assert mort.value_today["value_cny"] == v.value_today["value_cny"]


def test_each_drivers_expected_shortfall_carries_its_monte_carlo_error(portfolio, params):
    """A loan larger than its pledge falls short on every path: each driver row's expected shortfall has an
    error, from the spread of the paths' shortfalls over parameter sets (a row with no shortfall has 0)."""
    terms = LoanTerms(amount_cny=3_000_000, term_years=3, interest_rate=0.04, crediting_horizon_years=15)
    v = value_collateral(portfolio, params, terms, paths=64, seed=5, attribution=True, attribution_paths=64,
                         sensitivities=False)
    d = v.drivers.set_index("driver")
    es, se = d["expected_shortfall_cny"], d["expected_shortfall_mc_se_cny"]
    assert (es > 0).all() and (se > 0).all() and (se < es).all()


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
    assert 0 < s["max_loan_cny"] < vt["value_cny"] * 2
    assert np.mean(worst < s["max_loan_cny"]) <= terms.target_shortfall_probability + 1 / 256
    # a looser target lends more, on the same paths
    loose = terms.model_copy(update={"target_shortfall_probability": 0.05})
    s5 = value_collateral(portfolio, params, loose, paths=256, seed=5, attribution=False, sensitivities=False).sizing
    assert s["max_loan_cny"] <= s5["max_loan_cny"] < vt["value_cny"] * 2
    assert np.mean(worst < s5["max_loan_cny"]) <= loose.target_shortfall_probability + 1 / 256
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
    assert vt["parameter_sd_cny"] is not None and vt["parameter_sd_cny"] >= 0
    sens = v.sensitivities.set_index("case")
    assert sens.loc["price -50%", "value_cny"] == pytest.approx(vt["value_cny"] * 0.5, rel=0.02)
    out = v.to_dict()
    assert out["provenance"]["seed"] == 5 and out["provenance"]["paths"] == 256
    assert out["provenance"]["parameter_sha256"] == params.sha256
    # every simulated figure carries its Monte Carlo error: means and probabilities a nested standard error
    # (parameter sets of 4 paths), quantiles an order-statistic interval that brackets them; the mean value
    # at t, an average of fitted values, has the error of the paths' realised outcomes it averages
    from finance_engine.mc_error import mean_se
    from finance_engine.simulation.summary import nested_moments

    for t in range(3):
        x = _realised_at(v, terms, t + 1)
        # least squares with an intercept keeps the mean; the floor at 0 can only raise it
        assert v.paths["value"][t + 1].mean() >= x.mean() * (1 - 1e-12)
        assert v.by_year.value_mc_se_cny[t] == pytest.approx(nested_moments(x[:, None], 4, True)["mc_se"][0], rel=1e-12)
        assert v.by_year.value_mc_se_cny[t] > nested_moments(v.paths["value"][t + 1][:, None], 4, True)["mc_se"][0]
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
        assert r[f"collateral_es{pct}_mc_se_cny"] > 0
    assert 0 <= r["p_value_below_balance_any_time_mc_se"] and 0 <= r["p_any_top_up_call_mc_se"]
    lo, hi = s["max_loan_ci95_cny"]
    assert lo <= s["max_loan_cny"] <= hi
    # the regression's own sampling error (its jackknife) is part of the largest loan's interval where each
    # replicate has 10 paths beyond the quantile: not at 1 % of 256 paths, at 5 %
    assert s["max_loan_mc_se_cny"] is None
    t95 = __import__("finance_engine.value_regression", fromlist=["jackknife_t"]).jackknife_t(10)
    s5 = value_collateral(portfolio, params, terms.model_copy(update={"target_shortfall_probability": 0.05}),
                          paths=256, seed=5, attribution=False, sensitivities=False).sizing
    assert s5["max_loan_mc_se_cny"] > 0
    lo5, hi5 = s5["max_loan_ci95_cny"]
    assert lo5 <= max(s5["max_loan_cny"] - t95 * s5["max_loan_mc_se_cny"], 0.0) + 1e-6
    assert hi5 >= s5["max_loan_cny"] + t95 * s5["max_loan_mc_se_cny"] - 1e-6
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
    # every term is finite (an infinite amount printed a balance of "-" and P(below) 100 %)
    (dict(amount_cny=float("inf"), term_years=3, interest_rate=0.04), None, "amount_cny.*finite"),
    (dict(amount_cny=1e5, term_years=3, interest_rate=0.04, forest_right_mortgage_cny=float("inf")), None,
     "forest_right_mortgage_cny.*finite"),
    # an unknown peril would cover nothing, silently
    (dict(amount_cny=1e5, term_years=3, interest_rate=0.04,
          insurance={"agreed_price_cny_per_tco2e": 60, "covered_perils": ["fire", "earthquake"]}), None,
     r"insurance.covered_perils.*unknown peril\(s\) \['earthquake'\]"),
    (dict(amount_cny=1e5, term_years=3, interest_rate=0.04,
          insurance={"agreed_price_cny_per_tco2e": float("nan")}), None, "agreed_price_cny_per_tco2e"),
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
    from finance_engine.collateral import _credit_view, _mean_holding_factor, _money, _price_paths

    pms = load_price_model()
    terms = LoanTerms(amount_cny=60_000, term_years=3, interest_rate=0.04, crediting_horizon_years=15,
                      price_scenario="price_crash")  # a scenario with a volatility of its own
    v = value_collateral(portfolio, params, terms, paths=256, seed=5, attribution=False)
    sens = v.sensitivities.set_index("case")
    ids = np.arange(256)
    credits = v.paths["credits"]
    # the stock the regressions used is not among the outputs: simulate it again (same seed and paths)
    from finance_engine.collateral import _simulate_physical, select_pledged

    phys = _simulate_physical(select_pledged(portfolio, params, None, None), params, 15, 256, 5,
                              SimulationSwitches(), 1, None)
    stock = phys.stock
    from finance_engine.issuance import load_issuance_risk

    issued = load_issuance_risk().realise(phys.credits, np.arange(256), 5)  # the state the regressions see
    assert np.array_equal(issued.credits, credits)
    base = _money(credits, stock, v.paths["prices"], terms, issued)
    assert np.array_equal(base.value_paths, v.paths["value"])
    for label, lf in (("price -50%", 0.5), ("price -30%", 0.7), ("price +30%", 1.3)):
        explicit = _money(credits, stock, v.paths["prices"] * lf, terms, issued)
        assert sens.loc[label, "value_cny"] == pytest.approx(explicit.pv_total.mean(), rel=1e-12)
    haircut = pms.liquidity_haircut.draws(ids, 5)
    rf = (1 - haircut) * (1 - terms.liquidation_cost_fraction) * (1 + terms.discount_rate) ** -terms.liquidation_time_years
    own = pms.scenario("price_crash").volatility_per_sqrt_year
    for label, volf in (("volatility x0.5", 0.5), ("volatility x1.5", 1.5)):
        scen = dataclasses.replace(pms.scenario("price_crash"), volatility_per_sqrt_year=own * volf)
        pms_v = dataclasses.replace(pms, scenarios={**pms.scenarios, "price_crash": scen})
        # each case at the base's mean price path: the explicit run times the mean-holding factor
        hold = _mean_holding_factor(pms, pms.model(terms.price_model), terms, 15, volf)
        p = _price_paths(pms_v, pms.model(terms.price_model), terms, ids, 15, 5,
                         antithetic=v.provenance["antithetic_prices"], mean_shift=[hold])[0]
        explicit = _money(credits, stock, p, terms, issued)
        below = _credit_view(explicit.value_paths, terms, rf, None, explicit.received_paths)["below"].any(axis=0)
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


def _realised_at(v, terms, t):
    """What each path's flows turn out to be worth at the end of year t: received (accrued) + remaining
    (discounted to t)."""
    cf = v.paths["credits"] * v.paths["prices"][1:]
    H = cf.shape[0]
    disc = (1 + terms.discount_rate) ** (t - np.arange(1, H + 1, dtype=float))
    return (cf * disc[:, None]).sum(axis=0)


def _calibration_z(v, terms, share_lo=None, share_hi=None, chosen=None):
    """Per year of the term: (fitted - realised) / se over a set of paths chosen by what is known at t:
    those whose value at t ranks between the two shares (lowest first), or ``chosen(t)`` (a mask).
    The fitted part of the value at t is the value less the proceeds already received; the realised
    part is what the path's later flows turned out to be worth at t. A conditional expectation equals
    the mean realised value over any set of paths chosen by information at t, so each z is a
    standard normal draw when the regression is right."""
    cf = v.paths["credits"] * v.paths["prices"][1:]  # (H, N) CNY at t = y + 1
    H, n = cf.shape
    r = terms.discount_rate
    out = []
    for t in range(1, terms.term_years + 1):
        disc = (1 + r) ** (t - np.arange(1, H + 1, dtype=float))
        received = (cf[:t] * disc[:t, None]).sum(axis=0)
        realised = (cf[t:] * disc[t:, None]).sum(axis=0)
        fitted = v.paths["value"][t] - received
        if chosen is None:
            order = np.argsort(v.paths["value"][t], kind="stable")
            sel = order[int(share_lo * n):int(share_hi * n)]
        else:
            sel = np.flatnonzero(chosen(t))
        d = fitted[sel] - realised[sel]
        out.append(d.mean() / (d.std(ddof=1) / np.sqrt(sel.size)))
    return np.array(out)


def test_value_at_t_is_the_conditional_expectation_of_the_remaining_flows(params):
    """The value regression is calibrated where the bank looks: among the paths it values lowest (the
    tail the largest safe loan and the LTV calls come from), in the band above them, and at the top.
    The quadratic basis of numbers versions 1-4 fails this on the demo project (z of -5 to -9 for the
    lowest 5 % at 8,192 paths; here -4.4 to -6.1 in the band 5-20 % with 4,096 paths)."""
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    demo = load_portfolio(demo_portfolio_path(), params)
    terms = LoanTerms(amount_cny=300_000, term_years=4, interest_rate=0.045, crediting_horizon_years=20)
    v = value_collateral(demo, params, terms, project_id="LS-LQ-P03", paths=4096, seed=7, attribution=False,
                         sensitivities=False)
    for lo, hi in ((0.0, 0.05), (0.05, 0.2), (0.2, 0.8), (0.95, 1.0)):
        z = _calibration_z(v, terms, lo, hi)
        assert np.abs(z).max() < 4.0, (lo, hi, z)


def test_the_largest_safe_loans_error_matches_its_spread_over_seeds(params):
    """The largest safe loan is a tail quantile of values that a regression fitted on the same paths
    gives, so its error has two parts: the order statistics' and the regression coefficients'. The
    reported error (the delete-a-group jackknife, which sees both) matches the spread of the figure over
    16 seeds, and its interval covers their mean; the order statistics' interval alone is about half as
    wide as it should be (pine wilt off, so that each seed does not simulate the region's landscape)."""
    from finance_engine.mc_error import quantiles_and_cis
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    demo = load_portfolio(demo_portfolio_path(), params)
    terms = LoanTerms(amount_cny=300_000, term_years=4, interest_rate=0.045, crediting_horizon_years=20)
    sw = SimulationSwitches(perils=("fire", "typhoon", "ice_storm", "drought"))
    beta = balance_schedule(terms.model_copy(update={"amount_cny": 1.0}))[:4]
    safe, se, cis, order_se = [], [], [], []
    for seed in range(100, 116):
        v = value_collateral(demo, params, terms, project_id="LS-LQ-P03", paths=10_000, seed=seed, attribution=False,
                             sensitivities=False, switches=sw)
        s = v.sizing
        safe.append(s["max_loan_cny"])
        se.append(s["max_loan_mc_se_cny"])
        cis.append(s["max_loan_ci95_cny"])
        ratio = (v.paths["value"][1:5] / beta[:, None]).min(axis=0)
        lo, hi = quantiles_and_cis(ratio, (terms.target_shortfall_probability,), set_size=4)[1][0]
        order_se.append((hi - lo) / 2 / 1.96)
    safe, cis = np.array(safe), np.array(cis)
    spread = safe.std(ddof=1)  # its own sampling error is about 18 % with 16 seeds
    assert 0.6 < np.mean(se) / spread < 1.6
    assert np.mean((cis[:, 0] <= safe.mean()) & (safe.mean() <= cis[:, 1])) >= 0.8
    assert np.mean(order_se) < 0.75 * spread  # seeds 100-115: 0.49


def test_the_regression_at_t_is_given_the_state_at_t_and_nothing_later(portfolio, params, monkeypatch):
    """The value at the end of year t conditions on the stock and price of year t, the credits pending
    at t, whether the methodology change has arrived by t and the crediting position at t (after the
    first monitoring period): a later year's state would make the values look better informed than a
    lender can be."""
    import finance_engine.collateral as col
    from finance_engine.collateral import _simulate_physical, select_pledged
    from finance_engine.issuance import load_issuance_risk
    from models.carbon import CreditingRules

    seen = []
    real = col.conditional_values

    def spy(ys, stock, prices, **state):
        assert len(prices) == 1  # no sensitivities: the valuation's own prices only
        seen.append((stock.copy(), prices[0].copy(), {k: np.copy(v) for k, v in state.items()
                                                      if k not in ("groups", "n_groups")}))
        return real(ys, stock, prices, **state)

    monkeypatch.setattr(col, "conditional_values", spy)
    terms = LoanTerms(amount_cny=60_000, term_years=7, interest_rate=0.04, crediting_horizon_years=15)
    v = value_collateral(portfolio, params, terms, paths=256, seed=5, attribution=False, sensitivities=False)
    phys = _simulate_physical(select_pledged(portfolio, params, None, None), params, 15, 256, 5,
                              SimulationSwitches(), 1, None)
    issued = load_issuance_risk().realise(phys.credits, np.arange(256), 5)
    rules = CreditingRules.from_parameters(params)
    position = rules.accrued_position(phys.stock, phys.stock0)
    assert len(seen) == 7
    for t, (stock, price, state) in enumerate(seen, start=1):
        assert np.array_equal(stock, phys.stock[t - 1]) and np.array_equal(price, v.paths["prices"][t])
        assert np.array_equal(state["pending"], issued.pending_tco2e[t])
        assert np.array_equal(state["changed"], issued.changed_by(t))
        if t > rules.monitoring_period_years:
            assert np.array_equal(state["position"], position[t])
        else:  # up to the first verification the position is a function of the stock: nothing new
            assert "position" not in state


def test_a_long_loans_value_sees_the_crediting_position(params):
    """After the first verification the next one credits the stock gained since it, less any carried
    deficit: two paths with the same stock can expect different issuance. Without that state a 9-year
    loan's values were off by z = -12 to +15 in the bands of that position; with it they are calibrated."""
    from finance_engine.collateral import _simulate_physical, select_pledged
    from models.carbon import CreditingRules
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    demo = load_portfolio(demo_portfolio_path(), params)
    terms = LoanTerms(amount_cny=300_000, term_years=9, interest_rate=0.045, crediting_horizon_years=30)
    sw = SimulationSwitches(perils=("fire", "typhoon", "ice_storm", "drought"))
    n, seed = 4096, 11
    v = value_collateral(demo, params, terms, project_id="LS-LQ-P03", paths=n, seed=seed, attribution=False,
                         sensitivities=False, switches=sw)
    phys = _simulate_physical(select_pledged(demo, params, None, "LS-LQ-P03"), params, 30, n, seed, sw, 1, None)
    position = CreditingRules.from_parameters(params).accrued_position(phys.stock, phys.stock0)
    for lo, hi in ((0.0, 0.1), (0.9, 1.0)):
        def band(t, lo=lo, hi=hi):
            x = position[t]
            a, b = np.quantile(x, (lo, hi))
            return (x >= a) & (x <= b)
        z = _calibration_z(v, terms, chosen=band)
        assert np.abs(z[5:]).max() < 4.0, (lo, hi, z)  # years 6-9: after the first verification


def test_value_at_t_sees_what_the_lender_knows_of_issuance(params):
    """After the methodology change has arrived every later issuance is cut, and credits verified but
    delayed are known to come: the value at t conditions on both. A regression blind to them (on stock
    and price alone) overvalues the paths past the change (z of +30 to +57 here) and undervalues the
    others (z of -5 to -23)."""
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    demo = load_portfolio(demo_portfolio_path(), params)
    terms = LoanTerms(amount_cny=300_000, term_years=4, interest_rate=0.045, crediting_horizon_years=20)
    iss = IssuanceRisk(verification_failure_probability=0.05, delay_probability=0.3, delay_years=2,
                       methodology_change_rate_per_year=0.15, methodology_change_issuance_factor=0.4)
    n, seed = 4096, 7
    v = value_collateral(demo, params, terms, project_id="LS-LQ-P03", paths=n, seed=seed, attribution=False,
                         sensitivities=False, issuance_risk=iss)
    # the state is keyed by path: the same draws on a stand-in stream of issuance show it
    state = iss.realise(np.ones((terms.crediting_horizon_years, n)), np.arange(n), seed)
    assert 0.1 < state.changed_by(terms.term_years).mean() < 0.9
    subsets = {"past the change": state.changed_by, "before it": lambda t: ~state.changed_by(t),
               "credits pending": lambda t: state.pending_tco2e[t] > 0}
    for name, chosen in subsets.items():
        z = _calibration_z(v, terms, chosen=chosen)
        assert np.abs(z).max() < 4.0, (name, z)
    assert np.abs(_calibration_z(v, terms, 0.0, 0.05)).max() < 4.0


@pytest.mark.parametrize("case", ["normal", "two_values_and_noise", "one_outlier", "collinear", "constant"])
def test_value_regression_equals_the_svd_fit_even_near_degeneracy(case):
    """The fast normal-equation fit and the SVD fit of the whole basis give the same values; near a
    degenerate basis (where squaring it would lose digits) the fit is the SVD one."""
    from finance_engine.value_regression import conditional_value, value_basis

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

    basis = value_basis(x1, x2).T
    svd_fit = basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    assert np.max(np.abs(conditional_value(y, x1, x2)[0] - svd_fit)) <= 1e-10 * np.max(np.abs(y))


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


def test_names_in_the_terms_are_checked_before_the_simulation(portfolio, params, monkeypatch):
    """An unknown price model or price scenario is refused before the engine runs (it failed after it)."""
    import finance_engine.collateral as C

    def no_engine(*a, **k):
        raise AssertionError("the engine ran before the terms were checked")

    monkeypatch.setattr(C, "_simulate_physical", no_engine)
    base = dict(amount_cny=1e5, term_years=3, interest_rate=0.04)
    with pytest.raises(LoanTermsError, match=r"^price_model: .*nope"):
        value_collateral(portfolio, params, {**base, "price_model": "nope"}, paths=32, attribution=False)
    with pytest.raises(LoanTermsError, match=r"^price_scenario: .*moon"):
        value_collateral(portfolio, params, {**base, "price_scenario": "moon"}, paths=32, attribution=False)
    assert C.check_loan_terms(base).price_model == "cea"


def test_runs_progress_weighs_runs_of_unequal_work():
    """Chunks are counted across runs (a run not yet seen counts the reporting run's chunks scaled by the
    weights), the fraction of work is weighted, and a re-plan re-weighs the runs not yet reported."""
    from finance_engine.simulation import Progress, RunsProgress

    seen = []
    runs = RunsProgress(seen.append, weights=[4, 1, 1])
    runs.of(0)(Progress(2, 4, 1.0, 1.0))       # half the first run: 2 of 6 units of work
    assert (seen[-1].chunks_done, seen[-1].chunks_total) == (2, 6)  # 4 + 1 + 1 chunks
    assert seen[-1].fraction == pytest.approx(2 / 6)  # the work's fraction, which the chunks' (1/3) equals here
    assert seen[-1].eta_s == pytest.approx(seen[-1].elapsed_s * (1 - 2 / 6) / (2 / 6))
    runs.of(0)(Progress(4, 4, 2.0, 0.0))
    runs.plan([4, 1, 1, 1])                      # a fourth run, learnt after the first
    runs.of(1)(Progress(1, 1, 0.1, 0.0))
    assert (seen[-1].chunks_done, seen[-1].chunks_total) == (5, 7)
    runs.of(3)(Progress(1, 1, 0.1, 0.0))
    assert (seen[-1].chunks_done, seen[-1].chunks_total) == (7, 7) and seen[-1].eta_s == 0.0
    assert RunsProgress(None, 3).of(1) is None
    with pytest.raises(ValueError):
        RunsProgress(seen.append, weights=[1, 0])
    runs_unequal = RunsProgress(seen.append, weights=[4, 1])
    runs_unequal.of(0)(Progress(1, 1, 1.0, 0.0))  # a one-chunk run of 4/5 of the work: 1 of 2 chunks, 80 %
    assert (seen[-1].chunks_done, seen[-1].chunks_total) == (1, 2) and seen[-1].fraction == pytest.approx(0.8)


def test_a_valuations_progress_covers_its_drivers_and_can_stop_it(portfolio, params):
    """``progress`` sees the valuation's engine run and each driver's rerun as one count rising to its end
    (the drivers at their own paths), the numbers do not depend on it, and raising
    ``SimulationCancelled`` from it stops the valuation."""
    from finance_engine.simulation import SimulationCancelled

    terms = LoanTerms(amount_cny=50_000, term_years=3, interest_rate=0.04, crediting_horizon_years=6)
    kw = dict(paths=256, seed=5, attribution=True, attribution_paths=64, sensitivities=False, chunk_paths=64)
    seen = []
    v = value_collateral(portfolio, params, terms, progress=seen.append, **kw)
    fractions = [p.fraction for p in seen]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    # 4 chunks of the valuation, then one chunk for each driver's run (a peril each, growth, peril
    # parameters, and the base at 64 paths)
    n_perils = sum(1 for d in v.drivers["driver"] if d.startswith("without ") and d[8:] in
                   {"fire", "pine_wilt", "typhoon", "ice_storm", "drought"})
    assert seen[-1].chunks_total == 4 + n_perils + 3 and seen[-1].eta_s == 0.0
    plain = value_collateral(portfolio, params, terms, **kw)
    assert v.to_dict() == plain.to_dict()

    def stop_in_the_drivers(p):
        if p.chunks_done > 4:
            raise SimulationCancelled("asked to stop")
    with pytest.raises(SimulationCancelled):
        value_collateral(portfolio, params, terms, progress=stop_in_the_drivers, **kw)


def test_a_valuation_with_no_parameter_drawn_reports_no_parameter_sd(portfolio, params):
    """Parameter uncertainty on with both its parts off draws nothing: the valuation is that of uncertainty
    off to the bit, and reports no parameter sd (None, not a spurious estimate)."""
    terms = LoanTerms(amount_cny=50_000, term_years=3, interest_rate=0.04, crediting_horizon_years=6)
    kw = dict(paths=128, seed=5, attribution=False, sensitivities=False)
    parts_off = SimulationSwitches(growth_parameter_uncertainty=False, peril_parameter_uncertainty=False)
    a = value_collateral(portfolio, params, terms, switches=parts_off, **kw).value_today
    b = value_collateral(portfolio, params, terms, switches=SimulationSwitches(parameter_uncertainty=False),
                         **kw).value_today
    assert a["parameter_sd_cny"] is None and a == b
    assert a["parameter_sd_ci95_low_cny"] is None and a["parameter_sd_ci95_high_cny"] is None
    with_draws = value_collateral(portfolio, params, terms, **kw).value_today
    assert with_draws["parameter_sd_cny"] is not None
    assert with_draws["parameter_sd_ci95_low_cny"] <= with_draws["parameter_sd_cny"] \
        <= with_draws["parameter_sd_ci95_high_cny"]


def test_the_values_parameter_sd_carries_its_interval_from_the_same_moments(portfolio, params, monkeypatch):
    """value_today.parameter_sd_ci95_low_cny / _high_cny: the MLS interval of the mean squares of the per-path
    present values the value is the mean of (caught on their way to nested_moments), by hand: a wrong array or
    swapped ends fail."""
    import finance_engine.collateral as col
    from finance_engine.simulation.summary import nested_moments, parameter_sd_interval

    seen = []

    def spy(x, set_size, parameter_uncertainty, antithetic=False):
        seen.append((np.array(x, copy=True), set_size, parameter_uncertainty, antithetic))
        return nested_moments(x, set_size, parameter_uncertainty, antithetic=antithetic)

    monkeypatch.setattr(col, "nested_moments", spy)
    terms = LoanTerms(amount_cny=50_000, term_years=3, interest_rate=0.04, crediting_horizon_years=6)
    vt = value_collateral(portfolio, params, terms, paths=128, seed=5, attribution=False,
                          sensitivities=False).value_today
    pv, m, on, anti = next(s for s in seen if s[0].shape == (128, 1))
    assert on and m > 1 and pv.mean() == pytest.approx(vt["value_cny"], rel=1e-12)  # the paths valued
    # antithetic price pairs (the default with an even set size): the variance is split on the pair means,
    # sets of m / 2 of them (a mirrored pair's price shocks cancel in a set's mean, not in single paths' spread)
    assert anti and m % 2 == 0
    units, k = pv[:, 0].reshape(-1, 2).mean(axis=1), m // 2
    g = units.size // k
    sets = units.reshape(g, k)
    msb, msw = k * sets.mean(axis=1).var(ddof=1), sets.var(axis=1, ddof=1).mean()
    lo, hi = (float(v) for v in parameter_sd_interval(np.array(msb), np.array(msw), g, k))
    assert vt["parameter_sd_cny"] == pytest.approx(np.sqrt(max(0.0, (msb - msw) / k)), rel=1e-9, abs=1e-9)
    assert vt["parameter_sd_ci95_low_cny"] == pytest.approx(lo, rel=1e-9, abs=1e-9)
    assert vt["parameter_sd_ci95_high_cny"] == pytest.approx(hi, rel=1e-9)
    assert 0 <= lo <= vt["parameter_sd_cny"] <= hi and lo < hi


def test_antithetic_price_pairs_are_mirror_images_and_keep_the_errors_honest(portfolio, params):
    """By default (an even parameter set size) paths 2k and 2k+1 take opposite price shocks: with a jump-free
    model started at its long-run level, their log deviations are exact mirror images; the provenance says
    so; an odd set size turns it off by default and refuses it asked for; and over seeds the value's reported
    error matches its spread (each pair lies in one parameter set)."""
    pms = load_price_model()
    calm = PriceModelParams(long_run_price_cny_per_tco2e=60.0, mean_reversion_per_year=0.3,
                            volatility_per_sqrt_year=0.25)
    flat = dataclasses.replace(pms, models={"cea": calm}, start_price_cny_per_tco2e=60.0)
    terms = LoanTerms(amount_cny=50_000, term_years=3, interest_rate=0.04, crediting_horizon_years=8)
    kw = dict(paths=64, seed=2, attribution=False, sensitivities=False, price_model_set=flat)
    v = value_collateral(portfolio, params, terms, **kw)
    assert v.provenance["antithetic_prices"] is True
    dev = np.log(v.paths["prices"][1:] / 60.0)
    np.testing.assert_allclose(dev[:, 0::2], -dev[:, 1::2], rtol=1e-12, atol=1e-12)
    odd = SimulationSwitches(parameter_set_size=3)
    assert value_collateral(portfolio, params, terms, switches=odd, **kw).provenance["antithetic_prices"] is False
    with pytest.raises(LoanTermsError, match="even parameter_set_size"):
        value_collateral(portfolio, params, terms, switches=odd, antithetic_prices=True, **kw)
    vals, ses = [], []
    for seed in range(30):
        vt = value_collateral(portfolio, params, terms, paths=128, seed=100 + seed, attribution=False,
                              sensitivities=False).value_today
        vals.append(vt["value_cny"])
        ses.append(vt["mc_se_cny"])
    assert 0.7 < np.std(vals, ddof=1) / np.mean(ses) < 1.4


def test_a_valuation_polls_its_cancel_callback_within_its_engine_run(portfolio, params):
    """``cancel`` reaches the engine: polled while the (single-chunk) valuation run simulates its years, True
    stops it there with ``SimulationCancelled``; never True, the valuation is the plain one."""
    from finance_engine.simulation import SimulationCancelled

    terms = LoanTerms(amount_cny=50_000, term_years=3, interest_rate=0.04, crediting_horizon_years=12)
    kw = dict(paths=2048, seed=5, attribution=False, sensitivities=False)
    polls = []

    def cancel_once_running():  # False before the run's one chunk starts, True when polled inside it
        polls.append(1)
        return len(polls) > 1
    with pytest.raises(SimulationCancelled):
        value_collateral(portfolio, params, terms, cancel=cancel_once_running, **kw)
    assert len(polls) == 2  # the second poll, inside the run (one chunk of 12 years, polled every 10 ms)
    assert value_collateral(portfolio, params, terms, cancel=lambda: False, **kw).to_dict() == \
        value_collateral(portfolio, params, terms, **kw).to_dict()


def test_a_drivers_expected_shortfall_error_includes_the_regressions(params):
    """A driver row's expected shortfall is read from the regression-fitted values, so its error is at least the
    regressions' delete-a-group jackknife error: it matches the spread over seeds (the paths' error alone was
    half of it)."""
    pf = validate_frame(make_frame(20, seed=8, species=["chinese_fir", "masson_pine"]), params)
    terms = dict(amount_cny=400_000, term_years=5, interest_rate=0.045, crediting_horizon_years=15)
    es, ses = [], []
    for seed in range(16):
        d = value_collateral(pf, params, terms, paths=256, seed=seed, attribution=True, attribution_paths=256,
                             sensitivities=False).drivers.set_index("driver").loc["full model"]
        es.append(d["expected_shortfall_cny"])
        ses.append(d["expected_shortfall_mc_se_cny"])
    assert 0.6 < np.std(es, ddof=1) / np.mean(ses) < 1.5
