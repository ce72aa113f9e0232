// Drives the /ui dashboard through a whole stress test with playwright-core and Debian's Chromium,
// saves a screenshot of each page, and prints what the page showed as one JSON document on stdout
// (the last line). tests/browser/test_dashboard.py runs it and checks those numbers against the API.
//
//   node drive_dashboard.mjs --base http://127.0.0.1:PORT --key cre_... --out DIR
//        [--portfolio "Lishui demo portfolio"] [--years 3] [--paths 32] [--seed 7] [--chromium /usr/bin/chromium]

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

function args() {
  const a = { years: "3", paths: "32", seed: "7", chromium: "/usr/bin/chromium", portfolio: "Lishui demo portfolio",
    cancelPaths: "4096" };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, "")] = v[i + 1];
  for (const k of ["base", "key", "out"]) if (!a[k]) throw new Error(`--${k} is required`);
  return a;
}

const opt = args();
fs.mkdirSync(opt.out, { recursive: true });
const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "cre-chromium-"));
const out = { screenshots: [], consoleErrors: [], failedRequests: [], progressSeen: [] };
const log = (...m) => process.stderr.write(`[drive] ${m.join(" ")}\n`);

const ctx = await chromium.launchPersistentContext(userDir, {
  executablePath: opt.chromium,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 1000 },
  acceptDownloads: true,
  locale: "zh-CN",
});
const page = ctx.pages()[0] || await ctx.newPage();
page.setDefaultTimeout(60000);
page.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(m.text()); });
page.on("pageerror", (e) => out.consoleErrors.push(String(e)));
page.on("requestfailed", (r) => out.failedRequests.push(`${r.method()} ${r.url()} ${r.failure()?.errorText}`));
page.on("response", (r) => {
  // anything outside the server under test would be a CDN or tile server: record it
  if (!r.url().startsWith(opt.base) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) {
    out.failedRequests.push(`external ${r.url()}`);
  }
});

