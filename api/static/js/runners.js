// How a run is started and read back. Each runner turns the API's answer into one view model that
// the results page, the map and the reports page draw:
//   {id, title, settings: {paths, years, seed}, kpis: [[labelKey, value]], counties: [{county, area, loss,
//    se, perHaYr, share}], exceedance: [{loss, prob}], fan: [{year, p05, p10, p50, p90, p95}],
//    townshipRisk: Map(township -> tCO2e/ha/yr), accountsPath, reports(openapi) -> [{id, path, file, ...}]}

import { parameterUncertaintyOn, pathwayTitle, scenarioTitle } from "./i18n.js";

/** A scenario or pathway option: its title in the current language when the dictionary knows it, else its
 * id and the start of the API's (English) description. */
const optionLabel = (id, title, description) => () => {
  const known = title(id);
  if (known) return known;
  const d = description || "";
  return `${id}${d ? ` — ${d.slice(0, 70)}${d.length > 70 ? "…" : ""}` : ""}`;
};

const QUANTILES = [["p01", 0.01], ["p05", 0.05], ["p10", 0.10], ["p50", 0.50], ["p90", 0.90], ["p95", 0.95], ["p99", 0.99]];

// columns of the county table and the accounts tree: [row key, dictionary label, decimals, kind]; a "psd"
// column is a parameter sd, read against the Monte Carlo error of the same figure (i18n.js, paramSd)
export const SIM_COUNTY_COLUMNS = [["area", "col_area", 1], ["loss", "col_loss", 0], ["se", "col_se", 0],
  ["perHaYr", "col_loss_per_ha", 3], ["share", "col_loss_share", 2, "pct"]];
export const SIM_ACCOUNT_COLUMNS = [["parcels", "col_parcels", 0], ["area_ha", "col_area", 1],
  ["stock_bef_tco2e", "col_stock", 0], ["expected_sink_tco2e_per_yr", "col_sink", 0],
  ["expected_sink_tco2e_per_yr_mc_se", "col_sink_se", 0], ["expected_sink_tco2e_per_yr_parameter_sd", "col_sink_psd", 0, "psd"],
  ["expected_loss_tco2e_per_yr", "col_acc_loss", 0], ["expected_loss_tco2e_per_yr_mc_se", "col_loss_se", 0],
  ["expected_loss_tco2e_per_yr_parameter_sd", "col_loss_psd", 0, "psd"],
  ["expected_harvest_tco2e_per_yr", "col_harvest", 0], ["expected_harvest_tco2e_per_yr_mc_se", "col_harvest_se", 0],
  ["expected_harvest_tco2e_per_yr_parameter_sd", "col_harvest_psd", 0, "psd"]];
// a stress test's county table: the baseline's loss with its own s.e. (the baseline scenario's horizon rows), the
// scenario's with its s.e., and their paired difference with its s.e.
export const STRESS_COUNTY_COLUMNS = [["area", "col_area", 1], ["base", "col_base_loss", 0], ["baseSe", "col_base_se", 0],
  ["loss", "col_scn_loss", 0], ["se", "col_se", 0], ["diff", "col_diff", 0], ["diffSe", "col_diff_se", 0],
  ["perHaYr", "col_loss_per_ha", 3]];
// a stress test's accounts: each simulated figure with its s.e. (the loss value's: an upper bound, *_mc_se_max)
export const STRESS_ACCOUNT_COLUMNS = [["stock_start_tco2e", "col_stock_start", 0], ["stock_end_tco2e", "col_stock_end", 0],
  ["stock_end_tco2e_mc_se", "col_stock_end_se", 0],
  ["sink_tco2e", "col_acc_sink_run", 0], ["sink_tco2e_mc_se", "col_sink_se", 0], ["loss_tco2e", "col_acc_loss_run", 0],
  ["loss_tco2e_mc_se", "col_loss_se", 0], ["loss_value_cny", "col_loss_value", 0],
  ["loss_value_cny_mc_se_max", "col_loss_value_se", 0]];

/** A summary row's parameter sd interval [low, high] (null where the row has none); `prefix` "diff_": that of a
 * stress horizon row's paired difference. */
const psdCi = (r, prefix = "") => (r && r[`${prefix}parameter_sd_ci95_low`] !== undefined
  ? [r[`${prefix}parameter_sd_ci95_low`], r[`${prefix}parameter_sd_ci95_high`]] : null);

/** The last part of a "province/city/county/..." group label. */
export const leaf = (group) => String(group).split("/").pop();

/** Run settings shown with a result: paths, years, seed, and the model and parameter set that made it. */
function runSettings(req, years, audit) {
  return { paths: req.paths, years, seed: audit?.seed ?? req.seed, model: audit?.model_version ?? "?",
    sha: (audit?.parameter_sha256 ?? "").slice(0, 12) };
}

