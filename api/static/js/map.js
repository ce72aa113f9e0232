// An offline parcel map: an SVG scatter of parcel longitude/latitude (equirectangular, x scaled by
// cos(latitude)), county outlines approximated by the convex hull of each county's parcels, a legend,
// and zoom/pan by wheel, drag, buttons or keyboard. No tiles, no network.

import { el } from "./charts.js";

export const SPECIES_COLOURS = {
  chinese_fir: "#1b7837", masson_pine: "#e08214", other_pines: "#fdb863", cryptomeria: "#5aae61",
  mixed_conifer: "#8073ac", mixed_conifer_broadleaf: "#2166ac", evergreen_broadleaf: "#35978f",
  hard_broadleaf: "#8c510a", oaks: "#bf812d", moso_bamboo: "#a6d96a",
  slash_pine: "#b35806", schima: "#543005", liquidambar: "#c51b7d",
};
const FALLBACK = ["#666", "#999", "#333"];
export const RISK_COLOURS = ["#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15"];

/** Convex hull (Andrew's monotone chain) of [x, y] points, counter-clockwise. */
export function convexHull(points) {
  const p = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper = [];
  for (let i = p.length - 1; i >= 0; i--) {
    const q = p[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], q) <= 0) upper.pop();
    upper.push(q);
  }
  upper.pop();
  lower.pop();
  return lower.concat(upper);
}

/** Class breaks at the quintiles of the finite values (5 classes). */
export function quantileBreaks(values, k = 5) {
  const v = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!v.length) return [];
  const out = [];
  for (let i = 1; i < k; i++) out.push(v[Math.min(v.length - 1, Math.floor((i * v.length) / k))]);
  return out;
}

export class ParcelMap {
  /**
   * @param {SVGSVGElement} svg
   * @param {HTMLElement} legend
   */
  constructor(svg, legend) {
    this.svg = svg;
    this.legend = legend;
    this.parcels = [];
    this.view = null;
    this.full = null;
    this._installInteraction();
  }

  /** parcels: [{parcel_id, county, township, species_group, longitude, latitude, area_ha}] */
  setParcels(parcels) {
    this.parcels = parcels.filter((p) => Number.isFinite(p.longitude) && Number.isFinite(p.latitude));
    const lat0 = this.parcels.reduce((s, p) => s + p.latitude, 0) / Math.max(1, this.parcels.length);
    this.kx = Math.cos((lat0 * Math.PI) / 180);
    const xs = this.parcels.map((p) => p.longitude * this.kx), ys = this.parcels.map((p) => -p.latitude);
    const [xa, xb, ya, yb] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
    const pad = 0.04 * Math.max(xb - xa, yb - ya, 0.01);
    this.full = { x: xa - pad, y: ya - pad, w: xb - xa + 2 * pad, h: yb - ya + 2 * pad };
    this.view = { ...this.full };
    this._draw();
  }

  /** mode "species" or "risk"; risk: Map township -> value (tCO2e per ha per year). */
  colourBy(mode, risk = null, labels = {}) {
    this.mode = mode;
    this.risk = risk;
    this.labels = labels;
    this._paint();
  }

  _xy(p) { return [p.longitude * this.kx, -p.latitude]; }

  _draw() {
    const svg = this.svg;
    svg.replaceChildren();
    this._applyView();
    this.gHull = el("g", { class: "hulls" }, svg);
    this.gDots = el("g", { class: "dots" }, svg);
    this.gLabels = el("g", { class: "county-labels" }, svg);
    const byCounty = new Map();
    for (const p of this.parcels) {
      if (!byCounty.has(p.county)) byCounty.set(p.county, []);
      byCounty.get(p.county).push(this._xy(p));
    }
    this.countyLabelEls = [];
    for (const [county, pts] of byCounty) {
      const hull = convexHull(pts);
      el("polygon", { points: hull.map((q) => q.join(",")).join(" "), class: "hull", "data-county": county }, this.gHull);
      const cx = pts.reduce((s, q) => s + q[0], 0) / pts.length, cy = pts.reduce((s, q) => s + q[1], 0) / pts.length;
      const tx = el("text", { x: cx, y: cy, class: "county-label", "text-anchor": "middle", "data-county": county }, this.gLabels);
      tx.textContent = county;
      this.countyLabelEls.push(tx);
    }
    this.dots = this.parcels.map((p) => {
      const [x, y] = this._xy(p);
      const c = el("circle", { cx: x, cy: y, class: "parcel" }, this.gDots);
      c.__p = p;
      return c;
    });
    this._scaleMarks();
    this._paint();
  }

