"""a call's plan: what it does when it answers, and the legs it is tied to

``calls.plan`` (JSON) holds a transfer's links (the new leg and the call it is for), the other legs of a
dial to several destinations, and what a dialled leg does once it answers (audio, DTMF digits, a
recording).

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-07 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('plan', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_column('plan')
