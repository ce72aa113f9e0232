"""Five-level carbon accounts of a scenario run: province -> city -> county -> township -> village.

The run keeps village-level results (:func:`finance_engine.simulation.simulate` with
``levels=("village",)``). Each village's Monte Carlo means over the horizon -- stock today and at
the end, the sink, credits issued, losses by peril, and their values in CNY -- are rounded to whole
kilograms of CO2e (or whole fen, 0.01 CNY) and held as integers; every coarser level is then the exact
integer sum of the villages below it (:func:`finance_engine.accounts.roll_up`).

Value: the engine's carbon and the price model are independent random streams, so the expected value
of a flow is the product of the means year by year: ``E[Q_y P_{y+1}] = E[Q_y] E[P_{y+1}]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from finance_engine.accounts import KG_PER_T, CarbonAccounts, roll_up
from finance_engine.price import PriceModelSet, load_price_model
from finance_engine.simulation import simulate
from finance_engine.stress.run import StressSettings, scenario_prices
from finance_engine.stress.scenarios import StressScenario, load_scenario
from models.parameters import ModelParameters
from models.portfolio import LEVELS, Portfolio

FEN_PER_CNY = 100


def scenario_accounts(portfolio: Portfolio, params: ModelParameters, scenario: str | StressScenario = "baseline",
                      settings: StressSettings | None = None, *, pms: PriceModelSet | None = None,
                      workers: int = 1) -> CarbonAccounts:
    """Five-level accounts of a scenario over the settings' horizon (means over paths).

    Columns (every level): ``stock_start_tco2e``, ``stock_end_tco2e``, ``sink_tco2e`` (end - start),
    ``credits_issued_tco2e``, ``loss_tco2e`` and ``loss_<peril>_tco2e``, ``stock_end_value_cny``,
    ``credits_value_cny``, ``loss_value_cny``; each with an integer twin (``*_kg`` / ``*_fen``) that
    sums exactly.
    """
    st = settings or StressSettings()
    scn = scenario if isinstance(scenario, StressScenario) else load_scenario(scenario)
    pms = pms or load_price_model()
    res = simulate(portfolio, params, years=st.years, paths=st.paths, seed=st.seed, scenario=scn.name,
                   levels=("village",), carbon_method=st.carbon_method, switches=st.switches,
                   modifiers=scn.modifiers(st.start_year), start_year=st.start_year, workers=workers, keep_paths=False)
    price = scenario_prices(scn, pms, st.paths, st.years, st.seed, start_year=st.start_year,
                            model=st.price_model).mean(axis=0)  # (years + 1,)
    s = res.summary[res.summary.level == "village"]
    mean = s.pivot_table(index="group", columns=["metric", "year"], values="mean", aggfunc="first")
    years = sorted(s.year.unique())
    last = years[-1]
    init = res.initial_stock[res.initial_stock.level == "village"].set_index("group")["stock_tco2e"]
    groups = mean.index.to_numpy()
    cols: dict[str, np.ndarray] = {"stock_start_tco2e": init.reindex(groups).to_numpy(),
                                   "stock_end_tco2e": mean[("stock_tco2e", last)].to_numpy()}
    cols["sink_tco2e"] = cols["stock_end_tco2e"] - cols["stock_start_tco2e"]
    p_end = price[1:len(years) + 1]
    flows = ["credits_issued_tco2e", "loss_tco2e", *sorted(m for m in res.metrics if m.startswith("loss_")
                                                           and m != "loss_tco2e")]
    for m in flows:
        cols[m] = mean[m][years].to_numpy().sum(axis=1)
    money = {"stock_end_value_cny": cols["stock_end_tco2e"] * price[len(years)],
             "credits_value_cny": (mean["credits_issued_tco2e"][years].to_numpy() * p_end).sum(axis=1),
             "loss_value_cny": (mean["loss_tco2e"][years].to_numpy() * p_end).sum(axis=1)}
    parts = pd.Series(groups).str.split("/", expand=True)
    if parts.shape[1] != len(LEVELS):
        raise ValueError("village labels must be province/city/county/township/village paths without '/' in names")
    village = pd.DataFrame({lv: parts[i].to_numpy() for i, lv in enumerate(LEVELS)})
    kg_cols, fen_cols = [], []
    for c, v in cols.items():
        village[f"{c}_kg"] = np.rint(v * KG_PER_T).astype(np.int64)
        kg_cols.append(f"{c}_kg")
    for c, v in money.items():
        village[f"{c}_fen"] = np.rint(v * FEN_PER_CNY).astype(np.int64)
        fen_cols.append(f"{c}_fen")
    table = roll_up(village, kg_cols + fen_cols)
    for c in kg_cols:
        table[c[:-3]] = table[c] / KG_PER_T
    for c in fen_cols:
        table[c[:-4]] = table[c] / FEN_PER_CNY
    prov: dict[str, Any] = {**{k: res.provenance[k] for k in ("model_version", "code_version", "region",
                                                               "parameter_version", "parameter_sha256", "seed",
                                                               "paths", "years", "start_year", "climate_pathway")},
                            "scenario": scn.name, "scenario_sha256": scn.sha256, "price_model_sha256": pms.sha256}
    units = {"*_tco2e": "tCO2e, Monte Carlo mean over the horizon (stock: start and end; flows: summed)",
             "*_cny": "CNY at the scenario's mean price path", "*_kg": "integer kg CO2e (exact sums)",
             "*_fen": "integer fen (0.01 CNY, exact sums)"}
    return CarbonAccounts(table=table, provenance=prov, units=units)


__all__ = ["FEN_PER_CNY", "scenario_accounts"]
