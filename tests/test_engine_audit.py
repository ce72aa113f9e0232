"""The engine's acceptance audit (issue 4): per-path memory within a budget, the parcel level's parameter sd,
progress that reaches 100 % only with the result, the parameter sd under antithetic pairs, and what removing
a parcel changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import finance_engine.simulation.engine as engine_mod
import finance_engine.simulation.result as result_mod
from finance_engine.simulation import SimulationCancelled, simulate
from finance_engine.simulation.chunk import (PARCEL_METRICS, _block_sums, _short_set_sums, metric_names,
                                             reduce_block_moments, reduce_short_sets)
from finance_engine.simulation.summary import moments_from_sums, nested_moments
from models.dynamics import SimulationSwitches
from models.portfolio import validate_frame
from tests.conftest import make_frame

from tests.test_engine import portfolio  # noqa: E402,F401  (the engine tests' 120 parcels, half in one project)

MOMENTS = ("mean", "mc_se", "parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high")




def _same_moments(got: pd.DataFrame, want: pd.DataFrame, keys: list[str]) -> None:
    """Means and errors equal to rounding (1e-12 relative); parameter sds compared as variances, to rounding
    of the mean squares they are the difference of (a clipped 0 against a tiny positive value is rounding)."""
    g = got.set_index(keys).sort_index()
    w = want.set_index(keys).sort_index()
    assert g.index.equals(w.index)
    scale = np.maximum(w["sd"].to_numpy(), 1e-300) if "sd" in w else None
    for c in ("mean", "mc_se"):
        np.testing.assert_allclose(g[c].to_numpy(), w[c].to_numpy(), rtol=1e-12, atol=1e-9)
    for c in ("parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high"):
        a, b = g[c].to_numpy(), w[c].to_numpy()
        assert np.array_equal(np.isnan(a), np.isnan(b)), c
        ok = ~np.isnan(a)
        atol = 1e-9 * (scale[ok] ** 2 if scale is not None else np.maximum(b[ok] ** 2, 1.0))
        assert np.all(np.abs(a[ok] ** 2 - b[ok] ** 2) <= 1e-9 * b[ok] ** 2 + atol), c


# ---- 1. per-path memory within a budget -----------------------------------------------------------------
def test_levels_are_admitted_coarse_to_fine_within_the_budget_and_the_others_say_why():
    from finance_engine.simulation.chunk import per_path_bytes, plan_per_path
    from finance_engine.simulation.config import PER_PATH_BUDGET_BYTES

    groups = {"township": 144, "portfolio": 1, "county": 9, "village": 248}
    plan = plan_per_path(("township", "village", "portfolio", "county", "parcel"), groups, 13, 30, 10_000)
    assert plan.budget == PER_PATH_BUDGET_BYTES == 768 * 2**20
    assert plan.levels == ("portfolio", "county")  # in the order asked
    assert plan.nbytes == per_path_bytes(13, 30, 10_000, 10) <= plan.budget
    assert plan.without == {
        "township": "per-path values would need 4.2 GiB (and 2.9 GiB while summarised), over the 768 MiB budget "
                    "with the 298 MiB of coarser levels",
        "village": "248 groups, over 200"}
    # the city run's townships alone: 4.2 GiB, against the 2 GB peak
    assert plan_per_path(("township",), groups, 13, 30, 10_000).without == {
        "township": "per-path values would need 4.2 GiB (and 2.9 GiB while summarised), over the 768 MiB budget"}
    # small runs keep every level of at most 200 groups, as before (golden results do not move)
    assert plan_per_path(("portfolio", "county", "township"), groups, 13, 30, 1_000).levels == \
        ("portfolio", "county", "township")


def test_a_level_beyond_the_budget_is_summarised_from_moments(portfolio, params, monkeypatch):
    from finance_engine.simulation.engine import per_path_bytes

    levels = ("portfolio", "county", "village")
    kw = dict(years=5, paths=96, seed=11, levels=levels, chunk_paths=32)
    dense = simulate(portfolio, params, **kw)
    assert dense.provenance["levels_without_quantiles"] == {} and set(dense.per_path) == set(levels)
    n_metrics = len(dense.metrics)
    budget = per_path_bytes(n_metrics, 5, 96, 1) + 1024  # the portfolio fits, the county does not
    stores = []

    class SpyStore(result_mod.ChunkStore):
        def __init__(self, setup):
            super().__init__(setup)
            stores.append(self)

    monkeypatch.setattr(engine_mod, "ChunkStore", SpyStore)
    tight = simulate(portfolio, params, per_path_budget_mib=budget / 2**20, **kw)
    # the per-path arrays the run allocated stay within the budget
    assert stores and sum(a.nbytes for a in stores[-1].per_path.values()) <= budget
    assert list(tight.per_path) == ["portfolio"]
    why = tight.provenance["levels_without_quantiles"]
    assert set(why) == {"county", "village"} and all("budget" in v for v in why.values())
    # the fine levels' moments are the per-path summary's; no quantiles or TVaR there
    for table, keys in ((tight.summary, ["level", "group", "metric", "year"]),
                        (tight.horizon, ["level", "group", "metric"])):
        want = dense.summary if table is tight.summary else dense.horizon
        fine = table[table.level != "portfolio"]
        _same_moments(fine[[*keys, "sd", *MOMENTS]], want[want.level != "portfolio"][[*keys, "sd", *MOMENTS]], keys)
        assert fine[["p05", "p50", "p95", "tvar95", "tvar99"]].isna().all().all()
        # the portfolio keeps its quantiles, bit for bit
        pd.testing.assert_frame_equal(table[table.level == "portfolio"].reset_index(drop=True),
                                      want[want.level == "portfolio"].reset_index(drop=True), check_exact=True)
    np.testing.assert_array_equal(tight.per_path["portfolio"], dense.per_path["portfolio"])


def test_require_per_path_fails_early_with_what_would_keep_every_level(portfolio, params):
    from finance_engine.simulation.engine import per_path_bytes, require_per_path

    levels = ("portfolio", "county", "village")
    plan = require_per_path(portfolio, params, levels, 5, 96)
    res = simulate(portfolio, params, years=5, paths=96, seed=1, levels=levels)
    # the same count of metrics and groups as the run's set-up
    assert plan.levels == levels and plan.nbytes == sum(a.nbytes for a in res.per_path.values())
    tight = per_path_bytes(len(res.metrics), 5, 96, 3)  # not even the counties' 96 paths fit beside the portfolio
    with pytest.raises(ValueError, match=r"the stress test needs every path's values at portfolio, county, village "
                                         r"\(96 paths x 5 years\), but county: per-path values would need .*at most "
                                         r"\d+ paths, coarser levels or a larger per-path budget"):
        require_per_path(portfolio, params, levels, 5, 96, per_path_budget_mib=tight / 2**20, what="the stress test")
    # two runs held at once share the budget (each with the summary's transient memory for its largest level)
    from finance_engine.simulation.chunk import summary_transient_bytes

    one = plan.nbytes + summary_transient_bytes(len(res.metrics), 5, res.per_path["village"].nbytes)
    require_per_path(portfolio, params, levels, 5, 96, per_path_budget_mib=2 * one / 2**20, runs=2)
    with pytest.raises(ValueError, match="a share of 3 runs"):
        require_per_path(portfolio, params, levels, 5, 96, per_path_budget_mib=2 * one / 2**20, runs=3)
    # the perils a run's switches leave out are not counted
    growth_only = require_per_path(portfolio, params, ("portfolio",), 5, 96, switches=SimulationSwitches(perils=()))
    assert growth_only.nbytes == per_path_bytes(len(metric_names([])), 5, 96, 1)


def test_the_cli_notes_each_level_without_quantiles():
    from api.cli.commands.simulate import quantile_notes

    lines = quantile_notes({"levels_without_quantiles": {
        "township": "per-path values would need 4.2 GiB, over the 768 MiB budget", "village": "248 groups, over 200"}})
    assert len(lines) == 2
    assert lines[0].startswith("note: township: no quantiles or TVaR (per-path values would need 4.2 GiB")
    assert "fewer --paths" in lines[0] and "per_path_budget_mib" in lines[0]
    assert "coarser --level" in lines[1] and "fewer --paths" not in lines[1]
    assert quantile_notes({}) == []


# ---- 2. the parcel level's parameter sd ------------------------------------------------------------------
def test_parcel_summary_reports_the_parameter_sd_apart_from_the_mc_error(params):
    """One parcel a village: each village's per-path horizon values are its parcel's, so the parcel summary
    (from streamed sums) must give nested_moments of them."""
    n = 40
    df = make_frame(n, seed=8)
    df["village"] = [f"V{i:02d}" for i in range(n)]
    df["project_id"] = np.where(np.arange(n) % 2 == 0, "PRJ-1", "")
    pf = validate_frame(df, params, source="parcel-psd")
    years, paths = 6, 80
    res = simulate(pf, params, years=years, paths=paths, seed=4, levels=("village", "parcel"), chunk_paths=32)
    ps = res.parcel_summary
    assert [c for c in ps.columns if c != "parcel_id"] == [f"{m}_{s}" for m in PARCEL_METRICS for s in MOMENTS]
    arr = res.per_path["village"]  # (metrics, years, paths, villages)
    village_of = dict(zip(res.labels["village"], range(n)))
    order = [village_of[lab] for lab in
             (pf.frame[["province", "city", "county", "township", "village"]].astype(str).agg("/".join, axis=1))]
    m = res.metrics.index
    per_parcel = {
        "stock_end_tco2e": arr[m("stock_tco2e"), -1],
        "cumulative_loss_tco2e": arr[m("loss_tco2e")].sum(axis=0),
        "cumulative_credits_tco2e": arr[m("credits_issued_tco2e")].sum(axis=0),
        "mean_annual_sink_tco2e": arr[m("sink_tco2e")].sum(axis=0) / years,
    }
    for metric, x in per_parcel.items():
        want = nested_moments(x[:, order], 4, True)
        got = pd.DataFrame({s: ps[f"{metric}_{s}"] for s in MOMENTS}).assign(key=np.arange(n), sd=want["sd"])
        ref = pd.DataFrame({s: want[s] for s in MOMENTS}).assign(key=np.arange(n), sd=want["sd"])
        _same_moments(got, ref, ["key"])
        assert (ps[f"{metric}_parameter_sd_ci95_low"] <= ps[f"{metric}_parameter_sd"] + 1e-9).all()
    assert ps["stock_end_tco2e_parameter_sd"].gt(0).any()


# ---- 3. progress reaches 100 % only with the result --------------------------------------------------------
@pytest.mark.parametrize("scheduler", [None, "threads"])
def test_progress_reaches_one_only_once_the_result_is_summarised(portfolio, params, monkeypatch, scheduler):
    events = []
    real = engine_mod.assemble_result

    def assemble(*a, **kw):
        events.append("summary starts")
        out = real(*a, **kw)
        events.append("summary done")
        return out

    monkeypatch.setattr(engine_mod, "assemble_result", assemble)
    simulate(portfolio, params, years=5, paths=128, seed=3, levels=("portfolio", "county", "village"),
             chunk_paths=32, workers=2 if scheduler else 1, scheduler=scheduler, progress=events.append)
    reports = [e for e in events if not isinstance(e, str)]
    # the chunk counts in turn, the last 100 % with an ETA of 0; the summary's parts are reported with all but
    # the last chunk done (receivers take chunks_done == chunks_total for the run's end)
    counts = [p.chunks_done for p in reports]
    assert sorted(set(counts)) == [0, 1, 2, 3, 4] and counts == sorted(counts) and counts.count(4) == 1
    assert {p.chunks_total for p in reports} == {4}
    assert reports[-1].fraction == 1.0 and reports[-1].eta_s == 0.0
    # ... and it comes after the summary; none before it says the run is done
    assert events.index(reports[-1]) > events.index("summary done")
    before = reports[:-1]
    assert all(p.fraction < 1.0 for p in before) and all(p.eta_s is None or p.eta_s > 0 for p in before)
    fractions = [p.fraction for p in reports]
    assert fractions == sorted(fractions)
    # the summary is reported as it goes (before each level kept per path, the moment levels, the parcels)
    start, end = events.index("summary starts"), events.index("summary done")
    during = [e for e in events[start:end] if not isinstance(e, str)]
    assert len(during) >= 3 and all(p.chunks_done == 3 for p in during)


def count_summaries(monkeypatch) -> dict:
    """Count the engine's per-path summary tables as they are made: ``{"summarised": n}``, live."""
    state = {"summarised": 0}
    real = result_mod.summarise_per_path

    def summarise(*a, **kw):
        state["summarised"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(result_mod, "summarise_per_path", summarise)
    return state


def test_a_cancel_while_summarising_stops_the_run(portfolio, params, monkeypatch):
    state = count_summaries(monkeypatch)
    with pytest.raises(SimulationCancelled):
        simulate(portfolio, params, years=4, paths=64, seed=3, levels=("portfolio", "county", "village"),
                 cancel=lambda: state["summarised"] > 0)
    assert state["summarised"] == 2  # the portfolio's yearly and horizon tables; stopped before the counties


# ---- 4. the parameter sd under antithetic pairs ------------------------------------------------------------
def _streamed(x: np.ndarray, m: int, chunk: int) -> dict[str, np.ndarray]:
    """moments_from_sums of ``x`` (paths first) streamed in chunks, with the antithetic pairs' sums."""
    from finance_engine.simulation.chunk import _pair_square_sums, reduce_pair_moments

    n = x.shape[0]
    blocks, shorts, pairs = [], [], []
    for s in range(0, n, chunk):
        v = x[s:min(s + chunk, n)]
        blocks.append(_block_sums(v, s, n, m))
        pairs.append(_pair_square_sums(v, s, n, m))
        short = _short_set_sums(v, s, n, m)
        if short is not None:
            shorts.append(short)
    sums = reduce_block_moments(np.concatenate(blocks), n, m)
    return moments_from_sums(sums, n, m, True, reduce_short_sets(shorts), reduce_pair_moments(np.concatenate(pairs)))


@pytest.mark.parametrize("m", [4, 6, 8])
def test_antithetic_moments_decompose_on_pair_means_streamed_or_not(m):
    rng = np.random.default_rng(m)
    g, k = 300, m // 2
    set_effect = np.repeat(rng.normal(0, 2.0, g), m)
    shock = np.repeat(rng.normal(0, 5.0, g * k), 2) * np.tile([1.0, -1.0], g * k)  # mirrored within pairs
    n = g * m + 5  # a short last set
    x = np.concatenate([set_effect + shock + rng.normal(0, 1.0, g * m), rng.normal(0, 3, 5)])[:, None]
    got = nested_moments(x, m, True, antithetic=True)
    sets = n // m  # the complete sets (the 5 extra paths complete one more with m = 4)
    pm = x[: sets * m].reshape(sets * k, 2, 1).mean(axis=1)  # the pair means, in sets of k
    ref = nested_moments(pm, k, True)
    for s in ("parameter_sd", "parameter_sd_ci95_low", "parameter_sd_ci95_high", "mc_se"):
        np.testing.assert_allclose(got[s], ref[s], rtol=1e-12)
    plain = nested_moments(x, m, True)
    assert all(np.array_equal(got[s], plain[s]) for s in ("mean", "sd", "mc_se"))
    assert abs(got["parameter_sd"][0] - 2.0) < 0.3 < abs(plain["parameter_sd"][0] - 2.0)  # the truth is 2
    for chunk in (32, 64, n):
        streamed = _streamed(x, m, chunk)
        for s in MOMENTS:
            np.testing.assert_allclose(streamed[s], got[s], rtol=1e-9)
    one_pair = nested_moments(x, 2, True, antithetic=True)  # a set of one pair: not identifiable
    assert np.isnan(one_pair["parameter_sd"]).all() and np.isfinite(one_pair["mc_se"]).all()


def test_antithetic_parameter_sd_agrees_with_the_plain_one_over_seeds(params):
    """Over 40 seeds the antithetic runs' parameter sd agrees with the plain runs' within its sampling error
    (it came out about 20-50 % low when decomposed over single paths), and the streamed levels give the
    per-path figures."""
    pf = validate_frame(make_frame(40, seed=3), params)
    psd = {False: [], True: []}
    for seed in range(40):
        for anti in (False, True):
            r = simulate(pf, params, years=3, paths=128, seed=seed,
                         switches=SimulationSwitches(antithetic=anti, perils=()))
            h = r.horizon.set_index(["level", "metric"]).loc[("portfolio", "cumulative_growth_tco2e")]
            psd[anti].append(h["parameter_sd"])
    plain, anti = np.array(psd[False]), np.array(psd[True])
    se = np.sqrt(plain.var(ddof=1) / plain.size + anti.var(ddof=1) / anti.size)
    assert abs(anti.mean() - plain.mean()) < 3 * se, (anti.mean(), plain.mean(), se)
    # the streamed sums (a budget of 0 keeps no level per path) give the per-path summary's figures
    # (the portfolio level is kept whatever the budget: the county and village levels are streamed)
    kw = dict(years=3, paths=128, seed=5, levels=("county", "village", "parcel"), chunk_paths=32,
              switches=SimulationSwitches(antithetic=True, perils=()))
    dense, streamed = simulate(pf, params, **kw), simulate(pf, params, per_path_budget_mib=0, **kw)
    assert streamed.per_path == {} and set(streamed.provenance["levels_without_quantiles"]) == {"county", "village"}
    keys = ["level", "group", "metric"]
    _same_moments(streamed.horizon[[*keys, "sd", *MOMENTS]], dense.horizon[[*keys, "sd", *MOMENTS]], keys)


# ---- 5. what removing a parcel changes ---------------------------------------------------------------------
def test_removing_a_parcel_changes_only_its_projects_credits_and_the_docs_say_so(params):
    import models.rng

    df = make_frame(40, seed=5)
    df["project_id"] = np.where(np.arange(40) % 2 == 0, "PRJ-1", "PRJ-2")
    kw = dict(years=12, paths=64, seed=1, levels=("parcel",), switches=SimulationSwitches(perils=("fire",)))
    full = simulate(validate_frame(df, params), params, **kw).parcel_summary.set_index("parcel_id")
    less = simulate(validate_frame(df.drop(index=0), params), params, **kw).parcel_summary.set_index("parcel_id")
    moved = (full.loc[less.index] - less).abs()
    same_project = df.set_index("parcel_id").loc[less.index, "project_id"].eq("PRJ-1").to_numpy()
    assert moved.loc[same_project, "cumulative_credits_tco2e_mean"].max() > 0
    assert moved.loc[~same_project, "cumulative_credits_tco2e_mean"].max() == 0
    assert moved[["stock_end_tco2e_mean", "cumulative_loss_tco2e_mean"]].max().max() == 0
    doc = " ".join(models.rng.__doc__.split())
    assert "share of its project's issuance" in doc and "distant cluster" in doc
