// The dashboard: sign in, choose or upload a portfolio, map, run a stress test as a job and watch it,
// results (charts, county table), five-level accounts (at once, or as a job when too large), report
// downloads; value a loan and quote a cover (finance.js; the pages a key's role may use). All text via i18n.js.

import { Api, ApiError, forgetKey, problemNodes, saveKey, savedKey } from "./api.js";
import { applyI18n, fmt, fmtPct, getLang, paramSd, placeName, scenarioTitle, setLang, speciesName, t } from "./i18n.js";
import { barChart, exceedanceChart, fanChart } from "./charts.js";
import { ParcelMap } from "./map.js";
import { buildTree, renderTree } from "./accounts.js";
import { RUNNERS, SIM_ACCOUNT_COLUMNS, availableRunners } from "./runners.js";
import { financeAccess, installFinance } from "./finance.js";
import { TERMINAL, activeJobs, cancelJob, mountJobBlocks, pollJob, renderJobBlock, resetJobBlock } from "./jobs.js";

const $ = (sel) => document.querySelector(sel);

const state = {
  api: null, keyId: "", openapi: null, runner: null,
  portfolios: [], portfolio: null, parcels: [],
  job: null, view: null, accounts: null, accountsFor: null, tree: null,
  colour: "species", access: { loan: false, quote: false },
};
let finance = null;  // the loan and quote pages (finance.js)
window.__dashboard = state;  // for debugging and the browser tests (read only)

// ---------------------------------------------------------------------------------------------
// sign in
// ---------------------------------------------------------------------------------------------
async function signIn(key) {
  const api = new Api(key);
  try {
    await api.get("/v1/portfolios", { limit: 1 });  // checks the key and that its role may analyse
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) throw new Error(t("signin_role", { role: "admin" }));
    if (e instanceof ApiError) throw new Error(t("signin_bad_key", { status: e.status }));
    throw e;
  }
  state.api = api;
  state.keyId = (/^cre_([0-9a-f]{12})_/.exec(key) || [])[1] || "";
  saveKey(key);
}

function showApp(on) {
  $("#signin-view").hidden = on;
  $("#app-view").hidden = !on;
  $("#sign-out").hidden = !on;
  renderWho();
}

function renderWho() {
  $("#who").textContent = state.api ? t("signed_in_as", { key: state.keyId }) : "";
}

async function afterSignIn() {
  showApp(true);
  try {
    const r = await fetch("/openapi.json");
    state.openapi = r.ok ? await r.json() : null;
  } catch { state.openapi = null; }
  state.access = await financeAccess(state.api);
  $("#tab-loan").hidden = !state.access.loan;
  $("#tab-quote").hidden = !state.access.quote;
  // a role without stress tests (bank, insurer) runs simulations on the same page
  state.runnerKinds = availableRunners(state.openapi).filter((k) => k !== "stress" || state.access.stress);
  state.runner = RUNNERS[state.runnerKinds[0]];
  renderRunKinds();
  if (!state.tabChosen) selectTab(landingTab());  // the role's own page (unless the user already chose one)
  await Promise.all([loadPortfolios(), loadRunOptions()]);
  resumeRun().catch((err) => { $("#run-error").textContent = t("error", { detail: err.message }); });
}

/** The page a key lands on: the bureau (which may run stress tests) the portfolio and map; a bank key the loan
 * valuation, an insurer key the quote (the roles are known by which lists the key may read: financeAccess). */
function landingTab() {
  const a = state.access || {};
  if (a.stress) return "portfolio";
  if (a.loan) return "loan";
  if (a.quote) return "quote";
  return "portfolio";
}

// ---------------------------------------------------------------------------------------------
// tabs
// ---------------------------------------------------------------------------------------------
const TABS = ["portfolio", "loan", "quote", "run", "results", "accounts", "reports"];
const shownTabs = () => TABS.filter((n) => !$(`#tab-${n}`).hidden);

function selectTab(name, focus = false) {
  for (const n of TABS) {
    const tab = $(`#tab-${n}`), page = $(`#page-${n}`);
    const on = n === name;
    tab.setAttribute("aria-selected", on ? "true" : "false");
    tab.tabIndex = on ? 0 : -1;
    page.hidden = !on;
    if (on && focus) tab.focus();
  }
  if (name === "accounts") loadAccounts();
  if (name === "portfolio") state.map?.reset();
}

function installTabs() {
  for (const n of TABS) $(`#tab-${n}`).addEventListener("click", () => { state.tabChosen = true; selectTab(n); });
  $("#tabs").addEventListener("keydown", (e) => {
    const tabs = shownTabs();
    const cur = tabs.findIndex((n) => $(`#tab-${n}`).getAttribute("aria-selected") === "true");
    let next = null;
    if (e.key === "ArrowRight") next = (cur + 1) % tabs.length;
    else if (e.key === "ArrowLeft") next = (cur + tabs.length - 1) % tabs.length;
    else if (e.key === "Home") next = 0;
    else if (e.key === "End") next = tabs.length - 1;
    if (next !== null) { e.preventDefault(); state.tabChosen = true; selectTab(tabs[next], true); }
  });
}

