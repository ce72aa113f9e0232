"""Simulations: run (small at once, large as a job), list, get, summary rows, accounts, loss table."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.compute import pf_ref, task_simulate
from api.db.models import PortfolioRow, SimulationRun
from api.jobs import create_job
from api.problems import ApiProblem, engine_problem
from api.requestctx import current_request_id
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging, encode
from api.routes.jobs import job_out
from api.routes.portfolios import accounts_response
from api.schemas import ID_PATTERN, AccountLevel, AccountsOut, JobOut, Level, Page, SimulationOut, SimulationRequest
from api.security import ANALYSTS, Principal, require_roles
from api.services import (SIMULATION_CREDITING, SIMULATION_FIELDS, audit, cells, check_filters,
                          check_simulation_request, clean,
                          count, get_owned, page, run_out, store_run)

router = APIRouter(prefix="/v1/simulations", tags=["simulations"], responses=AUTH_PROBLEMS)
analyst = require_roles(*ANALYSTS)


@router.post("", status_code=201, response_model=SimulationOut, summary="Run a simulation",
             responses={201: {"description": "Finished at once; the stored result",
                              "headers": {"Location": {"schema": {"type": "string"}}}},
                        202: {"model": JobOut, "description": "Accepted as a job; poll the Location",
                              "headers": {"Location": {"schema": {"type": "string"}}}}})
async def create_simulation(body: SimulationRequest, request: Request, who: Principal = Depends(analyst)):
    """Runs growth, perils and carbon for every parcel and path of a stored portfolio.

    Requests up to ``sync_max_cells`` parcels x paths x years (default 2,000,000) are answered at
    once (201 with the stored result); larger ones, or ``mode: job``, become a job (202, Location
    of the job). Each role has a ceiling on parcels x paths x years (422 ``limit-exceeded``)."""
    state = request.app.state
    req = body.model_dump(mode="json")
    for k in SIMULATION_CREDITING:  # unset: left out, so a request without them keeps its identity
        if req.get(k) is None:
            req.pop(k, None)
    rid = current_request_id()

    def prepare():
        with state.db.session() as s:
            pf = get_owned(s, PortfolioRow, body.portfolio_id, who, "portfolio")
            check_simulation_request(state.models.get(pf.region), req)  # before a job is accepted, too
            n = cells(pf.n_parcels, body.paths, body.years)
            limit = state.settings.role_max_cells.get(who.role, 0)
            if n > limit:
                raise ApiProblem(422, f"{pf.n_parcels} parcels x {body.paths} paths x {body.years} years = {n} "
                                      f"exceeds the {who.role} limit of {limit}", kind="limit-exceeded",
                                 limit=limit, cells=n)
            if body.mode == "job" or n > state.settings.sync_max_cells:
                job = create_job(s, tenant_id=who.tenant_id, key_id=who.key_id, kind="simulation", request=req,
                                 request_id=rid, max_active=state.settings.max_active_jobs_per_tenant)
                audit(s, who, "simulation.submit", "job", job.id, request=req, cells=n)
                return "job", job_out(job), pf
            return "sync", None, pf

    kind, job, pf = await run_in_threadpool(prepare)
    if kind == "job":
        state.jobs.submit(job["id"], who.tenant_id)
        return JSONResponse(encode(JobOut, job), status_code=202, headers={"Location": f"/v1/jobs/{job['id']}"})

    # the engine runs in the compute pool (api.compute): the event loop and other requests go on
    try:
        result = await state.compute.run(task_simulate, pf_ref(pf), req, 64)
    except ValueError as exc:
        raise engine_problem(exc, "invalid-simulation", SIMULATION_FIELDS, title="Invalid simulation") from exc

    def run_now():
        with state.db.session() as s:
            run = store_run(s, tenant_id=who.tenant_id, key_id=who.key_id, portfolio=pf, req=req, result=result,
                            job_id=None, request_id=rid)
            audit(s, who, "simulation.create", "simulation", run.id, request=req,
                  parameter_sha256=run.parameter_sha256, seed=run.seed, code_version=run.code_version)
            return run_out(run)

    out = await run_in_threadpool(run_now)
    return JSONResponse(encode(SimulationOut, out), status_code=201, headers={"Location": f"/v1/simulations/{out['id']}"})


@router.get("", response_model=Page[SimulationOut], summary="List your simulation results (newest first)")
def list_simulations(portfolio_id: str | None = Query(None, max_length=40, pattern=ID_PATTERN),
                     paging: Paging = Depends(),
                     who: Principal = Depends(analyst), s: Session = DB_SESSION):
    q = select(SimulationRun).where(SimulationRun.tenant_id == who.tenant_id)
    if portfolio_id is not None:
        q = q.where(SimulationRun.portfolio_id == portfolio_id)
    total = count(s, q)
    rows = s.scalars(q.order_by(SimulationRun.created_at.desc(), SimulationRun.id).limit(paging.limit)
                     .offset(paging.offset)).all()
    return page([run_out(r) for r in rows], total, paging.limit, paging.offset)


@router.get("/{simulation_id}", response_model=SimulationOut, summary="A simulation result with its audit trail")
def get_simulation(simulation_id: str, who: Principal = Depends(analyst), s: Session = DB_SESSION):
    return run_out(get_owned(s, SimulationRun, simulation_id, who, "simulation"))


@router.get("/{simulation_id}/summary", response_model=Page[dict[str, Any]],
            summary="Yearly summary rows (filter by level, group, metric, year or calendar year; paged)")
def simulation_summary(simulation_id: str, level: Level | None = None,
                       group: str | None = Query(None, max_length=300),
                       metric: str | None = Query(None, max_length=60),
                       year: int | None = Query(None, description="the 0-based year index of the run (0 = its first "
                                                                  "year, up to years - 1)"),
                       calendar_year: int | None = Query(None, description="the calendar year (the rows' "
                                                                           "calendar_year: the run's start year + year)"),
                       paging: Paging = Depends(),
                       who: Principal = Depends(analyst), s: Session = DB_SESSION):
    """The run's yearly rows. A filter value no row of the run can have answers 422 naming ``query/<param>``
    with the valid values (``level``: the run's levels; ``group``: the level's groups; ``metric``: the yearly
    metrics; ``year``: the 0-based year index, 0 .. years - 1; ``calendar_year``: the run's calendar years)."""
    run = get_owned(s, SimulationRun, simulation_id, who, "simulation")
    if level == "parcel":  # parcels have horizon results only, not yearly rows
        raise ApiProblem(422, f"parcel results are not yearly summary rows: GET /v1/simulations/{run.id}/parcels",
                         kind="validation-error", title="Invalid request",
                         errors=[{"field": "query/level", "value": level,
                                  "reason": f"use /v1/simulations/{run.id}/parcels for parcel results"}])
    rows = run.result.get("summary", [])
    _check_year(run, rows, year, calendar_year)
    horizon = {r.get("metric") for r in run.result.get("horizon", [])}
    yearly = {r.get("metric") for r in rows}
    hint = (f"{metric!r} is a whole-horizon figure: GET /v1/simulations/{run.id} has it under 'horizon'"
            if metric in horizon - yearly else "")
    check_filters(rows, {"level": level}, "the run's yearly rows")
    if level is not None:
        rows = [r for r in rows if r.get("level") == level]
    check_filters(rows, {"group": group}, f"the run's {level} rows" if level else "the run's yearly rows")
    check_filters(rows, {"metric": metric}, "the run's yearly rows", hints={"metric": hint})
    if group is not None:
        rows = [r for r in rows if r.get("group") == group]
    if metric is not None:
        rows = [r for r in rows if r.get("metric") == metric]
    if year is not None:
        rows = [r for r in rows if r.get("year") == year]
    if calendar_year is not None:
        rows = [r for r in rows if r.get("calendar_year") == calendar_year]
    return page(rows[paging.offset:paging.offset + paging.limit], len(rows), paging.limit, paging.offset,
                run.result.get("provenance", {}))


def _check_year(run: SimulationRun, rows: list[dict[str, Any]], year: int | None, calendar_year: int | None) -> None:
    """``year`` (0-based index) and ``calendar_year`` within the run's years, else 422 naming the parameter with
    the run's range in both forms."""
    if year is None and calendar_year is None:
        return
    n = int(run.request.get("years") or 0) or (max((int(r["year"]) for r in rows), default=-1) + 1)
    start = (run.result.get("provenance") or {}).get("start_year")
    if start is None:
        start = next((int(r["calendar_year"]) - int(r["year"]) for r in rows
                      if r.get("calendar_year") is not None and r.get("year") is not None), None)
    span = (f"the run's {n} years are year 0 .. {n - 1}"
            + (f", calendar years {start} .. {start + n - 1}" if start is not None else ""))
    if year is not None and not 0 <= year < n:
        hint = (f" (for calendar year {year} use calendar_year={year}, or year={year - start})"
                if start is not None and start <= year < start + n else "")
        reason = f"year is the 0-based year index of the run: {span}{hint}"
        raise ApiProblem(422, f"year: {reason}", kind="validation-error", title="Invalid request",
                         errors=[{"field": "query/year", "value": year, "reason": reason, "min": 0, "max": n - 1}])
    if calendar_year is not None and start is not None and not start <= calendar_year < start + n:
        reason = f"calendar_year is a calendar year of the run: {span}"
        raise ApiProblem(422, f"calendar_year: {reason}", kind="validation-error", title="Invalid request",
                         errors=[{"field": "query/calendar_year", "value": calendar_year, "reason": reason,
                                  "min": start, "max": start + n - 1}])


PARCEL_COLUMN_UNITS = {
    "parcel_id": "the parcel's id in the portfolio",
    "stock_tco2e": "tCO2e: the parcel's deterministic stock today",
    "stock_end_tco2e": "tCO2e: stock at the end of the horizon",
    "cumulative_loss_tco2e": "tCO2e: losses to all perils summed over the horizon",
    "cumulative_credits_tco2e": "tCO2e: credits issued over the horizon",
    "mean_annual_sink_tco2e": "tCO2e per year: net sink averaged over the horizon",
}


#: a per-parcel column's statistic: its name's suffix -> what the unit says of it
_PARCEL_STATISTICS = (("_mean", "mean over the paths"), ("_mc_se", "Monte Carlo standard error of the mean"),
                      ("_parameter_sd_ci95_low", "parameter sd, 95 % interval low"),
                      ("_parameter_sd_ci95_high", "parameter sd, 95 % interval high"),
                      ("_parameter_sd", "parameter sd: the spread better data would narrow"))


def _parcel_units(columns) -> dict[str, str]:
    out = {}
    for c in columns:
        suffix, what = next(((s, w) for s, w in _PARCEL_STATISTICS if c.endswith(s)), ("", ""))
        base = c[:-len(suffix)] if suffix else c
        unit = PARCEL_COLUMN_UNITS.get(base, "tCO2e" if base.endswith("_tco2e") else "")
        out[c] = f"{unit} ({what})" if what else unit
    return out


@router.get("/{simulation_id}/parcels", response_model=Page[dict[str, Any]],
            summary="Per-parcel horizon results of a run with the 'parcel' level (paged)")
def simulation_parcels(simulation_id: str, parcel_id: str | None = Query(None, max_length=200),
                       paging: Paging = Depends(), who: Principal = Depends(analyst),
                       s: Session = DB_SESSION):
    """One row per parcel (portfolio order): its stock today and, over the run's horizon, the mean and
    Monte Carlo standard error of the end stock, cumulative loss, cumulative credits and mean annual
    sink (tCO2e; ``units`` names each column). Pages carry the run's ``provenance`` like the summary
    rows. Runs without ``parcel`` in their ``levels`` kept no parcel results (404)."""
    run = get_owned(s, SimulationRun, simulation_id, who, "simulation")
    rows = run.result.get("parcel_summary")
    if rows is None:
        raise ApiProblem(404, "this run kept no parcel results (run it with 'parcel' in levels)", kind="not-found")
    if parcel_id is not None:
        rows = [r for r in rows if str(r.get("parcel_id")) == parcel_id]
    sub = rows[paging.offset:paging.offset + paging.limit]
    stock = {r["group"]: r["stock_tco2e"] for r in run.result.get("initial_stock", []) if r.get("level") == "parcel"}
    items = [{"parcel_id": r["parcel_id"], "stock_tco2e": stock.get(str(r["parcel_id"])),
              **{k: v for k, v in r.items() if k != "parcel_id"}} for r in sub]
    columns = list(items[0]) if items else ["parcel_id", "stock_tco2e"] + [k for k in (rows[0] if rows else {})
                                                                            if k != "parcel_id"]
    out = page(items, len(rows), paging.limit, paging.offset, run.result.get("provenance", {}))
    out["units"] = _parcel_units(columns)
    return out


@router.get("/{simulation_id}/event-loss-table", response_model=Page[dict[str, Any]],
            summary="Event loss table rows (when the run kept one; paged)")
def simulation_elt(simulation_id: str, paging: Paging = Depends(), who: Principal = Depends(analyst),
                   s: Session = DB_SESSION):
    run = get_owned(s, SimulationRun, simulation_id, who, "simulation")
    if run.elt_parquet is None:
        raise ApiProblem(404, "this run kept no event loss table (set loss_table_level)", kind="not-found")
    df = pd.read_parquet(io.BytesIO(run.elt_parquet))
    sub = df.iloc[paging.offset:paging.offset + paging.limit].copy()
    sub["peril"] = sub["peril"].astype(str)
    return page(clean(sub.to_dict(orient="records")), len(df), paging.limit, paging.offset,
                run.result.get("provenance", {}))


@router.get("/{simulation_id}/accounts", response_model=AccountsOut,
            summary="Five-level carbon accounts of the run's portfolio, with the run's seed and paths")
def simulation_accounts(simulation_id: str, request: Request, level: AccountLevel | None = None,
                        paging: Paging = Depends(), who: Principal = Depends(analyst),
                        s: Session = DB_SESSION):
    """The accounts (stock today, expected first-year sink and loss) of the portfolio the run used,
    estimated with the run's seed and number of paths (the first year of the run)."""
    run = get_owned(s, SimulationRun, simulation_id, who, "simulation")
    pf = s.get(PortfolioRow, run.portfolio_id)
    if pf is None or pf.tenant_id != who.tenant_id:
        raise ApiProblem(404, f"the portfolio {run.portfolio_id!r} of this run was deleted", kind="not-found")
    if pf.data_sha256 != run.portfolio_sha256:
        raise ApiProblem(409, "the run's portfolio data changed", kind="conflict")
    return accounts_response(request.app.state, who, pf, level, int(run.request["paths"]), int(run.seed), paging,
                             paths_field="run/request/paths")


__all__ = ["router"]
