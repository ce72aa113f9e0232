"""Portfolios: upload (multipart file or JSON), list, get (summary + parcels), delete, accounts."""

from __future__ import annotations

import io
import json
import re
import threading
from collections import OrderedDict
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.db.models import Instrument, PortfolioRow
from api.problems import ApiProblem, json_body
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import (CONTROL_CHARS, CONTROL_REASON, DEFAULT_REGION, REGION_PATTERN, AccountLevel, AccountsOut, Page,
                         PortfolioDetail, PortfolioJSON, PortfolioOut)
from api.security import ANALYSTS, Principal, require_roles
from api.services import (
    audit,
    clean,
    count,
    frame_from_geojson,
    frame_from_records,
    frame_from_upload,
    get_owned,
    page,
    purge_retained_data,
    records,
    retain_portfolio_data,
    store_portfolio,
    validate,
)

NAME_MAX = 200  # a portfolio's name: PortfolioJSON's max_length, the multipart form's too
router = APIRouter(prefix="/v1/portfolios", tags=["portfolios"], responses=AUTH_PROBLEMS)
REGION_RE = re.compile(REGION_PATTERN)  # the multipart form's region: PortfolioJSON's rule
analyst = require_roles(*ANALYSTS)

_UPLOAD_SCHEMA = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "CSV, Parquet, xlsx, GeoJSON (.geojson/.json) or JSON records (.json)"},
                "name": {"type": "string", "maxLength": NAME_MAX},
                "region": {"type": "string", "pattern": REGION_PATTERN, "default": DEFAULT_REGION}}}},
        "application/json": {"schema": PortfolioJSON.model_json_schema()},
    },
}


def portfolio_out(row: PortfolioRow) -> dict[str, Any]:
    return {k: getattr(row, k) for k in ("id", "name", "source", "region", "parameter_sha256", "n_parcels", "area_ha",
                                         "data_sha256", "summary", "created_by", "created_at")}


def _check_region(state, region: str) -> None:
    """The model (region) to validate against must be one this server ships: else 422 naming ``region``."""
    known = state.models.ids()
    if region not in known:
        raise ApiProblem(422, f"unknown region {region!r}; this server has models for: {', '.join(known)}",
                         kind="validation-error", title="Invalid request",
                         errors=[{"field": "body/region", "value": region[:60],
                                  "reason": f"not a model of this server (known: {', '.join(known)}; GET /v1/models)"}])


def _check_json_parcels(limit: int, doc: Any) -> None:
    """A JSON upload's ``parcels`` (or GeoJSON features) beyond ``CRE_MAX_PARCELS``: 422 before they are
    validated or copied."""
    if not isinstance(doc, dict):
        return
    for field, rows in (("body/parcels", doc.get("parcels")),
                        ("body/geojson/features", (doc.get("geojson") or {}).get("features")
                         if isinstance(doc.get("geojson"), dict) else None)):
        if isinstance(rows, list) and len(rows) > limit:
            reason = f"{len(rows):,} parcels: at most {limit:,} are accepted (CRE_MAX_PARCELS)"
            raise ApiProblem(422, reason, kind="invalid-portfolio", title="Invalid portfolio",
                             errors=[{"field": field, "reason": reason}], limit=limit, rows=len(rows))


