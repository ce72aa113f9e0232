"""Parcels (小班, forest sub-compartments) and portfolios of them.

A portfolio is read from CSV, Parquet, Excel (xlsx) or GeoJSON through one validator, which reports
*every* bad row at once (file, row, column, value, reason). A validated :class:`Portfolio` holds the
parcels in a canonical order (trees before bamboo, then by ``parcel_id``), so results never depend on
the row order of the input file, plus structure-of-arrays columns for the vectorised maths.

Columns
-------
Required: ``parcel_id``, ``province``, ``city``, ``county``, ``township``, ``village``, ``latitude``,
``longitude``, ``area_ha``, ``species_group``, ``age_years``, ``site_class``.
Optional: ``volume_m3_per_ha`` (measured stock; derived from the growth curve when absent),
``bamboo_carbon_tc_per_ha`` (measured bamboo stand carbon), ``origin`` (plantation / natural, default
plantation), ``elevation_m`` (default 300), ``fire_protection`` and ``pest_control`` (none / basic /
enhanced, default basic), ``project_id`` (default empty), ``rotation_age_years`` (trees: clear-fell
and replant at this age; empty: never clear-felled).
Species may be given by id (``chinese_fir``), Chinese name (``杉木``) or any alias in the parameter file.
``site_class`` is a class I-V, a whole number 1-5, or a site index of ``SITE_INDEX_MIN_M``-``SITE_INDEX_MAX_M`` m
(6-40; a fraction such as 2.5 is refused, not read as a 2.5 m site index).

Workbooks
---------
An xlsx file's first sheet is read, unless it holds none of the required columns (a title or read-me sheet)
and exactly one other sheet holds them all: that sheet is read instead, with a warning (:func:`read_xlsx`). In a
workbook of several sheets every problem names the sheet read; a sheet without the columns is reported with the
workbook's other sheets, and which of them hold every column.

Warnings
--------
What the validator accepts but the user should look at is in :attr:`Portfolio.warnings`, as :class:`Problem`
objects (file, row, column, value, reason) like the errors: a measured ``volume_m3_per_ha`` of 0 on an established
stand (read as bare land), and the sheet read from a workbook when it is not the first.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from models.parameters import SITE_CLASSES, ModelParameters

LEVELS: tuple[str, ...] = ("province", "city", "county", "township", "village")
REQUIRED_COLUMNS: tuple[str, ...] = (
    "parcel_id",
    *LEVELS,
    "latitude",
    "longitude",
    "area_ha",
    "species_group",
    "age_years",
    "site_class",
)
OPTIONAL_COLUMNS: dict[str, Any] = {
    "volume_m3_per_ha": np.nan,
    "bamboo_carbon_tc_per_ha": np.nan,
    "origin": "plantation",
    "elevation_m": 300.0,
    "fire_protection": "basic",
    "pest_control": "basic",
    "project_id": "",
    "rotation_age_years": np.nan,
}
MANAGEMENT_LEVELS: tuple[str, ...] = ("none", "basic", "enhanced")
ORIGINS: dict[str, str] = {
    "plantation": "plantation",
    "planted": "plantation",
    "人工": "plantation",
    "人工林": "plantation",
    "natural": "natural",
    "天然": "natural",
    "天然林": "natural",
}
_MANAGEMENT_ALIASES = {"none": "none", "无": "none", "basic": "basic", "一般": "basic", "普通": "basic",
                       "enhanced": "enhanced", "加强": "enhanced", "重点": "enhanced"}
_ROMAN = {"I": 0, "II": 1, "III": 2, "IV": 3, "V": 4, "1": 0, "2": 1, "3": 2, "4": 3, "5": 4,
          "Ⅰ": 0, "Ⅱ": 1, "Ⅲ": 2, "Ⅳ": 3, "Ⅴ": 4}
# Site index (dominant height in m at base age 20) -> site class. Thresholds are an assumption
# (typical Chinese fir site-index tables run 8-22 m); calibrate per species when data allow.
SITE_INDEX_THRESHOLDS_M: tuple[float, ...] = (18.0, 16.0, 14.0, 12.0)
# The plausible range of a site index (m at base age 20). The floor is an assumption: the reference sheet
# (shared/reference/domain_parameters.md §2) gives no site-index range, only the height model's form; the typical
# Chinese fir site-index tables the thresholds above assume run 8-22 m, and the poorest index classes of the
# southern pine and broadleaf tables reach about 6 m (memory). A number below 6 is no stand's dominant height at
# 20 years but a mistyped class (2.5, 0.5), which would otherwise be read silently as class V. The ceiling (40 m)
# is that of versions before the floor.
SITE_INDEX_MIN_M = 6.0
SITE_INDEX_MAX_M = 40.0
# China's mainland bounding box (degrees); a coarse plausibility check, not a border test.
CHINA_LAT = (18.0, 53.6)
CHINA_LON = (73.5, 135.1)
MAX_REPORTED_PROBLEMS = 10_000
# Column order of a validated portfolio's frame.
_CANONICAL_COLUMNS: tuple[str, ...] = (
    "parcel_id", *LEVELS, "latitude", "longitude", "area_ha", "species_group", "age_years", "site_class",
    "volume_m3_per_ha", "bamboo_carbon_tc_per_ha", "origin", "elevation_m", "fire_protection",
    "pest_control", "project_id", "rotation_age_years")


@dataclass(frozen=True)
class Problem:
    """One bad value: where it is and why it is wrong. ``row`` counts the file's data rows from 1, blank rows
    included (a CSV's line number less the header's; an Excel sheet's row number less one)."""

    file: str
    row: int | None
    column: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            # a data row, which a spreadsheet shows one row lower (under the header)
            where += f", data row {self.row} (row {self.row + 1} counting the header)"
        if self.column is not None:
            where += f", column {self.column!r}"
        val = "" if self.value is None else f" (value {self.value!r})"
        return f"{where}{val}: {self.reason}"

    def as_dict(self) -> dict[str, Any]:
        v = self.value
        if isinstance(v, float) and not math.isfinite(v):
            v = str(v)
        return {"file": self.file, "row": self.row, "column": self.column, "value": v, "reason": self.reason}


class PortfolioError(ValueError):
    """A portfolio could not be read or has invalid rows. ``problems`` lists every one."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        head = f"{len(problems)} problem(s) in portfolio"
        shown = "\n".join(f"  {p}" for p in problems[:200])
        more = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        super().__init__(f"{head}:\n{shown}{more}")


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------
def _with_raw_header(df: pd.DataFrame, header: pd.DataFrame) -> pd.DataFrame:
    """Restore the file's own column names (pandas renames a repeated ``x`` to ``x.1``), so that the
    validator can report a repeated column instead of silently ignoring its second copy."""
    if len(header) == 1 and header.shape[1] == df.shape[1]:
        df.columns = ["" if pd.isna(v) else str(v) for v in header.iloc[0].tolist()]
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = raw.decode("gb18030")
        except UnicodeDecodeError:
            raise PortfolioError([Problem(str(path), None, None, None,
                                          "file is neither UTF-8 nor GB18030 text; save it as CSV UTF-8")])
    from io import StringIO

    # blank lines before the header are not the header (they were skipped before blank lines were kept)
    text = re.sub(r"\A(?:[ \t]*\r?\n)+", "", text)
    try:
        # blank lines kept (the validator drops blank rows), so that row numbers count from the header
        df = pd.read_csv(StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True,
                         skip_blank_lines=False)
        return _with_raw_header(df, pd.read_csv(StringIO(text), header=None, nrows=1, dtype=str,
                                                keep_default_na=False, skipinitialspace=True))
    except pd.errors.ParserError as exc:
        raise PortfolioError([Problem(str(path), None, None, None, f"not a valid CSV file: {exc}")]) from exc
    except pd.errors.EmptyDataError:
        raise PortfolioError([Problem(str(path), None, None, None, "file is empty")])


def _read_geojson(path: Path) -> pd.DataFrame:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PortfolioError([Problem(str(path), None, None, None, f"not valid GeoJSON: {exc}")]) from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise PortfolioError([Problem(str(path), None, None, None, "GeoJSON must be a FeatureCollection")])
    rows: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for i, feat in enumerate(doc["features"], start=1):
        props = dict((feat or {}).get("properties") or {})
        geom = (feat or {}).get("geometry")
        try:
            lon, lat = _geometry_point(geom)
            props.setdefault("longitude", lon)
            props.setdefault("latitude", lat)
        except ValueError as exc:
            if "latitude" not in props or "longitude" not in props:
                problems.append(Problem(str(path), i, "geometry", None, str(exc)))
        rows.append(props)
    if problems:
        raise PortfolioError(problems)
    return pd.DataFrame(rows)


def _ring_centroid(ring: list) -> tuple[float, float, float]:
    """Area-weighted centroid of a linear ring (shoelace). Returns (x, y, signed area)."""
    pts = np.asarray(ring, dtype=float)[:, :2]
    x, y = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2.0
    if abs(a) < 1e-15:
        return float(x.mean()), float(y.mean()), 0.0
    cx = ((x + x1) * cross).sum() / (6 * a)
    cy = ((y + y1) * cross).sum() / (6 * a)
    return float(cx), float(cy), float(a)


def _geometry_point(geom: dict | None) -> tuple[float, float]:
    if not geom or "type" not in geom:
        raise ValueError("feature has no geometry and no latitude/longitude properties")
    t, coords = geom["type"], geom.get("coordinates")
    try:
        if t == "Point":
            return float(coords[0]), float(coords[1])
        if t == "Polygon":
            cx, cy, _ = _polygon_centroid(coords)
            return cx, cy
        if t == "MultiPolygon":
            parts = [_polygon_centroid(p) for p in coords]
            w = np.array([abs(a) for _, _, a in parts])
            if w.sum() == 0:
                return float(np.mean([p[0] for p in parts])), float(np.mean([p[1] for p in parts]))
            return float(np.dot(w, [p[0] for p in parts]) / w.sum()), float(np.dot(w, [p[1] for p in parts]) / w.sum())
    except (TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"malformed {t} coordinates") from exc
    raise ValueError(f"geometry type {t!r} is not supported (use Point, Polygon or MultiPolygon)")


def _polygon_centroid(rings: list) -> tuple[float, float, float]:
    """Centroid of a polygon with holes: outer ring minus inner rings."""
    parts = [_ring_centroid(r) for r in rings]
    outer = parts[0]
    sign = 1.0 if outer[2] >= 0 else -1.0
    area = outer[2] * sign
    mx, my = outer[0] * area, outer[1] * area
    for cx, cy, a in parts[1:]:
        a = abs(a)
        area -= a
        mx -= cx * a
        my -= cy * a
    if area <= 0:
        return outer[0], outer[1], outer[2]
    return mx / area, my / area, area


def _header_names(header: pd.DataFrame) -> set[str]:
    """A sheet's header (its first row, read with ``header=None``) as the validator reads column names."""
    if len(header) == 0:
        return set()
    return {str(v).strip().lstrip("\ufeff") for v in header.iloc[0].tolist() if not pd.isna(v)}


def read_xlsx(path: str | Path, nrows: int | None = None) -> pd.DataFrame:
    """The parcel table of an xlsx workbook (no validation), at most ``nrows`` data rows deep.

    The first sheet is read, as before, unless it holds none of the required columns (a title, read-me or
    summary sheet) and exactly one other sheet holds them all: that sheet is then read, and a note says so
    (:attr:`Portfolio.warnings`). A first sheet with some of the columns is the table meant, and is read (its
    missing columns are reported). Which sheet was read and the workbook's sheets travel in the frame's
    ``attrs`` (``excel_sheet``, ``excel_sheets``, ``excel_complete_sheets``: the sheets other than the one read
    whose header holds every required column), so that :func:`validate_frame` names them in its problems.
    """
    required = set(REQUIRED_COLUMNS)
    with pd.ExcelFile(path, engine="openpyxl") as xl:
        names = [str(n) for n in xl.sheet_names]
        headers = {names[0]: pd.read_excel(xl, sheet_name=xl.sheet_names[0], header=None, nrows=1, dtype=object)}
        if len(names) > 1:  # only a workbook of several sheets reads its other headers
            for raw_name, name in zip(xl.sheet_names[1:], names[1:]):
                try:
                    headers[name] = pd.read_excel(xl, sheet_name=raw_name, header=None, nrows=1, dtype=object)
                except Exception:  # noqa: BLE001 - a sheet that is no table (a chart sheet): no header
                    headers[name] = pd.DataFrame()
        complete = [n for n in names[1:] if required <= _header_names(headers[n])]
        chosen = names[0]
        note = None
        if not (_header_names(headers[names[0]]) & required) and len(complete) == 1:
            chosen = complete[0]
            others = [n for n in names if n != chosen]
            note = (f"read sheet {chosen!r}, the workbook's only sheet with the portfolio's columns: the first sheet "
                    f"{names[0]!r} has none of them (sheets not read: {', '.join(repr(n) for n in others)})")
        raw_chosen = xl.sheet_names[names.index(chosen)]
        df = _with_raw_header(pd.read_excel(xl, sheet_name=raw_chosen, dtype=object, nrows=nrows), headers[chosen])
    df.attrs["excel_sheet"] = chosen
    df.attrs["excel_sheets"] = names
    df.attrs["excel_complete_sheets"] = [n for n in complete if n != chosen]
    if note:
        df.attrs["excel_note"] = note
    return df


def _sheet_source(df: pd.DataFrame, source: str) -> str:
    """``source`` naming the sheet read when the frame came from a workbook of several sheets."""
    sheets = df.attrs.get("excel_sheets") or []
    return f"{source} (sheet {df.attrs['excel_sheet']!r})" if len(sheets) > 1 else source


def _missing_columns_context(df: pd.DataFrame, source: str) -> list[Problem]:
    """For a workbook's sheet without the required columns: which sheet was read and what the others hold."""
    sheets = df.attrs.get("excel_sheets") or []
    if not sheets:
        return []
    read = df.attrs["excel_sheet"]
    others = [n for n in sheets if n != read]
    complete = df.attrs.get("excel_complete_sheets") or []
    if not others:  # the sheet is named only where it has none of the columns: a title row above the header?
        if set(df.columns) & set(REQUIRED_COLUMNS):
            return []
        return [Problem(source, None, None, None, f"sheet {read!r}, the workbook's only sheet, has none of the "
                                                  f"required columns: the header must be the sheet's first row")]
    where = "the workbook's first sheet" if read == sheets[0] else "the sheet chosen"
    head = f"sheet {read!r} ({where}) was read and lacks required columns (the header must be its first row)"
    listed = ", ".join(repr(n) for n in others)
    if len(complete) == 1:
        tail = (f"; sheet {complete[0]!r} has every required column: make it the first sheet (or delete the others) "
                f"to read it. Other sheets: {listed}")
    elif complete:
        tail = (f"; sheets {', '.join(repr(n) for n in complete)} each have every required column: make the one "
                f"to read the first sheet. Other sheets: {listed}")
    else:
        tail = f"; no other sheet has them all either (other sheets: {listed})"
    return [Problem(source, None, None, None, head + tail)]


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a portfolio file into a raw DataFrame (no validation).

    Supports ``.csv`` (UTF-8, UTF-8 with BOM, or GB18030 as saved by Excel), ``.parquet``,
    ``.xlsx`` and ``.geojson`` / ``.json`` (a GeoJSON FeatureCollection of points or polygons,
    whose area-weighted centroid is used).
    """
    p = Path(path)
    if not p.exists():
        raise PortfolioError([Problem(str(p), None, None, None, "file not found")])
    suffix = p.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return _read_csv(p)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".xlsx", ".xlsm"):
            return read_xlsx(p)
        if suffix in (".geojson", ".json"):
            return _read_geojson(p)
    except PortfolioError:
        raise
    except Exception as exc:  # a corrupt file of a known type: report it as bad input, not a crash
        # the file's name, not its path (a library's message may quote it: the API reads uploads from a
        # temporary path of the server's that no caller should see)
        reason = str(exc).replace(str(p), p.name).replace(str(p.resolve()), p.name)
        raise PortfolioError([Problem(str(p), None, None, None, f"cannot read {suffix} file: {reason}")]) from exc
    raise PortfolioError([Problem(str(p), None, None, None,
                                  f"unsupported file type {suffix!r}; use .csv, .parquet, .xlsx or .geojson")])


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
def _cell_text(v: Any) -> str:
    """One non-missing cell as stripped text; an integral float (Excel's ``1.0``) becomes ``"1"``."""
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def _text_column(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Stripped text of a column (object array, ``""`` for blanks) and its blank mask."""
    if isinstance(s.dtype, pd.StringDtype):
        t = s.str.strip().fillna("")
    else:
        t = s.map(_cell_text, na_action="ignore").astype(object)
        t = t.where(t.notna(), "")
    txt = t.to_numpy(dtype=object)
    return txt, txt == ""


_NAN_SPELLINGS = ("nan", "+nan", "-nan")
#: a number whose commas group thousands (1,234 or -12,345.6): the only commas a numeric cell may hold
_THOUSANDS = r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?(?:[eE][+-]?\d+)?"


def _number_column(s: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse a column to float64.

    Returns ``(value, blank, bad_reason)``: value is NaN where blank or bad; ``bad_reason`` is an
    object array with ``None`` where the cell is fine (or blank).
    """
    n = len(s)
    reason = np.full(n, None, dtype=object)
    if pd.api.types.is_bool_dtype(s):
        blank = s.isna().to_numpy()
        reason[~blank] = "not a number"
        return np.full(n, np.nan), blank, reason
    if pd.api.types.is_numeric_dtype(s):
        f = s.to_numpy(dtype=np.float64, na_value=np.nan)
        blank = np.isnan(f)
        inf = np.isinf(f)
        reason[inf] = "not a finite number"
        return np.where(inf, np.nan, f), blank, reason
    if s.dtype == object:
        is_bool = s.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
    else:
        is_bool = np.zeros(n, dtype=bool)
    if isinstance(s.dtype, pd.StringDtype):  # CSV: vectorised string kernels
        raw = s.str.strip().fillna("")
        blank = (raw == "").to_numpy(dtype=bool)
    else:
        txt, blank = _text_column(s)
        raw = pd.Series(txt, dtype=object)
    # commas only as thousands separators (1,234.5): "6,14" is a decimal comma, which stripped would read 614
    comma = raw.str.contains(",", regex=False).fillna(False).to_numpy(dtype=bool)
    grouped = np.zeros(n, dtype=bool)
    if comma.any():  # (the pattern only where there is a comma: most columns have none)
        at = np.flatnonzero(comma)
        grouped[at] = raw.iloc[at].str.fullmatch(_THOUSANDS).fillna(False).to_numpy(dtype=bool)
    cleaned = raw.str.replace(",", "", regex=False) if grouped.any() else raw
    f = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    f[is_bool] = np.nan
    f[comma & ~grouped] = np.nan
    nan = np.isnan(f) & ~blank
    spelled_nan = nan & cleaned.str.lower().isin(_NAN_SPELLINGS).to_numpy(dtype=bool)
    reason[nan & ~spelled_nan] = "not a number"
    reason[comma & ~grouped] = ("a comma that is not a thousands separator (write decimals with a point: 6.14, "
                                "and thousands as 1,234 or 1234)")
    reason[spelled_nan | np.isinf(f)] = "not a finite number"
    return np.where(np.isfinite(f), f, np.nan), blank, reason


def _site_codes(txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Site class codes 0-4 from I-V, 1-5 or a site index in metres; ``(code, bad_reason)``.

    An integral number 1-5 (``2``, ``2.0``) is a class; any other number from ``SITE_INDEX_MIN_M`` to
    ``SITE_INDEX_MAX_M`` is a site index (dominant height at base age 20), mapped by
    ``SITE_INDEX_THRESHOLDS_M``. A number below the floor that is not a whole class (``2.5``, ``0.5``) is
    refused: it is neither a class nor any stand's site index (it was read as class V before).
    """
    n = len(txt)
    reason = np.full(n, None, dtype=object)
    upper = pd.Series(txt, dtype=object).str.upper()
    code = upper.map(_ROMAN).to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    todo = np.isnan(code)
    si = pd.to_numeric(upper.where(todo, ""), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    notnum = todo & np.isnan(si)
    reason[notnum] = "site_class must be I-V (or 1-5) or a site index in metres"
    as_class = todo & np.isin(si, (1.0, 2.0, 3.0, 4.0, 5.0))
    code[as_class] = si[as_class] - 1
    is_si = todo & ~notnum & ~as_class
    accepted = (f"a class I-V (or a whole number 1-5), or a site index of {SITE_INDEX_MIN_M:g}-{SITE_INDEX_MAX_M:g} m "
                f"(dominant height at base age 20)")
    too_low = is_si & (si > 0) & (si < SITE_INDEX_MIN_M)
    reason[too_low] = (f"neither a site class nor a plausible site index (no stand is under {SITE_INDEX_MIN_M:g} m "
                       f"tall at 20 years); site_class takes {accepted}")
    outside = is_si & ~too_low & ~((si >= SITE_INDEX_MIN_M) & (si <= SITE_INDEX_MAX_M))
    reason[outside] = (f"site index must lie in [{SITE_INDEX_MIN_M:g}, {SITE_INDEX_MAX_M:g}] m (dominant height at "
                       f"base age 20), or give a class I-V (or a whole number 1-5)")
    out_of_range = too_low | outside
    ok_si = is_si & ~out_of_range
    # thresholds descend: count how many a site index falls below
    thr = np.asarray(SITE_INDEX_THRESHOLDS_M)
    code[ok_si] = (si[ok_si, None] < thr[None, :]).sum(axis=1)
    return code, reason


def _zero_volume_on_established_stand(params: ModelParameters, vol: np.ndarray, age: np.ndarray, site: np.ndarray,
                                      sp_code: np.ndarray, checkable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tree rows whose measured volume is 0 though the stand is established, and a warning for each.

    A measured volume is the stand's stock today whatever its age (models/growth.py::resolve_growth: a 0 gives no
    carbon and, as the asymptote is only rescaled by a positive measurement, regrowth from bare land on the site's
    curve, as after a clear-fell), so 0 is legitimate for a felled stand and is not refused. It is inconsistent
    with the stated age once the stand is established: here, once the site's yield curve at that age holds the
    parameter file's ``carbon.fang_min_volume_m3_per_ha`` (30 m3/ha, the volume of an "established stand" on which
    Fang's biomass functions are fitted), i.e. past age 5-12 years for Chinese fir by site class and 8-29 for the
    other tree groups (lishui.yaml's growth curves). A younger stand may hold next to nothing, and is not warned of.
    An Excel blank saved as 0 is the usual cause."""
    from models.growth import chapman_richards_volume

    n = vol.size
    reason = np.full(n, None, dtype=object)
    zero = checkable & (vol == 0.0)
    if not zero.any():
        return zero, reason
    t = params.tables
    i = np.flatnonzero(zero)
    sc, st = sp_code[i], site[i].astype(np.intp)
    curve = chapman_richards_volume(age[i], t.asymptote_m3_per_ha[sc, st], t.growth_rate_per_year[sc],
                                    t.growth_shape[sc])
    established = params.file.carbon.fang_min_volume_m3_per_ha.value
    hit = np.isfinite(curve) & (curve >= established)
    mask = np.zeros(n, dtype=bool)
    mask[i[hit]] = True
    ids = params.species_ids
    reason[i[hit]] = [
        f"a measured volume of 0 on a {a:g}-year-old {ids[c]} stand, whose site class {SITE_CLASSES[k]} yield curve "
        f"holds {v:.0f} m3/ha at that age: the stand is read as bare land (no carbon today, regrowing from 0 as if "
        f"just replanted). Leave the cell empty to use the curve's volume, or if the stand was clear-felled give its "
        f"age since replanting"
        for a, c, k, v in zip(age[i[hit]], sc[hit], st[hit], curve[hit])]
    return mask, reason


class _Problems:
    """Collects bad cells column by column; emits them as :class:`Problem` objects sorted by row."""

    def __init__(self, df: pd.DataFrame, source: str, row_numbers: np.ndarray | None = None):
        self.df, self.source = df, source
        self.row_numbers = row_numbers  # the file's data-row number of each row (blank rows dropped)
        self.parts: list[tuple[int, np.ndarray, str, np.ndarray | str]] = []

    def add(self, order: int, col: str, mask: np.ndarray, reason: np.ndarray | str) -> None:
        idx = np.flatnonzero(mask)
        if idx.size:
            self.parts.append((order, idx, col, reason[idx] if isinstance(reason, np.ndarray) else reason))

    def add_reasons(self, order: int, col: str, reason: np.ndarray) -> None:
        self.add(order, col, np.not_equal(reason, None), reason)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def problems(self) -> list[Problem]:
        idx = np.concatenate([p[1] for p in self.parts])
        order = np.concatenate([np.full(p[1].size, p[0]) for p in self.parts])
        part = np.concatenate([np.full(p[1].size, k) for k, p in enumerate(self.parts)])
        pos = np.concatenate([np.arange(p[1].size) for p in self.parts])
        sort = np.lexsort((order, idx))
        stopped = sort.size > MAX_REPORTED_PROBLEMS
        sort = sort[:MAX_REPORTED_PROBLEMS]
        out = []
        for k, j in zip(part[sort], pos[sort]):  # only over the (capped) problems, not the parcels
            order_k, rows, col, reason = self.parts[k]
            i = int(rows[j])
            value = self.df[col].iloc[i]
            value = value.item() if isinstance(value, np.generic) else value
            r = reason if isinstance(reason, str) else reason[j]
            row = int(self.row_numbers[i]) if self.row_numbers is not None else i + 1
            out.append(Problem(self.source, row, col, value, r))
        if stopped:
            out.append(Problem(self.source, None, None, None, f"stopped after {MAX_REPORTED_PROBLEMS} problems"))
        return out


def _blank_rows(df: pd.DataFrame) -> np.ndarray:
    """Rows with no value in any cell (missing, or text that is empty or only spaces)."""
    blank = np.ones(len(df), dtype=bool)
    for c in range(df.shape[1]):
        col = df.iloc[:, c]
        empty = col.isna().to_numpy(dtype=bool)
        if col.dtype == object or isinstance(col.dtype, pd.StringDtype):
            empty = empty | col.astype(str).str.strip().eq("").to_numpy(dtype=bool)
        blank &= empty
        if not blank.any():
            break
    return blank


def _tokens(name: str) -> list[str]:
    return [t for t in re.split(r"[^0-9a-z]+", name.lower()) if t]


def _one_edit(a: str, b: str) -> bool:
    """``a`` and ``b`` differ by one inserted, deleted or substituted character, or two swapped neighbours."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    i = next((k for k in range(len(short)) if short[k] != long_[k]), len(short))
    return short[i:] == long_[i + 1:]


#: the unit a renamed column must be in: a header without its unit word may hold another (an area in mu)
_RENAME_UNITS = {"area_ha": "in hectares: 15 mu = 1 ha", "elevation_m": "in metres", "age_years": "in years",
                 "volume_m3_per_ha": "in m3 per ha", "bamboo_carbon_tc_per_ha": "in tC per ha",
                 "rotation_age_years": "in years"}


def _rename_hint(known: str) -> str:
    unit = _RENAME_UNITS.get(known)
    return f"rename it {known!r}" + (f", {unit}" if unit else "")


#: words that only say what a column's number is (an id, a unit), dropped by hand-made headers
_SUFFIX_WORDS = frozenset({"id", "m", "ha", "years", "m3", "per", "tc"})


def _looks_like(column: str, known: str) -> bool:
    """Whether ``column`` reads as a misspelling of ``known``: the same words spelt with other case or
    separators (``Elevation_M``, ``volume-m3-per-ha``), one word dropped from a longer name
    (``volume_m3_ha``), the name's first word alone where the rest is an id or unit (``project``, ``projects``,
    ``elevation``), or one word of four letters or more mistyped (``pest_contrl``). A known name with a
    word changed or added (``elevation_min``, ``project_no``, ``pest_control_2023``) is a column of its own."""
    c, k = _tokens(column), _tokens(known)
    if "".join(c) == "".join(k):
        return True
    # a known name without its id or unit word, singular or plural (``project``, ``projects``, ``elevation``): a
    # bare word is taken for the known column only when what it drops is such a suffix
    if len(c) == 1 and len(k) >= 2 and c[0] in (k[0], k[0] + "s") and set(k[1:]) <= _SUFFIX_WORDS:
        return True
    if len(c) >= 2 and len(c) == len(k) - 1 and any(k[:i] + k[i + 1:] == c for i in range(len(k))):
        return True
    if len(c) == len(k):
        diff = [(x, y) for x, y in zip(c, k) if x != y]
        return len(diff) == 1 and min(len(diff[0][0]), len(diff[0][1])) >= 4 and _one_edit(*diff[0])
    return False


def _misspelt_columns(columns) -> list[tuple[str, str]]:
    """Unknown columns that read as a misspelling of a known one absent from the table (:func:`_looks_like`):
    an optional column misspelt would be ignored silently and its default used."""
    known = [*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS]
    present = set(columns)
    absent = [k for k in known if k not in present]
    out = []
    for c in columns:
        if c in known or not c:
            continue
        match = next((k for k in absent if _looks_like(c, k)), None)
        if match:
            out.append((c, match))
    return out


def validate_frame(df: pd.DataFrame, params: ModelParameters, source: str = "<table>") -> "Portfolio":
    """Validate a raw table and build a :class:`Portfolio`.

    Every problem in every row is collected before raising :class:`PortfolioError` (up to
    ``MAX_REPORTED_PROBLEMS``), sorted by row and, within a row, by column. Text cells are stripped
    of surrounding whitespace; an integral float id (Excel's ``1.0``) is read as ``"1"``. The checks
    are vectorised column operations (a 200,000-parcel table validates in about a second).
    """
    df = df.copy()
    # a workbook of several sheets: every problem names the sheet read; how the sheet was chosen is a warning
    source = _sheet_source(df, source)
    read_notes = [Problem(source, None, None, None, df.attrs["excel_note"])] if df.attrs.get("excel_note") else []
    df.columns = [str(c).strip().lstrip("\ufeff") for c in df.columns]
    if len(df) == 0 and len(df.columns) == 0:
        raise PortfolioError([Problem(source, None, None, None, "portfolio has no parcels (the table is empty)")])
    repeated = sorted({c for c in df.columns if c and list(df.columns).count(c) > 1})
    if repeated:
        raise PortfolioError([Problem(source, None, c, None, "column appears more than once") for c in repeated])
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        found = {k: c for c, k in _misspelt_columns(df.columns)}
        raise PortfolioError(_missing_columns_context(df, source)
                             + [Problem(source, None, c, None, "required column is missing"
                                        + (f" (found {found[c]!r}: {_rename_hint(c)})" if c in found else ""))
                                for c in missing])
    misspelt = _misspelt_columns(df.columns)
    if misspelt:
        raise PortfolioError([Problem(source, None, c, None, f"unknown column, read as nothing: did you mean {k!r}? "
                                      f"({_rename_hint(k)}, or give the column another name if it is your own)")
                              for c, k in misspelt])
    # rows blank in every cell (Excel's trailing formatted rows, blank lines) are not parcels; the others keep
    # their number in the file, so a problem's row is the file's data row (a CSV's line number less one)
    blank_rows = _blank_rows(df)
    row_numbers = None
    if blank_rows.any():
        row_numbers = np.flatnonzero(~blank_rows) + 1
        df = df.loc[~blank_rows]
    if len(df) == 0:
        raise PortfolioError([Problem(source, None, None, None, "portfolio has no parcels")])
    for c, default in OPTIONAL_COLUMNS.items():
        if c not in df.columns:
            df[c] = default
    df = df.reset_index(drop=True)

    tables = params.tables
    n = len(df)
    bad = _Problems(df, source, row_numbers)
    warned = _Problems(df, source, row_numbers)  # accepted, but worth the user's look: Portfolio.warnings
    out: dict[str, Any] = {}

    # identifiers and levels
    pid, pid_blank = _text_column(df["parcel_id"])
    bad.add(0, "parcel_id", pid_blank, "parcel_id is empty")
    codes, _ = pd.factorize(pd.Series(pid, dtype=object))
    first = np.full(codes.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n))
    first_row = first[codes]
    dup = ~pid_blank & (first_row < np.arange(n))
    dup_reason = np.full(n, None, dtype=object)
    dup_reason[dup] = [f"duplicate parcel_id (first seen in row {r + 1})" for r in first_row[dup]]
    bad.add(0, "parcel_id", dup, dup_reason)
    out["parcel_id"] = pid
    for k, lv in enumerate(LEVELS, start=1):
        txt, blank = _text_column(df[lv])
        bad.add(k, lv, blank, f"{lv} is empty")
        out[lv] = txt
    # "/" joins the levels into group labels (province/city/...), as the accounts name groups: a name holding one
    # can make two groups share a label (county "A/B" and township "C" against county "A" and township "B/C").
    # Only such a clash is refused, in every name with a "/" of the groups that share the label: a "/" that no other
    # group's label repeats is kept (portfolios stored before this check stay valid)
    slash = {lv: pd.Series(out[lv]).str.contains("/", regex=False).to_numpy() for lv in LEVELS}
    if any(m.any() for m in slash.values()):
        flagged = {lv: np.zeros(n, dtype=bool) for lv in LEVELS}
        labels = None
        for k, lv in enumerate(LEVELS, start=1):
            labels = out[lv] if labels is None else labels + "/" + out[lv]
            groups = pd.DataFrame({"label": labels, **{c: out[c] for c in LEVELS[:k]}}).drop_duplicates()
            shared = groups.loc[groups["label"].duplicated(keep=False), "label"].to_numpy()
            if shared.size:
                clash = np.isin(labels, shared)
                for up in LEVELS[:k]:
                    flagged[up] |= clash & slash[up]
        for k, lv in enumerate(LEVELS, start=1):
            bad.add(k, lv, flagged[lv], f"{lv} contains '/', which separates the account levels, and so two groups "
                                        f"share one label: use another character")

    # numbers
    def number(order: int, col: str, lo: float | None, hi: float | None, *, required: bool,
               lo_open: bool = False, reason: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        f, blank, why = _number_column(df[col])
        bad.add_reasons(order, col, why)
        if required:
            bad.add(order, col, blank, f"{col} is empty")
        fin = np.isfinite(f)
        outside = np.zeros(n, dtype=bool)
        if lo is not None:
            outside |= fin & ((f <= lo) if lo_open else (f < lo))
        if hi is not None:
            outside |= fin & (f > hi)
        bad.add(order, col, outside, reason or f"{col} must lie in {'(' if lo_open else '['}{lo}, {hi}]")
        ok = fin & ~outside
        return np.where(ok, f, np.nan), ok

    out["latitude"], _ = number(6, "latitude", CHINA_LAT[0], CHINA_LAT[1], required=True,
                                reason=f"latitude outside China ({CHINA_LAT[0]}..{CHINA_LAT[1]} degrees N)")
    out["longitude"], _ = number(7, "longitude", CHINA_LON[0], CHINA_LON[1], required=True,
                                 reason=f"longitude outside China ({CHINA_LON[0]}..{CHINA_LON[1]} degrees E)")
    out["area_ha"], _ = number(8, "area_ha", 0.0, 1e6, required=True, lo_open=True,
                               reason="area_ha must be positive (<= 1e6 ha)")

    # species
    sp_txt, sp_blank = _text_column(df["species_group"])
    bad.add(9, "species_group", sp_blank, "species_group is empty")
    sid = pd.Series(sp_txt, dtype=object).str.lower().map(params.species_aliases).to_numpy(dtype=object)
    sp_known = pd.notna(sid)
    bad.add(9, "species_group", ~sp_blank & ~sp_known,
            f"unknown species group; known: {', '.join(params.species_ids)} (or their Chinese names)")
    sp_code = np.zeros(n, dtype=np.intp)
    sp_code[sp_known] = pd.Series(sid[sp_known], dtype=object).map(params.species_index).to_numpy(dtype=np.intp)
    out["species_group"] = np.where(sp_known, sid, None)
    is_bamboo = sp_known & tables.is_bamboo[sp_code]
    is_tree = sp_known & ~tables.is_bamboo[sp_code]

    age, age_ok = number(10, "age_years", 0.0, None, required=True, reason="age_years must be >= 0")
    max_age = tables.max_age_years[sp_code]
    too_old = age_ok & sp_known & (age > max_age)
    old_reason = np.full(n, None, dtype=object)
    old_reason[too_old] = [f"age {a:g} is beyond the {s} growth curve's range (0-{m:g} years)"
                           for a, s, m in zip(age[too_old], sid[too_old], max_age[too_old])]
    bad.add(10, "age_years", too_old, old_reason)
    out["age_years"] = np.where(too_old, np.nan, age)

    sc_txt, sc_blank = _text_column(df["site_class"])
    bad.add(11, "site_class", sc_blank, "site_class is empty")
    site, site_reason = _site_codes(sc_txt)
    site_reason[sc_blank] = None
    bad.add_reasons(11, "site_class", site_reason)
    out["site_class"] = np.where(np.isnan(site), 0, site).astype(np.int64)

    vol, vol_ok = number(12, "volume_m3_per_ha", 0.0, 3000.0, required=False,
                         reason="volume_m3_per_ha must lie in [0, 3000]")
    bad.add(12, "volume_m3_per_ha", vol_ok & is_bamboo,
            "bamboo is modelled per hectare of carbon: use bamboo_carbon_tc_per_ha")
    out["volume_m3_per_ha"] = np.where(is_bamboo, np.nan, vol)
    warned.add(12, "volume_m3_per_ha", *_zero_volume_on_established_stand(
        params, vol, age, site, sp_code, is_tree & ~np.isnan(site) & np.isfinite(age)))
    bc, bc_ok = number(13, "bamboo_carbon_tc_per_ha", 0.0, 300.0, required=False,
                       reason="bamboo_carbon_tc_per_ha must lie in [0, 300]")
    bad.add(13, "bamboo_carbon_tc_per_ha", bc_ok & is_tree, "only bamboo parcels take bamboo_carbon_tc_per_ha")
    out["bamboo_carbon_tc_per_ha"] = np.where(is_tree, np.nan, bc)
    elev, elev_ok = number(14, "elevation_m", -200.0, 6000.0, required=False,
                           reason="elevation_m must lie in [-200, 6000]")
    out["elevation_m"] = np.where(elev_ok, elev, OPTIONAL_COLUMNS["elevation_m"])

    # categories
    def category(order: int, col: str, mapping: dict[str, str], reason: str) -> np.ndarray:
        txt, blank = _text_column(df[col])
        m = pd.Series(txt, dtype=object).str.lower().map(mapping).to_numpy(dtype=object)
        unknown = ~blank & pd.isna(m)
        bad.add(order, col, unknown, reason)
        return np.where(blank, OPTIONAL_COLUMNS[col], m)

    out["origin"] = category(15, "origin", ORIGINS, "origin must be plantation or natural (人工 / 天然)")
    out["fire_protection"] = category(16, "fire_protection", _MANAGEMENT_ALIASES,
                                      "fire_protection must be one of none, basic, enhanced")
    out["pest_control"] = category(17, "pest_control", _MANAGEMENT_ALIASES,
                                   "pest_control must be one of none, basic, enhanced")
    out["project_id"], _ = _text_column(df["project_id"])
    rot, rot_ok = number(19, "rotation_age_years", 0.0, 500.0, required=False, lo_open=True,
                         reason="rotation_age_years must lie in (0, 500]")
    bad.add(19, "rotation_age_years", rot_ok & is_bamboo,
            "bamboo is harvested selectively every year: rotation_age_years applies to trees only")
    out["rotation_age_years"] = np.where(is_bamboo, np.nan, rot)

    if bad:
        raise PortfolioError(bad.problems())
    notes = [*read_notes, *(warned.problems() if warned else [])]
    return Portfolio.from_columns({k: out[k] for k in _CANONICAL_COLUMNS}, params, source=source, warnings=notes)


def load_portfolio(path: str | Path, params: ModelParameters) -> "Portfolio":
    """Read and validate a portfolio file. Raises :class:`PortfolioError` listing every bad row."""
    return validate_frame(read_table(path), params, source=str(path))


# --------------------------------------------------------------------------------------------
# The validated portfolio
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Portfolio:
    """Validated parcels in canonical order, as columns.

    The first ``n_tree`` parcels are trees and the rest bamboo; within each kind parcels are sorted
    by ``parcel_id``. Arrays are read-only.
    """

    frame: pd.DataFrame
    species_code: np.ndarray
    site_code: np.ndarray
    n_tree: int
    source: str = "<table>"
    parameter_sha256: str = ""
    #: what validation noticed but accepted (:class:`Problem` objects: file, row, column, value, reason), for the
    #: caller to show: a measured volume of 0 on an established stand, the workbook sheet read. Empty for a
    #: portfolio built by :meth:`from_columns`, :meth:`select` or :meth:`subset`.
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_columns(cls, cols: dict[str, list[Any]], params: ModelParameters, source: str = "<table>",
                     warnings: Iterable[Problem] = ()) -> "Portfolio":
        frame = pd.DataFrame(cols)
        species_code = frame["species_group"].map(params.species_index).to_numpy(np.int16)
        is_bamboo = params.tables.is_bamboo[species_code]
        frame["site_class"] = np.asarray(SITE_CLASSES, dtype=object)[np.asarray(frame["site_class"], dtype=np.intp)]
        frame["_kind"] = np.where(is_bamboo, 1, 0)
        frame = frame.sort_values(["_kind", "parcel_id"], kind="mergesort").reset_index(drop=True)
        n_tree = int((frame["_kind"] == 0).sum())
        frame = frame.drop(columns="_kind")
        if "rotation_age_years" not in frame.columns:
            frame["rotation_age_years"] = np.nan
        for c in ("latitude", "longitude", "area_ha", "age_years", "volume_m3_per_ha",
                  "bamboo_carbon_tc_per_ha", "elevation_m", "rotation_age_years"):
            frame[c] = frame[c].astype(np.float64)
        species_code = frame["species_group"].map(params.species_index).to_numpy(np.int16)
        site_code = frame["site_class"].map({s: i for i, s in enumerate(SITE_CLASSES)}).to_numpy(np.int8)
        for a in (species_code, site_code):
            a.setflags(write=False)
        return cls(frame=frame, species_code=species_code, site_code=site_code, n_tree=n_tree,
                   source=source, parameter_sha256=params.sha256, warnings=tuple(warnings))

    # ---- basic columns --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def n_parcels(self) -> int:
        return len(self.frame)

    def _array(self, col: str, dtype=np.float64) -> np.ndarray:
        key = ("col", col)
        if key not in self._cache:
            a = self.frame[col].to_numpy(dtype)
            a.setflags(write=False)
            self._cache[key] = a
        return self._cache[key]

    @property
    def parcel_id(self) -> np.ndarray:
        return self._array("parcel_id", object)

    @property
    def area_ha(self) -> np.ndarray:
        return self._array("area_ha")

    @property
    def age_years(self) -> np.ndarray:
        return self._array("age_years")

    @property
    def latitude(self) -> np.ndarray:
        return self._array("latitude")

    @property
    def longitude(self) -> np.ndarray:
        return self._array("longitude")

    @property
    def elevation_m(self) -> np.ndarray:
        return self._array("elevation_m")

    @property
    def volume_m3_per_ha(self) -> np.ndarray:
        return self._array("volume_m3_per_ha")

    @property
    def bamboo_carbon_tc_per_ha(self) -> np.ndarray:
        return self._array("bamboo_carbon_tc_per_ha")

    @property
    def rotation_age_years(self) -> np.ndarray:
        """Clear-fell age of each tree parcel (NaN: never clear-felled, e.g. a carbon project)."""
        return self._array("rotation_age_years")

    @cached_property
    def fire_protection_code(self) -> np.ndarray:
        a = self.frame["fire_protection"].map({m: i for i, m in enumerate(MANAGEMENT_LEVELS)}).to_numpy(np.int8)
        a.setflags(write=False)
        return a

    @cached_property
    def pest_control_code(self) -> np.ndarray:
        a = self.frame["pest_control"].map({m: i for i, m in enumerate(MANAGEMENT_LEVELS)}).to_numpy(np.int8)
        a.setflags(write=False)
        return a

    @cached_property
    def is_natural(self) -> np.ndarray:
        a = (self.frame["origin"] == "natural").to_numpy()
        a.setflags(write=False)
        return a

    @cached_property
    def content_hash(self) -> bytes:
        """A hash of the table's content (pandas' row hashes, in row order), computed once: the
        portfolio is not changed after it is built (a change makes a new one)."""
        return pd.util.hash_pandas_object(self.frame, index=False).values.tobytes()

    @cached_property
    def keys(self) -> np.ndarray:
        """Stable 64-bit random-stream keys of the parcels (see :mod:`models.rng`)."""
        from models.rng import parcel_keys

        k = parcel_keys(self.parcel_id)
        k.setflags(write=False)
        return k

    def level_codes(self, level: str) -> tuple[np.ndarray, np.ndarray]:
        """Integer group code per parcel and the sorted group labels for an account level.

        A group is the full path from province down to ``level`` (two villages with the same name in
        different townships are different groups). ``level`` may also be ``"portfolio"``,
        ``"parcel"``, ``"project_id"`` or ``"species_group"``.
        """
        key = ("level", level)
        if key in self._cache:
            return self._cache[key]
        if level == "portfolio":
            codes = np.zeros(self.n_parcels, dtype=np.int64)
            labels = np.array(["portfolio"], dtype=object)
        elif level == "parcel":
            codes = np.arange(self.n_parcels, dtype=np.int64)
            labels = self.parcel_id.copy()
        elif level in ("project_id", "species_group", "site_class"):
            labels_s, codes = np.unique(self.frame[level].to_numpy(str), return_inverse=True)
            labels = labels_s.astype(object)
        elif level in LEVELS:
            depth = LEVELS.index(level) + 1
            joined = self.frame[list(LEVELS[:depth])].agg("/".join, axis=1).to_numpy(str)
            labels_s, codes = np.unique(joined, return_inverse=True)
            labels = labels_s.astype(object)
        else:
            raise ValueError(f"unknown level {level!r}; use portfolio, {', '.join(LEVELS)}, parcel, "
                             "project_id or species_group")
        codes = codes.astype(np.int64)
        codes.setflags(write=False)
        self._cache[key] = (codes, labels)
        return codes, labels

    def select(self, mask: np.ndarray, **set_columns: Any) -> "Portfolio":
        """The parcels under a boolean mask (canonical order kept), optionally with columns set.

        Cheaper than :meth:`subset` (no re-validation or re-sorting): only columns that do not
        affect the canonical order (``project_id``, management levels, ...) may be set.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_parcels,):
            raise ValueError("mask must have one entry per parcel")
        if not mask.any():
            raise ValueError("the selection has no parcels")
        bad = set(set_columns) & {"parcel_id", "species_group", "site_class"}
        if bad:
            raise ValueError(f"select() cannot change {sorted(bad)}; use subset()")
        frame = self.frame[mask].reset_index(drop=True)
        for col, value in set_columns.items():
            frame[col] = value
        sc = self.species_code[mask].copy()
        site = self.site_code[mask].copy()
        for a in (sc, site):
            a.setflags(write=False)
        return Portfolio(frame=frame, species_code=sc, site_code=site, n_tree=int(mask[:self.n_tree].sum()),
                         source=self.source, parameter_sha256=self.parameter_sha256)

    def subset(self, mask_or_ids: np.ndarray | Iterable[str], params: ModelParameters) -> "Portfolio":
        """A new portfolio of some parcels (boolean mask over canonical order, or parcel ids)."""
        if isinstance(mask_or_ids, np.ndarray) and mask_or_ids.dtype == bool:
            frame = self.frame[mask_or_ids]
        else:
            ids = set(str(x) for x in mask_or_ids)
            unknown = ids - set(self.parcel_id)
            if unknown:
                raise ValueError(f"parcels not in the portfolio: {sorted(unknown)[:20]}")
            frame = self.frame[self.frame["parcel_id"].isin(ids)]
        if len(frame) == 0:
            raise ValueError("the subset has no parcels")
        cols = {c: frame[c].tolist() for c in frame.columns}
        cols["site_class"] = [SITE_CLASSES.index(s) for s in cols["site_class"]]
        return Portfolio.from_columns(cols, params, source=self.source)

    def to_frame(self) -> pd.DataFrame:
        """The canonical table, as it would be written back to a file."""
        return self.frame.copy()
