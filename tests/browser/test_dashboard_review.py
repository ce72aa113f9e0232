"""What a user-flow review of the dashboard found, in a real browser (``drive_review.mjs``) against a real
``carbon-risk serve --demo``: each role lands on its own page (bank: loan valuation, insurer: quote, bureau:
portfolio and map); an upload missing ``area_ha`` reads in Chinese, without "row null"; stress scenarios and
climate pathways are listed by their Chinese titles and a stress test's results name its scenario so; a reload
while a run goes on resumes it (progress, Cancel, and at the end its results)."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from api.bootstrap import demo_key
from models.demo import demo_portfolio_path
from tests.browser.conftest import ARTIFACTS, CHROMIUM, run_driver

SCENARIO = "super_typhoon"
SCENARIO_ZH = "第 1 年超强台风经过青田（强度 2.5），风暴强度 ×1.3"


@pytest.fixture(scope="module")
def shown(browser_driver, demo_server, tmp_path_factory):
    bad = tmp_path_factory.mktemp("review") / "no_area.csv"
    pd.read_csv(demo_portfolio_path(), nrows=5).drop(columns=["area_ha"]).to_csv(bad, index=False)
    out_dir = ARTIFACTS / (time.strftime("%Y%m%d-%H%M%S") + "-review")
    cmd = ["node", str(browser_driver.parent / "drive_review.mjs"), "--base", demo_server.base,
           "--bank-key", demo_key("bank")[1], "--insurer-key", demo_key("insurer")[1],
           "--bureau-key", demo_key("bureau")[1], "--out", str(out_dir), "--bad-csv", str(bad),
           "--scenario", SCENARIO, "--sim-paths", "2048", "--sim-years", "30", "--chromium", CHROMIUM]
    d = run_driver(cmd, 420, "review")
    client = httpx.Client(base_url=demo_server.base, headers={"Authorization": f"Bearer {demo_key('bureau')[1]}"},
                          timeout=60)
    try:
        yield d, client
    finally:
        client.close()


def test_each_role_lands_on_its_own_page(shown):
    d, _ = shown
    assert d["bankLanding"]["selected"] == ["tab-loan"] and d["bankLanding"]["shown"] == ["page-loan"]
    assert d["insurerLanding"]["selected"] == ["tab-quote"] and d["insurerLanding"]["shown"] == ["page-quote"]
    assert d["bureauLanding"]["selected"] == ["tab-portfolio"] and d["bureauLanding"]["shown"] == ["page-portfolio"]


def test_an_upload_missing_a_column_reads_in_chinese(shown):
    d, _ = shown
    st = d["uploadStatus"]
    assert st.startswith("上传被拒绝：文件有 1 个问题")
    assert "row" not in st and "null" not in st and "problem(s)" not in st
    assert d["uploadWhere"] == ["列 area_ha"]
    # the server's reason is kept, on its own line, marked as English
    assert d["uploadServer"] == [{"text": "required column is missing", "lang": "en"}]


def test_scenarios_and_pathways_by_their_chinese_titles(shown):
    d, c = shown
    opts = {o["value"]: o["text"] for o in d["scenarioOptions"]}
    library = {s["id"].removeprefix("stress.") for s in c.get("/v1/scenarios", params={"limit": 500}).json()["items"]
               if s["kind"] == "stress"}
    assert set(opts) == library and opts[SCENARIO] == SCENARIO_ZH
    assert all(not any(ch.isascii() and ch.isalpha() for ch in text.replace("NGFS", "")) for text in opts.values()), opts
    assert {o["value"] for o in d["pathwayOptions"]} == {"current", "warming"}
    assert d["stressSettings"].startswith(SCENARIO_ZH + " · ")


def test_a_reload_resumes_a_stress_test_to_its_results(shown):
    d, c = shown
    job = c.get(f"/v1/jobs/{d['stressJob']}").json()
    assert job["kind"] == "stress_test" and job["status"] == "succeeded"
    assert d["stressStored"] == d["stressJob"]
    after = d["stressAfterReload"]
    assert after["job"] == d["stressJob"] and after["status"] in ("queued", "running")
    assert after["startDisabled"] is True and after["cancelDisabled"] is False and after["runTab"] is True
    assert d["stressJob"] in after["resumed"]
    assert after["form"] == {"scenario": SCENARIO, "years": "3", "paths": "64", "seed": "7"}
    assert d["stressEnd"]["status"] == "succeeded" and d["stressEnd"]["pct"] == "100 %"
    assert d["stressEnd"]["startDisabled"] is False and d["stressEnd"]["resumed"] is None
    assert d["stressResultId"] == job["result_id"] and d["resultsTab"] == "true"


def test_a_reload_resumes_a_big_simulation_with_its_progress_and_cancel(shown):
    d, c = shown
    after = d["simAfterReload"]
    assert after["job"] == d["simJob"] and after["status"] == "running" and after["runTab"] is True
    assert after["startDisabled"] is True and after["cancelDisabled"] is False
    assert after["form"]["years"] == "30" and after["form"]["paths"] == "2048"
    # the progress goes on after the reload (or the run ended meanwhile)
    assert d["simProgressing"]["value"] > after["value"] or d["simProgressing"]["status"] != "running"
    job = c.get(f"/v1/jobs/{d['simJob']}").json()
    assert job["kind"] == "simulation"
    if d["simEnd"]["status"] == "cancelled":  # cancelled from the reloaded page
        assert job["status"] == "cancelled" and job["cancel_requested"] is True
    else:  # it ended before the click
        assert job["status"] == d["simEnd"]["status"]
    # nothing failed but what a reload or sign-out aborts
    assert [f for f in d["failedRequests"] if "ERR_ABORTED" not in f] == []
