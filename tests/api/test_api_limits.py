"""Limits: per-key rate limit (429 with Retry-After), request body size (413), per-role
parcels x paths x years, expiring and revoked keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.db.models import ApiKey
from api.security import RateLimiter, create_key, create_tenant, revoke_key
from tests.api.conftest import csv_bytes, test_settings


@pytest.fixture
def limited(tmp_path):
    app = create_app(test_settings(f"sqlite:///{tmp_path / 'l.sqlite'}", rate_per_s=0.05, rate_burst=3.0,
                                   max_body_bytes=20_000, role_max_cells={"bank": 50 * 32 * 2, "insurer": 0,
                                                                          "bureau": 10**9, "admin": 0}))
    with TestClient(app) as c:
        with app.state.db.session() as s:
            t1, t2 = create_tenant(s, "bank-1", "bank"), create_tenant(s, "bank-2", "bank")
            k1, k2 = create_key(s, t1)[1], create_key(s, t2)[1]
        yield app, c, {"Authorization": f"Bearer {k1}"}, {"Authorization": f"Bearer {k2}"}


def test_rate_limit_per_key_with_retry_after(limited):
    _, c, h1, h2 = limited
    codes = [c.get("/v1/models", headers=h1).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429
    r = c.get("/v1/models", headers=h1)
    assert r.status_code == 429 and r.headers["content-type"].startswith("application/problem+json")
    assert int(r.headers["retry-after"]) >= 1
    assert c.get("/v1/models", headers=h2).status_code == 200  # another key has its own bucket


def test_token_bucket_refills_at_its_rate():
    t = [0.0]
    rl = RateLimiter(rate_per_s=2.0, burst=2.0, clock=lambda: t[0])
    assert rl.take("k") == 0 and rl.take("k") == 0
    assert rl.take("k") == pytest.approx(0.5)  # empty: one token in 1/2 s
    t[0] += 0.5
    assert rl.take("k") == 0
    t[0] += 100
    assert [rl.take("k") for _ in range(3)][:2] == [0, 0]  # refill caps at the burst


def test_body_size_limit_413(limited):
    _, c, h1, _ = limited
    r = c.post("/v1/portfolios", headers=h1, files={"file": ("p.csv", csv_bytes(400), "text/csv")})
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 413 and r.headers["x-request-id"]


def test_role_limit_on_parcels_paths_years(limited):
    _, c, h1, _ = limited
    pid = c.post("/v1/portfolios", headers=h1, files={"file": ("p.csv", csv_bytes(50), "text/csv")}).json()["id"]
    ok = c.post("/v1/simulations", headers=h1, json={"portfolio_id": pid, "years": 2, "paths": 32})
    assert ok.status_code == 201
    over = c.post("/v1/simulations", headers=h1, json={"portfolio_id": pid, "years": 2, "paths": 33})
    assert over.status_code == 422 and over.json()["limit"] == 3200 and over.json()["cells"] == 50 * 33 * 2


def test_revoked_and_expired_keys_stop_working(limited):
    app, c, h1, _ = limited
    with app.state.db.session() as s:
        t = create_tenant(s, "short", "bureau")
        row, key = create_key(s, t, expires_days=1)
        row2, key2 = create_key(s, t)
    h, h2 = {"Authorization": f"Bearer {key}"}, {"X-API-Key": key2}
    assert c.get("/v1/audit", headers=h).status_code == 200
    assert c.get("/v1/audit", headers=h2).status_code == 200
    with app.state.db.session() as s:
        k = s.get(ApiKey, row.id)
        k.expires_at = k.created_at - timedelta(seconds=1)
        revoke_key(s, row2.id)
    assert c.get("/v1/audit", headers=h).status_code == 401
    assert c.get("/v1/audit", headers=h2).status_code == 401
    with app.state.db.session() as s:
        assert s.get(ApiKey, row.id).secret_sha256 not in key  # only the hash is stored


# ---- upload and download limits (SQLite and PostgreSQL) ----------------------------------------------------
# The limits of what an upload may hold, counted before it is read: parcels of a portfolio file
# (CRE_MAX_PARCELS), what a compressed file declares it decompresses to (CRE_MAX_UPLOAD_DECODED_BYTES),
# rows of a layer-pricing loss table (CRE_LAYER_MAX_ROWS, CRE_LAYER_MAX_JSON_ROWS); upload errors that name the
# upload, never the server's temporary path; a multipart name over 200 characters; the memo rendered once
# however many first requests arrive together, and not in a request for a job-sized valuation; the
# security headers of the HTML downloads.
import asyncio  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import threading  # noqa: E402
import zipfile  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import pandas as pd  # noqa: E402

from api.compute import task_collateral_memo  # noqa: E402
from tests.api.conftest import make_tenants, new_database, upload  # noqa: E402
from tests.api.test_api_flows import assert_problem, wait_job  # noqa: E402
from tests.conftest import make_frame  # noqa: E402

CAP = 100  # parcels of a portfolio upload (CRE_MAX_PARCELS) in these tests
LAYER_ROWS, LAYER_JSON_ROWS = 50, 20
DECODED = 2_000_000
SYNC = 20_000  # CRE_SYNC_MAX_CELLS: a 5-parcel valuation of 10 crediting years is at once up to 400 paths
TERMS = {"amount_cny": 200_000.0, "term_years": 3, "interest_rate": 0.045, "crediting_horizon_years": 10}


@pytest.fixture(scope="module")
def lim(backend, tmp_path_factory, request):
    """An app with small upload limits on a fresh database (SQLite and PostgreSQL), tenants a and b of every role."""
    url = new_database(backend, tmp_path_factory, request)
    app = create_app(test_settings(url, max_parcels=CAP, max_upload_decoded_bytes=DECODED,
                                   layer_max_rows=LAYER_ROWS, layer_max_json_rows=LAYER_JSON_ROWS,
                                   sync_max_cells=SYNC, compute_workers=1))
    with TestClient(app) as c:
        keys = make_tenants(app)
        yield app, c, lambda role, t="a": {"Authorization": f"Bearer {keys[(role, t)]}"}


def _parquet(df: pd.DataFrame, **kw) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, **kw)
    return buf.getvalue()


def _xlsx(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_excel(buf, index=False)
    return buf.getvalue()


def _portfolio_count(c, h) -> int:
    return c.get("/v1/portfolios", headers=h).json()["total"]


def _post_file(c, h, filename: str, data: bytes, **form):
    return c.post("/v1/portfolios", headers=h, files={"file": (filename, data, "application/octet-stream")},
                  data=form)


def _limit_problem(r, field: str, limit: int, kind: str = "invalid-portfolio") -> dict:
    body = assert_problem(r, 422, kind)
    assert body["limit"] == limit, body
    assert [e["field"] for e in body["errors"]] == [field], body
    assert f"{limit:,}" in body["errors"][0]["reason"]
    return body


def test_parquet_over_the_parcel_cap_is_refused_from_its_footer(lim, monkeypatch):
    """One row repeated past the cap (a few kB of zstd Parquet) is refused from the file's footer: the rows
    are never decoded (read_table is not called) and nothing is stored."""
    import models.portfolio

    app, c, h = lim
    before = _portfolio_count(c, h("bank"))
    one = make_frame(1)
    big = pd.concat([one] * (CAP + 1), ignore_index=True)
    data = _parquet(big, compression="zstd")

    def never(*a, **k):
        raise AssertionError("the rows were read")

    with monkeypatch.context() as m:
        m.setattr(models.portfolio, "read_table", never)
        body = _limit_problem(_post_file(c, h("bank"), "big.parquet", data), "body/file", CAP)
    assert body["rows"] == CAP + 1 and "big.parquet" in body["detail"] and "CRE_MAX_PARCELS" in body["detail"]
    assert _portfolio_count(c, h("bank")) == before
    # at the cap it is stored
    ok = _post_file(c, h("bank"), "cap.parquet", _parquet(make_frame(CAP)))
    assert ok.status_code == 201 and ok.json()["n_parcels"] == CAP


def test_parquet_declaring_more_decoded_bytes_than_allowed_is_refused(lim):
    app, c, h = lim
    df = make_frame(3)
    df["notes"] = [ch * (DECODED // 2) for ch in "xyz"]  # 3 MB of text, a few kB compressed
    data = _parquet(df, compression="zstd")
    assert len(data) < 100_000
    body = _limit_problem(_post_file(c, h("bank"), "wide.parquet", data), "body/file", DECODED)
    assert "CRE_MAX_UPLOAD_DECODED_BYTES" in body["detail"]


def test_parquet_whose_encoding_hides_its_decoded_size_is_refused_as_it_decodes(lim):
    """The footer counts encoded pages: a column of one repeated value, dictionary-encoded, declares almost
    nothing and decodes to megabytes. The upload is decoded batch by batch and refused once the decoded bytes
    pass the limit (a 1,000,000 x 200 such table decoded to 1.6 GB)."""
    app, c, h = lim
    df = make_frame(3 * CAP // 4)
    df["notes"] = "x" * 40_000  # the same long string in every row (3 MB decoded): a few kB on disk
    data = _parquet(df, compression="zstd")
    import pyarrow.parquet as pq

    md = pq.ParquetFile(io.BytesIO(data)).metadata
    assert sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups)) < DECODED  # the footer passes
    body = _limit_problem(_post_file(c, h("bank"), "repeated.parquet", data), "body/file", DECODED)
    assert "decodes to more than" in body["detail"]


def test_parquet_text_columns_are_counted_before_they_are_decoded(tmp_path):
    """A dictionary-encoded text column is counted from its dictionary and indices, before any batch is decoded:
    16,000 rows of one 100 kB string (a 47 kB file) are refused without building their 1.6 GB; a file of more
    than MAX_UPLOAD_COLUMNS columns is refused before a batch is read; an ordinary file reads as pandas reads it."""
    import subprocess
    import sys

    from api.problems import ApiProblem
    from api.services import MAX_UPLOAD_COLUMNS, read_parquet_bounded

    path = tmp_path / "n.parquet"
    pd.DataFrame({"a": range(16_000), "notes": ["x" * 100_000] * 16_000}).to_parquet(path, compression="zstd")
    # read in a fresh process, whose peak memory is the reader's alone (decoding one batch first took 3.3 GB)
    # (VmHWM: the new process's own peak; ru_maxrss would carry the forking parent's over exec)
    code = ("import sys; from api.services import read_parquet_bounded; from api.problems import ApiProblem\n"
            "try:\n    read_parquet_bounded(open(sys.argv[1], 'rb').read(), 512 * 2**20, 'n.parquet', 'body/file')\n"
            "except ApiProblem as e:\n    print(e.detail)\n"
            "print(next(int(x.split()[1]) for x in open('/proc/self/status') if x.startswith('VmHWM')) // 1024)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[2])).stdout.splitlines()
    assert "decodes to more than" in out[0] and int(out[-1]) < 700, out  # MiB: the interpreter and libraries
    wide = io.BytesIO()
    pd.DataFrame({f"c{i}": [0.0] for i in range(MAX_UPLOAD_COLUMNS + 1)}).to_parquet(wide)
    with pytest.raises(ApiProblem, match="columns"):
        read_parquet_bounded(wide.getvalue(), 512 * 2**20, "w.parquet", "body/file")
    f = make_frame(40)
    f["cat"] = pd.Categorical(["a", "b"] * 20)
    f["s"] = [None if i == 3 else f"t{i}" for i in range(40)]
    ok = io.BytesIO()
    f.to_parquet(ok)
    pd.testing.assert_frame_equal(read_parquet_bounded(ok.getvalue(), 2**20, "f.parquet", "body/file"),
                                  pd.read_parquet(io.BytesIO(ok.getvalue())))


def test_csv_rows_are_counted_as_the_reader_counts_them(lim):
    """The pre-count reads records as the portfolio reader does (spaces after a separator skipped), so a quoted
    multi-line field after ", " is one row, not two: a file at the cap is accepted."""
    app, c, h = lim
    df = make_frame(CAP)
    text = df.to_csv(index=False).splitlines()
    lines = [text[0] + ",notes"] + [row + ', "line one\nline two"' for row in text[1:]]
    r = _post_file(c, h("bank"), "notes.csv", ("\n".join(lines) + "\n").encode())
    assert r.status_code == 201, r.text[:400]


@pytest.mark.parametrize("blank", [False, True])
def test_csv_over_the_parcel_cap_is_refused(lim, blank):
    app, c, h = lim
    before = _portfolio_count(c, h("bank"))
    if blank:  # blank lines are rows of the reader (it numbers rows by them): a file of line breaks is refused too
        data = make_frame(3).to_csv(index=False).encode() + b"\n" * (50 * CAP)
    else:
        data = make_frame(CAP + 1).to_csv(index=False).encode()
    _limit_problem(_post_file(c, h("bank"), "big.csv", data), "body/file", CAP)
    assert _portfolio_count(c, h("bank")) == before
    # CRLF line ends count twice in the cheap bound: a file at the cap is still accepted (parsed to count)
    crlf = make_frame(CAP).to_csv(index=False, lineterminator="\r\n").encode()
    assert _post_file(c, h("bank"), "cap.csv", crlf).status_code == 201


def test_xlsx_over_the_parcel_cap_or_the_decoded_size_is_refused(lim):
    app, c, h = lim
    before = _portfolio_count(c, h("bank"))
    _limit_problem(_post_file(c, h("bank"), "big.xlsx", _xlsx(make_frame(CAP + 5))), "body/file", CAP)
    # a sheet of 3 rows padded with 3 MB of blanks between its elements (well-formed XML, a few kB deflated)
    src, buf = zipfile.ZipFile(io.BytesIO(_xlsx(make_frame(3)))), io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            part = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                part = part.replace(b"<sheetData>", b"<sheetData>" + b" " * (3 * DECODED // 2))
            z.writestr(info.filename, part)
    data = buf.getvalue()
    assert len(data) < 100_000 and sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist()) > DECODED
    _limit_problem(_post_file(c, h("bank"), "wide.xlsx", data), "body/file", DECODED)
    assert _portfolio_count(c, h("bank")) == before
    ok = _post_file(c, h("bank"), "cap.xlsx", _xlsx(make_frame(CAP)))
    assert ok.status_code == 201 and ok.json()["n_parcels"] == CAP


def test_json_and_geojson_over_the_parcel_cap_are_refused(lim):
    app, c, h = lim
    before = _portfolio_count(c, h("bank"))
    recs = json.loads(make_frame(CAP + 1).to_json(orient="records"))
    _limit_problem(_post_file(c, h("bank"), "p.json", json.dumps(recs).encode()), "body/file", CAP)
    _limit_problem(c.post("/v1/portfolios", headers=h("bank"), json={"name": "x", "parcels": recs}), "body/parcels", CAP)
    gj = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [119.9, 28.4]}, "properties": r}
        for r in recs]}
    _limit_problem(_post_file(c, h("bank"), "p.geojson", json.dumps(gj).encode()), "body/file", CAP)
    _limit_problem(c.post("/v1/portfolios", headers=h("bank"), json={"name": "x", "geojson": gj}),
                   "body/geojson/features", CAP)
    assert _portfolio_count(c, h("bank")) == before


@pytest.mark.parametrize("name,data", [
    ("broken.parquet", b"PAR1 not really parquet"),
    ("broken.xlsx", b"PK\x03\x04 not a zip"),
    ("notes.xlsx", None),  # a zip archive that is no workbook
])
def test_upload_errors_name_the_file_never_the_server_path(lim, name, data):
    app, c, h = lim
    if data is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("hello.txt", "hi")
        data = buf.getvalue()
    body = assert_problem(_post_file(c, h("bank"), name, data), 422, "invalid-portfolio")
    text = json.dumps(body)
    assert "/tmp" not in text and "tmp" not in text.replace(name, "") and "upload-" not in text, text
    assert "upload." not in text, text
    assert body["errors"][0]["reason"].startswith("cannot read ")
    if name.endswith(".parquet"):  # pyarrow's message quotes the file: it is the upload's name
        assert name in body["errors"][0]["reason"], body


def test_multipart_name_over_200_characters_is_422_as_in_json(lim):
    app, c, h = lim
    before = _portfolio_count(c, h("bank"))
    r = _post_file(c, h("bank"), "p.csv", make_frame(3).to_csv(index=False).encode(), name="n" * 201)
    body = assert_problem(r, 422, "validation-error")
    assert [e["field"] for e in body["errors"]] == ["body/name"] and "200" in body["errors"][0]["reason"]
    js = c.post("/v1/portfolios", headers=h("bank"), json={"name": "n" * 201, "parcels": json.loads(
        make_frame(3).to_json(orient="records"))})
    assert [e["field"] for e in assert_problem(js, 422)["errors"]] == ["body/name"]
    assert _portfolio_count(c, h("bank")) == before
    ok = _post_file(c, h("bank"), "p.csv", make_frame(3).to_csv(index=False).encode(), name="n" * 200)
    assert ok.status_code == 201 and ok.json()["name"] == "n" * 200


# ---- layer pricing ----------------------------------------------------------------------------------------
LAYER_TERMS = {"n_years": "100", "attachment": "1", "limit": "50"}


def _elt(n: int) -> pd.DataFrame:
    # event years spread over the 100 simulated years (years 0..n-1 alone would be refused: a table whose event
    # years all lie far below n_years cannot be a table of n_years simulated years)
    return pd.DataFrame({"year": [(7 * i) % 100 for i in range(n)], "event_id": list(range(n)), "loss": [5.0] * n})


def _layer_count(c, h) -> int:
    return c.get("/v1/layer-pricing", headers=h).json()["total"]


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_layer_table_over_its_row_cap_is_refused(lim, fmt):
    app, c, h = lim
    before = _layer_count(c, h("insurer"))
    cap = LAYER_JSON_ROWS if fmt == "json" else LAYER_ROWS
    big = _elt(cap + 1)
    data = {"csv": lambda: big.to_csv(index=False).encode(), "parquet": lambda: _parquet(big),
            "json": lambda: big.to_json(orient="records").encode()}[fmt]()
    r = c.post("/v1/layer-pricing", headers=h("insurer"), files={"file": (f"elt.{fmt}", data, "text/plain")},
               data=LAYER_TERMS)
    body = _limit_problem(r, "body/file", cap, "invalid-loss-table")
    assert ("CRE_LAYER_MAX_JSON_ROWS" if fmt == "json" else "CRE_LAYER_MAX_ROWS") in body["detail"]
    assert _layer_count(c, h("insurer")) == before
    at = _elt(cap)
    data = {"csv": lambda: at.to_csv(index=False).encode(), "parquet": lambda: _parquet(at),
            "json": lambda: at.to_json(orient="records").encode()}[fmt]()
    ok = c.post("/v1/layer-pricing", headers=h("insurer"), files={"file": (f"elt.{fmt}", data, "text/plain")},
                data=LAYER_TERMS)
    assert ok.status_code == 201, ok.text
    assert ok.json()["result"]["table"] == {"rows": cap, "sha256": hashlib.sha256(data).hexdigest()}


def test_inline_layer_rows_over_their_cap_and_the_hash_of_the_body(lim):
    app, c, h = lim
    rows = json.loads(_elt(LAYER_JSON_ROWS + 1).to_json(orient="records"))
    terms = {"n_years": 100, "attachment": 1, "limit": 50}
    r = c.post("/v1/layer-pricing", headers=h("insurer"), json={"rows": rows, **terms})
    assert _limit_problem(r, "body/rows", LAYER_JSON_ROWS, "invalid-loss-table")["rows"] == LAYER_JSON_ROWS + 1
    raw = json.dumps({"rows": rows[:LAYER_JSON_ROWS], **terms}).encode()
    ok = c.post("/v1/layer-pricing", headers={**h("insurer"), "Content-Type": "application/json"}, content=raw)
    assert ok.status_code == 201, ok.text
    got = ok.json()
    assert got["result"]["table"]["rows"] == LAYER_JSON_ROWS
    # the table's hash is of the bytes as sent (the body), not of a re-serialisation of its rows
    assert got["audit"]["request"]["table_sha256"] == hashlib.sha256(raw).hexdigest()
    bad = c.post("/v1/layer-pricing", headers=h("insurer"), json={"rows": [1, 2], **terms})
    assert [e["field"] for e in assert_problem(bad, 422, "validation-error")["errors"]] == ["body/rows/0"]


@pytest.mark.parametrize("table,column,row,value", [
    ("year,event_id,loss\n0,1,5\n3,2,5\n50,3,5\n1,4,5\n60,5,5\n", "year", 3, 50),
    ("year,event_id,loss\n0,1,5\n3,2,-2\n", "loss", 2, -2.0),
    ("year,event_id,loss\n0,1,5\n3,2,abc\n", "loss", 2, "abc"),
    ("year,event_id,loss\n0,1,5\n1.5,2,5\n", "year", 2, 1.5),
])
def test_layer_table_errors_name_the_first_bad_row(lim, table, column, row, value):
    app, c, h = lim
    r = c.post("/v1/layer-pricing", headers=h("insurer"), files={"file": ("elt.csv", table.encode(), "text/csv")},
               data={"n_years": "10", "attachment": "0"})
    body = assert_problem(r, 422, "invalid-loss-table")
    e = body["errors"][0]
    assert (e["field"], e["row"], e["column"], e["value"]) == ("body/file", row, column, value), body
    assert f"first at row {row}" in e["reason"] and f"first at row {row}" in body["detail"]
    # inline rows: the same row number (1 = rows[0])
    rows = json.loads(pd.read_csv(io.StringIO(table)).to_json(orient="records"))
    r = c.post("/v1/layer-pricing", headers=h("insurer"), json={"rows": rows, "n_years": 10, "attachment": 0})
    e = assert_problem(r, 422, "invalid-loss-table")["errors"][0]
    assert (e["field"], e["row"], e["column"]) == ("body/rows", row, column), e


# ---- the collateral memo ------------------------------------------------------------------------------------
def test_concurrent_first_memo_requests_share_one_run(lim):
    app, c, h = lim
    pid = upload(c, h("bank"), make_frame(5).to_csv(index=False).encode(), name="memo")
    v = c.post("/v1/collateral-valuations", headers=h("bank"),
               json={"portfolio_id": pid, "terms": TERMS, "paths": 64, "seed": 3, "sensitivities": False})
    assert v.status_code == 201, v.text
    vid = v.json()["id"]
    pool = app.state.compute
    real, runs, lock = pool.run, [], threading.Lock()

    async def counting(fn, *args):
        if fn is task_collateral_memo:
            with lock:
                runs.append(1)
            await asyncio.sleep(0.5)  # every request arrives while the first one runs
        return await real(fn, *args)

    pool.run = counting
    try:
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda _: c.get(f"/v1/collateral-valuations/{vid}/memo", headers=h("bank")), range(4)))
    finally:
        del pool.run
    assert [r.status_code for r in got] == [200] * 4, [r.text[:300] for r in got]
    assert len(runs) == 1
    assert len({r.content for r in got}) == 1
    assert c.get(f"/v1/collateral-valuations/{vid}/memo", headers=h("bank")).content == got[0].content


def test_a_job_renders_its_memo_and_a_job_sized_one_is_never_rerun_in_a_request(lim):
    """A valuation run as a job renders its memo in the job (from its own value paths) and stores it: the memo
    request serves it without running anything, and it is the memo of the stored numbers. A job-sized
    valuation whose job stored no memo (one made before jobs rendered them) answers 409 ``memo-not-rendered``
    instead of re-running the whole valuation in a request."""
    from api.db.models import ResultArtifact

    app, c, h = lim
    pid = upload(c, h("bank"), make_frame(5).to_csv(index=False).encode(), name="memo-job")
    body = {"portfolio_id": pid, "terms": TERMS, "seed": 3, "sensitivities": False, "name": "memo job"}
    r = c.post("/v1/collateral-valuations", headers=h("bank"), json={**body, "paths": 500})  # 25,000 cells > SYNC
    assert r.status_code == 202, r.text
    job = wait_job(c, h("bank"), r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    assert any("rendering the collateral memo" in line for line in job["log"]), job["log"]
    vid = job["result_id"]
    pool, runs = app.state.compute, []
    real = pool.run

    async def counting(fn, *args):
        runs.append(fn)
        return await real(fn, *args)
    pool.run = counting
    try:
        memo = c.get(f"/v1/collateral-valuations/{vid}/memo", headers=h("bank"))
    finally:
        del pool.run
    assert memo.status_code == 200 and runs == [], (memo.text[:300], runs)
    stored = c.get(f"/v1/collateral-valuations/{vid}", headers=h("bank")).json()["result"]
    assert f"{stored['value_today']['value_cny']:,.0f}" in memo.text and "memo job" in memo.text
    # a job-sized valuation without a stored memo is not re-run in a request
    with app.state.db.session() as s:
        s.query(ResultArtifact).filter(ResultArtifact.result_id == vid).delete()
    problem = assert_problem(c.get(f"/v1/collateral-valuations/{vid}/memo", headers=h("bank")), 409,
                             "memo-not-rendered")
    assert problem["cells"] == 5 * 500 * 10 and problem["limit"] == SYNC and "CRE_SYNC_MAX_CELLS" in problem["detail"]


# ---- HTML downloads -------------------------------------------------------------------------------------------
def _assert_download_headers(r, filename: str) -> None:
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "img-src data:" in csp and "style-src 'unsafe-inline'" in csp
    assert "script-src" not in csp  # no script may run
    assert r.headers["content-disposition"] == f'attachment; filename="{filename}"'
    # the policy lets the report show what it has: its plots are data: PNGs, its styles inline, nothing else
    assert "data:image/png;base64," in r.text and "<script" not in r.text.lower()
    assert "src=\"http" not in r.text and "href=\"http" not in r.text


def test_html_downloads_carry_nosniff_and_a_restrictive_csp(lim):
    app, c, h = lim
    pid = upload(c, h("bank"), make_frame(5).to_csv(index=False).encode(), name="dl")
    v = c.post("/v1/collateral-valuations", headers=h("bank"),
               json={"portfolio_id": pid, "terms": TERMS, "paths": 32, "seed": 5}).json()
    _assert_download_headers(c.get(f"/v1/collateral-valuations/{v['id']}/memo", headers=h("bank")),
                             f"collateral-memo-{v['id']}.html")
    ipid = upload(c, h("insurer"), make_frame(5).to_csv(index=False).encode(), name="dl")
    q = c.post("/v1/quotes", headers=h("insurer"), json={"portfolio_id": ipid, "paths": 50, "seed": 2, "cover": {
        "kind": "stock-loss", "price_cny_per_tco2e": 60.0, "perils": ["fire"]}})
    assert q.status_code == 201, q.text
    _assert_download_headers(c.get(f"/v1/quotes/{q.json()['id']}/slip", headers=h("insurer")),
                             f"quote-slip-{q.json()['id']}.html")
    bpid = upload(c, h("bureau"), make_frame(5).to_csv(index=False).encode(), name="dl")
    r = c.post("/v1/stress-tests", headers=h("bureau"), json={"portfolio_id": bpid, "scenarios": ["severe_fire_weather"],
                                                             "years": 1, "paths": 8, "seed": 5, "accounts": False})
    job = wait_job(c, h("bureau"), r.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    sid = job["result_id"]
    _assert_download_headers(c.get(f"/v1/stress-tests/{sid}/report", headers=h("bureau")),
                             f"stress-report-{sid}.html")
    wb = c.get(f"/v1/stress-tests/{sid}/workbook", headers=h("bureau"))
    assert wb.status_code == 200 and wb.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in wb.headers
