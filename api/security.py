"""Tenants, API keys, roles and per-key rate limiting.

API keys look like ``cre_<key id>_<secret>``: the key id (12 hex digits) is public and names the key
in logs, audit records and ``admin key revoke``; the secret is 32 random bytes (URL-safe base64).
Only the SHA-256 of the secret is stored, so a key is shown once, when it is created. A key can
expire (``expires_at``) and be revoked; either way it stops working at once.

Roles: ``bank``, ``insurer``, ``bureau`` and ``admin``. Each endpoint names the roles it admits
(:func:`require_roles`); data endpoints always filter by the caller's tenant, so a tenant never sees
another tenant's portfolios, results, jobs or audit records.

Rate limiting is a token bucket per API key held in this process's memory: ``rate_burst`` requests
at once, refilled at ``rate_per_s``; an empty bucket answers 429 with ``Retry-After``. With several
server processes each has its own buckets (documented in docs/api.md).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db.models import ApiKey, Tenant, utcnow
from api.problems import ApiProblem
from api.settings import ROLES

KEY_PREFIX = "cre"
_KEY_RE = re.compile(r"^cre_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")


class SecurityError(ValueError):
    """Bad input to a tenant or key operation (unknown tenant, bad role, ...)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, its role and the key used."""

    tenant_id: str
    tenant_name: str
    role: str
    key_id: str


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_key(key: str) -> tuple[str, str] | None:
    m = _KEY_RE.match(key.strip())
    return (m.group(1), m.group(2)) if m else None


# ---- administration (used by the CLI and the admin endpoints) ------------------------------
def create_tenant(s: Session, name: str, role: str) -> Tenant:
    if role not in ROLES:
        raise SecurityError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not _NAME_RE.match(name or ""):
        raise SecurityError("tenant name must be 1-100 characters: letters, digits, space, '.', '_' or '-'")
    if s.scalar(select(Tenant).where(Tenant.name == name)) is not None:
        raise SecurityError(f"tenant {name!r} already exists")
    t = Tenant(id="ten_" + uuid.uuid4().hex[:16], name=name, role=role, created_at=utcnow())
    s.add(t)
    try:
        s.flush()
    except IntegrityError:  # the same name created by another request at the same moment (the unique index)
        raise SecurityError(f"tenant {name!r} already exists") from None
    return t


def get_tenant(s: Session, name_or_id: str) -> Tenant:
    t = s.scalar(select(Tenant).where((Tenant.name == name_or_id) | (Tenant.id == name_or_id)))
    if t is None:
        raise SecurityError(f"no tenant {name_or_id!r}")
    return t


def create_key(s: Session, tenant: Tenant, *, expires_days: float | None = None, label: str = "") -> tuple[ApiKey, str]:
    """Create a key for ``tenant``. Returns the row and the plaintext key (shown once, never stored)."""
    if expires_days is not None and not (0 < expires_days <= 3650):
        raise SecurityError("expires_days must lie in (0, 3650]")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    row = ApiKey(id=key_id, tenant_id=tenant.id, secret_sha256=hash_secret(secret), label=label[:100],
                 created_at=now, expires_at=now + timedelta(days=expires_days) if expires_days else None)
    s.add(row)
    s.flush()
    return row, f"{KEY_PREFIX}_{key_id}_{secret}"


def revoke_key(s: Session, key_id: str, tenant_id: str | None = None) -> ApiKey:
    q = select(ApiKey).where(ApiKey.id == key_id)
    if tenant_id is not None:
        q = q.where(ApiKey.tenant_id == tenant_id)
    row = s.scalar(q)
    if row is None:
        raise SecurityError(f"no API key {key_id!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def verify_key(s: Session, key: str, now: datetime | None = None) -> Principal | None:
    """The principal of a valid, unrevoked, unexpired key; None otherwise (constant-time compare)."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    key_id, secret = parsed
    row = s.get(ApiKey, key_id)
    if row is None or not hmac.compare_digest(row.secret_sha256, hash_secret(secret)):
        return None
    now = now or utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    t = s.get(Tenant, row.tenant_id)
    if t is None:
        return None
    return Principal(tenant_id=t.id, tenant_name=t.name, role=t.role, key_id=row.id)


def key_from_headers(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("x-api-key")


# ---- rate limiting --------------------------------------------------------------------------
class RateLimiter:
    """Token bucket per key: ``burst`` tokens, refilled at ``rate_per_s``; thread-safe."""

    def __init__(self, rate_per_s: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = float(rate_per_s), float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token. Returns 0 when allowed, else the seconds until a token is available."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


# ---- FastAPI dependencies -------------------------------------------------------------------
def authenticate(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <key>`` or ``X-API-Key``; 401 otherwise."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    key = key_from_headers(request)
    hdr = {"WWW-Authenticate": 'Bearer realm="carbon-risk"'}
    if not key:
        raise ApiProblem(401, "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                         kind="unauthenticated", headers=hdr)
    db = request.app.state.db
    with db.session() as s:
        p = verify_key(s, key)
    if p is None:
        raise ApiProblem(401, "the API key is unknown, revoked or expired", kind="unauthenticated", headers=hdr)
    request.state.principal = p
    return p


def require_roles(*roles: str):
    """Dependency: the caller must hold one of ``roles``; also charges the key's rate limit."""
    bad = [r for r in roles if r not in ROLES]
    if bad:
        raise ValueError(f"unknown roles {bad}")
    allowed = frozenset(roles)

    def dep(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
        limiter: RateLimiter = request.app.state.rate_limiter
        if not getattr(request.state, "rate_charged", False):
            request.state.rate_charged = True
            wait = limiter.take(principal.key_id)
            if wait > 0:
                raise ApiProblem(429, f"rate limit of this API key exceeded; retry in {wait:.1f} s",
                                 kind="rate-limited", headers={"Retry-After": str(max(1, math.ceil(wait)))})
        if principal.role not in allowed:
            raise ApiProblem(403, f"role {principal.role!r} may not call this endpoint "
                                  f"(allowed: {', '.join(sorted(allowed))})", kind="forbidden")
        return principal

    dep.roles = allowed  # type: ignore[attr-defined]
    return dep


ANALYSTS = ("bank", "insurer", "bureau")
EVERYONE = ROLES

__all__ = ["ANALYSTS", "EVERYONE", "Principal", "RateLimiter", "SecurityError", "authenticate", "create_key",
           "create_tenant", "get_tenant", "hash_secret", "parse_key", "require_roles", "revoke_key",
           "verify_key"]
