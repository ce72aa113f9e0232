// The two finance pages: value a carbon-pledge loan (POST /v1/collateral-valuations, bank and bureau)
// and quote an insurance cover (POST /v1/quotes, insurer and bureau) on the chosen portfolio. A small
// request is answered at once (201); a large one becomes a job (202) that is polled like the runners'.
// A problem+json error is shown next to the form field its `errors[].field` names. Every number on the
// page carries its exact value in a data-value attribute (the browser tests compare them with the API).

import { ApiError } from "./api.js";
import { caseLabel, driverLabel, fmt, fmtPct, getLang, paramSd, schemeName, subsidyNote, t } from "./i18n.js";
import { barChart, exceedanceChart, fanChart } from "./charts.js";
import { cancelJob } from "./jobs.js";

const $ = (sel) => document.querySelector(sel);
const POLL_MS = 400;

// request field (last path segment of errors[].field) -> the input that shows its error
const LOAN_FIELDS = {
  project_id: "loan-pledge", parcel_ids: "loan-pledge", amount_cny: "loan-amount", term_years: "loan-term",
  crediting_horizon_years: "loan-term", interest_rate: "loan-rate", borrower_pd: "loan-pd",
  forest_right_mortgage_cny: "loan-mortgage", paths: "loan-paths", attribution_paths: "loan-paths", seed: "loan-seed",
};
const QUOTE_FIELDS = {
  kind: "quote-kind", price_cny_per_tco2e: "quote-price", perils: "quote-perils", deductible: "quote-deductible",
  amount: "quote-deductible", limit_cny: "quote-limit", trigger_fraction: "quote-trigger", paths: "quote-paths",
  seed: "quote-seed",
};

/** Reads an optional number input: null when empty. */
function num(id) {
  const v = $(`#${id}`).value.trim();
  return v === "" ? null : Number(v);
}

/** The body of POST /v1/collateral-valuations from the loan form (rates and PD are entered in %). */
export function loanRequest(portfolioId) {
  const terms = { amount_cny: num("loan-amount"), term_years: num("loan-term"), interest_rate: num("loan-rate") };
  if (terms.interest_rate !== null) terms.interest_rate /= 100;
  const pd = num("loan-pd");
  if (pd !== null) terms.borrower_pd = pd / 100;
  const mortgage = num("loan-mortgage");
  if (mortgage !== null) terms.forest_right_mortgage_cny = mortgage;
  const body = { portfolio_id: portfolioId, terms, paths: num("loan-paths"), seed: num("loan-seed"), mode: "auto" };
  const project = $("#loan-pledge").value;
  if (project) body.project_id = project;
  if ($("#loan-attribution").checked) body.attribution = true;
  return body;
}

/** The body of POST /v1/quotes from the quote form. */
export function quoteRequest(portfolioId) {
  const kind = $("#quote-kind").value;
  const cover = { kind };
  const price = num("quote-price");
  if (price !== null) cover.price_cny_per_tco2e = price;
  const limit = num("quote-limit");
  if (limit !== null) cover.limit_cny = limit;
  if (kind === "stock-loss") {
    cover.perils = [...document.querySelectorAll('#quote-perils input[name="peril"]:checked')].map((c) => c.value);
    const ded = num("quote-deductible");
    if (ded !== null) cover.deductible = { amount: ded, unit: "cny", basis: "annual" };
  } else {
    const trig = num("quote-trigger");
    if (trig !== null) cover.trigger_fraction = trig;
  }
  return { portfolio_id: portfolioId, cover, paths: num("quote-paths"), seed: num("quote-seed"), mode: "auto" };
}

// ---------------------------------------------------------------------------------------------
// shared: submit, poll a job, errors next to fields
// ---------------------------------------------------------------------------------------------
function clearErrors(prefix) {
  document.querySelectorAll(`#${prefix}-form .field-error`).forEach((p) => { p.replaceChildren(); });
  document.querySelectorAll(`#${prefix}-form [aria-invalid]`).forEach((e) => e.removeAttribute("aria-invalid"));
  $(`#${prefix}-error`).textContent = "";
}

/** The text of the label (or legend) of the input `id`, without its trailing colon. */
function labelOf(id) {
  const el = document.querySelector(`label[for="${id}"]`) || document.querySelector(`#${id} > legend`);
  return el ? el.textContent.trim() : id;
}

/** A span of the server's own words (English): a second line under the page's lead-in. */
function serverDetail(text) {
  const s = document.createElement("span");
  s.className = "server-detail";
  s.lang = "en";
  s.textContent = text;
  return s;
}

/** Puts each of a problem's errors next to the field it names -- a translated lead-in naming the field, the
 * server's reason (English) on a line under it --; the rest, and the detail, in the form's alert. */
export function showProblem(prefix, fields, err) {
  const rest = [];
  const errs = err instanceof ApiError ? (err.problem?.errors || []) : [];
  for (const e of errs) {
    const parts = String(e.field ?? e.column ?? "").split(/[/.]/).reverse();
    const id = parts.map((p) => fields[p]).find(Boolean);
    if (id) {
      const p = $(`#${id}-error`);
      if (!p.querySelector(".field-error-lead")) {
        const lead = document.createElement("span");
        lead.className = "field-error-lead";
        lead.textContent = t("field_invalid", { field: labelOf(id) });
        p.appendChild(lead);
      }
      p.appendChild(serverDetail(e.reason));
      $(`#${id}`).setAttribute("aria-invalid", "true");
    } else {
      rest.push(`${e.field ?? ""}: ${e.reason}`);
    }
  }
  const alert = $(`#${prefix}-error`);
  if (err instanceof ApiError) {
    // the page's words first; the server's detail (and errors not next to a field) on a line of their own. Where
    // every error is shown next to its field, the alert says so and repeats none of them (the server's detail
    // then only restates them, with raw request paths such as body/terms/term_years)
    const lead = document.createTextNode(t("error", { detail: t("request_rejected", { status: err.status }) }));
    if (errs.length && !rest.length) alert.replaceChildren(lead, document.createTextNode(` ${t("fields_marked")}`));
    else alert.replaceChildren(lead, serverDetail(rest.length ? rest.join("; ") : err.message));
  } else {
    alert.textContent = t("error", { detail: err.message });
  }
  const first = document.querySelector(`#${prefix}-form [aria-invalid="true"]`);
  if (first) first.focus();
}

