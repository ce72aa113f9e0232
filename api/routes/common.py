"""Dependencies and helpers shared by the route modules."""

from __future__ import annotations

from typing import Iterator

from fastapi import Query, Request
from sqlalchemy.orm import Session

from api.problems import problem_responses

PAGE_MAX = 500
# problem documents every authenticated endpoint may answer with
AUTH_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 429)


def db_session(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as s:
        yield s


class Paging:
    """``limit`` (1-500, default 50) and ``offset`` (default 0) of a list endpoint."""

    def __init__(self, limit: int = Query(50, ge=1, le=PAGE_MAX, description="items per page"),
                 offset: int = Query(0, ge=0, le=10**9, description="items to skip")):
        self.limit, self.offset = limit, offset


def services(request: Request):
    return request.app.state