// ---------------------------------------------------------------------------------------------
// portfolios and the map
// ---------------------------------------------------------------------------------------------
async function loadPortfolios(selectId = null) {
  const page = await state.api.get("/v1/portfolios", { limit: 500 });
  state.portfolios = page.items;
  renderPortfolioSelect(selectId || state.portfolio?.id || page.items[0]?.id);
  if (page.items.length) await choosePortfolio($("#portfolio-select").value);
}

function renderPortfolioSelect(selected) {
  const sel = $("#portfolio-select");
  sel.replaceChildren();
  if (!state.portfolios.length) {
    const o = new Option(t("no_portfolios"), "");
    o.disabled = true;
    sel.add(o);
  }
  for (const p of state.portfolios) {
    const o = new Option(`${p.name} — ${fmt(p.n_parcels)} · ${fmt(p.area_ha)} ha`, p.id);
    sel.add(o);
  }
  if (selected) sel.value = selected;
}

async function choosePortfolio(id) {
  const p = state.portfolios.find((x) => x.id === id);
  if (!p || state.portfolio?.id === id) return;
  state.portfolio = p;
  state.view = null;
  resetAccounts();
  if (!$("#page-accounts").hidden) loadAccounts();
  renderPortfolioSummary();
  renderResults();
  state.parcels = [];
  finance.portfolioChanged();
  const status = $("#parcel-status");
  const all = [];
  let offset = 0;
  for (;;) {
    const d = await state.api.get(`/v1/portfolios/${id}`, { limit: 500, offset });
    if (state.portfolio?.id !== id) return;  // another portfolio was chosen meanwhile
    all.push(...d.parcels.items);
    status.textContent = t("loading_parcels", { done: all.length, total: d.parcels.total });
    if (d.parcels.next_offset === null) break;
    offset = d.parcels.next_offset;
  }
  state.parcels = all;
  status.textContent = "";
  finance.portfolioChanged();
  state.map.setParcels(all);
  paintMap();
}

function renderPortfolioSummary() {
  const p = state.portfolio;
  const dl = $("#portfolio-summary");
  dl.replaceChildren();
  if (!p) return;
  const add = (k, v, id) => {
    const dt = document.createElement("dt");
    dt.textContent = t(k);
    const dd = document.createElement("dd");
    dd.textContent = v;
    if (id) dd.id = id;
    dl.append(dt, dd);
  };
  add("parcels", fmt(p.n_parcels), "sum-parcels");
  add("area_ha", fmt(p.area_ha, 1), "sum-area");
  add("counties", fmt(Object.keys(p.summary?.counties || {}).length));
  if (p.summary?.mean_age_years !== undefined) add("mean_age", fmt(p.summary.mean_age_years, 1));
}

function paintMap() {
  const riskOk = !!state.view?.townshipRisk?.size;
  $("#colour-risk").disabled = !riskOk;
  $("#risk-note").hidden = riskOk;
  if (!riskOk && state.colour === "risk") {
    state.colour = "species";
    document.querySelector('input[name="colour"][value="species"]').checked = true;
  }
  const mode = state.colour;
  state.map.colourBy(mode, mode === "risk" ? state.view.townshipRisk : null,
    { species: speciesName, place: placeName, legendTitle: t(mode === "risk" ? "color_risk" : "color_species") });
  $("#map").setAttribute("aria-label", t("map_label", { mode: t(mode === "risk" ? "color_risk" : "color_species") }));
}

async function upload(e) {
  e.preventDefault();
  const f = $("#upload-file").files[0];
  const st = $("#upload-status");
  if (!f) { st.textContent = t("upload_no_file"); return; }
  const form = new FormData();
  form.append("file", f, f.name);
  const name = $("#upload-name").value.trim();
  if (name) form.append("name", name);
  st.textContent = t("uploading");
  try {
    const resp = await state.api.raw("POST", "/v1/portfolios", { form });
    const p = await resp.json();
    st.textContent = t("uploaded", { name: p.name, n: fmt(p.n_parcels) });
    state.portfolio = null;
    await loadPortfolios(p.id);
  } catch (err) {
    // a translated lead-in with the rows and columns; the server's reasons (English) apart, in a second line each
    const errs = err.problem?.errors || [];
    const lead = t("upload_errors", { detail: errs.length
      ? t("upload_problems", { n: fmt(errs.length), shown: fmt(Math.min(5, errs.length)) })
      : err.problem ? t("request_rejected", { status: err.status ?? "?" }) : err.message });
    st.replaceChildren(...problemNodes(err, lead, { max: 5, where: (x) => (
      x.column !== undefined && x.column !== null
        ? (x.row !== undefined && x.row !== null ? t("upload_problem_row", { row: x.row, column: x.column }) : t("upload_problem_col", { column: x.column }))
        : t("upload_problem_field", { field: x.field ?? "" })) }));
  }
}

