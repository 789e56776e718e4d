"""two-person approval: broadcasts (drafts, decisions, the alert sent), users.phone (approval notices)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UTC = warnd.schema.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("phone", sa.String(length=32), nullable=True))
    op.create_table(
        "broadcasts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("update_of", sa.Integer(), nullable=True),
        sa.Column("draft", sa.JSON(), nullable=False),
        sa.Column("needs_approval", sa.Boolean(), nullable=False),
        sa.Column("approval_reasons", sa.JSON(), nullable=True),
        sa.Column("headline", sa.String(length=500), nullable=True),
        sa.Column("colour", sa.String(length=16), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=True),
        sa.Column("preview", sa.JSON(), nullable=True),
        sa.Column("submitted_by", sa.String(length=100), nullable=False),
        sa.Column("submitted_at", UTC(), nullable=False),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", UTC(), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["update_of"], ["alerts.id"], name=op.f("fk_broadcasts_update_of_alerts")),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_broadcasts_alert_id_alerts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_broadcasts")),
    )
    op.create_index("ix_broadcasts_status", "broadcasts", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_broadcasts_status", table_name="broadcasts")
    op.drop_table("broadcasts")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("phone")
