"""Portfolio readers and the all-rows validator."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.portfolio import (
    MAX_REPORTED_PROBLEMS,
    REQUIRED_COLUMNS,
    PortfolioError,
    Problem,
    load_portfolio,
    read_table,
    validate_frame,
)
from tests.conftest import make_frame


def _frame(n: int = 12, seed: int = 3) -> pd.DataFrame:
    df = make_frame(n, seed=seed)
    df["latitude"] = df["latitude"].round(5)
    df["longitude"] = df["longitude"].round(5)
    df["area_ha"] = df["area_ha"].round(2)
    df["elevation_m"] = df["elevation_m"].round(0)
    return df


def _write_csv(df: pd.DataFrame, path, encoding: str = "utf-8") -> None:
    path.write_bytes(df.to_csv(index=False, lineterminator="\n").encode(encoding))


def _problems(call) -> list[Problem]:
    with pytest.raises(PortfolioError) as ei:
        call()
    return ei.value.problems


def _bad_csv(tmp_path, params, edit) -> tuple[str, list[Problem]]:
    df = _frame().astype(object)
    edit(df)
    path = tmp_path / "bad.csv"
    _write_csv(df, path)
    return str(path), _problems(lambda: load_portfolio(path, params))


# --------------------------------------------------------------------------------------------
# every kind of bad input gets the all-rows error: file, row, column, value, reason
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("column, value, reason", [
    ("species_group", "palm oil", "unknown species group"),
    ("area_ha", "0", "area_ha must be positive"),
    ("area_ha", "-2.5", "area_ha must be positive"),
    ("age_years", "150", "beyond the chinese_fir growth curve's range (0-100 years)"),
    ("age_years", "-1", "age_years must be >= 0"),
    ("latitude", "61.2", "latitude outside China"),
    ("longitude", "12.5", "longitude outside China"),
    ("area_ha", "abc", "not a number"),
    ("age_years", "twenty", "not a number"),
    ("elevation_m", "inf", "not a finite number"),
    ("site_class", "VII", "site_class must be I-V"),
    ("origin", "alien", "origin must be plantation or natural"),
    ("fire_protection", "max", "fire_protection must be one of none, basic, enhanced"),
    ("county", "", "county is empty"),
])
def test_each_kind_of_bad_value_is_reported_with_file_row_column_value_reason(tmp_path, params, column, value,
                                                                               reason):
    def edit(df):
        df.loc[4, "species_group"] = "chinese_fir"
        df.loc[4, column] = value

    path, probs = _bad_csv(tmp_path, params, edit)
    assert len(probs) == 1
    p = probs[0]
    assert (p.file, p.row, p.column) == (path, 5, column)
    assert p.value == value
    assert reason in p.reason


def test_duplicate_ids_name_the_first_row(tmp_path, params):
    def edit(df):
        df.loc[7, "parcel_id"] = df.loc[2, "parcel_id"]
        df.loc[9, "parcel_id"] = df.loc[2, "parcel_id"]

    path, probs = _bad_csv(tmp_path, params, edit)
    assert [(p.row, p.column) for p in probs] == [(8, "parcel_id"), (10, "parcel_id")]
    assert all("duplicate parcel_id (first seen in row 3)" == p.reason for p in probs)
    assert probs[0].value == "T00002"


def test_missing_required_columns_are_all_listed(tmp_path, params):
    df = _frame().drop(columns=["area_ha", "species_group"])
    path = tmp_path / "missing.csv"
    _write_csv(df, path)
    probs = _problems(lambda: load_portfolio(path, params))
    assert [(p.column, p.reason) for p in probs] == [("area_ha", "required column is missing"),
                                                    ("species_group", "required column is missing")]
    assert all(p.file == str(path) and p.row is None for p in probs)


def test_repeated_column_is_reported(tmp_path, params):
    path = tmp_path / "twice.csv"
    df = _frame()
    text = df.to_csv(index=False, lineterminator="\n").replace("area_ha", "age_years", 1)
    path.write_text(text, encoding="utf-8")
    probs = _problems(lambda: load_portfolio(path, params))
    assert [(p.column, p.reason) for p in probs] == [("age_years", "column appears more than once")]


def test_blank_trailing_columns_as_excel_writes_them_are_ignored(tmp_path, params):
    df = _frame()
    path = tmp_path / "trailing.csv"
    lines = df.to_csv(index=False, lineterminator="\n").splitlines()
    path.write_text("\n".join(ln + ",," for ln in lines) + "\n", encoding="utf-8")
    _write_csv(df, tmp_path / "clean.csv")
    pd.testing.assert_frame_equal(load_portfolio(path, params).frame, load_portfolio(tmp_path / "clean.csv", params).frame)


def test_every_bad_row_is_reported_in_row_order(tmp_path, params):
    def edit(df):
        df.loc[1, "species_group"] = "unobtainium"
        df.loc[3, "area_ha"] = "-1"
        df.loc[3, "latitude"] = "95"  # same row, two problems: column order within the row
        df.loc[6, "age_years"] = "x"
        df.loc[10, "longitude"] = "200"

    path, probs = _bad_csv(tmp_path, params, edit)
    assert [(p.row, p.column) for p in probs] == [
        (2, "species_group"), (4, "latitude"), (4, "area_ha"), (7, "age_years"), (11, "longitude")]
    assert {p.file for p in probs} == {path}
    assert [p.value for p in probs] == ["unobtainium", "95", "-1", "x", "200"]
    # the message lists every one of them, one per line
    with pytest.raises(PortfolioError) as ei:
        load_portfolio(path, params)
    lines = str(ei.value).splitlines()
    assert lines[0] == "5 problem(s) in portfolio:" and len(lines) == 6
    assert "data row 4 (row 5 counting the header), column 'area_ha' (value '-1'): area_ha must be positive" in lines[3]


def test_problem_as_dict_is_json_ready():
    p = Problem("f.csv", 3, "area_ha", float("nan"), "not a number")
    assert json.loads(json.dumps(p.as_dict())) == {"file": "f.csv", "row": 3, "column": "area_ha",
                                                   "value": "nan", "reason": "not a number"}


def test_problem_count_is_capped(params):
    df = make_frame(MAX_REPORTED_PROBLEMS + 50)
    df["species_group"] = "palm"
    probs = _problems(lambda: validate_frame(df, params))
    assert len(probs) == MAX_REPORTED_PROBLEMS + 1
    assert probs[-1].row is None and "stopped after" in probs[-1].reason
    assert [p.row for p in probs[:-1]] == list(range(1, MAX_REPORTED_PROBLEMS + 1))


def test_bamboo_and_tree_measurements_must_match_the_kind(params):
    df = _frame()
    df["species_group"] = ["moso_bamboo", "chinese_fir"] * 6
    df["volume_m3_per_ha"] = [50.0, np.nan] + [np.nan] * 10
    df["bamboo_carbon_tc_per_ha"] = [np.nan, 40.0] + [np.nan] * 10
    probs = _problems(lambda: validate_frame(df, params, source="m"))
    assert [(p.row, p.column) for p in probs] == [(1, "volume_m3_per_ha"), (2, "bamboo_carbon_tc_per_ha")]


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------
def _canonical(params, df):
    return validate_frame(df, params).frame


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030"])
def test_csv_encodings_read_chinese_names(tmp_path, params, encoding):
    df = _frame()
    df["species_group"] = ["杉木", "马尾松", "毛竹", "阔叶混交林"] * 3
    path = tmp_path / f"p_{encoding}.csv"
    _write_csv(df, path, encoding)
    raw = path.read_bytes()
    if encoding == "gb18030":
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")  # really not UTF-8: the reader must fall back
    pf = load_portfolio(path, params)
    assert set(pf.frame["county"]) <= {"莲都区", "龙泉市", "遂昌县"}
    assert set(pf.frame["township"]) <= {"甲镇", "乙乡"}
    assert pf.frame["species_group"].value_counts().to_dict() == {
        "chinese_fir": 3, "masson_pine": 3, "evergreen_broadleaf": 3, "moso_bamboo": 3}
    assert list(pf.frame.columns[:2]) == ["parcel_id", "province"]  # no BOM glued to the first header


def test_chinese_species_aliases_are_accepted(params):
    df = _frame(3)
    df["species_group"] = ["杉木", "马尾松", "毛竹"]
    pf = validate_frame(df, params)
    assert sorted(pf.frame["species_group"]) == ["chinese_fir", "masson_pine", "moso_bamboo"]
    assert pf.n_tree == 2


def test_undecodable_file_gets_a_clear_message(tmp_path, params):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"parcel_id,area\n\xff\xfe\xff\xff,1\n")
    probs = _problems(lambda: load_portfolio(path, params))
    assert len(probs) == 1 and "neither UTF-8 nor GB18030" in probs[0].reason and probs[0].file == str(path)


@pytest.mark.parametrize("content", [b"", b"\n\n"])
def test_empty_file(tmp_path, params, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    probs = _problems(lambda: load_portfolio(path, params))
    assert len(probs) == 1 and "empty" in probs[0].reason


def test_header_only_file(tmp_path, params):
    path = tmp_path / "header.csv"
    path.write_text(",".join(REQUIRED_COLUMNS) + "\n", encoding="utf-8")
    probs = _problems(lambda: load_portfolio(path, params))
    assert [p.reason for p in probs] == ["portfolio has no parcels"]


def test_missing_file_and_unknown_suffix(tmp_path, params):
    assert "file not found" in _problems(lambda: load_portfolio(tmp_path / "nope.csv", params))[0].reason
    odd = tmp_path / "p.docx"
    odd.write_bytes(b"x")
    assert "unsupported file type" in _problems(lambda: load_portfolio(odd, params))[0].reason


def test_parquet_and_xlsx_equal_csv(tmp_path, params):
    df = _frame()
    _write_csv(df, tmp_path / "p.csv")
    df.to_parquet(tmp_path / "p.parquet", index=False)
    df.to_excel(tmp_path / "p.xlsx", index=False, engine="openpyxl")
    ref = load_portfolio(tmp_path / "p.csv", params).frame
    for name in ("p.parquet", "p.xlsx"):
        pd.testing.assert_frame_equal(load_portfolio(tmp_path / name, params).frame, ref)


def test_a_decimal_comma_is_refused_and_thousands_separators_are_read(tmp_path, params):
    """Commas are read only as thousands separators: "6,14" (a decimal comma) stripped would read 614 ha."""
    df = _frame(4).astype({"area_ha": object, "elevation_m": object})
    df.loc[0, "area_ha"] = "6,14"
    df.loc[1, "elevation_m"] = "1,234.5"
    df.loc[2, "area_ha"] = "1.234,5"
    _write_csv(df, tmp_path / "p.csv")
    probs = _problems(lambda: load_portfolio(tmp_path / "p.csv", params))
    assert [(p.row, p.column, p.value) for p in probs] == [(1, "area_ha", "6,14"), (3, "area_ha", "1.234,5")]
    assert all("not a thousands separator" in p.reason for p in probs)
    df.loc[0, "area_ha"], df.loc[2, "area_ha"] = "1,006.5", "12"
    _write_csv(df, tmp_path / "p.csv")
    pf = load_portfolio(tmp_path / "p.csv", params).frame.set_index("parcel_id")
    assert pf.loc[df.loc[0, "parcel_id"], "area_ha"] == 1006.5
    assert pf.loc[df.loc[1, "parcel_id"], "elevation_m"] == 1234.5


def test_blank_rows_are_skipped_and_rows_keep_their_number_in_the_file(tmp_path, params):
    """Blank lines and Excel's blank (formatted) rows are not parcels; a problem's row is the file's data row."""
    df = _frame(6)
    df["area_ha"] = df["area_ha"].astype(object)
    df.loc[4, "area_ha"] = "-1"
    lines = df.to_csv(index=False, lineterminator="\n").splitlines()
    text = "\n".join(lines[:3] + ["", ",,,"] + lines[3:] + [",,,,,,", ""]) + "\n"  # blank rows after data row 2
    (tmp_path / "p.csv").write_text(text, encoding="utf-8")
    probs = _problems(lambda: load_portfolio(tmp_path / "p.csv", params))
    assert [(p.row, p.column) for p in probs] == [(7, "area_ha")]  # data row 5, two blank rows above it
    assert text.splitlines()[7].startswith(str(df.loc[4, "parcel_id"]))  # line 8 of the file: row 7 + header
    blank = pd.DataFrame([[None] * df.shape[1]] * 2, columns=df.columns)
    xl = pd.concat([df.iloc[:2], blank, df.iloc[2:], blank], ignore_index=True)
    xl.to_excel(tmp_path / "p.xlsx", index=False, engine="openpyxl")
    probs = _problems(lambda: load_portfolio(tmp_path / "p.xlsx", params))
    assert [(p.row, p.column) for p in probs] == [(7, "area_ha")]  # Excel's row 8
    df.loc[4, "area_ha"] = 3.0
    _write_csv(pd.concat([df.iloc[:2], blank, df.iloc[2:]], ignore_index=True), tmp_path / "ok.csv")
    pd.testing.assert_frame_equal(load_portfolio(tmp_path / "ok.csv", params).frame, validate_frame(df, params).frame)


