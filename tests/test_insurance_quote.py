"""The policy quote's reinsurance and Monte Carlo errors against closed forms and independent computations:
net capital with reinstatement premiums, the remote layer's risk load, rate on line on the upfront premium,
jackknife errors of the premium build-up, standard errors over paths and parameter sets, the price floor
on a price model with several steps a year."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats

from finance_engine.insurance import EventLosses, insurer_capital
from finance_engine.insurance.covers import (CoverLosses, PriceFloorCover, StockLossCover, _annual_events,
                                             per_path_to_sim_years)
from finance_engine.insurance.quote import LayerSpec, Loading, quote, quote_losses

NONE = Loading("none", 0.0, 0.0, 0.0)


def _cover(annual, events=None):
    annual = np.asarray(annual, dtype=float)
    return CoverLosses(annual, _annual_events(annual) if events is None else events)


def _quote(losses, **kw):
    kw.setdefault("subsidy", None)
    return quote_losses(losses, sum_insured_cny=kw.pop("si", 1e4), area_ha=kw.pop("area", 2.0),
                        insured_tco2e=kw.pop("tco2e", 50.0), return_periods=(10,), **kw)


# ---- finding 3: net capital counts the reinstatement premiums paid --------------------------------
def test_net_capital_with_a_paid_reinstatement_closed_form_and_agrees_with_insurer_capital():
    # 1,000 years, 20 with one event of 30; layer 10 xs 10, one reinstatement at 100 %:
    # E[X] = 0.2, P = 0.2 / 1.02; a loss year costs the cedant 20 + P + P, another year P
    n = 1000
    ev = EventLosses(np.arange(20), np.full(20, 30.0), n)
    annual = np.bincount(ev.year, ev.loss, minlength=n)
    spec = LayerSpec(10.0, 10.0, reinstatements=1, reinstatement_pct=1.0)
    q = _quote(CoverLosses(annual, ev), loading=NONE, layers=[spec])
    p = 0.2 / 1.02
    c = q.capital
    assert q.layers[0]["upfront_premium_cny"] == pytest.approx(p)
    assert c["net_var_cny"] == pytest.approx(20.0 + 2 * p)
    assert c["net_mean_cny"] == pytest.approx(0.02 * (20 + 2 * p) + 0.98 * p)
    assert c["net_capital_cny"] == pytest.approx(19.6 + 0.98 * p)         # 19.6 before: no reinstatement premium
    assert c["gross_capital_cny"] == pytest.approx(30.0 - 0.6)
    # a loaded premium: the quote's and insurer_capital's net capital agree (one convention)
    loaded = _quote(CoverLosses(annual, ev), loading=Loading("sd", 0.5, 0.2, 0.0), layers=[spec])
    prem = loaded.layers[0]["reinsurance_premium_cny"]
    ref = insurer_capital(ev, attachment=10.0, limit=10.0, reinstatements=(1, 1.0), reinsurance_premium=prem)
    assert loaded.capital["net_capital_cny"] == pytest.approx(ref.net_capital)
    assert loaded.capital["net_mean_cny"] == pytest.approx(ref.net_mean)
    assert loaded.capital["net_var_cny"] == pytest.approx(ref.net_var)
    assert ref.net_capital == pytest.approx(19.6 + 0.98 * prem / 1.02)


# ---- finding 4: a remote layer carries a risk load -------------------------------------------------
def test_remote_layer_is_loaded_on_its_tvar_at_the_capital_level():
    # 1,000 years, 3 with an event of 150; layer 40 xs 80 attaches in 0.3 % < 0.5 % of years:
    # VaR_0.995 of the layer = 0, TVaR_0.995 = 3 x 40 / 5 = 24, E[X] = 0.12
    n = 1000
    ev = EventLosses(np.array([5, 400, 800]), np.full(3, 150.0), n)
    annual = np.bincount(ev.year, ev.loss, minlength=n)
    q = _quote(CoverLosses(annual, ev), loading=Loading("coc", 0.06, 0.2, 0.05), layers=[LayerSpec(80.0, 40.0)])
    lay = q.layers[0]
    assert lay["expected_layer_loss_cny"] == pytest.approx(0.12)
    assert lay["reinsurance_premium_cny"] == pytest.approx(0.12 + 0.06 * (24.0 - 0.12))
    assert lay["multiple"] == pytest.approx(1 + 0.06 * 199)                   # 12.94, was 1.00
    assert "TVaR" in lay["loading_method"] and lay["loading_parameters"]["measure"] == "tvar"
    # the policy is loaded on the same measure: its annual payout (3 years of 150 in 1,000) has VaR_0.995 = 0
    # but TVaR_0.995 = 3 x 150 / 5 = 90, E = 0.45: a non-zero load, and a 100 % stop loss on the whole
    # payout costs exactly the policy's risk-loaded premium
    assert q.premium["loading_parameters"]["measure"] == "tvar"
    assert q.premium["risk_load_cny"] == pytest.approx(0.06 * (90.0 - 0.45))
    stop = _quote(CoverLosses(annual, ev), loading=Loading("coc", 0.06, 0.2, 0.05),
                  layers=[LayerSpec(0.0, 1e9, basis="aggregate")])
    assert stop.layers[0]["reinsurance_premium_cny"] == pytest.approx(stop.premium["risk_loaded_premium_cny"])


# ---- finding 6: rate on line on the upfront premium ------------------------------------------------
def _compound_poisson_limited_means(lam, theta, attachment, limit, caps, h=0.01):
    """E[min(Z, m)] for Z the annual sum of per-event layer losses min(max(L - A, 0), C), L ~ Exp(theta),
    N ~ Poisson(lam): Panjer's recursion on a grid of width h (mass dispersal), independent of the code."""
    lam_in = lam * math.exp(-attachment / theta)          # events entering the layer; L - A | L > A ~ Exp(theta)
    k = int(round(limit / h))
    edges = np.minimum((np.arange(k + 1) + 0.5) * h, limit)
    cdf = 1.0 - np.exp(-edges / theta)
    f = np.empty(k + 1)
    f[0] = cdf[0]
    f[1:k] = np.diff(cdf[:k])
    f[k] = 1.0 - cdf[k - 1]                               # the atom at the limit
    top = int(round(max(caps) / h))
    g = np.zeros(top + 1)
    g[0] = math.exp(-lam_in * (1.0 - f[0]))
    jf = np.arange(k + 1) * f
    for i in range(1, top + 1):
        j = np.arange(1, min(i, k) + 1)
        g[i] = lam_in / i * np.dot(jf[j], g[i - j])
    z = np.arange(top + 1) * h
    return [float(np.dot(np.minimum(z, m), g) + m * (1.0 - g.sum())) for m in caps]


