// Drives the /ui dashboard through a whole stress test with playwright-core and Debian's Chromium,
// saves a screenshot of each page, and prints what the page showed as one JSON document on stdout
// (the last line). tests/browser/test_dashboard.py runs it and checks those numbers against the API.
//
//   node drive_dashboard.mjs --base http://127.0.0.1:PORT --key cre_... --out DIR
//        [--portfolio "Lishui demo portfolio"] [--years 3] [--paths 32] [--seed 7] [--scenario super_typhoon]
//        [--cancel-paths 4096] [--acc-paths 500] [--acc-seed 11] [--acc-cancel-paths 4000]
//        [--chromium /usr/bin/chromium]
//
// Before any run, the portfolio's accounts: at once (the page's default paths), then with --acc-paths, more
// than the server answers in a request (its GET is refused: the page says so and runs POST /v1/accounts as a
// job, with progress), then a job with --acc-cancel-paths cancelled. That section records its own error
// (accPortfolio.error) and the rest of the run goes on. At the end, a simulation's accounts GET is refused on
// its way to the page (as a server with a smaller CRE_SYNC_MAX_CELLS would): the page runs them as a job with
// the run's paths and seed.
//
// The main run is a stress test when the API has /v1/stress-tests (then a simulation follows, for the
// distribution charts, and its accounts with their parameter sds), else a simulation. Two small simulations
// follow with the API's result rewritten on its way to the page: a parameter sd clipped at 0, and a run
// without parameter uncertainty (the engine's zeros then mean "off").

import { measureNarrow, openBrowser, parseArgs } from "./browser.mjs";
import path from "node:path";

const opt = parseArgs({ years: "3", paths: "32", seed: "7", portfolio: "Lishui demo portfolio",
    "cancel-paths": "4096", scenario: "super_typhoon", "acc-paths": "500", "acc-seed": "11", "acc-cancel-paths": "4000" },
  ["base", "key", "out"]);
const out = { screenshots: [], consoleErrors: [], failedRequests: [] };
const log = (...m) => process.stderr.write(`[drive] ${m.join(" ")}\n`);

const { page, shot, close } = await openBrowser(opt, out, log);
let rewrite = null;  // (result) => void: rewrites a job's result on its way to the page
await page.route("**/v1/jobs/*/result", async (route) => {
  if (!rewrite) return route.fallback();
  const resp = await route.fetch();
  const body = await resp.json();
  rewrite(body);
  return route.fulfill({ response: resp, json: body });
});

let refuseSimAccounts = null;  // a problem document: the simulation accounts' GET answers it (422) instead
await page.route("**/v1/simulations/*/accounts*", async (route) => {
  if (!refuseSimAccounts) return route.fallback();
  return route.fulfill({ status: 422, contentType: "application/problem+json",
    body: JSON.stringify({ ...refuseSimAccounts, instance: new URL(route.request().url()).pathname }) });
});

const text = (sel) => page.locator(sel).innerText();
const run = page.locator("#page-run");  // the run form (other pages have paths and seed fields too)
const accPage = page.locator("#page-accounts");

/** Every row of the accounts table: its key, level, name and each cell's exact value, text and psd mark. */
const accountsTable = () => page.$$eval("#accounts-table tbody tr", (rs) => rs.map((r) => ({
  key: r.dataset.key, level: r.dataset.level, name: r.querySelector(".acc-name").textContent,
  cells: Object.fromEntries([...r.querySelectorAll("td[data-col]")].map((td) => [td.dataset.col,
    { value: td.dataset.value, text: td.textContent, resolved: td.dataset.psdResolved ?? null }])) })));
const accountsHeader = () => page.$$eval("#accounts-table thead th", (ths) => ths.map((t) => t.textContent));

