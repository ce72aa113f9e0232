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
                if 0.005 <= p["exceedance_probability"] < 1)
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
    assert len(shown["screenshots"]) == 6
    for p in shown["screenshots"]:
        assert Path(p).stat().st_size > 10_000