/** A finance job the user cancelled (its Cancel button): no new result, the previous one stays. */
class JobCancelled extends Error {
  constructor(job) { super(t("fin_cancelled")); this.job = job; }
}

/** POST, then for a 202 job poll it to the end, with a Cancel button (POST /v1/jobs/{id}/cancel) while it runs;
 * returns the finance result (FinanceResultOut). */
/** A valuation's or quote's failure on its page: a cancelled job says so; anything else is a problem shown next to
 * the fields it names (showProblem). */
function showFailure(prefix, fields, err) {
  const status = $(`#${prefix}-status`);
  if (err instanceof JobCancelled) {
    status.textContent = t("fin_cancelled");
    status.dataset.status = "cancelled";
  } else {
    status.textContent = "";
    showProblem(prefix, fields, err);
  }
}

async function submit(api, prefix, path, body, onJob) {
  const bar = $(`#${prefix}-progress`);
  const status = $(`#${prefix}-status`);
  status.textContent = t("fin_computing");
  delete status.dataset.done;
  delete status.dataset.status;
  const { status: code, body: out } = await api.post(path, body);
  if (code !== 202) return out;
  bar.hidden = false;
  bar.value = 0;
  const cancel = $(`#${prefix}-cancel`);
  cancel.hidden = false;
  cancel.disabled = false;
  let pressed = false;  // by the keyboard or the pointer: the focus it had goes to the status line afterwards
  cancel.onclick = async () => {
    pressed = document.activeElement === cancel;
    cancel.disabled = true;  // (a disabled button loses the focus: the flag remembers it)
    status.textContent = t("cancelling");
    try {
      await cancelJob(api, out.id);
    } catch (err) {
      // a 409: the job had ended meanwhile, and the poll shows how (its result, or its failure); anything else is news
      if (err?.status !== 409) $(`#${prefix}-error`).textContent = t("error", { detail: err.message });
    }
  };
  try {
    return await pollFinanceJob(api, out, bar, status, onJob);
  } finally {
    // the keyboard's focus on the Cancel button that now goes: to the status line, which says how the job ended
    const refocus = pressed || document.activeElement === cancel;
    cancel.hidden = true;
    cancel.disabled = true;
    cancel.onclick = null;
    if (refocus) {
      status.tabIndex = -1;
      status.focus();
    }
  }
}

async function pollFinanceJob(api, out, bar, status, onJob) {
  for (;;) {
    const job = await api.get(`/v1/jobs/${out.id}`);
    onJob(job);
    bar.value = Math.max(0, Math.min(1, job.progress || 0));
    status.textContent = t("fin_job", { id: job.id, status: t(`st_${job.status}`), pct: Math.round(100 * bar.value) });
    status.dataset.status = job.status;
    if (job.status === "succeeded") return api.get(`/v1/jobs/${job.id}/result`);
    if (job.status === "failed" && job.error && typeof job.error === "object" && (job.error.detail || job.error.title)) {
      // a failed job's error is a problem document: its field errors go next to the form's inputs
      const detail = t("job_failed", { error: job.error.detail || job.error.title });
      throw new ApiError(job.error.status || 500, { ...job.error, detail });
    }
    if (job.status === "cancelled") throw new JobCancelled(job);
    if (job.status === "failed") throw new Error(t("job_failed", { error: t(`st_${job.status}`) }));
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

// ---------------------------------------------------------------------------------------------
// rendering helpers
// ---------------------------------------------------------------------------------------------
/** KPI tiles: [key, value, text, sub-text?, flags?] each with its exact value in data-value; flags.notResolved
 * marks a figure the run could not resolve (data-not-resolved, a flag style). */
function kpis(box, items) {
  box.replaceChildren();
  for (const [key, value, text, sub, flags] of items) {
    const d = document.createElement("div");
    d.className = flags?.notResolved ? "kpi kpi-flag" : "kpi";
    d.dataset.kpi = key;
    if (flags?.notResolved) d.dataset.notResolved = "true";
    d.dataset.value = value === null || value === undefined ? "" : String(value);
    const n = document.createElement("span");
    n.className = "kpi-value";
    n.textContent = text;
    const l = document.createElement("span");
    l.className = "kpi-label";
    l.textContent = t(key);
    d.append(n, l);
    if (sub) {
      const s = document.createElement("span");
      s.className = "kpi-sub";
      s.textContent = sub;
      d.appendChild(s);
    }
    box.appendChild(d);
  }
}

/** A definition list of [key, value, text, flags?] with data-key / data-value on each <dd> (flags.notResolved:
 * data-not-resolved; label: the <dt>'s text where it is not t(key)). */
function kv(dl, items) {
  dl.replaceChildren();
  for (const [key, value, text, flags, label] of items) {
    const dt = document.createElement("dt");
    dt.textContent = label ?? t(key);
    const dd = document.createElement("dd");
    dd.dataset.key = key;
    dd.dataset.value = value === null || value === undefined ? "" : String(value);
    dd.textContent = text;
    if (flags?.notResolved) { dd.dataset.notResolved = "true"; dd.classList.add("flag"); }
    dl.append(dt, dd);
  }
}

/** A table from records: columns [field, labelKey, formatter(value) -> text, numeric?]. */
function table(tbl, rows, columns) {
  const head = document.createElement("tr");
  for (const [, label, , numeric] of columns) {
    const th = document.createElement("th");
    th.scope = "col";
    if (numeric !== false) th.className = "num";
    th.textContent = t(label);
    head.appendChild(th);
  }
  tbl.tHead.replaceChildren(head);
  const tb = tbl.tBodies[0];
  tb.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    columns.forEach(([field, , f, numeric], i) => {
      const c = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) c.scope = "row";
      if (numeric !== false) c.className = "num";
      c.dataset.col = field;
      const v = r[field];
      c.dataset.value = v === null || v === undefined ? "" : String(v);
      c.textContent = f(v, r);
      tr.appendChild(c);
    });
    tb.appendChild(tr);
  }
}

