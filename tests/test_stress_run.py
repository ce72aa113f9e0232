"""Stress run: instruments on common random numbers, accounts that add up, reverse search, buffer, NPRT."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finance_engine.accounts import KG_PER_T
from finance_engine.stress.accounts import scenario_accounts
from finance_engine.stress.buffer import (BufferInputError, buffer_adequacy, nprt_frequency_class, nprt_loss_class,
                                          nprt_ls_score)
from finance_engine.stress.registry import RegistryError, bind_registry, parse_registry
from finance_engine.stress.reverse import ReverseStressError, find_threshold, reverse_stress_test
from finance_engine.stress.run import StressSettings, evaluate_instruments, run_scenario, run_stress_test
from finance_engine.simulation import simulate
from finance_engine.stress.scenarios import load_scenario
from models.portfolio import LEVELS, validate_frame
from tests.conftest import make_frame


@pytest.fixture(scope="module")
def pf(params):
    return validate_frame(make_frame(120, seed=7), params, source="stress-run")


def _registry(pf):
    ids = list(pf.parcel_id)
    return parse_registry({
        "loans": [{"id": "A", "parcel_ids": ids[:30], "terms": {"amount_cny": 150000, "term_years": 3,
                                                                 "interest_rate": 0.04, "borrower_pd": 0.02,
                                                                 "crediting_horizon_years": 6}},
                  {"id": "B", "parcel_ids": ids[30:50], "terms": {"amount_cny": 80000, "term_years": 2,
                                                                   "interest_rate": 0.04,
                                                                   "crediting_horizon_years": 6}}],
        "policies": [{"id": "P", "loan": "A", "agreed_price_cny_per_tco2e": 60, "annual_premium_cny": 3000,
                      "annual_limit_cny": 100000}],
        "insurer": {"capital_cny": 50000, "quota_share_cession": 0.2},
    })


# ---- accounts ---------------------------------------------------------------------------------
def test_accounts_add_up_exactly_at_every_level(pf, params):
    acc = scenario_accounts(pf, params, "severe_fire_weather", StressSettings(years=2, paths=32, seed=3))
    t = acc.table
    ints = [c for c in t.columns if c.endswith(("_kg", "_fen"))]
    assert ints and all(t[c].dtype == np.int64 for c in ints)
    for depth in range(1, len(LEVELS)):
        parent, child = LEVELS[depth - 1], LEVELS[depth]
        keys = list(LEVELS[:depth])
        kids = t[t.level == child].groupby(keys)[ints].sum()
        par = t[t.level == parent].set_index(keys)[ints]
        assert (kids.loc[par.index] == par).all().all(), f"{child} does not sum to {parent}"
    top = t[t.level == "portfolio"][ints].iloc[0]
    assert (t[t.level == "village"][ints].sum() == top).all()
    tree = acc.tree()
    assert tree["children"][0]["name"] == "浙江省"
    # the exact sums stay within rounding (0.5 kg per village) of the engine's own portfolio mean, from
    # a run on the same draws that aggregates straight to the portfolio (a different summation path)
    n_v = int((t.level == "village").sum())
    scn = load_scenario("severe_fire_weather")
    res = simulate(pf, params, years=2, paths=32, seed=3, scenario=scn.name, levels=("portfolio",),
                   modifiers=scn.modifiers(StressSettings().start_year), start_year=StressSettings().start_year)
    h = res.horizon[res.horizon.level == "portfolio"].set_index("metric")
    for metric, col in (("stock_end_tco2e", "stock_end_tco2e_kg"), ("cumulative_loss_tco2e", "loss_tco2e_kg"),
                        ("cumulative_credits_issued_tco2e", "credits_issued_tco2e_kg")):
        engine_mean = float(h.loc[metric, "mean"])
        assert abs(top[col] / KG_PER_T - engine_mean) <= n_v * 0.5e-3 + 1e-9 * abs(engine_mean), metric
    assert top["stock_end_tco2e_kg"] > 0 and top["stock_start_tco2e_kg"] > 0


# ---- instruments under CRN ---------------------------------------------------------------------
def test_price_shock_scales_collateral_value_exactly_and_leaves_carbon_alone(pf, params):
    reg = _registry(pf)
    bound = bind_registry(reg, pf, params)
    st = StressSettings(years=3, paths=32, seed=9, levels=("portfolio",))
    base = run_scenario(bound.portfolio, params, load_scenario("baseline"), st, horizon_years=6,
                        extra_levels=("project_id",))
    shocked = load_scenario("baseline").with_price_shock(1, -0.5)
    s = run_scenario(bound.portfolio, params, shocked, st, horizon_years=6, extra_levels=("project_id",))
    np.testing.assert_array_equal(base.result.per_path["portfolio"], s.result.per_path["portfolio"])
    a, b = evaluate_instruments(bound, base, st), evaluate_instruments(bound, s, st)
    ratio = b.loans.collateral_value_cny.to_numpy() / a.loans.collateral_value_cny.to_numpy()
    np.testing.assert_allclose(ratio, 0.5, rtol=1e-12)
    # insurance pays in tCO2e x agreed price: a market price shock changes nothing for the insurer
    assert a.insurer["expected_annual_gross_loss_cny"] == b.insurer["expected_annual_gross_loss_cny"]
    assert a.budget["annual_premium_subsidy_cny"] == 0.0  # no scheme named: the insured pays the premium


def test_instrument_figures_carry_their_monte_carlo_error(pf, params):
    """Every simulated instrument figure has a standard error (means, probabilities) or a 95 % interval
    (1-in-N figures). With one path per parameter set the paths are independent draws, so the closed forms
    hold: a probability's error is sqrt(p (1 - p) / (n - 1)), a mean's is its sample sd / sqrt(n)."""
    from dataclasses import replace as dc_replace

    from models.dynamics import SimulationSwitches

    reg = _registry(pf)
    bound = bind_registry(reg, pf, params)
    n = 64
    st = StressSettings(years=3, paths=n, seed=5, levels=("portfolio",),
                        switches=SimulationSwitches(parameter_set_size=1))
    run = run_scenario(bound.portfolio, params, load_scenario("ice_storm_2008"), st, horizon_years=6,
                       extra_levels=("project_id",))
    out = evaluate_instruments(bound, run, st)
    loan = out.loans.iloc[0]
    p = loan.p_value_below_balance_any_time
    # the binomial error, or the collateral regression's jackknife error (which sees its coefficients move
    # with the paths) where that is larger
    binomial = np.sqrt(p * (1 - p) / (n - 1))
    assert loan.p_value_below_balance_any_time_mc_se >= binomial * (1 - 1e-12)
    below = out.loan_paths[loan.loan]["below_any"]
    assert below.mean() == p
    pv = out.loan_paths[loan.loan]["pv"]
    assert loan.collateral_value_mc_se_cny == pytest.approx(pv.std(ddof=1) / np.sqrt(n), rel=1e-12)
    assert loan.coverage_mc_se == pytest.approx(loan.collateral_value_mc_se_cny / loan.amount_cny, rel=1e-12)
    ins = out.insurer
    per_path = out.insurer_annual_gross.mean(axis=0)
    assert ins["expected_annual_gross_loss_mc_se_cny"] == pytest.approx(per_path.std(ddof=1) / np.sqrt(n), rel=1e-12)
    assert ins["gross_loss_ratio_mc_se"] == pytest.approx(ins["expected_annual_gross_loss_mc_se_cny"]
                                                          / ins["annual_premium_cny"], rel=1e-12)
    # 1-in-N figures sit inside their order-statistic interval
    for d in (ins, out.budget, out.portfolio, *out.policies.to_dict("records")):
        for k, v in d.items():
            if "_ci95_low" in k:
                point = d[k.replace("_ci95_low", "")]
                assert v <= point <= d[k.replace("_low", "_high")], k
    pol = out.policies.iloc[0]
    assert pol.expected_annual_payout_mc_se_cny >= 0 and np.isfinite(pol.p_payout_above_premium_mc_se)
    assert out.portfolio["share_of_lending_with_collateral_below_balance_mc_se"] >= 0
    # more paths per parameter set: the error of the mean counts sets, not paths (nested design)
    st4 = dc_replace(st, switches=SimulationSwitches(parameter_set_size=4))
    run4 = run_scenario(bound.portfolio, params, load_scenario("ice_storm_2008"), st4, horizon_years=6,
                        extra_levels=("project_id",))
    out4 = evaluate_instruments(bound, run4, st4)
    x = out4.loan_paths[loan.loan]["below_any"].astype(float)
    set_means = x.reshape(-1, 4).mean(axis=1)
    assert out4.loans.iloc[0].p_value_below_balance_any_time_mc_se >= set_means.std(ddof=1) / np.sqrt(n // 4) * (1 - 1e-12)


def test_the_budget_counts_its_cash_and_the_insurer_pays_for_its_stop_loss(pf, params):
    """The budgets pay the premium subsidies and the buy-back; the insurer pays the claims, so the payouts
    the subsidies funded are reported beside the budgets' cost, not added to it. The insurer's stop-loss
    recoveries are bought at the registry's premium, which its underwriting result carries."""
    from finance_engine.insurance import split_premium

    raw = _registry(pf).model_dump()
    assert raw["policies"][0]["subsidy_scheme"] is None  # by default no budget pays (carbon covers: no scheme)
    raw["policies"][0]["subsidy_scheme"] = "commercial_forest"  # a city treating it as policy forest insurance
    raw["insurer"]["stop_loss"] = {"attachment_cny": 500.0, "limit_cny": 20000.0, "annual_premium_cny": 700.0}
    st = StressSettings(years=6, paths=64, seed=5, levels=("portfolio",))  # credits issue at the first verification
    bound = bind_registry(parse_registry(raw), pf, params)
    run = run_scenario(bound.portfolio, params, load_scenario("ice_storm_2008"), st, horizon_years=6,
                       extra_levels=("project_id",))
    out = evaluate_instruments(bound, run, st, price_floor_cny_per_tco2e=500.0)  # a floor above every price
    b = out.budget
    split = split_premium(3000.0, "commercial_forest")
    subsidy = sum(v for k, v in split.amounts.items() if k != "insured")
    assert b["annual_premium_subsidy_cny"] == pytest.approx(subsidy, rel=1e-12)
    assert b["expected_annual_buyback_cost_cny"] > 0
    assert b["expected_annual_total_cny"] == pytest.approx(subsidy + b["expected_annual_buyback_cost_cny"], rel=1e-12)
    raw["policies"][0]["subsidy_scheme"] = None  # no scheme: the insured pays all, no budget a yuan of it
    unsubsidised = evaluate_instruments(bind_registry(parse_registry(raw), pf, params), run, st,
                                        price_floor_cny_per_tco2e=500.0).budget
    assert unsubsidised["annual_premium_subsidy_cny"] == 0.0
    assert b["expected_annual_total_mc_se_cny"] == b["expected_annual_buyback_cost_mc_se_cny"]
    pay = out.insurer_annual_gross  # the one policy's payouts, (years, paths)
    assert pay.mean() > 0
    assert b["expected_annual_publicly_funded_payout_cny"] == pytest.approx(split.public_share * pay.mean(), rel=1e-12)
    assert not any("payout_cost" in k for k in b)
    # without a floor the budgets pay the subsidies alone, whatever the storm
    plain = evaluate_instruments(bound, run, st).budget
    assert plain["expected_annual_total_cny"] == plain["total_1_in_100_cny"] == pytest.approx(subsidy, rel=1e-12)
    # the insurer: quota share, then the stop-loss on the retained loss, bought at its premium
    retained = (1 - 0.2) * pay
    recovery = np.clip(retained - 500.0, 0.0, 20000.0)
    assert recovery.mean() > 0
    result = retained - recovery + 700.0 - 3000.0 * (1 - 0.2)
    ins = out.insurer
    assert ins["stop_loss_premium_cny"] == 700.0
    # the net loss counts the stop-loss premium paid in the year, as the quote's net loss counts its layers'
    assert ins["expected_annual_net_loss_cny"] == pytest.approx((retained - recovery + 700.0).mean(), rel=1e-12)
    assert ins["expected_cumulative_result_cny"] == pytest.approx(-result.sum(axis=0).mean(), rel=1e-9)
    assert ins["p_annual_net_loss_above_net_premium"] == pytest.approx((result > 0).mean(), rel=1e-12)
    raw["insurer"]["stop_loss"]["annual_premium_cny"] = 1700.0
    dearer = evaluate_instruments(bind_registry(parse_registry(raw), pf, params), run, st).insurer
    assert dearer["expected_cumulative_result_cny"] == pytest.approx(ins["expected_cumulative_result_cny"] - 6 * 1000.0,
                                                                    rel=1e-9)


