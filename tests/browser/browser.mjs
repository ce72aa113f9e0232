// Shared set-up of the dashboard drivers: command-line options, Debian's Chromium through
// playwright-core with the flags this machine needs (no background networking, a fresh profile), the
// listeners that record console errors, failed requests and any request outside the server under test
// (a CDN or tile server would show up here), and numbered full-page screenshots.

import { chromium } from "playwright-core";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export function parseArgs(defaults, required) {
  const a = { chromium: "/usr/bin/chromium", ...defaults };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i += 2) a[v[i].replace(/^--/, "")] = v[i + 1];
  for (const k of required) if (!a[k]) throw new Error(`--${k} is required`);
  return a;
}

/** Open the dashboard at ``base`` and sign in with ``key`` (the Chinese page's key field): resolves once the
 * signed-in view shows and the page has loaded its run options (the role's landing page is then chosen). */
export async function signIn(page, base, key) {
  await page.goto(`${base}/ui`);
  await page.waitForSelector('body[data-ready="true"]');
  await page.getByLabel("API 密钥").fill(key);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#app-view:not([hidden])");
  await page.waitForFunction(() => window.__dashboard.runOptions);
}

export async function openBrowser(opt, out, log) {
  fs.mkdirSync(opt.out, { recursive: true });
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), "cre-chromium-"));
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
  // each console error with the address it names (a refused request's "status of 422" says which request)
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const where = m.location()?.url;
    out.consoleErrors.push(where ? `${m.text()} [${where}]` : m.text());
  });
  page.on("pageerror", (e) => out.consoleErrors.push(String(e)));
  page.on("requestfailed", (r) => {
    // Chromium cancels its own favicon fetch when the page navigates or closes first (net::ERR_ABORTED,
    // seen about once in twenty runs): not an answer of the server. Any other failure is recorded.
    const err = r.failure()?.errorText || "";
    if (err === "net::ERR_ABORTED" && r.url() === `${opt.base}/ui/static/favicon.svg`) return;
    out.failedRequests.push(`${r.method()} ${r.url()} ${err}`);
  });
  page.on("response", (r) => {
    // anything outside the server under test would be a CDN or tile server: record it
    if (!r.url().startsWith(opt.base) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) {
      out.failedRequests.push(`external ${r.url()}`);
    }
  });
  async function shot(name, suffix = "") {
    const file = path.join(opt.out, `${String(out.screenshots.length + 1).padStart(2, "0")}-${name}${suffix}.png`);
    await page.screenshot({ path: file, fullPage: true });
    out.screenshots.push(file);
    log("screenshot", file);
  }
  async function close() {
    await ctx.close();
    fs.rmSync(userDir, { recursive: true, force: true });
  }
  return { ctx, page, shot, close };
}
