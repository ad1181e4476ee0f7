"""a trunk's media encryption: ``trunks.srtp`` ("off", "optional" or "required": SRTP with SDES keys)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('srtp', sa.String(length=8), nullable=False, server_default='off'))


def downgrade() -> None:
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.drop_column('srtp')