  _paint() {
    if (!this.dots) return;
    const L = this.labels || {};
    const items = [];
    if (this.mode === "risk" && this.risk) {
      const vals = [...this.risk.values()];
      const br = quantileBreaks(vals);
      const cls = (v) => (Number.isFinite(v) ? br.filter((b) => v >= b).length : -1);
      for (const c of this.dots) {
        const v = this.risk.get(c.__p.township);
        const k = cls(v);
        c.setAttribute("fill", k < 0 ? "#bbb" : RISK_COLOURS[k]);
        c.dataset.risk = Number.isFinite(v) ? String(v) : "";
      }
      const lo = Math.min(...vals.filter(Number.isFinite)), hi = Math.max(...vals.filter(Number.isFinite));
      const edges = [lo, ...br, hi];
      for (let k = 0; k < RISK_COLOURS.length && k < edges.length - 1; k++) {
        items.push([RISK_COLOURS[k], `${edges[k].toPrecision(2)} – ${edges[k + 1].toPrecision(2)}`]);
      }
    } else {
      const seen = new Map();
      for (const c of this.dots) {
        const sp = c.__p.species_group;
        const col = SPECIES_COLOURS[sp] || FALLBACK[seen.size % FALLBACK.length];
        c.setAttribute("fill", col);
        seen.set(sp, (seen.get(sp) || 0) + 1);
      }
      for (const [sp, n] of [...seen.entries()].sort((a, b) => b[1] - a[1])) {
        items.push([SPECIES_COLOURS[sp] || "#666", `${(L.species || ((x) => x))(sp)} (${n})`]);
      }
    }
    for (const tx of this.countyLabelEls || []) tx.textContent = (L.place || ((x) => x))(tx.dataset.county);
    this.legend.replaceChildren();
    const title = document.createElement("p");
    title.className = "legend-title";
    title.textContent = L.legendTitle || "";
    this.legend.appendChild(title);
    const ul = document.createElement("ul");
    for (const [col, text] of items) {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = col;
      sw.setAttribute("aria-hidden", "true");
      li.append(sw, document.createTextNode(text));
      ul.appendChild(li);
    }
    this.legend.appendChild(ul);
  }

  // ---- zoom and pan ----------------------------------------------------------------------
  _applyView() {
    const v = this.view;
    if (v) this.svg.setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
  }

  _scaleMarks() {
    if (!this.view) return;
    const px = this.view.w / Math.max(200, this.svg.clientWidth || 800);  // user units per screen pixel
    const r = 2.6 * px;
    for (const c of this.dots || []) c.setAttribute("r", r);
    this.svg.style.setProperty("--map-px", String(px));
    for (const tx of this.countyLabelEls || []) tx.setAttribute("font-size", 13 * px);
    this.gHull?.setAttribute("stroke-width", 1.5 * px);
  }

  zoom(factor, cx = null, cy = null) {
    if (!this.view) return;
    const v = this.view;
    cx = cx ?? v.x + v.w / 2;
    cy = cy ?? v.y + v.h / 2;
    const w = Math.min(this.full.w * 1.5, Math.max(this.full.w / 60, v.w / factor));
    const f = w / v.w;
    this.view = { x: cx - (cx - v.x) * f, y: cy - (cy - v.y) * f, w, h: v.h * f };
    this._applyView();
    this._scaleMarks();
  }

  pan(dxFrac, dyFrac) {
    if (!this.view) return;
    this.view.x += dxFrac * this.view.w;
    this.view.y += dyFrac * this.view.h;
    this._applyView();
  }

  reset() {
    if (!this.full) return;
    this.view = { ...this.full };
    this._applyView();
    this._scaleMarks();
  }

  _installInteraction() {
    const svg = this.svg;
    svg.addEventListener("wheel", (e) => {
      if (!this.view) return;
      e.preventDefault();
      const pt = this._toUser(e.clientX, e.clientY);
      this.zoom(e.deltaY < 0 ? 1.25 : 0.8, pt[0], pt[1]);
    }, { passive: false });
    let drag = null;
    svg.addEventListener("pointerdown", (e) => {
      if (!this.view) return;
      drag = { x: e.clientX, y: e.clientY, v: { ...this.view } };
      svg.setPointerCapture(e.pointerId);
    });
    svg.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const r = svg.getBoundingClientRect();
      const s = Math.max(drag.v.w / r.width, drag.v.h / r.height);
      this.view = { ...drag.v, x: drag.v.x - (e.clientX - drag.x) * s, y: drag.v.y - (e.clientY - drag.y) * s };
      this._applyView();
    });
    const end = () => { drag = null; };
    svg.addEventListener("pointerup", end);
    svg.addEventListener("pointercancel", end);
    svg.addEventListener("keydown", (e) => {
      const k = e.key;
      const moves = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] };
      if (moves[k]) { this.pan(...moves[k]); e.preventDefault(); }
      else if (k === "+" || k === "=") { this.zoom(1.25); e.preventDefault(); }
      else if (k === "-" || k === "_") { this.zoom(0.8); e.preventDefault(); }
      else if (k === "0") { this.reset(); e.preventDefault(); }
    });
  }

  _toUser(clientX, clientY) {
    const r = this.svg.getBoundingClientRect();
    const v = this.view;
    // preserveAspectRatio xMidYMid meet: the same scale on both axes, centred
    const s = Math.max(v.w / r.width, v.h / r.height);
    const ox = (r.width * s - v.w) / 2, oy = (r.height * s - v.h) / 2;
    return [v.x - ox + (clientX - r.left) * s, v.y - oy + (clientY - r.top) * s];
  }
}
