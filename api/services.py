"""The thin layer between the routes and finance_engine: models, stored portfolios, runs, audit.

Nothing here does science or money: it validates with :mod:`models.portfolio`, runs
:func:`finance_engine.simulation.simulate` and :func:`finance_engine.accounts.carbon_accounts`, and
stores what they return with its provenance.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import tempfile
import threading
import uuid
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from api.db.models import AuditRecord, FinanceResult, PortfolioRow, ResultArtifact, RetainedPortfolio, SimulationRun, utcnow
from api.jsonable import clean
from api.problems import ApiProblem, FieldMap, json_safe
from api.schemas import ID_PATTERN
from api.requestctx import current_request_id
from api.security import Principal
from finance_engine.loan_terms import CREDITING_TERMS, crediting_overrides

UPLOAD_SUFFIXES = (".csv", ".txt", ".parquet", ".pq", ".xlsx", ".xlsm", ".geojson", ".json")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return clean(df.to_dict(orient="records"))


def page(items: list, total: int, limit: int, offset: int, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    nxt = offset + limit if offset + limit < total else None
    out = {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt}
    if provenance is not None:
        out["provenance"] = provenance
    return out


#: at most this many valid values are listed in a filter's error (a village level may have thousands of groups)
FILTER_VALUES_LISTED = 50


def filter_problem(param: str, value: Any, valid, what: str, hint: str = "") -> ApiProblem:
    """422 ``validation-error`` naming ``query/<param>`` for a filter value no row can have: its reason and
    ``allowed`` list the valid values (sorted; the first :data:`FILTER_VALUES_LISTED`, with ``allowed_count``)."""
    allowed = sorted({str(v) for v in valid if v is not None})
    shown = ", ".join(allowed[:FILTER_VALUES_LISTED]) + (
        f", ... ({len(allowed):,} in all)" if len(allowed) > FILTER_VALUES_LISTED else "")
    reason = (f"no {what} {value!r}: " + (f"valid values are {shown}" if allowed else "there are none")
              + (f"; {hint}" if hint else ""))
    return ApiProblem(422, f"{param}: {reason}", kind="validation-error", title="Invalid request",
                      errors=[{"field": f"query/{param}", "value": value, "reason": reason,
                               "allowed": allowed[:FILTER_VALUES_LISTED], "allowed_count": len(allowed)}])


def check_filters(rows: list[dict[str, Any]], filters: dict[str, Any], what: str, *, column=None,
                  hints: dict[str, str] | None = None) -> None:
    """Each given filter value (``{param: value}``, None: not given) is one the rows hold in the column of that
    name (``column``: param -> column where they differ), else :func:`filter_problem`. Rows without the column at
    all answer that the table has no such column. Nothing is checked on no rows (no value is known)."""
    for param, want in filters.items():
        if want is None or not rows:
            continue
        col = (column or {}).get(param, param)
        values = {r.get(col) for r in rows if col in r}
        if not values:
            raise ApiProblem(422, f"{param}: {what} has no {col!r} column to filter on", kind="validation-error",
                             title="Invalid request", errors=[{"field": f"query/{param}", "value": want,
                                                               "reason": f"{what} has no {col!r} column"}])
        if want not in values:
            raise filter_problem(param, want, values, f"{col} in {what}", (hints or {}).get(param, ""))


# ---- models ----------------------------------------------------------------------------------
class ModelRegistry:
    """Shipped parameter sets, loaded once per process (ids are region names, never paths)."""

    def __init__(self):
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()

    @staticmethod
    def ids() -> list[str]:
        from models.parameters import available_regions

        return available_regions()

    def get(self, region: str):
        from models.parameters import ParameterError, load_parameters

        if region not in self.ids():
            raise ApiProblem(404, f"no model {region!r}; available: {', '.join(self.ids())}", kind="not-found")
        with self._lock:
            if region not in self._cache:
                try:
                    self._cache[region] = load_parameters(region)
                except ParameterError as exc:  # a broken shipped file is our fault, not the caller's
                    raise RuntimeError(str(exc)) from exc
            return self._cache[region]

    @staticmethod
    def yaml_text(region: str) -> str:
        from models.parameters import resolve_parameter_path

        return resolve_parameter_path(region).read_text(encoding="utf-8")


# ---- portfolios ------------------------------------------------------------------------------
def _problems_to_errors(problems) -> list[dict[str, Any]]:
    return [{"row": p.row, "column": p.column, "value": json_safe(p.value), "reason": p.reason} for p in problems]


def portfolio_error(exc) -> ApiProblem:
    errs = _problems_to_errors(exc.problems)
    return ApiProblem(422, f"{len(errs)} problem(s) in the portfolio", kind="invalid-portfolio",
                      title="Invalid portfolio", errors=errs)


def _too_many_rows(name: str, limit: int, setting: str, *, field: str, found: int | None = None,
                   what: str = "parcels", kind: str = "invalid-portfolio",
                   title: str | None = "Invalid portfolio") -> ApiProblem:
    """422 for an upload with more rows than ``limit`` (``found``: the count, when it is known)."""
    count = f"{found:,} rows" if found is not None else f"more than {limit:,} rows"
    reason = f"{name} has {count}: at most {limit:,} {what} are accepted ({setting})"
    extra = {"rows": found} if found is not None else {}
    return ApiProblem(422, reason, kind=kind, title=title, errors=[{"field": field, "reason": reason}], limit=limit,
                      **extra)


def _too_large_decoded(name: str, decoded: int, limit: int, *, field: str, kind: str = "invalid-portfolio",
                       title: str | None = "Invalid portfolio", verb: str = "declares") -> ApiProblem:
    reason = (f"{name} {verb} {decoded:,} bytes once decompressed: at most {limit:,} are accepted "
              "(CRE_MAX_UPLOAD_DECODED_BYTES)")
    return ApiProblem(422, reason, kind=kind, title=title, errors=[{"field": field, "reason": reason}], limit=limit)


def csv_rows_over(data: bytes, cap: int, *, count_blank: bool) -> bool:
    """Whether a CSV holds more than ``cap`` data rows after its header (``count_blank``: blank lines count,
    as the portfolio reader keeps them to number rows). Cheap: a count of line breaks bounds the rows; only
    a file with more line breaks than ``cap`` is parsed (a quoted field may hold a line break), one record
    at a time without keeping any."""
    if data.count(b"\n") + data.count(b"\r") <= cap:  # (CRLF counts twice: still a bound)
        return False
    import csv

    # any byte is one latin-1 character, and neither UTF-8 nor GB18030 uses the bytes of a line break, quote
    # or comma inside a character: the records are those the reader will find
    text = io.TextIOWrapper(io.BytesIO(data), encoding="latin-1", newline="")
    rows, header = 0, False
    try:
        for rec in csv.reader(text, skipinitialspace=True):  # as the portfolio reader (_read_csv) reads it
            if not header:
                header = bool(rec)  # blank lines before the header are skipped
                continue
            if rec or count_blank:
                rows += 1
                if rows > cap:
                    return True
    except csv.Error:  # (a field beyond the csv module's size limit): the line breaks' bound, which is over
        return True
    return False


def parquet_footer(data: bytes) -> tuple[int, int] | None:
    """(rows, bytes of column data once decompressed) that a Parquet file's footer declares, read without
    decoding any data; None when there is no readable footer (the reader then reports the file)."""
    try:
        import pyarrow.parquet as pq

        md = pq.ParquetFile(io.BytesIO(data)).metadata
        return int(md.num_rows), sum(max(0, int(md.row_group(i).total_byte_size)) for i in range(md.num_row_groups))
    except Exception:  # noqa: BLE001 - not Parquet: read_table reports it
        return None


#: columns a Parquet upload may have (a portfolio has about twenty; each adds to a decoded batch's size)
MAX_UPLOAD_COLUMNS = 1_000


def read_parquet_bounded(data: bytes, max_decoded_bytes: int, name: str, field: str) -> pd.DataFrame:
    """A Parquet upload decoded batch by batch, stopping with a 422 once the decoded (Arrow) bytes pass
    ``max_decoded_bytes``: the footer's byte count is of *encoded* pages, which dictionary and run-length
    encoding make tiny (1,000,000 rows of 200 constant columns: a 0.9 MB file whose footer says 0.8 MB
    decodes to 1.6 GB), so only decoding bounds what decoding costs."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = pq.ParquetFile(io.BytesIO(data)).schema_arrow
    if len(schema) > MAX_UPLOAD_COLUMNS:  # a batch's size grows with its columns: bound them before decoding one
        reason = f"{name} has {len(schema):,} columns: at most {MAX_UPLOAD_COLUMNS:,} are read"
        raise ApiProblem(422, reason, kind="invalid-portfolio", title="Invalid portfolio",
                         errors=[{"field": field, "reason": reason}], limit=MAX_UPLOAD_COLUMNS)
    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            or pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    # text columns stay dictionary-encoded while they are counted (one long string repeated in every row
    # costs its length once): their dense size is the sum of their values' lengths, taken from the indices,
    # so nothing larger than the file's own dictionary pages is built before the bound is checked
    pf = pq.ParquetFile(io.BytesIO(data), read_dictionary=text)
    batches, total = [], 0
    for batch in pf.iter_batches(batch_size=4_096):
        for i, col in enumerate(batch.columns):
            if pa.types.is_dictionary(col.type) and batch.schema.field(i).name in text:
                lengths = pc.binary_length(col.dictionary).fill_null(0)
                total += int(pc.sum(pc.take(lengths, col.indices.fill_null(0))).as_py() or 0) + 4 * len(col)
            else:
                total += col.nbytes
        if total > max_decoded_bytes:
            raise _too_large_decoded(name, total, max_decoded_bytes, field=field, verb="decodes to more than")
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=pf.schema_arrow)
    return table.cast(schema).to_pandas()  # the text columns as the file declares them (decoded: within the bound)