// ---------------------------------------------------------------------------------------------
// running: a job with progress, ETA and cancel
// ---------------------------------------------------------------------------------------------
async function loadRunOptions() {
  state.runOptions = await state.runner.options(state.api);
  renderRunOptions();
  renderRunMode();
}

function renderRunKinds() {
  const sel = $("#run-kind");
  const cur = state.runner?.kind;
  sel.replaceChildren();
  for (const k of state.runnerKinds || []) sel.add(new Option(t(`run_kind_${k}`), k));
  if (cur) sel.value = cur;
  $("#run-kind-field").hidden = (state.runnerKinds || []).length < 2;
}

function renderRunOptions() {
  const sel = $("#run-scenario");
  const cur = sel.value;
  sel.replaceChildren();
  for (const o of state.runOptions || []) sel.add(new Option(o.label(getLang()), o.value));
  if (cur && [...sel.options].some((o) => o.value === cur)) sel.value = cur;
  if (state.runner.kind === "stress" && !cur) {
    const first = [...sel.options].find((o) => o.value !== "baseline");
    if (first) sel.value = first.value;
  }
}

function renderRunMode() {
  const stress = state.runner.kind === "stress";
  const onlySim = !(state.runnerKinds || []).includes("stress");
  const roleOnly = onlySim && availableRunners(state.openapi).includes("stress");  // the endpoint exists, the role may not
  $("#run-mode-note").textContent = t(stress ? "run_note_stress" : roleOnly ? "run_sim_role" : onlySim ? "run_using_sim" : "run_note_sim");
  $("#run-scenario-label").textContent = t(stress ? "scenario" : "climate_pathway");
  $("#run-resumed").hidden = !state.runResumed;
  $("#run-resumed").textContent = state.runResumed ? t("run_resumed", { id: state.runResumed }) : "";
}

function setRunning(on) {
  $("#run-start").disabled = on;
  $("#run-cancel").disabled = !on;
}

function renderJob(job) { renderJobBlock("run", job); }

async function startRun(e) {
  e.preventDefault();
  if (!state.portfolio) return;
  const form = {
    option: $("#run-scenario").value,
    years: Number($("#run-years").value), paths: Number($("#run-paths").value), seed: Number($("#run-seed").value),
  };
  $("#run-error").textContent = "";
  setRunning(true);
  let started = false;
  try {
    const runner = state.runner;
    const job = await runner.start(state.api, state.portfolio, form);
    started = true;
    state.job = job;
    state.jobRunner = runner;
    state.runResumed = null;
    renderRunMode();
    rememberRunJob(job.id);
    renderJob(job);
    await poll(job.id);
  } catch (err) {
    if (!started) {
      // refused (422): no job runs, so the previous run's progress block ("100 % · done") no longer applies
      state.job = null;
      rememberRunJob(null);
      resetJobBlock("run");
    }
    showRunError(err);
  } finally {
    setRunning(false);
  }
}

// A reload keeps the run: the tab's last run job is kept in sessionStorage, and the server's list of the key's
// queued and running jobs (GET /v1/jobs?status=) finds one started elsewhere or before the tab remembered it.
const RUN_JOB_STORE = "cre.runJob";
const RUN_KINDS = { stress_test: "stress", simulation: "simulation" };  // job kind -> runner

function rememberRunJob(id) {
  try { if (id) sessionStorage.setItem(RUN_JOB_STORE, id); else sessionStorage.removeItem(RUN_JOB_STORE); } catch { /* private mode */ }
}

function rememberedRunJob() {
  try { return sessionStorage.getItem(RUN_JOB_STORE); } catch { return null; }
}

/** After sign-in: show the run this tab started before a reload (its progress, cancel and, at its end, its
 * results), or else the key's newest queued or running run job. */
async function resumeRun() {
  const kinds = Object.keys(RUN_KINDS).filter((k) => (state.runnerKinds || []).includes(RUN_KINDS[k]));
  let job = null;
  const saved = rememberedRunJob();
  if (saved) {
    try { job = await state.api.get(`/v1/jobs/${saved}`); } catch { job = null; }
    // the tab's job, if this key started it (a tab signed in again with a colleague's key does not take theirs)
    if (job && (!kinds.includes(job.kind) || (state.keyId && job.created_by && job.created_by !== state.keyId))) job = null;
  }
  if (!job || TERMINAL.includes(job.status)) {
    const live = (await activeJobs(state.api, kinds, state.keyId))[0];
    if (live) job = live;
  }
  if (!job || state.job) return;  // nothing to resume, or a run was started meanwhile
  const kind = RUN_KINDS[job.kind];
  const req = job.request || {};
  if (req.portfolio_id && req.portfolio_id !== state.portfolio?.id && state.portfolios.some((p) => p.id === req.portfolio_id)) {
    $("#portfolio-select").value = req.portfolio_id;
    await choosePortfolio(req.portfolio_id);
  }
  if (state.runner.kind !== kind) {
    state.runner = RUNNERS[kind];
    $("#run-kind").value = kind;
    await loadRunOptions();
  }
  // the form shows what the job runs
  const option = kind === "stress" ? (req.scenarios?.[0] || "baseline") : (req.climate_pathway || "");
  if ([...$("#run-scenario").options].some((o) => o.value === option)) $("#run-scenario").value = option;
  for (const f of ["years", "paths", "seed"]) if (req[f] !== undefined && req[f] !== null) $(`#run-${f}`).value = req[f];
  const active = !TERMINAL.includes(job.status);
  state.job = job;
  state.jobRunner = RUNNERS[kind];
  state.runResumed = active ? job.id : null;
  rememberRunJob(job.id);
  renderRunMode();
  renderJob(job);
  if (active) selectTab("run");
  setRunning(active);
  try {
    await poll(job.id, { show: active });  // a run that ended while the page reloaded: its results, on their tab
  } catch (err) {
    showRunError(err);
  } finally {
    setRunning(false);
  }
}

