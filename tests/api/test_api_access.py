"""Role checks and tenant isolation for every endpoint, driven by a table of the route list.

``ACCESS`` names, for every route of the app, the roles allowed to call it. A route missing from the
table (a new endpoint without a decision) fails ``test_every_route_has_an_access_rule``. Each route
is then called by every role, with path ids that belong to *another* tenant: roles outside the rule
get 403, roles inside get 404 for another tenant's resource (never its data), and lists never show
another tenant's items. Without a key every route answers 401.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.api.conftest import ROLES

A = ("bank", "insurer", "bureau")
LENDERS = ("bank", "bureau")
UNDERWRITERS = ("insurer", "bureau")
TERMS = {"amount_cny": 1e5, "term_years": 2, "interest_rate": 0.05, "crediting_horizon_years": 4}
ALL = ROLES
ACCESS: dict[tuple[str, str], tuple[str, ...]] = {
    ("POST", "/v1/portfolios"): A,
    ("GET", "/v1/portfolios"): A,
    ("GET", "/v1/portfolios/{portfolio_id}"): A,
    ("DELETE", "/v1/portfolios/{portfolio_id}"): A,
    ("GET", "/v1/portfolios/{portfolio_id}/accounts"): A,
    ("POST", "/v1/accounts"): A,
    ("GET", "/v1/accounts"): A,
    ("GET", "/v1/accounts/{accounts_id}"): A,
    ("GET", "/v1/accounts/{accounts_id}/rows"): A,
    ("POST", "/v1/portfolios/{portfolio_id}/loans"): ("bank", "bureau"),
    ("GET", "/v1/portfolios/{portfolio_id}/loans"): ("bank", "bureau"),
    ("GET", "/v1/loans"): ("bank", "bureau"),
    ("GET", "/v1/loans/{item_id}"): ("bank", "bureau"),
    ("DELETE", "/v1/loans/{item_id}"): ("bank", "bureau"),
    ("POST", "/v1/portfolios/{portfolio_id}/policies"): ("insurer", "bureau"),
    ("GET", "/v1/portfolios/{portfolio_id}/policies"): ("insurer", "bureau"),
    ("GET", "/v1/policies"): ("insurer", "bureau"),
    ("GET", "/v1/policies/{item_id}"): ("insurer", "bureau"),
    ("DELETE", "/v1/policies/{item_id}"): ("insurer", "bureau"),
    ("POST", "/v1/simulations"): A,
    ("GET", "/v1/simulations"): A,
    ("GET", "/v1/simulations/{simulation_id}"): A,
    ("GET", "/v1/simulations/{simulation_id}/summary"): A,
    ("GET", "/v1/simulations/{simulation_id}/event-loss-table"): A,
    ("GET", "/v1/simulations/{simulation_id}/accounts"): A,
    ("GET", "/v1/simulations/{simulation_id}/parcels"): A,
    ("GET", "/v1/jobs"): A,
    ("GET", "/v1/jobs/{job_id}"): A,
    ("GET", "/v1/jobs/{job_id}/result"): A,
    ("POST", "/v1/jobs/{job_id}/cancel"): A,
    ("GET", "/v1/models"): ALL,
    ("GET", "/v1/models/{model_id}"): ALL,
    ("GET", "/v1/scenarios"): ALL,
    ("GET", "/v1/scenarios/{scenario_id}"): ALL,
    ("GET", "/v1/audit"): ALL,
    ("POST", "/v1/collateral-valuations"): LENDERS,
    ("GET", "/v1/collateral-valuations"): LENDERS,
    ("GET", "/v1/collateral-valuations/{valuation_id}"): LENDERS,
    ("GET", "/v1/collateral-valuations/{valuation_id}/memo"): LENDERS,
    ("POST", "/v1/quotes"): UNDERWRITERS,
    ("GET", "/v1/quotes"): UNDERWRITERS,
    ("GET", "/v1/quotes/{quote_id}"): UNDERWRITERS,
    ("GET", "/v1/quotes/{quote_id}/slip"): UNDERWRITERS,
    ("POST", "/v1/layer-pricing"): UNDERWRITERS,
    ("GET", "/v1/layer-pricing"): UNDERWRITERS,
    ("GET", "/v1/layer-pricing/{layer_id}"): UNDERWRITERS,
    ("POST", "/v1/stress-tests"): ("bureau",),
    ("GET", "/v1/stress-tests"): ("bureau",),
    ("GET", "/v1/stress-tests/{stress_test_id}"): ("bureau",),
    ("GET", "/v1/stress-tests/{stress_test_id}/tables/{table}"): ("bureau",),
    ("GET", "/v1/stress-tests/{stress_test_id}/accounts"): ("bureau",),
    ("GET", "/v1/stress-tests/{stress_test_id}/report"): ("bureau",),
    ("GET", "/v1/stress-tests/{stress_test_id}/workbook"): ("bureau",),
    ("GET", "/v1/admin/tenants"): ("admin",),
    ("POST", "/v1/admin/tenants"): ("admin",),
    ("GET", "/v1/admin/tenants/{tenant_id}"): ("admin",),
    ("GET", "/v1/admin/keys/{key_id}"): ("admin",),
    ("GET", "/v1/admin/tenants/{tenant_id}/keys"): ("admin",),
    ("POST", "/v1/admin/tenants/{tenant_id}/keys"): ("admin",),
    ("POST", "/v1/admin/keys/{key_id}/revoke"): ("admin",),
}
# routes whose path ids are not tenant-owned (shared reference data or administration)
SHARED = {"/v1/models/{model_id}", "/v1/scenarios/{scenario_id}", "/v1/admin/tenants/{tenant_id}/keys",
          "/v1/admin/keys/{key_id}/revoke", "/v1/admin/tenants/{tenant_id}", "/v1/admin/keys/{key_id}"}

# routes whose body names a tenant-owned resource (the test sends another tenant's)
OWNED_IN_BODY = {("POST", "/v1/simulations"), ("POST", "/v1/collateral-valuations"), ("POST", "/v1/quotes"),
                 ("POST", "/v1/stress-tests"), ("POST", "/v1/accounts")}


def app_routes(app) -> set[tuple[str, str]]:
    """(method, path) of every /v1 operation of the app (from its OpenAPI document, which lists
    every route; none of ours is hidden from it)."""
    paths = app.openapi()["paths"]
    return {(m.upper(), p) for p, ops in paths.items() if p.startswith("/v1") for m in ops}


@pytest.fixture(scope="module", params=["sqlite"])
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def other(env):
    """Resources of tenant bureau-b (ids other tenants must not reach)."""
    c, h = env.client, env.h("bureau", "b")
    pid = env.portfolios[("bureau", "b")]
    loan = c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"terms": {"amount_cny": 1e6, "term_years": 3, "rate": 0.05}}).json()["id"]
    policy = c.post(f"/v1/portfolios/{pid}/policies", headers=h,
                    json={"terms": {"sum_insured_cny": 1e6, "perils": ["fire"]}}).json()["id"]
    sim = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 32,
                                                     "loss_table_level": "portfolio"}).json()["id"]
    job = c.post("/v1/simulations", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 32,
                                                     "mode": "job"}).json()["id"]
    for _ in range(200):
        if c.get(f"/v1/jobs/{job}", headers=h).json()["status"] == "succeeded":
            break
        time.sleep(0.05)
    val = c.post("/v1/collateral-valuations", headers=h, json={"portfolio_id": pid, "terms": TERMS, "paths": 32,
                                                               "sensitivities": False}).json()["id"]
    qt = c.post("/v1/quotes", headers=h, json={"portfolio_id": pid, "cover": {"kind": "stock-loss"},
                                               "paths": 32}).json()["id"]
    lp = c.post("/v1/layer-pricing", headers=h, json={"rows": [{"year": 0, "event_id": 1, "loss": 5.0}],
                                                      "n_years": 2, "attachment": 1}).json()["id"]
    st = c.post("/v1/stress-tests", headers=h, json={"portfolio_id": pid, "years": 1, "paths": 8, "mode": "auto",
                                                     "footprints": False}).json()["id"]
    acc = c.post("/v1/accounts", headers=h, json={"portfolio_id": pid, "paths": 8}).json()["id"]
    admin = env.h("admin", "a")
    tenants = c.get("/v1/admin/tenants?limit=500", headers=admin).json()["items"]
    tid = next(t["id"] for t in tenants if t["name"] == "bureau-b")
    return {"portfolio_id": pid, "item_id": None, "loan": loan, "policy": policy, "simulation_id": sim,
            "job_id": job, "model_id": "lishui", "scenario_id": "lishui.climate.current", "tenant_id": tid,
            "key_id": env.keys[("bureau", "b")][4:16], "valuation_id": val, "quote_id": qt, "layer_id": lp,
            "stress_test_id": st, "table": "portfolio", "accounts_id": acc}


def fill(path: str, ids: dict) -> str:
    def rep(m):
        name = m.group(1)
        if name == "item_id":
            return ids["loan"] if path.startswith("/v1/loans") else ids["policy"]
        return ids[name]
    return re.sub(r"\{(\w+)\}", rep, path)


def body_for(method: str, path: str, ids: dict, role: str):
    if method != "POST":
        return None
    if path == "/v1/portfolios":
        return "upload"
    if path.endswith("/loans"):
        return {"terms": {"amount_cny": 1e6, "term_years": 3, "rate": 0.05}}
    if path.endswith("/policies"):
        return {"terms": {"sum_insured_cny": 1e6, "perils": ["fire"]}}
    if path == "/v1/simulations":
        return {"portfolio_id": ids["portfolio_id"], "years": 1, "paths": 32}
    if path == "/v1/collateral-valuations":
        return {"portfolio_id": ids["portfolio_id"], "terms": TERMS, "paths": 32}
    if path == "/v1/quotes":
        return {"portfolio_id": ids["portfolio_id"], "cover": {"kind": "stock-loss"}, "paths": 32}
    if path == "/v1/stress-tests":
        return {"portfolio_id": ids["portfolio_id"], "years": 1, "paths": 8}
    if path == "/v1/accounts":
        return {"portfolio_id": ids["portfolio_id"], "paths": 8}
    if path == "/v1/layer-pricing":
        return {"rows": [{"year": 0, "event_id": 1, "loss": 5.0}], "n_years": 2, "attachment": 1}
    if path == "/v1/admin/tenants":
        return {"name": f"new-{role}-{time.time_ns()}", "role": "bank"}
    if path.endswith("/keys"):
        return {"expires_days": 1}
    return None


def call(client, method, path, headers, body):
    if body == "upload":
        from tests.api.conftest import csv_bytes

        return client.post(path, headers=headers, files={"file": ("p.csv", csv_bytes(5), "text/csv")})
    return client.request(method, path, headers=headers, json=body)


def test_every_route_has_an_access_rule(env):
    routes = app_routes(env.app)
    missing = routes - set(ACCESS)
    stale = set(ACCESS) - routes
    assert not missing, f"routes without an access rule in ACCESS: {sorted(missing)}"
    assert not stale, f"ACCESS names routes that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("method,path", sorted(ACCESS))
def test_without_a_key_every_route_is_401(env, other, method, path):
    r = call(env.client, method, fill(path, other), {}, body_for(method, path, other, "none"))
    assert r.status_code == 401, (method, path, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("method,path", sorted(ACCESS))
@pytest.mark.parametrize("role", ROLES)
def test_roles_and_tenant_isolation(env, other, method, path, role):
    allowed = role in ACCESS[(method, path)]
    url = fill(path, other)
    r = call(env.client, method, url, env.h(role, "a"), body_for(method, path, other, role))
    if not allowed:
        assert r.status_code == 403, (method, path, role, r.status_code, r.text)
        return
    assert r.status_code != 403, (method, path, role, r.text)
    owned_ids = ("{" in path and path not in SHARED) or (method, path) in OWNED_IN_BODY
    if owned_ids:
        # another tenant's resource: not found, and nothing of it in the answer
        assert r.status_code == 404, (method, path, role, r.status_code, r.text)
        return
    assert r.status_code < 400, (method, path, role, r.status_code, r.text)
    if method == "GET" and "items" in r.json():
        text = r.text
        for k in ("portfolio_id", "loan", "policy", "simulation_id", "job_id", "valuation_id", "quote_id", "layer_id",
                  "stress_test_id", "accounts_id"):
            if path.startswith("/v1/admin"):
                continue
            assert other[k] not in text, (path, role, k)
