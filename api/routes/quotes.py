"""Insurance quotes on the engine (``finance_engine.insurance.quote``) with their HTML quote slip, and
layer pricing on an uploaded event loss table (``finance_engine.insurance.price_layer``).
Roles: insurer and bureau (the roles that register policies)."""

from __future__ import annotations

import hashlib

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.compute import task_quote_slip
from api.finance import INPUT_ERRORS, check_quote_inputs, layer_pricing_fields, prepare_quote, problem_from, \
    put_artifact, result_out, store_result
from api.finance_schemas import FinanceResultOut, LayerPricingJSON, QuoteRequest
from api.problems import ApiProblem, json_body
from api.requestctx import current_request_id
from api.routes._finance import CREATED, HTML, artifact, create_result, download, get_result, list_results
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging, encode
from api.schemas import ID_PATTERN, Page
from api.security import Principal, require_roles
from api.services import LossTableError, audit, check_loss_table_rows, task_price_layer

router = APIRouter(tags=["insurance"], responses=AUTH_PROBLEMS)
underwriter = require_roles("insurer", "bureau")


@router.post("/v1/quotes", status_code=201, response_model=FinanceResultOut, summary="Quote a policy",
             responses=CREATED)
async def create_quote(body: QuoteRequest, request: Request, who: Principal = Depends(underwriter)):
    """Prices a stock-loss, sink-index or price-floor cover on a stored portfolio: pure premium with
    its Monte Carlo error, risk load, expenses, gross premium and rates, subsidy split and rate band,
    AAL, OEP/AEP, PML, reinsurance layers and capital (``finance_engine.insurance.quote``).

    Give a registered ``policy_id`` (a stock-loss cover on its perils, deductible and limit) or a
    ``portfolio_id`` with a ``cover``. Small requests (parcels x paths x years up to
    ``CRE_SYNC_MAX_CELLS``) answer at once (201), larger ones become a job (202)."""

    models = request.app.state.models

    def prepare(s):
        out = prepare_quote(s, who, body)
        check_quote_inputs(out[2], models.get(out[0].region))
        return out

    return await create_result(request, who, "quote", prepare, body.mode, what="parcels x paths x years")


@router.get("/v1/quotes", response_model=Page[FinanceResultOut], summary="Your quotes (newest first)")
def list_quotes(portfolio_id: str | None = Query(None, max_length=40, pattern=ID_PATTERN),
                paging: Paging = Depends(),
                who: Principal = Depends(underwriter), s: Session = DB_SESSION):
    return list_results(s, who, "quote", portfolio_id, paging)


@router.get("/v1/quotes/{quote_id}", response_model=FinanceResultOut, summary="A quote with its audit")
def get_quote(quote_id: str, who: Principal = Depends(underwriter), s: Session = DB_SESSION):
    return result_out(get_result(s, who, "quote", quote_id))


@router.get("/v1/quotes/{quote_id}/slip", response_class=HTMLResponse, responses=HTML,
            summary="The HTML quote slip (a download)")
async def quote_slip(quote_id: str, request: Request, who: Principal = Depends(underwriter)):
    """The self-contained quote slip (exceedance curves, premium build-up, subsidy, PML, layers),
    rendered from the stored quote and kept for later."""
    state = request.app.state

    def load():
        with state.db.session() as s:
            row = get_result(s, who, "quote", quote_id)
            a = artifact(s, row.id, "slip.html")
            return row, (a.content if a is not None else None)

    row, content = await run_in_threadpool(load)
    if content is None:
        content = (await state.compute.run(task_quote_slip, row.result, row.request.get("name") or None)).encode()

        def save():
            with state.db.session() as s:
                put_artifact(s, row.id, "slip.html", "text/html; charset=utf-8", content)

        await run_in_threadpool(save)
    return download(content, "text/html; charset=utf-8", f"quote-slip-{row.id}.html")


# ---- layer pricing on an uploaded loss table ----------------------------------------------------------
_LAYER_FIELDS = {"n_years": int, "attachment": float, "limit": float, "basis": str, "reinstatements": int,
                 "reinstatement_pct": float, "share": float, "name": str}