def zip_decoded_bytes(data: bytes) -> int | None:
    """The bytes an xlsx file's (zip) members declare once decompressed (Python's zip reader stops at the
    declared size); None when it is not a zip archive (the reader then reports the file)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return sum(max(0, i.file_size) for i in z.infolist())
    except Exception:  # noqa: BLE001 - not a zip archive: read_table reports it
        return None


def _read_xlsx(p: Path, max_rows: int) -> pd.DataFrame:
    """:func:`models.portfolio.read_xlsx` (the parcel sheet of a workbook, named in its problems), at most
    ``max_rows + 1`` data rows deep (pandas reads a sheet's every row however large its declared dimension; this
    stops at the limit)."""
    from models.portfolio import read_xlsx

    return read_xlsx(p, nrows=max_rows + 1)


def _scrub(text: str, tmp: str, p: Path, name: str) -> str:
    """``text`` (a reader's or a library's message) with the server's temporary file (its path, or its name
    as :func:`models.portfolio.read_table` gives it) named as the upload, and no trace of the folder."""
    return text.replace(str(p), name).replace(p.name, name).replace(tmp, "").replace(Path(tmp).name, "")


def frame_from_upload(filename: str, data: bytes, *, max_rows: int | None = None,
                      max_decoded_bytes: int | None = None, field: str = "body/file") -> pd.DataFrame:
    """A raw table from uploaded bytes, read by :func:`models.portfolio.read_table` (by extension).

    ``max_rows`` (``CRE_MAX_PARCELS``) is checked before the rows are read: a Parquet file's footer, a CSV's
    records (:func:`csv_rows_over`), a JSON document's list; an xlsx sheet is read at most ``max_rows + 1`` rows
    deep. ``max_decoded_bytes`` bounds what a Parquet or xlsx file declares it decompresses to. Both answer
    422 naming ``field`` and the limit; nothing is decoded beyond them."""
    from models.portfolio import PortfolioError, Problem, read_table

    name = Path(filename or "upload.csv").name
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise ApiProblem(415, f"unsupported file type {suffix or '(none)'!r}; use .csv, .parquet, .xlsx, .geojson "
                              "or .json", kind="unsupported-media-type")

    def over(found: int | None = None) -> ApiProblem:
        return _too_many_rows(name, max_rows, "CRE_MAX_PARCELS", field=field, found=found)

    if max_rows is not None and suffix in (".csv", ".txt") and csv_rows_over(data, max_rows, count_blank=True):
        raise over()
    if suffix in (".parquet", ".pq") and (footer := parquet_footer(data)) is not None:
        if max_rows is not None and footer[0] > max_rows:
            raise over(footer[0])
        if max_decoded_bytes is not None and footer[1] > max_decoded_bytes:
            raise _too_large_decoded(name, footer[1], max_decoded_bytes, field=field)
    if suffix in (".xlsx", ".xlsm") and max_decoded_bytes is not None:
        decoded = zip_decoded_bytes(data)
        if decoded is not None and decoded > max_decoded_bytes:
            raise _too_large_decoded(name, decoded, max_decoded_bytes, field=field)
    if suffix == ".json" or (suffix == ".geojson" and max_rows is not None):
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if suffix == ".geojson":
                doc = None  # read_table reports it as GeoJSON
            else:
                raise ApiProblem(422, f"not valid JSON: {exc}", kind="invalid-portfolio") from exc
        if isinstance(doc, list):
            if max_rows is not None and len(doc) > max_rows:
                raise over(len(doc))
            return frame_from_records(doc)
        if isinstance(doc, dict) and isinstance(doc.get("features"), list) and max_rows is not None \
                and len(doc["features"]) > max_rows:
            raise over(len(doc["features"]))
        del doc
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / f"upload-{uuid.uuid4().hex}{suffix}"  # (a name no message holds by chance: see _scrub)
        p.write_bytes(data)
        try:
            if suffix in (".xlsx", ".xlsm") and max_rows is not None:
                try:
                    df = _read_xlsx(p, max_rows)
                except Exception as exc:  # as read_table reports a file it cannot read
                    raise PortfolioError([Problem(name, None, None, None, f"cannot read {suffix} file: {exc}")]) \
                        from exc
            elif suffix in (".parquet", ".pq") and max_decoded_bytes is not None:
                try:
                    df = read_parquet_bounded(data, max_decoded_bytes, name, field)
                except ApiProblem:
                    raise
                except Exception as exc:  # as read_table reports a file it cannot read (read from memory: named)
                    raise PortfolioError([Problem(name, None, None, None,
                                                  f"cannot read {suffix} file {name}: {exc}")]) from exc
            else:
                df = read_table(p)
        except PortfolioError as exc:
            for pr in exc.problems:  # the upload's name, never the server's temporary path
                object.__setattr__(pr, "file", name)
                object.__setattr__(pr, "reason", _scrub(str(pr.reason), tmp, p, name))
            raise portfolio_error(exc) from exc
    if max_rows is not None and len(df) > max_rows:  # (a footer that understated its rows)
        raise over(len(df) if suffix not in (".xlsx", ".xlsm") else None)
    return df


def frame_from_records(rows: list) -> pd.DataFrame:
    if not all(isinstance(r, dict) for r in rows):
        raise ApiProblem(422, "parcels must be a list of objects (one per parcel)", kind="invalid-portfolio")
    df = pd.DataFrame.from_records(rows)
    # nested values (lists, objects) are not cells: show them as text so the validator reports them
    for c in df.columns:
        if df[c].map(lambda v: isinstance(v, (list, dict))).any():
            df[c] = df[c].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    return df


def frame_from_geojson(doc: dict, **limits) -> pd.DataFrame:
    """A raw table from a GeoJSON document sent as JSON (``limits``: see :func:`frame_from_upload`)."""
    return frame_from_upload("upload.geojson", json.dumps(doc).encode(), **limits)


# ---- event loss tables (layer pricing) ---------------------------------------------------------
class LossTableError(ValueError):
    """A loss table the engine refused, with where: the first bad row (1 = the table's first row), its column
    and value; or a table over its row ``limit``. Picklable (it crosses from a compute worker)."""

    def __init__(self, message: str, row: int | None = None, column: str | None = None, value: Any = None,
                 limit: int | None = None):
        super().__init__(message, row, column, value, limit)

    message = property(lambda self: self.args[0])
    row = property(lambda self: self.args[1])
    column = property(lambda self: self.args[2])
    value = property(lambda self: self.args[3])
    limit = property(lambda self: self.args[4])

    def __str__(self) -> str:
        return str(self.args[0])


def check_loss_table_rows(filename: str, data: bytes, *, max_rows: int, max_decoded_bytes: int,
                          field: str = "body/file") -> None:
    """An uploaded loss table's rows (and a Parquet file's decompressed size) within the limits, checked
    before it is read (:func:`csv_rows_over`, :func:`parquet_footer`); 422 ``invalid-loss-table`` naming
    ``field`` and the limit. A JSON file's rows are counted where it is parsed (:func:`task_price_layer`)."""
    name = Path(filename or "elt.csv").name
    suffix = Path(name).suffix.lower()
    kw = {"field": field, "what": "rows", "kind": "invalid-loss-table", "title": None}
    if suffix in (".csv", ".txt") and csv_rows_over(data, max_rows, count_blank=False):
        raise _too_many_rows(name, max_rows, "CRE_LAYER_MAX_ROWS", **kw)
    if suffix in (".parquet", ".pq") and (footer := parquet_footer(data)) is not None:
        if footer[0] > max_rows:
            raise _too_many_rows(name, max_rows, "CRE_LAYER_MAX_ROWS", found=footer[0], **kw)
        if footer[1] > max_decoded_bytes:
            raise _too_large_decoded(name, footer[1], max_decoded_bytes, field=field, kind="invalid-loss-table",
                                     title=None)


