// Drives the dashboard through what a user-flow review found (tests/browser/test_dashboard_review.py checks it):
//  - each role lands on its own page: the bank key on the loan valuation, the insurer key on the quote, the
//    bureau key on the portfolio and map;
//  - an upload missing a required column reads in Chinese (no "row null", no English wrapper);
//  - the stress scenarios are listed by their Chinese titles, and a stress test's results name its scenario so;
//  - a reload while a run goes on resumes it: a stress test's progress and then its results, and a big
//    simulation's progress with a working Cancel button.
// Prints what the page showed as one JSON document on stdout (the last line).
//
//   node drive_review.mjs --base http://127.0.0.1:PORT --bank-key cre_... --insurer-key cre_... --bureau-key cre_...
//        --out DIR --bad-csv FILE [--scenario super_typhoon] [--chromium /usr/bin/chromium]

import { openBrowser, parseArgs, signIn as signInAs } from "./browser.mjs";

const opt = parseArgs({ scenario: "super_typhoon", "stress-paths": "64", "stress-years": "3", "sim-paths": "2048",
  "sim-years": "30" }, ["base", "bank-key", "insurer-key", "bureau-key", "out", "bad-csv"]);
const out = { screenshots: [], consoleErrors: [], failedRequests: [] };
const log = (...m) => process.stderr.write(`[drive-review] ${m.join(" ")}\n`);
const { page, shot, close } = await openBrowser(opt, out, log);
const text = (sel) => page.locator(sel).innerText();
const run = page.locator("#page-run");

async function signIn(key) {
  await signInAs(page, opt.base, key);
  await page.waitForFunction(() => window.__dashboard.portfolio);
}

async function signOut() {
  await page.locator("#sign-out").click();
  await page.waitForSelector("#signin-view:not([hidden])");
}

/** Which tab is selected and which page is shown, and where the keyboard focus is. */
const landing = () => page.evaluate(() => ({
  selected: [...document.querySelectorAll("[role=tab]")].filter((t) => t.getAttribute("aria-selected") === "true").map((t) => t.id),
  shown: [...document.querySelectorAll("[role=tabpanel]")].filter((p) => !p.hidden).map((p) => p.id),
  focus: document.activeElement?.id || null,
}));

/** The run block as the page shows it. */
const runBlock = () => page.evaluate(() => {
  const st = document.querySelector("#run-status");
  return { job: st.dataset.job || null, status: st.dataset.status || null, statusText: st.textContent,
    pct: document.querySelector("#run-pct").textContent, value: Number(document.querySelector("#run-progress").value),
    eta: document.querySelector("#run-eta").textContent, startDisabled: document.querySelector("#run-start").disabled,
    cancelDisabled: document.querySelector("#run-cancel").disabled,
    resumed: document.querySelector("#run-resumed").hidden ? null : document.querySelector("#run-resumed").textContent,
    runTab: document.querySelector("#tab-run").getAttribute("aria-selected") === "true",
    form: { scenario: document.querySelector("#run-scenario").value, years: document.querySelector("#run-years").value,
      paths: document.querySelector("#run-paths").value, seed: document.querySelector("#run-seed").value } };
});

async function reloadAndResume(jobId) {
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await page.waitForFunction((id) => document.querySelector("#run-status").dataset.job === id, jobId, { timeout: 60000 });
  return runBlock();
}

