"""Jobs: long simulations run by worker threads inside the server, persisted in the database.

Life cycle: ``queued -> running -> succeeded | failed | cancelled``. The job row holds the request,
progress (fraction of chunks done) and ETA (fed by the engine's ``progress`` callback; those of finance
jobs by their task's progress sink, :func:`api.finance.run_finance_job`; both written by
:class:`ProgressWriter`), log lines, error detail and, on success, the id of the stored simulation run.

Queue: jobs run in turn by tenant (:class:`FairQueue`: round robin, each tenant's in creation order), and a
tenant may have at most ``Settings.max_active_jobs_per_tenant`` jobs queued or running (:func:`create_job`).

Restarts: on start the runner re-queues every job found ``running`` (its server died mid-run) and
runs all queued jobs, each tenant's in creation order. A job's numbers depend only on its request (portfolio,
model, seed, ...), never on how its paths were chunked or how often it was started, so a rerun gives
the same result. Cancel: a queued job is cancelled at once; a running one at the next chunk boundary
(the engine polls the ``cancel`` callback between chunks); a ``running`` job no worker of this runner
holds (:meth:`JobRunner.owns`) is cancelled at once by the route. A graceful shutdown stops a running
job the same way and puts it back in the queue.

A job never stays ``running`` for want of an answer: a failure to save its result marks it failed with a
``storage-error`` problem detail, and the worker loop's last resort marks it failed too. The result, its
``<kind>.create`` audit record and the job's success are written in one transaction, conditional on the
job still running (:func:`mark_succeeded`): a cancel that came first wins and the result is discarded.

One server process runs the jobs (``Settings.job_workers`` threads); with several processes on one
database a job is still claimed by exactly one of them (a conditional UPDATE), but the re-queueing
of ``running`` jobs at start assumes the others are down.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import func, select, update

from api.compute import chunks_line
from api.db.models import Job, PortfolioRow, utcnow
from api.problems import ApiProblem, engine_problem
from api.requestctx import reset_request_id, set_request_id
from api.services import (SIMULATION_FIELDS, audit_record, cells, check_simulation_request, internal_job_problem,
                          job_problem, new_id, run_simulation, store_run)

log = logging.getLogger("carbon_risk.api.jobs")
MAX_LOG_LINES = 200
PROGRESS_WRITE_INTERVAL_S = 0.5
CANCEL_POLL_INTERVAL_S = 0.5
TERMINAL = ("succeeded", "failed", "cancelled")


def _stamp(msg: str) -> str:
    return f"{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')}Z {msg}"


def _append(job: Job, msg: str) -> None:
    """Add ``msg`` to the job's log, stamped, unless the last line says the same (a progress message repeated
    between reports, e.g. each part of a run's summary, is one line)."""
    lines = list(job.log or [])
    if lines and lines[-1].split(" ", 1)[-1] == msg:
        return
    lines.append(_stamp(msg))
    job.log = lines[-MAX_LOG_LINES:]


def create_job(s, *, tenant_id: str, key_id: str, kind: str, request: dict[str, Any], request_id: str,
               max_active: int | None = None) -> Job:
    """A new queued job. ``max_active``: the jobs the tenant may have queued or running at once
    (``Settings.max_active_jobs_per_tenant``); one more is a 429 ``too-many-jobs`` problem (a soft bound:
    two requests at the same instant may both pass)."""
    if max_active is not None:
        active = s.scalar(select(func.count()).select_from(Job).where(
            Job.tenant_id == tenant_id, Job.status.in_(("queued", "running"))))
        if active >= max_active:
            raise ApiProblem(429, f"this tenant already has {active} job(s) queued or running, the most it may have "
                                  f"({max_active}); wait for one to finish or cancel one", kind="too-many-jobs",
                             headers={"Retry-After": "30"}, active_jobs=int(active), limit=int(max_active))
    job = Job(id=new_id("job"), tenant_id=tenant_id, kind=kind, status="queued", request=request, progress=0.0,
              eta_s=None, log=[], error=None, result_id=None, cancel_requested=False, attempts=0,
              created_by=key_id, request_id=request_id, created_at=utcnow())
    _append(job, "queued")
    s.add(job)
    s.flush()
    return job