const cny = (v) => fmt(v, 0);
const pct = (d) => (v) => fmtPct(v, d);
const yesNo = (v) => t(v ? "yes" : "no");

async function download(api, statusSel, path, file) {
  const st = $(statusSel);
  st.textContent = t("downloading");
  try {
    const out = await api.download(path, file);
    st.textContent = t("downloaded", { file: `${out.name} (${fmt(out.size)} B)` });
  } catch (err) {
    st.textContent = t("error", { detail: err.message });
  }
}

// ---------------------------------------------------------------------------------------------
// the loan page
// ---------------------------------------------------------------------------------------------
function renderPledgeOptions(state) {
  const sel = $("#loan-pledge");
  const cur = sel.value;
  sel.replaceChildren();
  const p = state.portfolio;
  sel.add(new Option(p ? t("loan_whole_portfolio", { n: fmt(p.n_parcels), ha: fmt(p.area_ha, 1) }) : "—", ""));
  const projects = new Map();
  for (const x of state.parcels) {
    const id = x.project_id;
    if (id === null || id === undefined || id === "") continue;
    const e = projects.get(id) || { n: 0, ha: 0 };
    e.n += 1;
    e.ha += x.area_ha || 0;
    projects.set(id, e);
  }
  for (const [id, e] of [...projects].sort((a, b) => String(a[0]).localeCompare(String(b[0])))) {
    sel.add(new Option(t("loan_project_option", { id, n: fmt(e.n), ha: fmt(e.ha, 1) }), id));
  }
  if ([...sel.options].some((o) => o.value === cur)) sel.value = cur;
}

/** The figures of a valuation flagged not resolved (sizing first, then the tail), each {field, label}, and the
 * paths that would resolve them all (null: fewer than 5 parameter sets, where the paths are not the remedy). */
function unresolved(v) {
  const sz = v.sizing || {}, risk = v.risk || {};
  const label = (field) => {
    const m = /^max_loan_by_target_cny\.(.+)$/.exec(field);
    if (m) return t("nr_fig_max_loan_target", { p: fmtPct(Number(m[1]), 1) });
    const key = `nr_fig_${field}`;
    return t(key) === key ? field : t(key);
  };
  const figures = [...(sz.not_resolved || []), ...(risk.not_resolved || [])].map((field) => ({ field, label: label(field) }));
  const needs = [sz.not_resolved_paths_needed, risk.not_resolved_paths_needed].filter((x) => Number.isFinite(x));
  return { figures, needed: needs.length ? Math.max(...needs) : null };
}

/** A probability's sub-text: "± s.e.", or where it is exactly 0 or 1 its rule-of-three 95 % interval. */
function probSub(p, se, bound, digits = 1) {
  if (bound) return t("zero_one", { p: fmtPct(p, digits), lo: fmtPct(bound[0], 2), hi: fmtPct(bound[1], 2) });
  return seText(se, (x) => fmtPct(x, digits));
}

/** A probability in a table cell: the value, and its rule-of-three interval where it is exactly 0 or 1. */
function probCell(p, se, bound) {
  if (bound) return t("zero_one_cell", { p: fmtPct(p, 1), lo: fmtPct(bound[0], 2), hi: fmtPct(bound[1], 2) });
  return seCell(p, se, (x) => fmtPct(x, 1));
}

/** "value [low–high]": a figure with its 95 % interval in a cell (an open end: unbounded; no interval: the value). */
function ciCell(x, lo, hi, format) {
  if ((lo === null || lo === undefined) && (hi === null || hi === undefined)) return format(x);
  const end = (e) => (e === null || e === undefined ? t("ci_unbounded") : format(e));
  return t("ci_cell", { v: format(x), lo: end(lo), hi: end(hi) });
}

/** The paths that share a parameter draw in the service's runs (the engine's default parameter_set_size): a
 * probability over `paths` counts paths / SET_SIZE independent units. */
const SET_SIZE = 4;

/** The rule-of-three 95 % interval of a probability estimated at exactly 0 or 1 over `units` independent units
 * ([0, 3/n] or [1 - 3/n, 1], as the engine's finance_engine.collateral._zero_one_bounds); null otherwise. */
export function zeroOneBound(p, units) {
  const n = Math.max(1, Math.floor(units || 1));
  const b = Math.min(3 / n, 1);
  if (p === 0) return [0, b];
  if (p === 1) return [1 - b, 1];
  return null;
}

/** The independent units of a loan valuation's probabilities at `paths` paths: from the result's own rule-of-three
 * bounds where it has one (3 / n), else paths / SET_SIZE. */
function loanUnits(v, paths) {
  const own = Object.values({ ...(v.risk?.zero_one_bounds_95 || {}), ...(v.sizing?.zero_one_bounds_95 || {}) })[0];
  const width = own ? own[1] - own[0] : null;
  const setSize = width > 0 && width < 1 && v.provenance?.paths ? v.provenance.paths / Math.round(3 / width) : SET_SIZE;
  return Math.max(1, Math.floor(paths / Math.max(1, setSize)));
}

/** "value ± s.e." in a cell (the value alone where the result has no error). */
function seCell(x, se, format) {
  return se === null || se === undefined ? format(x) : `${format(x)} ± ${format(se)}`;
}

