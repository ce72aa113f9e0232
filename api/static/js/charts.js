// Hand-written SVG charts (no library, no network): a bar chart with error bars, an exceedance curve
// and a fan chart. Each draws into an <svg role="img"> with a <title> and a <desc> listing its data in the
// page's language (numbers formatted, errors and baselines included). On a narrow screen a chart is drawn
// in a viewBox as wide as the chart is on screen (so its 11-12 px labels stay 11-12 px, not scaled down to
// 5 px), and drawn again when its width changes (a ResizeObserver; a chart drawn on a hidden tab is drawn
// again when the tab shows).

import { fmt, fmtPct, t } from "./i18n.js";

const NS = "http://www.w3.org/2000/svg";
const FULL_W = 640;  // the viewBox width on a wide screen (scaled to fit)
const NARROW_BELOW = 560;  // a chart narrower than this on screen is drawn in its own width (at least 300)

/** The viewBox width to draw `svg` in: its width on screen when narrow, else FULL_W (hidden: FULL_W). */
export function chartWidth(svg) {
  const w = svg.getBoundingClientRect ? svg.getBoundingClientRect().width : 0;
  return w > 0 && w < NARROW_BELOW ? Math.max(300, Math.round(w)) : FULL_W;
}

let observer = null;
/** Remember how `svg` was drawn, draw it, and draw it again whenever its width on screen calls for another
 * viewBox width. */
function draw(svg, paint) {
  svg.__chartPaint = paint;
  paint();
  if (typeof ResizeObserver === "undefined") return;
  observer ??= new ResizeObserver((entries) => {
    for (const e of entries) {
      const s = e.target;
      if (s.__chartPaint && chartWidth(s) !== s.__chartW) s.__chartPaint();
    }
  });
  if (!svg.__chartObserved) { observer.observe(svg); svg.__chartObserved = true; }
}

/** A number for a chart's description: whole numbers from 100 up, else 2 significant decimals. */
const num = (v) => (Number.isFinite(v) ? fmt(v, Math.abs(v) >= 100 || v === 0 ? 0 : 2) : "—");

export function el(name, attrs = {}, parent = null) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

/** Round tick values from at or below `lo` to at or above `hi`. */
export function niceTicks(lo, hi, n = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  const first = Math.floor(lo / step + 1e-9), last = Math.ceil(hi / step - 1e-9);
  for (let i = first; i <= last; i++) out.push(i === 0 ? 0 : +(i * step).toPrecision(12));
  return out;
}

