"""``GET /v1/audit``: the caller's tenant's audit records, newest first."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.models import AuditRecord
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import ID_PATTERN, AuditOut, Page
from api.security import EVERYONE, Principal, require_roles
from api.services import count, page

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=AUTH_PROBLEMS)
anyone = require_roles(*EVERYONE)


@router.get("", response_model=Page[AuditOut], summary="Your tenant's audit trail (newest first)")
def list_audit(action: str | None = Query(None, max_length=60, pattern=r"^[a-z_]+(\.[a-z_]+)*$",
                                          description="e.g. portfolio.create, simulation.submit, job.cancel"),
               resource_id: str | None = Query(None, max_length=40, pattern=ID_PATTERN),
               paging: Paging = Depends(), who: Principal = Depends(anyone), s: Session = DB_SESSION):
    q = select(AuditRecord).where(AuditRecord.tenant_id == who.tenant_id)
    if action is not None:
        q = q.where(AuditRecord.action == action)
    if resource_id is not None:
        q = q.where(AuditRecord.resource_id == resource_id)
    total = count(s, q)
    rows = s.scalars(q.order_by(AuditRecord.id.desc()).limit(paging.limit).offset(paging.offset)).all()
    items = [{k: getattr(r, k) for k in ("id", "key_id", "action", "resource_type", "resource_id", "detail",
                                          "request_id", "at")} for r in rows]
    return page(items, total, paging.limit, paging.offset)
