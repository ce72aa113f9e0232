"""Fixtures of the API tests: database backends (SQLite and PostgreSQL), apps, tenants and keys.

The PostgreSQL backend uses ``TEST_DATABASE_URL`` (``.ci/run`` starts a server and sets it); without
it a throwaway cluster is started when the server binaries are installed; otherwise the postgres
cases are skipped with the reason. Each app gets a database of its own.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
from dataclasses import dataclass, field

import pytest

warnings.filterwarnings("ignore", message=".*httpx2.*")

from api.app import create_app  # noqa: E402
from api.security import create_key, create_tenant  # noqa: E402
from api.settings import Settings  # noqa: E402
from tests.api import pgcluster  # noqa: E402
from tests.conftest import make_frame  # noqa: E402

ROLES = ("bank", "insurer", "bureau", "admin")


@pytest.fixture(scope="session")
def postgres_base_url():
    """URL of a PostgreSQL server's maintenance database, or skip."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        pgcluster.wait_ready(url)
        yield url
        return
    bindir = pgcluster.find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL not available: set TEST_DATABASE_URL or install the server (apt-get install "
                    "postgresql)")
    cluster = pgcluster.Cluster(bindir)
    try:
        url = cluster.start()
    except Exception as exc:  # noqa: BLE001
        cluster.stop()
        pytest.skip(f"could not start a throwaway PostgreSQL cluster: {exc}")
    pgcluster.wait_ready(url)
    yield url
    cluster.stop()


def new_database(backend: str, tmp_path_factory, request) -> str:
    """A fresh, empty database URL on ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.sqlite'}"
    base = request.getfixturevalue("postgres_base_url")
    import psycopg
    from sqlalchemy.engine import make_url

    name = "cre_test_" + uuid.uuid4().hex[:12]
    u = make_url(base)
    with psycopg.connect(u.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)


def test_settings(url: str, **kw) -> Settings:
    base = dict(database_url=url, rate_per_s=1000.0, rate_burst=1000.0, log_level="WARNING")
    base.update(kw)
    return Settings(**base)


test_settings.__test__ = False  # not a test


@dataclass
class ApiEnv:
    client: object
    app: object
    keys: dict = field(default_factory=dict)  # (role, "a"|"b") -> key
    portfolios: dict = field(default_factory=dict)  # (role, "a"|"b") -> portfolio id

    def h(self, role: str, tenant: str = "a") -> dict:
        return {"Authorization": f"Bearer {self.keys[(role, tenant)]}"}


def make_tenants(app) -> dict:
    keys = {}
    with app.state.db.session() as s:
        for role in ROLES:
            for t in ("a", "b"):
                tenant = create_tenant(s, f"{role}-{t}", role)
                keys[(role, t)] = create_key(s, tenant)[1]
    return keys


def csv_bytes(n: int = 50, seed: int = 0) -> bytes:
    return make_frame(n, seed=seed).to_csv(index=False).encode()


def upload(client, headers, data: bytes | None = None, filename: str = "p.csv", name: str = "small") -> str:
    r = client.post("/v1/portfolios", headers=headers, files={"file": (filename, data or csv_bytes(), "text/csv")},
                    data={"name": name})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def two_tenants(backend, tmp_path_factory, request):
    """An app on a fresh database (SQLite and PostgreSQL) with tenants a and b of every role, one compute worker and
    no portfolio: ``(app, client, headers(role, tenant="a"))``."""
    from fastapi.testclient import TestClient

    url = new_database(backend, tmp_path_factory, request)
    app = create_app(test_settings(url, sync_max_cells=2_000_000, compute_workers=1))
    with TestClient(app) as c:
        keys = make_tenants(app)
        yield app, c, lambda role, t="a": {"Authorization": f"Bearer {keys[(role, t)]}"}


@pytest.fixture(scope="module")
def env(backend, tmp_path_factory, request):
    """An in-process app (TestClient) on a fresh database with tenants a and b of every role and a
    50-parcel portfolio for each analyst tenant."""
    from fastapi.testclient import TestClient

    url = new_database(backend, tmp_path_factory, request)
    app = create_app(test_settings(url, sync_max_cells=2_000_000))
    with TestClient(app) as client:
        e = ApiEnv(client=client, app=app, keys=make_tenants(app))
        for role in ("bank", "insurer", "bureau"):
            for t in ("a", "b"):
                e.portfolios[(role, t)] = upload(client, e.h(role, t))
        yield e