def test_a_loan_cut_to_the_pledge_cap_has_no_coverage_error(pf, params):
    """The pledge-rate lever sets each loan at cap x its estimated value, so its coverage is 1 / cap by
    construction: no Monte Carlo error, for the loan or (when all are capped) the bank's portfolio."""
    reg = _registry(pf)
    bound = bind_registry(reg, pf, params)
    st = StressSettings(years=3, paths=64, seed=5, levels=("portfolio",))
    run = run_scenario(bound.portfolio, params, load_scenario("baseline"), st, horizon_years=6,
                       extra_levels=("project_id",))
    free = evaluate_instruments(bound, run, st)
    capped = evaluate_instruments(bound, run, st, pledge_rate_cap=0.01)  # far below the requested amounts
    assert list(capped.loans.coverage) == pytest.approx([100.0] * len(capped.loans))
    assert (capped.loans.coverage_mc_se == 0).all()
    assert capped.portfolio["collateral_coverage_mc_se"] == 0.0
    assert (free.loans.coverage_mc_se > 0).all() and free.portfolio["collateral_coverage_mc_se"] > 0
    # one loan cut, one not: the delta method on R = (F + C) / (A_free + cap C) against perturbing the paths
    v = free.loans.set_index("loan").collateral_value_cny
    # A asks 150,000, B 80,000: a cap between their amount-to-value ratios cuts A only
    ratio = {ln.id: ln.terms.amount_cny / v[ln.id] for ln in reg.loans}
    assert ratio[reg.loans[0].id] > ratio[reg.loans[1].id]
    cap = 0.5 * (ratio[reg.loans[0].id] + ratio[reg.loans[1].id])
    mixed = evaluate_instruments(bound, run, st, pledge_rate_cap=cap)
    cut = mixed.loans.set_index("loan")
    assert cut.loc[reg.loans[0].id, "amount_cny"] < reg.loans[0].terms.amount_cny  # loan A cut
    assert cut.loc[reg.loans[1].id, "amount_cny"] == reg.loans[1].terms.amount_cny  # loan B not
    pa, pb = mixed.loan_paths[reg.loans[0].id]["pv"], mixed.loan_paths[reg.loans[1].id]["pv"]
    amt_b = reg.loans[1].terms.amount_cny

    def coverage(pa_, pb_):  # the coverage as the lever computes it, from the paths' values
        return (pa_.mean() + pb_.mean()) / (cap * pa_.mean() + amt_b)

    r = coverage(pa, pb)
    assert mixed.portfolio["collateral_coverage"] == pytest.approx(r, rel=1e-12)
    # numerical gradient of R with respect to each path's values, then the error of that linearised mean
    eps = 1e-6
    ga = (coverage(pa * (1 + eps), pb) - r) / (eps * pa.mean())
    gb = (coverage(pa, pb * (1 + eps)) - r) / (eps * pb.mean())
    from finance_engine.mc_error import mean_se

    want = mean_se(ga * pa + gb * pb, 4)
    assert mixed.portfolio["collateral_coverage_mc_se"] == pytest.approx(want, rel=1e-4)


