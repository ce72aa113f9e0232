"""The per-path budget's review: the portfolio level always kept per path, the summary's transient memory counted,
progress (its ETA for any portfolio shape, cancellable through ``progress`` while summarising), the stress and
quote callers (their per-path checks, the antithetic pair means, no summary they never read)."""

from __future__ import annotations

import sys
import time
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

import finance_engine.simulation.config as config_mod
import finance_engine.simulation.engine as engine_mod
from finance_engine.simulation import SimulationCancelled, simulate
from finance_engine.simulation.chunk import per_path_bytes, plan_per_path
from finance_engine.simulation.engine import _n_metrics, require_per_path
from finance_engine.simulation.summary import horizon_per_path, nested_moments
from models.dynamics import SimulationSwitches
from models.portfolio import validate_frame
from tests.conftest import make_frame

from tests.test_engine import portfolio  # noqa: E402,F401  (the engine tests' 120 parcels, half in one project)
from tests.test_engine_audit import count_summaries  # noqa: E402


# ---- 1. the portfolio level is always kept per path ---------------------------------------------------------
def test_the_portfolio_level_is_kept_whatever_the_budget(portfolio, params):
    plan = plan_per_path(("portfolio", "county"), {"portfolio": 1, "county": 9}, 13, 30, 1_000_000, budget_bytes=0)
    assert plan.levels == ("portfolio",) and list(plan.without) == ["county"]
    res = simulate(portfolio, params, years=3, paths=64, seed=1, levels=("portfolio", "county"), chunk_paths=64,
                   per_path_budget_mib=0)
    assert res.paths_of("loss_tco2e").shape == (3, 64, 1)  # the portfolio's, as before the budget
    assert list(res.provenance["levels_without_quantiles"]) == ["county"]
    # require_per_path follows the same rule: the portfolio passes at any size, a finer level does not
    require_per_path(portfolio, params, ("portfolio",), 30, 1_000_000, per_path_budget_mib=0)
    with pytest.raises(ValueError, match="county"):
        require_per_path(portfolio, params, ("portfolio", "county"), 30, 1_000, per_path_budget_mib=0)


def test_a_loan_valued_over_the_budget_still_reads_its_portfolio_paths(params, monkeypatch):
    """A 1,000,000-path loan's portfolio level (20 years) is over the 768 MiB budget: emulated at 256 paths with a
    budget scaled down alike (it raised KeyError after the whole run)."""
    from finance_engine.collateral import LoanTerms, value_collateral

    n_m = _n_metrics(params, None)
    monkeypatch.setattr(config_mod, "PER_PATH_BUDGET_BYTES", per_path_bytes(n_m, 20, 256, 1) - 1)
    pf = validate_frame(make_frame(10, seed=8, species=["chinese_fir"]), params, source="budget-loan")
    terms = LoanTerms(amount_cny=100_000, term_years=5, interest_rate=0.04, discount_rate=0.05,
                      crediting_horizon_years=20)
    v = value_collateral(pf, params, terms, paths=256, seed=1, attribution=False, sensitivities=False)
    assert v is not None


