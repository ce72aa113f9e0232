"""The Monte Carlo engine: reproducible to the bit, honest about its error."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from finance_engine.simulation import SimulationCancelled, chunk_ranges, simulate
from models.dynamics import SimulationSwitches
from models.portfolio import validate_frame
from models.rng import KeyedRandom
from tests.conftest import make_frame

LEVELS = ("portfolio", "county", "village", "species_group", "parcel")


@pytest.fixture(scope="module")
def portfolio(params):
    df = make_frame(120, seed=5)
    df["project_id"] = np.where(np.arange(120) % 2 == 0, "PRJ-1", "")
    return validate_frame(df, params, source="engine-test")


def _run(portfolio, params, **kw):
    args = dict(years=8, paths=96, seed=11, levels=LEVELS, loss_table_level="county")
    args.update(kw)
    return simulate(portfolio, params, **args)


def _assert_identical(a, b):
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    pd.testing.assert_frame_equal(a.horizon, b.horizon, check_exact=True)
    pd.testing.assert_frame_equal(a.parcel_summary, b.parcel_summary, check_exact=True)
    pd.testing.assert_frame_equal(a.elt, b.elt, check_exact=True)
    for lv in a.per_path:
        np.testing.assert_array_equal(a.per_path[lv], b.per_path[lv])


def test_bit_identical_across_chunk_sizes(portfolio, params):
    a = _run(portfolio, params, chunk_paths=32)
    b = _run(portfolio, params, chunk_paths=64)
    c = _run(portfolio, params, chunk_paths=1000)
    _assert_identical(a, b)
    _assert_identical(a, c)
    assert a.run_info["chunks"] == 3 and c.run_info["chunks"] == 1


def test_bit_identical_with_worker_processes(portfolio, params):
    a = _run(portfolio, params, chunk_paths=32)
    b = _run(portfolio, params, chunk_paths=32, workers=2)
    assert b.run_info["backend"] == "processes(2)"
    _assert_identical(a, b)


def test_bit_identical_on_threads(portfolio, params):
    a = _run(portfolio, params, chunk_paths=32)
    b = _run(portfolio, params, chunk_paths=32, workers=2, scheduler="threads")
    assert b.run_info["backend"] == "threads(2)"
    _assert_identical(a, b)
    seen = []
    with pytest.raises(SimulationCancelled):
        _run(portfolio, params, chunk_paths=32, workers=2, scheduler="threads",
             cancel=lambda: len(seen) > 0, progress=seen.append)


def test_bit_identical_on_dask_local_cluster(portfolio, params):
    a = _run(portfolio, params, chunk_paths=32)
    b = _run(portfolio, params, chunk_paths=32, workers=2, scheduler="local-cluster")
    assert b.run_info["backend"] == "dask"
    _assert_identical(a, b)


def test_row_order_of_the_file_does_not_matter(params):
    df = make_frame(80, seed=9)
    a = simulate(validate_frame(df, params), params, years=5, paths=64, seed=3, levels=("county", "parcel"))
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    b = simulate(validate_frame(shuffled, params), params, years=5, paths=64, seed=3, levels=("county", "parcel"))
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    pd.testing.assert_frame_equal(a.parcel_summary, b.parcel_summary, check_exact=True)


def test_removing_a_parcel_leaves_other_parcels_draws_unchanged(params):
    pf = validate_frame(make_frame(50), params)
    rnd = KeyedRandom(5, np.arange(10), pf.keys)
    keep = np.arange(1, 50)
    sub = rnd.subset_parcels(keep)
    np.testing.assert_array_equal(rnd.parcel_uniform("fire.hazard", 3)[:, keep], sub.parcel_uniform("fire.hazard", 3))
    # and a path's draws do not depend on which other paths share the block
    other = KeyedRandom(5, np.arange(7, 9), pf.keys)
    np.testing.assert_array_equal(rnd.parcel_uniform("x", 0)[7:9], other.parcel_uniform("x", 0))


def test_same_seed_same_result_different_seed_different(portfolio, params):
    a = _run(portfolio, params, paths=32, levels=("portfolio",), loss_table_level=None)
    b = _run(portfolio, params, paths=32, levels=("portfolio",), loss_table_level=None)
    c = _run(portfolio, params, paths=32, levels=("portfolio",), loss_table_level=None, seed=12)
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    assert not np.array_equal(a.per_path["portfolio"], c.per_path["portfolio"])


def test_reported_standard_error_matches_spread_of_repeated_runs(params):
    pf = validate_frame(make_frame(40, seed=2), params)
    means, ses = [], []
    for seed in range(24):
        r = simulate(pf, params, years=3, paths=64, seed=seed)
        row = r.metric("stock_tco2e").iloc[-1]
        means.append(row["mean"])
        ses.append(row["mc_se"])
    spread = np.std(means, ddof=1)
    reported = np.sqrt(np.mean(np.square(ses)))
    # the ratio of two sd estimates from 24 runs: about +-30 % at 2 sigma
    assert 0.6 < spread / reported < 1.5, (spread, reported)


def test_parameter_uncertainty_reported_apart(portfolio, params):
    # growth only: with perils on, their year-to-year noise needs far more paths to separate
    on = _run(portfolio, params, paths=128, levels=("portfolio",), loss_table_level=None,
              switches=SimulationSwitches(perils=()))
    off = _run(portfolio, params, paths=128, levels=("portfolio",), loss_table_level=None,
               switches=SimulationSwitches(parameter_uncertainty=False, perils=()))
    stock_on = on.metric("stock_tco2e").iloc[-1]
    stock_off = off.metric("stock_tco2e").iloc[-1]
    assert stock_off["parameter_sd"] == 0.0
    assert stock_on["parameter_sd"] > 0.0
    # parameter uncertainty does not shrink with paths; the sampling error does
    assert stock_on["parameter_sd"] > stock_on["mc_se"]


def test_levels_sum_to_portfolio(portfolio, params):
    r = _run(portfolio, params)
    for metric in ("stock_tco2e", "loss_tco2e", "credits_issued_tco2e"):
        total = r.paths_of(metric, "portfolio")[..., 0]
        for lv in ("county", "village", "species_group"):
            np.testing.assert_allclose(r.paths_of(metric, lv).sum(axis=-1), total, rtol=1e-12, atol=1e-6)
    init = r.initial_stock
    assert init[init.level == "county"].stock_tco2e.sum() == pytest.approx(
        init[init.level == "portfolio"].stock_tco2e.iloc[0], rel=1e-12)


def test_stock_identity_and_credits(portfolio, params):
    r = _run(portfolio, params)
    m = {k: r.paths_of(k)[..., 0] for k in r.metrics}
    init = r.initial_stock.query("level == 'portfolio'").stock_tco2e.iloc[0]
    prev = np.vstack([np.full((1, m["stock_tco2e"].shape[1]), init), m["stock_tco2e"][:-1]])
    np.testing.assert_allclose(m["sink_tco2e"], m["stock_tco2e"] - prev, rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(prev + m["growth_tco2e"] - m["mortality_tco2e"] - m["loss_tco2e"],
                               m["stock_tco2e"], rtol=1e-9, atol=1e-6)
    # credits only at the end of monitoring periods (5 years) and only for parcels in a project
    assert np.all(m["credits_issued_tco2e"][[0, 1, 2, 3, 5, 6, 7]] == 0)
    assert np.all(m["credits_issued_tco2e"][4] >= 0) and m["credits_issued_tco2e"][4].mean() > 0
    ps = r.parcel_summary.set_index("parcel_id")
    not_in_project = portfolio.frame.loc[portfolio.frame.project_id == "", "parcel_id"]
    assert (ps.loc[not_in_project, "cumulative_credits_tco2e_mean"] == 0).all()


def test_event_loss_table_matches_yearly_losses(portfolio, params):
    r = _run(portfolio, params, years=10, paths=256, levels=("portfolio",), loss_table_level="portfolio")
    if not r.provenance["perils"]:
        pytest.skip("no perils enabled in the parameter set")
    elt = r.elt
    assert (elt.sim_year == elt.path * 10 + elt.year).all()
    assert elt.event_id.is_unique
    by_year = elt.groupby(["path", "year"]).loss_tco2e.sum()
    loss = r.paths_of("loss_tco2e")[..., 0]  # (years, paths)
    for (p, y), v in by_year.items():
        assert v == pytest.approx(loss[y, p], rel=1e-9)
    assert loss.sum() == pytest.approx(elt.loss_tco2e.sum(), rel=1e-9)


def test_threaded_runs_lower_the_gil_switch_interval_and_restore_it(portfolio, params):
    import sys
    import threading

    from finance_engine.simulation.engine import THREADS_SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    assert before > THREADS_SWITCH_INTERVAL_S  # Python's default, 5 ms
    during, counts = [], []

    def progress(p):
        during.append(sys.getswitchinterval())
        counts.append((p.chunks_done, p.chunks_total))

    _run(portfolio, params, chunk_paths=32, workers=2, scheduler="threads", progress=progress)
    # (the first report comes before the chunks start; each chunk's report while the chunks run; the summary's
    # reports and the last one come after them, on one thread, at the interpreter's own interval)
    total = counts[0][1]
    first = {c: during[counts.index((c, total))] for c in range(1, total)}
    assert set(first.values()) == {THREADS_SWITCH_INTERVAL_S} and during[-1] == before
    assert set(during) <= {before, THREADS_SWITCH_INTERVAL_S} and sys.getswitchinterval() == before
    # a cancelled run restores it too; one worker leaves it alone
    with pytest.raises(SimulationCancelled):
        _run(portfolio, params, chunk_paths=32, workers=2, scheduler="threads", cancel=lambda: True)
    assert sys.getswitchinterval() == before
    during.clear()
    _run(portfolio, params, chunk_paths=32, workers=1, scheduler="threads", progress=progress)
    assert set(during) == {before}
    # overlapping runs (the API's jobs): the last one out restores the interval
    errors = []

    def job():
        try:
            _run(portfolio, params, chunk_paths=32, workers=2, scheduler="threads", progress=progress)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    during.clear()
    jobs = [threading.Thread(target=job) for _ in range(3)]
    for t in jobs:
        t.start()
    for t in jobs:
        t.join()
    assert not errors and THREADS_SWITCH_INTERVAL_S in during and set(during) <= {before, THREADS_SWITCH_INTERVAL_S}
    assert sys.getswitchinterval() == before
    # a caller's own smaller interval is kept
    sys.setswitchinterval(THREADS_SWITCH_INTERVAL_S / 2)
    try:
        during.clear()
        _run(portfolio, params, chunk_paths=32, workers=2, scheduler="threads", progress=progress)
        assert set(during) == {THREADS_SWITCH_INTERVAL_S / 2}
        assert sys.getswitchinterval() == THREADS_SWITCH_INTERVAL_S / 2
    finally:
        sys.setswitchinterval(before)


def test_progress_and_cancel(portfolio, params):
    seen = []
    _run(portfolio, params, levels=("portfolio",), loss_table_level=None, chunk_paths=32, progress=seen.append)
    # each chunk count in turn (the summary's parts are reported with all but the last chunk done), 100 % last
    counts = [p.chunks_done for p in seen]
    assert sorted(set(counts)) == [0, 1, 2, 3] and counts == sorted(counts) and counts.count(3) == 1
    assert seen[-1].fraction == 1.0 and seen[-1].eta_s == 0.0
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(SimulationCancelled):
        _run(portfolio, params, levels=("portfolio",), chunk_paths=32, cancel=cancel)


def test_provenance_recorded(portfolio, params):
    r = _run(portfolio, params, paths=32, levels=("portfolio",), loss_table_level=None)
    p = r.provenance
    assert p["parameter_sha256"] == params.sha256 and p["seed"] == 11 and p["paths"] == 32
    assert p["model_version"] and p["code_version"]
    d = r.to_dict()
    assert d["provenance"]["years"] == 8


@pytest.mark.parametrize("kw,msg", [
    (dict(years=0), "years"), (dict(paths=0), "paths"), (dict(seed=-1), "seed"),
    (dict(levels=("district",)), "unknown level"), (dict(carbon_method="x"), "carbon_method"),
])
def test_bad_arguments(portfolio, params, kw, msg):
    with pytest.raises(ValueError, match=msg):
        _run(portfolio, params, **kw)


def test_chunk_ranges_are_whole_blocks():
    assert chunk_ranges(100, 40) == [(0, 0, 64), (1, 64, 100)]
    assert chunk_ranges(64, 1) == [(0, 0, 32), (1, 32, 64)]


def test_dask_scheduler_address(portfolio, params):
    from distributed import LocalCluster

    a = _run(portfolio, params, chunk_paths=32, levels=("portfolio", "county"), loss_table_level=None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster:
        b = _run(portfolio, params, chunk_paths=32, levels=("portfolio", "county"), loss_table_level=None,
                 scheduler=cluster.scheduler_address)
    assert cluster.scheduler_address.startswith("tcp://")
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)


def test_antithetic_climate_shock_reduces_error_and_reports_it_honestly(params):
    pf = validate_frame(make_frame(40, seed=3), params)
    growth_only = dict(perils=(), parameter_uncertainty=False, parcel_noise=False)
    plain, anti = [], []
    for seed in range(12):
        for store, anti_on in ((plain, False), (anti, True)):
            r = simulate(pf, params, years=3, paths=64, seed=seed,
                         switches=SimulationSwitches(antithetic=anti_on, **growth_only))
            row = r.metric("growth_tco2e").iloc[0]
            store.append((row["mean"], row["mc_se"]))
    plain, anti = np.array(plain), np.array(anti)
    assert anti[:, 1].mean() < 0.5 * plain[:, 1].mean()
    # the reported error matches the spread of the antithetic estimates across seeds
    ratio = np.std(anti[:, 0], ddof=1) / np.sqrt(np.mean(anti[:, 1] ** 2))
    assert 0.5 < ratio < 1.7, ratio
    with pytest.raises(ValueError, match="even parameter_set_size"):
        SimulationSwitches(antithetic=True, parameter_set_size=3)


def test_pool_workers_exit_when_their_parent_is_killed(tmp_path):
    """A worker process must not outlive a killed parent (kill -9 of a server or a CLI run)."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from concurrent.futures import ProcessPoolExecutor
        import multiprocessing
        from finance_engine._workers import exit_with_parent
        def init():
            exit_with_parent(poll_seconds=0.2)
        if __name__ == "__main__":
            ex = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=init)
            print(ex.submit(os.getpid).result(), flush=True)
            time.sleep(60)
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(worker, signal.SIGKILL)
    raise AssertionError("the worker outlived its killed parent")


