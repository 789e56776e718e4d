"""cluster mode: job_runs (each scheduled job once per slot across nodes) and cluster_leases (a fan-out's owner)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.schema

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UTC = warnd.schema.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(length=100), nullable=False),
        sa.Column("slot", UTC(), nullable=False),
        sa.Column("node", sa.String(length=100), nullable=False),
        sa.Column("started_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("job", "slot", name=op.f("pk_job_runs")),
    )
    op.create_table(
        "cluster_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("acquired_at", UTC(), nullable=False),
        sa.Column("expires_at", UTC(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_leases")),
    )


def downgrade() -> None:
    op.drop_table("cluster_leases")
    op.drop_table("job_runs")
