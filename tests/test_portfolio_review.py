"""User-flow review of portfolio validation: site classes that are no class, a measured volume of 0 on an established
stand, and workbooks whose parcel table is not on the first sheet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.portfolio import PortfolioError, Problem, load_portfolio, validate_frame
from tests.conftest import make_frame


def _frame(n: int = 6, seed: int = 5) -> pd.DataFrame:
    df = make_frame(n, seed=seed, species=["chinese_fir"])
    df["latitude"] = df["latitude"].round(5)
    df["longitude"] = df["longitude"].round(5)
    df["area_ha"] = df["area_ha"].round(2)
    df["elevation_m"] = df["elevation_m"].round(0)
    return df


def _problems(call) -> list[Problem]:
    with pytest.raises(PortfolioError) as ei:
        call()
    return ei.value.problems


# --------------------------------------------------------------------------------------------
# 1. site_class: a number under the plausible site index that is not a whole class 1-5 is refused
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["2.5", 2.5, "0.5", "5.5", "4.99", "1.5"])
def test_a_fractional_class_or_implausible_site_index_is_refused(params, value):
    """2.5 was read as a 2.5 m site index, class V: no stand is 2.5 m tall at base age 20."""
    df = _frame(3).astype(object)
    df.loc[1, "site_class"] = value
    probs = _problems(lambda: validate_frame(df, params, source="s.csv"))
    assert [(p.file, p.row, p.column, p.value) for p in probs] == [("s.csv", 2, "site_class", value)]
    reason = probs[0].reason
    assert "neither a site class nor a plausible site index" in reason
    # what is accepted: the classes and the site-index range
    assert "I-V" in reason and "whole number 1-5" in reason and "6-40 m" in reason
    assert "data row 2" in str(probs[0]) and "'site_class'" in str(probs[0])


def test_whole_classes_and_plausible_site_indices_are_still_read(params):
    df = _frame(7).astype(object)
    df["site_class"] = ["2", 2.0, "IV", "6", 7.5, 12.5, "39"]
    pf = validate_frame(df, params, source="s")
    got = dict(zip(pf.frame["parcel_id"], pf.frame["site_class"]))
    assert [got[i] for i in df["parcel_id"]] == ["II", "II", "IV", "V", "V", "IV", "I"]


# --------------------------------------------------------------------------------------------
# 2. a measured volume of 0 on an established stand: accepted, with a warning
# --------------------------------------------------------------------------------------------
def test_zero_volume_on_an_established_stand_is_warned_not_refused(params):
    df = _frame(4).astype(object)
    df["age_years"] = [22, 22, 3, 30]
    df["site_class"] = ["III", "V", "III", "II"]
    df["volume_m3_per_ha"] = [0, 0, 0, None]  # rows 1-2 established, row 3 just planted, row 4 blank (curve)
    pf = validate_frame(df, params, source="p.csv")
    # not refused, and the stock stays as measured (0): a clear-felled stand can hold nothing
    vol = dict(zip(pf.frame["parcel_id"], pf.frame["volume_m3_per_ha"]))
    assert vol[df.loc[0, "parcel_id"]] == 0.0 and vol[df.loc[1, "parcel_id"]] == 0.0
    assert [(w.file, w.row, w.column, w.value) for w in pf.warnings] == [
        ("p.csv", 1, "volume_m3_per_ha", 0), ("p.csv", 2, "volume_m3_per_ha", 0)]
    w = pf.warnings[0].reason
    assert "22-year-old chinese_fir" in w and "site class III" in w and "bare land" in w
    assert "Leave the cell empty" in w


def test_zero_volume_threshold_is_the_established_stand_volume_on_the_site_curve(params):
    """Warned exactly where the site's yield curve at the stated age reaches carbon.fang_min_volume_m3_per_ha."""
    from models.growth import chapman_richards_volume

    t = params.tables
    sp = params.species_index["chinese_fir"]
    floor = params.file.carbon.fang_min_volume_m3_per_ha.value
    ages = np.arange(0, 31)
    df = _frame(len(ages)).astype(object)
    df["age_years"] = ages
    df["site_class"] = "III"
    df["volume_m3_per_ha"] = 0
    pf = validate_frame(df, params, source="p")
    curve = chapman_richards_volume(ages, t.asymptote_m3_per_ha[sp, 2], t.growth_rate_per_year[sp], t.growth_shape[sp])
    assert [w.row for w in pf.warnings] == [int(r) + 1 for r in np.flatnonzero(curve >= floor)]
    assert 0 < len(pf.warnings) < len(ages)  # young stands are not warned of


def test_a_clean_portfolio_has_no_warnings(params):
    df = _frame(5)
    df["volume_m3_per_ha"] = 120.0
    assert validate_frame(df, params).warnings == ()


def test_zero_volume_warning_names_the_excel_row(tmp_path, params):
    df = _frame(3)
    df["age_years"] = 22
    df["volume_m3_per_ha"] = [150.0, 0.0, 140.0]
    df.to_excel(tmp_path / "p.xlsx", index=False, engine="openpyxl")
    pf = load_portfolio(tmp_path / "p.xlsx", params)
    assert [(w.row, w.column) for w in pf.warnings] == [(2, "volume_m3_per_ha")]
    assert "data row 2 (row 3 counting the header)" in str(pf.warnings[0])


