"""where a conference is mixed and where each participant's call lives

In a cluster a conference is mixed on one node, its home (at first the node of the call that created it;
another member's node when its home dies); members whose calls live on other nodes reach it over relay
legs. ``conferences.node_id`` is the home, ``participants.node_id`` the node of the participant's call,
so that a command that changes a conference knows where to send each instruction without reading calls.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('conferences', schema=None) as batch_op:
        batch_op.add_column(sa.Column('node_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('node_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('participants', schema=None) as batch_op:
        batch_op.drop_column('node_id')
    with op.batch_alter_table('conferences', schema=None) as batch_op:
        batch_op.drop_column('node_id')
