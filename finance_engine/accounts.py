"""Five-level carbon accounts: province -> city -> county -> township -> village.

The bureau keeps carbon accounts at five levels. Every figure is first computed per parcel, rounded
to whole kilograms (``1e-3`` tCO2e) and held as an integer, then summed up the hierarchy: a village
is the sum of its parcels, a township the sum of its villages, and so on. Integer sums are exact,
so every level sums *exactly* from the villages up, whatever the order of addition.

Today's stock is deterministic (inventory plus the carbon conversion, by both methods; where a species
has no Fang et al. function its Fang stock is the BEF stock, and the table says how much of it is).
The expected annual sink comes from a one-year Monte Carlo run with every peril and the rotation
harvest, and carries its Monte Carlo standard error and parameter sd (with that sd's 95 % interval),
beside its parts: net change = gross growth - background mortality - peril loss - harvest. The
potential sink (the yield curves' net change, no perils, no harvest) is deterministic. None of these
is a creditable sink: no baseline, leakage or non-permanence buffer is applied.
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


#: the sink run's figures: engine metric -> account column (tCO2e/yr), and which carry the parameter sd
SINK_FIGURES: dict[str, str] = {"sink_tco2e": "expected_sink_tco2e_per_yr",
                                "growth_tco2e": "expected_growth_tco2e_per_yr",
                                "mortality_tco2e": "expected_mortality_tco2e_per_yr",
                                "loss_tco2e": "expected_loss_tco2e_per_yr",
                                "harvest_tco2e": "expected_harvest_tco2e_per_yr"}
WITH_PARAMETER_SD = ("sink_tco2e", "loss_tco2e", "harvest_tco2e")
#: the summary statistics carried into the accounts, as column suffixes
PARAMETER_SD_STATS = ("parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high")


def group_labels(table: pd.DataFrame) -> np.ndarray:
    """The engine's group label of each row of an accounts table (``province/city/...`` down to the row's
    level, ``portfolio`` for the total), as :class:`~finance_engine.simulation.aggregate.Aggregator` writes it.

    Raises
    ------
    ValueError
        Where two groups of a level share a label (a level name holding ``/``, which
        :func:`models.portfolio.validate_frame` refuses), naming both.
    """
    labels = np.full(len(table), "portfolio", dtype=object)
    level = table["level"].to_numpy()
    for depth, lv in enumerate(LEVELS, start=1):
        rows = np.flatnonzero(level == lv)
        if rows.size == 0:
            continue
        parts = table[list(LEVELS[:depth])].iloc[rows].astype(str)
        joined = parts.agg("/".join, axis=1).to_numpy(dtype=object)
        dup = pd.Series(joined).duplicated(keep=False).to_numpy()
        if dup.any():
            clash = parts[dup].sort_values(list(LEVELS[:depth]))
            first = joined[dup][0]
            same = clash[clash.agg("/".join, axis=1) == first]
            names = " and ".join(repr(tuple(r)) for r in same.itertuples(index=False))
            raise ValueError(f"{lv} groups {names} share the label {first!r}: a level name holds '/', which "
                             f"joins the levels in group labels (rename it)")
        labels[rows] = joined
    return labels


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

    Returns
    -------
    CarbonAccounts
        One row per group of every level (and the portfolio). Additive columns (tCO2e, tCO2e/yr, ha,
        parcels) sum exactly from the villages up; they are: ``stock_bef_tco2e``, ``stock_fang_tco2e``
        and ``stock_fang_bef_fallback_tco2e`` (the part of the Fang stock held by species without a Fang
        function, converted by BEF; ``stock_fang_fallback_share`` is its share), ``potential_sink_tco2e_per_yr``
        and, with a sink run, ``expected_{sink,growth,mortality,loss,harvest}_tco2e_per_yr`` with
        ``sink = growth - mortality - loss - harvest`` exactly (integer kilograms). Each expected figure
        has its ``_mc_se``; sink, loss and harvest also ``_parameter_sd`` and its 95 % interval
        ``_parameter_sd_ci95_low`` / ``_high`` (:func:`~finance_engine.simulation.summary.parameter_sd_interval`;
        a parameter sd of 0 with a Monte Carlo error above 0 is *not resolved*). ``units`` says what
        each column is; ``provenance`` records the runs and the carbon methods.
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
    # species without a Fang function are converted by BEF in the Fang column (models.carbon.carbon_factors)
    tables = params.tables
    fallback = ~tables.has_fang[portfolio.species_code] & ~tables.is_bamboo[portfolio.species_code]
    parcel["stock_fang_bef_fallback_tco2e_kg"] = np.where(fallback, parcel["stock_fang_tco2e_kg"], 0)
    fallback_species = sorted(set(portfolio.frame["species_group"].to_numpy()[fallback].tolist()))
    sim = ForestSimulator(params, portfolio)
    # the curves' net change: background mortality is inside the yield curves (models.growth); no harvest
    potential = sim.expected_annual_sink_tc_per_ha() * area * co2
    parcel["potential_sink_tco2e_per_yr_kg"] = _to_kg(potential)
    # the model and code that made the numbers, with or without the sink run
    provenance: dict[str, Any] = {"model_version": MODEL_VERSION, "code_version": code_version(),
                                  **params.provenance(), "portfolio": portfolio.source, "parcels": portfolio.n_parcels,
                                  "potential_sink_carbon_method": sim.factors.method,
                                  "stock_fang_fallback_species": fallback_species}
    res = None
    if sink_paths:
        # the engine's summaries are keyed by group labels: refuse clashing ones before the run
        for depth, lv in enumerate(LEVELS, start=1):
            group_labels(parcel[list(LEVELS[:depth])].drop_duplicates().assign(level=lv))
        res = simulate(portfolio, params, years=1, paths=sink_paths, seed=seed,
                       levels=("parcel", "portfolio", *LEVELS), keep_paths=True, workers=workers,
                       chunk_paths=chunk_paths, progress=progress, scheduler=scheduler)
        ps = res.parcel_summary.set_index("parcel_id").loc[portfolio.parcel_id]
        # sink and loss per parcel, summed up: mean_annual_sink over one year = the stock change in that year
        parcel["expected_sink_tco2e_per_yr_kg"] = _to_kg(ps["mean_annual_sink_tco2e_mean"].to_numpy())
        parcel["expected_loss_tco2e_per_yr_kg"] = _to_kg(ps["cumulative_loss_tco2e_mean"].to_numpy())
    kg_cols = [c for c in parcel.columns if c.endswith("_kg")]
    village = parcel.groupby(list(LEVELS), sort=True, as_index=False)[kg_cols].sum()
    if res is not None:
        village_labels = group_labels(village.assign(level="village"))
        # growth and harvest per village (the engine keeps no per-parcel means of them); mortality is the
        # stock identity's residual, so net change = growth - mortality - loss - harvest holds exactly in kg
        vs = res.summary[(res.summary.level == "village") & (res.summary.year == 0)]
        for metric in ("growth_tco2e", "harvest_tco2e"):
            means = vs[vs.metric == metric].set_index("group")["mean"]
            village[f"{SINK_FIGURES[metric]}_kg"] = _to_kg(means.reindex(village_labels).to_numpy())
        village["expected_mortality_tco2e_per_yr_kg"] = (
            village["expected_growth_tco2e_per_yr_kg"] - village["expected_loss_tco2e_per_yr_kg"]
            - village["expected_harvest_tco2e_per_yr_kg"] - village["expected_sink_tco2e_per_yr_kg"])
        kg_cols = [c for c in village.columns if c.endswith("_kg")]
        provenance.update({k: res.provenance[k] for k in ("model_version", "code_version", "seed", "paths",
                                                          "perils", "climate_pathway", "start_year")})
        provenance["sink_carbon_method"] = res.provenance["carbon_method"]
    table = roll_up(village, kg_cols)
    for c in kg_cols:
        table[c[:-3]] = table[c] / KG_PER_T
    table["parcels"] = (table["parcels_kg"] // KG_PER_T).astype(np.int64)
    table = table.drop(columns=["parcels_kg"])
    with np.errstate(divide="ignore", invalid="ignore"):
        table["stock_fang_fallback_share"] = np.where(
            table["stock_fang_tco2e_kg"] > 0,
            table["stock_fang_bef_fallback_tco2e_kg"] / table["stock_fang_tco2e_kg"].where(
                table["stock_fang_tco2e_kg"] > 0, 1), np.nan)
    if res is not None:
        labels = group_labels(table)
        year0 = res.summary[res.summary.year == 0]
        for metric, name in SINK_FIGURES.items():
            stats = ("mc_se", *PARAMETER_SD_STATS) if metric in WITH_PARAMETER_SD else ("mc_se",)
            rows = year0[year0.metric == metric]
            for stat in stats:
                # one value per (level, group): the labels are unique within a level (group_labels)
                by = rows.set_index(["level", "group"])[stat]
                table[f"{name}_{stat}"] = by.reindex(pd.MultiIndex.from_arrays(
                    [table["level"].to_numpy(), labels])).to_numpy(dtype=float)
    figures = [f for m, n in SINK_FIGURES.items()
               for f in (n, f"{n}_mc_se",
                         *((f"{n}_{s}" for s in PARAMETER_SD_STATS) if m in WITH_PARAMETER_SD else ()))]
    order = ["level", *LEVELS, "parcels", "area_ha", "stock_bef_tco2e", "stock_fang_tco2e",
             "stock_fang_bef_fallback_tco2e", "stock_fang_fallback_share", "potential_sink_tco2e_per_yr", *figures]
    rest = [c for c in table.columns if c not in order]
    table = table[[c for c in order if c in table.columns] + rest]
    method = provenance.get("sink_carbon_method", sim.factors.method).upper()
    fallback_text = (f"; species without a Fang function are converted by BEF ({', '.join(fallback_species)} here: "
                     f"see stock_fang_bef_fallback_tco2e)" if fallback_species else
                     "; every tree species here has a Fang function")
    units = {"area_ha": "ha", "stock_bef_tco2e": "tCO2e (IPCC/CCER BEF method)",
             "stock_fang_tco2e": f"tCO2e (Fang et al. 2001 method{fallback_text})",
             "stock_fang_bef_fallback_tco2e": "tCO2e, the part of stock_fang_tco2e converted by BEF (species without "
                                              "a Fang function)",
             "stock_fang_fallback_share": "share of stock_fang_tco2e converted by BEF (0-1; empty without stock)",
             "potential_sink_tco2e_per_yr": f"tCO2e/yr, the yield curves' first-year net change (growth net of "
                                            f"background mortality) without perils and without harvest: a stand at "
                                            f"its rotation age counts as growing on ({method} method)",
             "expected_sink_tco2e_per_yr": f"tCO2e/yr, Monte Carlo mean of the first year's net stock change, with "
                                           f"every peril and the rotation harvest ({method} method): "
                                           f"net change = growth - mortality - loss - harvest (exactly, in integer kg)",
             "expected_growth_tco2e_per_yr": "tCO2e/yr, gross growth (the curves' net change plus background "
                                             "mortality), Monte Carlo mean",
             "expected_mortality_tco2e_per_yr": "tCO2e/yr, background mortality (inside the yield curves, reported "
                                                "beside them), Monte Carlo mean",
             "expected_loss_tco2e_per_yr": "tCO2e/yr destroyed by perils, Monte Carlo mean",
             "expected_harvest_tco2e_per_yr": "tCO2e/yr removed by clear-fell at the rotation age, Monte Carlo mean",
             "expected_*": "stock changes of the forest, not creditable sinks: no baseline, leakage or "
                           "non-permanence buffer is applied (simulate's credits_issued_tco2e applies them)",
             "*_mc_se": "Monte Carlo standard error of the mean (more paths narrow it)",
             "*_parameter_sd": "sd from the uncertain growth and peril parameters (better data would narrow it); "
                               "0 with a Monte Carlo error above 0 is not resolved (the estimate fell below 0 and "
                               "was clipped: the spread is below the Monte Carlo noise at these paths)",
             "*_parameter_sd_ci95_low, *_parameter_sd_ci95_high": "95 % interval of the parameter sd (modified "
                               "large-sample interval of the between-set variance component; more paths narrow it)",
             "*_kg": "integer kilograms CO2e (exact sums)"}
    return CarbonAccounts(table=table, provenance=provenance, units=units)
