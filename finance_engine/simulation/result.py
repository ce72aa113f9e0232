"""The result of a simulation: summaries with their uncertainty, loss tables and provenance."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from finance_engine.simulation.chunk import (PARCEL_METRICS, ChunkResult, EngineSetup, reduce_block_moments,
                                             reduce_pair_moments, reduce_short_sets)
from finance_engine.simulation.summary import (
    horizon_metric_names,
    horizon_per_path,
    moments_from_sums,
    nested_moments,
    summarise_moments,
    summarise_per_path,
)
from models import MODEL_VERSION
from models.dynamics import recorded_block_size


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the code that ran (``unknown`` outside a checkout)."""
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5)
        if out.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def start_stock_of(initial_stock: pd.DataFrame, level: str) -> pd.Series:
    """Stock at the start (tCO2e) of each group of ``level`` in an ``initial_stock`` table, indexed by group."""
    return initial_stock[initial_stock["level"] == level].set_index("group")["stock_tco2e"]


@dataclass
class SimulationResult:
    """Everything a run reports.

    Attributes
    ----------
    provenance : dict
        Model version, parameter set (region, version, SHA-256), seed, paths, years, carbon method,
        scenario, switches, crediting rules, climate pathway, perils, code version.
    metrics : tuple of str
        Names of the yearly metrics (all in tCO2e).
    summary : DataFrame
        One row per level, group, metric and year: mean, sd, ``mc_se`` (Monte Carlo standard error
        of the mean), ``parameter_sd`` (parameter uncertainty) with its 95 % interval, quantiles and TVaR.
        Levels not kept per path (more than ``MAX_GROUPS_FOR_QUANTILES`` groups, or beyond the run's per-path
        memory budget: ``provenance["levels_without_quantiles"]`` says which and why) have no quantiles or
        TVaR (NaN).
    horizon : DataFrame
        The same over the whole horizon (flows summed, stock at the end).
    parcel_summary : DataFrame or None
        Per parcel (when ``parcel`` level asked), for each horizon metric ``m`` of ``PARCEL_METRICS``:
        ``{m}_mean``, ``{m}_mc_se`` (Monte Carlo error) and ``{m}_parameter_sd`` (parameter uncertainty)
        with its 95 % interval ``{m}_parameter_sd_ci95_low`` / ``_high``.
    initial_stock : DataFrame
        Today's deterministic stock (tCO2e) by level and group.
    elt : DataFrame or None
        Event loss table: ``path``, ``year``, ``sim_year`` (= path * years + year), ``mc_block`` (= path //
        ``mc_block_paths``: the paths sharing a parameter draw or an antithetic pair, whose years are not
        independent), ``mc_block_paths`` (``switches.mc_block_size``, the same on every row), ``event_id``,
        ``peril``, ``group`` (at ``loss_table_level``), ``loss_tco2e``.
    per_path : dict
        level -> array (metric, year, path, group), kept when asked (collateral and insurance use it).
    labels : dict
        level -> group labels, in the order of the per-path arrays.
    run_info : dict
        How it ran (backend, chunks, seconds). Not part of the result's identity.
    """

    provenance: dict[str, Any]
    metrics: tuple[str, ...]
    summary: pd.DataFrame
    horizon: pd.DataFrame
    parcel_summary: pd.DataFrame | None
    initial_stock: pd.DataFrame
    elt: pd.DataFrame | None
    per_path: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    labels: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    run_info: dict[str, Any] = field(default_factory=dict)

    # ---- access ---------------------------------------------------------------------------
    def metric(self, metric: str, level: str = "portfolio", group: str | None = None) -> pd.DataFrame:
        """Rows of the yearly summary for one metric (and group)."""
        df = self.summary[(self.summary["metric"] == metric) & (self.summary["level"] == level)]
        if group is not None:
            df = df[df["group"] == group]
        if df.empty:
            raise KeyError(f"no summary for metric {metric!r} at level {level!r}")
        return df.reset_index(drop=True)

    def start_stock(self, level: str = "portfolio") -> pd.Series:
        """Today's deterministic stock (tCO2e) of each group of ``level``, indexed by group."""
        return start_stock_of(self.initial_stock, level)

    def paths_of(self, metric: str, level: str = "portfolio") -> np.ndarray:
        """Per-path values (year, path, group) of one metric at a level kept with ``keep_paths``."""
        if level not in self.per_path:
            raise KeyError(f"per-path values of level {level!r} were not kept")
        return self.per_path[level][self.metrics.index(metric)]

    def year_loss_table(self, level: str = "portfolio") -> pd.DataFrame:
        """Year loss table: one row per path and year (and group), total and per-peril losses; ``mc_block`` and
        ``mc_block_paths`` as in the event loss table (the paths whose years are not independent of each other)."""
        arr = self.per_path.get(level)
        if arr is None:
            raise KeyError(f"per-path values of level {level!r} were not kept")
        years, paths, groups = arr.shape[1:]
        y, p, g = np.meshgrid(np.arange(years), np.arange(paths), np.arange(groups), indexing="ij")
        b = recorded_block_size(self.provenance.get("switches") or {})
        df = pd.DataFrame({"path": p.ravel(), "year": y.ravel(),
                           "sim_year": (p * years + y).ravel(), "mc_block": (p // b).ravel(),
                           "mc_block_paths": np.full(p.size, b, np.int64), "group": self.labels[level][g.ravel()]})
        for m in self.metrics:
            if m.startswith("loss"):
                df[m] = arr[self.metrics.index(m)].ravel()
        return df.sort_values(["path", "year", "group"], kind="mergesort").reset_index(drop=True)

    # ---- serialisation ----------------------------------------------------------------------
    def to_dict(self, include_summary: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"provenance": self.provenance, "metrics": list(self.metrics),
                             "initial_stock": self.initial_stock.to_dict(orient="records"),
                             "run_info": self.run_info}
        if include_summary:
            d["summary"] = self.summary.to_dict(orient="records")
            d["horizon"] = self.horizon.to_dict(orient="records")
            if self.parcel_summary is not None:
                d["parcel_summary"] = self.parcel_summary.to_dict(orient="records")
        if self.elt is not None:
            d["event_loss_table_rows"] = int(len(self.elt))
        return d

    #: the tables :meth:`write` may write (each as ``<name>.csv`` or ``<name>.parquet``)
    TABLE_NAMES = ("summary", "horizon", "initial_stock", "parcel_summary", "event_loss_table", "year_loss_table")

    def write(self, directory: str | Path, fmt: str = "csv") -> list[Path]:
        """Write summary, horizon, loss tables and provenance (CSV or Parquet) into a directory.

        Tables of an earlier run in the folder that this run does not write (another format, a loss table
        it was not asked for) are removed first, so the folder never mixes two runs' files beside one
        provenance; other files are left alone.
        """
        if fmt not in ("csv", "parquet"):
            raise ValueError("fmt must be csv or parquet")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name in self.TABLE_NAMES:
            for suffix in ("csv", "parquet"):
                (out / f"{name}.{suffix}").unlink(missing_ok=True)
        tables = {"summary": self.summary, "horizon": self.horizon, "initial_stock": self.initial_stock}
        if self.parcel_summary is not None:
            tables["parcel_summary"] = self.parcel_summary
        if self.elt is not None:
            tables["event_loss_table"] = self.elt
        if "portfolio" in self.per_path:
            tables["year_loss_table"] = self.year_loss_table("portfolio")
        written = []
        for name, df in tables.items():
            p = out / f"{name}.{fmt}"
            if fmt == "csv":
                df.to_csv(p, index=False)
            else:
                df.to_parquet(p, index=False)
            written.append(p)
        p = out / "provenance.json"
        p.write_text(json.dumps({"provenance": self.provenance, "run_info": self.run_info}, indent=2,
                                ensure_ascii=False, default=str), encoding="utf-8")
        written.append(p)
        return written


def switches_dict(sw) -> dict[str, Any]:
    """A run's :class:`~models.dynamics.SimulationSwitches` as provenance (JSON-ready)."""
    d = dataclasses.asdict(sw)
    d["perils"] = list(d["perils"]) if d["perils"] is not None else None
    return d


class ChunkStore(dict):
    """Finished chunks by index, their per-path arrays moved into whole-run arrays on arrival.

    Each chunk's (metrics, years, chunk paths, groups) array is copied into its paths' slice of one
    preallocated (metrics, years, paths, groups) array per level and dropped from the chunk, so the
    run holds the per-path results once (not once in the chunks and again when they are joined).
    Chunks that run in this process write into their slices directly (:meth:`views`). The values
    are the same as joining the chunks in path order.
    """

    def __init__(self, setup: EngineSetup):
        super().__init__()
        cfg = setup.config
        self._views: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        # zero-filled: a chunk leaves the credit metrics of years without issuance at zero; only the levels the
        # run's per-path budget admits (EngineSetup.per_path_plan)
        self.per_path = {lv: np.zeros((len(setup.metrics), cfg.years, cfg.paths,
                                       setup.aggregator.groups[lv].n_groups)) for lv in setup.summary_levels}

    def views(self, path_start: int, path_stop: int) -> dict[str, np.ndarray]:
        """The slices of paths ``path_start .. path_stop-1``, for :func:`run_chunk`'s ``out``."""
        v = {lv: arr[:, :, path_start:path_stop] for lv, arr in self.per_path.items()}
        self._views[(path_start, path_stop)] = v
        return v

    def __setitem__(self, index: int, chunk: ChunkResult) -> None:
        given = self._views.pop((chunk.path_start, chunk.path_stop), {})
        if chunk.per_path is not None:  # None: written in place into these arrays (the warm pool's shared file)
            for lv, arr in self.per_path.items():
                part = chunk.per_path[lv]
                if part is not given.get(lv):  # computed elsewhere (another process): copy it in
                    arr[:, :, chunk.path_start:chunk.path_stop] = part
        chunk.per_path = {}
        super().__setitem__(index, chunk)


#: the statistics of each horizon metric in a parcel summary (columns ``{metric}_{statistic}``)
PARCEL_STATISTICS = ("mean", "mc_se", "parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high")

#: provenance a derived result (a valuation, a quote, a stress test) carries over from its engine run
CARRIED_PROVENANCE = ("region", "parameter_version", "parameter_sha256", "parameter_variant", "perils",
                      "climate_pathway", "start_year", "carbon_method", "model_notes", "crediting")


def carried_provenance(provenance: dict[str, Any], keys: tuple[str, ...] = CARRIED_PROVENANCE) -> dict[str, Any]:
    """The engine run's ``keys`` that a result built on it records (those the run has: a parameter
    variant only when the parameters were derived in memory)."""
    return {k: provenance[k] for k in keys if k in provenance}


def assemble_result(setup: EngineSetup, store: ChunkStore, chunk_order: list[int], *, keep_paths: bool,
                    run_info: dict[str, Any], summarise: bool = True,
                    check: Callable[..., None] | None = None) -> SimulationResult:
    """The run's result from its finished chunks (``store``, taken in ``chunk_order``, i.e. path order).

    ``check`` is called before each level is summarised (and before the parcel summary and the loss table),
    with the level's name for a level kept per path (``check(level)``), else with no argument: it may report
    progress and raise to stop (the engine's cancel, :class:`~finance_engine.simulation.SimulationCancelled`).
    """
    check = check or (lambda *_: None)
    chunks = [store[i] for i in chunk_order]
    cfg = setup.config
    sim = setup.simulator
    metrics = setup.metrics
    sw = cfg.switches
    # parameter sd only where some parameter is drawn per set (sw.draws_parameters): with every part of
    # parameter uncertainty off the paths are those of parameter_uncertainty=False, and so is the report
    frames, hframes = [], []
    per_path: dict[str, np.ndarray] = {}
    labels: dict[str, np.ndarray] = {}
    for lv in setup.summary_levels:
        arr = store.per_path[lv]
        lab = setup.aggregator.groups[lv].labels
        labels[lv] = lab
        if keep_paths:
            per_path[lv] = arr
        if not summarise:
            continue
        check(lv)
        frames.append(summarise_per_path(arr, metrics, lab, lv, cfg.start_year, sw.parameter_set_size,
                                         sw.draws_parameters, cfg.quantiles, cfg.tail_levels, sw.antithetic))
        harr, hnames = horizon_per_path(arr, metrics)
        hdf = summarise_per_path(harr, hnames, lab, lv, cfg.start_year, sw.parameter_set_size,
                                 sw.draws_parameters, cfg.quantiles, cfg.tail_levels, sw.antithetic)
        hframes.append(hdf.drop(columns=["year", "calendar_year"]))
    # the short last set's parts (one chunk's, or, with sets straddling blocks, maybe two chunks'), in path order
    short = {k: reduce_short_sets([c.short_set[k] for c in chunks if k in c.short_set])
             for k in {k for c in chunks for k in c.short_set}}

    def block_sums(parts: list[np.ndarray]) -> np.ndarray:
        return reduce_block_moments(np.concatenate(parts, axis=0), cfg.paths, sw.parameter_set_size)

    def pair_sums(key: str) -> np.ndarray | None:
        """With antithetic pairs, the run's squared pair sums of ``key`` (the parameter sd's within-set spread)."""
        if not setup.streams_pairs:
            return None
        return reduce_pair_moments(np.concatenate([c.pair_moments[key] for c in chunks], axis=0))

    for lv in setup.moment_levels:
        check()
        sums = block_sums([c.block_moments[lv] for c in chunks])
        lab = setup.aggregator.groups[lv].labels
        labels[lv] = lab
        frames.append(summarise_moments(sums, cfg.paths, metrics, lab, lv, cfg.start_year, sw.parameter_set_size,
                                        sw.draws_parameters, short.get(lv), pair_sums(lv)))
        hkey = f"{lv}:horizon"
        hsums = block_sums([c.block_moments[hkey] for c in chunks])
        hdf = summarise_moments(hsums, cfg.paths, horizon_metric_names(metrics), lab, lv, cfg.start_year,
                                sw.parameter_set_size, sw.draws_parameters, short.get(hkey), pair_sums(hkey))
        hframes.append(hdf.drop(columns=["year", "calendar_year"]))
    summary = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    horizon = pd.concat(hframes, ignore_index=True) if hframes else pd.DataFrame()

    parcel_summary = None
    if "parcel" in cfg.levels:
        check()
        mo = moments_from_sums(block_sums([c.parcel_moments for c in chunks]), cfg.paths,  # (3, metrics, parcels)
                               sw.parameter_set_size,
                               sw.draws_parameters, short.get("parcel"), pair_sums("parcel"))
        # both kinds of uncertainty, apart: the Monte Carlo error (more paths narrow it) and the parameter sd
        # with its interval (better data would narrow it), as at every other level
        cols: dict[str, Any] = {"parcel_id": setup.portfolio.parcel_id}
        for i, m in enumerate(PARCEL_METRICS):
            for stat in PARCEL_STATISTICS:
                cols[f"{m}_{stat}"] = mo[stat][i]
        parcel_summary = pd.DataFrame(cols)

    init_rows = []
    for lv, vals in chunks[0].initial_stock.items():
        if lv in cfg.levels:
            for g, v in zip(setup.aggregator.groups[lv].labels, vals):
                init_rows.append({"level": lv, "group": g, "stock_tco2e": float(v)})
    if "parcel" in cfg.levels:
        co2 = setup.params.file.carbon.co2_per_c.value
        parcel_stock = sim.initial_carbon_tc_per_ha() * setup.portfolio.area_ha * co2
        init_rows.extend({"level": "parcel", "group": g, "stock_tco2e": float(v)}
                         for g, v in zip(setup.portfolio.parcel_id, parcel_stock))
    initial_stock = pd.DataFrame(init_rows, columns=["level", "group", "stock_tco2e"])

    elt = None
    if cfg.loss_table_level is not None:
        check()
        parts = [c.elt for c in chunks if c.elt is not None]
        raw = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        code_to_name = {p.code: p.name for p in sim.perils}
        order = np.lexsort((raw["group"], raw["event"], raw["peril_code"], raw["year"], raw["path"]))
        path = raw["path"][order]
        year = raw["year"][order]
        pc = raw["peril_code"][order]
        ev = raw["event"][order]
        # event ids unique within the run: (path, year, peril, event)
        event_id = ((path * cfg.years + year) * 64 + pc) * 1_000_000 + ev
        elt = pd.DataFrame({
            "path": path, "year": year, "sim_year": path * cfg.years + year,
            # the block of paths whose draws are not independent (a parameter set, an antithetic pair): errors
            # of figures priced on this table count blocks (finance_engine.insurance.tables.mc_block_years)
            "mc_block": path // sw.mc_block_size, "mc_block_paths": np.full(path.size, sw.mc_block_size, np.int64),
            "event_id": event_id,
            "peril": pd.Categorical([code_to_name.get(int(c), str(c)) for c in pc]) if pc.size else
            pd.Categorical([]),
            "group": setup.aggregator.groups[cfg.loss_table_level].labels[raw["group"][order]],
            "loss_tco2e": raw["loss_tco2e"][order],
        })

    p = setup.params
    provenance = {
        "model_version": MODEL_VERSION,
        "code_version": code_version(),
        "region": p.region,
        "parameter_version": p.version,
        "parameter_sha256": p.sha256,
        **({"parameter_variant": p.variant} if p.variant else {}),
        "seed": cfg.seed,
        "paths": cfg.paths,
        "years": cfg.years,
        "start_year": cfg.start_year,
        "carbon_method": cfg.carbon_method,
        "scenario": cfg.scenario,
        "climate_pathway": sim.climate_pathway,
        "perils": sim.peril_names,
        # what the perils record about their set-up for this portfolio (pine wilt: hosts outside the landscape)
        "model_notes": sim.notes(),
        "switches": switches_dict(sw),
        "crediting": dataclasses.asdict(setup.crediting),
        "levels": list(cfg.levels),
        # levels summarised from streamed moments only (no quantiles or TVaR) and why: too many groups, or
        # per-path values beyond the run's memory budget (EngineSetup.per_path_plan)
        "levels_without_quantiles": dict(setup.per_path_plan.without),
        "portfolio": {"source": setup.portfolio.source, "parcels": setup.portfolio.n_parcels,
                      "area_ha": float(setup.portfolio.area_ha.sum())},
    }
    return SimulationResult(provenance=provenance, metrics=metrics, summary=summary, horizon=horizon,
                            parcel_summary=parcel_summary, initial_stock=initial_stock, elt=elt,
                            per_path=per_path, labels=labels, run_info=run_info)


__all__ = ["ChunkStore", "PARCEL_STATISTICS", "SimulationResult", "assemble_result", "code_version", "nested_moments",
           "start_stock_of"]
