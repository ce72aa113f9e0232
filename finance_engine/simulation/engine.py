"""``simulate``: growth, perils, carbon accounting and crediting for all parcels and paths.

The run is split into chunks of whole path blocks. Chunks run in this process, in a pool of
processes, or on a Dask distributed cluster; each is a pure function of (inputs, seed, path range),
and results are assembled by path index, so the numbers are the same whichever way they ran.
"""

from __future__ import annotations

import copy
import hashlib
import multiprocessing
import os
import pickle
import sys
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from finance_engine.simulation.chunk import (BASE_METRICS, CREDIT_METRICS, PARCEL_METRICS, ChunkResult, EngineSetup,
                                             PerPathPlan, format_bytes, per_path_bytes, plan_per_path, run_chunk,
                                             summary_transient_bytes)
from finance_engine.simulation.config import PATH_BLOCK, SimulationConfig, modifiers_by_value
from finance_engine.simulation.result import ChunkStore, SimulationResult, assemble_result
from models._lru import lru_get, lru_put
from models.carbon import CreditingRules
from models.dynamics import Modifiers, SimulationSwitches
from models.parameters import ModelParameters
from models.portfolio import Portfolio

#: the automatic chunk size (``chunk_paths=None``, :func:`auto_chunk_paths`): a chunk holds at most this
#: many (paths x parcels) elements -- about 30 bytes of stand state each plus the year's transients, so
#: about 250 MB a chunk -- but never fewer than one path block
AUTO_MAX_CHUNK_ELEMENTS = 4_000_000
#: ... and at least this many where the paths allow: below it a chunk-year's fixed Python and kernel-call
#: work (about a millisecond) starts to show against its arithmetic
AUTO_MIN_CHUNK_ELEMENTS = 1_000_000
#: ... aiming at this many chunks per worker (progress steps, cancel points, load balance)
AUTO_CHUNKS_PER_WORKER = 4
#: a run with a ``progress`` or ``cancel`` callback and no chunk size given is cut into at least this many
#: chunks where its paths allow (a run of 1-2 M path-parcels on one worker would otherwise be one chunk:
#: progress 0, then 1) ...
CALLBACK_MIN_CHUNKS = 4
#: ... but not into chunks under this many (paths x parcels) elements: a chunk's fixed work, some 20-50 ms
#: over 30 years (the more on threads, which contend for the GIL), would show. One loan (47 parcels x 10,000
#: paths) stays one chunk per worker: on one thread 0.30 s in one chunk, 0.31-0.34 s in two, 0.35-0.38 s in
#: four; on two threads 0.23-0.25 s in two chunks, 0.33-0.36 s in four (interleaved, best of 5-7).
CALLBACK_MIN_CHUNK_ELEMENTS = 500_000
#: how often (s) a run in this process polls its ``cancel`` callback inside a chunk, at most
CANCEL_POLL_S = 0.01
#: the summary's time (s) for one per-path value (a metric-year-path-group of a level kept per path: sorting,
#: quantiles with their intervals, TVaR with its error, moments), with independent paths ... Progress counts the
#: summary as time still to do after the last chunk (:func:`summary_seconds`), so a run reports 100 % (and an
#: ETA of 0) only once its result is ready; the chunks' remaining time comes from their observed rate, so the
#: estimate holds for any portfolio shape (a summary share counted in simulation work, as before, was measured
#: on the 5,000-parcel demo and said 0.8 % after the first of four chunks of 40 parcels, one a village, where
#: 25 % of the time had passed). Measured with ``summarise_per_path`` alone on the 2-core machine: 42-43 ns a
#: value (30 years; 2,048 paths x 40 groups, 1,000 x 144); in whole runs (the tables' assembly, the horizon
#: arrays) the summary took about 1.4 times that, ...
SUMMARY_S_PER_VALUE = 60e-9
#: ... and with parameter sets (the nested decomposition and its intervals): 98-108 ns alone (512-4,096 paths
#: x 40 groups, sets of 8), 120-145 ns in whole runs ...
SUMMARY_S_PER_VALUE_SETS = 140e-9
#: ... plus a fixed cost per metric and table (yearly, horizon) of a level kept per path: 0.6 ms with
#: independent paths, 1.2-1.6 ms with parameter sets (64 paths, one group) ...
SUMMARY_S_PER_TABLE_METRIC = 1.2e-3
#: ... and per level summarised from streamed moments (its two tables; the parcels' table) and per run
#: (the tables' assembly, provenance)
SUMMARY_S_PER_MOMENT_LEVEL = 5e-3
SUMMARY_S_FIXED = 0.02


class SimulationCancelled(RuntimeError):
    """Raised when a run is cancelled through its ``cancel`` callback."""


@dataclass(frozen=True)
class Progress:
    """Progress of a run: chunks done out of total, elapsed and estimated remaining seconds; ``work``: the
    fraction of the work done where chunks are not of equal work (several runs of different sizes as one,
    :class:`RunsProgress`), else None (the chunks' fraction is the work's); ``summarising``: every chunk is
    simulated and the run is summarising its results (reported as all chunks but the last until it is done)."""

    chunks_done: int
    chunks_total: int
    elapsed_s: float
    eta_s: float | None
    work: float | None = None
    summarising: bool = False

    @property
    def fraction(self) -> float:
        if self.work is not None:
            return self.work
        return self.chunks_done / self.chunks_total if self.chunks_total else 1.0