/** Area (ha) of each value of `key` among the parcels. */
export function areaBy(parcels, key) {
  const m = new Map();
  for (const p of parcels) m.set(p[key], (m.get(p[key]) || 0) + (p.area_ha || 0));
  return m;
}

/**
 * The view model of a simulation result (GET /v1/simulations/{id}) plus its yearly portfolio stock
 * rows (for the fan chart).
 */
export function simulationView(sim, stockRows, portfolio, parcels) {
  const H = sim.horizon || [];
  const req = sim.audit?.request || {};
  const years = Number(req.years) || 1;
  const pick = (level, metric) => H.filter((r) => r.level === level && r.metric === metric);
  const stock0 = new Map((sim.initial_stock || []).map((r) => [`${r.level}|${r.group}`, r.stock_tco2e]));
  const countyArea = areaBy(parcels, "county");
  const summaryCounties = portfolio?.summary?.counties || {};
  const counties = pick("county", "cumulative_loss_tco2e").map((r) => {
    const county = leaf(r.group);
    const area = countyArea.get(county) ?? summaryCounties[county]?.area_ha ?? null;
    const s0 = stock0.get(`county|${r.group}`);
    return {
      county, group: r.group, area, loss: r.mean, se: r.mc_se, p95: r.p95,
      perHaYr: area ? r.mean / area / years : null, share: s0 ? r.mean / s0 : null,
    };
  }).sort((a, b) => b.loss - a.loss);
  const pf = (metric) => pick("portfolio", metric)[0] || {};
  const loss = pf("cumulative_loss_tco2e");
  const exceedance = QUANTILES.filter(([k]) => Number.isFinite(loss[k])).map(([k, q]) => ({ loss: loss[k], prob: +(1 - q).toFixed(2) }));
  const fan = stockRows.map((r) => ({ year: r.calendar_year ?? r.year, p05: r.p05, p10: r.p10, p50: r.p50, p90: r.p90, p95: r.p95, mean: r.mean }))
    .sort((a, b) => a.year - b.year);
  const twpArea = areaBy(parcels, "township");
  const townshipRisk = new Map();
  for (const r of pick("township", "cumulative_loss_tco2e")) {
    const name = leaf(r.group);
    const a = twpArea.get(name);
    if (a) townshipRisk.set(name, r.mean / a / years);
  }
  return {
    kind: "simulation", id: sim.id, pathway: req.climate_pathway || "",
    // the pathway's title in the page's language (a getter: the language may change)
    get title() { return this.pathway ? pathwayTitle(this.pathway) || this.pathway : ""; },
    settings: runSettings(req, years, sim.audit),
    // whether the run drew the uncertain parameters: without, its parameter sds are not shown (the engine's
    // zeros then mean "off", not "not resolved")
    paramOn: parameterUncertaintyOn(sim.provenance),
    // each KPI with its Monte Carlo error (a standard error, or a quantile's [low, high] interval) and,
    // apart, the spread from the uncertain parameters (means only)
    // and the parameter sd's own 95 % interval where the summary carries it
    kpis: [["kpi_stock_end", pf("stock_end_tco2e").mean, pf("stock_end_tco2e").mc_se, pf("stock_end_tco2e").parameter_sd, psdCi(pf("stock_end_tco2e"))],
      ["kpi_sink", pf("cumulative_sink_tco2e").mean, pf("cumulative_sink_tco2e").mc_se, pf("cumulative_sink_tco2e").parameter_sd,
        psdCi(pf("cumulative_sink_tco2e"))],
      ["kpi_loss", loss.mean, loss.mc_se, loss.parameter_sd, psdCi(loss)], ["kpi_loss_p99", loss.p99, [loss.p99_ci_low, loss.p99_ci_high]]],
    counties, exceedance, fan, fanKind: "fan", townshipRisk,
    countyColumns: SIM_COUNTY_COLUMNS,
    accountsPath: `/v1/simulations/${sim.id}/accounts`, accountsQuery: {}, accountsColumns: SIM_ACCOUNT_COLUMNS,
    // the same accounts as a job (POST /v1/accounts) when the run's are too large to answer at once
    accountsJob: { portfolio_id: sim.portfolio_id, paths: Number(req.paths), seed: sim.audit?.seed ?? req.seed },
    reports: (openapi) => [
      { id: "result-json", labelKey: "dl_result_json", path: `/v1/simulations/${sim.id}`, file: `${sim.id}.json` },
      { id: "accounts-json", labelKey: "dl_accounts_json", path: `/v1/simulations/${sim.id}/accounts`, query: { limit: 500 }, file: `${sim.id}-accounts.json` },
      ...discoveredReports(openapi, "/v1/simulations/{", sim.id),
    ],
  };
}

