"""The dashboard's loan valuation and insurance quote pages in a real browser (headless Debian Chromium
driven by playwright-core) against a real ``carbon-risk serve --demo`` process.

The bank demo key values a loan pledged on one demo project (a bad amount first: its 422 must show
next to the amount field), then one on the whole portfolio (a job the page polls), then the project loan twice
more with the API's answer rewritten on its way to the page (the value's parameter sd clipped at 0, then absent
with an open end of the largest safe loan's interval); the insurer demo key prices a stock-loss cover. The test sends the very
request bodies the page sent to the API itself (httpx, same key) and checks that every number the page
shows is the API's; the loan balance column is also checked against the closed-form annuity
schedule, the subsidy split against the gross premium. The memo and the quote slip downloads must be
the API's bytes. Screenshots go to ``tests/browser/artifacts/<time>-finance/`` (git-ignored).
"""

from __future__ import annotations

import re
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

from api.bootstrap import DEMO_PORTFOLIO_NAME, demo_key
from tests.browser.conftest import ARTIFACTS, CHROMIUM, run_driver

PROJECT = "LS-SC-P01"  # a demo project of 30 parcels in Suichang
LOAN_PATHS, QUOTE_PATHS, SEED = 200, 256, 7
AMOUNT, TERM, RATE_PCT, PD_PCT, MORTGAGE = 600_000.0, 3, 4.5, 2.0, 50_000.0
PERILS = ["fire", "pine_wilt", "typhoon", "ice_storm"]  # the driver unticks drought
DEDUCTIBLE = 20_000.0
NOT_RESOLVED = "未能分辨"  # "not resolved": a parameter sd clipped at 0 (the page is in Chinese)


@pytest.fixture(scope="module")
def driven(browser_driver, demo_server):
    """Run the finance driver once; returns (what the page showed, bank client, insurer client)."""
    out_dir = ARTIFACTS / (time.strftime("%Y%m%d-%H%M%S") + "-finance")
    bank, insurer = demo_key("bank")[1], demo_key("insurer")[1]
    cmd = ["node", str(browser_driver.parent / "drive_finance.mjs"), "--base", demo_server.base,
           "--bank-key", bank, "--insurer-key", insurer, "--out", str(out_dir), "--portfolio", DEMO_PORTFOLIO_NAME,
           "--project", PROJECT, "--amount", f"{AMOUNT:.0f}", "--loan-paths", str(LOAN_PATHS), "--quote-paths", str(QUOTE_PATHS),
           "--seed", str(SEED), "--chromium", CHROMIUM]
    shown = run_driver(cmd, 150, "finance")
    clients = [httpx.Client(base_url=demo_server.base, headers={"Authorization": f"Bearer {k}"}, timeout=120)
               for k in (bank, insurer)]
    try:
        yield shown, clients[0], clients[1]
    finally:
        for c in clients:
            c.close()


def _posts(shown, path):
    return [p for p in shown["posts"] if p["path"] == path]


def test_roles_see_their_pages(driven):
    shown, _, _ = driven
    assert "tab-loan" in shown["bankTabs"] and "tab-quote" not in shown["bankTabs"]
    assert shown["landing"] == ["tab-loan", "tab-quote"]  # each role lands on its own page
    assert "tab-quote" in shown["insurerTabs"] and "tab-loan" not in shown["insurerTabs"]
    # no CDN, no tile server; the only console errors are the answers the page expects (the role
    # probes' 403 and the deliberate 422)
    assert shown["failedRequests"] == []
    assert [e for e in shown["consoleErrors"] if not re.search(r"status of (403|422)\b", e)] == []


def test_pledge_choices_are_the_portfolio_projects(driven):
    shown, bank, _ = driven
    pf = bank.get(f"/v1/portfolios/{shown['portfolioId']}", params={"limit": 500}).json()
    total = pf["parcels"]["total"]
    ids, offset = [], 0
    while offset is not None:
        d = bank.get(f"/v1/portfolios/{shown['portfolioId']}", params={"limit": 500, "offset": offset}).json()
        ids += [p["project_id"] for p in d["parcels"]["items"]]
        offset = d["parcels"]["next_offset"]
    assert len(ids) == total
    values = [o["value"] for o in shown["pledgeOptions"]]
    assert values[0] == "" and sorted(values[1:]) == sorted({i for i in ids if i})
    n = sum(i == PROJECT for i in ids)
    assert f"{n}" in next(o["text"] for o in shown["pledgeOptions"] if o["value"] == PROJECT)


def test_bad_amount_is_shown_next_to_its_field(driven):
    shown, bank, _ = driven
    bad, good, _ = _posts(shown, "/v1/collateral-valuations")
    assert bad["status"] == 422 and bad["body"]["terms"]["amount_cny"] == -5
    problem = bank.post("/v1/collateral-valuations", json=bad["body"]).json()
    reason = next(e["reason"] for e in problem["errors"] if e["field"].endswith("amount_cny"))
    # a translated lead-in naming the field; the server's reason (English) on a line under it
    assert shown["loanAmountErrorParts"] == {"lead": "贷款金额（元）：取值无效", "detail": [{"text": reason, "lang": "en"}]}
    assert shown["loanAmountError"].split("\n") == ["贷款金额（元）：取值无效", reason] and shown["loanAmountInvalid"] == "true"
    assert shown["loanOtherFieldErrors"] == [] and shown["loanAmountErrorAfter"] == ""
    assert good["status"] == 201


