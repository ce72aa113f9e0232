"""Layer errors on the engine's event loss table count independent blocks of correlated years.

A path's years share its stands, and the paths of a parameter set share a draw of the uncertain parameters, so
the engine's simulated years are not independent: ``price-layer`` took them as independent and understated the
pure premium's error (by about a third on the demo). The table now carries ``mc_block`` (the run's
``SimulationSwitches.mc_block_size``) and the errors are those of block means."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from finance_engine.insurance import (InsuranceInputError, block_mean_se, event_losses, insurer_capital,
                                      mc_block_years, price_layer)
from models.dynamics import SimulationSwitches


def path_level_elt(path_loss: np.ndarray, years: int, block_paths: int | None = None) -> pd.DataFrame:
    """The engine's format with each path losing the same amount in every one of its years (one event a year):
    the years of a path are perfectly correlated."""
    paths = path_loss.size
    p, y = np.repeat(np.arange(paths), years), np.tile(np.arange(years), paths)
    df = pd.DataFrame({"path": p, "year": y, "sim_year": p * years + y, "event_id": p * years + y,
                       "loss_tco2e": np.repeat(path_loss, years)})
    if block_paths is not None:
        df.insert(3, "mc_block", p // block_paths)
    return df


def test_the_error_of_perfectly_correlated_years_is_that_of_their_paths():
    """Closed form: every year of path p loses L_p, so the unlimited aggregate layer at 0 has mean(L) and an
    error sd(L) / sqrt(P), not sd(L) / sqrt(P x Y), whatever the number of years."""
    rng = np.random.default_rng(7)
    loss = rng.exponential(100.0, 40)
    for years in (1, 5, 30):
        lay = price_layer(path_level_elt(loss, years), 40 * years, 0.0, np.inf, "aggregate")
        assert lay.years_per_block == years
        assert lay.expected_loss == pytest.approx(loss.mean(), rel=1e-12)
        assert lay.expected_loss_se == pytest.approx(loss.std(ddof=1) / math.sqrt(40), rel=1e-12)
        lo, hi = lay.expected_loss_ci()
        from scipy.stats import t
        q = t.ppf(0.975, 39)  # 40 paths: 39 degrees of freedom, not 40 x years - 1
        assert hi - lay.expected_loss == pytest.approx(q * lay.expected_loss_se, rel=1e-12)
    # a table of its own (no path column) is taken as independent years
    bare = path_level_elt(loss, 5).rename(columns={"sim_year": "y", "loss_tco2e": "loss"})[["y", "event_id", "loss"]]
    lay = price_layer(bare, 200, 0.0, np.inf, "aggregate", year_col="y")
    assert lay.years_per_block == 1 and lay.independent_units == 200
    assert lay.expected_loss_se == pytest.approx(np.repeat(loss, 5).std(ddof=1) / math.sqrt(200), rel=1e-12)


def test_mc_block_groups_the_paths_of_a_parameter_set():
    """Paths 4k..4k+3 share a parameter draw: blocks of 4 paths x Y years, the error from 10 block means."""
    rng = np.random.default_rng(11)
    set_effect = np.repeat(rng.exponential(100.0, 10), 4)          # 10 sets of 4 paths
    loss = set_effect * rng.uniform(0.9, 1.1, 40)
    lay = price_layer(path_level_elt(loss, 6, block_paths=4), 240, 0.0, np.inf, "aggregate")
    assert lay.years_per_block == 24 and lay.independent_units == 10
    assert lay.expected_loss_se == pytest.approx(loss.reshape(10, 4).mean(axis=1).std(ddof=1) / math.sqrt(10),
                                                 rel=1e-12)
    # the probabilities' errors count the same blocks
    hit = lay.annual_loss > 150.0
    assert lay.mean_se(hit) == pytest.approx(hit.reshape(10, 24).mean(axis=1).std(ddof=1) / math.sqrt(10))
    # a reinsurance layer on the same events keeps the blocks
    cap = insurer_capital(path_level_elt(loss, 6, block_paths=4), 240, attachment=50.0, limit=100.0)
    assert cap.layer.years_per_block == 24


def test_the_block_size_is_read_from_the_rows():
    rng = np.random.default_rng(5)
    df = path_level_elt(rng.exponential(10.0, 12), 3, block_paths=2)
    assert mc_block_years(df, 3, 36) == 6
    # events in a few blocks leave b open: the coarsest consistent b (a whole number of the paths)
    few = df[df.path.isin([0, 1, 5])]                              # blocks 0, 0, 2: b in [2, 2]
    assert mc_block_years(few, 3, 36) == 6
    first = df[df.path.isin([0, 1])]                   # block 0 only: b in [2, 12] -> 6, the largest of 2 blocks
    assert mc_block_years(first, 3, 36) == 18
    # a block size that does not divide the paths: blocks of 5 paths, the last one short (2 paths)
    odd = df[df.path.isin([0, 4, 5, 9])].assign(mc_block=lambda d: d.path // 5)   # b = 5; 12 paths
    assert mc_block_years(odd, 3, 36) == 15
    # the engine writes its block size: nothing is left to the rows (events on paths 0 and 5 of blocks of 4 leave
    # b in [3, 5] open)
    sparse = df[df.path.isin([0, 5])].assign(mc_block=lambda d: d.path // 4)
    assert mc_block_years(sparse, 3, 36) == 15                                    # read off the rows: 5
    assert mc_block_years(sparse.assign(mc_block_paths=4), 3, 36) == 12         # as the engine wrote it: 4
    with pytest.raises(InsuranceInputError, match=r"column 'mc_block' is not path // mc_block_paths \(2\)"):
        mc_block_years(sparse.assign(mc_block_paths=2), 3, 36)
    with pytest.raises(InsuranceInputError, match="column 'mc_block_paths' must hold one whole number"):
        mc_block_years(sparse.assign(mc_block_paths=np.where(sparse.path == 0, 4, 2)), 3, 36)
    # not the engine's table
    assert mc_block_years(df, None, 36) == 1


def test_an_mc_block_no_block_size_explains_is_refused_naming_the_column():
    df = path_level_elt(np.ones(8), 2, block_paths=2)
    df.loc[df.path == 3, "mc_block"] = 0                            # path 3 in block 0, path 2 in block 1
    with pytest.raises(InsuranceInputError, match="column 'mc_block' is not path // b"):
        event_losses(df, 16)
    df = path_level_elt(np.ones(8), 2, block_paths=2)
    df.loc[0, "mc_block"] = -1
    with pytest.raises(InsuranceInputError, match="column 'mc_block' must lie in 0..path"):
        event_losses(df, 16)


def test_block_mean_se_matches_the_spread_of_repeated_tables():
    """Over 400 repeated tables with correlated years, the block error's mean square is the variance of the
    estimates (within 15 %), and the independent-years error understates it."""
    rng = np.random.default_rng(2026)
    years, paths = 10, 50
    est, se2, iid2 = [], [], []
    for _ in range(400):
        level = rng.gamma(2.0, 50.0, paths)                          # a path's own level, all its years
        x = (level[:, None] * rng.exponential(1.0, (paths, years))).ravel()
        est.append(x.mean())
        se2.append(block_mean_se(x, years) ** 2)
        iid2.append(block_mean_se(x, 1) ** 2)
    ratio = np.mean(se2) / np.var(est, ddof=1)
    assert 0.85 < ratio < 1.15, ratio
    assert np.mean(iid2) / np.var(est, ddof=1) < 0.6


def test_a_short_last_block_counts_as_a_block():
    """Closed form (the ratio estimator over unequal blocks, Cochran 1977 §6.8): 401 paths in sets of 4 leave a last
    set of one path; the error counts 101 blocks, not 401 independent paths (which understated it by about half)."""
    rng = np.random.default_rng(3)
    years, paths = 5, 401
    set_level = np.repeat(rng.exponential(100.0, 101), 4)[:paths]
    loss = set_level * rng.uniform(0.8, 1.2, paths)
    lay = price_layer(path_level_elt(loss, years, block_paths=4), paths * years, 0.0, np.inf, "aggregate")
    assert lay.years_per_block == 20 and lay.independent_units == 101
    x = np.repeat(loss, years)
    sums = np.array([x[k * 20:(k + 1) * 20].sum() for k in range(101)])
    sizes = np.array([min(20, x.size - k * 20) for k in range(101)], dtype=float)
    want = np.sqrt(((sums - x.mean() * sizes) ** 2).sum() / (101 * 100 * (x.size / 101) ** 2))
    assert lay.expected_loss_se == pytest.approx(want, rel=1e-12)
    assert lay.expected_loss_se > 1.5 * block_mean_se(x, years)                 # whole paths: far too small
    # equal blocks: the same formula is the sd of the block means over sqrt(G)
    y = x[:400]
    assert block_mean_se(y, 20) == pytest.approx(y.reshape(20, 20).mean(axis=1).std(ddof=1) / np.sqrt(20), rel=1e-12)


@pytest.mark.parametrize("switches,block", [
    (SimulationSwitches(), 4),
    (SimulationSwitches(parameter_set_size=8), 8),
    (SimulationSwitches(parameter_uncertainty=False, antithetic=True, parameter_set_size=2), 2),
    (SimulationSwitches(parameter_uncertainty=False), 1),
    (SimulationSwitches(growth_parameter_uncertainty=False, peril_parameter_uncertainty=False), 1),
])
def test_mc_block_size(switches, block):
    from finance_engine.simulation.result import switches_dict
    from models.dynamics import recorded_block_size

    assert switches.mc_block_size == block
    assert recorded_block_size(switches_dict(switches)) == block       # as a run's provenance records it
    assert recorded_block_size({}) == 1


@pytest.fixture(scope="module")
def engine_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("elt") / "run"
    assert main(["simulate", "--paths", "48", "--years", "5", "--level", "portfolio", "--loss-table", "portfolio",
                 "-o", str(out)]) == 0
    return out / "event_loss_table.csv"


def test_the_engines_table_carries_its_blocks_and_price_layer_counts_them(engine_table, capsys):
    elt = pd.read_csv(engine_table)
    assert (elt["mc_block"] == elt["path"] // SimulationSwitches().mc_block_size).all()
    assert (elt["mc_block_paths"] == SimulationSwitches().mc_block_size).all()
    # the year loss table beside it names the same blocks, for every path-year
    ylt = pd.read_csv(engine_table.parent / "year_loss_table.csv")
    assert len(ylt) == 240 and (ylt["mc_block"] == ylt["path"] // 4).all() and (ylt["mc_block_paths"] == 4).all()
    capsys.readouterr()
    args = ["price-layer", str(engine_table), "--years", "240", "--attachment", "0", "--limit", "inf",
            "--basis", "aggregate"]
    assert main([*args, "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["years_per_block"] == 20                              # 4 paths x 5 years
    annual = elt.groupby("sim_year").loss_tco2e.sum().reindex(range(240), fill_value=0.0).to_numpy()
    assert got["pure_premium"] == pytest.approx(annual.mean(), rel=1e-12)
    assert got["pure_premium_se"] == pytest.approx(annual.reshape(12, 20).mean(axis=1).std(ddof=1) / math.sqrt(12),
                                                   rel=1e-12)
    hit = (annual > 0).astype(float)
    assert got["prob_attachment_se"] == pytest.approx(block_mean_se(hit, 20), rel=1e-12, nan_ok=True)
    assert main(args) == 0
    assert "from 12 independent blocks of 20 simulated years" in capsys.readouterr().out