#: the artifact that marks a valuation whose memo this code cannot render: its re-run did not reproduce the stored
#: numbers (409 ``conflict``); such a valuation needs no portfolio data kept for it (:func:`results_needing_data`)
MEMO_REFUSED = "memo.refused"


def job_cells(s: Session, tenant_id: str, job_id: str | None) -> int | None:
    """The pledged parcel-path-years of a valuation that ran as the job ``job_id`` (its ``collateral.submit``
    audit record says); None for one answered in its request (it was within the limit then)."""
    if not job_id:
        return None
    rec = s.scalar(select(AuditRecord).where(AuditRecord.tenant_id == tenant_id,
                                             AuditRecord.action == "collateral.submit",
                                             AuditRecord.resource_id == job_id).limit(1))
    cells = (rec.detail or {}).get("cells") if rec is not None else None
    return int(cells) if isinstance(cells, (int, float)) else None


def results_needing_data(s: Session, tenant_id: str, portfolio_id: str, data_sha256: str, sync_max: int) -> list[str]:
    """Ids of the stored results that still need the portfolio's data to be rendered: collateral valuations of
    that data whose memo is not stored yet and can still be rendered in a request (the memo re-runs the valuation,
    since its value paths are not kept). Not those whose memo never will be: a job-sized valuation (over
    ``sync_max`` cells, :func:`job_cells`) whose job stored no memo (409 ``memo-not-rendered``), or one whose
    re-run did not reproduce it (:data:`MEMO_REFUSED`)."""
    done = select(ResultArtifact.result_id).where(ResultArtifact.result_id == FinanceResult.id,
                                                  ResultArtifact.name.in_(("memo.html", MEMO_REFUSED)))
    rows = s.execute(select(FinanceResult.id, FinanceResult.job_id).where(
        FinanceResult.tenant_id == tenant_id, FinanceResult.kind == "collateral",
        FinanceResult.portfolio_id == portfolio_id, FinanceResult.portfolio_sha256 == data_sha256,
        ~done.exists()).order_by(FinanceResult.id)).all()
    out = []
    for rid, job_id in rows:
        cells = job_cells(s, tenant_id, job_id)
        if cells is None or cells <= sync_max:
            out.append(rid)
    return out


