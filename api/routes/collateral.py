"""Collateral valuations of carbon-pledge loans (``finance_engine.collateral.value_collateral``) and their
HTML collateral memo. Roles: bank and bureau (the roles that register loans)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.compute import pf_ref, task_collateral_memo
from api.finance import prepare_collateral, put_artifact
from api.finance_schemas import CollateralRequest, FinanceResultOut
from api.problems import ApiProblem
from api.routes._finance import CREATED, HTML, artifact, create_result, download, get_result, list_results, portfolio_of
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import ID_PATTERN, Page
from api.security import Principal, require_roles

router = APIRouter(prefix="/v1/collateral-valuations", tags=["collateral"], responses=AUTH_PROBLEMS)
lender = require_roles("bank", "bureau")


def _numbers(d: dict) -> dict:
    """A result without its code version (a rerun on a later commit may still give the same numbers)."""
    prov = {k: v for k, v in (d.get("provenance") or {}).items() if k != "code_version"}
    return {**d, "provenance": prov}


@router.post("", status_code=201, response_model=FinanceResultOut, summary="Value a loan's pledged carbon",
             responses=CREATED)
async def create_valuation(body: CollateralRequest, request: Request, who: Principal = Depends(lender)):
    """Values the pledged parcels of a loan: value today with its Monte Carlo error, the value fan,
    LTV, shortfall and top-up probabilities by year, the largest safe loan, credit metrics with a PD,
    drivers (``attribution: true``) and price sensitivities (``finance_engine.collateral``).

    Give a registered ``loan_id`` (its amount, term and rate; ``terms`` override them) or a
    ``portfolio_id`` with ``terms``. Up to ``CRE_SYNC_MAX_CELLS`` pledged parcels x paths x crediting
    years the answer comes at once (201); larger ones, or ``mode: job``, become a job (202). Bad terms
    answer 422 naming the field."""
    settings = request.app.state.settings
    return await create_result(request, who, "collateral", lambda s: prepare_collateral(s, who, body, settings),
                               body.mode, what="pledged parcels x paths x crediting years")


@router.get("", response_model=Page[FinanceResultOut], summary="Your collateral valuations (newest first)")
def list_valuations(portfolio_id: str | None = Query(None, max_length=40, pattern=ID_PATTERN),
                    paging: Paging = Depends(),
                    who: Principal = Depends(lender), s: Session = DB_SESSION):
    return list_results(s, who, "collateral", portfolio_id, paging)


@router.get("/{valuation_id}", response_model=FinanceResultOut, summary="A collateral valuation with its audit")
def get_valuation(valuation_id: str, who: Principal = Depends(lender), s: Session = DB_SESSION):
    from api.finance import result_out

    return result_out(get_result(s, who, "collateral", valuation_id))


@router.get("/{valuation_id}/memo", response_class=HTMLResponse,
            responses=HTML, summary="The HTML collateral memo (a download)")
async def valuation_memo(valuation_id: str, request: Request, who: Principal = Depends(lender)):
    """The self-contained collateral memo (fan chart, by-year table, drivers, credit view). The memo
    needs the value paths, which are not stored: the valuation is re-run with its stored request and
    seed (the same numbers, checked against the stored result) and the memo is kept for later."""
    state = request.app.state

    def load():
        with state.db.session() as s:
            row = get_result(s, who, "collateral", valuation_id)
            a = artifact(s, row.id, "memo.html")
            if a is not None:
                return row, None, a.content
            return row, portfolio_of(s, who, row), None

    row, pf, content = await run_in_threadpool(load)
    if content is None:
        html, again = await state.compute.run(task_collateral_memo, pf_ref(pf), row.request)
        if _numbers(again) != _numbers(row.result):
            raise ApiProblem(409, "this code version does not reproduce the stored valuation; the memo is not "
                                  "rendered", kind="conflict")
        content = html.encode("utf-8")

        def save():
            with state.db.session() as s:
                put_artifact(s, row.id, "memo.html", "text/html; charset=utf-8", content)

        await run_in_threadpool(save)
    return download(content, "text/html; charset=utf-8", f"collateral-memo-{row.id}.html")


__all__ = ["router"]