function renderLoan(fin) {
  const r = fin.loan;
  $("#loan-results").hidden = !r;
  if (!r) return;
  const v = r.result;
  const vt = v.value_today, risk = v.risk, sz = v.sizing, terms = v.terms;
  $("#loan-id").textContent = r.id;
  $("#loan-settings").textContent = t("loan_settings", {
    pledge: r.audit?.request?.project_id || t("loan_whole"), parcels: fmt(vt.pledged_parcels),
    ha: fmt(vt.pledged_area_ha, 1), paths: fmt(v.provenance?.paths), seed: v.provenance?.seed });
  // the value's parameter sd (a 0 the estimator clipped reads "not resolved"; none without parameter
  // uncertainty) and the largest safe loan's 95 % interval (an open end: unbounded)
  const psd = paramSd(vt.parameter_sd_cny, { mcSe: vt.mc_se_cny,
    ci: [vt.parameter_sd_ci95_low_cny, vt.parameter_sd_ci95_high_cny] });
  // its 95 % interval below the tile (a clipped 0: after the "not resolved" note, from 0 to an upper bound)
  const psdCiSub = psd?.ci ? t("psd_ci_sub", { lo: cny(psd.ci[0]), hi: cny(psd.ci[1]) }) : null;
  const [maxLo, maxHi] = sz.max_loan_ci95_cny || [null, null];
  const end = (x) => (x === null || x === undefined ? t("ci_unbounded") : cny(x));
  // figures the run could not resolve (too few paths beyond the quantile for the value regression's own error):
  // flagged where they are shown, with the paths that would resolve them
  const nr = unresolved(v);
  const maxNr = sz.max_loan_resolved === false;
  const maxSub = [t("at_shortfall", { p: fmtPct(sz.target_shortfall_probability, 1) }),
    ...(maxNr ? [Number.isFinite(sz.max_loan_paths_needed) ? t("nr_sub", { n: fmt(sz.max_loan_paths_needed) })
      : t("nr_sub_sets")] : [])].join(" · ");
  const flag = maxNr ? { notResolved: true } : null;
  // a probability estimated at exactly 0 or 1: its rule-of-three 95 % interval, not "± 0.0 %"
  const zo = { ...(risk.zero_one_bounds_95 || {}), ...(sz.zero_one_bounds_95 || {}) };
  kpis($("#loan-kpis"), [
    ["kpi_value_today", vt.value_cny, cny(vt.value_cny), t("pm_se", { se: cny(vt.mc_se_cny) })],
    ["kpi_value_se", vt.mc_se_cny, cny(vt.mc_se_cny)],
    ["kpi_ci95_low", vt.ci95_cny[0], cny(vt.ci95_cny[0])],
    ["kpi_ci95_high", vt.ci95_cny[1], cny(vt.ci95_cny[1])],
    ...(psd ? [["kpi_value_psd", psd.value, psd.text,
      [psd.resolved ? null : t("psd_not_resolved_note"), psdCiSub].filter(Boolean).join(" · ") || null]] : []),
    ["kpi_max_loan", sz.max_loan_cny, cny(sz.max_loan_cny), maxSub, flag],
    ...(sz.max_loan_ci95_cny ? [["kpi_max_loan_ci95_low", maxLo, end(maxLo), maxNr ? t("nr_flag") : null, flag],
      ["kpi_max_loan_ci95_high", maxHi, end(maxHi), maxNr ? t("nr_flag") : null, flag]] : []),
    // the LTV at origination is the amount over the value today: its 95 % interval is the amount over the value's
    ["kpi_ltv0", risk.ltv_at_origination, fmtPct(risk.ltv_at_origination, 1),
      vt.ci95_cny?.[0] > 0 && vt.ci95_cny?.[1] > 0 ? t("psd_ci_sub", { lo: fmtPct(terms.amount_cny / vt.ci95_cny[1], 1),
        hi: fmtPct(terms.amount_cny / vt.ci95_cny[0], 1) }) : null],
    ["kpi_p_below_any", risk.p_value_below_balance_any_time, fmtPct(risk.p_value_below_balance_any_time, 1),
      probSub(risk.p_value_below_balance_any_time, risk.p_value_below_balance_any_time_mc_se, zo.p_value_below_balance_any_time)],
    ["kpi_p_any_call", risk.p_any_top_up_call, fmtPct(risk.p_any_top_up_call, 1),
      probSub(risk.p_any_top_up_call, risk.p_any_top_up_call_mc_se, zo.p_any_top_up_call)],
    // the practice loan (pledge rate x value today): its error is the value's, times the pledge rate
    ...(Number.isFinite(sz.practice_loan_cny) ? [["kpi_practice_loan", sz.practice_loan_cny, cny(sz.practice_loan_cny),
      t("practice_sub", { se: cny(terms.pledge_rate * vt.mc_se_cny), rate: fmtPct(terms.pledge_rate, 0) })]] : []),
    ["kpi_p_short_practice", sz.p_shortfall_at_practice_loan, fmtPct(sz.p_shortfall_at_practice_loan, 1),
      probSub(sz.p_shortfall_at_practice_loan, sz.p_shortfall_at_practice_loan_mc_se, zo.p_shortfall_at_practice_loan)],
    ["kpi_stock_today", vt.stock_today_tco2e, fmt(vt.stock_today_tco2e, 0)],
    ["kpi_amount", terms.amount_cny, cny(terms.amount_cny)],
  ]);
  // the requested loan against the largest safe loan and the practice loan (pledge rate x value today)
  const limit = $("#loan-limit");
  const over = [];
  if (sz.requested_loan_within_limit === false) {
    over.push(t("loan_over_limit", { amount: cny(terms.amount_cny), max: cny(sz.max_loan_cny),
      p: fmtPct(sz.target_shortfall_probability, 1), lo: end(maxLo), hi: end(maxHi) }));
    if (maxNr) over.push(t("loan_over_limit_nr"));
  }
  if (sz.requested_ltv_exceeds_pledge_rate === true) {
    over.push(t("loan_over_pledge", { practice: cny(sz.practice_loan_cny), rate: fmtPct(terms.pledge_rate, 0),
      ltv: fmtPct(risk.ltv_at_origination, 1) }));
  }
  limit.hidden = !over.length;
  limit.textContent = over.join(" ");
  limit.dataset.withinLimit = String(sz.requested_loan_within_limit);
  limit.dataset.exceedsPledgeRate = String(sz.requested_ltv_exceeds_pledge_rate);
  // the largest safe loan at each target shortfall probability, with its 95 % interval (flagged where not resolved)
  const targets = Object.keys(sz.max_loan_by_target_cny || {}).sort((a, b) => Number(a) - Number(b));
  $("#loan-targets-box").hidden = !targets.length;
  kv($("#loan-targets"), targets.map((k) => {
    const x = sz.max_loan_by_target_cny[k], ci = sz.max_loan_by_target_ci95_cny?.[k] || [null, null];
    const text = t("val_ci", { v: cny(x), lo: end(ci[0]), hi: end(ci[1]) });
    const unres = (sz.not_resolved || []).includes(`max_loan_by_target_cny.${k}`);
    return [`target_${k}`, x, unres ? t("val_nr", { text }) : text, unres ? { notResolved: true } : null,
      t("target_p", { p: fmtPct(Number(k), 1) })];
  }));
  const note = $("#loan-unresolved");
  note.hidden = !nr.figures.length;
  note.textContent = !nr.figures.length ? "" : nr.needed
    ? t("nr_note", { paths: fmt(v.provenance?.paths), figures: nr.figures.map((f) => f.label).join(t("list_sep")), n: fmt(nr.needed) })
    : t("nr_note_sets", { figures: nr.figures.map((f) => f.label).join(t("list_sep")) });
  note.dataset.figures = JSON.stringify(nr.figures.map((f) => f.field));
  note.dataset.pathsNeeded = nr.needed === null ? "" : String(nr.needed);
  note.dataset.server = risk.not_resolved_note || sz.not_resolved_note || "";
  // VaR and ES in today's money (the end-of-term value discounted to today), each with its Monte Carlo error
  const nrSet = new Set(nr.figures.map((f) => f.field));
  const tail = (key, field, text) => [key, risk[field], nrSet.has(field) ? t("val_nr", { text }) : text,
    nrSet.has(field) ? { notResolved: true } : null];
  const varCi = (pct) => {
    const x = risk[`collateral_var${pct}_cny`], ci = risk[`collateral_var${pct}_ci95_cny`] || [null, null];
    return t("val_ci", { v: cny(x), lo: end(ci[0]), hi: end(ci[1]) });
  };
  const esSe = (pct) => t("val_se", { v: cny(risk[`collateral_es${pct}_cny`]), se: cny(risk[`collateral_es${pct}_mc_se_cny`]) });
  kv($("#loan-risk"), [
    tail("rk_var95", "collateral_var95_cny", varCi(95)), tail("rk_es95", "collateral_es95_cny", esSe(95)),
    tail("rk_var99", "collateral_var99_cny", varCi(99)), tail("rk_es99", "collateral_es99_cny", esSe(99)),
  ]);
  const basis = $("#loan-risk-basis");
  basis.textContent = t("risk_basis");
  basis.dataset.server = risk.collateral_var_basis || "";
  $("#loan-zero-one").hidden = !Object.keys(zo).length;
  $("#loan-zero-one").textContent = Object.keys(zo).length ? t("zero_one_note") : "";
  const by = v.by_year || [];
  fanChart($("#chart-loan-fan"), {
    rows: by.map((y) => ({ year: y.year, p05: y.value_p05_cny, p50: y.value_p50_cny, p95: y.value_p95_cny, base: y.balance_cny })),
    title: t("chart_loan_fan"), xLabel: t("axis_loan_year"), yLabel: t("axis_value"), baselineLabel: t("legend_balance"),
    bandLabel: t("desc_fan_pct"),
  });
  barChart($("#chart-loan-below"), {
    labels: by.map((y) => t("year_n", { n: y.year })), values: by.map((y) => 100 * y.p_value_below_balance),
    errors: by.map((y) => 200 * (y.p_value_below_balance_mc_se || 0)), errorLabel: t("err_2se"),
    title: t("chart_loan_below"), xLabel: t("axis_pct"), minMax: 5, format: (x) => `${fmt(x, 1)} %`,
  });
  table($("#loan-years"), by, [
    ["year", "col_year", (x) => String(x)], ["balance_cny", "col_balance", cny],
    ["balance_mean_cny", "col_balance_mean", cny],
    // each percentile with its 95 % interval (order statistics; an open end: unbounded)
    ...["p05", "p50", "p95"].map((q) => [`value_${q}_cny`, `col_value_${q}`,
      (x, r) => ciCell(x, r[`value_${q}_ci95_low_cny`], r[`value_${q}_ci95_high_cny`], cny)]),
    ["ltv_p50", "col_ltv_p50", pct(1)], ["ltv_p95", "col_ltv_p95", (x, r) => ciCell(x, r.ltv_p95_ci95_low, r.ltv_p95_ci95_high, pct(1))],
    ["p_value_below_balance", "col_p_below", (x, r) => probCell(x, r.p_value_below_balance_mc_se, zo[`p_value_below_balance_year_${r.year}`])],
    ["p_top_up_call", "col_p_call", (x, r) => probCell(x, r.p_top_up_call_mc_se, zo[`p_top_up_call_year_${r.year}`])],
    ["expected_top_up_cny", "col_top_up", (x, r) => seCell(x, r.expected_top_up_mc_se_cny, cny)],
  ]);
  const sec = v.security;
  kv($("#loan-security"), [
    ["sec_carbon", sec.carbon_value_cny, cny(sec.carbon_value_cny)],
    ["sec_mortgage", sec.forest_right_mortgage_cny, cny(sec.forest_right_mortgage_cny)],
    ["sec_guarantee", sec.guarantee_cny, cny(sec.guarantee_cny)],
    ["sec_carbon_share", sec.carbon_share_of_security, fmtPct(sec.carbon_share_of_security, 1)],
    ["sec_cover", sec.carbon_cover_of_exposure, fmtPct(sec.carbon_cover_of_exposure, 1)],
    ["sec_unsecured", sec.unsecured_cny, cny(sec.unsecured_cny)],
    ["sec_enhancement_only", sec.credit_enhancement_only, yesNo(sec.credit_enhancement_only)],
  ]);
  const c = v.credit;
  $("#loan-credit-none").hidden = !!c;
  $("#loan-credit").hidden = !c;
  $("#loan-credit-note").textContent = c ? t("credit_note") : "";
  if (c) {
    kv($("#loan-credit"), [
      ["cr_pd", c.pd, fmtPct(c.pd, 2)], ["cr_ead", c.ead_cny, cny(c.ead_cny)],
      ["cr_maturity", c.maturity_years, fmt(c.maturity_years, 1)],
      ["cr_lgd_secured", c.firb_lgd_carbon_as_other_physical, fmtPct(c.firb_lgd_carbon_as_other_physical, 1)],
      ["cr_lgd_unsecured", c.firb_lgd_unsecured, fmtPct(c.firb_lgd_unsecured, 1)],
      ["cr_lgd_sim", c.simulated_lgd_forced_sale, seCell(c.simulated_lgd_forced_sale, c.simulated_lgd_forced_sale_mc_se, (x) => fmtPct(x, 2))],
      ["cr_el", c.expected_loss_cny, cny(c.expected_loss_cny)],
      ["cr_el_unsecured", c.expected_loss_unsecured_cny, cny(c.expected_loss_unsecured_cny)],
      ["cr_k", c.irb_capital_k, fmtPct(c.irb_capital_k, 2)],
      ["cr_rwa", c.rwa_cny, cny(c.rwa_cny)], ["cr_rwa_unsecured", c.rwa_unsecured_cny, cny(c.rwa_unsecured_cny)],
    ]);
  }
  $("#loan-drivers-card").hidden = !v.drivers;
  if (v.drivers) {
    // the full model's row (on the valuation's own paths) with its own errors; a row with a driver switched off
    // with the errors of its paired changes (the API gives those, not the row's own)
    const own = (r) => r.driver === "full model" && r.paths === v.provenance?.paths;
    const below = (x, r) => probCell(x, own(r) ? risk.p_value_below_balance_any_time_mc_se : null,
      own(r) ? zo.p_value_below_balance_any_time : zeroOneBound(x, loanUnits(v, r.paths || v.provenance?.paths)));
    table($("#loan-drivers"), v.drivers, [
      ["driver", "col_driver", driverLabel, false],
      ["value_cny", "col_value", (x, r) => seCell(x, own(r) ? vt.mc_se_cny : null, cny)],
      ["value_effect_cny", "col_value_effect", (x, r) => seCell(x, r.value_effect_mc_se_cny, cny)],
      ["p_value_below_balance_any_time", "col_p_below_any", below],
      ["shortfall_effect", "col_shortfall_effect", (x, r) => seCell(x, r.shortfall_effect_mc_se, (y) => fmtPct(y, 1))],
      ["expected_shortfall_cny", "col_exp_shortfall", (x, r) => seCell(x, r.expected_shortfall_mc_se_cny, cny)],
    ]);
  }
  $("#loan-sens-card").hidden = !v.sensitivities;
  if (v.sensitivities) {
    // each case's change with the error of its paired difference, and its probability with its error (at exactly
    // 0 or 1 its rule-of-three interval)
    const units = loanUnits(v, v.provenance?.paths);
    table($("#loan-sens"), v.sensitivities, [
      ["case", "col_case", caseLabel, false], ["value_cny", "col_value", cny],
      ["change_cny", "col_change", (x, r) => seCell(x, r.change_mc_se_cny, cny)],
      ["p_value_below_balance_any_time", "col_p_below_any",
        (x, r) => probCell(x, r.p_value_below_balance_any_time_mc_se, zeroOneBound(x, units))],
    ]);
  }
}

