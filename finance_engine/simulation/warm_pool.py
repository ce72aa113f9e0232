"""Worker processes kept warm between runs, for runs that must answer at once (``scheduler="warm"``).

One loan's valuation (50 parcels, 10,000 paths, 30 years) runs as two chunks. On two threads of one
process they contend for the GIL: each chunk-year alternates compiled kernels, which release it, with
short stretches of Python and numpy calls, which hold it, for some 40 % of a thread's time, so two
threads took 0.22-0.25 s where one chunk alone takes 0.15-0.17 s. Two processes running a chunk each
do not slow each other (0.146 and 0.148 s side by side against 0.15-0.16 s alone, measured), but a
pool started per run costs seconds, and sending each chunk's per-path results back through a pipe
(16 MB a chunk) costs most of what the processes save.

This module keeps a :class:`~concurrent.futures.ProcessPoolExecutor` alive in the process (started
with ``forkserver``, so no thread or open connection of the caller is copied into a worker; ``spawn``
where there is none), and hands each run's chunks the per-path arrays in a file of shared memory
(``/dev/shm``) that the workers map and write in place, so nothing but a chunk's small moments comes
back. Each worker keeps the engine's set-up per portfolio and parameter set (as the engine's own
pools do) and its footprint caches, so a second run on the same loan starts from warm state.

Numbers never depend on it: every draw is keyed by seed, stream, year, path and parcel, and a chunk
computes the same values wherever it runs (tests hold the warm runs to the threaded ones bit for bit).

The pool costs its workers' memory (about 0.4 GB each with the region's footprint cache) for as long
as the process lives: use it in a long-lived process that values loans one after another (a notebook,
a batch, a service with idle cores), not for one valuation from the shell, where starting the workers
costs more than they save. :func:`shutdown_warm_pool` stops it; it also stops at exit (after a run
still going). Runs from several threads take the pool one after another.

As with any ``spawn`` or ``forkserver`` pool, a script that starts warm runs at its top level needs the
``if __name__ == "__main__":`` guard: the workers import the script's main module once, and without the
guard they would run it. A notebook or an imported module needs nothing.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import pickle
import tempfile
import threading
import uuid
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

import numpy as np

from finance_engine.simulation.chunk import run_chunk
from finance_engine.simulation.engine import _SETUP_CACHE, SimulationCancelled, _collect, _get_setup

_LOCK = threading.Lock()
#: held for a whole run: warm runs from several threads go one after another (the pool's workers are all
#: a run's), and the pool is never resized or stopped under a running run
_RUN_LOCK = threading.Lock()
_IN_RUN = threading.local()  # set while this thread runs a warm run (its callbacks may not stop the pool)
_STATE: dict[str, Any] = {"pool": None, "workers": 0}
#: per-path result files older than this in the shared-memory folder are a crashed run's: removed
STALE_FILE_SECONDS = 3600.0
FILE_PREFIX = "carbon-risk-paths-"


def _context():
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _init_worker() -> None:
    from finance_engine._workers import exit_with_parent

    exit_with_parent()


def warm_pool(workers: int) -> ProcessPoolExecutor:
    """The process's warm pool of ``workers`` processes (started on first use, or restarted when
    asked for another size)."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    with _LOCK:
        pool = _STATE["pool"]
        if pool is not None and _STATE["workers"] != workers:
            pool.shutdown(wait=True, cancel_futures=True)
            pool = None
        if pool is None:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_init_worker)
            _STATE.update(pool=pool, workers=workers)
        return pool


def shutdown_warm_pool() -> None:
    """Stop the warm pool's workers once no run is using them (the next warm run starts new ones).

    Raises ``RuntimeError`` when called from inside a warm run (its progress or cancel callback), which
    would otherwise wait for itself.
    """
    if getattr(_IN_RUN, "active", False):
        raise RuntimeError("the warm pool cannot be stopped from inside a warm run (a progress or cancel callback)")
    with _RUN_LOCK:
        with _LOCK:
            pool = _STATE["pool"]
            _STATE.update(pool=None, workers=0)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown_warm_pool)


def _discard(pool: ProcessPoolExecutor) -> None:
    """Forget a broken pool (a worker died): the next run starts a new one."""
    with _LOCK:
        if _STATE["pool"] is pool:
            _STATE.update(pool=None, workers=0)
    pool.shutdown(wait=False, cancel_futures=True)


