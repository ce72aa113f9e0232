"""CPU-bound work of the service in a process pool, so the event loop and other requests are not blocked.

:class:`ComputePool` wraps one :class:`concurrent.futures.ProcessPoolExecutor` (``workers`` processes,
default the CPU count; started on first use with the ``spawn`` method, so no server thread or database
connection is copied into a worker). Each worker process is initialised once
(:func:`_init_worker`: imports the engine, loads the parameter sets, the price model and the issuance
risk model) and keeps validated portfolios in a small LRU keyed by the SHA-256 of their stored
Parquet bytes, so a portfolio is validated once per worker however often it is valued.

The task functions below (``task_*``) are the only code that runs in the workers. They are thin: they
call ``finance_engine`` and return JSON-ready dicts (or bytes of rendered reports). Numbers do not
depend on which worker ran a task or how many there are: every draw of the engine is keyed by seed,
stream name, year, path id and parcel key.

``workers=0`` runs the tasks in the calling thread (no pool); tests of the pool itself use it.

Progress: the collateral, accounts, quote and stress tasks take an optional progress channel
(:func:`progress_sink`): a queue of the pool's :class:`multiprocessing.managers.SyncManager`
(:meth:`ComputePool.progress_queue`, one manager per pool, a queue per job) that the job thread drains, or
with ``workers=0`` the job thread's receiver itself. Progress is observation only: the numbers do not
depend on it. They take a cancel flag too (:meth:`ComputePool.stop_flag`, an event of the same manager, or
the job's own event in-process), polled at each report (:class:`TaskProgress`): a cancelled job's task
stops at its engine's next chunk and frees its worker.

A request that finds the pool idle may use more than one thread of its worker
(:meth:`ComputePool.run`; up to the pool's workers and the machine's CPUs): a collateral valuation
large enough to gain from them (:func:`finance_engine.simulation.useful_threads`) runs its chunks on
several threads instead of one, on cores that would otherwise stay idle. The choice is made when the
task is submitted: a task that arrives while another runs or waits keeps one thread (so a burst of
requests does not contend), while the burst's first keeps the threads it was given; background jobs
keep one thread, and the simulation jobs that run in the server's job thread count as busy
(:meth:`ComputePool.occupied`). Other server processes are not seen. Numbers do not depend on it.

:class:`ResultCache` keeps the results of recent identical requests (same task, portfolio bytes,
model, code and request, seed included): a repeat is answered from memory with the same numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import math
import multiprocessing
import os
import tempfile
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Iterator
from models._yaml import load_untrusted_yaml
from api.jsonable import clean  # noqa: F401  (re-exported for the tasks below)

log = logging.getLogger("carbon_risk.compute")

# ---- per-worker state ---------------------------------------------------------------------------
_W: dict[str, Any] = {"portfolios": OrderedDict()}
_PORTFOLIO_CACHE = 16
_TASK = threading.local()  # the threads the running task may use (see with_threads)


def with_threads(threads: int, fn: Callable, *args) -> Any:
    """Run the task ``fn(*args)`` with up to ``threads`` threads of this worker for its engine run."""
    _TASK.threads = max(1, int(threads))
    try:
        return fn(*args)
    finally:
        _TASK.threads = 1


def task_threads() -> int:
    """The threads the running task may use (1 unless :func:`with_threads` says otherwise)."""
    return getattr(_TASK, "threads", 1)


#: the seed and horizon a warm worker simulates the pine wilt landscape for: the API's default seed
#: (``api.finance_schemas``) and crediting horizon (``finance_engine.loan_terms.LoanTerms``)
WARM_SEED, WARM_YEARS = 2026, 30


def _init_worker(warm_paths: int = 0, pool_worker: bool = False) -> None:
    """Import and load everything a task needs, once per worker process; with ``warm_paths``, also
    simulate each region's pine wilt landscape for that many paths of the default seed (its footprint
    is shared by every valuation on that seed, :func:`models.perils.pine_wilt.warm_footprint`). A pool
    worker then only reads the footprint store (its requests' seeds are their own)."""
    from finance_engine._workers import exit_with_parent

    exit_with_parent()  # a killed server must not leave its workers behind
    import matplotlib

    matplotlib.use("Agg")
    from finance_engine.issuance import load_issuance_risk
    from finance_engine.price import load_price_model
    from models.parameters import available_regions, load_parameters

    _W["params"] = {r: load_parameters(r) for r in available_regions()}
    _W["pms"] = load_price_model()
    _W["iss"] = load_issuance_risk()
    _W["portfolios"] = OrderedDict()
    from models.perils import footprint_store

    if warm_paths > 0:
        from models.perils.pine_wilt import warm_footprint

        for region, params in _W["params"].items():
            try:  # read from the machine's footprint store when an earlier worker has written it
                # (warm_footprint's default: the default switches' spread draws, those of the service's valuations)
                warm_footprint(params, WARM_SEED, warm_paths, WARM_YEARS)
            except Exception:  # noqa: BLE001 - warming only saves time: a failure must not break the pool
                log.exception(
                    "could not simulate the %s pine wilt landscape ahead; valuations will simulate it", region)
    if pool_worker:  # requests read the store but do not write to it: their seeds are their own
        footprint_store.set_writes(False)


def _state() -> dict[str, Any]:
    if "params" not in _W:
        _init_worker()
    return _W


def _params(region: str):
    return _state()["params"][region]


def pf_ref(row) -> dict[str, Any]:
    """What a worker needs to rebuild a stored portfolio: region, data hash, source (the uploaded file's name),
    Parquet bytes. A worker keeps validated portfolios by (region, hash, source), and the engine, whose set-ups
    are keyed by the parcels' content, reports each run's own source: one tenant's name never reaches another."""
    return {"region": row.region, "sha256": row.data_sha256, "source": row.source, "data": row.data_parquet}


def _portfolio(ref: dict[str, Any]):
    """The validated portfolio of stored Parquet bytes (cached per worker by hash, model and source)."""
    region, data_sha256, data = ref["region"], ref["sha256"], ref["data"]
    import pandas as pd

    from models.portfolio import validate_frame

    st = _state()
    cache: OrderedDict = st["portfolios"]
    key = (region, data_sha256, ref["source"])
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    if hashlib.sha256(data).hexdigest() != data_sha256:
        raise RuntimeError("portfolio bytes do not match their hash")
    pf = validate_frame(pd.read_parquet(io.BytesIO(data)), _params(region), source=ref["source"])
    cache[key] = pf
    while len(cache) > _PORTFOLIO_CACHE:
        cache.popitem(last=False)
    return pf


# ---- progress of a task ---------------------------------------------------------------------------
def progress_sink(channel: Any) -> Callable[..., None]:
    """The progress sink of a task: ``sink(fraction, eta_s=None, message=None)`` puts the tuple on
    ``channel`` (anything with ``put``: a :meth:`ComputePool.progress_queue` proxy from a worker, or the
    job thread's own receiver when tasks run in-process); ``fraction`` None: ``message`` is a note for
    the log. None: a no-op. A failing channel (its manager gone) is dropped after a warning: progress is
    observation only, it never fails a task or changes its numbers."""
    if channel is None:
        return lambda *a, **k: None
    broken: list[bool] = []

    def sink(fraction: float | None, eta_s: float | None = None, message: str | None = None) -> None:
        if broken:
            return
        try:
            channel.put((None if fraction is None else float(fraction), None if eta_s is None else float(eta_s),
                         None if message is None else str(message)))
        except Exception:  # noqa: BLE001 - see the docstring
            broken.append(True)
            log.warning("a task's progress channel failed; its progress is no longer reported", exc_info=True)
    return sink


def chunks_line(p) -> str:
    """The log line of an engine :class:`~finance_engine.simulation.Progress` (simulation and finance jobs); while
    the run summarises its results (``summarising``), a line of its own (it had repeated the last chunk line)."""
    if getattr(p, "summarising", False):
        return f"progress {p.chunks_done}/{p.chunks_total} chunks: summarising the results"
    return f"progress {p.chunks_done}/{p.chunks_total} chunks"


class TaskProgress:
    """A task's progress as it reports it: ``track(fraction, message)`` (the ETA from the time elapsed
    since the task started), :meth:`note` (a log line) and :meth:`chunks` (an engine ``progress``
    callback mapped onto a part of the task).

    ``stop``: the job's cancel flag (anything with ``is_set``: a :meth:`ComputePool.stop_flag` proxy from a
    worker, or the job thread's own event in-process). Once it is set, the next report raises
    :class:`~finance_engine.simulation.SimulationCancelled`, which ends the task at the engine's next chunk
    (or the task's next step), so a cancelled job frees its worker instead of computing a result nobody
    keeps. A flag that fails (its manager gone) is dropped after a warning, as a failing channel is."""

    def __init__(self, channel: Any, stop: Any = None):
        self.sink, self.on, self.t0 = progress_sink(channel), channel is not None, time.perf_counter()
        self.stop = stop
        self._lock = threading.Lock()  # a phase's heartbeat thread (:class:`StressPhases`) reports too

    def cancelled(self) -> bool:
        """Whether the job was cancelled (an engine ``cancel`` callback: polled between simulated years)."""
        if self.stop is None:
            return False
        try:
            return bool(self.stop.is_set())
        except Exception:  # noqa: BLE001 - the flag is gone: the task runs to its end
            log.warning("a task's cancel flag failed; the task can no longer be stopped early", exc_info=True)
            self.stop = None
            return False

    def check(self) -> None:
        """Raise ``SimulationCancelled`` if the job was cancelled."""
        if self.cancelled():
            from finance_engine.simulation import SimulationCancelled

            raise SimulationCancelled("the job was cancelled")

    def __call__(self, fraction: float, message: str | None = None) -> None:
        self.check()
        el = time.perf_counter() - self.t0
        self.report(fraction, el * (1.0 - fraction) / fraction if fraction > 0 else None, message)

    def report(self, fraction: float, eta_s: float | None, message: str | None = None) -> None:
        """Report ``fraction`` with the caller's own ETA (no cancel check: see :meth:`check`)."""
        with self._lock:
            self.sink(fraction, eta_s, message)

    def note(self, message: str) -> None:
        self.check()
        with self._lock:
            self.sink(None, None, message)

    def chunks(self, start: float = 0.0, end: float = 1.0) -> Callable | None:
        """An engine ``progress`` callback whose run is the part ``start``..``end`` of the task (None when
        nothing is reported or stopped, so the engine does no extra work)."""
        if not self.on and self.stop is None:
            return None

        def report(p) -> None:
            if p.chunks_done == p.chunks_total:
                # the last chunk's line as a note, which the log keeps: as a progress message it was replaced
                # by the task's next report (its next phase) when that came within the write interval
                self(start + (end - start) * p.fraction)
                self.note(chunks_line(p))
            else:
                self(start + (end - start) * p.fraction, chunks_line(p))
        return report


# ---- tasks ----------------------------------------------------------------------------------------
def task_simulate(ref: dict[str, Any], req: dict[str, Any], chunk_paths: int | None = None):
    """:func:`api.services.run_simulation` in a worker; returns the SimulationResult."""
    from api.services import run_simulation

    return run_simulation(_portfolio(ref), _params(ref["region"]), req, chunk_paths=chunk_paths)


def _valuation(ref: dict[str, Any], req: dict[str, Any], progress: Callable | None = None,
               cancel: Callable[[], bool] | None = None):
    from finance_engine.collateral import value_collateral

    st = _state()
    return value_collateral(
        _portfolio(ref), _params(ref["region"]), req["terms"], parcel_ids=req.get("parcel_ids"),
        project_id=req.get("project_id"), paths=req["paths"], seed=req["seed"], attribution=req["attribution"],
        attribution_paths=req.get("attribution_paths"), sensitivities=req["sensitivities"],
        price_model_set=st["pms"], issuance_risk=st["iss"], workers=task_threads(), progress=progress,
        cancel=cancel)


def task_collateral(ref: dict[str, Any], req: dict[str, Any], progress: Any = None, stop: Any = None,
                    memo: bool = False) -> dict[str, Any]:
    """:func:`finance_engine.collateral.value_collateral` -> ``CollateralValuation.to_dict()`` (cleaned);
    ``progress``, ``stop``: see :func:`progress_sink` and :class:`TaskProgress` (a valuation chooses its own
    chunks: few large ones, since a small pledge's per-chunk work dominates; its drivers' reruns step it).

    ``memo`` (a job): ``{"result": ..., "artifacts": {"memo.html": (media type, bytes)}}``, the memo rendered
    from the valuation's own paths, which are not stored (a job-sized valuation's memo is never re-run in a
    request)."""
    track = TaskProgress(progress, stop)
    v = _valuation(ref, req, track.chunks(), track.cancelled if stop is not None else None)
    if not memo:
        return clean(v.to_dict())
    from finance_engine.reports.collateral_memo import render_collateral_memo

    track.note("rendering the collateral memo")
    result = clean(v.to_dict())
    try:
        html = render_collateral_memo(v, title_suffix=req.get("name") or "carbon-pledge loan",
                                      attribution_paths=req.get("attribution_paths"))
    except Exception:  # noqa: BLE001 - a report bug must not lose (or misname as bad input) a valuation
        log.exception("the collateral memo could not be rendered; the valuation is kept without it")
        track.note("the collateral memo could not be rendered (see the server log); the valuation is kept")
        return {"result": result, "artifacts": {}}
    return {"result": result, "artifacts": {"memo.html": ("text/html; charset=utf-8", html.encode("utf-8"))}}


def task_accounts(ref: dict[str, Any], req: dict[str, Any], progress: Any = None,
                  chunk_paths: int | None = None, stop: Any = None) -> dict[str, Any]:
    """:func:`finance_engine.accounts.carbon_accounts` -> its table at every level with provenance and units
    (``progress``, ``chunk_paths``, ``stop``: see :func:`progress_sink` and :class:`TaskProgress`; the numbers
    do not depend on them)."""
    from finance_engine.accounts import carbon_accounts

    track = TaskProgress(progress, stop)
    acc = carbon_accounts(_portfolio(ref), _params(ref["region"]), sink_paths=req["paths"], seed=req["seed"],
                          workers=task_threads(), chunk_paths=chunk_paths, progress=track.chunks(),
                          scheduler="threads" if task_threads() > 1 else None)  # a worker has threads: no fork
    d = acc.to_dict()
    return clean({"provenance": d["provenance"], "units": d["units"], "sink_paths": req["paths"], "seed": req["seed"],
                  "rows": d["rows"]})


def task_collateral_memo(ref: dict[str, Any], req: dict[str, Any]) -> tuple[str, dict]:
    """Re-run a valuation (same seed: the same numbers) and render its HTML collateral memo.

    Returns the HTML and the valuation's dict, so the caller can check it equals the stored result."""
    from finance_engine.reports.collateral_memo import render_collateral_memo

    v = _valuation(ref, req)
    name = req.get("name") or "carbon-pledge loan"
    return render_collateral_memo(v, title_suffix=name, attribution_paths=req.get("attribution_paths")), clean(v.to_dict())


def loading_from(ld: dict[str, Any] | None):
    """A quote request's ``loading`` as the engine's ``Loading`` (None: the default); raises its input errors."""
    from finance_engine.insurance import default_loading

    return None if ld is None else default_loading(ld.get("method"), ld.get("parameter"),
                                                   expense_ratio=ld.get("expense_ratio"),
                                                   profit_ratio=ld.get("profit_ratio"),
                                                   fixed_costs_cny=ld.get("fixed_costs_cny") or 0.0)


def layer_from(layer: dict[str, Any]):
    """One of a quote request's ``layers`` as the engine's ``LayerSpec``; raises its input errors."""
    from finance_engine.insurance.quote import LayerSpec

    return LayerSpec(attachment_cny=layer["attachment_cny"], limit_cny=layer["limit_cny"],
                     basis=layer.get("basis", "occurrence"), reinstatements=layer.get("reinstatements"),
                     reinstatement_pct=layer.get("reinstatement_pct", 1.0), share=layer.get("share", 1.0))


def quote_inputs(req: dict[str, Any]):
    """The typed cover, loading and layers of a quote request (raises the engine's input errors)."""
    from finance_engine.insurance import cover_from_dict

    return cover_from_dict(req["cover"]), loading_from(req.get("loading")), [layer_from(l) for l in req.get("layers") or []]


def task_quote(ref: dict[str, Any], req: dict[str, Any], progress: Any = None,
               chunk_paths: int | None = None, stop: Any = None) -> dict[str, Any]:
    """:func:`finance_engine.insurance.quote` -> ``Quote.to_dict()`` (cleaned); ``progress``, ``chunk_paths``,
    ``stop``: see :func:`progress_sink` and :class:`TaskProgress`."""
    from finance_engine.insurance import quote
    from finance_engine.loan_terms import crediting_overrides

    cover, loading, layers = quote_inputs(req)
    q = quote(cover, _portfolio(ref), _params(ref["region"]), paths=req["paths"], years=req["years"],
              seed=req["seed"], loading=loading, subsidy=req.get("subsidy"), subsidised=req["subsidised"],
              layers=layers, quota_share=req["quota_share"], account_level=req.get("account_level"),
              price_model_set=_state()["pms"], workers=1, chunk_paths=chunk_paths,
              progress=TaskProgress(progress, stop).chunks(),
              crediting=crediting_overrides(req) or None)
    return clean(q.to_dict())


def task_quote_slip(result: dict[str, Any], title: str | None) -> str:
    """The quote slip HTML of a stored quote (rendered from its JSON alone)."""
    from finance_engine.reports.quote_slip import render_quote_slip

    _state()
    return render_quote_slip(result, title_suffix=title)


def records_frame(rows: list) -> "pd.DataFrame":
    """A loss table from records; an empty list is an empty table with numeric columns (no loss)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame({"year": pd.Series([], dtype="int64"), "event_id": pd.Series([], dtype="int64"),
                             "loss": pd.Series([], dtype="float64")})
    return pd.DataFrame.from_records(rows)


def read_loss_table(filename: str, data: bytes):
    """An event loss table from uploaded CSV, Parquet or JSON bytes (columns year, event_id, loss)."""
    import pandas as pd

    from finance_engine.insurance import InsuranceInputError

    suffix = Path(filename or "elt.csv").suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pd.read_csv(io.BytesIO(data))
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(io.BytesIO(data))
        if suffix == ".json":
            doc = json.loads(data.decode("utf-8-sig"))
            if isinstance(doc, dict) and "rows" in doc:
                doc = doc["rows"]
            if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
                raise InsuranceInputError("a JSON loss table must be a list of {year, event_id, loss} objects")
            return records_frame(doc)
    except InsuranceInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure is bad input
        raise InsuranceInputError(f"file: cannot read the loss table as {suffix or 'csv'}: "
                                  f"{type(exc).__name__}: {str(exc)[:200]}") from None
    raise InsuranceInputError(f"file: unsupported loss table type {suffix or '(none)'!r}; use .csv, .parquet or .json")


def layer_result_dict(lay) -> dict[str, Any]:
    """A :class:`finance_engine.insurance.LayerResult` as JSON (without the annual samples)."""
    lo, hi = lay.expected_loss_ci(0.95)
    return clean({
        "basis": lay.basis, "attachment": lay.attachment, "limit": lay.limit,
        "aggregate_deductible": lay.aggregate_deductible, "aggregate_limit": lay.aggregate_limit,
        "share": lay.share, "n_years": lay.n_years, "years_per_block": lay.years_per_block,
        "independent_units": lay.independent_units, "expected_loss": lay.expected_loss,
        "expected_loss_se": lay.expected_loss_se, "expected_loss_ci95": [lo, hi],
        "sd_annual_loss": lay.sd_annual_loss, "prob_attachment": lay.prob_attachment,
        "prob_attachment_se": lay.mean_se(lay.annual_loss > 0), "prob_exhaustion": lay.prob_exhaustion,
        "prob_exhaustion_se": lay.mean_se(lay.annual_exhausted),
        "expected_events_in_layer": lay.expected_events_in_layer,
        "reinstatements": None if lay.reinstatements is None else
        {"count": lay.reinstatements.count, "premium_pct": lay.reinstatements.premium_pct},
        "upfront_premium": lay.upfront_premium, "expected_reinstatement_premium": lay.expected_reinstatement_premium,
        "pure_rate_on_line": lay.pure_rate_on_line,
    })


def task_layer(filename: str, data: bytes | None, rows: list | None, req: dict[str, Any]) -> dict[str, Any]:
    """:func:`finance_engine.insurance.price_layer` on an uploaded event loss table.

    The engine's own table (columns ``path`` and ``sim_year``, as ``carbon-risk simulate --loss-table`` writes
    it) is priced on its simulated year ``sim_year`` and its ``loss_tco2e``; a year column that cannot index
    ``n_years`` simulated years (each path's own year, or event years all far below ``n_years``) is refused
    (:func:`finance_engine.insurance.tables.check_year_index`)."""
    import pandas as pd

    from finance_engine.insurance import elt_columns, price_layer

    elt = read_loss_table(filename, data) if data is not None else records_frame(rows or [])
    rein = req.get("reinstatements")
    year_col, loss_col, engine = elt_columns(elt)
    lay = price_layer(elt, req["n_years"], req["attachment"], math.inf if req["limit"] is None else req["limit"],
                      req["basis"], None if rein is None else (rein, req.get("reinstatement_pct", 1.0)),
                      share=req.get("share", 1.0), year_col=year_col, loss_col=loss_col, check_year_spread=True)
    return {**layer_result_dict(lay), "table": {"rows": int(len(elt)), "sha256": req.get("table_sha256")},
            "columns": {"year": year_col, "event": "event_id", "loss": loss_col, "engine_table": engine}}


class InlineScenarioError(ValueError):
    """An inline stress scenario is invalid (the message names the scenario and the field)."""


def load_inline_scenario(i: int, spec: Any):
    """A :class:`finance_engine.stress.scenarios.StressScenario` from an inline JSON object or YAML text.

    ``includes`` may name library scenarios only (never a file of the server)."""
    import yaml

    from finance_engine.stress.scenarios import ScenarioError, load_scenario, scenario_library

    where = f"inline_scenarios.{i}"
    if isinstance(spec, str):
        try:
            doc = load_untrusted_yaml(spec)  # bounded: a request's text must not crash or flood the server
        except yaml.YAMLError as exc:
            raise InlineScenarioError(f"{where}: not valid YAML or JSON: {str(exc)[:300]}") from None
        except ValueError as exc:
            raise InlineScenarioError(f"{where}: {exc}") from None
    else:
        doc = spec
    if not isinstance(doc, dict):
        raise InlineScenarioError(f"{where}: a scenario must be a mapping of field -> value")
    inc = doc.get("includes") or []
    lib = set(scenario_library())
    if not isinstance(inc, list) or not all(isinstance(x, str) and x in lib for x in inc):
        raise InlineScenarioError(f"{where}.includes: may only name library scenarios ({', '.join(sorted(lib))})")
    if inc:  # the library's own files, by absolute path: a name is never looked up among the server's files
        doc = {**doc, "includes": [str(library_scenario_path(x)) for x in inc]}
    from finance_engine.stress.scenarios import LIBRARY_DIR

    with tempfile.TemporaryDirectory(prefix="cre-scn-") as d:
        p = Path(d) / f"inline_{i}.json"
        p.write_text(json.dumps(doc, default=str), encoding="utf-8")
        try:
            return load_scenario(p)
        except ScenarioError as exc:  # name the request's parts, not the server's paths
            msg = str(exc).replace(str(p), where).replace(str(LIBRARY_DIR) + "/", "library:")
            raise InlineScenarioError(msg) from None


def library_scenario_path(name: str) -> Path:
    """The shipped file of the stress library scenario ``name`` (``finance_engine/scenarios/<name>.yaml``).

    API callers name library scenarios only: a name is looked up in the library and nowhere else (never
    as a path of the server, relative or not), so a request can neither read nor probe the server's files."""
    from finance_engine.stress.scenarios import LIBRARY_DIR, scenario_library

    lib = scenario_library()
    if name not in lib:
        raise ScenarioNameError(f"unknown scenario {name!r}: not in the library ({', '.join(lib)})")
    return LIBRARY_DIR / f"{name}.yaml"


class ScenarioNameError(ValueError):
    """A stress request names a scenario that is not in the library."""


def load_library_scenario(name: str):
    """A library scenario by name, loaded from its shipped file (see :func:`library_scenario_path`)."""
    from finance_engine.stress.scenarios import load_scenario

    return load_scenario(library_scenario_path(name))


def stress_inputs(req: dict[str, Any]):
    """Scenarios (library names and inline ones) and the registry of a stress request."""
    from finance_engine.stress.registry import parse_registry

    scns = []
    for i, n in enumerate(req.get("scenarios") or []):
        try:
            scns.append(load_library_scenario(n))
        except ScenarioNameError as exc:
            raise ScenarioNameError(f"scenarios.{i}: {exc}") from None
    scns += [load_inline_scenario(i, s) for i, s in enumerate(req.get("inline_scenarios") or [])]
    reg = req.get("registry")
    registry = None if not reg else parse_registry(reg, "registry")
    return scns, registry


#: the measured cost of a stress task's phases (s), from which :class:`StressPhases` weighs them: the demo portfolio
#: (5,000 parcels; 144 townships), 64 and 256 paths, 10 years, levels portfolio/county/township, a scenario and the
#: baseline, all on one (busy, two-core) machine. Only their ratios matter: the runs' own measured time rescales
#: the rest to the machine at hand. "cell": a parcel x path x year of an engine run, or a cell of the result's
#: tables (the report, the workbook and the stored result grow with the tables, not with the paths).
STRESS_COST = {
    "run_s": 1.07, "run_s_per_cell": 3.85e-7,            # one engine run (the baseline's and each scenario's)
    "accounts_s": 1.55, "accounts_s_per_cell": 5.16e-7,  # one scenario's accounts: a run at every level, its tree
    "result_s_per_cell": 3.0e-6,                         # the result as JSON (to_dict, clean)
    "report_s": 0.9,                                     # the HTML report
    "workbook_s_per_cell": 1.3e-5,                       # the Excel workbook (xlsxwriter, row by row: 3.6x openpyxl)
    "save_s_per_cell": 2.0e-6,                           # the job thread stores the result and its reports
}
#: how often (s) a phase without progress of its own reports its expected progress (:meth:`StressPhases.phase`)
HEARTBEAT_S = 0.5


def _stress_cells(pf, levels: tuple[str, ...], runs: int, horizon: int) -> int:
    """The cells a stress result's tables are expected to have before it is run: a by-year and a horizon row per
    run, group at the levels and metric (about 12: stock, sink, credits, losses by peril ...)."""
    keys = {"province": ["province"], "city": ["province", "city"], "county": ["county"],
            "township": ["county", "township"], "village": ["county", "township", "village"]}
    groups = 0
    for lv in levels:
        cols = [c for c in keys.get(lv, []) if c in pf.frame.columns]
        groups += 1 if not cols else len(pf.frame[cols].drop_duplicates())
    return int(runs * groups * 12 * (28 * horizon + 32))


class StressPhases:
    """A stress task's progress as one fraction over its phases, each weighed by its expected time (s, from
    :data:`STRESS_COST`), with :class:`~finance_engine.simulation.RunsProgress`: the engine runs (their own
    chunks), the result as JSON, the HTML report, the Excel workbook, each scenario's accounts, and the job
    thread's save of it all, which the task never reports done (so the task reports 1.0 never: the job's
    success does). A phase without progress of its own (:meth:`phase`) reports the part its expected time says
    is done every :data:`HEARTBEAT_S`, up to 90 % of the phase at its expected time and then ever more slowly,
    so the fraction and the ETA move while it runs but never pass its end before it ends.

    :meth:`rescale`, once the runs are done: their measured time over their expected time rescales the phases
    still to come (the machine's speed), whose work is then known (the result's table cells); the result's
    measured time rescales those that go cell by cell. The fraction reported never goes back."""

    def __init__(self, track: "TaskProgress", weights: dict[str, float]):
        from finance_engine.simulation import RunsProgress

        self.track, self.weights = track, dict(weights)
        self.names = list(self.weights)
        self._lock = threading.Lock()
        self._message: str | None = None
        self._last = 0.0
        sink = self._sink if (track.on or track.stop is not None) else None
        self.runs = RunsProgress(sink, weights=self._w())

    def _w(self) -> list[float]:
        return [max(1e-3, float(self.weights[n])) for n in self.names]

    def _sink(self, p) -> None:
        # a rescale may move the fraction back a little: the task reports the highest so far (the job's
        # progress never goes back)
        self._last = max(self._last, p.fraction)
        self.track.report(self._last, p.eta_s, self._message)

    def rescale(self, weights: dict[str, float]) -> None:
        self.weights.update(weights)
        self.runs.plan(self._w())

    def engine(self, name: str) -> Callable | None:
        """The engine's ``progress`` callback of phase ``name``: its chunks, with their log line."""
        report = self.runs.of(self.names.index(name))
        if report is None:
            return None

        def on_progress(p) -> None:
            self.track.check()
            last = p.chunks_done == p.chunks_total
            with self._lock:
                # the last chunk's line goes as a note, which the log keeps: as the report's message it was
                # replaced by the next phase's first report when that came within the write interval
                self._message = None if last else chunks_line(p)
                try:
                    report(p)
                finally:
                    self._message = None
            if last:
                self.track.note(chunks_line(p))
        return on_progress

    def done(self, name: str, message: str | None = None, elapsed_s: float = 0.0) -> None:
        from finance_engine.simulation import Progress

        report = self.runs.of(self.names.index(name))
        if report is not None:
            with self._lock:
                self._message = message
                try:
                    report(Progress(1, 1, elapsed_s, 0.0, 1.0))
                finally:
                    self._message = None

    @contextlib.contextmanager
    def phase(self, name: str, note: str | None = None, done: str | None = None) -> Iterator[None]:
        """Run the body as phase ``name`` (``note``: its log line at the start; ``done``: with its last report)."""
        from finance_engine.simulation import Progress

        self.track.check()
        if note:
            self.track.note(note)
        report = self.runs.of(self.names.index(name))
        expected = max(1e-3, float(self.weights[name]))
        t0 = time.perf_counter()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(HEARTBEAT_S):
                el = time.perf_counter() - t0
                x = el / expected
                within = 0.9 * x if x <= 1.0 else 0.9 + 0.09 * (1.0 - math.exp(1.0 - x))
                with self._lock:
                    if not stop.is_set():
                        report(Progress(0, 1, el, None, within))

        beater = threading.Thread(target=beat, name=f"progress-{name}", daemon=True) if report else None
        if beater:
            beater.start()
        try:
            yield
        finally:
            stop.set()
            if beater:
                beater.join()
        self.done(name, done, time.perf_counter() - t0)


def task_stress(ref: dict[str, Any], req: dict[str, Any], progress: Any = None,
                chunk_paths: int | None = None, stop: Any = None) -> dict[str, Any]:
    """:func:`finance_engine.stress.run.run_stress_test`, its HTML report and Excel workbook, and the
    five-level accounts of each scenario (:func:`finance_engine.stress.accounts.scenario_accounts`).

    ``progress``, ``chunk_paths``, ``stop``: see :func:`progress_sink` and :class:`TaskProgress`. The reported
    fraction covers every phase, each weighed by its measured cost (:class:`StressPhases`): the scenario runs
    (by their chunks), the result, the report, the workbook (which on a large result takes longer than the
    runs), each scenario's accounts (one run per scenario over ``years`` at every level, a third dearer than a
    scenario run) and the save; it rises while each of them runs and reaches 1.0 only with the job's success."""
    from finance_engine.reports.stress_report import render_stress_report, write_stress_workbook
    from finance_engine.stress.accounts import scenario_accounts
    from finance_engine.stress.run import StressSettings, run_stress_test, stress_horizon

    pf, params, pms = _portfolio(ref), _params(ref["region"]), _state()["pms"]
    scns, registry = stress_inputs(req)
    st = StressSettings(years=req["years"], paths=req["paths"], seed=req["seed"], levels=tuple(req["levels"]))
    track = TaskProgress(progress, stop)
    horizon = stress_horizon(st.years, registry)
    with_accounts = req.get("accounts", True)
    names = list(dict.fromkeys(["baseline", *(s.name for s in scns)]))  # the runs: the engine adds the baseline
    c = STRESS_COST
    work = len(pf) * st.paths

    def later(cells: int, speed: float = 1.0, tables: float | None = None) -> dict[str, float]:
        """The phases after the runs (s): ``speed``, the runs' measured time over their expected time; ``tables``,
        the same of the result's JSON, which scales the other phases that go cell by cell (report, workbook, save)."""
        tables = speed if tables is None else tables
        w = {"result": c["result_s_per_cell"] * cells * speed, "report": c["report_s"] * tables,
             "workbook": c["workbook_s_per_cell"] * cells * tables}
        if with_accounts:
            w.update({f"accounts:{n}": (c["accounts_s"] + c["accounts_s_per_cell"] * work * st.years) * speed
                      for n in names})
        w["save"] = c["save_s_per_cell"] * cells * tables
        return w

    def ratio(took: float, expected: float) -> float:
        return min(3.0, max(1 / 3, took / expected)) if expected > 0 else 1.0

    runs_s = len(names) * (c["run_s"] + c["run_s_per_cell"] * work * horizon)
    phases = StressPhases(track, {"runs": runs_s, **later(_stress_cells(pf, st.levels, len(names), horizon))})
    t0 = time.perf_counter()
    r = run_stress_test(pf, params, scns, registry=registry, settings=st, pms=pms, workers=1,
                        chunk_paths=chunk_paths, footprints=req.get("footprints", True),
                        progress=track.note, on_progress=phases.engine("runs"))
    took = time.perf_counter() - t0
    cells = sum(int(df.size) for df in r.tables().values())
    speed = ratio(took, runs_s)
    phases.rescale({"runs": took, **later(cells, speed)})
    phases.done("runs")
    t0 = time.perf_counter()
    with phases.phase("result"):
        out: dict[str, Any] = {"result": clean(r.to_dict()), "artifacts": {}}
    phases.rescale({"result": time.perf_counter() - t0,
                    **{k: v for k, v in later(cells, speed, ratio(time.perf_counter() - t0, c["result_s_per_cell"] * cells)).items()
                       if k != "result"}})
    with phases.phase("report", note="rendering the report"):
        out["artifacts"]["report.html"] = (
            "text/html; charset=utf-8", render_stress_report(r, title_suffix=req.get("name") or "stress test").encode())
    with phases.phase("workbook", note="writing the Excel workbook"), \
            tempfile.TemporaryDirectory(prefix="cre-xlsx-") as d:
        p = write_stress_workbook(r, Path(d) / "stress.xlsx")
        out["artifacts"]["report.xlsx"] = (
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", p.read_bytes())
    if with_accounts:
        by_name = {s.name: s for s in scns}
        accounts = {}
        run_names = list(r.scenarios["scenario"])
        for i, name in enumerate(run_names):
            scn = by_name.get(name)
            if scn is None:  # the baseline the engine adds: the library's file, never a lookup by name
                scn = load_library_scenario(name)
            phase = f"accounts:{name}" if f"accounts:{name}" in phases.weights else None
            with (phases.phase(phase, note=f"accounts of {name}", done=f"accounts {i + 1}/{len(run_names)} scenarios")
                  if phase else contextlib.nullcontext()):
                acc = scenario_accounts(pf, params, scn, st, pms=pms)
                accounts[name] = {**clean(acc.to_dict()), "tree": clean(acc.tree())}
            if phase is None:
                track.note(f"accounts {i + 1}/{len(run_names)} scenarios")
        out["artifacts"]["accounts.json"] = ("application/json", json.dumps(accounts, allow_nan=False).encode())
    track.check()
    track.note("saving the result")
    return out


# ---- the pool -------------------------------------------------------------------------------------
#: a pool that breaks again this soon after it was replaced is not replaced again until then (s)
REPLACE_BACKOFF_S = 30.0

class ComputePool:
    """A lazily started process pool (see the module docstring)."""

    def __init__(self, workers: int | None = None, warm_paths: int = 0):
        self.workers = (os.cpu_count() or 1) if workers is None else int(workers)
        self.warm_paths = int(warm_paths)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._busy = 0  # tasks submitted and not finished
        self._replaced_at = -REPLACE_BACKOFF_S  # when a broken pool was last replaced (time.monotonic)
        self._manager = None  # serves the progress queues of tasks (progress_queue), started on first use
        self._manager_lock = threading.Lock()
        self._manager_failed = False

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(max_workers=self.workers,
                                                 mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_init_worker, initargs=(self.warm_paths, True))
            return self._pool

    def start(self) -> None:
        """Start the workers now (and initialise each) instead of on the first task."""
        if self.workers > 0:
            ex = self._executor()
            for f in [ex.submit(os.getpid) for _ in range(self.workers)]:
                f.result()

    @property
    def busy(self) -> int:
        """Tasks submitted and not yet finished."""
        with self._lock:
            return self._busy

    def _claim(self, idle_threads: bool) -> int:
        """Count a task in; the threads it may use: more than one only when ``idle_threads`` and no
        other task is running or queued (at most the pool's workers and the machine's CPUs)."""
        with self._lock:
            threads = min(max(self.workers, 1), os.cpu_count() or 1) if idle_threads and self._busy == 0 else 1
            self._busy += 1
            return threads

    def _release(self, _f: Any = None) -> None:
        with self._lock:
            self._busy -= 1

    @contextlib.contextmanager
    def occupied(self) -> Iterator[None]:
        """Count work done outside the pool (a simulation job in the server's job thread) as busy, so
        requests meanwhile keep one thread each."""
        self._claim(False)
        try:
            yield
        finally:
            self._release()

    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` in a worker on one thread (background jobs)."""
        return self._submit(self._claim(False), fn, *args)

    def _submit(self, threads: int, fn: Callable, *args) -> Future:
        if self.workers <= 0:
            f: Future = Future()
            try:
                f.set_result(with_threads(threads, fn, *args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                f.set_exception(exc)
            finally:
                self._release()
            return f
        try:
            ex = self._executor()
            try:
                f = ex.submit(with_threads, threads, fn, *args)
            except BrokenProcessPool:
                # a worker died (killed, out of memory): the tasks it had failed with this error; the
                # pool is unusable from then on, so start a new one for this and later tasks -- unless
                # the last new one broke too within REPLACE_BACKOFF_S (workers that cannot start):
                # then fail fast instead of starting pools in a loop
                if not self._discard_broken(ex):
                    raise
                f = self._executor().submit(with_threads, threads, fn, *args)
        except BaseException:
            self._release()
            raise
        f.add_done_callback(self._release)
        return f

    async def run(self, fn: Callable, *args) -> Any:
        """Run ``fn(*args)`` in a worker without blocking the event loop; a task that finds the pool
        idle may use more than one thread (see the module docstring)."""
        threads = self._claim(True)
        if self.workers <= 0:
            from starlette.concurrency import run_in_threadpool

            try:
                return await run_in_threadpool(with_threads, threads, fn, *args)
            finally:
                self._release()
        return await asyncio.wrap_future(self._submit(threads, fn, *args))

    def _discard_broken(self, broken: ProcessPoolExecutor) -> bool:
        """Drop ``broken`` if it is still the pool (a thread that met the same breakage a moment later
        must not drop the new pool another thread has started); False when the pool was last replaced
        less than :data:`REPLACE_BACKOFF_S` ago (it is then kept, broken, until that has passed)."""
        with self._lock:
            if self._pool is broken:
                now = time.monotonic()
                if now - self._replaced_at < REPLACE_BACKOFF_S:
                    return False
                log.warning("the compute pool broke (a worker died); starting a new one")
                self._pool, self._replaced_at = None, now
        broken.shutdown(wait=False, cancel_futures=True)
        return True

    def progress_queue(self) -> Any:
        """A new queue a task in a worker can report its progress to (:func:`progress_sink`): a proxy of
        a queue in this pool's manager process (picklable, so it is passed as a task argument; started
        on first use, one per pool), dropped by the caller when the task is done. None when the tasks
        run in-process (``workers=0``: the caller passes its own receiver) or the manager cannot be
        started (the task then runs without progress)."""
        if self.workers <= 0:
            return None
        with self._manager_lock:
            if self._manager is None and not self._manager_failed:
                from multiprocessing.managers import SyncManager

                from finance_engine._workers import exit_with_parent

                try:
                    m = SyncManager(ctx=multiprocessing.get_context("spawn"))
                    m.start(initializer=exit_with_parent)  # a killed server must not leave it behind
                    self._manager = m
                except Exception:  # noqa: BLE001 - progress is observation only: jobs run without it
                    log.exception("could not start the progress manager; finance jobs report no progress")
                    self._manager_failed = True
        return self._managed("Queue", "this job reports no progress")

    def stop_flag(self) -> Any:
        """A new cancel flag a task in a worker polls (:class:`TaskProgress`): a proxy of an event in this
        pool's manager (as :meth:`progress_queue`), set by the job thread when the job is cancelled. None
        when the tasks run in-process or the manager is not running (the task then runs to its end)."""
        if self.workers <= 0:
            return None
        return self._managed("Event", "this job cannot be stopped early")

    def _managed(self, kind: str, without: str) -> Any:
        """A new ``kind`` (``Queue``, ``Event``) of the running manager, or None (``without`` says what the job
        then lacks, in the log)."""
        with self._manager_lock:
            m = self._manager
        if m is None:
            return None
        try:
            return getattr(m, kind)()
        except Exception:  # noqa: BLE001 - e.g. the manager process was killed
            log.warning("the progress manager does not answer; %s", without, exc_info=True)
            return None

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
        with self._manager_lock:
            if self._manager is not None:
                with contextlib.suppress(Exception):
                    self._manager.shutdown()
                self._manager = None


class ResultCache:
    """Results of recent identical requests, by a key of everything that defines their numbers (LRU)."""

    def __init__(self, size: int = 256):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()
        self._inflight: dict[str, asyncio.Future] = {}

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str):
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        return None

    async def single_flight(self, key: str, compute: Callable[[], Any]) -> Any:
        """The cached value, or the result of ``compute()`` (awaited once however many callers ask for
        the same key at the same time; all of them get its result or its exception). Event-loop only."""
        hit = self.get(key)
        if hit is not None:
            return hit
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            value = await compute()
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._inflight.pop(key, None)
        self.put(key, value)
        fut.set_result(value)
        return value

    def put(self, key: str, value) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)


__all__ = ["ComputePool", "InlineScenarioError", "ResultCache", "STRESS_COST", "ScenarioNameError", "StressPhases",
           "TaskProgress", "chunks_line",
           "clean", "layer_result_dict", "library_scenario_path", "load_inline_scenario", "load_library_scenario",
           "pf_ref", "progress_sink", "quote_inputs", "read_loss_table", "stress_inputs", "task_accounts",
           "task_collateral", "task_collateral_memo", "task_layer", "task_quote", "task_quote_slip", "task_simulate",
           "task_stress"]
