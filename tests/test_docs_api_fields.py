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
    ("engine_table", "api/compute.py"),
]


@pytest.mark.parametrize("name,source", FIELDS)
def test_documented_field_is_written_by_the_code(name, source):
    assert f"`{name}`" in DOC or f"`risk.{name}`" in DOC or f"`sizing.{name}`" in DOC or f".{name}`" in DOC, name
    assert f'"{name}"' in (ROOT / source).read_text(encoding="utf-8"), (name, source)


def test_accounts_suffixes_documented():
    for suffix in ("_mc_se", "_parameter_sd", "_parameter_sd_ci95_low", "_parameter_sd_ci95_high"):
        assert f"<figure>{suffix}`" in DOC, suffix
