"""RFC 9457 problem details (``application/problem+json``) for every error the service returns.

Handlers cover our own :class:`ApiProblem`, Starlette/FastAPI HTTP errors (404, 405, ...), request
validation errors (422 with one entry per bad field in ``errors``) and any unexpected exception
(500, with the request id so an operator can find the log line; the exception text is not shown).
"""

from __future__ import annotations

import logging
import math
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.requestctx import current_request_id, loggable_path

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://carbon-risk.example/problems/"
log = logging.getLogger("carbon_risk.api")


class ProblemError(BaseModel):
    """One bad value: where (row/column for tables, a JSON pointer-like ``field`` otherwise) and why."""

    model_config = ConfigDict(extra="allow")
    reason: str
    row: int | None = None
    column: str | None = None
    field: str | None = None
    value: Any = None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="URI identifying the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[ProblemError] | None = None


class ApiProblem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str | None = None, *, kind: str | None = None, title: str | None = None,
                 errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail or title or str(status))
        self.status = int(status)
        self.detail = detail
        self.kind = kind or _default_kind(self.status)
        self.title = title or _phrase(self.status)
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _default_kind(status: int) -> str:
    return _phrase(status).lower().replace(" ", "-").replace("'", "")


def json_safe(v: Any) -> Any:
    """A value JSON can carry: non-finite floats -> their text, numpy scalars -> Python, other -> str."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if hasattr(v, "item"):
        try:
            return json_safe(v.item())
        except (ValueError, TypeError):
            pass
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): json_safe(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")[:200]
    return str(v)


def problem_response(status: int, detail: str | None = None, *, kind: str | None = None, title: str | None = None,
                     errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
                     instance: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + (kind or _default_kind(status)), "title": title or _phrase(status),
                            "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    rid = current_request_id()
    if rid:
        body["request_id"] = rid
    if errors is not None:
        body["errors"] = [json_safe(e) for e in errors]
    body.update(json_safe(extra))
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


# ---- engine errors -> problem errors naming request fields ----------------------------------------
_LEAD = re.compile(r"\s*([A-Za-z_]\w*(?:\.\w+)*)")


class FieldMap:
    """Where the names in an engine's error message live in the request.

    Engine input errors (``ValueError`` subclasses) name what is wrong at the start of a message part
    (``borrower_pd: ...``, ``deductible.amount as a stock fraction ...``, ``registry.loans.0: ...``),
    possibly with indented sub-lines relative to it (``registry: invalid registry\\n  loans: ...``).
    ``names`` maps such a leading name (its longest dotted prefix) to the request path of the field;
    the rest of a dotted name is appended (``registry.loans.0`` -> ``body/registry/loans/0``).
    ``patterns`` map messages without a leading field (``unknown price model 'x'``) to a path;
    anything else is reported at ``default``.
    """

    def __init__(self, names: dict[str, str], default: str = "body",
                 patterns: tuple[tuple[str, str], ...] = ()):
        self.names, self.default = dict(names), default
        self.patterns = [(re.compile(rx, re.IGNORECASE), path) for rx, path in patterns]

    def resolve(self, token: str) -> str | None:
        parts = token.split(".")
        for i in range(len(parts), 0, -1):
            base = self.names.get(".".join(parts[:i]))
            if base is not None:
                return "/".join([base, *parts[i:]])
        return None

    def _lead(self, text: str) -> tuple[str | None, str]:
        """(path of the leading field name or None, the reason: the text after ``name:`` or all of it)."""
        m = _LEAD.match(text)
        path = self.resolve(m.group(1)) if m else None
        if path is None:
            return None, text.strip()
        rest = text[m.end():]
        if rest.lstrip().startswith(":"):
            reason = rest.lstrip()[1:].strip()
            deeper, inner = self._lead(reason)  # "terms: term_years=40 is ..." -> the inner field
            if deeper is not None and deeper != path:
                return deeper, inner
            return path, reason or text.strip()
        return path, text.strip()

    def _pattern(self, text: str) -> str | None:
        for rx, path in self.patterns:
            if rx.search(text):
                return path
        return None

    def errors(self, message: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        parent: str | None = None
        for line in message.splitlines():
            if not line.strip():
                continue
            if line[:1].isspace() and parent is not None:  # a sub-problem of the line above
                m = _LEAD.match(line)
                if m and line[m.end():].lstrip().startswith(":"):
                    out.append({"field": parent + "/" + m.group(1).replace(".", "/"),
                                "reason": line[m.end():].lstrip()[1:].strip()})
                else:
                    out.append({"field": parent, "reason": line.strip()})
                continue
            # "a; b" are two problems only when b starts with a field name of its own
            pieces: list[str] = []
            for piece in line.split("; "):
                m = _LEAD.match(piece)
                if pieces and not (m and self.resolve(m.group(1)) is not None):
                    pieces[-1] += "; " + piece
                else:
                    pieces.append(piece)
            for piece in pieces:
                path, reason = self._lead(piece)
                if path is None:
                    path = self._pattern(piece) or self.default
                out.append({"field": path, "reason": reason[:500]})
                parent = path
        return out or [{"field": self.default, "reason": message.strip()[:500] or "invalid"}]


def engine_problem(exc: Exception, kind: str, fields: FieldMap, title: str | None = None) -> "ApiProblem":
    """A 422 problem from an engine input error, with ``errors[].field`` naming the request fields."""
    msg = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        msg = str(exc.args[0])
    return ApiProblem(422, msg[:2000], kind=kind, title=title, errors=fields.errors(msg))


def json_body(raw: bytes) -> Any:
    """A request body parsed as JSON; a body that is not JSON answers 422 ``validation-error`` naming
    ``body``, as FastAPI answers it on the endpoints whose body it parses itself."""
    import json

    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        pos = f" (at character {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiProblem(422, "the body is not valid JSON", kind="validation-error", title="Invalid request",
                         errors=[{"field": "body", "reason": f"the body is not valid JSON{pos}: {exc}"}]) from exc
    except RecursionError:
        raise ApiProblem(422, "the body nests too deeply", kind="validation-error", title="Invalid request",
                         errors=[{"field": "body", "reason": TOO_DEEP}]) from None


TOO_DEEP = "the body's JSON nests too deeply to be read"
#: FastAPI's answer to a body its own parser fails on in an unexpected way (deep nesting: RecursionError)
_BODY_PARSE_ERROR = "There was an error parsing the body"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ())]
        if e.get("type") == "json_invalid":  # not JSON at all: the body, wherever the parser stopped
            pos = f" (at character {loc[1]})" if len(loc) > 1 else ""
            ctx = (e.get("ctx") or {}).get("error")
            out.append({"field": "body", "reason": f"the body is not valid JSON{pos}" + (f": {ctx}" if ctx else "")})
            continue
        item: dict[str, Any] = {"field": "/".join(loc), "reason": e.get("msg", "invalid")}
        if "input" in e and loc and loc[0] != "body":
            item["value"] = e["input"]
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            item["value"] = e["input"]
        out.append(item)
    return out


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem):
        return problem_response(exc.status, exc.detail, kind=exc.kind, title=exc.title, errors=exc.errors,
                                headers=exc.headers, instance=request.url.path, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errs = _validation_errors(exc)
        return problem_response(422, f"{len(errs)} invalid field(s) in the request", kind="validation-error",
                                title="Invalid request", errors=errs, instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else None
        if exc.status_code == 400 and detail == _BODY_PARSE_ERROR:  # a body, as any unreadable body: 422
            reason = TOO_DEEP if isinstance(exc.__cause__, RecursionError) else "the body cannot be read as JSON"
            return problem_response(422, "the body cannot be read", kind="validation-error", title="Invalid request",
                                    errors=[{"field": "body", "reason": reason}], instance=request.url.path)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None),
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, loggable_path(request.url.path))
        return problem_response(500, "internal error; quote the request_id when reporting it",
                                instance=request.url.path)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem documents for ``codes``."""
    return {c: {"model": Problem, "description": _phrase(c),
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for c in codes}


__all__ = ["ApiProblem", "FieldMap", "PROBLEM_MEDIA_TYPE", "Problem", "engine_problem", "json_body", "ProblemError",
           "install_problem_handlers", "json_safe",
           "problem_response", "problem_responses"]
