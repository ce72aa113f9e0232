"""Shared pieces of the finance routes: run at once (compute pool) or as a job, list, get, downloads."""

from __future__ import annotations

from typing import Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.compute import pf_ref
from api.db.models import FinanceResult, PortfolioRow, ResultArtifact, RetainedPortfolio, utcnow
from api.finance import ERROR_KINDS, INPUT_ERRORS, KIND_PATH, TASKS, check_limit, code_version, problem_fields, \
    problem_from, put_artifact, result_out, store_result
from api.finance_schemas import FinanceResultOut
from api.jobs import create_job
from api.problems import ApiProblem
from api.requestctx import current_request_id
from api.routes.common import encode
from api.routes.jobs import job_out
from api.schemas import JobOut
from api.security import Principal
from api.services import audit, count, get_owned, page, retain_portfolio_data

CREATED = {201: {"description": "Finished at once; the stored result",
                 "headers": {"Location": {"schema": {"type": "string"}}}},
           202: {"model": JobOut, "description": "Accepted as a job; poll the Location",
                 "headers": {"Location": {"schema": {"type": "string"}}}}}
HTML = {200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "an HTML download"}}
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def create_result(request: Request, who: Principal, kind: str, prepare: Callable[[Session], tuple],
                        mode: str, *, cache: bool = True, what: str = "request") -> JSONResponse:
    """Prepare (tenant checks, role limit) -> a job (202) or a run in the compute pool (201).

    ``prepare(session)`` returns ``(portfolio row, instrument id, engine request, cells)``."""
    state = request.app.state
    rid = current_request_id()

    def prep():
        with state.db.session() as s:
            pf, inst_id, req, cells = prepare(s)
            check_limit(state.settings, who, cells, what)
            if mode == "job" or cells > state.settings.sync_max_cells:
                job = create_job(s, tenant_id=who.tenant_id, key_id=who.key_id, kind=kind, request=req,
                                 request_id=rid, max_active=state.settings.max_active_jobs_per_tenant)
                audit(s, who, f"{kind}.submit", "job", job.id, request=req, cells=cells)
                return "job", job_out(job), pf, inst_id, req
            return "sync", None, pf, inst_id, req

    how, job, pf, inst_id, req = await run_in_threadpool(prep)
    if how == "job":
        state.jobs.submit(job["id"], who.tenant_id)
        return JSONResponse(encode(JobOut, job), status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})
    key = None
    out = None
    if cache:
        params = state.models.get(pf.region)
        key = state.result_cache.key(kind, pf.region, pf.data_sha256, params.sha256, code_version(),
                                     {k: v for k, v in req.items() if k != "name"})
        out = state.result_cache.get(key)
    if out is None:
        try:
            if key is None:
                out = await state.compute.run(TASKS[kind], pf_ref(pf), req)
            else:  # identical requests in flight share one computation (no stampede on a cold cache)
                out = await state.result_cache.single_flight(
                    key, lambda: state.compute.run(TASKS[kind], pf_ref(pf), req))
        except INPUT_ERRORS as exc:
            def where():  # the fields the engine's error names, as a job's failure names them
                with state.db.session() as s:
                    return problem_fields(s, who.tenant_id, kind, req)

            raise problem_from(exc, ERROR_KINDS[kind], await run_in_threadpool(where)) from exc
    artifacts = {}
    if kind == "stress_test":
        artifacts, out = out["artifacts"], dict(out["result"])
        if req.get("api_notes"):
            out["notes"] = list(out.get("notes") or []) + list(req["api_notes"])

    def save():
        with state.db.session() as s:
            row = store_result(s, kind=kind, tenant_id=who.tenant_id, key_id=who.key_id, pf=pf,
                               instrument_id=inst_id, req=req, result=out, job_id=None, request_id=rid)
            if kind == "collateral" and pf is not None:
                keep_data_for(s, state.settings, who, pf)
            for name, (media, content) in artifacts.items():
                put_artifact(s, row.id, name, media, content)
            audit(s, who, f"{kind}.create", kind, row.id, request_sha256=row.request_sha256,
                  parameter_sha256=row.parameter_sha256, seed=row.seed, code_version=row.code_version)
            return result_out(row)

    body = await run_in_threadpool(save)
    return JSONResponse(encode(FinanceResultOut, body), status_code=201,
                        headers={"Location": f"/v1/{KIND_PATH[kind]}/{body['id']}"})


