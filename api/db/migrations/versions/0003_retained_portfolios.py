"""The data of deleted portfolios that stored results still need (a collateral memo not rendered yet).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('retained_portfolios',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('source', sa.String(length=300), nullable=False),
    sa.Column('region', sa.String(length=60), nullable=False),
    sa.Column('data_sha256', sa.String(length=64), nullable=False),
    sa.Column('data_parquet', sa.LargeBinary(), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_retained_portfolios_tenant_id'), ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('retained_portfolios', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_retained_portfolios_tenant_id'))
    op.drop_table('retained_portfolios')
