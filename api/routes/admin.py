"""Administration (role ``admin``): tenants and API keys. The CLI ``carbon-risk admin`` does the same."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import ApiKey, Tenant
from api.problems import ApiProblem
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import KeyCreate, KeyCreated, KeyOut, Page, TenantCreate, TenantOut
from api.security import Principal, SecurityError, create_key, create_tenant, require_roles, revoke_key
from api.services import audit, count, page, plausible_id

router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=AUTH_PROBLEMS)
admin = require_roles("admin")


def tenant_out(t: Tenant) -> dict:
    return {"id": t.id, "name": t.name, "role": t.role, "created_at": t.created_at}


def key_out(k: ApiKey) -> dict:
    return {k_: getattr(k, k_) for k_ in ("id", "tenant_id", "label", "created_at", "expires_at", "revoked_at")}


@router.get("/tenants", response_model=Page[TenantOut], summary="All tenants")
def list_tenants(paging: Paging = Depends(), who: Principal = Depends(admin), s: Session = DB_SESSION):
    q = select(Tenant)
    total = count(s, q)
    rows = s.scalars(q.order_by(Tenant.name).limit(paging.limit).offset(paging.offset)).all()
    return page([tenant_out(t) for t in rows], total, paging.limit, paging.offset)


@router.post("/tenants", response_model=TenantOut, status_code=201, summary="Create a tenant",
             responses={201: {"headers": {"Location": {"schema": {"type": "string"}}}}})
def post_tenant(body: TenantCreate, response: Response, who: Principal = Depends(admin),
                s: Session = DB_SESSION):
    try:
        t = create_tenant(s, body.name, body.role)
    except SecurityError as exc:
        raise ApiProblem(409, str(exc), kind="conflict") from exc
    audit(s, who, "tenant.create", "tenant", t.id, name=t.name, role=t.role)
    response.headers["Location"] = f"/v1/admin/tenants/{t.id}"
    return tenant_out(t)


def _tenant(s: Session, tenant_id: str) -> Tenant:
    t = s.get(Tenant, tenant_id) if plausible_id(tenant_id) else None
    if t is None:
        raise ApiProblem(404, f"no tenant {tenant_id[:60]!r}", kind="not-found")
    return t


@router.get("/tenants/{tenant_id}", response_model=TenantOut, summary="A tenant")
def get_tenant(tenant_id: str = Path(max_length=40), who: Principal = Depends(admin),
               s: Session = DB_SESSION):
    return tenant_out(_tenant(s, tenant_id))


@router.get("/tenants/{tenant_id}/keys", response_model=Page[KeyOut], summary="A tenant's API keys (never the secret)")
def list_keys(tenant_id: str = Path(max_length=40), paging: Paging = Depends(), who: Principal = Depends(admin),
              s: Session = DB_SESSION):
    _tenant(s, tenant_id)
    q = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
    total = count(s, q)
    rows = s.scalars(q.order_by(ApiKey.created_at, ApiKey.id).limit(paging.limit).offset(paging.offset)).all()
    return page([key_out(k) for k in rows], total, paging.limit, paging.offset)


@router.post("/tenants/{tenant_id}/keys", response_model=KeyCreated, status_code=201,
             summary="Create an API key (the key is in this response only)",
             responses={201: {"headers": {"Location": {"schema": {"type": "string"}},
                                          "Cache-Control": {"schema": {"type": "string"}}}}})
def post_key(body: KeyCreate, response: Response, tenant_id: str = Path(max_length=40),
             who: Principal = Depends(admin), s: Session = DB_SESSION):
    """The answer carries the key, shown this once: it is marked ``Cache-Control: no-store`` and never
    kept, not even for an ``Idempotency-Key`` (a repeat with the same key answers 409
    ``idempotency-response-withheld`` naming the created key, whose metadata is at ``Location``)."""
    t = _tenant(s, tenant_id)
    row, key = create_key(s, t, expires_days=body.expires_days, label=body.label)
    audit(s, who, "key.create", "api_key", row.id, tenant_id=t.id, expires_at=row.expires_at)
    response.headers["Location"] = f"/v1/admin/keys/{row.id}"
    response.headers["Cache-Control"] = "no-store"
    return {**key_out(row), "key": key}


@router.get("/keys/{key_id}", response_model=KeyOut, summary="An API key's metadata (never the secret)")
def get_key(key_id: str = Path(max_length=40), who: Principal = Depends(admin), s: Session = DB_SESSION):
    row = s.get(ApiKey, key_id) if plausible_id(key_id) else None
    if row is None:
        raise ApiProblem(404, f"no API key {key_id[:60]!r}", kind="not-found")
    return key_out(row)


@router.post("/keys/{key_id}/revoke", response_model=KeyOut, summary="Revoke an API key (effective at once)")
def post_revoke(key_id: str = Path(max_length=40), who: Principal = Depends(admin), s: Session = DB_SESSION):
    if not plausible_id(key_id):
        raise ApiProblem(404, f"no API key {key_id[:60]!r}", kind="not-found")
    try:
        row = revoke_key(s, key_id)
    except SecurityError as exc:
        raise ApiProblem(404, str(exc), kind="not-found") from exc
    audit(s, who, "key.revoke", "api_key", key_id)
    return key_out(row)
