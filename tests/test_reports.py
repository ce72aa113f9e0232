"""What the HTML reports show a reader: each figure beside its error, levels and open interval ends as they are,
the pledge rate checked, the budgets' note (the review of the reports)."""

from __future__ import annotations

import re

import pytest

from finance_engine.reports.html import fmt_significant
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
    # a parameter sd clipped at 0 (the estimate below zero) is not resolved, not zero
    d = q.to_dict()
    d["premium"]["parameter_sd_cny"] = 0.0
    assert "not resolved" in _text(render_quote_slip(d))


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
