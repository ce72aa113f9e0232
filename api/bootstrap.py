"""Demo set-up for ``carbon-risk serve --demo``: one tenant per role, a fixed demo key each, the
Lishui model and the shipped demo portfolio for the bank, insurer and bureau tenants.

The demo keys are derived from their role names, so they are the same on every start and in the
docs. They are for trying the service on a laptop, never for production: a deployment creates its
tenants and keys with ``carbon-risk admin``.
"""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import select

from api.db.models import ApiKey, PortfolioRow, Tenant, utcnow
from api.security import KEY_PREFIX, Principal, create_tenant, hash_secret
from api.services import audit, store_portfolio, validate

DEMO_TENANTS = {"bank": "demo-bank", "insurer": "demo-insurer", "bureau": "demo-bureau", "admin": "demo-admin"}
DEMO_PORTFOLIO_NAME = "Lishui demo portfolio"


def demo_key(role: str) -> tuple[str, str]:
    """(key id, full key) of a role's demo key (deterministic; demo use only)."""
    key_id = hashlib.sha256(f"carbon-risk demo key id {role}".encode()).hexdigest()[:12]
    secret = base64.urlsafe_b64encode(hashlib.sha256(f"carbon-risk demo secret {role}".encode()).digest())
    secret_s = secret.decode().rstrip("=")
    return key_id, f"{KEY_PREFIX}_{key_id}_{secret_s}"


def ensure_demo(db, models, *, with_portfolio: bool = True) -> dict[str, str]:
    """Create what is missing of the demo set-up; returns role -> demo key."""
    from models.demo import demo_portfolio_path
    from models.portfolio import read_table

    keys: dict[str, str] = {}
    params = models.get("lishui")
    frame = None
    for role, name in DEMO_TENANTS.items():
        key_id, key = demo_key(role)
        secret = key.split("_", 2)[2]
        with db.session() as s:
            t = s.scalar(select(Tenant).where(Tenant.name == name))
            if t is None:
                t = create_tenant(s, name, role)
            k = s.get(ApiKey, key_id)
            if k is None:
                s.add(ApiKey(id=key_id, tenant_id=t.id, secret_sha256=hash_secret(secret), label="demo",
                             created_at=utcnow()))
            elif k.revoked_at is not None or k.tenant_id != t.id:
                keys[role] = "(revoked)"
                continue
            keys[role] = key
            if with_portfolio and role != "admin":
                has = s.scalar(select(PortfolioRow.id).where(PortfolioRow.tenant_id == t.id,
                                                             PortfolioRow.name == DEMO_PORTFOLIO_NAME))
                if has is None:
                    if frame is None:
                        frame = read_table(demo_portfolio_path())
                    pf = validate(frame, params, source=demo_portfolio_path().name)
                    who = Principal(tenant_id=t.id, tenant_name=t.name, role=role, key_id=key_id)
                    row = store_portfolio(s, who, DEMO_PORTFOLIO_NAME, pf, params)
                    audit(s, who, "portfolio.create", "portfolio", row.id, name=DEMO_PORTFOLIO_NAME,
                          parcels=row.n_parcels, bootstrap=True)
    return keys


__all__ = ["DEMO_PORTFOLIO_NAME", "DEMO_TENANTS", "demo_key", "ensure_demo"]
