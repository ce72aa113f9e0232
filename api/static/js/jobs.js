// A job of the API (GET /v1/jobs/{id}) as the dashboard shows it: poll it to its end, draw it in a progress
// block (progress bar, percentage, status, ETA, log, error) and cancel it. The stress-test page and the
// accounts page each have a block, cloned from index.html's <template id="job-block-template"> into their
// [data-job-block="prefix"] element (mountJobBlocks), whose elements then share the prefix: #{prefix}-progress,
// -pct, -status, -eta, -log and -error. Active jobs of the key (activeJobs) let a reloaded page resume one.

import { fmt, t } from "./i18n.js";

export const POLL_MS = 400;
export const TERMINAL = ["succeeded", "failed", "cancelled"];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Poll a job until it ends. `onJob(job)` sees every answer; `stop()` true ends the polling early (the page
 * moved on: another portfolio, another request), and then the answer is null. Returns the ended job.
 */
export async function pollJob(api, id, { onJob = () => {}, stop = () => false, every = POLL_MS } = {}) {
  for (;;) {
    if (stop()) return null;
    const job = await api.get(`/v1/jobs/${id}`);
    if (stop()) return null;
    onJob(job);
    if (TERMINAL.includes(job.status)) return job;
    await sleep(every);
  }
}

/** Ask for a job's cancel (POST /v1/jobs/{id}/cancel); returns the job as the API then reports it. */
export async function cancelJob(api, id) {
  return (await api.raw("POST", `/v1/jobs/${id}/cancel`)).json();
}

/** Draw a job in the progress block whose elements start with `prefix`. */
export function renderJobBlock(prefix, job) {
  const $ = (s) => document.querySelector(`#${prefix}-${s}`);
  const p = Math.max(0, Math.min(1, job.progress || 0));
  $("progress").value = p;
  $("progress").setAttribute("aria-valuetext", `${Math.round(100 * p)} %`);
  $("pct").textContent = `${Math.round(100 * p)} %`;
  $("status").textContent = t(`st_${job.status}`);
  $("status").dataset.status = job.status;
  $("status").dataset.job = job.id;
  $("eta").textContent = job.status === "running" && Number.isFinite(job.eta_s)
    ? t("eta_value", { s: fmt(job.eta_s, 0) }) : t("eta_unknown");
  $("log").textContent = (job.log || []).join("\n");
  $("error").textContent = job.status === "failed"
    ? t("job_failed", { error: job.error?.detail || job.error?.title || JSON.stringify(job.error) }) : "";
}

/** Empty the progress block whose elements start with `prefix` (0 %, no status, ETA, log or error): a run the
 * API refused has no job, and the previous run's "100 % · done" must not read as this run's. */
export function resetJobBlock(prefix) {
  const $ = (s) => document.querySelector(`#${prefix}-${s}`);
  $("progress").value = 0;
  $("progress").setAttribute("aria-valuetext", "0 %");
  $("pct").textContent = "0 %";
  $("status").textContent = "—";
  delete $("status").dataset.status;
  delete $("status").dataset.job;
  $("eta").textContent = "—";
  $("log").textContent = "";
  $("error").textContent = "";
}

/** Clone the job-block template into every [data-job-block] element (once, before the page's strings are applied). */
export function mountJobBlocks(root = document) {
  const tpl = root.querySelector("#job-block-template");
  for (const host of root.querySelectorAll("[data-job-block]")) {
    if (host.childElementCount) continue;
    const prefix = host.dataset.jobBlock;
    const frag = tpl.content.cloneNode(true);
    frag.querySelectorAll("[data-part]").forEach((el) => { el.id = `${prefix}-${el.dataset.part}`; });
    frag.querySelectorAll("[data-for]").forEach((el) => { el.htmlFor = `${prefix}-${el.dataset.for}`; });
    host.appendChild(frag);
  }
}

/** The key's queued and running jobs of the given kinds, newest first (GET /v1/jobs?status=..., every page:
 * a tenant may have more active jobs than one page holds when CRE_MAX_ACTIVE_JOBS_PER_TENANT allows it). */
export async function activeJobs(api, kinds, createdBy = null) {
  const out = [];
  for (const status of ["running", "queued"]) {
    for (let offset = 0; offset !== null && offset !== undefined;) {
      const page = await api.get("/v1/jobs", { status, limit: 100, offset });
      out.push(...(page.items || []).filter((j) => kinds.includes(j.kind) && (!createdBy || j.created_by === createdBy)));
      offset = page.next_offset;
    }
  }
  return out.sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
}