def test_blank_lines_before_the_header_are_skipped(tmp_path, params):
    df = _frame(4)
    body = df.to_csv(index=False, lineterminator="\n")
    (tmp_path / "p.csv").write_bytes(("\ufeff\n  \n" + body).encode("utf-8"))
    pd.testing.assert_frame_equal(load_portfolio(tmp_path / "p.csv", params).frame, validate_frame(df, params).frame)


def test_a_misspelt_optional_column_is_refused(params):
    """An optional column misspelt would be ignored and its default used (measured volumes lost)."""
    df = _frame(4)
    df["volume_m3_ha"] = 150.0
    df["pest_contrl"] = "enhanced"
    df["owner_name"] = "village cooperative"  # a column of the user's own: kept out of the way
    probs = _problems(lambda: validate_frame(df, params))
    assert [(p.column, p.reason.split(": ")[1].split("?")[0]) for p in probs] == [
        ("volume_m3_ha", "did you mean 'volume_m3_per_ha'"), ("pest_contrl", "did you mean 'pest_control'")]
    validate_frame(df.drop(columns=["volume_m3_ha", "pest_contrl"]), params)
    # the same words with other case or separators are the known column misspelt too
    probs = _problems(lambda: validate_frame(_frame(4).rename(columns={"elevation_m": "Elevation_M"}), params))
    assert [(p.column, "'elevation_m'" in p.reason) for p in probs] == [("Elevation_M", True)]
    # a known name with a word changed or added is a column of the user's own (zonal statistics, codes, years)
    own = _frame(4).assign(elevation_min=1.0, elevation_max=2.0, project_no="7", pest_control_2023="basic",
                           subproject_id="x", origin_cn="人工")
    validate_frame(own, params)