// the run form's inputs by the last part of a problem's errors[].field
const RUN_FIELDS = { years: "run-years", paths: "run-paths", seed: "run-seed", scenarios: "run-scenario",
  climate_pathway: "run-scenario", portfolio_id: "portfolio-select" };

/** A refused run: a translated lead-in naming the form's fields, the server's reasons (English) apart. */
function showRunError(err) {
  const errs = err.problem?.errors || [];
  const names = errs.map((x) => fieldName(RUN_FIELDS, x.field ?? x.column)).filter(Boolean);
  const lead = errs.length ? t("run_invalid", { fields: [...new Set(names)].join(getLang() === "zh" ? "、" : ", ") })
    : t("error", { detail: err.problem ? t("request_rejected", { status: err.status ?? "?" }) : err.message });
  $("#run-error").replaceChildren(...problemNodes(err, lead, {
    where: (x) => t("field_invalid", { field: fieldName(RUN_FIELDS, x.field ?? x.column) }) }));
}

/** The label of the form input a problem's field path names (its last parts), else the path itself. */
function fieldName(fields, path) {
  const parts = String(path ?? "").split(/[/.]/).reverse();
  const id = parts.map((p) => fields[p]).find(Boolean);
  const label = id && document.querySelector(`label[for="${id}"]`);
  return label ? label.textContent.trim() : String(path ?? "");
}

function problemText(err) {
  const errs = err.problem?.errors;
  return errs?.length ? `${err.message}: ${errs.map((x) => `${x.field ?? x.column}: ${x.reason}`).join("; ")}` : err.message;
}

async function poll(id, { show = true } = {}) {
  const job = await pollJob(state.api, id, { onJob: (j) => { if (state.job?.id === id) { state.job = j; renderJob(j); } } });
  state.runResumed = null;
  renderRunMode();
  if (job.status !== "succeeded") return;  // failed (its error shown) or cancelled
  state.view = await state.jobRunner.result(state.api, job, state.portfolio, state.parcels);
  resetAccounts("run");  // the accounts page shows the new run's accounts
  renderResults();
  paintMap();
  if (show) selectTab("results", true);
}

async function cancelRun() {
  if (!state.job) return;
  $("#run-cancel").disabled = true;
  $("#run-status").textContent = t("cancelling");
  try {
    renderJob(await cancelJob(state.api, state.job.id));
  } catch (err) {
    showRunError(err);
  }
}

