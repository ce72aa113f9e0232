"""Loans registered against a portfolio (terms only; their valuation arrives with collateral pricing)."""

from api.routes._instruments import build_router
from api.schemas import LoanCreate

router = build_router("loan", "loans", LoanCreate, ("bank", "bureau"))
