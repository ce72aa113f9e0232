"""Cover types: stock-loss indemnity, sink index with basis risk, price floor (closed forms, hand cases, errors)."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from finance_engine.insurance import InsuranceInputError
from finance_engine.insurance.basis_risk import basis_risk, protection_gap
from finance_engine.insurance.covers import (CoverError, Deductible, PriceFloorCover, SinkIndexCover, StockLossCover,
                                             cover_from_dict, measured_sink_index, price_floor_losses,
                                             sink_index_losses, stock_loss_losses, subset_losses)
from finance_engine.price import PriceModelParams, simulate_price_paths


def _elt(rows):
    return pd.DataFrame(rows, columns=["sim_year", "event_id", "peril", "loss_tco2e"])


# ---- stock-loss indemnity ---------------------------------------------------------------------------
def test_single_peril_deterministic_loss_pure_premium_is_p_times_loss_times_price():
    n, loss, price = 1000, 250.0, 60.0
    years = np.arange(0, n, 8)                      # an event in one year of 8: p = 1/8
    elt = _elt({"sim_year": years, "event_id": years * 10, "peril": "fire", "loss_tco2e": loss})
    cl = stock_loss_losses(elt, n, StockLossCover(price), insured_stock_tco2e=1e6)
    p = years.size / n
    assert cl.annual_payout_cny.mean() == pytest.approx(p * loss * price, rel=1e-12)
    assert cl.events.loss.sum() == pytest.approx(cl.annual_payout_cny.sum())


def test_deductible_per_event_annual_stock_fraction_limit_and_participation():
    # year 0: two fire events of 100 t and 50 t; year 1: one typhoon of 300 t; year 2: pine wilt 80 t
    elt = _elt([(0, 1, "fire", 100.0), (0, 2, "fire", 50.0), (1, 3, "typhoon", 300.0),
                (2, 4, "pine_wilt", 80.0), (0, 1, "fire", 0.0)])   # a split row of event 1 is summed
    price, stock = 10.0, 10_000.0
    ev = StockLossCover(price, deductible=Deductible(60.0, "tco2e", "event"))
    np.testing.assert_allclose(stock_loss_losses(elt, 4, ev, stock).annual_payout_cny,
                               [(40 + 0) * 10, 240 * 10, 20 * 10, 0])
    ann = StockLossCover(price, deductible=Deductible(600.0, "cny", "annual"))
    np.testing.assert_allclose(stock_loss_losses(elt, 4, ann, stock).annual_payout_cny,
                               [1500 - 600, 3000 - 600, 800 - 600, 0])
    frac = StockLossCover(price, deductible=Deductible(0.01, "stock_fraction", "annual"))   # 100 t
    np.testing.assert_allclose(stock_loss_losses(elt, 4, frac, stock).annual_payout_cny,
                               [500, 2000, 0, 0])
    lim = StockLossCover(price, limit_cny=1000.0, participation=0.5, perils=("fire", "typhoon"))
    cl = stock_loss_losses(elt, 4, lim, stock)
    np.testing.assert_allclose(cl.annual_payout_cny, [500, 500, 0, 0])   # pine wilt not covered
    # event payouts add up to the annual payout, split pro rata; by peril too
    np.testing.assert_allclose(np.bincount(cl.events.year, cl.events.loss, minlength=4), cl.annual_payout_cny)
    np.testing.assert_allclose(cl.events.loss[:2], [500 * 100 / 150, 500 * 50 / 150])
    by = cl.payout_by_peril()
    np.testing.assert_allclose(by["fire"] + by["typhoon"], cl.annual_payout_cny)
    assert lim.sum_insured_cny(stock) == 500.0


def test_stock_loss_empty_table_and_bad_input():
    empty = _elt([])
    cl = stock_loss_losses(empty, 5, StockLossCover(50.0), 100.0)
    assert cl.annual_payout_cny.tolist() == [0.0] * 5 and cl.events.n_events == 0
    with pytest.raises(InsuranceInputError, match="sim_year"):
        stock_loss_losses(_elt([(7, 1, "fire", 1.0)]), 5, StockLossCover(50.0), 100.0)
    with pytest.raises(InsuranceInputError, match="missing required column"):
        stock_loss_losses(empty.drop(columns="peril"), 5, StockLossCover(50.0), 100.0)
    with pytest.raises(CoverError, match="unknown peril"):
        StockLossCover(50.0, perils=("fire", "flood"))
    with pytest.raises(CoverError, match="price_cny_per_tco2e"):
        StockLossCover(0.0)
    with pytest.raises(CoverError, match="participation"):
        StockLossCover(50.0, participation=1.5)
    with pytest.raises(CoverError, match="deductible.amount"):
        Deductible(-1.0)
    with pytest.raises(CoverError, match="stock fraction"):
        Deductible(2.0, "stock_fraction")
    with pytest.raises(CoverError, match="deductible.basis"):
        Deductible(1.0, "cny", "quarterly")


# ---- sink index -------------------------------------------------------------------------------------
def _sink(paths=4000, seed=0):
    rng = np.random.default_rng(seed)
    return (1000.0 + 400.0 * rng.standard_normal(paths))[None, :]        # (1 year, paths)


def test_index_without_error_at_full_trigger_pays_exactly_the_shortfall():
    s = _sink()
    cov = SinkIndexCover(35.0, trigger_fraction=1.0, limit_cny=math.inf, expected_sink_tco2e=1000.0)
    cl = sink_index_losses(s, cov, seed=1)
    np.testing.assert_array_equal(cl.annual_payout_cny, cl.true_loss_cny)
    np.testing.assert_allclose(cl.true_loss_cny, 35.0 * np.maximum(1000.0 - s[0], 0.0))
    br = basis_risk(cl.annual_payout_cny, cl.true_loss_cny)
    assert br.rmse_cny == 0 and br.prob_loss_no_payout == 0 and br.prob_payout_no_loss == 0
    assert br.correlation == pytest.approx(1.0)
    # the normal closed form of E[(E - S)+] = sd * phi(0) for S ~ N(E, sd^2), within 4 MC standard errors
    se = cl.true_loss_cny.std(ddof=1) / math.sqrt(s.size)
    assert abs(cl.true_loss_cny.mean() - 35.0 * 400.0 * stats.norm.pdf(0)) < 4 * se


def test_index_trigger_and_default_limit():
    s = np.array([[1000.0, 900.0, 500.0, -2000.0]])
    cov = SinkIndexCover(10.0, trigger_fraction=0.8, expected_sink_tco2e=1000.0)   # trigger 800 t, limit 8000
    cl = sink_index_losses(s, cov)
    np.testing.assert_allclose(cl.annual_payout_cny, [0, 0, 3000, 8000])
    np.testing.assert_allclose(cl.true_loss_cny, [0, 1000, 5000, 30000])


def test_index_measurement_error_is_keyed_by_path_and_has_the_stated_cv():
    s = np.full((2, 20000), 1000.0)
    e = np.array([1000.0, 1000.0])
    ids = np.arange(20000)
    for kind in ("normal", "lognormal"):
        m = measured_sink_index(s, e, kind, 0.2, seed=7, path_ids=ids)
        assert m.mean() == pytest.approx(1000.0, abs=4 * 200 / math.sqrt(m.size))
        assert (m / 1000.0).std() == pytest.approx(0.2, rel=0.03)
        part = measured_sink_index(s[:, 5000:6000], e, kind, 0.2, seed=7, path_ids=ids[5000:6000])
        np.testing.assert_array_equal(part, m[:, 5000:6000])   # block split does not change a path's draw
    assert not np.array_equal(measured_sink_index(s, e, "normal", 0.2, 7, ids),
                              measured_sink_index(s, e, "normal", 0.2, 8, ids))


def test_index_with_error_has_basis_risk_both_ways():
    s = _sink()
    cov = SinkIndexCover(35.0, trigger_fraction=1.0, limit_cny=math.inf, expected_sink_tco2e=1000.0,
                         error="normal", error_cv=0.3)
    cl = sink_index_losses(s, cov, seed=3)
    br = basis_risk(cl.annual_payout_cny, cl.true_loss_cny)
    assert br.prob_loss_no_payout > 0.05 and br.prob_payout_no_loss > 0.05
    assert 0.3 < br.correlation < 0.95 and br.rmse_cny > 0


def test_index_bad_input():
    with pytest.raises(CoverError, match="trigger_fraction"):
        SinkIndexCover(10.0, trigger_fraction=0.0)
    with pytest.raises(CoverError, match="error must be"):
        SinkIndexCover(10.0, error="uniform")
    with pytest.raises(CoverError, match="error_cv"):
        SinkIndexCover(10.0, error="normal", error_cv=-0.1)
    with pytest.raises(CoverError, match="expected sink is <= 0"):
        sink_index_losses(np.array([[-5.0, -1.0]]), SinkIndexCover(10.0))
    with pytest.raises(InsuranceInputError, match="years, paths"):
        sink_index_losses(np.array([1.0, 2.0]), SinkIndexCover(10.0))


# ---- basis risk on a hand-built case ---------------------------------------------------------------
def test_basis_risk_hand_case():
    pay = [0.0, 10.0, 0.0, 5.0]
    loss = [0.0, 0.0, 8.0, 5.0]
    br = basis_risk(pay, loss)
    assert br.prob_loss_no_payout == 0.25 and br.prob_payout_no_loss == 0.25
    assert br.prob_no_payout_given_loss == 0.5
    assert br.rmse_cny == pytest.approx(math.sqrt((100 + 64) / 4))
    assert br.mean_difference_cny == pytest.approx(0.5)
    # Pearson by hand: cov = -23.75, sum sq dev 68.75 and 46.75
    assert br.correlation == pytest.approx(-23.75 / math.sqrt(68.75 * 46.75))
    assert br.difference_quantiles_cny["p50"] == pytest.approx(0.0)
    assert math.isnan(basis_risk([0, 0], [1, 2]).correlation)
    with pytest.raises(InsuranceInputError, match="differ in length"):
        basis_risk([1.0], [1.0, 2.0])
    with pytest.raises(InsuranceInputError, match=">= 0"):
        basis_risk([-1.0], [1.0])


# ---- price floor ------------------------------------------------------------------------------------
def test_price_floor_deterministic_case():
    model = PriceModelParams(60.0, 0.0, 0.0)
    pr = simulate_price_paths(model, np.arange(5), 2, seed=1, start_price_cny_per_tco2e=60.0)
    cl = price_floor_losses(pr, 100.0, PriceFloorCover(70.0))
    np.testing.assert_allclose(cl.annual_payout_cny, 1000.0)
    cl = price_floor_losses(pr, 100.0, PriceFloorCover(70.0, limit_cny=400.0, participation=0.5))
    np.testing.assert_allclose(cl.annual_payout_cny, 200.0)
    assert price_floor_losses(pr, 100.0, PriceFloorCover(50.0)).annual_payout_cny.max() == 0.0


def test_price_floor_matches_lognormal_put_closed_form():
    # kappa = 0, no jumps: ln P_1 ~ N(ln P_0, sigma^2); E[(K - P_1)+] = K Phi(d) - P_0 e^{s^2/2} Phi(d - s)
    p0, k, sig, vol, n = 60.0, 65.0, 0.3, 1000.0, 40000
    model = PriceModelParams(60.0, 0.0, sig)
    pr = simulate_price_paths(model, np.arange(n), 1, seed=11, start_price_cny_per_tco2e=p0)
    cl = price_floor_losses(pr, vol, PriceFloorCover(k))
    d = (math.log(k) - math.log(p0)) / sig
    exact = vol * (k * stats.norm.cdf(d) - p0 * math.exp(sig * sig / 2) * stats.norm.cdf(d - sig))
    se = cl.annual_payout_cny.std(ddof=1) / math.sqrt(n)
    assert abs(cl.annual_payout_cny.mean() - exact) < 4 * se


def test_price_floor_bad_input_and_round_trip():
    pr = np.full((3, 2), 60.0)
    with pytest.raises(InsuranceInputError, match="volume_tco2e"):
        price_floor_losses(pr, np.ones((2, 3)), PriceFloorCover(50.0))
    with pytest.raises(InsuranceInputError, match="prices"):
        price_floor_losses(np.full((3, 1), 60.0), 1.0, PriceFloorCover(50.0))
    with pytest.raises(CoverError, match="strike"):
        PriceFloorCover(-1.0)
    for c in (StockLossCover(60.0, perils=("fire",), deductible=Deductible(0.02, "stock_fraction", "event")),
              SinkIndexCover(35.0, 0.7, error="lognormal", error_cv=0.1), PriceFloorCover(55.0, 1e4)):
        assert cover_from_dict(c.to_dict()) == c
    with pytest.raises(CoverError, match="unknown cover kind"):
        cover_from_dict({"kind": "hail"})


# ---- basis risk against the perfect-index payout; protection gap -----------------------------------------
def test_a_perfect_index_has_no_basis_risk_and_error_adds_some():
    s = _sink()
    base = dict(price_cny_per_tco2e=35.0, trigger_fraction=0.8, expected_sink_tco2e=1000.0)
    perfect = sink_index_losses(s, SinkIndexCover(**base), seed=3)
    # the perfect-index payout is the contract on the true sink: 35 min((800 - S)+, 800), by hand
    np.testing.assert_allclose(perfect.perfect_index_payout_cny, 35.0 * np.clip(800.0 - s[0], 0.0, 800.0))
    np.testing.assert_array_equal(perfect.annual_payout_cny, perfect.perfect_index_payout_cny)
    br = basis_risk(perfect.annual_payout_cny, perfect.perfect_index_payout_cny)
    assert (br.prob_loss_no_payout, br.prob_payout_no_loss, br.rmse_cny, br.mean_difference_cny) == (0, 0, 0, 0)
    # against the true loss the same perfect index "misses" every year with 800 <= S < 1000: that is the
    # contract's retention (a protection gap), not basis risk
    gap = protection_gap(perfect.perfect_index_payout_cny, perfect.true_loss_cny)
    in_retention = (s[0] >= 800) & (s[0] < 1000)
    assert gap.prob_loss_no_payout_by_design == pytest.approx(in_retention.mean())
    assert gap.prob_loss_no_payout_by_design == pytest.approx(stats.norm.cdf(0) - stats.norm.cdf(-0.5), abs=0.03)
    # E[gap] = 35 E[min((1000 - S)+, 200)] = 35 int_0^200 P(1000 - S > x) dx for S ~ N(1000, 400^2) (the
    # limit 800 x 35 is not reached: S > -800 in these draws)
    from scipy import integrate

    assert s.min() > -800
    closed = 35.0 * integrate.quad(lambda x: stats.norm.sf(x / 400.0), 0.0, 200.0)[0]
    assert gap.mean_gap_cny == pytest.approx(closed, rel=0.05)
    for cv in (0.05, 0.2):
        noisy = sink_index_losses(s, SinkIndexCover(**base, error="normal", error_cv=cv), seed=3)
        b = basis_risk(noisy.annual_payout_cny, noisy.perfect_index_payout_cny)
        assert b.rmse_cny > 0 and b.prob_loss_no_payout > 0 and b.prob_payout_no_loss > 0
        np.testing.assert_array_equal(noisy.perfect_index_payout_cny, perfect.perfect_index_payout_cny)
    more = sink_index_losses(s, SinkIndexCover(**base, error="normal", error_cv=0.2), seed=3)
    less = sink_index_losses(s, SinkIndexCover(**base, error="normal", error_cv=0.05), seed=3)
    assert (basis_risk(more.annual_payout_cny, more.perfect_index_payout_cny).rmse_cny
            > basis_risk(less.annual_payout_cny, less.perfect_index_payout_cny).rmse_cny)


def test_replicates_re_estimate_the_expected_sink_on_the_kept_paths():
    rng = np.random.default_rng(4)
    s = 1000.0 + 400.0 * rng.standard_normal((2, 50))                  # 2 policy years x 50 paths
    cov = SinkIndexCover(35.0, 0.8, error="normal", error_cv=0.1)
    full = sink_index_losses(s, cov, seed=5, path_ids=np.arange(100, 150))
    keep_paths = rng.random(50) < 0.6
    keep = np.repeat(keep_paths, 2)                                     # path-major: a path's 2 years together
    rep = subset_losses(full, keep)
    # independently: the cover on the kept columns alone, E their own mean, the same keyed errors
    direct = sink_index_losses(s[:, keep_paths], cov, seed=5, path_ids=np.arange(100, 150)[keep_paths])
    np.testing.assert_allclose(rep.annual_payout_cny, direct.annual_payout_cny)
    np.testing.assert_allclose(rep.index["expected_sink_tco2e"], np.repeat(s[:, keep_paths].mean(axis=1)[None], keep_paths.sum(), 0).ravel())
    assert not np.allclose(rep.index["expected_sink_tco2e"], full.index["expected_sink_tco2e"][keep])
    # a given expected sink is a fixed contract term: subsets are plain slices
    fixed = sink_index_losses(s, SinkIndexCover(35.0, 0.8, expected_sink_tco2e=1000.0), seed=5)
    assert fixed.replicate is None
    np.testing.assert_array_equal(subset_losses(fixed, keep).annual_payout_cny, fixed.annual_payout_cny[keep])
    with pytest.raises(InsuranceInputError, match="whole paths"):
        subset_losses(full, np.r_[True, False, np.ones(98, bool)])


# ---- an unlimited cover stays unlimited through JSON ----------------------------------------------------
@pytest.mark.parametrize("cover", [
    SinkIndexCover(35.0, 1.0, limit_cny=math.inf),
    SinkIndexCover(35.0, 0.8),                                          # the default limit (triggered sink)
    SinkIndexCover(35.0, 0.8, limit_cny=5e5),
    StockLossCover(60.0), StockLossCover(60.0, limit_cny=1e6),
    PriceFloorCover(55.0, 1e4), PriceFloorCover(55.0, 1e4, limit_cny=2e5),
])
def test_cover_terms_round_trip_through_json(cover):
    import json

    d = json.loads(json.dumps(cover.to_dict(), allow_nan=False))
    back = cover_from_dict(d)
    assert back == cover and back.limit_cny == cover.limit_cny
    if cover.limit_cny is not None and math.isinf(cover.limit_cny):
        assert d["limit_cny"] == "unlimited"
    # an unlimited and a default-limit sink index differ after the trip, as before it
    assert cover_from_dict({**d, "limit_cny": "unlimited"}).limit_cny == math.inf


def test_an_unlimited_sink_index_pays_beyond_the_default_limit():
    s = np.array([[1000.0, -2000.0]])
    unlimited = sink_index_losses(s, cover_from_dict({"kind": "sink-index", "price_cny_per_tco2e": 10.0,
                                                      "trigger_fraction": 0.8, "expected_sink_tco2e": 1000.0,
                                                      "limit_cny": "unlimited"}))
    np.testing.assert_allclose(unlimited.annual_payout_cny, [0.0, 28_000.0])   # 10 x (800 + 2000), no cap at 8000
    with pytest.raises(CoverError, match="limit_cny"):
        SinkIndexCover(10.0, limit_cny="lots")