def test_stress_test_end_to_end(pf, params):
    res = run_stress_test(pf, params, ["ice_storm_2008"], registry=_registry(pf),
                          settings=StressSettings(years=3, paths=32, seed=4), footprints=True)
    assert list(res.scenarios.scenario) == ["baseline", "ice_storm_2008"]
    h = res.horizon[(res.horizon.level == "portfolio") & (res.horizon.metric == "cumulative_loss_ice_storm_tco2e")]
    base, ice = h.set_index("scenario").loc["baseline"], h.set_index("scenario").loc["ice_storm_2008"]
    assert base.diff_mean == 0 and ice.diff_mean > 0
    # CRN: the paired difference beats an unpaired one; here only just, since the forced storm's damage
    # carries the parameter set's draw of the ice storm's severity (parameter uncertainty, not noise)
    assert ice.diff_mc_se < np.hypot(ice.mc_se, base.mc_se) and ice.diff_parameter_sd > 0
    from models.dynamics import SimulationSwitches

    fixed = run_stress_test(pf, params, ["ice_storm_2008"], settings=StressSettings(
        years=3, paths=32, seed=4, switches=SimulationSwitches(peril_parameter_uncertainty=False)))
    hf = fixed.horizon[(fixed.horizon.level == "portfolio")
                       & (fixed.horizon.metric == "cumulative_loss_ice_storm_tco2e")].set_index("scenario")
    # with the perils' parameters known, the paired difference is far more precise than the level
    assert hf.loc["ice_storm_2008", "diff_mc_se"] < 0.3 * hf.loc["ice_storm_2008", "mc_se"]
    assert set(res.footprints.peril) == {"fire", "typhoon", "ice_storm"}
    assert (res.footprints.max_share <= 1 + 1e-12).all()
    assert {"collateral_value_cny", "p_value_below_balance_any_time"} <= set(res.loans.columns)
    # distribution of each scenario's value over paths, by year and over the horizon
    for table in (res.horizon, res.by_year):
        q = table[["p01", "p05", "p50", "p95", "p99"]].to_numpy()
        assert (np.diff(q, axis=1) >= 0).all()
        # each percentile with its order-statistic interval (32 paths: the 1 % and 99 % ends are open)
        for k in ("p01", "p05", "p50", "p95", "p99"):
            assert (table[f"{k}_ci_low"] <= table[k]).all() and (table[k] <= table[f"{k}_ci_high"]).all()
        assert np.isinf(table["p99_ci_high"]).all()
    assert (res.horizon.diff_p05_ci_low <= res.horizon.diff_p05).all()
    assert ice["p99"] >= ice["mean"] >= ice["p01"]


