"""The Excel workbook writer (finance_engine.reports.stress_report.write_workbook)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from openpyxl import load_workbook

from finance_engine.reports.stress_report import write_workbook


def test_workbook_cells_read_back_as_written(tmp_path):
    df = pd.DataFrame({
        "county": ["龙泉市", "莲都区", None],
        "paths": np.array([1, 2, 3], dtype=np.int64),
        "flag": [True, False, True],
        "loss_tco2e": [1.5, np.nan, 2.25],
        "ltv": [np.inf, -np.inf, 0.5],
        "meta": [{"a": 1}, [1, 2], "text"],
    })
    long_name = "a_sheet_name_longer_than_thirty_one_characters"
    p = write_workbook(tmp_path / "w.xlsx", {"table": df, long_name: df.head(1)})
    wb = load_workbook(p, read_only=True)
    assert wb.sheetnames == ["table", long_name[:31]]
    rows = [list(r) for r in wb["table"].iter_rows(values_only=True)]
    assert rows[0] == list(df.columns)
    # numbers stay numbers; NaN an empty cell; an infinity its text (Excel holds no infinity); objects their text
    assert rows[1] == ["龙泉市", 1, True, 1.5, "inf", "{'a': 1}"]
    assert rows[2] == ["莲都区", 2, False, None, "-inf", "[1, 2]"]
    assert rows[3] == [None, 3, True, 2.25, 0.5, "text"]
    assert isinstance(rows[1][1], int) and isinstance(rows[3][3], float)


def test_workbook_of_an_empty_table_has_its_header(tmp_path):
    p = write_workbook(tmp_path / "e.xlsx", {"empty": pd.DataFrame(columns=["a", "b"])})
    assert [list(r) for r in load_workbook(p)["empty"].iter_rows(values_only=True)] == [["a", "b"]]


def test_nullable_columns_and_clashing_sheet_names(tmp_path):
    """pandas' nullable integers and booleans with missing values, and two names alike in their first 31 characters
    (the old writer took both; xlsxwriter refuses a repeated name)."""
    df = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64"), "b": pd.array([True, None, False], dtype="boolean"),
                       "f": pd.array([1.5, None, 2.0], dtype="Float64")})
    name = "x" * 31
    p = write_workbook(tmp_path / "n.xlsx", {name + "_a": df, name + "_b": df, "X" * 31: df})
    wb = load_workbook(p, read_only=True)
    assert wb.sheetnames == [name, "x" * 29 + "~2", "X" * 29 + "~3"]
    assert [list(r) for r in wb[name].iter_rows(values_only=True)] == [
        ["n", "b", "f"], [1, True, 1.5], [None, None, None], [3, False, 2.0]]