// ---------------------------------------------------------------------------------------------
// results
// ---------------------------------------------------------------------------------------------
function renderResults() {
  const v = state.view;
  $("#results").hidden = !v;
  $("#results-empty").hidden = !!v;
  $("#reports-empty").hidden = !!v;
  renderReports();
  if (!v) return;
  $("#result-id").textContent = v.id;
  $("#result-settings").textContent = `${v.title ? v.title + " · " : ""}${t("run_settings", v.settings)}`;
  const k = $("#kpis");
  k.replaceChildren();
  let unresolved = false;
  for (const [key, val, err, psd, psdInterval] of v.kpis) {
    const d = document.createElement("div");
    d.className = "kpi";
    d.dataset.kpi = key;
    d.dataset.value = String(val);
    const n = document.createElement("span");
    n.className = "kpi-value";
    n.textContent = fmt(val);
    d.append(n);
    // results stored before errors were reported have none: show the value alone
    const known = Array.isArray(err) ? err.some((x) => x !== undefined) : err !== undefined && err !== null;
    if (known) {
      // the Monte Carlo error: "± s.e.", or a quantile's 95 % interval (an open end: too few paths)
      d.dataset.err = JSON.stringify(err);
      const e = document.createElement("span");
      e.className = "kpi-err";
      const end = (x) => (Number.isFinite(x) ? fmt(x) : t("ci_unbounded"));
      e.textContent = Array.isArray(err) ? `95% CI ${end(err[0])} – ${end(err[1])}` : `± ${fmt(err)}`;
      d.append(e);
    }
    const sd = paramSd(psd, { mcSe: Array.isArray(err) ? null : err, on: v.paramOn, ci: psdInterval });
    if (sd) {
      // apart from the Monte Carlo error: the spread from the uncertain growth and peril parameters (a 0 the
      // estimator clipped reads "not resolved"; a run without parameter uncertainty shows none)
      d.dataset.psd = String(psd);
      d.dataset.psdResolved = String(sd.resolved);
      const ps = document.createElement("span");
      ps.className = "kpi-psd";
      ps.textContent = sd.kpiText ?? t("kpi_psd", { sd: sd.text });
      if (sd.ci) d.dataset.psdCi = JSON.stringify(sd.ci);
      if (!sd.resolved) { ps.title = t("psd_not_resolved_note"); unresolved = true; }
      d.append(ps);
    }
    const l = document.createElement("span");
    l.className = "kpi-label";
    l.textContent = t(key);
    d.append(l);
    k.appendChild(d);
  }
  $("#kpis-psd-note").hidden = !unresolved;
  $("#kpis-psd-note").textContent = unresolved ? t("psd_not_resolved_note") : "";
  const rows = v.counties;
  const stress = v.kind === "stress";
  $("#cap-county").textContent = t(stress ? "chart_county_stress" : "chart_county");
  barChart($("#chart-county"), {
    labels: rows.map((r) => placeName(r.county)), values: rows.map((r) => r.loss), errors: rows.map((r) => 2 * (r.se || 0)),
    baseline: stress ? rows.map((r) => r.base) : null, baselineLabel: t("legend_baseline"),
    title: t(stress ? "chart_county_stress" : "chart_county"), xLabel: t("axis_loss"),
    format: (x) => fmt(x, 0), errorLabel: t("err_2se"),
  });
  const hasExceed = v.exceedance.length > 0;
  $("#chart-exceed").toggleAttribute("hidden", !hasExceed);  // an SVG element has no .hidden property
  $("#exceed-note").hidden = hasExceed;
  $("#exceed-note").textContent = hasExceed ? "" : t("no_percentiles");
  exceedanceChart($("#chart-exceed"), { points: v.exceedance, title: t("chart_exceed"), xLabel: t("axis_loss"), yLabel: t("axis_prob") });
  const fanTitle = t({ fan: "chart_fan", value_fan: "chart_value_fan", value_path: "chart_value_path" }[v.fanKind]);
  $("#cap-fan").textContent = fanTitle;
  fanChart($("#chart-fan"), { rows: v.fan, title: fanTitle, xLabel: t("axis_year"),
    yLabel: t(v.fanKind === "fan" ? "axis_stock" : "axis_value"), baselineLabel: t("legend_baseline"),
    bandLabel: t(v.fanKind === "value_path" ? "desc_fan_se" : "desc_fan_pct") });
  const head = $("#county-table thead tr");
  head.replaceChildren();
  const th0 = document.createElement("th");
  th0.scope = "col";
  th0.textContent = t("col_county");
  head.appendChild(th0);
  for (const [, label] of v.countyColumns) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = "num";
    th.textContent = t(label);
    head.appendChild(th);
  }
  const tb = $("#county-table tbody");
  tb.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.county = r.county;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = placeName(r.county);
    tr.appendChild(th);
    for (const [col, , digits, kind] of v.countyColumns) {
      const val = r[col];
      const td = document.createElement("td");
      td.className = "num";
      td.dataset.col = col;
      td.dataset.value = val === null || val === undefined ? "" : String(val);
      td.textContent = kind === "pct" ? fmtPct(val, digits) : fmt(val, digits);
      tr.appendChild(td);
    }
    tb.appendChild(tr);
  }
}

// ---------------------------------------------------------------------------------------------
// accounts
// ---------------------------------------------------------------------------------------------
// Whose accounts: the last run's (a stress test's stored accounts, or a simulation's: its portfolio with the
// run's paths and seed), or the portfolio's (stock today, expected first-year sink and loss) with the paths
// and seed of the form. Either is asked at once (GET); a request larger than the server answers at once is
// refused (422 sync-limit-exceeded), and the page then says so and runs the same accounts as a job
// (POST /v1/accounts, mode job: progress, ETA, cancel), whose rows come from /v1/accounts/{id}/rows.
state.accForm = { paths: 64, seed: 20260101 };  // the form's defaults (20260101: the API's default seed)

function accountsSource() {
  const v = state.view;
  if (v?.accountsPath && state.accSource !== "portfolio") {
    return { kind: "run", path: v.accountsPath, query: v.accountsQuery || {}, job: v.accountsJob || null,
      key: `${v.accountsPath}?${new URLSearchParams(v.accountsQuery || {})}` };
  }
  const p = state.portfolio;
  if (!p) return null;
  const { paths, seed } = state.accForm;  // as last asked (the form's Compute button)
  const path = `/v1/portfolios/${p.id}/accounts`;
  const query = { paths, seed };
  return { kind: "portfolio", path, query, job: { portfolio_id: p.id, paths, seed }, key: `${path}?${new URLSearchParams(query)}` };
}

