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
from finance_engine.simulation.result import carried_provenance
from finance_engine.stress.run import StressSettings, scenario_prices
from finance_engine.stress.scenarios import StressScenario, load_scenario
from models.parameters import ModelParameters
from models.portfolio import LEVELS, Portfolio

FEN_PER_CNY = 100


def scenario_accounts(portfolio: Portfolio, params: ModelParameters, scenario: str | StressScenario = "baseline",
                      settings: StressSettings | None = None, *, pms: PriceModelSet | None = None,
                      workers: int = 1) -> CarbonAccounts:
    """Five-level accounts of a scenario over the settings' horizon (means over paths), with their errors.

    Columns (every level): ``stock_start_tco2e``, ``stock_end_tco2e``, ``sink_tco2e`` (end - start),
    ``credits_issued_tco2e``, ``loss_tco2e`` and ``loss_<peril>_tco2e``, ``stock_end_value_cny``,
    ``credits_value_cny``, ``loss_value_cny``; each with an integer twin (``*_kg`` / ``*_fen``) that
    sums exactly. Every simulated column has its Monte Carlo error, computed at its own level (errors do
    not add up across levels): ``<column>_mc_se`` for the carbon columns (the engine's nested standard error
    of the level's horizon figure) and for the stock's end value (delta method over the independent carbon
    and price draws: ``sqrt((P se_Q)^2 + (Q se_P)^2)``); the value flows get ``<column>_mc_se_max``, an upper
    bound ``sum_y (P_y se(Q_y) + Q_y se(P_y))`` (triangle inequality: the per-path value flow's error is not
    streamed).
    """
    st = settings or StressSettings()
    scn = scenario if isinstance(scenario, StressScenario) else load_scenario(scenario)
    pms = pms or load_price_model()
    # every level is asked for, so each row's error is its own level's (village sums come from the village level)
    res = simulate(portfolio, params, years=st.years, paths=st.paths, seed=st.seed, scenario=scn.name,
                   levels=("portfolio", *LEVELS), carbon_method=st.carbon_method, switches=st.switches,
                   modifiers=scn.modifiers(st.start_year), start_year=st.start_year, workers=workers, keep_paths=False)
    price_paths = scenario_prices(scn, pms, st.paths, st.years, st.seed, start_year=st.start_year,
                                  model=st.price_model)
    price = price_paths.mean(axis=0)  # (years + 1,)
    price_se = price_paths.std(axis=0, ddof=1) / np.sqrt(price_paths.shape[0]) if st.paths > 1 else 0.0 * price
    s = res.summary[res.summary.level == "village"]
    mean = s.pivot_table(index="group", columns=["metric", "year"], values="mean", aggfunc="first")
    years = sorted(s.year.unique())
    last = years[-1]
    init = res.start_stock("village")
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
    _attach_errors(table, res, flows, years, price, price_se)
    prov: dict[str, Any] = {**carried_provenance(res.provenance, ("model_version", "code_version", "region",
                                                                  "parameter_version", "parameter_sha256",
                                                                  "parameter_variant", "seed", "paths", "years",
                                                                  "start_year", "climate_pathway", "model_notes")),
                            "scenario": scn.name, "scenario_sha256": scn.sha256, "price_model_sha256": pms.sha256}
    units = {"*_tco2e": "tCO2e, Monte Carlo mean over the horizon (stock: start and end; flows: summed)",
             "*_cny": "CNY at the scenario's mean price path", "*_kg": "integer kg CO2e (exact sums)",
             "*_fen": "integer fen (0.01 CNY, exact sums)",
             "*_mc_se": "Monte Carlo standard error of the column, at the row's own level (errors do not add up)",
             "*_mc_se_max": "an upper bound of the Monte Carlo standard error (value flows)"}
    return CarbonAccounts(table=table, provenance=prov, units=units)



def _attach_errors(table: pd.DataFrame, res, flows: list[str], years: list[int], price: np.ndarray,
                   price_se: np.ndarray) -> None:
    """Add each row's Monte Carlo errors (see :func:`scenario_accounts`), looked up at the row's level."""
    def key(row: pd.Series) -> tuple[str, str]:
        lv = row["level"]
        if lv == "portfolio":
            return lv, res.horizon[res.horizon.level == "portfolio"].group.iloc[0]
        return lv, "/".join(row[x] for x in LEVELS[:LEVELS.index(lv) + 1])

    h = res.horizon.set_index(["level", "group", "metric"])
    yearly = res.summary.set_index(["level", "group", "metric", "year"])
    keys = [key(r) for _, r in table.iterrows()]

    def horizon(metric: str, field: str) -> np.ndarray:
        return h[field].reindex(pd.MultiIndex.from_tuples([(lv, g, metric) for lv, g in keys])).to_numpy()

    def by_year(metric: str, year: int, field: str) -> np.ndarray:
        return yearly[field].reindex(pd.MultiIndex.from_tuples([(lv, g, metric, year) for lv, g in keys])).to_numpy()

    se_stock = horizon("stock_end_tco2e", "mc_se")
    table["stock_end_tco2e_mc_se"] = se_stock
    table["sink_tco2e_mc_se"] = se_stock  # the start stock is known: the sink's error is the end stock's
    for m in flows:
        table[f"{m}_mc_se"] = horizon(f"cumulative_{m}", "mc_se")
    last = len(years)
    table["stock_end_value_cny_mc_se"] = np.sqrt((price[last] * se_stock) ** 2
                                                 + (table["stock_end_tco2e"].to_numpy() * price_se[last]) ** 2)
    for metric, col in (("credits_issued_tco2e", "credits_value_cny"), ("loss_tco2e", "loss_value_cny")):
        bound = np.zeros(len(table))
        for y in years:
            q, q_se = by_year(metric, y, "mean"), by_year(metric, y, "mc_se")
            bound += price[y + 1] * q_se + np.abs(q) * price_se[y + 1]
        table[f"{col}_mc_se_max"] = bound


__all__ = ["FEN_PER_CNY", "scenario_accounts"]
