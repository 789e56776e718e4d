"""drop ix_recipients_role

Audience queries page recipients by id and test the role inside an OR with group membership, so SQLite never
used this low-selectivity index; maintaining it cost ~30 % of a million-row subscriber import.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 11:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_recipients_role", table_name="recipients")


def downgrade() -> None:
    op.create_index("ix_recipients_role", "recipients", ["role"], unique=False)