def test_registry_errors_name_the_field(pf, params):
    with pytest.raises(RegistryError, match=r"loans.0.terms.amount_cny"):
        parse_registry({"loans": [{"id": "x", "parcel_ids": ["T00001"], "terms": {"amount_cny": -1, "term_years": 1,
                                                                                  "interest_rate": 0.04}}]})
    with pytest.raises(RegistryError, match=r"policies.0.loan"):
        parse_registry({"policies": [{"id": "p", "loan": "nope", "agreed_price_cny_per_tco2e": 1,
                                      "annual_premium_cny": 1}]})
    reg = parse_registry({"loans": [{"id": "x", "parcel_ids": ["ZZZ"], "terms": {"amount_cny": 1, "term_years": 1,
                                                                                 "interest_rate": 0.04}}]})
    with pytest.raises(RegistryError, match=r"loans.0.parcel_ids"):
        bind_registry(reg, pf, params)
    # a policy covers known perils under a known subsidy scheme (an unknown peril covered nothing, silently)
    pol = {"id": "p", "parcel_ids": ["a"], "agreed_price_cny_per_tco2e": 60, "annual_premium_cny": 1}
    with pytest.raises(RegistryError, match=r"policies.0.covered_perils: unknown peril\(s\) \['earthquake'\]"):
        parse_registry({"policies": [{**pol, "covered_perils": ["earthquake"]}]})
    with pytest.raises(RegistryError, match=r"policies.0.subsidy_scheme: unknown subsidy scheme 'bogus'"):
        parse_registry({"policies": [{**pol, "subsidy_scheme": "bogus"}]})
    with pytest.raises(RegistryError, match=r"policies.0.annual_premium_cny"):
        parse_registry({"policies": [{**pol, "annual_premium_cny": float("inf")}]})
    # a stop-loss is bought: its premium is a contract term the registry must give
    with pytest.raises(RegistryError, match=r"insurer.stop_loss.annual_premium_cny"):
        parse_registry({"insurer": {"stop_loss": {"attachment_cny": 1000, "limit_cny": 5000}}})
    # every loan is valued on the test's own price path: a loan naming another series or a price scenario is
    # refused before any simulation (it had been valued on the CEA path all the same)
    ids = list(pf.parcel_id)
    for extra, field in (({"price_model": "pilot_ets"}, "price_model"), ({"price_scenario": "net_zero"},
                                                                         "price_scenario")):
        reg = parse_registry({"loans": [{"id": "x", "parcel_ids": ids[:5], "terms": {
            "amount_cny": 1e5, "term_years": 2, "interest_rate": 0.04, **extra}}]})
        with pytest.raises(RegistryError, match=rf"loans.0.terms.{field}"):
            run_stress_test(pf, params, ["ice_storm_2008"], registry=reg, settings=StressSettings(years=1, paths=8))