/** Forget the accounts shown (another portfolio, a new run): a load or job under way no longer draws. */
function resetAccounts(source) {
  if (source) state.accSource = source;
  state.accGen = (state.accGen || 0) + 1;
  state.accounts = null;
  state.accountsFor = null;
  state.accountsMeta = null;
  state.accLoading = false;
  state.accError = null;
  state.accNote = null;
  state.accJob = null;
  renderAccNote();
  $("#acc-status").textContent = "";
  $("#acc-meta").textContent = "";
  $("#accjob").hidden = true;
  setAccRunning(false);
  $("#accounts-table tbody").replaceChildren();
  state.tree = null;
  $("#acc-psd-note").hidden = true;
  renderAccountsForm();
}

/** Why the accounts come from a job, or why there are none: a sentence in the current language. */
function renderAccNote() {
  const note = $("#acc-note"), err = $("#acc-error");
  note.textContent = state.accNote?.() ?? "";
  err.textContent = state.accError?.() ?? "";
}

async function computeAccounts(e) {
  e.preventDefault();
  state.accForm = { paths: Number($("#acc-paths").value), seed: Number($("#acc-seed").value) };
  state.accSource = "portfolio";
  await loadAccounts({ force: true });
}

async function cancelAccounts() {
  if (!state.accJob) return;
  $("#acc-cancel").disabled = true;
  $("#accjob-status").textContent = t("cancelling");
  try {
    const job = await cancelJob(state.api, state.accJob.id);
    if (state.accJob?.id === job.id) renderJobBlock("accjob", job);
  } catch (err) {
    $("#accjob-error").textContent = t("error", { detail: problemText(err) });
  }
}

function setAccRunning(on) {
  $("#acc-compute").disabled = on;
  $("#acc-source").disabled = on;
  $("#acc-cancel").disabled = !on;
  $("#acc-cancel").hidden = !on;
}

function renderAccountsForm() {
  const v = state.view;
  const hasRun = !!v?.accountsPath;
  $("#acc-source-field").hidden = !hasRun;
  const sel = $("#acc-source");
  sel.replaceChildren();
  if (hasRun) {
    sel.add(new Option(t("acc_source_run", { id: v.id }), "run"));
    sel.add(new Option(t("acc_source_portfolio"), "portfolio"));
    sel.value = state.accSource === "portfolio" ? "portfolio" : "run";
  }
  const portfolio = !hasRun || state.accSource === "portfolio";
  $("#acc-portfolio-fields").hidden = !portfolio;
  $("#acc-form-help").hidden = !portfolio;
}

/** Every row of an accounts answer (AccountsOut, or a stress test's), page by page; null if the page moved on. */
async function accountsRows(path, query, stale) {
  const rows = [];
  let offset = 0, first = null;
  for (;;) {
    const d = await state.api.get(path, { ...query, limit: 500, offset });
    if (stale()) return null;
    first ??= d;
    rows.push(...d.rows.items);
    if (d.rows.next_offset === null || d.rows.next_offset === undefined) break;
    offset = d.rows.next_offset;
  }
  const prov = first.provenance || {};
  return { rows, meta: { paths: first.sink_paths ?? prov.paths ?? null, seed: first.seed ?? prov.seed ?? null,
    model: prov.model_version ?? "?", sha: (prov.parameter_sha256 ?? "").slice(0, 12) } };
}

/** An accounts job that ended without accounts: cancelled, or failed (its error is in the job block). */
class JobEnded extends Error {
  constructor(job) { super(job.status); this.job = job; }
}

const problemKind = (err) => (err instanceof ApiError ? String(err.problem?.type || "").split("/").pop() : "");

/** Run the accounts as a job (POST /v1/accounts) and read its rows; null if the page moved on. */
/** The same accounts run before (same portfolio data, parameters, paths and seed), kept or still under way:
 * `{ id }` of a kept run, `{ job }` of a queued or running one, or null. Opening the page again, or another
 * tab, then shows them instead of computing them twice. */
async function existingAccounts(job) {
  const p = state.portfolio;
  const same = (r) => r && r.portfolio_id === job.portfolio_id && r.paths === job.paths && r.seed === job.seed;
  const [kept, model] = await Promise.all([
    state.api.get("/v1/accounts", { portfolio_id: job.portfolio_id, limit: 100 }),
    p ? state.api.get(`/v1/models/${p.region}`) : null]);
  const hit = (kept.items || []).find((x) => same(x.audit.request) && x.audit.portfolio_sha256 === p?.data_sha256
    && x.audit.parameter_sha256 === model?.sha256);
  if (hit) return { id: hit.id };
  for (const status of ["running", "queued"]) {
    const jobs = await state.api.get("/v1/jobs", { status, limit: 100 });
    const live = (jobs.items || []).find((j) => j.kind === "accounts" && same(j.request));
    if (live) return { job: live };
  }
  return null;
}