def test_loan_page_shows_the_api_valuation(driven):
    shown, bank, _ = driven
    sent = _posts(shown, "/v1/collateral-valuations")[1]["body"]
    assert sent == {"portfolio_id": shown["portfolioId"], "project_id": PROJECT, "paths": LOAN_PATHS, "seed": SEED,
                    "mode": "auto", "terms": {"amount_cny": AMOUNT, "term_years": TERM, "interest_rate": RATE_PCT / 100,
                                              "borrower_pd": PD_PCT / 100, "forest_right_mortgage_cny": MORTGAGE}}
    r = bank.post("/v1/collateral-valuations", json=sent)
    assert r.status_code == 201, r.text[:500]
    v = r.json()["result"]
    stored = bank.get(f"/v1/collateral-valuations/{shown['loanId']}").json()
    assert stored["audit"]["request"]["project_id"] == PROJECT
    assert {k: stored["result"][k] for k in ("value_today", "by_year", "sizing")} == \
           {k: v[k] for k in ("value_today", "by_year", "sizing")}
    k = {key: d["value"] for key, d in shown["loanKpis"].items()}
    vt = v["value_today"]
    assert k["kpi_value_today"] == pytest.approx(vt["value_cny"], rel=1e-12)
    assert k["kpi_value_se"] == pytest.approx(vt["mc_se_cny"], rel=1e-12)
    assert [k["kpi_ci95_low"], k["kpi_ci95_high"]] == pytest.approx(vt["ci95_cny"], rel=1e-12)
    assert k["kpi_max_loan"] == pytest.approx(v["sizing"]["max_loan_cny"], rel=1e-12)
    assert k["kpi_ltv0"] == pytest.approx(v["risk"]["ltv_at_origination"], rel=1e-12)
    assert k["kpi_p_below_any"] == pytest.approx(v["risk"]["p_value_below_balance_any_time"], rel=1e-12)
    assert shown["loanKpis"]["kpi_value_today"]["text"] == f"{vt['value_cny']:,.0f}"
    # the value's parameter sd (a 0 the estimator clipped reads "not resolved") and the largest safe loan's
    # 95 % interval, in CNY like the figures beside them
    psd = shown["loanKpis"]["kpi_value_psd"]
    assert psd["value"] == pytest.approx(vt["parameter_sd_cny"], rel=1e-12)
    resolved = vt["parameter_sd_cny"] > 0
    assert psd["text"] == (f"{vt['parameter_sd_cny']:,.0f}" if resolved else NOT_RESOLVED)
    lo, hi = v["sizing"]["max_loan_ci95_cny"]
    for key, end in (("kpi_max_loan_ci95_low", lo), ("kpi_max_loan_ci95_high", hi)):
        tile = shown["loanKpis"][key]
        assert tile["value"] == (None if end is None else pytest.approx(end, rel=1e-12)), key
        assert tile["text"] == ("无界" if end is None else f"{end:,.0f}"), key
    assert lo <= v["sizing"]["max_loan_cny"] <= (hi if hi is not None else float("inf"))
    # the by-year table is the API's by_year, and its balance is the annuity schedule (closed form)
    by = v["by_year"]
    assert len(shown["loanYears"]) == len(by) == TERM
    g = 1 + RATE_PCT / 100
    for row, api in zip(shown["loanYears"], by):
        t = int(row["year"]["value"])
        assert t == api["year"]
        assert float(row["balance_cny"]["value"]) == pytest.approx(
            AMOUNT * (g ** TERM - g ** (t - 1)) / (g ** TERM - 1), rel=1e-12)
        for col in ("balance_cny", "value_p05_cny", "value_p50_cny", "value_p95_cny", "ltv_p50", "ltv_p95",
                    "p_value_below_balance", "p_top_up_call", "expected_top_up_cny"):
            assert float(row[col]["value"]) == pytest.approx(api[col], rel=1e-12), (t, col)
    assert shown["loanBelowBars"] == pytest.approx([100 * y["p_value_below_balance"] for y in by], rel=1e-12)
    assert shown["loanFan"] == {"bands": 1, "median": 1, "balance": 1}
    sec = v["security"]
    assert float(shown["loanSecurity"]["sec_carbon"]) == pytest.approx(sec["carbon_value_cny"], rel=1e-12)
    assert float(shown["loanSecurity"]["sec_mortgage"]) == MORTGAGE == sec["forest_right_mortgage_cny"]
    assert float(shown["loanSecurity"]["sec_unsecured"]) == pytest.approx(sec["unsecured_cny"], rel=1e-12, abs=1e-9)
    assert shown["loanSecurity"]["sec_enhancement_only"] == str(sec["credit_enhancement_only"]).lower()
    cr = v["credit"]
    assert float(shown["loanCredit"]["cr_pd"]) == PD_PCT / 100 == cr["pd"]
    for key, field in (("cr_el", "expected_loss_cny"), ("cr_rwa", "rwa_cny"), ("cr_k", "irb_capital_k"),
                       ("cr_lgd_secured", "firb_lgd_carbon_as_other_physical")):
        assert float(shown["loanCredit"][key]) == pytest.approx(cr[field], rel=1e-12), key
    # EL = PD x LGD x EAD (the Basel definition)
    assert cr["expected_loss_cny"] == pytest.approx(cr["pd"] * cr["firb_lgd_carbon_as_other_physical"] * AMOUNT)
    assert [r["case"]["value"] for r in shown["loanSens"]] == [s["case"] for s in v["sensitivities"]]
    # the cases in Chinese ("price -50%" -> "价格 -50%", "volatility x1.5" -> "波动率 ×1.5")
    zh = {"price -50%": "价格 -50%", "price -30%": "价格 -30%", "price +30%": "价格 +30%",
          "volatility x0.5": "波动率 ×0.5", "volatility x1.5": "波动率 ×1.5"}
    assert [r["case"]["text"] for r in shown["loanSens"]] == [zh[s["case"]] for s in v["sensitivities"]]


