"""Layer pricing on the engine's own event loss table, and year columns that cannot index the simulated years.

The engine's table (``simulate --loss-table``) has ``path``, ``year`` (0..Y-1 within each path) and ``sim_year``
(= path x Y + year). Priced on ``year`` with ``--years P x Y``, all P paths' year k were one simulated year:
exit 0 with wrong figures (review: P(attach) 1.46 % instead of 5.21 %). Its own format is now read as it is,
and a year column that cannot index the simulated years is refused naming the column and why."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from finance_engine.insurance import YearIndexError, elt_columns, event_losses, price_layer


def engine_elt(paths: int = 16, years: int = 10, seed: int = 3, rate: float = 0.6) -> pd.DataFrame:
    """A table in the engine's format: Poisson(rate) events a path-year with exponential losses."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(paths):
        for y in range(years):
            for e in range(rng.poisson(rate)):
                rows.append({"path": p, "year": y, "sim_year": p * years + y, "event_id": 1000 * (p * years + y) + e,
                             "peril": "fire", "group": "portfolio", "loss_tco2e": float(rng.exponential(100.0))})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def elt():
    return engine_elt()


def test_the_engines_table_is_read_on_its_simulated_year(elt):
    assert elt_columns(elt) == ("sim_year", "loss_tco2e", True)
    assert elt_columns(elt.rename(columns={"loss_tco2e": "loss"})) == ("sim_year", "loss", True)
    assert elt_columns(pd.DataFrame({"year": [0], "event_id": [1], "loss": [1.0]})) == ("year", "loss", False)
    got = price_layer(elt, 160, 50.0, 200.0)
    by_hand = price_layer(elt.rename(columns={"sim_year": "y", "loss_tco2e": "l"})[["y", "event_id", "l"]], 160,
                          50.0, 200.0, year_col="y", loss_col="l")
    assert got.expected_loss == by_hand.expected_loss and got.prob_attachment == by_hand.prob_attachment
    # the annual total of simulated year s is the sum of its events' losses
    ann = event_losses(elt, 160)
    assert np.bincount(ann.year, ann.loss, minlength=160) == pytest.approx(
        elt.groupby("sim_year").loss_tco2e.sum().reindex(range(160), fill_value=0.0).to_numpy())


def test_a_year_within_each_path_is_refused_naming_the_column(elt):
    with pytest.raises(YearIndexError, match=r"column 'year' holds the year within each path \(0-9, repeated in "
                                             r"16 paths") as ei:
        price_layer(elt, 160, 50.0, 200.0, year_col="year")
    assert ei.value.column == "year" and ei.value.suggestion == "sim_year"
    # without a sim_year column the message says how to number the simulated years
    with pytest.raises(YearIndexError, match="path x years per path \\+ year") as ei:
        price_layer(elt.drop(columns="sim_year"), 160, 50.0, 200.0, loss_col="loss_tco2e")
    assert ei.value.suggestion is None


def test_a_path_column_whose_years_are_already_global_passes():
    """A path column next to a year that is already the simulated year (no year index in two paths)."""
    t = pd.DataFrame({"path": [0, 0, 1, 1], "year": [0, 3, 5, 9], "event_id": [1, 2, 3, 4], "loss": [1.0, 2, 3, 4]})
    assert price_layer(t, 10, 0.0, np.inf).expected_loss == pytest.approx(1.0)


def test_n_years_must_be_whole_paths_of_the_engines_table(elt):
    with pytest.raises(YearIndexError, match=r"n_years=165 is not a whole number of the table's paths of 10 years"):
        price_layer(elt, 165, 50.0, 200.0)
    assert price_layer(elt, 160, 50.0, 200.0).n_years == 160


def test_event_years_far_below_n_years_are_refused_only_when_asked(elt):
    """The review's API case: the engine's years 0-29 as ``year`` of a table without its path column. A
    hand-built table may put its events anywhere (the library's own default); a table a user brings is checked."""
    t = elt[["year", "event_id", "loss_tco2e"]].rename(columns={"loss_tco2e": "loss"})
    assert price_layer(t, 160, 50.0, 200.0).n_years == 160  # unchecked: the library default
    with pytest.raises(YearIndexError, match=r"10 event years all lie in 0-9, but n_years=160"):
        price_layer(t, 160, 50.0, 200.0, check_year_spread=True)
    assert price_layer(t, 10, 50.0, 200.0, check_year_spread=True).n_years == 10
    # the engine's table priced with twice its years: its event years all lie in the first half
    with pytest.raises(YearIndexError, match="event years all lie in 0-157, but n_years=320"):
        price_layer(elt, 320, 50.0, 200.0, check_year_spread=True)


