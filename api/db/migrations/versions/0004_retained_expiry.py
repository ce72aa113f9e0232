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
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True))
    rows = sa.table('retained_portfolios', sa.column('id', sa.String), sa.column('deleted_at', sa.DateTime(timezone=True)),
                    sa.column('expires_at', sa.DateTime(timezone=True)))
    conn = op.get_bind()
    for rid, deleted in conn.execute(sa.select(rows.c.id, rows.c.deleted_at)).all():
        conn.execute(rows.update().where(rows.c.id == rid).values(expires_at=deleted + timedelta(days=DEFAULT_DAYS)))
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index(batch_op.f('ix_retained_portfolios_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retained_portfolios_expires_at'))
        batch_op.drop_column('expires_at')
