"""Text the databases cannot store, on SQLite and PostgreSQL: names with NUL or other control characters
are refused with 422 naming the field (PostgreSQL cannot keep a NUL in a text column: it was a 500), and
ids or paths no row can have (a NUL, 400 characters) are simply not found, with or without an
``Idempotency-Key`` (whose record once stored the whole path in a 300-character column)."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import csv_bytes
from tests.api.test_api_flows import assert_problem
from tests.conftest import make_frame

BAD = ["book\x00A", "tab\there", "line\nbreak", "del\x7f", "c1\x85"]


def _field(r, field: str) -> None:
    body = assert_problem(r, 422)
    assert field in [e["field"] for e in body["errors"]], body


@pytest.mark.parametrize("name", BAD)
def test_names_with_control_characters_are_refused_naming_the_field(env, name):
    c, h = env.client, env.h("bureau")
    pid = env.portfolios[("bureau", "a")]
    _field(c.post("/v1/portfolios", headers=h, files={"file": ("p.csv", csv_bytes(5), "text/csv")},
                  data={"name": name}), "body/name")
    _field(c.post("/v1/portfolios", headers=h, json={"name": name, "parcels": json.loads(
        make_frame(3).to_json(orient="records"))}), "body/name")
    _field(c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"name": name, "terms": {"amount_cny": 1, "term_years": 1, "rate": 0}}), "body/name")
    _field(c.post(f"/v1/portfolios/{pid}/loans", headers=h,
                  json={"terms": {"amount_cny": 1, "term_years": 1, "rate": 0, "borrower": name}}),
           "body/terms/borrower")
    _field(c.post(f"/v1/portfolios/{pid}/policies", headers=h,
                  json={"name": name, "terms": {"sum_insured_cny": 1e6, "perils": ["fire"]}}), "body/name")
    _field(c.post("/v1/collateral-valuations", headers=h, json={
        "portfolio_id": pid, "name": name, "terms": {"amount_cny": 1e5, "term_years": 2, "interest_rate": 0.04}}),
        "body/name")
    adm = env.h("admin")
    tid = c.get("/v1/admin/tenants?limit=1", headers=adm).json()["items"][0]["id"]
    _field(c.post(f"/v1/admin/tenants/{tid}/keys", headers=adm, json={"label": name}), "body/label")
    # nothing of it was stored
    names = [p["name"] for p in c.get("/v1/portfolios?limit=500", headers=h).json()["items"]]
    assert name not in names


@pytest.mark.parametrize("filename", [b"book\x01.csv", b"book\x00.csv", b"\xe8\xb4\xa6\x7f.csv"])
def test_a_file_name_with_control_characters_is_refused(env, filename):
    c, h = env.client, env.h("bank")
    # sent as is (an HTTP client library would percent-encode it; a hand-made request need not)
    body = (b"--zz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename + b"\"\r\n"
            b"Content-Type: text/csv\r\n\r\n" + csv_bytes(5) + b"\r\n--zz--\r\n")
    _field(c.post("/v1/portfolios", headers={**h, "content-type": "multipart/form-data; boundary=zz"}, content=body),
           "body/file")


def test_ids_no_row_can_have_are_not_found_with_or_without_an_idempotency_key(env):
    c, h = env.client, env.h("bank")
    paths = ("/v1/jobs/" + "x" * 400 + "/cancel", "/v1/jobs/" + "x" * 399 + "y/cancel", "/v1/jobs/a%00b/cancel",
             "/v1/jobs/%E4%B8%AD/cancel")
    for i, path in enumerate(paths):
        assert_problem(c.post(path, headers=h), 404)
        assert_problem(c.post(path, headers={**h, "Idempotency-Key": f"odd-path-{i}"}), 404)
        again = c.post(path, headers={**h, "Idempotency-Key": f"odd-path-{i}"})  # the stored answer, replayed
        assert again.status_code == 404 and again.headers["idempotency-replayed"] == "true"
    # two long paths that share their first 300 characters are still two requests
    assert_problem(c.post(paths[1], headers={**h, "Idempotency-Key": "odd-path-0"}), 422, "idempotency-key-reused")
    assert_problem(c.get("/v1/portfolios/a%00b", headers=h), 404)
    assert_problem(c.get("/v1/portfolios/" + "p" * 100, headers=h), 404)
    assert_problem(c.get("/v1/simulations?portfolio_id=a%00b", headers=h), 422)
    assert_problem(c.get("/v1/audit?action=a%00b", headers=h), 422)
    assert_problem(c.get("/v1/audit?resource_id=a%00b", headers=h), 422)
    adm = env.h("admin")
    assert_problem(c.get("/v1/admin/tenants/a%00b", headers=adm), 404)
    assert_problem(c.get("/v1/admin/keys/a%00b", headers=adm), 404)
    assert_problem(c.post("/v1/admin/keys/a%00b/revoke", headers=adm), 404)


def _service_middleware(app):
    a = app.middleware_stack
    while a is not None and type(a).__name__ != "ServiceMiddleware":
        a = getattr(a, "app", None)
    assert a is not None
    return a


def test_an_expired_idempotency_record_is_taken_over_once_and_one_in_flight_is_kept(env):
    """Taking over an expired record is one conditional UPDATE: of two requests that read the same expired
    record, only the first runs (the other sees it in flight); a purge in between leaves the taker to insert
    afresh. A request still in flight keeps its record until it is abandoned, however short the TTL."""
    from datetime import timedelta

    from sqlalchemy import select

    from api.db.models import IdempotencyRecord, utcnow
    from api.middleware import STALE_IN_FLIGHT, _reclaim

    mw = _service_middleware(env.app)
    db = env.app.state.db
    old = utcnow() - timedelta(days=3)
    with db.session() as s:
        s.add(IdempotencyRecord(tenant_id="t-race", key="k", method_path="POST /x", body_sha256="d", status_code=201,
                                headers={}, body=b"{}", created_at=old))
    with db.session() as s1, db.session() as s2:  # both read the record before either takes it over
        r1, r2 = s1.get(IdempotencyRecord, ("t-race", "k")), s2.get(IdempotencyRecord, ("t-race", "k"))
        assert _reclaim(s1, r1, "POST /x", "d2")
        s1.commit()
        assert not _reclaim(s2, r2, "POST /x", "d3")
    with db.session() as s:
        rec = s.get(IdempotencyRecord, ("t-race", "k"))
        assert rec.body_sha256 == "d2" and rec.status_code is None
    assert mw._claim("t-race", "k", "POST /x", "d2") == ("in-flight", None)
    # in flight for 2 minutes with a TTL of 1 minute: still in flight, and a purge keeps it
    ttl = mw.settings.idempotency_ttl_s
    try:
        object.__setattr__(mw.settings, "idempotency_ttl_s", 60.0)
        with db.session() as s:
            s.add(IdempotencyRecord(tenant_id="t-race", key="slow", method_path="POST /x", body_sha256="d",
                                    created_at=utcnow() - timedelta(minutes=2)))
            s.add(IdempotencyRecord(tenant_id="t-race", key="gone", method_path="POST /x", body_sha256="d",
                                    created_at=utcnow() - STALE_IN_FLIGHT - timedelta(minutes=1)))
        mw._last_purge = float("-inf")
        assert mw._claim("t-race", "slow", "POST /x", "d") == ("in-flight", None)
        with db.session() as s:
            keys = set(s.scalars(select(IdempotencyRecord.key).where(IdempotencyRecord.tenant_id == "t-race")))
        assert keys == {"k", "slow"}  # the abandoned one purged; the one in flight kept
    finally:
        object.__setattr__(mw.settings, "idempotency_ttl_s", ttl)