async function accountsJob(src, stale) {
  const found = await existingAccounts(src.job);
  if (stale()) return null;
  const { status, body } = found?.id ? { status: 201, body: { id: found.id } }
    : found?.job ? { status: 202, body: found.job }
      : await state.api.post("/v1/accounts", { ...src.job, mode: "job" });
  if (stale()) return null;
  let id = body.id;
  if (status === 202) {
    state.accJob = body;
    $("#accjob").hidden = false;
    renderJobBlock("accjob", body);
    setAccRunning(true);
    $("#acc-status").textContent = "";
    const job = await pollJob(state.api, body.id, { stop: stale, onJob: (j) => { state.accJob = j; renderJobBlock("accjob", j); } });
    if (!job) return null;
    setAccRunning(false);
    if (job.status !== "succeeded") throw new JobEnded(job);
    id = job.result_id;
  }
  $("#acc-status").textContent = t("loading_accounts_rows");
  const out = await accountsRows(`/v1/accounts/${id}/rows`, {}, stale);
  if (out) out.meta.id = id;
  return out;
}

/** The sentence for a refused request: too large to answer at once (the page runs a job), or over the role's limit. */
function refusalText(err, src) {
  const pr = err.problem || {};
  const paths = src.job?.paths ?? src.query?.paths;
  const parcels = paths && pr.cells ? Math.round(pr.cells / paths) : state.portfolio?.n_parcels;
  const vars = { parcels: fmt(parcels), paths: fmt(paths), cells: fmt(pr.cells), limit: fmt(pr.limit), max: fmt(pr.max_paths) };
  if (problemKind(err) === "limit-exceeded") return t("acc_role_limit", vars);
  return t(pr.max_paths >= 1 ? "acc_sync_refused" : "acc_sync_refused_none", vars);
}

async function loadAccounts({ force = false } = {}) {
  renderAccountsForm();
  const src = accountsSource();
  if (!src) return;
  if (!force && state.accountsFor === src.key && (state.accounts || state.accLoading || state.accError)) {
    if (state.accounts) renderAccounts();
    return;
  }
  resetAccounts();
  const gen = state.accGen;
  const stale = () => gen !== state.accGen;
  state.accountsFor = src.key;
  state.accLoading = true;
  const st = $("#acc-status");
  st.textContent = t("loading_accounts");
  let out = null;
  try {
    try {
      out = await accountsRows(src.path, src.query, stale);
    } catch (err) {
      if (!(src.job && problemKind(err) === "sync-limit-exceeded")) throw err;
      // too large to answer in the request: say so, and compute the same accounts as a job
      state.accNote = () => refusalText(err, src);
      renderAccNote();
      out = await accountsJob(src, stale);
    }
  } catch (err) {
    if (stale()) return;
    state.accLoading = false;
    setAccRunning(false);
    st.textContent = "";
    // a refusal by size reads as a sentence, not as the API's problem; other errors with their detail
    state.accError = err instanceof JobEnded ? () => (err.job.status === "cancelled" ? t("acc_job_cancelled") : "")
      : problemKind(err) === "limit-exceeded" ? () => refusalText(err, src)
        : () => t("error", { detail: problemText(err) });
    renderAccNote();
    if (!state.accJob) state.accountsFor = null;  // no job was run: opening the page again asks again
    return;
  }
  if (!out || stale()) return;
  state.accLoading = false;
  state.accounts = out.rows;
  state.accountsMeta = out.meta;
  st.textContent = "";
  renderAccounts();
}

function renderAccounts() {
  if (!state.accounts) return;
  const m = state.accountsMeta;
  $("#acc-meta").textContent = !m ? "" : (m.id ? `${t("acc_meta_id", { id: m.id })} · ` : "") +
    t("acc_meta", { paths: m.paths === null ? "?" : fmt(m.paths), seed: m.seed ?? "?", model: m.model, sha: m.sha });
  $("#acc-meta").dataset.id = m?.id || "";
  // the columns of what is shown: a run's own (a stress test's scenario accounts) or the portfolio's
  const fromRun = accountsSource()?.kind === "run";
  const spec = (fromRun && state.view.accountsColumns) || SIM_ACCOUNT_COLUMNS;
  $("#acc-help").textContent = fromRun && state.view?.kind === "stress"
    ? t("accounts_help_stress", { scenario: state.view.title || scenarioTitle(state.view.scenario) || state.view.scenario }) : t("accounts_help");
  const head = $("#accounts-table thead tr");
  head.replaceChildren();
  for (const [label, cls] of [["col_name", ""], ["col_level", ""], ...spec.map(([, l]) => [l, "num"])]) {
    const th = document.createElement("th");
    th.scope = "col";
    if (cls) th.className = cls;
    th.textContent = t(label);
    head.appendChild(th);
  }
  // a parameter sd column reads against the same figure's Monte Carlo error column (accounts always draw
  // the parameters: the service runs them with the engine's default switches)
  let unresolved = false, withCi = false;
  const cols = spec.map(([key, , digits, kind]) => {
    if (kind !== "psd") return { key, fmt: (v) => fmt(v, digits) };
    const se = key.replace(/parameter_sd$/, "mc_se");
    // with the sd's own 95 % interval where the row carries it: "sd [low–high]", "not resolved [0–high]"
    const ci = (row) => [row?.[`${key}_ci95_low`], row?.[`${key}_ci95_high`]];
    return { key, fmt: (v, row) => {
      const sd = paramSd(v, { mcSe: row?.[se] ?? null, digits, ci: ci(row) });
      if (sd && !sd.resolved) unresolved = true;
      if (sd?.ci) withCi = true;
      return sd ? sd.full : fmt(v, digits);
    }, resolved: (v, row) => paramSd(v, { mcSe: row?.[se] ?? null })?.resolved };
  });
  state.tree = renderTree($("#accounts-table tbody"), buildTree(state.accounts, (spec.find(([k]) => /stock_(end|bef)/.test(k)) || spec[0])[0]),
    { columns: cols, t, place: placeName, openDepth: 2 });
  const notes = [unresolved ? t("psd_not_resolved_note") : "", withCi ? t("psd_ci_note") : ""].filter(Boolean);
  $("#acc-psd-note").hidden = !notes.length;
  $("#acc-psd-note").textContent = notes.join(" ");
}

