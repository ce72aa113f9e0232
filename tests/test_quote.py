"""The policy quote: premium build-up by hand, layers and capital against the loss-table maths, JSON round
trip, and the engine run (wiring, reproducibility, block-split invariance)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from finance_engine.insurance import (EventLosses, InsuranceInputError, insurer_capital, wang_transform_premium)
from finance_engine.insurance.covers import (CoverLosses, Deductible, PriceFloorCover, SinkIndexCover,
                                             StockLossCover, per_path_to_sim_years)
from finance_engine.insurance.quote import (MU_PER_HA, LayerSpec, Loading, Quote, default_loading, quote,
                                            quote_losses)
from finance_engine.simulation import simulate


def _losses(annual, events=None):
    annual = np.asarray(annual, dtype=float)
    if events is None:
        yrs = np.flatnonzero(annual > 0)
        events = EventLosses(yrs, annual[yrs], annual.size)
    return CoverLosses(annual, events)


def test_premium_build_up_by_hand():
    annual = np.r_[np.zeros(90), np.full(10, 1000.0)]                 # p = 0.1, loss 1000: E = 100
    q = quote_losses(_losses(annual), sum_insured_cny=10_000.0, area_ha=2.0, insured_tco2e=50.0,
                     loading=Loading("none", 0.0, 0.20, 0.05), subsidy="hebei_chestnut_2015")
    p = q.premium
    assert p["pure_premium_cny"] == pytest.approx(100.0)
    assert p["pure_premium_mc_se_cny"] == pytest.approx(annual.std(ddof=1) / 10)
    assert p["gross_premium_cny"] == pytest.approx(100.0 / 0.75)
    assert p["rate_on_sum_insured"] == pytest.approx(100.0 / 0.75 / 10_000)
    assert p["premium_per_mu_cny"] == pytest.approx(100.0 / 0.75 / (2 * MU_PER_HA))
    assert p["premium_per_ha_cny"] == pytest.approx(100.0 / 0.75 / 2)
    assert p["premium_per_tco2e_cny"] == pytest.approx(100.0 / 0.75 / 50)
    assert p["expected_loss_ratio"] == pytest.approx(0.75)
    # Hebei chestnut split (finance_practice.md §2.2): 30/25/15/10/20 %
    amts = q.subsidy["amounts_cny"]
    assert amts["central"] == pytest.approx(0.30 * 100 / 0.75) and amts["insured"] == pytest.approx(0.20 * 100 / 0.75)
    assert sum(amts.values()) == pytest.approx(p["gross_premium_cny"])
    assert q.subsidy["central_eligible"] is True
    # charged rate / (pure rate grossed up for expenses) = 0.80 / 0.75, inside [0.75, 1.25]
    assert q.rate_band["factor"] == pytest.approx(0.80 / 0.75) and q.rate_band["within_band"] is True
    # PML: 1-in-10 AEP is the 90 % quantile = 0 (90 zero years), 1-in-20 is 1000
    pml = q.frame("risk.pml").set_index(["basis", "return_period_years"])["loss"]
    assert pml[("AEP", 10.0)] == 0.0 and pml[("AEP", 20.0)] == 1000.0 and pml[("OEP", 20.0)] == 1000.0
    assert q.risk["prob_payout"] == pytest.approx(0.1)


def test_risk_loads_follow_the_principles():
    rng = np.random.default_rng(4)
    annual = np.where(rng.random(5000) < 0.05, rng.lognormal(8, 1, 5000), 0.0)
    wang = quote_losses(_losses(annual), sum_insured_cny=1e6, area_ha=1.0, insured_tco2e=1.0,
                        loading=Loading("wang", 0.3, 0.1, 0.0))
    assert wang.premium["risk_loaded_premium_cny"] == pytest.approx(wang_transform_premium(annual, 0.3).premium)
    sd = quote_losses(_losses(annual), sum_insured_cny=1e6, area_ha=1.0, insured_tco2e=1.0,
                      loading=Loading("sd", 0.2, 0.0, 0.0))
    assert sd.premium["gross_premium_cny"] == pytest.approx(annual.mean() + 0.2 * annual.std(ddof=1))
    coc = quote_losses(_losses(annual), sum_insured_cny=1e6, area_ha=1.0, insured_tco2e=1.0,
                       loading=Loading("coc", 0.06, 0.0, 0.0))
    # one capital measure (insurance_defaults.yaml loadings.capital_measure): TVaR 99.5 %, the mean of the
    # largest 5000 x 0.005 = 25 annual payouts, less the mean
    tvar = np.sort(annual)[-25:].mean()
    assert coc.premium["risk_load_cny"] == pytest.approx(0.06 * (tvar - annual.mean()))
    assert coc.premium["loading_parameters"]["measure"] == "tvar"
    assert coc.premium["capital_measure"] == "TVaR (expected shortfall) 99.5 % - mean"
    ph = quote_losses(_losses(annual), sum_insured_cny=1e6, area_ha=1.0, insured_tco2e=1.0,
                      loading=Loading("ph", 1.3, 0.0, 0.0))
    assert ph.premium["risk_load_cny"] > 0
    d = default_loading()
    assert d.method == "coc" and d.parameter == 0.06 and d.expense_ratio == 0.20
    with pytest.raises(InsuranceInputError, match="method"):
        Loading("gamma", 1.0, 0.1, 0.0)
    with pytest.raises(InsuranceInputError, match="< 1"):
        Loading("none", 0.0, 0.7, 0.3)


def test_layers_and_capital_against_loss_table_maths():
    # 6 years; year 0: events 50 and 300; year 2: 120; year 4: 700
    ev = EventLosses(np.array([0, 0, 2, 4]), np.array([50.0, 300.0, 120.0, 700.0]), 6)
    annual = np.bincount(ev.year, ev.loss, minlength=6)
    spec = LayerSpec(100.0, 400.0, reinstatements=1)
    q = quote_losses(CoverLosses(annual, ev), sum_insured_cny=1000.0, area_ha=1.0, insured_tco2e=1.0,
                     loading=Loading("none", 0.0, 0.0, 0.0), layers=[spec],
                     quota_share=0.0)
    lay = q.layers[0]
    # per-event layer 400 xs 100: 0 + 200 | 20 | 400  -> mean 620 / 6
    assert lay["expected_layer_loss_cny"] == pytest.approx(620 / 6)
    # rate on line on the upfront premium: first slice min(Z, 400) = 200, 0, 20, 0, 400, 0 -> 620 / 6 as well,
    # P = (620 / 6) / (1 + 620 / 6 / 400)
    assert lay["rate_on_line"] == pytest.approx(620 / 6 / (1 + 620 / 6 / 400) / 400)
    assert lay["multiple"] == pytest.approx(1.0)
    assert lay["prob_attachment"] == pytest.approx(3 / 6)
    ref = insurer_capital(ev, attachment=100.0, limit=400.0, reinstatements=(1, 1.0), level=0.995)
    assert q.capital["gross_capital_cny"] == pytest.approx(ref.gross_capital)
    assert q.capital["net_capital_cny"] == pytest.approx(ref.net_capital)
    # quota share first, then an aggregate stop loss on what is left
    q2 = quote_losses(CoverLosses(annual, ev), sum_insured_cny=1000.0, area_ha=1.0, insured_tco2e=1.0,
                      loading=Loading("none", 0.0, 0.0, 0.0), quota_share=0.5,
                      layers=[LayerSpec(100.0, 200.0, basis="aggregate")])
    # retained annual: 175, 0, 60, 0, 350, 0 -> stop loss 200 xs 100: 75, 0, 0, 0, 200, 0
    assert q2.layers[0]["expected_layer_loss_cny"] == pytest.approx(275 / 6)
    assert q2.capital["ceded_quota_share_mean_cny"] == pytest.approx(0.5 * annual.mean())
    # the 1-in-200 capital's interval: six years cannot bound the 99.5 % quantile from above
    lo, hi = q.capital["gross_capital_ci95_cny"]
    assert lo <= q.capital["gross_capital_cny"] and hi is None  # JSON-ready: an open end is null
    # a slip renders from a quote stored before intervals were reported (the API renders stored JSON)
    from finance_engine.reports.quote_slip import render_quote_slip

    old = q.to_dict()
    for k in ("gross_var_ci95_cny", "net_var_ci95_cny", "gross_capital_ci95_cny", "net_capital_ci95_cny"):
        old["capital"].pop(k)
    assert "1-in-200 capital" in render_quote_slip(old) and "95 % CI" in render_quote_slip(q)
    with pytest.raises(InsuranceInputError, match="overlap"):
        quote_losses(CoverLosses(annual, ev), sum_insured_cny=1.0, area_ha=1.0, insured_tco2e=1.0,
                     layers=[LayerSpec(0.0, 200.0), LayerSpec(100.0, 200.0)])
    with pytest.raises(InsuranceInputError, match="quota_share"):
        quote_losses(CoverLosses(annual, ev), sum_insured_cny=1.0, area_ha=1.0, insured_tco2e=1.0, quota_share=1.5)
    with pytest.raises(InsuranceInputError, match="reinstatements"):
        LayerSpec(0.0, 1.0, basis="aggregate", reinstatements=1)
    with pytest.raises(InsuranceInputError, match="sum_insured_cny"):
        quote_losses(CoverLosses(annual, ev), sum_insured_cny=0.0, area_ha=1.0, insured_tco2e=1.0)


# ---- on the engine ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(small_portfolio_module, params_module):
    return simulate(small_portfolio_module, params_module, years=1, paths=256, seed=9,
                    levels=("portfolio", "county"), loss_table_level="portfolio", chunk_paths=256)


@pytest.fixture(scope="module")
def params_module():
    from models.parameters import load_parameters

    return load_parameters("lishui")


@pytest.fixture(scope="module")
def small_portfolio_module(params_module):
    from models.portfolio import validate_frame
    from tests.conftest import make_frame

    return validate_frame(make_frame(300, seed=5), params_module, source="small")


def test_stock_loss_quote_on_the_engine(run, small_portfolio_module, params_module):
    cover = StockLossCover(60.0)
    q = quote(cover, small_portfolio_module, params_module, simulation=run,
              layers=[LayerSpec(1e4, 1e5)])
    # without deductible or limit the payout is price x the destroyed stock of every peril
    loss = per_path_to_sim_years(run.paths_of("loss_tco2e")[..., 0])
    assert q.premium["pure_premium_cny"] == pytest.approx(60.0 * loss.mean(), rel=1e-9)
    assert sum(r["payout_aal_cny"] for r in q.aal_by_peril) == pytest.approx(q.premium["pure_premium_cny"])
    assert sum(r["aal_cny"] for r in q.aal_by_level) == pytest.approx(q.premium["pure_premium_cny"], rel=1e-9)
    # the pure premium's parameter sd and its 95 % interval: of the paths' payouts over the run's parameter sets
    from finance_engine.simulation.summary import nested_moments, parameter_sd_interval
    from models.dynamics import recorded_set_size

    m = recorded_set_size(run.provenance["switches"])
    x = 60.0 * loss  # one year a path
    g = x.size // m
    sets = x[:g * m].reshape(g, m)
    lo, hi = parameter_sd_interval(m * sets.mean(axis=1).var(ddof=1), sets.var(axis=1, ddof=1).mean(), g, m)
    p = q.premium
    assert m > 1 and p["parameter_sd_ci95_low_cny"] == pytest.approx(float(lo), rel=1e-9, abs=1e-9)
    assert p["parameter_sd_ci95_high_cny"] == pytest.approx(float(hi), rel=1e-9)
    mo = nested_moments(x[:, None], m, True)
    assert p["parameter_sd_cny"] == pytest.approx(float(mo["parameter_sd"][0]), rel=1e-9, abs=1e-9)
    assert 0 <= p["parameter_sd_ci95_low_cny"] <= p["parameter_sd_cny"] <= p["parameter_sd_ci95_high_cny"]
    assert p["parameter_sd_ci95_low_cny"] < p["parameter_sd_ci95_high_cny"]
    stock0 = float(run.initial_stock.query("level == 'portfolio'").stock_tco2e.iloc[0])
    assert q.exposure["sum_insured_cny"] == pytest.approx(60.0 * stock0)
    assert {"model_version", "parameter_sha256", "seed", "paths", "insurance_defaults_sha256"} <= set(q.provenance)
    assert q.provenance["seed"] == 9 and q.provenance["paths"] == 256
    # a deductible and covered perils reduce it
    q2 = quote(StockLossCover(60.0, perils=("fire",), deductible=Deductible(10.0, "tco2e", "event")),
               small_portfolio_module, params_module, simulation=run)
    assert q2.premium["pure_premium_cny"] <= q.premium["pure_premium_cny"]
    # JSON round trip
    d = json.loads(q.to_json())
    assert Quote.from_dict(d).to_dict() == d
    assert Quote.from_dict(d).cover_terms() == cover
    with pytest.raises(InsuranceInputError, match="missing field"):
        Quote.from_dict({"premium": {}})


def test_index_and_floor_quotes_on_the_engine(run, small_portfolio_module, params_module):
    cov = SinkIndexCover(35.0, trigger_fraction=1.0, limit_cny=math.inf)
    q = quote(cov, small_portfolio_module, params_module, simulation=run)
    s = run.paths_of("sink_tco2e")[0, :, 0] + run.paths_of("harvest_tco2e")[0, :, 0]      # before harvest
    assert q.premium["pure_premium_cny"] == pytest.approx(35.0 * np.maximum(s.mean() - s, 0).mean())
    assert q.basis_risk["rmse_cny"] == pytest.approx(0.0, abs=1e-6)
    # basis risk is the index error alone: a perfect index has none, whatever its trigger and limit ...
    perfect = quote(SinkIndexCover(35.0, 0.8), small_portfolio_module, params_module, simulation=run).basis_risk
    assert (perfect["prob_loss_no_payout"], perfect["prob_payout_no_loss"], perfect["rmse_cny"]) == (0.0, 0.0, 0.0)
    assert perfect["mean_difference_cny"] == 0.0 and perfect["rmse_mc_se_cny"] == 0.0
    # ... while the trigger's retention is a protection gap, reported apart: 80 % of the expected sink
    # leaves at least the shortfall between E and 0.8 E unpaid in every year the sink falls below E
    gap = perfect["protection_gap"]
    e = s.mean()
    assert gap["mean_true_loss_cny"] == pytest.approx(35.0 * np.maximum(e - s, 0).mean())
    assert gap["mean_perfect_index_payout_cny"] == pytest.approx(35.0 * np.clip(0.8 * e - s, 0, 0.8 * e).mean())
    assert gap["prob_loss_no_payout_by_design"] == pytest.approx(((s < e) & (s >= 0.8 * e)).mean())
    assert gap["mean_gap_cny"] > 0 and gap["mean_gap_mc_se_cny"] > 0
    # an index error adds basis risk, strictly
    qe = quote(SinkIndexCover(35.0, 0.8, error="normal", error_cv=0.2), small_portfolio_module,
               params_module, simulation=run)
    b = qe.basis_risk
    assert b["rmse_cny"] > 0 and b["prob_loss_no_payout"] + b["prob_payout_no_loss"] > 0
    assert b["protection_gap"] == pytest.approx(gap)          # the gap does not depend on the index error
    qf = quote(PriceFloorCover(60.0, volume_tco2e=1000.0), small_portfolio_module, params_module, simulation=run)
    assert qf.provenance["price_model_sha256"] and qf.exposure["sum_insured_cny"] == pytest.approx(60_000.0)
    assert 0 < qf.premium["pure_rate"] < 1
    with pytest.raises(InsuranceInputError, match="credits issued are 0"):
        quote(PriceFloorCover(60.0), small_portfolio_module, params_module, simulation=run)


def test_a_quote_without_parameter_uncertainty_has_no_parameter_sd_nor_interval(small_portfolio_module, params_module):
    from models.dynamics import SimulationSwitches

    q = quote(StockLossCover(60.0), small_portfolio_module, params_module, paths=32, seed=4,
              switches=SimulationSwitches(parameter_uncertainty=False))
    p = q.to_dict()["premium"]
    assert p["parameter_sd_cny"] is None
    assert p["parameter_sd_ci95_low_cny"] is None and p["parameter_sd_ci95_high_cny"] is None


def test_quote_is_reproducible_and_block_split_invariant(small_portfolio_module, params_module):
    cov = SinkIndexCover(35.0, error="normal", error_cv=0.2)
    a = quote(cov, small_portfolio_module, params_module, paths=96, seed=4, chunk_paths=32)
    b = quote(cov, small_portfolio_module, params_module, paths=96, seed=4, chunk_paths=96)
    assert a.premium == b.premium and a.basis_risk == b.basis_risk
    c = quote(cov, small_portfolio_module, params_module, paths=96, seed=5)
    assert c.premium["pure_premium_cny"] != a.premium["pure_premium_cny"]
    with pytest.raises(InsuranceInputError, match="paths"):
        quote(cov, small_portfolio_module, params_module, paths=1)
    with pytest.raises(InsuranceInputError, match="cover must be"):
        quote("stock", small_portfolio_module, params_module, paths=8)
    assert isinstance(a.frame("risk.ep_curve"), pd.DataFrame)


def test_published_rates_are_the_reference_figures():
    from benchmarks.insurance_rates import published_rates

    pub = published_rates().set_index("case")["rate"]
    # finance_practice.md §2: Xinluo 1.2 M on 20 M; Fuding 240k on 3 M; Huangyan ~0.60 %; Fujian 2 and 3 per mille
    assert pub["xinluo_2021"] == pytest.approx(1.2 / 20) and pub["fuding_2022"] == pytest.approx(0.24 / 3)
    assert pub["fujian_2010_public_welfare"] == 0.002 and pub["fujian_2010_commercial"] == 0.003
    assert pub["hebei_chestnut_2015"] == 0.0038


def test_names_are_checked_before_the_simulation(small_portfolio_module, params_module, monkeypatch):
    """An unknown subsidy scheme or price model is refused before the engine runs (it failed after it)."""
    import finance_engine.simulation as sim

    def no_engine(*a, **k):
        raise AssertionError("the engine ran before the names were checked")

    monkeypatch.setattr(sim, "simulate", no_engine)
    with pytest.raises(InsuranceInputError, match="bogus"):
        quote(StockLossCover(60.0), small_portfolio_module, params_module, paths=8, subsidy="bogus")
    with pytest.raises(InsuranceInputError, match="price_model"):
        quote(PriceFloorCover(50.0, price_model="nope"), small_portfolio_module, params_module, paths=8)


@pytest.mark.parametrize("field, value", [("share", float("nan")), ("share", 1.5), ("reinstatement_pct", float("inf")),
                                          ("reinstatement_pct", -0.1)])
def test_a_layers_share_and_reinstatement_premium_are_finite_and_in_range(field, value):
    with pytest.raises(InsuranceInputError, match=f"layer.{field}"):
        LayerSpec(1e6, 4e6, reinstatements=1, **{field: value})


def test_the_sink_index_pays_on_the_sink_before_harvest(params_module):
    """A clear-fell at the rotation age is no peril: the index adds the harvest back, so a portfolio that
    reaches rotation age in the policy year is not paid for its own harvest."""
    from models.portfolio import validate_frame
    from tests.conftest import make_frame

    df = make_frame(60, seed=3, species=["chinese_fir", "masson_pine"])
    df["rotation_age_years"] = np.where(np.arange(60) < 30, df["age_years"].astype(float), np.nan)  # half due now
    pf = validate_frame(df, params_module, source="rotation")
    res = simulate(pf, params_module, years=1, paths=64, seed=3, levels=("portfolio",), chunk_paths=64)
    net = res.paths_of("sink_tco2e")[0, :, 0]
    harvest = res.paths_of("harvest_tco2e")[0, :, 0]
    assert harvest.min() > 0 and net.mean() < 0                     # the harvest outweighs the year's growth
    q = quote(SinkIndexCover(35.0, 0.8), pf, params_module, simulation=res, account_level=None)
    s = net + harvest
    e = s.mean()
    assert q.samples["expected_sink_tco2e"][0] == pytest.approx(e) and e > 0
    np.testing.assert_allclose(q.samples["true_sink_tco2e"], s)
    assert q.premium["pure_premium_cny"] == pytest.approx(35.0 * np.clip(0.8 * e - s, 0.0, 0.8 * e).mean())
    # on the net sink the harvest alone would have paid the full limit in every path
    assert (net < 0).all() and q.risk["prob_payout"] < 0.5


def test_an_unlimited_sink_index_quote_round_trips(run, small_portfolio_module, params_module):
    cov = SinkIndexCover(35.0, trigger_fraction=0.8, limit_cny=math.inf)
    q = quote(cov, small_portfolio_module, params_module, simulation=run, account_level=None)
    d = json.loads(q.to_json())
    assert d["cover"]["limit_cny"] == "unlimited"
    assert Quote.from_dict(d).cover_terms() == cov
    assert Quote.from_dict(d).cover_terms().limit_cny == math.inf
    assert d["premium"]["capital_measure"].startswith("TVaR")


def test_a_sink_index_basis_risk_names_its_reference_the_perfect_index(params):
    """The basis-risk block's reference is the perfect-index payout: its mean and the probability it pays are
    named for it (the true loss is the protection gap's), and they equal the gap block's."""
    from models.portfolio import validate_frame
    from tests.conftest import make_frame

    pf = validate_frame(make_frame(30, seed=1), params)
    br = quote(SinkIndexCover(60.0, 0.8, error="normal", error_cv=0.1), pf, params, paths=128, years=2,
               seed=4).basis_risk
    assert "mean_true_loss_cny" not in br and "prob_loss" not in br
    assert br["mean_perfect_index_payout_cny"] == pytest.approx(br["protection_gap"]["mean_perfect_index_payout_cny"])
    assert br["mean_perfect_index_payout_cny"] < br["protection_gap"]["mean_true_loss_cny"]
    assert 0 <= br["prob_perfect_index_pays"] <= 1
