"""The dashboard's files and routes without a browser: /ui is served with a strict CSP and no key,
static files only from api/static, every module the page imports exists, no file points at another
host (no CDN, no tile server), and every UI string exists in both languages."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routes.ui import STATIC_DIR
from api.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('ui') / 'ui.sqlite'}"
    with TestClient(create_app(Settings.from_env({"DATABASE_URL": url}), start_jobs=False)) as c:
        yield c


def test_page_and_static_files(client):
    r = client.get("/ui")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert '<script type="module" src="/ui/static/js/main.js">' in r.text
    js = client.get("/ui/static/js/main.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/ui/").status_code in (200, 308)


@pytest.mark.parametrize("path", ["/ui/static/../../app.py", "/ui/static/%2e%2e/%2e%2e/app.py", "/ui/static/",
                                  "/ui/static/js/missing.js", "/ui/static/.hidden", "/ui/static/js/..%2f..%2fapp.py"])
def test_nothing_outside_the_static_folder(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_ui_routes_stay_out_of_the_openapi_document(client):
    assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/ui")]


def _files(suffixes):
    return [p for p in STATIC_DIR.rglob("*") if p.is_file() and p.suffix in suffixes]


def test_every_referenced_file_exists():
    html = (STATIC_DIR / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="/ui/static/([^"]+)"', html)
    assert "js/main.js" in refs and "app.css" in refs
    for ref in refs:
        assert (STATIC_DIR / ref).is_file(), ref
    for js in _files({".js"}):
        for mod in re.findall(r'^import .* from "(\./[^"]+)";', js.read_text(), flags=re.M):
            assert (js.parent / mod).resolve().is_file(), f"{js.name} imports missing {mod}"


def test_no_other_host_is_referenced():
    for f in _files({".js", ".html", ".css", ".svg"}):
        urls = set(re.findall(r"https?://[^\s\"'`)]+", f.read_text())) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{f.name} references {urls}"


def _dictionary_keys(lang: str) -> set[str]:
    src = (STATIC_DIR / "js" / "i18n.js").read_text()
    start = src.index(f"  {lang}: {{")
    end = src.index("\n  },", start)
    block = re.sub(r"\n    (species|places): \{.*?\n    \},", "", src[start:end], flags=re.S)
    return set(re.findall(r"(?:^|[\s{,])([a-z][a-z0-9_]*):\s*\"", block, flags=re.M))


def test_every_string_exists_in_chinese_and_english():
    zh, en = _dictionary_keys("zh"), _dictionary_keys("en")
    assert len(zh) > 100 and zh == en, (zh ^ en)
    html = (STATIC_DIR / "index.html").read_text()
    used = set(re.findall(r'data-i18n(?:-aria|-placeholder)?="([a-z0-9_]+)"', html))
    for js in _files({".js"}):
        text = js.read_text()
        used |= set(re.findall(r'\bt\("([a-z0-9_]+)"', text))
        used |= set(re.findall(r'labelKey: "([a-z0-9_]+)"', text))
        used |= set(re.findall(r'"((?:col|kpi|chart|dl|run|lv|st|axis|legend)_[a-z0-9_]+)"', text))
    missing = used - zh
    assert not missing, f"strings used but not in the dictionary: {missing}"


def test_active_jobs_reads_every_page_of_the_keys_running_and_queued_jobs(tmp_path):
    """The dashboard's job resume (jobs.js activeJobs) follows next_offset: a tenant allowed more active jobs than one
    page of 100 (CRE_MAX_ACTIVE_JOBS_PER_TENANT) still finds its own, newest first (it read one page per status)."""
    import json
    import shutil
    import subprocess

    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    script = tmp_path / "active.mjs"
    script.write_text("""
import { activeJobs } from %s;
const jobs = Array.from({ length: 230 }, (_, i) => ({ id: `j${i}`, kind: i %% 2 ? "stress_test" : "accounts",
  created_by: i %% 5 ? "k1" : "k2", created_at: `2026-12-07T${String(10 + Math.floor(i / 60)).padStart(2, "0")}:${String(i %% 60).padStart(2, "0")}:00`,
  status: i < 150 ? "running" : "queued" }));
const seen = [];
const api = { get: async (path, q) => {
  seen.push([path, q.status, q.offset]);
  const all = jobs.filter((j) => j.status === q.status);
  return { items: all.slice(q.offset, q.offset + q.limit),
           next_offset: q.offset + q.limit < all.length ? q.offset + q.limit : null };
} };
const got = await activeJobs(api, ["stress_test"], "k1");
console.log(JSON.stringify({ ids: got.map((j) => j.id), seen }));
""" % json.dumps((STATIC_DIR / "js" / "jobs.js").as_uri()))
    r = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    want = [f"j{i}" for i in sorted(range(230), key=lambda i: (10 + i // 60, i % 60), reverse=True)
            if i % 2 and i % 5]
    assert out["ids"] == want
    assert [s[1:] for s in out["seen"]] == [["running", 0], ["running", 100], ["queued", 0]]