try {
  // ---- each role's landing page --------------------------------------------------------------------
  await signIn(opt["bank-key"]);
  out.bankLanding = await landing();
  await shot("bank-landing");
  await signOut();
  await signIn(opt["insurer-key"]);
  out.insurerLanding = await landing();
  await shot("insurer-landing");
  await signOut();
  await signIn(opt["bureau-key"]);
  out.bureauLanding = await landing();

  // ---- an upload missing area_ha, in Chinese ---------------------------------------------------------
  await page.setInputFiles("#upload-file", opt["bad-csv"]);
  await page.getByRole("button", { name: "上传", exact: true }).click();
  await page.waitForFunction(() => /上传被拒绝/.test(document.querySelector("#upload-status").textContent));
  out.uploadStatus = await text("#upload-status");
  out.uploadWhere = await page.$$eval("#upload-status .problem-where", (s) => s.map((x) => x.textContent));
  out.uploadServer = await page.$$eval("#upload-status .server-detail", (s) => s.map((x) => ({ text: x.textContent, lang: x.lang })));
  await shot("upload-missing-area");

  // ---- the run page: scenarios by their Chinese titles; a stress test resumed after a reload -------------
  await page.getByRole("tab", { name: "压力测试" }).click();
  out.runKind = await page.locator("#run-kind").inputValue();
  out.scenarioOptions = await page.$$eval("#run-scenario option", (os) => os.map((o) => ({ value: o.value, text: o.textContent })));
  await run.getByLabel("情景").selectOption(opt.scenario);
  await run.getByLabel("模拟年数").fill(opt["stress-years"]);
  await run.getByLabel("蒙特卡洛路径数").fill(opt["stress-paths"]);
  await run.getByLabel("随机种子").fill("7");
  await page.getByRole("button", { name: "开始运行" }).click();
  await page.waitForFunction(() => document.querySelector("#run-status").dataset.status === "running", null, { timeout: 60000 });
  out.stressJob = (await runBlock()).job;
  out.stressStored = await page.evaluate(() => sessionStorage.getItem("cre.runJob"));
  out.stressAfterReload = await reloadAndResume(out.stressJob);
  await shot("stress-resumed");
  await page.waitForFunction((id) => window.__dashboard.view?.id && document.querySelector("#result-id").textContent === window.__dashboard.view.id
    && !document.querySelector("#results").hidden, null, { timeout: 240000 });
  out.stressEnd = await runBlock();
  out.stressResultId = await text("#result-id");
  out.stressSettings = await text("#result-settings");
  out.resultsTab = await page.evaluate(() => document.querySelector("#tab-results").getAttribute("aria-selected"));
  await shot("stress-results");

  // ---- a big simulation: reload while it runs, then cancel it from the reloaded page -------------------
  await page.getByRole("tab", { name: "压力测试" }).click();
  await page.locator("#run-kind").selectOption("simulation");
  await page.waitForFunction(() => window.__dashboard.runner.kind === "simulation"
    && [...document.querySelector("#run-scenario").options].some((o) => o.value === "current"));
  out.pathwayOptions = await page.$$eval("#run-scenario option", (os) => os.map((o) => ({ value: o.value, text: o.textContent })));
  await run.getByLabel("模拟年数").fill(opt["sim-years"]);
  await run.getByLabel("蒙特卡洛路径数").fill(opt["sim-paths"]);
  await page.getByRole("button", { name: "开始运行" }).click();
  await page.waitForFunction(() => document.querySelector("#run-status").dataset.status === "running", null, { timeout: 60000 });
  out.simJob = (await runBlock()).job;
  out.simAfterReload = await reloadAndResume(out.simJob);
  // progress goes on after the reload
  await page.waitForFunction((v) => Number(document.querySelector("#run-progress").value) > v
    || document.querySelector("#run-status").dataset.status !== "running", out.simAfterReload.value, { timeout: 60000 });
  out.simProgressing = await runBlock();
  await shot("simulation-resumed");
  await page.getByRole("button", { name: "取消" }).first().click();
  await page.waitForFunction(() => ["cancelled", "succeeded", "failed"].includes(document.querySelector("#run-status").dataset.status));
  out.simEnd = await runBlock();
  await shot("simulation-cancelled");
} catch (e) {
  out.error = String(e && e.stack || e);
  try { await shot("error"); } catch { /* the page is gone */ }
} finally {
  await close();
  process.stdout.write(JSON.stringify(out) + "\n");
}