async function valueLoan(e, state, fin) {
  e.preventDefault();
  if (!state.portfolio) return;
  clearErrors("loan");
  $("#loan-submit").disabled = true;
  $("#loan-progress").hidden = true;
  try {
    fin.loanRequest = loanRequest(state.portfolio.id);
    fin.loan = await submit(state.api, "loan", "/v1/collateral-valuations", fin.loanRequest, (job) => { fin.loanJob = job; });
    $("#loan-dl-status").textContent = "";  // the last download was of the previous result
    $("#loan-status").textContent = t("fin_done");
    $("#loan-status").dataset.done = "true";
    renderLoan(fin);
  } catch (err) {
    showFailure("loan", LOAN_FIELDS, err);
  } finally {
    $("#loan-submit").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// the quote page
// ---------------------------------------------------------------------------------------------
function renderQuoteKind() {
  const stock = $("#quote-kind").value === "stock-loss";
  $("#quote-perils").disabled = !stock;
  $("#quote-perils").hidden = !stock;
  $("#quote-deductible").closest(".field").hidden = !stock;
  $("#quote-trigger-field").hidden = stock;
}

function renderQuote(fin) {
  const r = fin.quote;
  $("#quote-results").hidden = !r;
  if (!r) return;
  const q = r.result;
  const pr = q.premium, ex = q.exposure;
  $("#quote-id").textContent = r.id;
  $("#quote-settings").textContent = t("quote_settings", {
    kind: t(q.cover?.kind === "sink-index" ? "cover_sink_index" : "cover_stock_loss"),
    ha: fmt(ex.area_ha, 1), si: cny(ex.sum_insured_cny), paths: fmt(q.provenance?.paths), seed: q.provenance?.seed });
  // a cover that pays nothing in any simulated year: why (the server's words: risk.no_payout_note)
  const nopay = $("#quote-nopay-note"), why = q.risk?.no_payout_note;
  nopay.hidden = !why;
  nopay.replaceChildren(...(why ? [document.createTextNode(t("quote_no_payout")), serverDetail(why)] : []));
  // the pure premium's parameter sd (a 0 the estimator clipped reads "not resolved"), with its 95 % interval
  const psd = paramSd(pr.parameter_sd_cny, { mcSe: pr.pure_premium_mc_se_cny,
    ci: [pr.parameter_sd_ci95_low_cny, pr.parameter_sd_ci95_high_cny] });
  const psdCiSub = psd?.ci ? t("psd_ci_sub", { lo: cny(psd.ci[0]), hi: cny(psd.ci[1]) }) : null;
  // probabilities over the quote's independent units (parameter sets): at exactly 0 or 1 the rule-of-three interval
  const units = Math.floor((q.provenance?.paths || 1) / SET_SIZE);
  const prob = (p, se) => probSub(p, se, zeroOneBound(p, units), 2);
  const f2 = (x) => fmt(x, 2), f3 = (x) => fmt(x, 3);
  kpis($("#quote-kpis"), [
    ["kpi_pure", pr.pure_premium_cny, cny(pr.pure_premium_cny), t("pm_se", { se: cny(pr.pure_premium_mc_se_cny) })],
    ["kpi_pure_se", pr.pure_premium_mc_se_cny, cny(pr.pure_premium_mc_se_cny)],
    ...(psd ? [["kpi_pure_psd", psd.value, psd.text,
      [psd.resolved ? null : t("psd_not_resolved_note"), psdCiSub].filter(Boolean).join(" · ") || null]] : []),
    ["kpi_gross", pr.gross_premium_cny, cny(pr.gross_premium_cny), seText(pr.gross_premium_mc_se_cny, cny)],
    ["kpi_rate", pr.rate_on_sum_insured, fmtPct(pr.rate_on_sum_insured, 3), seText(pr.rate_on_sum_insured_mc_se, (x) => fmtPct(x, 3))],
    ["kpi_per_mu", pr.premium_per_mu_cny, f2(pr.premium_per_mu_cny), seText(pr.premium_per_mu_mc_se_cny, f2)],
    ["kpi_per_ha", pr.premium_per_ha_cny, f2(pr.premium_per_ha_cny), seText(pr.premium_per_ha_mc_se_cny, f2)],
    ["kpi_per_tco2e", pr.premium_per_tco2e_cny, f3(pr.premium_per_tco2e_cny), seText(pr.premium_per_tco2e_mc_se_cny, f3)],
    ["kpi_loss_ratio", pr.expected_loss_ratio, fmtPct(pr.expected_loss_ratio, 1), seText(pr.expected_loss_ratio_mc_se, (x) => fmtPct(x, 1))],
    ["kpi_sum_insured", ex.sum_insured_cny, cny(ex.sum_insured_cny),
      ex.sum_insured_mc_se_cny == null ? null : t("from_run", { se: cny(ex.sum_insured_mc_se_cny) })],
    ["kpi_p_payout", q.risk.prob_payout, fmtPct(q.risk.prob_payout, 2), prob(q.risk.prob_payout, q.risk.prob_payout_mc_se)],
    ...sinkIndexTerms(q),
  ]);
  // a sink index: basis risk (the index's error: payout against the perfect-index payout) and, apart, the
  // protection gap (what even a perfect index leaves unpaid by design), each with its Monte Carlo error
  const br = q.basis_risk, gap = br?.protection_gap;
  $("#quote-basis").hidden = !gap;
  if (gap) {
    kpis($("#quote-basis-kpis"), [
      ["kpi_basis_rmse", br.rmse_cny, cny(br.rmse_cny), seText(br.rmse_mc_se_cny, cny)],
      ["kpi_basis_miss", br.prob_loss_no_payout, fmtPct(br.prob_loss_no_payout, 2), prob(br.prob_loss_no_payout, br.prob_loss_no_payout_mc_se)],
      ["kpi_basis_extra", br.prob_payout_no_loss, fmtPct(br.prob_payout_no_loss, 2), prob(br.prob_payout_no_loss, br.prob_payout_no_loss_mc_se)],
      ["kpi_gap_mean", gap.mean_gap_cny, cny(gap.mean_gap_cny), seText(gap.mean_gap_mc_se_cny, cny)],
      ["kpi_gap_share", gap.gap_share_of_true_loss, fmtPct(gap.gap_share_of_true_loss, 0), seText(gap.gap_share_of_true_loss_mc_se, (x) => fmtPct(x, 0))],
    ]);
  }
  // the exceedance curve of the payout: only the grid points with a payout (a point of payout 0 is below
  // P(payout) by definition), from P(payout) at 0
  const ep = (q.risk.ep_curve || []).filter((p) => p.exceedance_probability >= 0.005 && p.exceedance_probability < 1 && p.aep_cny > 0)
    .map((p) => ({ loss: p.aep_cny, prob: p.exceedance_probability }));
  exceedanceChart($("#chart-quote-ep"), { points: ep, title: t("chart_quote_ep"), xLabel: t("axis_payout"), yLabel: t("axis_prob"),
    what: "payout", start: { prob: q.risk.prob_payout, label: t("legend_p_payout") } });
  table($("#quote-pml"), q.risk.pml || [], [
    ["basis", "col_basis", (x) => (t(`pml_${x}`) === `pml_${x}` ? x : t(`pml_${x}`)), false], ["return_period_years", "col_return_period", (x) => fmt(x, 0)],
    ["loss", "col_pml", cny], ["ci_low", "col_ci_low", cny],
    ["ci_high", "col_ci_high", (x) => (x === null || x === undefined ? t("ci_unbounded") : cny(x))],  // an open end
  ]);
  const sub = q.subsidy;
  $("#quote-subsidy-cap").textContent = t("quote_subsidy", { scheme: schemeName(sub.scheme) });
  const payers = Object.keys(sub.amounts_cny || {}).map((k) => ({ payer: k, share: sub.shares?.[k], amount: sub.amounts_cny[k] }));
  table($("#quote-subsidy"), payers, [
    ["payer", "col_payer", (x) => t(`payer_${x}`), false], ["share", "col_share", pct(1)],
    ["amount", "col_amount", (x, r) => seCell(x, sub.amounts_mc_se_cny?.[r.payer], cny)],
  ]);
  // why there is no subsidy, or the scheme's caveat: the engine's two notes in the page's language (the server's
  // English under it in Chinese), any other note as the server wrote it
  const note = $("#quote-subsidy-note");
  const known = sub.note ? subsidyNote(sub.note) : null;
  note.dataset.server = sub.note || "";
  note.replaceChildren(document.createTextNode(known ?? (sub.note || "")));
  if (known && getLang() !== "en") note.appendChild(serverDetail(sub.note));
}

/** A sink-index cover's terms the run set (the quote's exposure): its limit -- the value of the triggered sink,
 * price x trigger x expected sink, unless the cover gave one --, the expected sink (tCO2e/yr) and the trigger in
 * tonnes, each with its Monte Carlo (jackknife) error where the run estimated it. */
function sinkIndexTerms(q) {
  const cover = q.cover || {}, ex = q.exposure || {};
  if (cover.kind !== "sink-index") return [];
  const part = cover.participation || 1;
  const est = (se, format) => (se === null || se === undefined ? null : t("from_run", { se: format(se) }));
  const out = [];
  if (cover.limit_cny === null || cover.limit_cny === undefined) {
    const se = ex.sum_insured_mc_se_cny;
    out.push(["kpi_eff_limit", ex.sum_insured_cny / part, cny(ex.sum_insured_cny / part), est(se == null ? null : se / part, cny)]);
  } else if (Number.isFinite(cover.limit_cny)) {
    out.push(["kpi_limit", cover.limit_cny, cny(cover.limit_cny)]);
  }
  const t1 = (x) => fmt(x, 0);
  out.push(["kpi_expected_sink", ex.insured_tco2e, t1(ex.insured_tco2e), est(ex.insured_tco2e_mc_se, t1)]);
  const trig = cover.trigger_fraction;
  if (Number.isFinite(trig)) {
    const se = ex.insured_tco2e_mc_se;
    out.push(["kpi_trigger_t", trig * ex.insured_tco2e, t1(trig * ex.insured_tco2e),
      se === null || se === undefined ? null : t("pm_se", { se: t1(trig * se) })]);
  }
  return out;
}

/** "± se (Monte Carlo s.e.)" of a figure's error, formatted as the figure; null without one. */
function seText(se, format) {
  return se === null || se === undefined ? null : t("pm_se", { se: format(se) });
}

async function priceQuote(e, state, fin) {
  e.preventDefault();
  if (!state.portfolio) return;
  clearErrors("quote");
  $("#quote-submit").disabled = true;
  $("#quote-progress").hidden = true;
  try {
    fin.quoteRequest = quoteRequest(state.portfolio.id);
    fin.quote = await submit(state.api, "quote", "/v1/quotes", fin.quoteRequest, (job) => { fin.quoteJob = job; });
    $("#quote-dl-status").textContent = "";  // the last download was of the previous result
    $("#quote-status").textContent = t("fin_done");
    $("#quote-status").dataset.done = "true";
    renderQuote(fin);
  } catch (err) {
    showFailure("quote", QUOTE_FIELDS, err);
  } finally {
    $("#quote-submit").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// wiring
// ---------------------------------------------------------------------------------------------
/** Which finance pages (and stress tests) this key may use: GET of each list answers 200 or 403 (role). */
export async function financeAccess(api) {
  const may = async (path) => {
    try { await api.get(path, { limit: 1 }); return true; } catch (e) {
      if (e instanceof ApiError && (e.status === 403 || e.status === 404)) return false;
      throw e;
    }
  };
  const [loan, quote, stress] = await Promise.all([may("/v1/collateral-valuations"), may("/v1/quotes"),
    may("/v1/stress-tests")]);
  return { loan, quote, stress };
}

export function installFinance(state) {
  const fin = { loan: null, quote: null, loanRequest: null, quoteRequest: null, loanJob: null, quoteJob: null };
  state.finance = fin;
  $("#loan-form").addEventListener("submit", (e) => valueLoan(e, state, fin));
  $("#quote-form").addEventListener("submit", (e) => priceQuote(e, state, fin));
  $("#quote-kind").addEventListener("change", renderQuoteKind);
  $("#loan-memo").addEventListener("click", () => fin.loan && download(state.api, "#loan-dl-status",
    `/v1/collateral-valuations/${fin.loan.id}/memo`, `collateral-memo-${fin.loan.id}.html`));
  $("#quote-slip").addEventListener("click", () => fin.quote && download(state.api, "#quote-dl-status",
    `/v1/quotes/${fin.quote.id}/slip`, `quote-slip-${fin.quote.id}.html`));
  renderQuoteKind();
  return {
    /** The chosen portfolio (or its parcels) changed: results of another portfolio no longer apply. */
    portfolioChanged() {
      document.querySelectorAll(".fin-portfolio-name").forEach((s) => { s.textContent = state.portfolio?.name || "—"; });
      if (fin.loan && fin.loan.portfolio_id !== state.portfolio?.id) { fin.loan = null; renderLoan(fin); $("#loan-dl-status").textContent = ""; }
      if (fin.quote && fin.quote.portfolio_id !== state.portfolio?.id) { fin.quote = null; renderQuote(fin); $("#quote-dl-status").textContent = ""; }
      renderPledgeOptions(state);
    },
    render() {
      for (const p of ["loan", "quote"]) {
        const st = $(`#${p}-status`);
        if (st.dataset.status === "cancelled") st.textContent = t("fin_cancelled");
        else if (st.dataset.done) st.textContent = t("fin_done");
      }
      document.querySelectorAll(".fin-portfolio-name").forEach((s) => { s.textContent = state.portfolio?.name || "—"; });
      renderPledgeOptions(state);
      renderLoan(fin);
      renderQuote(fin);
    },
  };
}