class ProgressWriter:
    """Writes a running job's progress (0-1), ETA and log lines to its row: at most once every
    :data:`PROGRESS_WRITE_INTERVAL_S` unless forced (the first write always goes through). Simulation
    jobs feed it from the engine's progress callback, finance jobs from their task's progress sink
    (:func:`api.finance.run_finance_job`). A job that is no longer ``running`` is left alone."""

    def __init__(self, db, job_id: str):
        self.db, self.job_id, self._last = db, job_id, -float("inf")

    def __call__(self, fraction: float | None, eta_s: float | None, message: str | None = None, *,
                 force: bool = False, notes: tuple[str, ...] | list[str] = ()) -> bool:
        """Write ``fraction`` and ``eta_s`` (unless ``fraction`` is None), the lines ``notes`` and then
        ``message``; returns False when skipped (too soon after the last write)."""
        now = time.perf_counter()
        if not force and now - self._last < PROGRESS_WRITE_INTERVAL_S:
            return False
        self._last = now
        with self.db.session() as s:
            j = s.get(Job, self.job_id)
            if j is None or j.status != "running":
                return True
            if fraction is not None:
                j.progress = round(min(max(float(fraction), 0.0), 1.0), 6)
                j.eta_s = None if eta_s is None else round(max(float(eta_s), 0.0), 2)
            for line in (*notes, *((message,) if message else ())):
                _append(j, line)
        return True


class _Stop(Exception):
    pass


class JobNoLongerRunning(Exception):
    """The job stopped being ``running`` (cancelled) before its result was saved: the save is rolled back."""


def save_job_result(db, job_id: str, save: Callable[[Any], None], fail: Callable[[str, dict], None]) -> bool:
    """Run ``save(session)`` -- the result, its reports, its audit record and :func:`mark_succeeded` -- in one
    transaction. A job cancelled meanwhile keeps its cancel (the result is discarded); a save that fails
    fails the job with a ``storage-error`` problem (it never stays running). Returns whether it succeeded."""
    try:
        with db.session() as s:
            save(s)
    except JobNoLongerRunning:
        log.info("job %s was cancelled before its result was saved; the result is discarded", job_id)
        return False
    except Exception:  # noqa: BLE001 - the result could not be saved: the job fails, it never hangs
        log.exception("job %s: saving the result failed", job_id)
        fail(job_id, internal_job_problem(job_id, "storage-error", "the result was computed but could not be saved"))
        return False
    log.info("job %s succeeded", job_id)
    return True


def mark_succeeded(s, job_id: str, result_id: str, message: str) -> None:
    """Mark a running job succeeded with ``result_id``, in the caller's transaction (with its result and
    audit record). The update is conditional on the job still running, so a cancel that got there first
    wins: then :class:`JobNoLongerRunning` is raised and the caller's transaction (the result) rolls back."""
    lines = list(s.scalar(select(Job.log).where(Job.id == job_id)) or [])
    lines.append(_stamp(message))
    res = s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
        status="succeeded", result_id=result_id, progress=1.0, eta_s=0.0, finished_at=utcnow(),
        log=lines[-MAX_LOG_LINES:]))
    if res.rowcount != 1:
        raise JobNoLongerRunning(job_id)


class FairQueue:
    """Job ids queued per tenant and handed out in turn by tenant (round robin), each tenant's in the order
    they came: a tenant that queues twenty jobs holds up another tenant's one job by one job, not twenty.
    Thread-safe; :meth:`get` blocks up to ``timeout`` seconds and raises ``queue.Empty``."""

    def __init__(self):
        self._by_tenant: "OrderedDict[str, deque[str]]" = OrderedDict()
        self._ready = threading.Condition()

    def put(self, job_id: str, tenant_id: str = "") -> None:
        with self._ready:
            self._by_tenant.setdefault(tenant_id, deque()).append(job_id)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> str:
        with self._ready:
            if not self._ready.wait_for(lambda: bool(self._by_tenant), timeout):
                raise queue.Empty
            tenant, ids = next(iter(self._by_tenant.items()))
            job_id = ids.popleft()
            del self._by_tenant[tenant]
            if ids:  # the tenant's next job waits behind every other tenant's
                self._by_tenant[tenant] = ids
            return job_id

    def __len__(self) -> int:
        with self._ready:
            return sum(len(v) for v in self._by_tenant.values())


