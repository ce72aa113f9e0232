"""``/healthz`` (the process answers) and ``/readyz`` (database, migrations and model are usable)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.db.session import migration_status
from api.problems import problem_response, problem_responses
from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up", openapi_extra={"security": []})
def healthz() -> Health:
    return Health(status="ok")


def _checks(state) -> dict:
    checks: dict = {}
    try:
        state.db.ping()
        checks["database"] = {"ok": True, "backend": state.db.backend}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = {"ok": False, "error": type(exc).__name__}
        return checks
    try:
        current, head = migration_status(state.db.engine)
        checks["migrations"] = {"ok": current == head, "current": current, "head": head}
    except Exception as exc:  # noqa: BLE001
        checks["migrations"] = {"ok": False, "error": type(exc).__name__}
    try:
        from models.parameters import DEFAULT_REGION, load_parameters

        p = load_parameters(DEFAULT_REGION)
        checks["model"] = {"ok": True, "id": p.region, "sha256": p.sha256}
    except Exception as exc:  # noqa: BLE001
        checks["model"] = {"ok": False, "error": str(exc)[:300]}
    return checks


@router.get("/readyz", response_model=Health, summary="Database reachable, schema at head, model loads",
            responses=problem_responses(503), openapi_extra={"security": []})
async def readyz(request: Request):
    checks = await run_in_threadpool(_checks, request.app.state)
    if all(c.get("ok") for c in checks.values()) and len(checks) == 3:
        return JSONResponse({"status": "ready", "checks": checks})
    return problem_response(503, "not ready", kind="not-ready", checks=checks)
