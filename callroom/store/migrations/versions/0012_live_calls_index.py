"""live calls by node: a partial index on ``calls (node_id) WHERE ended_at IS NULL``

The queries for a node's live calls (the operations figures every second, the reaper's look at dead nodes,
a drain, a restart) filtered by ``node_id`` and then by state: every call the node ever carried was read,
so they grew with the node's history. The index holds the live calls only. It names ``ended_at``, set
once when a call ends, and not ``state``, which most commands change: an update that leaves every indexed
column as it was stays a HOT update in PostgreSQL (migration 0004).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_live_node', ['node_id'], unique=False,
                              postgresql_where=sa.text('ended_at IS NULL'),
                              sqlite_where=sa.text('ended_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_live_node')