_LAYER_SCHEMA = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file", "n_years", "attachment"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "event loss table: CSV, Parquet or JSON with columns year, event_id, loss "
                                        "(or the engine's own table: path, sim_year, event_id, loss_tco2e)"},
                "n_years": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                "attachment": {"type": "number", "minimum": 0},
                "limit": {"type": "number", "exclusiveMinimum": 0, "description": "omit for unlimited"},
                "basis": {"type": "string", "enum": ["occurrence", "aggregate"]},
                "reinstatements": {"type": "integer", "minimum": 0}, "reinstatement_pct": {"type": "number"},
                "share": {"type": "number"}, "name": {"type": "string"}}}},
        "application/json": {"schema": LayerPricingJSON.model_json_schema()},
    },
}


def _invalid(errs: list[dict]) -> ApiProblem:
    return ApiProblem(422, f"{len(errs)} invalid field(s) in the request", kind="validation-error",
                      title="Invalid request", errors=errs)


async def _parse_layer_request(request: Request) -> tuple[LayerPricingJSON, str, bytes, bool]:
    """(terms without the rows, the table's file name or ``"inline"``, the file's bytes or the JSON body's,
    whether the rows are inline)."""
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=20)
        except Exception as exc:  # malformed multipart is bad input, never a 500
            raise ApiProblem(400, f"malformed multipart body: {exc}", kind="bad-request") from exc
        upload = form.get("file")
        unknown = sorted(set(form.keys()) - set(_LAYER_FIELDS) - {"file"})
        errs = [{"field": f"body/{k}", "reason": "not a field of a layer-pricing request (known: file, "
                                                 f"{', '.join(_LAYER_FIELDS)})"} for k in unknown]
        if not isinstance(upload, UploadFile):
            errs.insert(0, {"field": "body/file", "reason": "missing (the event loss table)"})
        # an empty field is not an absent one: an empty limit= would price an unlimited layer
        errs += [{"field": f"body/{k}", "reason": "empty: give a value or leave the field out"}
                 for k in _LAYER_FIELDS if isinstance(form.get(k), str) and form.get(k).strip() == ""]
        if errs:  # a misspelt field (limt=...) must not price another layer than the one meant
            raise _invalid(errs)
        fields = {k: form.get(k) for k in _LAYER_FIELDS if isinstance(form.get(k), str) and form.get(k) != ""}
        try:
            terms = LayerPricingJSON.model_validate({"rows": [], **fields})
        except ValidationError as exc:
            raise _invalid([{"field": "body/" + "/".join(str(x) for x in e["loc"]), "reason": e["msg"]}
                            for e in exc.errors()]) from exc
        return terms, upload.filename or "elt.csv", await upload.read(), False
    if ctype == "application/json" or ctype.endswith("+json"):
        raw = await request.body()
        doc = await run_in_threadpool(json_body, raw)  # tens of MB of JSON: parsed off the event loop
        rows = doc.get("rows") if isinstance(doc, dict) else None
        if isinstance(rows, list):  # counted before anything is copied: the terms are checked without them
            limit = request.app.state.settings.layer_max_json_rows
            if len(rows) > limit:
                reason = (f"{len(rows):,} rows: at most {limit:,} rows are accepted inline "
                          "(CRE_LAYER_MAX_JSON_ROWS; upload a CSV or Parquet file for more)")
                raise ApiProblem(422, reason, kind="invalid-loss-table",
                                 errors=[{"field": "body/rows", "reason": reason}], limit=limit, rows=len(rows))
            bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
            if bad is not None:
                raise _invalid([{"field": f"body/rows/{bad}", "reason": "Input should be a valid dictionary"}])
            doc = {**doc, "rows": []}
        try:
            terms = LayerPricingJSON.model_validate(doc)
        except ValidationError as exc:
            raise _invalid([{"field": "body/" + "/".join(str(x) for x in e["loc"]), "reason": e["msg"]}
                            for e in exc.errors()]) from exc
        # the body itself goes to the compute worker, which reads its rows (no copy of them is kept here)
        return terms, "inline", raw, True
    raise ApiProblem(415, "send the loss table as multipart/form-data (field 'file') or application/json ('rows')",
                     kind="unsupported-media-type")