# ---- reverse stress ----------------------------------------------------------------------------
def test_find_threshold_closed_form_and_step():
    m, ev = find_threshold(lambda m: 3.0 / m, 1.0, 1.0, 10.0, xtol=1e-8)
    assert m == pytest.approx(3.0, abs=1e-7)
    # a stepped metric (as with finitely many paths): the step at 2.5 is found to xtol
    m, _ = find_threshold(lambda m: float(m >= 2.5), 0.5, 1.0, 10.0, xtol=1e-6)
    assert 2.5 <= m <= 2.5 + 2e-6
    with pytest.raises(ReverseStressError, match="does not cross"):
        find_threshold(lambda m: 5.0, 1.0, 1.0, 2.0)


def test_reverse_price_drop_finds_the_known_threshold(pf, params):
    """Coverage is linear in a persistent price shock: C(d) = (1 - d) C0, so C = 1 at d* = 1 - 1/C0."""
    reg = _registry(pf)
    st = StressSettings(years=3, paths=32, seed=2)
    bound = bind_registry(reg, pf, params)
    run = run_scenario(bound.portfolio, params, load_scenario("baseline"), st, horizon_years=6,
                       extra_levels=("project_id",))
    c0 = evaluate_instruments(bound, run, st).portfolio["collateral_coverage"]
    assert c0 > 1
    r = reverse_stress_test(pf, params, shock=("price_drop", None), metric="collateral_coverage", threshold=1.0,
                            registry=reg, settings=st, xtol=1e-7)
    assert r.multiplier == pytest.approx(1 - 1 / c0, abs=1e-6)
    assert r.metric_at_base == pytest.approx(c0)


# ---- buffer and NPRT ---------------------------------------------------------------------------
def test_buffer_adequacy_on_a_known_distribution():
    # R/G takes the values 0.01 .. 1.00 once each: the 95 % and 99 % buffers are 0.95 and 0.99 exactly
    r = np.arange(1, 101) / 100.0
    ad = buffer_adequacy(r * 2.0, np.full(100, 2.0), 0.15)
    assert ad.buffer_needed_95 == pytest.approx(0.95) and ad.buffer_needed_99 == pytest.approx(0.99)
    assert ad.p_exhausted == pytest.approx(0.85)
    # uniform(0, 0.2) reversal shares: P(R > 0.15 G) = 0.25, within a few binomial standard errors
    rng = np.random.default_rng(1)
    g = rng.uniform(100, 200, 20000)
    share = rng.uniform(0, 0.2, 20000)
    ad = buffer_adequacy(share * g, g, 0.15)
    assert abs(ad.p_exhausted - 0.25) < 4 * ad.p_exhausted_se
    assert ad.buffer_needed_99 == pytest.approx(0.198, abs=0.002)
    with pytest.raises(BufferInputError, match="buffer_fraction"):
        buffer_adequacy(r, r, 1.5)


def test_buffer_exhaustion_error_counts_parameter_sets():
    """Paths of a parameter set share its draws: P(exhausted)'s error is that of the set means over the sets
    (sqrt(var(set means) / g)), not the binomial one of independent paths."""
    rng = np.random.default_rng(3)
    g, m = 200, 8
    rate = np.repeat(rng.uniform(0.0, 0.4, g), m)  # each set's own exhaustion probability
    exhausted = rng.random(g * m) < rate
    gross = np.full(g * m, 100.0)
    rev = np.where(exhausted, 30.0, 5.0)
    sets = exhausted.reshape(g, m).mean(axis=1)
    ad = buffer_adequacy(rev, gross, 0.15, set_size=m)
    assert ad.p_exhausted == exhausted.mean()
    assert ad.p_exhausted_se == pytest.approx(np.sqrt(sets.var(ddof=1) / g), rel=1e-12)
    binomial = buffer_adequacy(rev, gross, 0.15).p_exhausted_se
    p = exhausted.mean()
    assert binomial == pytest.approx(np.sqrt(p * (1 - p) / (g * m)), rel=1e-12) and ad.p_exhausted_se > binomial
    with pytest.raises(BufferInputError, match="set_size"):
        buffer_adequacy(rev, gross, 0.15, set_size=0)


@pytest.mark.parametrize("ri, loss, score", [
    (5, 0.80, float("inf")), (5, 0.60, 30), (5, 0.30, 20), (5, 0.10, 5), (5, 0.01, 4),
    (15, 0.80, 30), (15, 0.30, 5), (15, 0.10, 4), (15, 0.01, 3),
    (30, 0.60, 5), (30, 0.10, 3), (75, 0.80, 5), (75, 0.01, 1), (200, 0.80, 4), (200, 0.30, 2), (200, 0.01, 1),
    (10, 0.25, 5), (25, 0.05, 3), (100, 0.70, 4), (50, 0.50, 4),
])
def test_nprt_table_10_lookup(ri, loss, score):
    """NPRT v4.2 Table 10 (domain_parameters.md §5), including the class boundaries."""
    assert nprt_ls_score(ri, loss) == score


def test_nprt_classes_and_lishui_mapping():
    assert nprt_frequency_class(9.99) == 0 and nprt_frequency_class(10) == 1 and nprt_frequency_class(100) == 4
    assert nprt_loss_class(0.049) == "insignificant" and nprt_loss_class(0.70) == "catastrophic"
    # domain_parameters.md §5: fire 10-25 yr, minor -> LS 4; ice storm 25-50 yr, minor/major -> 3-4
    assert nprt_ls_score(15, 0.10) == 4
    assert nprt_ls_score(40, 0.10) == 3 and nprt_ls_score(40, 0.30) == 4


