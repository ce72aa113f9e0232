"""Jobs: list, get (status, progress, ETA, log, error), result, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.db.models import FinanceResult, Job, SimulationRun, utcnow
from api.finance_schemas import FinanceResultOut
from api.jobs import TERMINAL
from api.problems import ApiProblem
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging, encode
from api.schemas import JobOut, JobStatus, Page, SimulationOut
from api.security import ANALYSTS, Principal, require_roles
from api.services import audit, count, get_owned, page, run_out

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=AUTH_PROBLEMS)
analyst = require_roles(*ANALYSTS)


def job_out(job: Job) -> dict[str, Any]:
    return {k: getattr(job, k) for k in ("id", "kind", "status", "request", "progress", "eta_s", "log", "error",
                                         "result_id", "attempts", "cancel_requested", "created_by", "created_at",
                                         "started_at", "finished_at")}


@router.get("", response_model=Page[JobOut], summary="List your jobs (newest first)")
def list_jobs(status: JobStatus | None = Query(None), paging: Paging = Depends(), who: Principal = Depends(analyst),
              s: Session = DB_SESSION):
    q = select(Job).where(Job.tenant_id == who.tenant_id)
    if status is not None:
        q = q.where(Job.status == status)
    total = count(s, q)
    rows = s.scalars(q.order_by(Job.created_at.desc(), Job.id).limit(paging.limit).offset(paging.offset)).all()
    return page([job_out(j) for j in rows], total, paging.limit, paging.offset)


@router.get("/{job_id}", response_model=JobOut, summary="A job: status, progress, ETA, log, error")
def get_job(job_id: str, who: Principal = Depends(analyst), s: Session = DB_SESSION):
    return job_out(get_owned(s, Job, job_id, who, "job"))


@router.get("/{job_id}/result", response_model=SimulationOut | FinanceResultOut,
            summary="The result of a succeeded job (409 while it is not finished)")
def job_result(job_id: str, who: Principal = Depends(analyst), s: Session = DB_SESSION):
    """A simulation result, or for collateral / quote / stress-test jobs the finance result."""
    job = get_owned(s, Job, job_id, who, "job")
    if job.status != "succeeded" or job.result_id is None:
        raise ApiProblem(409, f"job {job_id} is {job.status}; a result exists only when it succeeded",
                         kind="job-not-finished", job_status=job.status)
    if job.kind != "simulation":
        from api.finance import result_out

        return result_out(get_owned(s, FinanceResult, job.result_id, who, "result"))
    return run_out(get_owned(s, SimulationRun, job.result_id, who, "simulation"))


@router.post("/{job_id}/cancel", response_model=JobOut, status_code=202,
             summary="Cancel a job (200 when it is cancelled now or already was; 202 while a running one stops)",
             responses={200: {"model": JobOut, "description": "Cancelled (now, or already): nothing is left to do"},
                        202: {"model": JobOut, "description": "A worker is running it: it stops at its next chunk"}})
def cancel_job(job_id: str, request: Request, who: Principal = Depends(analyst), s: Session = DB_SESSION):
    """Cancel is idempotent. A queued job is cancelled at once, and so is a running one that no worker
    of this server holds (its server stopped, or its worker died): **200** with the cancelled job. A
    job a worker is running stops at its next chunk (a finance job at once, its result discarded):
    **202** with ``cancel_requested``. An already cancelled job answers 200 as it is; a succeeded or
    failed one 409 ``job-finished``."""
    runner = request.app.state.jobs
    for _ in range(3):  # the job may change state under us (a worker finishing): decide on what is stored
        job = get_owned(s, Job, job_id, who, "job")
        if job.status == "cancelled":
            return JSONResponse(encode(JobOut, job_out(job)), status_code=200)
        if job.status in TERMINAL:
            raise ApiProblem(409, f"job {job_id} is already {job.status}", kind="job-finished", job_status=job.status)
        prior = job.status
        now = prior == "queued" or not runner.owns(job_id)
        stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%S")
        lines = list(job.log or [])
        if now:
            lines.append(f"{stamp}Z cancelled " + ("before it started" if prior == "queued"
                                                    else "(no worker of this server was running it)"))
            values = dict(status="cancelled", cancel_requested=True, finished_at=utcnow(), eta_s=None, log=lines)
        else:
            lines.append(f"{stamp}Z cancel requested")
            values = dict(cancel_requested=True, log=lines)
        res = s.execute(update(Job).where(Job.id == job_id, Job.status == prior).values(**values))
        if res.rowcount == 1:
            break
        s.rollback()
    else:
        raise ApiProblem(409, f"job {job_id} is changing state; try again", kind="conflict")
    audit(s, who, "job.cancel", "job", job_id, status_before=prior, cancelled_now=now)
    s.commit()
    s.expire_all()
    out = job_out(get_owned(s, Job, job_id, who, "job"))
    runner.request_cancel(job_id)
    return JSONResponse(encode(JobOut, out), status_code=200 if now else 202)
