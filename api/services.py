"""The thin layer between the routes and finance_engine: models, stored portfolios, runs, audit.

Nothing here does science or money: it validates with :mod:`models.portfolio`, runs
:func:`finance_engine.simulation.simulate` and :func:`finance_engine.accounts.carbon_accounts`, and
stores what they return with its provenance.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.db.models import AuditRecord, PortfolioRow, SimulationRun, utcnow
from api.jsonable import clean
from api.problems import ApiProblem, FieldMap, json_safe
from api.schemas import ID_PATTERN
from api.requestctx import current_request_id
from api.security import Principal

UPLOAD_SUFFIXES = (".csv", ".txt", ".parquet", ".pq", ".xlsx", ".xlsm", ".geojson", ".json")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return clean(df.to_dict(orient="records"))


def page(items: list, total: int, limit: int, offset: int, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    nxt = offset + limit if offset + limit < total else None
    out = {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt}
    if provenance is not None:
        out["provenance"] = provenance
    return out


# ---- models ----------------------------------------------------------------------------------
class ModelRegistry:
    """Shipped parameter sets, loaded once per process (ids are region names, never paths)."""

    def __init__(self):
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def ids() -> list[str]:
        from models.parameters import available_regions

        return available_regions()

    def get(self, region: str):
        from models.parameters import ParameterError, load_parameters

        if region not in self.ids():
            raise ApiProblem(404, f"no model {region!r}; available: {', '.join(self.ids())}", kind="not-found")
        with self._lock:
            if region not in self._cache:
                try:
                    self._cache[region] = load_parameters(region)
                except ParameterError as exc:  # a broken shipped file is our fault, not the caller's
                    raise RuntimeError(str(exc)) from exc
            return self._cache[region]

    @staticmethod
    def yaml_text(region: str) -> str:
        from models.parameters import resolve_parameter_path

        return resolve_parameter_path(region).read_text(encoding="utf-8")


# ---- portfolios ------------------------------------------------------------------------------
def _problems_to_errors(problems) -> list[dict[str, Any]]:
    return [{"row": p.row, "column": p.column, "value": json_safe(p.value), "reason": p.reason} for p in problems]


def portfolio_error(exc) -> ApiProblem:
    errs = _problems_to_errors(exc.problems)
    return ApiProblem(422, f"{len(errs)} problem(s) in the portfolio", kind="invalid-portfolio",
                      title="Invalid portfolio", errors=errs)


def frame_from_upload(filename: str, data: bytes) -> pd.DataFrame:
    """A raw table from uploaded bytes, read by :func:`models.portfolio.read_table` (by extension)."""
    from models.portfolio import PortfolioError, read_table

    name = Path(filename or "upload.csv").name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ApiProblem(415, f"unsupported file type {suffix or '(none)'!r}; use .csv, .parquet, .xlsx, .geojson "
                              "or .json", kind="unsupported-media-type")
    if suffix == ".json":
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiProblem(422, f"not valid JSON: {exc}", kind="invalid-portfolio") from exc
        if isinstance(doc, list):
            return frame_from_records(doc)
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"upload{suffix}"
        p.write_bytes(data)
        try:
            return read_table(p)
        except PortfolioError as exc:
            for pr in exc.problems:  # do not leak the temporary path
                object.__setattr__(pr, "file", name)
            raise portfolio_error(exc) from exc


def frame_from_records(rows: list) -> pd.DataFrame:
    if not all(isinstance(r, dict) for r in rows):
        raise ApiProblem(422, "parcels must be a list of objects (one per parcel)", kind="invalid-portfolio")
    df = pd.DataFrame.from_records(rows)
    # nested values (lists, objects) are not cells: show them as text so the validator reports them
    for c in df.columns:
        if df[c].map(lambda v: isinstance(v, (list, dict))).any():
            df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return df


def frame_from_geojson(doc: dict) -> pd.DataFrame:
    return frame_from_upload("upload.geojson", json.dumps(doc).encode())


def validate(df: pd.DataFrame, params, source: str):
    from models.portfolio import PortfolioError, validate_frame

    try:
        return validate_frame(df, params, source=source)
    except PortfolioError as exc:
        raise portfolio_error(exc) from exc


def portfolio_summary(pf) -> dict[str, Any]:
    f = pf.frame
    by_county = f.groupby("county", sort=True)["area_ha"].agg(["size", "sum"])
    by_species = f.groupby("species_group", sort=True)["area_ha"].agg(["size", "sum"])
    return clean({
        "parcels": pf.n_parcels, "area_ha": float(f["area_ha"].sum()),
        "counties": {k: {"parcels": int(r["size"]), "area_ha": float(r["sum"])} for k, r in by_county.iterrows()},
        "species_groups": {k: {"parcels": int(r["size"]), "area_ha": float(r["sum"])}
                           for k, r in by_species.iterrows()},
        "mean_age_years": float(f["age_years"].mean()),
    })


def store_portfolio(s: Session, who: Principal, name: str, pf, params) -> PortfolioRow:
    buf = io.BytesIO()
    pf.frame.to_parquet(buf, index=False)
    data = buf.getvalue()
    row = PortfolioRow(id=new_id("pf"), tenant_id=who.tenant_id, name=name, source=str(pf.source)[:300],
                       region=params.region, parameter_sha256=params.sha256, n_parcels=pf.n_parcels,
                       area_ha=float(pf.area_ha.sum()), data_sha256=hashlib.sha256(data).hexdigest(),
                       data_parquet=data, summary=portfolio_summary(pf), created_by=who.key_id, created_at=utcnow())
    s.add(row)
    s.flush()
    return row


def own_provenance(result: dict[str, Any], row: PortfolioRow) -> dict[str, Any]:
    """``result`` (a copy) whose provenance names the caller's portfolio (its source, the uploaded file's
    name): a result served from the cross-tenant result cache (keyed by the data, not the name) was computed
    for whoever asked first."""
    prov = result.get("provenance")
    if not isinstance(prov, dict) or "portfolio" not in prov:
        return result
    pf = prov["portfolio"]
    if isinstance(pf, dict):
        pf = {**pf, "source": row.source}
    else:
        pf = row.source
    return {**result, "provenance": {**prov, "portfolio": pf}}


class PortfolioCache:
    """Validated :class:`Portfolio` objects of stored rows, by (id, data hash); small LRU."""

    def __init__(self, size: int = 8):
        self.size = size
        self._d: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row: PortfolioRow, params):
        key = (row.id, row.data_sha256, params.sha256)
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        from models.portfolio import validate_frame

        df = pd.read_parquet(io.BytesIO(row.data_parquet))
        pf = validate_frame(df, params, source=row.source)
        with self._lock:
            self._d[key] = pf
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return pf


_ID_RE = re.compile(ID_PATTERN)


def plausible_id(id_: str) -> bool:
    """Whether ``id_`` could name a stored row (ids are 1-40 of ``A-Za-z0-9_-``); others are never
    looked up (a NUL or a 400-character id is simply not found, on every database)."""
    return isinstance(id_, str) and _ID_RE.match(id_) is not None


def get_owned(s: Session, model, id_: str, who: Principal, what: str):
    """A tenant's row by id; 404 (never 403) when it belongs to someone else, so ids leak nothing."""
    if not plausible_id(id_):
        raise ApiProblem(404, f"no {what} {id_[:60]!r}", kind="not-found")
    row = s.get(model, id_)
    if row is None or row.tenant_id != who.tenant_id:
        raise ApiProblem(404, f"no {what} {id_!r}", kind="not-found")
    return row


