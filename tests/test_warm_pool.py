"""The engine's warm worker processes (scheduler="warm"): the same numbers, kept between runs, cleaned up."""

import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pandas as pd
import pytest

from finance_engine.collateral import LoanTermsError, value_collateral
from finance_engine.simulation import SimulationCancelled
from finance_engine.simulation import warm_pool as wp
from tests.test_engine import _assert_identical, _run, portfolio  # noqa: F401  (the engine tests' fixture)


@pytest.fixture(scope="module", autouse=True)
def stop_pool_afterwards():
    yield
    wp.shutdown_warm_pool()


def _my_files():
    folder = wp.shared_folder()
    return [n for n in os.listdir(folder) if n.startswith(f"{wp.FILE_PREFIX}{os.getpid()}-")]


def test_warm_runs_are_bit_identical_and_reuse_their_workers(portfolio, params):  # noqa: F811
    a = _run(portfolio, params, chunk_paths=32)
    b = _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")
    assert b.run_info["backend"] == "warm(2)"
    _assert_identical(a, b)
    pids = set(wp.warm_pool(2)._processes)
    c = _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm", seed=12)
    d = _run(portfolio, params, chunk_paths=64, seed=12)
    _assert_identical(c, d)
    assert set(wp.warm_pool(2)._processes) == pids  # the same workers, kept warm
    assert _my_files() == []  # each run's shared file is gone once its arrays are mapped


def test_a_warm_valuation_equals_the_threaded_one(params):
    from tests.conftest import make_frame
    from models.portfolio import validate_frame

    pf = validate_frame(make_frame(30, seed=8, species=["chinese_fir", "masson_pine"]), params)
    terms = dict(amount_cny=60_000, term_years=3, interest_rate=0.04, crediting_horizon_years=15)
    kw = dict(paths=256, seed=5, attribution=True, attribution_paths=128, workers=2, chunk_paths=128)
    t = value_collateral(pf, params, terms, **kw)
    w = value_collateral(pf, params, terms, **kw, scheduler="warm")
    assert w.value_today == t.value_today and w.risk == t.risk and w.sizing == t.sizing
    np.testing.assert_array_equal(w.paths["value"], t.paths["value"])
    assert w.drivers.equals(t.drivers) and w.sensitivities.equals(t.sensitivities)
    with pytest.raises(LoanTermsError, match="scheduler"):
        value_collateral(pf, params, terms, **kw, scheduler="dask")


def test_a_cancelled_warm_run_stops_and_leaves_no_file(portfolio, params):  # noqa: F811
    seen = []
    with pytest.raises(SimulationCancelled):
        _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm", cancel=lambda: len(seen) > 0,
             progress=seen.append)
    assert _my_files() == []


def test_a_crashed_runs_stale_file_is_removed(portfolio, params):  # noqa: F811
    stale = os.path.join(wp.shared_folder(), f"{wp.FILE_PREFIX}1-stale")
    with open(stale, "wb") as f:
        f.write(b"\0" * 64)
    old = time.time() - 2 * wp.STALE_FILE_SECONDS
    os.utime(stale, (old, old))
    _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")
    assert not os.path.exists(stale)


def test_a_dead_worker_fails_its_run_and_the_next_run_starts_a_new_pool(portfolio, params):  # noqa: F811
    a = _run(portfolio, params, chunk_paths=32)
    _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")  # the pool is up
    pool = wp.warm_pool(2)
    victim = next(iter(pool._processes))
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(BrokenProcessPool):
        _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")
    assert _my_files() == []
    b = _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")  # a new pool
    _assert_identical(a, b)
    assert victim not in wp.warm_pool(2)._processes


def test_warm_runs_from_two_threads_take_the_pool_in_turn(portfolio, params):  # noqa: F811
    """A second thread asking for another pool size waits for the first run instead of resizing the pool
    under it (which left the first run waiting for ever)."""
    import threading

    long = dict(paths=16384, years=20, levels=("portfolio",), loss_table_level=None)  # long enough to be overtaken
    want = {2: _run(portfolio, params, chunk_paths=512, seed=21, **long),
            3: _run(portfolio, params, chunk_paths=32, seed=22)}
    _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")  # the pool is up, two workers
    got, errors = {}, []

    def run(workers, seed, delay):
        time.sleep(delay)
        kw = long if workers == 2 else {}
        try:
            got[workers] = _run(portfolio, params, chunk_paths=512 if workers == 2 else 32, workers=workers,
                                scheduler="warm", seed=seed, **kw)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(2, 21, 0.0)), threading.Thread(target=run, args=(3, 22, 1.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a warm run hung"
    assert errors == []
    _assert_identical(got[3], want[3])
    pd.testing.assert_frame_equal(got[2].summary, want[2].summary, check_exact=True)
    np.testing.assert_array_equal(got[2].per_path["portfolio"], want[2].per_path["portfolio"])
    assert _my_files() == []


def test_a_progress_callback_cannot_stop_the_pool_under_its_own_run(portfolio, params):  # noqa: F811
    def stop(_):
        wp.shutdown_warm_pool()

    with pytest.raises(RuntimeError, match="inside a warm run"):
        _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm", progress=stop)
    assert _my_files() == []
    _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm")  # the pool still serves


def test_a_run_waiting_for_the_pool_can_be_cancelled(portfolio, params):  # noqa: F811
    with wp._RUN_LOCK:  # another run holds the pool
        t = time.perf_counter()
        with pytest.raises(SimulationCancelled):
            _run(portfolio, params, chunk_paths=32, workers=2, scheduler="warm", cancel=lambda: True)
        assert time.perf_counter() - t < 5


def test_a_full_shared_folder_falls_back_to_the_temp_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(wp, "_folders", lambda: [str(tmp_path / "missing" / "shm"), str(tmp_path)])
    path = wp.create_result_file(4096)
    try:
        assert os.path.dirname(path) == str(tmp_path) and os.path.getsize(path) == 4096
    finally:
        os.unlink(path)
    monkeypatch.setattr(wp, "_folders", lambda: [str(tmp_path / "missing")])
    with pytest.raises(OSError):
        wp.create_result_file(4096)
