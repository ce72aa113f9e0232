"""Loans and policies share one table and one set of routes, built here per kind."""


import io
from typing import Any

import pandas as pd
from fastapi import APIRouter, Depends, Response
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.db.models import Instrument, PortfolioRow, utcnow
from api.problems import ApiProblem
from api.routes.common import AUTH_PROBLEMS, DB_SESSION, Paging
from api.schemas import InstrumentOut, Page
from api.security import Principal, require_roles
from api.services import audit, count, get_owned, new_id, page


def instrument_out(row: Instrument) -> dict[str, Any]:
    return {k: getattr(row, k) for k in ("id", "portfolio_id", "kind", "name", "terms", "created_by", "created_at")}


def _check_parcels(pf: PortfolioRow, parcel_ids: list[str] | None) -> None:
    if not parcel_ids:
        if parcel_ids is not None:
            raise ApiProblem(422, "parcel_ids must not be empty (omit it for the whole portfolio)",
                             kind="validation-error", errors=[{"field": "body/terms/parcel_ids", "reason": "empty"}])
        return
    known = set(pd.read_parquet(io.BytesIO(pf.data_parquet), columns=["parcel_id"])["parcel_id"].astype(str))
    dup = len(set(parcel_ids)) != len(parcel_ids)
    unknown = [p for p in parcel_ids if p not in known]
    errs = [{"field": "body/terms/parcel_ids", "value": p, "reason": "not a parcel of the portfolio"}
            for p in unknown[:1000]]
    if dup:
        errs.append({"field": "body/terms/parcel_ids", "reason": "parcel ids repeat"})
    if errs:
        raise ApiProblem(422, f"{len(unknown)} parcel id(s) not in portfolio {pf.id}" + (" and repeats" if dup else ""),
                         kind="validation-error", errors=errs)


def build_router(kind: str, plural: str, create_model, roles: tuple[str, ...]) -> APIRouter:
    router = APIRouter(tags=[plural], responses=AUTH_PROBLEMS)
    dep = require_roles(*roles)
    what = kind

    @router.post(f"/v1/portfolios/{{portfolio_id}}/{plural}", status_code=201, response_model=InstrumentOut,
                 summary=f"Register a {kind} against a portfolio", name=f"create_{kind}")
    def create(portfolio_id: str, body: create_model, response: Response, who: Principal = Depends(dep),
               s: Session = DB_SESSION):
        pf = get_owned(s, PortfolioRow, portfolio_id, who, "portfolio")
        _check_parcels(pf, body.terms.parcel_ids)
        row = Instrument(id=new_id(kind[:4]), tenant_id=who.tenant_id, portfolio_id=pf.id, kind=kind,
                         name=body.name, terms=body.terms.model_dump(mode="json"), created_by=who.key_id,
                         created_at=utcnow())
        s.add(row)
        try:
            s.flush()
        except IntegrityError:  # the portfolio was deleted meanwhile (its delete held the row: see delete_portfolio)
            raise ApiProblem(404, f"portfolio {portfolio_id!r} no longer exists", kind="not-found") from None
        audit(s, who, f"{kind}.create", kind, row.id, portfolio_id=pf.id, terms=row.terms)
        response.headers["Location"] = f"/v1/{plural}/{row.id}"
        return instrument_out(row)

    @router.get(f"/v1/portfolios/{{portfolio_id}}/{plural}", response_model=Page[InstrumentOut],
                summary=f"The {plural} of a portfolio", name=f"list_portfolio_{plural}")
    def list_for_portfolio(portfolio_id: str, paging: Paging = Depends(), who: Principal = Depends(dep),
                           s: Session = DB_SESSION):
        get_owned(s, PortfolioRow, portfolio_id, who, "portfolio")
        q = select(Instrument).where(Instrument.tenant_id == who.tenant_id, Instrument.kind == kind,
                                     Instrument.portfolio_id == portfolio_id)
        total = count(s, q)
        rows = s.scalars(q.order_by(Instrument.created_at, Instrument.id).limit(paging.limit)
                         .offset(paging.offset)).all()
        return page([instrument_out(r) for r in rows], total, paging.limit, paging.offset)

    @router.get(f"/v1/{plural}", response_model=Page[InstrumentOut], summary=f"All your {plural}",
                name=f"list_{plural}")
    def list_all(paging: Paging = Depends(), who: Principal = Depends(dep), s: Session = DB_SESSION):
        q = select(Instrument).where(Instrument.tenant_id == who.tenant_id, Instrument.kind == kind)
        total = count(s, q)
        rows = s.scalars(q.order_by(Instrument.created_at, Instrument.id).limit(paging.limit)
                         .offset(paging.offset)).all()
        return page([instrument_out(r) for r in rows], total, paging.limit, paging.offset)

    def _get(s, id_, who) -> Instrument:
        row = get_owned(s, Instrument, id_, who, what)
        if row.kind != kind:
            raise ApiProblem(404, f"no {what} {id_!r}", kind="not-found")
        return row

    @router.get(f"/v1/{plural}/{{item_id}}", response_model=InstrumentOut, summary=f"A {kind}", name=f"get_{kind}")
    def get_one(item_id: str, who: Principal = Depends(dep), s: Session = DB_SESSION):
        return instrument_out(_get(s, item_id, who))

    @router.delete(f"/v1/{plural}/{{item_id}}", status_code=204, summary=f"Delete a {kind}", name=f"delete_{kind}")
    def delete_one(item_id: str, who: Principal = Depends(dep), s: Session = DB_SESSION):
        row = _get(s, item_id, who)
        # conditional on the row still being there: of concurrent deletes of one loan, one is 204 with its audit
        # record, the others 404 (the row is locked by the first until it commits, then gone)
        gone = s.execute(delete(Instrument).where(Instrument.id == row.id, Instrument.tenant_id == who.tenant_id)
                         .execution_options(synchronize_session=False))
        if gone.rowcount != 1:
            raise ApiProblem(404, f"no {what} {item_id!r}", kind="not-found")
        audit(s, who, f"{kind}.delete", kind, item_id)
        return Response(status_code=204)

    return router
