"""One module per resource; each exposes ``router`` (an ``APIRouter``)."""

from api.routes import (
    accounts,
    admin,
    audit,
    collateral,
    health,
    jobs,
    loans,
    models,
    policies,
    portfolios,
    quotes,
    scenarios,
    simulations,
    stress,
)

ROUTERS = [health.router, portfolios.router, loans.router, policies.router, simulations.router, jobs.router,
           models.router, scenarios.router, audit.router, admin.router, collateral.router, quotes.router,
           stress.router, accounts.router]

__all__ = ["ROUTERS"]