/**
 * Report downloads the API documents for a result: GET paths under `prefix` whose last part names a
 * report (".../report", ".../report.{fmt}", ".../reports/..."), with the enum of a `format` query if any.
 */
export function discoveredReports(openapi, prefix, id) {
  const out = [];
  for (const [path, ops] of Object.entries(openapi?.paths || {})) {
    if (!path.startsWith(prefix) || !ops.get || !/\/reports?(\b|\/|\.)/.test(path)) continue;
    const params = ops.get.parameters || [];
    const pathParams = params.filter((p) => p.in === "path");
    if (pathParams.length !== 1) continue;
    const concrete = path.replace(`{${pathParams[0].name}}`, id);
    const fmtParam = params.find((p) => p.in === "query" && p.name === "format");
    const formats = fmtParam?.schema?.enum || fmtParam?.schema?.anyOf?.find((s) => s.enum)?.enum || [null];
    for (const f of formats) {
      const name = `${concrete.split("/").pop()}${f ? ` (${f})` : ""}`;
      out.push({ id: `${concrete}${f ? `?format=${f}` : ""}`, name, path: concrete, query: f ? { format: f } : undefined,
        file: `${id}-report${f ? `.${f}` : ""}` });
    }
  }
  return out;
}

export const RUNNERS = {
  simulation: {
    kind: "simulation",
    /** Climate pathways of the Lishui model (GET /v1/scenarios). */
    async options(api) {
      const items = await api.all("/v1/scenarios");
      const paths = items.filter((s) => s.kind === "climate_pathway");
      return paths.map((s) => {
        const short = s.id.split(".").pop();
        return { value: short, label: optionLabel(short, pathwayTitle, s.description) };
      });
    },
    async start(api, portfolio, form) {
      const { body } = await api.post("/v1/simulations", {
        portfolio_id: portfolio.id, years: form.years, paths: form.paths, seed: form.seed, mode: "job",
        levels: ["portfolio", "county", "township"], climate_pathway: form.option || null,
      });
      return body;
    },
    async result(api, job, portfolio, parcels) {
      const sim = await api.get(`/v1/jobs/${job.id}/result`);
      const stock = await api.all(`/v1/simulations/${sim.id}/summary`, { level: "portfolio", metric: "stock_tco2e" });
      return simulationView(sim, stock, portfolio, parcels);
    },
  },
};

/**
 * The view model of a stress test (GET /v1/jobs/{id}/result of a stress job) for one scenario, from
 * its horizon and by-year tables. The tables carry means and Monte Carlo errors (paired with the
 * baseline); percentiles, when a result has them, give the exceedance curve and a value fan.
 */
