"""Five-level carbon accounts: province -> city -> county -> township -> village.

The bureau keeps carbon accounts at five levels. Every figure is first computed per parcel, rounded
to whole kilograms (``1e-3`` tCO2e) and held as an integer, then summed up the hierarchy: a village
is the sum of its parcels, a township the sum of its villages, and so on. Integer sums are exact,
so every level sums *exactly* from the villages up, whatever the order of addition.

Today's stock is deterministic (inventory plus the carbon conversion, by both methods). The
expected annual sink comes from a one-year Monte Carlo run with every peril, and carries its Monte
Carlo standard error; the potential sink (growth net of background mortality, no perils) is
deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from finance_engine.simulation import Progress, simulate
from finance_engine.simulation.result import code_version
from models import MODEL_VERSION
from models.dynamics import ForestSimulator
from models.parameters import ModelParameters
from models.portfolio import LEVELS, Portfolio

KG_PER_T = 1000  # integer unit: kilograms of CO2e (1e-3 tCO2e)
ADDITIVE_SUFFIXES = ("_tco2e", "_tco2e_per_yr", "_ha", "parcels")


def _to_kg(x: np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * KG_PER_T).astype(np.int64)


def _is_additive(col: str) -> bool:
    return col == "parcels" or (col.endswith(ADDITIVE_SUFFIXES) and not col.endswith("_mc_se"))


def roll_up(village: pd.DataFrame, additive: list[str]) -> pd.DataFrame:
    """Build all five levels (plus the portfolio total) from a village table.

    ``village`` has the five level columns and integer ``additive`` columns. Returns one tidy table
    with a ``level`` column; coarser levels are exact integer sums of the finer level below.
    """
    rows = [village.assign(level="village")]
    current = village
    for depth in range(len(LEVELS) - 1, 0, -1):
        keys = list(LEVELS[:depth])
        current = current.groupby(keys, sort=True, as_index=False)[additive].sum()
        rows.append(current.assign(level=LEVELS[depth - 1]))
    total = current[additive].sum().to_frame().T
    rows.append(total.assign(level="portfolio"))
    out = pd.concat(rows[::-1], ignore_index=True)
    for lv in LEVELS:
        out[lv] = out[lv].fillna("")
    out[additive] = out[additive].astype(np.int64)
    return out


def to_tree(table: pd.DataFrame, value_columns: list[str]) -> dict[str, Any]:
    """Nested JSON tree: portfolio -> province -> city -> county -> township -> village."""
    def node(name: str, row: pd.Series) -> dict[str, Any]:
        return {"name": name, **{c: _json_value(row[c]) for c in value_columns}, "children": []}

    top = table[table.level == "portfolio"].iloc[0]
    root = node("portfolio", top)
    index: dict[tuple, dict] = {(): root}
    for depth, lv in enumerate(LEVELS, start=1):
        sub = table[table.level == lv]
        for _, row in sub.iterrows():
            key = tuple(row[l] for l in LEVELS[:depth])
            n = node(row[lv], row)
            index[key] = n
            index[key[:-1]]["children"].append(n)
    return root


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    return v


@dataclass
class CarbonAccounts:
    """Five-level accounts of a portfolio.

    ``table`` holds integer kilogram columns (``*_kg``) that sum exactly, their tonne equivalents
    (``*_tco2e``), and standard errors where a figure is simulated.
    """

    table: pd.DataFrame
    provenance: dict[str, Any]
    units: dict[str, str] = field(default_factory=dict)

    def level(self, level: str) -> pd.DataFrame:
        if level not in ("portfolio", *LEVELS):
            raise ValueError(f"unknown level {level!r}; use portfolio, {', '.join(LEVELS)}")
        return self.table[self.table.level == level].reset_index(drop=True)

    def tree(self) -> dict[str, Any]:
        cols = [c for c in self.table.columns if c not in (*LEVELS, "level") and not c.endswith("_kg")]
        return to_tree(self.table, cols)

    def to_dict(self, level: str | None = None) -> dict[str, Any]:
        t = self.level(level) if level else self.table
        t = t[[c for c in t.columns if not c.endswith("_kg")]]
        return {"provenance": self.provenance, "units": self.units,
                "rows": [{k: _json_value(v) for k, v in r.items()} for r in t.to_dict(orient="records")]}


def carbon_accounts(portfolio: Portfolio, params: ModelParameters, *, sink_paths: int = 1000,
                    seed: int = 20260101, workers: int = 1, chunk_paths: int | None = None,
                    progress: Callable[[Progress], None] | None = None,
                    scheduler: str | None = None) -> CarbonAccounts:
    """Today's carbon stock and the expected annual sink at the five account levels.

    Parameters
    ----------
    portfolio, params :
        The parcels and the parameter set they were validated against.
    sink_paths : int
        Monte Carlo paths of the one-year run that estimates the expected sink (0: skip it).
    seed : int
        Seed of that run.
    workers, chunk_paths : int
        Workers of that run and paths per chunk (default: the engine's choice); the numbers do not
        depend on them.
    scheduler : str, optional
        Where that run's chunks go when ``workers > 1`` (see :func:`~finance_engine.simulation.simulate`;
        default processes; ``"threads"`` in a process that runs threads of its own, such as the service's
        compute workers, which must not fork).
    progress : callable, optional
        Called with the sink run's :class:`~finance_engine.simulation.Progress` after each chunk
        (observation only: the numbers do not depend on it).
    """
    co2 = params.file.carbon.co2_per_c.value
    area = portfolio.area_ha
    parcel = pd.DataFrame({lv: portfolio.frame[lv].to_numpy() for lv in LEVELS})
    parcel["parcels_kg"] = np.int64(1) * KG_PER_T  # counted in the same integer scheme
    parcel["area_ha_kg"] = _to_kg(area)
    stock = {}
    for method in ("bef", "fang"):
        sim = ForestSimulator(params, portfolio, carbon_method=method)
        stock[method] = sim.initial_carbon_tc_per_ha() * area * co2
        parcel[f"stock_{method}_tco2e_kg"] = _to_kg(stock[method])
    sim = ForestSimulator(params, portfolio)
    # the curves' net change: background mortality is inside the yield curves (models.growth)
    potential = sim.expected_annual_sink_tc_per_ha() * area * co2
    parcel["potential_sink_tco2e_per_yr_kg"] = _to_kg(potential)
    levels_for_se = ("portfolio", *LEVELS)
    se_rows: dict[str, pd.Series] = {}
    # the model and code that made the numbers, with or without the sink run
    provenance: dict[str, Any] = {"model_version": MODEL_VERSION, "code_version": code_version(),
                                  **params.provenance(), "portfolio": portfolio.source, "parcels": portfolio.n_parcels}
    if sink_paths:
        res = simulate(portfolio, params, years=1, paths=sink_paths, seed=seed,
                       levels=("parcel", *levels_for_se), keep_paths=True, workers=workers,
                       chunk_paths=chunk_paths, progress=progress, scheduler=scheduler)
        ps = res.parcel_summary.set_index("parcel_id").loc[portfolio.parcel_id]
        # mean_annual_sink over one year = stock change in that year (net of perils and mortality)
        parcel["expected_sink_tco2e_per_yr_kg"] = _to_kg(ps["mean_annual_sink_tco2e_mean"].to_numpy())
        parcel["expected_loss_tco2e_per_yr_kg"] = _to_kg(ps["cumulative_loss_tco2e_mean"].to_numpy())
        for lv in levels_for_se:
            sub = res.summary[(res.summary.level == lv) & (res.summary.year == 0)]
            # the two kinds of uncertainty, apart: Monte Carlo error and the spread of the parameters
            for metric, stat, name in (("sink_tco2e", "mc_se", "expected_sink_tco2e_per_yr_mc_se"),
                                       ("sink_tco2e", "parameter_sd", "expected_sink_tco2e_per_yr_parameter_sd"),
                                       ("loss_tco2e", "mc_se", "expected_loss_tco2e_per_yr_mc_se"),
                                       ("loss_tco2e", "parameter_sd", "expected_loss_tco2e_per_yr_parameter_sd")):
                s = sub[sub.metric == metric].set_index("group")[stat]
                se_rows.setdefault(name, pd.Series(dtype=float))
                se_rows[name] = pd.concat([se_rows[name], s.rename(lambda g, lv=lv: (lv, g))])
        provenance.update({k: res.provenance[k] for k in ("model_version", "code_version", "seed", "paths",
                                                          "perils", "climate_pathway", "start_year")})
    kg_cols = [c for c in parcel.columns if c.endswith("_kg")]
    village = parcel.groupby(list(LEVELS), sort=True, as_index=False)[kg_cols].sum()
    table = roll_up(village, kg_cols)
    for c in kg_cols:
        table[c[:-3]] = table[c] / KG_PER_T
    table["parcels"] = (table["parcels_kg"] // KG_PER_T).astype(np.int64)
    table = table.drop(columns=["parcels_kg"])
    if se_rows:
        keys = [(row.level, "portfolio" if row.level == "portfolio" else
                 "/".join(str(row[l]) for l in LEVELS[:LEVELS.index(row.level) + 1]))
                for _, row in table.iterrows()]
        for name, s in se_rows.items():
            table[name] = [float(s.get(k, np.nan)) for k in keys]
    order = ["level", *LEVELS, "parcels", "area_ha", "stock_bef_tco2e", "stock_fang_tco2e",
             "potential_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr", "expected_sink_tco2e_per_yr_mc_se",
             "expected_sink_tco2e_per_yr_parameter_sd", "expected_loss_tco2e_per_yr",
             "expected_loss_tco2e_per_yr_mc_se", "expected_loss_tco2e_per_yr_parameter_sd"]
    rest = [c for c in table.columns if c not in order]
    table = table[[c for c in order if c in table.columns] + rest]
    units = {"area_ha": "ha", "stock_bef_tco2e": "tCO2e (IPCC/CCER BEF method)",
             "stock_fang_tco2e": "tCO2e (Fang et al. 2001 method)",
             "potential_sink_tco2e_per_yr": "tCO2e/yr, growth net of background mortality, no perils",
             "expected_sink_tco2e_per_yr": "tCO2e/yr, Monte Carlo mean of the first year's stock change",
             "expected_loss_tco2e_per_yr": "tCO2e/yr destroyed by perils, Monte Carlo mean",
             "*_mc_se": "Monte Carlo standard error of the mean (more paths narrow it)",
             "*_parameter_sd": "sd from the uncertain growth and peril parameters (better data would narrow it)",
             "*_kg": "integer kilograms CO2e (exact sums)"}
    return CarbonAccounts(table=table, provenance=provenance, units=units)
