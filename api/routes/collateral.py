"""Collateral valuations of carbon-pledge loans (``finance_engine.collateral.value_collateral``) and their
HTML collateral memo. Roles: bank and bureau (the roles that register loans)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.compute import pf_ref, task_collateral_memo
from api.db.models import RetainedPortfolio, utcnow
from api.finance import code_version, prepare_collateral, put_artifact
from api.finance_schemas import CollateralRequest, FinanceResultOut
from api.problems import ApiProblem
from api.routes._finance import CREATED, HTML, artifact, create_result, download, get_result, list_results, portfolio_of
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import ID_PATTERN, Page
from api.security import Principal, require_roles
from api.services import MEMO_REFUSED, job_cells, purge_retained_data, release_portfolio_data

router = APIRouter(prefix="/v1/collateral-valuations", tags=["collateral"], responses=AUTH_PROBLEMS)
lender = require_roles("bank", "bureau")


def _numbers(d: dict) -> dict:
    """A result without its code version (a rerun on a later commit may still give the same numbers)."""
    prov = {k: v for k, v in (d.get("provenance") or {}).items() if k != "code_version"}
    return {**d, "provenance": prov}


def _reproduces(stored, again) -> bool:
    """Whether a re-run gives every figure the stored result holds: equal values wherever the stored result has
    one (a field a later version added to the result, such as a parameter sd's interval or a new term at its
    default, is new reporting, not a changed number)."""
    if isinstance(stored, dict):
        return isinstance(again, dict) and all(k in again and _reproduces(v, again[k]) for k, v in stored.items())
    if isinstance(stored, list):
        return isinstance(again, list) and len(stored) == len(again) and all(map(_reproduces, stored, again))
    return stored == again


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
    settings, models = request.app.state.settings, request.app.state.models
    return await create_result(request, who, "collateral", lambda s: prepare_collateral(s, who, body, settings, models),
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
            responses={**HTML, 409: {"description": "the valuation is not reproduced by this code version, or it "
                                                    "was job-sized (`memo-not-rendered`)"}},
            summary="The HTML collateral memo (a download)")
async def valuation_memo(valuation_id: str, request: Request, who: Principal = Depends(lender)):
    """The self-contained collateral memo (fan chart, by-year table, drivers, credit view). The memo
    needs the value paths, which are not stored: a valuation run as a job renders its memo in the job and
    stores it; for one answered in its request, the first memo request re-runs the valuation in the compute
    pool with its stored request and seed (the same numbers, checked against the stored result) and the
    memo is kept for later; concurrent first requests share that one run. Deleting the portfolio keeps the data
    this re-run needs until the memo is stored, for at most ``CRE_RETAINED_DATA_DAYS`` (then 404; expired data
    is purged at each memo request). A valuation larger than
    ``CRE_SYNC_MAX_CELLS`` whose job stored no memo (made before jobs rendered them) is not re-run in a
    request: 409 ``memo-not-rendered``."""
    state = request.app.state
    sync_max = state.settings.sync_max_cells

    def purge():  # expired data of deleted portfolios goes first (its own transaction: kept whatever this answers)
        with state.db.session() as s:
            purge_retained_data(s)  # (audited in each tenant as the server's, key "-")

    def load():
        with state.db.session() as s:
            row = get_result(s, who, "collateral", valuation_id)
            a = artifact(s, row.id, "memo.html")
            if a is not None:
                return row, None, a.content, None
            cells = job_cells(s, row.tenant_id, row.job_id)
            if cells is not None and cells > sync_max:  # refused whether or not its portfolio is still there
                try:
                    pf = portfolio_of(s, who, row)
                except ApiProblem:  # deleted: no data is kept for a memo a request cannot render
                    pf = None
                return row, pf, None, ApiProblem(
                    409, f"the memo of a job-sized valuation ({cells:,} pledged parcel-path-years, over the "
                         f"{sync_max:,} answered in a request: CRE_SYNC_MAX_CELLS) is not rendered in a request, which "
                         "would re-run the whole valuation, and its job (made before jobs rendered memos) stored "
                         "none. Value the loan again: a job renders its memo, or with fewer paths (within "
                         "CRE_SYNC_MAX_CELLS) it is answered at once",
                    kind="memo-not-rendered", title="Memo not rendered", limit=sync_max, cells=cells)
            return row, portfolio_of(s, who, row), None, None

    def release(pf, reason: str) -> None:
        """A deleted portfolio's data kept for memos like this one: dropped once none is left to render."""
        if isinstance(pf, RetainedPortfolio):
            with state.db.session() as s:
                release_portfolio_data(s, row.tenant_id, pf.id, sync_max, key_id=who.key_id, reason=reason)

    await run_in_threadpool(purge)
    row, pf, content, refused = await run_in_threadpool(load)
    if refused is not None:  # never rendered in a request: no data is kept for it
        await run_in_threadpool(release, pf, "no memo left to render")
        raise refused
    if content is None:
        async def render() -> bool:
            html, again = await state.compute.run(task_collateral_memo, pf_ref(pf), row.request)
            if not _reproduces(_numbers(row.result), _numbers(again)):
                def refuse():  # marked, so no deleted portfolio's data is kept for this memo
                    with state.db.session() as s:
                        put_artifact(s, row.id, MEMO_REFUSED, "application/json", json.dumps(
                            {"code_version": code_version(), "at": utcnow().isoformat(),
                             "reason": "the re-run did not reproduce the stored valuation"}).encode("utf-8"))
                    release(pf, "the memo cannot be rendered: this code version does not reproduce the valuation")

                await run_in_threadpool(refuse)
                raise ApiProblem(409, "this code version does not reproduce the stored valuation; the memo is not "
                                      "rendered", kind="conflict")

            def save():
                with state.db.session() as s:
                    put_artifact(s, row.id, "memo.html", "text/html; charset=utf-8", html.encode("utf-8"))
                    if isinstance(pf, RetainedPortfolio):  # a deleted portfolio's data, kept for memos like this
                        release_portfolio_data(s, row.tenant_id, pf.id, sync_max, key_id=who.key_id,
                                               reason="the memos it was kept for are rendered")

            await run_in_threadpool(save)
            return True  # (the memo is in the database: the cache keeps only this mark, not the HTML)

        # one run however many first requests arrive together (each then reads the stored memo)
        await state.result_cache.single_flight(state.result_cache.key("collateral-memo", row.id), render)

        def stored():
            with state.db.session() as s:
                a = artifact(s, row.id, "memo.html")
                if a is None:  # (a mark outlived its memo: never, artifacts are kept with their result)
                    raise RuntimeError(f"the memo of {row.id} was rendered but is not stored")
                return a.content

        content = await run_in_threadpool(stored)
    return download(content, "text/html; charset=utf-8", f"collateral-memo-{row.id}.html")


__all__ = ["router"]
