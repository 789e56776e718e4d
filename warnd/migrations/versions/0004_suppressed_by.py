"""deliveries.suppressed_by: the alert chain whose warning covered a suppressed delivery

When that chain stops covering the recipient (cancelled, expired, downgraded below the suppressed warning's
level, or moved away by an Update), the suppressed delivery of a still-active warning is re-queued.
No foreign key: SQLite could only add one by rebuilding the deliveries table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("suppressed_by", sa.Integer(), nullable=True))
    op.create_index("ix_deliveries_suppressed_by", "deliveries", ["suppressed_by"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_suppressed_by", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("suppressed_by")