def _insert_ignore(s: Session, values: dict[str, Any]) -> None:
    """INSERT the retained row unless one with its id is there (committed meanwhile by a concurrent save or delete:
    PostgreSQL waits for it, then does nothing; SQLite's writers are serialised)."""
    dialect = s.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        s.execute(insert(RetainedPortfolio).values(**values).on_conflict_do_nothing(index_elements=["id"]))
        return
    from sqlalchemy import insert as plain_insert
    from sqlalchemy.exc import IntegrityError

    try:
        with s.begin_nested():  # a savepoint: losing the race leaves the rest of the transaction intact
            s.execute(plain_insert(RetainedPortfolio).values(**values))
    except IntegrityError:
        if s.get(RetainedPortfolio, values["id"], populate_existing=True) is None:
            raise


def retain_portfolio_data(s: Session, row: PortfolioRow, *, sync_max: int, days: float,
                          now: datetime | None = None) -> tuple[list[str], datetime | None]:
    """Before ``row`` is deleted (or once a result was stored after it was): keep its data
    (:class:`RetainedPortfolio`) for ``days`` when stored results still need it (:func:`results_needing_data`).
    Returns (their ids, until when the data is kept); ([], None): nothing is kept (nothing needs it, or
    ``days`` is 0). Idempotent: of concurrent calls for one portfolio one row is written, and the first expiry
    stands."""
    need = results_needing_data(s, row.tenant_id, row.id, row.data_sha256, sync_max)
    if not need or days <= 0:
        return [], None
    now = now or utcnow()
    _insert_ignore(s, dict(id=row.id, tenant_id=row.tenant_id, source=row.source, region=row.region,
                           data_sha256=row.data_sha256, data_parquet=row.data_parquet, deleted_at=now,
                           expires_at=now + timedelta(days=days)))
    kept = s.get(RetainedPortfolio, row.id, populate_existing=True)
    return need, kept.expires_at if kept is not None else None


