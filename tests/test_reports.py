"""What the HTML reports show a reader: each figure beside its error, levels and open interval ends as they are,
the pledge rate checked, the budgets' note (the review of the reports)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from finance_engine.reports.html import fmt_parameter_sd, fmt_significant
from tests.conftest import make_frame


def _text(html: str) -> str:
    t = re.sub(r"<img[^>]*>", "", html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", t))


def test_mixed_tables_keep_small_probabilities():
    assert fmt_significant(0.0094) == "0.0094" and fmt_significant(0.015) == "0.015"
    assert fmt_significant(2.625) == "2.62" and fmt_significant(43_279.4) == "43,279" and fmt_significant(0.0) == "0"
    assert fmt_significant(float("inf")) == "unbounded" and fmt_significant(None) == "-"


def test_the_quote_slip_shows_levels_open_ends_and_the_premiums_errors(params):
    from finance_engine.insurance import StockLossCover, quote
    from finance_engine.insurance.quote import LayerSpec
    from finance_engine.reports.quote_slip import render_quote_slip
    from models.portfolio import validate_frame

    pf = validate_frame(make_frame(120, seed=4), params, source="slip")
    q = quote(StockLossCover(60.0), pf, params, paths=64, seed=3, layers=[LayerSpec(1e4, 4e4, reinstatements=1)])
    t = _text(render_quote_slip(q))
    assert "99.5%" in t and " 1 1 " not in t  # the VaR levels, not rounded to 1
    assert "NaN" not in t and "None" not in t and "open" in t  # 64 paths: the 1-in-200 intervals are open above
    gp = q.to_dict()["premium"]
    assert f"{gp['gross_premium_cny']:,.0f} ± {gp['gross_premium_mc_se_cny']:,.0f}" in t
    assert "upfront_premium_cny" in t and "cost of capital on its TVaR" in t
    d = q.to_dict()
    lp, cap, risk = d["premium"]["loading_parameters"], d["capital"], d["risk"]
    assert f"cost of capital on {d['premium']['capital_measure']} (CNY) {lp['capital']:,.0f} ± " \
           f"{lp['capital_mc_se_cny']:,.0f}" in t  # the measure the load is charged on, with its error
    assert f"{cap['capital_relief_cny']:,.0f} ± {cap['capital_relief_mc_se_cny']:,.0f}" in t
    assert "prob_attachment_mc_se" in t and "prob_exhaustion_mc_se" in t
    assert f"{100 * risk['prob_payout']:.1f}% ± {100 * risk['prob_payout_mc_se']:.1f}%" in t
    assert d["subsidy"]["note"] in t and "amount_mc_se_cny" in t  # why no subsidy, and the amounts' errors
    # the pure premium's parameter sd with its 95 % interval in brackets
    p = d["premium"]
    lo, hi = p["parameter_sd_ci95_low_cny"], p["parameter_sd_ci95_high_cny"]
    assert 0 <= lo <= p["parameter_sd_cny"] <= hi
    assert f"in brackets its 95 % interval): growth curves, peril rates and damage scales " \
           f"{fmt_parameter_sd(p['parameter_sd_cny'], p['pure_premium_mc_se_cny'])} [{lo:,.0f}–{hi:,.0f}]" in t
    # a parameter sd clipped at 0 (the estimate below zero) is not resolved, not zero
    d = q.to_dict()
    d["premium"]["parameter_sd_cny"] = 0.0
    assert "not resolved" in _text(render_quote_slip(d))


def test_the_quote_slip_shows_basis_risk_against_the_perfect_index_and_the_protection_gap(params):
    """A sink index's slip reports basis risk against the perfect-index payout and, apart, the protection gap,
    each figure with its Monte Carlo error (the quote's own numbers)."""
    from finance_engine.insurance import SinkIndexCover, quote
    from finance_engine.reports.quote_slip import render_quote_slip
    from models.portfolio import validate_frame

    pf = validate_frame(make_frame(40, seed=1), params, source="slip")
    q = quote(SinkIndexCover(60.0, 0.8, error="normal", error_cv=0.1), pf, params, paths=200, years=2, seed=3)
    t = _text(render_quote_slip(q))
    br = q.to_dict()["basis_risk"]
    g = br["protection_gap"]
    assert "payout on the measured index against the perfect-index payout" in t
    assert f"RMSE of payout − perfect-index payout (CNY) {br['rmse_cny']:,.0f} ± {br['rmse_mc_se_cny']:,.0f}" in t
    assert f"Mean gap (CNY a year) and its share of the true loss {g['mean_gap_cny']:,.0f} ± " \
           f"{g['mean_gap_mc_se_cny']:,.0f} ({100 * g['gap_share_of_true_loss']:.0f}%)" in t
    assert "None" not in t and "NaN" not in t


def test_the_memo_checks_the_pledge_rate(params):
    from finance_engine.collateral import value_collateral
    from finance_engine.reports.collateral_memo import render_collateral_memo
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    demo = load_portfolio(demo_portfolio_path(), params)
    terms = {"amount_cny": 5e6, "term_years": 3, "interest_rate": 0.04, "crediting_horizon_years": 10}
    v = value_collateral(demo, params, terms, project_id="LS-LQ-P03", paths=64, attribution=False,
                         sensitivities=False)
    assert v.sizing["requested_ltv_exceeds_pledge_rate"]
    t = _text(render_collateral_memo(v, title_suffix="project LS-LQ-P03", extra_provenance={"inputs": "x.csv"}))
    assert f"{v.risk['ltv_at_origination']:.0%} against 60%" in t and "above the pledge rate" in t
    assert "project LS-LQ-P03" in t and "inputs x.csv" in t


def test_the_stress_report_explains_the_budgets_total(params):
    from finance_engine.reports.stress_report import render_stress_report
    from finance_engine.stress.registry import DEMO_REGISTRY_PATH, read_registry
    from finance_engine.stress.run import StressSettings, run_stress_test
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    pf = load_portfolio(demo_portfolio_path(), params)
    r = run_stress_test(pf, params, ["baseline"], registry=read_registry(DEMO_REGISTRY_PATH),
                        settings=StressSettings(years=2, paths=16), footprints=False)
    t = _text(render_stress_report(r))
    assert "total = premium subsidies + buy-back cost" in t and " index " not in t


def test_one_rule_reads_a_clipped_parameter_sd_as_not_resolved():
    from finance_engine.reports.html import fmt_parameter_sd, parameter_sd_resolved

    # the estimator clips a negative variance component at 0: with a figure that varies, that 0 is not resolved
    assert not parameter_sd_resolved(0.0, 12.5) and not parameter_sd_resolved(0.0, None)
    assert fmt_parameter_sd(0.0, 12.5) == "not resolved"
    assert fmt_parameter_sd(0.0, 12.5, note=True).startswith("not resolved (0: the spread across parameter sets")
    # a figure that does not vary at all (a scenario's difference from itself) has an exact 0
    assert parameter_sd_resolved(0.0, 0.0) and fmt_parameter_sd(0.0, 0.0) == "0"
    assert fmt_parameter_sd(1234.4, 50.0) == "1,234" and fmt_parameter_sd(0.0123, 0.5, digits=None) == "0.0123"
    assert fmt_parameter_sd(None, 3.0) == "-" and fmt_parameter_sd(float("nan"), 3.0) == "-"


def test_a_parameter_sd_shows_its_interval_in_brackets_and_a_table_takes_its_columns_in():
    import pandas as pd

    from finance_engine.reports.html import fmt_parameter_sd, with_parameter_sd_text

    assert fmt_parameter_sd(1234.4, 50.0, ci=(500.2, 2000.0)) == "1,234 [500–2,000]"
    assert fmt_parameter_sd(0.0, 12.5, ci=(0.0, 80.0)) == "not resolved [0–80]"  # from 0 to an upper bound
    assert fmt_parameter_sd(0.0, 12.5, note=True, ci=(0.0, 80.0)).startswith("not resolved [0–80] (0: the spread")
    assert fmt_parameter_sd(0.0123, 0.5, digits=None, ci=(0.001, 0.04)) == "0.0123 [0.001–0.04]"
    for none in (None, (None, None), (float("nan"), float("nan")), (1.0, None)):  # none computed: the sd alone
        assert fmt_parameter_sd(5.0, 1.0, ci=none) == "5"
    df = pd.DataFrame({"metric": ["a", "b"], "mc_se": [2.0, 3.0], "parameter_sd": [10.0, 0.0],
                       "parameter_sd_ci95_low": [4.0, 0.0], "parameter_sd_ci95_high": [20.0, 7.5],
                       "diff_mc_se": [0.0, 1.0], "diff_parameter_sd": [0.0, 1.0],
                       "diff_parameter_sd_ci95_low": [0.0, 0.5], "diff_parameter_sd_ci95_high": [0.0, 2.0]})
    out, unresolved = with_parameter_sd_text(df)
    assert list(out.columns) == ["metric", "mc_se", "parameter_sd", "diff_mc_se", "diff_parameter_sd"]
    assert list(out.parameter_sd) == ["10 [4–20]", "not resolved [0–8]"] and unresolved
    assert list(out.diff_parameter_sd) == ["0 [0–0]", "1 [0–2]"]
    off, _ = with_parameter_sd_text(df, on=False)  # no parameter uncertainty: neither the sds nor their intervals
    assert list(off.columns) == ["metric", "mc_se", "diff_mc_se"]


def _stress(params, **switches):
    from finance_engine.stress.registry import DEMO_REGISTRY_PATH, read_registry
    from finance_engine.stress.run import StressSettings, run_stress_test
    from models.demo import demo_portfolio_path
    from models.dynamics import SimulationSwitches
    from models.portfolio import load_portfolio

    pf = load_portfolio(demo_portfolio_path(), params)
    st = StressSettings(years=2, paths=16, switches=SimulationSwitches(**switches))
    return run_stress_test(pf, params, ["baseline"], registry=read_registry(DEMO_REGISTRY_PATH), settings=st,
                           footprints=False)


def _row(html: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is ``name``."""
    m = re.search(rf"<tr>\s*<td>{re.escape(name)}</td>(.*?)</tr>", html, flags=re.S)
    assert m, name
    return re.findall(r"<td>(.*?)</td>", m.group(1))


def test_the_stress_report_says_a_clipped_parameter_sd_is_not_resolved(params):
    import dataclasses

    from finance_engine.reports.stress_report import render_stress_report

    r = _stress(params)
    assert r.settings.switches.parameter_uncertainty
    port, hz = r.portfolio.copy(), r.horizon.copy()
    for df in (port, hz):  # every parameter sd resolved (5 units) but two clipped at 0 below
        for c in [c for c in df.columns if c.endswith("parameter_sd")]:
            df[c] = np.where(df[c.replace("parameter_sd", "mc_se")] > 0, 5.0, df[c])
    assert port.at[0, "stock_end_tco2e_mc_se"] > 0
    port.loc[0, "stock_end_tco2e_parameter_sd"] = 0.0
    county = hz.index[(hz.level == "county") & (hz.metric == "cumulative_loss_tco2e") & (hz.mc_se > 0)][0]
    hz.loc[county, "parameter_sd"] = 0.0
    html = render_stress_report(dataclasses.replace(r, portfolio=port, horizon=hz))

    def ci(c):  # each sd's 95 % interval, in brackets after it (the engine's, as the table has it)
        lo, hi = port.at[0, f"{c}_ci95_low"], port.at[0, f"{c}_ci95_high"]
        assert 0 <= lo <= hi
        return f" [{fmt_significant(lo)}–{fmt_significant(hi)}]"

    assert _row(html, "stock_end_tco2e_parameter_sd") == ["not resolved" + ci("stock_end_tco2e_parameter_sd")]
    assert _row(html, "cumulative_loss_tco2e_parameter_sd") == ["5.00" + ci("cumulative_loss_tco2e_parameter_sd")]
    # the baseline against itself: no difference on any path, an exact 0 (not "not resolved"), its interval 0 to 0
    assert port.at[0, "stock_end_tco2e_diff_mc_se"] == 0
    assert _row(html, "stock_end_tco2e_diff_parameter_sd") == ["0 [0–0]"]
    # the intervals are in the sd's cell, not rows of their own; the county table's too
    assert "parameter_sd_ci95" not in html and "in brackets, its own 95 % interval" in _text(html)
    c = hz.loc[county]
    assert f"<td>not resolved [0–{c.parameter_sd_ci95_high:,.0f}]</td>" in html or c.parameter_sd_ci95_low > 0
    t = _text(html)
    assert t.count("not resolved") == 2 + 2  # one cell and its table's footnote, twice
    assert t.count("clipped at 0 (0: the spread across parameter sets is below the Monte Carlo noise") == 2
    assert "switched off" not in t


def test_the_stress_report_shows_no_parameter_sd_without_parameter_uncertainty(params):
    from finance_engine.reports.stress_report import render_stress_report

    r = _stress(params, parameter_uncertainty=False)
    # the engine's tables carry zeros for it: "off", which must not read as "not resolved" nor as 0
    sd_cols = [c for c in r.portfolio.columns if c.endswith("parameter_sd")]
    assert sd_cols and (r.portfolio[sd_cols] == 0).all().all() and (r.horizon.parameter_sd == 0).all()
    html = render_stress_report(r)
    t = _text(html)
    assert "parameter_sd" not in html and "not resolved" not in t
    assert "Parameter uncertainty was switched off" in t


def _valuation(params, **kw):
    from finance_engine.collateral import value_collateral
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    demo = load_portfolio(demo_portfolio_path(), params)
    terms = {"amount_cny": 5e6, "term_years": 3, "interest_rate": 0.04, "crediting_horizon_years": 10,
             "forest_right_mortgage_cny": 2e5, "guarantee_cny": 1e5}
    return value_collateral(demo, params, terms, project_id="LS-LQ-P03", paths=64, sensitivities=False, **kw)


def test_the_memo_drivers_chart_has_the_tables_error_bars(params, monkeypatch):
    from matplotlib.container import BarContainer

    from finance_engine.reports import collateral_memo

    v = _valuation(params, attribution=True, attribution_paths=32)
    figs = []
    monkeypatch.setattr(collateral_memo, "figure_to_data_uri", lambda fig: figs.append(fig) or "data:,")
    collateral_memo.drivers_chart(v)
    (ax,) = figs[0].axes
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert bars.errorbar is not None, "the drivers chart has no error bars"
    d = v.drivers[v.drivers.driver != "full model"]
    half = [abs(seg[1][0] - seg[0][0]) / 2 for seg in bars.errorbar.lines[2][0].get_segments()]
    assert half == pytest.approx(1.96 * d.value_effect_mc_se_cny.to_numpy(), rel=1e-9)
    assert "95 % CI" in ax.get_xlabel()


def test_the_memo_explains_the_expected_shortfall_as_the_code_defines_it(params):
    from finance_engine.collateral import LoanTerms, balance_schedule
    from finance_engine.price import load_price_model
    from finance_engine.reports.collateral_memo import render_collateral_memo

    v = _valuation(params, attribution=True, attribution_paths=64)  # the attribution's base run is the valuation's
    t = _text(render_collateral_memo(v))
    i = t.index("expected_shortfall_cny (CNY):")
    note = t[i:i + 2500]
    assert "summed over the 3 years of the loan and averaged over the paths" in note
    assert "liquidation cost (5%)" in note and "discounted at 4.5% over the 0.5-year sale" in note
    assert "forest-right mortgage (200,000 CNY) and the guarantee (100,000 CNY)" in note
    assert "not as an expected credit loss" in note
    # the recipe the note gives reproduces the full model's figure
    terms = LoanTerms(**v.terms)
    T, n = terms.term_years, v.provenance["paths"]
    bal = balance_schedule(terms)[:T, None]
    haircut = load_price_model().liquidity_haircut.draws(np.arange(n), v.provenance["seed"])
    assert haircut.mean() == pytest.approx(v.value_today["liquidity_haircut_mean"])
    sale = ((1 - haircut) * (1 - terms.liquidation_cost_fraction)
            * (1 + terms.discount_rate) ** -terms.liquidation_time_years)
    # the cash already received is recovered at par, the rest sold; a met top-up call lowers the later balances
    value, cash = v.paths["value"][1:T + 1], v.paths["received"][1:T + 1]
    recovery = cash + (value - cash) * sale + terms.forest_right_mortgage_cny + terms.guarantee_cny
    bal = np.empty_like(value)
    for p in range(n):
        left = 1.0
        for t in range(T):
            bal[t, p] = balance_schedule(terms)[t] * left
            if bal[t, p] > terms.ltv_trigger * value[t, p]:
                left *= terms.pledge_rate * value[t, p] / bal[t, p]
    assert "cash, at par" in note and "A top-up call the borrower meets is a prepayment" in note
    want = np.maximum(bal - recovery, 0.0).sum(axis=0).mean()
    got = v.drivers.set_index("driver").at["full model", "expected_shortfall_cny"]
    assert got > 0 and got == pytest.approx(want, rel=1e-9)


def test_the_memo_says_a_clipped_value_sd_is_not_resolved(params):
    import dataclasses

    from finance_engine.reports.collateral_memo import render_collateral_memo

    v = _valuation(params, attribution=False)
    label = "Parameter uncertainty of the value (sd, CNY"
    vt = {**v.value_today, "parameter_sd_cny": 0.0, "parameter_sd_ci95_low_cny": 0.0,
          "parameter_sd_ci95_high_cny": 1234.4}
    t = _text(render_collateral_memo(dataclasses.replace(v, value_today=vt)))
    # with its 95 % interval: from 0 to an upper bound
    assert (f"{label}; in brackets its 95 % interval): growth curves, peril rates and damage scales not resolved "
            "[0–1,234] (0: the spread across parameter sets is below the Monte Carlo noise at these paths)") in t
    # the valuation's own sd and interval, as computed (a memo stored without the interval shows the sd alone)
    lo, hi, sd = (v.value_today[k] for k in ("parameter_sd_ci95_low_cny", "parameter_sd_ci95_high_cny",
                                            "parameter_sd_cny"))
    assert sd > 0 and 0 <= lo <= sd <= hi
    t = _text(render_collateral_memo(v))
    assert f"damage scales {sd:,.0f} [{lo:,.0f}–{hi:,.0f}]" in t
    old = {k: x for k, x in v.value_today.items() if "ci95_low" not in k and "ci95_high" not in k}
    t = _text(render_collateral_memo(dataclasses.replace(v, value_today=old)))
    assert f"{label}): growth curves, peril rates and damage scales {sd:,.0f} " in t
    assert f"{label}; in brackets" not in t
    t = _text(render_collateral_memo(dataclasses.replace(v, value_today={**v.value_today, "parameter_sd_cny": None})))
    assert label not in t and "not resolved" not in t  # no parameter uncertainty: no row, not "not resolved"


def test_the_slip_says_a_price_floor_covers_no_peril(params):
    from finance_engine.insurance import PriceFloorCover, StockLossCover, quote
    from finance_engine.reports.quote_slip import render_quote_slip
    from models.portfolio import validate_frame

    pf = validate_frame(make_frame(120, seed=4), params, source="slip")
    q = quote(PriceFloorCover(80.0, volume_tco2e=1000.0), pf, params, paths=64, seed=3)
    html = render_quote_slip(q)
    perils = [r["peril"] for r in q.to_dict()["aal_by_peril"]]
    assert len(perils) >= 4
    for p in perils:  # the table's covered column: no peril is covered
        assert _row(html, p)[0] == "no", p
    t = _text(html)
    assert "ground-up, not covered: destroyed stock at the strike price" in t
    assert "pays on the carbon price, not on the perils" in t and "fixed volume of 1,000 tCO2e" in t
    # a stock-loss cover still lists the perils it covers
    q = quote(StockLossCover(60.0, perils=("fire", "typhoon")), pf, params, paths=64, seed=3)
    html = render_quote_slip(q)
    assert _row(html, "fire")[0] == "True" and _row(html, "drought")[0] == "False"
    assert "pays on the carbon price" not in _text(html)


def test_the_slip_reads_an_exact_zero_sd_as_zero(params):
    from finance_engine.insurance import StockLossCover, quote
    from finance_engine.reports.quote_slip import render_quote_slip
    from models.portfolio import validate_frame

    pf = validate_frame(make_frame(60, seed=4), params, source="slip")
    d = quote(StockLossCover(60.0), pf, params, paths=64, seed=3).to_dict()
    label = "Parameter uncertainty of the pure premium (sd, CNY; in brackets its 95 % interval): growth curves, " \
            "peril rates and damage scales"
    # no payout on any path: the premium does not vary, and its parameter sd is an exact 0, its interval 0 to 0
    d["premium"].update(parameter_sd_cny=0.0, pure_premium_mc_se_cny=0.0, parameter_sd_ci95_low_cny=0.0,
                        parameter_sd_ci95_high_cny=0.0)
    assert f"{label} 0 [0–0] " in _text(render_quote_slip(d))


def test_the_memo_says_its_drivers_run_on_fewer_paths_than_the_headline(params):
    """The drivers' table is its own engine run at attribution_paths (2,000 by default against the headline's
    10,000 on the CLI): the memo says so beside it, with the full model's value and the headline's."""
    from finance_engine.reports.collateral_memo import render_collateral_memo

    v = _valuation(params, attribution=True, attribution_paths=32)
    full = float(v.drivers.set_index("driver").at["full model", "value_cny"])
    assert full != v.value_today["value_cny"]  # another run: the same model within noise, not the same number
    t = _text(render_collateral_memo(v, attribution_paths=32))
    i = t.index("What drives value down")
    note = t[i:i + 900]
    assert "Computed on fewer paths than the headline" in note
    assert "its own engine run on 32 paths (attribution_paths) against the headline's 64" in note
    assert f"({full:,.0f} CNY) is that smaller run's own valuation" in note
    assert f"({v.value_today['value_cny']:,.0f} ± {v.value_today['mc_se_cny']:,.0f} CNY) within Monte Carlo noise" in note
    assert note.index("Computed on fewer paths") < note.index("driver")  # next to (above) the table
    # the caller that does not know the drivers' paths (the value tells the runs apart): fewer, the default named
    t = _text(render_collateral_memo(v))
    assert "Computed on fewer paths than the headline" in t and "attribution_paths; 2,000 by default" in t


def test_the_memo_says_when_its_drivers_are_the_headlines_run(params):
    from finance_engine.reports.collateral_memo import render_collateral_memo

    v = _valuation(params, attribution=True, attribution_paths=64)
    for kw in ({}, {"attribution_paths": 2000}):  # the CLI's 2,000 on a 64-path valuation: the same 64 paths
        t = _text(render_collateral_memo(v, **kw))
        assert "The drivers are computed on the headline's 64 paths" in t and "fewer paths than the headline" not in t


def test_the_memo_by_year_table_reads_with_units_and_errors(params):
    """The by-year table's headers are words with units, not the result's snake_case names, and each simulated
    figure stands beside its Monte Carlo error; a probability of exactly 0 reads with its rule-of-three bound."""
    import dataclasses

    from finance_engine.reports.collateral_memo import by_year_table, render_collateral_memo

    v = _valuation(params, attribution=False)
    html = render_collateral_memo(v)
    start = html.index("Value over the term")
    table = html[start:html.index("</table>", start)]
    heads = re.findall(r"<th>(.*?)</th>", table)
    assert heads[:3] == ["Year of the loan", "Balance, schedule (CNY)",
                         "Balance, mean of the paths (CNY; met top-up calls carried forward)"]
    assert "Collateral value, mean ± s.e. (CNY)" in heads and "Value P5 (CNY; 95 % CI)" in heads
    assert "P(value below balance) ± s.e." in heads and "Expected top-up ± s.e. (CNY)" in heads
    assert not [h for h in heads if re.fullmatch(r"[a-z0-9_]+", h)], heads
    df = by_year_table(v)
    y1 = v.by_year.iloc[0]
    assert df.iloc[0]["Collateral value, mean ± s.e. (CNY)"] == f"{y1.value_mean_cny:,.0f} ± {y1.value_mc_se_cny:,.0f}"
    assert df.iloc[0]["Value P5 (CNY; 95 % CI)"] == (
        f"{y1.value_p05_cny:,.0f} ({y1.value_p05_ci95_low_cny:,.0f} – {y1.value_p05_ci95_high_cny:,.0f})")
    assert df.iloc[0]["Balance, schedule (CNY)"] == f"{y1.balance_cny:,.0f}"
    # a probability of exactly 0 in year 1: its rule-of-three interval, not "± 0.0%"
    by = v.by_year.copy()
    by.loc[0, ["p_top_up_call", "p_top_up_call_mc_se"]] = 0.0
    z = dataclasses.replace(v, by_year=by, risk={**v.risk, "zero_one_bounds_95": {"p_top_up_call_year_1": [0.0, 0.1875]}})
    assert by_year_table(z).iloc[0]["P(top-up call) ± s.e."] == "0.0% (95 % bound 0.00% – 18.75%, rule of three)"
