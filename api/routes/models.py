"""Models (regional parameter sets): list and get, with parameters, sources, version and SHA-256."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from api.routes.common import AUTH_PROBLEMS, Paging
from api.schemas import ModelDetail, ModelOut, Page
from api.security import EVERYONE, Principal, require_roles
from api.services import clean, page

router = APIRouter(prefix="/v1/models", tags=["models"], responses=AUTH_PROBLEMS)
anyone = require_roles(*EVERYONE)


def model_out(p) -> dict:
    return {"id": p.region, "name": p.file.name, "version": p.version, "sha256": p.sha256,
            "description": p.file.description}


@router.get("", response_model=Page[ModelOut], summary="The parameter sets this server ships")
def list_models(request: Request, paging: Paging = Depends(), who: Principal = Depends(anyone)):
    reg = request.app.state.models
    ids = reg.ids()
    items = [model_out(reg.get(i)) for i in ids[paging.offset:paging.offset + paging.limit]]
    return page(items, len(ids), paging.limit, paging.offset)


@router.get("/{model_id}", response_model=ModelDetail,
            summary="A parameter set: every value with its source and confidence, the YAML and its SHA-256")
def get_model(request: Request, model_id: str = Path(max_length=60), who: Principal = Depends(anyone)):
    from models import MODEL_VERSION

    reg = request.app.state.models
    p = reg.get(model_id)
    return {**model_out(p), "model_version": MODEL_VERSION, "references": dict(p.file.references),
            "parameters": clean(p.file.model_dump(mode="json")), "yaml": reg.yaml_text(model_id)}
