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

/** The page `sel` (a tabpanel) as a 390 px wide phone shows it: the document's width, each card that is wider
 * than its box (a card that scrolls sideways, .table-scroll, may be), each chart's tick labels in CSS px (its
 * viewBox scaled to the screen) and the most lines any body cell of a sideways-scrolling table wraps to. Sets the
 * viewport to 390 x 900 (a full-page screenshot `shot(name)` there, if given) and back to `restore` after; waits for
 * the charts to be drawn again at each width. */
export async function measureNarrow(page, sel, { shot = null, name = "narrow", restore = { width: 1400, height: 1000 } } = {}) {
  await page.setViewportSize({ width: 390, height: 900 });
  await page.waitForTimeout(400);  // the charts' ResizeObserver draws them again
  const m = await page.evaluate((sel) => {
    const root = document.querySelector(sel);
    const shown = (e) => e.getClientRects().length > 0;
    const cards = [...root.querySelectorAll(".card")].filter(shown).filter((c) => !c.classList.contains("table-scroll"))
      .filter((c) => c.scrollWidth > c.clientWidth + 1 || c.getBoundingClientRect().right > 390.5)
      .map((c) => ({ id: c.id || c.querySelector("[id]")?.id || c.className, scroll: c.scrollWidth, client: c.clientWidth,
        right: c.getBoundingClientRect().right }));
    const charts = [...root.querySelectorAll("svg[role=img]")].filter(shown).map((s) => {
      const scale = s.getBoundingClientRect().width / s.viewBox.baseVal.width;
      const tick = s.querySelector("text.tick");
      return { id: s.id, scale, tickPx: tick ? parseFloat(getComputedStyle(tick).fontSize) * scale : null,
        viewBoxWidth: s.viewBox.baseVal.width };
    });
    const tables = [...root.querySelectorAll(".table-scroll table.data")].filter(shown).map((t) => {
      let lines = 0;
      for (const c of t.querySelectorAll("tbody th, tbody td")) {
        const cs = getComputedStyle(c);
        const lh = parseFloat(cs.lineHeight) || 1.5 * parseFloat(cs.fontSize);
        lines = Math.max(lines, Math.round((c.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom)) / lh));
      }
      return { id: t.id, lines };
    });
    return { docWidth: document.documentElement.scrollWidth, cards, charts, tables };
  }, sel);
  if (shot) await shot(name);
  await page.setViewportSize(restore);
  await page.waitForTimeout(300);
  return m;
}
