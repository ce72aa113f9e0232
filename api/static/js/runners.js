// How a run is started and read back. Each runner turns the API's answer into one view model that
// the results page, the map and the reports page draw:
//   {id, title, settings: {paths, years, seed}, kpis: [[labelKey, value]], counties: [{county, area, loss,
//    se, perHaYr, share}], exceedance: [{loss, prob}], fan: [{year, p05, p10, p50, p90, p95}],
//    townshipRisk: Map(township -> tCO2e/ha/yr), accountsPath, reports(openapi) -> [{id, path, file, ...}]}

const QUANTILES = [["p01", 0.01], ["p05", 0.05], ["p10", 0.10], ["p50", 0.50], ["p90", 0.90], ["p95", 0.95], ["p99", 0.99]];

/** The last part of a "province/city/county/..." group label. */
export const leaf = (group) => String(group).split("/").pop();

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
    kind: "simulation", id: sim.id, title: req.climate_pathway || "",
    settings: { paths: req.paths, years, seed: sim.audit?.seed ?? req.seed },
    kpis: [["kpi_stock_end", pf("stock_end_tco2e").mean], ["kpi_sink", pf("cumulative_sink_tco2e").mean],
      ["kpi_loss", loss.mean], ["kpi_loss_p99", loss.p99]],
    counties, exceedance, fan, townshipRisk,
    accountsPath: `/v1/simulations/${sim.id}/accounts`,
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
        return { value: short, label: () => `${short} — ${s.description.slice(0, 70)}${s.description.length > 70 ? "…" : ""}` };
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

/** Which runner the API supports (the stress-test endpoint when it exists, else simulations). */
export function detectRunner(openapi) {
  const paths = Object.keys(openapi?.paths || {});
  if (RUNNERS.stress && paths.some((p) => /^\/v1\/stress/.test(p))) return "stress";
  return "simulation";
}
