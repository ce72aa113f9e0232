"""One chunk of paths: run the stand simulator and reduce it to what the run reports.

A chunk is a contiguous range of global path indices made of whole ``PATH_BLOCK`` blocks. It
returns, for the levels kept per path (:func:`plan_per_path`: at most ``MAX_GROUPS_FOR_QUANTILES``
groups, within the run's per-path memory budget), every path's value of every metric and year; for
the other levels (many groups, a budget exceeded, or parcels) only sums and sums of squares per path
block. Nothing it returns grows with parcels x paths, and nothing depends on which other paths share
the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from finance_engine.simulation._kernels import issuance_changes, issuance_shares
from finance_engine.simulation.aggregate import Aggregator
from finance_engine.simulation.config import (MAX_GROUPS_FOR_QUANTILES, PATH_BLOCK, PER_PATH_BUDGET_BYTES,
                                              SimulationConfig)
from finance_engine.simulation.summary import horizon_per_path
from models.carbon import CreditingRules
from models.dynamics import ForestSimulator, GroupSums
from models.parameters import ModelParameters
from models.portfolio import Portfolio
from models.rng import KeyedRandom

BASE_METRICS: tuple[str, ...] = (
    "stock_tco2e",           # carbon stock at the end of the year
    "sink_tco2e",            # net change of the stock during the year (end - start)
    "growth_tco2e",          # gross growth
    "mortality_tco2e",       # background mortality
    "loss_tco2e",            # carbon destroyed by all perils
    "harvest_tco2e",         # carbon removed by clear-fell at the rotation age
)
CREDIT_METRICS: tuple[str, ...] = ("credits_issued_tco2e", "buffer_withheld_tco2e")
# horizon metrics kept per parcel (means and standard errors only)
PARCEL_METRICS: tuple[str, ...] = ("stock_end_tco2e", "cumulative_loss_tco2e", "cumulative_credits_tco2e",
                                   "mean_annual_sink_tco2e")
# loss metrics are read from the upper tail, the others from the lower tail
UPPER_TAIL_PREFIX = "loss"


def metric_names(peril_names: list[str]) -> tuple[str, ...]:
    return (*BASE_METRICS, *(f"loss_{p}_tco2e" for p in peril_names), *CREDIT_METRICS)


def per_path_bytes(n_metrics: int, years: int, paths: int, n_groups: int) -> int:
    """Bytes of one level's per-path values: a float64 (metrics, years, paths, groups) array.

    >>> round(per_path_bytes(13, 30, 10_000, 144) / 2**30, 1)  # a city run's townships
    4.2
    """
    return 8 * int(n_metrics) * int(years) * int(paths) * int(n_groups)


def format_bytes(n: float) -> str:
    """``n`` bytes for a message: GiB to one decimal from 1 GiB, else MiB (KiB below 1 MiB)."""
    if n >= 2**30:
        return f"{n / 2**30:.1f} GiB"
    if n >= 10 * 2**20:
        return f"{n / 2**20:.0f} MiB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.0f} KiB"


#: the summary's working copies while it summarises a level kept per path (``summarise_per_path`` works metric by
#: metric: a metric's sort, deviations, tail and set arrays; and the tables it builds), in units of one metric's
#: per-path values: the extra peak of a whole run's summary (tracemalloc over ``assemble_result``; one level of 40
#: groups; 1-30 years, 1,024-32,768 paths) was 4.9 with independent paths and 6.5-8.1 with parameter sets
#: (``summarise_per_path`` alone: 4.7 and 5.4-6.2); a margin above it
SUMMARY_TEMP_METRICS = 9


def summary_transient_bytes(n_metrics: int, years: int, nbytes: int) -> int:
    """The summary's transient memory for a level of ``nbytes`` per-path values (:func:`per_path_bytes`), beyond
    them: the larger of its yearly tables' ``SUMMARY_TEMP_METRICS`` working copies of one metric, and its
    horizon tables' (the whole-horizon array, one year's worth of every metric, with the same copies of one
    metric's horizon values; a one-year run's horizon values are its yearly ones, no array). Levels are
    summarised one after another, so a run's summary needs this for its largest kept level only.

    >>> round(summary_transient_bytes(13, 30, 4.2 * 2**30) / 2**30, 1)  # a city run's townships
    2.9
    """
    nbytes, years = int(nbytes), max(1, int(years))
    yearly = SUMMARY_TEMP_METRICS * (nbytes // max(1, int(n_metrics)))
    horizon = (nbytes + yearly) // years if years > 1 else 0
    return max(yearly, horizon)


@dataclass(frozen=True)
class PerPathPlan:
    """Which levels of a run keep every path's values (quantiles, TVaR) and why the others do not.

    ``levels``: kept per path, in the order asked; ``without``: level -> the reason it is summarised from
    streamed moments only (``parcel`` never appears: parcels always are); ``nbytes``: the kept levels' per-path
    arrays together; ``budget``: the budget they were admitted within (bytes)."""

    levels: tuple[str, ...]
    without: dict[str, str]
    nbytes: int
    budget: int


def plan_per_path(levels: tuple[str, ...], n_groups: Mapping[str, int], n_metrics: int, years: int, paths: int,
                  budget_bytes: int | None = None, max_groups: int | None = None) -> PerPathPlan:
    """The levels a run keeps per path (:class:`PerPathPlan`).

    The ``portfolio`` level (one group) is always kept, whatever the budget: the loan, the quote and the year
    loss table read its per-path values (its bytes count towards the budget the other levels share). The
    other levels (``parcel`` aside) are admitted coarse to fine -- fewest groups first, levels of as many
    groups in the order asked -- while their per-path arrays (:func:`per_path_bytes`), with the summary's
    transient memory for the largest of them (:func:`summary_transient_bytes`), stay within ``budget_bytes``
    together (default ``PER_PATH_BUDGET_BYTES``) and the level has at most ``max_groups`` groups (default
    ``MAX_GROUPS_FOR_QUANTILES``, read when called). Every other level is summarised from streamed moments:
    mean, ``mc_se``, ``parameter_sd`` and its interval, no quantiles or TVaR.
    """
    budget = PER_PATH_BUDGET_BYTES if budget_bytes is None else int(budget_bytes)
    cap = MAX_GROUPS_FOR_QUANTILES if max_groups is None else int(max_groups)
    asked = [lv for lv in dict.fromkeys(levels) if lv != "parcel"]
    kept: set[str] = set()
    without: dict[str, str] = {}
    total = 0
    for lv in sorted(asked, key=lambda lv: n_groups[lv]):  # stable: ties keep the order asked
        g = int(n_groups[lv])
        need = per_path_bytes(n_metrics, years, paths, g)
        if lv == "portfolio":  # always kept (one group): what the loan, the quote and the loss table read
            kept.add(lv)
            total += need
        elif g > cap:
            without[lv] = f"{g} groups, over {cap}"
        elif total + need + summary_transient_bytes(n_metrics, years, need) > budget:
            with_coarser = f" with the {format_bytes(total)} of coarser levels" if total else ""
            temp = summary_transient_bytes(n_metrics, years, need)
            without[lv] = (f"per-path values would need {format_bytes(need)} (and {format_bytes(temp)} while "
                           f"summarised), over the {format_bytes(budget)} budget{with_coarser}")
        else:
            kept.add(lv)
            total += need
    return PerPathPlan(tuple(lv for lv in asked if lv in kept), {lv: without[lv] for lv in asked if lv in without},
                       total, budget)


@dataclass
class EngineSetup:
    """What every chunk needs, built once per process from picklable inputs."""

    params: ModelParameters
    portfolio: Portfolio
    config: SimulationConfig
    simulator: ForestSimulator = field(init=False)
    aggregator: Aggregator = field(init=False)
    crediting: CreditingRules = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        self.simulator = ForestSimulator(self.params, self.portfolio, carbon_method=c.carbon_method,
                                         switches=c.switches, modifiers=c.modifiers, start_year=c.start_year)
        levels = tuple(dict.fromkeys((*c.levels, "project_id")))
        if c.loss_table_level is not None:
            levels = tuple(dict.fromkeys((*levels, c.loss_table_level)))
        self.aggregator = Aggregator(self.portfolio, levels)
        self.crediting = CreditingRules.from_parameters(self.params, start_year=c.start_year, **c.crediting)
        co2 = self.params.file.carbon.co2_per_c.value
        self.weight = self.portfolio.area_ha * co2  # tC/ha -> tCO2e per parcel
        self.metrics = metric_names(self.simulator.peril_names)
        self._plan: tuple[Any, PerPathPlan] | None = None
        proj = self.aggregator.groups["project_id"]
        self.project_of_parcel = proj.parcel_group
        self.n_projects = proj.n_groups
        self.project_is_credited = np.array([str(lbl) != "" for lbl in proj.labels], dtype=float)

    @property
    def per_path_plan(self) -> PerPathPlan:
        """The run's levels kept per path (:func:`plan_per_path`), from this set-up's config (the set-up is
        shared by runs of other path counts and horizons: computed per config, not once)."""
        c = self.config
        key = (c.levels, c.years, c.paths, c.per_path_budget_bytes, MAX_GROUPS_FOR_QUANTILES)
        if self._plan is None or self._plan[0] != key:
            groups = {lv: self.aggregator.groups[lv].n_groups for lv in c.levels if lv != "parcel"}
            self._plan = (key, plan_per_path(c.levels, groups, len(self.metrics), c.years, c.paths,
                                             c.per_path_budget_bytes, MAX_GROUPS_FOR_QUANTILES))
        return self._plan[1]

    @property
    def summary_levels(self) -> tuple[str, ...]:
        """Levels whose every path's values are kept (quantiles, TVaR), in the order asked."""
        return self.per_path_plan.levels

    @property
    def moment_levels(self) -> tuple[str, ...]:
        """Levels (parcels aside) summarised from streamed moments only."""
        kept = self.per_path_plan.levels
        return tuple(lv for lv in self.config.levels if lv != "parcel" and lv not in kept)

    @property
    def streams_pairs(self) -> bool:
        """Whether streamed moments also keep the antithetic pairs' squared sums (:func:`_pair_square_sums`):
        with antithetic pairs inside parameter sets the parameter sd is decomposed on pair means."""
        sw = self.config.switches
        return bool(sw.antithetic and sw.draws_parameters)

    @property
    def peril_codes(self) -> dict[str, int]:
        return {p.name: p.code for p in self.simulator.perils}


