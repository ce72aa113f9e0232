"""The /ui dashboard in a real browser (headless Debian Chromium driven by playwright-core), against a
real ``carbon-risk serve --demo`` process: sign in with the bureau demo key, choose the demo portfolio,
cancel a big run, run a small one to 100 %, then check that the charts, the county losses table, the
KPIs, the exceedance points and the five-level accounts show exactly the numbers the API returns for
that result; drill into the accounts tree; download a report; switch language.

A screenshot of each page is saved under ``tests/browser/artifacts/<time>/`` (git-ignored) and the
paths are printed. Skips, saying why, when Chromium or Node is missing (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from api.bootstrap import DEMO_PORTFOLIO_NAME, demo_key
from tests.browser.conftest import ARTIFACTS, CHROMIUM

YEARS, PATHS, SEED = 3, 96, 7  # 3 chunks of 32 paths: progress has steps to show


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
           "--chromium", CHROMIUM]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=browser_driver.parent)
    assert r.returncode == 0, f"driver failed ({r.returncode}):\n{r.stderr[-3000:]}"
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert lines, f"driver printed nothing:\n{r.stderr[-3000:]}"
    shown = json.loads(lines[-1])
    for path in shown["screenshots"]:
        print(f"dashboard screenshot: {path}")
    assert shown.get("error") is None, f"{shown['error']}\n--- driver log ---\n{r.stderr[-3000:]}"
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
    assert [e for e in shown["consoleErrors"] if "401" not in e] == []


def test_progress_cancel_and_run_to_completion(driven):
    shown, c, _ = driven
    cancelled = c.get(f"/v1/jobs/{shown['cancelledJob']}").json()
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
    assert shown["cancelledStatusText"] == "已取消"
    seen = shown["progressSeen"]
    assert seen[-1]["status"] == "succeeded" and seen[-1]["value"] == 1 and shown["finalPct"] == "100 %"
    values = [s["value"] for s in seen]
    assert values == sorted(values), "the progress bar went backwards"
    assert any(s["status"] in ("queued", "running") for s in seen), "never saw the job before it finished"
    job = c.get(f"/v1/jobs/{shown['jobId']}").json()
    assert job["status"] == "succeeded" and job["result_id"] == shown["resultId"]
    assert job["request"]["paths"] == PATHS and job["request"]["years"] == YEARS and job["request"]["seed"] == SEED
    assert shown["resultTabSelected"] == "true"


def test_results_show_the_api_numbers(driven):
    shown, c, _ = driven
    sim = c.get(f"/v1/simulations/{shown['resultId']}").json()
    hz = sim["horizon"]
    county = {r["group"].split("/")[-1]: r for r in hz if r["level"] == "county" and r["metric"] == "cumulative_loss_tco2e"}
    port = {r["metric"]: r for r in hz if r["level"] == "portfolio"}
    rows = shown["countyRows"]
    assert {r["county"] for r in rows} == set(county)
    pf = c.get(f"/v1/portfolios/{sim['portfolio_id']}", params={"limit": 1}).json()
    stock0 = {r["group"].split("/")[-1]: r["stock_tco2e"] for r in sim["initial_stock"] if r["level"] == "county"}
    for r in rows:
        api = county[r["county"]]
        assert r["loss_tco2e"] == pytest.approx(api["mean"], rel=1e-12)
        assert r["mc_se"] == pytest.approx(api["mc_se"], rel=1e-12)
        assert r["loss_tco2e_text"] == f"{api['mean']:,.0f}"
        area = pf["summary"]["counties"][r["county"]]["area_ha"]
        assert r["area_ha"] == pytest.approx(area, rel=1e-9)
        assert r["loss_per_ha_yr"] == pytest.approx(api["mean"] / area / YEARS, rel=1e-9)
        assert r["share_of_stock"] == pytest.approx(api["mean"] / stock0[r["county"]], rel=1e-12)
    # sorted by loss, and the counties add up to the portfolio (the table misses no county)
    losses = [r["loss_tco2e"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    assert sum(losses) == pytest.approx(port["cumulative_loss_tco2e"]["mean"], rel=1e-9)
    assert [(b["label"], b["value"]) for b in shown["bars"]] == [(r["name"], r["loss_tco2e"]) for r in rows]
    kpi = {k["key"]: k["value"] for k in shown["kpis"]}
    assert kpi["kpi_stock_end"] == pytest.approx(port["stock_end_tco2e"]["mean"], rel=1e-12)
    assert kpi["kpi_sink"] == pytest.approx(port["cumulative_sink_tco2e"]["mean"], rel=1e-12)
    assert kpi["kpi_loss"] == pytest.approx(port["cumulative_loss_tco2e"]["mean"], rel=1e-12)
    assert kpi["kpi_loss_p99"] == pytest.approx(port["cumulative_loss_tco2e"]["p99"], rel=1e-12)
    # the exceedance curve: P(loss > q-quantile) = 1 - q at the API's percentiles
    loss = port["cumulative_loss_tco2e"]
    want = sorted((round(1 - q, 2), loss[k]) for k, q in
                  (("p01", .01), ("p05", .05), ("p10", .1), ("p50", .5), ("p90", .9), ("p95", .95), ("p99", .99)))
    got = sorted((d["prob"], d["loss"]) for d in shown["exceedanceDots"])
    assert [g[0] for g in got] == [w[0] for w in want]
    assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-12)
    assert shown["fanBands"] == 2 and shown["fanMedian"] == 1
    assert shown["riskColouredDots"] == 5000 and shown["riskLegendItems"] == 5


def test_accounts_drill_down(driven):
    shown, c, _ = driven
    rows = _all(c, f"/v1/simulations/{shown['resultId']}/accounts", key="rows")
    five = [r for r in rows if r["level"] in ("province", "city", "county", "township", "village")]
    assert shown["accountsRowsTotal"] == len(five)
    n_counties = sum(r["level"] == "county" for r in rows)
    assert shown["accountsVisibleInitially"] == ["province", "city"] + ["county"] * n_counties
    assert shown["accountsAfterCollapse"] == shown["accountsVisibleInitially"]
    county_name = shown["accountsFirstCounty"].split("/")[-1]
    api_county = next(r for r in rows if r["level"] == "county" and r["county"] == county_name)
    assert shown["accountsCountyStock"] == pytest.approx(api_county["stock_bef_tco2e"], rel=1e-12)
    n_twp = sum(r["level"] == "township" and r["county"] == county_name for r in rows)
    assert shown["accountsAfterCounty"].count("township") == n_twp
    twp_name = shown["accountsFirstTownship"].split("/")[-1]
    villages = {r["village"]: r["stock_bef_tco2e"] for r in rows
                if r["level"] == "village" and r["county"] == county_name and r["township"] == twp_name}
    got = {v["key"].split("/")[-1]: v["stock"] for v in shown["accountsVillageRows"]}
    assert got.keys() == villages.keys() and len(got) > 0
    for name, stock in villages.items():
        assert got[name] == pytest.approx(stock, rel=1e-12)
    assert shown["accountsAfterTownship"].count("village") == len(villages)


def test_report_download_and_language(driven):
    shown, c, out_dir = driven
    assert "result-json" in shown["reportButtons"] and "accounts-json" in shown["reportButtons"]
    got = json.loads(Path(shown["downloadFile"]).read_text())
    assert got == c.get(f"/v1/simulations/{shown['resultId']}").json()
    assert shown["downloadName"] == f"{shown['resultId']}.json"
    assert shown["langAfterToggle"] == "en" and shown["langBack"] == "zh-CN"
    assert shown["tabsEnglish"] == ["Portfolio & map", "Stress test", "Results", "Five-level accounts", "Reports"]
    assert shown["countyCaptionEnglish"] == "Losses by county"
    assert "Longquan (龙泉市)" in shown["countyNamesEnglish"]
    assert shown["accountsHeaderEnglish"][0] == "Name"
    assert len(shown["screenshots"]) >= 10
    for p in shown["screenshots"]:
        assert Path(p).stat().st_size > 10_000 and Path(p).parent == out_dir