def keep_data_for(s: Session, settings, who: Principal, pf: PortfolioRow) -> None:
    """After a valuation of ``pf`` is inserted (in ``s``'s transaction, not committed): its memo re-runs it on its
    portfolio's data, so a delete of the portfolio that committed before this transaction can see the result
    must keep the data for it. The insert comes first: on SQLite it takes the write lock (pysqlite begins the
    transaction at the first write, and ignores FOR SHARE), so a delete either committed before it (the portfolio
    is gone here: the data is kept now) or waits for this commit (and sees the result: the delete keeps it); on
    PostgreSQL the shared lock waits for a delete holding the row, and a delete after it waits for this commit."""
    if s.scalar(select(PortfolioRow.id).where(PortfolioRow.id == pf.id).with_for_update(read=True)) is not None:
        return
    kept_for, until = retain_portfolio_data(s, pf, sync_max=settings.sync_max_cells, days=settings.retained_data_days)
    if kept_for:
        audit(s, who, "portfolio.data_kept", "portfolio", pf.id, data_kept_for=kept_for[:100],
              data_kept_until=until.isoformat() if until else None,
              reason="a valuation of the portfolio was stored as it was deleted")


def list_results(s: Session, who: Principal, kind: str, portfolio_id: str | None, paging) -> dict[str, Any]:
    q = select(FinanceResult).where(FinanceResult.tenant_id == who.tenant_id, FinanceResult.kind == kind)
    if portfolio_id is not None:
        q = q.where(FinanceResult.portfolio_id == portfolio_id)
    total = count(s, q)
    rows = s.scalars(q.order_by(FinanceResult.created_at.desc(), FinanceResult.id).limit(paging.limit)
                     .offset(paging.offset)).all()
    return page([result_out(r) for r in rows], total, paging.limit, paging.offset)


def get_result(s: Session, who: Principal, kind: str, result_id: str) -> FinanceResult:
    what = kind.replace("_", " ")
    row = get_owned(s, FinanceResult, result_id, who, what)
    if row.kind != kind:
        raise ApiProblem(404, f"no {what} {result_id!r}", kind="not-found")
    return row


def artifact(s: Session, result_id: str, name: str) -> ResultArtifact | None:
    return s.get(ResultArtifact, (result_id, name))


#: the policy of the HTML downloads (memo, quote slip, stress report): self-contained pages whose only
#: resources are their inline <style> and their plots as data: PNGs; no script, frame, form or fetch
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")


def download(content: bytes, media_type: str, filename: str) -> Response:
    """A report as a download: ``Content-Disposition: attachment`` with its file name, ``nosniff`` (the
    browser keeps the declared type) and, for HTML, :data:`REPORT_CSP` (opened in a browser anyway, a
    report can run nothing and load nothing)."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "X-Content-Type-Options": "nosniff"}
    if media_type.split(";")[0].strip().lower() == "text/html":
        headers["Content-Security-Policy"] = REPORT_CSP
    return Response(content, media_type=media_type, headers=headers)


def portfolio_of(s: Session, who: Principal, row: FinanceResult) -> PortfolioRow | RetainedPortfolio:
    """The stored result's portfolio data, unchanged since the result (a rerun must see the same data): the
    portfolio, or once it is deleted the data its delete kept for the result (:func:`api.services.retain_portfolio_data`)."""
    pf = s.get(PortfolioRow, row.portfolio_id) if row.portfolio_id else None
    if pf is None or pf.tenant_id != who.tenant_id:
        pf = s.get(RetainedPortfolio, row.portfolio_id) if row.portfolio_id else None
        if pf is not None and pf.expires_at <= utcnow():  # (purged at the next delete, memo request or admin purge)
            pf = None
    if pf is None or pf.tenant_id != who.tenant_id:
        raise ApiProblem(404, f"the portfolio {row.portfolio_id!r} of this result was deleted (a deleted portfolio's "
                              "data is kept only for the memos of its valuations, for CRE_RETAINED_DATA_DAYS)",
                         kind="not-found")
    if pf.data_sha256 != row.portfolio_sha256:
        raise ApiProblem(409, "the result's portfolio data changed", kind="conflict")
    return pf


__all__ = ["CREATED", "HTML", "REPORT_CSP", "XLSX_TYPE", "artifact", "create_result", "download", "get_result",
           "keep_data_for",
           "list_results", "portfolio_of"]