async def _parse_upload(request: Request) -> tuple[str, str, str, Any]:
    """(name, region, source, raw) where raw is ('file', filename, bytes) or ('json', PortfolioJSON)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception as exc:  # malformed multipart is bad input, never a 500
            raise ApiProblem(400, f"malformed multipart body: {exc}", kind="bad-request") from exc
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiProblem(422, "multipart field 'file' (the portfolio file) is missing", kind="validation-error",
                             errors=[{"field": "body/file", "reason": "missing"}])
        # a misspelt field (regoin=...) must not upload under another region than the one meant
        errs = [{"field": f"body/{k}", "reason": "not a field of a portfolio upload (known: file, name, region)"}
                for k in sorted(set(form.keys()) - {"file", "name", "region"})]
        raw_name = form.get("name")
        if raw_name is not None and not isinstance(raw_name, str):
            errs.append({"field": "body/name", "reason": "must be text, not a file"})
        elif raw_name and CONTROL_CHARS.search(raw_name):
            errs.append({"field": "body/name", "reason": CONTROL_REASON})
        elif raw_name and len(raw_name) > NAME_MAX:  # as the JSON upload answers it (never cut silently)
            errs.append({"field": "body/name", "value": raw_name[:60] + "...",
                         "reason": f"String should have at most {NAME_MAX} characters"})
        if upload.filename and CONTROL_CHARS.search(upload.filename):
            errs.append({"field": "body/file", "reason": "the file name " + CONTROL_REASON})
        region = form.get("region") or DEFAULT_REGION
        # fullmatch: the pattern's $ is the end of the text, as pydantic has it (re.match's $ admits a final newline)
        if not isinstance(region, str) or not REGION_RE.fullmatch(region):
            errs.append({"field": "body/region", "value": str(region)[:60],
                         "reason": f"must match {REGION_PATTERN} (a model id, GET /v1/models)"})
        if errs:
            raise ApiProblem(422, f"{len(errs)} invalid field(s) in the request", kind="validation-error",
                             title="Invalid request", errors=errs)
        _check_region(request.app.state, region)
        data = await upload.read()
        # (without a name, the file's name names it, cut to fit: it is not a name the caller chose)
        name = raw_name or str(upload.filename or "portfolio")[:NAME_MAX]
        return name, region, upload.filename or "upload", ("file", upload.filename or "upload.csv", data)
    if ctype in ("application/json", "application/geo+json") or ctype.endswith("+json"):
        doc = json_body(await request.body())
        _check_json_parcels(request.app.state.settings.max_parcels, doc)
        try:
            req = PortfolioJSON.model_validate(doc)
        except Exception as exc:
            errs = [{"field": "/".join(["body", *(str(x) for x in e["loc"])]),
                     "reason": e["msg"].replace("Value error, ", "")} for e in exc.errors()] \
                if hasattr(exc, "errors") else [{"field": "body", "reason": str(exc)}]
            raise ApiProblem(422, f"{len(errs)} invalid field(s) in the request", kind="validation-error",
                             title="Invalid request", errors=errs) from exc
        _check_region(request.app.state, req.region)
        return req.name, req.region, "json", ("json", req)
    raise ApiProblem(415, "send the portfolio as multipart/form-data (field 'file') or application/json",
                     kind="unsupported-media-type")


@router.post("", status_code=201, response_model=PortfolioOut, summary="Upload a portfolio",
             openapi_extra={"requestBody": _UPLOAD_SCHEMA},
             responses={201: {"headers": {"Location": {"schema": {"type": "string"}}}}})
async def create_portfolio(request: Request, who: Principal = Depends(analyst)):
    """Upload parcels as a file (multipart field ``file``: CSV, Parquet, xlsx, GeoJSON or JSON records)
    or as JSON (``{"name", "parcels": [...]}`` or ``{"name", "geojson": {...}}``). Every bad row is
    listed in the 422 problem's ``errors`` as ``{row, column, value, reason}``."""
    name, region, source, raw = await _parse_upload(request)
    state = request.app.state

    limits = {"max_rows": state.settings.max_parcels, "max_decoded_bytes": state.settings.max_upload_decoded_bytes}

    def work():
        params = state.models.get(region)
        if raw[0] == "file":
            df = frame_from_upload(raw[1], raw[2], **limits)
            src = raw[1]
        elif raw[1].parcels is not None:
            df, src = frame_from_records(raw[1].parcels), "json"
        else:
            df, src = frame_from_geojson(raw[1].geojson, **limits, field="body/geojson"), "geojson"
        pf = validate(df, params, source=str(src)[:300])
        with state.db.session() as s:
            row = store_portfolio(s, who, name, pf, params)
            audit(s, who, "portfolio.create", "portfolio", row.id, name=name, parcels=row.n_parcels,
                  data_sha256=row.data_sha256, parameter_sha256=row.parameter_sha256)
            return portfolio_out(row)

    out = await run_in_threadpool(work)
    return JSONResponse(json.loads(PortfolioOut.model_validate(out).model_dump_json()), status_code=201,
                        headers={"Location": f"/v1/portfolios/{out['id']}"})


@router.get("", response_model=Page[PortfolioOut], summary="List your portfolios (newest first)")
def list_portfolios(paging: Paging = Depends(), who: Principal = Depends(analyst), s: Session = DB_SESSION):
    q = select(PortfolioRow).where(PortfolioRow.tenant_id == who.tenant_id)
    total = count(s, q)
    rows = s.scalars(q.order_by(PortfolioRow.created_at.desc(), PortfolioRow.id)
                     .limit(paging.limit).offset(paging.offset)).all()
    return page([portfolio_out(r) for r in rows], total, paging.limit, paging.offset)


@router.get("/{portfolio_id}", response_model=PortfolioDetail, summary="A portfolio: summary and parcels (paged)")
def get_portfolio(portfolio_id: str, request: Request, paging: Paging = Depends(), who: Principal = Depends(analyst),
                  s: Session = DB_SESSION):
    row = get_owned(s, PortfolioRow, portfolio_id, who, "portfolio")
    df = pd.read_parquet(io.BytesIO(row.data_parquet))
    sub = df.iloc[paging.offset:paging.offset + paging.limit]
    return {**portfolio_out(row), "parcels": page(records(sub), len(df), paging.limit, paging.offset)}


