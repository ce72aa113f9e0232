"""Service settings, read from the environment (``CRE_*`` variables and ``DATABASE_URL``).

Every limit of the service lives here with its default; ``docs/api.md`` lists them. Settings are a
frozen dataclass passed to :func:`api.app.create_app`, so tests build apps with their own limits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

ROLES: tuple[str, ...] = ("bank", "insurer", "bureau", "admin")
DEFAULT_DATA_DIR = Path("var")


def default_database_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    return f"sqlite:///{data_dir / 'carbon_risk.sqlite'}"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(float(raw))
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class Settings:
    """Configuration of one service instance.

    Attributes
    ----------
    database_url : str
        SQLAlchemy URL (``sqlite:///var/carbon_risk.sqlite`` by default;
        ``postgresql+psycopg://user:pass@host:5432/db`` in production).
    max_body_bytes : int
        Largest accepted request body (bytes); larger ones get 413.
    role_max_cells : dict
        Per role, the largest ``parcels x paths x years`` of a simulation (also applied to the
        ``parcels x paths`` of an accounts request).
    sync_max_cells : int
        Simulations up to this many ``parcels x paths x years`` are answered in the request (201);
        larger ones run as a job (202).
    rate_per_s, rate_burst : float
        Token bucket per API key: ``rate_burst`` requests at once, refilled at ``rate_per_s``.
    job_workers : int
        Worker threads running jobs inside the server.
    job_chunk_paths : int
        Paths per chunk in jobs (progress granularity only; results do not depend on it).
    max_active_jobs_per_tenant : int
        Jobs a tenant may have queued or running at once; one more is refused (429 ``too-many-jobs``).
        Queued jobs are run in turn by tenant, so one tenant's backlog does not hold up the others.
    page_max : int
        Largest ``limit`` of a list endpoint.
    compute_workers : int or None
        Processes of the compute pool that runs synchronous engine work (None: the CPU count; 0: run
        in the server's threads).
    result_cache_size : int
        Results of identical collateral and quote requests kept in memory (0: none).
    compute_warm : bool
        Start and initialise the compute pool's processes when the app starts (the server does;
        tests start it on first use).
    landscape_warm_paths : int
        With ``compute_warm``, each compute process simulates the region's pine wilt landscape for
        this many paths of the default seed and horizon when it starts (about 0.25 s and 5 MB per
        1,000 paths for Lishui), so the first loan valued on it is as fast as the next (0: none).
    idempotency_ttl_s : float
        How long a stored ``Idempotency-Key`` answer is kept (seconds, default 24 h): older records
        are purged, and a key older than this starts afresh.
    max_parcels : int
        Most parcels (rows) of an uploaded portfolio, whatever its format (CSV, Parquet, xlsx, GeoJSON,
        JSON): a file's row count is read before its rows are (a Parquet file's footer; a CSV's line
        breaks; an xlsx sheet is read at most this many rows deep), so a larger one is refused unread.
    max_upload_decoded_bytes : int
        Most bytes a compressed upload (a Parquet file's column data, an xlsx file's members) may declare
        once decompressed; a larger one is refused before it is decoded.
    layer_max_rows : int
        Most rows of an event loss table uploaded as CSV or Parquet for layer pricing.
    layer_max_json_rows : int
        Most rows of an event loss table sent as JSON (inline ``rows`` or a ``.json`` file): each row is
        a Python object in the server (about 0.5 kB), five times what a CSV or Parquet row costs.
    retained_data_days : float
        How long a deleted portfolio's data is kept for the memos of its valuations that are not rendered
        yet (days, default 30; ``CRE_RETAINED_DATA_DAYS``): after that it is purged, and those memos answer
        404. 0 keeps nothing: a delete removes the data at once.
    """

    database_url: str = field(default_factory=default_database_url)
    max_body_bytes: int = 50 * 1024 * 1024
    role_max_cells: dict[str, int] = field(default_factory=lambda: {
        "bank": 200_000_000, "insurer": 200_000_000, "bureau": 5_000_000_000, "admin": 0})
    sync_max_cells: int = 2_000_000
    rate_per_s: float = 20.0
    rate_burst: float = 60.0
    job_workers: int = 1
    job_chunk_paths: int = 32
    max_active_jobs_per_tenant: int = 20
    page_max: int = 500
    accounts_default_paths: int = 200
    log_level: str = "INFO"
    compute_workers: int | None = None
    result_cache_size: int = 256
    compute_warm: bool = False
    landscape_warm_paths: int = 0
    idempotency_ttl_s: float = 24 * 3600.0
    max_parcels: int = 1_000_000
    max_upload_decoded_bytes: int = 512 * 1024 * 1024
    layer_max_rows: int = 1_000_000
    layer_max_json_rows: int = 200_000
    retained_data_days: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        """Settings from environment variables (see ``docs/api.md``), then ``overrides``."""
        env = os.environ if env is None else env
        base = cls()
        cells = dict(base.role_max_cells)
        for role in ROLES:
            cells[role] = _int(env, f"CRE_MAX_CELLS_{role.upper()}", cells[role])
        s = cls(
            database_url=env.get("DATABASE_URL") or base.database_url,
            max_body_bytes=_int(env, "CRE_MAX_BODY_BYTES", base.max_body_bytes),
            role_max_cells=cells,
            sync_max_cells=_int(env, "CRE_SYNC_MAX_CELLS", base.sync_max_cells),
            rate_per_s=_float(env, "CRE_RATE_PER_S", base.rate_per_s),
            rate_burst=_float(env, "CRE_RATE_BURST", base.rate_burst),
            job_workers=max(1, _int(env, "CRE_JOB_WORKERS", base.job_workers)),
            job_chunk_paths=max(1, _int(env, "CRE_JOB_CHUNK_PATHS", base.job_chunk_paths)),
            max_active_jobs_per_tenant=max(1, _int(env, "CRE_MAX_ACTIVE_JOBS_PER_TENANT",
                                                   base.max_active_jobs_per_tenant)),
            page_max=max(1, _int(env, "CRE_PAGE_MAX", base.page_max)),
            accounts_default_paths=max(1, _int(env, "CRE_ACCOUNTS_PATHS", base.accounts_default_paths)),
            log_level=env.get("CRE_LOG_LEVEL", base.log_level),
            compute_workers=(None if env.get("CRE_COMPUTE_WORKERS") in (None, "")
                             else max(0, _int(env, "CRE_COMPUTE_WORKERS", 0))),
            result_cache_size=max(0, _int(env, "CRE_RESULT_CACHE", base.result_cache_size)),
            compute_warm=env.get("CRE_COMPUTE_WARM", "1") not in ("0", "false", "no"),
            landscape_warm_paths=max(0, _int(env, "CRE_LANDSCAPE_WARM_PATHS", 10_000)),
            idempotency_ttl_s=max(60.0, _float(env, "CRE_IDEMPOTENCY_TTL_HOURS", base.idempotency_ttl_s / 3600) * 3600),
            max_parcels=max(1, _int(env, "CRE_MAX_PARCELS", base.max_parcels)),
            max_upload_decoded_bytes=max(1, _int(env, "CRE_MAX_UPLOAD_DECODED_BYTES", base.max_upload_decoded_bytes)),
            layer_max_rows=max(1, _int(env, "CRE_LAYER_MAX_ROWS", base.layer_max_rows)),
            layer_max_json_rows=max(1, _int(env, "CRE_LAYER_MAX_JSON_ROWS", base.layer_max_json_rows)),
            retained_data_days=min(36_500.0, max(0.0, _float(env, "CRE_RETAINED_DATA_DAYS", base.retained_data_days))),
        )
        return replace(s, **overrides) if overrides else s

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


__all__ = ["ROLES", "Settings", "default_database_url"]
