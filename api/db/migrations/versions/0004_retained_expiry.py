"""Each kept copy of a deleted portfolio's data expires (``expires_at``, ``CRE_RETAINED_DATA_DAYS`` after the delete).

Copies kept before this revision expire 30 days (the setting's default) after their portfolio was deleted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""
from datetime import timedelta

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

#: the expiry of copies kept before this revision: the setting's default (api.settings)
DEFAULT_DAYS = 30


def upgrade() -> None:
    conn = op.get_bind()
    inspector = sa.inspect(conn)
    # a database migrated by a development build whose 0003 already had the column (never released) keeps it
    has_column = 'expires_at' in {c['name'] for c in inspector.get_columns('retained_portfolios')}
    has_index = 'ix_retained_portfolios_expires_at' in {i['name'] for i in inspector.get_indexes('retained_portfolios')}
    if not has_column:
        with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
            batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    rows = sa.table('retained_portfolios', sa.column('id', sa.String), sa.column('deleted_at', sa.DateTime(timezone=True)),
                    sa.column('expires_at', sa.DateTime(timezone=True)))
    for rid, deleted in conn.execute(sa.select(rows.c.id, rows.c.deleted_at).where(rows.c.expires_at.is_(None))).all():
        conn.execute(rows.update().where(rows.c.id == rid).values(expires_at=deleted + timedelta(days=DEFAULT_DAYS)))
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        if not has_column:
            batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        if not has_index:
            batch_op.create_index(batch_op.f('ix_retained_portfolios_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retained_portfolios_expires_at'))
        batch_op.drop_column('expires_at')