# --------------------------------------------------------------------------------------------
# 3. workbooks: the sheet read is named; a title sheet in front of the one parcel sheet is passed over
# --------------------------------------------------------------------------------------------
def _workbook(path, sheets: dict[str, pd.DataFrame]) -> None:
    with pd.ExcelWriter(path, engine="openpyxl") as w:
        for name, frame in sheets.items():
            frame.to_excel(w, sheet_name=name, index=False)


_TITLE = pd.DataFrame({"丽水市林业局 2026 parcel register": ["prepared by the bureau", "see sheet parcels"]})
_NOTES = pd.DataFrame({"note": ["areas in ha"]})


def test_a_title_sheet_before_the_one_parcel_sheet_is_passed_over_with_a_warning(tmp_path, params):
    df = _frame(5)
    _workbook(tmp_path / "w.xlsx", {"Title": _TITLE, "parcels": df, "notes": _NOTES})
    pf = load_portfolio(tmp_path / "w.xlsx", params)
    pd.testing.assert_frame_equal(pf.frame, validate_frame(df, params).frame)
    assert len(pf.warnings) == 1
    w = pf.warnings[0]
    assert w.row is None and "read sheet 'parcels'" in w.reason and "'Title'" in w.reason and "'notes'" in w.reason
    assert w.file.endswith("w.xlsx (sheet 'parcels')")


def test_row_problems_of_a_sheet_other_than_the_first_name_it(tmp_path, params):
    df = _frame(4).astype(object)
    df.loc[2, "area_ha"] = -1
    _workbook(tmp_path / "w.xlsx", {"Title": _TITLE, "parcels": df})
    probs = _problems(lambda: load_portfolio(tmp_path / "w.xlsx", params))
    assert [(p.row, p.column) for p in probs] == [(3, "area_ha")]
    assert str(probs[0]).startswith(f"{tmp_path / 'w.xlsx'} (sheet 'parcels'), data row 3")


def test_a_workbook_without_a_parcel_sheet_names_the_sheet_read_and_lists_the_others(tmp_path, params):
    _workbook(tmp_path / "w.xlsx", {"Title": _TITLE, "notes": _NOTES, "summary": _NOTES})
    probs = _problems(lambda: load_portfolio(tmp_path / "w.xlsx", params))
    head, rest = probs[0], probs[1:]
    assert head.column is None
    assert "sheet 'Title'" in head.reason and "first sheet" in head.reason
    assert "'notes'" in head.reason and "'summary'" in head.reason and "no other sheet" in head.reason
    assert len(rest) == 12 and all(p.reason == "required column is missing" for p in rest)
    assert all(p.file.endswith("w.xlsx (sheet 'Title')") for p in probs)  # every line names the sheet read


def test_a_first_sheet_with_some_columns_is_the_table_and_the_complete_sheet_is_pointed_to(tmp_path, params):
    """A first sheet holding some of the columns is the table meant: it is read, not passed over."""
    df = _frame(4)
    _workbook(tmp_path / "w.xlsx", {"draft": df.drop(columns=["site_class"]), "final": df})
    probs = _problems(lambda: load_portfolio(tmp_path / "w.xlsx", params))
    assert "sheet 'draft'" in probs[0].reason and "sheet 'final' has every required column" in probs[0].reason
    assert [(p.column, p.reason) for p in probs[1:]] == [("site_class", "required column is missing")]


def test_two_candidate_parcel_sheets_are_not_guessed_between(tmp_path, params):
    df = _frame(4)
    _workbook(tmp_path / "w.xlsx", {"Title": _TITLE, "2025": df, "2026": df})
    probs = _problems(lambda: load_portfolio(tmp_path / "w.xlsx", params))
    assert "'2025', '2026' each have every required column" in probs[0].reason


def test_a_single_sheet_with_a_title_row_says_where_the_header_goes(tmp_path, params):
    _workbook(tmp_path / "w.xlsx", {"Sheet1": _TITLE})
    probs = _problems(lambda: load_portfolio(tmp_path / "w.xlsx", params))
    assert "sheet 'Sheet1'" in probs[0].reason and "first row" in probs[0].reason
    assert len(probs) == 13


def test_a_parcel_table_on_the_first_sheet_is_read_as_before(tmp_path, params):
    df = _frame(4)
    _workbook(tmp_path / "w.xlsx", {"parcels": df, "other": df.iloc[:2]})
    pf = load_portfolio(tmp_path / "w.xlsx", params)
    pd.testing.assert_frame_equal(pf.frame, validate_frame(df, params).frame)
    assert pf.warnings == ()


# the CLI shows the warnings: `validate` all of them (and in its JSON), every analysis command the first few
def test_the_cli_shows_portfolio_warnings(tmp_path, capsys):
    import json

    from api.cli import main

    df = _frame(6).astype(object)
    df["age_years"] = 22
    df["volume_m3_per_ha"] = 0
    f = tmp_path / "zeros.csv"
    df.to_csv(f, index=False)
    assert main(["validate", str(f)]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 6 and "column 'volume_m3_per_ha'" in err and str(f) in err
    assert main(["validate", str(f), "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["valid"] and [w["row"] for w in got["warnings"]] == [1, 2, 3, 4, 5, 6]
    assert main(["accounts", "-p", str(f), "--level", "county"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: ") == 4 and "... and 3 more; run `carbon-risk validate" in err
