"""delivery receipts: deliveries.delivered_at and the delivery_parts table

A sent delivery becomes delivered or failed from its receipts (SMS delivery receipts, push reports, loudspeaker
play reports). ``delivery_parts`` holds one row per part (SMS segment) with its provider message id, so receipts
match by provider id (also after a restart) and a failed segment is never hidden by a later success.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("delivered_at", warnd.schema.UTCDateTime(), nullable=True))
    op.create_table(
        "delivery_parts",
        sa.Column("delivery_id", sa.Integer(), nullable=False),
        sa.Column("part", sa.SmallInteger(), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("provider_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("report", sa.String(length=32), nullable=True),
        sa.Column("updated_at", warnd.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"], ["deliveries.id"], name=op.f("fk_delivery_parts_delivery_id_deliveries")
        ),
        sa.PrimaryKeyConstraint("delivery_id", "part", name=op.f("pk_delivery_parts")),
    )
    op.create_index("ix_delivery_parts_provider", "delivery_parts", ["channel", "provider_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_delivery_parts_provider", table_name="delivery_parts")
    op.drop_table("delivery_parts")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("delivered_at")
