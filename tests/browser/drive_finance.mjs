// Drives the dashboard's loan valuation and insurance quote pages with playwright-core and Debian's
// Chromium: sign in with the bank demo key, value a loan on one demo project (first with a bad amount,
// whose error must appear next to the amount field), download the memo, then value one on the whole
// portfolio (a job, polled); then value the project loan twice more with the API's answer rewritten on its
// way to the page (a parameter sd clipped at 0; one absent, with an open end of the largest safe loan's
// interval), to see how the page reads them; sign out, sign in with the
// insurer demo key, price a stock-loss cover, download the quote slip, switch to English. Prints what
// the page showed (and the request bodies it sent) as one JSON document on stdout (the last line);
// tests/browser/test_finance_pages.py checks it against the API.
//
//   node drive_finance.mjs --base http://127.0.0.1:PORT --bank-key cre_... --insurer-key cre_... --out DIR
//        [--portfolio "Lishui demo portfolio"] [--project LS-SC-P01] [--amount 600000] [--loan-paths 200] [--quote-paths 256]
//        [--seed 7] [--chromium /usr/bin/chromium]

import { measureNarrow, openBrowser, parseArgs, signIn as signInAs } from "./browser.mjs";
import path from "node:path";

const opt = parseArgs({ portfolio: "Lishui demo portfolio", project: "LS-SC-P01",
    "loan-paths": "200", amount: "600000", "quote-paths": "256", seed: "7" }, ["base", "bank-key", "insurer-key", "out"]);
const out = { screenshots: [], consoleErrors: [], failedRequests: [], posts: [], rewrittenPosts: [], extraPosts: [] };
let extra = null;  // a label: the requests sent meanwhile go to out.extraPosts (the checks added later: a term of 40,
// the cancelled jobs, the value drivers), not to out.posts, whose order the first checks read
let rewrite = null;  // (result) => void: rewrites the API's valuation on its way to the page (then not in `posts`)
const rewrittenRequests = new Set();
const log = (...m) => process.stderr.write(`[drive-finance] ${m.join(" ")}\n`);

const { page, shot, close } = await openBrowser(opt, out, log);
page.on("response", (r) => {
  const req = r.request();
  if (req.method() === "POST" && /\/v1\/(collateral-valuations|quotes)$/.test(new URL(r.url()).pathname)) {
    const rec = { path: new URL(r.url()).pathname, status: r.status(), body: JSON.parse(req.postData() || "null") };
    if (extra) out.extraPosts.push({ ...rec, label: extra });
    else (rewrittenRequests.has(req) ? out.rewrittenPosts : out.posts).push(rec);
  }
});
await page.route("**/v1/collateral-valuations", async (route) => {
  if (!rewrite || route.request().method() !== "POST") return route.fallback();
  rewrittenRequests.add(route.request());
  const resp = await route.fetch();
  const body = await resp.json();
  if (resp.status() === 201) rewrite(body.result);
  return route.fulfill({ response: resp, json: body });
});

const text = (sel) => page.locator(sel).innerText();
// a step the review added, run so that a page without its element records the error and the drive goes on (each
// test then fails on its own finding)
const attempt = async (fn) => { try { return await fn(); } catch (e) { return { error: String(e && e.message || e) }; } };
const loan = page.locator("#page-loan"), quote = page.locator("#page-quote");
const kpis = (sel) => page.$$eval(`${sel} .kpi`, (ks) => Object.fromEntries(ks.map((k) => [k.dataset.kpi,
  { value: k.dataset.value === "" ? null : Number(k.dataset.value), text: k.querySelector(".kpi-value").textContent,
    sub: k.querySelector(".kpi-sub")?.textContent ?? null, notResolved: k.dataset.notResolved === "true" }])));
const kvs = (sel) => page.$$eval(`${sel} dd`, (ds) => Object.fromEntries(ds.map((d) => [d.dataset.key, d.dataset.value])));
// a definition list with each <dd>'s text and not-resolved flag
const kvFull = (sel) => page.$$eval(`${sel} dd`, (ds) => Object.fromEntries(ds.map((d) => [d.dataset.key,
  { value: d.dataset.value === "" ? null : Number(d.dataset.value), text: d.textContent, notResolved: d.dataset.notResolved === "true" }])));