@pytest.mark.parametrize("header, known", [("project", "project_id"), ("projects", "project_id"),
                                           ("elevation", "elevation_m"), ("Volume", "volume_m3_per_ha")])
def test_a_known_name_without_its_id_or_unit_word_is_refused(params, header, known):
    """A header that drops a known name's id or unit word (``project`` for ``project_id``) was read as a column of
    the user's own: the parcels lost their project (no pledge found) or took the default elevation."""
    df = _frame(4).drop(columns=[known], errors="ignore").assign(**{header: "P1" if known == "project_id" else 500.0})
    probs = _problems(lambda: validate_frame(df, params))
    assert [(p.column, f"did you mean {known!r}" in p.reason) for p in probs] == [(header, True)]
    # a word that is not an id or unit is a name of its own
    validate_frame(_frame(4).assign(elevation_band="high", project_phase="2"), params)


def test_a_missing_required_column_names_the_header_that_stands_for_it(params):
    probs = _problems(lambda: validate_frame(_frame(4).rename(columns={"area_ha": "area", "age_years": "Age"}), params))
    assert sorted(str(p.reason) for p in probs) == [
        "required column is missing (found 'Age': rename it 'age_years', in years)",
        "required column is missing (found 'area': rename it 'area_ha', in hectares: 15 mu = 1 ha)"]


