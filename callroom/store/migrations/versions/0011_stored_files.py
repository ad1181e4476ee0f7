"""stored files: recordings and uploaded media in the shared database, in chunks

``blobs`` holds a file's header (its size, how many chunks, whether it is whole); ``blob_chunks`` its
content. Rows of ``recordings`` and ``media_files`` name their file by its key in ``path`` (files written
before this revision keep their absolute path and are served from the disk of the node that has them).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('blobs',
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('chunks', sa.Integer(), nullable=False),
    sa.Column('complete', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('blob_chunks',
    sa.Column('key', sa.String(length=512), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'seq')
    )


def downgrade() -> None:
    op.drop_table('blob_chunks')
    op.drop_table('blobs')