def test_rate_on_line_is_upfront_over_limit_poisson_exponential():
    # Poisson 0.8 events a year, Exp(10) losses, layer 15 xs 5, one reinstatement at 100 %, no load:
    # P = E[min(Z, 30)] / (1 + E[min(Z, 15)] / 15), ROL = P / 15 (20.37 %; the total premium / 15 is 24.97 %)
    ex, ez1 = _compound_poisson_limited_means(0.8, 10.0, 5.0, 15.0, (30.0, 15.0))
    upfront = ex / (1.0 + ez1 / 15.0)
    rng = np.random.default_rng(1)
    n = 200_000
    counts = rng.poisson(0.8, n)
    year = np.repeat(np.arange(n), counts)
    ev = EventLosses(year, rng.exponential(10.0, year.size), n)
    annual = np.bincount(year, ev.loss, minlength=n)
    q = _quote(CoverLosses(annual, ev), loading=NONE,
               layers=[LayerSpec(5.0, 15.0, reinstatements=1, reinstatement_pct=1.0)])
    lay = q.layers[0]
    assert lay["expected_layer_loss_cny"] == pytest.approx(ex, rel=0.02)
    assert lay["rate_on_line"] == pytest.approx(upfront / 15.0, rel=0.02)
    assert lay["rate_on_line"] == pytest.approx(lay["upfront_premium_cny"] / 15.0, rel=1e-12)
    assert lay["multiple"] == pytest.approx(1.0)                              # the total over E[X]
    half = _quote(CoverLosses(annual, ev), loading=NONE,
                  layers=[LayerSpec(5.0, 15.0, reinstatements=1, reinstatement_pct=1.0, share=0.5)])
    assert half.layers[0]["rate_on_line"] == pytest.approx(lay["rate_on_line"], rel=1e-12)