async function shot(name) {
  const file = path.join(opt.out, `${String(out.screenshots.length + 1).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  out.screenshots.push(file);
  log("screenshot", file);
}

const text = (sel) => page.locator(sel).innerText();

try {
  // 1. sign in
  await page.goto(`${opt.base}/ui`);
  await page.waitForSelector('body[data-ready="true"]');
  out.initialLang = await page.getAttribute("html", "lang");
  out.signinHeading = await text("#signin-heading");
  await shot("signin");
  await page.getByLabel("API 密钥").fill("cre_000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwro");
  await page.getByRole("button", { name: "登录" }).click();
  await page.waitForFunction(() => /401/.test(document.querySelector("#signin-error").textContent));
  out.badKeyError = await text("#signin-error");
  await page.getByLabel("API 密钥").fill(opt.key);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#app-view:not([hidden])");
  out.keyInSessionStorage = await page.evaluate(() => sessionStorage.getItem("cre.apiKey"));

  // 2. choose the portfolio; wait for every parcel on the map
  const label = await page.locator("#portfolio-select option", { hasText: opt.portfolio }).first().innerText();
  await page.getByLabel("选择资产组合").selectOption({ label });
  await page.waitForFunction((name) => {
    const s = window.__dashboard;
    return s.portfolio && s.portfolio.name === name && s.parcels.length === s.portfolio.n_parcels &&
      document.querySelectorAll("#map circle.parcel").length === s.parcels.length;
  }, opt.portfolio);
  out.portfolioId = await page.evaluate(() => window.__dashboard.portfolio.id);
  out.mapDots = await page.locator("#map circle.parcel").count();
  out.hulls = await page.locator("#map polygon.hull").count();
  out.legendSpecies = await page.locator("#map-legend li").count();
  out.summaryParcels = await text("#sum-parcels");
  out.riskRadioDisabledBeforeRun = await page.locator("#colour-risk").isDisabled();
  // zoom with the keyboard and buttons, then reset
  const vb0 = await page.getAttribute("#map", "viewBox");
  await page.locator("#map").focus();
  await page.keyboard.press("+");
  await page.keyboard.press("ArrowRight");
  out.viewBoxChangedByKeys = (await page.getAttribute("#map", "viewBox")) !== vb0;
  await page.getByRole("button", { name: "复位" }).click();
  out.viewBoxReset = (await page.getAttribute("#map", "viewBox")) === vb0;
  await shot("portfolio-map-species");

  // 3. start a run and cancel it (a big one), then a small one that runs to 100 %
  await page.getByRole("tab", { name: "压力测试" }).click();
  out.runModeNote = await text("#run-mode-note");
  await page.getByLabel("模拟年数").fill(opt.years);
  await page.getByLabel("蒙特卡洛路径数").fill(opt.cancelPaths);
  await page.getByLabel("随机种子").fill(opt.seed);
  await page.getByRole("button", { name: "开始运行" }).click();
  await page.waitForFunction(() => ["running", "queued"].includes(document.querySelector("#run-status").dataset.status));
  await page.getByRole("button", { name: "取消" }).click();
  await page.waitForFunction(() => document.querySelector("#run-status").dataset.status === "cancelled", null, { timeout: 60000 });
  out.cancelledJob = await page.evaluate(() => window.__dashboard.job.id);
  out.cancelledStatusText = await text("#run-status");
  await shot("run-cancelled");

  await page.getByLabel("蒙特卡洛路径数").fill(opt.paths);
  await page.getByRole("button", { name: "开始运行" }).click();
  const t0 = Date.now();
  for (;;) {
    const s = await page.evaluate(() => ({
      status: document.querySelector("#run-status").dataset.status,
      value: Number(document.querySelector("#run-progress").value),
      pct: document.querySelector("#run-pct").textContent,
      eta: document.querySelector("#run-eta").textContent,
      job: window.__dashboard.job && window.__dashboard.job.id,
    }));
    if (s.job && s.job !== out.cancelledJob) {
      const last = out.progressSeen[out.progressSeen.length - 1];
      if (!last || last.value !== s.value || last.status !== s.status) out.progressSeen.push(s);
      if (s.status === "succeeded" || s.status === "failed" || s.status === "cancelled") break;
    }
    if (Date.now() - t0 > 60000) throw new Error("the run did not finish within 60 s");
    await page.waitForTimeout(50);
  }
  out.jobId = await page.evaluate(() => window.__dashboard.job.id);
  out.finalPct = await text("#run-pct");
  await page.waitForSelector("#results:not([hidden])");
  out.resultTabSelected = await page.getAttribute("#tab-results", "aria-selected");

  // 4. results: charts and the county table
  out.resultId = await text("#result-id");
  out.kpis = await page.$$eval("#kpis .kpi", (ks) => ks.map((k) => ({ key: k.dataset.kpi, value: Number(k.dataset.value), text: k.querySelector(".kpi-value").textContent })));
  out.bars = await page.$$eval("#chart-county rect.bar", (bs) => bs.map((b) => ({ label: b.dataset.label, value: Number(b.dataset.value) })));
  out.exceedanceDots = await page.$$eval("#chart-exceed circle.dot", (ds) => ds.map((d) => ({ prob: Number(d.dataset.prob), loss: Number(d.dataset.loss) })));
  out.fanBands = await page.locator("#chart-fan polygon.band").count();
  out.fanMedian = await page.locator("#chart-fan polyline.median").count();
  out.countyRows = await page.$$eval("#county-table tbody tr", (rs) => rs.map((r) => {
    const o = { county: r.dataset.county, name: r.querySelector("th").textContent };
    r.querySelectorAll("td").forEach((td) => { o[td.dataset.col] = td.dataset.value === "" ? null : Number(td.dataset.value); o[`${td.dataset.col}_text`] = td.textContent; });
    return o;
  }));
  await shot("results");

  // risk colouring on the map now that a run exists
  await page.getByRole("tab", { name: "资产组合与地图" }).click();
  await page.getByLabel("风险（年均预期损失 tCO₂e/公顷）").check();
  out.riskColouredDots = await page.$$eval("#map circle.parcel", (cs) => cs.filter((c) => c.dataset.risk !== "" && c.dataset.risk !== undefined).length);
  out.riskLegendItems = await page.locator("#map-legend li").count();
  await shot("portfolio-map-risk");

  await page.getByRole("tab", { name: "压力测试" }).click();
  await shot("run-finished");

  // 5. accounts: drill down province -> city -> county -> township -> village
  await page.getByRole("tab", { name: "五级碳账户" }).click();
  await page.waitForSelector("#accounts-table tbody tr");
  const visible = () => page.$$eval("#accounts-table tbody tr", (rs) => rs.filter((r) => !r.hidden).map((r) => r.dataset.level));
  out.accountsRowsTotal = await page.locator("#accounts-table tbody tr").count();
  out.accountsVisibleInitially = await visible();
  const county = page.locator('#accounts-table tbody tr[data-level="county"]').first();
  out.accountsFirstCounty = await county.getAttribute("data-key");
  await county.locator("button.toggle").click();
  out.accountsAfterCounty = await visible();
  const twp = page.locator(`#accounts-table tbody tr[data-level="township"][data-parent="${out.accountsFirstCounty}"]`).first();
  out.accountsFirstTownship = await twp.getAttribute("data-key");
  await twp.locator("button.toggle").focus();
  await page.keyboard.press("Enter");  // keyboard works too
  out.accountsAfterTownship = await visible();
  out.accountsVillageRows = await page.$$eval(`#accounts-table tbody tr[data-level="village"]`, (rs, parent) =>
    rs.filter((r) => !r.hidden && r.dataset.parent === parent).map((r) => ({ key: r.dataset.key,
      stock: Number(r.querySelector('td[data-col="stock_bef_tco2e"]').dataset.value) })), out.accountsFirstTownship);
  out.accountsCountyStock = Number(await county.locator('td[data-col="stock_bef_tco2e"]').getAttribute("data-value"));
  await shot("accounts");
  await county.locator("button.toggle").click();
  out.accountsAfterCollapse = await visible();

  // 6. reports
  await page.getByRole("tab", { name: "报告下载" }).click();
  out.reportButtons = await page.$$eval("#report-list button", (bs) => bs.map((b) => b.dataset.report));
  const [dl] = await Promise.all([page.waitForEvent("download"), page.locator('#report-list button[data-report="result-json"]').click()]);
  const dlFile = path.join(opt.out, "download-result.json");
  await dl.saveAs(dlFile);
  out.downloadFile = dlFile;
  out.downloadName = dl.suggestedFilename();
  await shot("reports");

  // 7. language: English, every page again
  await page.getByRole("button", { name: "切换到英文界面" }).click();
  out.langAfterToggle = await page.getAttribute("html", "lang");
  out.tabsEnglish = await page.$$eval("[role=tab]", (ts) => ts.map((t) => t.textContent));
  await page.getByRole("tab", { name: "Results" }).click();
  out.countyCaptionEnglish = await text("#county-table caption");
  out.countyNamesEnglish = await page.$$eval("#county-table tbody th", (ths) => ths.map((t) => t.textContent));
  await shot("results-english");
  await page.getByRole("tab", { name: "Five-level accounts" }).click();
  out.accountsHeaderEnglish = await page.$$eval("#accounts-table thead th", (ths) => ths.map((t) => t.textContent));
  await shot("accounts-english");
  await page.getByRole("tab", { name: "Portfolio & map" }).click();
  await shot("portfolio-english");
  await page.getByRole("button", { name: "Switch to the Chinese interface" }).click();
  out.langBack = await page.getAttribute("html", "lang");
} catch (e) {
  out.error = String(e && e.stack || e);
  try { await shot("failure"); } catch { /* ignore */ }
} finally {
  await ctx.close();
  fs.rmSync(userDir, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(out) + "\n");
