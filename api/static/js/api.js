// A small client of the /v1 API: the key from sessionStorage as a Bearer token, problem+json errors
// as ApiError, paging helpers and authenticated downloads.

const KEY_STORE = "cre.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

export function savedKey() {
  try { return sessionStorage.getItem(KEY_STORE); } catch { return null; }
}

export function saveKey(key) { sessionStorage.setItem(KEY_STORE, key); }

export function forgetKey() { sessionStorage.removeItem(KEY_STORE); }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Api {
  constructor(key, base = "") {
    this.key = key;
    this.base = base;
  }

  async raw(method, path, { query, json, form, headers = {} } = {}) {
    const url = new URL(this.base + path, window.location.origin);
    for (const [k, v] of Object.entries(query || {})) {
      if (v !== undefined && v !== null) url.searchParams.set(k, v);
    }
    const h = { Authorization: `Bearer ${this.key}`, ...headers };
    let body;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form;
    }
    for (let attempt = 0; ; attempt++) {
      const resp = await fetch(url, { method, headers: h, body });
      if (resp.status === 429 && attempt < 5) {  // rate limited: wait as told, then retry
        const wait = Number(resp.headers.get("Retry-After") || "1");
        await sleep(Math.min(10, Math.max(0.2, wait)) * 1000);
        continue;
      }
      if (!resp.ok) {
        let problem = null;
        try { problem = await resp.json(); } catch { /* not JSON */ }
        throw new ApiError(resp.status, problem);
      }
      return resp;
    }
  }

  async get(path, query) { return (await this.raw("GET", path, { query })).json(); }

  async post(path, json) {
    const resp = await this.raw("POST", path, { json });
    return { status: resp.status, body: resp.status === 204 ? null : await resp.json() };
  }

  /** Every item of a paged list endpoint (limit 500 per request). */
  async all(path, query = {}, onPage) {
    const items = [];
    let offset = 0;
    for (;;) {
      const page = await this.get(path, { ...query, limit: 500, offset });
      items.push(...page.items);
      if (onPage) onPage(items.length, page.total);
      if (page.next_offset === null || page.next_offset === undefined) return items;
      offset = page.next_offset;
    }
  }

  /** Fetch a document with the key and hand it to the browser as a file. */
  async download(path, fallbackName, query) {
    const resp = await this.raw("GET", path, { query });
    const cd = resp.headers.get("Content-Disposition") || "";
    const m = /filename\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(cd);
    const name = m ? decodeURIComponent(m[1]) : fallbackName;
    const blob = await resp.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    return { name, size: blob.size };
  }
}

/**
 * A refused request as the page shows it: the page's own lead-in (translated), then each of the problem's
 * errors (at most `max`) as a list item with `where(error)` (translated: the row, column or field) and the
 * server's reason on a line of its own, marked as English (lang="en"); without errors, the server's detail.
 * Returns the nodes to put in the message's element.
 */
export function problemNodes(err, lead, { max = 10, where = null } = {}) {
  const span = (cls, text, en = false) => {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    if (en) s.lang = "en";
    return s;
  };
  const out = [span("problem-lead", lead)];
  const errs = err?.problem?.errors || [];
  if (errs.length && where) {
    const ul = document.createElement("ul");
    ul.className = "problem-list";
    for (const x of errs.slice(0, max)) {
      const li = document.createElement("li");
      li.append(span("problem-where", where(x)), span("server-detail", String(x.reason ?? ""), true));
      ul.appendChild(li);
    }
    out.push(ul);
  } else if (err?.problem && err.message) {
    out.push(span("server-detail", err.message, true));
  }
  return out;
}
