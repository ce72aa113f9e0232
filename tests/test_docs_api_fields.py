"""docs/api.md names the result fields the reviews of numbers version 5 added: each name it documents is a
name the code writes (so a renamed field cannot leave the doc behind)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

# (documented name, the source file that writes it)
FIELDS = [
    ("expected_harvest_tco2e_per_yr", "finance_engine/accounts.py"),
    ("expected_growth_tco2e_per_yr", "finance_engine/accounts.py"),
    ("expected_mortality_tco2e_per_yr", "finance_engine/accounts.py"),
    ("stock_fang_bef_fallback_tco2e", "finance_engine/accounts.py"),
    ("stock_fang_fallback_share", "finance_engine/accounts.py"),
    ("stock_fang_fallback_species", "finance_engine/accounts.py"),
    ("sink_carbon_method", "finance_engine/accounts.py"),
    ("potential_sink_carbon_method", "finance_engine/accounts.py"),
    ("parameter_sd_ci95_low", "finance_engine/simulation/summary.py"),
    ("parameter_sd_ci95_high", "finance_engine/simulation/summary.py"),
    ("max_loan_resolved", "finance_engine/collateral.py"),
    ("not_resolved", "finance_engine/collateral.py"),
    ("not_resolved_paths_needed", "finance_engine/collateral.py"),
    ("max_loan_paths_needed", "finance_engine/collateral.py"),
    ("not_resolved_note", "finance_engine/collateral.py"),
    ("zero_one_bounds_95", "finance_engine/collateral.py"),
    ("collateral_var_basis", "finance_engine/collateral.py"),
    ("balance_mean_cny", "finance_engine/collateral.py"),
    ("appraisal_price_cny_per_tco2e", "finance_engine/collateral.py"),
    ("maturity_years", "finance_engine/collateral.py"),
    ("insured_tco2e_mc_se", "finance_engine/insurance/quote.py"),
    ("sum_insured_mc_se_cny", "finance_engine/insurance/quote.py"),
    ("estimated_from_run", "finance_engine/insurance/quote.py"),
    ("parameter_sd_ci95_low_cny", "finance_engine/insurance/quote.py"),
    ("parameter_sd_ci95_high_cny", "finance_engine/insurance/quote.py"),
    ("parameter_sd_ci95_low_cny", "finance_engine/collateral.py"),
    ("parameter_sd_ci95_high_cny", "finance_engine/collateral.py"),
    ("diff_parameter_sd_ci95_low", "finance_engine/stress/run.py"),
    ("diff_parameter_sd_ci95_high", "finance_engine/stress/run.py"),
    ("engine_table", "api/compute.py"),
    ("prob_attachment_se", "api/compute.py"),
    ("prob_exhaustion_se", "api/compute.py"),
    ("years_per_block", "api/compute.py"),
    ("independent_units", "api/compute.py"),
    ("warnings_count", "api/services.py"),
    ("no_payout_note", "finance_engine/insurance/quote.py"),
]


@pytest.mark.parametrize("name,source", FIELDS)
def test_documented_field_is_written_by_the_code(name, source):
    assert f"`{name}`" in DOC or f"`risk.{name}`" in DOC or f"`sizing.{name}`" in DOC or f".{name}`" in DOC, name
    assert f'"{name}"' in (ROOT / source).read_text(encoding="utf-8"), (name, source)


def test_accounts_suffixes_documented():
    for suffix in ("_mc_se", "_parameter_sd", "_parameter_sd_ci95_low", "_parameter_sd_ci95_high"):
        assert f"<figure>{suffix}`" in DOC, suffix


def test_stress_portfolio_interval_suffixes_documented():
    """The stress test's portfolio table names its parameter sds' intervals ``<figure>_[diff_]parameter_sd_ci95_*``
    (finance_engine.stress.run._portfolio_row writes them from the horizon table's columns)."""
    for suffix in ("_parameter_sd_ci95_low", "_parameter_sd_ci95_high", "_diff_parameter_sd_ci95_low",
                   "_diff_parameter_sd_ci95_high"):
        assert f"<figure>{suffix}`" in DOC, suffix


# ---- request fields -------------------------------------------------------------------------------------------
# (documented request field, the request model that accepts it): the doc review of the OpenAPI document's request
# schemas found these documented only as CLI flags or not at all; each must stay in the doc and in its model
REQUEST_FIELDS = [
    ("currency", "api.schemas:LoanTerms"),
    ("currency", "api.schemas:PolicyTerms"),
    ("name", "api.schemas:LoanCreate"),
    ("name", "api.schemas:PolicyCreate"),
    ("role", "api.schemas:TenantCreate"),
    ("expires_days", "api.schemas:KeyCreate"),
    ("label", "api.schemas:KeyCreate"),
    ("name", "api.finance_schemas:LayerPricingJSON"),
    ("price_cny_per_tco2e", "api.finance_schemas:CoverIn"),
    ("perils", "api.finance_schemas:CoverIn"),
    ("deductible", "api.finance_schemas:CoverIn"),
    ("limit_cny", "api.finance_schemas:CoverIn"),
    ("participation", "api.finance_schemas:CoverIn"),
    ("trigger_fraction", "api.finance_schemas:CoverIn"),
    ("expected_sink_tco2e", "api.finance_schemas:CoverIn"),
    ("error", "api.finance_schemas:CoverIn"),
    ("error_cv", "api.finance_schemas:CoverIn"),
    ("strike_cny_per_tco2e", "api.finance_schemas:CoverIn"),
    ("volume_tco2e", "api.finance_schemas:CoverIn"),
    ("price_model", "api.finance_schemas:CoverIn"),
    ("amount", "api.finance_schemas:DeductibleIn"),
    ("unit", "api.finance_schemas:DeductibleIn"),
    ("basis", "api.finance_schemas:DeductibleIn"),
]


def _model(spec: str):
    import importlib

    module, cls = spec.split(":")
    return getattr(importlib.import_module(module), cls)


@pytest.mark.parametrize("name,model", REQUEST_FIELDS)
def test_documented_request_field_is_accepted(name, model):
    assert f"`{name}`" in DOC, name
    assert name in _model(model).model_fields, (name, model)


def _cover_bullet(kind: str) -> str:
    start = DOC.index(f"* `{kind}` (")
    end = DOC.find("\n* ", start + 1)
    return " ".join(DOC[start:end if end != -1 else None].split("\n\n")[0].split())  # lines joined


def test_cover_fields_documented_per_kind():
    """Each cover kind's bullet names every field the service accepts for that kind (api.finance.COVER_FIELDS),
    and the stock-loss bullet every field of its ``deductible``."""
    from api.finance import COVER_FIELDS
    from api.finance_schemas import CoverIn, DeductibleIn

    assert set(COVER_FIELDS) == {"stock-loss", "sink-index", "price-floor"}
    assert set().union(*COVER_FIELDS.values()) | {"kind"} == set(CoverIn.model_fields)
    for kind, fields in COVER_FIELDS.items():
        text = _cover_bullet(kind)
        missing = [f for f in sorted(fields) if f"`{f}`" not in text]
        assert not missing, (kind, missing)
    for f in DeductibleIn.model_fields:
        assert f"`{f}`" in _cover_bullet("stock-loss"), f


def test_cover_defaults_documented_match_the_engine():
    """The defaults the doc gives (trigger 0.8, error none, price model cea) are the engine's."""
    from finance_engine.insurance.covers import PriceFloorCover, SinkIndexCover

    assert SinkIndexCover(price_cny_per_tco2e=1.0).trigger_fraction == 0.8
    assert "default 0.8" in _cover_bullet("sink-index")
    assert SinkIndexCover(price_cny_per_tco2e=1.0).error == "none"
    assert PriceFloorCover(strike_cny_per_tco2e=1.0).price_model == "cea"
    assert "`cea` (default)" in _cover_bullet("price-floor")


def test_layer_pricing_form_fields_documented():
    """The layer-pricing paragraph lists every form field the multipart upload accepts (any other is refused)."""
    from api.routes.quotes import _LAYER_FIELDS

    start = DOC.index("`POST /v1/layer-pricing` takes")
    text = DOC[start:DOC.index("It answers at once", start)]
    for f in _LAYER_FIELDS:
        assert f"`{f}`" in text, f


@pytest.mark.parametrize("label,q,end,n", [("p01", 0.01, "low", 367), ("p05", 0.05, "low", 71),
                                           ("p10", 0.10, "low", 35), ("p50", 0.50, "low", 5),
                                           ("p99", 0.99, "high", 367), ("p95", 0.95, "high", 71),
                                           ("p90", 0.90, "high", 35)])
def test_percentile_open_ends_documented(label, q, end, n):
    """The paths up to which a percentile's interval end is open, as the doc states them, are the code's."""
    from finance_engine.simulation.summary import order_statistic_ranks

    def open_at(k: int) -> bool:
        r, s = order_statistic_ranks(k, q, 0.95)
        return r == 0 if end == "low" else s > k

    assert open_at(n) and not open_at(n + 1), (label, n)
    assert f"`{label}` {n}" in DOC or f"`{label}` up to {n}" in DOC, (label, n)


def test_percentile_open_lower_end_is_zero_for_non_negative_columns():
    import numpy as np

    from finance_engine.simulation.summary import quantiles_with_ci

    x = np.column_stack([np.linspace(0.0, 1.0, 50), np.linspace(-1.0, 1.0, 50)])
    out = quantiles_with_ci(x, (0.01, 0.99))
    assert out["p01_ci_low"][0] == 0.0 and np.isneginf(out["p01_ci_low"][1])
    assert np.isposinf(out["p99_ci_high"]).all()
    assert "An open lower end is 0 where the column's smallest" in DOC
    assert "null where\n  the paths are too few" not in DOC