# ---- finding 5: errors of the risk-loaded and gross premium ----------------------------------------
def _frailty_sample(rng, paths, years, set_size, shape=0.5):
    """Annual payouts, path-major, whose paths share a loss rate within each parameter set."""
    lam = np.repeat(rng.gamma(shape, 1.0 / shape, paths // set_size), set_size)
    k = rng.poisson(np.repeat(lam * 0.3, years))
    return np.where(k > 0, rng.lognormal(3.0, 0.5, k.size) * k, 0.0)


def test_premium_errors_are_a_jackknife_over_whole_parameter_sets():
    rng = np.random.default_rng(7)
    paths, years, m = 200, 3, 4
    x = _frailty_sample(rng, paths, years, m)
    e, pr, fixed, si, area, tco2e = 0.2, 0.05, 3.0, 1e4, 2.0, 50.0
    q = _quote(_cover(x), loading=Loading("coc", 0.06, e, pr, fixed), paths_years=(paths, years),
               parameter_set_size=m, si=si, area=area, tco2e=tco2e)
    p = q.premium

    def coc(v):                                            # E + 6 % (TVaR_0.995 - E), by hand
        s = np.sort(v)
        k = v.size * 0.995                                 # tail of mass n - k: x_(ceil k) weighted ceil(k) - k
        j = math.ceil(k - 1e-9)
        tvar = (s[j:].sum() + (j - k) * s[j - 1]) / (v.size - k)
        return v.mean() + 0.06 * max(tvar - v.mean(), 0.0)

    group = np.repeat((np.arange(paths) // m) % 10, years)     # 50 sets dealt round-robin into 10 groups
    reps = []
    for k in range(10):
        v = x[group != k]
        gross = (coc(v) + fixed) / (1 - e - pr)
        reps.append([coc(v), gross, v.mean() / gross, coc(v) - v.mean()])
    reps = np.array(reps)
    se = np.sqrt(9 / 10 * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))
    assert p["risk_loaded_premium_cny"] == pytest.approx(coc(x))
    assert p["risk_loaded_premium_mc_se_cny"] == pytest.approx(se[0], rel=1e-9)
    assert p["risk_load_mc_se_cny"] == pytest.approx(se[3], rel=1e-9)
    assert p["gross_premium_mc_se_cny"] == pytest.approx(se[1], rel=1e-9)
    assert p["expected_loss_ratio_mc_se"] == pytest.approx(se[2], rel=1e-9)
    assert p["rate_on_sum_insured_mc_se"] == pytest.approx(se[1] / si, rel=1e-9)
    assert p["premium_per_mu_mc_se_cny"] == pytest.approx(se[1] / (15 * area), rel=1e-9)
    assert p["premium_per_ha_mc_se_cny"] == pytest.approx(se[1] / area, rel=1e-9)
    assert p["premium_per_tco2e_mc_se_cny"] == pytest.approx(se[1] / tco2e, rel=1e-9)
    t = stats.t.ppf(0.975, 9)
    assert p["gross_premium_ci95_cny"] == pytest.approx([p["gross_premium_cny"] - t * se[1],
                                                         p["gross_premium_cny"] + t * se[1]])
    # too few parameter sets (4 < 5 groups): no jackknife error rather than a wild one
    few = _quote(_cover(x[:4 * m * years]), paths_years=(4 * m, years), parameter_set_size=m)
    assert few.premium["gross_premium_mc_se_cny"] is None and few.premium["gross_premium_ci95_cny"] is None


@pytest.mark.parametrize("method, parameter", [("coc", 0.06), ("wang", 0.3)])
def test_gross_premium_error_matches_the_spread_across_independent_runs(method, parameter):
    # 150 runs of 400 paths x 3 years in parameter sets of 8 sharing a loss rate: the reported error's rms
    # against the gross premium's sd across runs (an error over single years would be about half of it)
    rng = np.random.default_rng(1)
    est, ses = [], []
    for _ in range(150):
        x = _frailty_sample(rng, 400, 3, 8)
        q = _quote(_cover(x), loading=Loading(method, parameter, 0.2, 0.05), paths_years=(400, 3),
                   parameter_set_size=8)
        est.append(q.premium["gross_premium_cny"])
        ses.append(q.premium["gross_premium_mc_se_cny"])
    ratio = math.sqrt(np.mean(np.square(ses))) / np.std(est, ddof=1)
    assert 0.75 < ratio < 1.33


# ---- finding 8: the pure premium's error counts paths, not years -----------------------------------
def test_pure_premium_error_over_path_means_when_a_paths_years_are_correlated():
    # each path has its own rate lambda ~ Gamma(0.5, 2) (mean 1, variance 2) for its 10 years, loss 100 a
    # count: Var(path mean) = 100^2 (Var lambda + E lambda / 10) = 21,000, se = sqrt(21,000 / 1,000) = 4.58;
    # over 10,000 "independent" years it would be sqrt(30,000 / 10,000) = 1.73
    rng = np.random.default_rng(3)
    paths, years = 1000, 10
    x = rng.poisson(np.repeat(rng.gamma(0.5, 2.0, paths), years)) * 100.0
    q = _quote(_cover(x), paths_years=(paths, years), parameter_set_size=1)
    se = q.premium["pure_premium_mc_se_cny"]
    assert se == pytest.approx(x.reshape(paths, years).mean(axis=1).std(ddof=1) / math.sqrt(paths), rel=1e-12)
    assert se == pytest.approx(math.sqrt(21.0), rel=0.15)
    assert q.risk["aal"]["se_cny"] == se
    assert q.premium["parameter_sd_cny"] is None


def test_the_pure_premiums_parameter_sd_carries_its_interval_from_the_path_means():
    """premium.parameter_sd_ci95_low_cny / _high_cny: the MLS interval of the mean squares of the paths' mean annual
    payouts over parameter sets, by hand (a wrong array or swapped ends fail); none without sets; 0 to 0 for a
    premium that does not vary."""
    from finance_engine.simulation.summary import parameter_sd_interval

    rng = np.random.default_rng(11)
    paths, years, m = 400, 3, 8
    x = _frailty_sample(rng, paths, years, m)
    p = _quote(_cover(x), loading=NONE, paths_years=(paths, years), parameter_set_size=m).premium
    g = paths // m
    sets = x.reshape(paths, years).mean(axis=1).reshape(g, m)  # path means, in their parameter sets
    msb, msw = m * sets.mean(axis=1).var(ddof=1), sets.var(axis=1, ddof=1).mean()
    lo, hi = (float(v) for v in parameter_sd_interval(np.array(msb), np.array(msw), g, m))
    assert p["parameter_sd_cny"] == pytest.approx(math.sqrt(max(0.0, (msb - msw) / m)), rel=1e-12)
    assert p["parameter_sd_ci95_low_cny"] == pytest.approx(lo, rel=1e-12)
    assert p["parameter_sd_ci95_high_cny"] == pytest.approx(hi, rel=1e-12)
    assert 0 < lo < p["parameter_sd_cny"] < hi  # a real spread (the sets' loss rates differ)
    # the interval of the annual payouts' own years (not the path means) would differ
    ys = x.reshape(g, m * years)
    lo_y, _ = parameter_sd_interval(np.array(m * years * ys.mean(axis=1).var(ddof=1)),
                                    np.array(ys.var(axis=1, ddof=1).mean()), g, m * years)
    assert float(lo_y) != pytest.approx(lo, rel=1e-6)
    # paths that share no parameter draw: no parameter sd, so no interval
    one = _quote(_cover(x), loading=NONE, paths_years=(paths, years), parameter_set_size=1).premium
    assert one["parameter_sd_cny"] is None
    assert one["parameter_sd_ci95_low_cny"] is None and one["parameter_sd_ci95_high_cny"] is None
    # years taken as independent (no paths_years): none either
    iid = _quote(_cover(x), loading=NONE).premium
    assert iid["parameter_sd_cny"] is None and iid["parameter_sd_ci95_high_cny"] is None
    # no payout on any path: the premium does not vary, its sd and interval are exactly 0
    zero = _quote(_cover(np.zeros(paths * years)), loading=NONE, paths_years=(paths, years),
                  parameter_set_size=m).premium
    assert (zero["parameter_sd_cny"], zero["parameter_sd_ci95_low_cny"], zero["parameter_sd_ci95_high_cny"]) == \
           (0.0, 0.0, 0.0)


# ---- finding 10: layer errors over parameter sets; payout AAL errors; price floor steps ------------
def test_layer_loss_error_counts_parameter_sets():
    rng = np.random.default_rng(5)
    paths, years, m = 400, 2, 8
    x = _frailty_sample(rng, paths, years, m)
    q = _quote(_cover(x), loading=NONE, layers=[LayerSpec(30.0, 60.0)], paths_years=(paths, years),
               parameter_set_size=m)
    layer = np.minimum(np.maximum(x - 30.0, 0.0), 60.0)                 # one event a year: per-event = annual
    set_means = layer.reshape(paths // m, m * years).mean(axis=1)
    lay = q.layers[0]
    assert lay["expected_layer_loss_cny"] == pytest.approx(layer.mean())
    assert lay["expected_layer_loss_se_cny"] == pytest.approx(set_means.std(ddof=1) / math.sqrt(paths // m))
    assert lay["expected_layer_loss_iid_se_cny"] == pytest.approx(layer.std(ddof=1) / math.sqrt(layer.size))
    assert lay["reinsurance_premium_mc_se_cny"] > 0 and lay["rate_on_line_mc_se"] > 0


@pytest.fixture(scope="module")
def engine_run():
    from finance_engine.simulation import simulate
    from models.parameters import load_parameters
    from models.portfolio import validate_frame
    from tests.conftest import make_frame

    params = load_parameters("lishui")
    pf = validate_frame(make_frame(300, seed=5), params, source="small")
    res = simulate(pf, params, years=2, paths=64, seed=9, levels=("portfolio", "county"),
                   loss_table_level="portfolio", chunk_paths=64)
    return pf, params, res


def test_engine_payout_aal_errors_count_parameter_sets(engine_run):
    pf, params, res = engine_run
    m = res.provenance["switches"]["parameter_set_size"]
    assert res.provenance["switches"]["parameter_uncertainty"] and m > 1
    q = quote(StockLossCover(60.0), pf, params, simulation=res)

    def set_se(v):                                                      # path-major (path, year)
        sets = v.reshape(64 // m, m * 2).mean(axis=1)
        return sets.std(ddof=1) / math.sqrt(sets.size)

    for row in q.aal_by_peril:
        ground = 60.0 * per_path_to_sim_years(res.paths_of(f"loss_{row['peril']}_tco2e")[..., 0])
        assert row["aal_se_cny"] == pytest.approx(set_se(ground), rel=1e-9, abs=1e-9)
    total = sum(row["payout_aal_cny"] for row in q.aal_by_peril)
    assert total == pytest.approx(q.premium["pure_premium_cny"])
    biggest = max(q.aal_by_peril, key=lambda r: r["payout_aal_cny"])
    ground = 60.0 * per_path_to_sim_years(res.paths_of(f"loss_{biggest['peril']}_tco2e")[..., 0])
    assert biggest["payout_aal_se_cny"] == pytest.approx(set_se(ground), rel=1e-9)   # no deductible: payout = ground-up


def test_price_floor_on_a_quarterly_price_model_pays_on_year_end_prices(engine_run):
    from finance_engine.price import load_price_model, simulate_price_paths

    pf, params, res = engine_run
    pms = load_price_model()
    quarterly = dataclasses.replace(pms, models={**pms.models, "cea": dataclasses.replace(pms.model("cea"),
                                                                                          steps_per_year=4)})
    q = quote(PriceFloorCover(60.0, volume_tco2e=1000.0), pf, params, simulation=res, price_model_set=quarterly)
    prices = simulate_price_paths(quarterly.model("cea"), np.arange(64), 2, 9,
                                  start_price_cny_per_tco2e=quarterly.start_price_cny_per_tco2e)
    year_end = prices[:, [4, 8]]                                        # end of policy years 1 and 2
    assert q.premium["pure_premium_cny"] == pytest.approx(np.maximum(60.0 - year_end, 0.0).mean() * 1000.0)
    assert q.risk["aal"]["n_years"] == 128
    # the ground-up losses by peril are shown for information: a price floor covers none of them
    assert q.aal_by_peril and not any(r["covered"] for r in q.aal_by_peril)


# ---- review 2, finding 9: Monte Carlo errors of the probabilities, layer and capital figures ------------
def test_new_figure_errors_match_the_spread_across_independent_runs():
    # 150 runs of 400 paths x 3 years in parameter sets of 8 sharing a loss rate; each figure's reported
    # error (rms over runs) against its sd across runs
    rng = np.random.default_rng(11)
    keys = {"prob_payout": [], "attach": [], "exhaust": [], "events": [], "cost": [], "capital": []}
    errs = {k: [] for k in keys}
    for _ in range(150):
        x = _frailty_sample(rng, 400, 3, 8)
        q = _quote(_cover(x), loading=Loading("coc", 0.06, 0.2, 0.05), paths_years=(400, 3), parameter_set_size=8,
                   layers=[LayerSpec(10.0, 20.0)], subsidy="commercial_forest")
        lay = q.layers[0]
        for k, v, e in (("prob_payout", q.risk["prob_payout"], q.risk["prob_payout_mc_se"]),
                        ("attach", lay["prob_attachment"], lay["prob_attachment_mc_se"]),
                        ("exhaust", lay["prob_exhaustion"], lay["prob_exhaustion_mc_se"]),
                        ("events", lay["expected_events_in_layer"], lay["expected_events_in_layer_mc_se"]),
                        ("cost", q.capital["cost_of_reinsurance_cny"], q.capital["cost_of_reinsurance_mc_se_cny"]),
                        ("capital", q.premium["loading_parameters"]["capital"],
                         q.premium["loading_parameters"]["capital_mc_se_cny"])):
            keys[k].append(v)
            errs[k].append(e)
        # the subsidy amounts' errors are the shares of the gross premium's
        g_se = q.premium["gross_premium_mc_se_cny"]
        assert q.subsidy["amounts_mc_se_cny"]["central"] == pytest.approx(0.30 * g_se)
        assert q.subsidy["amounts_mc_se_cny"]["insured"] == pytest.approx(0.20 * g_se)
    for k in keys:
        ratio = math.sqrt(np.mean(np.square(errs[k]))) / np.std(keys[k], ddof=1)
        assert 0.7 < ratio < 1.4, (k, ratio)


def test_capital_relief_error_is_a_paired_jackknife():
    # by hand: 10 groups of whole parameter sets, relief = (VaR - mean) gross - (VaR - mean) net recomputed on
    # each replicate, with the layer's premium (no load) re-estimated on it too
    rng = np.random.default_rng(2)
    paths, years, m = 200, 2, 4
    x = _frailty_sample(rng, paths, years, m)
    q = _quote(_cover(x), loading=NONE, layers=[LayerSpec(0.0, 60.0, basis="aggregate")], paths_years=(paths, years),
               parameter_set_size=m)

    def relief(v):
        ceded = np.minimum(v, 60.0)
        net = v - ceded + ceded.mean()
        var = lambda a: np.sort(a)[math.ceil(a.size * 0.995) - 1]          # noqa: E731
        return (var(v) - v.mean()) - (var(net) - net.mean())

    group = np.repeat((np.arange(paths) // m) % 10, years)
    reps = np.array([relief(x[group != k]) for k in range(10)])
    assert q.capital["capital_relief_cny"] == pytest.approx(relief(x))
    assert q.capital["capital_relief_mc_se_cny"] == pytest.approx(
        math.sqrt(0.9 * ((reps - reps.mean()) ** 2).sum()), rel=1e-9)


# ---- review 2, finding 6: the sink index's trigger estimated from the sample --------------------------
def test_sink_index_errors_include_the_estimated_trigger():
    # 200 runs of 300 independent paths with a normal sink; the expected sink (and so the trigger) is the
    # run's own mean. The reported error of the pure premium, re-estimating it in each jackknife replicate,
    # matches the spread across runs; the error that holds the trigger fixed does not
    from finance_engine.insurance.covers import SinkIndexCover, sink_index_losses

    rng = np.random.default_rng(8)
    cov = SinkIndexCover(35.0, 0.8, error="normal", error_cv=0.1)
    est, ses, fixed_ses = [], [], []
    for r in range(200):
        s = (1000.0 + 400.0 * rng.standard_normal(300))[None, :]
        losses = sink_index_losses(s, cov, seed=r)
        q = _quote(losses, si=35.0 * 800.0, paths_years=(300, 1), parameter_set_size=1, loading=NONE)
        est.append(q.premium["pure_premium_cny"])
        ses.append(q.premium["pure_premium_mc_se_cny"])
        fixed_ses.append(losses.annual_payout_cny.std(ddof=1) / math.sqrt(300))
        assert q.premium["mc_error_method"].endswith("jackknife errors too")
    sd = np.std(est, ddof=1)
    assert 0.75 < math.sqrt(np.mean(np.square(ses))) / sd < 1.33
    assert math.sqrt(np.mean(np.square(fixed_ses))) / sd > 1.3         # 1.48: a low mean sink lowers the trigger


# ---- review 2, finding 10: t intervals, shared placements -------------------------------------------------
def test_pure_premium_interval_uses_students_t_over_the_units():
    rng = np.random.default_rng(3)
    paths, years, m = 48, 2, 4                                          # 12 parameter sets: t with 11 df
    x = _frailty_sample(rng, paths, years, m)
    q = _quote(_cover(x), paths_years=(paths, years), parameter_set_size=m)
    p = q.premium
    t = stats.t.ppf(0.975, 11)
    assert p["pure_premium_ci95_cny"] == pytest.approx([p["pure_premium_cny"] - t * p["pure_premium_mc_se_cny"],
                                                        p["pure_premium_cny"] + t * p["pure_premium_mc_se_cny"]])
    assert [q.risk["aal"]["ci_low_cny"], q.risk["aal"]["ci_high_cny"]] == pytest.approx(p["pure_premium_ci95_cny"])


def test_a_layer_may_be_shared_between_placements():
    from finance_engine.insurance import InsuranceInputError

    rng = np.random.default_rng(6)
    x = _frailty_sample(rng, 200, 1, 1)
    whole = _quote(_cover(x), loading=NONE, layers=[LayerSpec(20.0, 50.0)])
    halves = _quote(_cover(x), loading=NONE, layers=[LayerSpec(20.0, 50.0, share=0.5), LayerSpec(20.0, 50.0, share=0.5)])
    assert [r["expected_layer_loss_cny"] for r in halves.layers] == pytest.approx(
        [whole.layers[0]["expected_layer_loss_cny"] / 2] * 2)
    assert halves.capital["net_capital_cny"] == pytest.approx(whole.capital["net_capital_cny"])
    with pytest.raises(InsuranceInputError, match="adding up to 1.2"):
        _quote(_cover(x), layers=[LayerSpec(20.0, 50.0, share=0.6), LayerSpec(20.0, 50.0, share=0.6)])
    with pytest.raises(InsuranceInputError, match="overlap"):
        _quote(_cover(x), layers=[LayerSpec(20.0, 50.0, share=0.5), LayerSpec(40.0, 50.0, share=0.5)])


# ---- review 2, finding 7: no central subsidy for carbon covers by default ---------------------------------
def test_no_subsidy_by_default_and_explicit_schemes_still_apply():
    x = np.r_[np.zeros(90), np.full(10, 1000.0)]
    q = quote_losses(_cover(x), sum_insured_cny=1e4, area_ha=1.0, insured_tco2e=1.0,
                     loading=Loading("none", 0.0, 0.2, 0.0))
    s = q.subsidy
    assert s["scheme"] == "none" and s["amounts_cny"]["insured"] == pytest.approx(q.premium["gross_premium_cny"])
    assert s["amounts_cny"]["central"] == 0.0 and "replanting cost" in s["note"]
    # nobody else pays: the unsubsidised rate band [0.5, 1.5] applies
    assert q.rate_band["subsidised"] is False and q.rate_band["band"] == [0.5, 1.5]
    e = quote_losses(_cover(x), sum_insured_cny=1e4, area_ha=1.0, insured_tco2e=1.0,
                     loading=Loading("none", 0.0, 0.2, 0.0), subsidy="commercial_forest")
    assert e.subsidy["amounts_cny"]["central"] == pytest.approx(0.30 * e.premium["gross_premium_cny"])
    assert e.rate_band["subsidised"] is True and "replanting-cost" in e.subsidy["note"]


def test_rates_on_a_sum_insured_estimated_from_the_paths_take_the_ratios_jackknife():
    """When the sum insured is estimated from the same simulated years (a sink index's expected sink, a price
    floor's simulated volume: ``exposure``), each replicate divides by its own: the rates' errors are the
    jackknife of the ratios (here by hand), not the premium's error over a fixed sum insured."""
    rng = np.random.default_rng(7)
    paths, years, m = 200, 3, 4
    x = _frailty_sample(rng, paths, years, m)
    e, pr, fixed, tco2e = 0.2, 0.05, 3.0, 50.0

    def exposure(sample):                          # a sum insured and tonnes that move with the sample
        s = 1e4 + 40.0 * sample.annual_payout_cny.mean()
        return s, s / 200.0
    si = exposure(_cover(x))[0]
    q = _quote(_cover(x), loading=Loading("sd", 0.1, e, pr, fixed), paths_years=(paths, years),
               parameter_set_size=m, si=si, tco2e=si / 200.0, exposure=exposure)
    p = q.premium

    def gross(v):                                  # E + 0.1 sd, then expenses and profit
        return (v.mean() + 0.1 * v.std(ddof=1) + fixed) / (1 - e - pr)
    group = np.repeat((np.arange(paths) // m) % 10, years)
    reps = []
    for k in range(10):
        v = x[group != k]
        s = 1e4 + 40.0 * v.mean()
        reps.append([v.mean() / s, gross(v) / s, gross(v) / (s / 200.0), gross(v)])
    reps = np.array(reps)
    se = np.sqrt(9 / 10 * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))
    assert p["pure_rate_mc_se"] == pytest.approx(se[0], rel=1e-9)
    assert p["rate_on_sum_insured_mc_se"] == pytest.approx(se[1], rel=1e-9)
    assert p["premium_per_tco2e_mc_se_cny"] == pytest.approx(se[2], rel=1e-9)
    assert p["gross_premium_mc_se_cny"] == pytest.approx(se[3], rel=1e-9)
    assert p["rate_on_sum_insured_mc_se"] != pytest.approx(se[3] / si, rel=1e-3)  # not the fixed-SI division


def test_tvar_errors_need_ten_tail_years():
    """The VaR/TVaR table gives no TVaR error for a tail of fewer than ten simulated years (the asymptotic
    error understated the spread there), and gives it from ten on."""
    from finance_engine.insurance.risk_measures import var_tvar_table

    x = np.random.default_rng(3).lognormal(0.0, 1.0, 1500)
    t = var_tvar_table(x, levels=(0.99, 0.995)).set_index("level")
    assert np.isfinite(t.loc[0.99, "tvar_se"]) and np.isnan(t.loc[0.995, "tvar_se"])  # 15 and 7.5 tail years
    assert np.isfinite(t.loc[0.995, "tvar"])


def test_a_replicate_whose_expected_sink_cannot_be_estimated_leaves_the_figures_without_error():
    """A sink index re-estimates its expected sink in every jackknife replicate; when one group of paths holds
    the whole positive sink, the replicate without it has none (CoverError): the quote still prices, and the
    figures that needed the jackknife report no error instead of failing the quote."""
    from finance_engine.insurance.covers import SinkIndexCover, sink_index_losses

    sink = np.full((1, 40), -1.0)
    sink[0, :4] = 200.0                                       # the first parameter set (jackknife group 0)
    cover = SinkIndexCover(60.0, 0.8)
    losses = sink_index_losses(sink, cover, seed=1, path_ids=np.arange(40))
    q = _quote(losses, loading=Loading("sd", 0.1, 0.2, 0.05, 0.0), paths_years=(40, 1), parameter_set_size=4)
    assert q.premium["gross_premium_cny"] > 0
    assert q.premium["gross_premium_mc_se_cny"] is None and q.premium["risk_load_mc_se_cny"] is None


def test_a_thin_tail_on_an_atom_keeps_the_count_based_error():
    """Payouts capped at a limit put the 1-in-200 tail on an atom: its TVaR is the cap, whose error is that of
    the count of years at the cap (the engine's rule), however few years the tail holds."""
    from finance_engine.insurance.risk_measures import var_tvar_table

    rng = np.random.default_rng(5)
    x = np.where(rng.random(1200) < 0.02, 100.0, rng.exponential(5.0, 1200).clip(max=50.0))  # ~24 years at the cap
    t = var_tvar_table(x, levels=(0.995,)).set_index("level")
    assert t.loc[0.995, "tvar"] == 100.0 and 1200 * 0.005 < 10  # a six-year tail on the atom
    assert np.isfinite(t.loc[0.995, "tvar_se"]) and t.loc[0.995, "tvar_se"] >= 0.0
