"""calls updated in place: no index on state, room on each page (PostgreSQL)

A call's state changes with almost every command (queued, bridged, parked...). With ``state`` indexed,
PostgreSQL could never update a call in place (a "HOT" update): each change wrote a new entry into all
six of the table's indexes. Nothing looks calls up by state alone (the node's live legs are found by
``node_id``, a session's by ``call_session_id``), so the index goes; and on PostgreSQL the table's pages
are filled to 80 % so that an update finds room for the new row version on the same page.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 18:40:00
"""

from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_state')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE calls SET (fillfactor = 80)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE calls RESET (fillfactor)')
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_state', ['state'], unique=False)
