"""A database migrated before the kept copies of deleted portfolios expired (revision 0003) is brought to the head
(0004 adds ``expires_at``: 30 days after the delete for copies kept before it), on SQLite and PostgreSQL; and back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from api.db.session import alembic_config, make_engine, migration_status, upgrade_head
from tests.api.conftest import new_database


def _at_0003(backend, tmp_path_factory, request):
    """A fresh database migrated to revision 0003: ``(engine, alembic config)``."""
    from alembic import command

    engine = make_engine(new_database(backend, tmp_path_factory, request))
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    return engine, cfg


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_at_0003_is_upgraded_and_its_kept_copies_expire(backend, tmp_path_factory, request):
    from alembic import command

    from api.db.models import RetainedPortfolio, Tenant

    engine, cfg = _at_0003(backend, tmp_path_factory, request)
    deleted = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
    with engine.begin() as conn:  # a copy kept by the code of revision 0003 (no expiry)
        conn.execute(sa.text("INSERT INTO tenants (id, name, role, created_at) VALUES ('t1', 'a', 'bank', :at)"),
                     {"at": deleted})
        conn.execute(sa.text("INSERT INTO retained_portfolios (id, tenant_id, source, region, data_sha256, data_parquet,"
                             " deleted_at) VALUES ('pf1', 't1', 's.csv', 'lishui', :h, :d, :at)"),
                     {"h": "0" * 64, "d": b"x", "at": deleted})
    assert migration_status(engine)[0] == "0003"
    upgrade_head(engine)
    current, head = migration_status(engine)
    assert current == head == "0004"
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        kept = s.get(RetainedPortfolio, "pf1")
        assert kept.expires_at == deleted + timedelta(days=30)
        s.add(RetainedPortfolio(id="pf2", tenant_id="t1", source="t.csv", region="lishui", data_sha256="1" * 64,
                                data_parquet=b"y", deleted_at=deleted, expires_at=deleted + timedelta(days=7)))
        s.commit()
        assert s.get(Tenant, "t1") is not None
    with engine.begin() as conn:  # and back: the column and its index go, the copies stay
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")
    cols = {c["name"] for c in sa.inspect(engine).get_columns("retained_portfolios")}
    assert "expires_at" not in cols
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM retained_portfolios")).scalar() == 2
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_development_database_whose_0003_had_the_expiry_is_upgraded(backend, tmp_path_factory, request):
    """A database migrated by a development build whose 0003 already added ``expires_at`` (never released): 0004
    keeps the column and its copies' expiries, and adds only what is missing."""
    engine, _ = _at_0003(backend, tmp_path_factory, request)
    expires = datetime(2027, 1, 1, tzinfo=timezone.utc)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE retained_portfolios ADD COLUMN expires_at TIMESTAMP WITH TIME ZONE"
                             if backend == "postgres" else "ALTER TABLE retained_portfolios ADD COLUMN expires_at DATETIME"))
        conn.execute(sa.text("INSERT INTO tenants (id, name, role, created_at) VALUES ('t1', 'a', 'bank', :at)"),
                     {"at": expires})
        conn.execute(sa.text("INSERT INTO retained_portfolios (id, tenant_id, source, region, data_sha256, data_parquet,"
                             " deleted_at, expires_at) VALUES ('pf1', 't1', 's.csv', 'lishui', :h, :d, :at, :ex)"),
                     {"h": "0" * 64, "d": b"x", "at": expires - timedelta(days=7), "ex": expires})
    upgrade_head(engine)
    assert migration_status(engine)[0] == "0004"
    from sqlalchemy.orm import Session

    from api.db.models import RetainedPortfolio

    with Session(engine) as s:
        assert s.get(RetainedPortfolio, "pf1").expires_at == expires
    assert "ix_retained_portfolios_expires_at" in {i["name"] for i in sa.inspect(engine).get_indexes("retained_portfolios")}
    engine.dispose()
