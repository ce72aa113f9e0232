"""Dependencies and helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any, Iterator

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from api.problems import problem_responses

PAGE_DEFAULT = 50
# problem documents every authenticated endpoint may answer with
AUTH_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 429)


def encode(model, data: dict[str, Any]) -> Any:
    """``data`` as the JSON ``model`` makes of it (for a JSONResponse with its own status or headers)."""
    return json.loads(model.model_validate(data).model_dump_json())


def db_session(request: Request) -> Iterator[Session]:
    """The request's database session, committed when the route returns (rolled back if it raises).

    Declare it ``DB_SESSION``: the commit then happens *before* the response is
    sent, so a client never holds an answer for a write that is not stored (a failed commit is a 500, not a
    201 the idempotency store would replay), and a revoked key or a deleted loan is gone for the very next
    request. (The default ``"request"`` scope ends the dependency after the response is sent.)"""
    with request.app.state.db.session() as s:
        yield s


#: the request's session as routes declare it: ``s: Session = DB_SESSION`` (see :func:`db_session`)
DB_SESSION = Depends(db_session, scope="function")


class Paging:
    """``limit`` (1-``Settings.page_max``, default 50) and ``offset`` (default 0) of a list endpoint.

    The upper bound of ``limit`` is the server's setting (``CRE_PAGE_MAX``, default 500): a larger
    ``limit``, or the default where the maximum is smaller, is lowered to it, and the page's ``limit``
    says so (a client that asks for more, such as the dashboard's 500-row lists, pages on ``next_offset``
    instead of failing when an operator lowers the maximum)."""

    def __init__(self, request: Request,
                 limit: int = Query(PAGE_DEFAULT, ge=1, description="items per page (lowered to the server's page "
                                                                    "maximum, CRE_PAGE_MAX; the page says the limit "
                                                                    "it used)"),
                 offset: int = Query(0, ge=0, le=10**9, description="items to skip")):
        self.limit, self.offset = min(limit, request.app.state.settings.page_max), offset


def services(request: Request):
    return request.app.state
