"""Finance results (collateral valuations, quotes, layer prices, stress tests) and their rendered reports.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('finance_results',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('portfolio_id', sa.String(length=40), nullable=True),
    sa.Column('instrument_id', sa.String(length=40), nullable=True),
    sa.Column('job_id', sa.String(length=40), nullable=True),
    sa.Column('request', sa.JSON(), nullable=False),
    sa.Column('request_sha256', sa.String(length=64), nullable=False),
    sa.Column('model_version', sa.String(length=40), nullable=False),
    sa.Column('code_version', sa.String(length=60), nullable=False),
    sa.Column('region', sa.String(length=60), nullable=True),
    sa.Column('parameter_sha256', sa.String(length=64), nullable=True),
    sa.Column('portfolio_sha256', sa.String(length=64), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=40), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('finance_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_finance_results_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_finance_results_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_finance_results_portfolio_id'), ['portfolio_id'], unique=False)

    op.create_table('result_artifacts',
    sa.Column('result_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=60), nullable=False),
    sa.Column('media_type', sa.String(length=120), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['finance_results.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('result_id', 'name')
    )


def downgrade() -> None:
    op.drop_table('result_artifacts')
    with op.batch_alter_table('finance_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_finance_results_portfolio_id'))
        batch_op.drop_index(batch_op.f('ix_finance_results_kind'))
        batch_op.drop_index(batch_op.f('ix_finance_results_tenant_id'))
    op.drop_table('finance_results')