def test_longer_rotation_lever_adds_sink(params):
    from finance_engine.stress.levers import ManagementAction, default_management_actions, management_levers
    from finance_engine.stress.run import StressSettings
    from models.dynamics import SimulationSwitches
    from models.portfolio import validate_frame
    from tests.conftest import make_frame

    df = make_frame(12, seed=2, species=["chinese_fir"])
    df["age_years"] = 22
    df["rotation_age_years"] = 25
    pf = validate_frame(df, params)
    acts = default_management_actions(pf)
    assert acts[0].rotation_extension_years == 10
    st = StressSettings(years=10, paths=32, seed=1,
                        switches=SimulationSwitches(perils=(), parameter_uncertainty=False))
    out = management_levers(pf, params, [acts[0]], st)
    row = out.iloc[0]
    # felling at 25 within the horizon removes the stock; a 10-year longer rotation keeps it growing
    assert row["added_mean_sink_tco2e"] > 0 and np.isfinite(row["cost_per_added_tco2e"])
    assert default_management_actions(validate_frame(make_frame(5), params))[0].rotation_extension_years is None


def test_accounts_carry_their_errors_at_every_level(pf, params):
    """Each account row's error is its own level's engine error (a county's is not its villages' summed), and
    the value errors follow the delta method (stock) or bound it from above (flows)."""
    st = StressSettings(years=2, paths=64, seed=3)
    acc = scenario_accounts(pf, params, "severe_fire_weather", st)
    t = acc.table
    scn = load_scenario("severe_fire_weather")
    res = simulate(pf, params, years=2, paths=64, seed=3, scenario=scn.name, levels=("portfolio", "county"),
                   modifiers=scn.modifiers(st.start_year), start_year=st.start_year)
    h = res.horizon.set_index(["level", "group", "metric"])
    county = t[t.level == "county"].iloc[0]
    g = "/".join(county[x] for x in LEVELS[:3])
    assert county.stock_end_tco2e_mc_se == pytest.approx(h.at[("county", g, "stock_end_tco2e"), "mc_se"], rel=1e-9)
    assert county.loss_tco2e_mc_se == pytest.approx(h.at[("county", g, "cumulative_loss_tco2e"), "mc_se"], rel=1e-9)
    for lv in ("portfolio", *LEVELS):
        rows = t[t.level == lv]
        assert rows.stock_end_tco2e_mc_se.notna().all() and (rows.stock_end_tco2e_mc_se > 0).all(), lv
        assert (rows.loss_value_cny_mc_se_max >= 0).all()
    top = t[t.level == "portfolio"].iloc[0]
    # errors do not add up: the portfolio's error is below the sum of its villages' (losses are not perfectly
    # correlated across villages)
    assert top.loss_tco2e_mc_se < t[t.level == "village"].loss_tco2e_mc_se.sum()
    # the end value's error is at least the carbon side's: price x the stock's error
    price_end = top.stock_end_value_cny / top.stock_end_tco2e
    assert top.stock_end_value_cny_mc_se >= price_end * top.stock_end_tco2e_mc_se * (1 - 1e-9)


def test_pest_control_lever_slows_the_regions_spread(params):
    """The pest-control lever changes the region's landscape as well as the treated parcels, so it adds
    more sink than the same change on the parcels alone (common random numbers)."""
    from finance_engine.stress.levers import ManagementAction, management_levers
    from finance_engine.stress.run import StressSettings
    from models.demo import demo_portfolio_path
    from models.dynamics import SimulationSwitches
    from models.portfolio import load_portfolio

    # the region's registry (the shipped landscape is built from it), as in the bureau's city-wide test
    pf = load_portfolio(demo_portfolio_path(), params)
    action = ManagementAction("enhanced pest control", species=("masson_pine", "other_pines"), pest_control="enhanced")
    sw = SimulationSwitches(perils=("pine_wilt",), parameter_uncertainty=False)
    st = StressSettings(years=10, paths=32, seed=2, switches=sw)
    row = management_levers(pf, params, [action], st).iloc[0]
    assert row["landscape_host_area_changed_ha"] > 0
    changed, _ = action.apply(pf, params)
    parcels_only = simulate(changed, params, years=st.years, paths=st.paths, seed=st.seed, levels=("portfolio",),
                            switches=sw, start_year=st.start_year).paths_of("sink_tco2e").sum(axis=0)[:, 0]
    assert row["sink_mean_tco2e"] > parcels_only.mean() > row["sink_mean_baseline_tco2e"]
    # in the same process as the file's runs (the engine's set-up cache must tell them apart), and recorded
    run_params, moved = action.landscape(pf, params)
    assert moved == row["landscape_host_area_changed_ha"]
    res = simulate(changed, run_params, years=st.years, paths=st.paths, seed=st.seed, levels=("portfolio",),
                   switches=sw, start_year=st.start_year)
    assert res.paths_of("sink_tco2e").sum(axis=0)[:, 0].mean() == row["sink_mean_tco2e"]
    assert res.provenance["parameter_variant"] == run_params.variant and "stress lever" in run_params.variant


