"""An upload's portfolio warnings (accepted, but likely a mistake) in its stored summary, and a workbook's parcel sheet
found behind a title sheet (models.portfolio.read_xlsx, as the CLI reads it)."""

from __future__ import annotations

import io

import pandas as pd

from tests.api.conftest import upload
from tests.api.test_api_flows import assert_problem
from tests.conftest import make_frame


def _zero_volume_frame() -> pd.DataFrame:
    df = make_frame(5, seed=5, species=["chinese_fir"]).astype(object)
    df["age_years"] = 22
    df["volume_m3_per_ha"] = [0, 0, None, None, None]  # two measured zeros on 22-year-old fir: warned of
    return df


def test_an_uploads_warnings_are_in_its_summary(env):
    c, h = env.client, env.h("bureau")
    pid = upload(c, h, _zero_volume_frame().to_csv(index=False).encode(), filename="zeros.csv")
    summary = c.get(f"/v1/portfolios/{pid}", headers=h).json()["summary"]
    assert summary["warnings_count"] == 2
    assert [(w["file"], w["row"], w["column"]) for w in summary["warnings"]] == [
        ("zeros.csv", 1, "volume_m3_per_ha"), ("zeros.csv", 2, "volume_m3_per_ha")]
    assert "bare land" in summary["warnings"][0]["reason"]
    clean = upload(c, h, make_frame(3, seed=1).to_csv(index=False).encode())
    assert c.get(f"/v1/portfolios/{clean}", headers=h).json()["summary"]["warnings_count"] == 0


def _workbook(sheets: dict[str, pd.DataFrame]) -> bytes:
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xw:
        for name, df in sheets.items():
            df.to_excel(xw, sheet_name=name, index=False)
    return buf.getvalue()


def test_a_workbooks_parcel_sheet_behind_a_title_sheet_is_read(env):
    c, h = env.client, env.h("bureau")
    parcels = make_frame(4, seed=2)
    title = pd.DataFrame({"说明": ["Lishui forest parcels, 2026 inventory"]})
    data = _workbook({"title": title, "parcels": parcels})
    r = c.post("/v1/portfolios", headers=h, files={"file": ("book.xlsx", data, "application/octet-stream")},
               data={"name": "book"})
    assert r.status_code == 201, r.text
    summary = c.get(f"/v1/portfolios/{r.json()['id']}", headers=h).json()["summary"]
    assert summary["parcels"] == 4
    assert any("read sheet 'parcels'" in w["reason"] for w in summary["warnings"])
    # no sheet with the columns: the problem names the sheet read and the workbook's others
    bad = _workbook({"title": title, "notes": title})
    body = assert_problem(c.post("/v1/portfolios", headers=h, files={"file": ("bad.xlsx", bad, "application/octet-stream")},
                                 data={"name": "bad"}), 422)
    first = body["errors"][0]
    assert "sheet 'title'" in str(first) and "'notes'" in str(first), first
