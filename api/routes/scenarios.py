"""Scenarios: the climate pathways of each model, and the stress scenarios shipped as YAML files in
``finance_engine/scenarios/`` (the stress library of finance_engine.stress.scenarios, with each file's
version and SHA-256; run them with POST /v1/stress-tests)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path as FsPath
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Path, Request

from api.problems import ApiProblem
from api.routes.common import AUTH_PROBLEMS, Paging
from api.schemas import Page, ScenarioDetail, ScenarioOut
from api.security import EVERYONE, Principal, require_roles
from api.services import clean, page
from models._yaml import load_yaml

router = APIRouter(prefix="/v1/scenarios", tags=["scenarios"], responses=AUTH_PROBLEMS)
anyone = require_roles(*EVERYONE)


def scenario_dir() -> FsPath:
    # api and finance_engine are installed side by side (same distribution)
    return FsPath(__file__).resolve().parents[2] / "finance_engine" / "scenarios"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def all_scenarios(models) -> list[dict[str, Any]]:
    out = []
    for region in models.ids():
        p = models.get(region)
        climate = (p.file.perils or {}).get("climate") or {}
        for name, body in sorted((climate.get("pathways") or {}).items()):
            content = clean(body)
            out.append({"id": f"{region}.climate.{name}", "kind": "climate_pathway", "model": region,
                        "version": str(p.version),
                        "description": str(body.get("description", "")).strip(), "source": body.get("source"),
                        "confidence": body.get("confidence"), "sha256": _sha(content), "content": content})
    d = scenario_dir()
    if d.is_dir():
        for f in sorted(d.glob("*.y*ml")):
            raw = f.read_bytes()
            try:
                doc = load_yaml(raw.decode("utf-8"))
            except (UnicodeDecodeError, yaml.YAMLError):
                continue
            if not isinstance(doc, dict):
                continue
            out.append({"id": f"stress.{f.stem}", "kind": "stress", "model": doc.get("model") or doc.get("region"),
                        "version": None if doc.get("version") is None else str(doc.get("version")),
                        "description": str(doc.get("description", "")).strip(), "source": doc.get("source"),
                        "confidence": doc.get("confidence"), "sha256": hashlib.sha256(raw).hexdigest(),
                        "content": clean(doc)})
    return out


@router.get("", response_model=Page[ScenarioOut], summary="Climate pathways and stress scenarios")
def list_scenarios(request: Request, paging: Paging = Depends(), who: Principal = Depends(anyone)):
    items = all_scenarios(request.app.state.models)
    sub = [{k: v for k, v in it.items() if k != "content"} for it in items[paging.offset:paging.offset + paging.limit]]
    return page(sub, len(items), paging.limit, paging.offset)


@router.get("/{scenario_id}", response_model=ScenarioDetail, summary="A scenario with its full content")
def get_scenario(request: Request, scenario_id: str = Path(max_length=120), who: Principal = Depends(anyone)):
    for it in all_scenarios(request.app.state.models):
        if it["id"] == scenario_id:
            return it
    raise ApiProblem(404, f"no scenario {scenario_id!r}", kind="not-found")