def test_balanced_chunks_are_whole_blocks_one_per_worker_within_the_memory_bound():
    from finance_engine.simulation import balanced_chunk_paths

    assert balanced_chunk_paths(10_000, 50, 2) == 5024  # 5,000 rounded up to whole 32-path blocks
    assert balanced_chunk_paths(10_000, 50, 1) == 10_016
    assert balanced_chunk_paths(10_000, 200_000, 2) == 32  # 4e6 elements / 200k parcels = 20 -> one block
    assert balanced_chunk_paths(10, 5, 4) == 32
    assert len(chunk_ranges(10_000, balanced_chunk_paths(10_000, 50, 2))) == 2


@pytest.mark.parametrize("paths,n_parcels,workers", [
    (1000, 200_000, 2), (10_000, 200_000, 2), (1000, 5_000, 1), (256, 5_000, 2), (10_000, 47, 2), (10_000, 47, 1),
    (1, 3, 1), (33, 1, 8), (100_000, 1_000, 4), (5_000, 30_000, 2),
])
def test_automatic_chunks_hold_the_memory_bound_and_keep_every_worker_busy(paths, n_parcels, workers):
    from finance_engine.simulation import PATH_BLOCK, auto_chunk_paths
    from finance_engine.simulation.engine import (AUTO_CHUNKS_PER_WORKER, AUTO_MAX_CHUNK_ELEMENTS,
                                                  AUTO_MIN_CHUNK_ELEMENTS)

    size = auto_chunk_paths(paths, n_parcels, workers)
    sizes = [e - s for _, s, e in chunk_ranges(paths, size)]
    assert size % PATH_BLOCK == 0 and sum(sizes) == paths
    # memory: a chunk holds at most the element bound, or one path block when a block alone exceeds it
    assert size * n_parcels <= AUTO_MAX_CHUNK_ELEMENTS or size == PATH_BLOCK
    # every worker gets a chunk whenever the paths make enough blocks for it
    assert len(sizes) >= min(workers, -(-paths // PATH_BLOCK))
    # chunks are even: the last is short by less than one block per chunk
    assert max(sizes) - min(sizes) < PATH_BLOCK * len(sizes)
    # no more chunks than the aim per worker, unless the memory bound asks for more
    if size * n_parcels < AUTO_MAX_CHUNK_ELEMENTS - PATH_BLOCK * n_parcels:
        assert len(sizes) <= max(workers * AUTO_CHUNKS_PER_WORKER, workers)
    # big enough to be efficient, unless that would leave a worker idle or break the memory bound
    if len(sizes) > workers and (size + PATH_BLOCK) * n_parcels <= AUTO_MAX_CHUNK_ELEMENTS:
        assert size * n_parcels >= AUTO_MIN_CHUNK_ELEMENTS - PATH_BLOCK * n_parcels


def test_automatic_chunks_of_the_documented_cases():
    from finance_engine.simulation import auto_chunk_paths

    assert auto_chunk_paths(10_000, 200_000, 2) == 32  # the city: one path block a chunk (6.4 M elements)
    assert auto_chunk_paths(1000, 5_000, 1) == 256  # the demo: 4 chunks of 250 paths (1.25 M elements each)
    assert auto_chunk_paths(10_000, 47, 2) == 5024  # a loan: one chunk per thread, as balanced_chunk_paths
    assert auto_chunk_paths(100_000, 1_000, 4) == 4000  # 4 M elements: the memory bound, 25 chunks


def test_bit_identical_across_chunk_sizes_when_some_paths_see_two_typhoons(params):
    """A block in which no path has two storms never merges losses: the merge must leave single hits exact."""
    df = make_frame(90, seed=3, species=["chinese_fir", "masson_pine"])
    pf = validate_frame(df, params, source="typhoon-chunks")
    sw = SimulationSwitches(parcel_noise=False, background_mortality=False, cascades=False, perils=("typhoon",))
    kw = dict(years=7, paths=70, seed=4, switches=sw)
    _assert_identical(_run(pf, params, chunk_paths=32, **kw), _run(pf, params, chunk_paths=96, **kw))


def test_threads_from_a_cold_set_up_in_independent_mode(params, monkeypatch):
    """Independent mode fills a shared shadow epidemic lazily: threads starting together must not
    advance it twice. A fresh set-up (no earlier run has filled it), and a pause inside each shadow
    step that widens the window a race would need (it changes no arithmetic)."""
    import time

    from finance_engine.simulation import engine
    from models.perils.pine_wilt import PineWilt

    advance = PineWilt.advance_cells

    def slow_advance(self, *args, **kwargs):
        time.sleep(0.02)
        return advance(self, *args, **kwargs)

    df = make_frame(150, seed=8, species=["masson_pine", "chinese_fir"])
    pf = validate_frame(df, params, source="threads-independent")
    kw = dict(years=6, paths=128, seed=21, switches=SimulationSwitches(independent=True), chunk_paths=32)
    engine._SETUP_CACHE.clear()
    a = _run(pf, params, **kw)
    engine._SETUP_CACHE.clear()
    monkeypatch.setattr(PineWilt, "advance_cells", slow_advance)
    b = _run(pf, params, workers=4, scheduler="threads", **kw)
    _assert_identical(a, b)


def test_chunk_store_holds_per_path_results_once_equal_to_the_joined_chunks(portfolio, params):
    from finance_engine.simulation.chunk import EngineSetup, run_chunk
    from finance_engine.simulation.config import SimulationConfig
    from finance_engine.simulation.result import ChunkStore

    cfg = SimulationConfig(years=4, paths=80, seed=3, levels=("portfolio", "county"))
    setup = EngineSetup(params, portfolio, cfg)
    chunks = [run_chunk(setup, i, s, e) for i, s, e in chunk_ranges(80, 32)]
    joined = {lv: np.concatenate([c.per_path[lv] for c in chunks], axis=2) for lv in setup.summary_levels}
    store = ChunkStore(setup)
    for c in reversed(chunks):  # arrival order does not matter
        store[c.index] = c
        assert c.per_path == {}  # the chunk no longer holds its copy
    assert set(store) == {0, 1, 2}
    for lv in setup.summary_levels:
        np.testing.assert_array_equal(store.per_path[lv], joined[lv])


def test_a_run_that_reports_nothing_is_refused_before_it_runs(portfolio, params):
    seen = []
    with pytest.raises(ValueError, match="reports nothing"):
        _run(portfolio, params, summarise=False, keep_paths=False, progress=seen.append)
    assert seen == []


def test_chunks_in_this_process_write_into_the_run_arrays(portfolio, params):
    from finance_engine.simulation.chunk import EngineSetup, run_chunk
    from finance_engine.simulation.config import SimulationConfig
    from finance_engine.simulation.result import ChunkStore

    cfg = SimulationConfig(years=4, paths=64, seed=3, levels=("portfolio", "county"))
    setup = EngineSetup(params, portfolio, cfg)
    copied = {c.index: c.per_path for c in (run_chunk(setup, i, s, e) for i, s, e in chunk_ranges(64, 32))}
    store = ChunkStore(setup)
    for i, s, e in chunk_ranges(64, 32):
        views = store.views(s, e)
        chunk = run_chunk(setup, i, s, e, out=views)
        assert all(chunk.per_path[lv] is views[lv] for lv in views)  # written in place
        store[i] = chunk
    for lv in setup.summary_levels:
        np.testing.assert_array_equal(store.per_path[lv], np.concatenate([copied[0][lv], copied[1][lv]], axis=2))


def test_a_forked_pool_worker_uses_the_inherited_set_up_without_a_payload(portfolio, params):
    import pickle

    from finance_engine.simulation import engine
    from finance_engine.simulation.chunk import run_chunk
    from finance_engine.simulation.config import SimulationConfig

    cfg = SimulationConfig(years=3, paths=64, seed=4, levels=("portfolio",))
    token = engine._setup_token(params, portfolio, cfg)
    setup = engine._get_setup(token, params, portfolio, cfg)  # what the parent holds when it forks
    engine._load_worker_payload(token, None, pickle.dumps(replace(cfg, seed=9)))
    try:
        assert engine._WORKER_PAYLOAD[token][:2] == (None, None)  # no copy of the portfolio or model
        got = engine._pool_task(token, 1, 32, 64)
        want = run_chunk(engine._get_setup(token, params, portfolio, replace(cfg, seed=9)), 1, 32, 64)
        np.testing.assert_array_equal(got.per_path["portfolio"], want.per_path["portfolio"])
        assert setup.config.seed == 4  # the inherited set-up itself is not changed
        with pytest.raises(RuntimeError, match="without the parent's set-up"):
            engine._load_worker_payload("no-such-token", None, pickle.dumps(cfg))
    finally:
        engine._WORKER_PAYLOAD.pop(token, None)


@pytest.mark.parametrize("paths,set_size", [(96, 4), (100, 4), (96, 1), (96, 3)])
def test_streamed_fine_level_errors_equal_the_nested_decomposition(portfolio, params, monkeypatch, paths, set_size):
    """A level with too many groups to keep every path (moments streamed per 32-path block) reports the
    same mean, standard error and parameter sd as the same level with every path kept: the error counts
    parameter sets, not paths, including a short last set (100 paths) and one path per set; sets that
    straddle blocks (3 paths) too (tests/test_engine_review.py covers them further)."""
    import finance_engine.simulation.chunk as chunk_mod
    import finance_engine.simulation.engine as engine_mod

    sw = SimulationSwitches(parameter_set_size=set_size)
    kw = dict(years=3, paths=paths, seed=4, levels=("village", "parcel"), switches=sw, chunk_paths=64)
    kept = simulate(portfolio, params, keep_paths=True, **kw)
    monkeypatch.setattr(chunk_mod, "MAX_GROUPS_FOR_QUANTILES", 0)  # every level streams its moments
    monkeypatch.setattr(engine_mod, "_SETUP_CACHE", {})  # a set-up built under the patched threshold
    streamed = simulate(portfolio, params, **kw)
    a = kept.summary[kept.summary.level == "village"].reset_index(drop=True)
    b = streamed.summary[streamed.summary.level == "village"].reset_index(drop=True)
    assert np.isnan(b.get("p50", pd.Series([np.nan]))).all()  # no quantiles when streamed
    np.testing.assert_allclose(b["mean"], a["mean"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(b["sd"], a["sd"], rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(b["mc_se"], a["mc_se"], rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(b["parameter_sd"], a["parameter_sd"], rtol=1e-6, atol=1e-5)
    if set_size == 4:  # parameter uncertainty shows: the nested error exceeds the independent-path one somewhere
        assert (b["mc_se"] > b["sd"] / np.sqrt(paths) * 1.05).any()
    # the whole horizon (flows summed, stock at the end) is streamed the same way
    ha = kept.horizon[kept.horizon.level == "village"].reset_index(drop=True)
    hb = streamed.horizon[streamed.horizon.level == "village"].reset_index(drop=True)
    assert list(ha.metric) == list(hb.metric) and len(hb) > 0
    np.testing.assert_allclose(hb["mean"], ha["mean"], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(hb["mc_se"], ha["mc_se"], rtol=1e-7, atol=1e-6)
    # the parcel level's streamed error is the same decomposition of the per-path parcel values
    ps = streamed.parcel_summary.set_index("parcel_id")
    assert (ps.filter(like="_mc_se") >= 0).all().all()


def test_quantiles_and_tvar_carry_their_monte_carlo_error(portfolio, params):
    """Every quantile in a summary has its order-statistic interval, every TVaR its standard error: the same
    numbers finance_engine.mc_error gives for one column of per-path values."""
    from finance_engine.mc_error import quantile_ci, tail_mean_se

    r = simulate(portfolio, params, years=3, paths=256, seed=9, levels=("portfolio", "county"), keep_paths=True)
    for table in (r.summary, r.horizon):
        for q in ("p01", "p05", "p10", "p50", "p90", "p95", "p99"):
            assert (table[f"{q}_ci_low"] <= table[q]).all() and (table[q] <= table[f"{q}_ci_high"]).all(), q
        assert (table["tvar95_se"].dropna() >= 0).all() and table["tvar95_se"].notna().any()
    s = r.summary.set_index(["level", "group", "metric", "year"])
    loss = r.paths_of("loss_tco2e")[2, :, 0]  # year 2, portfolio
    row = s.loc[("portfolio", r.summary[r.summary.level == "portfolio"].group.iloc[0], "loss_tco2e", 2)]
    # paths come in parameter sets of 4 (the default switches): the interval counts them as such
    assert [row.p95_ci_low, row.p95_ci_high] == quantile_ci(loss, 0.95, set_size=4)
    assert row.tvar95_se == pytest.approx(tail_mean_se(loss, 0.95, upper=True, set_size=4), rel=0.05)


def test_streamed_levels_are_bit_identical_across_chunks_with_a_short_last_set(portfolio, params, monkeypatch):
    """Every level streamed (moments per 32-path block) and 101 paths (a short last parameter set of 1):
    summaries, horizons and parcel figures are the same to the bit whatever the chunk size and threads."""
    import finance_engine.simulation.chunk as chunk_mod
    import finance_engine.simulation.engine as engine_mod

    monkeypatch.setattr(chunk_mod, "MAX_GROUPS_FOR_QUANTILES", 0)
    monkeypatch.setattr(engine_mod, "_SETUP_CACHE", {})
    kw = dict(years=3, paths=101, seed=6, levels=("portfolio", "county", "village", "parcel"))
    runs = [simulate(portfolio, params, chunk_paths=cp, workers=w, scheduler="threads", **kw)
            for cp, w in ((32, 1), (64, 2), (1000, 1))]
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0].summary, other.summary, check_exact=True)
        pd.testing.assert_frame_equal(runs[0].horizon, other.horizon, check_exact=True)
        pd.testing.assert_frame_equal(runs[0].parcel_summary, other.parcel_summary, check_exact=True)
    assert runs[0].summary.parameter_sd.notna().all()  # the nested split, short set and all


@pytest.mark.parametrize("independent", [False, True])
def test_a_set_up_reused_across_horizons_gives_the_same_numbers(portfolio, params, independent):
    """The set-up is shared by runs that differ only in seed, paths or years (a service valuing loan after
    loan): a 6-year run after a 2-year one on the same set-up equals a 6-year run on a fresh one, pine wilt's
    shadow epidemic of independent mode included."""
    from finance_engine.simulation import engine

    kw = dict(years=6, paths=64, seed=13, levels=("portfolio", "county"),
              switches=SimulationSwitches(independent=independent))
    engine._SETUP_CACHE.clear()
    fresh = simulate(portfolio, params, **kw)
    engine._SETUP_CACHE.clear()
    simulate(portfolio, params, **{**kw, "years": 2})
    reused = simulate(portfolio, params, **kw)
    assert len(engine._SETUP_CACHE) == 1  # one set-up served both horizons
    pd.testing.assert_frame_equal(fresh.summary, reused.summary, check_exact=True)
    pd.testing.assert_frame_equal(fresh.horizon, reused.horizon, check_exact=True)


def test_set_ups_are_kept_least_recently_used_first_out(portfolio, params, monkeypatch):
    """A valuation with its drivers runs eight switch settings of one pledge, loan after loan: a process
    keeps the set-ups it used last instead of dropping them all when a fifth arrives (each rebuilt
    its perils), within a count and a number of parcels; a set-up taken again comes back as it was."""
    from finance_engine.simulation import engine

    monkeypatch.setattr(engine, "_SETUP_CACHE", {})
    kw = dict(years=2, paths=32, seed=3, levels=("portfolio",))
    settings = [SimulationSwitches(perils=()), SimulationSwitches(perils=("fire",)),
                SimulationSwitches(perils=("typhoon",)), SimulationSwitches(perils=("fire", "typhoon")),
                SimulationSwitches(growth_shocks=False), SimulationSwitches(parcel_noise=False)]
    first = [simulate(portfolio, params, switches=sw, **kw) for sw in settings]
    kept = dict(engine._SETUP_CACHE)
    assert len(kept) == len(settings)  # six set-ups kept, not cleared at the fifth
    again = simulate(portfolio, params, switches=settings[0], **kw)
    assert engine._SETUP_CACHE == kept and next(reversed(engine._SETUP_CACHE)) == next(iter(kept))  # reused, now newest
    pd.testing.assert_frame_equal(first[0].summary, again.summary, check_exact=True)
    # beyond the parcels allowed, the least recently used go (the newest always stays)
    monkeypatch.setattr(engine, "SETUP_CACHE_PARCELS", 2 * portfolio.n_parcels)
    simulate(portfolio, params, switches=SimulationSwitches(independent=True), **kw)
    assert len(engine._SETUP_CACHE) == 2
    assert list(engine._SETUP_CACHE)[0] == list(kept)[0]  # the one used just before, then the new one
    monkeypatch.setattr(engine, "SETUP_CACHE_ENTRIES", 1)
    simulate(portfolio, params, switches=SimulationSwitches(growth_shocks=False), **kw)
    assert len(engine._SETUP_CACHE) == 1


def test_warm_pool_payloads_are_kept_as_the_set_ups_are(monkeypatch):
    """The pickled inputs the warm pool's workers build set-ups from follow the same rule: the least
    recently used go first, beyond the count or the bytes, where all were dropped at the fifth."""
    from finance_engine.simulation import engine

    monkeypatch.setattr(engine, "_PAYLOADS", {})
    first = [engine._payload_bytes(f"token-{i}", {"model": i}, list(range(i))) for i in range(6)]
    assert len(engine._PAYLOADS) == 6
    assert engine._payload_bytes("token-0", None, None) is first[0]  # kept, not pickled again
    assert list(engine._PAYLOADS)[-1] == "token-0"  # now the most recently used
    import pickle

    monkeypatch.setattr(engine, "PAYLOAD_CACHE_BYTES", len(first[0]) + len(pickle.dumps(({"model": 6}, []))))
    engine._payload_bytes("token-6", {"model": 6}, [])
    assert list(engine._PAYLOADS) == ["token-0", "token-6"]  # the two used last, within the bytes


def test_writing_a_run_into_a_folder_leaves_no_table_of_an_earlier_run(portfolio, params, tmp_path):
    """A second run written into the same folder (another format, no loss table) leaves only its own tables
    beside its provenance; files that are not tables of a run stay."""
    first = simulate(portfolio, params, years=3, paths=16, seed=1, loss_table_level="county")
    first.write(tmp_path, "csv")
    (tmp_path / "notes.txt").write_text("mine")
    assert (tmp_path / "event_loss_table.csv").exists()
    second = simulate(portfolio, params, years=2, paths=16, seed=7)
    written = second.write(tmp_path, "parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*(p.name for p in written), "notes.txt"])
    assert not any(p.suffix == ".csv" for p in tmp_path.iterdir())


def test_a_run_reports_its_own_portfolio_name_when_another_brought_the_same_data(params):
    """Set-ups are cached by the parcels' content: a second portfolio with the same rows under another name
    (another tenant's upload) must not see the first one's name in its provenance."""
    df = make_frame(20, seed=11)
    first = validate_frame(df, params, source="bank_a_confidential_book.csv")
    second = validate_frame(df, params, source="my_parcels.csv")
    assert first.content_hash == second.content_hash
    a = simulate(first, params, years=2, paths=16, seed=3)
    b = simulate(second, params, years=2, paths=16, seed=3)
    assert a.provenance["portfolio"]["source"] == "bank_a_confidential_book.csv"
    assert b.provenance["portfolio"]["source"] == "my_parcels.csv"
    pd.testing.assert_frame_equal(a.summary, b.summary)