class RunsProgress:
    """The progress of several engine runs in turn as one (a stress test's scenarios, a valuation with its
    drivers' reruns): ``of(k)`` is run ``k``'s ``progress`` callback, which reports the whole.

    ``weights``: each run's relative work (e.g. its paths; equal by default). Chunks are counted across
    the runs: a run that has reported counts its own chunks, one not yet reported counts those of the run
    reporting scaled by the weights (equal runs of ``n`` chunks: run ``k``'s chunk ``i`` is chunk
    ``k * n + i`` of ``runs * n``). The reported ``fraction`` (``Progress.work``) and the ETA are the weighted
    work's (a valuation of 512 paths before drivers' reruns at 128 is a third of the work, not a ninth), the
    ETA from the time since the first report. :meth:`plan` re-weighs the runs not yet started (a caller that learns how many there are as it
    goes); a re-estimate may move the reported fraction back a little, which receivers ignore. ``sink``
    None: nothing is reported (``of`` gives None, so the engine does no extra work)."""

    def __init__(self, sink: Callable[[Progress], None] | None, runs: int = 1,
                 weights: Sequence[float] | None = None):
        self.sink, self.t0 = sink, None
        self.weights = [float(w) for w in (weights if weights is not None else [1.0] * max(1, int(runs)))]
        if not self.weights or min(self.weights) <= 0:
            raise ValueError("RunsProgress needs at least one run, each of positive weight")
        self._chunks: dict[int, int] = {}

    def plan(self, weights: Sequence[float]) -> None:
        """The weights of every run from now on (those already reported keep their chunk counts)."""
        self.weights = [float(w) for w in weights]
        if not self.weights or min(self.weights) <= 0:
            raise ValueError("RunsProgress needs at least one run, each of positive weight")

    def of(self, k: int) -> Callable[[Progress], None] | None:
        """The ``progress`` callback of run ``k`` (0-based), or None without a sink."""
        if self.sink is None:
            return None

        def report(p: Progress) -> None:
            if self.t0 is None:
                self.t0 = time.perf_counter() - p.elapsed_s
            w = self.weights
            self._chunks[k] = p.chunks_total
            chunks = [self._chunks.get(j, max(1, round(p.chunks_total * w[j] / w[k]))) for j in range(len(w))]
            total = sum(chunks)
            done = min(total, sum(chunks[:k]) + p.chunks_done)
            work = min(1.0, (sum(w[:k]) + w[k] * p.fraction) / sum(w))
            el = time.perf_counter() - self.t0
            self.sink(Progress(done, total, el, el / work * (1.0 - work) if work > 0 else None, work,
                               summarising=p.summarising))
        return report


# ---- per-process cache of the setup (built once per worker process) -------------------------
#: set-ups by token (:func:`_setup_token`), least recently used first
_SETUP_CACHE: dict[str, EngineSetup] = {}
#: the set-ups a process keeps: at most this many (a valuation with its drivers runs eight switch settings
#: of one pledge) ...
SETUP_CACHE_ENTRIES = 16
#: ... and within this many parcels together (a city-scale set-up holds its parcels' arrays); the newest
#: is kept whatever its size
SETUP_CACHE_PARCELS = 500_000


def _setup_token(params: ModelParameters, portfolio: Portfolio, config: SimulationConfig) -> str:
    """Identity of what the set-up depends on: everything but the seed, the path count, the horizon and the
    per-path budget (the set-up holds no per-year state; a run's years, and the levels it keeps per path,
    reach its chunks through the run's own config: :attr:`EngineSetup.per_path_plan`)."""
    h = hashlib.sha256()
    h.update(params.sha256.encode())
    h.update(params.variant.encode())  # a variant of the file (a stress lever's landscape) is another set-up
    h.update(pickle.dumps(replace(config, seed=0, paths=1, years=1, per_path_budget_mib=None)))
    h.update(portfolio.content_hash)
    return h.hexdigest()


def _get_setup(token: str, params: ModelParameters, portfolio: Portfolio, config: SimulationConfig) -> EngineSetup:
    """The per-process set-up for this run (perils, aggregation), reused across seeds and path counts."""
    s = lru_get(_SETUP_CACHE, token)
    if s is None:
        s = EngineSetup(params, portfolio, config)
        lru_put(_SETUP_CACHE, token, s, SETUP_CACHE_ENTRIES, lambda v: v.portfolio.n_parcels, SETUP_CACHE_PARCELS)
    if s.config is not config and s.config != config:
        s = copy.copy(s)  # share the expensive parts, carry this run's seed and path count
        s.config = config
    if portfolio is not None and s.portfolio is not portfolio and s.portfolio.source != portfolio.source:
        # the same parcels under another name (a set-up is keyed by content): the run reports its own name,
        # never the name of whoever brought the same data first (another tenant's file)
        s = copy.copy(s)
        s.portfolio = portfolio
    return s


def _chunk_task(token: str, payload: Any, index: int, start: int, stop: int) -> ChunkResult:
    """Worker entry point (pickled by process pools and Dask)."""
    params, portfolio, config = payload if not isinstance(payload, bytes) else pickle.loads(payload)
    return run_chunk(_get_setup(token, params, portfolio, config), index, start, stop)


_WORKER_PAYLOAD: dict[str, Any] = {}


