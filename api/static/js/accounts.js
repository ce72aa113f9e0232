// The five-level carbon accounts as a drill-down table: province -> city -> county -> township ->
// village. Each row with children has a toggle button (aria-expanded); collapsing a row hides its
// whole subtree. Rows come straight from GET .../accounts (all levels).

export const LEVELS = ["province", "city", "county", "township", "village"];

/** Build the tree: nodes {row, key, level, name, children[]} under a virtual root, children by `sortKey` descending. */
export function buildTree(rows, sortKey = "stock_bef_tco2e") {
  const byKey = new Map();
  const root = { children: [], key: "" };
  const keyOf = (r, depth) => LEVELS.slice(0, depth + 1).map((l) => r[l] ?? "").join("/");
  const sorted = rows.filter((r) => LEVELS.includes(r.level))
    .sort((a, b) => LEVELS.indexOf(a.level) - LEVELS.indexOf(b.level));
  for (const r of sorted) {
    const depth = LEVELS.indexOf(r.level);
    const key = keyOf(r, depth);
    const node = { row: r, key, level: r.level, depth, name: r[r.level], children: [] };
    byKey.set(key, node);
    const parent = depth === 0 ? root : byKey.get(keyOf(r, depth - 1));
    (parent || root).children.push(node);
  }
  const sortRec = (n) => {
    n.children.sort((a, b) => (b.row[sortKey] ?? 0) - (a.row[sortKey] ?? 0));
    n.children.forEach(sortRec);
  };
  sortRec(root);
  return root;
}

/**
 * Render the tree into a <tbody>.
 * @param {HTMLTableSectionElement} tbody
 * @param {object} root from buildTree
 * @param {{columns: {key: string, fmt: Function, resolved?: Function}[], t: Function, place: Function, openDepth: number}} opts
 *   each column's `fmt(value, row)` gives its text; `resolved(value, row)`, when given, marks a parameter sd cell
 *   (data-psd-resolved)
 */
export function renderTree(tbody, root, { columns, t, place, openDepth = 2 }) {
  tbody.replaceChildren();
  const rowsByKey = new Map();
  const walk = (node, parentKey) => {
    const tr = document.createElement("tr");
    tr.dataset.key = node.key;
    tr.dataset.level = node.level;
    tr.dataset.parent = parentKey;
    tr.className = `lvl-${node.depth}`;
    const th = document.createElement("th");
    th.scope = "row";
    th.className = "tree-cell";
    th.style.paddingLeft = `${0.4 + node.depth * 1.2}rem`;
    const label = place(node.name) || t(`lv_${node.level}`);
    if (node.children.length) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "toggle";
      b.setAttribute("aria-expanded", node.depth < openDepth ? "true" : "false");
      b.setAttribute("aria-label", t(node.depth < openDepth ? "collapse_row" : "expand_row", { name: label }));
      b.textContent = node.depth < openDepth ? "▾" : "▸";
      th.appendChild(b);
    } else {
      const sp = document.createElement("span");
      sp.className = "toggle-spacer";
      sp.setAttribute("aria-hidden", "true");
      th.appendChild(sp);
    }
    const name = document.createElement("span");
    name.className = "acc-name";
    name.textContent = label;
    th.appendChild(name);
    tr.appendChild(th);
    const lv = document.createElement("td");
    lv.textContent = t(`lv_${node.level}`);
    tr.appendChild(lv);
    for (const c of columns) {
      const td = document.createElement("td");
      td.className = "num";
      const v = node.row[c.key];
      td.dataset.value = v === null || v === undefined ? "" : String(v);
      td.dataset.col = c.key;
      td.textContent = c.fmt(v, node.row);
      const ok = c.resolved?.(v, node.row);
      if (ok !== undefined) td.dataset.psdResolved = String(ok);  // a parameter sd column (main.js)
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
    rowsByKey.set(node.key, { tr, node });
    node.children.forEach((ch) => walk(ch, node.key));
  };
  root.children.forEach((n) => walk(n, ""));
  const visible = () => {
    for (const { tr } of rowsByKey.values()) {
      let p = tr.dataset.parent, shown = true;
      while (p) {
        const par = rowsByKey.get(p);
        if (!par) break;
        if (par.tr.querySelector("button.toggle")?.getAttribute("aria-expanded") !== "true") { shown = false; break; }
        p = par.tr.dataset.parent;
      }
      tr.hidden = !shown;
    }
  };
  const setOpen = (key, open) => {
    const e = rowsByKey.get(key);
    const b = e?.tr.querySelector("button.toggle");
    if (!b) return;
    const label = e.tr.querySelector(".acc-name").textContent;
    b.setAttribute("aria-expanded", open ? "true" : "false");
    b.setAttribute("aria-label", t(open ? "collapse_row" : "expand_row", { name: label }));
    b.textContent = open ? "▾" : "▸";
  };
  tbody.onclick = (e) => {
    const b = e.target.closest("button.toggle");
    if (!b) return;
    const key = b.closest("tr").dataset.key;
    setOpen(key, b.getAttribute("aria-expanded") !== "true");
    visible();
  };
  visible();
  return {
    expandAll() { for (const k of rowsByKey.keys()) setOpen(k, true); visible(); },
    collapseAll() { for (const k of rowsByKey.keys()) setOpen(k, false); visible(); },
    toggle(key) {
      const b = rowsByKey.get(key)?.tr.querySelector("button.toggle");
      if (b) { setOpen(key, b.getAttribute("aria-expanded") !== "true"); visible(); }
    },
  };
}
