"""The /ui dashboard in a real browser (headless Debian Chromium driven by playwright-core), against a
real ``carbon-risk serve --demo`` process: sign in with the bureau demo key, choose the demo portfolio,
cancel a big run, run a small stress test (super typhoon vs baseline) to 100 %, then check that the
charts, the county losses table, the KPIs and the five-level accounts show exactly the numbers the API
returns for that result; drill into the accounts tree; download every report and compare it with the
API's bytes; switch language; then run a simulation, whose percentiles draw the exceedance curve and
the fan chart. (Without the stress-test endpoint the main run is that simulation.) Before any run, the
portfolio's accounts: at once with the page's default paths, then with more paths than one request computes
(the GET is refused: the page says so and runs ``POST /v1/accounts`` as a job with progress, and draws its
``/rows``), then a job cancelled; at the end a simulation's accounts refused at once run as a job too. The simulation's accounts
show each parameter sd by the reports' rule (a 0 the estimator clipped reads "not resolved"); two small
simulations whose results are rewritten on their way to the page check that rule on a KPI and that a run
without parameter uncertainty shows no parameter sd at all.

A screenshot of each page is saved under ``tests/browser/artifacts/<time>/`` (git-ignored) and the
paths are printed. Skips, saying why, when Chromium or Node is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import re
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import httpx
import pytest

from api.bootstrap import DEMO_PORTFOLIO_NAME, demo_key
from tests.browser.conftest import ARTIFACTS, CHROMIUM, run_driver

YEARS, PATHS, SEED = 3, 96, 7  # 3 chunks of 32 paths: progress has steps to show
SCENARIO = "super_typhoon"  # the stress scenario of the main run (a forced typhoon over Qingtian)
NOT_RESOLVED = "未能分辨"  # "not resolved": a parameter sd clipped at 0 (the page is in Chinese)
# the portfolio's accounts: 5,000 parcels x 500 paths is above the server's CRE_SYNC_MAX_CELLS (2,000,000, the
# default), so the page's GET is refused and it runs a job; a larger job is cancelled
ACC_PATHS, ACC_SEED, ACC_CANCEL_PATHS = 500, 11, 4000
ACC_DEFAULT = (64, 20260101)  # the accounts page's default paths and seed
LEVELS = ("province", "city", "county", "township", "village")
# the accounts table's columns (api/static/js/runners.js SIM_ACCOUNT_COLUMNS): key, decimals, a parameter sd?
ACC_COLUMNS = [("parcels", 0, False), ("area_ha", 1, False), ("stock_bef_tco2e", 0, False),
               ("expected_sink_tco2e_per_yr", 0, False), ("expected_sink_tco2e_per_yr_mc_se", 0, False),
               ("expected_sink_tco2e_per_yr_parameter_sd", 0, True), ("expected_loss_tco2e_per_yr", 0, False),
               ("expected_loss_tco2e_per_yr_mc_se", 0, False), ("expected_loss_tco2e_per_yr_parameter_sd", 0, True),
               ("expected_harvest_tco2e_per_yr", 0, False), ("expected_harvest_tco2e_per_yr_mc_se", 0, False),
               ("expected_harvest_tco2e_per_yr_parameter_sd", 0, True)]
PSD_CI_NOTE = "方括号内为参数标准差的 95% 置信区间"  # the accounts' note when their sds carry their interval


def _psd_text(psd: float, se) -> str:
    """What the page shows for a parameter sd (the reports' rule, finance_engine/reports/html.py): a 0 of a
    figure that varies (its Monte Carlo error above 0, or unknown) was clipped by the estimator."""
    return NOT_RESOLVED if psd == 0 and se != 0 else f"{psd:,.0f}"


def _psd_cell(row: dict, col: str) -> str:
    """An accounts cell of a parameter sd: the sd (or "not resolved") and, where the row carries it, the sd's own
    95 % interval in brackets ("1,523 [1,016–2,485]", "未能分辨 [0–331]")."""
    psd, se = row[col], row[col.replace("parameter_sd", "mc_se")]
    base = NOT_RESOLVED if psd == 0 and se != 0 else _js_fmt(psd, 0)
    lo, hi = row.get(f"{col}_ci95_low"), row.get(f"{col}_ci95_high")
    return base if lo is None or hi is None else f"{base} [{_js_fmt(lo, 0)}–{_js_fmt(hi, 0)}]"


def _psd_kpi(r: dict) -> str:
    """A results KPI's parameter sd line, with the sd's 95 % interval where the summary row has one."""
    base = f"参数标准差 {_psd_text(r['parameter_sd'], r['mc_se'])}"
    lo, hi = r.get("parameter_sd_ci95_low"), r.get("parameter_sd_ci95_high")
    return base if lo is None or hi is None else f"{base}（95% 区间 {_js_fmt(lo, 0)}–{_js_fmt(hi, 0)}）"


def _js_fmt(x, digits: int) -> str:
    """A number as the page writes it (Chromium's zh-CN Intl.NumberFormat: groups of three, rounding the number's
    shortest decimal form, ties away from zero: 53.15 -> "53.2"), "—" for none."""
    if x is None:
        return "—"
    return f"{Decimal(repr(x)).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP):,.{digits}f}"


def _check_accounts_table(shown_rows: list[dict], api_rows: list[dict]) -> int:
    """Every row of the page's accounts table is the API's row of the same place (the five levels, each once):
    exact values, each figure's text, and each parameter sd by the reports' rule. Returns how many parameter
    sds read "not resolved"."""
    five = [r for r in api_rows if r["level"] in LEVELS]
    by_key = {"/".join(str(r[lv] or "") for lv in LEVELS[:LEVELS.index(r["level"]) + 1]): r for r in five}
    assert len(shown_rows) == len(five) == len(by_key) > 0
    assert {r["key"] for r in shown_rows} == set(by_key)
    unresolved = 0
    for row in shown_rows:
        api = by_key[row["key"]]
        assert row["level"] == api["level"]
        if api[api["level"]]:
            assert row["name"] == api[api["level"]]
        assert list(row["cells"]) == [col for col, _, _ in ACC_COLUMNS]
        for col, digits, psd in ACC_COLUMNS:
            cell, want = row["cells"][col], api[col]
            assert (None if cell["value"] == "" else float(cell["value"])) == want, (row["key"], col)
            if psd:
                text = _psd_cell(api, col)
                nr = text.startswith(NOT_RESOLVED)
                assert cell["text"] == text and cell["resolved"] == str(not nr).lower(), (row["key"], col)
                unresolved += nr
                # a clipped sd's interval runs from 0 (to the bound the data can give)
                if nr and api.get(f"{col}_ci95_low") is not None:
                    assert api[f"{col}_ci95_low"] == 0, (row["key"], col)
            else:
                assert cell["text"] == _js_fmt(want, digits) and cell["resolved"] is None, (row["key"], col)
    return unresolved


def _all(c: httpx.Client, path: str, key: str = "items", **params) -> list[dict]:
    out, offset = [], 0
    while True:
        d = c.get(path, params={**params, "limit": 500, "offset": offset}).raise_for_status().json()
        page = d[key] if key != "items" else d
        out += page["items"]
        if page["next_offset"] is None:
            return out
        offset = page["next_offset"]


@pytest.fixture(scope="module")
def driven(browser_driver, demo_server):
    """Run the driver once; returns (what the page showed, the API client, artifact folder)."""
    out_dir = ARTIFACTS / time.strftime("%Y%m%d-%H%M%S")
    key = demo_key("bureau")[1]
    cmd = ["node", str(browser_driver), "--base", demo_server.base, "--key", key, "--out", str(out_dir),
           "--portfolio", DEMO_PORTFOLIO_NAME, "--years", str(YEARS), "--paths", str(PATHS), "--seed", str(SEED),
           "--scenario", SCENARIO, "--acc-paths", str(ACC_PATHS), "--acc-seed", str(ACC_SEED),
           "--acc-cancel-paths", str(ACC_CANCEL_PATHS),
           "--chromium", CHROMIUM]
    shown = run_driver(cmd, 480, "dashboard")
    client = httpx.Client(base_url=demo_server.base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        yield shown, client, out_dir
    finally:
        client.close()


def test_sign_in_portfolio_and_map(driven):
    shown, c, _ = driven
    assert shown["initialLang"] == "zh-CN" and shown["signinHeading"] == "登录"
    assert "401" in shown["badKeyError"]
    assert shown["keyInSessionStorage"] == demo_key("bureau")[1]
    pf = c.get(f"/v1/portfolios/{shown['portfolioId']}", params={"limit": 1}).json()
    assert pf["name"] == DEMO_PORTFOLIO_NAME
    assert shown["mapDots"] == pf["n_parcels"] == 5000
    assert shown["summaryParcels"] == f"{pf['n_parcels']:,}"
    assert shown["hulls"] == len(pf["summary"]["counties"])
    assert shown["legendSpecies"] == len(pf["summary"]["species_groups"])
    assert shown["riskRadioDisabledBeforeRun"] is True
    assert shown["viewBoxChangedByKeys"] and shown["viewBoxReset"]
    # no CDN, no tile server: every request went to the server under test
    assert shown["failedRequests"] == []
    # the only failed responses: the bad key (401) and the accounts asked at once but too large (422)
    refused = re.compile(r"status of 422\b.*\[.*(/v1/(portfolios|simulations)/[^/]+/accounts\?|/v1/stress-tests\])")
    assert [e for e in shown["consoleErrors"] if "status of 401" not in e and not refused.search(e)] == []


def test_progress_cancel_and_run_to_completion(driven):
    shown, c, _ = driven
    cancelled = c.get(f"/v1/jobs/{shown['cancelledJob']}").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
    assert shown["cancelledStatusText"] == "已取消"
    paths = c.get("/openapi.json").json()["paths"]
    # the main run is a stress test when the API has the endpoint, then a simulation follows
    assert shown["mainKind"] == ("stress" if "/v1/stress-tests" in paths else "simulation")
    assert [r["kind"] for r in shown["runs"]] == (["stress", "simulation"] if shown["mainKind"] == "stress"
                                                  else ["simulation"])
    for run in shown["runs"]:
        seen = run["progressSeen"]
        assert seen[-1]["status"] == "succeeded" and seen[-1]["value"] == 1 and run["finalPct"] == "100 %"
        values = [s["value"] for s in seen]
        assert values == sorted(values), "the progress bar went backwards"
        assert any(s["status"] in ("queued", "running") for s in seen), "never saw the job before it finished"
        job = c.get(f"/v1/jobs/{run['jobId']}").json()
        assert job["status"] == "succeeded" and job["result_id"] == run["resultId"]
        assert (job["request"]["paths"], job["request"]["years"], job["request"]["seed"]) == (PATHS, YEARS, SEED)
        if run["kind"] == "stress":
            assert job["kind"] == "stress_test" and job["request"]["scenarios"] == [SCENARIO]
        assert run["resultTabSelected"] == "true" and run["error"] == ""


def _check_simulation_run(run, c):
    sim = c.get(f"/v1/simulations/{run['resultId']}").json()
    hz = sim["horizon"]
    county = {r["group"].split("/")[-1]: r for r in hz if r["level"] == "county" and r["metric"] == "cumulative_loss_tco2e"}
    port = {r["metric"]: r for r in hz if r["level"] == "portfolio"}
    rows = run["countyRows"]
    assert {r["county"] for r in rows} == set(county)
    pf = c.get(f"/v1/portfolios/{sim['portfolio_id']}", params={"limit": 1}).json()
    stock0 = {r["group"].split("/")[-1]: r["stock_tco2e"] for r in sim["initial_stock"] if r["level"] == "county"}
    for r in rows:
        api = county[r["county"]]
        assert r["loss"] == pytest.approx(api["mean"], rel=1e-12)
        assert r["se"] == pytest.approx(api["mc_se"], rel=1e-12)
        assert r["loss_text"] == f"{api['mean']:,.0f}"
        area = pf["summary"]["counties"][r["county"]]["area_ha"]
        assert r["area"] == pytest.approx(area, rel=1e-9)
        assert r["perHaYr"] == pytest.approx(api["mean"] / area / YEARS, rel=1e-9)
        assert r["share"] == pytest.approx(api["mean"] / stock0[r["county"]], rel=1e-12)
    # sorted by loss, and the counties add up to the portfolio (the table misses no county)
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    assert sum(losses) == pytest.approx(port["cumulative_loss_tco2e"]["mean"], rel=1e-9)
    assert [(b["label"], b["value"]) for b in run["bars"]] == [(r["name"], r["loss"]) for r in rows]
    kpi = {k["key"]: k["value"] for k in run["kpis"]}
    assert kpi["kpi_stock_end"] == pytest.approx(port["stock_end_tco2e"]["mean"], rel=1e-12)
    assert kpi["kpi_sink"] == pytest.approx(port["cumulative_sink_tco2e"]["mean"], rel=1e-12)
    assert kpi["kpi_loss"] == pytest.approx(port["cumulative_loss_tco2e"]["mean"], rel=1e-12)
    assert kpi["kpi_loss_p99"] == pytest.approx(port["cumulative_loss_tco2e"]["p99"], rel=1e-12)
    # every KPI shows its Monte Carlo error: the mean's standard error, the percentile's interval
    err = {k["key"]: k for k in run["kpis"]}
    for key, metric in (("kpi_stock_end", "stock_end_tco2e"), ("kpi_sink", "cumulative_sink_tco2e"),
                        ("kpi_loss", "cumulative_loss_tco2e")):
        assert err[key]["err"] == pytest.approx(port[metric]["mc_se"], rel=1e-12)
        assert err[key]["errText"].startswith("± ")
        # and, apart, the spread from the uncertain parameters
        assert err[key]["psd"] == pytest.approx(port[metric]["parameter_sd"], rel=1e-12)
        assert err[key]["psdText"] == _psd_kpi(port[metric])
        assert err[key]["psdCi"] == pytest.approx([port[metric]["parameter_sd_ci95_low"], port[metric]["parameter_sd_ci95_high"]],
                                                  rel=1e-12)
    assert err["kpi_loss_p99"]["psd"] is None  # a quantile has its interval only
    lo, hi = err["kpi_loss_p99"]["err"]
    assert lo == pytest.approx(port["cumulative_loss_tco2e"]["p99_ci_low"], rel=1e-12)
    assert hi == port["cumulative_loss_tco2e"]["p99_ci_high"]  # None (unbounded) with few paths
    assert err["kpi_loss_p99"]["errText"].startswith("95% CI")
    # the run settings name the model and the parameter set that made the numbers
    assert sim["audit"]["model_version"] in run["settingsText"]
    assert sim["audit"]["parameter_sha256"][:12] in run["settingsText"]
    # the exceedance curve: P(loss > q-quantile) = 1 - q at the API's percentiles
    loss = port["cumulative_loss_tco2e"]
    want = sorted((round(1 - q, 2), loss[k]) for k, q in
                  (("p01", .01), ("p05", .05), ("p10", .1), ("p50", .5), ("p90", .9), ("p95", .95), ("p99", .99)))
    got = sorted((d["prob"], d["loss"]) for d in run["exceedanceDots"])
    assert run["exceedanceShown"] is True
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-12)
    assert run["fanBands"] == 2 and run["fanMedian"] == 1 and run["fanBaseline"] == 0


def _check_stress_run(run, c):
    sid = run["resultId"]

    def table(name, **q):
        return _all(c, f"/v1/stress-tests/{sid}/tables/{name}", scenario=SCENARIO, **q)

    county = {r["group"].split("/")[-1]: r for r in table("horizon", level="county", metric="cumulative_loss_tco2e")}
    port = {r["metric"]: r for r in table("horizon", level="portfolio")}
    rows = run["countyRows"]
    assert {r["county"] for r in rows} == set(county) and len(rows) == 9
    # the baseline's loss with its own Monte Carlo s.e. (the baseline scenario's rows), every error with its unit
    base = {r["group"].split("/")[-1]: r for r in _all(c, f"/v1/stress-tests/{sid}/tables/horizon", scenario="baseline",
                                                       level="county", metric="cumulative_loss_tco2e")}
    assert run["countyHeader"] == ["县（市、区）", "面积（公顷）", "基准损失（tCO₂e）", "基准损失标准误（tCO₂e）", "情景损失（tCO₂e）",
                                   "蒙特卡洛标准误（tCO₂e）", "较基准增加（tCO₂e）", "差值标准误（tCO₂e）", "年均损失（tCO₂e/公顷）"]
    for r in rows:
        assert r["baseSe"] == pytest.approx(base[r["county"]]["mc_se"], rel=1e-12)
        assert r["baseSe_text"] == _js_fmt(base[r["county"]]["mc_se"], 0)
        assert r["base"] == pytest.approx(base[r["county"]]["mean"], rel=1e-12)
    for r in rows:
        api = county[r["county"]]
        assert (r["loss"], r["se"], r["base"], r["diff"], r["diffSe"]) == pytest.approx(
            (api["mean"], api["mc_se"], api["baseline_mean"], api["diff_mean"], api["diff_mc_se"]), rel=1e-12)
        assert r["loss_text"] == f"{api['mean']:,.0f}" and r["diff_text"] == f"{api['diff_mean']:,.0f}"
        # paired difference of means = difference of the means (common random numbers, same paths)
        assert r["diff"] == pytest.approx(r["loss"] - r["base"], rel=1e-9, abs=1e-6)
        assert r["perHaYr"] == pytest.approx(api["mean"] / r["area"] / YEARS, rel=1e-12)
    losses = [r["loss"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    assert sum(losses) == pytest.approx(port["cumulative_loss_tco2e"]["mean"], rel=1e-9)
    assert [(b["label"], b["value"]) for b in run["bars"]] == [(r["name"], r["loss"]) for r in rows]
    assert run["baseMarks"] == pytest.approx([r["base"] for r in rows], rel=1e-12)
    kpi = {k["key"]: k["value"] for k in run["kpis"]}
    err = {k["key"]: k["err"] for k in run["kpis"]}
    assert kpi["kpi_stock_end"] == pytest.approx(port["stock_end_tco2e"]["mean"], rel=1e-12)
    assert err["kpi_stock_end"] == pytest.approx(port["stock_end_tco2e"]["mc_se"], rel=1e-12)
    assert kpi["kpi_loss"] == pytest.approx(port["cumulative_loss_tco2e"]["mean"], rel=1e-12)
    assert err["kpi_extra_loss"] == pytest.approx(port["cumulative_loss_tco2e"]["diff_mc_se"], rel=1e-12)
    assert kpi["kpi_extra_loss"] == pytest.approx(port["cumulative_loss_tco2e"]["diff_mean"], rel=1e-12)
    psd = {k["key"]: k["psd"] for k in run["kpis"]}
    assert psd["kpi_stock_end"] == pytest.approx(port["stock_end_tco2e"]["parameter_sd"], rel=1e-12)
    assert psd["kpi_extra_loss"] == pytest.approx(port["cumulative_loss_tco2e"]["diff_parameter_sd"], rel=1e-12)
    # each parameter sd by the reports' rule: a 0 the estimator clipped reads "not resolved"; with its 95 %
    # interval from the row (the extra loss: the paired difference's)
    source = {"kpi_stock_end": ("stock_end_tco2e", ""), "kpi_loss": ("cumulative_loss_tco2e", ""),
              "kpi_extra_loss": ("cumulative_loss_tco2e", "diff_"), "kpi_value_end": ("stock_end_value_cny", ""),
              "kpi_loss_value": ("cumulative_loss_value_cny", "")}
    for k in run["kpis"]:
        if k["psd"] is not None:
            metric, pre = source[k["key"]]
            row = port[metric]
            lo, hi = row.get(f"{pre}parameter_sd_ci95_low"), row.get(f"{pre}parameter_sd_ci95_high")
            base = f"参数标准差 {_psd_text(k['psd'], k['err'])}"
            assert lo is not None and hi is not None, k["key"]
            assert k["psdText"] == f"{base}（95% 区间 {_js_fmt(lo, 0)}–{_js_fmt(hi, 0)}）", k["key"]
            assert k["psdResolved"] == str(_psd_text(k['psd'], k['err']) != NOT_RESOLVED).lower(), k["key"]
    assert kpi["kpi_value_end"] == pytest.approx(port["stock_end_value_cny"]["mean"], rel=1e-12)
    assert kpi["kpi_loss_value"] == pytest.approx(port["cumulative_loss_value_cny"]["mean"], rel=1e-12)
    # the super typhoon forces an event over Qingtian: the county with the largest extra loss
    assert max(rows, key=lambda r: r["diff"])["county"] == "青田县"
    value = table("by_year", level="portfolio", metric="stock_value_cny")
    assert len(value) == YEARS and run["fanMedian"] == 1 and run["fanBaseline"] == 1
    if "p05" in port["cumulative_loss_tco2e"]:  # a stress result with percentiles draws its exceedance curve
        assert run["exceedanceShown"] is True and len(run["exceedanceDots"]) >= 5
    else:  # none: the page says so instead of drawing a curve it does not have
        assert run["exceedanceShown"] is False and run["exceedanceDots"] == [] and run["exceedanceNote"]


def test_results_show_the_api_numbers(driven):
    shown, c, _ = driven
    for run in shown["runs"]:
        (_check_stress_run if run["kind"] == "stress" else _check_simulation_run)(run, c)
    assert shown["riskColouredDots"] == 5000 and shown["riskLegendItems"] == 5
    if len(shown["runs"]) == 2:  # same seed, paths, years and climate: the stress baseline is that simulation
        base = {r["county"]: r["base"] for r in shown["runs"][0]["countyRows"]}
        sim = {r["county"]: r["loss"] for r in shown["runs"][1]["countyRows"]}
        assert base.keys() == sim.keys()
        for k in base:
            assert base[k] == pytest.approx(sim[k], rel=1e-9), k


def test_parameter_sds_clipped_at_zero_read_not_resolved(driven):
    shown, c, _ = driven
    # the simulation's accounts, every level: each parameter sd beside its Monte Carlo error, by the rule
    sim = shown["runs"][-1]
    assert sim["kind"] == "simulation" and sim["resultId"] in shown["simAccountsFor"]
    rows = _all(c, f"/v1/simulations/{sim['resultId']}/accounts", key="rows")
    by_key = {"/".join(str(r[lv]) for lv in ("province", "city", "county", "township", "village")[:depth + 1]): r
              for r in rows for depth, lv in enumerate(("province", "city", "county", "township", "village"))
              if r["level"] == lv}
    cells = shown["simAccountsPsd"]
    assert len(cells) == 3 * len(by_key) > 0  # the sink's, the loss's and the harvest's
    unresolved = 0
    for cell in cells:
        api = by_key[cell["key"]]
        se_col = cell["col"].replace("parameter_sd", "mc_se")
        assert cell["value"] == pytest.approx(api[cell["col"]], rel=1e-12, abs=0)
        assert cell["se"] == pytest.approx(api[se_col], rel=1e-12, abs=0)
        assert cell["text"] == _psd_cell(api, cell["col"]), cell
        nr = cell["text"].startswith(NOT_RESOLVED)
        assert cell["resolved"] == str(not nr).lower()
        unresolved += nr
    note = shown["simAccountsPsdNote"] or ""
    assert ("截断为 0" in note) == (unresolved > 0) and PSD_CI_NOTE in note
    # a KPI whose parameter sd the estimator clipped at 0: "not resolved", with the reports' footnote
    kpis = {k["key"]: k for k in shown["clippedRun"]["kpis"]}
    stock = kpis["kpi_stock_end"]
    assert stock["psd"] == 0 and stock["err"] > 0
    lo, hi = stock["psdCi"]
    assert lo == 0 and hi > 0  # not resolved: from 0 to the bound the data can give
    assert stock["psdText"] == f"参数标准差 {NOT_RESOLVED}（95% 区间 0–{_js_fmt(hi, 0)}）" and stock["psdResolved"] == "false"
    assert "截断为 0" in stock["psdTitle"] and shown["clippedRun"]["psdNote"] == stock["psdTitle"]
    sink = kpis["kpi_sink"]
    assert sink["psdText"] == _psd_kpi({"parameter_sd": sink["psd"], "mc_se": sink["err"],
                                        "parameter_sd_ci95_low": sink["psdCi"][0], "parameter_sd_ci95_high": sink["psdCi"][1]})
    # a run without parameter uncertainty: its zeros are "off", so no parameter sd is shown at all
    off = shown["offRun"]
    assert off["error"] == "" and len(off["kpis"]) == 4
    assert all(k["psd"] is None and k["psdText"] is None for k in off["kpis"]) and off["psdNote"] is None
    assert all(k["errText"] for k in off["kpis"])  # the Monte Carlo errors stay


def test_accounts_drill_down(driven):
    shown, c, _ = driven
    main = shown["runs"][0]
    if main["kind"] == "stress":
        rows = _all(c, f"/v1/stress-tests/{main['resultId']}/accounts", key="rows", scenario=SCENARIO)
        stock = "stock_end_tco2e"
    else:
        rows = _all(c, f"/v1/simulations/{main['resultId']}/accounts", key="rows")
        stock = "stock_bef_tco2e"
    five = [r for r in rows if r["level"] in ("province", "city", "county", "township", "village")]
    assert shown["accountsRowsTotal"] == len(five)
    n_counties = sum(r["level"] == "county" for r in rows)
    assert shown["accountsVisibleInitially"] == ["province", "city"] + ["county"] * n_counties
    assert shown["accountsAfterCollapse"] == shown["accountsVisibleInitially"]
    county_name = shown["accountsFirstCounty"].split("/")[-1]
    api_county = next(r for r in rows if r["level"] == "county" and r["county"] == county_name)
    assert shown["accountsCountyStock"] == pytest.approx(api_county[stock], rel=1e-12)
    n_twp = sum(r["level"] == "township" and r["county"] == county_name for r in rows)
    assert shown["accountsAfterCounty"].count("township") == n_twp
    twp_name = shown["accountsFirstTownship"].split("/")[-1]
    villages = {r["village"]: r[stock] for r in rows
                if r["level"] == "village" and r["county"] == county_name and r["township"] == twp_name}
    got = {v["key"].split("/")[-1]: v["stock"] for v in shown["accountsVillageRows"]}
    assert got.keys() == villages.keys() and len(got) > 0
    for name, value in villages.items():
        assert got[name] == pytest.approx(value, rel=1e-12)
    assert shown["accountsAfterTownship"].count("village") == len(villages)
    # the villages add up to their township (the accounts are exact roll-ups)
    api_twp = next(r for r in rows if r["level"] == "township" and r["township"] == twp_name)
    assert sum(villages.values()) == pytest.approx(api_twp[stock], rel=1e-6)


def test_report_downloads_and_language(driven):
    shown, c, out_dir = driven
    main = shown["runs"][0]
    want = {"result-json"} | ({"stress-report", "stress-workbook", "stress-accounts"} if main["kind"] == "stress"
                              else {"accounts-json"})
    assert want <= set(shown["reportButtons"]) and set(shown["downloads"]) == set(shown["reportButtons"])
    for rid, dl in shown["downloads"].items():
        src = shown["reportSources"][rid]
        r = c.get(src["path"], params=src["query"])
        assert r.status_code == 200, (rid, r.text[:300])
        body = Path(dl["file"]).read_bytes()
        if r.headers["content-type"].startswith("application/json"):
            assert json.loads(body) == r.json(), rid
        else:
            assert body == r.content, rid
    assert shown["langAfterToggle"] == "en" and shown["langBack"] == "zh-CN"
    assert shown["tabsEnglish"] == ["Portfolio & map", "Loan valuation", "Insurance quote", "Stress test", "Results",
                                    "Five-level accounts", "Reports"]  # the bureau may value loans and quote
    assert shown["countyCaptionEnglish"] == "Losses by county"
    assert "Longquan (龙泉市)" in shown["countyNamesEnglish"]
    assert shown["accountsHeaderEnglish"][0] == "Name"
    assert len(shown["screenshots"]) >= 10
    for p in shown["screenshots"]:
        assert Path(p).stat().st_size > 10_000 and Path(p).parent == out_dir


def test_portfolio_accounts_above_the_sync_limit_run_as_a_job(driven):
    shown, c, _ = driven
    acc = shown["accPortfolio"]
    assert acc.get("error") is None, acc.get("error")
    pid = shown["portfolioId"]
    # before any run the page shows the portfolio's accounts, asked at once with its default paths and seed
    paths0, seed0 = ACC_DEFAULT
    assert acc["syncFor"] == f"/v1/portfolios/{pid}/accounts?paths={paths0}&seed={seed0}"
    assert acc["syncJobShown"] is False and acc["syncNote"] == "" and acc["sourceShown"] is False
    sync = _all(c, f"/v1/portfolios/{pid}/accounts", key="rows", paths=paths0, seed=seed0)
    _check_accounts_table(acc["syncRows"], sync)
    assert acc["syncMeta"].startswith(f"{paths0} 条路径，种子 {seed0} · 模型 ")
    # more paths than one request computes: the API refuses the GET...
    r = c.get(f"/v1/portfolios/{pid}/accounts", params={"paths": ACC_PATHS, "seed": ACC_SEED, "limit": 1})
    assert r.status_code == 422
    problem = r.json()
    assert problem["type"].endswith("/sync-limit-exceeded") and 1 <= problem["max_paths"] < ACC_PATHS
    # ...and the page says so in a sentence with the API's figures, not as a raw error, and runs a job
    note = acc["refusal"]
    assert note.startswith(f"5,000 个小班 × {ACC_PATHS} 条路径 = {problem['cells']:,}，")
    assert f"上限 {problem['limit']:,}" in note and f"至多 {problem['max_paths']} 条路径" in note and "后台任务" in note
    assert not re.search(r"422|HTTP|sync-limit|出错", note) and acc["pageError"] == ""
    job = c.get(f"/v1/jobs/{acc['jobId']}").json()
    assert job["kind"] == "accounts" and job["status"] == "succeeded"
    assert job["request"] == {"portfolio_id": pid, "paths": ACC_PATHS, "seed": ACC_SEED}
    assert job["result_id"] == acc["accountsId"]
    # the job as the stress-test page shows its jobs: progress bar, status, ETA, a cancel button while it runs
    seen = acc["progressSeen"]
    assert any(s["status"] in ("queued", "running") and s["shown"] and s["cancelVisible"] for s in seen), seen
    assert seen[-1]["status"] == "succeeded" and seen[-1]["value"] == 1 and seen[-1]["loaded"]
    assert [s["value"] for s in seen] == sorted(s["value"] for s in seen)
    assert acc["finalPct"] == "100 %" and acc["statusText"] == "已完成"
    assert acc["cancelHiddenAfter"] is True and acc["computeEnabledAfter"] is True
    # the stored accounts, named on the page with their paths and seed
    stored = c.get(f"/v1/accounts/{acc['accountsId']}").json()
    assert (stored["result"]["sink_paths"], stored["result"]["seed"]) == (ACC_PATHS, ACC_SEED)
    assert acc["accountsFor"] == f"/v1/portfolios/{pid}/accounts?paths={ACC_PATHS}&seed={ACC_SEED}"
    assert acc["meta"].startswith(f"碳账户记录 {acc['accountsId']} · {ACC_PATHS} 条路径，种子 {ACC_SEED} · 模型 ")
    # drawn as the accounts asked at once are: the same columns, every row the API's /rows, the same sd rule
    assert acc["header"] == acc["syncHeader"]
    rows = _all(c, f"/v1/accounts/{acc['accountsId']}/rows", key="rows")
    unresolved = _check_accounts_table(acc["rows"], rows)
    assert ("截断为 0" in (acc["psdNote"] or "")) == (unresolved > 0) and PSD_CI_NOTE in (acc["psdNote"] or "")


def test_portfolio_accounts_job_cancelled(driven):
    shown, c, _ = driven
    acc = shown["accPortfolio"]
    assert acc.get("error") is None, acc.get("error")
    assert acc["cancelJob"] != acc["jobId"] and acc["computeDisabledWhileRunning"] is True
    job = c.get(f"/v1/jobs/{acc['cancelJob']}").json()
    assert job["kind"] == "accounts" and job["request"]["paths"] == ACC_CANCEL_PATHS
    assert job["status"] == "cancelled" and job["cancel_requested"] is True and job["result_id"] is None
    assert acc["cancelSeen"][-1]["status"] == "cancelled" and acc["cancelStatusText"] == "已取消"
    assert acc["cancelMessage"] == "碳账户任务已取消，未显示结果。" and acc["cancelRows"] == 0


def test_the_portfolios_accounts_beside_a_run_have_the_portfolios_columns(driven):
    """After a stress test, choosing the portfolio's accounts draws the portfolio's columns and help (they had
    kept the stress test's columns, whose fields the portfolio's rows do not have: blank cells)."""
    shown, _, _ = driven
    header = shown.get("portfolioAccountsHeaderAfterRun")
    assert header is not None, "the driver did not reach the accounts source selector"
    assert header == shown["accPortfolio"]["syncHeader"]
    assert "情景" not in shown["portfolioAccountsHelpAfterRun"]


def test_the_same_accounts_asked_again_show_the_kept_run(driven):
    """Asking again for accounts already computed (same portfolio, parameters, paths, seed) shows the kept run:
    no second job is started."""
    shown, c, _ = driven
    acc = shown["accPortfolio"]
    assert acc.get("error") is None, acc.get("error")
    assert acc["reusedId"] == acc["accountsId"] and acc["reusedRows"] == acc["rows"]
    pid = shown["portfolioId"]
    runs = c.get("/v1/accounts", params={"portfolio_id": pid, "limit": 500}).json()["items"]
    same = [r for r in runs if (r["audit"]["request"]["paths"], r["audit"]["request"]["seed"]) == (ACC_PATHS, ACC_SEED)]
    assert len(same) == 1


def test_simulation_accounts_refused_at_once_run_as_a_job(driven):
    shown, c, _ = driven
    ref = shown["simRefused"]
    assert ref.get("error") is None, ref.get("error")
    sim_id = shown["offRun"]["resultId"]
    sim = c.get(f"/v1/simulations/{sim_id}").json()
    assert ref["accountsFor"] == f"/v1/simulations/{sim_id}/accounts?"
    assert ref["sourceText"] == f"最近一次运行的碳账户（{sim_id}）"
    assert ref["refusal"].startswith("5,000 个小班 × 32 条路径 = 160,000，") and "至多 20 条路径" in ref["refusal"]
    # the same accounts as a job: the run's portfolio, paths and seed
    job = c.get(f"/v1/jobs/{ref['jobId']}").json()
    assert job["kind"] == "accounts" and job["status"] == "succeeded" and job["result_id"] == ref["accountsId"]
    assert job["request"] == {"portfolio_id": sim["portfolio_id"], "paths": sim["audit"]["request"]["paths"],
                              "seed": sim["audit"]["seed"]}
    rows = _all(c, f"/v1/accounts/{ref['accountsId']}/rows", key="rows")
    _check_accounts_table(ref["rows"], rows)
    # and they are the run's accounts: what the simulation's own accounts endpoint answers
    assert rows == _all(c, f"/v1/simulations/{sim_id}/accounts", key="rows")


# ---------------------------------------------------------------------------------------------------------------
# the dashboard review's findings: narrow screens, the run form, a refused run, the charts' descriptions, errors
# ---------------------------------------------------------------------------------------------------------------
def test_results_fit_a_390_px_screen(driven):
    """At 390 px the results page was 567 px wide (the county table outside a scrolling box, the grid's 1fr column
    growing to it) and the charts' labels were scaled to about 5 px."""
    m = driven[0]["resultsNarrow"]
    assert m["docWidth"] <= 390 and m["cards"] == []
    assert len(m["charts"]) >= 3 and all(c["tickPx"] >= 10 for c in m["charts"]), m["charts"]
    assert all(c["viewBoxWidth"] < 640 for c in m["charts"])  # drawn in their own width
    assert [t["id"] for t in m["tables"]] == ["county-table"] and m["tables"][0]["lines"] == 1


def test_the_run_type_select_shows_its_longest_option(driven):
    fit = driven[0]["runKindFit"]
    assert fit["visible"] and fit["selectWidth"] >= fit["textWidth"] + 20, fit  # text, padding and the arrow


def test_a_refused_run_resets_the_progress_block(driven):
    r = driven[0]["refusedRun"]
    assert r["before"] == {"pct": "100 %", "status": "已完成"}
    assert r["error"].startswith("运行请求被拒绝") or r["error"].startswith("出错")
    assert (r["pct"], r["status"], r["eta"], r["progress"]) == ("0 %", "—", "—", 0) and r["startEnabled"]


def test_chart_descriptions_are_in_the_pages_language(driven):
    """Each chart's <desc> (what a screen reader reads) is Chinese on the Chinese page, with formatted numbers; the
    bar chart's lists each county's ± 2 s.e. and baseline, as docs/dashboard.md says."""
    shown, _, _ = driven
    d = shown["chartDescs"]
    run = shown["runs"][0]
    assert d["chart-county"].startswith("误差线：± 2 个蒙特卡洛标准误；")
    for r in run["countyRows"]:
        assert f"{r['name']}：{_js_fmt(r['loss'], 0)} ± {_js_fmt(2 * r['se'], 0)}，基准 {_js_fmt(r['base'], 0)}" in d["chart-county"]
    assert d["chart-exceed"].startswith("P(损失 > ") and "loss" not in d["chart-exceed"]
    assert d["chart-fan"].startswith("各年：中位数（5%–95% 分位）；") and "，基准 " in d["chart-fan"]
    for text in d.values():
        assert not re.search(r"\d\.\d{4,}", text), text  # no 16-digit numbers


def test_stress_accounts_show_the_end_stock_and_loss_value_errors(driven):
    shown, c, _ = driven
    main = shown["runs"][0]
    if main["kind"] != "stress":
        pytest.skip("no stress test endpoint")
    rows = _all(c, f"/v1/stress-tests/{main['resultId']}/accounts", key="rows", scenario=SCENARIO)
    by_key = {"/".join(str(r[lv] or "") for lv in LEVELS[:LEVELS.index(r["level"]) + 1]): r
              for r in rows if r["level"] in LEVELS}
    assert "期末储量标准误（tCO₂e）" in shown["accountsHeader"] and "损失价值标准误上界（元）" in shown["accountsHeader"]
    assert len(shown["stressAccounts"]) == len(by_key)
    for row in shown["stressAccounts"]:
        api = by_key[row["key"]]
        for col in ("stock_end_tco2e_mc_se", "loss_value_cny_mc_se_max"):
            assert float(row["cells"][col]["value"]) == api[col] and row["cells"][col]["text"] == _js_fmt(api[col], 0)
