"""Limits: per-key rate limit (429 with Retry-After), request body size (413), per-role
parcels x paths x years, expiring and revoked keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.models import ApiKey
from api.security import RateLimiter, create_key, create_tenant, revoke_key
from tests.api.conftest import csv_bytes, test_settings


@pytest.fixture
def limited(tmp_path):
    app = create_app(test_settings(f"sqlite:///{tmp_path / 'l.sqlite'}", rate_per_s=0.05, rate_burst=3.0,
                                   max_body_bytes=20_000, role_max_cells={"bank": 50 * 32 * 2, "insurer": 0,
                                                                          "bureau": 10**9, "admin": 0}))
    with TestClient(app) as c:
        with app.state.db.session() as s:
            t1, t2 = create_tenant(s, "bank-1", "bank"), create_tenant(s, "bank-2", "bank")
            k1, k2 = create_key(s, t1)[1], create_key(s, t2)[1]
        yield app, c, {"Authorization": f"Bearer {k1}"}, {"Authorization": f"Bearer {k2}"}


def test_rate_limit_per_key_with_retry_after(limited):
    _, c, h1, h2 = limited
    codes = [c.get("/v1/models", headers=h1).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    r = c.get("/v1/models", headers=h1)
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    assert c.get("/v1/models", headers=h2).status_code == 200  # another key has its own bucket


def test_token_bucket_refills_at_its_rate():
    t = [0.0]
    rl = RateLimiter(rate_per_s=2.0, burst=2.0, clock=lambda: t[0])
    assert rl.take("k") == 0 and rl.take("k") == 0
    assert rl.take("k") == pytest.approx(0.5)  # empty: one token in 1/2 s
    t[0] += 0.5
    assert rl.take("k") == 0
    t[0] += 100
    assert [rl.take("k") for _ in range(3)][:2] == [0, 0]  # refill caps at the burst


def test_body_size_limit_413(limited):
    _, c, h1, _ = limited
    r = c.post("/v1/portfolios", headers=h1, files={"file": ("p.csv", csv_bytes(400), "text/csv")})
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 413 and r.headers["x-request-id"]


def test_role_limit_on_parcels_paths_years(limited):
    _, c, h1, _ = limited
    pid = c.post("/v1/portfolios", headers=h1, files={"file": ("p.csv", csv_bytes(50), "text/csv")}).json()["id"]
    ok = c.post("/v1/simulations", headers=h1, json={"portfolio_id": pid, "years": 2, "paths": 32})
    assert ok.status_code == 201
    over = c.post("/v1/simulations", headers=h1, json={"portfolio_id": pid, "years": 2, "paths": 33})
    assert over.status_code == 422 and over.json()["limit"] == 3200 and over.json()["cells"] == 50 * 33 * 2


def test_revoked_and_expired_keys_stop_working(limited):
    app, c, h1, _ = limited
    with app.state.db.session() as s:
        t = create_tenant(s, "short", "bureau")
        row, key = create_key(s, t, expires_days=1)
        row2, key2 = create_key(s, t)
    h, h2 = {"Authorization": f"Bearer {key}"}, {"X-API-Key": key2}
    assert c.get("/v1/audit", headers=h).status_code == 200
    assert c.get("/v1/audit", headers=h2).status_code == 200
    with app.state.db.session() as s:
        k = s.get(ApiKey, row.id)
        k.expires_at = k.created_at - timedelta(seconds=1)
        revoke_key(s, row2.id)
    assert c.get("/v1/audit", headers=h).status_code == 401
    assert c.get("/v1/audit", headers=h2).status_code == 401
    with app.state.db.session() as s:
        assert s.get(ApiKey, row.id).secret_sha256 not in key  # only the hash is stored