export function shortNum(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toPrecision(3)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toPrecision(3)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toPrecision(3)}k`;
  return `${+v.toPrecision(3)}`;
}

function frame(svg, title, desc, W, H) {
  svg.replaceChildren();
  svg.__chartW = W;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  const tid = `${svg.id}-title`;
  const did = `${svg.id}-desc`;
  el("title", { id: tid }, svg).textContent = title;
  el("desc", { id: did }, svg).textContent = desc;
  svg.setAttribute("aria-labelledby", `${tid} ${did}`);
}

function axisLabel(svg, text, x, y, rotate = false) {
  const e = el("text", { x, y, class: "axis-title", "text-anchor": "middle" }, svg);
  if (rotate) e.setAttribute("transform", `rotate(-90 ${x} ${y})`);
  e.textContent = text;
}

/**
 * Horizontal bars: one per label, value with an optional ± error bar.
 * @param {SVGSVGElement} svg
 * With `baseline` (one value per label) a dark tick marks each label's baseline value.
 * @param {{labels: string[], values: number[], errors?: number[], baseline?: number[], title: string, xLabel: string}} d
 * `minMax` is the least upper end of the axis (so that all-zero probabilities still get a readable scale).
 * `format` formats a value (and its error bar's half width) for the description; `errorLabel` says what the error
 * bars are (e.g. "± 2 Monte Carlo s.e."), named in the description.
 */
export function barChart(svg, d) {
  draw(svg, () => paintBars(svg, d));
}

function paintBars(svg, { labels, values, errors = [], baseline = null, baselineLabel = "", title, xLabel, minMax = 1e-9,
  format = num, errorLabel = "" }) {
  const W = chartWidth(svg), rowH = 26, top = 12, left = Math.min(190, Math.round(W * 0.36)), right = 24;
  // narrow: the baseline's legend on a row of its own under the axis title (beside it, they overlap)
  const legendRow = !!baseline && W < FULL_W;
  const bottom = legendRow ? 66 : 48;
  const H = top + bottom + rowH * labels.length;
  const items = labels.map((l, i) => {
    const e = errors[i], b = baseline?.[i];
    return t("desc_bar", { label: l, v: format(values[i]) }) + (e > 0 ? t("desc_err", { e: format(e) }) : "") +
      (Number.isFinite(b) ? t("desc_base", { name: baselineLabel, b: format(b) }) : "");
  });
  const lead = errors.some((e) => e > 0) && errorLabel ? [t("desc_errors", { what: errorLabel })] : [];
  frame(svg, title, [...lead, ...items].join(t("desc_sep")), W, H);
  const hi = Math.max(minMax, ...values.map((v, i) => v + (errors[i] || 0)), ...(baseline || []).filter(Number.isFinite));
  const lo = Math.min(0, ...values.map((v, i) => v - (errors[i] || 0)));
  const ticks = niceTicks(lo, hi, 5);
  const x0 = Math.min(lo, ticks[0]), x1 = Math.max(hi, ticks[ticks.length - 1]);
  const X = (v) => left + ((v - x0) / (x1 - x0)) * (W - left - right);
  const g = el("g", { class: "grid" }, svg);
  for (const tk of ticks) {
    el("line", { x1: X(tk), x2: X(tk), y1: top, y2: H - bottom }, g);
    el("text", { x: X(tk), y: H - bottom + 16, "text-anchor": "middle", class: "tick" }, svg).textContent = shortNum(tk);
  }
  labels.forEach((lab, i) => {
    const y = top + i * rowH;
    const v = values[i];
    el("text", { x: left - 8, y: y + rowH / 2 + 4, "text-anchor": "end", class: "tick label" }, svg).textContent = lab;
    const bar = el("rect", { x: Math.min(X(0), X(v)), y: y + 4, width: Math.max(1, Math.abs(X(v) - X(0))), height: rowH - 8,
      class: "bar", "data-label": lab, "data-value": String(v) }, svg);
    el("title", {}, bar).textContent = `${lab}: ${shortNum(v)}`;
    const b = baseline?.[i];
    if (Number.isFinite(b)) {
      const m = el("line", { x1: X(b), x2: X(b), y1: y + 1, y2: y + rowH - 1, class: "base-mark", "data-value": String(b) }, svg);
      el("title", {}, m).textContent = `${baselineLabel}: ${shortNum(b)}`;
    }
    const e = errors[i];
    if (e > 0) {
      const ey = y + rowH / 2;
      el("line", { x1: X(v - e), x2: X(v + e), y1: ey, y2: ey, class: "errbar" }, svg);
      el("line", { x1: X(v - e), x2: X(v - e), y1: ey - 5, y2: ey + 5, class: "errbar" }, svg);
      el("line", { x1: X(v + e), x2: X(v + e), y1: ey - 5, y2: ey + 5, class: "errbar" }, svg);
    }
  });
  axisLabel(svg, xLabel, (left + W - right) / 2, H - (legendRow ? 28 : 10));
  if (baseline) {
    const lx = legendRow ? left : W - right - 150;
    el("line", { x1: lx, x2: lx, y1: H - 18, y2: H - 4, class: "base-mark" }, svg);
    el("text", { x: lx + 6, y: H - 7, class: "tick" }, svg).textContent = baselineLabel;
  }
}

/**
 * Exceedance curve: loss on x, probability of exceeding it on y (log scale 0.005-1).
 * `what` ("loss" or "payout") names the amount in the description; `start` ({prob, label}), where given, is the
 * probability that the amount exceeds 0 (an insurance quote's P(payout)): the curve starts there, at 0, with an
 * open marker (circle.anchor), and the description says so.
 * @param {{points: {loss: number, prob: number}[], title: string, xLabel: string, yLabel: string}} d
 */
export function exceedanceChart(svg, d) {
  draw(svg, () => paintExceedance(svg, d));
}

const probText = (p) => fmtPct(p, p < 0.01 ? 2 : 1);
/** the exceedance chart's lowest probability (its log axis' floor) */
const PROB_FLOOR = 0.005;

function paintExceedance(svg, { points, title, xLabel, yLabel, what = "loss", start = null, format = (v) => fmt(v, 0) }) {
  const W = chartWidth(svg), H = 320, left = W < FULL_W ? 58 : 70, right = 24, top = 14, bottom = 48;
  const pts = points.filter((p) => Number.isFinite(p.loss) && p.prob > 0).sort((a, b) => a.loss - b.loss);
  const anchor = start && start.prob > 0 ? { loss: 0, prob: start.prob } : null;
  const key = what === "payout" ? "desc_exceed_payout" : "desc_exceed_loss";
  frame(svg, title, [...(anchor ? [t(key, { x: format(0), p: probText(anchor.prob) })] : []),
    ...pts.map((p) => t(key, { x: format(p.loss), p: probText(p.prob) }))].join(t("desc_sep")), W, H);
  // the axis runs down to PROB_FLOOR: what lies below it is in the description, not drawn (a rare payout's start
  // point had fallen below the axis, its marker clipped and its line entering from under the frame)
  const shown = pts.filter((p) => p.prob >= PROB_FLOOR);
  if (anchor && anchor.prob >= PROB_FLOOR) shown.unshift(anchor);
  if (!shown.length) return;
  pts.splice(0, pts.length, ...shown);
  const ticks = niceTicks(Math.min(0, pts[0].loss), pts[pts.length - 1].loss, 5);
  const x0 = ticks[0], x1 = ticks[ticks.length - 1];
  const X = (v) => left + ((v - x0) / (x1 - x0 || 1)) * (W - left - right);
  const yTicks = [1, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01, PROB_FLOOR];
  const ymin = Math.log10(PROB_FLOOR);
  const Y = (p) => top + (Math.log10(p) / ymin) * (H - top - bottom);
  const g = el("g", { class: "grid" }, svg);
  for (const tk of ticks) {
    el("line", { x1: X(tk), x2: X(tk), y1: top, y2: H - bottom }, g);
    el("text", { x: X(tk), y: H - bottom + 16, "text-anchor": "middle", class: "tick" }, svg).textContent = shortNum(tk);
  }
  for (const p of yTicks) {
    el("line", { x1: left, x2: W - right, y1: Y(p), y2: Y(p) }, g);
    el("text", { x: left - 6, y: Y(p) + 4, "text-anchor": "end", class: "tick" }, svg).textContent = p >= 0.01 ? `${p * 100}%` : `${p * 100}%`;
  }
  el("polyline", { points: pts.map((p) => `${X(p.loss)},${Y(p.prob)}`).join(" "), class: "line" }, svg);
  for (const p of pts) {
    const first = p === anchor;
    const c = el("circle", { cx: X(p.loss), cy: Y(p.prob), r: 4, class: first ? "anchor" : "dot", "data-prob": String(p.prob),
      "data-loss": String(p.loss) }, svg);
    el("title", {}, c).textContent = first && start.label ? `${start.label}: ${probText(p.prob)}` : t(key, { x: format(p.loss), p: probText(p.prob) });
  }
  axisLabel(svg, xLabel, (left + W - right) / 2, H - 10);
  axisLabel(svg, yLabel, 16, (top + H - bottom) / 2, true);
}

/**
 * Fan chart over years: the bands p05-p95, p10-p90 and p25-p75 that the rows have, the median (p50)
 * line, and a dashed `base` line when the rows have one (a stress test's baseline).
 * @param {{rows: {year: number, p05: number, p10?: number, p50: number, p90?: number, p95: number, base?: number}[]}} d
 */
export function fanChart(svg, d) {
  draw(svg, () => paintFan(svg, d));
}

function paintFan(svg, { rows, title, xLabel, yLabel, baselineLabel = "", format = (v) => fmt(v, 0), bandLabel = "" }) {
  const W = chartWidth(svg), H = 320, left = W < FULL_W ? 58 : 70, right = 24, top = 14, bottom = 48;
  const items = rows.map((r) => t("desc_fan", { year: r.year, p50: format(r.p50), lo: format(r.p05), hi: format(r.p95) }) +
    (Number.isFinite(r.base) ? t("desc_base", { name: baselineLabel, b: format(r.base) }) : ""));
  frame(svg, title, [...(bandLabel ? [bandLabel] : []), ...items].join(t("desc_sep")), W, H);
  if (!rows.length) return;
  const bases = rows.map((r) => r.base).filter(Number.isFinite);
  const lo = Math.min(...rows.map((r) => r.p05), ...bases), hi = Math.max(...rows.map((r) => r.p95), ...bases);
  const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 1;
  const yt = niceTicks(lo - pad, hi + pad, 5);
  const y0 = Math.min(lo - pad, yt[0]), y1 = Math.max(hi + pad, yt[yt.length - 1]);
  const xs = rows.map((r) => r.year);
  const xa = Math.min(...xs), xb = Math.max(...xs);
  const X = (v) => left + ((v - xa) / (xb - xa || 1)) * (W - left - right);
  const Y = (v) => top + (1 - (v - y0) / (y1 - y0)) * (H - top - bottom);
  const g = el("g", { class: "grid" }, svg);
  for (const tk of yt) {
    el("line", { x1: left, x2: W - right, y1: Y(tk), y2: Y(tk) }, g);
    el("text", { x: left - 6, y: Y(tk) + 4, "text-anchor": "end", class: "tick" }, svg).textContent = shortNum(tk);
  }
  const step = Math.max(1, Math.ceil(rows.length / (W < FULL_W ? 6 : 10)));
  rows.forEach((r, i) => {
    if (i % step === 0 || i === rows.length - 1) {
      el("text", { x: X(r.year), y: H - bottom + 16, "text-anchor": "middle", class: "tick" }, svg).textContent = String(r.year);
    }
  });
  const band = (a, b, cls) => {
    const up = rows.map((r) => `${X(r.year)},${Y(r[b])}`);
    const dn = rows.slice().reverse().map((r) => `${X(r.year)},${Y(r[a])}`);
    el("polygon", { points: [...up, ...dn].join(" "), class: cls }, svg);
  };
  const has = (a, b) => rows.every((r) => Number.isFinite(r[a]) && Number.isFinite(r[b]));
  if (has("p05", "p95")) band("p05", "p95", "band band-90");
  if (has("p10", "p90")) band("p10", "p90", "band band-80");
  if (has("p25", "p75")) band("p25", "p75", "band band-50");
  el("polyline", { points: rows.map((r) => `${X(r.year)},${Y(r.p50)}`).join(" "), class: "line median" }, svg);
  if (bases.length === rows.length) {
    el("polyline", { points: rows.map((r) => `${X(r.year)},${Y(r.base)}`).join(" "), class: "line baseline" }, svg);
    const lx = left + 10;
    el("line", { x1: lx, x2: lx + 24, y1: top + 10, y2: top + 10, class: "line baseline" }, svg);
    el("text", { x: lx + 30, y: top + 14, class: "tick" }, svg).textContent = baselineLabel;
  }
  axisLabel(svg, xLabel, (left + W - right) / 2, H - 10);
  axisLabel(svg, yLabel, 16, (top + H - bottom) / 2, true);
}
