"""The accounts review's findings: a level name holding "/" is refused (and the accounts name a clash instead
of crashing), the expected sink shows its harvest and the identity of its parts, the Fang stock says how much
of it fell back to BEF, the parameter sds carry their interval, and the terminal table names every row by
its full path."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from finance_engine.accounts import carbon_accounts
from models.portfolio import LEVELS, PortfolioError, validate_frame
from tests.conftest import make_frame

IDENTITY = ("expected_sink_tco2e_per_yr_kg", "expected_growth_tco2e_per_yr_kg", "expected_mortality_tco2e_per_yr_kg",
            "expected_loss_tco2e_per_yr_kg", "expected_harvest_tco2e_per_yr_kg")


# ---- 1. "/" in a level name ---------------------------------------------------------------------
def _clashing_frame() -> pd.DataFrame:
    """Two townships whose joined paths would collide: county "A/B" + township "C", county "A" + township "B/C"."""
    df = make_frame(40, seed=7)
    df.loc[:19, ["county", "township", "village"]] = ["A/B", "C", "v1"]
    df.loc[20:, ["county", "township", "village"]] = ["A", "B/C", "v1"]
    return df


def test_a_level_name_holding_the_separator_is_refused_by_row_and_column(params):
    with pytest.raises(PortfolioError) as e:
        validate_frame(_clashing_frame(), params, source="slash.csv")
    got = {(p.row, p.column) for p in e.value.problems}
    assert got == {(r, "county") for r in range(1, 21)} | {(r, "township") for r in range(21, 41)}
    p = e.value.problems[0]
    assert p.file == "slash.csv" and p.value == "A/B"
    assert "'/'" in p.reason and "separates the account levels" in p.reason


def test_the_cli_names_file_row_column_and_reason(tmp_path, capsys):
    path = tmp_path / "slash.csv"
    _clashing_frame().to_csv(path, index=False)
    assert main(["accounts", "-p", str(path), "--paths", "8"]) == 2
    err = capsys.readouterr().err
    assert "slash.csv" in err and "row 1" in err and "county" in err and "'/'" in err


def test_the_accounts_name_a_clash_instead_of_crashing(params):
    """A portfolio built in code, past validation, with clashing labels: a ValueError naming both groups (the
    old code raised TypeError from float() of a Series); without a sink run the labels are not needed."""
    ok = _clashing_frame()
    ok["county"] = ok["county"].str.replace("/", "_")
    ok["township"] = ok["township"].str.replace("/", "_")
    pf = validate_frame(ok, params)
    frame = pf.frame.copy()
    frame["county"] = frame["county"].str.replace("_", "/")
    frame["township"] = frame["township"].str.replace("_", "/")
    bad = dataclasses.replace(pf, frame=frame, _cache={})
    with pytest.raises(ValueError, match=r"township groups .*'A', 'B/C'\) and .*'A/B', 'C'\) share the label"):
        carbon_accounts(bad, params, sink_paths=8, seed=1)
    det = carbon_accounts(bad, params, sink_paths=0)
    assert (det.level("township").parcels == 20).all() and len(det.level("township")) == 2


# ---- 2. the sink's parts: growth - mortality - loss - harvest -------------------------------------
@pytest.fixture(scope="module")
def rotation(params):
    """Half the parcels (one county) at their rotation age: clear-felled in the first year."""
    df = make_frame(40, seed=3, species=["chinese_fir"])
    df["age_years"] = 30
    df["rotation_age_years"] = np.where(np.arange(40) < 20, 30.0, np.nan)
    df["county"] = np.where(np.arange(40) < 20, "RotationCounty", "NoRotationCounty")
    pf = validate_frame(df, params)
    return carbon_accounts(pf, params, sink_paths=96, seed=1)


def test_the_expected_sink_is_the_exact_sum_of_its_parts_at_every_level(rotation):
    t = rotation.table
    sink, growth, mortality, loss, harvest = (t[c] for c in IDENTITY)
    np.testing.assert_array_equal(sink, growth - mortality - loss - harvest)
    # the parts roll up exactly too, and mortality is the engine's within rounding
    for parent, child in zip(("portfolio", *LEVELS[:-1]), LEVELS):
        keys = list(LEVELS[: LEVELS.index(child)])
        c = t[t.level == child]
        summed = c.groupby(keys)[list(IDENTITY)].sum().to_numpy() if keys else c[list(IDENTITY)].sum().to_numpy()[None]
        np.testing.assert_array_equal(summed, t[t.level == parent].sort_values(keys)[list(IDENTITY)].to_numpy())


def test_the_harvest_is_shown_and_the_potential_sink_says_it_has_none(rotation):
    c = rotation.level("county").set_index("county")
    cut, grow = c.loc["RotationCounty"], c.loc["NoRotationCounty"]
    assert cut.expected_harvest_tco2e_per_yr > 0.9 * cut.stock_bef_tco2e  # the stand is felled
    assert cut.expected_sink_tco2e_per_yr < 0 < cut.potential_sink_tco2e_per_yr
    assert grow.expected_harvest_tco2e_per_yr == 0 and grow.expected_harvest_tco2e_per_yr_mc_se == 0
    assert cut.expected_harvest_tco2e_per_yr_mc_se > 0 and cut.expected_harvest_tco2e_per_yr_parameter_sd >= 0
    # the growth and mortality lines: gross growth above the curves' net change, mortality positive
    assert grow.expected_growth_tco2e_per_yr > grow.potential_sink_tco2e_per_yr > 0
    assert grow.expected_mortality_tco2e_per_yr > 0 and grow.expected_mortality_tco2e_per_yr_mc_se > 0
    u = rotation.units
    assert "without harvest" in u["potential_sink_tco2e_per_yr"]
    assert "growth - mortality - loss - harvest" in u["expected_sink_tco2e_per_yr"]
    assert "not creditable" in u["expected_*"] and "baseline" in u["expected_*"] and "buffer" in u["expected_*"]


# ---- 3. the parameter sd's interval ---------------------------------------------------------------
def test_every_parameter_sd_has_its_interval(rotation, params):
    acc = carbon_accounts(validate_frame(make_frame(80, seed=4), params), params, sink_paths=64, seed=2)
    for a in (acc, rotation):
        t = a.table
        for fig in ("expected_sink", "expected_loss", "expected_harvest"):
            sd, lo, hi = (t[f"{fig}_tco2e_per_yr_parameter_sd{s}"] for s in ("", "_ci95_low", "_ci95_high"))
            assert sd.notna().all() and (lo <= sd + 1e-9).all() and (sd <= hi + 1e-9).all()
    t = acc.table
    assert (t.expected_sink_tco2e_per_yr_parameter_sd_ci95_high > t.expected_sink_tco2e_per_yr_parameter_sd).any()
    # a clipped 0 is "not resolved": its interval starts at 0 and bounds it above
    clipped = (t.expected_loss_tco2e_per_yr_parameter_sd == 0) & (t.expected_loss_tco2e_per_yr_mc_se > 0)
    assert clipped.any()
    assert (t.expected_loss_tco2e_per_yr_parameter_sd_ci95_low[clipped] == 0).all()
    assert (t.expected_loss_tco2e_per_yr_parameter_sd_ci95_high[clipped] > 0).any()
    assert "not resolved" in acc.units["*_parameter_sd"]


# ---- 5. the Fang stock's BEF fallback ------------------------------------------------------------
@pytest.mark.parametrize("species,share", [(["evergreen_broadleaf"], 1.0), (["chinese_fir"], 0.0),
                                           (["moso_bamboo"], 0.0)])
def test_the_fang_stock_says_what_fell_back_to_bef(params, species, share):
    acc = carbon_accounts(validate_frame(make_frame(20, seed=1, species=species), params), params, sink_paths=0)
    top = acc.level("portfolio").iloc[0]
    assert top.stock_fang_fallback_share == share
    fell = acc.provenance["stock_fang_fallback_species"]
    assert fell == (species if share else [])
    if share:
        assert top.stock_fang_tco2e == top.stock_bef_tco2e == top.stock_fang_bef_fallback_tco2e
        assert "evergreen_broadleaf" in acc.units["stock_fang_tco2e"]


def test_a_mixed_portfolio_records_its_fallback_and_carbon_methods(params):
    pf = validate_frame(make_frame(60, seed=2), params)
    acc = carbon_accounts(pf, params, sink_paths=16, seed=1)
    t = acc.table
    assert acc.provenance["stock_fang_fallback_species"] == ["evergreen_broadleaf"]
    assert acc.provenance["sink_carbon_method"] == "bef" and acc.provenance["potential_sink_carbon_method"] == "bef"
    top = t[t.level == "portfolio"].iloc[0]
    eb = pf.frame.species_group.to_numpy() == "evergreen_broadleaf"
    fang_only = carbon_accounts(validate_frame(make_frame(60, seed=2), params), params, sink_paths=0)
    assert 0 < top.stock_fang_fallback_share < 1 and eb.any()
    assert top.stock_fang_bef_fallback_tco2e_kg == t.stock_fang_bef_fallback_tco2e_kg[t.level == "village"].sum()
    assert fang_only.table.stock_fang_tco2e_kg.equals(t.stock_fang_tco2e_kg)


# ---- 4. the terminal table names every row by its path --------------------------------------------
def test_township_rows_show_their_county(tmp_path, capsys):
    """make_frame's townships (甲镇, 乙乡) recur in every county: the rows differ by their county column."""
    path = tmp_path / "p.csv"
    make_frame(60, seed=5).to_csv(path, index=False)
    assert main(["accounts", "-p", str(path), "--paths", "16", "--level", "township"]) == 0
    out = capsys.readouterr().out
    head, rule, *rows = out.splitlines()
    assert head.split()[:5] == ["level", "province", "city", "county", "township"]
    names = [tuple(r.split()[3:5]) for r in rows if r.startswith("township")]
    assert len(names) == len(set(names)) == 6 and {n[1] for n in names} == {"甲镇", "乙乡"}
    assert "expected_harvest_tco2e_per_yr" in head and "stock_fang_fallback_share" in head
    assert "not creditable" in out and "carbon method bef" in out
    assert main(["accounts", "-p", str(path), "--paths", "16", "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["provenance"]["sink_carbon_method"] == "bef"
    assert "expected_sink_tco2e_per_yr_parameter_sd_ci95_high" in d["tree"]
