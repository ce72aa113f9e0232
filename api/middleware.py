"""The service's ASGI middleware: request ids, access log, body size limit and idempotency.

One pure-ASGI layer (no BaseHTTPMiddleware, so streaming and context variables behave):

1. **Request id.** The client's ``X-Request-ID`` (if it is a sane token) or a new one; set in a
   context variable that every log line prints, and echoed in the ``X-Request-ID`` response header.
2. **Body limit.** Bodies larger than ``Settings.max_body_bytes`` get 413 (checked against
   ``Content-Length`` first, then while reading a chunked body). A request to ``/v1/`` that sends a body
   is authenticated before the body is read: without a valid API key it gets 401 at once, so nobody
   without a key can make the server hold megabytes (the key found is kept for the app's own check).
3. **Idempotency.** A ``POST`` with an ``Idempotency-Key`` header is stored with its response,
   keyed by (tenant, key). The same key with the same method, path and body replays the stored
   response (header ``Idempotency-Replayed: true``); the same key with a different request gets
   422; a request still in flight with the key gets 409. Only final answers are stored (2xx and
   4xx other than 401, 403, 409, 429); 5xx and those errors can be retried with the same key.
   The body is compared byte for byte, except a multipart boundary, which is normalised.
   A response that carries a secret (marked ``Cache-Control: no-store``: a new API key) is never
   stored: only a marker with its status and ``Location`` is, and a repeat answers 409
   ``idempotency-response-withheld`` naming the created resource (the request is still not run
   twice). Records older than ``Settings.idempotency_ttl_s`` (default 24 h) are purged, and such a
   key starts afresh. A long path (or one with control characters) is stored as its SHA-256.
4. **Last resort.** An exception that escapes the app becomes a 500 problem document (with the
   request id), logged with its traceback.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta

import anyio
from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from api.db.models import IdempotencyRecord, utcnow
from api.problems import problem_response
from api.requestctx import loggable_path, new_request_id, reset_request_id, set_request_id
from api.security import verify_key

log = logging.getLogger("carbon_risk.api.access")
IDEMPOTENCY_HEADER = b"idempotency-key"
STALE_IN_FLIGHT = timedelta(minutes=15)
_NOT_STORED = {401, 403, 409, 429}
METHOD_PATH_MAX = 300  # IdempotencyRecord.method_path
PURGE_INTERVAL_S = 60.0  # expired records are deleted at most this often (per process)
# a stored response whose body was withheld (it carried a secret): this header key marks it
WITHHELD = "x-cre-withheld"


class _TooLarge(Exception):
    pass


def _sends_body(scope) -> bool:
    """Whether the request announces a body (a non-zero ``Content-Length``, or a chunked one)."""
    cl = _header(scope, b"content-length")
    if cl is not None:
        return cl.strip() not in ("", "0")
    return (_header(scope, b"transfer-encoding") or "").lower() == "chunked"


def _header(scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return None


class ServiceMiddleware:
    def __init__(self, app, settings, db):
        self.app, self.settings, self.db = app, settings, db
        self._last_purge = float("-inf")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id(_header(scope, b"x-request-id"))
        token = set_request_id(rid)
        t0 = time.perf_counter()
        status_box = {"status": 0, "started": False}
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
                status_box["started"] = True
                message = {**message, "headers": [*message.get("headers", []), rid_header]}
            await send(message)

        async def respond(resp):
            await resp(scope, _empty_receive, send_with_id)

        try:
            if _sends_body(scope) and str(scope.get("path", "")).startswith("/v1/"):
                api_key = _key_from_scope(scope)
                principal = await anyio.to_thread.run_sync(self._principal, api_key) if api_key else None
                if principal is None:
                    await respond(problem_response(
                        401, "an API key is required (Authorization: Bearer <key> or X-API-Key)" if not api_key
                        else "the API key is unknown, revoked or expired", kind="unauthenticated",
                        headers={"WWW-Authenticate": 'Bearer realm="carbon-risk"'}, instance=scope.get("path")))
                    return
                scope.setdefault("state", {})["principal"] = principal  # api.security.authenticate reuses it
            try:
                body = await self._read_body(scope, receive)
            except _TooLarge:
                await respond(problem_response(413, f"request body larger than {self.settings.max_body_bytes} bytes",
                                               kind="payload-too-large", instance=scope.get("path")))
                return
            replay_receive = _replayer(body)
            key = _header(scope, IDEMPOTENCY_HEADER)
            if scope["method"] == "POST" and key is not None:
                await self._idempotent(scope, replay_receive, send_with_id, respond, key, body)
            else:
                await self.app(scope, replay_receive, send_with_id)
        except Exception:  # noqa: BLE001 - the last resort: never a bare 500 without a problem document
            log.exception("unhandled error on %s %s", scope.get("method"), loggable_path(scope.get("path")))
            if not status_box["started"]:
                await respond(problem_response(500, "internal error; quote the request_id when reporting it",
                                               instance=scope.get("path")))
        finally:
            log.info("%s %s -> %s in %.1f ms", scope.get("method"), loggable_path(scope.get("path")),
                     status_box["status"], (time.perf_counter() - t0) * 1000)
            reset_request_id(token)

    async def _read_body(self, scope, receive) -> bytes:
        limit = self.settings.max_body_bytes
        cl = _header(scope, b"content-length")
        if cl is not None:
            try:
                if int(cl) > limit:
                    raise _TooLarge
            except ValueError:
                pass
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    # ---- idempotency ------------------------------------------------------------------------
    async def _idempotent(self, scope, receive, send, respond, key: str, body: bytes):
        if not (1 <= len(key) <= 200):
            await respond(problem_response(400, "Idempotency-Key must be 1-200 characters",
                                           kind="bad-idempotency-key", instance=scope.get("path")))
            return
        # the caller the body check found (the app uses it too), else a lookup of our own
        principal = (scope.get("state") or {}).get("principal")
        if principal is None:
            api_key = _key_from_scope(scope)
            principal = await anyio.to_thread.run_sync(self._principal, api_key) if api_key else None
        if principal is None:  # let the app answer 401
            await self.app(scope, receive, send)
            return
        method_path = _method_path(scope["method"], scope["path"])
        digest = _body_digest(scope, body)
        verdict, rec = await anyio.to_thread.run_sync(self._claim, principal.tenant_id, key, method_path, digest)
        if verdict == "mismatch":
            await respond(problem_response(
                422, "this Idempotency-Key was used with a different request (method, path or body)",
                kind="idempotency-key-reused", instance=scope.get("path")))
            return
        if verdict == "in-flight":
            await respond(problem_response(409, "a request with this Idempotency-Key is still being processed",
                                           kind="idempotency-in-flight", instance=scope.get("path")))
            return
        if verdict == "replay" and WITHHELD in rec["headers"]:
            loc = rec["headers"].get("location")
            await respond(problem_response(
                409, f"the request with this Idempotency-Key succeeded ({rec['status']}), but its answer carried a "
                     "secret (an API key is shown once), so it was not stored and cannot be replayed"
                     + (f"; the resource it created: {loc}" if loc else ""),
                kind="idempotency-response-withheld", instance=scope.get("path"),
                headers={"Location": loc} if loc else None, original_status=rec["status"], resource=loc))
            return
        if verdict == "replay":
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in rec["headers"].items()]
            headers.append((b"idempotency-replayed", b"true"))
            await send({"type": "http.response.start", "status": rec["status"], "headers": headers})
            await send({"type": "http.response.body", "body": rec["body"]})
            return
        captured = {"status": None, "headers": [], "body": []}

        async def capture(message):
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            status = captured["status"]
            if status is not None and status < 500 and status not in _NOT_STORED:
                keep = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in captured["headers"]
                        if k.lower() in (b"content-type", b"location")}
                stored = b"".join(captured["body"])
                if _carries_secret(captured["headers"]):  # never at rest, never replayed
                    keep = {k: v for k, v in keep.items() if k == "location"} | {WITHHELD: "secret"}
                    stored = b""
                await anyio.to_thread.run_sync(self._store, principal.tenant_id, key, status, keep, stored)
            else:
                await anyio.to_thread.run_sync(self._release, principal.tenant_id, key)

    def _principal(self, api_key: str):
        with self.db.session() as s:
            return verify_key(s, api_key)

    def _purge_expired(self) -> None:
        """Delete the records older than the TTL (at most every PURGE_INTERVAL_S in this process); a request
        still in flight keeps its record until it is STALE_IN_FLIGHT old, whatever the TTL."""
        now = time.monotonic()
        if now - self._last_purge < PURGE_INTERVAL_S:
            return
        self._last_purge = now
        t = utcnow()
        cutoff = t - timedelta(seconds=self.settings.idempotency_ttl_s)
        try:
            with self.db.session() as s:
                n = s.execute(delete(IdempotencyRecord).where(
                    IdempotencyRecord.created_at < cutoff,
                    or_(IdempotencyRecord.status_code.is_not(None),
                        IdempotencyRecord.created_at < t - STALE_IN_FLIGHT))).rowcount
            if n:
                log.info("purged %d idempotency record(s) older than %.0f h", n, self.settings.idempotency_ttl_s / 3600)
        except Exception:  # noqa: BLE001 - housekeeping must not fail the request
            log.exception("could not purge expired idempotency records")

    def _claim(self, tenant_id: str, key: str, method_path: str, digest: str):
        self._purge_expired()
        ttl = timedelta(seconds=self.settings.idempotency_ttl_s)
        for _ in range(3):
            with self.db.session() as s:
                rec = s.get(IdempotencyRecord, (tenant_id, key))
                if rec is None:
                    s.add(IdempotencyRecord(tenant_id=tenant_id, key=key, method_path=method_path,
                                            body_sha256=digest, created_at=utcnow()))
                    try:
                        s.flush()
                    except IntegrityError:
                        s.rollback()
                        continue
                    return "new", None
                age = utcnow() - rec.created_at
                in_flight = rec.status_code is None
                # expired: the key starts afresh (a request still in flight only once it is abandoned)
                if age > ttl and (not in_flight or age > STALE_IN_FLIGHT):
                    if _reclaim(s, rec, method_path, digest):
                        return "new", None
                    continue  # another request reclaimed it, or a purge removed it, meanwhile
                if rec.method_path != method_path or rec.body_sha256 != digest:
                    return "mismatch", None
                if in_flight:
                    if age > STALE_IN_FLIGHT:  # abandoned by a crashed server
                        if _reclaim(s, rec, method_path, digest):
                            return "new", None
                        continue
                    return "in-flight", None
                return "replay", {"status": rec.status_code, "headers": dict(rec.headers or {}),
                                  "body": bytes(rec.body or b"")}
        return "in-flight", None

    def _store(self, tenant_id, key, status, headers, body):
        with self.db.session() as s:
            rec = s.get(IdempotencyRecord, (tenant_id, key))
            if rec is not None:
                rec.status_code, rec.headers, rec.body = status, headers, body

    def _release(self, tenant_id, key):
        with self.db.session() as s:
            s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant_id,
                                                      IdempotencyRecord.key == key,
                                                      IdempotencyRecord.status_code.is_(None)))


def _reclaim(s, rec: IdempotencyRecord, method_path: str, digest: str) -> bool:
    """Take over an expired or abandoned record for a new request, only if no other request (or a purge) has
    changed it since it was read: one conditional UPDATE, so two requests racing for one key cannot both run."""
    n = s.execute(update(IdempotencyRecord).where(
        IdempotencyRecord.tenant_id == rec.tenant_id, IdempotencyRecord.key == rec.key,
        IdempotencyRecord.created_at == rec.created_at).values(
        method_path=method_path, body_sha256=digest, created_at=utcnow(), status_code=None, headers=None,
        body=None).execution_options(synchronize_session=False)).rowcount
    return n == 1


def _method_path(method: str, path: str) -> str:
    """``METHOD /path`` as stored with a record; a path too long for the column is stored as its SHA-256."""
    mp = f"{method} {path}"
    if len(mp) <= METHOD_PATH_MAX and mp.isprintable():  # (no NUL or other control characters either)
        return mp
    return f"{method} sha256:{hashlib.sha256(path.encode('utf-8', 'surrogatepass')).hexdigest()}"


def _carries_secret(headers) -> bool:
    """A response marked ``Cache-Control: no-store`` carries a secret: it must not be kept."""
    return any(k.lower() == b"cache-control" and b"no-store" in v.lower() for k, v in headers)


def _key_from_scope(scope) -> str | None:
    auth = _header(scope, b"authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return _header(scope, b"x-api-key")


def _body_digest(scope, body: bytes) -> str:
    ctype = _header(scope, b"content-type") or ""
    if ctype.lower().startswith("multipart/") and "boundary=" in ctype:
        boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        if boundary:
            body = body.replace(boundary.encode("latin-1"), b"BOUNDARY")
            ctype = ctype.replace(boundary, "BOUNDARY")
    h = hashlib.sha256()
    h.update(ctype.encode("latin-1"))
    h.update(b"\0")
    h.update(body)
    return h.hexdigest()


def _replayer(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()

    return receive


async def _empty_receive():
    return {"type": "http.request", "body": b"", "more_body": False}


__all__ = ["ServiceMiddleware"]