# ---- 2. the summary's transient memory is within the budget -----------------------------------------------
def test_the_budget_counts_the_summarys_transient_memory():
    from finance_engine.simulation.chunk import summary_transient_bytes

    need = per_path_bytes(13, 30, 1_000, 40)
    extra = summary_transient_bytes(13, 30, need)
    assert extra == 9 * (need // 13)  # the yearly tables' working copies (30 years: the horizon's are fewer)
    assert summary_transient_bytes(13, 2, need) == (need + 9 * (need // 13)) // 2  # two years: the horizon's
    groups = {"portfolio": 1, "village": 40}
    budget = per_path_bytes(13, 30, 1_000, 41) + extra
    assert plan_per_path(("portfolio", "village"), groups, 13, 30, 1_000, budget).levels == ("portfolio", "village")
    short = plan_per_path(("portfolio", "village"), groups, 13, 30, 1_000, budget - 1)
    assert short.levels == ("portfolio",) and "while summarised" in short.without["village"]
    # a one-year run's horizon values are its yearly ones: no copy
    arr = np.arange(2 * 1 * 4 * 3, dtype=float).reshape(2, 1, 4, 3) - 5.0
    h, names = horizon_per_path(arr, ("stock_tco2e", "loss_tco2e"))
    assert h is arr and names == ("stock_end_tco2e", "cumulative_loss_tco2e")


def test_the_summarys_extra_peak_stays_within_the_counted_transient_memory(params, monkeypatch):
    from finance_engine.simulation.chunk import summary_transient_bytes

    df = make_frame(40, seed=5)
    df["village"] = [f"V{i:03d}" for i in range(40)]
    pf = validate_frame(df, params, source="budget-peak")
    seen = {}
    real = engine_mod.assemble_result

    def spy(setup, store, *a, **kw):
        seen["plan"] = setup.per_path_plan
        seen["n_metrics"] = len(setup.metrics)
        tracemalloc.start()
        try:
            cur = tracemalloc.get_traced_memory()[0]
            out = real(setup, store, *a, **kw)
            seen["extra"] = tracemalloc.get_traced_memory()[1] - cur
        finally:
            tracemalloc.stop()
        return out

    monkeypatch.setattr(engine_mod, "assemble_result", spy)
    simulate(pf, params, years=1, paths=8192, seed=1, levels=("portfolio", "village"), chunk_paths=8192)
    plan = seen["plan"]
    village = per_path_bytes(seen["n_metrics"], 1, 8192, 40)
    assert plan.levels == ("portfolio", "village")
    # the one-year horizon array was a whole copy of the level's values (100 % more); now only the counted
    # working copies of one metric at a time (and a little for the tables)
    assert seen["extra"] <= summary_transient_bytes(seen["n_metrics"], 1, village) + 4 * 2**20


# ---- 3. progress: the ETA holds for any portfolio shape -----------------------------------------------------
def _first_chunk_share(pf, params, **kw) -> tuple[float, float]:
    """(reported fraction, true share of the run's time) at the first chunk's report."""
    t0 = time.perf_counter()
    reports = []
    simulate(pf, params, seed=1, progress=lambda p: reports.append((p, time.perf_counter() - t0)), **kw)
    total = time.perf_counter() - t0
    p, t = next((p, t) for p, t in reports if p.chunks_done == 1)
    fractions = [p.fraction for p, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and max(fractions[:-1]) < 1.0
    return p.fraction, t / total


@pytest.mark.parametrize("shape", ["one parcel a village", "many parcels a township"])
def test_progress_after_the_first_chunk_is_near_the_true_share_of_the_time(params, shape):
    if shape == "one parcel a village":  # a summary of many values per parcel: most of the run's time
        df = make_frame(40, seed=5)
        df["village"] = [f"V{i:03d}" for i in range(40)]
        kw = dict(years=10, paths=2048, levels=("portfolio", "county", "village"), chunk_paths=512)
    else:  # the chunks most of it
        df = make_frame(1000, seed=5)
        kw = dict(years=30, paths=256, levels=("portfolio", "county", "township"), chunk_paths=64)
    pf = validate_frame(df, params, source=f"progress-{shape}")
    simulate(pf, params, seed=1, **{**kw, "paths": 64, "chunk_paths": 64})  # warm (set-up, kernels)
    reported, true = _first_chunk_share(pf, params, **kw)
    # orders of magnitude (timing): the summary counted in simulation work measured on the 5,000-parcel demo
    # said 0.8 % where a fifth of the time had passed
    assert 0.2 * true <= reported <= 5 * true, (reported, true)


# ---- 4. the summary is cancellable through progress ---------------------------------------------------------
def test_a_progress_callback_raising_while_summarising_stops_the_run(portfolio, params, monkeypatch):
    state = count_summaries(monkeypatch)

    def progress(p):  # a job cancelled once the summary has begun (the API's jobs and stress runs cancel so)
        if state["summarised"] > 0:
            raise SimulationCancelled("job cancelled")

    with pytest.raises(SimulationCancelled):
        simulate(portfolio, params, years=4, paths=256, seed=1, levels=("portfolio", "county", "township", "village"),
                 chunk_paths=64, progress=progress)
    assert state["summarised"] == 2  # the portfolio's yearly and horizon tables; stopped before the counties


def test_a_threaded_run_summarises_at_the_interpreters_switch_interval(portfolio, params, monkeypatch):
    seen = []
    real = engine_mod.assemble_result

    def spy(*a, **kw):
        seen.append(sys.getswitchinterval())
        return real(*a, **kw)

    monkeypatch.setattr(engine_mod, "assemble_result", spy)
    before = sys.getswitchinterval()
    simulate(portfolio, params, years=2, paths=128, seed=1, chunk_paths=32, workers=2, scheduler="threads")
    assert seen == [before]


# ---- 5. the stress's and the quote's per-path checks ----------------------------------------------------------
def test_require_per_path_refuses_the_parcel_level(portfolio, params):
    with pytest.raises(ValueError, match="parcel level, which a run never keeps"):
        require_per_path(portfolio, params, ("portfolio", "parcel"), 5, 64, what="the stress test")


def test_a_stress_test_with_parcels_among_its_levels_is_refused_before_any_run(portfolio, params, monkeypatch):
    from finance_engine.stress import run as run_mod

    monkeypatch.setattr(run_mod, "run_scenario", lambda *a, **k: pytest.fail("ran"))
    st = run_mod.StressSettings(years=3, paths=32, seed=1, levels=("portfolio", "parcel"))
    with pytest.raises(ValueError, match="parcel"):
        run_mod.run_stress_test(portfolio, params, ["baseline"], settings=st, footprints=False)


def test_the_buffer_says_the_project_level_fell_back_over_the_budget():
    from finance_engine.stress.buffer import BufferInputError, reversals_and_credits

    res = SimpleNamespace(per_path={}, provenance={"levels_without_quantiles": {
        "project_id": "per-path values would need 2.1 GiB, over the 2.0 GiB budget"}})
    with pytest.raises(BufferInputError, match="over the per-path memory budget") as e:
        reversals_and_credits(SimpleNamespace(result=res), None, 5)
    assert "extra_levels" not in str(e.value)


def test_the_cli_buffer_holds_one_run_at_a_time_and_checks_the_runs_it_holds(portfolio, params, monkeypatch):
    import click

    from api.cli.commands import stress as cli_stress
    from finance_engine.simulation import engine
    from finance_engine.stress import buffer as buffer_mod
    from finance_engine.stress import run as run_mod
    from finance_engine.stress.scenarios import load_scenario

    alive, checks = {"now": 0, "max": 0}, []

    class Run:
        def __init__(self, s):
            self.scenario = s
            alive["now"] += 1
            alive["max"] = max(alive["max"], alive["now"])

        def __del__(self):
            alive["now"] -= 1

    monkeypatch.setattr(run_mod, "run_scenario", lambda pf, params, s, st, **k: Run(s))
    monkeypatch.setattr(buffer_mod, "buffer_report", lambda r, *a: {"scenario": r.scenario.name,
                                                                      "nprt_scores": __import__("pandas").DataFrame()})
    real = engine.require_per_path
    monkeypatch.setattr(engine, "require_per_path", lambda *a, **k: checks.append(k["runs"]) or real(*a, **k))
    st = run_mod.StressSettings(years=3, paths=32, seed=1, levels=("portfolio", "county"))
    scns = [load_scenario("baseline"), load_scenario("ice_storm_2008"), load_scenario("super_typhoon")]
    extra = cli_stress._extras(None, portfolio, params, None, st, scns, False, True, 1)
    assert len(extra["buffer"]) == 3 and alive["max"] == 1 and checks == [2]
    # the check refuses what the runs held at once would not keep
    monkeypatch.setattr(run_mod, "STRESS_PER_PATH_BUDGET_MIB", 0.001)
    with pytest.raises(click.UsageError, match="buffer"):
        cli_stress._extras(None, portfolio, params, None, st, scns, False, True, 1)


def test_a_quote_reusing_a_run_whose_account_level_fell_back_is_refused(params):
    from finance_engine.insurance.quote import InsuranceInputError, StockLossCover, quote

    pf = validate_frame(make_frame(60, seed=5), params, source="quote-fallback")
    res = simulate(pf, params, years=2, paths=64, seed=1, levels=("portfolio", "county"), loss_table_level="portfolio",
                   chunk_paths=64, per_path_budget_mib=0)
    assert "county" in res.provenance["levels_without_quantiles"]
    with pytest.raises(InsuranceInputError, match="account_level: .*county.*streamed moments"):
        quote(StockLossCover(60.0), pf, params, simulation=res, account_level="county")
    assert quote(StockLossCover(60.0), pf, params, simulation=res, account_level=None).aal_by_level == []


# ---- 6. antithetic pairs in the stress and quote moments ------------------------------------------------------
def test_the_stress_and_quote_moments_decompose_antithetic_paths_on_pair_means():
    from finance_engine.insurance.quote import _Design
    from finance_engine.stress.run import _moments

    rng = np.random.default_rng(4)
    effect = np.repeat(rng.normal(size=(8, 1)), 8, axis=0)  # sets of 8 paths sharing a parameter draw
    u = rng.normal(size=(32, 1))
    x = effect.copy()
    x[0::2] += u                                          # antithetic pairs 2j, 2j+1: mirrored shocks
    x[1::2] += -u + 0.1 * rng.normal(size=(32, 1))
    anti = SimulationSwitches(parameter_set_size=8, antithetic=True)
    want = nested_moments(x, 8, True, antithetic=True)
    plain = nested_moments(x, 8, True)
    assert not np.allclose(want["parameter_sd"], plain["parameter_sd"])
    got = _moments(x.T[:, :, None], anti)  # (years, paths, groups)
    np.testing.assert_allclose(got["parameter_sd"][0], want["parameter_sd"])
    d = _Design(64, (64, 1), 8, antithetic=True)
    assert d.mean_se_and_parameter_sd(x[:, 0])[1] == pytest.approx(float(want["parameter_sd"][0]))
    assert _Design(64, (64, 1), 8).mean_se_and_parameter_sd(x[:, 0])[1] == pytest.approx(
        float(plain["parameter_sd"][0]))


# ---- 7. no summary the stress and the quote never read ------------------------------------------------------
def test_stress_runs_and_the_quote_skip_the_summary(portfolio, params, monkeypatch):
    from finance_engine.insurance.quote import StockLossCover, quote
    from finance_engine.stress.run import StressSettings, run_scenario
    from finance_engine.stress.scenarios import load_scenario

    st = StressSettings(years=3, paths=32, seed=1, levels=("portfolio", "county"))
    run = run_scenario(portfolio, params, load_scenario("baseline"), st)
    assert run.result.summary.empty and run.result.paths_of("loss_tco2e", "county").shape[:2] == (3, 32)
    import finance_engine.simulation as sim_pkg

    asked = []
    real = sim_pkg.simulate
    monkeypatch.setattr(sim_pkg, "simulate", lambda *a, **k: asked.append(k.get("summarise", True)) or real(*a, **k))
    quote(StockLossCover(60.0), portfolio, params, paths=32, years=1, seed=1)
    assert asked == [False]


def test_the_quote_counts_antithetic_pairs_as_units_without_parameter_sets():
    """Antithetic paths without parameter draws: the independent units are the pairs (a jackknife deleting single
    paths split them, and the mean's error over single paths overstated it by the pairs' negative correlation);
    there is no parameter sd. Closed form: the error of the mean is the sd of the pair means over sqrt(pairs)."""
    from finance_engine.insurance.quote import _Design

    rng = np.random.default_rng(9)
    u = rng.normal(size=32)
    x = np.empty(64)
    x[0::2], x[1::2] = 10 + u, 10 - u + 0.1 * rng.normal(size=32)        # mirrored pairs
    d = _Design(64, (64, 1), 1, antithetic=True)
    assert d.block == 2 and d.n_groups >= 2
    se, psd, _ = d.mean_se_and_parameter_sd(x)
    pairs = x.reshape(32, 2).mean(axis=1)
    assert se == pytest.approx(pairs.std(ddof=1) / np.sqrt(32), rel=1e-12)
    assert psd is None
    assert se < 0.2 * (x.std(ddof=1) / np.sqrt(64))                       # far below the single paths' error
    assert "antithetic pairs" in d.describe()
    assert all(k[0::2].tolist() == k[1::2].tolist() for k in d.keep)     # a replicate deletes whole pairs
    plain = _Design(64, (64, 1), 1)
    assert plain.block == 1 and plain.mean_se_and_parameter_sd(x)[0] == pytest.approx(x.std(ddof=1) / 8)
