"""SIP trunks and the phone numbers they bring

``trunks``: an account's SIP gateways to the phone network (how calls to numbers go out, and from where
calls to its numbers come in). ``phone_numbers``: numbers the operator owns, each brought by a trunk and
assigned to an application (``connection_id``).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'trunks',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('account_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('host', sa.String(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('transport', sa.String(length=8), nullable=False),
        sa.Column('username', sa.String(length=255), nullable=True),
        sa.Column('password', sa.String(length=255), nullable=True),
        sa.Column('register', sa.Boolean(), nullable=False),
        sa.Column('register_expires', sa.Integer(), nullable=False),
        sa.Column('inbound_networks', sa.JSON(), nullable=False),
        sa.Column('allowed_from', sa.JSON(), nullable=False),
        sa.Column('caller_id_header', sa.String(length=8), nullable=False),
        sa.Column('number_format', sa.String(length=8), nullable=False),
        sa.Column('tech_prefix', sa.String(length=16), nullable=False),
        sa.Column('codecs', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('account_id', 'name', name='uq_trunks_account_name'),
    )
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_trunks_account_id'), ['account_id'], unique=False)
    op.create_table(
        'phone_numbers',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('account_id', sa.String(length=64), nullable=False),
        sa.Column('phone_number', sa.String(length=16), nullable=False),
        sa.Column('trunk_id', sa.String(length=64), nullable=True),
        sa.Column('connection_id', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('updated_at', sa.Float(), nullable=False),
        sa.Column('tags', sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('phone_number'),
    )
    with op.batch_alter_table('phone_numbers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_numbers_account_id'), ['account_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('phone_numbers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_phone_numbers_account_id'))
    op.drop_table('phone_numbers')
    with op.batch_alter_table('trunks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_trunks_account_id'))
    op.drop_table('trunks')
