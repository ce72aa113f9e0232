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
    return out


if __name__ == "__main__":
    if "--write" in sys.argv:
        EXPECTED.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {EXPECTED}")
    else:
        print(json.dumps(compute(), indent=1, sort_keys=True))
