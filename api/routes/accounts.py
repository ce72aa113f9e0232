"""Five-level carbon accounts kept as results (``finance_engine.accounts.carbon_accounts``): run at once or as a
job, listed, read with their audit, and their rows paged by level. Roles: the analysts (bank, insurer, bureau).

``GET /v1/portfolios/{id}/accounts`` answers small accounts in the request; these runs are for the bureau's
whole city with as many sink paths as its errors need, and keep the result with its provenance."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from api.finance import prepare_accounts, result_out
from api.finance_schemas import AccountsRequest, FinanceResultOut
from api.routes._finance import CREATED, create_result, get_result, list_results
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.routes.portfolios import accounts_page
from api.schemas import ID_PATTERN, AccountLevel, AccountsOut, Page
from api.security import ANALYSTS, Principal, require_roles

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], responses=AUTH_PROBLEMS)
analyst = require_roles(*ANALYSTS)


@router.post("", status_code=201, response_model=FinanceResultOut,
             summary="Compute a portfolio's five-level carbon accounts (at once or as a job)", responses=CREATED)
async def create_accounts(body: AccountsRequest, request: Request, who: Principal = Depends(analyst)):
    """Today's stock (BEF and Fang methods), the potential sink and the expected first-year sink and loss with
    their Monte Carlo errors and parameter sds, at every level from the portfolio to the village; integer
    kilogram sums, so every level adds up exactly. Up to ``CRE_SYNC_MAX_CELLS`` parcels x paths the answer comes
    at once (201); larger runs, or ``mode: job``, become a job (202: poll ``/v1/jobs/{id}``, whose ``result_id``
    is the accounts' id). The result holds the headline and provenance; its rows are under ``/rows``."""
    settings = request.app.state.settings
    return await create_result(request, who, "accounts", lambda s: prepare_accounts(s, who, body, settings),
                               body.mode, what="parcels x paths")


@router.get("", response_model=Page[FinanceResultOut], summary="Your accounts runs (newest first)")
def list_accounts(portfolio_id: str | None = Query(None, max_length=40, pattern=ID_PATTERN),
                  paging: Paging = Depends(), who: Principal = Depends(analyst), s: Session = DB_SESSION):
    return list_results(s, who, "accounts", portfolio_id, paging)


@router.get("/{accounts_id}", response_model=FinanceResultOut, summary="An accounts run with its audit (rows under /rows)")
def get_accounts(accounts_id: str, who: Principal = Depends(analyst), s: Session = DB_SESSION):
    return result_out(get_result(s, who, "accounts", accounts_id))


@router.get("/{accounts_id}/rows", response_model=AccountsOut, summary="An accounts run's rows, by level and paged")
def accounts_rows(accounts_id: str, level: AccountLevel | None = Query(None, description="one level (default: all)"),
                  paging: Paging = Depends(), who: Principal = Depends(analyst), s: Session = DB_SESSION):
    row = get_result(s, who, "accounts", accounts_id)
    res = row.result
    rows = [r for r in res.get("rows") or [] if level is None or r.get("level") == level]
    return accounts_page(row.portfolio_id, level, res["sink_paths"], res["seed"], res["provenance"], res["units"],
                         rows, paging)


__all__ = ["router"]