@router.post("/v1/layer-pricing", status_code=201, response_model=FinanceResultOut,
             summary="Price an excess-of-loss layer on your own event loss table",
             openapi_extra={"requestBody": _LAYER_SCHEMA},
             responses={201: {"headers": {"Location": {"schema": {"type": "string"}}}}})
async def create_layer_price(request: Request, who: Principal = Depends(underwriter)):
    """Upload an event loss table (multipart ``file``: CSV, Parquet or JSON with columns ``year``
    (0..n_years-1), ``event_id``, ``loss``; or JSON ``rows``) with ``n_years``, ``attachment``,
    ``limit`` (omit: unlimited) and ``basis`` (occurrence or aggregate). Returns the pure premium, its
    standard error, the standard deviation, the probabilities of attachment and exhaustion
    (``finance_engine.insurance.price_layer``). A bad table answers 422 naming the problem and its first
    bad row. The engine's own table (columns ``path``, ``year``, ``sim_year``, ``mc_block``, ``event_id``,
    ``loss_tco2e``, as ``carbon-risk simulate --loss-table`` writes it) is priced on its simulated year
    ``sim_year`` (``n_years`` = paths x years) and ``loss_tco2e``, its errors counting blocks of correlated
    years (``years_per_block``); the result's ``columns`` says which were used. A year
    column that cannot index ``n_years`` simulated years (a year shared by two paths, or event years all
    far below ``n_years``) answers 422 naming the column and why. At most ``CRE_LAYER_MAX_ROWS`` rows of a CSV or Parquet file (counted before it is read) and
    ``CRE_LAYER_MAX_JSON_ROWS`` rows of JSON (inline or a ``.json`` file)."""
    terms, filename, data, inline = await _parse_layer_request(request)
    state = request.app.state
    settings = state.settings
    rid = current_request_id()
    field = "body/rows" if inline else "body/file"
    if not inline:
        await run_in_threadpool(check_loss_table_rows, filename, data, max_rows=settings.layer_max_rows,
                                max_decoded_bytes=settings.max_upload_decoded_bytes)
    # the bytes as sent (the file, or the JSON body with the rows inline): nothing is serialised again
    table_sha = hashlib.sha256(data).hexdigest()
    req = {**terms.model_dump(mode="json", exclude={"rows"}), "table_sha256": table_sha, "table_source": filename}
    try:
        out = await state.compute.run(task_price_layer, "inline.json" if inline else filename, data, req,
                                      settings.layer_max_json_rows)
    except INPUT_ERRORS as exc:
        p = problem_from(exc, "invalid-loss-table", layer_pricing_fields(field))
        if isinstance(exc, LossTableError):
            if exc.row is not None and p.errors:  # the first bad row, as a portfolio's errors name theirs
                p.errors[0].update(row=exc.row, column=exc.column, value=exc.value)
            if exc.limit is not None:
                p.extra["limit"] = exc.limit
        raise p from exc

    def save():
        with state.db.session() as s:
            row = store_result(s, kind="layer", tenant_id=who.tenant_id, key_id=who.key_id, pf=None,
                               instrument_id=None, req=req, result=out, job_id=None, request_id=rid)
            audit(s, who, "layer.create", "layer", row.id, request_sha256=row.request_sha256, table_sha256=table_sha)
            return result_out(row)

    body = await run_in_threadpool(save)
    return JSONResponse(encode(FinanceResultOut, body), status_code=201,
                        headers={"Location": f"/v1/layer-pricing/{body['id']}"})


@router.get("/v1/layer-pricing", response_model=Page[FinanceResultOut], summary="Your layer prices (newest first)")
def list_layer_prices(paging: Paging = Depends(), who: Principal = Depends(underwriter),
                      s: Session = DB_SESSION):
    return list_results(s, who, "layer", None, paging)


@router.get("/v1/layer-pricing/{layer_id}", response_model=FinanceResultOut, summary="A layer price with its audit")
def get_layer_price(layer_id: str, who: Principal = Depends(underwriter), s: Session = DB_SESSION):
    return result_out(get_result(s, who, "layer", layer_id))


__all__ = ["router"]