def test_loan_page_reads_a_clipped_sd_as_not_resolved_and_an_absent_one_as_none(driven):
    shown, _, _ = driven
    assert [p["status"] for p in shown["rewrittenPosts"]] == [201, 201, 201]
    assert all(p["body"]["project_id"] == PROJECT for p in shown["rewrittenPosts"])
    clipped = shown["loanClipped"]
    assert clipped["shown"]["parameter_sd_cny"] == 0 and clipped["shown"]["mc_se_cny"] > 0
    psd = clipped["kpis"]["kpi_value_psd"]
    assert psd["value"] == 0 and psd["text"] == NOT_RESOLVED
    assert psd["sub"].startswith(NOT_RESOLVED) and "蒙特卡洛噪声" in psd["sub"]
    # no parameter sd (a run without parameter uncertainty): no tile at all, neither "0" nor "not resolved"
    absent = shown["loanAbsent"]
    assert absent["shown"]["parameter_sd_cny"] is None and "kpi_value_psd" not in absent["kpis"]
    high = absent["kpis"]["kpi_max_loan_ci95_high"]
    assert high["value"] is None and high["text"] == "无界"  # an open end: the paths cannot bound it


def _loan_result(shown, bank):
    sent = _posts(shown, "/v1/collateral-valuations")[1]["body"]
    r = bank.post("/v1/collateral-valuations", json=sent)
    assert r.status_code == 201, r.text[:500]
    return r.json()["result"]


def test_loan_page_flags_figures_the_paths_do_not_resolve(driven):
    """At 200 paths the 1 % largest safe loan and the 1 % tail figures have no regression error of their own
    (numbers version 5): the page flags each where it is shown and names the paths that would resolve them."""
    shown, bank, _ = driven
    v = _loan_result(shown, bank)
    sz, risk = v["sizing"], v["risk"]
    assert sz["max_loan_resolved"] is False and "max_loan_cny" in sz["not_resolved"]  # 200 paths: too few
    k = shown["loanKpis"]
    assert k["kpi_max_loan"]["notResolved"] is True
    assert k["kpi_max_loan"]["sub"].endswith(f" · 未能分辨：约需 {sz['max_loan_paths_needed']:,} 条路径")
    assert k["kpi_max_loan_ci95_low"]["notResolved"] and k["kpi_max_loan_ci95_high"]["notResolved"]
    assert not k["kpi_value_today"]["notResolved"]
    notes = shown["loanNotes"]
    needed = max(x for x in (sz["not_resolved_paths_needed"], risk["not_resolved_paths_needed"]) if x is not None)
    assert notes["hidden"] is False and notes["figures"] == sz["not_resolved"] + risk["not_resolved"]
    assert notes["pathsNeeded"] == needed and notes["server"] == sz["not_resolved_note"]
    assert notes["text"].startswith(f"在 {LOAN_PATHS} 条路径下未能分辨：最大安全贷款额、") and f"约 {needed:,} 条路径可分辨" in notes["text"]
    # VaR and ES in today's money, with their errors; the unresolved ones flagged
    shown_risk = shown["loanRisk"]
    for pct in (95, 99):
        var, (lo, hi) = risk[f"collateral_var{pct}_cny"], risk[f"collateral_var{pct}_ci95_cny"]
        es, es_se = risk[f"collateral_es{pct}_cny"], risk[f"collateral_es{pct}_mc_se_cny"]
        for key, field, text in ((f"rk_var{pct}", f"collateral_var{pct}_cny", f"{var:,.0f}（95% 区间 {lo:,.0f}–{hi:,.0f}）"),
                                 (f"rk_es{pct}", f"collateral_es{pct}_cny", f"{es:,.0f} ± {es_se:,.0f}（蒙特卡洛标准误）")):
            cell, flagged = shown_risk[key], field in risk["not_resolved"]
            assert cell["value"] == pytest.approx(risk[field], rel=1e-12), key
            assert cell["notResolved"] is flagged, key
            assert cell["text"] == (f"{text}（未能分辨）" if flagged else text), key
    assert shown["loanRiskBasis"]["server"] == risk["collateral_var_basis"] and "今日货币" in shown["loanRiskBasis"]["text"]
    # the simulated LGD carries its Monte Carlo error
    cr = v["credit"]
    assert shown["loanCreditFull"]["cr_lgd_sim"]["text"] == (
        f"{100 * cr['simulated_lgd_forced_sale']:.2f} % ± {100 * cr['simulated_lgd_forced_sale_mc_se']:.2f} %")
    # the by-year table: the paths' mean balance (met calls carried forward) and each probability's error
    # (a probability of exactly 0 or 1 with its rule-of-three interval instead)
    bounds = risk["zero_one_bounds_95"]
    for row, api in zip(shown["loanYears"], v["by_year"]):
        assert float(row["balance_mean_cny"]["value"]) == pytest.approx(api["balance_mean_cny"], rel=1e-12)
        for col in ("p_value_below_balance", "p_top_up_call"):
            b = bounds.get(f"{col}_year_{api['year']}")
            p = f"{100 * api[col]:.1f} %"
            assert row[col]["text"] == (f"{p}（95% 区间 {100 * b[0]:.2f} %–{100 * b[1]:.2f} %）" if b else
                                        f"{p} ± {100 * api[col + '_mc_se']:.1f} %"), (api["year"], col)