@router.delete("/{portfolio_id}", status_code=204,
               summary="Delete a portfolio (its results are kept; 409 while loans or policies are registered "
                       "against it, unless cascade=true)")
def delete_portfolio(portfolio_id: str, request: Request,
                     cascade: bool = Query(False, description="also delete the loans and policies registered "
                                                              "against it (each gets an audit record)"),
                     who: Principal = Depends(analyst), s: Session = DB_SESSION):
    """Deletes the portfolio; stored results (simulations, valuations, quotes, stress tests) are kept, and so
    is what they still need: the portfolio's data is kept apart (never listed, never usable for new work) while
    a collateral valuation of it has a memo not rendered yet that a request can still render, so that memo can
    be, for at most ``CRE_RETAINED_DATA_DAYS`` days (default 30; 0 keeps nothing); it is dropped once those memos
    are stored (or can no longer be rendered), and purged when it expires. The answer stays 204 with no body:
    the ``portfolio.delete`` audit record says what was kept, ``data_kept_for`` (those valuations) and
    ``data_kept_until`` (null: nothing was kept), and a ``portfolio.data_dropped`` record says when it went.
    While loans or policies are registered against it the answer is 409 ``portfolio-has-instruments``
    listing them: delete them first (each deletion is audited), or give ``cascade=true`` to delete
    them with it, each with its own audit record."""
    settings = request.app.state.settings
    with request.app.state.db.session() as purging:  # expired data of deleted portfolios (committed whatever follows)
        purge_retained_data(purging)  # (audited in each tenant as the server's, key "-")
    row = get_owned(s, PortfolioRow, portfolio_id, who, "portfolio")
    # the portfolio row locked first (PostgreSQL; SQLite serialises writers): a loan being registered against it
    # meanwhile waits for this delete, then finds no portfolio (404), and is never removed unaudited
    s.execute(select(PortfolioRow.id).where(PortfolioRow.id == row.id).with_for_update())
    insts = s.scalars(select(Instrument).where(Instrument.tenant_id == who.tenant_id,
                                               Instrument.portfolio_id == row.id)
                      .order_by(Instrument.created_at, Instrument.id)).all()
    if insts and not cascade:
        kinds = {k: sum(1 for i in insts if i.kind == k) for k in ("loan", "policy")}
        raise ApiProblem(409, f"portfolio {row.id} has {kinds['loan']} loan(s) and {kinds['policy']} polic(ies) "
                              "registered against it: delete them first, or DELETE with ?cascade=true",
                         kind="portfolio-has-instruments", instruments=[
                             {"id": i.id, "kind": i.kind, "path": f"/v1/{'loans' if i.kind == 'loan' else 'policies'}"
                                                                  f"/{i.id}"} for i in insts[:100]],
                         instrument_count=len(insts))
    # the instruments as they are now, in one DELETE ... RETURNING: one registered since the read above is among
    # them (refused without cascade, audited with it), one deleted since by its own DELETE (audited there) is not
    gone = s.execute(delete(Instrument).where(Instrument.tenant_id == who.tenant_id, Instrument.portfolio_id == row.id)
                     .returning(Instrument.id, Instrument.kind, Instrument.name, Instrument.terms)
                     .execution_options(synchronize_session=False)).all()
    if gone and not cascade:  # registered between the read and the delete: as if it had been there (rolled back)
        raise ApiProblem(409, f"portfolio {row.id} has {len(gone)} instrument(s) registered against it: delete them "
                              "first, or DELETE with ?cascade=true", kind="portfolio-has-instruments",
                         instruments=[{"id": g.id, "kind": g.kind,
                                       "path": f"/v1/{'loans' if g.kind == 'loan' else 'policies'}/{g.id}"}
                                      for g in sorted(gone, key=lambda g: g.id)[:100]],
                         instrument_count=len(gone))
    for inst in sorted(gone, key=lambda g: g.id):
        audit(s, who, f"{inst.kind}.delete", inst.kind, inst.id, portfolio_id=row.id, cascade_from=row.id,
              name=inst.name, terms=inst.terms)
    # the results are kept, and so is what they still need of the portfolio: the data of a valuation whose memo
    # is not rendered yet and can be (its memo re-runs the valuation), kept apart until the memos are stored or
    # the data expires
    kept_for, kept_until = retain_portfolio_data(s, row, sync_max=settings.sync_max_cells,
                                                 days=settings.retained_data_days)
    # conditional: of concurrent deletes of one portfolio, one is 204 with its audit records, the others 404
    if s.execute(delete(PortfolioRow).where(PortfolioRow.id == row.id, PortfolioRow.tenant_id == who.tenant_id)
                 .execution_options(synchronize_session=False)).rowcount != 1:
        raise ApiProblem(404, f"no portfolio {portfolio_id!r}", kind="not-found")
    audit(s, who, "portfolio.delete", "portfolio", portfolio_id, cascade=bool(gone),
          deleted_instruments=sorted(g.id for g in gone), data_kept_for=kept_for[:100],
          data_kept_until=kept_until.isoformat() if kept_until else None)
    return Response(status_code=204)


