"""PostgreSQL: row ids and the columns holding them become BIGINT (and their sequences bigint); SQLite unchanged

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24 10:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# (table, column) of every id and id reference as of this revision (warnd.schema.Id)
ID_COLUMNS = (
    ("acknowledgements", "alert_id"),
    ("acknowledgements", "delivery_id"),
    ("acknowledgements", "id"),
    ("acknowledgements", "recipient_id"),
    ("acknowledgements", "root_id"),
    ("alert_reports", "root_id"),
    ("alerts", "id"),
    ("alerts", "payload_id"),
    ("alerts", "previous_id"),
    ("alerts", "root_id"),
    ("api_tokens", "id"),
    ("audit_log", "id"),
    ("broadcasts", "alert_id"),
    ("broadcasts", "id"),
    ("broadcasts", "update_of"),
    ("channel_preferences", "recipient_id"),
    ("deliveries", "alert_id"),
    ("deliveries", "id"),
    ("deliveries", "message_id"),
    ("deliveries", "recipient_id"),
    ("deliveries", "suppressed_by"),
    ("delivery_events", "delivery_id"),
    ("delivery_events", "id"),
    ("delivery_parts", "delivery_id"),
    ("doorknocks", "alert_id"),
    ("doorknocks", "id"),
    ("doorknocks", "recipient_id"),
    ("doorknocks", "root_id"),
    ("escalation_events", "escalation_id"),
    ("escalation_events", "id"),
    ("escalations", "alert_id"),
    ("escalations", "id"),
    ("escalations", "recipient_id"),
    ("escalations", "root_id"),
    ("gauge_readings", "id"),
    ("group_members", "recipient_id"),
    ("messages", "alert_id"),
    ("messages", "id"),
    ("messages", "recipient_id"),
    ("payloads", "alert_id"),
    ("payloads", "id"),
    ("recipients", "id"),
    ("sessions", "user_id"),
    ("users", "id"),
)


def _widen(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite's INTEGER already holds 64 bits
    tables: dict[str, list[str]] = {}
    for table, column in ID_COLUMNS:
        tables.setdefault(table, []).append(column)
    for table, columns in tables.items():  # one ALTER TABLE (one rewrite) per table
        op.execute(
            f"ALTER TABLE {table} " + ", ".join(f"ALTER COLUMN {column} TYPE {to}" for column in columns)
        )
        for column in columns:  # a serial's sequence keeps its own type (and so its maximum)
            sequence = (
                op.get_bind()
                .exec_driver_sql(f"SELECT pg_get_serial_sequence('{table}', '{column}')")
                .scalar()
            )
            if sequence:
                op.execute(f"ALTER SEQUENCE {sequence} AS {to}")


def upgrade() -> None:
    _widen("BIGINT")


def downgrade() -> None:
    _widen("INTEGER")
