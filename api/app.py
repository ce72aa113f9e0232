"""The HTTP service: ``create_app(settings)`` builds the FastAPI application.

On start the app brings the database schema to the newest Alembic revision, then starts the job
runner (which re-queues jobs interrupted by a restart). See ``docs/api.md`` for the endpoints.
"""

from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.compute import ComputePool, ResultCache
from api.db.session import Database
from api.jobs import JobRunner
from api.middleware import ServiceMiddleware
from api.problems import Problem, install_problem_handlers
from api.requestctx import configure_logging
from api.routes import ROUTERS
from api.routes import ui as ui_routes
from api.routes.portfolios import AccountsCache
from api.security import RateLimiter
from api.services import ModelRegistry, PortfolioCache
from api.settings import Settings
from models import __version__

log = logging.getLogger("carbon_risk.api")

DESCRIPTION = """Forest carbon risk for Lishui (丽水): portfolios, simulations, jobs, carbon accounts.

Authenticate with `Authorization: Bearer <API key>` (or `X-API-Key`). Errors are RFC 9457
`application/problem+json`. Lists are paged with `limit`/`offset`. POSTs accept an
`Idempotency-Key`. See docs/api.md for roles, limits and examples."""


def create_app(settings: Settings | None = None, *, start_jobs: bool = True) -> FastAPI:
    """Build the application.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    start_jobs : bool
        Start the job worker threads with the app (tests of the queue itself may turn this off).
    """
    settings = settings or Settings.from_env()
    configure_logging(settings.log_level)
    db = Database(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        db.upgrade()
        if settings.compute_warm:  # spawn and initialise the compute workers in the background
            threading.Thread(target=app.state.compute.start, name="compute-warm", daemon=True).start()
        if start_jobs:
            app.state.jobs.start()
        log.info("service ready on %s database", db.backend)
        try:
            yield
        finally:
            app.state.jobs.stop()
            app.state.compute.shutdown()
            db.dispose()

    app = FastAPI(title="carbon-risk-engine API", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.db = db
    app.state.models = ModelRegistry()
    app.state.portfolios = PortfolioCache()
    app.state.accounts_cache = AccountsCache()
    app.state.rate_limiter = RateLimiter(settings.rate_per_s, settings.rate_burst)
    app.state.jobs = JobRunner(db, settings, app.state.models, app.state.portfolios)
    # CPU-bound work off the event loop; a warm pool also simulates the pine wilt landscape ahead
    app.state.compute = ComputePool(settings.compute_workers,
                                    warm_paths=settings.landscape_warm_paths if settings.compute_warm else 0)
    app.state.result_cache = ResultCache(settings.result_cache_size)
    app.state.jobs.compute = app.state.compute
    install_problem_handlers(app)
    for r in ROUTERS:
        app.include_router(r)
    app.include_router(ui_routes.router)  # the dashboard at /ui (docs/dashboard.md)
    app.add_middleware(ServiceMiddleware, settings=settings, db=db)

    base_openapi = app.openapi

    def openapi():
        if app.openapi_schema is None:
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = \
                Problem.model_json_schema(ref_template="#/components/schemas/{model}")
            defs = schema["components"]["schemas"]["Problem"].pop("$defs", {})
            schema["components"]["schemas"].update(defs)
            schema["components"]["securitySchemes"] = {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "cre_<key id>_<secret>"}}
            schema["security"] = [{"apiKey": []}]
            _page_limits(schema, settings.page_max)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def _page_limits(schema: dict, page_max: int) -> None:
    """Every list endpoint's ``limit`` as this server applies it (``Settings.page_max``, CRE_PAGE_MAX): a larger
    one is lowered to the maximum (not refused), so the schema states it in words, not as ``maximum``."""
    from api.routes.common import PAGE_DEFAULT

    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            for prm in op.get("parameters", []) if isinstance(op, dict) else []:
                if prm.get("in") == "query" and prm.get("name") == "limit":
                    sch = prm.setdefault("schema", {})
                    sch["default"] = min(PAGE_DEFAULT, page_max)
                    prm["description"] = (f"items per page; a larger value is lowered to this server's maximum, "
                                          f"{page_max} (CRE_PAGE_MAX), and the page's limit says the one used")


__all__ = ["create_app"]
