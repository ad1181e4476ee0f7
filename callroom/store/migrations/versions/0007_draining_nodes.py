"""a node that drains: since when it takes no new calls

``nodes.draining_since`` is set by the node when it starts to drain (on SIGTERM, Ctrl-C, or when
``callroom drain`` asked for it by setting it), and cleared when the node registers again.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('draining_since', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('draining_since')