def test_a_lever_with_a_rotation_and_pest_control_moves_the_treated_parcels_only(params):
    from finance_engine.stress.levers import ManagementAction
    from models.demo import demo_portfolio_path
    from models.portfolio import Portfolio, load_portfolio

    pf = load_portfolio(demo_portfolio_path(), params)
    frame = pf.frame.copy()
    frame["rotation_age_years"] = np.where(np.arange(len(frame)) % 2 == 0, 40.0, np.nan)
    cols = {c: frame[c].tolist() for c in frame.columns}
    from models.parameters import SITE_CLASSES

    cols["site_class"] = [SITE_CLASSES.index(s) for s in cols["site_class"]]
    half = Portfolio.from_columns(cols, params, source="half with rotations")
    both = ManagementAction("both", pest_control="enhanced", rotation_extension_years=5)
    only = ManagementAction("pest", pest_control="enhanced", parcel_ids=tuple(half.parcel_id[both.treated(half)]))
    assert both.landscape(half, params)[1] == only.landscape(half, params)[1] > 0


def test_the_parameter_spread_is_its_own_line_beside_the_monte_carlo_error(pf, params):
    from models.dynamics import SimulationSwitches

    def run(switches):
        return run_stress_test(pf, params, ["severe_fire_weather"], settings=StressSettings(
            years=10, paths=256, seed=9, levels=("portfolio", "county"), switches=switches))

    on, off = run(SimulationSwitches()), run(SimulationSwitches(parameter_uncertainty=False))
    for table in (on.horizon, on.by_year):
        assert (table.parameter_sd >= 0).all() and (table.diff_parameter_sd >= 0).all()
        # the baseline's difference from itself is zero, so is its spread
        assert (table[table.scenario == "baseline"].diff_parameter_sd == 0).all()
    h = on.horizon[on.horizon.level == "portfolio"].set_index(["scenario", "metric"])
    assert h.loc[("baseline", "stock_end_tco2e"), "parameter_sd"] > 0  # growth curves, peril rates
    row = on.portfolio.set_index("scenario").loc["severe_fire_weather"]
    assert row["stock_end_tco2e_parameter_sd"] == h.loc[("severe_fire_weather", "stock_end_tco2e"), "parameter_sd"]
    assert row["cumulative_loss_tco2e_diff_parameter_sd"] >= 0
    # each parameter sd has its 95 % interval beside it, the summary row's from the horizon row's
    for k in ("parameter_sd_ci95_low", "parameter_sd_ci95_high", "diff_parameter_sd_ci95_low",
              "diff_parameter_sd_ci95_high"):
        assert row[f"stock_end_tco2e_{k}"] == h.loc[("severe_fire_weather", "stock_end_tco2e"), k], k
        assert row[f"cumulative_loss_tco2e_{k}"] == h.loc[("severe_fire_weather", "cumulative_loss_tco2e"), k], k
    # without parameter uncertainty every path is independent: no parameter spread at all
    assert (off.horizon.parameter_sd == 0).all() and (off.horizon.diff_parameter_sd == 0).all()
    for table in (off.horizon, off.by_year, off.portfolio):  # and its interval is 0 to 0
        ci = [c for c in table.columns if "parameter_sd_ci95" in c]
        assert len(ci) == (4 if table is not off.portfolio else 4 * 7) and (table[ci] == 0).all().all()
    # and the provenance says so, so a reader tells these zeros from a clipped estimate
    assert on.provenance["switches"]["parameter_uncertainty"] is True
    assert off.provenance["switches"]["parameter_uncertainty"] is False
    assert json.loads(json.dumps(off.to_dict()["provenance"]))["switches"] == off.provenance["switches"]


def test_stress_progress_counts_chunks_across_the_runs(pf, params):
    """``on_progress`` reports the baseline's and every scenario's chunks as one count (runs x chunks of a
    run), rising to the end; ``progress`` still gets a line per run; the numbers do not change."""
    st = StressSettings(years=2, paths=96, seed=4)
    seen, lines = [], []
    r = run_stress_test(pf, params, ["severe_fire_weather", "ice_storm_2008"], settings=st, chunk_paths=32,
                        progress=lines.append, on_progress=seen.append)
    counts = [(p.chunks_done, p.chunks_total) for p in seen]
    assert {t for _, t in counts} == {9} and counts[-1] == (9, 9)  # 3 runs x 3 chunks
    assert [d for d, _ in counts] == sorted(d for d, _ in counts) and {d for d, _ in counts} == set(range(10))
    assert lines[0].startswith("baseline") and "scenario ice_storm_2008" in lines
    plain = run_stress_test(pf, params, ["severe_fire_weather", "ice_storm_2008"], settings=st)
    assert json.dumps(r.to_dict()["horizon"], default=str) == json.dumps(plain.to_dict()["horizon"], default=str)
    assert r.portfolio.equals(plain.portfolio) and r.by_year.equals(plain.by_year)


def test_the_compulsory_insurance_lever_is_subsidised_as_policy_insurance(pf, params):
    """The lever's compulsory covers are policy insurance, split by the commercial-forest scheme (the budgets
    pay 80 % of their premium), while the registry's own carbon policy names no scheme and gets none."""
    from finance_engine.insurance import split_premium
    from finance_engine.stress.levers import policy_levers

    st = StressSettings(years=6, paths=64, seed=5, levels=("portfolio",))
    bound = bind_registry(_registry(pf), pf, params)
    run = run_scenario(bound.portfolio, params, load_scenario("baseline"), st, horizon_years=6,
                       extra_levels=("project_id",))
    rows = policy_levers(bound, run, [run], st).set_index("lever")
    none, comp = rows.loc["none"], rows.loc["compulsory sink insurance"]
    assert none["budget_expected_annual_cny"] == 0.0  # the registry's policy P: no scheme, no subsidy
    premium = comp["insurer_annual_premium_cny"] - none["insurer_annual_premium_cny"]  # the compulsory covers'
    assert premium > 0
    subsidy = sum(v for k, v in split_premium(premium, "commercial_forest").amounts.items() if k != "insured")
    assert comp["budget_expected_annual_cny"] == pytest.approx(subsidy, rel=1e-9)