# ---- five-level carbon accounts -----------------------------------------------------------------
class AccountsCache:
    """Computed accounts of a stored portfolio, by (tenant, portfolio id, data, model, sink paths, seed);
    small in-process LRU. The accounts' provenance names the portfolio's source (the uploader's file
    name), so an entry serves only the portfolio it was computed for: never another tenant's copy of
    the same data."""

    def __init__(self, size: int = 16):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()

    @staticmethod
    def key(row: PortfolioRow, parameter_sha256: str, paths: int, seed: int) -> tuple:
        return (row.tenant_id, row.id, row.data_sha256, row.source, parameter_sha256, int(paths), int(seed))

    def get(self, key, compute):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = compute()
        with self._lock:
            self._d[key] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


def accounts_response(state, who: Principal, row: PortfolioRow, level: str | None, paths: int, seed: int,
                      paging: Paging, paths_field: str = "query/paths") -> dict[str, Any]:
    """Accounts of a stored portfolio (shared by the portfolio and simulation endpoints).

    Accounts are computed in the request: ``parcels x paths`` above ``sync_max_cells`` answer 422
    ``sync-limit-exceeded`` with the largest ``paths`` that fits; ``POST /v1/accounts`` runs them as a job."""
    from finance_engine.accounts import carbon_accounts

    cells = row.n_parcels * paths
    limit = state.settings.role_max_cells.get(who.role, 0)
    if cells > limit:
        raise ApiProblem(422, f"{row.n_parcels} parcels x {paths} paths exceeds the {who.role} limit of {limit}",
                         kind="limit-exceeded", limit=limit, cells=cells)
    sync = state.settings.sync_max_cells
    if cells > sync:
        fit = sync // max(row.n_parcels, 1)
        raise ApiProblem(
            422, f"{row.n_parcels} parcels x {paths} paths = {cells} exceeds the {sync} cells answered in a request "
                 f"(CRE_SYNC_MAX_CELLS): ask for at most {fit} paths here, or run them as a job (POST /v1/accounts)"
                 + ("" if fit >= 1 else " (none fit: the portfolio alone is too large)"),
            kind="sync-limit-exceeded", limit=sync, cells=cells, max_paths=fit,
            errors=[{"field": paths_field, "value": paths,
                     "reason": f"at most {fit} paths for this portfolio ({row.n_parcels} parcels)"}])
    params = state.models.get(row.region)
    pf = state.portfolios.get(row, params)
    acc = state.accounts_cache.get(AccountsCache.key(row, params.sha256, paths, seed),
                                   lambda: carbon_accounts(pf, params, sink_paths=paths, seed=seed))
    d = acc.to_dict(level)  # (the cache is per tenant and portfolio: its provenance names this portfolio)
    return accounts_page(row.id, level, paths, seed, clean(d["provenance"]), d["units"], d["rows"], paging)


def accounts_page(portfolio_id: str, level: str | None, paths: int, seed: int, provenance: dict, units: dict,
                  rows: list[dict], paging: Paging) -> dict[str, Any]:
    """An ``AccountsOut`` answer: the accounts' provenance and units and one page of their rows (already of
    ``level``, when one was asked for)."""
    return {"portfolio_id": portfolio_id, "level": level, "sink_paths": paths, "seed": seed,
            "provenance": provenance, "units": units,
            "rows": page(clean(rows[paging.offset:paging.offset + paging.limit]), len(rows), paging.limit,
                         paging.offset)}


@router.get("/{portfolio_id}/accounts", response_model=AccountsOut,
            summary="Five-level carbon accounts (stock today, expected annual sink)")
def portfolio_accounts(portfolio_id: str, request: Request,
                       level: AccountLevel | None = Query(None, description="one level (default: all)"),
                       paths: int | None = Query(None, ge=1, le=100_000,
                                                 description="Monte Carlo paths of the sink estimate"),
                       seed: int = Query(20260101, ge=0, le=2**63 - 1),
                       paging: Paging = Depends(), who: Principal = Depends(analyst),
                       s: Session = DB_SESSION):
    row = get_owned(s, PortfolioRow, portfolio_id, who, "portfolio")
    state = request.app.state
    return accounts_response(state, who, row, level, paths or state.settings.accounts_default_paths, seed, paging)
