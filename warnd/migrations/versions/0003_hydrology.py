"""gauge readings and hydrology warning state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 11:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import warnd.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gauge_readings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("gauge", sa.String(length=64), nullable=False),
        sa.Column("time", warnd.schema.UTCDateTime(), nullable=False),
        sa.Column("level", sa.Float(), nullable=True),
        sa.Column("flow", sa.Float(), nullable=True),
        sa.Column("rainfall", sa.Float(), nullable=True),
        sa.Column("qualifiers", sa.String(length=64), nullable=True),
        sa.Column("problem", sa.String(length=200), nullable=True),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("received_at", warnd.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gauge_readings")),
        sa.UniqueConstraint("gauge", "time", name="uq_gauge_readings_gauge_time"),
    )
    op.create_table(
        "hydro_state",
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("alert_ref", sa.String(length=600), nullable=True),
        sa.Column("updated_at", warnd.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_hydro_state")),
    )


def downgrade() -> None:
    op.drop_table("hydro_state")
    op.drop_table("gauge_readings")