@dataclass
class ChunkResult:
    index: int
    path_start: int
    path_stop: int
    per_path: dict[str, np.ndarray] | None    # level -> (n_metrics, years, n_paths, n_groups); None: written in place
    # level -> (n_blocks, 3, n_metrics, years, n_groups); "<level>:horizon" -> (n_blocks, 3, n_metrics, 1, n_groups)
    # (5 rows instead of 3 when parameter sets straddle blocks: :func:`_block_sums`)
    block_moments: dict[str, np.ndarray]
    parcel_moments: np.ndarray | None         # (n_blocks, 3 or 5, n_parcel_metrics, n_parcels)
    elt: dict[str, np.ndarray] | None
    initial_stock: dict[str, np.ndarray]      # level -> (n_groups,)
    # the short last parameter set's sum and sum of squares per path block of the chunk that holds some of it
    # ((k, 2, ...), :func:`_short_set_sums`): key = level, or "parcel" for the parcel moments
    short_set: dict[str, np.ndarray] = field(default_factory=dict)
    # with antithetic pairs (EngineSetup.streams_pairs): per path block, the sum of the complete sets' pairs'
    # squared pair sums ((n_blocks, ...), :func:`_pair_square_sums`), keyed as block_moments (and "parcel")
    pair_moments: dict[str, np.ndarray] = field(default_factory=dict)