@pytest.mark.parametrize("seed", range(20))
def test_sparse_catalogues_spread_over_their_years_pass(seed):
    """ORD-style tables: few event years anywhere in [0, n_years), or many in a large catalogue, are legitimate."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 100_000))
    k = int(rng.integers(1, 40))
    yrs = rng.integers(0, n, size=k)
    t = pd.DataFrame({"year": yrs, "event_id": np.arange(k), "loss": rng.exponential(10.0, size=k)})
    assert price_layer(t, n, 0.0, np.inf, check_year_spread=True).n_years == n
    # a few events early in a long catalogue: not enough evidence against it (chance (3/1000)^3 = 2.7e-8)
    early = pd.DataFrame({"year": [0, 1, 2], "event_id": [1, 2, 3], "loss": [1.0, 1.0, 1.0]})
    assert price_layer(early, 1000, 0.0, np.inf, check_year_spread=True).n_years == 1000


# ---- the CLI -----------------------------------------------------------------------------------------------
def _run(args, capsys):
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_prices_the_engines_table_on_its_simulated_year(elt, tmp_path, capsys):
    f = tmp_path / "event_loss_table.csv"
    elt.to_csv(f, index=False)
    code, out, err = _run(["price-layer", str(f), "--years", "160", "--attachment", "50", "--limit", "200",
                           "--format", "json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    direct = price_layer(elt, 160, 50.0, 200.0)
    assert d["pure_premium"] == pytest.approx(direct.expected_loss)
    assert d["prob_attachment"] == pytest.approx(direct.prob_attachment)
    assert d["columns"] == {"year": "sim_year", "event": "event_id", "loss": "loss_tco2e", "engine_table": True}
    assert "the engine's event loss table" in err and "'sim_year'" in err
    # probabilities carry their Monte Carlo error, counting the table's 16 paths of 10 correlated years
    hit = (direct.annual_loss > 0).reshape(16, 10).mean(axis=1)
    assert d["years_per_block"] == 10
    assert d["prob_attachment_se"] == pytest.approx(hit.std(ddof=1) / np.sqrt(16))
    code, out, _ = _run(["price-layer", str(f), "--years", "160", "--attachment", "50", "--limit", "200"], capsys)
    assert code == 0 and "P(attachment)" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("P(attachment)"))
    assert line.count("±") == 2, line


@pytest.mark.parametrize("args, msgs", [
    (["--years", "160", "--year-col", "year"], ["column 'year' holds the year within each path", "(--year-col sim_year)"]),
    (["--years", "165"], ["--years 165 is not a whole number of the table's paths of 10 years"]),
    (["--years", "320"], ["event years all lie in 0-157, but --years 320"]),
])
def test_cli_refuses_a_year_column_that_cannot_index_the_years(elt, tmp_path, capsys, args, msgs):
    f = tmp_path / "event_loss_table.csv"
    elt.to_csv(f, index=False)
    code, out, err = _run(["price-layer", str(f), "--attachment", "50", "--limit", "200", *args], capsys)
    assert code == 2 and out == ""
    line = [ln for ln in err.strip().splitlines() if "error" in ln]
    assert len(line) == 1 and str(f) in line[0], err
    for m in msgs:
        assert m in line[0], line[0]


def test_cli_refuses_the_engines_years_without_their_path_column(elt, tmp_path, capsys):
    f = tmp_path / "elt.csv"
    elt[["year", "event_id", "loss_tco2e"]].rename(columns={"loss_tco2e": "loss"}).to_csv(f, index=False)
    code, _, err = _run(["price-layer", str(f), "--years", "160", "--attachment", "50", "--limit", "200"], capsys)
    assert code == 2 and "column 'year': the table's 10 event years all lie in 0-9, but --years 160" in err
    assert "--year-col" in err