def test_the_stress_tables_give_each_parameter_sd_its_interval_from_the_same_mean_squares(pf, params):
    """compare_runs' parameter_sd_ci95_low / _high (and diff_...) are the MLS interval of the mean squares of the
    scenario's per-path values (of the paired differences for diff_), computed here by hand: a wrong array or a
    swapped end fails."""
    from finance_engine.simulation.summary import parameter_sd_interval
    from finance_engine.stress.run import compare_runs, metric_paths

    st = StressSettings(years=3, paths=48, seed=5, levels=("portfolio", "county"))
    sw = st.switches
    m = sw.parameter_set_size
    assert sw.draws_parameters and m > 1 and st.paths % m == 0
    g = st.paths // m
    base = run_scenario(pf, params, load_scenario("baseline"), st)
    scen = run_scenario(pf, params, load_scenario("severe_fire_weather"), st)
    by_year, horizon = compare_runs(base, scen, st.levels, st.years, st.start_year, sw)
    cols = ("parameter_sd_ci95_low", "parameter_sd_ci95_high", "diff_parameter_sd_ci95_low",
            "diff_parameter_sd_ci95_high")
    for table in (by_year, horizon):
        assert set(cols) <= set(table.columns)
        for p in ("", "diff_"):  # low <= sd <= high, ends finite and at least 0
            lo, sd, hi = (table[f"{p}parameter_sd{e}"].to_numpy() for e in ("_ci95_low", "", "_ci95_high"))
            assert np.isfinite(lo).all() and np.isfinite(hi).all() and (lo >= 0).all()
            assert (lo <= sd * (1 + 1e-12)).all() and (sd <= hi * (1 + 1e-12)).all()
            assert (hi > lo).any()

    def by_hand(x):
        """The interval from the one-way mean squares of x (paths first) over sets of m consecutive paths."""
        sets = x.reshape(g, m, *x.shape[1:])
        msb = m * sets.mean(axis=1).var(axis=0, ddof=1)
        msw = sets.var(axis=1, ddof=1).mean(axis=0)
        return parameter_sd_interval(msb, msw, g, m)

    for lv in st.levels:
        xs = metric_paths(scen, lv, st.years)["loss_tco2e"]   # (years, paths, groups)
        d = xs - metric_paths(base, lv, st.years)["loss_tco2e"]
        rows = by_year[(by_year.level == lv) & (by_year.metric == "loss_tco2e")]  # year-major, then group
        for x, p in ((xs, ""), (d, "diff_")):
            lo, hi = by_hand(np.moveaxis(x, 1, 0))            # (years, groups)
            np.testing.assert_allclose(rows[f"{p}parameter_sd_ci95_low"], lo.ravel(), rtol=1e-12, atol=0)
            np.testing.assert_allclose(rows[f"{p}parameter_sd_ci95_high"], hi.ravel(), rtol=1e-12, atol=0)
        h = horizon[(horizon.level == lv) & (horizon.metric == "cumulative_loss_tco2e")]
        for x, p in ((xs.sum(axis=0), ""), (d.sum(axis=0), "diff_")):  # (paths, groups): summed over the years
            lo, hi = by_hand(x)
            assert (hi > lo).all()  # so a swapped pair cannot pass
            np.testing.assert_allclose(h[f"{p}parameter_sd_ci95_low"], lo, rtol=1e-12, atol=0)
            np.testing.assert_allclose(h[f"{p}parameter_sd_ci95_high"], hi, rtol=1e-12, atol=0)
        s = metric_paths(scen, lv, st.years)["stock_tco2e"][-1]  # stock at the end
        lo, hi = by_hand(s)
        h = horizon[(horizon.level == lv) & (horizon.metric == "stock_end_tco2e")]
        np.testing.assert_allclose(h.parameter_sd_ci95_low, lo, rtol=1e-12, atol=0)
        np.testing.assert_allclose(h.parameter_sd_ci95_high, hi, rtol=1e-12, atol=0)


def test_a_stress_test_beyond_its_per_path_budget_is_refused_before_any_run(pf, params, monkeypatch):
    """The stress test compares every path of its levels with the baseline's: a run whose per-path values would not
    fit the stress budget (two runs held at once) is refused before the engine starts, naming the level and the
    paths that would fit (it had failed after its baseline, with a KeyError in paths_of)."""
    import finance_engine.stress.run as sr

    started = []
    monkeypatch.setattr(sr, "run_scenario", lambda *a, **k: started.append(1))
    monkeypatch.setattr(sr, "STRESS_PER_PATH_BUDGET_MIB", 0.05)
    with pytest.raises(ValueError, match=r"the stress test needs every path's values at .*township.*Use at most"):
        sr.run_stress_test(pf, params, ["ice_storm_2008"], settings=StressSettings(years=2, paths=256))
    assert not started