def test_loan_page_shows_a_rule_of_three_bound_for_a_probability_of_zero(driven):
    """A probability estimated at exactly 0 reads with its rule-of-three 95 % interval, not "± 0.0 %"; with every
    figure resolved nothing is flagged."""
    shown, _, _ = driven
    z = shown["loanZeroOne"]
    bound = z["result"]["risk"]["zero_one_bounds_95"]["p_value_below_balance_any_time"]
    assert bound == pytest.approx([0, 3 / (LOAN_PATHS / 4)])
    hi = f"{100 * bound[1]:.2f} %"
    assert z["kpis"]["kpi_p_below_any"]["sub"] == f"估计值恰为 0.0 %：95% 区间 [0.00 %, {hi}]（三法则）"
    assert "±" not in z["kpis"]["kpi_p_below_any"]["sub"]
    assert z["years"][0]["p_value_below_balance"]["text"] == f"0.0 %（95% 区间 0.00 %–{hi}）"
    assert z["notes"]["zeroOneHidden"] is False and "三法则" in z["notes"]["zeroOne"]
    assert z["notes"]["hidden"] is True and z["notes"]["text"] == ""
    assert not any(k["notResolved"] for k in z["kpis"].values())
    assert not any(c["notResolved"] for c in z["risk"].values())
    assert z["kpis"]["kpi_max_loan"]["sub"] == "目标不足概率 1.0 %"


def test_a_big_valuation_runs_as_a_job(driven):
    shown, bank, _ = driven
    post = _posts(shown, "/v1/collateral-valuations")[2]
    assert post["status"] == 202 and "project_id" not in post["body"] and post["body"]["paths"] == 32
    seen = shown["jobLoan"]
    job = bank.get(f"/v1/jobs/{seen['job']['id']}").json()
    assert seen["job"]["status"] == job["status"] == "succeeded" and job["kind"] == "collateral"
    assert job["result_id"] == seen["id"] and seen["progressVisible"]
    res = bank.get(f"/v1/jobs/{job['id']}/result").json()
    assert res["result"]["value_today"]["pledged_parcels"] == 5000
    assert seen["value"] == pytest.approx(res["result"]["value_today"]["value_cny"], rel=1e-12)


def test_memo_download_is_the_api_memo(driven):
    shown, bank, _ = driven
    body = Path(shown["memo"]["file"]).read_bytes()
    r = bank.get(f"/v1/collateral-valuations/{shown['loanId']}/memo")
    assert r.status_code == 200 and body == r.content and b"<html" in body[:500].lower()


def test_quote_page_shows_the_api_premium(driven):
    shown, _, insurer = driven
    post = _posts(shown, "/v1/quotes")[0]  # the stock-loss quote (a sink index follows)
    sent = post["body"]
    assert sent["cover"] == {"kind": "stock-loss", "price_cny_per_tco2e": 60, "perils": PERILS,
                             "deductible": {"amount": DEDUCTIBLE, "unit": "cny", "basis": "annual"}}
    assert (sent["paths"], sent["seed"]) == (QUOTE_PATHS, SEED)
    r = insurer.post("/v1/quotes", json=sent)
    assert r.status_code == 201, r.text[:500]
    q = r.json()["result"]
    pr = q["premium"]
    k = {key: d["value"] for key, d in shown["quoteKpis"].items()}
    for key, field in (("kpi_pure", "pure_premium_cny"), ("kpi_pure_se", "pure_premium_mc_se_cny"),
                       ("kpi_gross", "gross_premium_cny"), ("kpi_rate", "rate_on_sum_insured"),
                       ("kpi_per_mu", "premium_per_mu_cny"), ("kpi_per_ha", "premium_per_ha_cny"),
                       ("kpi_per_tco2e", "premium_per_tco2e_cny"), ("kpi_loss_ratio", "expected_loss_ratio")):
        assert k[key] == pytest.approx(pr[field], rel=1e-12), key
    assert shown["quoteKpis"]["kpi_gross"]["text"] == f"{pr['gross_premium_cny']:,.0f}"
    # per mu = per ha / 15 (1 ha = 15 mu); rate = gross / sum insured
    assert k["kpi_per_mu"] == pytest.approx(k["kpi_per_ha"] / 15, rel=1e-12)
    assert k["kpi_rate"] == pytest.approx(k["kpi_gross"] / k["kpi_sum_insured"], rel=1e-12)
    pml = q["risk"]["pml"]
    assert [(r["basis"]["value"], float(r["return_period_years"]["value"]), float(r["loss"]["value"]))
            for r in shown["quotePml"]] == [(p["basis"], p["return_period_years"], pytest.approx(p["loss"], rel=1e-12))
                                            for p in pml]
    # the subsidy split adds up to the gross premium
    sub = {r["payer"]["value"]: float(r["amount"]["value"]) for r in shown["quoteSubsidy"]}
    assert sub == pytest.approx(q["subsidy"]["amounts_cny"], rel=1e-12)
    assert sum(sub.values()) == pytest.approx(pr["gross_premium_cny"], rel=1e-12)
    ep = sorted((p["exceedance_probability"], p["aep_cny"]) for p in q["risk"]["ep_curve"]
                if 0.005 <= p["exceedance_probability"] < 1 and p["aep_cny"] > 0)
    dots = sorted((d["prob"], d["loss"]) for d in shown["quoteEpDots"])
    assert len(ep) > 5 and [d[0] for d in dots] == pytest.approx([e[0] for e in ep], rel=1e-12)
    assert [d[1] for d in dots] == pytest.approx([e[1] for e in ep], rel=1e-12)