def _drop_retained(s: Session, kept_id: str, tenant_id: str, key_id: str, reason: str, *extra,
                   request_id: str | None = None) -> bool:
    """Delete one retained row (conditional: of concurrent drops one is audited) with its audit record
    (``request_id``: :func:`audit_record`'s)."""
    if s.execute(delete(RetainedPortfolio).where(RetainedPortfolio.id == kept_id, *extra)
                 .execution_options(synchronize_session=False)).rowcount != 1:
        return False
    audit_record(s, tenant_id, key_id, "portfolio.data_dropped", "portfolio", kept_id, request_id=request_id,
                 reason=reason)
    return True


def release_portfolio_data(s: Session, tenant_id: str, portfolio_id: str, sync_max: int, *, key_id: str = "-",
                           reason: str = "no memo left to render") -> bool:
    """Drop a deleted portfolio's retained data once no stored result needs it any more (the last memo that
    needed it is stored, or can no longer be rendered); True when it was dropped (audited:
    ``portfolio.data_dropped``)."""
    kept = s.get(RetainedPortfolio, portfolio_id, populate_existing=True)
    if kept is None or kept.tenant_id != tenant_id or results_needing_data(s, tenant_id, portfolio_id,
                                                                           kept.data_sha256, sync_max):
        return False
    return _drop_retained(s, portfolio_id, tenant_id, key_id, reason)


def purge_retained_data(s: Session, now: datetime | None = None, *, ids: list[str] | None = None,
                        key_id: str = "-") -> list[dict[str, Any]]:
    """Drop the retained data of deleted portfolios that expired (``expires_at`` passed), or with ``ids`` those
    portfolios' whatever their expiry (an administrator's purge); each drop is audited in the portfolio's
    tenant (``portfolio.data_dropped``). Returns what was dropped: ``{portfolio_id, tenant_id, expires_at}``."""
    now = now or utcnow()
    q = select(RetainedPortfolio.id, RetainedPortfolio.tenant_id, RetainedPortfolio.expires_at)
    q = q.where(RetainedPortfolio.id.in_(list(ids))) if ids is not None else q.where(RetainedPortfolio.expires_at <= now)
    out = []
    for pid, tenant_id, expires_at in s.execute(q.order_by(RetainedPortfolio.id)).all():
        # the server's own doing, maybe in another tenant's request: no request id of that request in this record
        if ids is not None:
            done = _drop_retained(s, pid, tenant_id, key_id, "purged by an administrator", request_id="-")
        else:
            done = _drop_retained(s, pid, tenant_id, key_id, f"expired on {expires_at.isoformat()}",
                                  RetainedPortfolio.expires_at <= now, request_id="-")
        if done:
            out.append({"portfolio_id": pid, "tenant_id": tenant_id, "expires_at": expires_at.isoformat()})
    return out


#: the engine's loss-table rules (``finance_engine.insurance.tables``), by the words of its message -> the rule
LOSS_TABLE_RULES = (("must be numeric", "numeric"), ("missing (NaN)", "missing"), ("missing event ids", "missing"),
                    ("must hold integer", "integer"), ("must hold whole numbers", "integer"),
                    ("must lie in [0, n_years", "year-range"), ("must lie in 0..path", "block-range"),
                    ("must be >= 0", "negative"), ("must be finite", "finite"))


def loss_table_rule(message: str) -> str | None:
    """The rule of the engine's loss-table message (:data:`LOSS_TABLE_RULES`); None for one that is not about a
    value of a row (a missing column, the year index's spread, ...)."""
    return next((rule for words, rule in LOSS_TABLE_RULES if words in message), None)