def count(s: Session, q) -> int:
    return int(s.scalar(select(func.count()).select_from(q.order_by(None).subquery())))


# ---- audit -----------------------------------------------------------------------------------
def audit(s: Session, who: Principal, action: str, resource_type: str, resource_id: str, /, **detail: Any) -> None:
    audit_record(s, who.tenant_id, who.key_id, action, resource_type, resource_id, **detail)


def audit_record(s: Session, tenant_id: str, key_id: str, action: str, resource_type: str, resource_id: str, /,
                 **detail: Any) -> None:
    """An audit record in the session's transaction (a job records its result as the key that submitted it,
    with the request id of the submitting request, which the job's thread carries)."""
    s.add(AuditRecord(tenant_id=tenant_id, key_id=key_id, action=action, resource_type=resource_type,
                      resource_id=resource_id, detail=clean(detail), request_id=current_request_id() or "-",
                      at=utcnow()))


# ---- jobs ------------------------------------------------------------------------------------
def internal_job_problem(job_id: str, kind: str = "internal-error", what: str = "the job failed") -> dict[str, Any]:
    """A failed job's ``error`` for a failure of the server (not of the request): no exception text (it may
    quote SQL and the stored values, as a 500's body never does), only where to look in the server's log."""
    detail = f"{what} on the server (job {job_id}); the server's log has the details"
    if kind == "storage-error":
        detail += "; submit the request again"
    return job_problem(kind, detail, 500, "Result not saved" if kind == "storage-error" else None)


