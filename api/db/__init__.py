"""Persistence: SQLAlchemy 2 models, engine/session handling and Alembic migrations."""

from api.db.session import Database, upgrade_head

__all__ = ["Database", "upgrade_head"]