/** Watch the accounts page until its job ends and the accounts are drawn (or the job ends without them). */
async function watchAccountsJob(label, before, timeoutMs = 90000) {
  const seen = [];
  const t0 = Date.now();
  for (;;) {
    const s = await page.evaluate(() => {
      const st = document.querySelector("#accjob-status");
      const d = window.__dashboard;
      return { job: st.dataset.job || null, status: st.dataset.status || null, shown: !document.querySelector("#accjob").hidden,
        value: Number(document.querySelector("#accjob-progress").value), pct: document.querySelector("#accjob-pct").textContent,
        eta: document.querySelector("#accjob-eta").textContent, cancelVisible: !document.querySelector("#acc-cancel").hidden,
        rows: document.querySelectorAll("#accounts-table tbody tr").length, loaded: !!d.accounts, loading: d.accLoading };
    });
    if (s.job && s.job !== before) {
      const last = seen[seen.length - 1];
      if (!last || last.status !== s.status || last.value !== s.value || last.loaded !== s.loaded) seen.push(s);
      if (s.status === "succeeded" && s.loaded && s.rows > 0) break;
      if (["failed", "cancelled"].includes(s.status) && !s.loading) break;
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`${label}: the accounts job did not end within ${timeoutMs / 1000} s (${JSON.stringify(s)})`);
    await page.waitForTimeout(50);
  }
  return seen;
}

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

  // 2b. the portfolio's accounts before any run: at once with the page's default paths, then with more paths
  // than one request computes (the GET is refused; the page runs them as a job), then a job cancelled
  out.accPortfolio = {};
  const A = out.accPortfolio;
  try {
    await page.getByRole("tab", { name: "五级碳账户" }).click();
    await page.waitForFunction(() => window.__dashboard.accounts && document.querySelectorAll("#accounts-table tbody tr").length > 0);
    A.syncFor = await page.evaluate(() => window.__dashboard.accountsFor);
    A.syncHeader = await accountsHeader();
    A.syncMeta = await text("#acc-meta");
    A.syncNote = await text("#acc-note");
    A.syncJobShown = await page.locator("#accjob").isVisible();
    A.sourceShown = await page.locator("#acc-source").isVisible();
    A.syncRows = await accountsTable();
    await shot("accounts-portfolio-at-once");

    await accPage.getByLabel("蒙特卡洛路径数").fill(opt["acc-paths"]);
    await accPage.getByLabel("随机种子").fill(opt["acc-seed"]);
    await accPage.getByRole("button", { name: "计算碳账户" }).click();
    A.progressSeen = await watchAccountsJob("accounts", null);
    A.jobId = await page.getAttribute("#accjob-status", "data-job");
    A.refusal = await text("#acc-note");
    A.accountsFor = await page.evaluate(() => window.__dashboard.accountsFor);
    A.accountsId = await page.getAttribute("#acc-meta", "data-id");
    A.meta = await text("#acc-meta");
    A.finalPct = await text("#accjob-pct");
    A.statusText = await text("#accjob-status");
    A.error = null;
    A.pageError = await text("#acc-error");
    A.header = await accountsHeader();
    A.rows = await accountsTable();
    A.psdNote = await page.locator("#acc-psd-note").isVisible() ? await text("#acc-psd-note") : null;
    A.cancelHiddenAfter = await page.locator("#acc-cancel").isHidden();
    A.computeEnabledAfter = await page.locator("#acc-compute").isEnabled();
    await shot("accounts-portfolio-job");

    // a larger job, cancelled while it runs
    await accPage.getByLabel("蒙特卡洛路径数").fill(opt["acc-cancel-paths"]);
    await accPage.getByRole("button", { name: "计算碳账户" }).click();
    await page.waitForFunction((j) => {
      const st = document.querySelector("#accjob-status");
      return st.dataset.job && st.dataset.job !== j && ["queued", "running"].includes(st.dataset.status);
    }, A.jobId);
    A.cancelJob = await page.getAttribute("#accjob-status", "data-job");
    A.computeDisabledWhileRunning = await page.locator("#acc-compute").isDisabled();
    await page.locator("#acc-cancel").click();
    A.cancelSeen = await watchAccountsJob("cancelled accounts", A.jobId);
    A.cancelStatusText = await text("#accjob-status");
    A.cancelMessage = await text("#acc-error");
    A.cancelRows = await page.locator("#accounts-table tbody tr").count();
    await shot("accounts-portfolio-cancelled");

    // the first accounts again: the kept run is shown, not computed a second time
    await accPage.getByLabel("蒙特卡洛路径数").fill(opt["acc-paths"]);
    await accPage.getByRole("button", { name: "计算碳账户" }).click();
    await page.waitForFunction((id) => document.querySelector("#acc-meta").dataset.id === id
      && document.querySelectorAll("#accounts-table tbody tr").length > 0, A.accountsId);
    A.reusedId = await page.getAttribute("#acc-meta", "data-id");
    A.reusedRows = await accountsTable();
  } catch (e) {
    A.error = String(e && e.stack || e);
    try { await shot("accounts-failure"); } catch { /* ignore */ }
  }

  // 3. start a big simulation and cancel it (a simulation job stops at its next chunk of paths)
  await page.getByRole("tab", { name: "压力测试" }).click();
  out.runKinds = await page.$$eval("#run-kind option", (os) => os.map((o) => o.value));
  const kindVisible = await page.locator("#run-kind-field").isVisible();
  out.mainKind = out.runKinds[0] || "simulation";
  const chooseKind = async (kind) => {
    if (kindVisible) {
      await page.getByLabel("运行类型").selectOption(kind);
      await page.waitForFunction((k) => window.__dashboard.runner.kind === k && document.querySelector("#run-scenario").options.length > 0, kind);
    }
  };
  await chooseKind("simulation");
  out.runModeNote = await text("#run-mode-note");
  await run.getByLabel("模拟年数").fill(opt.years);
  await run.getByLabel("蒙特卡洛路径数").fill(opt["cancel-paths"]);
  await run.getByLabel("随机种子").fill(opt.seed);
  await page.getByRole("button", { name: "开始运行" }).click();
  await page.waitForFunction(() => ["running", "queued"].includes(document.querySelector("#run-status").dataset.status));
  await page.getByRole("button", { name: "取消" }).click();
  await page.waitForFunction(() => document.querySelector("#run-status").dataset.status === "cancelled", null, { timeout: 60000 });
  out.cancelledJob = await page.evaluate(() => window.__dashboard.job.id);
  out.cancelledStatusText = await text("#run-status");
  await shot("run-cancelled");

  // a run to 100 %, watching the progress bar
  async function runToEnd(kind, option, paths = opt.paths) {
    await page.getByRole("tab", { name: "压力测试" }).click();
    await chooseKind(kind);
    if (option) await page.locator("#run-scenario").selectOption(option);
    const r = { kind, option: await page.locator("#run-scenario").inputValue(), progressSeen: [] };
    await run.getByLabel("蒙特卡洛路径数").fill(paths);
    const before = await page.evaluate(() => window.__dashboard.job && window.__dashboard.job.id);
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
      if (s.job && s.job !== before) {
        const last = r.progressSeen[r.progressSeen.length - 1];
        if (!last || last.value !== s.value || last.status !== s.status) r.progressSeen.push(s);
        if (["succeeded", "failed", "cancelled"].includes(s.status)) break;
      }
      if (Date.now() - t0 > 180000) throw new Error(`the ${kind} run did not finish within 180 s`);
      await page.waitForTimeout(50);
    }
    r.jobId = await page.evaluate(() => window.__dashboard.job.id);
    r.finalPct = await text("#run-pct");
    r.error = await text("#run-error");
    await page.waitForFunction((j) => {
      const d = window.__dashboard;
      return d.job.id === j && d.job.result_id && d.view && d.view.id === d.job.result_id &&
        !document.querySelector("#results").hidden;
    }, r.jobId);
    r.resultTabSelected = await page.getAttribute("#tab-results", "aria-selected");
    r.resultId = await text("#result-id");
    r.kpis = await page.$$eval("#kpis .kpi", (ks) => ks.map((k) => ({ key: k.dataset.kpi, value: Number(k.dataset.value), text: k.querySelector(".kpi-value").textContent,
      err: k.dataset.err === undefined ? null : JSON.parse(k.dataset.err), errText: k.querySelector(".kpi-err")?.textContent ?? null,
      psd: k.dataset.psd === undefined ? null : Number(k.dataset.psd), psdText: k.querySelector(".kpi-psd")?.textContent ?? null,
      psdResolved: k.dataset.psdResolved ?? null, psdTitle: k.querySelector(".kpi-psd")?.title ?? null,
      psdCi: k.dataset.psdCi === undefined ? null : JSON.parse(k.dataset.psdCi) })));
    r.psdNote = await page.locator("#kpis-psd-note").isVisible() ? await text("#kpis-psd-note") : null;
    r.settingsText = await text("#result-settings");
    r.countyCaption = await text("#cap-county");
    r.bars = await page.$$eval("#chart-county rect.bar", (bs) => bs.map((b) => ({ label: b.dataset.label, value: Number(b.dataset.value) })));
    r.baseMarks = await page.$$eval("#chart-county line.base-mark[data-value]", (ls) => ls.map((l) => Number(l.dataset.value)));
    r.exceedanceShown = await page.locator("#chart-exceed").isVisible();
    r.exceedanceNote = await text("#exceed-note").catch(() => "");
    r.exceedanceDots = await page.$$eval("#chart-exceed circle.dot", (ds) => ds.map((d) => ({ prob: Number(d.dataset.prob), loss: Number(d.dataset.loss) })));
    r.fanCaption = await text("#cap-fan");
    r.fanBands = await page.locator("#chart-fan polygon.band").count();
    r.fanMedian = await page.locator("#chart-fan polyline.median").count();
    r.fanBaseline = await page.locator("#chart-fan polyline.baseline").count();
    r.countyHeader = await page.$$eval("#county-table thead th", (ths) => ths.map((t) => t.textContent));
    r.countyRows = await page.$$eval("#county-table tbody tr", (rs) => rs.map((row) => {
      const o = { county: row.dataset.county, name: row.querySelector("th").textContent };
      row.querySelectorAll("td").forEach((td) => { o[td.dataset.col] = td.dataset.value === "" ? null : Number(td.dataset.value); o[`${td.dataset.col}_text`] = td.textContent; });
      return o;
    }));
    return r;
  }

  const main = await runToEnd(out.mainKind, out.mainKind === "stress" ? opt.scenario : null);
  out.runs = [main];
  await shot(`results-${main.kind}`);
  // the charts' descriptions (in the page's language, numbers formatted, errors and baselines listed)
  out.chartDescs = await page.$$eval("#page-results svg[role=img] desc", (ds) => Object.fromEntries(ds.map((d) => [d.parentNode.id, d.textContent])));
  // the results on a 390 px phone: no wider than the screen, charts legible, table cells on one line
  out.resultsNarrow = await measureNarrow(page, "#page-results", { shot, name: "results-390" });

  // the run form at 1280 px: the run type's select as wide as its longest option
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole("tab", { name: "压力测试" }).click();
  out.runKindFit = await page.evaluate(() => {
    const s = document.querySelector("#run-kind");
    const probe = document.createElement("span");
    probe.style.cssText = `position:absolute;visibility:hidden;white-space:nowrap;font:${getComputedStyle(s).font}`;
    probe.textContent = [...s.options].map((o) => o.text).sort((a, b) => b.length - a.length)[0] || "";
    document.body.appendChild(probe);
    const textWidth = probe.getBoundingClientRect().width;
    probe.remove();
    return { textWidth, selectWidth: s.getBoundingClientRect().width, visible: s.getClientRects().length > 0 };
  });
  await page.setViewportSize({ width: 1400, height: 1000 });

  // a run the API refuses (422: too many paths x years for the per-path budget): the last run's "100 % · done"
  // must not stay in the progress block
  {
    const years = await run.getByLabel("模拟年数").inputValue();
    out.refusedRun = { before: { pct: await text("#run-pct"), status: await text("#run-status") } };
    await run.getByLabel("模拟年数").fill("100");
    await run.getByLabel("蒙特卡洛路径数").fill("100000");
    await page.getByRole("button", { name: "开始运行" }).click();
    await page.waitForFunction(() => document.querySelector("#run-error").textContent !== "");
    Object.assign(out.refusedRun, { pct: await text("#run-pct"), status: await text("#run-status"), eta: await text("#run-eta"),
      progress: Number(await page.getAttribute("#run-progress", "value")), error: await text("#run-error"),
      startEnabled: await page.locator("#run-start").isEnabled() });
    await shot("run-refused");
    await run.getByLabel("模拟年数").fill(years);
  }

  // risk colouring on the map now that a run exists
  await page.getByRole("tab", { name: "资产组合与地图" }).click();
  await page.getByLabel("风险（年均预期损失 tCO₂e/公顷）").check();
  out.riskColouredDots = await page.$$eval("#map circle.parcel", (cs) => cs.filter((c) => c.dataset.risk !== "" && c.dataset.risk !== undefined).length);
  out.riskLegendItems = await page.locator("#map-legend li").count();
  await shot("portfolio-map-risk");

  await page.getByRole("tab", { name: "压力测试" }).click();
  await shot("run-finished");

  // 4. accounts: drill down province -> city -> county -> township -> village
  await page.getByRole("tab", { name: "五级碳账户" }).click();
  await page.waitForFunction(() => window.__dashboard.accounts && document.querySelectorAll("#accounts-table tbody tr").length > 0);
  out.accountsQuery = await page.evaluate(() => window.__dashboard.accountsFor);
  out.accountsHeader = await page.$$eval("#accounts-table thead th", (ths) => ths.map((t) => t.textContent));
  if (main.kind === "stress") out.stressAccounts = await accountsTable();  // every row, every cell
  const stockCol = main.kind === "stress" ? "stock_end_tco2e" : "stock_bef_tco2e";
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
  out.accountsVillageRows = await page.$$eval(`#accounts-table tbody tr[data-level="village"]`, (rs, [parent, col]) =>
    rs.filter((r) => !r.hidden && r.dataset.parent === parent).map((r) => ({ key: r.dataset.key,
      stock: Number(r.querySelector(`td[data-col="${col}"]`).dataset.value) })), [out.accountsFirstTownship, stockCol]);
  out.accountsCountyStock = Number(await county.locator(`td[data-col="${stockCol}"]`).getAttribute("data-value"));
  await shot("accounts");
  await county.locator("button.toggle").click();
  out.accountsAfterCollapse = await visible();
  // the portfolio's own accounts beside a run's: their own columns, whatever the run was
  if (await page.locator("#acc-source").isVisible()) {
    await page.locator("#acc-source").selectOption("portfolio");
    await page.waitForFunction(() => window.__dashboard.accountsFor?.startsWith("/v1/portfolios/")
      && document.querySelectorAll("#accounts-table tbody tr").length > 0);
    out.portfolioAccountsHeaderAfterRun = await page.$$eval("#accounts-table thead th", (ths) => ths.map((t) => t.textContent));
    out.portfolioAccountsHelpAfterRun = await text("#acc-help");
    await page.locator("#acc-source").selectOption("run");
    await page.waitForFunction((q) => window.__dashboard.accountsFor === q, out.accountsQuery);
  }

  // 5. reports: every button downloads a file
  await page.getByRole("tab", { name: "报告下载" }).click();
  out.reportButtons = await page.$$eval("#report-list button", (bs) => bs.map((b) => b.dataset.report));
  out.reportSources = await page.evaluate(() => Object.fromEntries(window.__dashboard.view.reports(window.__dashboard.openapi)
    .map((r) => [r.id, { path: r.path, query: r.query || {} }])));
  out.downloads = {};
  for (const id of out.reportButtons) {
    const [dl] = await Promise.all([page.waitForEvent("download"), page.locator(`#report-list button[data-report="${id}"]`).click()]);
    const file = path.join(opt.out, `download-${id}-${dl.suggestedFilename()}`);
    await dl.saveAs(file);
    out.downloads[id] = { file, name: dl.suggestedFilename() };
  }
  await shot("reports");

  // 6. language: English, every page again
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
  // 7. with a stress test as the main run, a simulation too: its percentiles draw the distribution charts
  if (main.kind === "stress") {
    out.runs.push(await runToEnd("simulation", null));
    await shot("results-simulation");
  }
  // the simulation's accounts: each sink and loss with its Monte Carlo s.e. and parameter sd
  await page.getByRole("tab", { name: "五级碳账户" }).click();
  await page.waitForFunction((id) => window.__dashboard.accounts && window.__dashboard.accountsFor.includes(id) &&
    document.querySelectorAll('#accounts-table tbody td[data-psd-resolved]').length > 0, out.runs[out.runs.length - 1].resultId);
  out.simAccountsFor = await page.evaluate(() => window.__dashboard.accountsFor);
  out.simAccountsPsd = await page.$$eval("#accounts-table tbody tr", (rs) => rs.flatMap((r) =>
    [...r.querySelectorAll("td[data-psd-resolved]")].map((td) => {
      const se = r.querySelector(`td[data-col="${td.dataset.col.replace(/parameter_sd$/, "mc_se")}"]`);
      return { key: r.dataset.key, col: td.dataset.col, value: td.dataset.value === "" ? null : Number(td.dataset.value),
        text: td.textContent, resolved: td.dataset.psdResolved, se: se.dataset.value === "" ? null : Number(se.dataset.value) };
    })));
  out.simAccountsPsdNote = await page.locator("#acc-psd-note").isVisible() ? await text("#acc-psd-note") : null;
  await shot("accounts-simulation");

  // two small simulations whose results are rewritten on the way to the page: the end stock's parameter sd
  // clipped at 0 (the estimator's reading of a negative variance component), then a run that drew no
  // parameters (its provenance says so, and the engine reports zeros for its parameter sds)
  rewrite = (sim) => {
    const row = sim.horizon.find((h) => h.level === "portfolio" && h.metric === "stock_end_tco2e");
    row.parameter_sd = 0;
    row.parameter_sd_ci95_low = 0;  // as the engine writes a clipped sd: its interval runs from 0
  };
  out.clippedRun = await runToEnd("simulation", null, "32");
  await shot("results-sd-not-resolved");
  rewrite = (sim) => {
    sim.provenance.switches.parameter_uncertainty = false;
    for (const h of sim.horizon) h.parameter_sd = 0;
  };
  out.offRun = await runToEnd("simulation", null, "32");
  rewrite = null;

  // that simulation's accounts, refused at once (as by a server with a smaller CRE_SYNC_MAX_CELLS): the page
  // says so and computes the same accounts (the run's portfolio, paths and seed) as a job
  out.simRefused = {};
  try {
    refuseSimAccounts = { type: "https://carbon-risk.example/problems/sync-limit-exceeded", title: "Unprocessable Entity",
      status: 422, detail: "5000 parcels x 32 paths = 160000 exceeds the 100000 cells answered in a request",
      limit: 100000, cells: 160000, max_paths: 20,
      errors: [{ field: "run/request/paths", value: 32, reason: "at most 20 paths for this portfolio (5000 parcels)" }] };
    const before = await page.getAttribute("#accjob-status", "data-job");
    await page.getByRole("tab", { name: "五级碳账户" }).click();
    const R = out.simRefused;
    R.progressSeen = await watchAccountsJob("simulation accounts", before);
    R.accountsFor = await page.evaluate(() => window.__dashboard.accountsFor);
    R.jobId = await page.getAttribute("#accjob-status", "data-job");
    R.refusal = await text("#acc-note");
    R.accountsId = await page.getAttribute("#acc-meta", "data-id");
    R.sourceText = await page.locator("#acc-source option:checked").innerText();
    R.rows = await accountsTable();
    await shot("accounts-simulation-job");
  } catch (e) {
    out.simRefused.error = String(e && e.stack || e);
  } finally {
    refuseSimAccounts = null;
  }

} catch (e) {
  out.error = String(e && e.stack || e);
  try { await shot("failure"); } catch { /* ignore */ }
} finally {
  await close();
}
process.stdout.write(JSON.stringify(out) + "\n");