// the not-resolved note and the rule-of-three note under the loan's KPIs
const loanNotes = () => page.evaluate(() => {
  const n = document.querySelector("#loan-unresolved"), z = document.querySelector("#loan-zero-one");
  return { hidden: n.hidden, text: n.textContent, figures: JSON.parse(n.dataset.figures || "[]"),
    pathsNeeded: n.dataset.pathsNeeded === "" ? null : Number(n.dataset.pathsNeeded), server: n.dataset.server,
    zeroOneHidden: z.hidden, zeroOne: z.textContent };
});
const rows = (sel) => page.$$eval(`${sel} tbody tr`, (rs) => rs.map((r) => Object.fromEntries(
  [...r.children].map((c) => [c.dataset.col, { value: c.dataset.value, text: c.textContent }]))));

async function signIn(key) {
  await signInAs(page, opt.base, key);  // signed in: the landing page is chosen
  const tabs = await page.$$eval("[role=tab]", (ts) => ts.filter((t) => t.getAttribute("aria-selected") === "true").map((t) => t.id));
  out.landing = [...(out.landing || []), ...tabs];  // the role's own page: the bank's loan, the insurer's quote
  await page.getByRole("tab", { name: "资产组合与地图" }).click();
  const label = await page.locator("#portfolio-select option", { hasText: opt.portfolio }).first().innerText();
  await page.getByLabel("选择资产组合").selectOption({ label });
  await page.waitForFunction((name) => {
    const s = window.__dashboard;
    return s.portfolio && s.portfolio.name === name && s.parcels.length === s.portfolio.n_parcels;
  }, opt.portfolio);
  return page.$$eval("[role=tab]", (ts) => ts.filter((t) => !t.hidden).map((t) => t.id));
}

async function download(button, name) {
  const [dl] = await Promise.all([page.waitForEvent("download"), page.locator(button).click()]);
  const file = path.join(opt.out, `download-${name}-${dl.suggestedFilename()}`);
  await dl.saveAs(file);
  return { file, name: dl.suggestedFilename() };
}