def _init_pool_worker(token: str, payload: bytes | None, config_blob: bytes | None = None) -> None:
    from finance_engine._workers import exit_with_parent

    exit_with_parent()
    _load_worker_payload(token, payload, config_blob)


def _load_worker_payload(token: str, payload: bytes | None, config_blob: bytes | None) -> None:
    """Keep what a pool worker's chunks need.

    ``payload`` is the pickled (model, portfolio, config). A forked worker is sent none: it
    inherited the parent's set-up (``_SETUP_CACHE``), so it needs only the run's config, and holds
    no copy of its own of the portfolio or the model.
    """
    if payload is not None:
        _WORKER_PAYLOAD[token] = pickle.loads(payload)
        return
    if token not in _SETUP_CACHE:
        raise RuntimeError("pool worker started without a payload and without the parent's set-up")
    _WORKER_PAYLOAD[token] = (None, None, pickle.loads(config_blob))


def _pool_task(token: str, index: int, start: int, stop: int) -> ChunkResult:
    params, portfolio, config = _WORKER_PAYLOAD[token]
    return run_chunk(_get_setup(token, params, portfolio, config), index, start, stop)


# ---------------------------------------------------------------------------------------------
def _whole_blocks(size: int) -> int:
    """``size`` paths rounded up to whole path blocks (at least one)."""
    return max(PATH_BLOCK, -(-int(size) // PATH_BLOCK) * PATH_BLOCK)


def chunk_ranges(paths: int, chunk_paths: int) -> list[tuple[int, int, int]]:
    """(index, start, stop) of each chunk; chunk sizes are rounded up to whole path blocks."""
    size = _whole_blocks(chunk_paths)
    return [(i, s, min(s + size, paths)) for i, s in enumerate(range(0, paths, size))]


def _even_blocks(size: int, paths: int, cap: int) -> int:
    """``size`` rounded up to whole path blocks but at most ``cap`` (itself whole blocks), then evened
    out over the chunks it makes."""
    size = min(_whole_blocks(size), cap)
    n_chunks = -(-int(paths) // size)
    return _whole_blocks(-(-int(paths) // max(1, n_chunks)))


def auto_chunk_paths(paths: int, n_parcels: int, workers: int = 1, *, min_chunks: int = 1) -> int:
    """Paths per chunk when the caller leaves it to the engine (``simulate(chunk_paths=None)``).

    Aims at ``AUTO_CHUNKS_PER_WORKER`` chunks per worker; makes chunks of at least
    ``AUTO_MIN_CHUNK_ELEMENTS`` (paths x parcels) elements as long as every worker still gets one,
    and of at most ``AUTO_MAX_CHUNK_ELEMENTS`` (the memory bound; a chunk is never under one path
    block). Rounded to whole path blocks and evened out across the chunks. The whole-city run
    (200,000 parcels) gets 32-path chunks, the 5,000-parcel demo a few hundred paths, a loan one
    chunk per worker. ``min_chunks`` asks for at least that many chunks where the paths allow and each
    keeps ``CALLBACK_MIN_CHUNK_ELEMENTS`` (``simulate`` asks for ``CALLBACK_MIN_CHUNKS`` when given a
    progress or cancel callback: steps to report; a loan stays one chunk per worker, its chunk's fixed
    work would show). Results never depend on the chunk size.

    Examples
    --------
    >>> auto_chunk_paths(1000, 200_000, workers=2), auto_chunk_paths(1000, 5_000), auto_chunk_paths(10_000, 47, 2)
    (32, 256, 5024)
    >>> auto_chunk_paths(10_000, 200), auto_chunk_paths(10_000, 200, min_chunks=4)
    (5024, 2528)
    >>> auto_chunk_paths(10_000, 47, min_chunks=4)
    10016
    """
    paths, n = max(1, int(paths)), max(1, int(n_parcels))
    workers = max(1, int(workers))
    size = -(-paths // (workers * AUTO_CHUNKS_PER_WORKER))
    size = max(size, -(-AUTO_MIN_CHUNK_ELEMENTS // n))
    size = min(size, -(-paths // workers))
    if min_chunks > 1:
        size = min(size, max(-(-paths // int(min_chunks)), -(-CALLBACK_MIN_CHUNK_ELEMENTS // n)))
    cap = max(PATH_BLOCK, AUTO_MAX_CHUNK_ELEMENTS // n // PATH_BLOCK * PATH_BLOCK)  # whole blocks, rounded down
    return _even_blocks(size, paths, cap)


def balanced_chunk_paths(paths: int, n_parcels: int, workers: int = 1,
                         max_elements: int = AUTO_MAX_CHUNK_ELEMENTS) -> int:
    """Paths per chunk that give each worker one chunk, within a memory bound.

    Few large chunks minimise the engine's per-chunk, per-year overhead, which dominates small
    portfolios with many paths (one loan); ``max_elements`` bounds a chunk's (paths x parcels)
    state (about 60 bytes per element). Results never depend on the chunk size.
    """
    per_worker = -(-int(paths) // max(1, int(workers)))
    cap = max(PATH_BLOCK, int(max_elements) // max(1, int(n_parcels)))
    return _whole_blocks(min(per_worker, cap))


def simulate(portfolio: Portfolio, model: ModelParameters, years: int, paths: int, seed: int, *,
             scenario: str = "baseline", levels: Iterable[str] = ("portfolio",), carbon_method: str = "bef",
             switches: SimulationSwitches | None = None, modifiers: Modifiers | None = None,
             crediting: dict[str, Any] | None = None, start_year: int | None = None,
             loss_table_level: str | None = None, quantiles: Iterable[float] | None = None,
             chunk_paths: int | None = None, workers: int = 1, scheduler: str | Any | None = None,
             progress: Callable[[Progress], None] | None = None,
             cancel: Callable[[], bool] | None = None, keep_paths: bool = True,
             summarise: bool = True, per_path_budget_mib: float | None = None) -> SimulationResult:
    """Run the Monte Carlo simulation and summarise it.

    Parameters
    ----------
    portfolio : Portfolio
        Validated parcels (see :func:`models.portfolio.load_portfolio`).
    model : ModelParameters
        The parameter set the portfolio was validated against.
    years, paths, seed : int
        Horizon (years), Monte Carlo paths, seed.
    scenario : str
        Label recorded with the result (stress scenarios pass ``modifiers``).
    levels : iterable of str
        ``portfolio``, ``province`` .. ``village``, ``project_id``, ``species_group``, ``parcel``.
    carbon_method : {"bef", "fang"}
    switches, modifiers : see :mod:`models.dynamics`.
    crediting : dict, optional
        Overrides of the parameter file's crediting rules (:attr:`models.carbon.CreditingRules.OVERRIDES`):
        ``crediting_start_year`` for a project that began crediting before ``start_year`` (fewer years
        left, verifications in their phase) or begins after it (nothing credited before its start, the first
        verification counting from the stock then), ``crediting_period_years``, ``buffer_fraction``, ...
    loss_table_level : str, optional
        Keep an event loss table summed at this level (``"portfolio"``: one row per event).
    chunk_paths : int, optional
        Paths per chunk (rounded up to a multiple of 32). Affects memory and speed, never results.
        Default: sized from the paths, parcels and workers within a memory bound
        (:func:`auto_chunk_paths`). On a remote Dask cluster the engine does not know how many
        workers it has: pass ``workers`` (or ``chunk_paths``) to give each of them chunks.
    workers : int
        Local worker processes (1: run in this process), or threads with ``scheduler="threads"``.
    scheduler : str or distributed.Client, optional
        ``"threads"`` (``workers`` threads in this process: no start-up cost, so best for small
        portfolios with many paths such as one loan, and one copy of the portfolio and set-up, so
        the least memory for a large one: the city benchmark's 10,000-path run stays under 2 GB on
        threads; the compiled kernels and numpy's vectorised loops release the GIL),
        ``"warm"`` (``workers`` processes kept alive between runs, writing their per-path results into
        shared memory: the fastest for one loan valued after another in a long-lived process, since two
        threads contend for the GIL; the first warm run starts the workers, a few seconds; a script
        that calls it at its top level needs the ``if __name__ == "__main__":`` guard; see
        :mod:`finance_engine.simulation.warm_pool`), ``"local-cluster"`` (a Dask LocalCluster of
        ``workers`` processes), a ``tcp://host:port`` address of a Dask scheduler, or a
        ``distributed.Client``. Results are identical to a local run.
    progress : callable, optional
        Called with a :class:`Progress` before the first chunk, after each, and before each part of the summary
        (a level's tables, the parcels', the loss table: reported with the chunks done as all but the last);
        the last chunk's report comes once the result is summarised. The fraction is the elapsed time's share
        of the elapsed and estimated remaining time -- the chunks' at their observed rate, the summary's from
        its measured cost a value (:func:`summary_seconds`) -- never lower than reported before, and only that
        last report says 100 %, ETA 0. It may raise :class:`SimulationCancelled` to stop the run (as ``cancel``
        does), in the summary too: the finance functions, which run the engine several times and take only a
        ``progress`` callback, and the API's jobs are cancelled that way.
    cancel : callable, optional
        Polled between chunks (and, for chunks in this process or on threads, between simulated years, and
        between the levels of the summary); when it returns True the run stops with :class:`SimulationCancelled`.
        Given ``progress`` or ``cancel`` and no ``chunk_paths``, the run is cut into at least
        ``CALLBACK_MIN_CHUNKS`` chunks where each keeps half a million path-parcels (:func:`auto_chunk_paths`),
        so that a run long enough to watch has steps to report.
    summarise : bool
        Compute the summary tables (set False when only the per-path arrays are wanted, e.g. by
        collateral valuation: the statistics of the finance result are computed there).
    keep_paths : bool
        Keep the per-path arrays in the result (needed by collateral and insurance pricing).
    per_path_budget_mib : float, optional
        Memory (MiB) the levels' per-path arrays may take together with the summary's transient memory for the
        largest of them (its whole-horizon array and working copies of one metric,
        :func:`~finance_engine.simulation.chunk.summary_transient_bytes`; default ``PER_PATH_BUDGET_BYTES``,
        768 MiB). The ``portfolio`` level (one group) is always kept per path, whatever the budget (the loan,
        the quote and the year loss table read it; its bytes count against the budget); the other levels are
        admitted coarse to fine while they fit and have at most ``MAX_GROUPS_FOR_QUANTILES`` groups; the
        others are summarised from streamed moments (mean, ``mc_se``, ``parameter_sd``; no quantiles, TVaR
        or per-path array), as ``provenance["levels_without_quantiles"]`` records. A caller that needs per-path
        arrays at every level checks first with :func:`require_per_path`.

    Returns
    -------
    SimulationResult
    """
    base = switches or SimulationSwitches()
    if not isinstance(years, (int, np.integer)) or not 1 <= years <= 200:
        raise ValueError(f"years must be a whole number in [1, 200], got {years!r}")
    config = SimulationConfig(
        years=int(years) if isinstance(years, (int, np.integer)) else years,
        paths=int(paths) if isinstance(paths, (int, np.integer)) else paths,
        seed=int(seed) if isinstance(seed, (int, np.integer)) else seed,
        levels=tuple(dict.fromkeys(levels)), carbon_method=carbon_method,
        # function multipliers as their values over the horizon: the set-up is keyed by value (config.py)
        switches=base, modifiers=modifiers_by_value(modifiers or Modifiers(), int(years)),
        crediting=dict(crediting or {}),
        loss_table_level=loss_table_level, scenario=scenario,
        per_path_budget_mib=None if per_path_budget_mib is None else float(per_path_budget_mib),
    )
    if start_year is not None:
        config = replace(config, start_year=int(start_year))
    if quantiles is not None:
        config = replace(config, quantiles=tuple(float(q) for q in quantiles))
    config.validate()
    # bad crediting overrides fail here, before any worker starts
    CreditingRules.from_parameters(model, start_year=config.start_year, **config.crediting)
    if portfolio.parameter_sha256 and portfolio.parameter_sha256 != model.sha256:
        raise ValueError("the portfolio was validated against a different parameter set")
    if chunk_paths is None:
        callbacks = progress is not None or cancel is not None  # steps to report, points to stop at
        chunk_paths = auto_chunk_paths(config.paths, portfolio.n_parcels, workers,
                                       min_chunks=CALLBACK_MIN_CHUNKS if callbacks else 1)
    if chunk_paths < 1:
        raise ValueError("chunk_paths must be >= 1")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    if not (summarise or keep_paths):
        raise ValueError("a run that neither summarises nor keeps paths reports nothing")

    t0 = time.perf_counter()
    tasks = chunk_ranges(config.paths, chunk_paths)
    token = _setup_token(model, portfolio, config)
    setup = _get_setup(token, model, portfolio, config)  # validates perils and levels up front
    results = ChunkStore(setup)  # per-path arrays go into whole-run arrays as chunks finish
    n_tasks = len(tasks)
    # the summary's estimated time (s): time still to do after the last chunk
    summary_s = summary_seconds(setup) if summarise else 0.0
    state = {"fraction": 0.0, "summary_left": None}

    def report(final: bool = False) -> None:
        """The chunks done so far, the summary counted as time still to do: the fraction is the elapsed time's
        share of the elapsed and estimated remaining time (the chunks' at their observed rate, the summary's
        :func:`summary_seconds`), never lower than reported before; the last chunk is reported (100 %, ETA 0)
        only with ``final``, once the result is ready. While summarising, the chunks done are reported as all
        but the last."""
        if progress is None:
            return
        done = len(results)
        el = time.perf_counter() - t0
        if final:
            progress(Progress(n_tasks, n_tasks, el, 0.0))
            return
        left = state["summary_left"]
        if left is not None:  # summarising
            done, eta = n_tasks - 1, max(left, 0.0)
        elif done >= n_tasks:
            return  # the summary reports next
        elif done == 0:
            progress(Progress(0, n_tasks, el, None, state["fraction"]))
            return
        else:
            eta = el / done * (n_tasks - done) + summary_s
        frac = min(max(state["fraction"], el / (el + eta) if el + eta > 0 else 0.0), 0.999)
        state["fraction"] = frac
        progress(Progress(max(done, 0), n_tasks, el, eta, frac, summarising=left is not None))

    def check() -> None:
        if cancel is not None and cancel():
            raise SimulationCancelled("simulation cancelled")

    def summary_step(level: str | None = None) -> None:
        """Before each part of the summary (a level, the parcels, the loss table): the cancel callback, and a
        progress report (which may raise to stop the run, as the finance functions' callbacks do). ``level``:
        the level kept per path about to be summarised, whose estimated time then counts as begun."""
        check()
        if progress is None:
            return
        if state["summary_left"] is None:
            state["summary_done_s"] = 0.0
        # the remaining estimate: the whole summary's less the parts begun, never below what is yet to come
        state["summary_left"] = max(summary_s - state["summary_done_s"], SUMMARY_S_FIXED)
        report()
        if level is not None:
            state["summary_done_s"] += summary_level_seconds(setup, level)

    # a threaded run lowers the GIL switch interval (_switch_interval) for its chunks; the summary, on one
    # thread, runs at the interpreter's own interval
    threaded = scheduler == "threads" and workers > 1
    with _switch_interval(THREADS_SWITCH_INTERVAL_S) if threaded else nullcontext():
        report()
        if scheduler == "threads":
            _run_threads(workers, setup, tasks, results, report, cancel)
            backend = f"threads({workers})"
        elif scheduler == "warm":
            from finance_engine.simulation.warm_pool import run_warm

            run_warm(workers, token, _payload_bytes(token, model, portfolio), pickle.dumps(config), tasks, results,
                     report, cancel)
            backend = f"warm({workers})"
        elif scheduler is not None:
            _run_dask(scheduler, workers, token, (model, portfolio, config), tasks, results, report, cancel)
            backend = "dask"
        elif workers > 1 and len(tasks) > 1:
            _run_pool(workers, token, (model, portfolio, config), tasks, results, report, cancel)
            backend = f"processes({workers})"
        else:
            _run_local(setup, tasks, results, report, cancel)
            backend = "local"
    check()
    # elapsed_s: the whole run, its summary included; chunks_s: the chunks alone
    run_info = {"backend": backend, "chunks": len(tasks), "elapsed_s": 0.0, "chunks_s": time.perf_counter() - t0,
                "chunk_paths": tasks[0][2] - tasks[0][1], **setup.simulator.notes()}
    res = assemble_result(setup, results, [i for i, _, _ in tasks], keep_paths=keep_paths, summarise=summarise,
                          run_info=run_info, check=summary_step)
    run_info["elapsed_s"] = time.perf_counter() - t0  # the summary included
    report(final=True)
    return res


def summary_seconds(setup: EngineSetup) -> float:
    """The summary's estimated time (s, for progress): :data:`SUMMARY_S_PER_VALUE` (with parameter sets
    :data:`SUMMARY_S_PER_VALUE_SETS`) per per-path value summarised (each level kept per path, yearly and over
    the horizon), :data:`SUMMARY_S_PER_TABLE_METRIC` per metric of those tables, and the moment levels' and
    the run's fixed costs."""
    cfg = setup.config
    sw = cfg.switches
    sets = sw.draws_parameters and sw.parameter_set_size > 1
    values = setup.per_path_plan.nbytes / 8 * (1.0 + 1.0 / cfg.years)
    tables = 2 * len(setup.metrics) * len(setup.summary_levels)
    moment_levels = len(setup.moment_levels) + ("parcel" in cfg.levels)
    return ((SUMMARY_S_PER_VALUE_SETS if sets else SUMMARY_S_PER_VALUE) * values
            + SUMMARY_S_PER_TABLE_METRIC * tables + SUMMARY_S_PER_MOMENT_LEVEL * moment_levels + SUMMARY_S_FIXED)


def summary_level_seconds(setup: EngineSetup, level: str) -> float:
    """The part of :func:`summary_seconds` for one level kept per path (done as that level is summarised)."""
    cfg = setup.config
    sw = cfg.switches
    sets = sw.draws_parameters and sw.parameter_set_size > 1
    g = setup.aggregator.groups[level].n_groups
    values = per_path_bytes(len(setup.metrics), cfg.years, cfg.paths, g) / 8 * (1.0 + 1.0 / cfg.years)
    return ((SUMMARY_S_PER_VALUE_SETS if sets else SUMMARY_S_PER_VALUE) * values
            + SUMMARY_S_PER_TABLE_METRIC * 2 * len(setup.metrics))


def _n_metrics(model: ModelParameters, switches: SimulationSwitches | None) -> int:
    """The yearly metrics a run of ``model`` with ``switches`` reports (:func:`chunk.metric_names`): the perils
    it runs are those :meth:`models.dynamics.ForestSimulator._build_perils` builds, counted without building
    them (the same selection: the switches' perils, or all but some, among the file's enabled perils)."""
    from models.perils import peril_classes

    classes = peril_classes()
    wanted = (switches or SimulationSwitches()).perils
    if wanted is not None and wanted[:1] == ("__all_but__",):
        names = [n for n in classes if n not in wanted[1:]]
    elif wanted is not None:
        names = [n for n in classes if n in wanted]
    else:
        names = list(classes)
    n_perils = sum(1 for n in names if (p := model.perils.get(n)) is not None and p.enabled)
    return len(BASE_METRICS) + n_perils + len(CREDIT_METRICS)


def require_per_path(portfolio: Portfolio, model: ModelParameters, levels: Iterable[str], years: int, paths: int, *,
                     switches: SimulationSwitches | None = None, per_path_budget_mib: float | None = None,
                     runs: int = 1, what: str = "this run") -> PerPathPlan:
    """Fail early, with a clear message, unless a run would keep per-path arrays at every level of ``levels``.

    For a caller that reads ``result.per_path`` (or ``paths_of``) at each level it asks for (a stress test's
    paired comparison): :func:`simulate` summarises a level beyond the per-path budget or of more than
    ``MAX_GROUPS_FOR_QUANTILES`` groups from streamed moments and keeps no per-path array for it. The same rule
    as the run's (:func:`~finance_engine.simulation.chunk.plan_per_path`): the ``portfolio`` level is always
    kept, whatever the budget; the others within it. ``parcel`` is refused: parcels never keep per-path arrays
    (streamed moments only). ``runs``: how many such runs the caller holds at once (their arrays share the
    budget). Cheap: counts groups and perils, builds no simulator.

    Returns
    -------
    PerPathPlan
        The plan of one run (every level kept; ``nbytes`` its arrays' bytes).

    Raises
    ------
    ValueError
        Naming each level that would not be kept and why, and what would keep it (fewer paths: at most how
        many; a coarser level; a larger ``per_path_budget_mib``); or ``parcel`` among ``levels``.
    """
    from finance_engine.simulation.aggregate import Aggregator
    from finance_engine.simulation.config import PER_PATH_BUDGET_BYTES

    levels = tuple(dict.fromkeys(levels))
    if "parcel" in levels:
        raise ValueError(f"{what} needs every path's values at the parcel level, which a run never keeps (parcels "
                         "are summarised from streamed moments only); use a coarser level (village, project_id ...)")
    budget = PER_PATH_BUDGET_BYTES if per_path_budget_mib is None else int(float(per_path_budget_mib) * 2**20)
    per_run = budget // max(1, int(runs))
    agg = Aggregator(portfolio, tuple(dict.fromkeys((*levels, "project_id"))))
    groups = {lv: agg.groups[lv].n_groups for lv in levels if lv != "parcel"}
    n_metrics = _n_metrics(model, switches)
    plan = plan_per_path(levels, groups, n_metrics, int(years), int(paths), per_run)
    if plan.without:
        share = f" (a share of {runs} runs held at once)" if runs > 1 else ""
        why = "; ".join(f"{lv}: {reason}" for lv, reason in plan.without.items())
        fix = []
        from finance_engine.simulation import chunk as chunk_mod

        if all(g <= chunk_mod.MAX_GROUPS_FOR_QUANTILES for g in groups.values()):
            # a path's values at every level, and the summary's transient memory for the largest one
            per_path = per_path_bytes(n_metrics, years, 1, sum(groups.values())) + summary_transient_bytes(
                n_metrics, years, per_path_bytes(n_metrics, years, 1, max(groups.values())))
            fit = per_run // max(per_path, 1)
            fix.append(f"at most {fit} paths" if fit >= 1 else "fewer paths")
        fix += ["coarser levels", f"a larger per-path budget (per_path_budget_mib, now {format_bytes(budget)}{share})"]
        raise ValueError(f"{what} needs every path's values at {', '.join(groups)} ({paths} paths x {years} years), "
                         f"but {why}. Use {', '.join(fix[:-1])} or {fix[-1]}")
    return plan


class _PolledCancel:
    """``cancel`` polled inside a chunk (each simulated year), at most every ``CANCEL_POLL_S`` seconds; True
    from the first True on."""

    def __init__(self, cancel: Callable[[], bool]):
        self.cancel, self.last, self.stopped = cancel, time.perf_counter(), False

    def __call__(self) -> bool:
        if not self.stopped:
            now = time.perf_counter()
            if now - self.last >= CANCEL_POLL_S:
                self.last = now
                self.stopped = bool(self.cancel())
        return self.stopped


def _run_local(setup: EngineSetup, tasks, results, report, cancel) -> None:
    """Chunks one after another in this process; ``cancel`` is polled between chunks and inside each, so a
    cancelled run stops at its next simulated year."""
    polled = _PolledCancel(cancel) if cancel is not None else None
    for i, s, e in tasks:
        if cancel is not None and cancel():
            raise SimulationCancelled("simulation cancelled")
        try:
            results[i] = run_chunk(setup, i, s, e, polled, out=results.views(s, e))
        except InterruptedError:
            if polled is not None and polled.stopped:
                raise SimulationCancelled("simulation cancelled") from None
            raise
        report()


_PAYLOADS: dict[str, bytes] = {}
#: the pickled set-up inputs kept for the warm pool (as many as the set-ups, within this many bytes together)
PAYLOAD_CACHE_BYTES = 256 * 2**20


def _payload_bytes(token: str, model: ModelParameters, portfolio: Portfolio) -> bytes:
    """The pickled (model, portfolio) of a set-up, kept for the warm pool's next runs on it."""
    b = lru_get(_PAYLOADS, token)
    if b is None:
        b = pickle.dumps((model, portfolio))
        lru_put(_PAYLOADS, token, b, SETUP_CACHE_ENTRIES, len, PAYLOAD_CACHE_BYTES)
    return b


def _collect(pending: dict[Future, int], results, report, cancel, on_abort: Callable[[], None] | None = None) -> None:
    """Gather finished chunks as they come (reporting progress), polling ``cancel`` in between."""
    try:
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            for f in done:
                results[pending.pop(f)] = f.result()
                report()
            if cancel is not None and cancel():
                raise SimulationCancelled("simulation cancelled")
    except BaseException:
        if on_abort is not None:
            on_abort()
        for f in pending:
            f.cancel()
        raise


#: GIL switch interval while chunks run on threads (s): a tenth of Python's 5 ms default
THREADS_SWITCH_INTERVAL_S = 0.0005
#: the parcel-paths a thread needs before a second one pays (see :func:`useful_threads`)
MIN_PARCEL_PATHS_PER_THREAD = 150_000


def useful_threads(paths: int, n_parcels: int, workers: int) -> int:
    """How many of ``workers`` threads a run of ``paths`` x ``n_parcels`` gains from (at least 1).

    Each chunk pays about 20 ms of Python per 30 years whatever its size, and two threads hold the
    GIL in turn for it, with a hand-over at each kernel or numpy call. Two threads were slower than
    one chunk on one below a crossover of about 120,000 parcel-paths a thread (a 47-parcel loan's engine
    run: 2,016 paths 107 ms on two threads against 78 ms on one; whole valuations even at 5,000 paths;
    10,016 paths 213 against 275 ms; docs/performance.md, eleventh round); the bound is set a little
    above it. Results never depend on the threads used.
    """
    share = int(paths) * max(1, int(n_parcels)) // MIN_PARCEL_PATHS_PER_THREAD
    return max(1, min(int(workers), share))
_SWITCH_LOCK = threading.Lock()
_switch_state = {"users": 0, "saved": None}


@contextmanager
def _switch_interval(seconds: float) -> Iterator[None]:
    """Lower the interpreter's GIL switch interval to ``seconds`` while any threaded run is active.

    A chunk's year alternates compiled kernels and numpy calls, which release the GIL, with short
    stretches of Python, which hold it. With two chunks on threads, a thread coming back from a kernel
    often finds the other holding the GIL and waits; Python asks the holder to let go only after the
    switch interval. At 0.5 ms instead of 5 ms one loan (47 parcels, 10,000 paths, 2 threads) took
    0.27-0.32 s against 0.30-0.35 s (best and median of 8 interleaved runs; docs/performance.md).
    The setting is the process's: the first threaded run lowers it, the last one restores it, so
    overlapping runs (the API's jobs) leave it as they found it. Results never depend on it.
    """
    with _SWITCH_LOCK:
        if _switch_state["users"] == 0:
            _switch_state["saved"] = sys.getswitchinterval()
            sys.setswitchinterval(min(seconds, _switch_state["saved"]))
        _switch_state["users"] += 1
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            _switch_state["users"] -= 1
            if _switch_state["users"] == 0:
                sys.setswitchinterval(_switch_state["saved"])


def _run_threads(workers: int, setup: EngineSetup, tasks, results, report, cancel) -> None:
    """Chunks on a pool of threads sharing this process's set-up.

    Chunks only read the set-up; its lazily filled caches (the pine wilt shadow epidemic of
    independent mode, forced-event masks) fill under a lock or idempotently. With more than one
    worker the GIL switch interval is lowered for the run (:func:`_switch_interval`).
    """
    from concurrent.futures import ThreadPoolExecutor

    stop = {"cancelled": False}

    def cancelled() -> bool:
        return stop["cancelled"]

    def abort() -> None:
        stop["cancelled"] = True  # running chunks stop at their next year

    with _switch_interval(THREADS_SWITCH_INTERVAL_S) if workers > 1 else nullcontext():
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="carbon-chunk") as pool:
            pending = {pool.submit(run_chunk, setup, i, s, e, cancelled, results.views(s, e)): i
                       for i, s, e in tasks}
            _collect(pending, results, report, cancel, abort)


def _run_pool(workers: int, token: str, payload: tuple, tasks, results, report, cancel) -> None:
    """Chunks on a pool of worker processes started for the run.

    Where the platform forks (Linux), the workers inherit this process's set-up and share its pages: the
    city run on processes stays within its memory bound that way (docs/performance.md). Forking a process
    that runs other threads copies every lock as it stood: Python re-creates a few of its own in the child
    (the import lock, logging's), but a lock another thread held at that moment in a library or an object
    the child goes on to use stays held there. A long-lived process with threads of its own (a service)
    is better served by ``scheduler="threads"`` or ``"warm"`` (whose workers start from a fork server).
    """
    ctx = multiprocessing.get_context()
    if ctx.get_start_method() == "fork" and token in _SETUP_CACHE:
        # forked workers inherit this process's set-up: send them only the config (no second
        # copy of the portfolio and model per worker, no set-up to rebuild)
        initargs = (token, None, pickle.dumps(payload[2]))
    else:
        initargs = (token, pickle.dumps(payload), None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_pool_worker,
                             initargs=initargs) as pool:
        pending = {pool.submit(_pool_task, token, i, s, e): i for i, s, e in tasks}
        _collect(pending, results, report, cancel)


def _run_dask(scheduler: Any, workers: int, token: str, payload: tuple, tasks, results, report, cancel) -> None:
    from distributed import Client, LocalCluster, as_completed

    own_cluster = None
    if isinstance(scheduler, str):
        if scheduler == "local-cluster":
            own_cluster = LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
            client = Client(own_cluster)
        else:
            client = Client(scheduler, timeout="20s")
        own_client = True
    else:
        client, own_client = scheduler, False
    try:
        blob = client.scatter(pickle.dumps(payload), broadcast=True, hash=False)
        # task keys unique to this run: runs on one client (from several threads, or one after another while
        # the scheduler still holds a finished run's results) must never share a key, or one run is handed
        # another's chunks (a key names a result on the cluster; the set-up token leaves out seed, paths and
        # years). The readable prefix shows in the dashboard.
        run_id = uuid.uuid4().hex
        futures = {client.submit(_chunk_task, token, blob, i, s, e, pure=False, key=f"crechunk-{run_id}-{i}"): i
                   for i, s, e in tasks}
        ac = as_completed(list(futures))
        for f in ac:
            results[futures[f]] = f.result()
            report()
            if cancel is not None and cancel():
                client.cancel(list(futures))
                raise SimulationCancelled("simulation cancelled")
    finally:
        if own_client:
            client.close()
        if own_cluster is not None:
            own_cluster.close()


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


__all__ = ["AUTO_CHUNKS_PER_WORKER", "AUTO_MAX_CHUNK_ELEMENTS", "AUTO_MIN_CHUNK_ELEMENTS", "CALLBACK_MIN_CHUNKS",
           "CALLBACK_MIN_CHUNK_ELEMENTS", "PARCEL_METRICS", "PerPathPlan", "Progress", "SUMMARY_S_PER_VALUE",
           "SimulationCancelled", "auto_chunk_paths", "balanced_chunk_paths", "chunk_ranges", "default_workers",
           "per_path_bytes", "require_per_path", "simulate"]
