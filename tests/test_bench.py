"""The benchmark harness runs and counts the random numbers the engine consumes (speed is not asserted)."""

import os
import subprocess
import sys

import pytest

import models.rng as rng_mod
from finance_engine.bench import _run_case


def test_rng_only_case_counts_inline_draws_and_restores_the_generator():
    before = (rng_mod._grid, rng_mod._pairs, rng_mod._to_unit, rng_mod.KeyedRandom._rows)
    out = _run_case("rng_only", {"paths": 32, "years": 2})
    assert (rng_mod._grid, rng_mod._pairs, rng_mod._to_unit, rng_mod.KeyedRandom._rows) == before
    # every (path, parcel, year) draws at least its growth noise and its fire hazard inline (compiled
    # kernels), so the count must be at least 2 per parcel-path-year; the cell draws of pine wilt add more
    assert out["random_numbers_per_parcel_path_year"] >= 2.0
    assert out["random_numbers"] == round(out["random_numbers_per_parcel_path_year"] * 5000 * 32 * 2)
    assert out["rng_keyed_seconds"] > 0 and out["engine_to_rng_ratio"] > 1
    for g in ("pcg64", "philox"):  # numpy's generators, timed on the same count, for reference
        assert out[f"rng_{g}_seconds"] > 0
        assert out[f"engine_to_{g}_ratio"] == pytest.approx(out["seconds"] / out[f"rng_{g}_seconds"])


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps_rollup"), reason="needs Linux /proc")
def test_peak_pss_counts_the_memory_of_child_processes():
    from finance_engine.bench import PeakPss, _process_tree, _pss_kb

    own_mb = _pss_kb(os.getpid()) / 1024
    code = "import sys, time; x = b'\\x01' * (200 * 2**20); print('ready', flush=True); time.sleep(1.0)"
    with PeakPss(interval=0.05) as pss:
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"  # the child holds its 200 MiB now
        assert child.pid in _process_tree(os.getpid())
        child.wait()
    assert pss.mb is not None and pss.mb >= own_mb + 190  # this process plus the child's 200 MiB


def test_loan_project_case_takes_the_largest_project_within_the_parcel_limit(params):
    from finance_engine.bench import largest_project
    from models.demo import demo_portfolio_path
    from models.portfolio import load_portfolio

    pf = load_portfolio(demo_portfolio_path(), params)
    counts = pf.frame["project_id"].value_counts()
    chosen = largest_project(pf, 50)
    assert counts[chosen] == counts[counts <= 50].max() <= 50
    assert chosen == "LS-LQ-P03"  # the bench docs name it: 47 parcels in one township
    assert pf.frame.loc[pf.frame["project_id"] == chosen, "township"].nunique() == 1
    with pytest.raises(ValueError, match="no project of at most"):
        largest_project(pf, int(counts.min()) - 1)


def test_bench_table_shows_a_loans_median_first_run_and_one_thread():
    from api.cli.commands.bench import table_row

    loan = {"seconds": 0.27, "seconds_median": 0.3, "seconds_first_run": 0.37, "seconds_one_thread": 0.45,
            "parcel_path_years_per_s": 5.2e7, "peak_rss_mb": 368.0}
    line = table_row("loan_project", loan)
    assert line.startswith("loan_project") and "0.27 s" in line and "52.00 M parcel-path-years/s" in line
    assert "(median 0.30 s, first run 0.37 s, one thread 0.45 s)" in line
    rng = {"seconds": 1.5, "peak_rss_mb": 500.0, "engine_to_rng_ratio": 26.0, "engine_to_pcg64_ratio": 4.2,
           "engine_to_philox_ratio": 2.3}
    assert table_row("rng_only", rng).endswith("engine/RNG 26.0x (PCG64 4.2x, Philox 2.3x)")


def test_the_draw_counter_sees_through_comprehension_frames():
    # rng_only counts row hashes by who asked for them; a comprehension's frame is not the asker
    import sys

    from finance_engine.bench import calling_frame

    def streams_rows():
        return [calling_frame(sys._getframe(0)).f_code.co_name for _ in range(2)]

    assert streams_rows() == ["streams_rows"] * 2
    assert calling_frame(sys._getframe(0)).f_code.co_name == sys._getframe(0).f_code.co_name


def test_city_case_runs_with_the_engines_own_chunk_size():
    """The city cases measure what a user gets: the automatic chunk size, recorded with the result."""
    from finance_engine.bench import _case
    from finance_engine.simulation import auto_chunk_paths

    r = _case("city", {"parcels": 300, "paths": 256, "years": 2, "workers": 2, "scheduler": "threads"})
    assert r["chunk_paths"] == auto_chunk_paths(256, 300, 2) == 128
    assert r["parcels"] == 300 and r["seconds"] > 0 and r["peak_pss_total_mb"] > 0


def test_a_process_pss_never_reads_above_its_peak_resident_set():
    from finance_engine.bench import _pss_kb, _status_kb

    pid = os.getpid()
    hwm = _status_kb(pid, "VmHWM")
    assert hwm is not None and 0 < _pss_kb(pid) <= hwm
    assert _status_kb(pid, "NoSuchField") is None and _pss_kb(2**22 + 12345) == 0  # no such process: 0


def test_loan_valuation_case_times_the_whole_valuation():
    out = _run_case("loan_valuation", {"paths": 64, "workers": 1})
    assert out["project"] == "LS-LQ-P03" and out["paths"] == 64 and out["years"] == 30
    for k in ("seconds", "seconds_median", "seconds_with_sensitivities", "seconds_with_sensitivities_median",
              "seconds_first_run", "seconds_new_pledge", "seconds_new_pledge_median"):
        assert out[k] > 0, k
    from api.cli.commands.bench import table_row

    line = table_row("loan_valuation", {**out, "seconds": 0.33, "seconds_median": 0.35,
                                         "seconds_with_sensitivities": 0.39, "seconds_with_sensitivities_median": 0.4,
                                         "seconds_first_run": 1.2, "seconds_new_pledge": 0.36,
                                         "seconds_new_pledge_median": 0.38})
    assert "(median 0.35 s; with price sensitivities 0.39 s, median 0.40 s; first run 1.20 s)" in line
    assert "(a new pledge 0.36 s, median 0.38 s)" in line