def first_bad_row(elt: pd.DataFrame, column: str, n_years: int, rule: str | None = None) -> tuple[int, Any] | None:
    """(row number from 1, value) of the first row of ``column`` that breaks ``rule``, the engine's loss-table
    rule it reported (:func:`loss_table_rule`; ``finance_engine.insurance.tables.event_losses``: ``numeric``
    every cell a number, ``missing`` no gap, ``integer`` whole numbers, ``year-range`` in [0, n_years),
    ``block-range`` ``mc_block`` in 0..path, ``negative`` >= 0, ``finite``); None when no row breaks it, or
    for no rule (a message about no single row). A row breaking another rule is not the one reported: a loss
    column of 100, -5, abc "must be numeric" at row 3 (abc), not at row 2 (-5)."""
    if rule is None or column not in elt.columns or len(elt) == 0:
        return None
    s = elt[column]
    text = not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
    missing = s.isna().to_numpy(dtype=bool)
    if rule == "numeric":
        if pd.api.types.is_bool_dtype(s):
            bad = np.ones(len(s), dtype=bool)
        else:  # a cell that is there and no number ("abc" among CSV text "5", "7")
            parsed = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(parsed) & ~missing
            if not bad.any():  # all read as numbers: the first that is text ("5" among JSON numbers) or a bool
                bad = ~missing & ~s.map(lambda x: isinstance(x, (int, float, np.integer, np.floating))
                                        and not isinstance(x, (bool, np.bool_))).to_numpy(dtype=bool)
    elif rule == "missing":
        bad = missing
    else:
        v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) if text else \
            s.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            if rule == "integer":
                bad = np.isfinite(v) & (np.floor(v) != v)
            elif rule == "year-range":
                bad = (v < 0) | (v >= n_years)
            elif rule == "negative":
                bad = v < 0
            elif rule == "finite":
                bad = np.isinf(v)
            elif rule == "block-range" and "path" in elt.columns:
                path = pd.to_numeric(elt["path"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                bad = (v < 0) | (v > path)
            else:
                return None
    at = np.flatnonzero(bad)
    if at.size == 0:
        return None
    cell = s.iloc[int(at[0])]
    return int(at[0]) + 1, None if missing[int(at[0])] else json_safe(cell)  # a gap: null


def task_price_layer(filename: str, data: bytes, req: dict[str, Any], max_json_rows: int) -> dict[str, Any]:
    """:func:`api.compute.task_layer` on an uploaded loss table (file bytes, or an inline request's JSON body
    with its ``rows``), in a compute worker. A JSON table's rows are counted as soon as it is parsed
    (``max_json_rows``); a table the engine refuses raises :class:`LossTableError` naming its first bad row."""
    from api.compute import read_loss_table, records_frame, task_layer
    from finance_engine.insurance import InsuranceInputError

    rows = None
    if Path(filename or "").suffix.lower() == ".json":
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None  # task_layer reports it
        if isinstance(doc, dict) and "rows" in doc:
            doc = doc["rows"]
        if isinstance(doc, list):
            if len(doc) > max_json_rows:
                raise LossTableError(f"the loss table has {len(doc):,} rows: at most {max_json_rows:,} rows of a "
                                     "JSON table are accepted (CRE_LAYER_MAX_JSON_ROWS; send a CSV or Parquet file "
                                     "for more)", limit=max_json_rows)
            if all(isinstance(r, dict) for r in doc):
                rows = doc
        del doc
    try:
        if rows is not None:
            return task_layer(filename, None, rows, req)
        return task_layer(filename, data, None, req)
    except InsuranceInputError as exc:
        m = re.search(r"column '([^']+)'", str(exc))
        rule = loss_table_rule(str(exc))
        where = None
        if m and rule is not None:
            try:
                elt = records_frame(rows) if rows is not None else read_loss_table(filename, data)
                where = first_bad_row(elt, m.group(1), int(req["n_years"]), rule)
            except Exception:  # noqa: BLE001 - the engine's own message is still the answer
                where = None
        if where is None:
            raise
        raise LossTableError(f"{exc}; first at row {where[0]}", where[0], m.group(1), where[1]) from None


def validate(df: pd.DataFrame, params, source: str):
    from models.portfolio import PortfolioError, validate_frame

    try:
        return validate_frame(df, params, source=source)
    except PortfolioError as exc:
        raise portfolio_error(exc) from exc


def portfolio_summary(pf) -> dict[str, Any]:
    f = pf.frame
    by_county = f.groupby("county", sort=True)["area_ha"].agg(["size", "sum"])
    by_species = f.groupby("species_group", sort=True)["area_ha"].agg(["size", "sum"])
    return clean({
        "parcels": pf.n_parcels, "area_ha": float(f["area_ha"].sum()),
        "counties": {k: {"parcels": int(r["size"]), "area_ha": float(r["sum"])} for k, r in by_county.iterrows()},
        "species_groups": {k: {"parcels": int(r["size"]), "area_ha": float(r["sum"])}
                           for k, r in by_species.iterrows()},
        "mean_age_years": float(f["age_years"].mean()),
        # accepted, but likely a mistake (a measured volume of 0 on an established stand, a parcel sheet found
        # behind a title sheet): each naming file, row, column, value and reason, the first MAX_WARNINGS_SHOWN
        "warnings": [w.as_dict() for w in tuple(getattr(pf, "warnings", ()))[:MAX_WARNINGS_SHOWN]],
        "warnings_count": len(getattr(pf, "warnings", ())),
    })


#: the portfolio warnings an upload's summary lists (``warnings_count`` counts them all)
MAX_WARNINGS_SHOWN = 50


def store_portfolio(s: Session, who: Principal, name: str, pf, params) -> PortfolioRow:
    buf = io.BytesIO()
    pf.frame.to_parquet(buf, index=False)
    data = buf.getvalue()
    row = PortfolioRow(id=new_id("pf"), tenant_id=who.tenant_id, name=name, source=str(pf.source)[:300],
                       region=params.region, parameter_sha256=params.sha256, n_parcels=pf.n_parcels,
                       area_ha=float(pf.area_ha.sum()), data_sha256=hashlib.sha256(data).hexdigest(),
                       data_parquet=data, summary=portfolio_summary(pf), created_by=who.key_id, created_at=utcnow())
    s.add(row)
    s.flush()
    return row


def own_provenance(result: dict[str, Any], row: PortfolioRow) -> dict[str, Any]:
    """``result`` (a copy) whose provenance names the caller's portfolio (its source, the uploaded file's
    name): a result served from the cross-tenant result cache (keyed by the data, not the name) was computed
    for whoever asked first."""
    prov = result.get("provenance")
    if not isinstance(prov, dict) or "portfolio" not in prov:
        return result
    pf = prov["portfolio"]
    if isinstance(pf, dict):
        pf = {**pf, "source": row.source}
    else:
        pf = row.source
    return {**result, "provenance": {**prov, "portfolio": pf}}


class PortfolioCache:
    """Validated :class:`Portfolio` objects of stored rows, by (id, data hash); small LRU."""

    def __init__(self, size: int = 8):
        self.size = size
        self._d: OrderedDict[tuple[str, str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row: PortfolioRow, params):
        key = (row.id, row.data_sha256, params.sha256)
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        from models.portfolio import validate_frame

        df = pd.read_parquet(io.BytesIO(row.data_parquet))
        pf = validate_frame(df, params, source=row.source)
        with self._lock:
            self._d[key] = pf
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return pf


_ID_RE = re.compile(ID_PATTERN)


def plausible_id(id_: str) -> bool:
    """Whether ``id_`` could name a stored row (ids are 1-40 of ``A-Za-z0-9_-``); others are never
    looked up (a NUL or a 400-character id is simply not found, on every database)."""
    return isinstance(id_, str) and _ID_RE.match(id_) is not None


def get_owned(s: Session, model, id_: str, who: Principal, what: str):
    """A tenant's row by id; 404 (never 403) when it belongs to someone else, so ids leak nothing."""
    if not plausible_id(id_):
        raise ApiProblem(404, f"no {what} {id_[:60]!r}", kind="not-found")
    row = s.get(model, id_)
    if row is None or row.tenant_id != who.tenant_id:
        raise ApiProblem(404, f"no {what} {id_!r}", kind="not-found")
    return row


def count(s: Session, q) -> int:
    return int(s.scalar(select(func.count()).select_from(q.order_by(None).subquery())))


# ---- audit -----------------------------------------------------------------------------------
def audit(s: Session, who: Principal, action: str, resource_type: str, resource_id: str, /, **detail: Any) -> None:
    audit_record(s, who.tenant_id, who.key_id, action, resource_type, resource_id, **detail)


def audit_record(s: Session, tenant_id: str, key_id: str, action: str, resource_type: str, resource_id: str, /, *,
                 request_id: str | None = None, **detail: Any) -> None:
    """An audit record in the session's transaction (a job records its result as the key that submitted it,
    with the request id of the submitting request, which the job's thread carries). ``request_id``: the record's
    own (``"-"`` for what the server does of itself in another tenant's request, such as a purge), default the
    current request's."""
    rid = request_id if request_id is not None else (current_request_id() or "-")
    s.add(AuditRecord(tenant_id=tenant_id, key_id=key_id, action=action, resource_type=resource_type,
                      resource_id=resource_id, detail=clean(detail), request_id=rid, at=utcnow()))


# ---- jobs ------------------------------------------------------------------------------------
def internal_job_problem(job_id: str, kind: str = "internal-error", what: str = "the job failed") -> dict[str, Any]:
    """A failed job's ``error`` for a failure of the server (not of the request): no exception text (it may
    quote SQL and the stored values, as a 500's body never does), only where to look in the server's log."""
    detail = f"{what} on the server (job {job_id}); the server's log has the details"
    if kind == "storage-error":
        detail += "; submit the request again"
    return job_problem(kind, detail, 500, "Result not saved" if kind == "storage-error" else None)


def job_problem(kind: str, detail: str, status: int, title: str | None = None,
                errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A failed job's ``error``: an RFC 9457 problem detail (as the synchronous answer would have been)."""
    from http import HTTPStatus

    from api.problems import TYPE_BASE

    out: dict[str, Any] = {"type": TYPE_BASE + kind, "title": title or HTTPStatus(status).phrase, "status": status,
                           "detail": str(detail)[:2000]}
    if errors:
        out["errors"] = json_safe(errors)
    rid = current_request_id()
    if rid:
        out["request_id"] = rid
    return out


# ---- simulations -----------------------------------------------------------------------------
def cells(n_parcels: int, paths: int, years: int) -> int:
    return int(n_parcels) * int(paths) * int(years)


SIMULATION_FIELDS = FieldMap(
    {n: f"body/{n}" for n in ("portfolio_id", "years", "paths", "seed", "levels", "carbon_method", "scenario",
                              "climate_pathway", "perils", "loss_table_level")},
    patterns=((r"climate pathway", "body/climate_pathway"), (r"peril", "body/perils"),
              (r"loss.table", "body/loss_table_level")))


#: a simulation request's crediting overrides (``simulate(crediting=...)``): the loan terms' names
SIMULATION_CREDITING = CREDITING_TERMS


def simulation_crediting(req: dict[str, Any]) -> dict[str, int]:
    """The crediting overrides a simulation request sets."""
    return crediting_overrides(req)


def check_simulation_request(params, req: dict[str, Any]) -> None:
    """What the engine would refuse at once, checked before a run is answered or queued (422
    ``invalid-simulation``): the climate pathway must be one of the model's; a crediting start year and period
    the model's crediting rules take (:meth:`models.carbon.CreditingRules.checked`)."""
    own = simulation_crediting(req)
    if own:
        from models.carbon import CreditingRules
        from models.dynamics import DEFAULT_START_YEAR

        try:
            CreditingRules.checked(params, start_year=DEFAULT_START_YEAR, **own)
        except ValueError as exc:  # "<name>: <reason>"
            name, reason = str(exc).split(": ", 1)
            raise ApiProblem(422, str(exc), kind="invalid-simulation", title="Invalid simulation",
                             errors=[{"field": f"body/{name}", "value": own[name], "reason": reason}]) from None
    pathway = req.get("climate_pathway")
    if pathway is None:
        return
    from models.dynamics import climate_pathways

    known = sorted(climate_pathways(params))
    if pathway not in known:
        raise ApiProblem(422, f"unknown climate pathway {pathway!r} of model {params.region!r}; known: {known}",
                         kind="invalid-simulation", title="Invalid simulation",
                         errors=[{"field": "body/climate_pathway", "value": pathway,
                                  "reason": f"not a climate pathway of model {params.region!r} (known: {known})"}])


def run_simulation(pf, params, req: dict[str, Any], *, chunk_paths: int | None = None,
                   progress: Callable | None = None, cancel: Callable[[], bool] | None = None):
    """Run :func:`finance_engine.simulation.simulate` for a validated request dict."""
    from finance_engine.simulation import simulate
    from models.dynamics import Modifiers, SimulationSwitches

    switches = SimulationSwitches() if req.get("perils") is None else SimulationSwitches(perils=tuple(req["perils"]))
    modifiers = Modifiers(climate_pathway=req.get("climate_pathway"))
    return simulate(pf, params, years=req["years"], paths=req["paths"], seed=req["seed"],
                    scenario=req.get("scenario", "baseline"), levels=req["levels"],
                    carbon_method=req.get("carbon_method", "bef"), switches=switches, modifiers=modifiers,
                    crediting=simulation_crediting(req),
                    loss_table_level=req.get("loss_table_level"), chunk_paths=chunk_paths, workers=1,
                    progress=progress, cancel=cancel, keep_paths=False)


def result_identity(result) -> dict[str, Any]:
    """The parts of a result that define its numbers (what a rerun with the same seed reproduces)."""
    d = result.to_dict(include_summary=True)
    d.pop("run_info", None)
    return clean(d)


def store_run(s: Session, *, tenant_id: str, key_id: str, portfolio: PortfolioRow, req: dict[str, Any], result,
              job_id: str | None, request_id: str) -> SimulationRun:
    body = clean(result.to_dict(include_summary=True))
    elt_bytes = None
    if result.elt is not None:
        buf = io.BytesIO()
        result.elt.to_parquet(buf, index=False)
        elt_bytes = buf.getvalue()
    prov = result.provenance
    run = SimulationRun(
        id=new_id("sim"), tenant_id=tenant_id, portfolio_id=portfolio.id, job_id=job_id, request=clean(req),
        request_sha256=sha256_json(req), model_version=str(prov["model_version"]),
        code_version=str(prov["code_version"]), region=str(prov["region"]),
        parameter_sha256=str(prov["parameter_sha256"]), portfolio_sha256=portfolio.data_sha256,
        seed=int(prov["seed"]), result=body, elt_parquet=elt_bytes, created_by=key_id, request_id=request_id,
        created_at=utcnow())
    s.add(run)
    s.flush()
    return run


def run_out(run: SimulationRun) -> dict[str, Any]:
    r = run.result
    return {
        "id": run.id, "portfolio_id": run.portfolio_id, "job_id": run.job_id,
        "audit": {"request": run.request, "request_sha256": run.request_sha256, "model_version": run.model_version,
                  "code_version": run.code_version, "region": run.region, "parameter_sha256": run.parameter_sha256,
                  "portfolio_sha256": run.portfolio_sha256, "seed": run.seed, "created_by": run.created_by,
                  "request_id": run.request_id, "created_at": run.created_at},
        "provenance": r.get("provenance", {}), "metrics": r.get("metrics", []),
        "initial_stock": r.get("initial_stock", []), "horizon": r.get("horizon", []),
        "summary_rows": len(r.get("summary", [])), "event_loss_table_rows": r.get("event_loss_table_rows"),
        "run_info": r.get("run_info", {}),
    }


__all__ = ["LossTableError", "ModelRegistry", "PortfolioCache", "SIMULATION_FIELDS", "audit", "audit_record",
           "cells", "check_filters", "check_loss_table_rows", "check_simulation_request", "clean", "count", "csv_rows_over",
           "filter_problem", "first_bad_row", "loss_table_rule", "frame_from_geojson", "frame_from_records", "frame_from_upload", "get_owned",
           "internal_job_problem", "job_problem", "new_id", "own_provenance", "page", "parquet_footer",
           "plausible_id", "portfolio_summary", "purge_retained_data", "records", "release_portfolio_data",
           "result_identity", "results_needing_data", "retain_portfolio_data", "MEMO_REFUSED", "job_cells", "run_out",
           "run_simulation",
           "sha256_json", "store_portfolio", "store_run", "task_price_layer", "validate", "zip_decoded_bytes"]