// ---------------------------------------------------------------------------------------------
// reports
// ---------------------------------------------------------------------------------------------
function renderReports() {
  const ul = $("#report-list");
  ul.replaceChildren();
  const v = state.view;
  if (!v) return;
  for (const r of v.reports(state.openapi)) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.className = "secondary";
    b.dataset.report = r.id;
    b.textContent = r.labelKey ? t(r.labelKey) : t("dl_report", { name: r.name });
    b.addEventListener("click", async () => {
      const st = $("#report-status");
      st.textContent = t("downloading");
      try {
        const out = await state.api.download(r.path, r.file, r.query);
        st.textContent = t("downloaded", { file: `${out.name} (${fmt(out.size)} B)` });
      } catch (err) {
        st.textContent = t("error", { detail: problemText(err) });
      }
    });
    li.appendChild(b);
    ul.appendChild(li);
  }
}

// ---------------------------------------------------------------------------------------------
// language
// ---------------------------------------------------------------------------------------------
function renderLanguage() {
  applyI18n();
  $("#lang-toggle").textContent = t("lang_other");
  renderWho();
  if (state.api) {
    renderPortfolioSelect(state.portfolio?.id);
    renderPortfolioSummary();
    renderRunKinds();
    renderRunOptions();
    renderRunMode();
    if (state.job) renderJob(state.job);
    renderResults();
    if (state.parcels.length) paintMap();
    renderAccountsForm();
    renderAccNote();
    if (state.accJob) renderJobBlock("accjob", state.accJob);
    if (state.accounts) renderAccounts();
    finance.render();
  }
}

// ---------------------------------------------------------------------------------------------
// start
// ---------------------------------------------------------------------------------------------
function init() {
  mountJobBlocks();  // the run's and the accounts' progress blocks, from one template
  state.map = new ParcelMap($("#map"), $("#map-legend"));
  finance = installFinance(state);
  installTabs();
  $("#lang-toggle").addEventListener("click", () => { setLang(getLang() === "zh" ? "en" : "zh"); renderLanguage(); });
  $("#signin-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = $("#api-key").value.trim();
    const err = $("#signin-error");
    err.textContent = t("signing_in");
    try {
      await signIn(key);
      err.textContent = "";
      $("#api-key").value = "";
      await afterSignIn();
      $(`#tab-${landingTab()}`).focus();
    } catch (ex) {
      err.textContent = ex.message;
    }
  });
  $("#sign-out").addEventListener("click", () => { forgetKey(); rememberRunJob(null); window.location.reload(); });
  $("#portfolio-select").addEventListener("change", (e) => choosePortfolio(e.target.value));
  $("#upload-form").addEventListener("submit", upload);
  document.querySelectorAll('input[name="colour"]').forEach((r) => r.addEventListener("change", (e) => {
    state.colour = e.target.value;
    paintMap();
  }));
  $("#zoom-in").addEventListener("click", () => state.map.zoom(1.25));
  $("#zoom-out").addEventListener("click", () => state.map.zoom(0.8));
  $("#zoom-reset").addEventListener("click", () => state.map.reset());
  $("#run-form").addEventListener("submit", startRun);
  $("#run-kind").addEventListener("change", async (e) => {
    state.runner = RUNNERS[e.target.value];
    $("#run-scenario").value = "";
    await loadRunOptions();
  });
  $("#run-cancel").addEventListener("click", cancelRun);
  $("#acc-form").addEventListener("submit", computeAccounts);
  $("#acc-cancel").addEventListener("click", cancelAccounts);
  $("#acc-source").addEventListener("change", (e) => { state.accSource = e.target.value; loadAccounts(); });
  $("#acc-expand").addEventListener("click", () => state.tree?.expandAll());
  $("#acc-collapse").addEventListener("click", () => state.tree?.collapseAll());
  renderLanguage();
  const key = savedKey();
  if (key) {
    signIn(key).then(afterSignIn).catch(() => { forgetKey(); showApp(false); });
  }
  document.body.dataset.ready = "true";
}

init();