def test_quote_page_shows_the_errors_the_subsidy_note_and_a_sink_indexs_basis_risk(driven):
    """The gross premium and P(payout) carry their Monte Carlo errors, the subsidy split says why there is no
    subsidy, a stock-loss quote shows no basis-risk block, and a sink index's block shows the API's basis risk
    (against the perfect-index payout) and protection gap, each with its error."""
    shown, _, insurer = driven
    (post, _sink) = _posts(shown, "/v1/quotes")
    q = insurer.post("/v1/quotes", json=post["body"]).json()["result"]
    k = shown["quoteKpis"]
    assert k["kpi_gross"]["sub"] == f"± {q['premium']['gross_premium_mc_se_cny']:,.0f}（蒙特卡洛标准误）"
    assert k["kpi_p_payout"]["sub"] == f"± {100 * q['risk']['prob_payout_mc_se']:.2f} %（蒙特卡洛标准误）"
    # the engine's no-subsidy note in Chinese, its own words under it; the scheme "none" translated
    note = q["subsidy"]["note"]
    assert note.startswith("No premium subsidy by default") and shown["quoteSubsidyNoteServer"] == note
    assert shown["quoteSubsidyNote"].startswith("默认不计保费补贴") and shown["quoteSubsidyNote"].endswith(note)
    assert shown["quoteSubsidyNoteEn"] == [{"text": note, "lang": "en"}]
    assert q["subsidy"]["scheme"] == "none" and shown["quoteSubsidyCaption"] == "保费补贴分担（方案：无补贴）"
    assert shown["quoteBasisHidden"] is True
    sink = shown["sinkQuote"]
    assert sink["request"]["cover"]["kind"] == "sink-index"
    r = insurer.post("/v1/quotes", json=sink["request"])
    assert r.status_code == 201, r.text[:500]
    br = r.json()["result"]["basis_risk"]
    gap = br["protection_gap"]
    b = {key: d["value"] for key, d in sink["basis"].items()}
    for key, value in (("kpi_basis_rmse", br["rmse_cny"]), ("kpi_basis_miss", br["prob_loss_no_payout"]),
                       ("kpi_basis_extra", br["prob_payout_no_loss"]), ("kpi_gap_mean", gap["mean_gap_cny"]),
                       ("kpi_gap_share", gap["gap_share_of_true_loss"])):
        assert b[key] == pytest.approx(value, rel=1e-12), key
    assert sink["basis"]["kpi_gap_mean"]["sub"] == f"± {gap['mean_gap_mc_se_cny']:,.0f}（蒙特卡洛标准误）"
    # the sink index's terms the run set: the effective limit (the triggered sink's value, price x trigger x
    # expected sink) and the expected sink and trigger in tonnes, each with its Monte Carlo error
    res = r.json()["result"]
    ex, cover, k = res["exposure"], res["cover"], sink["kpis"]
    assert ex["estimated_from_run"] is True and cover["limit_cny"] is None
    part, trig = cover["participation"], cover["trigger_fraction"]
    assert ex["sum_insured_cny"] == pytest.approx(cover["price_cny_per_tco2e"] * trig * ex["insured_tco2e"] * part, rel=1e-9)
    assert k["kpi_eff_limit"]["value"] == pytest.approx(ex["sum_insured_cny"] / part, rel=1e-12)
    assert k["kpi_eff_limit"]["sub"] == f"由本次模拟估计 ± {ex['sum_insured_mc_se_cny'] / part:,.0f}（蒙特卡洛标准误）"
    assert k["kpi_expected_sink"]["value"] == pytest.approx(ex["insured_tco2e"], rel=1e-12)
    assert k["kpi_expected_sink"]["sub"] == f"由本次模拟估计 ± {ex['insured_tco2e_mc_se']:,.0f}（蒙特卡洛标准误）"
    assert k["kpi_trigger_t"]["value"] == pytest.approx(trig * ex["insured_tco2e"], rel=1e-12)
    assert k["kpi_trigger_t"]["sub"] == f"± {trig * ex['insured_tco2e_mc_se']:,.0f}（蒙特卡洛标准误）"
    assert k["kpi_sum_insured"]["sub"] == f"由本次模拟估计 ± {ex['sum_insured_mc_se_cny']:,.0f}（蒙特卡洛标准误）"
    # a stock-loss cover's terms are fixed: no error, no sink-index tiles
    stock = shown["quoteKpis"]
    assert stock["kpi_sum_insured"]["sub"] is None and "kpi_eff_limit" not in stock and "kpi_expected_sink" not in stock


def test_slip_download_and_english(driven):
    shown, _, insurer = driven
    body = Path(shown["slip"]["file"]).read_bytes()
    r = insurer.get(f"/v1/quotes/{shown['quoteId']}/slip")
    assert r.status_code == 200 and body == r.content
    assert shown["tabsEnglish"][:2] == ["Portfolio & map", "Insurance quote"]
    assert shown["grossLabelEnglish"] == "Gross premium (CNY)"
    assert shown["quoteStatusEnglish"] == "Done."
    assert len(shown["screenshots"]) == 9
    for p in shown["screenshots"]:
        assert Path(p).stat().st_size > 10_000


# ---------------------------------------------------------------------------------------------------------------
# the dashboard review's findings: cancel, errors on every figure, the payout curve, narrow screens, notices
# ---------------------------------------------------------------------------------------------------------------
def _n(x, digits: int = 0) -> str:
    """A number as the page writes it (Chromium's zh-CN Intl.NumberFormat: groups of three, the shortest decimal
    form rounded half away from zero)."""
    return f"{Decimal(repr(float(x))).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP):,.{digits}f}"


