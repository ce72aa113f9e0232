"""One module per resource; each exposes ``router`` (an ``APIRouter``)."""

from api.routes import (
    admin,
    audit,
    health,
    jobs,
    loans,
    models,
    policies,
    portfolios,
    scenarios,
    simulations,
)

ROUTERS = [health.router, portfolios.router, loans.router, policies.router, simulations.router, jobs.router,
           models.router, scenarios.router, audit.router, admin.router]

__all__ = ["ROUTERS"]