def job_problem(kind: str, detail: str, status: int, title: str | None = None,
                errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A failed job's ``error``: an RFC 9457 problem detail (as the synchronous answer would have been)."""
    from http import HTTPStatus

    from api.problems import TYPE_BASE

    out: dict[str, Any] = {"type": TYPE_BASE + kind, "title": title or HTTPStatus(status).phrase, "status": status,
                           "detail": str(detail)[:2000]}
    if errors:
        out["errors"] = json_safe(errors)
    rid = current_request_id()
    if rid:
        out["request_id"] = rid
    return out


# ---- simulations -----------------------------------------------------------------------------
def cells(n_parcels: int, paths: int, years: int) -> int:
    return int(n_parcels) * int(paths) * int(years)


SIMULATION_FIELDS = FieldMap(
    {n: f"body/{n}" for n in ("portfolio_id", "years", "paths", "seed", "levels", "carbon_method", "scenario",
                              "climate_pathway", "perils", "loss_table_level")},
    patterns=((r"climate pathway", "body/climate_pathway"), (r"peril", "body/perils"),
              (r"loss.table", "body/loss_table_level")))


def check_simulation_request(params, req: dict[str, Any]) -> None:
    """What the engine would refuse at once, checked before a run is answered or queued (422
    ``invalid-simulation``): the climate pathway must be one of the model's."""
    pathway = req.get("climate_pathway")
    if pathway is None:
        return
    from models.dynamics import climate_pathways

    known = sorted(climate_pathways(params))
    if pathway not in known:
        raise ApiProblem(422, f"unknown climate pathway {pathway!r} of model {params.region!r}; known: {known}",
                         kind="invalid-simulation", title="Invalid simulation",
                         errors=[{"field": "body/climate_pathway", "value": pathway,
                                  "reason": f"not a climate pathway of model {params.region!r} (known: {known})"}])


def run_simulation(pf, params, req: dict[str, Any], *, chunk_paths: int | None = None,
                   progress: Callable | None = None, cancel: Callable[[], bool] | None = None):
    """Run :func:`finance_engine.simulation.simulate` for a validated request dict."""
    from finance_engine.simulation import simulate
    from models.dynamics import Modifiers, SimulationSwitches

    switches = SimulationSwitches() if req.get("perils") is None else SimulationSwitches(perils=tuple(req["perils"]))
    modifiers = Modifiers(climate_pathway=req.get("climate_pathway"))
    return simulate(pf, params, years=req["years"], paths=req["paths"], seed=req["seed"],
                    scenario=req.get("scenario", "baseline"), levels=req["levels"],
                    carbon_method=req.get("carbon_method", "bef"), switches=switches, modifiers=modifiers,
                    loss_table_level=req.get("loss_table_level"), chunk_paths=chunk_paths, workers=1,
                    progress=progress, cancel=cancel, keep_paths=False)


def result_identity(result) -> dict[str, Any]:
    """The parts of a result that define its numbers (what a rerun with the same seed reproduces)."""
    d = result.to_dict(include_summary=True)
    d.pop("run_info", None)
    return clean(d)


def store_run(s: Session, *, tenant_id: str, key_id: str, portfolio: PortfolioRow, req: dict[str, Any], result,
              job_id: str | None, request_id: str) -> SimulationRun:
    body = clean(result.to_dict(include_summary=True))
    elt_bytes = None
    if result.elt is not None:
        buf = io.BytesIO()
        result.elt.to_parquet(buf, index=False)
        elt_bytes = buf.getvalue()
    prov = result.provenance
    run = SimulationRun(
        id=new_id("sim"), tenant_id=tenant_id, portfolio_id=portfolio.id, job_id=job_id, request=clean(req),
        request_sha256=sha256_json(req), model_version=str(prov["model_version"]),
        code_version=str(prov["code_version"]), region=str(prov["region"]),
        parameter_sha256=str(prov["parameter_sha256"]), portfolio_sha256=portfolio.data_sha256,
        seed=int(prov["seed"]), result=body, elt_parquet=elt_bytes, created_by=key_id, request_id=request_id,
        created_at=utcnow())
    s.add(run)
    s.flush()
    return run


def run_out(run: SimulationRun) -> dict[str, Any]:
    r = run.result
    return {
        "id": run.id, "portfolio_id": run.portfolio_id, "job_id": run.job_id,
        "audit": {"request": run.request, "request_sha256": run.request_sha256, "model_version": run.model_version,
                  "code_version": run.code_version, "region": run.region, "parameter_sha256": run.parameter_sha256,
                  "portfolio_sha256": run.portfolio_sha256, "seed": run.seed, "created_by": run.created_by,
                  "request_id": run.request_id, "created_at": run.created_at},
        "provenance": r.get("provenance", {}), "metrics": r.get("metrics", []),
        "initial_stock": r.get("initial_stock", []), "horizon": r.get("horizon", []),
        "summary_rows": len(r.get("summary", [])), "event_loss_table_rows": r.get("event_loss_table_rows"),
        "run_info": r.get("run_info", {}),
    }


__all__ = ["SIMULATION_FIELDS", "ModelRegistry", "PortfolioCache", "audit", "audit_record", "cells",
           "check_simulation_request", "clean", "count", "internal_job_problem", "frame_from_geojson", "frame_from_records",
           "frame_from_upload", "get_owned", "job_problem", "new_id", "own_provenance", "page", "plausible_id",
           "portfolio_summary", "records", "result_identity", "run_out", "run_simulation", "sha256_json",
           "store_portfolio", "store_run", "validate"]
