"""nodes of a cluster, the owner of each outbox row, one live conference per name

Nodes sharing one database are a cluster: each keeps a row in ``nodes`` with its heartbeat. An outbox row
is delivered by the node that owns it (the one that committed it, or the survivor that took over a dead
node's rows). A conference name belongs to one live conference at a time: a unique index on the
conferences not completed, so that two nodes creating the same name at once cannot both succeed.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('node_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.Column('heartbeat_at', sa.Float(), nullable=False),
    sa.Column('api_url', sa.String(length=512), nullable=True),
    sa.Column('sip_host', sa.String(length=255), nullable=True),
    sa.Column('sip_port', sa.Integer(), nullable=True),
    sa.Column('load', sa.JSON(), nullable=False),
    sa.Column('reaped_by', sa.String(length=64), nullable=True),
    sa.Column('reaped_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('node_id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=64), nullable=True))
        batch_op.create_index('ix_outbox_owner_status', ['owner', 'status'], unique=False)
    with op.batch_alter_table('conferences', schema=None) as batch_op:
        batch_op.create_index('uq_conferences_active_name', ['account_id', 'name'], unique=True,
                              postgresql_where=sa.text("status != 'completed'"),
                              sqlite_where=sa.text("status != 'completed'"))


def downgrade() -> None:
    with op.batch_alter_table('conferences', schema=None) as batch_op:
        batch_op.drop_index('uq_conferences_active_name')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_owner_status')
        batch_op.drop_column('owner')
    op.drop_table('nodes')
