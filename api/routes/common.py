"""Dependencies and helpers shared by the route modules."""

from __future__ import annotations

from typing import Iterator

from fastapi import Query, Request
from sqlalchemy.orm import Session

from api.problems import ApiProblem, problem_responses

PAGE_MAX = 500  # the default of Settings.page_max (CRE_PAGE_MAX); the app's OpenAPI shows the configured one
PAGE_DEFAULT = 50
# problem documents every authenticated endpoint may answer with
AUTH_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 429)


def db_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as s:
        yield s


class Paging:
    """``limit`` (1-``Settings.page_max``, default 50) and ``offset`` (default 0) of a list endpoint.

    The upper bound of ``limit`` is the server's setting (``CRE_PAGE_MAX``, default 500): a larger
    ``limit`` answers 422 naming ``query/limit``; the default is lowered to it when it is smaller."""

    def __init__(self, request: Request,
                 limit: int = Query(PAGE_DEFAULT, ge=1, description="items per page (at most the server's page "
                                                                    "maximum, CRE_PAGE_MAX)"),
                 offset: int = Query(0, ge=0, le=10**9, description="items to skip")):
        page_max = request.app.state.settings.page_max
        if limit > page_max:
            if "limit" in request.query_params:
                raise ApiProblem(422, f"limit must be at most {page_max}", kind="validation-error",
                                 title="Invalid request",
                                 errors=[{"field": "query/limit", "value": limit,
                                          "reason": f"Input should be less than or equal to {page_max}"}])
            limit = page_max
        self.limit, self.offset = limit, offset


def services(request: Request):
    return request.app.state