def _block_sums(values: np.ndarray, path_start: int, n_paths_total: int, set_size: int) -> np.ndarray:
    """Moment sums of ``values`` (n_paths, ...) over each PATH_BLOCK of paths.

    Per block: the sum, the sum of squares, and the sum of squared *set sums* over the complete
    parameter sets that lie wholly in the block (paths ``k*set_size .. (k+1)*set_size-1``; the nested
    design of :class:`~models.dynamics.SimulationSwitches`), from which :func:`summarise_moments` gives
    the same nested standard error and parameter sd as :func:`nested_moments` gives from every path.

    When ``set_size`` does not divide PATH_BLOCK some sets straddle blocks (and chunks): each block then
    also keeps the sum of its paths of the set that began in an earlier block (row 3, the *head*) and of
    the set that begins in it and runs on past it (row 4, the *tail*; a set longer than a block that
    covers it whole is its head). :func:`reduce_block_moments` joins those parts into the straddling sets'
    sums in path order. Only complete sets count (the short last set has its own sums,
    :func:`_short_set_sums`).

    Blocks are global (paths ``b*PATH_BLOCK .. (b+1)*PATH_BLOCK-1``); the chunk starts on a block
    boundary and only the run's last block may be short. Each block is reduced on its own, so its
    sums do not depend on the other blocks of the chunk.
    """
    n = values.shape[0]
    bounds = list(range(0, n, PATH_BLOCK)) + [n]
    m = int(set_size)
    nested = PATH_BLOCK % m == 0
    out = np.empty((len(bounds) - 1, 3 if nested else 5, *values.shape[1:]))
    complete_end = (n_paths_total // m) * m - path_start  # chunk-relative end of the last complete set
    for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):  # loop over blocks, not paths
        rows = values[lo:hi]
        out[b, 0] = rows.sum(axis=0)
        out[b, 1] = (rows * rows).sum(axis=0)
        if nested:
            k = max(0, min(hi, complete_end) - lo) // m  # complete sets in this block
            sets = rows[:k * m].reshape(k, m, *values.shape[1:]).sum(axis=1)
            out[b, 2] = (sets * sets).sum(axis=0)
            continue
        end = max(lo, min(hi, complete_end))  # the block's paths that belong to complete sets: lo .. end-1
        first = -(-(path_start + lo) // m) * m - path_start  # the first set that starts in the block or after
        k = max(0, end - first) // m  # sets wholly in the block
        sets = values[first:first + k * m].reshape(k, m, *values.shape[1:]).sum(axis=1)
        out[b, 2] = (sets * sets).sum(axis=0)
        head_stop = min(first, end)
        out[b, 3] = values[lo:head_stop].sum(axis=0) if head_stop > lo else 0.0
        tail = first + k * m
        out[b, 4] = values[tail:end].sum(axis=0) if end > tail else 0.0
    return out


def _pair_square_sums(values: np.ndarray, path_start: int, n_paths_total: int, set_size: int) -> np.ndarray:
    """Per PATH_BLOCK of ``values`` (n_paths, ...): the sum over the antithetic pairs (paths ``2j, 2j+1``) of
    complete parameter sets in the block of the squared pair sum (n_blocks, ...).

    With antithetic pairs inside the sets a pair's mirrored shocks cancel in its mean, so the paths of a set
    are not exchangeable: the within-set spread that the parameter sd is measured against is that of the
    pair means (:func:`finance_engine.simulation.summary.moments_from_sums`). Sets start on even paths and
    blocks on multiples of PATH_BLOCK (even), so no pair straddles a block; the blocks' sums are added in
    block order (:func:`reduce_pair_moments`)."""
    n = values.shape[0]
    bounds = list(range(0, n, PATH_BLOCK)) + [n]
    complete_end = (n_paths_total // int(set_size)) * int(set_size) - path_start  # even: sets are of even size
    out = np.zeros((len(bounds) - 1, *values.shape[1:]))
    for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        end = min(hi, complete_end)
        if end - lo >= 2:
            k = (end - lo) // 2
            pairs = values[lo:lo + 2 * k].reshape(k, 2, *values.shape[1:]).sum(axis=1)
            out[b] = (pairs * pairs).sum(axis=0)
    return out


def reduce_pair_moments(blocks: np.ndarray) -> np.ndarray:
    """The run's squared pair sums from every block's :func:`_pair_square_sums`, in block (path) order."""
    return blocks.sum(axis=0)


def reduce_block_moments(blocks: np.ndarray, n_paths_total: int, set_size: int) -> np.ndarray:
    """The run's (3, ...) moment sums from every block's :func:`_block_sums` in path order.

    The sums of the blocks are added in block order. With sets straddling blocks (``set_size`` not
    dividing PATH_BLOCK) each straddling set's sum is its blocks' parts added in path order, and its
    square joins the third sum; so the sums are the same whichever chunks the blocks ran in.
    """
    if blocks.shape[1] == 3:
        return blocks.sum(axis=0)
    m = int(set_size)
    sums = blocks[:, :3].sum(axis=0)
    complete = (n_paths_total // m) * m
    q = np.zeros(blocks.shape[2:])
    open_sum = None
    for b in range(blocks.shape[0]):
        lo = b * PATH_BLOCK
        end = min(lo + PATH_BLOCK, complete)
        if lo >= end:
            break
        first = -(-lo // m) * m
        if first > lo:  # the head: the rest (or more) of the set that began in an earlier block
            open_sum = open_sum + blocks[b, 3]
            if first <= end:  # ... and ends in this block
                q += open_sum * open_sum
                open_sum = None
        if first + max(0, end - first) // m * m < end:  # the tail: a set that begins here and runs on
            open_sum = blocks[b, 4].copy()
    sums[2] += q
    return sums


def _short_set_sums(values: np.ndarray, path_start: int, n_paths_total: int, set_size: int) -> np.ndarray | None:
    """Sum and sum of squares of this chunk's paths of the run's short last parameter set, one pair per path
    block that holds some (k, 2, ...); None when the chunk holds none. A set that does not divide PATH_BLOCK
    may straddle blocks and chunks: the run's short-set sums are the parts of every chunk, in path order,
    added (:func:`reduce_short_sets`)."""
    first = (n_paths_total // set_size) * set_size  # the short set's first path
    n = values.shape[0]
    lo = max(first - path_start, 0)
    if first == n_paths_total or lo >= n:
        return None
    parts = []
    while lo < n:
        hi = min(n, (lo // PATH_BLOCK + 1) * PATH_BLOCK)  # to the end of the block (chunks start on one)
        rows = values[lo:hi]
        parts.append(np.stack([rows.sum(axis=0), (rows * rows).sum(axis=0)]))
        lo = hi
    return np.stack(parts)


def reduce_short_sets(parts: list[np.ndarray]) -> np.ndarray | None:
    """The short last set's (2, ...) sums from the chunks' :func:`_short_set_sums` in path order."""
    if not parts:
        return None
    blocks = np.concatenate(parts, axis=0)
    return blocks[0] if blocks.shape[0] == 1 else blocks.sum(axis=0)


def run_chunk(setup: EngineSetup, index: int, path_start: int, path_stop: int,
              cancelled: Any = None, out: dict[str, np.ndarray] | None = None) -> ChunkResult:
    """Simulate paths ``path_start .. path_stop-1`` and reduce them.

    ``out`` (level -> zero-filled (metrics, years, chunk paths, groups) array, for the levels of
    ``setup.summary_levels``) receives the per-path results in place: a chunk running in the
    process that holds the run's arrays writes straight into them.
    """
    if path_start % PATH_BLOCK or ((path_stop - path_start) % PATH_BLOCK and path_stop != setup.config.paths):
        raise ValueError("chunks must consist of whole path blocks (only the last may be short)")
    cfg = setup.config
    sim, agg = setup.simulator, setup.aggregator
    n_paths = path_stop - path_start
    years = cfg.years
    metrics = setup.metrics
    m_index = {m: i for i, m in enumerate(metrics)}
    perils = sim.peril_names
    rnd = KeyedRandom(cfg.seed, np.arange(path_start, path_stop, dtype=np.int64), setup.portfolio.keys)
    w = setup.weight

    coarse_levels = setup.summary_levels + setup.moment_levels
    per_level = {lv: (out[lv] if out is not None and lv in out
                      else np.zeros((len(metrics), years, n_paths, agg.groups[lv].n_groups)))
                 for lv in coarse_levels}

    init_c = sim.initial_carbon_tc_per_ha() * w
    initial_stock = {lv: agg.sum_dense(init_c[None, :])[lv][0] for lv in (*coarse_levels, "project_id")}
    # crediting state (project level)
    last_issue_stock = np.broadcast_to(init_c, (n_paths, init_c.size)).copy()
    deficit = np.zeros((n_paths, setup.n_projects))
    want_parcel = "parcel" in cfg.levels
    proj_change = np.empty((n_paths, setup.n_projects))
    proj_gain = np.empty((n_paths, setup.n_projects))
    credit_cells = np.empty((2, n_paths, agg.n_cells))
    cum_credit = np.zeros((n_paths, init_c.size) if want_parcel else (0, 0))
    if want_parcel:
        cum_loss = np.zeros((n_paths, init_c.size))
    elt_parts: list[dict[str, np.ndarray]] = []
    elt_level = cfg.loss_table_level

    def fill_stock(y: int, start: dict[str, np.ndarray], end: dict[str, np.ndarray]) -> None:
        """Stock, sink and (by the stock identity) mortality of year ``y`` from its start and end sums."""
        for lv in coarse_levels:
            arr = per_level[lv]
            arr[m_index["stock_tco2e"], y] = end[lv]
            arr[m_index["sink_tco2e"], y] = end[lv] - start[lv]
            # stock identity: end = start + growth - mortality - losses - harvest
            arr[m_index["mortality_tco2e"], y] = (start[lv] + arr[m_index["growth_tco2e"], y]
                                                  - arr[m_index["loss_tco2e"], y]
                                                  - arr[m_index["harvest_tco2e"], y] - end[lv])

    carbon = None
    sums_start = {lv: np.broadcast_to(v, (n_paths, v.size)) for lv, v in initial_stock.items()}
    group_sums = GroupSums(agg.cell_of_parcel, agg.n_cells, w)
    # per year, one stack of cell sums goes up the levels in one call: start stock, growth, all
    # losses, harvest, then one slot per peril
    slot_metric = [None, "growth_tco2e", "loss_tco2e", "harvest_tco2e", *(f"loss_{p}_tco2e" for p in perils)]
    stack = np.zeros((len(slot_metric), n_paths, agg.n_cells))
    for out in sim.run(rnd, years, group_sums=group_sums):
        y = out.year
        if cancelled is not None and cancelled():
            raise InterruptedError("simulation cancelled")
        carbon = out.carbon_end_tc_per_ha  # the simulator's live state: used before the next year
        stack[0] = out.stock_start_sums
        stack[1] = out.growth_sums
        stack[2:] = 0.0
        for k, (name, pl, lost) in enumerate(out.losses):
            if len(pl) == 0:
                continue
            stack[4 + k] = agg.sparse_cells(n_paths, pl.path_pos, pl.parcel_pos, lost, w)
            stack[2] += stack[4 + k]
            if want_parcel or elt_level is not None:
                lost_t = lost * w[pl.parcel_pos]
                if want_parcel:
                    np.add.at(cum_loss, (pl.path_pos, pl.parcel_pos), lost_t)
                if elt_level is not None:
                    elt_parts.append(_elt_rows(setup, name, y, path_start, pl, lost_t, elt_level))
        hp, hq, hv = out.harvest
        if hv.size:
            stack[3] = agg.sparse_cells(n_paths, hp, hq, hv, w)
        by_level = agg.from_cells(stack, coarse_levels)
        for lv in coarse_levels:
            arr, sums = per_level[lv], by_level[lv]
            for k in range(1, len(slot_metric)):
                arr[m_index[slot_metric[k]], y] = sums[k]
        if y > 0:
            # this year's start stock (summed by the growth pass) is last year's end stock
            start_now = {lv: v[0] for lv, v in by_level.items()}
            fill_stock(y - 1, sums_start, start_now)
            sums_start = start_now
        # ---- crediting at the end of each monitoring period --------------------------------
        if setup.crediting.is_crediting_start(y):
            # a project that begins crediting after the run's start: its first verification counts from the
            # stock now (growth before it is not credited, losses before it are no reversals)
            np.multiply(carbon, w, out=last_issue_stock)
            deficit[:] = 0.0
        if setup.crediting.is_issuance_year(y):
            issuance_changes(carbon, w, last_issue_stock, setup.project_of_parcel, proj_change, proj_gain)
            issued, buffer, deficit = setup.crediting.issue(proj_change, deficit)
            # parcels outside any project (empty project_id) are not credited
            issued *= setup.project_is_credited
            buffer *= setup.project_is_credited
            with np.errstate(divide="ignore", invalid="ignore"):
                share = np.where(proj_gain > 0, issued / proj_gain, 0.0)
                bshare = np.where(proj_gain > 0, buffer / proj_gain, 0.0)
            issuance_shares(carbon, w, last_issue_stock, setup.project_of_parcel, share, bshare,
                            agg.cell_of_parcel, credit_cells[0], credit_cells[1], cum_credit, want_parcel)
            by_level = agg.from_cells(credit_cells, coarse_levels)
            for lv in coarse_levels:
                per_level[lv][m_index["credits_issued_tco2e"], y] = by_level[lv][0]
                per_level[lv][m_index["buffer_withheld_tco2e"], y] = by_level[lv][1]
    stock = carbon * w
    fill_stock(years - 1, sums_start, agg.sum_dense(stock))

    per_path = {lv: per_level[lv] for lv in setup.summary_levels}
    block_moments, short_set, pair_moments = {}, {}, {}
    pairs = setup.streams_pairs

    def stream(key: str, values: np.ndarray) -> np.ndarray:
        """Block sums of ``values`` (paths first); the short last set's sums go to ``short_set[key]``, with
        antithetic pairs the pairs' squared sums to ``pair_moments[key]``."""
        m = cfg.switches.parameter_set_size
        short = _short_set_sums(values, path_start, cfg.paths, m)
        if short is not None:
            short_set[key] = short
        if pairs:
            pair_moments[key] = _pair_square_sums(values, path_start, cfg.paths, m)
        return _block_sums(values, path_start, cfg.paths, m)

    for lv in setup.moment_levels:
        # (metrics, years, paths, groups) -> (paths, metrics, years, groups) for block sums; the whole
        # horizon's per-path values (flows summed, stock at the end) are streamed too, as "<level>:horizon"
        harr, _ = horizon_per_path(per_level[lv], metrics)
        for key, arr in ((lv, per_level[lv]), (f"{lv}:horizon", harr)):
            block_moments[key] = stream(key, np.moveaxis(arr, 2, 0))
    parcel_moments = None
    if want_parcel:
        parcel_moments = stream("parcel", np.stack([stock, cum_loss, cum_credit, (stock - init_c[None, :]) / years],
                                                   axis=1))
    elt = None
    if elt_level is not None:
        elt = ({k: np.concatenate([p[k] for p in elt_parts]) for k in elt_parts[0]} if elt_parts
               else _empty_elt())
    return ChunkResult(index, path_start, path_stop, per_path, block_moments, parcel_moments, elt, initial_stock,
                       short_set, pair_moments)


def _empty_elt() -> dict[str, np.ndarray]:
    return {"path": np.empty(0, np.int64), "year": np.empty(0, np.int64), "peril_code": np.empty(0, np.int64),
            "event": np.empty(0, np.int64), "group": np.empty(0, np.int64), "loss_tco2e": np.empty(0)}


def _elt_rows(setup: EngineSetup, peril: str, year: int, path_start: int, pl, lost_t: np.ndarray,
              level: str) -> dict[str, np.ndarray]:
    """Event loss rows for one peril-year: one row per (path, event, group)."""
    group = setup.aggregator.groups[level].parcel_group[pl.parcel_pos]
    n_groups = setup.aggregator.groups[level].n_groups
    # combine (path, event, group) into one sortable key; sum losses per key in parcel order
    order = np.lexsort((pl.parcel_pos, group, pl.event, pl.path_pos))
    path, ev, grp, loss = pl.path_pos[order], pl.event[order], group[order], lost_t[order]
    key = (path.astype(np.int64) * (int(ev.max()) + 1) + ev) * n_groups + grp
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    sums = np.add.reduceat(loss, starts)
    return {
        "path": path[starts].astype(np.int64) + path_start,
        "year": np.full(starts.size, year, dtype=np.int64),
        "peril_code": np.full(starts.size, setup.peril_codes[peril], dtype=np.int64),
        "event": ev[starts].astype(np.int64),
        "group": grp[starts].astype(np.int64),
        "loss_tco2e": sums,
    }