def test_a_problem_names_the_data_row_and_the_row_a_spreadsheet_shows():
    from models.portfolio import Problem
    assert str(Problem("p.xlsx", 3, "area_ha", -1, "area_ha must be positive")) == (
        "p.xlsx, data row 3 (row 4 counting the header), column 'area_ha' (value -1): area_ha must be positive")


def test_excel_numeric_ids_and_site_index(tmp_path, params):
    df = _frame(4)
    df["parcel_id"] = [1.0, 2.0, 3.0, 10.0]  # Excel stores numbers as floats
    df["site_class"] = [18.5, 15.0, 2, 11.9]  # site index (m) or a class number 1-5
    df.to_excel(tmp_path / "num.xlsx", index=False, engine="openpyxl")
    pf = load_portfolio(tmp_path / "num.xlsx", params)
    got = dict(zip(pf.frame["parcel_id"], pf.frame["site_class"]))
    # thresholds 18/16/14/12 m: 18.5 -> I, 15 -> III, class 2 -> II, 11.9 -> V
    assert got == {"1": "I", "2": "III", "3": "II", "10": "V"}


def test_site_index_out_of_range(params):
    df = _frame(3)
    df["site_class"] = ["II", "45", "-3"]
    probs = _problems(lambda: validate_frame(df, params, source="s"))
    # (the range's floor was 0 before tests/test_portfolio_review.py's plausible site index of 6 m)
    reason = ("site index must lie in [6, 40] m (dominant height at base age 20), or give a class I-V "
              "(or a whole number 1-5)")
    assert [(p.row, p.reason) for p in probs] == [(2, reason), (3, reason)]


