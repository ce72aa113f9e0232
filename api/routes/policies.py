"""Insurance policies registered against a portfolio (terms only; pricing arrives with quotes)."""

from api.routes._instruments import build_router
from api.schemas import PolicyCreate

router = build_router("policy", "policies", PolicyCreate, ("insurer", "bureau"))