def _p(x, digits: int = 1) -> str:
    return f"{_n(100 * x, digits)} %"


def _ci(x, lo, hi, f) -> str:
    end = lambda e: "无界" if e is None else f(e)  # noqa: E731
    return f"{f(x)} [{end(lo)}–{end(hi)}]"


def test_loan_and_quote_jobs_can_be_cancelled(driven):
    """A valuation or quote that runs as a job shows a Cancel button, which cancels the job (POST
    /v1/jobs/{id}/cancel): the page says so, raises no error and keeps the previous result."""
    shown, bank, insurer = driven
    post = next(p for p in shown["extraPosts"] if p["label"] == "loan-cancel")
    assert post["status"] == 202 and post["body"]["paths"] == 512
    c = shown["loanCancel"]
    assert c["enabledWhileRunning"] is True and c["cancelHidden"] is True
    job = bank.get(f"/v1/jobs/{c['job']}").json()
    assert job["status"] == "cancelled" and job["kind"] == "collateral" and job["result_id"] is None
    assert c["status"].startswith("任务已取消") and c["alert"] == ""
    assert c["resultsShown"] and c["shownId"] == shown["jobLoan"]["id"]  # the previous result stays
    assert shown["jobLoan"]["cancelHiddenAfter"] is True  # a job that ran to its end hides the button too
    post = next(p for p in shown["extraPosts"] if p["label"] == "quote-cancel")
    assert post["status"] == 202 and post["body"]["paths"] == 20000
    q = shown["quoteCancel"]
    job = insurer.get(f"/v1/jobs/{q['job']}").json()
    assert job["status"] == "cancelled" and job["kind"] == "quote"
    assert q["status"].startswith("任务已取消") and q["alert"] == "" and q["cancelHidden"] is True
    assert q["shownId"] == shown["quoteId"]
    assert q["focus"] == "quote-status"  # the pressed Cancel went away: the keyboard's focus is on how the job ended


def test_a_field_error_is_not_repeated_in_the_alert(driven):
    shown, bank, _ = driven
    post = next(p for p in shown["extraPosts"] if p["label"] == "term40")
    assert post["status"] == 422 and post["body"]["terms"]["term_years"] == 40
    reason = next(e["reason"] for e in bank.post("/v1/collateral-valuations", json=post["body"]).json()["errors"]
                  if e["field"].endswith("term_years"))
    t40 = shown["loanTerm40"]
    assert t40["field"].split("\n") == ["期限（年）：取值无效", reason] and t40["invalid"] == "true"
    # the alert names the refusal and points at the field, without the server's reason or its raw path again
    assert t40["alert"] == "出错：请求被拒绝（HTTP 422）。 请按标出字段旁的说明修改。"
    assert "body/" not in t40["alert"] and reason not in t40["alert"]


def test_loan_warns_when_the_request_exceeds_the_safe_loan(driven):
    shown, bank, _ = driven
    v = _loan_result(shown, bank)
    sz, risk = v["sizing"], v["risk"]
    assert sz["requested_loan_within_limit"] is False and sz["requested_ltv_exceeds_pledge_rate"] is True
    lim = shown["loanLimit"]
    assert lim["hidden"] is False and lim["role"] == "status"  # a standing notice of the result, not an urgent event
    assert (lim["within"], lim["exceeds"]) == ("false", "true")
    lo, hi = sz["max_loan_ci95_cny"]
    assert lim["text"] == (
        f"申请的贷款金额 {_n(AMOUNT)} 元超过最大安全贷款额 {_n(sz['max_loan_cny'])} 元（目标不足概率 1.0 %；95% 区间 "
        f"{_n(lo)}–{_n(hi)}）。 该最大安全贷款额在此路径数下未能分辨（见下方说明）。 申请的贷款金额超过惯例贷款额 "
        f"{_n(sz['practice_loan_cny'])} 元（质押率 60 % × 当前价值）：发放时 LTV {_p(risk['ltv_at_origination'])} 高于质押率。")
    assert shown["loanZeroOne"]["limit"] == {"hidden": True, "text": ""}  # within both: no notice