class JobRunner:
    """Worker threads that run queued jobs (see the module docstring)."""

    def __init__(self, db, settings, models, portfolios):
        self.db, self.settings, self.models, self.portfolios = db, settings, models, portfolios
        self._queue = FairQueue()
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.compute = None  # the app's ComputePool (finance jobs run there)

    # ---- life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        for i in range(self.settings.job_workers):
            t = threading.Thread(target=self._loop, name=f"job-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def recover(self) -> list[str]:
        """Re-queue interrupted jobs and enqueue every queued job; returns their ids in order."""
        with self.db.session() as s:
            for job in s.scalars(select(Job).where(Job.status == "running")):
                if job.cancel_requested:  # asked to stop before the server did: nothing to rerun
                    job.status, job.finished_at, job.eta_s = "cancelled", utcnow(), None
                    _append(job, "cancelled: the cancel was asked for before the server stopped")
                    continue
                job.status = "queued"
                job.progress, job.eta_s = 0.0, None
                _append(job, "re-queued: the server stopped while the job was running")
            queued = s.execute(select(Job.id, Job.tenant_id).where(Job.status == "queued")
                               .order_by(Job.created_at, Job.id)).all()
        ids = [i for i, _ in queued]
        for i, tenant in queued:
            self._queue.put(i, tenant)
        if ids:
            log.info("recovered %d queued job(s)", len(ids))
        return ids

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def submit(self, job_id: str, tenant_id: str = "") -> None:
        """Queue a job created by :func:`create_job` (run in turn with other tenants' jobs: :class:`FairQueue`)."""
        self._queue.put(job_id, tenant_id)

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            ev = self._cancel.get(job_id)
        if ev is not None:
            ev.set()

    def owns(self, job_id: str) -> bool:
        """Whether a worker thread of this runner holds the job (claimed it and has not finished)."""
        with self._lock:
            return job_id in self._cancel

    # ---- worker ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                job_id = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.run_one(job_id)
            except Exception as exc:  # noqa: BLE001 - a worker thread must survive anything
                log.exception("job worker failed on %s", job_id)
                try:  # and the job must not stay running (or queued) forever
                    self._fail(job_id, internal_job_problem(job_id))
                except Exception:  # noqa: BLE001 - the database itself is gone: a restart re-queues the job
                    log.exception("could not mark job %s failed", job_id)

    def _claim(self, job_id: str) -> Job | None:
        with self.db.session() as s:
            res = s.execute(update(Job).where(Job.id == job_id, Job.status == "queued")
                            .values(status="running", started_at=utcnow(), attempts=Job.attempts + 1))
            if res.rowcount != 1:
                return None
            job = s.get(Job, job_id)
            _append(job, f"running (attempt {job.attempts})")
            return job

    def run_one(self, job_id: str) -> None:
        ev = threading.Event()
        with self._lock:  # held before the claim: a cancel never sees the job running without an owner
            self._cancel[job_id] = ev
        try:
            job = self._claim(job_id)
            if job is None:
                return
            token = set_request_id(job.request_id)
            try:
                self._execute(job, ev)
            finally:
                reset_request_id(token)
        finally:
            with self._lock:
                self._cancel.pop(job_id, None)

    def _execute(self, job: Job, ev: threading.Event) -> None:
        from finance_engine.simulation import SimulationCancelled

        if job.kind != "simulation":  # accounts, collateral, quote, stress_test: run in the compute pool
            from api.finance import run_finance_job

            log.info("job %s (%s) started", job.id, job.kind)
            run_finance_job(self, job, ev, _append)
            return

        t0 = time.perf_counter()
        last = {"poll": 0.0}
        req = job.request
        log.info("job %s started: %s", job.id, {k: req.get(k) for k in ("portfolio_id", "years", "paths", "seed")})
        write = ProgressWriter(self.db, job.id)

        def progress(p) -> None:
            write(p.fraction, p.eta_s, chunks_line(p), force=p.chunks_done in (1, p.chunks_total))

        def cancel() -> bool:
            if ev.is_set() or self._stopping.is_set():
                return True
            now = time.perf_counter()
            if now - last["poll"] >= CANCEL_POLL_INTERVAL_S:
                last["poll"] = now
                with self.db.session() as s:
                    if s.scalar(select(Job.cancel_requested).where(Job.id == job.id)):
                        ev.set()
                        return True
            return False

        try:
            with self.db.session() as s:
                pfrow = s.get(PortfolioRow, req["portfolio_id"])
                if pfrow is None or pfrow.tenant_id != job.tenant_id:
                    raise ApiProblem(404, f"portfolio {req['portfolio_id']!r} no longer exists", kind="not-found")
            params = self.models.get(pfrow.region)
            check_simulation_request(params, req)
            pf = self.portfolios.get(pfrow, params)
            # the run takes a core of this process: requests meanwhile keep one thread each
            with self.compute.occupied() if self.compute is not None else contextlib.nullcontext():
                result = run_simulation(pf, params, req, chunk_paths=self.settings.job_chunk_paths,
                                        progress=progress, cancel=cancel)
        except SimulationCancelled:
            self._finish_cancelled(job.id)
            return
        except ApiProblem as exc:
            self._fail(job.id, job_problem(exc.kind, exc.detail or exc.title, exc.status, exc.title,
                                           errors=exc.errors))
            return
        except ValueError as exc:
            p = engine_problem(exc, "invalid-simulation", SIMULATION_FIELDS)
            self._fail(job.id, job_problem(p.kind, p.detail, 422, "Invalid simulation", errors=p.errors))
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("job %s failed", job.id)
            self._fail(job.id, internal_job_problem(job.id))  # the traceback is in the log, not in the answer
            return
        def save(s) -> None:  # the result, its audit record and the job's success in one transaction
            run = store_run(s, tenant_id=job.tenant_id, key_id=job.created_by, portfolio=pfrow, req=req,
                            result=result, job_id=job.id, request_id=job.request_id)
            audit_record(s, job.tenant_id, job.created_by, "simulation.create", "simulation", run.id,
                         job_id=job.id, request=req, parameter_sha256=run.parameter_sha256, seed=run.seed,
                         code_version=run.code_version)
            mark_succeeded(s, job.id, run.id, f"succeeded in {time.perf_counter() - t0:.1f} s: result {run.id} "
                                              f"({cells(pf.n_parcels, req['paths'], req['years'])} parcel-path-years)")

        save_job_result(self.db, job.id, save, self._fail)

    def _finish_cancelled(self, job_id: str) -> None:
        with self.db.session() as s:
            j = s.get(Job, job_id)
            if j is None or j.status in TERMINAL:  # already cancelled (e.g. as orphaned) or finished
                return
            if self._stopping.is_set() and not j.cancel_requested:
                j.status, j.progress, j.eta_s = "queued", 0.0, None
                _append(j, "interrupted by a server shutdown; re-queued")
                log.info("job %s re-queued at shutdown", job_id)
                return
            j.status, j.finished_at, j.eta_s = "cancelled", utcnow(), None
            _append(j, "cancelled")
        log.info("job %s cancelled", job_id)

    def _fail(self, job_id: str, error: dict[str, Any]) -> None:
        """Mark the job failed with ``error`` (a problem detail), unless it already ended."""
        with self.db.session() as s:
            j = s.get(Job, job_id)
            if j is None or j.status in TERMINAL:
                return
            j.status, j.finished_at, j.error, j.eta_s = "failed", utcnow(), error, None
            _append(j, f"failed: {error['detail']}")
        log.warning("job %s failed: %s", job_id, error["detail"])


__all__ = ["JobNoLongerRunning", "JobRunner", "ProgressWriter", "TERMINAL", "create_job",
           "mark_succeeded"]
