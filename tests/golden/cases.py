"""Pinned reference runs ("golden results").

Each case is a function of nothing but the code and the shipped parameter files. Its outputs are
stored in ``tests/golden/expected.json`` with a ``numbers_version``; ``tests/test_golden.py`` fails
when any number moves. A deliberate change is made by running
``python -m tests.golden.cases --write``, bumping ``NUMBERS_VERSION`` and recording the change and
its reason under that version in CHANGELOG.md (the test checks the entry exists).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NUMBERS_VERSION = "5"
EXPECTED = Path(__file__).with_name("expected.json")


def _portfolio(params):
    from models.portfolio import load_portfolio

    return load_portfolio(Path(__file__).with_name("portfolio.csv"), params)


def _horizon(res):
    h = res.horizon[res.horizon.level == "portfolio"].set_index("metric")
    return {m: {k: float(h.loc[m, k]) for k in ("mean", "mc_se", "p05", "p50", "p95")} for m in h.index}


def compute() -> dict:
    from finance_engine.accounts import carbon_accounts
    from finance_engine.collateral import value_collateral
    from finance_engine.simulation import simulate
    from models.dynamics import SimulationSwitches
    from models.parameters import load_parameters

    params = load_parameters()
    pf = _portfolio(params)
    out: dict = {"numbers_version": NUMBERS_VERSION}
    det = simulate(pf, params, years=10, paths=32, seed=1, switches=SimulationSwitches(
        parameter_uncertainty=False, growth_shocks=False, parcel_noise=False, perils=()))
    out["growth_deterministic"] = _horizon(det)
    full = simulate(pf, params, years=10, paths=256, seed=2026, levels=("portfolio",))
    out["full_model"] = _horizon(full)
    acc = carbon_accounts(pf, params, sink_paths=64, seed=7).level("portfolio").iloc[0]
    out["accounts"] = {k: float(acc[k]) for k in ("stock_bef_tco2e", "stock_fang_tco2e",
                                                  "potential_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr")}
    v = value_collateral(pf, params, dict(amount_cny=50_000, term_years=3, interest_rate=0.04, borrower_pd=0.02),
                         project_id="GOLD-1", paths=128, seed=3, attribution=False, sensitivities=False)
    out["collateral"] = {"value_cny": v.value_today["value_cny"], "mc_se_cny": v.value_today["mc_se_cny"],
                         "max_loan_cny": v.sizing["max_loan_cny"],
                         "p_value_below_balance_any_time": v.risk["p_value_below_balance_any_time"],
                         "irb_capital_k": v.credit["irb_capital_k"]}
    # a loan whose figures read the values at t: their regression's jackknife errors, intervals and
    # sensitivities (unequal jackknife groups: 101 parameter sets)
    v = value_collateral(pf, params, dict(amount_cny=450_000, term_years=6, interest_rate=0.05, borrower_pd=0.03,
                                          crediting_horizon_years=20, target_shortfall_probability=0.05,
                                          forest_right_mortgage_cny=20_000,
                                          insurance=dict(agreed_price_cny_per_tco2e=60.0,
                                                         annual_deductible_tco2e=2.0)),
                         project_id="GOLD-1", paths=404, seed=11, attribution=False, sensitivities=True)
    by_year = v.by_year.set_index("year")
    sens = v.sensitivities.set_index("case")
    out["collateral_errors"] = {
        "max_loan_cny": v.sizing["max_loan_cny"], "max_loan_mc_se_cny": v.sizing["max_loan_mc_se_cny"],
        "max_loan_ci95_low_cny": v.sizing["max_loan_ci95_cny"][0],
        "max_loan_ci95_high_cny": v.sizing["max_loan_ci95_cny"][1],
        **{f"year{t}_{c}": float(by_year.loc[t, c]) for t in (1, 6)
           for c in ("value_p05_ci95_low_cny", "value_p50_ci95_high_cny", "ltv_p95_ci95_high",
                     "p_value_below_balance_mc_se", "expected_top_up_mc_se_cny")},
        "p_value_below_balance_any_time": v.risk["p_value_below_balance_any_time"],
        "p_value_below_balance_any_time_mc_se": v.risk["p_value_below_balance_any_time_mc_se"],
        "expected_top_up_size_mc_se_cny": v.risk["expected_top_up_size_mc_se_cny"],
        "collateral_var95_ci95_high_cny": v.risk["collateral_var95_ci95_cny"][1],
        "collateral_es95_mc_se_cny": v.risk["collateral_es95_mc_se_cny"],
        "simulated_lgd_forced_sale_mc_se": v.credit["simulated_lgd_forced_sale_mc_se"],
        **{f"{case}_p_below_any_mc_se": float(sens.loc[case, "p_value_below_balance_any_time_mc_se"])
           for case in ("price -30%", "volatility x0.5", "volatility x1.5")},
    }
    return out


if __name__ == "__main__":
    if "--write" in sys.argv:
        EXPECTED.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {EXPECTED}")
    else:
        print(json.dumps(compute(), indent=1, sort_keys=True))