def test_whitespace_around_values_is_ignored(tmp_path, params):
    df = _frame()
    path = tmp_path / "clean.csv"
    _write_csv(df, path)
    padded = df.astype(str).map(lambda v: f"  {v}  ")
    padded.columns = [f" {c} " for c in df.columns]
    ppath = tmp_path / "padded.csv"
    _write_csv(padded, ppath)
    pd.testing.assert_frame_equal(load_portfolio(ppath, params).frame, load_portfolio(path, params).frame)


def _feature(props, geometry):
    return {"type": "Feature", "properties": props, "geometry": geometry}


def test_geojson_points_and_polygon_centroids(tmp_path, params):
    df = _frame(3)
    props = df.drop(columns=["latitude", "longitude"]).to_dict("records")
    square = [[[119.0, 28.0], [119.2, 28.0], [119.2, 28.2], [119.0, 28.2], [119.0, 28.0]]]
    # an L-shaped polygon: centroid of a 2x2 square minus its top-right 1x1 quarter is (5/6, 5/6)
    ell = [[[120.0, 28.0], [120.2, 28.0], [120.2, 28.1], [120.1, 28.1], [120.1, 28.2], [120.0, 28.2],
            [120.0, 28.0]]]
    doc = {"type": "FeatureCollection", "features": [
        _feature(props[0], {"type": "Point", "coordinates": [119.5, 28.3]}),
        _feature(props[1], {"type": "Polygon", "coordinates": square}),
        _feature(props[2], {"type": "Polygon", "coordinates": ell}),
    ]}
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    f = load_portfolio(path, params).frame.set_index("parcel_id")
    ids = df["parcel_id"].tolist()
    assert f.loc[ids[0], ["longitude", "latitude"]].tolist() == [119.5, 28.3]
    np.testing.assert_allclose(f.loc[ids[1], ["longitude", "latitude"]].astype(float), [119.1, 28.1], atol=1e-12)
    np.testing.assert_allclose(f.loc[ids[2], ["longitude", "latitude"]].astype(float),
                               [120.0 + 0.2 * 5 / 12, 28.0 + 0.2 * 5 / 12], atol=1e-12)


def test_geojson_feature_without_geometry_is_reported(tmp_path, params):
    props = _frame(2).drop(columns=["latitude", "longitude"]).to_dict("records")
    doc = {"type": "FeatureCollection", "features": [
        _feature(props[0], {"type": "Point", "coordinates": [119.5, 28.3]}), _feature(props[1], None)]}
    path = tmp_path / "p.geojson"
    path.write_text(json.dumps(doc), encoding="utf-8")
    probs = _problems(lambda: load_portfolio(path, params))
    assert [(p.row, p.column) for p in probs] == [(2, "geometry")]


def test_empty_feature_collection(tmp_path, params):
    path = tmp_path / "empty.geojson"
    path.write_text('{"type": "FeatureCollection", "features": []}', encoding="utf-8")
    assert "no parcels" in _problems(lambda: load_portfolio(path, params))[0].reason


def test_read_table_returns_the_raw_rows(tmp_path):
    df = _frame()
    _write_csv(df, tmp_path / "p.csv")
    raw = read_table(tmp_path / "p.csv")
    assert list(raw.columns) == list(df.columns) and len(raw) == len(df)


# --------------------------------------------------------------------------------------------
# canonical order
# --------------------------------------------------------------------------------------------
def test_row_order_does_not_matter(params):
    df = make_frame(300, seed=11)
    a = validate_frame(df, params)
    b = validate_frame(df.sample(frac=1.0, random_state=np.random.default_rng(5)), params)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    np.testing.assert_array_equal(a.species_code, b.species_code)
    np.testing.assert_array_equal(a.site_code, b.site_code)
    assert a.n_tree == b.n_tree
    # trees first, then bamboo; each part sorted by parcel id
    kinds = params.tables.is_bamboo[a.species_code]
    assert not kinds[: a.n_tree].any() and kinds[a.n_tree:].all()
    ids = a.frame["parcel_id"].tolist()
    assert ids[: a.n_tree] == sorted(ids[: a.n_tree]) and ids[a.n_tree:] == sorted(ids[a.n_tree:])


def test_defaults_for_optional_columns(params):
    df = make_frame(20).drop(columns=["elevation_m"])
    f = validate_frame(df, params).frame
    assert (f["elevation_m"] == 300.0).all() and (f["origin"] == "plantation").all()
    assert (f["fire_protection"] == "basic").all() and (f["project_id"] == "").all()
    assert f["volume_m3_per_ha"].isna().all()