export function stressView(st, tables, scenario, portfolio, parcels) {
  const req = st.audit?.request || {};
  const years = Number(req.years) || 1;
  const { county, portfolioRows, township, valueByYear, baselineCounty = [] } = tables;
  const baseSe = new Map(baselineCounty.map((r) => [r.group, r.mc_se]));
  const countyArea = areaBy(parcels, "county");
  const summaryCounties = portfolio?.summary?.counties || {};
  const counties = county.map((r) => {
    const name = leaf(r.group);
    const area = countyArea.get(name) ?? summaryCounties[name]?.area_ha ?? null;
    return { county: name, group: r.group, area, loss: r.mean, se: r.mc_se, base: r.baseline_mean,
      baseSe: baseSe.get(r.group) ?? (scenario === "baseline" ? r.mc_se : null), diff: r.diff_mean,
      diffSe: r.diff_mc_se, perHaYr: area ? r.mean / area / years : null };
  }).sort((a, b) => b.loss - a.loss);
  const pf = Object.fromEntries(portfolioRows.map((r) => [r.metric, r]));
  const loss = pf.cumulative_loss_tco2e || {};
  const exceedance = QUANTILES.filter(([k]) => Number.isFinite(loss[k])).map(([k, q]) => ({ loss: loss[k], prob: +(1 - q).toFixed(2) }));
  const hasPct = valueByYear.length && valueByYear.every((r) => Number.isFinite(r.p05) && Number.isFinite(r.p95));
  const fan = valueByYear.map((r) => (hasPct
    ? { year: r.calendar_year, p05: r.p05, p10: r.p10, p50: r.p50, p90: r.p90, p95: r.p95, base: r.baseline_mean }
    : { year: r.calendar_year, p05: r.mean - 2 * r.mc_se, p95: r.mean + 2 * r.mc_se, p50: r.mean, base: r.baseline_mean }))
    .sort((a, b) => a.year - b.year);
  const twpArea = areaBy(parcels, "township");
  const townshipRisk = new Map();
  for (const r of township) {
    const name = leaf(r.group);
    const a = twpArea.get(name);
    if (a) townshipRisk.set(name, r.mean / a / years);
  }
  const meta = (st.result.scenarios || []).find((m) => m.scenario === scenario) || {};
  const reports = (st.reports || []).map((path) => {
    const last = path.split("/").pop();
    const ext = { report: "html", workbook: "xlsx", accounts: "json" }[last] || "bin";
    return { id: `stress-${last}`, labelKey: `dl_stress_${last}`, path, file: `${st.id}-${last}.${ext}`,
      query: last === "accounts" ? { scenario, limit: 500 } : undefined };
  });
  return {
    kind: "stress", id: st.id, scenario, serverTitle: meta.title || scenario,
    // the scenario's title in the page's language (the API's is English: kept for a scenario the page does not know)
    get title() { return scenarioTitle(this.scenario) || this.serverTitle; },
    settings: runSettings(req, years, st.audit),
    paramOn: parameterUncertaintyOn(st.result?.provenance),
    // each parameter sd with its 95 % interval where the horizon row carries it (results stored before: none)
    kpis: [["kpi_stock_end", pf.stock_end_tco2e?.mean, pf.stock_end_tco2e?.mc_se, pf.stock_end_tco2e?.parameter_sd,
      psdCi(pf.stock_end_tco2e)],
      ["kpi_loss", loss.mean, loss.mc_se, loss.parameter_sd, psdCi(loss)],
      ["kpi_extra_loss", loss.diff_mean, loss.diff_mc_se, loss.diff_parameter_sd, psdCi(loss, "diff_")],
      ["kpi_value_end", pf.stock_end_value_cny?.mean, pf.stock_end_value_cny?.mc_se, pf.stock_end_value_cny?.parameter_sd,
        psdCi(pf.stock_end_value_cny)],
      ["kpi_loss_value", pf.cumulative_loss_value_cny?.mean, pf.cumulative_loss_value_cny?.mc_se,
        pf.cumulative_loss_value_cny?.parameter_sd, psdCi(pf.cumulative_loss_value_cny)],
    ].filter(([, v]) => Number.isFinite(v)),
    counties, exceedance, fan, fanKind: hasPct ? "value_fan" : "value_path", townshipRisk,
    countyColumns: STRESS_COUNTY_COLUMNS,
    accountsPath: `/v1/stress-tests/${st.id}/accounts`, accountsQuery: { scenario }, accountsColumns: STRESS_ACCOUNT_COLUMNS,
    reports: () => [{ id: "result-json", labelKey: "dl_result_json", path: `/v1/stress-tests/${st.id}`, file: `${st.id}.json` },
      ...reports],
  };
}

RUNNERS.stress = {
  kind: "stress",
  /** The stress scenario library (GET /v1/scenarios, ids stress.<name>); the baseline always runs. */
  async options(api) {
    const items = await api.all("/v1/scenarios");
    return items.filter((s) => s.kind === "stress").map((s) => {
      const name = s.id.replace(/^stress\./, "");
      return { value: name, label: optionLabel(name, scenarioTitle, s.description) };
    });
  },
  async start(api, portfolio, form) {
    const { body } = await api.post("/v1/stress-tests", {
      portfolio_id: portfolio.id, scenarios: form.option && form.option !== "baseline" ? [form.option] : [],
      years: form.years, paths: form.paths, seed: form.seed, levels: ["portfolio", "county", "township"],
      accounts: true, mode: "job",
    });
    return body;
  },
  async result(api, job, portfolio, parcels) {
    const st = await api.get(`/v1/jobs/${job.id}/result`);
    const scenario = job.request?.scenarios?.[0] || "baseline";
    const tbl = (table, q) => api.all(`/v1/stress-tests/${st.id}/tables/${table}`, { scenario, ...q });
    const [county, portfolioRows, township, valueByYear, baselineCounty] = await Promise.all([
      tbl("horizon", { level: "county", metric: "cumulative_loss_tco2e" }), tbl("horizon", { level: "portfolio" }),
      tbl("horizon", { level: "township", metric: "cumulative_loss_tco2e" }),
      tbl("by_year", { level: "portfolio", metric: "stock_value_cny" }),
      // the baseline's own county rows: its loss's Monte Carlo s.e. (the scenario's rows carry its mean only)
      scenario === "baseline" ? [] : tbl("horizon", { level: "county", metric: "cumulative_loss_tco2e", scenario: "baseline" })]);
    return stressView(st, { county, portfolioRows, township, valueByYear, baselineCounty }, scenario, portfolio, parcels);
  },
};

/** The runners the API supports: the stress-test endpoint first when it exists, then simulations. */
export function availableRunners(openapi) {
  const paths = Object.keys(openapi?.paths || {});
  const out = [];
  if (paths.includes("/v1/stress-tests") && paths.includes("/v1/stress-tests/{stress_test_id}/tables/{table}")) out.push("stress");
  out.push("simulation");
  return out;
}
