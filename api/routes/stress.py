"""Stress tests (``finance_engine.stress.run.run_stress_test``): scenarios against the baseline on common
random numbers, with the HTML report, the Excel workbook and the five-level accounts of each scenario.
Role: bureau (the issue's user; a bank or insurer tenant owns no city-wide portfolio)."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from api.finance import prepare_stress, result_out
from api.finance_schemas import FinanceResultOut, StressRequest
from api.problems import ApiProblem
from api.routes._finance import CREATED, HTML, XLSX_TYPE, artifact, create_result, download, get_result, list_results
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import ID_PATTERN, AccountLevel, Page
from api.security import Principal, require_roles
from api.services import check_filters, page

router = APIRouter(prefix="/v1/stress-tests", tags=["stress tests"], responses=AUTH_PROBLEMS)
bureau = require_roles("bureau")
TABLES = Literal["scenarios", "portfolio", "horizon", "by_year", "concentration", "loans", "policies", "insurer",
                 "budget", "footprints"]


@router.post("", status_code=201, response_model=FinanceResultOut, summary="Run a stress test (a job by default)",
             responses=CREATED)
async def create_stress_test(body: StressRequest, request: Request, who: Principal = Depends(bureau)):
    """Runs each scenario (library names from ``GET /v1/scenarios`` without the ``stress.`` prefix,
    and inline scenario documents) against the baseline with the same seed, so differences are
    paired path by path. With a ``registry`` (or ``use_registered_loans``) the loans and policies
    are valued under each scenario. Runs as a job (202) unless ``mode: auto`` and the test is small
    (parcels x paths x years x runs within ``CRE_SYNC_MAX_CELLS``). Bad scenarios answer 422 naming
    the scenario and field."""
    state = request.app.state
    return await create_result(request, who, "stress_test", lambda s: (lambda pf, req, c: (pf, None, req, c))(
        *prepare_stress(s, who, body, state.models, state.portfolios)), body.mode, cache=False,
        what="parcels x paths x years x runs")


@router.get("", response_model=Page[FinanceResultOut], summary="Your stress tests (newest first)")
def list_stress_tests(portfolio_id: str | None = Query(None, max_length=40, pattern=ID_PATTERN),
                      paging: Paging = Depends(),
                      who: Principal = Depends(bureau), s: Session = DB_SESSION):
    return list_results(s, who, "stress_test", portfolio_id, paging)


@router.get("/{stress_test_id}", response_model=FinanceResultOut,
            summary="A stress test: headline tables (the large ones under /tables)")
def get_stress_test(stress_test_id: str, who: Principal = Depends(bureau), s: Session = DB_SESSION):
    return result_out(get_result(s, who, "stress_test", stress_test_id))


@router.get("/{stress_test_id}/tables/{table}", response_model=Page[dict[str, Any]],
            summary="One table of a stress test, filtered and paged")
def stress_table(stress_test_id: str, table: TABLES, scenario: str | None = Query(None, max_length=120),
                 level: str | None = Query(None, max_length=40), metric: str | None = Query(None, max_length=80),
                 paging: Paging = Depends(), who: Principal = Depends(bureau), s: Session = DB_SESSION):
    """The table's rows, filtered by ``scenario``, ``level`` and ``metric``: a value none of the table's rows holds
    (or a filter on a column the table has not) answers 422 naming ``query/<param>`` with the valid values."""
    result = get_result(s, who, "stress_test", stress_test_id).result
    rows = result.get(table) or []
    check_filters(rows, {"scenario": scenario, "level": level, "metric": metric}, f"the {table} table")
    for key, want in (("scenario", scenario), ("level", level), ("metric", metric)):
        if want is not None:
            rows = [r for r in rows if r.get(key) == want]
    return page(rows[paging.offset:paging.offset + paging.limit], len(rows), paging.limit, paging.offset,
                result.get("provenance", {}))


@router.get("/{stress_test_id}/accounts", response_model=dict[str, Any],
            summary="Five-level carbon accounts of a scenario of the run (table or tree)")
def stress_accounts(stress_test_id: str, scenario: str = Query("baseline", max_length=120),
                    level: AccountLevel | None = Query(None, description="one level of the table (default: all)"),
                    format: Literal["table", "tree"] = Query("table"), paging: Paging = Depends(),
                    who: Principal = Depends(bureau), s: Session = DB_SESSION):
    """Province -> city -> county -> township -> village: stock, sink, credits, losses by peril and
    value, each level the exact sum of the villages below it
    (``finance_engine.stress.accounts.scenario_accounts`` with the run's seed, paths and years)."""
    row = get_result(s, who, "stress_test", stress_test_id)
    a = artifact(s, row.id, "accounts.json")
    if a is None:
        raise ApiProblem(404, "this stress test kept no accounts (run it with accounts: true)", kind="not-found")
    accounts = json.loads(a.content)
    if scenario not in accounts:
        raise ApiProblem(404, f"no scenario {scenario!r} in this stress test; it has {sorted(accounts)}",
                         kind="not-found")
    acc = accounts[scenario]
    out = {"stress_test_id": row.id, "scenario": scenario, "provenance": acc["provenance"], "units": acc["units"]}
    if format == "tree":
        return {**out, "tree": acc["tree"]}
    rows = acc["rows"] if level is None else [r for r in acc["rows"] if r.get("level") == level]
    return {**out, "level": level, "rows": page(rows[paging.offset:paging.offset + paging.limit], len(rows),
                                                paging.limit, paging.offset)}


@router.get("/{stress_test_id}/report", response_class=HTMLResponse, responses=HTML,
            summary="The HTML stress-test report (a download; plots embedded, works offline)")
def stress_report(stress_test_id: str, who: Principal = Depends(bureau), s: Session = DB_SESSION):
    row = get_result(s, who, "stress_test", stress_test_id)
    a = artifact(s, row.id, "report.html")
    if a is None:
        raise ApiProblem(404, "no report stored for this stress test", kind="not-found")
    return download(a.content, a.media_type, f"stress-report-{row.id}.html")


@router.get("/{stress_test_id}/workbook", responses={200: {"content": {XLSX_TYPE: {"schema": {
    "type": "string", "format": "binary"}}}, "description": "an Excel download"}},
            summary="The stress-test Excel workbook (a sheet per table)")
def stress_workbook(stress_test_id: str, who: Principal = Depends(bureau), s: Session = DB_SESSION):
    row = get_result(s, who, "stress_test", stress_test_id)
    a = artifact(s, row.id, "report.xlsx")
    if a is None:
        raise ApiProblem(404, "no workbook stored for this stress test", kind="not-found")
    return download(a.content, a.media_type, f"stress-test-{row.id}.xlsx")


__all__ = ["router"]