try {
  // ---- bank: value a loan on one project -------------------------------------------------------
  out.bankTabs = await signIn(opt["bank-key"]);
  out.portfolioId = await page.evaluate(() => window.__dashboard.portfolio.id);
  await page.getByRole("tab", { name: "贷款估值" }).click();
  out.pledgeOptions = await page.$$eval("#loan-pledge option", (os) => os.map((o) => ({ value: o.value, text: o.textContent })));
  await page.getByLabel("质押小班（按项目，或整个组合）").selectOption(opt.project);
  await page.getByLabel("贷款金额（元）").fill("-5");
  await page.getByLabel("期限（年）").fill("3");
  await page.getByLabel("年利率（%）").fill("4.5");
  await page.getByLabel("借款人违约概率 PD（%，可选）").fill("2");
  await page.getByLabel("林权抵押价值（元，可选）").fill("50000");
  await loan.getByLabel("蒙特卡洛路径数").fill(opt["loan-paths"]);
  await loan.getByLabel("随机种子").fill(opt.seed);
  await page.getByRole("button", { name: "估值", exact: true }).click();
  await page.waitForFunction(() => document.querySelector("#loan-amount-error").textContent !== "");
  out.loanAmountError = await text("#loan-amount-error");
  out.loanAmountErrorParts = await page.$eval("#loan-amount-error", (p) => ({ lead: p.querySelector(".field-error-lead")?.textContent ?? null,
    detail: [...p.querySelectorAll(".server-detail")].map((x) => ({ text: x.textContent, lang: x.lang })) }));
  out.loanAmountInvalid = await page.getAttribute("#loan-amount", "aria-invalid");
  out.loanOtherFieldErrors = await page.$$eval("#loan-form .field-error", (ps) => ps.filter((p) => p.id !== "loan-amount-error" && p.textContent).map((p) => p.id));
  out.loanAlert = await text("#loan-error");
  await shot("loan-bad-amount");

  // a term beyond the crediting horizon: the reason next to the term, the alert not repeating it (no raw path)
  extra = "term40";
  await page.getByLabel("贷款金额（元）").fill(opt.amount);
  await page.getByLabel("期限（年）").fill("40");
  await page.getByRole("button", { name: "估值", exact: true }).click();
  await page.waitForFunction(() => document.querySelector("#loan-term-error").textContent !== "");
  out.loanTerm40 = { field: await text("#loan-term-error"), alert: await text("#loan-error"),
    invalid: await page.getAttribute("#loan-term", "aria-invalid") };
  await page.getByLabel("期限（年）").fill("3");
  await page.getByLabel("贷款金额（元）").fill("-5");
  extra = null;

  await page.getByLabel("贷款金额（元）").fill(opt.amount);
  await page.getByRole("button", { name: "估值", exact: true }).click();
  await page.waitForFunction(() => {
    const f = window.__dashboard.finance;
    return f.loan && !document.querySelector("#loan-results").hidden && document.querySelector("#loan-id").textContent === f.loan.id;
  });
  out.loanAmountErrorAfter = await text("#loan-amount-error");
  out.loanId = await text("#loan-id");
  out.loanKpis = await kpis("#loan-kpis");
  out.loanYears = await rows("#loan-years");
  out.loanSecurity = await kvs("#loan-security");
  out.loanCredit = await kvs("#loan-credit");
  out.loanCreditFull = await kvFull("#loan-credit");
  out.loanRisk = await kvFull("#loan-risk");
  out.loanRiskBasis = { text: await text("#loan-risk-basis"), server: await page.getAttribute("#loan-risk-basis", "data-server") };
  out.loanNotes = await loanNotes();
  out.loanLimit = await attempt(() => page.$eval("#loan-limit", (n) => ({ hidden: n.hidden, text: n.textContent, role: n.getAttribute("role"),
    within: n.dataset.withinLimit, exceeds: n.dataset.exceedsPledgeRate })));
  out.loanTargets = await kvFull("#loan-targets");
  out.loanTargetLabels = await page.$$eval("#loan-targets dt", (ds) => ds.map((d) => d.textContent));
  out.loanBelowDesc = await page.$eval("#chart-loan-below desc", (d) => d.textContent);
  out.loanFanDesc = await page.$eval("#chart-loan-fan desc", (d) => d.textContent);
  out.loanSens = await rows("#loan-sens");
  out.loanFan = {
    bands: await page.locator("#chart-loan-fan polygon.band").count(),
    median: await page.locator("#chart-loan-fan polyline.median").count(),
    balance: await page.locator("#chart-loan-fan polyline.baseline").count(),
  };
  out.loanBelowBars = await page.$$eval("#chart-loan-below rect.bar", (bs) => bs.map((b) => Number(b.dataset.value)));
  out.memo = await download("#loan-memo", "memo");
  out.memoStatus = await text("#loan-dl-status");
  await shot("loan-result");

  // the whole portfolio pledged is too big to answer at once: a job (202) that the page polls
  await page.getByLabel("质押小班（按项目，或整个组合）").selectOption("");
  await loan.getByLabel("蒙特卡洛路径数").fill("32");
  await page.getByRole("button", { name: "估值", exact: true }).click();
  await page.waitForFunction((prev) => {
    const f = window.__dashboard.finance;
    return f.loan && f.loan.id !== prev && document.querySelector("#loan-id").textContent === f.loan.id;
  }, out.loanId, { timeout: 90000 });
  out.jobLoan = {
    id: await text("#loan-id"), job: await page.evaluate(() => window.__dashboard.finance.loanJob),
    status: await text("#loan-status"), progressVisible: await page.locator("#loan-progress").isVisible(),
    value: Number(await page.getAttribute('#loan-kpis .kpi[data-kpi="kpi_value_today"]', "data-value")),
    cancelHiddenAfter: (await page.locator("#loan-cancel").count()) === 1 && await page.locator("#loan-cancel").isHidden(),
  };
  // a new result: the memo downloaded for the previous one is no longer named under it
  out.loanDlStatusAfterNew = await text("#loan-dl-status");

  // a bigger job, cancelled with its Cancel button: the job ends cancelled, the previous result stays
  extra = "loan-cancel";
  await loan.getByLabel("蒙特卡洛路径数").fill("512");
  await page.getByRole("button", { name: "估值", exact: true }).click();
  out.loanCancel = await attempt(async () => {
    await page.locator("#loan-cancel").waitFor({ state: "visible", timeout: 10000 });
    const c = { enabledWhileRunning: await page.locator("#loan-cancel").isEnabled() };
    await page.locator("#loan-cancel").click();
    await page.waitForFunction(() => document.querySelector("#loan-status").dataset.status === "cancelled", null, { timeout: 60000 });
    return Object.assign(c, { job: await page.evaluate(() => window.__dashboard.finance.loanJob.id), status: await text("#loan-status"),
      alert: await text("#loan-error"), cancelHidden: await page.locator("#loan-cancel").isHidden(), shownId: await text("#loan-id"),
      resultsShown: await page.locator("#loan-results").isVisible() });
  });
  // without a Cancel button the job runs on: wait for it, so that the next valuation starts afresh
  await page.waitForFunction(() => !document.querySelector("#loan-submit").disabled, null, { timeout: 90000 });
  await shot("loan-job-cancelled");
  extra = null;

  // the project loan again, its answer rewritten on the way to the page: how the page reads a parameter sd
  // the estimator clipped at 0, and one that is absent (a run without parameter uncertainty) with the
  // largest safe loan's interval open above
  async function rewritten(change) {
    rewrite = change;
    await page.getByLabel("质押小班（按项目，或整个组合）").selectOption(opt.project);
    await loan.getByLabel("蒙特卡洛路径数").fill(opt["loan-paths"]);
    await page.getByRole("button", { name: "估值", exact: true }).click();
    await page.waitForFunction(() => document.querySelector("#loan-status").dataset.done === "true" &&
      !document.querySelector("#loan-results").hidden);
    rewrite = null;
    return { kpis: await kpis("#loan-kpis"), shown: await page.evaluate(() => window.__dashboard.finance.loan.result.value_today),
      years: await rows("#loan-years"), notes: await loanNotes(), risk: await kvFull("#loan-risk"),
      result: await page.evaluate(() => window.__dashboard.finance.loan.result) };
  }
  out.loanClipped = await rewritten((v) => { v.value_today.parameter_sd_cny = 0; });
  await shot("loan-sd-not-resolved");
  out.loanAbsent = await rewritten((v) => { v.value_today.parameter_sd_cny = null; v.sizing.max_loan_ci95_cny[1] = null; });
  // a probability estimated at exactly 0 (its rule-of-three bound instead of "± 0.0 %"), and every tail figure
  // resolved (no flag, no note)
  out.loanZeroOne = await rewritten((v) => {
    const n = v.provenance.paths / 4, b = [0, 3 / n];
    v.risk.p_value_below_balance_any_time = 0; v.risk.p_value_below_balance_any_time_mc_se = 0;
    v.by_year[0].p_value_below_balance = 0; v.by_year[0].p_value_below_balance_mc_se = 0;
    v.risk.zero_one_bounds_95 = { p_value_below_balance_any_time: b, p_value_below_balance_year_1: b };
    v.risk.not_resolved = []; v.risk.not_resolved_paths_needed = null; v.risk.not_resolved_note = null;
    v.sizing.not_resolved = []; v.sizing.max_loan_resolved = true; v.sizing.not_resolved_paths_needed = null;
    v.sizing.max_loan_paths_needed = null; v.sizing.not_resolved_note = null;
    v.sizing.requested_loan_within_limit = true; v.sizing.requested_ltv_exceeds_pledge_rate = false;
  });
  out.loanZeroOne.limit = await attempt(() => page.$eval("#loan-limit", (n) => ({ hidden: n.hidden, text: n.textContent })));
  await shot("loan-zero-one");

  // the value drivers and price sensitivities, each figure with its error; then the page on a 390 px phone
  extra = "drivers";
  await page.getByLabel("计算价值驱动因素（约多 9 次运行）").check();
  await page.getByRole("button", { name: "估值", exact: true }).click();
  await page.waitForFunction(() => document.querySelector("#loan-status").dataset.done === "true" &&
    !document.querySelector("#loan-drivers-card").hidden);
  extra = null;
  out.loanDrivers = { id: await text("#loan-id"), rows: await rows("#loan-drivers"), sens: await rows("#loan-sens"),
    years: await rows("#loan-years"), result: await page.evaluate(() => window.__dashboard.finance.loan.result) };
  out.loanNarrow = await measureNarrow(page, "#page-loan", { shot, name: "loan-390" });
  await page.getByLabel("计算价值驱动因素（约多 9 次运行）").uncheck();

  // ---- insurer: quote a stock-loss cover ------------------------------------------------------
  await page.getByRole("button", { name: "退出" }).click();
  await page.waitForSelector('body[data-ready="true"]');
  out.insurerTabs = await signIn(opt["insurer-key"]);
  await page.getByRole("tab", { name: "保险报价" }).click();
  await page.getByLabel("保障类型").selectOption("stock-loss");
  await page.getByLabel("约定价格（元/tCO₂e）").fill("60");
  await page.getByLabel("干旱").uncheck();
  await page.getByLabel("年免赔额（元）").fill("20000");
  await quote.getByLabel("蒙特卡洛路径数").fill(opt["quote-paths"]);
  await quote.getByLabel("随机种子").fill(opt.seed);
  await page.getByRole("button", { name: "报价", exact: true }).click();
  await page.waitForFunction(() => {
    const f = window.__dashboard.finance;
    return f.quote && !document.querySelector("#quote-results").hidden && document.querySelector("#quote-id").textContent === f.quote.id;
  });
  out.quoteId = await text("#quote-id");
  out.quoteKpis = await kpis("#quote-kpis");
  out.quotePml = await rows("#quote-pml");
  out.quoteSubsidy = await rows("#quote-subsidy");
  out.quoteEpDots = await page.$$eval("#chart-quote-ep circle.dot", (ds) => ds.map((d) => ({ prob: Number(d.dataset.prob), loss: Number(d.dataset.loss) })));
  out.slip = await download("#quote-slip", "slip");
  out.quoteSubsidyNote = await text("#quote-subsidy-note");
  out.quoteSubsidyNoteServer = await page.getAttribute("#quote-subsidy-note", "data-server");
  out.quoteSubsidyNoteEn = await page.$$eval("#quote-subsidy-note .server-detail", (s) => s.map((x) => ({ text: x.textContent, lang: x.lang })));
  out.quoteSubsidyCaption = await text("#quote-subsidy-cap");
  out.quoteBasisHidden = await page.$eval("#quote-basis", (e) => e.hidden);
  out.quotePmlText = await page.$$eval("#quote-pml tbody tr", (rs) => rs.map((r) => r.children[0].textContent));
  out.quoteEpAnchor = await page.$$eval("#chart-quote-ep circle.anchor", (ds) => ds.map((d) => ({ prob: Number(d.dataset.prob), loss: Number(d.dataset.loss) })));
  out.quoteEpDesc = await page.$eval("#chart-quote-ep desc", (d) => d.textContent);
  out.quoteDlStatus = await text("#quote-dl-status");
  out.quoteNoPayFirst = await page.$eval("#quote-nopay-note", (e) => e.hidden);
  await shot("quote-result");

  // a big quote runs as a job: cancelled with its Cancel button, the stock-loss quote stays
  extra = "quote-cancel";
  await quote.getByLabel("蒙特卡洛路径数").fill("20000");
  await page.getByRole("button", { name: "报价", exact: true }).click();
  out.quoteCancel = await attempt(async () => {
    await page.locator("#quote-cancel").waitFor({ state: "visible", timeout: 10000 });
    await page.locator("#quote-cancel").click();
    await page.waitForFunction(() => document.querySelector("#quote-status").dataset.status === "cancelled", null, { timeout: 60000 });
    return { job: await page.evaluate(() => window.__dashboard.finance.quoteJob.id), status: await text("#quote-status"),
      alert: await text("#quote-error"), cancelHidden: await page.locator("#quote-cancel").isHidden(), shownId: await text("#quote-id"),
      dlStatus: await text("#quote-dl-status"), focus: await page.evaluate(() => document.activeElement?.id || null) };
  });
  await page.waitForFunction(() => !document.querySelector("#quote-submit").disabled, null, { timeout: 120000 });
  extra = null;
  await quote.getByLabel("蒙特卡洛路径数").fill(opt["quote-paths"]);

  // a deductible above every year's covered loss: the cover pays nothing, and the page says why
  extra = "quote-nopay";
  const payingId = await text("#quote-id");
  await page.getByLabel("年免赔额（元）").fill("1000000000000");
  await page.getByRole("button", { name: "报价", exact: true }).click();
  await page.waitForFunction((first) => {
    const f = window.__dashboard.finance;
    return f.quote && f.quote.id !== first && document.querySelector("#quote-id").textContent === f.quote.id;
  }, payingId);
  out.noPay = { hidden: await page.$eval("#quote-nopay-note", (e) => e.hidden), text: await text("#quote-nopay-note"),
                server: await page.evaluate(() => window.__dashboard.finance.quote.result.risk.no_payout_note),
                circles: await page.$$eval("#chart-quote-ep circle", (cs) => cs.length),
                polylines: await page.$$eval("#chart-quote-ep polyline", (ls) => ls.length),
                desc: await page.$eval("#chart-quote-ep desc", (d) => d.textContent) };
  extra = null;
  await page.getByLabel("年免赔额（元）").fill("20000");

  // ---- insurer: a sink-index cover: basis risk and the protection gap ------------------------------
  await page.getByLabel("保障类型").selectOption("sink-index");
  await page.getByRole("button", { name: "报价", exact: true }).click();
  await page.waitForFunction((first) => {
    const f = window.__dashboard.finance;
    return f.quote && f.quote.id !== first && !document.querySelector("#quote-basis").hidden &&
      document.querySelector("#quote-id").textContent === f.quote.id;
  }, out.quoteId);
  out.sinkQuote = { id: await text("#quote-id"), request: await page.evaluate(() => window.__dashboard.finance.quoteRequest),
                    basis: await kpis("#quote-basis-kpis"), kpis: await kpis("#quote-kpis"),
                    dots: await page.$$eval("#chart-quote-ep circle.dot", (ds) => ds.map((d) => ({ prob: Number(d.dataset.prob), loss: Number(d.dataset.loss) }))),
                    anchor: await page.$$eval("#chart-quote-ep circle.anchor", (ds) => ds.map((d) => ({ prob: Number(d.dataset.prob), loss: Number(d.dataset.loss) }))),
                    desc: await page.$eval("#chart-quote-ep desc", (d) => d.textContent),
                    dlStatus: await text("#quote-dl-status") };
  out.quoteNarrow = await measureNarrow(page, "#page-quote", { shot, name: "quote-390" });

  // ---- English ----------------------------------------------------------------------------------
  await page.getByRole("button", { name: "切换到英文界面" }).click();
  out.tabsEnglish = await page.$$eval("[role=tab]", (ts) => ts.filter((t) => !t.hidden).map((t) => t.textContent));
  out.quoteHeadingEnglish = await text("#page-quote > .card > h2");
  out.grossLabelEnglish = await text('#quote-kpis .kpi[data-kpi="kpi_gross"] .kpi-label');
  out.quoteStatusEnglish = await text("#quote-status");
  out.quoteEpDescEnglish = await page.$eval("#chart-quote-ep desc", (d) => d.textContent);
  out.quotePmlEnglish = await page.$$eval("#quote-pml tbody tr", (rs) => rs.map((r) => r.children[0].textContent));
  await shot("quote-result-english");
} catch (e) {
  out.error = String(e && e.stack || e);
  try { await shot("failure"); } catch { /* ignore */ }
} finally {
  await close();
}
process.stdout.write(JSON.stringify(out) + "\n");