def test_loan_figures_carry_their_errors(driven):
    """The practice loan and the largest safe loan at every target (with their errors and intervals), the by-year
    percentiles and LTV p95 with their 95 % intervals, the value drivers and the price sensitivities with their
    errors (a probability of exactly 0 or 1 with its rule-of-three interval), and the bar chart's error bars."""
    shown, bank, _ = driven
    v = _loan_result(shown, bank)
    vt, sz, terms = v["value_today"], v["sizing"], v["terms"]
    k = shown["loanKpis"]["kpi_practice_loan"]
    assert k["value"] == pytest.approx(sz["practice_loan_cny"], rel=1e-12)
    assert k["sub"] == f"± {_n(terms['pledge_rate'] * vt['mc_se_cny'])}（蒙特卡洛标准误）· 质押率 60 %"
    lo, hi = vt["ci95_cny"]
    assert shown["loanKpis"]["kpi_ltv0"]["sub"] == f"95% 区间 {_p(terms['amount_cny'] / hi)}–{_p(terms['amount_cny'] / lo)}"
    targets = sorted(sz["max_loan_by_target_cny"], key=float)
    assert shown["loanTargetLabels"] == [f"目标不足概率 {_p(float(t))}" for t in targets]
    for t in targets:
        cell, (lo, hi) = shown["loanTargets"][f"target_{t}"], sz["max_loan_by_target_ci95_cny"][t]
        text = f"{_n(sz['max_loan_by_target_cny'][t])}（95% 区间 {_n(lo)}–{_n(hi)}）"
        nr = f"max_loan_by_target_cny.{t}" in sz["not_resolved"]
        assert cell["value"] == pytest.approx(sz["max_loan_by_target_cny"][t], rel=1e-12)
        assert cell["text"] == (f"{text}（未能分辨）" if nr else text) and cell["notResolved"] is nr, t
    for row, api in zip(shown["loanYears"], v["by_year"]):
        for q in ("p05", "p50", "p95"):
            assert row[f"value_{q}_cny"]["text"] == _ci(api[f"value_{q}_cny"], api[f"value_{q}_ci95_low_cny"],
                                                         api[f"value_{q}_ci95_high_cny"], _n), (api["year"], q)
        assert row["ltv_p95"]["text"] == _ci(api["ltv_p95"], api["ltv_p95_ci95_low"], api["ltv_p95_ci95_high"], _p)
    # the bar chart of P(value below the balance) by year: ± 2 s.e. error bars, listed in its description
    desc = shown["loanBelowDesc"]
    assert desc.startswith("误差线：± 2 个蒙特卡洛标准误；第 1 年：")
    y1 = v["by_year"][0]
    assert f"第 1 年：{_n(100 * y1['p_value_below_balance'], 1)} % ± {_n(200 * y1['p_value_below_balance_mc_se'], 1)} %" in desc
    assert "中位数" in shown["loanFanDesc"] and "贷款余额" in shown["loanFanDesc"]
    # the value drivers (attribution): the stored valuation the page drew
    d = shown["loanDrivers"]
    post = next(p for p in shown["extraPosts"] if p["label"] == "drivers")
    assert post["status"] == 201 and post["body"]["attribution"] is True
    res = bank.get(f"/v1/collateral-valuations/{d['id']}").json()["result"]
    assert res["drivers"] and res["sensitivities"]
    units = res["provenance"]["paths"] // 4  # the engine's parameter sets of 4 paths
    zero_one = res["risk"]["zero_one_bounds_95"]
    assert not zero_one or all(b[1] - b[0] == pytest.approx(3 / units) for b in zero_one.values())

    def prob_cell(p, se, n):
        if p in (0.0, 1.0):
            b = 3 / n
            lo, hi = (0.0, b) if p == 0 else (1 - b, 1.0)
            return f"{_p(p)}（95% 区间 {_p(lo, 2)}–{_p(hi, 2)}）"
        return _p(p) if se is None else f"{_p(p)} ± {_p(se)}"

    assert [r["driver"]["value"] for r in d["rows"]] == [x["driver"] for x in res["drivers"]]
    for row, api in zip(d["rows"], res["drivers"]):
        full = api["driver"] == "full model" and api["paths"] == res["provenance"]["paths"]
        assert row["value_cny"]["text"] == (f"{_n(api['value_cny'])} ± {_n(res['value_today']['mc_se_cny'])}" if full
                                            else _n(api["value_cny"]))
        assert row["value_effect_cny"]["text"] == f"{_n(api['value_effect_cny'])} ± {_n(api['value_effect_mc_se_cny'])}"
        assert row["shortfall_effect"]["text"] == f"{_p(api['shortfall_effect'])} ± {_p(api['shortfall_effect_mc_se'])}"
        assert row["expected_shortfall_cny"]["text"] == (
            f"{_n(api['expected_shortfall_cny'])} ± {_n(api['expected_shortfall_mc_se_cny'])}")
        assert row["p_value_below_balance_any_time"]["text"] == prob_cell(
            api["p_value_below_balance_any_time"], res["risk"]["p_value_below_balance_any_time_mc_se"] if full else None,
            api["paths"] // 4), api["driver"]
    assert [r["case"]["value"] for r in d["sens"]] == [x["case"] for x in res["sensitivities"]]
    for row, api in zip(d["sens"], res["sensitivities"]):
        assert row["change_cny"]["text"] == f"{_n(api['change_cny'])} ± {_n(api['change_mc_se_cny'])}"
        assert row["p_value_below_balance_any_time"]["text"] == prob_cell(
            api["p_value_below_balance_any_time"], api["p_value_below_balance_any_time_mc_se"], units), api["case"]
    # at seed 7 the price -50 % case falls below the balance on every path: its rule-of-three interval, not "± 1.0 %"
    assert any(x["p_value_below_balance_any_time"] in (0.0, 1.0) for x in res["sensitivities"])


def test_quote_figures_carry_their_errors(driven):
    shown, _, insurer = driven
    post = _posts(shown, "/v1/quotes")[0]
    q = insurer.post("/v1/quotes", json=post["body"]).json()["result"]
    pr, k = q["premium"], shown["quoteKpis"]
    for key, se, f in (("kpi_rate", "rate_on_sum_insured_mc_se", lambda x: _p(x, 3)),
                       ("kpi_per_mu", "premium_per_mu_mc_se_cny", lambda x: _n(x, 2)),
                       ("kpi_per_ha", "premium_per_ha_mc_se_cny", lambda x: _n(x, 2)),
                       ("kpi_per_tco2e", "premium_per_tco2e_mc_se_cny", lambda x: _n(x, 3)),
                       ("kpi_loss_ratio", "expected_loss_ratio_mc_se", lambda x: _p(x, 1))):
        assert k[key]["sub"] == f"± {f(pr[se])}（蒙特卡洛标准误）", key
    # the pure premium's parameter sd, by the reports' rule, with its 95 % interval
    psd = k["kpi_pure_psd"]
    assert psd["value"] == pr["parameter_sd_cny"]
    ci = f"95% 区间 {_n(pr['parameter_sd_ci95_low_cny'])}–{_n(pr['parameter_sd_ci95_high_cny'])}"
    if pr["parameter_sd_cny"] == 0 and pr["pure_premium_mc_se_cny"] > 0:
        assert psd["text"] == NOT_RESOLVED and psd["sub"].startswith(NOT_RESOLVED) and psd["sub"].endswith(ci)
    else:
        assert psd["text"] == _n(pr["parameter_sd_cny"]) and psd["sub"] == ci
    sub = q["subsidy"]
    for row in shown["quoteSubsidy"]:
        payer = row["payer"]["value"]
        assert row["amount"]["text"] == f"{_n(sub['amounts_cny'][payer])} ± {_n(sub['amounts_mc_se_cny'][payer])}"
    # the PML's basis in Chinese, the acronym kept
    assert shown["quotePmlText"] == [{"OEP": "OEP（单次事件）", "AEP": "AEP（年度累计）"}[p["basis"]] for p in q["risk"]["pml"]]
    assert set(shown["quotePmlEnglish"]) == {"OEP (largest event)", "AEP (annual aggregate)"}


def test_the_payout_curve_starts_at_p_payout(driven):
    """The exceedance curve of the payout plots no point of payout 0 (there P(payout > x) is P(payout) or less,
    never the grid's 89 %): it starts at P(payout), at 0; its description is in Chinese, says payout, with
    formatted probabilities."""
    shown, _, insurer = driven
    for dots, anchor, desc, post in ((shown["quoteEpDots"], shown["quoteEpAnchor"], shown["quoteEpDesc"], _posts(shown, "/v1/quotes")[0]),
                                     (shown["sinkQuote"]["dots"], shown["sinkQuote"]["anchor"], shown["sinkQuote"]["desc"],
                                      _posts(shown, "/v1/quotes")[1])):
        q = insurer.post("/v1/quotes", json=post["body"]).json()["result"]
        p = q["risk"]["prob_payout"]
        assert dots and all(d["loss"] > 0 for d in dots)
        assert max(d["prob"] for d in dots) <= p + 1e-12
        assert anchor == [{"prob": pytest.approx(p, rel=1e-12), "loss": 0}]
        assert desc.startswith(f"P(赔付 > 0) = {_p(p, 1 if p >= 0.01 else 2)}；") and "loss" not in desc
        assert not re.search(r"\d\.\d{4,}", desc)  # no 16-digit probabilities
    assert shown["quoteEpDescEnglish"].startswith("P(payout > 0) = ")
    # the sink index at these paths pays in few years: the old curve climbed the 0 axis to the grid's 89 %
    assert shown["sinkQuote"]["anchor"][0]["prob"] < 0.1


def test_a_sink_index_probability_of_zero_reads_its_rule_of_three_interval(driven):
    shown, _, insurer = driven
    sink = shown["sinkQuote"]
    br = insurer.post("/v1/quotes", json=sink["request"]).json()["result"]["basis_risk"]
    hi = _p(3 / (QUOTE_PATHS // 4), 2)
    for key, field in (("kpi_basis_miss", "prob_loss_no_payout"), ("kpi_basis_extra", "prob_payout_no_loss")):
        p, se = br[field], br[f"{field}_mc_se"]
        assert sink["basis"][key]["sub"] == (f"估计值恰为 0.00 %：95% 区间 [0.00 %, {hi}]（三法则）" if p == 0
                                             else f"± {_p(se, 2)}（蒙特卡洛标准误）"), key
    assert "± 0.00 %" not in " ".join(x["sub"] or "" for x in sink["basis"].values())


def test_a_new_result_clears_the_download_line(driven):
    shown, _, _ = driven
    assert shown["memoStatus"].startswith("已下载 collateral-memo-")
    assert shown["loanDlStatusAfterNew"] == ""  # the job's valuation drawn after the memo's download
    assert shown["quoteDlStatus"].startswith("已下载 quote-slip-")
    assert shown["quoteCancel"]["dlStatus"] == shown["quoteDlStatus"]  # cancelled: the same result, the same file
    assert shown["sinkQuote"]["dlStatus"] == ""


def test_a_quote_that_pays_nothing_says_why(driven):
    """A deductible above every year's covered loss: the page says the cover pays nothing, with the server's reason
    (risk.no_payout_note); a quote that pays shows no such line."""
    shown, _, _ = driven
    assert shown["quoteNoPayFirst"] is True
    nopay = shown["noPay"]
    assert nopay["server"] and "deductible" in nopay["server"]
    assert nopay["hidden"] is False
    assert nopay["text"].startswith("无预期损失：") and nopay["server"] in nopay["text"]
    # nothing pays: no curve and no marker drawn (a point below the axis' floor is never drawn)
    assert nopay["circles"] == 0 and nopay["polylines"] == 0


@pytest.mark.parametrize("page", ["loanNarrow", "quoteNarrow"])
def test_the_finance_pages_fit_a_390_px_screen(driven, page):
    """At 390 px: the page no wider than the screen, no card wider than its box, chart labels at least 10 px (the
    viewBox was scaled to about 5 px), every table cell of a sideways-scrolling table on one line."""
    m = driven[0][page]
    assert m["docWidth"] <= 390 and m["cards"] == []
    assert m["charts"] and all(c["tickPx"] >= 10 for c in m["charts"]), m["charts"]
    assert m["tables"] and all(t["lines"] == 1 for t in m["tables"]), m["tables"]
