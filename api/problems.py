"""RFC 9457 problem details (``application/problem+json``) for every error the service returns.

Handlers cover our own :class:`ApiProblem`, Starlette/FastAPI HTTP errors (404, 405, ...), request
validation errors (422 with one entry per bad field in ``errors``) and any unexpected exception
(500, with the request id so an operator can find the log line; the exception text is not shown).
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.requestctx import current_request_id

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


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(x) for x in e.get("loc", ())]
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
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        if exc.status_code == 405:
            detail = f"method {request.method} is not allowed on {request.url.path}"
        return problem_response(exc.status_code, detail, headers=getattr(exc, "headers", None),
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, "internal error; quote the request_id when reporting it",
                                instance=request.url.path)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting problem documents for ``codes``."""
    return {c: {"model": Problem, "description": _phrase(c),
                "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for c in codes}


__all__ = ["ApiProblem", "PROBLEM_MEDIA_TYPE", "Problem", "ProblemError", "install_problem_handlers", "json_safe",
           "problem_response", "problem_responses"]