def shared_folder() -> str:
    """Where the per-path result files go: ``/dev/shm`` (memory) where it exists, else the temp folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _folders() -> list[str]:
    """:func:`shared_folder`, then the temp folder (a small ``/dev/shm``, as containers have by default)."""
    return list(dict.fromkeys([shared_folder(), tempfile.gettempdir()]))


def _remove_stale(folder: str) -> None:
    import time

    now = time.time()
    try:
        names = [n for n in os.listdir(folder) if n.startswith(FILE_PREFIX)]
    except OSError:
        return
    for n in names:
        p = os.path.join(folder, n)
        try:
            if now - os.stat(p).st_mtime > STALE_FILE_SECONDS:
                os.unlink(p)
        except OSError:
            pass


def layout_of(shapes: dict[str, tuple[int, ...]]) -> tuple[dict[str, tuple[int, tuple[int, ...]]], int]:
    """Byte offsets of the levels' float64 arrays in one file, and its size."""
    layout, offset = {}, 0
    for lv, shape in shapes.items():
        layout[lv] = (offset, tuple(int(x) for x in shape))
        offset += int(np.prod(shape, dtype=np.int64)) * 8
    return layout, offset


def map_arrays(path: str, layout: dict[str, tuple[int, tuple[int, ...]]]) -> dict[str, np.ndarray]:
    """The levels' arrays of a result file, mapped for reading and writing (plain ndarray views)."""
    return {lv: np.asarray(np.memmap(path, dtype=np.float64, mode="r+", offset=off, shape=shape))
            for lv, (off, shape) in layout.items() if int(np.prod(shape, dtype=np.int64)) > 0}


def create_result_file(size: int) -> str:
    """A zero-filled file of ``size`` bytes in :func:`shared_folder`, or the temp folder when that has no
    room: its blocks are reserved up front, so a full folder refuses here (``OSError``) instead of
    killing a worker that writes into a hole."""
    *first, last = _folders()
    for folder in first:
        try:
            return _create_in(folder, size)
        except OSError:
            pass
    return _create_in(last, size)


def _create_in(folder: str, size: int) -> str:
    _remove_stale(folder)
    path = os.path.join(folder, f"{FILE_PREFIX}{os.getpid()}-{uuid.uuid4().hex}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if size > 0:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # pragma: no cover - not Linux
                os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
    return path


def run_warm(workers: int, token: str, payload: bytes, config_blob: bytes, tasks, store, report: Callable[[], None],
             cancel: Callable[[], bool] | None) -> None:
    """Run ``tasks`` (index, path_start, path_stop) on the warm pool, writing per-path results into ``store``.

    ``payload`` is the pickled (model, portfolio) and ``config_blob`` the run's pickled config; a
    worker unpickles the payload only when it has no set-up for ``token`` yet. The store's per-path
    arrays are replaced by arrays mapped from a shared file the workers write into. Runs from several
    threads take the pool one after another.
    """
    # one run at a time; a run waiting for the pool still answers its cancel
    while not _RUN_LOCK.acquire(timeout=0.2):
        if cancel is not None and cancel():
            raise SimulationCancelled("simulation cancelled")
    _IN_RUN.active = True
    try:
        _run_warm(workers, token, payload, config_blob, tasks, store, report, cancel)
    finally:
        _IN_RUN.active = False
        _RUN_LOCK.release()


def _run_warm(workers, token, payload, config_blob, tasks, store, report, cancel) -> None:
    layout, size = layout_of({lv: arr.shape for lv, arr in store.per_path.items()})
    path = create_result_file(size)
    try:
        mapped = map_arrays(path, layout)  # an empty level keeps the store's own (empty) array
        store.per_path = {lv: mapped.get(lv, arr) for lv, arr in store.per_path.items()}
        pool = warm_pool(workers)
        try:
            pending = {pool.submit(_warm_task, token, payload, config_blob, i, s, e, path, layout): i
                       for i, s, e in tasks}
        except BrokenProcessPool:
            _discard(pool)
            raise
        try:
            _collect(pending, store, report, cancel)  # cancels the chunks not started when it raises
        except BrokenProcessPool:
            _discard(pool)
            raise
        except BaseException:
            wait(pending)  # running chunks write into the file: let them finish before it goes
            raise
    finally:
        os.unlink(path)  # the parent's mapping stays valid; the memory goes with the arrays


def _warm_task(token: str, payload: bytes, config_blob: bytes, index: int, start: int, stop: int, path: str,
               layout: dict[str, tuple[int, tuple[int, ...]]]):
    """Worker side: the chunk's per-path results go straight into the shared file."""
    config = pickle.loads(config_blob)
    if token in _SETUP_CACHE:
        params = portfolio = None  # _get_setup reuses the cached set-up and carries this run's config
    else:
        params, portfolio = pickle.loads(payload)
    setup = _get_setup(token, params, portfolio, config)
    arrays = map_arrays(path, layout)
    views = {lv: arrays[lv][:, :, start:stop] for lv in arrays}
    result = run_chunk(setup, index, start, stop, out=views)
    result.per_path = None  # written in place
    return result


__all__ = ["FILE_PREFIX", "run_warm", "shared_folder", "shutdown_warm_pool", "warm_pool"]
